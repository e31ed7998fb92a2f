//! End-to-end with skopeo: images built as OCI layouts in Rust are copied into berth and back
//! out, byte for byte (`--preserve-digests`), a multi-arch index with `--all`, tags listed,
//! inspected and deleted, and a 20 MiB layer that crosses berth's 8 MiB multipart parts.
//!
//! Without skopeo on PATH the tests fail under CI (scripts/test installs it) and are a loud
//! skip elsewhere.

use std::process::{Command, Output};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use super::layout::{self, Image, Layout, tar};
use super::server::Server;
use crate::common::{OCI_INDEX, OCI_MANIFEST, describe, http, random_bytes, require_tool, run, sha256};

const TIMEOUT: Duration = Duration::from_secs(300);

/// Runs `skopeo --insecure-policy <args>` (no signature policy file is needed then).
fn skopeo(args: &[&str]) -> Output {
    run(Command::new("skopeo").arg("--insecure-policy").args(args), TIMEOUT)
}

fn skopeo_ok(args: &[&str]) -> Output {
    let out = skopeo(args);
    assert!(out.status.success(), "skopeo {args:?} failed: {}", describe(&out));
    out
}

/// `docker://<host>/<reference>` of the server.
fn remote(server: &Server, reference: &str) -> String {
    format!("docker://{}/{reference}", server.host())
}

/// Copies reference `from` of `src` into berth as `to` (`<repo>:<tag>`), digests preserved.
fn push(server: &Server, src: &Layout, from: &str, to: &str, all: bool) {
    let (source, dest) = (src.name(from), remote(server, to));
    let mut args = vec!["copy", "--preserve-digests", "--dest-tls-verify=false", "--dest-no-creds"];
    if all {
        args.push("--all");
    }
    skopeo_ok(&[&args[..], &[source.as_str(), dest.as_str()]].concat());
}

/// Copies `from` (`<repo>:<tag>`) out of berth into reference `to` of the layout in `dir`.
fn pull(server: &Server, from: &str, dir: &std::path::Path, to: &str, all: bool) -> Layout {
    let (source, dest) = (remote(server, from), format!("oci:{}:{to}", dir.display()));
    let mut args = vec!["copy", "--preserve-digests", "--src-tls-verify=false", "--src-no-creds"];
    if all {
        args.push("--all");
    }
    skopeo_ok(&[&args[..], &[source.as_str(), dest.as_str()]].concat());
    Layout::open(dir)
}

/// The manifest berth serves for `reference`, as skopeo reads it.
fn raw_manifest(server: &Server, reference: &str) -> Vec<u8> {
    skopeo_ok(&["inspect", "--raw", "--tls-verify=false", "--no-creds", &remote(server, reference)]).stdout
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("skopeo printed no JSON ({e}): {}", describe(out)))
}

fn list_tags(server: &Server, repo: &str) -> Vec<String> {
    let out = skopeo_ok(&["list-tags", "--tls-verify=false", "--no-creds", &remote(server, repo)]);
    let mut tags: Vec<String> = json(&out)["Tags"]
        .as_array()
        .unwrap_or_else(|| panic!("no Tags: {}", describe(&out)))
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    tags.sort();
    tags
}

/// A plain `GET` of the registry API: status, headers and body.
async fn get(server: &Server, path: &str, accept: &str) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let r = http().get(server.url(path)).header("accept", accept).send().await.expect("GET failed");
    let (status, headers) = (r.status(), r.headers().clone());
    (status, headers, r.bytes().await.expect("body").to_vec())
}

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_else(|| panic!("no {name} header in {headers:?}"))
}

/// Asserts that layout `dst` holds the manifest, config and layers of `image` exactly as `src` does.
fn assert_same_image(src: &Layout, dst: &Layout, image: &Image) {
    for d in [&image.manifest, &image.config].into_iter().chain(&image.layers) {
        let (a, b) = (src.blob(&d.digest), dst.blob(&d.digest));
        assert!(a == b, "blob {} differs after the round trip ({} vs {} bytes)", d.digest, a.len(), b.len());
        assert_eq!(sha256(&b), d.digest);
    }
}

