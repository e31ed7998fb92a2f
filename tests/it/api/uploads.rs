//! Upload sessions: streamed and chunked PATCH, status, final PUT, cancel, mount, races.

use std::sync::Arc;

use berth_core::Config;
use berth_storage::FsStorage;
use http::{Method, StatusCode};

use super::{Harness, config};
use crate::common::{random_bytes, sha256, sha512};

#[tokio::test]
async fn post_answers_202_with_a_session() {
    let h = Harness::new();
    let r = h.send(Method::POST, "/v2/a/blobs/uploads/", &[], b"").await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let id = r.header("docker-upload-uuid").unwrap().to_string();
    assert_eq!(r.location(), format!("/v2/a/blobs/uploads/{id}"));
    assert_eq!(r.header("range"), Some("0-0"));
    let status = h.get(&r.location()).await;
    assert_eq!((status.status, status.header("range")), (StatusCode::NO_CONTENT, Some("0-0")));
}

#[tokio::test]
async fn streamed_patch_across_parts_then_put() {
    let h = Harness::new();
    // 12 MiB in odd-sized request chunks: two 5 MiB parts and a pending tail.
    let data = random_bytes(12 * 1024 * 1024 + 123, 6);
    let loc = h.start("s").await;
    let r = h.send_chunked(Method::PATCH, &loc, &[("content-type", "application/octet-stream")], &data, 100_003).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(r.header("range"), Some(format!("0-{}", data.len() - 1).as_str()));
    // More than a part: the session is stored, under the id of its sealed URL.
    let stored = r.location();
    assert!(!stored.contains('.') && loc.contains(&format!("/{}.", stored.rsplit('/').next().unwrap())), "{stored}");
    let digest = sha256(&data);
    let r = h.send(Method::PUT, &format!("{stored}?digest={digest}"), &[], b"").await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert_eq!(r.location(), format!("/v2/s/blobs/{digest}"));
    assert_eq!(r.header("docker-content-digest"), Some(digest.as_str()));
    assert_eq!(h.get(&format!("/v2/s/blobs/{digest}")).await.body.as_ref(), data.as_slice());
    assert!(h.open_uploads().await.is_empty(), "session left behind");
    for uri in [&stored, &loc] {
        let finished = h.send(Method::PATCH, uri, &[("content-range", "0-3")], b"more").await;
        assert_eq!((finished.status, finished.code().as_str()), (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN"));
        assert_eq!(h.get(uri).await.status, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn a_small_streamed_blob_is_stored_once_and_linked_by_the_put() {
    let h = Harness::new();
    let data = random_bytes(300_000, 16);
    let digest = sha256(&data);
    let loc = h.start("small").await;
    h.take_calls();
    let r = h.send(Method::PATCH, &loc, &[], &data).await;
    assert_eq!((r.status, r.header("range")), (StatusCode::ACCEPTED, Some("0-299999")));
    assert_eq!(h.take_calls(), 1, "the PATCH writes the blob, nothing else");
    assert_eq!(h.keys("").await, vec![format!("blobs/sha256/{}", &digest[7..]), "config/upload-secret".into()]);
    let sealed = r.location();
    assert_eq!(r.header("docker-upload-uuid"), sealed.rsplit('/').next());
    assert_eq!(h.get(&sealed).await.header("range"), Some("0-299999"));
    assert_eq!(h.get(&format!("/v2/small/blobs/{digest}")).await.status, StatusCode::NOT_FOUND, "not linked yet");
    h.take_calls();
    let r = h.send(Method::PUT, &format!("{sealed}?digest={digest}"), &[], b"").await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert_eq!(h.take_calls(), 1, "the PUT links the blob, nothing else: {:?}", h.last_calls.lock().unwrap());
    assert_eq!(h.get(&format!("/v2/small/blobs/{digest}")).await.body.as_ref(), data.as_slice());
    // The URL names bytes the client sent, in its repository only, and cannot be forged.
    assert_eq!(h.get(&sealed.replace("/v2/small/", "/v2/other/")).await.status, StatusCode::NOT_FOUND);
    let other = sha256(b"other");
    let forged = sealed.replace(&digest[7..], &other[7..]);
    let r = h.send(Method::PUT, &format!("{forged}?digest={other}"), &[], b"").await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN"));
    // More bytes through the sealed URL continue the upload as a stored session.
    let loc = h.start("small").await;
    let first = h.send(Method::PATCH, &loc, &[], &data[..1000]).await.location();
    let r = h.send(Method::PATCH, &first, &[("content-range", "1000-299999")], &data[1000..]).await;
    assert_eq!((r.status, r.header("range")), (StatusCode::ACCEPTED, Some("0-299999")));
    let stale = h.send(Method::PATCH, &first, &[("content-range", "1000-1999")], &data[1000..2000]).await;
    assert_eq!((stale.status, stale.header("range")), (StatusCode::RANGE_NOT_SATISFIABLE, Some("0-299999")));
    let r = h.send(Method::PUT, &format!("{}?digest={digest}", r.location()), &[], b"").await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    // Or through its PUT, in another algorithm.
    let loc = h.start("small").await;
    let first = h.send(Method::PATCH, &loc, &[], &data[..1000]).await.location();
    let sha512 = sha512(&data);
    let r = h.send(Method::PUT, &format!("{first}?digest={sha512}"), &[], &data[1000..]).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert_eq!(h.get(&format!("/v2/small/blobs/{sha512}")).await.body.as_ref(), data.as_slice());
    assert!(h.open_uploads().await.is_empty());
}

#[tokio::test]
async fn chunked_upload_with_out_of_order_chunks() {
    let h = Harness::new();
    let data = random_bytes(3067, 7);
    let loc = h.start("c").await;
    let patch = |range: String, part: Vec<u8>| {
        let h = &h;
        let loc = loc.clone();
        async move {
            h.send(
                Method::PATCH,
                &loc,
                &[("content-range", &range), ("content-length", &part.len().to_string())],
                &part,
            )
            .await
        }
    };
    let ahead = patch("1024-2047".into(), data[1024..2048].to_vec()).await;
    assert_eq!((ahead.status, ahead.code().as_str()), (StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID"));
    assert_eq!(patch("0-1023".into(), data[..1024].to_vec()).await.status, StatusCode::ACCEPTED);
    let resend = patch("0-1023".into(), data[..1024].to_vec()).await;
    assert_eq!(resend.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(resend.header("range"), Some("0-1023"));
    let r = patch("1024-2047".into(), data[1024..2048].to_vec()).await;
    assert_eq!((r.status, r.header("range")), (StatusCode::ACCEPTED, Some("0-2047")));
    assert_eq!(h.get(&loc).await.header("range"), Some("0-2047"));
    // A final PUT whose chunk does not continue the upload is 416 too, and keeps the session.
    let digest = sha256(&data);
    let bad =
        h.send(Method::PUT, &format!("{loc}?digest={digest}"), &[("content-range", "2049-3066")], &data[2049..]).await;
    assert_eq!(bad.status, StatusCode::RANGE_NOT_SATISFIABLE);
    let put =
        h.send(Method::PUT, &format!("{loc}?digest={digest}"), &[("content-range", "2048-3066")], &data[2048..]).await;
    assert_eq!(put.status, StatusCode::CREATED, "{put:?}");
    assert_eq!(h.get(&format!("/v2/c/blobs/{digest}")).await.body.as_ref(), data.as_slice());
}

#[tokio::test]
async fn sha512_digest_of_a_multipart_session() {
    let h = Harness::new();
    let data = random_bytes(11 * 1024 * 1024, 8);
    let loc = h.start("x").await;
    let r = h.send(Method::PATCH, &loc, &[], &data[..6 * 1024 * 1024]).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let digest = sha512(&data);
    let r = h.send(Method::PUT, &format!("{}?digest={digest}", r.location()), &[], &data[6 * 1024 * 1024..]).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert_eq!(h.get(&format!("/v2/x/blobs/{digest}")).await.body.as_ref(), data.as_slice());
    // A wrong sha512 is caught by reading the bytes back, and nothing becomes visible.
    let loc = h.start("x").await;
    let loc = h.send(Method::PATCH, &loc, &[], &data).await.location();
    let wrong = sha512(b"nope");
    let r = h.send(Method::PUT, &format!("{loc}?digest={wrong}"), &[], b"").await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::BAD_REQUEST, "DIGEST_INVALID"));
    assert_eq!(h.keys("blobs/sha512/").await.len(), 1);
    assert!(h.open_uploads().await.is_empty());
}

#[tokio::test]
async fn wrong_digest_on_put_leaves_nothing_under_blobs() {
    let h = Harness::new();
    let loc = h.start("w").await;
    let loc = h.send(Method::PATCH, &loc, &[], &random_bytes(7 * 1024 * 1024, 9)).await.location();
    let r = h.send(Method::PUT, &format!("{loc}?digest={}", sha256(b"x")), &[], b"").await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::BAD_REQUEST, "DIGEST_INVALID"));
    assert!(h.keys("blobs/").await.is_empty());
    let missing = h.send(Method::PUT, &format!("{loc}?digest={}", sha256(b"x")), &[], b"").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "session ends after a failed verification");
    let loc = h.start("w").await;
    let no_digest = h.send(Method::PUT, &loc, &[], b"").await;
    assert_eq!((no_digest.status, no_digest.code().as_str()), (StatusCode::BAD_REQUEST, "DIGEST_INVALID"));
}

#[tokio::test]
async fn cancel_and_unknown_sessions() {
    let h = Harness::new();
    let first = h.start("z").await;
    let loc = h.send(Method::PATCH, &first, &[], &random_bytes(6 * 1024 * 1024, 10)).await.location();
    assert_eq!(h.delete(&first).await.status, StatusCode::NO_CONTENT);
    assert!(h.open_uploads().await.is_empty());
    for (method, uri) in [
        (Method::GET, first.clone()),
        (Method::PATCH, loc.clone()),
        (Method::PUT, format!("{loc}?digest={}", sha256(b""))),
        (Method::DELETE, loc.clone()),
        (Method::DELETE, first.clone()),
        (Method::GET, "/v2/z/blobs/uploads/not-a-session".into()),
        (Method::GET, "/v2/z/blobs/uploads/not.sealed".into()),
    ] {
        let r = h.send(method.clone(), &uri, &[], b"").await;
        assert_eq!((r.status, r.code().as_str()), (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN"), "{method} {uri}");
    }
    let escape = h.get("/v2/z/blobs/uploads/..%2f..%2fstate").await;
    assert_eq!(escape.status, StatusCode::NOT_FOUND);
    // A session belongs to its repository.
    let loc = h.start("z").await;
    let other = loc.replace("/v2/z/", "/v2/y/");
    assert_eq!(h.get(&other).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn length_mismatches_are_size_invalid() {
    let h = Harness::new();
    let loc = h.start("l").await;
    let r = h.send(Method::PATCH, &loc, &[("content-range", "0-9"), ("content-length", "5")], b"01234").await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::BAD_REQUEST, "SIZE_INVALID"));
    let r = h.send(Method::PATCH, &loc, &[("content-range", "0-9")], b"01234").await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::BAD_REQUEST, "SIZE_INVALID"));
    let r = h.send(Method::PATCH, &loc, &[("content-range", "nonsense")], b"01234").await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    let r = h.send(Method::PATCH, &loc, &[("content-length", "x")], b"01234").await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::BAD_REQUEST, "SIZE_INVALID"));
    // None of these changed the session.
    assert_eq!(h.get(&loc).await.header("range"), Some("0-0"));
    let d = sha256(b"abc");
    let r =
        h.send(Method::POST, &format!("/v2/l/blobs/uploads/?digest={d}"), &[("content-length", "10")], b"abc").await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::BAD_REQUEST, "SIZE_INVALID"));
    assert!(h.keys("blobs/").await.is_empty());
}

