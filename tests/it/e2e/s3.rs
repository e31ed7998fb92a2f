//! End-to-end over S3: a real `berth serve --storage s3` ([`Server::start_s3`]) on the S3 server
//! at `BERTH_TEST_S3_ENDPOINT` (s3s-fs, started by `scripts/s3-servers`, which checks the
//! signatures of presigned URLs; or MinIO, AWS), each test under its own key prefix. skopeo
//! pushes images and pulls them back, through `307` redirects to presigned URLs for blobs of at
//! least `--redirect-min-size` and from berth for smaller ones; blobs are stored
//! once however many repositories push them; a wrong digest leaves nothing behind; and the
//! storage calls of a push, a re-push, a pull, a blob `HEAD` and a tags list stay within budget,
//! counted from the `storage_calls=` of the server's request log lines.
//!
//! Without `BERTH_TEST_S3_ENDPOINT` (or skopeo) the tests fail under CI (env `CI` set) and are
//! skipped elsewhere.

use std::collections::BTreeSet;
use std::process::{Command, Output};
use std::time::Duration;

use berth_s3::{S3Options, S3Storage};
use berth_storage::Storage;
use reqwest::{StatusCode, Url};
use serde_json::Value;

use super::layout::{Image, Layout, tar};
use super::server::{Logged, Server, list};
use crate::common::{S3Kind, S3Server, describe, http, random_bytes, require_tool, run, sha256, unique};

const TIMEOUT: Duration = Duration::from_secs(300);

/// The S3 server and bucket of the tests.
struct S3 {
    endpoint: String,
    bucket: String,
}

impl S3 {
    /// The server the test script started, or `None` (after failing under CI, or a skip of
    /// `test`) when there is none or skopeo is missing.
    fn from_env(test: &str) -> Option<Self> {
        let S3Server { endpoint, bucket } = S3Server::require(S3Kind::Signing, test)?;
        require_tool("skopeo", test).then_some(Self { endpoint, bucket })
    }

    /// A berth server over a fresh prefix, and that prefix.
    fn server(&self) -> (Server, String) {
        let prefix = format!("berth-e2e/{}", unique());
        (Server::start_s3(&self.endpoint, &self.bucket, &prefix), prefix)
    }

    /// The bucket as the server sees it, under `prefix`.
    async fn store(&self, prefix: &str) -> S3Storage {
        S3Storage::new(S3Options {
            bucket: self.bucket.clone(),
            region: "us-east-1".to_string(),
            endpoint: Some(self.endpoint.clone()),
            public_endpoint: None,
            path_style: true,
            prefix: prefix.to_string(),
        })
        .await
    }
}

/// Every key under `prefix` of the store.
async fn keys(store: &S3Storage, prefix: &str) -> BTreeSet<String> {
    let page = store.list(prefix, None, 10_000).await.unwrap_or_else(|e| panic!("list {prefix}: {e}"));
    assert!(!page.truncated);
    page.keys().into_iter().collect()
}

/// `blobs/sha256/<hex>` of a digest.
fn blob_key(digest: &str) -> String {
    format!("blobs/sha256/{}", digest.strip_prefix("sha256:").expect("a sha256 digest"))
}

/// Runs `skopeo --insecure-policy <args>`, which must succeed.
fn skopeo_ok(args: &[&str]) -> Output {
    let out = run(Command::new("skopeo").arg("--insecure-policy").args(args), TIMEOUT);
    assert!(out.status.success(), "skopeo {args:?} failed: {}", describe(&out));
    out
}

/// Copies reference `from` of `src` into berth as `to` (`<repo>:<tag>`), digests preserved.
fn push(server: &Server, src: &Layout, from: &str, to: &str) -> Output {
    push_args(server, src, from, to, &[])
}

/// [`push`] with skopeo's `--debug`: its output then names the blobs it skipped, as
/// "Skipping blob <digest> (already present)" (without a terminal, nothing else says so).
fn push_debug(server: &Server, src: &Layout, from: &str, to: &str) -> Output {
    push_args(server, src, from, to, &["--debug"])
}

