//! The web UI and CORS, in-process: what each page shows (repositories, tags, an image's layers,
//! config and history, an index's platforms, referrers), escaping of what users pushed, the
//! storage calls each page costs, signing in and out with the registry's users, who sees what and
//! who may delete, deleting a tag or a manifest, the refusal of forms from other sites, the
//! assets and their headers; CORS preflights and headers for listed origins only.

use std::sync::Arc;
use std::time::Duration;

use berth_auth::{Auth, AuthConfig, Policy};
use berth_core::Registry;
use berth_storage::{MemoryStorage, Storage};
use berth_web::SiteConfig;
use http::{Method, StatusCode};
use serde_json::json;

use super::{Harness, Resp, config};
use crate::common::{OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST, random_bytes, sha256};

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");
const SAME_ORIGIN: (&str, &str) = ("origin", "http://localhost");

fn open() -> Harness {
    let store: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    Harness::over(Registry::new(store.clone(), config()), store)
}

/// alice may do everything in `team/**`; bob may pull there; anonymous may pull `public/*`.
fn with_users() -> Harness {
    let store: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    Harness::over(registry_with_users(&store), store)
}

fn registry_with_users(store: &Arc<dyn Storage>) -> Registry {
    let hash = |pw: &str| bcrypt::hash(pw, 4).unwrap();
    let policy = Policy::parse(&format!(
        "[users]\nalice = \"{}\"\nbob = \"{}\"\n\
         [[rules]]\nrepositories = [\"team/**\"]\nwho = [\"user:alice\"]\nactions = [\"*\"]\n\
         [[rules]]\nrepositories = [\"team/**\"]\nwho = [\"user:bob\"]\nactions = [\"pull\"]\n\
         [[rules]]\nrepositories = [\"public/*\"]\nwho = [\"anonymous\", \"user:alice\"]\nactions = [\"pull\", \"push\"]\n",
        hash("alice-pw"),
        hash("bob-pw")
    ))
    .unwrap();
    let auth = Auth::new(AuthConfig {
        policy,
        secret: b"0123456789abcdef0123456789abcdef-ui".to_vec(),
        service: "berth-ui-test".into(),
        token_ttl: Duration::from_secs(300),
        refresh_ttl: Duration::from_secs(3600),
        reload: None,
    })
    .unwrap();
    Registry::new(store.clone(), config()).with_auth(auth)
}

fn text(r: &Resp) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

/// An image for `arch` with one layer, and a config with a label and a build history; its
/// manifest's bytes. `auth`: the Authorization header to push with.
async fn image(h: &Harness, name: &str, arch: &str, label: &str, auth: &[(&str, &str)]) -> Vec<u8> {
    let layer = random_bytes(3000, arch.len() as u64 + label.len() as u64);
    let config = serde_json::to_vec(&json!({
        "architecture": arch, "os": "linux", "created": "2026-01-02T03:04:05Z",
        "config": {"Env": ["PATH=/usr/bin"], "Entrypoint": ["/app"], "Cmd": ["--serve", "a b"],
                   "Labels": {"org.opencontainers.image.title": label}},
        "history": [{"created_by": "COPY app /app # buildkit", "created": "2026-01-02T03:04:05Z"},
                    {"created_by": "ENTRYPOINT [\"/app\"]", "empty_layer": true}],
        "rootfs": {"type": "layers", "diff_ids": [sha256(&layer)]},
    }))
    .unwrap();
    for blob in [&layer, &config] {
        let digest = sha256(blob);
        let uri = format!("/v2/{name}/blobs/uploads/?digest={digest}");
        assert_eq!(h.send(Method::POST, &uri, auth, blob).await.status, StatusCode::CREATED);
    }
    serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(&config), "size": config.len()},
        "layers": [{"mediaType": OCI_LAYER, "digest": sha256(&layer), "size": layer.len()}],
    }))
    .unwrap()
}

