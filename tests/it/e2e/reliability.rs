//! S3 faults under a real `berth serve`: the fault-injecting proxy ([`crate::faults`]) sits
//! between berth and moto. Storage that cannot be reached mid-push is a `503 UNAVAILABLE` with
//! `Retry-After` (not a hang, not a 500), logged with the operation and key, and the client's
//! retry completes the same upload once S3 is back; with 10% of S3 requests failing, skopeo
//! and docker pushes and pulls still come back byte for byte; a connection reset during the upload's last
//! steps (completing the multipart upload, the copy to the blob's key, the manifest and tag
//! writes) leaves nothing half-written visible, and the retried push completes; `kill -9` of
//! berth at each step of a push, then a restart, lets the client's retry complete it. Each test
//! ends with `berth fsck` over the bucket: clean.

use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use super::docker::{Cleanup, docker, docker_ok, engine_answers, inspect, pushed_digest};
use super::fsck::assert_clean;
use super::layout::{Layout, tar};
use super::server::Server;
use crate::common::{S3Kind, S3Server, describe, http, random_bytes, require_tool, run, sha256, skip, unique};
use crate::faults::{Fault, FaultProxy, Rule};

/// A server over moto through a fresh proxy, and the `berth fsck` that checks its storage
/// directly. (The tests run on a multi-threaded runtime: the proxy's tasks go on serving while a
/// test blocks on a client process.)
async fn server_behind_proxy(test: &str, seed: u64) -> Option<(Server, FaultProxy, Fsck)> {
    let S3Server { endpoint, bucket } = S3Server::require(S3Kind::Moto, test)?;
    let proxy = FaultProxy::start(&endpoint, seed).await;
    let prefix = format!("reliability/{}", unique());
    let server = Server::start_s3(&proxy.endpoint(), &bucket, &prefix);
    Some((server, proxy, Fsck { endpoint, bucket, prefix }))
}

/// Where `berth fsck` looks: moto itself, not the proxy.
struct Fsck {
    endpoint: String,
    bucket: String,
    prefix: String,
}

impl Fsck {
    fn assert_clean(&self) {
        let args = ["--storage", "s3", "--s3-path-style", "--s3-endpoint", &self.endpoint, "--s3-bucket", &self.bucket];
        assert_clean(&[&args[..], &["--s3-prefix", &self.prefix]].concat());
    }
}

/// S3 stops answering between two chunks of an upload: the PATCH is answered `503` with
/// `Retry-After` and the spec's body within seconds; the failure is logged with its operation
/// and key; when S3 is back, the same PATCH goes through and the blob completes intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_unreachable_mid_push_is_503_with_retry_after_and_the_retry_completes() {
    let test = "s3_unreachable_mid_push_is_503_with_retry_after_and_the_retry_completes";
    let Some((server, proxy, fsck)) = server_behind_proxy(test, 1).await else { return };
    let client = http();
    let data = random_bytes(3 << 20, 41);
    let (first, second) = data.split_at(1 << 20);
    let started = client.post(server.url("/v2/rel/app/blobs/uploads/")).send().await.unwrap();
    assert_eq!(started.status(), StatusCode::ACCEPTED);
    let location = started.headers()["location"].to_str().unwrap().to_string();
    let url = if location.starts_with('/') { server.url(&location) } else { location };
    let patch = |range: String, body: Vec<u8>| {
        client.patch(&url).header("content-range", range).header("content-type", "application/octet-stream").body(body)
    };
    let r = patch(format!("0-{}", first.len() - 1), first.to_vec()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    proxy.down();
    let asked = Instant::now();
    let second_range = format!("{}-{}", first.len(), data.len() - 1);
    let refused = patch(second_range.clone(), second.to_vec()).send().await.unwrap();
    let waited = asked.elapsed();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE, "log:\n{}", server.log());
    assert_eq!(refused.headers()["retry-after"], "5");
    let body: serde_json::Value = serde_json::from_slice(&refused.bytes().await.unwrap()).unwrap();
    assert_eq!(body["errors"][0]["code"], "UNAVAILABLE", "{body}");
    assert!(!body.to_string().contains("GetObject") && !body.to_string().contains("127.0.0.1"), "{body}");
    assert!(waited < Duration::from_secs(30), "the 503 took {waited:?}");
    let log = server.log();
    let failed: Vec<&str> = log.lines().filter(|l| l.contains("request failed")).collect();
    assert_eq!(failed.len(), 1, "the failure is not logged once:\n{log}");
    assert!(failed[0].contains("uploads/") && failed[0].contains("Object"), "no operation and key: {}", failed[0]);

    proxy.up();
    let r = patch(second_range, second.to_vec()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED, "the retried PATCH: {}", r.text().await.unwrap());
    let digest = sha256(&data);
    let r =
        client.put(format!("{url}{}digest={digest}", if url.contains('?') { "&" } else { "?" })).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().await.unwrap());
    let blob = client.get(server.url(&format!("/v2/rel/app/blobs/{digest}"))).send().await.unwrap();
    assert_eq!(blob.status(), StatusCode::OK);
    assert!(blob.bytes().await.unwrap() == data, "the blob differs from what was pushed");
    fsck.assert_clean();
}

