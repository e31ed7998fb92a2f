//! Faults of filesystem storage under a real `berth serve`: a filesystem that fails a write is
//! a `503 UNAVAILABLE` with `Retry-After`, logged once with the operation and key; `kill -9` in
//! the middle of a PATCH leaves the upload where its last answered chunk left it, and the client
//! resumes it after a restart; `kill -9` at each step of a push that makes something visible
//! (the blob at its digest, the repository's link to it, the manifest record, the tag) is
//! delivered by strace at that exact system call, and after a restart the client's retry
//! completes the push, the image pulls back whole and `berth fsck` finds nothing wrong.

use std::ffi::OsStr;
use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;

use super::fsck::assert_clean;
use super::layout::Layout;
use super::server::Server;
use crate::common::{describe, http, random_bytes, require_tool, run, sha256};

fn fsck_clean(root: &Path) {
    assert_clean(&["--storage", "fs", "--root", &root.display().to_string()]);
}

/// `.tmp/`, where every write starts, replaced by a file: the upload is answered `503` with
/// `Retry-After` and the spec's body, the log names the operation and the key once; with the
/// directory back, the same upload goes through.
#[tokio::test]
async fn a_failing_filesystem_is_503_logged_with_operation_and_key() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start_on(root.path());
    let client = http();
    let data = random_bytes(100_000, 17);
    let digest = sha256(&data);
    let url = server.url(&format!("/v2/fs/faults/blobs/uploads/?digest={digest}"));
    let tmp = root.path().join(".tmp");
    std::fs::remove_dir_all(&tmp).unwrap();
    std::fs::write(&tmp, b"not a directory").unwrap();

    let refused = client.post(&url).body(data.clone()).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE, "log:\n{}", server.log());
    assert_eq!(refused.headers()["retry-after"], "5");
    let body: serde_json::Value = serde_json::from_slice(&refused.bytes().await.unwrap()).unwrap();
    assert_eq!(body["errors"][0]["code"], "UNAVAILABLE", "{body}");
    assert!(!body.to_string().contains(".tmp"), "the cause reached the client: {body}");
    let log = server.log();
    let failed: Vec<&str> = log.lines().filter(|l| l.contains("request failed")).collect();
    assert_eq!(failed.len(), 1, "the failure is not logged once:\n{log}");
    let key = format!("PutObject blobs/sha256/{}", digest.trim_start_matches("sha256:"));
    assert!(failed[0].contains(&key) && failed[0].contains("Not a directory"), "no operation and key: {}", failed[0]);

    std::fs::remove_file(&tmp).unwrap();
    std::fs::create_dir(&tmp).unwrap();
    let stored = client.post(&url).body(data.clone()).send().await.unwrap();
    assert_eq!(stored.status(), StatusCode::CREATED);
    let blob = client.get(server.url(&format!("/v2/fs/faults/blobs/{digest}"))).send().await.unwrap();
    assert!(blob.bytes().await.unwrap() == data);
    drop(server);
    fsck_clean(root.path());
}

/// `kill -9` while a PATCH is streaming its body: after a restart on the same root, the
/// upload's URL still works, its `Range` is where the last answered chunk left it, and the
/// client resumes from there to a verified blob.
#[tokio::test]
async fn kill_9_mid_patch_on_the_filesystem_then_resume() {
    let root = tempfile::tempdir().unwrap();
    let server = Server::start_on(root.path());
    let client = http();
    let data = random_bytes(12 << 20, 23);
    let first = 1 << 20;
    let started = client.post(server.url("/v2/fs/crash/blobs/uploads/")).send().await.unwrap();
    let location = started.headers()["location"].to_str().unwrap().to_string();
    let r = client
        .patch(server.url(&location))
        .header("content-range", format!("0-{}", first - 1))
        .header("content-type", "application/octet-stream")
        .body(data[..first].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = r.headers()["location"].to_str().unwrap().to_string();

    // The next chunk: 9 of its 11 MiB sent (a part stored, more buffered), then the kill.
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    let rest = &data[first..];
    let head = format!(
        "PATCH {location} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/octet-stream\r\n\
         Content-Range: {first}-{}\r\nContent-Length: {}\r\n\r\n",
        server.host(),
        data.len() - 1,
        rest.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&rest[..9 << 20]).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    server.kill();
    drop(stream);

    let server = Server::start_on(root.path());
    let status = client.get(server.url(&location)).send().await.unwrap();
    assert_eq!(status.status(), StatusCode::NO_CONTENT, "the upload after the restart");
    assert_eq!(status.headers()["range"], format!("0-{}", first - 1), "where the upload stands");
    let r = client
        .patch(server.url(&location))
        .header("content-range", format!("{first}-{}", data.len() - 1))
        .header("content-type", "application/octet-stream")
        .body(rest.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED, "{}", r.text().await.unwrap());
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let digest = sha256(&data);
    let separator = if location.contains('?') { '&' } else { '?' };
    let r = client.put(server.url(&format!("{location}{separator}digest={digest}"))).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED, "{}", r.text().await.unwrap());
    let blob = client.get(server.url(&format!("/v2/fs/crash/blobs/{digest}"))).send().await.unwrap();
    assert!(blob.bytes().await.unwrap() == data, "the blob differs from what was pushed");
    drop(server);
    // The killed PATCH's part was stored for a session that never recorded it: bytes without a
    // session are a finding only once they are older than the grace period.
    fsck_clean(root.path());
}