fn push_args(server: &Server, src: &Layout, from: &str, to: &str, global: &[&str]) -> Output {
    let (source, dest) = (src.name(from), format!("docker://{}/{to}", server.host()));
    let copy = ["copy", "--preserve-digests", "--dest-tls-verify=false", "--dest-no-creds", &source, &dest];
    skopeo_ok(&[global, &copy[..]].concat())
}

/// Copies `from` (`<repo>:<tag>`) out of berth into reference `to` of a layout in `dir`.
fn pull(server: &Server, from: &str, dir: &std::path::Path, to: &str) -> Layout {
    let (source, dest) = (format!("docker://{}/{from}", server.host()), format!("oci:{}:{to}", dir.display()));
    skopeo_ok(&["copy", "--preserve-digests", "--src-tls-verify=false", "--src-no-creds", &source, &dest]);
    Layout::open(dir)
}

/// Asserts that `dst` holds the manifest, config and layers of `image` exactly as `src` does.
fn assert_same_image(src: &Layout, dst: &Layout, image: &Image) {
    assert_eq!(dst.reference("v1").digest, image.manifest.digest, "the pulled manifest digest differs");
    for d in [&image.manifest, &image.config].into_iter().chain(&image.layers) {
        let (a, b) = (src.blob(&d.digest), dst.blob(&d.digest));
        assert!(a == b, "blob {} differs after the round trip ({} vs {} bytes)", d.digest, a.len(), b.len());
    }
}

/// Every blob of an image (config and layers).
fn blobs(image: &Image) -> BTreeSet<String> {
    [&image.config].into_iter().chain(&image.layers).map(|d| blob_key(&d.digest)).collect()
}

fn header(r: &reqwest::Response, name: &str) -> String {
    let value = r.headers().get(name).and_then(|v| v.to_str().ok());
    value.unwrap_or_else(|| panic!("no {name} header in {:?}", r.headers())).to_string()
}

/// An HTTP client that does not follow redirects.
fn no_redirects() -> reqwest::Client {
    let builder = reqwest::Client::builder().no_proxy().redirect(reqwest::redirect::Policy::none());
    builder.build().expect("an HTTP client")
}

/// Uploads `data` as one POST and one PUT with the body; returns its digest.
async fn upload(server: &Server, repo: &str, data: &[u8]) -> String {
    let digest = sha256(data);
    let location = start_upload(server, repo).await;
    let r = http().put(finish_url(server, &location, &digest)).body(data.to_vec()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "PUT of {digest}: {}", r.text().await.unwrap_or_default());
    digest
}

/// Starts an upload session; returns its Location.
async fn start_upload(server: &Server, repo: &str) -> String {
    let r = http().post(server.url(&format!("/v2/{repo}/blobs/uploads/"))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    header(&r, "location")
}

/// The URL that finishes the upload at `location` with `digest`.
fn finish_url(server: &Server, location: &str, digest: &str) -> String {
    let url = if location.starts_with("http") { location.to_string() } else { server.url(location) };
    format!("{url}{}digest={digest}", if url.contains('?') { '&' } else { '?' })
}

/// Asserts a `400 DIGEST_INVALID` answer.
async fn assert_digest_invalid(what: &str, r: reqwest::Response) {
    let status = r.status();
    let body = r.text().await.unwrap_or_default();
    assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {body}");
    let error: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {body}"));
    assert_eq!(error["errors"][0]["code"], "DIGEST_INVALID", "{what}: {body}");
}

/// A linux/amd64 image of one random file per layer, of the given sizes, in a fresh layout
/// under `dir`, tagged `v1`.
fn image(dir: &std::path::Path, sizes: &[usize], seed: u64) -> (Layout, Image) {
    let src = Layout::create(&dir.join("src"));
    let layers: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(i, size)| tar(&[(&format!("layer{i}.bin"), &random_bytes(*size, seed + i as u64))]))
        .collect();
    let image = src.image("amd64", &layers);
    src.tag("v1", &image.manifest);
    (src, image)
}

