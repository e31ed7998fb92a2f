//! Garbage collection end to end, with the real binaries: `berth gc` processes in a loop (grace
//! 0) beside a `berth serve` on the same filesystem root (two processes: the root's advisory lock
//! orders their conditional writes) and on the same moto bucket, while 8 skopeo clients push;
//! every image a push reported done pulls back identical. A `berth gc` killed at any moment leaves
//! every image whole, and the next run finishes the work. `berth serve --gc-every` collects in the
//! background, and the Lambda collector (`bootstrap` with `_HANDLER=gc`, invoked as the
//! template's schedule does) collects when a run is due.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use super::lambda::Lambda;
use super::layout::{Layout, tar};
use super::server::{Server, binary};
use crate::common::{S3Kind, S3Server, describe, http, random_bytes, require_tool, run, sha256, unique};

const TIMEOUT: Duration = Duration::from_secs(300);

/// The most rounds of pushes a pusher makes while waiting for collections to run beside it.
const MAX_ROUNDS: u64 = 20;

/// Where a test's registry keeps its data, as `berth serve` and `berth gc` are told.
enum Root {
    Fs(PathBuf),
    S3 { endpoint: String, bucket: String, prefix: String },
}

impl Root {
    fn args(&self) -> Vec<String> {
        match self {
            Root::Fs(root) => vec!["--storage".into(), "fs".into(), "--root".into(), root.display().to_string()],
            Root::S3 { endpoint, bucket, prefix } => [
                "--storage",
                "s3",
                "--s3-endpoint",
                endpoint,
                "--s3-bucket",
                bucket,
                "--s3-path-style",
                "--s3-prefix",
                prefix,
            ]
            .map(String::from)
            .to_vec(),
        }
    }

    /// A server with the collectors' grace of 0 (they must agree: see `berth_core::gc`), unless
    /// `extra` gives one.
    fn server(&self, extra: &[&str]) -> Server {
        let mut args = self.args();
        if !extra.contains(&"--gc-grace") {
            args.extend(["--gc-grace".into(), "0s".into()]);
        }
        if matches!(self, Root::S3 { .. }) {
            args.extend(["--auth".into(), "none".into()]);
        }
        args.extend(extra.iter().map(|a| a.to_string()));
        Server::start_with(&args.iter().map(OsStr::new).collect::<Vec<_>>())
    }

    /// `berth gc` with grace 0 and `extra` arguments, not waited for.
    fn gc(&self, extra: &[&str]) -> Command {
        let mut command = Command::new(binary());
        command.arg("gc").args(self.args()).args(["--gc-grace", "0s"]).args(extra).env("BERTH_LOG", "warn");
        command
    }
}

fn skopeo(args: &[&str]) -> Output {
    run(Command::new("skopeo").arg("--insecure-policy").args(args), TIMEOUT)
}

/// A layout under `dir` with one image tagged `v1`: a layer shared by every image of the test,
/// and one of its own.
fn image(dir: &Path, shared: &[u8], seed: u64) -> (Layout, super::layout::Image) {
    let layout = Layout::create(dir);
    let layers =
        [tar(&[("shared", shared)]), tar(&[("own", &random_bytes(30_000, seed)), ("id", unique().as_bytes())])];
    let image = layout.image("amd64", &layers);
    layout.tag("v1", &image.manifest);
    (layout, image)
}

