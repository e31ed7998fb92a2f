//! Uploads handed to an upload host (`--upload-url`): the upload POST at the registry (here with
//! Lambda's body limit) answers a `Location` on the host carrying a capability for the session;
//! the host (another registry over the same storage, secret and policy) takes the session's
//! PATCH, PUT, GET and DELETE with that capability and no credentials. Tampered, expired, another
//! repository's and another session's capabilities are refused with 401 and write nothing; the
//! capability opens nothing but its session; credentials keep working.

use std::sync::Arc;
use std::time::Duration;

use berth_core::{Config, Registry};
use berth_storage::{MemoryStorage, Storage};
use http::{Method, StatusCode};

use super::auth::{auth, basic};
use super::{Harness, Resp, config};
use crate::common::{random_bytes, sha256};

const HOST: &str = "https://uploads.example.com";

/// The registry clients talk to (Lambda's body limit, uploads handed to [`HOST`]), and the
/// upload host, over one store.
fn deployment() -> (Harness, Harness) {
    let store: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let front = Config { max_body: Some(4_500_000), upload_url: Some(HOST.into()), ..config() };
    let front = Harness::over(Registry::new(store.clone(), front).with_auth(auth()), store.clone());
    let host = Harness::over(Registry::new(store.clone(), config()).with_auth(auth()), store);
    (front, host)
}

/// Starts a session of `name` at the front as bob; returns the Location's path and query.
async fn start(front: &Harness, name: &str) -> String {
    let bob = basic("bob", "bob-pw");
    let r = front.send(Method::POST, &format!("/v2/{name}/blobs/uploads/"), &[("authorization", &bob)], b"").await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
    assert_eq!(r.header("oci-chunk-min-length"), None, "no chunking is asked for with an upload host");
    let location = r.location();
    let path =
        location.strip_prefix(HOST).unwrap_or_else(|| panic!("the Location is not on the upload host: {location}"));
    assert!(path.starts_with(&format!("/v2/{name}/blobs/uploads/")) && path.contains("?_state="), "{location}");
    path.to_string()
}

fn with_digest(location: &str, digest: &str) -> String {
    format!("{location}{}digest={digest}", if location.contains('?') { '&' } else { '?' })
}

fn assert_refused(r: &Resp, why: &str) {
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{why}: {r:?}");
    assert_eq!(r.code(), "UNAUTHORIZED", "{why}");
    assert!(r.header("www-authenticate").is_some_and(|c| c.starts_with("Bearer ")), "{why}: {r:?}");
}

#[tokio::test]
async fn the_upload_host_takes_the_session_with_its_capability_alone() {
    let (front, host) = deployment();
    let data = random_bytes(6 * 1024 * 1024 + 11, 71);
    let digest = sha256(&data);
    let location = start(&front, "team/app").await;

    // A body over Lambda's limit, without credentials, as docker sends it to another host.
    let r = host.send(Method::PATCH, &location, &[], &data).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
    assert_eq!(r.header("range"), Some(format!("0-{}", data.len() - 1).as_str()));
    let next = r.location();
    assert!(next.contains("?_state="), "the next Location keeps a capability: {next}");
    let r = host.send(Method::GET, &next, &[], b"").await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{r:?}");
    let r = host.send(Method::PUT, &with_digest(&next, &digest), &[], b"").await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");

    let bob = basic("bob", "bob-pw");
    let r = front.send(Method::GET, &format!("/v2/team/app/blobs/{digest}"), &[("authorization", &bob)], b"").await;
    assert_eq!((r.status, r.body.as_ref()), (StatusCode::OK, data.as_slice()));

    // containerd's way: one PUT with the whole body on the POST's Location.
    let data = random_bytes(5_000_000, 72);
    let digest = sha256(&data);
    let location = start(&front, "team/app").await;
    let r = host.send(Method::PUT, &with_digest(&location, &digest), &[], &data).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert_eq!(host.open_uploads().await, Vec::<String>::new(), "sessions end");
}

#[tokio::test]
async fn capabilities_for_anything_else_are_refused_and_write_nothing() {
    let (front, host) = deployment();
    let location = start(&front, "team/app").await;
    let (path, capability) = location.split_once("?_state=").unwrap();
    let id = path.rsplit('/').next().unwrap();
    let other = start(&front, "team/app").await;
    let other_id = other.split_once('?').unwrap().0.rsplit('/').next().unwrap().to_string();
    let before = host.keys("").await;
    let body = random_bytes(1000, 73);

    let mut tampered = capability.to_string();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let expired = auth().upload_capability("team/app", id, Duration::ZERO);
    for (uri, why) in [
        (format!("{path}?_state={tampered}"), "a tampered capability"),
        (format!("{path}?_state={expired}"), "an expired capability"),
        (format!("/v2/team/other/blobs/uploads/{id}?_state={capability}"), "another repository's"),
        (format!("/v2/team/app/blobs/uploads/{other_id}?_state={capability}"), "another session's"),
        (format!("{path}?_state=junk"), "a malformed capability"),
        (path.to_string(), "none"),
    ] {
        assert_refused(&host.send(Method::PATCH, &uri, &[], &body).await, why);
        assert_refused(&host.send(Method::PUT, &with_digest(&uri, &sha256(&body)), &[], &body).await, why);
        assert_refused(&host.send(Method::DELETE, &uri, &[], b"").await, why);
    }
    let r = host.send(Method::PATCH, &format!("{path}?_state={expired}"), &[], &body).await;
    assert!(r.json()["errors"][0]["message"].as_str().unwrap().contains("expired"), "{r:?}");
    assert_eq!(host.keys("").await, before, "a refused request wrote something");

    // The capability opens its session only: not the repository's other routes.
    let q = format!("?_state={capability}");
    assert_refused(&host.send(Method::POST, &format!("/v2/team/app/blobs/uploads/{q}"), &[], b"").await, "POST");
    assert_refused(&host.get(&format!("/v2/team/app/tags/list{q}")).await, "tags");
    let digest = sha256(b"x");
    assert_refused(&host.get(&format!("/v2/team/app/blobs/{digest}{q}")).await, "blob");

    // Credentials keep working without a capability; the session is intact.
    let bob = basic("bob", "bob-pw");
    let r = host.send(Method::PATCH, path, &[("authorization", &bob)], &body).await;
    assert_eq!((r.status, r.header("range")), (StatusCode::ACCEPTED, Some("0-999")), "{r:?}");
}

#[tokio::test]
async fn without_an_upload_host_lambda_refuses_large_bodies_and_says_how_to_fix_it() {
    let store: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    let lambda = Harness::over(Registry::new(store.clone(), Config { max_body: Some(4_500_000), ..config() }), store);
    let r = lambda.send(Method::POST, "/v2/a/blobs/uploads/", &[], b"").await;
    assert_eq!(r.header("oci-chunk-min-length"), Some("4500000"));
    let location = r.location();
    assert!(location.starts_with("/v2/a/blobs/uploads/") && !location.contains('?'), "{location}");
    let r = lambda.send(Method::PATCH, &location, &[], &random_bytes(4_500_001, 74)).await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID"));
    let message = r.json()["errors"][0]["message"].as_str().unwrap().to_string();
    assert!(message.contains("BERTH_UPLOAD_URL") && message.contains("Content-Range"), "{message}");
}
