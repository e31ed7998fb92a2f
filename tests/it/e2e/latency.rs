//! Answers on a kept-alive connection are not held back: a streamed response (a blob from the
//! filesystem) writes its body after its head, and without `TCP_NODELAY` the body would wait
//! for the client's delayed ACK of the head, about 40 ms per small blob on Linux.

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use super::server::Server;
use crate::common::{http, random_bytes, sha256};

#[tokio::test]
async fn small_blobs_on_a_kept_alive_connection_are_not_delayed() {
    let server = Server::start();
    let blob = random_bytes(300, 3);
    let digest = sha256(&blob);
    let client = http();
    let r = client
        .post(server.url(&format!("/v2/e2e/latency/blobs/uploads/?digest={digest}")))
        .header("content-type", "application/octet-stream")
        .body(blob.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let mut took = Vec::new();
    for _ in 0..15 {
        let started = Instant::now();
        let r = client.get(server.url(&format!("/v2/e2e/latency/blobs/{digest}"))).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.bytes().await.unwrap(), blob);
        took.push(started.elapsed());
    }
    took.sort();
    assert!(took[took.len() / 2] < Duration::from_millis(20), "median GET of a 300-byte blob over 20 ms: {took:?}");
}
