//! What an operator runs berth with: Prometheus metrics that a scrape parses and that move
//! with a push (on `--listen` and on a listener of their own), health probes without
//! credentials whose readiness follows the storage (an S3 server stopped and started again),
//! and TLS in `berth serve` (a test CA, skopeo pushing and pulling over it, HTTP/2 for clients
//! that ask, a renewed certificate served without a restart), S3 reached over HTTPS with the
//! system's trust only, and the production guide's systemd unit and nginx configuration.

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_parse::{Scrape, Value};

use super::layout::{Layout, tar};
use super::server::{Server, get_status};
use crate::common::{S3Kind, S3Server, describe, http, random_bytes, require_tool, run, sha256, unique};

/// A scrape of `url`, parsed as Prometheus text.
async fn scrape(url: &str) -> Scrape {
    let response = reqwest::get(url).await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(response.status(), 200, "GET {url}");
    let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let text = response.text().await.unwrap();
    Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .unwrap_or_else(|e| panic!("not Prometheus text ({e}):\n{text}"))
}

/// The sum of the samples of `metric` whose labels include `labels`.
fn sum(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            Value::Summary(_) => 0.0,
        })
        .sum()
}

/// A small image in a fresh layout, tagged `v1`.
fn image(dir: &Path) -> Layout {
    let src = Layout::create(dir);
    let image = src.image("amd64", &[tar(&[("data.bin", &random_bytes(300_000, 17))])]);
    src.tag("v1", &image.manifest);
    src
}

fn skopeo(args: &[&str]) {
    let out = run(Command::new("skopeo").arg("--insecure-policy").args(args), Duration::from_secs(120));
    assert!(out.status.success(), "skopeo {args:?}: {}", describe(&out));
}

/// `/metrics` parses as Prometheus text, and a skopeo push moves the request, byte and
/// storage-call counters; on `--metrics-listen <addr>` it moves to that address alone.
#[tokio::test]
async fn metrics_are_prometheus_text_and_move_with_a_push() {
    if !require_tool("skopeo", "metrics_are_prometheus_text_and_move_with_a_push") {
        return;
    }
    let server = Server::start();
    let before = scrape(&server.url("/metrics")).await;
    let dir = tempfile::tempdir().unwrap();
    let src = image(&dir.path().join("src"));
    let dest = format!("docker://{}/ops/app:v1", server.host());
    skopeo(&["copy", "--dest-tls-verify=false", &src.name("v1"), &dest]);
    let after = scrape(&server.url("/metrics")).await;
    let moved = |metric: &str, labels: &[(&str, &str)]| sum(&after, metric, labels) - sum(&before, metric, labels);
    assert!(moved("berth_requests_total", &[("route", "upload")]) >= 2.0, "uploads were not counted");
    assert_eq!(moved("berth_requests_total", &[("route", "manifest"), ("method", "PUT"), ("status", "201")]), 1.0);
    assert!(moved("berth_received_bytes_total", &[("route", "upload")]) >= 300_000.0, "upload bytes");
    assert!(moved("berth_storage_calls_total", &[("operation", "PutObject"), ("outcome", "ok")]) >= 1.0);
    assert!(moved("berth_storage_calls_total", &[("outcome", "not_found")]) >= 1.0, "blob probes");
    assert!(moved("berth_request_duration_seconds", &[("route", "manifest")]) >= 1.0, "latency histogram");
    assert_eq!(sum(&after, "berth_requests_in_flight", &[("route", "upload")]), 0.0);
    assert_eq!(sum(&after, "berth_build_info", &[]), 1.0);

    let metrics_addr = free_port();
    let args = ["--storage", "memory", "--metrics-listen", &metrics_addr.to_string()];
    let server = Server::start_with(&args.map(OsStr::new));
    let own = scrape(&format!("http://{metrics_addr}/metrics")).await;
    assert_eq!(sum(&own, "berth_build_info", &[]), 1.0);
    let on_listen = reqwest::get(server.url("/metrics")).await.unwrap();
    assert_eq!(on_listen.status(), 404, "/metrics is still served on --listen");
}

/// A port that was free a moment ago.
fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// An s3s-fs server of the test's own, on a fixed port so that it can be stopped and started.
struct OwnS3 {
    child: Child,
}

