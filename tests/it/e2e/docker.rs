//! End-to-end with the docker client and the machine's Docker Engine: an imported image is
//! pushed to berth, removed and pulled back with the same image id and digest; an image built
//! on top of it reuses the base layer ("Layer already exists") and mounts across repositories.
//!
//! Docker treats registries on 127.0.0.0/8 as insecure, so plain HTTP on loopback works; the
//! daemon runs on this host and reaches the server there. Without an answering Docker Engine
//! the test is skipped (also under CI, whose machine may have none) and reported so.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use super::layout::tar;
use super::server::Server;
use crate::common::{describe, http, on_path, random_bytes, run, run_with_input, skip, skip_part, unique};

const TIMEOUT: Duration = Duration::from_secs(300);
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

pub(crate) fn docker(args: &[&str]) -> Output {
    run(Command::new("docker").args(args).env("DOCKER_BUILDKIT", "0"), TIMEOUT)
}

pub(crate) fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(out.status.success(), "docker {args:?} failed: {}", describe(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs docker with its configuration (logins) in `config`, and `stdin` as input.
pub(crate) fn docker_with(config: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut command = Command::new("docker");
    command.env("DOCKER_CONFIG", config).env("DOCKER_BUILDKIT", "0").args(args);
    run_with_input(&mut command, stdin.map(str::as_bytes), TIMEOUT)
}

/// Whether a Docker Engine answers (`docker version` reports a server).
pub(crate) fn engine_answers() -> bool {
    if !on_path("docker") {
        return false;
    }
    let out = run(Command::new("docker").args(["version", "--format", "{{.Server.Version}}"]), Duration::from_secs(60));
    out.status.success() && !String::from_utf8_lossy(&out.stdout).trim().is_empty()
}

/// Removes the images it was given when dropped, pass or fail.
pub(crate) struct Cleanup(pub(crate) Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for image in self.0.iter().rev() {
            let _ = Command::new("docker").args(["rmi", "--force", image]).output();
        }
    }
}

/// The `sha256:…` after `digest: ` in `docker push` output.
pub(crate) fn pushed_digest(output: &str) -> String {
    output
        .split_whitespace()
        .skip_while(|w| *w != "digest:")
        .nth(1)
        .filter(|d| d.starts_with("sha256:") && d.len() == 71)
        .unwrap_or_else(|| panic!("no digest in the push output:\n{output}"))
        .to_string()
}

pub(crate) fn inspect(image: &str) -> Value {
    let out = docker_ok(&["image", "inspect", image]);
    let all: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("docker image inspect: {e}\n{out}"));
    all[0].clone()
}

/// Digest and layer digests of a manifest as berth serves it to a docker client.
async fn served_manifest(server: &Server, repo: &str, tag: &str) -> (String, Vec<String>) {
    let r = http()
        .get(server.url(&format!("/v2/{repo}/manifests/{tag}")))
        .header("accept", DOCKER_MANIFEST)
        .send()
        .await
        .expect("GET manifest");
    assert_eq!(r.status(), StatusCode::OK, "{repo}:{tag} is not in berth");
    let digest = r.headers()["docker-content-digest"].to_str().unwrap().to_string();
    let manifest: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    let layers = manifest["layers"].as_array().unwrap().iter().map(|l| l["digest"].as_str().unwrap().to_string());
    (digest, layers.collect())
}

