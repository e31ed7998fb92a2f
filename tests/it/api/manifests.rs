//! Manifests: push by tag and digest, byte-for-byte pulls, media types, references, deletes.

use http::{Method, StatusCode};
use serde_json::json;

use super::{Harness, image};
use crate::common::{OCI_INDEX, OCI_MANIFEST, sha256, sha512};

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

#[tokio::test]
async fn push_by_tag_pull_by_tag_and_digest() {
    let h = Harness::new();
    let (body, digest) = image(&h, "app", 1, json!({})).await;
    let r = h.put_manifest("app", "v1", OCI_MANIFEST, &body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert_eq!(r.location(), format!("/v2/app/manifests/{digest}"));
    assert_eq!(r.header("docker-content-digest"), Some(digest.as_str()));
    for reference in ["v1", digest.as_str()] {
        let get = h.get(&format!("/v2/app/manifests/{reference}")).await;
        assert_eq!(get.status, StatusCode::OK);
        assert_eq!(get.body.as_ref(), body.as_slice(), "stored byte for byte");
        assert_eq!(get.header("content-type"), Some(OCI_MANIFEST));
        assert_eq!(get.header("content-length"), Some(body.len().to_string().as_str()));
        assert_eq!(get.header("docker-content-digest"), Some(digest.as_str()));
        let head = h.head(&format!("/v2/app/manifests/{reference}")).await;
        assert_eq!((head.status, head.body.len()), (StatusCode::OK, 0));
        assert_eq!(head.header("content-length"), Some(body.len().to_string().as_str()));
    }
    // Re-pushing the same bytes is fine; so is another tag.
    assert_eq!(h.put_manifest("app", "v1", OCI_MANIFEST, &body).await.status, StatusCode::CREATED);
    assert_eq!(h.put_manifest("app", "latest", OCI_MANIFEST, &body).await.status, StatusCode::CREATED);
    assert_eq!(h.keys("catalog/").await, vec!["catalog/app/_repo".to_string()]);
}

#[tokio::test]
async fn push_by_digest_must_match() {
    let h = Harness::new();
    let (body, digest) = image(&h, "d", 2, json!({})).await;
    assert_eq!(h.put_manifest("d", &digest, OCI_MANIFEST, &body).await.status, StatusCode::CREATED);
    let mut changed = body.clone();
    changed.extend_from_slice(b"  ");
    let r = h.put_manifest("d", &digest, OCI_MANIFEST, &changed).await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::BAD_REQUEST, "DIGEST_INVALID"));
    let r = h.put_manifest("d", "sha256:baddigeststring", OCI_MANIFEST, &body).await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::BAD_REQUEST, "DIGEST_INVALID"));
    // sha512 references are digested with sha512.
    let d512 = sha512(&body);
    let r = h.put_manifest("d", &d512, OCI_MANIFEST, &body).await;
    assert_eq!((r.status, r.header("docker-content-digest")), (StatusCode::CREATED, Some(d512.as_str())));
    assert_eq!(h.get(&format!("/v2/d/manifests/{d512}")).await.body.as_ref(), body.as_slice());
}