impl OwnS3 {
    fn start(port: u16, data: &Path) -> Self {
        let child = Command::new("s3s-fs")
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--access-key",
                "ops",
                "--secret-key",
                "ops-secret",
            ])
            .arg(data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("s3s-fs starts");
        let deadline = Instant::now() + Duration::from_secs(30);
        while get_status(SocketAddr::from(([127, 0, 0, 1], port)), "/").is_err() {
            assert!(Instant::now() < deadline, "s3s-fs does not answer");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child }
    }
}

impl Drop for OwnS3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `path` until it answers `status`, for up to 20 s.
fn wait_for(server: &Server, path: &str, status: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = get_status(server.addr(), path).ok();
        if now == Some(status) {
            return;
        }
        assert!(Instant::now() < deadline, "{path} answers {now:?}, not {status}; log:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `/livez` and `/readyz` need no credentials; readiness fails while the S3 server is down and
/// comes back with it, while liveness stays.
#[tokio::test]
async fn readiness_follows_the_storage_and_probes_need_no_credentials() {
    if !require_tool("s3s-fs", "readiness_follows_the_storage_and_probes_need_no_credentials") {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    std::fs::create_dir(data.path().join("ops")).unwrap();
    let port = free_port().port();
    let s3 = OwnS3::start(port, data.path());
    let policy = data.path().join("auth.toml");
    std::fs::write(&policy, "[users]\n").unwrap();
    let endpoint = format!("http://127.0.0.1:{port}");
    let args = ["--storage", "s3", "--s3-endpoint", &endpoint, "--s3-bucket", "ops", "--s3-path-style", "--auth"];
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).chain([policy.as_os_str()]).collect();
    let env = [("AWS_ACCESS_KEY_ID", "ops"), ("AWS_SECRET_ACCESS_KEY", "ops-secret")];
    let server =
        Server::start_with_env(&[&args[..], &[OsStr::new("--auth-secret"), OsStr::new(SECRET)]].concat(), &env);
    assert_eq!(get_status(server.addr(), "/v2/").unwrap(), 401, "auth is on");
    assert_eq!(get_status(server.addr(), "/livez").unwrap(), 200);
    assert_eq!(get_status(server.addr(), "/readyz").unwrap(), 200);

    drop(s3);
    wait_for(&server, "/readyz", 503);
    assert_eq!(get_status(server.addr(), "/livez").unwrap(), 200, "liveness does not depend on storage");
    assert!(server.log().contains("not ready: storage does not answer"), "{}", server.log());

    let _s3 = OwnS3::start(port, data.path());
    wait_for(&server, "/readyz", 200);
}

const SECRET: &str = "operability-test-secret-of-at-least-32-bytes";

/// A CA and a server certificate it signed for 127.0.0.1, as PEM files in `dir`; returns the
/// CA's PEM path.
fn certificates(dir: &Path, name: &str) -> std::path::PathBuf {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, format!("berth test CA {name}"));
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    // Written to temporary names and renamed, as certificate renewals do.
    for (file, pem) in [("cert.pem", leaf_cert.pem()), ("key.pem", leaf_key.serialize_pem())] {
        std::fs::write(dir.join(format!("{file}.new")), pem).unwrap();
        std::fs::rename(dir.join(format!("{file}.new")), dir.join(file)).unwrap();
    }
    let ca_path = dir.join(format!("ca-{name}.pem"));
    std::fs::write(&ca_path, ca_cert.pem()).unwrap();
    ca_path
}

/// `curl --cacert ca` of `url`: the HTTP version it spoke, or why it failed.
fn curl_version(ca: &Path, url: &str) -> Result<String, String> {
    let out = run(
        Command::new("curl")
            .args(["-sS", "--http2", "-o", "/dev/null", "-w", "%{http_version}", "--cacert"])
            .arg(ca)
            .arg(url),
        Duration::from_secs(30),
    );
    if out.status.success() { Ok(String::from_utf8_lossy(&out.stdout).to_string()) } else { Err(describe(&out)) }
}

/// `--tls-cert`/`--tls-key`: skopeo pushes and pulls over HTTPS trusting a test CA, curl gets
/// HTTP/2, and a renewed certificate (another CA) is served from the next connection on.
#[tokio::test]
async fn tls_push_and_pull_with_a_test_ca_and_reload() {
    let test = "tls_push_and_pull_with_a_test_ca_and_reload";
    if !require_tool("skopeo", test) || !require_tool("curl", test) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let first_ca = certificates(dir.path(), "first");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let args = [OsStr::new("--storage"), OsStr::new("memory"), OsStr::new("--tls-cert"), cert.as_os_str()];
    let server = Server::start_with(&[&args[..], &[OsStr::new("--tls-key"), key.as_os_str()]].concat());
    let url = format!("https://{}/v2/", server.host());
    assert_eq!(curl_version(&first_ca, &url).as_deref(), Ok("2"), "HTTP/2 over TLS");

    // skopeo trusts the CA from a certs directory (as /etc/containers/certs.d/<host>/ holds).
    let certs_dir = dir.path().join("certs.d");
    std::fs::create_dir(&certs_dir).unwrap();
    std::fs::copy(&first_ca, certs_dir.join("ca.crt")).unwrap();
    let certs = certs_dir.to_str().unwrap();
    let src = image(&dir.path().join("src"));
    let remote = format!("docker://{}/secure/app:v1", server.host());
    skopeo(&["copy", "--preserve-digests", "--dest-cert-dir", certs, &src.name("v1"), &remote]);
    let pulled = dir.path().join("pulled");
    skopeo(&["copy", "--preserve-digests", "--src-cert-dir", certs, &remote, &format!("oci:{}:v1", pulled.display())]);
    let (pushed, back) = (src.reference("v1"), Layout::open(&pulled).reference("v1"));
    assert_eq!(back.digest, pushed.digest, "the image came back with another digest");

    // Renewal: the files are replaced with a certificate of another CA.
    let second_ca = certificates(dir.path(), "second");
    let deadline = Instant::now() + Duration::from_secs(20);
    while curl_version(&second_ca, &url).is_err() {
        assert!(Instant::now() < deadline, "the renewed certificate is not served; log:\n{}", server.log());
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(curl_version(&first_ca, &url).is_err(), "the old certificate is still served");
    assert!(server.log().contains("TLS certificate reloaded"), "{}", server.log());
}

/// S3 over HTTPS: berth's SDK client (rustls on ring) trusts the system's roots (a test CA in
/// `SSL_CERT_FILE` here), and stores and serves a blob through a TLS front of the test S3 server;
/// with another CA as the only root, it refuses the server's certificate and does not start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_over_https_with_the_systems_roots_only() {
    let test = "s3_over_https_with_the_systems_roots_only";
    let Some(S3Server { endpoint, bucket }) = S3Server::require(S3Kind::Signing, test) else { return };
    let dir = tempfile::tempdir().unwrap();
    let ca = certificates(dir.path(), "s3");
    let front = format!("https://{}", tls_front(dir.path(), endpoint.trim_start_matches("http://").to_string()).await);
    let prefix = format!("https-{}", unique());
    let args = ["--storage", "s3", "--s3-endpoint", &front, "--s3-bucket", &bucket, "--s3-path-style"];
    let args = [&args[..], &["--s3-prefix", &prefix, "--auth", "none"]].concat();

    let os_args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    let server = Server::start_with_env(&os_args, &[("SSL_CERT_FILE", ca.to_str().unwrap())]);
    let blob = random_bytes(10_000, 47);
    let digest = sha256(&blob);
    let pushed = http().post(server.url(&format!("/v2/tls/app/blobs/uploads/?digest={digest}"))).body(blob.clone());
    assert_eq!(pushed.send().await.unwrap().status(), 201, "{}", server.log());
    let pulled = http().get(server.url(&format!("/v2/tls/app/blobs/{digest}"))).send().await.unwrap();
    assert_eq!(pulled.status(), 200, "{}", server.log());
    assert!(pulled.bytes().await.unwrap() == blob, "the blob came back changed");
    drop(server);

    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let other_ca = certificates(&other, "other");
    let mut refused = Command::new(super::server::binary());
    refused.arg("serve").args(["--listen", "127.0.0.1:0"]).args(&args).env("SSL_CERT_FILE", &other_ca);
    let out = run(&mut refused, Duration::from_secs(120));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && said.contains("invalid peer certificate"), "{}", describe(&out));
}

