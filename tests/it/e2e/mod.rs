//! End-to-end tests: a real `berth serve` process ([`server::Server`]) driven by real clients —
//! skopeo ([`skopeo`]), the Docker Engine ([`docker`]) and plain HTTP across server restarts
//! ([`restart`]) and on kept-alive connections ([`latency`]), with authentication ([`auth`]),
//! over a real S3 server ([`s3`], which `scripts/s3-servers` starts) and as a Lambda function
//! ([`lambda`]). They need the binary built first (`cargo build -p berth-server`, which
//! `scripts/test` does); a missing client tool (or S3 server) is a loud skip outside CI.

mod auth;
mod docker;
mod lambda;
mod latency;
mod layout;
mod restart;
mod s3;
mod server;
mod skopeo;

use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest as _, Sha256, Sha512};

/// `sha256:<hex>` of `data`.
pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(data)))
}

/// `sha512:<hex>` of `data`.
pub fn sha512(data: &[u8]) -> String {
    format!("sha512:{}", hex(&Sha512::digest(data)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Deterministic pseudo-random bytes (xorshift64), fast enough for tens of MiB in a debug build.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A string unique to this test process and call, usable in repository names and tags.
pub fn unique() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{}-{:x}-{}", std::process::id(), nanos, COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// An HTTP client that never goes through a proxy (the servers are on loopback).
pub fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().expect("cannot build an HTTP client")
}

/// Whether `program` can be started at all (it is on PATH).
pub fn on_path(program: &str) -> bool {
    Command::new(program).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

/// What a tool needed by a test is missing: fails under CI (env `CI` set), where the test
/// script installs it, and is a loud skip elsewhere. Returns whether the test should go on.
pub fn require_tool(program: &str, test: &str) -> bool {
    if on_path(program) {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{program} is not installed, and CI must run {test}: scripts/test installs it");
    }
    skip(&format!("{test}: {program} not installed (scripts/test installs it)"));
    false
}

/// Says loudly that (part of) a test was skipped, on the real stderr: the test harness
/// captures `eprintln!` of passing tests, but not this.
pub fn skip(what: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "\n**********\nSKIPPED {what}\n**********");
}

/// Runs a command to completion within `timeout`, killing it past that. Panics when it cannot start.
pub fn run(command: &mut Command, timeout: Duration) -> Output {
    let shown = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    // Drain the pipes on threads, so a chatty command never blocks on a full pipe.
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stdout, &mut buf);
        buf
    });
    let err = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stderr, &mut buf);
        buf
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{shown} did not finish within {timeout:?}");
            }
            Err(e) => panic!("cannot wait for {shown}: {e}"),
        }
    };
    Output { status, stdout: out.join().unwrap_or_default(), stderr: err.join().unwrap_or_default() }
}

/// Text of a command's output, for assertion messages.
pub fn describe(output: &Output) -> String {
    format!(
        "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
