//! Authentication and authorization as clients see them: challenges, the token endpoint (GET
//! with Basic, OAuth2 POST with password and refresh grants), Basic on registry routes, token
//! scopes per repository, rejected tokens (expired, tampered, other service, refresh used as
//! access), DENIED for known callers, public repositories, mount rules, the filtered catalog and
//! failed-login throttling. The suite runs over memory and, in S3 mode, over the S3 server of
//! `BERTH_TEST_S3_ENDPOINT` (s3s-fs, started by scripts/test).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use berth_auth::{Auth, AuthConfig, Claims, Policy, PolicySource, ResourceActions, TokenUse};
use berth_core::Registry;
use berth_storage::{MemoryStorage, Storage};
use http::{Method, StatusCode};
use serde_json::json;

use super::{Harness, Resp, config};
use crate::common::{OCI_MANIFEST, S3Kind, random_bytes, sha256};

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test";
const SERVICE: &str = "berth-test";

/// alice: everything; reader: pull anywhere; bob: push to team/**; anonymous: pull public/*.
fn policy() -> Policy {
    let hash = |pw: &str| bcrypt::hash(pw, 4).unwrap();
    Policy::parse(&format!(
        r#"
        [users]
        alice = "{}"
        reader = "{}"
        bob = "{}"
        [groups]
        team = ["bob"]
        [[rules]]
        repositories = ["**"]
        who = ["user:alice"]
        actions = ["*"]
        [[rules]]
        repositories = ["**"]
        who = ["user:reader"]
        actions = ["pull"]
        [[rules]]
        repositories = ["team/**"]
        who = ["group:team"]
        actions = ["pull", "push"]
        [[rules]]
        repositories = ["public/*"]
        who = ["anonymous"]
        actions = ["pull"]
        "#,
        hash("alice-pw"),
        hash("reader-pw"),
        hash("bob-pw"),
    ))
    .unwrap()
}

pub(crate) fn auth() -> Auth {
    Auth::new(AuthConfig {
        policy: policy(),
        secret: SECRET.to_vec(),
        service: SERVICE.into(),
        token_ttl: Duration::from_secs(300),
        refresh_ttl: Duration::from_secs(3600),
        reload: None,
    })
    .unwrap()
}

fn harness(store: Arc<dyn Storage>) -> Harness {
    Harness::over(Registry::new(store.clone(), config()).with_auth(auth()), store)
}

/// The backends: memory, and the S3 server when scripts/test started one.
async fn backends() -> Vec<(&'static str, Arc<dyn Storage>)> {
    super::backends(S3Kind::Signing, "auth_suite", "auth").await
}

pub(crate) fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// `GET /token` with optional Basic credentials; returns the response.
async fn token_request(h: &Harness, creds: Option<(&str, &str)>, scopes: &[&str]) -> Resp {
    let mut uri = format!("/token?service={SERVICE}&client_id=test");
    for scope in scopes {
        uri.push_str(&format!("&scope={}", scope.replace(':', "%3A").replace(',', "%2C").replace('/', "%2F")));
    }
    let auth = creds.map(|(u, p)| basic(u, p));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    h.send(Method::GET, &uri, &headers, b"").await
}

/// A token for `scopes`, as `user` (or anonymous).
async fn token(h: &Harness, creds: Option<(&str, &str)>, scopes: &[&str]) -> String {
    let r = token_request(h, creds, scopes).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let body = r.json();
    assert_eq!(body["token"], body["access_token"]);
    body["token"].as_str().unwrap().to_string()
}