/// A TLS front of `backend` (host:port) on a free loopback port, with the certificate that
/// [`certificates`] wrote to `dir`: each connection's bytes are copied both ways unchanged, so
/// S3 requests reach the test server as they were signed.
async fn tls_front(dir: &Path, backend: String) -> SocketAddr {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls::ServerConfig;
    use tokio_rustls::rustls::crypto::ring;

    let certs = CertificateDer::pem_file_iter(dir.join("cert.pem")).unwrap().collect::<Result<Vec<_>, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("key.pem")).unwrap();
    let config = ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, backend) = (acceptor.clone(), backend.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let Ok(mut plain) = tokio::net::TcpStream::connect(&backend).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    addr
}

/// `infra/berth.service` passes `systemd-analyze verify` (with `ExecStart` pointed at the binary
/// under test, which must exist for the check).
#[test]
fn the_systemd_unit_verifies() {
    if !require_tool("systemd-analyze", "the_systemd_unit_verifies") {
        return;
    }
    let unit = std::fs::read_to_string(super::server::workspace_root().join("infra/berth.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/berth serve"), "{unit}");
    let binary = super::server::binary();
    let unit = unit.replace("/usr/local/bin/berth", binary.to_str().unwrap());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("berth.service"), unit).unwrap();
    let out = run(
        Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(dir.path().join("berth.service")),
        Duration::from_secs(60),
    );
    assert!(out.status.success() && out.stderr.is_empty(), "{}", describe(&out));
}

