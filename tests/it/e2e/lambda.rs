//! The Lambda shell end to end, locally: the `bootstrap` binary polls cargo-lambda's emulator
//! (`cargo lambda watch --only-lambda-apis`), which turns HTTP requests into API Gateway v2
//! events, over the S3 server at `BERTH_TEST_S3_ENDPOINT` (s3s-fs from `scripts/s3-servers`).
//! skopeo pushes and pulls an image whose layers fit Lambda's body limit, and the web UI shows it; a 20 MiB layer goes
//! up in 4 MiB chunks and comes back identical; an over-limit PATCH gets the documented error;
//! with `BERTH_AUTH` naming a policy in the bucket and the signing secret in SSM Parameter Store
//! (`BERTH_AUTH_SECRET_SSM`, on moto), skopeo pushes and pulls with credentials and anonymous
//! pushes are refused.
//!
//! Needs cargo-lambda (`BERTH_CARGO_LAMBDA` or on PATH; scripts/test installs it from PyPI), the
//! debug `bootstrap` (`cargo build -p berth-lambda`) and skopeo: missing ones fail under CI and
//! are a skip elsewhere.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_auth::{TokenUse, Tokens};
use reqwest::StatusCode;

use super::layout::{Layout, tar};
use super::server::{Logged, get_status, requests, workspace_root};
use crate::common::{S3Kind, S3Server, describe, http, random_bytes, require_tool, run, sha256, unique};

/// The emulator and the function polling it, stopped on drop.
pub(crate) struct Lambda {
    pub(crate) addr: SocketAddr,
    children: Vec<Child>,
    /// The function's log (its stderr).
    log: PathBuf,
    /// Its stdout: the Embedded Metric Format lines.
    metrics: PathBuf,
}

impl Drop for Lambda {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Lambda {
    /// Starts both, open (`BERTH_AUTH=none`), or `None` (a skip, or a panic under CI) when a
    /// piece is missing.
    fn start(test: &str) -> Option<Self> {
        Self::start_with(test, &[("BERTH_AUTH", "none".into())])
    }

    /// Starts both, with further environment for the function (which overrides the defaults),
    /// and waits until the function answers `GET /v2/`.
    pub(crate) fn start_with(test: &str, env: &[(&str, String)]) -> Option<Self> {
        let lambda = Self::spawn(test, env)?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while !matches!(get_status(lambda.addr, "/v2/"), Ok(200 | 401)) {
            assert!(Instant::now() < deadline, "the emulated function did not answer GET /v2/ within 60 s");
            std::thread::sleep(Duration::from_millis(200));
        }
        Some(lambda)
    }