#[tokio::test]
async fn skopeo_single_image_round_trips_with_the_same_digests() {
    if !require_tool("skopeo", "skopeo_single_image_round_trips_with_the_same_digests") {
        return;
    }
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let src = Layout::create(&dir.path().join("src"));
    let image = src.image(
        "amd64",
        &[
            tar(&[("etc/motd", b"welcome to berth\n"), ("one.bin", &random_bytes(3000, 1))]),
            tar(&[("two.bin", &random_bytes(70_000, 2))]),
        ],
    );
    src.tag("v1", &image.manifest);

    push(&server, &src, "v1", "e2e/single:v1", false);

    // What berth serves is the original manifest, byte for byte.
    let raw = raw_manifest(&server, "e2e/single:v1");
    assert_eq!(sha256(&raw), image.manifest.digest, "pushed manifest digest changed");
    assert!(raw == src.blob(&image.manifest.digest));
    let (status, headers, body) = get(&server, "/v2/e2e/single/manifests/v1", OCI_MANIFEST).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&headers, "docker-content-digest"), image.manifest.digest);
    assert_eq!(header(&headers, "content-type"), OCI_MANIFEST);
    assert!(body == raw);
    for layer in &image.layers {
        let (status, _, body) = get(&server, &format!("/v2/e2e/single/blobs/{}", layer.digest), "*/*").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body == src.blob(&layer.digest), "layer {} differs in berth", layer.digest);
    }

    // Pulled back into a second layout: the same manifest digest and identical blobs.
    let back = pull(&server, "e2e/single:v1", &dir.path().join("back"), "v1", false);
    let pulled = back.reference("v1");
    assert_eq!(pulled.digest, image.manifest.digest);
    assert_eq!(pulled.media_type, OCI_MANIFEST);
    assert_eq!(pulled.digest, sha256(&raw), "pulled digest differs from what berth serves");
    assert_same_image(&src, &back, &image);
}

#[tokio::test]
async fn skopeo_multi_arch_index_round_trips_with_all() {
    if !require_tool("skopeo", "skopeo_multi_arch_index_round_trips_with_all") {
        return;
    }
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let src = Layout::create(&dir.path().join("src"));
    let amd64 = src.image("amd64", &[tar(&[("arch", b"amd64\n"), ("x.bin", &random_bytes(5000, 3))])]);
    let arm64 = src.image("arm64", &[tar(&[("arch", b"arm64\n"), ("x.bin", &random_bytes(5000, 4))])]);
    let index = src.index(&[(&amd64, "amd64"), (&arm64, "arm64")]);
    src.tag("multi", &index);

    push(&server, &src, "multi", "e2e/multi:v1", true);

    let raw = raw_manifest(&server, "e2e/multi:v1");
    assert_eq!(sha256(&raw), index.digest, "pushed index digest changed");
    let (status, headers, _) = get(&server, "/v2/e2e/multi/manifests/v1", OCI_INDEX).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&headers, "content-type"), OCI_INDEX);
    for child in [&amd64, &arm64] {
        let path = format!("/v2/e2e/multi/manifests/{}", child.manifest.digest);
        let (status, headers, body) = get(&server, &path, OCI_MANIFEST).await;
        assert_eq!(status, StatusCode::OK, "child manifest {} is not in berth", child.manifest.digest);
        assert_eq!(header(&headers, "docker-content-digest"), child.manifest.digest);
        assert!(body == src.blob(&child.manifest.digest));
    }

    let back = pull(&server, "e2e/multi:v1", &dir.path().join("back"), "v1", true);
    let pulled = back.reference("v1");
    assert_eq!(pulled.digest, index.digest);
    assert_eq!(pulled.media_type, OCI_INDEX);
    let pulled_index = layout::parse_manifest(&back.blob(&pulled.digest));
    assert_eq!(
        layout::digests(&pulled_index, "manifests"),
        [amd64.manifest.digest.clone(), arm64.manifest.digest.clone()]
    );
    assert_same_image(&src, &back, &amd64);
    assert_same_image(&src, &back, &arm64);
}

