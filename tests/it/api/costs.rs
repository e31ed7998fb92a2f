//! Storage calls per registry operation: the budget a client's push, re-push and pull cost.
//! The memory backend records one call per operation, as S3 would bill one request. A manifest
//! PUT includes the 3 calls of its handshake with garbage collection (`berth_core::gc`).

use http::{Method, StatusCode};
use serde_json::json;

use super::Harness;
use crate::common::{OCI_MANIFEST, random_bytes, sha256};

/// Pushes a blob the way docker does: HEAD, then POST, one streamed PATCH, and PUT.
async fn docker_push_blob(h: &Harness, name: &str, data: &[u8]) -> (String, bool) {
    let digest = sha256(data);
    if h.head(&format!("/v2/{name}/blobs/{digest}")).await.status == StatusCode::OK {
        return (digest, false);
    }
    let loc = h.start(name).await;
    let r = h.send(Method::PATCH, &loc, &[], data).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = h.send(Method::PUT, &format!("{}?digest={digest}", r.location()), &[], b"").await;
    assert_eq!(r.status, StatusCode::CREATED);
    (digest, true)
}

async fn push_image(h: &Harness, name: &str) -> usize {
    let mut uploaded = 0;
    let mut layers = Vec::new();
    for i in 0..5 {
        let data = random_bytes(100_000 + i * 1000, 100 + i as u64);
        let (digest, sent) = docker_push_blob(h, name, &data).await;
        uploaded += usize::from(sent);
        layers.push(
            json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest, "size": data.len()}),
        );
    }
    let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let (config_digest, sent) = docker_push_blob(h, name, config).await;
    uploaded += usize::from(sent);
    let manifest = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": layers});
    let r = h.put_manifest(name, "v1", OCI_MANIFEST, &serde_json::to_vec(&manifest).unwrap()).await;
    assert_eq!(r.status, StatusCode::CREATED);
    uploaded
}

#[tokio::test]
async fn push_repush_and_head_stay_within_budget() {
    let h = Harness::new();
    assert_eq!(push_image(&h, "cost/app").await, 6);
    let fresh = h.take_calls();
    // 6 blobs × (HEAD, PATCH: the blob, PUT: its link) + the upload secret + a manifest PUT of 8.
    assert!(fresh <= 30, "a fresh push of a 5-layer image made {fresh} storage calls (budget 30)");
    assert_eq!(push_image(&h, "cost/app").await, 0, "a re-push uploads no layer");
    let again = h.take_calls();
    assert!(again <= 12, "a re-push made {again} storage calls (budget 12)");
    let digest = sha256(&random_bytes(100_000, 100));
    assert_eq!(h.head(&format!("/v2/cost/app/blobs/{digest}")).await.status, StatusCode::OK);
    assert_eq!(h.take_calls(), 1, "HEAD of a blob is one storage call");
    assert_eq!(h.get("/v2/cost/app/manifests/v1").await.status, StatusCode::OK);
    assert_eq!(h.take_calls(), 1, "GET of a manifest by tag is one storage call");
    assert_eq!(h.get("/v2/cost/app/tags/list").await.status, StatusCode::OK);
    assert_eq!(h.take_calls(), 1, "a page of tags is one storage call");
    eprintln!("storage calls: fresh push {fresh}, re-push {again}");
}

/// The PUT that finishes a multipart session completes the upload once, aborts nothing (the
/// upload it has just completed is not aborted again), and leaves nothing under `uploads/`.
#[tokio::test]
async fn finishing_a_multipart_session_completes_once_and_aborts_nothing() {
    let h = Harness::new();
    let data = random_bytes(12 * 1024 * 1024 + 5, 31);
    let digest = sha256(&data);
    let loc = h.start("cost/multipart").await;
    let r = h.send(Method::PATCH, &loc, &[], &data).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let r = h.send(Method::PUT, &format!("{}?digest={digest}", r.location()), &[], b"").await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let calls = h.last_calls.lock().unwrap().clone();
    assert_eq!(calls.get("CompleteMultipartUpload"), Some(&1), "{calls:?}");
    assert_eq!(calls.get("AbortMultipartUpload"), None, "{calls:?}");
    assert_eq!(h.open_uploads().await, Vec::<String>::new());
    assert_eq!(h.get(&format!("/v2/cost/multipart/blobs/{digest}")).await.body.as_ref(), data.as_slice());
}
