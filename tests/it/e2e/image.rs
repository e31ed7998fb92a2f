//! The container image of berth, built here the way `scripts/image` builds it where no base
//! image can be pulled (FROM scratch around the `berth` binary under test), run with
//! `docker run`: it becomes healthy (its health check is `berth health`), runs as a non-root
//! user, and serves a registry that docker pushes to and pulls from. Without a Docker Engine the
//! test is skipped (also under CI, whose machine may have none) and reported so.

use std::process::Command;
use std::time::{Duration, Instant};

use super::docker::{Cleanup, docker_ok, engine_answers, inspect, pushed_digest};
use super::layout::tar;
use super::server::{binary, workspace_root};
use crate::common::{describe, random_bytes, run, skip, unique};

/// Removes the container when dropped, pass or fail.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "--force", &self.0]).output();
    }
}

#[tokio::test]
async fn the_container_image_serves_a_registry() {
    let test = "the_container_image_serves_a_registry";
    if !engine_answers() {
        skip(test, "no Docker Engine answers");
        return;
    }
    let tag = format!("berth-e2e-image:{}", unique());
    let script = workspace_root().join("scripts/image");
    let out = run(Command::new(&script).arg(binary()).arg(&tag), Duration::from_secs(300));
    assert!(out.status.success(), "scripts/image: {}", describe(&out));
    let mut cleanup = Cleanup(vec![tag.clone()]);
    let config = &inspect(&tag)["Config"];
    assert_eq!(config["User"], "65532:65532", "the image runs as root");
    assert_eq!(config["ExposedPorts"]["5000/tcp"], serde_json::json!({}));

    // Listening on 0.0.0.0, it refuses to run open unless told to.
    let refused = run(Command::new("docker").args(["run", "--rm", &tag]), Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("--auth none"), "{}", describe(&refused));

    let container = Container(
        docker_ok(&["run", "--detach", "--env", "BERTH_AUTH=none", "--publish", "127.0.0.1::5000", &tag])
            .trim()
            .to_string(),
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let health = docker_ok(&["inspect", "--format", "{{.State.Health.Status}}", &container.0]);
        if health.trim() == "healthy" {
            break;
        }
        let logs = run(Command::new("docker").args(["logs", &container.0]), Duration::from_secs(30));
        assert!(Instant::now() < deadline, "the container is {health} after 90 s: {}", describe(&logs));
        std::thread::sleep(Duration::from_millis(500));
    }
    let processes = docker_ok(&["top", &container.0, "-o", "pid,uid"]);
    let uids: Vec<&str> = processes.lines().skip(1).filter_map(|l| l.split_whitespace().nth(1)).collect();
    assert!(!uids.is_empty() && uids.iter().all(|u| *u == "65532"), "not the non-root user:\n{processes}");
    let port = docker_ok(&["port", &container.0, "5000/tcp"]);
    let host = port.lines().next().and_then(|l| l.trim().strip_prefix("127.0.0.1:")).expect("a published port");

    let image = format!("127.0.0.1:{host}/e2e/in-container:v1");
    cleanup.0.push(image.clone());
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs.tar");
    std::fs::write(&rootfs, tar(&[("data.bin", &random_bytes(2_000_000, 111)), ("id", unique().as_bytes())])).unwrap();
    docker_ok(&["import", rootfs.to_str().unwrap(), &image]);
    let id = inspect(&image)["Id"].as_str().unwrap().to_string();
    let digest = pushed_digest(&docker_ok(&["push", &image]));
    docker_ok(&["rmi", &image]);
    let pulled = docker_ok(&["pull", &image]);
    assert!(pulled.contains(&format!("Digest: {digest}")), "the pull reported another digest:\n{pulled}");
    assert_eq!(inspect(&image)["Id"], id.as_str(), "the pulled image has another id");
}