#[tokio::test]
async fn s3_push_and_pull_through_presigned_redirects() {
    let Some(s3) = S3::from_env("s3_push_and_pull_through_presigned_redirects") else { return };
    let (server, _prefix) = s3.server();
    let dir = tempfile::tempdir().unwrap();
    // One layer under the default --redirect-min-size (256 KiB), served; one over it, redirected.
    let (src, image) = image(dir.path(), &[3000, 300_000], 21);

    push(&server, &src, "v1", "e2e/s3:v1");

    let endpoint = Url::parse(&s3.endpoint).expect("BERTH_TEST_S3_ENDPOINT is a URL");
    let small = &image.layers[0];
    let path = format!("/v2/e2e/s3/blobs/{}", small.digest);
    let r = no_redirects().get(server.url(&path)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "GET {path} of a small blob");
    assert_eq!(header(&r, "docker-content-digest"), small.digest);
    assert!(r.bytes().await.unwrap() == src.blob(&small.digest), "berth served other bytes for {}", small.digest);
    let r = no_redirects().get(server.url(&path)).header("range", "bytes=10-19").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT, "ranged GET {path}");
    assert!(r.bytes().await.unwrap() == src.blob(&small.digest)[10..20]);
    for layer in &image.layers[1..] {
        let path = format!("/v2/e2e/s3/blobs/{}", layer.digest);
        let r = no_redirects().get(server.url(&path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::TEMPORARY_REDIRECT, "GET {path}");
        assert_eq!(header(&r, "docker-content-digest"), layer.digest);
        let location = header(&r, "location");
        let url = Url::parse(&location).unwrap_or_else(|e| panic!("Location {location:?} is not a URL: {e}"));
        assert_eq!(
            (url.scheme(), url.host_str(), url.port_or_known_default()),
            (endpoint.scheme(), endpoint.host_str(), endpoint.port_or_known_default()),
            "the redirect does not point at the S3 server: {location}"
        );
        assert!(location.contains("X-Amz-Signature="), "not a presigned URL: {location}");
        let r = http().get(&location).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "GET of the presigned {location}");
        assert!(r.bytes().await.unwrap() == src.blob(&layer.digest), "S3 served other bytes for {}", layer.digest);

        // The client's Range goes to S3 along the redirect.
        let r = http().get(server.url(&path)).header("range", "bytes=10-19").send().await.unwrap();
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT, "ranged GET {path} through the redirect");
        assert!(r.bytes().await.unwrap() == src.blob(&layer.digest)[10..20]);
    }

    // skopeo follows the redirect of the large layer and takes the config and the small layer
    // from berth.
    let before = server.requests().len();
    let back = pull(&server, "e2e/s3:v1", &dir.path().join("back"), "v1");
    assert_same_image(&src, &back, &image);
    let pulled = server.requests()[before..].to_vec();
    let count =
        |code| pulled.iter().filter(|r| r.method == "GET" && r.path.contains("/blobs/") && r.status == code).count();
    assert_eq!((count(307), count(200)), (1, 2), "redirects and served blobs:\n{}", list(&pulled));

    // skopeo deletes by digest; the tag goes with the manifest.
    let reference = format!("docker://{}/e2e/s3@{}", server.host(), image.manifest.digest);
    skopeo_ok(&["delete", "--tls-verify=false", "--no-creds", &reference]);
    let r = http().get(server.url("/v2/e2e/s3/manifests/v1")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND, "the tag of a deleted manifest");
    let tags = http().get(server.url("/v2/e2e/s3/tags/list")).send().await.unwrap().bytes().await.unwrap();
    let tags: Value = serde_json::from_slice(&tags).expect("tags list is JSON");
    assert_eq!(tags["tags"], serde_json::json!([]), "tags after the delete");
}