fn skopeo(args: &[&str]) -> std::process::Output {
    run(Command::new("skopeo").arg("--insecure-policy").args(args), Duration::from_secs(300))
}

/// Pushes a two-layer image with skopeo, pulls it back and compares every byte; `retries` is
/// skopeo's own `--retry-times`.
fn round_trip(server: &Server, dir: &std::path::Path, name: &str, retries: &str) -> Result<(), String> {
    let (src, image) = Layout::with_own_image(&dir.join(format!("src-{name}")), name, &[2 << 20, 12 << 20]);
    let remote = format!("docker://{}/faults/{name}:v1", server.host());
    let retry = ["--retry-times", retries];
    let push = skopeo(
        &[&["copy", "--preserve-digests", "--dest-tls-verify=false"][..], &retry, &[&src.name("v1"), &remote]].concat(),
    );
    if !push.status.success() {
        return Err(format!("push: {}", describe(&push)));
    }
    let back = dir.join(format!("back-{name}"));
    let dest = format!("oci:{}:v1", back.display());
    let pull =
        skopeo(&[&["copy", "--preserve-digests", "--src-tls-verify=false"][..], &retry, &[&remote, &dest]].concat());
    if !pull.status.success() {
        return Err(format!("pull: {}", describe(&pull)));
    }
    let pulled = Layout::open(&back);
    assert_eq!(pulled.reference("v1").digest, image.manifest.digest);
    for layer in &image.layers {
        assert!(pulled.blob(&layer.digest) == src.blob(&layer.digest), "layer {} differs", layer.digest);
    }
    Ok(())
}

/// 10% of S3 requests fail (`503 SlowDown`, `500 InternalError`, `400 RequestTimeout`) and 5%
/// more are held back 200 ms: the SDK's retries and skopeo's own carry pushes and pulls
/// through, intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_and_pulls_survive_ten_percent_injected_s3_errors() {
    let test = "pushes_and_pulls_survive_ten_percent_injected_s3_errors";
    if !require_tool("skopeo", test) {
        return;
    }
    let Some((server, proxy, fsck)) = server_behind_proxy(test, 7).await else { return };
    proxy.set(ten_percent_errors());
    let dir = tempfile::tempdir().unwrap();
    for round in 0..3 {
        round_trip(&server, dir.path(), &format!("r{round}"), "3")
            .unwrap_or_else(|e| panic!("{e}\nlog:\n{}", server.log()));
    }
    assert_ten_percent_survived(&server, &proxy);
    fsck.assert_clean();
}

/// 10% of S3 requests fail and 5% more are held back 200 ms (the rules share one roll, so
/// their fractions add up).
fn ten_percent_errors() -> Vec<Rule> {
    vec![
        Rule::any(0.04, Fault::Error(503, "SlowDown")),
        Rule::any(0.07, Fault::Error(500, "InternalError")),
        Rule::any(0.10, Fault::Error(400, "RequestTimeout")),
        Rule::any(0.15, Fault::Delay(Duration::from_millis(200))),
    ]
}