async fn put(h: &Harness, name: &str, reference: &str, media_type: &str, body: &[u8], auth: &[(&str, &str)]) -> String {
    let mut headers = vec![("content-type", media_type)];
    headers.extend_from_slice(auth);
    let r = h.send(Method::PUT, &format!("/v2/{name}/manifests/{reference}"), &headers, body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    sha256(body)
}

/// team/app (v1 and latest on one manifest, v2), team/multi (an index of two platforms and an
/// attestation), a signature referring to team/app:v1, and public/tool. Returns v1's digest.
async fn populate(h: &Harness, auth: &[(&str, &str)]) -> String {
    let v1 = image(h, "team/app", "amd64", "<script>alert('label')</script>", auth).await;
    let v1_digest = put(h, "team/app", "v1", OCI_MANIFEST, &v1, auth).await;
    put(h, "team/app", "latest", OCI_MANIFEST, &v1, auth).await;
    let v2 = image(h, "team/app", "amd64", "second", auth).await;
    put(h, "team/app", "v2", OCI_MANIFEST, &v2, auth).await;

    let mut entries = Vec::new();
    for (arch, variant) in [("amd64", None), ("arm64", Some("v8"))] {
        let child = image(h, "team/multi", arch, arch, auth).await;
        let digest = put(h, "team/multi", &sha256(&child), OCI_MANIFEST, &child, auth).await;
        let mut platform = json!({"os": "linux", "architecture": arch});
        if let Some(v) = variant {
            platform["variant"] = json!(v);
        }
        entries.push(json!({"mediaType": OCI_MANIFEST, "digest": digest, "size": child.len(), "platform": platform}));
    }
    let attestation = image(h, "team/multi", "unknown", "attestation", auth).await;
    let digest = put(h, "team/multi", &sha256(&attestation), OCI_MANIFEST, &attestation, auth).await;
    entries.push(json!({"mediaType": OCI_MANIFEST, "digest": digest, "size": attestation.len(),
        "platform": {"os": "unknown", "architecture": "unknown"},
        "annotations": {"vnd.docker.reference.type": "attestation-manifest"}}));
    let index = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})).unwrap();
    put(h, "team/multi", "1.0", OCI_INDEX, &index, auth).await;

    // A signature of team/app:v1 (an artifact with a subject).
    let empty = b"{}";
    let sig = b"signature bytes";
    for blob in [empty.as_slice(), sig.as_slice()] {
        let uri = format!("/v2/team/app/blobs/uploads/?digest={}", sha256(blob));
        assert_eq!(h.send(Method::POST, &uri, auth, blob).await.status, StatusCode::CREATED);
    }
    let signature = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256(empty), "size": 2},
        "layers": [{"mediaType": "application/octet-stream", "digest": sha256(sig), "size": sig.len()}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": v1_digest, "size": v1.len()},
    }))
    .unwrap();
    put(h, "team/app", &sha256(&signature), OCI_MANIFEST, &signature, auth).await;

    let tool = image(h, "public/tool", "amd64", "tool", auth).await;
    put(h, "public/tool", "stable", OCI_MANIFEST, &tool, auth).await;
    v1_digest
}

