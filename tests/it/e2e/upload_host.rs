//! The serverless deployment with an upload host, end to end, with authentication on: the Lambda
//! `bootstrap` under cargo-lambda's emulator (Lambda's body limit) hands upload sessions
//! (`BERTH_UPLOAD_URL`) to a real `berth serve --storage s3` over the same bucket prefix, policy
//! and secret. Real clients push images through the Lambda endpoint and pull them back: docker
//! (classic store: one PATCH with the whole layer, then PUT) and containerd's `ctr` (one PUT with
//! the whole layer, credentials dropped at the other host) images with a 256 MiB layer, skopeo and
//! podman with a 64 MiB one. The function's request log shows that no upload byte reached it; the
//! upload host's, that every one went there. A tampered capability is refused at the host and
//! writes nothing.
//!
//! Needs what the Lambda tests need (cargo-lambda, skopeo, the S3 server) and each client: a
//! missing one fails under CI, and is a skip elsewhere; a missing Docker Engine (or containerd
//! socket) is a skip everywhere.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use berth_s3::{S3Options, S3Storage};
use berth_storage::Storage;
use reqwest::StatusCode;
use serde_json::Value;
use tempfile::TempDir;

use super::docker::{Cleanup, docker_ok, docker_with, engine_answers, inspect, pushed_digest};
use super::lambda::Lambda;
use super::layout::{Layout, tar};
use super::server::{Logged, Server, list};
use crate::common::{OCI_MANIFEST, S3Kind, S3Server, describe, http, random_bytes, require_tool, run, skip, unique};

const TIMEOUT: Duration = Duration::from_secs(600);
const SECRET: &str = "upload-host-e2e-secret-0123456789abcdef";
/// The user of `super::auth::policy()` who may push and pull everywhere.
const CREDS: (&str, &str) = ("ci", "ci-password");
/// The large layer of docker's and containerd's images: a multi-hundred-MiB image, well over
/// Lambda's 4.5 MB per request.
const LARGE: usize = 256 * 1024 * 1024;
/// The large layer of skopeo's and podman's images.
const MEDIUM: usize = 64 * 1024 * 1024;

/// The function, the upload host, and what they share.
struct Deployment {
    lambda: Lambda,
    host: Server,
    s3: S3Server,
    prefix: String,
    dir: TempDir,
}

impl Deployment {
    /// Starts both over a fresh prefix, or `None` (a skip, or a panic under CI).
    fn start(test: &str) -> Option<Self> {
        let s3 = S3Server::require(S3Kind::Signing, test)?;
        let dir = tempfile::tempdir().unwrap();
        let (policy, secret) = (dir.path().join("auth.toml"), dir.path().join("secret"));
        std::fs::write(&policy, super::auth::policy()).unwrap();
        std::fs::write(&secret, SECRET).unwrap();
        let prefix = format!("upload-host-{}", unique());
        let policy = policy.to_str().unwrap().to_string();
        let auth = ["--auth", &policy, "--auth-secret-file", secret.to_str().unwrap()];
        let host = Server::start_s3_with(&s3.endpoint, &s3.bucket, &prefix, &auth);
        let env = [
            ("BERTH_S3_PREFIX", prefix.clone()),
            ("BERTH_AUTH", policy),
            ("BERTH_AUTH_SECRET", SECRET.to_string()),
            ("BERTH_UPLOAD_URL", host.url("")),
        ];
        let lambda = Lambda::start_with(test, &env)?;
        Some(Self { lambda, host, s3, prefix, dir })
    }

    /// `127.0.0.1:<port>` of the Lambda endpoint, as image references name it.
    fn registry(&self) -> String {
        self.lambda.addr.to_string()
    }

    /// The bucket under the deployment's prefix.
    async fn store(&self) -> S3Storage {
        S3Storage::new(S3Options {
            bucket: self.s3.bucket.clone(),
            region: "us-east-1".into(),
            endpoint: Some(self.s3.endpoint.clone()),
            public_endpoint: None,
            path_style: true,
            prefix: self.prefix.clone(),
        })
        .await
    }