/// About a tenth of the S3 requests failed, and no client saw a 5xx other than `503`.
fn assert_ten_percent_survived(server: &Server, proxy: &FaultProxy) {
    let injected = proxy.injected();
    let errors = injected.faults.iter().filter(|(_, fault)| fault.starts_with("Error")).count();
    let share = errors as f64 / injected.requests as f64;
    assert!((0.05..0.2).contains(&share), "{errors} errors injected in {} requests", injected.requests);
    eprintln!("{errors} errors injected in {} S3 requests", injected.requests);
    let server_errors = server.requests().into_iter().filter(|r| r.status >= 500 && r.status != 503).count();
    assert_eq!(server_errors, 0, "5xx other than 503:\n{}", server.log());
}

/// The Docker Engine through the same 10% of failing S3 requests: three images (a 2 MiB and a
/// 12 MiB file in one imported layer) pushed, removed and pulled back with the same image id.
/// Docker retries a failed layer itself; a push or pull that still fails is retried as a user
/// would, up to three times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_pushes_and_pulls_survive_ten_percent_injected_s3_errors() {
    let test = "docker_pushes_and_pulls_survive_ten_percent_injected_s3_errors";
    if !engine_answers() {
        skip(test, "no Docker Engine answers");
        return;
    }
    let Some((server, proxy, fsck)) = server_behind_proxy(test, 17).await else { return };
    proxy.set(ten_percent_errors());
    let dir = tempfile::tempdir().unwrap();
    let run_id = unique();
    let mut cleanup = Cleanup(vec![]);
    let retried = |args: &[&str]| {
        let mut failures = Vec::new();
        for _ in 0..3 {
            let out = docker(args);
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).to_string();
            }
            failures.push(describe(&out));
        }
        panic!("docker {args:?} failed three times: {failures:#?}\nlog:\n{}", server.log());
    };
    for round in 0..3u64 {
        let image = format!("{}/faults/docker-{run_id}:r{round}", server.host());
        let rootfs = dir.path().join(format!("rootfs-{round}.tar"));
        let files = [("a.bin", random_bytes(2 << 20, 70 + round)), ("b.bin", random_bytes(12 << 20, 80 + round))];
        std::fs::write(&rootfs, tar(&files.iter().map(|(n, b)| (*n, &b[..])).collect::<Vec<_>>())).unwrap();
        docker_ok(&["import", rootfs.to_str().unwrap(), &image]);
        cleanup.0.push(image.clone());
        let id = inspect(&image)["Id"].as_str().unwrap().to_string();
        let digest = pushed_digest(&retried(&["push", &image]));
        docker_ok(&["rmi", &image]);
        let pulled = retried(&["pull", &image]);
        assert!(pulled.contains(&format!("Digest: {digest}")), "the pull reported another digest:\n{pulled}");
        assert_eq!(inspect(&image)["Id"], id.as_str(), "the pulled image has another id");
    }
    assert_ten_percent_survived(&server, &proxy);
    fsck.assert_clean();
}

/// A connection reset at each of the push's last steps — the multipart completion, the copy of
/// a blob to its key, the repository's link, the manifest record, the tag (each as the request
/// goes out and as its answer comes back) — fails nothing for good: the client's retry
/// completes the push, and the image pulls back whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resets_during_the_last_steps_of_a_push_leave_nothing_half_written() {
    let test = "resets_during_the_last_steps_of_a_push_leave_nothing_half_written";
    if !require_tool("skopeo", test) {
        return;
    }
    let Some((server, proxy, fsck)) = server_behind_proxy(test, 11).await else { return };
    let dir = tempfile::tempdir().unwrap();
    for (name, rule) in [
        ("complete-request", Rule::next("CompleteMultipartUpload", 1, Fault::ResetRequest(0))),
        ("complete-response", Rule::next("CompleteMultipartUpload", 1, Fault::ResetResponse(0))),
        ("copy", Rule::next("CopyObject", 1, Fault::ResetResponse(0))),
        ("copy-part", Rule::next("UploadPartCopy", 1, Fault::ResetResponse(0))),
        ("put-request", Rule::next("PutObject", 1, Fault::ResetRequest(10))),
        ("put-response", Rule::next("PutObject", 1, Fault::ResetResponse(0))),
        ("link-response", Rule::next_on("PutObject", "/_blobs/", Fault::ResetResponse(0))),
        ("manifest-request", Rule::next_on("PutObject", "/_manifests/", Fault::ResetRequest(10))),
        ("manifest-response", Rule::next_on("PutObject", "/_manifests/", Fault::ResetResponse(0))),
        ("tag-request", Rule::next_on("PutObject", "/_tags/", Fault::ResetRequest(10))),
        ("tag-response", Rule::next_on("PutObject", "/_tags/", Fault::ResetResponse(0))),
    ] {
        proxy.set(vec![rule]);
        round_trip(&server, dir.path(), name, "3").unwrap_or_else(|e| panic!("{name}: {e}\nlog:\n{}", server.log()));
    }
    let injected = proxy.injected();
    eprintln!("faults injected: {:?}", injected.faults);
    let hit: Vec<&str> = injected.faults.iter().map(|(op, _)| *op).collect();
    for operation in ["CompleteMultipartUpload", "CopyObject", "PutObject"] {
        assert!(hit.contains(&operation), "no fault hit {operation}: {hit:?}");
    }
    // Two on any PutObject, one on each link, manifest and tag rule.
    assert_eq!(hit.iter().filter(|op| **op == "PutObject").count(), 7, "{hit:?}");
    fsck.assert_clean();
}