#[tokio::test]
async fn pages_show_repositories_tags_images_indexes_and_referrers_at_a_bounded_cost() {
    let h = open();
    let v1 = populate(&h, &[]).await;
    h.take_calls();

    let home = h.get("/").await;
    assert_eq!(home.status, StatusCode::OK);
    assert_eq!(home.header("content-type"), Some("text/html; charset=utf-8"));
    let csp = home.header("content-security-policy").unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'") && !csp.contains("unsafe"),
        "{csp}"
    );
    let page = text(&home);
    for repo in ["public/tool", "team/app", "team/multi"] {
        assert!(page.contains(&format!("<a href=\"/r/{repo}\">{repo}</a>")), "{repo} missing:\n{page}");
    }
    assert!(!page.contains("Sign in"), "an open registry has no sign-in");
    let home_calls = h.take_calls();
    assert_eq!(home_calls, 1 + 3, "one catalog listing and one tag listing per repository");

    let filtered = text(&h.get("/?q=team%2Fm").await);
    assert!(filtered.contains("team/multi") && !filtered.contains("team/app") && !filtered.contains("public/tool"));
    h.take_calls();

    let repo = h.get("/r/team/app").await;
    assert_eq!(repo.status, StatusCode::OK);
    let page = text(&repo);
    assert!(page.contains("3 tags"), "{page}");
    for tag in ["v1", "latest", "v2"] {
        assert!(page.contains(&format!("href=\"/r/team/app/-/{tag}\"")), "{tag}");
    }
    assert!(page.contains("linux/amd64") && page.contains("OCI image"), "{page}");
    assert!(page.contains(&v1[7..19]), "the short digest of v1");
    assert!(page.contains("docker pull localhost/team/app"), "{page}");
    assert!(page.contains("/r/team/app/-/v1/delete"), "an open registry lets everyone delete");
    let repo_calls = h.take_calls();
    assert_eq!(repo_calls, 1 + 3 * 2, "a tag listing, and per tag its record and its config");
    let by_name = text(&h.get("/r/team/app?sort=name").await);
    let (l, v1_at, v2_at) = (by_name.find(">latest<"), by_name.find(">v1<"), by_name.find(">v2<"));
    assert!(l < v1_at && v1_at < v2_at, "sorted by name");
    let by_push = text(&h.get("/r/team/app").await);
    assert!(by_push.find(">v2<") < by_push.find(">v1<"), "newest first");
    h.take_calls();

    let image = h.get("/r/team/app/-/v1").await;
    assert_eq!(image.status, StatusCode::OK);
    let page = text(&image);
    assert!(page.contains(&format!("<code id=\"digest\">{v1}</code>")), "{page}");
    assert!(
        page.contains("docker pull localhost/team/app:v1")
            && page.contains(&format!("docker pull localhost/team/app@{v1}"))
    );
    assert!(page.contains("id=\"layers\"") && page.contains("application/vnd.oci.image.layer.v1.tar"), "{page}");
    assert!(
        page.contains("<code>/app</code>") && page.contains("--serve &#34;a b&#34;"),
        "entrypoint and command:\n{page}"
    );
    assert!(page.contains("COPY app /app # buildkit") && page.contains("no layer"), "history:\n{page}");
    assert!(page.contains("PATH=/usr/bin"));
    // What users pushed is escaped, never markup.
    assert!(!page.contains("<script>alert"), "{page}");
    assert!(page.contains("&#60;script&#62;alert(&#39;label&#39;)&#60;/script&#62;"), "{page}");
    assert!(page.contains("application/vnd.dev.cosign.artifact.sig.v1+json"), "the signature is a referrer:\n{page}");
    let image_calls = h.take_calls();
    assert_eq!(image_calls, 4, "the record, the config, the referrers listing and the referrer");

    let index_page = h.get("/r/team/multi/-/1.0").await;
    let index = text(&index_page);
    assert!(index.contains("OCI index") && index.contains("id=\"platforms\""), "{index}");
    assert!(
        index.contains(">linux/amd64<") && index.contains(">linux/arm64/v8<") && index.contains(">attestation<"),
        "{index}"
    );
    let index_calls = h.take_calls();
    assert_eq!(index_calls, 1 + 3 + 1, "the record, each entry's record, the referrers listing");
    let multi = text(&h.get("/r/team/multi").await);
    assert!(multi.contains("linux/amd64, linux/arm64/v8"), "platforms of the index, not its attestation:\n{multi}");
    let multi_calls = h.take_calls();
    assert_eq!(multi_calls, 1 + 1 + 2, "a tag listing, the index, its platforms' records");

    // HEAD answers like GET, without a body.
    let head = h.head("/r/team/app/-/v1").await;
    assert_eq!((head.status, head.body.len()), (StatusCode::OK, 0));
    eprintln!(
        "storage calls per page: repositories (3) {home_calls}, repository (3 tags) {repo_calls}, image {image_calls}, index (3 entries) {index_calls}, repository of one index {multi_calls}"
    );
    let confirm = h.get("/r/team/app/-/v1/delete").await;
    assert_eq!(confirm.status, StatusCode::OK);
    let weights = [
        ("/", home.body.len()),
        ("/r/team/app", repo.body.len()),
        ("/r/team/app/-/v1", image.body.len()),
        ("/r/team/multi/-/1.0", index_page.body.len()),
        ("/r/team/app/-/v1/delete", confirm.body.len()),
    ];
    for (path, bytes) in weights {
        eprintln!("page weight {path}: {bytes} bytes of HTML");
    }
}

