//! End-to-end authentication with a real `berth serve --auth` and real clients: passwords hashed
//! by `berth user`, skopeo pushing and pulling with `--creds`, anonymous and pull-only callers
//! refused, a public repository pulled anonymously; the same over S3 with the policy read from
//! the bucket (`--auth s3://…`), and the start-up refusal of S3 mode without `--auth`. The
//! docker login flow (refresh tokens) is in [`super::docker`].

use std::ffi::OsStr;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use berth_s3::{S3Options, S3Storage};
use berth_storage::{Condition, Storage};
use bytes::Bytes;

use super::layout::{Layout, tar};
use super::server::{Server, binary};
use crate::common::{S3Kind, S3Server, describe, http, random_bytes, require_tool, run, sha256, unique};

const TIMEOUT: Duration = Duration::from_secs(300);
const SECRET: &str = "e2e-token-signing-secret-0123456789abcdef";

/// `berth user <name> [--bcrypt]` with the password on stdin: the policy line it prints.
pub(crate) fn berth_user(name: &str, password: &str, bcrypt: bool) -> String {
    let mut command = Command::new(binary());
    command.args(["user", name]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    if bcrypt {
        command.arg("--bcrypt");
    }
    let mut child = command.spawn().expect("berth user starts");
    child.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "berth user failed: {}", describe(&out));
    let line = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(line.starts_with(&format!("{name} = \"$")), "unexpected output {line:?}");
    line
}

/// A policy: `ci` (argon2) pushes and pulls everything, `reader` (bcrypt) pulls, anonymous pulls
/// `public/*`.
pub(crate) fn policy() -> String {
    format!(
        "[users]\n{}\n{}\n\n[[rules]]\nrepositories = [\"**\"]\nwho = [\"user:ci\"]\nactions = [\"*\"]\n\n\
         [[rules]]\nrepositories = [\"**\"]\nwho = [\"user:reader\"]\nactions = [\"pull\"]\n\n\
         [[rules]]\nrepositories = [\"public/*\"]\nwho = [\"anonymous\"]\nactions = [\"pull\"]\n",
        berth_user("ci", "ci-password", false),
        berth_user("reader", "reader-password", true),
    )
}

fn skopeo(args: &[&str]) -> Output {
    run(Command::new("skopeo").arg("--insecure-policy").args(args), TIMEOUT)
}

/// `skopeo copy` with a credentials argument (`--dest-creds=u:p`, `--dest-no-creds`, …).
fn copy(creds: &str, from: &str, to: &str) -> Output {
    skopeo(&["copy", "--preserve-digests", "--src-tls-verify=false", "--dest-tls-verify=false", creds, from, to])
}

/// Asserts that skopeo failed on a refusal (its message for both 401 and 403 says "denied"),
/// and that the server's last answer to it had `status`.
fn assert_refused(server: &Server, out: &Output, what: &str, status: u16) {
    assert!(!out.status.success(), "{what} should have been refused: {}", describe(out));
    let text = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(text.contains("denied") || text.contains("unauthorized"), "{what}: not a refusal: {}", describe(out));
    let log = server.log();
    let last = log.lines().rfind(|l| l.contains("status=")).unwrap_or_default();
    assert!(last.contains(&format!("status={status}")), "{what}: the last request was not answered {status}: {last}");
}

/// The client-side scenario against a running auth-enabled server.
fn scenario(server: &Server, dir: &Path) {
    let src = Layout::create(&dir.join("src"));
    let image = src.image("amd64", &[tar(&[("a.bin", &random_bytes(40_000, 11))]), tar(&[("b", b"b\n")])]);
    src.tag("v1", &image.manifest);
    let from = src.name("v1");
    let dest = |repo: &str| format!("docker://{}/{repo}:v1", server.host());

    let out = copy("--dest-no-creds", &from, &dest("e2e/private"));
    assert_refused(server, &out, "anonymous push", 401);
    let out = copy("--dest-creds=ci:wrong-password", &from, &dest("e2e/private"));
    assert_refused(server, &out, "push with a wrong password", 401);
    let out = copy("--dest-creds=reader:reader-password", &from, &dest("e2e/private"));
    assert_refused(server, &out, "push by a pull-only user", 403);

    for repo in ["e2e/private", "public/app"] {
        let out = copy("--dest-creds=ci:ci-password", &from, &dest(repo));
        assert!(out.status.success(), "push by ci to {repo}: {}", describe(&out));
    }

    let back = dir.join("back");
    let out = copy("--src-creds=reader:reader-password", &dest("e2e/private"), &format!("oci:{}:v1", back.display()));
    assert!(out.status.success(), "pull by reader: {}", describe(&out));
    let pulled = Layout::open(&back);
    assert_eq!(pulled.reference("v1").digest, image.manifest.digest);
    for layer in &image.layers {
        assert_eq!(sha256(&pulled.blob(&layer.digest)), layer.digest);
    }

    let anon = dir.join("anon");
    let out = copy("--src-no-creds", &dest("public/app"), &format!("oci:{}:v1", anon.display()));
    assert!(out.status.success(), "anonymous pull of a public repository: {}", describe(&out));
    assert_eq!(Layout::open(&anon).reference("v1").digest, image.manifest.digest);
    let out = copy("--src-no-creds", &dest("e2e/private"), &format!("oci:{}:v1", anon.display()));
    assert!(!out.status.success(), "anonymous pull of a private repository worked: {}", describe(&out));

    let out = skopeo(&[
        "list-tags",
        "--tls-verify=false",
        "--creds=ci:ci-password",
        &format!("docker://{}/e2e/private", server.host()),
    ]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("\"v1\""), "{}", describe(&out));

    let log = server.log();
    assert!(
        log.lines().any(|l| l.contains("user=\"ci\"") && l.contains("method=PUT") && l.contains("status=201")),
        "the log does not say who pushed:\n{log}"
    );
    for secret in ["ci-password", "reader-password", SECRET] {
        assert!(!log.contains(secret), "the server logged a secret ({secret})");
    }
}

