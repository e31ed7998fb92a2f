//! S3 faults under a real `berth serve`: the fault-injecting proxy ([`crate::faults`]) sits
//! between berth and moto. Storage that cannot be reached mid-push is a `503 UNAVAILABLE` with
//! `Retry-After` (not a hang, not a 500), logged with the operation and key, and the client's
//! retry completes the same upload once S3 is back; with 10% of S3 requests failing, skopeo
//! pushes and pulls still come back byte for byte; a connection reset during the upload's last
//! steps (completing the multipart upload, the copy to the blob's key, the manifest and tag
//! writes) leaves nothing half-written visible, and the retried push completes.

use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use super::layout::{Layout, tar};
use super::server::Server;
use crate::common::{S3Kind, S3Server, describe, http, random_bytes, require_tool, run, sha256, unique};
use crate::faults::{Fault, FaultProxy, Rule};

/// A server over moto through a fresh proxy. (The tests run on a multi-threaded runtime: the
/// proxy's tasks go on serving while a test blocks on a client process.)
async fn server_behind_proxy(test: &str, seed: u64) -> Option<(Server, FaultProxy)> {
    let S3Server { endpoint, bucket } = S3Server::require(S3Kind::Moto, test)?;
    let proxy = FaultProxy::start(&endpoint, seed).await;
    let server = Server::start_s3(&proxy.endpoint(), &bucket, &format!("reliability/{}", unique()));
    Some((server, proxy))
}

/// S3 stops answering between two chunks of an upload: the PATCH is answered `503` with
/// `Retry-After` and the spec's body within seconds; the failure is logged with its operation
/// and key; when S3 is back, the same PATCH goes through and the blob completes intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_unreachable_mid_push_is_503_with_retry_after_and_the_retry_completes() {
    let test = "s3_unreachable_mid_push_is_503_with_retry_after_and_the_retry_completes";
    let Some((server, proxy)) = server_behind_proxy(test, 1).await else { return };
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
}

fn skopeo(args: &[&str]) -> std::process::Output {
    run(Command::new("skopeo").arg("--insecure-policy").args(args), Duration::from_secs(300))
}

/// Pushes a two-layer image with skopeo, pulls it back and compares every byte; `retries` is
/// skopeo's own `--retry-times`.
fn round_trip(server: &Server, dir: &std::path::Path, name: &str, retries: &str) -> Result<(), String> {
    let src = Layout::create(&dir.join(format!("src-{name}")));
    // Layers of their own per image: shared ones would be mounted, not uploaded.
    let seed = name.bytes().fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    let layers =
        [tar(&[("a.bin", &random_bytes(2 << 20, seed))]), tar(&[("b.bin", &random_bytes(12 << 20, seed + 1))])];
    let image = src.image("amd64", &layers);
    src.tag("v1", &image.manifest);
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

/// 10% of S3 requests fail (`503 SlowDown`, `500 InternalError`, `400 RequestTimeout`; the
/// rules share one roll, so their fractions add up) and 5% more are held back 200 ms: the SDK's
/// retries and skopeo's own carry pushes and pulls through, intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_and_pulls_survive_ten_percent_injected_s3_errors() {
    let test = "pushes_and_pulls_survive_ten_percent_injected_s3_errors";
    if !require_tool("skopeo", test) {
        return;
    }
    let Some((server, proxy)) = server_behind_proxy(test, 7).await else { return };
    proxy.set(vec![
        Rule::any(0.04, Fault::Error(503, "SlowDown")),
        Rule::any(0.07, Fault::Error(500, "InternalError")),
        Rule::any(0.10, Fault::Error(400, "RequestTimeout")),
        Rule::any(0.15, Fault::Delay(Duration::from_millis(200))),
    ]);
    let dir = tempfile::tempdir().unwrap();
    for round in 0..3 {
        round_trip(&server, dir.path(), &format!("r{round}"), "3")
            .unwrap_or_else(|e| panic!("{e}\nlog:\n{}", server.log()));
    }
    let injected = proxy.injected();
    let errors = injected.faults.iter().filter(|(_, fault)| fault.starts_with("Error")).count();
    let share = errors as f64 / injected.requests as f64;
    assert!((0.05..0.2).contains(&share), "{errors} errors injected in {} requests", injected.requests);
    eprintln!("{errors} errors injected in {} S3 requests", injected.requests);
    let server_errors = server.requests().into_iter().filter(|r| r.status >= 500 && r.status != 503).count();
    assert_eq!(server_errors, 0, "5xx other than 503:\n{}", server.log());
}

/// A connection reset at each of the push's last steps — the multipart completion, the copy of
/// a blob to its key, a manifest or tag write — fails nothing for good: the client's retry
/// completes the push, and the image pulls back whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resets_during_the_last_steps_of_a_push_leave_nothing_half_written() {
    let test = "resets_during_the_last_steps_of_a_push_leave_nothing_half_written";
    if !require_tool("skopeo", test) {
        return;
    }
    let Some((server, proxy)) = server_behind_proxy(test, 11).await else { return };
    let dir = tempfile::tempdir().unwrap();
    for (name, operation, fault) in [
        ("complete-request", "CompleteMultipartUpload", Fault::ResetRequest(0)),
        ("complete-response", "CompleteMultipartUpload", Fault::ResetResponse(0)),
        ("copy", "CopyObject", Fault::ResetResponse(0)),
        ("copy-part", "UploadPartCopy", Fault::ResetResponse(0)),
        ("put-request", "PutObject", Fault::ResetRequest(10)),
        ("put-response", "PutObject", Fault::ResetResponse(0)),
    ] {
        proxy.set(vec![Rule::next(operation, 1, fault)]);
        round_trip(&server, dir.path(), name, "3").unwrap_or_else(|e| panic!("{name}: {e}\nlog:\n{}", server.log()));
    }
    let injected = proxy.injected();
    eprintln!("faults injected: {:?}", injected.faults);
    let hit: Vec<&str> = injected.faults.iter().map(|(op, _)| *op).collect();
    for operation in ["CompleteMultipartUpload", "CopyObject", "PutObject"] {
        assert!(hit.contains(&operation), "no fault hit {operation}: {hit:?}");
    }
}