#[tokio::test]
async fn unknown_things_are_404_pages_and_bad_methods_405() {
    let h = open();
    populate(&h, &[]).await;
    for path in [
        "/r/nope/app",
        "/r/team/app/-/nope",
        "/r/team/app/-/sha256:0000000000000000000000000000000000000000000000000000000000000000",
        "/-/nothing",
        "/r/team/app/-/v1/extra",
    ] {
        let r = h.get(path).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {r:?}");
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"), "{path}");
    }
    let r = h.get("/r/UPPER/case").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "an invalid name");
    assert!(text(&r).contains("invalid repository name"));
    assert_eq!(h.send(Method::PUT, "/", &[], b"").await.status, StatusCode::METHOD_NOT_ALLOWED);
    // The registry API is unchanged beside the UI.
    assert_eq!(h.get("/v2/").await.status, StatusCode::OK);
    assert_eq!(h.get("/v2/team/app/tags/list").await.json()["tags"], json!(["latest", "v1", "v2"]));
}

#[tokio::test]
async fn assets_are_cached_for_a_year_and_only_at_their_current_hash() {
    let h = open();
    let page = text(&h.get("/").await);
    for (file, kind) in [("style.css", "text/css"), ("ui.js", "text/javascript")] {
        let href = page
            .match_indices("/-/static/")
            .filter_map(|(at, _)| page[at..].split('"').next())
            .find(|href| href.ends_with(file))
            .unwrap_or_else(|| panic!("no link to {file}:\n{page}"));
        let r = h.get(href).await;
        assert_eq!(r.status, StatusCode::OK, "{href}");
        assert!(r.header("content-type").unwrap().starts_with(kind));
        assert_eq!(r.header("cache-control"), Some("public, max-age=31536000, immutable"));
        assert!(!r.body.is_empty());
        let stale = h.get(&format!("/-/static/000000000000/{file}")).await;
        assert_eq!(stale.status, StatusCode::NOT_FOUND);
    }
}

/// Signs in through the form; the session cookie.
async fn sign_in(h: &Harness, user: &str, password: &str) -> String {
    let body = format!("user={user}&password={password}&next=%2Fr%2Fteam%2Fapp");
    let r = h.send(Method::POST, "/-/login", &[FORM, SAME_ORIGIN], body.as_bytes()).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", text(&r));
    assert_eq!(r.header("location"), Some("/r/team/app"));
    let cookie = r.header("set-cookie").unwrap().to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.contains("Path=/"), "{cookie}");
    cookie.split(';').next().unwrap().to_string()
}