/// Pulls `reference` back and checks it against what was pushed.
fn pulls_back(
    server: &Server,
    dir: &Path,
    reference: &str,
    src: &Layout,
    image: &super::layout::Image,
) -> Result<(), String> {
    let back = dir.join(format!("back-{}", unique()));
    let source = format!("docker://{}/{reference}", server.host());
    let to = format!("oci:{}:v1", back.display());
    let out = skopeo(&["copy", "--preserve-digests", "--src-tls-verify=false", "--src-no-creds", &source, &to]);
    if !out.status.success() {
        return Err(format!("pull of {reference}: {}", describe(&out)));
    }
    let pulled = Layout::open(&back);
    if pulled.reference("v1").digest != image.manifest.digest {
        return Err(format!("{reference}: another manifest"));
    }
    for blob in [&image.config].into_iter().chain(&image.layers) {
        if pulled.blob(&blob.digest) != src.blob(&blob.digest) {
            return Err(format!("{reference}: blob {} differs", blob.digest));
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn berth_gc_in_a_loop_beside_berth_serve_and_eight_skopeo_pushers_loses_nothing() {
    let test = "berth_gc_in_a_loop_beside_berth_serve_and_eight_skopeo_pushers_loses_nothing";
    if !require_tool("skopeo", test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut roots = vec![("fs", Root::Fs(dir.path().join("root")))];
    if let Some(moto) = S3Server::require(S3Kind::Moto, test) {
        let prefix = format!("gc-e2e-{}", unique());
        roots.push(("moto", Root::S3 { endpoint: moto.endpoint, bucket: moto.bucket, prefix }));
    }
    for (backend, root) in roots {
        let server = Arc::new(root.server(&[]));
        let root = Arc::new(root);
        let (done, runs) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
        let collections = tokio::task::spawn_blocking({
            let (root, done, runs) = (root.clone(), done.clone(), runs.clone());
            move || {
                while !done.load(Ordering::Relaxed) {
                    let out = run(&mut root.gc(&[]), TIMEOUT);
                    let busy = String::from_utf8_lossy(&out.stderr).contains("another garbage collection");
                    assert!(out.status.success() || busy, "berth gc: {}", describe(&out));
                    runs.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        });
        let shared = Arc::new(random_bytes(40_000, 7));
        let pushers: Vec<_> = (0..8u64)
            .map(|p| {
                let (server, shared, runs) = (server.clone(), shared.clone(), runs.clone());
                let dir = dir.path().join(format!("{backend}-p{p}"));
                tokio::task::spawn_blocking(move || {
                    let (mut pushed, mut failed) = (Vec::new(), Vec::new());
                    // At least 3 rounds, and on until 3 collections ran meanwhile.
                    for round in 0..MAX_ROUNDS {
                        if round >= 3 && runs.load(Ordering::Relaxed) >= 3 {
                            break;
                        }
                        let (src, image) = image(&dir.join(format!("src{round}")), &shared, p * 10 + round);
                        let reference = format!("e2e/gc-{p}:r{round}");
                        let dest = format!("docker://{}/{reference}", server.host());
                        let copy = ["copy", "--preserve-digests", "--dest-tls-verify=false", "--dest-no-creds"];
                        let out = skopeo(&[&copy[..], &[src.name("v1").as_str(), dest.as_str()]].concat());
                        if out.status.success() {
                            pushed.push((reference, src, image));
                        } else {
                            failed.push(String::from_utf8_lossy(&out.stderr).trim().to_string());
                        }
                    }
                    (pushed, failed)
                })
            })
            .collect();
        let (mut pushed, mut failed) = (Vec::new(), Vec::new());
        for pusher in pushers {
            let (done, not) = pusher.await.unwrap();
            pushed.extend(done);
            failed.extend(not);
        }
        let runs = runs.load(Ordering::Relaxed);
        done.store(true, Ordering::Relaxed);
        collections.await.unwrap();
        let (count, tried) = (pushed.len(), pushed.len() + failed.len());
        for (reference, src, image) in &pushed {
            pulls_back(&server, dir.path(), reference, src, image).unwrap_or_else(|e| panic!("{backend}: lost: {e}"));
        }
        eprintln!(
            "{backend}: {runs} berth gc runs beside 8 skopeo pushers: {count} of {tried} pushes done, all intact"
        );
        for failure in &failed {
            eprintln!("{backend}: a push failed (a race may fail a push): {failure}");
        }
        assert!(count > 0 && runs >= 3, "{backend}: the race did not happen ({count} pushes, {runs} runs)");
    }
}

/// An image pushed over HTTP (monolithic blobs, one manifest); its manifest digest and blobs.
async fn push_http(server: &Server, name: &str, tag: &str, layers: &[Vec<u8>]) -> (String, Vec<String>) {
    let client = http();
    let mut digests = Vec::new();
    for blob in layers.iter().map(Vec::as_slice).chain([b"{}".as_slice()]) {
        let digest = sha256(blob);
        let r = client.post(server.url(&format!("/v2/{name}/blobs/uploads/?digest={digest}"))).body(blob.to_vec());
        assert_eq!(r.send().await.unwrap().status(), StatusCode::CREATED);
        digests.push(digest);
    }
    let (config, layers) = digests.split_last().unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": crate::common::OCI_MANIFEST,
        "config": {"mediaType": crate::common::OCI_CONFIG, "digest": config, "size": 2},
        "layers": layers.iter().map(|d| serde_json::json!({"mediaType": crate::common::OCI_LAYER, "digest": d, "size": 1})).collect::<Vec<_>>(),
    }))
    .unwrap();
    let r = client
        .put(server.url(&format!("/v2/{name}/manifests/{tag}")))
        .header("content-type", crate::common::OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    (sha256(&manifest), digests)
}

/// Whether every blob of `name`'s manifest `reference` is served.
async fn whole(server: &Server, name: &str, reference: &str) -> bool {
    let r = http().get(server.url(&format!("/v2/{name}/manifests/{reference}"))).send().await.unwrap();
    if r.status() != StatusCode::OK {
        return false;
    }
    let manifest: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    let mut digests: Vec<String> =
        manifest["layers"].as_array().unwrap().iter().map(|l| l["digest"].as_str().unwrap().to_string()).collect();
    digests.push(manifest["config"]["digest"].as_str().unwrap().to_string());
    for digest in digests {
        let r = http().get(server.url(&format!("/v2/{name}/blobs/{digest}"))).send().await.unwrap();
        if r.status() != StatusCode::OK || sha256(&r.bytes().await.unwrap()) != digest {
            return false;
        }
    }
    true
}

fn blob_files(root: &Path) -> usize {
    fn walk(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .map(|entries| entries.flatten().map(|e| if e.path().is_dir() { walk(&e.path()) } else { 1 }).sum())
            .unwrap_or(0)
    }
    walk(&root.join("blobs"))
}

#[tokio::test]
async fn a_killed_berth_gc_leaves_every_image_whole_and_the_next_run_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let root_dir = dir.path().join("root");
    let root = Root::Fs(root_dir.clone());
    let server = root.server(&[]);
    let mut kept = Vec::new();
    for i in 0..30u64 {
        let name = format!("kill/r{i}");
        let (digest, _) =
            push_http(&server, &name, "v1", &[random_bytes(5000, 900 + i), random_bytes(5000, 999)]).await;
        push_http(&server, &name, "v2", &[random_bytes(5000, 1000 + i)]).await;
        if i % 2 == 0 {
            let r = http().delete(server.url(&format!("/v2/{name}/manifests/{digest}"))).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::ACCEPTED);
        } else {
            kept.push((name.clone(), "v1"));
        }
        kept.push((name, "v2"));
    }
    for delay in [5, 20, 60, 150, 400] {
        let mut child = root.gc(&[]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let _ = child.kill();
        let _ = child.wait();
        for (name, tag) in &kept {
            assert!(whole(&server, name, tag).await, "{name}:{tag} is not whole after a kill at {delay} ms");
        }
        // The killed run's checkpoint is its lease; it expires (10 minutes), which removing it
        // stands in for.
        let _ = std::fs::remove_file(root_dir.join("gc/run"));
    }
    let out = run(&mut root.gc(&[]), TIMEOUT);
    assert!(out.status.success(), "{}", describe(&out));
    for (name, tag) in &kept {
        assert!(whole(&server, name, tag).await, "{name}:{tag}");
    }
    // Left: the shared layer, 15 own layers of v1, 30 of v2, and the config.
    assert_eq!(blob_files(&root_dir), 1 + 15 + 30 + 1, "{}", describe(&out));
}

#[tokio::test]
async fn berth_gc_reports_and_a_dry_run_removes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = Root::Fs(dir.path().join("root"));
    let server = root.server(&[]);
    let (digest, _) = push_http(&server, "report/app", "v1", &[random_bytes(7000, 31)]).await;
    http().delete(server.url(&format!("/v2/report/app/manifests/{digest}"))).send().await.unwrap();
    let dry = run(&mut root.gc(&["--dry-run"]), TIMEOUT);
    let said = String::from_utf8_lossy(&dry.stdout).to_string();
    assert!(dry.status.success(), "{}", describe(&dry));
    assert!(said.contains("would remove") && said.contains("report/app: link"), "{said}");
    assert!(said.contains("blob blobs/sha256/"), "{said}");
    assert_eq!(blob_files(&dir.path().join("root")), 2, "a dry run removed blobs");
    let out = run(&mut root.gc(&[]), TIMEOUT);
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success() && said.contains("finished"), "{}", describe(&out));
    assert!(said.lines().any(|l| l.starts_with("blobs") && l.split_whitespace().nth(2) == Some("2")), "{said}");
    assert_eq!(blob_files(&dir.path().join("root")), 0);
}

#[tokio::test]
async fn berth_serve_gc_every_collects_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let root = Root::Fs(dir.path().join("root"));
    // A grace of 1 s keeps the collections from taking the blobs of the push in flight (with none,
    // a collection between its blob's write and its link makes the push answer 503, by design).
    let server = root.server(&["--gc-every", "1s", "--gc-grace", "1s"]);
    let (digest, _) = push_http(&server, "bg/app", "v1", &[random_bytes(3000, 41)]).await;
    http().delete(server.url(&format!("/v2/bg/app/manifests/{digest}"))).send().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while blob_files(&dir.path().join("root")) > 0 {
        assert!(Instant::now() < deadline, "no collection within 60 s:\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(server.log().contains("garbage collection"), "{}", server.log());
}

#[tokio::test]
async fn the_lambda_collector_collects_when_a_run_is_due() {
    let test = "the_lambda_collector_collects_when_a_run_is_due";
    let Some(S3Server { endpoint, bucket }) = S3Server::require(S3Kind::Signing, test) else { return };
    let prefix = format!("lambda-gc-{}", unique());
    let server = Server::start_s3(&endpoint, &bucket, &prefix);
    push_http(&server, "gc/keep", "v1", &[random_bytes(4000, 51)]).await;
    let (digest, _) = push_http(&server, "gc/drop", "v1", &[random_bytes(6000, 52)]).await;
    let r = http().delete(server.url(&format!("/v2/gc/drop/manifests/{digest}"))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let env = [
        ("_HANDLER", "gc".to_string()),
        ("BERTH_S3_PREFIX", prefix),
        ("BERTH_GC_EVERY", "1h".into()),
        ("BERTH_GC_GRACE", "0s".into()),
    ];
    let Some(lambda) = Lambda::spawn(test, &env) else { return };
    // What an EventBridge schedule sends.
    let event = serde_json::json!({
        "version": "0", "id": unique(), "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": "2026-12-06T00:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/berth-gc"], "detail": {},
    });
    let first = lambda.invoke(&event).await;
    assert_eq!(first["collection"], "finished", "{first}");
    // The dropped image's layer; its config (`{}`) is the kept image's too.
    assert_eq!(first["report"]["blobs"]["removed"], 1, "{first}");
    assert_eq!(first["report"]["blobs"]["removed_bytes"], 6000, "{first}");
    assert_eq!(first["report"]["links"]["removed"], 2, "{first}");
    let second = lambda.invoke(&event).await;
    assert_eq!(second, serde_json::json!({"collection": "not due"}));
    assert!(whole(&server, "gc/keep", "v1").await, "the kept image is not whole");
}
