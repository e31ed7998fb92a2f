//! Bad input of every kind gets a spec error code and a clear message, never a 5xx.

use http::{Method, StatusCode};

use super::Harness;
use crate::common::sha256;

#[tokio::test]
async fn base_and_unknown_routes() {
    let h = Harness::new();
    let r = h.get("/v2/").await;
    assert_eq!((r.status, r.header("docker-distribution-api-version")), (StatusCode::OK, Some("registry/2.0")));
    let r = h.get("/v2/a/unknown/x").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = h.get("/other").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = h.send(Method::POST, "/v2/a/manifests/x", &[], b"").await;
    assert_eq!((r.status, r.code().as_str()), (StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED"));
    assert!(r.header("docker-distribution-api-version").is_some());
}

#[tokio::test]
async fn invalid_names_are_name_invalid_everywhere() {
    let h = Harness::new();
    let long = format!("{}/x", "a".repeat(255));
    for name in ["Upper", "a/../b", "a//b", "_a", "a/_b", "a-", "a..b", long.as_str(), "a%20b"] {
        for path in [
            format!("/v2/{name}/tags/list"),
            format!("/v2/{name}/manifests/latest"),
            format!("/v2/{name}/blobs/uploads/"),
        ] {
            let method = if path.ends_with("uploads/") { Method::POST } else { Method::GET };
            let r = h.send(method, &path, &[], b"").await;
            assert_eq!((r.status, r.code().as_str()), (StatusCode::BAD_REQUEST, "NAME_INVALID"), "{path}");
            let message = r.json()["errors"][0]["message"].as_str().unwrap().to_string();
            assert!(message.contains("invalid repository name"), "{message}");
        }
    }
}

#[tokio::test]
async fn malformed_digests_are_digest_invalid() {
    let h = Harness::new();
    for digest in [
        "sha256:abc",
        "sha256:ZZZ",
        "md5:d41d8cd98f00b204e9800998ecf8427e",
        "nocolon:",
        "sha256:",
        &sha256(b"x").to_uppercase(),
    ] {
        let r = h.get(&format!("/v2/a/blobs/{digest}")).await;
        assert_eq!((r.status, r.code().as_str()), (StatusCode::BAD_REQUEST, "DIGEST_INVALID"), "{digest}");
        let r = h.send(Method::POST, &format!("/v2/a/blobs/uploads/?digest={digest}"), &[], b"x").await;
        assert_eq!((r.status, r.code().as_str()), (StatusCode::BAD_REQUEST, "DIGEST_INVALID"), "{digest}");
    }
    let r = h.get("/v2/a/blobs/sha384:aaaa").await;
    assert!(r.json()["errors"][0]["message"].as_str().unwrap().contains("sha384"));
}

#[tokio::test]
async fn no_request_in_a_barrage_of_bad_input_is_a_server_error() {
    let h = Harness::new();
    let d = sha256(b"x");
    let loc = h.start("ok").await;
    type Case<'a> = (Method, String, Vec<(&'a str, &'a str)>, &'a [u8]);
    let requests: Vec<Case> = vec![
        (Method::PATCH, loc.clone(), vec![("content-range", "5-1")], b"xx"),
        (Method::PATCH, loc.clone(), vec![("content-range", "0-18446744073709551615")], b"xx"),
        (Method::PATCH, loc.clone(), vec![("content-range", "bytes=-")], b"xx"),
        (Method::PUT, format!("{loc}?digest=sha256:"), vec![], b""),
        (Method::PUT, format!("{loc}?digest={d}&digest=bad"), vec![], b""),
        (Method::GET, format!("/v2/ok/blobs/{d}"), vec![("range", "bytes=99999999999999999999-")], b""),
        (Method::GET, "/v2/ok/tags/list?n=18446744073709551616".into(), vec![], b""),
        (Method::GET, "/v2/ok/tags/list?last=%FF%FE".into(), vec![], b""),
        (Method::GET, "/v2/_catalog?last=../../etc".into(), vec![], b""),
        (Method::PUT, "/v2/ok/manifests/v1".into(), vec![("content-type", "")], b"{}"),
        (Method::PUT, "/v2/ok/manifests/v1".into(), vec![], br#"{"schemaVersion":2}"#),
        (
            Method::PUT,
            "/v2/ok/manifests/v1".into(),
            vec![("content-type", "application/vnd.oci.image.manifest.v1+json")],
            br#"{"schemaVersion":2,"config":{"digest":"sha256:x","size":-1,"mediaType":"a"},"layers":[]}"#,
        ),
        (Method::GET, "/v2/ok/blobs/uploads/%00".into(), vec![], b""),
        (Method::PATCH, "/v2/ok/blobs/uploads/".into(), vec![], b""),
        (Method::GET, "/v2/ok/referrers/sha256:x?artifactType=%ZZ".into(), vec![], b""),
    ];
    for (method, uri, headers, body) in requests {
        let r = h.send(method.clone(), &uri, &headers, body).await;
        assert!(!r.status.is_server_error(), "{method} {uri} {headers:?}: {r:?}");
        if r.status.is_client_error() {
            assert!(!r.code().is_empty(), "{method} {uri}: error without a code");
        }
    }
}