    /// Starts both, with further environment for the function, not waiting for it to answer.
    pub(crate) fn spawn(test: &str, env: &[(&str, String)]) -> Option<Self> {
        let cargo_lambda = std::env::var("BERTH_CARGO_LAMBDA").unwrap_or_else(|_| "cargo-lambda".into());
        let bootstrap = workspace_root().join("target/debug/bootstrap");
        assert!(bootstrap.exists(), "{test} runs {}: build it first (scripts/test does)", bootstrap.display());
        let S3Server { endpoint, bucket } = S3Server::require(S3Kind::Signing, test)?;
        if !require_tool(&cargo_lambda, test) || !require_tool("skopeo", test) {
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let logs = workspace_root().join("target/e2e-logs");
        std::fs::create_dir_all(&logs).expect("target/e2e-logs");
        let log_file = |name: &str| logs.join(format!("{name}-{}.log", unique()));
        let log = |path: &PathBuf| Stdio::from(std::fs::File::create(path).expect("log file"));
        let emulator = Command::new(&cargo_lambda)
            .args([
                "lambda",
                "watch",
                "--only-lambda-apis",
                "--disable-cors",
                "-A",
                "127.0.0.1",
                "-P",
                &port.to_string(),
            ])
            .current_dir(workspace_root())
            .stdin(Stdio::null())
            .stdout(log(&log_file("cargo-lambda")))
            .stderr(log(&log_file("cargo-lambda-err")))
            .spawn()
            .expect("cargo-lambda starts");
        let mut lambda =
            Lambda { addr, children: vec![emulator], log: log_file("bootstrap-err"), metrics: log_file("bootstrap") };
        // The function's first poll must find the runtime API listening, or it exits.
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "cargo-lambda did not listen on {addr} within 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        let function = Command::new(&bootstrap)
            .env("AWS_LAMBDA_RUNTIME_API", format!("http://{addr}/.rt"))
            .env("AWS_LAMBDA_FUNCTION_NAME", "_")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
            .env("BERTH_STORAGE", "s3")
            .env("BERTH_S3_BUCKET", &bucket)
            .env("BERTH_S3_ENDPOINT", &endpoint)
            .env("BERTH_S3_PATH_STYLE", "true")
            .env("BERTH_S3_PREFIX", format!("lambda-{}", unique()))
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(log(&lambda.metrics))
            .stderr(log(&lambda.log))
            .spawn()
            .expect("bootstrap starts");
        lambda.children.push(function);
        Some(lambda)
    }

    /// Invokes the function directly (Lambda's Invoke API, as an EventBridge schedule does) with
    /// `event`; its answer.
    pub(crate) async fn invoke(&self, event: &serde_json::Value) -> serde_json::Value {
        let invoke = http().post(self.url("/2015-03-31/functions/_/invocations")).body(event.to_string());
        let r = invoke.send().await.unwrap();
        let status = r.status();
        let body = r.text().await.unwrap();
        assert_eq!(
            status,
            StatusCode::OK,
            "invoke: {body}\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("invoke answered {body}: {e}"))
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The requests the function has logged so far.
    pub(crate) fn requests(&self) -> Vec<Logged> {
        requests(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }
}

#[tokio::test]
async fn lambda_skopeo_push_and_pull_within_the_body_limit() {
    let Some(lambda) = Lambda::start("lambda_skopeo_push_and_pull_within_the_body_limit") else { return };
    let dir = tempfile::tempdir().unwrap();
    let src = Layout::create(&dir.path().join("src"));
    let layers = vec![tar(&[("a.bin", &random_bytes(300_000, 1))]), tar(&[("b.bin", &random_bytes(2_000_000, 2))])];
    let image = src.image("amd64", &layers);
    src.tag("v1", &image.manifest);
    let dest = format!("docker://{}/lambda/app:v1", lambda.addr);
    let out = run(
        Command::new("skopeo")
            .args(["--insecure-policy", "copy", "--preserve-digests", "--dest-tls-verify=false"])
            .args([src.name("v1"), dest.clone()]),
        Duration::from_secs(180),
    );
    assert!(out.status.success(), "push through the Lambda: {}", describe(&out));
    let back = dir.path().join("back");
    let out = run(
        Command::new("skopeo")
            .args(["--insecure-policy", "copy", "--preserve-digests", "--src-tls-verify=false"])
            .args([dest, format!("oci:{}:v1", back.display())]),
        Duration::from_secs(180),
    );
    assert!(out.status.success(), "pull through the Lambda: {}", describe(&out));
    let pulled = Layout::open(&back);
    assert_eq!(pulled.reference("v1").digest, image.manifest.digest);
    for layer in &image.layers {
        assert!(pulled.blob(&layer.digest) == src.blob(&layer.digest), "layer {} differs", layer.digest);
    }
    // The web UI answers from the same function: the repository, its tag, the image's layers.
    for (path, expected) in [("/", "lambda/app"), ("/r/lambda/app", "v1"), ("/r/lambda/app/-/v1", "id=\"layers\"")] {
        let r = http().get(lambda.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8", "{path}");
        let page = r.text().await.unwrap();
        assert!(page.contains(expected), "{path} lacks {expected}:\n{page}");
    }
    // Health probes answer from the function too, and each request left its metrics on stdout.
    for probe in ["/livez", "/readyz"] {
        assert_eq!(http().get(lambda.url(probe)).send().await.unwrap().status(), StatusCode::OK, "{probe}");
    }
    let stdout = std::fs::read_to_string(&lambda.metrics).unwrap();
    let documents: Vec<serde_json::Value> = stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let manifest_put = documents.iter().find(|d| d["route"] == "manifest" && d["method"] == "PUT");
    let manifest_put = manifest_put.unwrap_or_else(|| panic!("no metrics of the manifest PUT on stdout:\n{stdout}"));
    assert_eq!(manifest_put["_aws"]["CloudWatchMetrics"][0]["Namespace"], "berth", "{manifest_put}");
    assert_eq!((manifest_put["status"].as_str(), manifest_put["Requests"].as_u64()), (Some("2xx"), Some(1)));
    assert!(manifest_put["StorageCalls"].as_u64() >= Some(1), "{manifest_put}");
    assert!(documents.iter().any(|d| d["route"] == "health"), "no metrics of the probes:\n{stdout}");
}

#[tokio::test]
async fn lambda_chunked_push_of_a_large_layer_and_the_over_limit_error() {
    let Some(lambda) = Lambda::start("lambda_chunked_push_of_a_large_layer_and_the_over_limit_error") else { return };
    let client = http();
    let data = random_bytes(20 * 1024 * 1024, 3);
    let digest = sha256(&data);
    let start = client.post(lambda.url("/v2/lambda/big/blobs/uploads/")).send().await.unwrap();
    assert_eq!(start.status(), StatusCode::ACCEPTED);
    assert!(start.headers().get("oci-chunk-min-length").is_some());
    let location = start.headers()["location"].to_str().unwrap().to_string();

    for (i, chunk) in data.chunks(4 * 1024 * 1024).enumerate() {
        let start = i * 4 * 1024 * 1024;
        let range = format!("{start}-{}", start + chunk.len() - 1);
        let r = client
            .patch(lambda.url(&location))
            .header("content-type", "application/octet-stream")
            .header("content-range", &range)
            .body(chunk.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED, "chunk {range}: {}", r.text().await.unwrap_or_default());
    }
    let done = client.put(lambda.url(&format!("{location}?digest={digest}"))).send().await.unwrap();
    assert_eq!(done.status(), StatusCode::CREATED, "{}", done.text().await.unwrap_or_default());
    // The GET redirects to S3; the client follows it.
    let pulled = client.get(lambda.url(&format!("/v2/lambda/big/blobs/{digest}"))).send().await.unwrap();
    assert_eq!(pulled.status(), StatusCode::OK);
    assert!(pulled.bytes().await.unwrap() == data, "the pulled layer differs");

    let start = client.post(lambda.url("/v2/lambda/big/blobs/uploads/")).send().await.unwrap();
    let location = start.headers()["location"].to_str().unwrap().to_string();
    // One PATCH over the limit: refused with advice.
    let refused = client
        .patch(lambda.url(&location))
        .header("content-type", "application/octet-stream")
        .body(vec![0u8; 5_000_000])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body = refused.text().await.unwrap();
    assert!(body.contains("SIZE_INVALID") && body.contains("Content-Range"), "{body}");
    assert!(body.contains("BERTH_UPLOAD_URL"), "the refusal does not name the upload host setting: {body}");
}

#[tokio::test]
async fn lambda_with_auth_from_a_policy_in_the_bucket() {
    let test = "lambda_with_auth_from_a_policy_in_the_bucket";
    let Some(S3Server { endpoint, bucket }) = S3Server::require(S3Kind::Signing, test) else { return };
    // The signing secret is an SSM SecureString (on moto), as the template's AuthSecretParameter.
    let Some(S3Server { endpoint: moto, .. }) = S3Server::require(S3Kind::Moto, test) else { return };
    let root = berth_s3::S3Storage::new(berth_s3::S3Options {
        bucket: bucket.clone(),
        region: "us-east-1".into(),
        endpoint: Some(endpoint),
        public_endpoint: None,
        path_style: true,
        prefix: String::new(),
    })
    .await;
    let key = format!("lambda-auth-{}.toml", unique());
    let policy = super::auth::policy();
    berth_storage::Storage::put(&root, &key, policy.into(), berth_storage::Condition::Overwrite).await.unwrap();
    let (secret, parameter) = ("lambda-e2e-secret-0123456789abcdefghij", format!("/berth-e2e/{}/secret", unique()));
    super::auth::put_secure_parameter(&moto, &parameter, secret).await;
    let env = [
        ("BERTH_AUTH", format!("s3://{bucket}/{key}")),
        ("BERTH_AUTH_SECRET_SSM", parameter),
        ("AWS_ENDPOINT_URL_SSM", moto),
    ];
    let Some(lambda) = Lambda::start_with(test, &env) else { return };
    let r = http().get(lambda.url("/v2/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_string();
    assert!(challenge.starts_with(&format!("Bearer realm=\"http://{}/token\"", lambda.addr)), "{challenge}");
    // A token signed with the parameter's value passes, one signed with another secret does not.
    for (signed_with, status) in
        [(secret, StatusCode::OK), ("another-secret-0123456789abcdefghijkl", StatusCode::UNAUTHORIZED)]
    {
        let ttl = Duration::from_secs(60);
        let token = Tokens::new(signed_with.as_bytes(), "berth", ttl, ttl).issue("ci", vec![], TokenUse::Access);
        let r = http().get(lambda.url("/v2/")).bearer_auth(token).send().await.unwrap();
        assert_eq!(r.status(), status, "token signed with {signed_with}");
    }

    let dir = tempfile::tempdir().unwrap();
    let src = Layout::create(&dir.path().join("src"));
    let image = src.image("amd64", &[tar(&[("a.bin", &random_bytes(100_000, 5))])]);
    src.tag("v1", &image.manifest);
    let dest = format!("docker://{}/e2e/lambda-auth:v1", lambda.addr);
    let copy = |creds: &str, from: &str, to: &str| {
        let args = [
            "--insecure-policy",
            "copy",
            "--preserve-digests",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            creds,
            from,
            to,
        ];
        run(Command::new("skopeo").args(args), Duration::from_secs(300))
    };
    let out = copy("--dest-no-creds", &src.name("v1"), &dest);
    assert!(!out.status.success(), "anonymous push through the Lambda worked: {}", describe(&out));
    let out = copy("--dest-creds=ci:ci-password", &src.name("v1"), &dest);
    assert!(out.status.success(), "push with creds through the Lambda: {}", describe(&out));
    let back = dir.path().join("back");
    let out = copy("--src-creds=reader:reader-password", &dest, &format!("oci:{}:v1", back.display()));
    assert!(out.status.success(), "pull with creds through the Lambda: {}", describe(&out));
    assert_eq!(Layout::open(&back).reference("v1").digest, image.manifest.digest);
}
