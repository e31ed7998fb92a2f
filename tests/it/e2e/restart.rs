//! Upload sessions outlive the server process: 12 MiB streamed into a session (one full 8 MiB
//! part and a pending tail), the server stopped with SIGTERM, a new process on the same root
//! reports the session's progress, takes a `Content-Range` chunk and finishes the blob — with a
//! sha256 digest (verified from the saved hash state) and a sha512 one (verified by reading
//! the bytes back).

use bytes::Bytes;
use reqwest::{Method, StatusCode};
use tempfile::TempDir;

use super::server::Server;
use crate::common::{http, random_bytes, sha256, sha512};

const FIRST: usize = 12 << 20;
const SECOND: usize = (3 << 20) + 4321;
const OCTET_STREAM: (&str, &str) = ("content-type", "application/octet-stream");

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header in {:?}", r.headers()))
        .to_string()
}

/// Sends a request; panics unless it answers `expected`.
async fn send(
    server: &Server,
    method: Method,
    path: &str,
    body: reqwest::Body,
    headers: &[(&str, &str)],
    expected: StatusCode,
) -> reqwest::Response {
    let mut request = http().request(method.clone(), server.url(path)).body(body);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let r = request.send().await.unwrap_or_else(|e| panic!("{method} {path} failed: {e}"));
    if r.status() != expected {
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        panic!("{method} {path}: expected {expected}, got {status}: {body}");
    }
    r
}

/// `data` as a chunked body of 1 MiB pieces (no Content-Length, no Content-Range).
fn streamed(data: &[u8]) -> reqwest::Body {
    let chunks: Vec<Result<Bytes, std::io::Error>> =
        data.chunks(1 << 20).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    reqwest::Body::wrap_stream(futures_util::stream::iter(chunks))
}

/// Uploads `first` to a session, restarts the server on the same root, uploads `second` and
/// finishes with `digest` (of both); checks what a client then reads.
async fn upload_across_restart(repo: &str, first: &[u8], second: &[u8], digest: &str) {
    let root = TempDir::with_prefix("berth-e2e-restart-").unwrap();
    let server = Server::start_on(root.path());
    let r = send(
        &server,
        Method::POST,
        &format!("/v2/{repo}/blobs/uploads/"),
        reqwest::Body::from(""),
        &[],
        StatusCode::ACCEPTED,
    )
    .await;
    let location = header(&r, "location");
    assert!(location.starts_with(&format!("/v2/{repo}/blobs/uploads/")), "Location {location}");

    let r = send(&server, Method::PATCH, &location, streamed(first), &[OCTET_STREAM], StatusCode::ACCEPTED).await;
    assert_eq!(header(&r, "range"), format!("0-{}", first.len() - 1));
    let (status, log) = server.stop();
    assert!(status.success(), "berth did not exit cleanly on SIGTERM ({status}):\n{log}");
    assert!(log.contains("berth stopped"), "no graceful shutdown in the log:\n{log}");
    // The scenario's precondition, from the fs layout of `uploads/<id>/state` (berth_core::keys):
    // the stopped process left a full part and a pending tail behind.
    // The session is stored under the id its sealed URL starts with.
    let id = location.rsplit('/').next().unwrap().split('.').next().unwrap();
    let state = std::fs::read(root.path().join("uploads").join(id).join("state")).expect("the session's state");
    let state: serde_json::Value = serde_json::from_slice(&state).unwrap();
    assert_eq!(state["parts"].as_array().map(Vec::len), Some(1), "expected one 8 MiB part: {state}");
    assert!(state["pending"].is_string(), "expected a pending tail: {state}");

    // A new process knows the session only from storage.
    let server = Server::start_on(root.path());
    let r = send(&server, Method::GET, &location, reqwest::Body::from(""), &[], StatusCode::NO_CONTENT).await;
    assert_eq!(header(&r, "range"), format!("0-{}", first.len() - 1));
    assert_eq!(header(&r, "location"), format!("/v2/{repo}/blobs/uploads/{id}"));

    let total = first.len() + second.len();
    let (range, length) = (format!("{}-{}", first.len(), total - 1), second.len().to_string());
    let r = send(
        &server,
        Method::PATCH,
        &location,
        Bytes::copy_from_slice(second).into(),
        &[OCTET_STREAM, ("content-range", &range), ("content-length", &length)],
        StatusCode::ACCEPTED,
    )
    .await;
    assert_eq!(header(&r, "range"), format!("0-{}", total - 1));

    let finish = format!("{location}?digest={digest}");
    let r = send(&server, Method::PUT, &finish, reqwest::Body::from(""), &[], StatusCode::CREATED).await;
    let blob = format!("/v2/{repo}/blobs/{digest}");
    assert_eq!(header(&r, "location"), blob);
    assert_eq!(header(&r, "docker-content-digest"), digest);

    let r = send(&server, Method::HEAD, &blob, reqwest::Body::from(""), &[], StatusCode::OK).await;
    assert_eq!(header(&r, "content-length"), total.to_string());
    let r = send(&server, Method::GET, &blob, reqwest::Body::from(""), &[], StatusCode::OK).await;
    assert_eq!(header(&r, "docker-content-digest"), digest);
    let body = r.bytes().await.expect("blob body");
    assert_eq!(body.len(), total);
    assert!(
        body[..first.len()] == *first && body[first.len()..] == *second,
        "the blob's bytes differ from the uploaded ones"
    );

    // The session is over: its URL is unknown now.
    let r = send(&server, Method::GET, &location, reqwest::Body::from(""), &[], StatusCode::NOT_FOUND).await;
    let error: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(error["errors"][0]["code"], "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn upload_continues_on_a_new_process_sha256() {
    let (first, second) = (random_bytes(FIRST, 11), random_bytes(SECOND, 12));
    let digest = sha256(&[first.as_slice(), &second].concat());
    upload_across_restart("e2e/restart", &first, &second, &digest).await;
}

#[tokio::test]
async fn upload_continues_on_a_new_process_sha512() {
    let (first, second) = (random_bytes(FIRST, 13), random_bytes(SECOND, 14));
    let digest = sha512(&[first.as_slice(), &second].concat());
    upload_across_restart("e2e/restart", &first, &second, &digest).await;
}
