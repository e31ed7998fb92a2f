//! Concurrency: racing pushes of one blob, racing manifests on one tag, racing and replayed
//! PATCHes on one session. Run over memory always, and over a real S3 server whose conditional
//! writes are atomic (moto: `BERTH_TEST_MOTO_ENDPOINT`, `BERTH_TEST_MOTO_BUCKET`) when configured.

use std::sync::Arc;

use berth_storage::Storage;
use futures_util::future::join_all;
use http::{Method, StatusCode};
use serde_json::json;

use super::{Harness, config, image};
use crate::common::{OCI_MANIFEST, S3Kind, random_bytes, sha256};

/// The backends to race on: memory, and moto when the test script started it.
async fn backends(test: &str) -> Vec<(&'static str, Arc<dyn Storage>)> {
    super::backends(S3Kind::Moto, test, "races").await
}

fn harness(store: Arc<dyn Storage>) -> Harness {
    Harness::with(store, config())
}

#[tokio::test]
async fn eight_pushes_of_one_blob_store_it_once_and_link_it_everywhere() {
    for (backend, store) in backends("eight_pushes_of_one_blob_store_it_once_and_link_it_everywhere").await {
        let h = harness(store);
        let data = random_bytes(300_000, 21);
        let digest = sha256(&data);
        let pushes = (0..8).map(|i| {
            let (h, data, digest) = (&h, &data, &digest);
            async move {
                let loc = h.start(&format!("race/r{i}")).await;
                let loc = h.send(Method::PATCH, &loc, &[], data).await.location();
                h.send(Method::PUT, &format!("{loc}?digest={digest}"), &[], b"").await
            }
        });
        for r in join_all(pushes).await {
            assert_eq!(r.status, StatusCode::CREATED, "{backend}: {r:?}");
        }
        assert_eq!(h.keys("blobs/").await, vec![format!("blobs/sha256/{}", &digest[7..])], "{backend}");
        for i in 0..8 {
            let r = h.head(&format!("/v2/race/r{i}/blobs/{digest}")).await;
            assert_eq!(r.status, StatusCode::OK, "{backend}");
            assert_eq!(r.header("content-length"), Some(data.len().to_string().as_str()), "{backend}");
        }
        let stored = h.store.get(&format!("blobs/sha256/{}", &digest[7..]), None).await.unwrap().bytes().await.unwrap();
        assert_eq!(stored.as_ref(), data.as_slice(), "{backend}");
    }
}

#[tokio::test]
async fn eight_manifests_racing_for_one_tag_leave_it_on_one_of_them() {
    for (backend, store) in backends("eight_manifests_racing_for_one_tag_leave_it_on_one_of_them").await {
        let h = harness(store);
        let mut manifests = Vec::new();
        for i in 0..8 {
            manifests.push(image(&h, "race/tag", 30 + i, json!({})).await);
        }
        let pushes = manifests.iter().map(|(body, _)| h.put_manifest("race/tag", "latest", OCI_MANIFEST, body));
        for r in join_all(pushes).await {
            assert_eq!(r.status, StatusCode::CREATED, "{backend}: {r:?}");
        }
        let r = h.get("/v2/race/tag/manifests/latest").await;
        assert_eq!(r.status, StatusCode::OK);
        let digest = r.header("docker-content-digest").unwrap().to_string();
        let (body, _) =
            manifests.iter().find(|(_, d)| *d == digest).unwrap_or_else(|| panic!("{backend}: tag on {digest}"));
        assert_eq!(r.body.as_ref(), body.as_slice(), "{backend}: the tag serves exactly the manifest it names");
    }
}

#[tokio::test]
async fn racing_patches_on_one_session_never_store_bytes_under_another_digest() {
    for (backend, store) in backends("racing_patches_on_one_session_never_store_bytes_under_another_digest").await {
        let h = harness(store);
        let a = random_bytes(6 * 1024 * 1024, 41);
        let b = random_bytes(6 * 1024 * 1024, 42);
        let loc = h.start("race/patch").await;
        let (ra, rb) = tokio::join!(h.send(Method::PATCH, &loc, &[], &a), h.send(Method::PATCH, &loc, &[], &b));
        for r in [&ra, &rb] {
            assert!(!r.status.is_server_error(), "{backend}: {r:?}");
        }
        // Replay the first bytes as a chunk at offset 0: refused once anything was accepted.
        let replay = h.send(Method::PATCH, &loc, &[("content-range", "0-6291455")], &b).await;
        if ra.status == StatusCode::ACCEPTED || rb.status == StatusCode::ACCEPTED {
            assert_eq!(replay.status, StatusCode::RANGE_NOT_SATISFIABLE, "{backend}");
        }
        let mut ab = a.clone();
        ab.extend_from_slice(&b);
        let mut ba = b.clone();
        ba.extend_from_slice(&a);
        for candidate in [&a, &b, &ab, &ba] {
            let digest = sha256(candidate);
            let r = h.send(Method::PUT, &format!("{loc}?digest={digest}"), &[], b"").await;
            assert!(!r.status.is_server_error(), "{backend}: {r:?}");
        }
        for key in h.keys("blobs/").await {
            let body = h.store.get(&key, None).await.unwrap().bytes().await.unwrap();
            assert_eq!(
                format!("blobs/sha256/{}", &sha256(&body)[7..]),
                key,
                "{backend}: bytes differ from their digest"
            );
        }
    }
}
