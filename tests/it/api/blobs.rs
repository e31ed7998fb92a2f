//! Blob reads, ranges, deletes and per-repository visibility.

use http::{Method, StatusCode};

use super::Harness;
use crate::common::{random_bytes, sha256, sha512};

#[tokio::test]
async fn monolithic_push_then_head_get_delete() {
    let h = Harness::new();
    let data = random_bytes(3000, 1);
    let digest = sha256(&data);
    let r = h.send(Method::POST, &format!("/v2/a/b/blobs/uploads/?digest={digest}"), &[], &data).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.location(), format!("/v2/a/b/blobs/{digest}"));
    assert_eq!(r.header("docker-content-digest"), Some(digest.as_str()));

    let head = h.head(&format!("/v2/a/b/blobs/{digest}")).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.header("content-length"), Some("3000"));
    assert_eq!(head.header("docker-content-digest"), Some(digest.as_str()));
    assert!(head.body.is_empty());

    let get = h.get(&format!("/v2/a/b/blobs/{digest}")).await;
    assert_eq!(get.status, StatusCode::OK);
    assert_eq!(get.body.as_ref(), data.as_slice());
    assert_eq!(get.header("content-length"), Some("3000"));

    let del = h.delete(&format!("/v2/a/b/blobs/{digest}")).await;
    assert_eq!(del.status, StatusCode::ACCEPTED);
    let gone = h.head(&format!("/v2/a/b/blobs/{digest}")).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    let again = h.delete(&format!("/v2/a/b/blobs/{digest}")).await;
    assert_eq!((again.status, again.code().as_str()), (StatusCode::NOT_FOUND, "BLOB_UNKNOWN"));
}

#[tokio::test]
async fn ranges_are_served_as_the_spec_and_rfc_say() {
    let h = Harness::new();
    let data = random_bytes(2048, 2);
    let digest = h.push_blob("r", &data).await;
    let url = format!("/v2/r/blobs/{digest}");
    for (range, start, end) in [
        ("bytes=500-1499", 500, 1500),
        ("bytes=500-", 500, 2048),
        ("bytes=-500", 1548, 2048),
        ("bytes=2000-5000", 2000, 2048),
    ] {
        let r = h.send(Method::GET, &url, &[("range", range)], b"").await;
        assert_eq!(r.status, StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(r.body.as_ref(), &data[start..end], "{range}");
        assert_eq!(r.header("content-length"), Some((end - start).to_string().as_str()));
        assert_eq!(r.header("content-range"), Some(format!("bytes {start}-{}/2048", end - 1).as_str()));
    }
    for range in ["bytes=500-0", "bytes=5000-10000", "bytes=2048-"] {
        let r = h.send(Method::GET, &url, &[("range", range)], b"").await;
        assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
    }
    let whole = h.send(Method::GET, &url, &[("range", "items=1-2")], b"").await;
    assert_eq!((whole.status, whole.body.len()), (StatusCode::OK, 2048));
}

#[tokio::test]
async fn blobs_are_stored_once_and_served_only_where_linked() {
    let h = Harness::new();
    let data = random_bytes(10_000, 3);
    let digest = h.push_blob("one", &data).await;
    assert_eq!(h.push_blob("two", &data).await, digest);
    assert_eq!(h.keys("blobs/").await, vec![format!("blobs/sha256/{}", &digest[7..])]);
    assert_eq!(h.head(&format!("/v2/one/blobs/{digest}")).await.status, StatusCode::OK);
    let other = h.get(&format!("/v2/three/blobs/{digest}")).await;
    assert_eq!((other.status, other.code().as_str()), (StatusCode::NOT_FOUND, "BLOB_UNKNOWN"));
    // Deleting in one repository leaves the other's link and the bytes alone.
    assert_eq!(h.delete(&format!("/v2/one/blobs/{digest}")).await.status, StatusCode::ACCEPTED);
    assert_eq!(h.get(&format!("/v2/two/blobs/{digest}")).await.body.as_ref(), data.as_slice());
}

#[tokio::test]
async fn sha512_and_empty_blobs() {
    let h = Harness::new();
    let data = random_bytes(777, 4);
    let digest = sha512(&data);
    let r = h.send(Method::POST, &format!("/v2/x/blobs/uploads/?digest={digest}"), &[], &data).await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(h.keys("blobs/sha512/").await.len(), 1);
    assert_eq!(h.get(&format!("/v2/x/blobs/{digest}")).await.body.as_ref(), data.as_slice());

    let empty = sha256(b"");
    let r =
        h.send(Method::POST, &format!("/v2/x/blobs/uploads/?digest={empty}"), &[("content-length", "0")], b"").await;
    assert_eq!(r.status, StatusCode::CREATED);
    let head = h.head(&format!("/v2/x/blobs/{empty}")).await;
    assert_eq!((head.status, head.header("content-length")), (StatusCode::OK, Some("0")));
    let get = h.get(&format!("/v2/x/blobs/{empty}")).await;
    assert_eq!((get.status, get.body.len()), (StatusCode::OK, 0));
}

#[tokio::test]
async fn wrong_digest_stores_nothing() {
    let h = Harness::new();
    let data = random_bytes(6 * 1024 * 1024, 5);
    let wrong = sha256(b"something else");
    let r = h.send(Method::POST, &format!("/v2/x/blobs/uploads/?digest={wrong}"), &[], &data).await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::BAD_REQUEST, "DIGEST_INVALID"));
    assert!(h.keys("blobs/").await.is_empty());
    assert!(h.keys("repos/").await.is_empty());
    assert_eq!(h.head(&format!("/v2/x/blobs/{wrong}")).await.status, StatusCode::NOT_FOUND);
}