#[tokio::test]
async fn docker_types_and_indexes() {
    let h = Harness::new();
    let (body, _) = image(&h, "m", 3, json!({"mediaType": DOCKER_MANIFEST})).await;
    let r = h.put_manifest("m", "docker", DOCKER_MANIFEST, &body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let child = r.header("docker-content-digest").unwrap().to_string();
    assert_eq!(h.get("/v2/m/manifests/docker").await.header("content-type"), Some(DOCKER_MANIFEST));
    let list = json!({"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": [
        {"mediaType": DOCKER_MANIFEST, "digest": child, "size": body.len(), "platform": {"architecture": "amd64", "os": "linux"}}]});
    let list = serde_json::to_vec(&list).unwrap();
    assert_eq!(h.put_manifest("m", "list", DOCKER_LIST, &list).await.status, StatusCode::CREATED);
    let (oci, oci_digest) = image(&h, "m", 4, json!({})).await;
    h.put_manifest("m", &oci_digest, OCI_MANIFEST, &oci).await;
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": oci_digest, "size": oci.len(), "platform": {"architecture": "arm64", "os": "linux"}}]});
    let index = serde_json::to_vec(&index).unwrap();
    let r = h.put_manifest("m", "multi", OCI_INDEX, &index).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(h.get("/v2/m/manifests/multi").await.header("content-type"), Some(OCI_INDEX));
    // An index over a manifest the repository does not have is refused.
    let missing = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": sha256(b"nope"), "size": 4}]});
    let r = h.put_manifest("m", "broken", OCI_INDEX, &serde_json::to_vec(&missing).unwrap()).await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN"));
}

#[tokio::test]
async fn invalid_manifests_are_refused() {
    let h = Harness::new();
    let (body, _) = image(&h, "v", 5, json!({})).await;
    let cases: Vec<(&str, Vec<u8>, StatusCode, &str)> = vec![
        (OCI_MANIFEST, b"blablabla".to_vec(), StatusCode::BAD_REQUEST, "MANIFEST_INVALID"),
        (OCI_MANIFEST, b"[1,2]".to_vec(), StatusCode::BAD_REQUEST, "MANIFEST_INVALID"),
        ("application/x-unknown", body.clone(), StatusCode::BAD_REQUEST, "MANIFEST_INVALID"),
        (OCI_INDEX, body.clone(), StatusCode::BAD_REQUEST, "MANIFEST_INVALID"),
        (OCI_MANIFEST, br#"{"schemaVersion":1,"config":{}}"#.to_vec(), StatusCode::BAD_REQUEST, "MANIFEST_INVALID"),
        (OCI_MANIFEST, br#"{"schemaVersion":2,"layers":[]}"#.to_vec(), StatusCode::BAD_REQUEST, "MANIFEST_INVALID"),
    ];
    for (media_type, bytes, status, code) in cases {
        let r = h.put_manifest("v", "t", media_type, &bytes).await;
        assert_eq!((r.status, r.code().as_str()), (status, code), "{media_type} {}", String::from_utf8_lossy(&bytes));
    }
    let missing_layer = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": sha256(b"{}"), "size": 2}, "layers": []});
    let r = h.put_manifest("v", "t", OCI_MANIFEST, &serde_json::to_vec(&missing_layer).unwrap()).await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN"));
    assert_eq!(r.json()["errors"][0]["detail"]["digest"], sha256(b"{}"));
    let huge = vec![b' '; 4 * 1024 * 1024 + 1];
    let r = h.put_manifest("v", "t", OCI_MANIFEST, &huge).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    let r = h.put_manifest("v", &"t".repeat(129), OCI_MANIFEST, &body).await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::BAD_REQUEST, "MANIFEST_INVALID"));
    assert!(h.keys("repos/v/_manifests/").await.is_empty());
    assert!(h.keys("repos/v/_tags/").await.is_empty());
}

#[tokio::test]
async fn large_manifests_and_nondistributable_layers_are_accepted() {
    let h = Harness::new();
    let big = "A".repeat(10_000);
    let annotations: serde_json::Map<_, _> = (0..390).map(|i| (format!("a{i}"), json!(big))).collect();
    let (body, _) = image(&h, "big", 6, json!({ "annotations": annotations })).await;
    assert!(body.len() > 3_900_000);
    assert_eq!(h.put_manifest("big", "large", OCI_MANIFEST, &body).await.status, StatusCode::CREATED);
    let (_, _) = image(&h, "big", 7, json!({})).await;
    let config = h.push_blob("big", b"{}").await;
    let m = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", "digest": sha256(b"elsewhere"),
                    "size": 9, "urls": ["https://example.com/layer"]}]});
    let r = h.put_manifest("big", "foreign", OCI_MANIFEST, &serde_json::to_vec(&m).unwrap()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
}

#[tokio::test]
async fn delete_by_tag_keeps_the_manifest_delete_by_digest_removes_its_tags() {
    let h = Harness::new();
    let (body, digest) = image(&h, "del", 8, json!({})).await;
    for tag in ["a", "b", "c"] {
        h.put_manifest("del", tag, OCI_MANIFEST, &body).await;
    }
    let (other, _) = image(&h, "del", 9, json!({})).await;
    h.put_manifest("del", "other", OCI_MANIFEST, &other).await;
    assert_eq!(h.delete("/v2/del/manifests/a").await.status, StatusCode::ACCEPTED);
    assert_eq!(h.head("/v2/del/manifests/a").await.status, StatusCode::NOT_FOUND);
    assert_eq!(h.head(&format!("/v2/del/manifests/{digest}")).await.status, StatusCode::OK);
    assert_eq!(h.get("/v2/del/tags/list").await.json()["tags"], json!(["b", "c", "other"]));
    assert_eq!(h.delete(&format!("/v2/del/manifests/{digest}")).await.status, StatusCode::ACCEPTED);
    assert_eq!(h.head(&format!("/v2/del/manifests/{digest}")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(h.head("/v2/del/manifests/b").await.status, StatusCode::NOT_FOUND);
    assert_eq!(h.get("/v2/del/tags/list").await.json()["tags"], json!(["other"]));
    let r = h.delete(&format!("/v2/del/manifests/{digest}")).await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN"));
}

#[tokio::test]
async fn unknown_and_invalid_references() {
    let h = Harness::new();
    for reference in [".INVALID_MANIFEST_NAME", "missing", &sha256(b"missing")] {
        for method in [Method::GET, Method::HEAD, Method::DELETE] {
            let r = h.send(method.clone(), &format!("/v2/none/manifests/{reference}"), &[], b"").await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{method} {reference}");
            if method == Method::GET {
                assert_eq!(r.code(), "MANIFEST_UNKNOWN");
            }
        }
    }
    let r = h.get("/v2/none/manifests/sha256:totallywrong").await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::BAD_REQUEST, "DIGEST_INVALID"));
}

#[tokio::test]
async fn tag_parameters_tag_a_push_by_digest() {
    let h = Harness::new();
    let (body, _) = image(&h, "tp", 10, json!({})).await;
    let digest = sha512(&body);
    let r = h.put_manifest("tp", &format!("{digest}?tag=one&tag=two"), OCI_MANIFEST, &body).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let tags: Vec<&str> = r.headers.get_all("oci-tag").iter().map(|v| v.to_str().unwrap()).collect();
    assert_eq!(tags, ["one", "two"]);
    for tag in ["one", "two"] {
        let get = h.get(&format!("/v2/tp/manifests/{tag}")).await;
        assert_eq!(get.header("docker-content-digest"), Some(digest.as_str()));
    }
    let bad = h.put_manifest("tp", &format!("{digest}?tag=.bad"), OCI_MANIFEST, &body).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}