    /// Asserts that the upload requests since the marks carried at least `at_least` bytes to the
    /// upload host and none to the function.
    fn assert_uploads_went_to_the_host(&self, marks: (usize, usize), at_least: u64) {
        let uploads = |logged: Vec<Logged>, from: usize| -> Vec<Logged> {
            logged.into_iter().skip(from).filter(|r| r.path.contains("/blobs/uploads/")).collect()
        };
        let (at_lambda, at_host) = (uploads(self.lambda.requests(), marks.0), uploads(self.host.requests(), marks.1));
        let to_lambda: u64 = at_lambda.iter().map(|r| r.bytes_in).sum();
        let to_host: u64 = at_host.iter().map(|r| r.bytes_in).sum();
        assert_eq!(to_lambda, 0, "upload bytes reached the function:\n{}", list(&at_lambda));
        assert!(to_host >= at_least, "only {to_host} upload bytes reached the upload host:\n{}", list(&at_host));
        assert!(
            at_lambda.iter().all(|r| r.method == "POST"),
            "the function took more than POSTs:\n{}",
            list(&at_lambda)
        );
    }

    /// Where each log stands now.
    fn marks(&self) -> (usize, usize) {
        (self.lambda.requests().len(), self.host.requests().len())
    }
}

/// An OCI layout under `dir` with one image tagged `v1`: a layer of `size` bytes and two small ones.
fn large_image(dir: &Path, size: usize, seed: u64) -> (Layout, super::layout::Image) {
    let layout = Layout::create(dir);
    let layers = [
        tar(&[("large.bin", &random_bytes(size, seed))]),
        tar(&[("small-1", &random_bytes(2000, seed + 1))]),
        tar(&[("small-2", unique().as_bytes())]),
    ];
    let image = layout.image("amd64", &layers);
    layout.tag("v1", &image.manifest);
    (layout, image)
}

fn skopeo(args: &[&str]) -> Output {
    run(Command::new("skopeo").arg("--insecure-policy").args(args), TIMEOUT)
}

