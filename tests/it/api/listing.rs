//! Tags list and catalog pagination.

use http::StatusCode;
use serde_json::json;

use super::{Harness, image};
use crate::common::OCI_MANIFEST;

#[tokio::test]
async fn tags_are_lexical_and_paginated() {
    let h = Harness::new();
    let (body, _) = image(&h, "t/repo", 1, json!({})).await;
    for tag in ["v2", "v10", "latest", "A", "a_b", "v1"] {
        assert_eq!(h.put_manifest("t/repo", tag, OCI_MANIFEST, &body).await.status, StatusCode::CREATED);
    }
    let all = h.get("/v2/t/repo/tags/list").await;
    assert_eq!(all.json(), json!({"name": "t/repo", "tags": ["A", "a_b", "latest", "v1", "v10", "v2"]}));
    assert!(all.header("link").is_none());
    let first = h.get("/v2/t/repo/tags/list?n=2").await;
    assert_eq!(first.json()["tags"], json!(["A", "a_b"]));
    assert_eq!(first.header("link"), Some("</v2/t/repo/tags/list?n=2&last=a_b>; rel=\"next\""));
    let next = h.get("/v2/t/repo/tags/list?n=2&last=a_b").await;
    assert_eq!(next.json()["tags"], json!(["latest", "v1"]));
    let rest = h.get("/v2/t/repo/tags/list?last=v1").await;
    assert_eq!(rest.json()["tags"], json!(["v10", "v2"]));
    assert_eq!(h.get("/v2/t/repo/tags/list?n=0").await.json()["tags"], json!([]));
    assert_eq!(h.get("/v2/t/repo/tags/list?n=99999999999").await.json()["tags"].as_array().unwrap().len(), 6);
    for bad in ["-1", "abc", "1.5", ""] {
        let r = h.get(&format!("/v2/t/repo/tags/list?n={bad}")).await;
        assert_eq!((r.status, r.code().as_str()), (StatusCode::BAD_REQUEST, "PAGINATION_NUMBER_INVALID"), "n={bad}");
    }
    let unknown = h.get("/v2/no/such/tags/list").await;
    assert_eq!((unknown.status, unknown.code().as_str()), (StatusCode::NOT_FOUND, "NAME_UNKNOWN"));
}

#[tokio::test]
async fn catalog_lists_repositories_with_pages() {
    let h = Harness::new();
    for name in ["b", "a/x", "a", "c/d/e"] {
        let (body, _) = image(&h, name, 2, json!({})).await;
        h.put_manifest(name, "v1", OCI_MANIFEST, &body).await;
    }
    let all = h.get("/v2/_catalog").await.json();
    assert_eq!(all, json!({"repositories": ["a", "a/x", "b", "c/d/e"]}));
    let page = h.get("/v2/_catalog?n=3").await;
    assert_eq!(page.json()["repositories"], json!(["a", "a/x", "b"]));
    assert_eq!(page.header("link"), Some("</v2/_catalog?n=3&last=b>; rel=\"next\""));
    assert_eq!(h.get("/v2/_catalog?n=3&last=b").await.json()["repositories"], json!(["c/d/e"]));
    assert_eq!(h.get("/v2/_catalog?n=-5").await.status, StatusCode::BAD_REQUEST);
}