#[tokio::test]
async fn visitors_see_what_the_policy_lets_them_pull_and_sign_in_with_the_registrys_users() {
    let h = with_users();
    let alice = super::auth::basic("alice", "alice-pw");
    populate(&h, &[("authorization", alice.as_str())]).await;

    // Anonymous: public repositories only; team pages send to the sign-in.
    let home = text(&h.get("/").await);
    assert!(home.contains("public/tool") && !home.contains("team/app"), "{home}");
    assert!(home.contains("id=\"login\""));
    let r = h.get("/r/team/app").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.header("location"), Some("/-/login?next=%2Fr%2Fteam%2Fapp"));
    assert_eq!(h.get("/r/team/app/-/v1").await.status, StatusCode::SEE_OTHER);
    let tool = text(&h.get("/r/public/tool").await);
    assert!(tool.contains("stable") && !tool.contains("/delete"), "anonymous may not delete:\n{tool}");
    assert_eq!(h.get("/r/public/tool/-/stable/delete").await.status, StatusCode::SEE_OTHER, "to the sign-in");

    // The sign-in form: wrong password, then right.
    let login = h.get("/-/login?next=%2Fr%2Fteam%2Fapp").await;
    assert_eq!(login.status, StatusCode::OK);
    assert!(text(&login).contains("value=\"/r/team/app\""));
    let wrong = h.send(Method::POST, "/-/login", &[FORM, SAME_ORIGIN], b"user=alice&password=nope&next=%2F").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(text(&wrong).contains("Wrong user name or password") && wrong.header("set-cookie").is_none());
    let elsewhere = h
        .send(
            Method::POST,
            "/-/login",
            &[FORM, SAME_ORIGIN],
            b"user=alice&password=alice-pw&next=https%3A%2F%2Fevil.example.com",
        )
        .await;
    assert_eq!(elsewhere.header("location"), Some("/"), "never sent to another site after signing in");

    let bob = sign_in(&h, "bob", "bob-pw").await;
    let as_bob = |path: &'static str| {
        let bob = bob.clone();
        let h = &h;
        async move { h.send(Method::GET, path, &[("cookie", bob.as_str())], b"").await }
    };
    let home = text(&as_bob("/").await);
    assert!(home.contains("team/app") && home.contains("team/multi") && home.contains(">bob<"), "{home}");
    assert!(home.contains("public/tool"), "what anonymous may pull, users may too:\n{home}");
    let repo = text(&as_bob("/r/team/app").await);
    assert!(repo.contains("v1") && !repo.contains("/delete"), "bob may pull, not delete:\n{repo}");
    let denied = as_bob("/r/team/app/-/v1/delete").await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);

    let alice_cookie = sign_in(&h, "alice", "alice-pw").await;
    let repo = text(&h.send(Method::GET, "/r/team/app", &[("cookie", alice_cookie.as_str())], b"").await);
    assert!(repo.contains("/r/team/app/-/v1/delete"), "alice may delete:\n{repo}");

    // Signing out forgets the cookie.
    let out = h.send(Method::POST, "/-/logout", &[FORM, SAME_ORIGIN, ("cookie", alice_cookie.as_str())], b"").await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    // A forged cookie is anonymous.
    let forged = h.send(Method::GET, "/", &[("cookie", "berth_session=x.y.z")], b"").await;
    assert!(!text(&forged).contains("team/app"));
}

#[tokio::test]
async fn deleting_a_tag_or_a_manifest_says_what_goes_and_refuses_forms_from_elsewhere() {
    let h = with_users();
    let alice = super::auth::basic("alice", "alice-pw");
    let v1 = populate(&h, &[("authorization", alice.as_str())]).await;
    let cookie = sign_in(&h, "alice", "alice-pw").await;
    let c = ("cookie", cookie.as_str());

    let confirm = h.send(Method::GET, "/r/team/app/-/v1/delete", &[c], b"").await;
    assert_eq!(confirm.status, StatusCode::OK);
    let page = text(&confirm);
    assert!(page.contains("<code class=\"other-tag\">latest</code>"), "the other tag on the digest:\n{page}");
    assert!(page.contains(&v1) && page.contains("garbage collection"), "{page}");

    // A form from another site, or with no origin at all, deletes nothing.
    for origin in [vec![("origin", "https://evil.example.com")], vec![]] {
        let mut headers = vec![FORM, c];
        headers.extend(origin);
        let r = h.send(Method::POST, "/r/team/app/-/v1/delete", &headers, b"what=tag").await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
    }
    assert_eq!(h.get("/v2/team/app/tags/list").await.status, StatusCode::UNAUTHORIZED);
    let tags = h.send(Method::GET, "/v2/team/app/tags/list", &[("authorization", alice.as_str())], b"").await;
    assert_eq!(tags.json()["tags"], json!(["latest", "v1", "v2"]));

    // The tag alone: the manifest stays under its other tag.
    let r = h.send(Method::POST, "/r/team/app/-/v1/delete", &[FORM, SAME_ORIGIN, c], b"what=tag").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.header("location"), Some("/r/team/app?deleted=tag+v1"));
    let repo = text(&h.send(Method::GET, "/r/team/app?deleted=tag+v1", &[c], b"").await);
    assert!(repo.contains("Deleted tag v1") && !repo.contains("href=\"/r/team/app/-/v1\""), "{repo}");
    let tags = h.send(Method::GET, "/v2/team/app/tags/list", &[("authorization", alice.as_str())], b"").await;
    assert_eq!(tags.json()["tags"], json!(["latest", "v2"]));

    // The manifest, by the digest the confirmation showed: its tags go with it.
    let body = format!("what=manifest&digest={}", v1.replace(':', "%3A"));
    let r = h.send(Method::POST, "/r/team/app/-/latest/delete", &[FORM, SAME_ORIGIN, c], body.as_bytes()).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", text(&r));
    let tags = h.send(Method::GET, "/v2/team/app/tags/list", &[("authorization", alice.as_str())], b"").await;
    assert_eq!(tags.json()["tags"], json!(["v2"]));
    let gone =
        h.send(Method::GET, &format!("/v2/team/app/manifests/{v1}"), &[("authorization", alice.as_str())], b"").await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);

    // Without the right to delete, the form is refused.
    let bob = sign_in(&h, "bob", "bob-pw").await;
    let r = h
        .send(Method::POST, "/r/team/app/-/v2/delete", &[FORM, SAME_ORIGIN, ("cookie", bob.as_str())], b"what=tag")
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let tags = h.send(Method::GET, "/v2/team/app/tags/list", &[("authorization", alice.as_str())], b"").await;
    assert_eq!(tags.json()["tags"], json!(["v2"]));
}