/// Pushes an image (config, layer, manifest under `tag`) with the given Authorization header;
/// returns the status of the first refused request, or of the manifest PUT.
async fn push_with(h: &Harness, name: &str, authorization: &str) -> Resp {
    let headers = [("authorization", authorization)];
    let blob = b"layer bytes";
    let digest = sha256(blob);
    let r = h.send(Method::POST, &format!("/v2/{name}/blobs/uploads/?digest={digest}"), &headers, blob).await;
    if r.status != StatusCode::CREATED {
        return r;
    }
    let config = b"{}";
    let c = sha256(config);
    let r = h.send(Method::POST, &format!("/v2/{name}/blobs/uploads/?digest={c}"), &headers, config).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": c, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": blob.len()}],
    }))
    .unwrap();
    h.send(
        Method::PUT,
        &format!("/v2/{name}/manifests/v1"),
        &[("authorization", authorization), ("content-type", OCI_MANIFEST)],
        &manifest,
    )
    .await
}

fn assert_challenge(r: &Resp, scope: Option<&str>) {
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
    assert_eq!(r.code(), "UNAUTHORIZED");
    let challenge = r.header("www-authenticate").unwrap_or_else(|| panic!("no challenge in {r:?}"));
    let mut expected = format!("Bearer realm=\"http://registry.test/token\",service=\"{SERVICE}\"");
    if let Some(scope) = scope {
        expected.push_str(&format!(",scope=\"{scope}\""));
    }
    assert!(challenge.starts_with(&expected), "challenge {challenge:?}, expected {expected:?}…");
}

#[tokio::test]
async fn auth_suite() {
    for (backend, store) in backends().await {
        eprintln!("auth suite on {backend}");
        let h = harness(store);
        anonymous_is_challenged(&h).await;
        token_endpoint_checks_passwords(&h).await;
        tokens_grant_what_the_policy_allows(&h).await;
        bad_tokens_are_rejected(&h).await;
        basic_auth_on_registry_routes(&h).await;
        public_repositories(&h).await;
        mount_needs_pull_on_from(&h).await;
        catalog_lists_what_the_caller_may_pull(&h).await;
        oauth2_password_and_refresh(&h).await;
    }
}

/// Requests carry `Host: registry.test`, which the realm is built from.
async fn anonymous_is_challenged(h: &Harness) {
    let host = [("host", "registry.test")];
    let r = h.send(Method::GET, "/v2/", &host, b"").await;
    assert_challenge(&r, None);
    let r = h.send(Method::POST, "/v2/team/app/blobs/uploads/", &host, b"").await;
    assert_challenge(&r, Some("repository:team/app:pull,push"));
    let r = h.send(Method::GET, "/v2/team/app/manifests/latest", &host, b"").await;
    assert_challenge(&r, Some("repository:team/app:pull"));
    // A mount asks for pull on its source too, so that one token serves it.
    let mount = format!("/v2/team/app/blobs/uploads/?mount={}&from=public/app", sha256(b"x"));
    let r = h.send(Method::POST, &mount, &host, b"").await;
    assert_challenge(&r, Some("repository:team/app:pull,push repository:public/app:pull"));
    let r = h.send(Method::DELETE, "/v2/team/app/manifests/latest", &host, b"").await;
    assert_challenge(&r, Some("repository:team/app:delete"));
    let r = h.send(Method::GET, "/v2/_catalog", &host, b"").await;
    assert_challenge(&r, Some("registry:catalog:*"));
    // Behind a TLS proxy the realm is https.
    let r = h.send(Method::GET, "/v2/", &[("host", "registry.test"), ("x-forwarded-proto", "https")], b"").await;
    assert!(r.header("www-authenticate").unwrap().starts_with("Bearer realm=\"https://registry.test/token\""));
}