/// Pushes image `name` (layers of its own) from a fresh layout in `dir` with skopeo, as a child
/// process.
fn spawn_push(server: &Server, dir: &std::path::Path, name: &str) -> (Layout, std::process::Child) {
    let (src, _) = Layout::with_own_image(&dir.join(format!("src-{name}")), name, &[1 << 20, 10 << 20]);
    let child = Command::new("skopeo")
        .args(["--insecure-policy", "copy", "--preserve-digests", "--dest-tls-verify=false"])
        .args([src.name("v1"), format!("docker://{}/crash/{name}:v1", server.host())])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("skopeo starts");
    (src, child)
}

/// `kill -9` of `berth serve` at each step of a push over S3 — mid-PATCH (an upload part never
/// reaches S3), between the multipart completion and the copy to the blob's key, between that
/// copy and the repository's link, mid-manifest-PUT (before the manifest record, and between it
/// and the tag) — then a restart on the same bucket and the client's retry: the push completes,
/// the image pulls back whole, and `berth fsck` finds nothing wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_each_step_of_a_push_then_restart_and_retry() {
    let test = "kill_9_at_each_step_of_a_push_then_restart_and_retry";
    if !require_tool("skopeo", test) {
        return;
    }
    let Some((server, proxy, fsck)) = server_behind_proxy(test, 13).await else { return };
    let mut server = Some(server);
    let dir = tempfile::tempdir().unwrap();
    for (name, operation, path) in [
        ("mid-patch", "UploadPart", "/uploads/"),
        ("complete-copy", "CopyObject", "/blobs/"),
        ("copy-link", "PutObject", "/_blobs/"),
        ("manifest", "PutObject", "/_manifests/"),
        ("manifest-tag", "PutObject", "/_tags/"),
    ] {
        proxy.set(vec![Rule::next_on(operation, path, Fault::Hold)]);
        let running = server.take().unwrap();
        let (src, mut push) = spawn_push(&running, dir.path(), name);
        let deadline = Instant::now() + Duration::from_secs(120);
        while !proxy.injected().faults.iter().any(|(op, fault)| *op == operation && fault == "Hold") {
            assert!(Instant::now() < deadline, "{name}: the push never reached {operation} {path}:\n{}", running.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        running.kill();
        let _ = push.wait();
        proxy.set(vec![]);
        let restarted = Server::start_s3(&proxy.endpoint(), &fsck.bucket, &fsck.prefix);
        let remote = format!("docker://{}/crash/{name}:v1", restarted.host());
        let out = skopeo(&["copy", "--preserve-digests", "--dest-tls-verify=false", &src.name("v1"), &remote]);
        assert!(out.status.success(), "{name}: the retried push: {}\n{}", describe(&out), restarted.log());
        let back = dir.path().join(format!("back-{name}"));
        let out = skopeo(&[
            "copy",
            "--preserve-digests",
            "--src-tls-verify=false",
            &remote,
            &format!("oci:{}:v1", back.display()),
        ]);
        assert!(out.status.success(), "{name}: pull: {}", describe(&out));
        let (pulled, pushed) = (Layout::open(&back), src.reference("v1"));
        assert_eq!(pulled.reference("v1").digest, pushed.digest, "{name}");
        fsck.assert_clean();
        server = Some(restarted);
    }
}