/// The README's nginx configuration (on a plain port instead of 443) in front of `berth serve`:
/// a 20 MiB layer goes through it both ways (nginx's default body limit is 1 MiB).
#[test]
fn the_readme_reverse_proxy_configuration_carries_large_layers() {
    let test = "the_readme_reverse_proxy_configuration_carries_large_layers";
    if !require_tool("nginx", test) || !require_tool("skopeo", test) {
        return;
    }
    let readme = std::fs::read_to_string(super::server::workspace_root().join("README.md")).unwrap();
    let block = readme.split("```nginx\n").nth(1).and_then(|b| b.split("\n```").next()).expect("an nginx block");
    let dir = tempfile::tempdir().unwrap();
    let proxy = free_port();
    let server = Server::start_with(
        &["--storage", "memory", "--trust-forwarded-for", "--public-url", &format!("http://{proxy}")].map(OsStr::new),
    );
    let server_block: String = block
        .lines()
        .filter(|l| !l.trim_start().starts_with("ssl_"))
        .map(|l| match l.trim_start() {
            "listen 443 ssl http2;" => format!("    listen {proxy};"),
            _ => l.replace("127.0.0.1:5000", &server.host()),
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(server_block.contains(&format!("listen {proxy};")), "the README's listen line changed:\n{block}");
    let d = dir.path().display();
    let conf = format!(
        "daemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\naccess_log off;\n\
         client_body_temp_path {d}/body;\nproxy_temp_path {d}/proxy;\nfastcgi_temp_path {d}/fastcgi;\n\
         uwsgi_temp_path {d}/uwsgi;\nscgi_temp_path {d}/scgi;\n{server_block}\n}}\n"
    );
    std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
    let mut nginx = Command::new("nginx")
        .args(["-p", &d.to_string(), "-c", &format!("{d}/nginx.conf")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nginx starts");
    struct Stop<'a>(&'a mut Child);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let nginx = Stop(&mut nginx);
    let deadline = Instant::now() + Duration::from_secs(20);
    while get_status(proxy, "/v2/").is_err() {
        let error_log = std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default();
        assert!(Instant::now() < deadline, "nginx does not answer on {proxy}:\n{error_log}");
        std::thread::sleep(Duration::from_millis(100));
    }

    let src = Layout::create(&dir.path().join("src"));
    let image = src.image("amd64", &[tar(&[("big.bin", &random_bytes(20 << 20, 29))])]);
    src.tag("v1", &image.manifest);
    let remote = format!("docker://{proxy}/proxied/app:v1");
    skopeo(&["copy", "--preserve-digests", "--dest-tls-verify=false", &src.name("v1"), &remote]);
    let back = dir.path().join("back");
    skopeo(&["copy", "--preserve-digests", "--src-tls-verify=false", &remote, &format!("oci:{}:v1", back.display())]);
    let pulled = Layout::open(&back);
    assert_eq!(pulled.reference("v1").digest, image.manifest.digest);
    assert!(pulled.blob(&image.layers[0].digest) == src.blob(&image.layers[0].digest), "the layer differs");
    let uploads = server.requests().into_iter().filter(|r| r.method == "PATCH" || r.method == "PUT").count();
    assert!(uploads >= 2, "the push did not reach berth through nginx:\n{}", server.log());
    drop(nginx);
}