#[tokio::test]
async fn mount_links_or_falls_back_to_an_upload() {
    let h = Harness::new();
    let digest = h.push_blob("src", b"shared layer").await;
    let r = h.send(Method::POST, &format!("/v2/dst/blobs/uploads/?mount={digest}&from=src"), &[], b"").await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.location(), format!("/v2/dst/blobs/{digest}"));
    assert_eq!(h.get(&format!("/v2/dst/blobs/{digest}")).await.body.as_ref(), b"shared layer");
    // Not in `from`, no `from`, or a bad `from`: a normal session.
    let missing = sha256(b"never pushed");
    for query in [format!("mount={missing}&from=src"), format!("mount={digest}"), format!("mount={digest}&from=Bad")] {
        let r = h.send(Method::POST, &format!("/v2/other/blobs/uploads/?{query}"), &[], b"").await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{query}");
        assert!(r.location().starts_with("/v2/other/blobs/uploads/"));
    }
    assert_eq!(h.head(&format!("/v2/other/blobs/{digest}")).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn racing_and_replayed_patches_never_store_wrong_bytes() {
    let h = Harness::new();
    let loc = h.start("race").await;
    let a = random_bytes(6 * 1024 * 1024, 11);
    let b = random_bytes(6 * 1024 * 1024, 12);
    let (ra, rb) = tokio::join!(
        h.send_chunked(Method::PATCH, &loc, &[("content-range", "0-6291455")], &a, 4096),
        h.send_chunked(Method::PATCH, &loc, &[("content-range", "0-6291455")], &b, 4096),
    );
    let winners: Vec<_> =
        [(&ra, &a), (&rb, &b)].into_iter().filter(|(r, _)| r.status == StatusCode::ACCEPTED).collect();
    assert!(winners.len() <= 1, "both racing PATCHes were accepted: {ra:?} {rb:?}");
    for r in [&ra, &rb] {
        assert!(r.status.is_client_error() || r.status == StatusCode::ACCEPTED, "{r:?}");
    }
    // Replay: the same range again with other bytes is refused.
    let replay = h.send(Method::PATCH, &loc, &[("content-range", "0-6291455")], &b).await;
    if winners.len() == 1 {
        assert_eq!(replay.status, StatusCode::RANGE_NOT_SATISFIABLE);
    }
    // Whatever happened, finishing under either digest can only store bytes matching it.
    for data in [&a, &b] {
        let digest = sha256(data);
        let r = h.send(Method::PUT, &format!("{loc}?digest={digest}"), &[], b"").await;
        if r.status == StatusCode::CREATED {
            assert_eq!(h.get(&format!("/v2/race/blobs/{digest}")).await.body.as_ref(), data.as_slice());
        }
    }
    for key in h.keys("blobs/").await {
        let body = h.store.get(&key, None).await.unwrap().bytes().await.unwrap();
        assert_eq!(format!("blobs/sha256/{}", &sha256(&body)[7..]), key, "blob bytes differ from their digest");
    }
}

#[tokio::test]
async fn a_new_registry_on_the_same_root_finishes_the_upload() {
    let dir = tempfile::tempdir().unwrap();
    let config = config();
    let data = random_bytes(9 * 1024 * 1024, 13);
    let first = Harness::with(Arc::new(FsStorage::new(dir.path()).unwrap()), config.clone());
    let loc = first.start("restart").await;
    assert_eq!(first.send(Method::PATCH, &loc, &[], &data[..7 * 1024 * 1024]).await.status, StatusCode::ACCEPTED);
    drop(first);
    let second = Harness::with(Arc::new(FsStorage::new(dir.path()).unwrap()), config);
    assert_eq!(second.get(&loc).await.header("range"), Some("0-7340031"));
    let digest = sha256(&data);
    let r = second
        .send(
            Method::PUT,
            &format!("{loc}?digest={digest}"),
            &[("content-range", "7340032-9437183")],
            &data[7 * 1024 * 1024..],
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert_eq!(second.get(&format!("/v2/restart/blobs/{digest}")).await.body.as_ref(), data.as_slice());
}

#[tokio::test]
async fn body_limit_is_enforced_with_a_helpful_error() {
    let h = Harness::with(
        Arc::new(berth_storage::MemoryStorage::new()),
        Config { max_body: Some(1024 * 1024), ..config() },
    );
    let loc = h.start("lim").await;
    let r = h.send(Method::PATCH, &loc, &[], &random_bytes(2 * 1024 * 1024, 14)).await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID"));
    assert!(r.json()["errors"][0]["message"].as_str().unwrap().contains("Content-Range"));
    assert_eq!(h.get(&loc).await.header("range"), Some("0-0"), "session untouched");
    let post = h.send(Method::POST, "/v2/lim/blobs/uploads/", &[], b"").await;
    assert!(post.header("oci-chunk-min-length").is_some());
}

#[tokio::test]
async fn put_with_the_whole_body_writes_straight_to_the_blob() {
    let h = Harness::new();
    let data = random_bytes(6 * 1024 * 1024 + 7, 15);
    let digest = sha512(&data);
    let loc = h.start("direct").await;
    h.take_calls();
    let r = h.send(Method::PUT, &format!("{loc}?digest={digest}"), &[], &data).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    // head blob, create, 2 parts, complete, link, delete state: no session data, no copy.
    assert!(h.take_calls() <= 7);
    assert_eq!(h.get(&format!("/v2/direct/blobs/{digest}")).await.body.as_ref(), data.as_slice());
    assert!(h.keys("uploads/").await.is_empty());
    // A wrong digest in the same shape ends the session and stores nothing.
    let loc = h.start("direct").await;
    let r = h.send(Method::PUT, &format!("{loc}?digest={}", sha512(b"other")), &[], &data).await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::BAD_REQUEST, "DIGEST_INVALID"));
    assert_eq!(h.keys("blobs/").await.len(), 1);
    assert!(h.keys("uploads/").await.is_empty());
}