fn skopeo(args: &[&str]) -> std::process::Output {
    run(Command::new("skopeo").arg("--insecure-policy").args(args), Duration::from_secs(300))
}

/// The system calls that make an object visible on the filesystem backend.
const COMMITS: &str = "link,linkat,rename,renameat,renameat2";

/// `kill -9` of `berth serve` on the filesystem at each step of a push that makes something
/// visible — the blob at its digest (after the upload's bytes are complete), the repository's
/// link to it (after the blob is there), the manifest record, the tag (after the record) —
/// delivered by strace when berth makes that system call, so each run stops at the same point;
/// then a restart on the same root and the client's retry: the push completes, the image pulls
/// back whole, and `berth fsck` finds nothing wrong.
#[test]
fn kill_9_at_each_step_of_a_push_on_the_filesystem_then_restart_and_retry() {
    let test = "kill_9_at_each_step_of_a_push_on_the_filesystem_then_restart_and_retry";
    if !require_tool("skopeo", test) || !require_tool("strace", test) {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let storage = [OsStr::new("--storage"), OsStr::new("fs"), OsStr::new("--root"), root.path().as_os_str()];
    for step in ["blob", "link", "manifest", "tag"] {
        let name = format!("crash/{step}");
        let (src, image) = Layout::with_own_image(&dir.path().join(format!("src-{step}")), step, &[1 << 20, 10 << 20]);
        let hex = |d: &str| d.trim_start_matches("sha256:").to_string();
        let key = match step {
            "blob" => format!("blobs/sha256/{}", hex(&image.layers[1].digest)),
            "link" => format!("repos/{name}/_blobs/sha256/{}", hex(&image.layers[1].digest)),
            "manifest" => format!("repos/{name}/_manifests/sha256/{}", hex(&image.manifest.digest)),
            _ => format!("repos/{name}/_tags/v1"),
        };
        let path = root.path().join(&key);
        let trace = dir.path().join(format!("strace-{step}"));
        let strace = [
            "strace".to_string(),
            "-f".into(),
            "-o".into(),
            trace.display().to_string(),
            "-P".into(),
            path.display().to_string(),
            "-e".into(),
            format!("trace={COMMITS}"),
            "-e".into(),
            format!("inject={COMMITS}:signal=KILL"),
        ];
        let server = Server::start_under(&strace.iter().map(OsStr::new).collect::<Vec<_>>(), &storage);
        let remote = format!("docker://{}/{name}:v1", server.host());
        let push = skopeo(&["copy", "--preserve-digests", "--dest-tls-verify=false", &src.name("v1"), &remote]);
        let traced = std::fs::read_to_string(&trace).unwrap_or_default();
        assert!(
            !push.status.success(),
            "{step}: the push outlived the kill at {key}; strace saw:\n{traced}\n{}",
            server.log()
        );
        assert!(traced.contains("killed by SIGKILL") && traced.contains(&key), "{step}: strace saw:\n{traced}");
        assert!(!path.exists(), "{step}: {key} was written before the kill");
        drop(server);

        let server = Server::start_with(&storage);
        let remote = format!("docker://{}/{name}:v1", server.host());
        let out = skopeo(&["copy", "--preserve-digests", "--dest-tls-verify=false", &src.name("v1"), &remote]);
        assert!(out.status.success(), "{step}: the retried push: {}\n{}", describe(&out), server.log());
        let back = dir.path().join(format!("back-{step}"));
        let dest = format!("oci:{}:v1", back.display());
        let out = skopeo(&["copy", "--preserve-digests", "--src-tls-verify=false", &remote, &dest]);
        assert!(out.status.success(), "{step}: pull: {}", describe(&out));
        let pulled = Layout::open(&back);
        assert_eq!(pulled.reference("v1").digest, image.manifest.digest, "{step}");
        for layer in &image.layers {
            assert!(pulled.blob(&layer.digest) == src.blob(&layer.digest), "{step}: layer {} differs", layer.digest);
        }
        drop(server);
        fsck_clean(root.path());
    }
}