#[tokio::test]
async fn docker_push_pull_and_layer_reuse() {
    if !engine_answers() {
        skip("docker_push_pull_and_layer_reuse", "no Docker Engine answers");
        return;
    }
    let server = Server::start();
    let run_id = unique();
    let repo = format!("e2e/docker-{run_id}");
    let image = format!("{}/{repo}", server.host());
    let (v1, v2) = (format!("{image}:v1"), format!("{image}:v2"));
    let other = format!("{}/e2e/docker-other-{run_id}:v1", server.host());
    let mut cleanup = Cleanup(vec![v1.clone()]);

    // A base image from a rootfs tarball; its content is unique to this run.
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs.tar");
    let run_file = format!("{run_id}\n");
    let rootfs_tar = tar(&[("run-id", run_file.as_bytes()), ("data.bin", &random_bytes(300_000, 7))]);
    std::fs::write(&rootfs, rootfs_tar).unwrap();
    docker_ok(&["import", rootfs.to_str().unwrap(), &v1]);
    let id = inspect(&v1)["Id"].as_str().unwrap().to_string();
    cleanup.0.push(id.clone());

    let push = docker_ok(&["push", &v1]);
    let digest = pushed_digest(&push);
    let (served, base_layers) = served_manifest(&server, &repo, "v1").await;
    assert_eq!(served, digest, "berth serves another manifest than docker pushed");
    assert_eq!(base_layers.len(), 1);

    docker_ok(&["rmi", &v1]);
    let gone = docker(&["image", "inspect", &v1]);
    assert!(!gone.status.success(), "the image is still local after rmi: {}", describe(&gone));

    let pulled = docker_ok(&["pull", &v1]);
    assert!(pulled.contains(&format!("Digest: {digest}")), "pull reported another digest:\n{pulled}");
    let after = inspect(&v1);
    assert_eq!(after["Id"], id.as_str(), "the pulled image has another id");
    let repo_digests: Vec<&str> = after["RepoDigests"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(repo_digests.contains(&format!("{image}@{digest}").as_str()), "RepoDigests: {repo_digests:?}");

    // An image on top of the base: the base layer is reused, in the repository and across repositories.
    let context = dir.path().join("context");
    std::fs::create_dir(&context).unwrap();
    std::fs::write(context.join("child.txt"), format!("child of {run_id}\n")).unwrap();
    std::fs::write(context.join("Dockerfile"), format!("FROM {v1}\nCOPY child.txt /child.txt\n")).unwrap();
    if !build(&context, &v2) {
        return;
    }
    cleanup.0.push(v2.clone());
    let push = docker_ok(&["push", &v2]);
    assert_eq!(push.matches("Layer already exists").count(), 1, "the base layer was not reused:\n{push}");
    assert_eq!(push.matches(": Pushed").count(), 1, "the new layer was not pushed once:\n{push}");
    let child_digest = pushed_digest(&push);
    let (served, child_layers) = served_manifest(&server, &repo, "v2").await;
    assert_eq!(served, child_digest);
    assert_eq!(child_layers.len(), 2);
    assert_eq!(child_layers[0], base_layers[0], "the child does not share the base layer");

    docker_ok(&["tag", &v2, &other]);
    cleanup.0.push(other.clone());
    let push = docker_ok(&["push", &other]);
    assert_eq!(
        push.matches(&format!("Mounted from {repo}")).count(),
        2,
        "both layers should be mounted from {repo}:\n{push}"
    );
    assert_eq!(pushed_digest(&push), child_digest);
    let other_repo = format!("e2e/docker-other-{run_id}");
    assert_eq!(served_manifest(&server, &other_repo, "v1").await.1, child_layers);
}

/// `docker build` with the classic builder (needs no network for `FROM` a local image and
/// `COPY`); a skip of the rest when this docker cannot build.
pub(crate) fn build(context: &Path, tag: &str) -> bool {
    let out = docker(&["build", "-t", tag, context.to_str().unwrap()]);
    if out.status.success() {
        return true;
    }
    let why = format!("docker build failed: {}", describe(&out));
    skip_part("docker_push_pull_and_layer_reuse", "the layer-reuse part", &why);
    false
}

/// `docker login` against an auth-enabled berth stores a refresh token (the OAuth2 password
/// grant), which the following push and pull exchange for access tokens; after `docker logout`
/// a push is refused.
#[tokio::test]
async fn docker_login_push_pull_with_auth() {
    if !engine_answers() {
        skip("docker_login_push_pull_with_auth", "no Docker Engine answers");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (policy, root) = (dir.path().join("auth.toml"), dir.path().join("data"));
    std::fs::write(&policy, super::auth::policy()).unwrap();
    let args = ["--storage", "fs", "--root", root.to_str().unwrap(), "--auth", policy.to_str().unwrap()];
    let server = Server::start_with(&args.map(std::ffi::OsStr::new));
    let config = dir.path().join("docker-config");
    std::fs::create_dir(&config).unwrap();
    let docker_as = |args: &[&str], stdin: Option<&str>| docker_with(&config, args, stdin);
    let host = server.host();
    let out = docker_as(&["login", &host, "-u", "ci", "--password-stdin"], Some("wrong\n"));
    assert!(!out.status.success(), "login with a wrong password succeeded: {}", describe(&out));
    let out = docker_as(&["login", &host, "-u", "ci", "--password-stdin"], Some("ci-password\n"));
    assert!(out.status.success(), "docker login failed: {}", describe(&out));
    let stored = std::fs::read_to_string(config.join("config.json")).unwrap();
    assert!(stored.contains("identitytoken"), "docker kept no refresh token: {stored}");
    assert!(!stored.contains("ci-password"), "docker kept the password, not a token");

    let image = format!("{host}/e2e/login-{}:v1", unique());
    let _cleanup = Cleanup(vec![image.clone()]);
    let rootfs = dir.path().join("rootfs.tar");
    std::fs::write(&rootfs, tar(&[("login", unique().as_bytes())])).unwrap();
    docker_ok(&["import", rootfs.to_str().unwrap(), &image]);
    let out = docker_as(&["push", &image], None);
    assert!(out.status.success(), "push after login: {}", describe(&out));
    let digest = pushed_digest(&String::from_utf8_lossy(&out.stdout));
    docker_ok(&["rmi", &image]);
    let out = docker_as(&["pull", &image], None);
    assert!(out.status.success(), "pull after login: {}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&digest));

    let out = docker_as(&["logout", &host], None);
    assert!(out.status.success(), "{}", describe(&out));
    let out = docker_as(&["push", &image], None);
    assert!(!out.status.success(), "push after logout succeeded: {}", describe(&out));
}