#[tokio::test]
async fn s3_blobs_are_stored_once_and_not_sent_again() {
    let Some(s3) = S3::from_env("s3_blobs_are_stored_once_and_not_sent_again") else { return };
    let (server, prefix) = s3.server();
    let store = s3.store(&prefix).await;
    let dir = tempfile::tempdir().unwrap();
    let (src, image) = image(dir.path(), &[5000, 80_000, 200_000], 31);

    push(&server, &src, "v1", "e2e/first:v1");
    push(&server, &src, "v1", "e2e/second:v1");
    assert_eq!(keys(&store, "blobs/").await, blobs(&image), "the blobs stored are not exactly the image's, once each");
    for d in [&image.config].into_iter().chain(&image.layers) {
        assert_eq!(store.head(&blob_key(&d.digest)).await.unwrap().size, d.size as u64);
    }
    for (i, repo) in ["e2e/first", "e2e/second"].into_iter().enumerate() {
        let back = pull(&server, &format!("{repo}:v1"), &dir.path().join(format!("back{i}")), "v1");
        assert_same_image(&src, &back, &image);
    }

    // skopeo mounted the layers into the second repository; bytes uploaded again (one POST and
    // a PUT with the body) into a third one are not stored again either.
    let layer = &image.layers[1];
    assert_eq!(upload(&server, "e2e/third", &src.blob(&layer.digest)).await, layer.digest);
    assert_eq!(keys(&store, "blobs/").await, blobs(&image), "a second upload of a layer stored it twice");
    let r = http().head(server.url(&format!("/v2/e2e/third/blobs/{}", layer.digest))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // Pushed again: skopeo finds every blob there, and sends no bytes.
    let before = server.requests().len();
    let out = push_debug(&server, &src, "v1", "e2e/first:v1");
    let again = server.requests()[before..].to_vec();
    let uploads: Vec<&Logged> = again.iter().filter(|r| r.path.contains("/blobs/uploads/")).collect();
    assert!(uploads.is_empty(), "the re-push started uploads:\n{}", list(&again));
    let sent: Vec<&Logged> =
        again.iter().filter(|r| matches!(r.method.as_str(), "PATCH" | "PUT" | "POST") && r.bytes_in > 0).collect();
    assert!(sent.iter().all(|r| r.path.contains("/manifests/")), "the re-push sent blob bytes:\n{}", list(&again));
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    for layer in &image.layers {
        let skipped = format!("Skipping blob {} (already present)", layer.digest);
        assert!(said.contains(&skipped), "skopeo did not skip {}:\n{said}", layer.digest);
    }
    assert_eq!(keys(&store, "blobs/").await, blobs(&image));
}

#[tokio::test]
async fn s3_blob_head_is_one_storage_call() {
    let Some(s3) = S3::from_env("s3_blob_head_is_one_storage_call") else { return };
    let (server, _prefix) = s3.server();
    let data = random_bytes(12_345, 41);
    let digest = upload(&server, "e2e/head", &data).await;

    let path = format!("/v2/e2e/head/blobs/{digest}");
    let r = http().head(server.url(&path)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-length"), data.len().to_string());
    assert_eq!(header(&r, "docker-content-digest"), digest);
    let logged = server.requests();
    let head = logged.iter().rfind(|r| r.method == "HEAD" && r.path == path).expect("the HEAD in the log");
    assert_eq!(head.storage_calls, 1, "HEAD of a blob: {head}");
}

#[tokio::test]
async fn s3_wrong_digest_is_refused_and_stores_nothing() {
    let Some(s3) = S3::from_env("s3_wrong_digest_is_refused_and_stores_nothing") else { return };
    let (server, prefix) = s3.server();
    let store = s3.store(&prefix).await;
    let good = upload(&server, "e2e/digest", b"a good blob").await;
    let stored = keys(&store, "blobs/").await;
    assert_eq!(stored, BTreeSet::from([blob_key(&good)]));

    let wrong = sha256(b"other bytes");
    // 9 MiB: more than a part (8 MiB), so the bytes also go through a multipart upload.
    let (small, large) = (random_bytes(1000, 51), random_bytes(9 << 20, 52));

    // A PATCHed session finished with another digest.
    let location = start_upload(&server, "e2e/digest").await;
    let url = if location.starts_with("http") { location.clone() } else { server.url(&location) };
    let r = http().patch(&url).header("content-type", "application/octet-stream").body(small.clone()).send().await;
    let r = r.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = http().put(finish_url(&server, &header(&r, "location"), &wrong)).send().await.unwrap();
    assert_digest_invalid("PATCH, then PUT ?digest=<wrong>", r).await;
    // The streamed PATCH of less than a part stored its bytes under their own digest (a sealed
    // session): verified, linked nowhere, left for garbage collection.
    let mut stored = stored;
    stored.insert(blob_key(&sha256(&small)));

    // A session's PUT carrying the whole body, small and large.
    for (what, data) in [("PUT of 1000 bytes, wrong digest", &small), ("PUT of 9 MiB, wrong digest", &large)] {
        let location = start_upload(&server, "e2e/digest").await;
        let r = http().put(finish_url(&server, &location, &wrong)).body(data.clone()).send().await.unwrap();
        assert_digest_invalid(what, r).await;
    }

    // A monolithic POST ?digest=.
    let url = server.url(&format!("/v2/e2e/digest/blobs/uploads/?digest={wrong}"));
    let r = http().post(url).header("content-type", "application/octet-stream").body(large.clone()).send().await;
    assert_digest_invalid("POST ?digest=<wrong> of 9 MiB", r.unwrap()).await;

    assert_eq!(keys(&store, "blobs/").await, stored, "a refused upload left a blob behind");
    for key in &stored {
        let body = store.get(key, None).await.unwrap().bytes().await.unwrap();
        assert_eq!(blob_key(&sha256(&body)), *key, "bytes under another digest");
    }
    for digest in [&wrong, &sha256(&small), &sha256(&large)] {
        let r = http().head(server.url(&format!("/v2/e2e/digest/blobs/{digest}"))).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{digest} is known after a refused upload");
    }
}

#[tokio::test]
async fn s3_storage_calls_of_push_repush_pull_head_and_tags_stay_within_budget() {
    let test = "s3_storage_calls_of_push_repush_pull_head_and_tags_stay_within_budget";
    let Some(s3) = S3::from_env(test) else { return };
    let (server, _prefix) = s3.server();
    let dir = tempfile::tempdir().unwrap();
    let sizes = [100 << 10, 250 << 10, 500 << 10, 750 << 10, 1 << 20];
    let (src, image) = image(dir.path(), &sizes, 61);
    let since = |mark: usize| server.requests()[mark..].to_vec();
    let mut phases: Vec<(&str, u64, Vec<Logged>)> = Vec::new();

    let mark = server.requests().len();
    push(&server, &src, "v1", "e2e/acct:v1");
    phases.push(("fresh push", 40, since(mark)));

    let mark = server.requests().len();
    push(&server, &src, "v1", "e2e/acct:v1");
    phases.push(("re-push", 12, since(mark)));

    let mark = server.requests().len();
    pull(&server, "e2e/acct:v1", &dir.path().join("back"), "v1");
    // Manifest, config and 5 layers: 1 call each, +1 for each blob under 256 KiB (served, not
    // redirected: the config and 2 layers).
    phases.push(("pull", 10, since(mark)));

    let mark = server.requests().len();
    let r = http().head(server.url(&format!("/v2/e2e/acct/blobs/{}", image.layers[2].digest))).send().await;
    assert_eq!(r.unwrap().status(), StatusCode::OK);
    phases.push(("blob HEAD", 1, since(mark)));

    let mark = server.requests().len();
    let r = http().get(server.url("/v2/e2e/acct/tags/list")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let listed: Value = serde_json::from_slice(&r.bytes().await.unwrap()).expect("a JSON tag list");
    assert_eq!(listed["tags"], serde_json::json!(["v1"]));
    phases.push(("tags list", 1, since(mark)));

    assert_same_image(&src, &Layout::open(&dir.path().join("back")), &image);

    let mut table = String::from("\nstorage calls over S3, 5-layer image (100 KiB .. 1 MiB)\n");
    table += &format!("{:<12} {:>8} {:>6} {:>8}\n", "phase", "requests", "calls", "budget");
    for (name, budget, logged) in &phases {
        let calls: u64 = logged.iter().map(|r| r.storage_calls).sum();
        table += &format!("{name:<12} {:>8} {calls:>6} {budget:>8}\n", logged.len());
    }
    for (name, _, logged) in &phases {
        table += &format!("-- {name}\n{}", list(logged));
    }
    eprintln!("{table}");
    for (name, budget, logged) in &phases {
        let calls: u64 = logged.iter().map(|r| r.storage_calls).sum();
        assert!(calls <= *budget, "{name}: {calls} storage calls, over the budget of {budget}\n{table}");
    }
}