#[tokio::test]
async fn skopeo_with_creds_against_an_auth_enabled_server() {
    if !require_tool("skopeo", "skopeo_with_creds_against_an_auth_enabled_server") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (policy_file, secret_file, root) =
        (dir.path().join("auth.toml"), dir.path().join("secret"), dir.path().join("data"));
    std::fs::write(&policy_file, policy()).unwrap();
    std::fs::write(&secret_file, SECRET).unwrap();
    let args = [
        OsStr::new("--storage"),
        OsStr::new("fs"),
        OsStr::new("--root"),
        root.as_os_str(),
        OsStr::new("--auth"),
        policy_file.as_os_str(),
        OsStr::new("--auth-secret-file"),
        secret_file.as_os_str(),
    ];
    let server = Server::start_with(&args);
    scenario(&server, dir.path());
}

/// S3 mode: the policy is an object in the bucket, and the server refuses to start without `--auth`.
#[tokio::test]
async fn s3_mode_reads_the_policy_from_the_bucket_and_requires_auth() {
    let test = "s3_mode_reads_the_policy_from_the_bucket_and_requires_auth";
    let Some(S3Server { endpoint, bucket }) = S3Server::require(S3Kind::Signing, test) else { return };
    if !require_tool("skopeo", test) {
        return;
    }
    let prefix = format!("berth-e2e/{}", unique());
    let s3 = |args: &[&str]| {
        let mut command = Command::new(binary());
        command.args(["serve", "--listen", "127.0.0.1:0", "--storage", "s3", "--s3-path-style"]);
        command.args(["--s3-endpoint", &endpoint, "--s3-bucket", &bucket, "--s3-prefix", &prefix]).args(args);
        run(&mut command, Duration::from_secs(60))
    };
    let refused = s3(&[]);
    assert!(!refused.status.success(), "S3 mode started without --auth: {}", describe(&refused));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--auth"), "{}", describe(&refused));
    let refused = s3(&["--auth", &format!("s3://{bucket}/{prefix}/missing.toml")]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no such object"), "{}", describe(&refused));

    let root = S3Storage::new(S3Options {
        bucket: bucket.clone(),
        region: "us-east-1".into(),
        endpoint: Some(endpoint.clone()),
        public_endpoint: None,
        path_style: true,
        prefix: String::new(),
    })
    .await;
    let key = format!("{prefix}-auth.toml");
    root.put(&key, Bytes::from(policy()), Condition::Overwrite).await.expect("policy object written");
    let source = format!("s3://{bucket}/{key}");
    let refused = s3(&["--auth", &source]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("secret"), "no secret: {}", describe(&refused));

    let server = Server::start_s3_with(&endpoint, &bucket, &prefix, &["--auth", &source, "--auth-secret", SECRET]);
    let dir = tempfile::tempdir().unwrap();
    scenario(&server, dir.path());
}

/// Failed logins are counted per client address: the TCP peer, or with `--trust-forwarded-for`
/// the address the proxy appended to `X-Forwarded-For`. After 5 failures the address gets 429.
#[tokio::test]
async fn failed_logins_are_throttled_per_client_address() {
    let dir = tempfile::tempdir().unwrap();
    let policy_file = dir.path().join("auth.toml");
    std::fs::write(&policy_file, policy()).unwrap();
    let start = |trust: bool| {
        let mut args =
            vec![OsStr::new("--storage"), OsStr::new("memory"), OsStr::new("--auth"), policy_file.as_os_str()];
        if trust {
            args.push(OsStr::new("--trust-forwarded-for"));
        }
        Server::start_with(&args)
    };
    let login = |server: &Server, password: &str, forwarded: &str| {
        let request = http()
            .get(server.url("/v2/"))
            .basic_auth("ci", Some(password))
            .header("x-forwarded-for", format!("203.0.113.9, {forwarded}"));
        async move { request.send().await.unwrap() }
    };

    let proxied = start(true);
    for _ in 0..5 {
        assert_eq!(login(&proxied, "wrong", "198.51.100.1").await.status(), 401);
    }
    let refused = login(&proxied, "ci-password", "198.51.100.1").await;
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    let body: serde_json::Value = serde_json::from_slice(&refused.bytes().await.unwrap()).unwrap();
    assert_eq!(body["errors"][0]["code"], "TOOMANYREQUESTS");
    assert_eq!(login(&proxied, "ci-password", "198.51.100.2").await.status(), 200, "another client is not throttled");

    // Without the flag the header is the client's word, and ignored: all of these come from 127.0.0.1.
    let direct = start(false);
    for i in 0..5 {
        assert_eq!(login(&direct, "wrong", &format!("198.51.100.{i}")).await.status(), 401);
    }
    assert_eq!(login(&direct, "ci-password", "198.51.100.200").await.status(), 429);
}

/// Stores `value` as a SecureString parameter `name` in the SSM of `endpoint` (moto).
pub(crate) async fn put_secure_parameter(endpoint: &str, name: &str, value: &str) {
    let shared = berth_s3::sdk_config("us-east-1").await;
    aws_sdk_ssm::Client::from_conf(aws_sdk_ssm::config::Builder::from(&shared).endpoint_url(endpoint).build())
        .put_parameter()
        .name(name)
        .value(value)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .unwrap_or_else(|e| panic!("PutParameter {name}: {}", aws_sdk_ssm::error::DisplayErrorContext(&e)));
}

/// `--auth-secret-ssm`: the signing secret is read from SSM Parameter Store (a SecureString, on
/// moto) at start-up, so tokens the server issues are good on another instance given the same
/// secret, and refused by one with another secret. A missing parameter stops the start and names
/// it; so does naming two secrets.
#[tokio::test]
async fn signing_secret_from_ssm_parameter_store() {
    let test = "signing_secret_from_ssm_parameter_store";
    let Some(S3Server { endpoint: moto, .. }) = S3Server::require(S3Kind::Moto, test) else { return };
    let dir = tempfile::tempdir().unwrap();
    let policy_file = dir.path().join("auth.toml");
    std::fs::write(&policy_file, policy()).unwrap();
    let name = format!("/berth-e2e/{}/token-secret", unique());
    let ssm_env = [("AWS_ENDPOINT_URL_SSM", moto.as_str())];
    let serve = |extra: &[&str]| {
        let mut command = Command::new(binary());
        command.args(["serve", "--listen", "127.0.0.1:0", "--storage", "memory", "--auth"]).arg(&policy_file);
        run(command.args(extra).envs(ssm_env), Duration::from_secs(60))
    };
    let refused = serve(&["--auth-secret-ssm", &name]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains(&name) && stderr.contains("does not exist"), "{stderr}");
    let refused = serve(&["--auth-secret-ssm", &name, "--auth-secret", SECRET]);
    assert!(!refused.status.success(), "two secrets were accepted: {}", describe(&refused));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("cannot be used with"), "{}", describe(&refused));

    let value = format!("ssm-{SECRET}");
    put_secure_parameter(&moto, &name, &value).await;
    fn args<'a>(policy: &'a Path, secret: [&'a str; 2]) -> Vec<&'a OsStr> {
        let mut args = vec![OsStr::new("--storage"), OsStr::new("memory"), OsStr::new("--auth"), policy.as_os_str()];
        args.extend(secret.map(OsStr::new));
        args
    }
    let from_ssm = Server::start_with_env(&args(&policy_file, ["--auth-secret-ssm", &name]), &ssm_env);
    let same = Server::start_with(&args(&policy_file, ["--auth-secret", &value]));
    let other = Server::start_with(&args(&policy_file, ["--auth-secret", SECRET]));

    let answer = http()
        .get(from_ssm.url("/token?service=berth&scope=repository:e2e/app:pull"))
        .basic_auth("ci", Some("ci-password"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let body: serde_json::Value = serde_json::from_slice(&answer.bytes().await.unwrap()).unwrap();
    let token = body["token"].as_str().expect("a token").to_string();
    let version_check = |server: &Server| {
        let request = http().get(server.url("/v2/")).bearer_auth(&token);
        async move { request.send().await.unwrap().status() }
    };
    assert_eq!(version_check(&from_ssm).await, 200);
    assert_eq!(version_check(&same).await, 200, "a token signed with the SSM secret is refused by its twin");
    assert_eq!(version_check(&other).await, 401, "a token signed with the SSM secret is accepted elsewhere");
    assert!(!from_ssm.log().contains(&value), "the server logged the secret");
}
