//! Hostile input over a real socket, as written (no client library to normalize it): encoded
//! `/`, `..` and NUL in names and references, oversized and malformed `Authorization`, `Range`,
//! `Content-Range` and query strings. Every answer is a 4xx, never a 5xx and never a dropped
//! connection; the registry's own refusals carry the spec's error body.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::server::Server;

/// Sends `head` (request line and headers, without the final blank line) and `body`; the
/// status and body of the answer.
fn raw(server: &Server, head: &str, body: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head =
        format!("{head}\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", server.host(), body.len());
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).to_string();
    let status =
        text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no answer to {head:?}: {text:?}"));
    let body = text.split_once("\r\n\r\n").map_or(String::new(), |(_, b)| b.to_string());
    (status, body)
}

#[test]
fn hostile_requests_get_4xx_answers() {
    let server = Server::start();
    // Something to aim at: an upload session.
    let (status, _) = raw(&server, "POST /v2/ok/blobs/uploads/ HTTP/1.1", b"");
    assert_eq!(status, 202);
    let long = "A".repeat(60_000);
    let cases: Vec<(String, Vec<String>)> = vec![
        ("GET /v2/a%2Fb/manifests/v1".into(), vec![]),
        ("GET /v2/a/%2e%2e/manifests/v1".into(), vec![]),
        ("GET /v2/../../etc/passwd/manifests/v1".into(), vec![]),
        ("GET /v2/a/manifests/..%2F..%2Fetc".into(), vec![]),
        ("GET /v2/a/manifests/v1%00".into(), vec![]),
        ("GET /v2/a%00b/tags/list".into(), vec![]),
        ("GET /v2/a/blobs/sha256:%00%00".into(), vec![]),
        ("PUT /v2/a/manifests/%2e%2e".into(), vec!["Content-Type: application/vnd.oci.image.manifest.v1+json".into()]),
        ("DELETE /v2/a/manifests/sha256:..".into(), vec![]),
        ("GET /v2/_catalog?n=-1".into(), vec![]),
        ("GET /v2/_catalog?n=abc&last=%00".into(), vec![]),
        (format!("GET /v2/ok/tags/list?last={long}"), vec![]),
        ("GET /v2/ok/tags/list?n=99999999999999999999999".into(), vec![]),
        ("GET /v2/".into(), vec![format!("Authorization: Basic {long}")]),
        ("GET /v2/".into(), vec!["Authorization: Basic !!!!".into()]),
        ("GET /v2/".into(), vec![format!("Authorization: Bearer {long}")]),
        ("GET /v2/".into(), vec!["Authorization: Digest username=x".into()]),
        ("GET /v2/".into(), vec!["Authorization: Basic".into()]),
        (
            "GET /v2/ok/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000".into(),
            vec!["Range: bytes=0-1,2-3".into()],
        ),
        (
            "GET /v2/ok/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000".into(),
            vec!["Range: bytes=a-b".into()],
        ),
        (
            "GET /v2/ok/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000".into(),
            vec![format!("Range: bytes={long}-")],
        ),
        ("PATCH /v2/ok/blobs/uploads/not-a-session".into(), vec!["Content-Range: 0-0".into()]),
        ("PATCH /v2/ok/blobs/uploads/%2e%2e%2f%2e%2e".into(), vec!["Content-Range: 0-0".into()]),
        ("GET /v2/ok/blobs/uploads/%00".into(), vec![]),
        ("GET /v2/ok/referrers/sha256:x?artifactType=%ZZ%00".into(), vec![]),
        ("GET /r/..%2F..%2Fetc/-/v1".into(), vec![]),
        ("GET /-/static/..%2F..%2FCargo.toml/style.css".into(), vec![]),
    ];
    for (line, headers) in cases {
        let head =
            [format!("{line} HTTP/1.1")].into_iter().chain(headers.iter().cloned()).collect::<Vec<_>>().join("\r\n");
        let (status, body) = raw(&server, &head, b"x");
        let shown = &head[..head.len().min(120)];
        assert!((400..500).contains(&status) || status == 200 && line == "GET /v2/", "{shown}: {status} {body}");
        if line.starts_with("GET /v2/") && status != 431 && status != 200 {
            let json: serde_json::Value =
                serde_json::from_str(&body).unwrap_or_else(|e| panic!("{shown}: {e}: {body}"));
            assert!(json["errors"][0]["code"].is_string(), "{shown}: {body}");
        }
    }
    // The server still serves.
    assert_eq!(raw(&server, "GET /v2/ HTTP/1.1", b"").0, 200);
    let log = server.log();
    assert!(!log.contains("panicked") && !log.contains("status=5"), "{log}");
}