#[tokio::test]
async fn cors_answers_listed_origins_only_and_preflights_without_credentials() {
    let store: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let registry = registry_with_users(&store);
    let site = SiteConfig { ui: true, cors_origins: vec!["https://ui.example.com".into()], public_url: None };
    let h = Harness::fronted(registry, store, site);

    let preflight = h
        .send(
            Method::OPTIONS,
            "/v2/team/app/manifests/v1",
            &[
                ("origin", "https://ui.example.com"),
                ("access-control-request-method", "DELETE"),
                ("access-control-request-headers", "authorization"),
            ],
            b"",
        )
        .await;
    assert_eq!(preflight.status, StatusCode::NO_CONTENT, "answered before authentication");
    assert_eq!(preflight.header("access-control-allow-origin"), Some("https://ui.example.com"));
    assert!(preflight.header("access-control-allow-methods").unwrap().contains("DELETE"));
    assert_eq!(preflight.header("access-control-allow-headers"), Some("authorization"));

    let r = h.send(Method::GET, "/v2/", &[("origin", "https://ui.example.com")], b"").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.header("access-control-allow-origin"), Some("https://ui.example.com"));
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    let exposed = r.header("access-control-expose-headers").unwrap();
    for header in ["Docker-Content-Digest", "Link", "WWW-Authenticate"] {
        assert!(exposed.contains(header), "{header} is not exposed: {exposed}");
    }

    // Another origin gets nothing to read, and its preflight no permission.
    let other = h.send(Method::GET, "/v2/", &[("origin", "https://evil.example.com")], b"").await;
    assert!(other.header("access-control-allow-origin").is_none());
    let pre = h
        .send(
            Method::OPTIONS,
            "/v2/",
            &[("origin", "https://evil.example.com"), ("access-control-request-method", "GET")],
            b"",
        )
        .await;
    assert!(pre.header("access-control-allow-origin").is_none());
    // Off by default.
    let default = open();
    let r = default.send(Method::GET, "/v2/", &[("origin", "https://ui.example.com")], b"").await;
    assert!(r.header("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn without_the_ui_only_the_api_answers() {
    let store: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let h = Harness::fronted(Registry::new(store.clone(), config()), store, SiteConfig::default());
    let r = h.get("/").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.code(), "NOT_FOUND", "the API's JSON error");
    assert_eq!(h.get("/v2/").await.status, StatusCode::OK);
}