#[tokio::test]
async fn skopeo_lists_inspects_and_deletes_tags() {
    if !require_tool("skopeo", "skopeo_lists_inspects_and_deletes_tags") {
        return;
    }
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let src = Layout::create(&dir.path().join("src"));
    let first = src.image("amd64", &[tar(&[("version", b"1\n")]), tar(&[("data", &random_bytes(2048, 5))])]);
    let second = src.image("amd64", &[tar(&[("version", b"2\n")])]);
    src.tag("first", &first.manifest);
    src.tag("second", &second.manifest);
    // v1 and v1-copy name the first image, v2 the second.
    push(&server, &src, "first", "e2e/single:v1", false);
    push(&server, &src, "first", "e2e/single:v1-copy", false);
    push(&server, &src, "second", "e2e/single:v2", false);

    assert_eq!(list_tags(&server, "e2e/single"), ["v1", "v1-copy", "v2"]);

    let inspected =
        json(&skopeo_ok(&["inspect", "--tls-verify=false", "--no-creds", &remote(&server, "e2e/single:v1")]));
    assert_eq!(inspected["Digest"], first.manifest.digest.as_str());
    assert_eq!(inspected["Architecture"], "amd64");
    assert_eq!(inspected["Os"], "linux");
    let layers: Vec<&str> = inspected["Layers"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
    assert_eq!(layers, first.layers.iter().map(|l| l.digest.as_str()).collect::<Vec<_>>());
    let mut repo_tags: Vec<&str> =
        inspected["RepoTags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    repo_tags.sort();
    assert_eq!(repo_tags, ["v1", "v1-copy", "v2"]);

    let by_digest = remote(&server, &format!("e2e/single@{}", first.manifest.digest));
    skopeo_ok(&["delete", "--tls-verify=false", "--no-creds", &by_digest]);

    let gone = skopeo(&["inspect", "--tls-verify=false", "--no-creds", &remote(&server, "e2e/single:v1")]);
    assert!(!gone.status.success(), "inspect of a deleted image succeeded: {}", describe(&gone));
    assert!(
        String::from_utf8_lossy(&gone.stderr).to_lowercase().contains("manifest unknown"),
        "inspect of a deleted image failed otherwise: {}",
        describe(&gone)
    );
    assert_eq!(list_tags(&server, "e2e/single"), ["v2"], "tags of the deleted manifest are still listed");

    for reference in ["v1", "v1-copy", first.manifest.digest.as_str()] {
        let (status, _, body) = get(&server, &format!("/v2/e2e/single/manifests/{reference}"), OCI_MANIFEST).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "manifest {reference} still served after the delete");
        let body: Value = serde_json::from_slice(&body).expect("an error body");
        assert_eq!(body["errors"][0]["code"], "MANIFEST_UNKNOWN");
    }
    let (status, headers, _) = get(&server, "/v2/e2e/single/manifests/v2", OCI_MANIFEST).await;
    assert_eq!(status, StatusCode::OK, "the delete took the other image along");
    assert_eq!(header(&headers, "docker-content-digest"), second.manifest.digest);
    let still = json(&skopeo_ok(&["inspect", "--tls-verify=false", "--no-creds", &remote(&server, "e2e/single:v2")]));
    assert_eq!(still["Digest"], second.manifest.digest.as_str());
}

#[tokio::test]
async fn skopeo_large_layer_round_trips_byte_identical() {
    if !require_tool("skopeo", "skopeo_large_layer_round_trips_byte_identical") {
        return;
    }
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let src = Layout::create(&dir.path().join("src"));
    // 20 MiB: two full 8 MiB parts and a tail, whatever chunks skopeo sends.
    let image = src.image("amd64", &[tar(&[("big.bin", &random_bytes(20 << 20, 6))]), tar(&[("small", b"s\n")])]);
    src.tag("v1", &image.manifest);
    let big = &image.layers[0];
    assert!(big.size > 20 << 20);

    push(&server, &src, "v1", "e2e/large:v1", false);

    let path = format!("/v2/e2e/large/blobs/{}", big.digest);
    let head = http().head(server.url(&path)).send().await.expect("HEAD failed");
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(header(head.headers(), "content-length"), big.size.to_string());
    let (status, headers, body) = get(&server, &path, "*/*").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header(&headers, "docker-content-digest"), big.digest);
    assert_eq!(body.len(), big.size);
    assert_eq!(sha256(&body), big.digest, "berth serves other bytes than were pushed");

    let back = pull(&server, "e2e/large:v1", &dir.path().join("back"), "v1", false);
    assert_eq!(back.reference("v1").digest, image.manifest.digest);
    assert_same_image(&src, &back, &image);
}