#[tokio::test]
async fn docker_pushes_a_large_image_through_the_lambda_to_the_upload_host() {
    let test = "docker_pushes_a_large_image_through_the_lambda_to_the_upload_host";
    if !engine_answers() {
        skip(test, "no Docker Engine answers");
        return;
    }
    let Some(deployment) = Deployment::start(test) else { return };
    let registry = deployment.registry();
    let config = deployment.dir.path().join("docker-config");
    std::fs::create_dir(&config).unwrap();
    let docker = |args: &[&str], stdin: Option<&str>| {
        let out = docker_with(&config, args, stdin);
        assert!(out.status.success(), "docker {args:?}: {}", describe(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    docker(&["login", &registry, "-u", CREDS.0, "--password-stdin"], Some(&format!("{}\n", CREDS.1)));

    // An image of a 64 MiB layer (imported) and two small ones (built on top).
    let run_id = unique();
    let image = format!("{registry}/e2e/large-{run_id}");
    let (base, v1) = (format!("{image}:base"), format!("{image}:v1"));
    let _cleanup = Cleanup(vec![base.clone(), v1.clone()]);
    let rootfs = deployment.dir.path().join("rootfs.tar");
    std::fs::write(&rootfs, tar(&[("large.bin", &random_bytes(LARGE, 81)), ("id", run_id.as_bytes())])).unwrap();
    docker_ok(&["import", rootfs.to_str().unwrap(), &base]);
    let context = deployment.dir.path().join("context");
    std::fs::create_dir(&context).unwrap();
    std::fs::write(context.join("a.txt"), format!("a of {run_id}\n")).unwrap();
    std::fs::write(context.join("b.bin"), random_bytes(3000, 82)).unwrap();
    std::fs::write(context.join("Dockerfile"), format!("FROM {base}\nCOPY a.txt /a.txt\nCOPY b.bin /b.bin\n")).unwrap();
    docker(&["build", "-t", &v1, context.to_str().unwrap()], None);
    let id = inspect(&v1)["Id"].as_str().unwrap().to_string();

    let marks = deployment.marks();
    let digest = pushed_digest(&docker(&["push", &v1], None));
    deployment.assert_uploads_went_to_the_host(marks, LARGE as u64);

    docker(&["rmi", &v1, &base], None);
    let pulled = docker(&["pull", &v1], None);
    assert!(pulled.contains(&format!("Digest: {digest}")), "the pull reported another digest:\n{pulled}");
    let after = inspect(&v1);
    assert_eq!(after["Id"], id.as_str(), "the pulled image has another id");
    assert_eq!(after["RootFS"]["Layers"].as_array().map(Vec::len), Some(3));
    let digests: Vec<&str> = after["RepoDigests"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
    assert!(digests.contains(&format!("{image}@{digest}").as_str()), "RepoDigests: {digests:?}");
}

/// The containerd socket, when one answers (docker's own, or a system containerd).
fn containerd_socket() -> Option<PathBuf> {
    let candidates = ["/run/containerd/containerd.sock", "/var/run/docker/containerd/containerd.sock"];
    let env = std::env::var_os("CONTAINERD_ADDRESS").map(PathBuf::from);
    env.into_iter().chain(candidates.map(PathBuf::from)).find(|socket| {
        socket.exists()
            && run(Command::new("ctr").arg("-a").arg(socket).arg("version"), Duration::from_secs(30)).status.success()
    })
}

#[tokio::test]
async fn containerd_pushes_a_large_image_through_the_lambda_to_the_upload_host() {
    let test = "containerd_pushes_a_large_image_through_the_lambda_to_the_upload_host";
    if !require_tool("ctr", test) {
        return;
    }
    let Some(socket) = containerd_socket() else {
        skip(test, "no containerd answers (docker's, or /run/containerd)");
        return;
    };
    let Some(deployment) = Deployment::start(test) else { return };
    let namespace = format!("berth-e2e-{}", unique());
    let ctr = |args: &[&str]| {
        let mut command = Command::new("ctr");
        command.arg("-a").arg(&socket).args(["-n", &namespace]).args(args);
        let out = run(&mut command, TIMEOUT);
        assert!(out.status.success(), "ctr {args:?}: {}", describe(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let layout_dir = deployment.dir.path().join("layout");
    let (_, image) = large_image(&layout_dir, LARGE, 91);
    let archive = deployment.dir.path().join("image.tar");
    let out = run(Command::new("tar").arg("-cf").arg(&archive).arg("-C").arg(&layout_dir).arg("."), TIMEOUT);
    assert!(out.status.success(), "tar: {}", describe(&out));
    let name = format!("{}/e2e/ctr-{}", deployment.registry(), unique());
    ctr(&["images", "import", "--base-name", &name, archive.to_str().unwrap()]);
    let reference = format!("{name}:v1");
    let user = format!("{}:{}", CREDS.0, CREDS.1);

    let marks = deployment.marks();
    ctr(&["images", "push", "--plain-http", "--user", &user, &reference]);
    deployment.assert_uploads_went_to_the_host(marks, LARGE as u64);

    // The registry has the manifest and every blob, byte for byte as containerd pushed them.
    let repo = name.split_once('/').unwrap().1;
    let url = deployment.lambda.url(&format!("/v2/{repo}/manifests/v1"));
    let r = http().head(url).basic_auth(CREDS.0, Some(CREDS.1)).header("accept", OCI_MANIFEST);
    let r = r.send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["docker-content-digest"].to_str().unwrap(), image.manifest.digest);
    ctr(&["images", "rm", &reference]);
    ctr(&["images", "pull", "--plain-http", "--user", &user, &reference]);
    let listed = ctr(&["images", "ls"]);
    assert!(listed.contains(&image.manifest.digest), "containerd pulled another manifest:\n{listed}");
    ctr(&["images", "rm", &reference]);
}

#[tokio::test]
async fn skopeo_and_podman_push_and_pull_through_the_lambda_to_the_upload_host() {
    let test = "skopeo_and_podman_push_and_pull_through_the_lambda_to_the_upload_host";
    if !require_tool("skopeo", test) || !require_tool("podman", test) {
        return;
    }
    let Some(deployment) = Deployment::start(test) else { return };
    let dir = deployment.dir.path();
    let (src, image) = large_image(&dir.join("src"), MEDIUM, 101);
    let registry = deployment.registry();
    let creds = format!("{}:{}", CREDS.0, CREDS.1);

    let dest = format!("docker://{registry}/e2e/skopeo-{}:v1", unique());
    let marks = deployment.marks();
    let out = skopeo(&[
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        "--dest-creds",
        &creds,
        &src.name("v1"),
        &dest,
    ]);
    assert!(out.status.success(), "skopeo push: {}", describe(&out));
    deployment.assert_uploads_went_to_the_host(marks, MEDIUM as u64);
    let back = dir.join("back");
    let to = format!("oci:{}:v1", back.display());
    let out = skopeo(&["copy", "--preserve-digests", "--src-tls-verify=false", "--src-creds", &creds, &dest, &to]);
    assert!(out.status.success(), "skopeo pull: {}", describe(&out));
    let pulled = Layout::open(&back);
    assert_eq!(pulled.reference("v1").digest, image.manifest.digest);
    for layer in &image.layers {
        assert!(pulled.blob(&layer.digest) == src.blob(&layer.digest), "layer {} differs", layer.digest);
    }

    // podman, with storage of its own: an image imported from a tarball (new to the registry, so
    // every layer is sent), pushed, removed, pulled back.
    let storage = dir.join("podman");
    let podman = |args: &[&str]| {
        let mut command = Command::new("podman");
        command.arg("--root").arg(storage.join("root")).arg("--runroot").arg(storage.join("run"));
        command.args(["--storage-driver", "vfs", "--events-backend", "file", "--cgroup-manager", "cgroupfs"]);
        let out = run(command.args(args), TIMEOUT);
        assert!(out.status.success(), "podman {args:?}: {}", describe(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let rootfs = dir.join("podman-rootfs.tar");
    std::fs::write(&rootfs, tar(&[("large.bin", &random_bytes(MEDIUM, 102)), ("id", unique().as_bytes())])).unwrap();
    let local = podman(&["import", "--quiet", rootfs.to_str().unwrap(), "localhost/berth-e2e:v1"]);
    let target = format!("{registry}/e2e/podman-{}:v1", unique());
    let digest_file = dir.join("podman-digest");
    let marks = deployment.marks();
    let digest_arg = digest_file.to_str().unwrap();
    podman(&[
        "push",
        "--tls-verify=false",
        "--creds",
        &creds,
        "--digestfile",
        digest_arg,
        &local,
        &format!("docker://{target}"),
    ]);
    deployment.assert_uploads_went_to_the_host(marks, MEDIUM as u64);
    let pushed = std::fs::read_to_string(&digest_file).unwrap();
    podman(&["rmi", "--all", "--force"]);
    let id = podman(&["pull", "--quiet", "--tls-verify=false", "--creds", &creds, &format!("docker://{target}")]);
    let digest = podman(&["image", "inspect", "--format", "{{.Digest}}", &id]);
    assert_eq!(digest, pushed.trim(), "podman pulled another manifest than it pushed");
    assert_eq!(id, local.trim_start_matches("sha256:"), "the pulled image has another id");
}

#[tokio::test]
async fn a_tampered_upload_url_is_refused_at_the_host_and_writes_nothing() {
    let test = "a_tampered_upload_url_is_refused_at_the_host_and_writes_nothing";
    let Some(deployment) = Deployment::start(test) else { return };
    let store = deployment.store().await;
    let r = http()
        .post(deployment.lambda.url("/v2/e2e/tamper/blobs/uploads/"))
        .basic_auth(CREDS.0, Some(CREDS.1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with(&deployment.host.url("/v2/e2e/tamper/blobs/uploads/")), "{location}");
    let before = store.list("", None, 1000).await.unwrap().keys();

    let (url, capability) = location.split_once("?_state=").unwrap();
    let (expiry, mac) = capability.split_once('.').unwrap();
    let later = format!("{url}?_state={}.{mac}", expiry.parse::<u64>().unwrap() + 86_400);
    let mut forged = mac.to_string();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    for bad in [later, url.to_string(), format!("{url}?_state={expiry}.{forged}")] {
        let r = http().patch(&bad).header("content-type", "application/octet-stream").body(vec![1u8; 1 << 20]);
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{bad}");
        let body: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        assert_eq!(body["errors"][0]["code"], "UNAUTHORIZED", "{bad}");
    }
    assert_eq!(store.list("", None, 1000).await.unwrap().keys(), before, "a refused PATCH wrote something");

    let r = http().patch(&location).header("content-type", "application/octet-stream").body(vec![1u8; 1 << 20]);
    assert_eq!(r.send().await.unwrap().status(), StatusCode::ACCEPTED, "the untampered URL works");
}