async fn token_endpoint_checks_passwords(h: &Harness) {
    let r = token_request(h, Some(("alice", "wrong")), &["repository:team/app:pull"]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
    assert_eq!(r.code(), "UNAUTHORIZED");
    let r = token_request(h, Some(("nobody", "alice-pw")), &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
    let r = h.send(Method::GET, "/token?service=another", &[], b"").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    assert!(r.json()["errors"][0]["message"].as_str().unwrap().contains(SERVICE));
    let r = token_request(h, Some(("alice", "alice-pw")), &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.json()["expires_in"], 300);
    // A valid token (even one with no scopes) passes the version check.
    let t = r.json()["token"].as_str().unwrap().to_string();
    assert_eq!(h.send(Method::GET, "/v2/", &[("authorization", &bearer(&t))], b"").await.status, StatusCode::OK);
}

async fn tokens_grant_what_the_policy_allows(h: &Harness) {
    // bob may push to team/**: a token for team/app pushes there…
    let t = token(h, Some(("bob", "bob-pw")), &["repository:team/app:pull,push"]).await;
    let r = push_with(h, "team/app", &bearer(&t)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    // …but not to team/other, which it does not name: 401 insufficient_scope (bob could get one).
    let r = push_with(h, "team/other", &bearer(&t)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
    assert!(r.header("www-authenticate").unwrap().contains("error=\"insufficient_scope\""), "{r:?}");
    assert!(r.header("www-authenticate").unwrap().contains("scope=\"repository:team/other:pull,push\""));
    // A token bob asks for elsewhere grants nothing there, and the policy says no: 403 DENIED.
    let t = token(h, Some(("bob", "bob-pw")), &["repository:private/x:pull,push"]).await;
    let r = push_with(h, "private/x", &bearer(&t)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");
    assert_eq!(r.code(), "DENIED");
    // The pull-only user gets a pull-only token; pushing with it is DENIED, pulling works.
    let r = token_request(h, Some(("reader", "reader-pw")), &["repository:team/app:pull,push,delete"]).await;
    let t = r.json()["token"].as_str().unwrap().to_string();
    let r = push_with(h, "team/app", &bearer(&t)).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");
    assert_eq!(r.code(), "DENIED");
    assert!(r.json()["errors"][0]["message"].as_str().unwrap().contains("reader may not push"));
    let auth = bearer(&t);
    let r = h.send(Method::GET, "/v2/team/app/manifests/v1", &[("authorization", &auth)], b"").await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let r = h.send(Method::GET, "/v2/team/app/tags/list", &[("authorization", &auth)], b"").await;
    assert_eq!(r.json()["tags"], json!(["v1"]));
    // Deleting needs delete: bob has none on team/app; alice does.
    let t = token(h, Some(("bob", "bob-pw")), &["repository:team/app:*"]).await;
    let r = h.send(Method::DELETE, "/v2/team/app/manifests/v1", &[("authorization", &bearer(&t))], b"").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");
    let t = token(h, Some(("alice", "alice-pw")), &["repository:team/app:delete"]).await;
    let r = h.send(Method::DELETE, "/v2/team/app/manifests/v1", &[("authorization", &bearer(&t))], b"").await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
}

/// Signs `claims` with `secret`, as an attacker or a misconfigured peer would.
fn forge(claims: &Claims, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .unwrap()
}

fn claims(aud: &str, exp_offset: i64, use_: TokenUse) -> Claims {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    Claims {
        iss: "berth".into(),
        sub: "alice".into(),
        aud: aud.into(),
        exp: now.saturating_add_signed(exp_offset),
        nbf: now - 10,
        iat: now - 10,
        jti: "t".into(),
        access: vec![ResourceActions {
            kind: "repository".into(),
            name: "team/app".into(),
            actions: vec!["pull".into(), "push".into()],
        }],
        token_use: use_,
    }
}

async fn bad_tokens_are_rejected(h: &Harness) {
    let good = forge(&claims(SERVICE, 300, TokenUse::Access), SECRET);
    let get = |token: String| async move {
        h.send(Method::GET, "/v2/team/app/tags/list", &[("authorization", &bearer(&token))], b"").await
    };
    assert_eq!(get(good.clone()).await.status, StatusCode::OK);
    let rejected = |r: Resp, why: &str| {
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{why}: {r:?}");
        assert!(r.header("www-authenticate").unwrap().contains("error=\"invalid_token\""), "{why}: {r:?}");
        r.json()["errors"][0]["message"].as_str().unwrap().to_string()
    };
    let msg = rejected(get(forge(&claims(SERVICE, -120, TokenUse::Access), SECRET)).await, "expired");
    assert!(msg.contains("expired"), "{msg}");
    let msg = rejected(get(forge(&claims("another-service", 300, TokenUse::Access), SECRET)).await, "audience");
    assert!(msg.contains("another service"), "{msg}");
    rejected(get(forge(&claims(SERVICE, 300, TokenUse::Access), b"some-other-secret-of-32-bytes!!!")).await, "key");
    rejected(get(forge(&claims(SERVICE, 300, TokenUse::Refresh), SECRET)).await, "refresh as access");
    // Tampered: the payload widened to every repository, the signature kept.
    let mut wide = claims(SERVICE, 300, TokenUse::Access);
    wide.access[0].name = "private/x".into();
    let forged = forge(&wide, SECRET);
    let (head, _) = good.rsplit_once('.').unwrap();
    let (_, payload) = head.split_once('.').unwrap();
    let (forged_head, _) = forged.rsplit_once('.').unwrap();
    let (_, forged_payload) = forged_head.split_once('.').unwrap();
    let tampered = good.replace(payload, forged_payload);
    let r = h.send(Method::GET, "/v2/private/x/tags/list", &[("authorization", &bearer(&tampered))], b"").await;
    rejected(r, "tampered");
    rejected(get("not.a.token".into()).await, "garbage");
}

async fn basic_auth_on_registry_routes(h: &Harness) {
    let r = push_with(h, "team/basic", &basic("bob", "bob-pw")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let r = push_with(h, "team/basic", &basic("bob", "wrong")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
    assert!(r.header("www-authenticate").unwrap().starts_with("Bearer realm="));
    let r = push_with(h, "team/basic", &basic("reader", "reader-pw")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");
    assert_eq!(r.code(), "DENIED");
    let reader = basic("reader", "reader-pw");
    let r = h.send(Method::GET, "/v2/team/basic/manifests/v1", &[("authorization", &reader)], b"").await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let r = h.send(Method::GET, "/v2/", &[("authorization", "Digest x")], b"").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
}

async fn public_repositories(h: &Harness) {
    let r = push_with(h, "public/app", &basic("alice", "alice-pw")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    // Without any credentials: pull works, push is challenged.
    let r = h.get("/v2/public/app/manifests/v1").await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let r = push_with(h, "public/app", "").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
    // An anonymous token gets pull on public/* and nothing else.
    let r = token_request(h, None, &["repository:public/app:pull,push", "repository:team/app:pull"]).await;
    let t = r.json()["token"].as_str().unwrap().to_string();
    let auth = bearer(&t);
    let r = h.send(Method::GET, "/v2/public/app/manifests/v1", &[("authorization", &auth)], b"").await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let r = push_with(h, "public/app", &auth).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "anonymous tokens are challenged, to log in: {r:?}");
    let r = h.send(Method::GET, "/v2/team/app/tags/list", &[("authorization", &auth)], b"").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
}

async fn mount_needs_pull_on_from(h: &Harness) {
    let alice = basic("alice", "alice-pw");
    let layer = random_bytes(1000, 7);
    let digest = sha256(&layer);
    let uri = format!("/v2/private/src/blobs/uploads/?digest={digest}");
    let r = h.send(Method::POST, &uri, &[("authorization", &alice)], &layer).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    // bob may push to team/dst but not pull private/src: the mount becomes a plain upload.
    let uri = format!("/v2/team/dst/blobs/uploads/?mount={digest}&from=private/src");
    let r = h.send(Method::POST, &uri, &[("authorization", &basic("bob", "bob-pw"))], b"").await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
    let r = h.send(Method::HEAD, &format!("/v2/team/dst/blobs/{digest}"), &[("authorization", &alice)], b"").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r:?}");
    // alice may pull private/src: mounted.
    let r = h.send(Method::POST, &uri, &[("authorization", &alice)], b"").await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    // With a token for the target only, alice is asked to get one that covers the source too…
    let t = token(h, Some(("alice", "alice-pw")), &["repository:team/dst2:pull,push"]).await;
    let uri = format!("/v2/team/dst2/blobs/uploads/?mount={digest}&from=private/src");
    let r = h.send(Method::POST, &uri, &[("authorization", &bearer(&t))], b"").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
    let challenge = r.header("www-authenticate").unwrap();
    assert!(challenge.contains("scope=\"repository:team/dst2:pull,push repository:private/src:pull\""), "{challenge}");
    // …with which the mount happens.
    let t =
        token(h, Some(("alice", "alice-pw")), &["repository:team/dst2:pull,push", "repository:private/src:pull"]).await;
    let r = h.send(Method::POST, &uri, &[("authorization", &bearer(&t))], b"").await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    // bob's token lacks the source, and the policy would not grant it: a plain upload, no challenge.
    let t = token(h, Some(("bob", "bob-pw")), &["repository:team/dst:pull,push"]).await;
    let uri = format!("/v2/team/dst/blobs/uploads/?mount={digest}&from=private/src");
    let r = h.send(Method::POST, &uri, &[("authorization", &bearer(&t))], b"").await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
}

async fn catalog_lists_what_the_caller_may_pull(h: &Harness) {
    let names = |r: Resp| -> Vec<String> {
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        serde_json::from_value(r.json()["repositories"].clone()).unwrap()
    };
    let alice =
        names(h.send(Method::GET, "/v2/_catalog", &[("authorization", &basic("alice", "alice-pw"))], b"").await);
    assert!(alice.contains(&"team/basic".to_string()) && alice.contains(&"public/app".to_string()), "{alice:?}");
    let t = token(h, None, &["registry:catalog:*"]).await;
    let anonymous = names(h.send(Method::GET, "/v2/_catalog", &[("authorization", &bearer(&t))], b"").await);
    assert_eq!(anonymous, vec!["public/app".to_string()]);
    let t = token(h, Some(("bob", "bob-pw")), &["registry:catalog:*"]).await;
    let auth = bearer(&t);
    let bob = names(h.send(Method::GET, "/v2/_catalog", &[("authorization", &auth)], b"").await);
    assert!(bob.iter().all(|n| n.starts_with("team/") || n.starts_with("public/")), "{bob:?}");
    assert!(bob.contains(&"team/basic".to_string()), "{bob:?}");
    // Pages are filled past invisible entries.
    let page = names(h.send(Method::GET, "/v2/_catalog?n=1", &[("authorization", &auth)], b"").await);
    assert_eq!(page.len(), 1);
}

async fn oauth2_password_and_refresh(h: &Harness) {
    let form = format!(
        "grant_type=password&username=bob&password=bob-pw&service={SERVICE}&client_id=docker&access_type=offline\
         &scope=repository%3Ateam%2Fapp%3Apull%2Cpush+repository%3Aprivate%2Fx%3Apull"
    );
    let ct = [("content-type", "application/x-www-form-urlencoded")];
    let r = h.send(Method::POST, "/token", &ct, form.as_bytes()).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let body = r.json();
    assert_eq!(body["scope"], "repository:team/app:pull,push");
    assert_eq!(body["token_type"], "Bearer");
    let refresh = body["refresh_token"].as_str().unwrap().to_string();
    // A refresh token is not an access token.
    let r = h.send(Method::GET, "/v2/", &[("authorization", &bearer(&refresh))], b"").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
    let form = format!(
        "grant_type=refresh_token&refresh_token={refresh}&service={SERVICE}&scope=repository%3Ateam%2Fapp%3Apull"
    );
    let r = h.send(Method::POST, "/token", &ct, form.as_bytes()).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let access = r.json()["access_token"].as_str().unwrap().to_string();
    let r = h.send(Method::GET, "/v2/team/app/tags/list", &[("authorization", &bearer(&access))], b"").await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let r = h.send(Method::POST, "/token", &ct, b"grant_type=refresh_token&refresh_token=junk").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
    let r = h.send(Method::POST, "/token", &ct, b"grant_type=password&username=bob&password=nope").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
    let r = h.send(Method::POST, "/token", &ct, b"grant_type=client_credentials").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
}

/// Failed logins from one address are answered TOOMANYREQUESTS after a few, with Retry-After;
/// other addresses are unaffected.
#[tokio::test]
async fn failed_logins_are_throttled() {
    let store: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let registry = Registry::new(store.clone(), config()).with_auth(auth());
    let send = |ip: &str, creds: String| {
        let mut request = http::Request::builder().method(Method::GET).uri("/v2/").header("authorization", creds);
        request.extensions_mut().unwrap().insert(berth_core::http::ClientAddr(ip.parse().unwrap()));
        let body: berth_core::http::RequestBody = Box::pin(futures_util::stream::empty());
        registry.handle(request.body(body).unwrap())
    };
    for _ in 0..5 {
        assert_eq!(send("192.0.2.1", basic("alice", "guess")).await.status(), StatusCode::UNAUTHORIZED);
    }
    let r = send("192.0.2.1", basic("alice", "alice-pw")).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(send("192.0.2.2", basic("alice", "alice-pw")).await.status(), StatusCode::OK);
}

/// A policy source the test edits.
struct Editable(std::sync::Mutex<String>);

#[async_trait::async_trait]
impl PolicySource for Editable {
    async fn read(&self) -> Result<String, String> {
        Ok(self.0.lock().unwrap().clone())
    }
}

/// The policy is read again while the registry runs: a grant applies, a broken document is
/// ignored, a removed user can no longer log in (the cache of checked passwords notwithstanding).
#[tokio::test]
async fn policy_changes_apply_without_a_restart() {
    let hash = bcrypt::hash("bob-pw", 4).unwrap();
    let users = format!("[users]\nbob = \"{hash}\"\n");
    let rule =
        |actions: &str| format!("[[rules]]\nrepositories = [\"**\"]\nwho = [\"user:bob\"]\nactions = {actions}\n");
    let source = Arc::new(Editable(std::sync::Mutex::new(format!("{users}{}", rule("[\"pull\"]")))));
    let store: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let auth = Auth::new(AuthConfig {
        policy: Policy::parse(&source.0.lock().unwrap()).unwrap(),
        secret: SECRET.to_vec(),
        service: SERVICE.into(),
        token_ttl: Duration::from_secs(300),
        refresh_ttl: Duration::from_secs(3600),
        reload: Some((source.clone(), Duration::ZERO)),
    })
    .unwrap();
    let h = Harness::over(Registry::new(store.clone(), config()).with_auth(auth), store);
    let bob = basic("bob", "bob-pw");
    let push = || push_with(&h, "team/app", &bob);
    // Each request starts a reload in the background; the one after sees its result.
    let settle = || async {
        h.send(Method::GET, "/v2/", &[("authorization", &bob)], b"").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    assert_eq!(push().await.status, StatusCode::FORBIDDEN);
    *source.0.lock().unwrap() = format!("{users}{}", rule("[\"pull\", \"push\"]"));
    settle().await;
    assert_eq!(push().await.status, StatusCode::CREATED);

    *source.0.lock().unwrap() = "[[rules]]\nthis is not toml".into();
    settle().await;
    assert_eq!(push().await.status, StatusCode::CREATED, "a broken policy must not replace the one in force");

    *source.0.lock().unwrap() = String::new();
    settle().await;
    let r = push().await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "a removed user still logs in: {r:?}");
}
