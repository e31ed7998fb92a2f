//! The toolkit every test of this binary shares: digests, pseudo-random bytes, media types, an
//! HTTP client, the S3 servers and client tools the test script provides, running commands, and
//! skips.
//!
//! A test whose tool or server is missing fails under CI (env `CI` set), where `scripts/test`
//! installs and starts everything; elsewhere it is skipped, loudly, and the skip is written to
//! the file `BERTH_TEST_SKIPS` names, from which `scripts/test` reports every skipped test by
//! name in its final summary (it is not counted as passed).

use std::io::Write as _;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest as _, Sha256, Sha512};

/// OCI image manifest.
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config.
pub(crate) const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI layer, uncompressed tar.
pub(crate) const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// `sha256:<hex>` of `data`.
pub(crate) fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(data)))
}

/// `sha512:<hex>` of `data`.
pub(crate) fn sha512(data: &[u8]) -> String {
    format!("sha512:{}", hex(&Sha512::digest(data)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Deterministic pseudo-random bytes (xorshift64), fast enough for tens of MiB in a debug build.
pub(crate) fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
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
pub(crate) fn unique() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{}-{:x}-{}", std::process::id(), nanos, COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// An HTTP client that never goes through a proxy (the servers are on loopback).
pub(crate) fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().expect("cannot build an HTTP client")
}

/// Whether the test script runs us (`CI` set): then every tool and server must be there.
fn under_ci() -> bool {
    std::env::var_os("CI").is_some()
}

/// Says loudly that `test` was skipped, and why, and records it for the test script's summary.
pub(crate) fn skip(test: &str, why: &str) {
    record("SKIPPED", test, why);
}

/// Says loudly that `part` of `test` was skipped (the rest ran), and records it.
pub(crate) fn skip_part(test: &str, part: &str, why: &str) {
    record("PARTLY SKIPPED", test, &format!("{part}: {why}"));
}

fn record(what: &str, test: &str, why: &str) {
    // libtest names the thread of a test by its path (`e2e::s3::…`), which names it best.
    let thread = std::thread::current();
    let test = thread.name().filter(|path| path.ends_with(test)).unwrap_or(test);
    // On the real stderr: the test harness captures `eprintln!` of passing tests, but not this.
    let _ = writeln!(std::io::stderr(), "\n**********\n{what} {test}: {why}\n**********");
    if let Some(path) = std::env::var_os("BERTH_TEST_SKIPS") {
        let line = format!("{what}\t{test}\t{}\n", why.replace(['\n', '\t'], " "));
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&path);
        if let Err(e) = file.and_then(|mut f| f.write_all(line.as_bytes())) {
            panic!("cannot record the skip in {}: {e}", std::path::Path::new(&path).display());
        }
    }
}

/// Whether `program` can be started at all (it is on PATH, or a path to it).
pub(crate) fn on_path(program: &str) -> bool {
    Command::new(program).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

/// Whether `test` can use `program`: fails under CI, where the test script installs it, and is
/// a skip elsewhere.
pub(crate) fn require_tool(program: &str, test: &str) -> bool {
    if on_path(program) {
        return true;
    }
    assert!(!under_ci(), "{program} is not installed, and CI must run {test}: scripts/test installs it");
    skip(test, &format!("{program} is not installed (scripts/test installs it)"));
    false
}

/// An S3-compatible server the test script started, and the bucket it made there.
#[derive(Debug, Clone)]
pub(crate) struct S3Server {
    /// Its URL.
    pub(crate) endpoint: String,
    /// A bucket tests may write to (under prefixes of their own).
    pub(crate) bucket: String,
}

/// Which S3-compatible server.
#[derive(Debug, Clone, Copy)]
pub(crate) enum S3Kind {
    /// s3s-fs, which checks signatures: `BERTH_TEST_S3_ENDPOINT` and `_BUCKET`.
    Signing,
    /// moto, whose conditional writes are atomic and which has SSM too: `BERTH_TEST_MOTO_*`.
    Moto,
}

impl S3Kind {
    fn var(self) -> &'static str {
        match self {
            S3Kind::Signing => "BERTH_TEST_S3",
            S3Kind::Moto => "BERTH_TEST_MOTO",
        }
    }
}

impl S3Server {
    /// The server of `kind`, if the test script started it.
    pub(crate) fn find(kind: S3Kind) -> Option<Self> {
        let var = kind.var();
        let endpoint = std::env::var(format!("{var}_ENDPOINT")).ok().filter(|v| !v.is_empty())?;
        let bucket = std::env::var(format!("{var}_BUCKET")).ok().filter(|v| !v.is_empty())?;
        Some(Self { endpoint, bucket })
    }

    /// The server of `kind` for `test`: fails under CI when missing, else is a skip of the test.
    pub(crate) fn require(kind: S3Kind, test: &str) -> Option<Self> {
        let found = Self::find(kind);
        if found.is_none() {
            let var = kind.var();
            assert!(!under_ci(), "{var}_ENDPOINT/_BUCKET are not set, and CI must run {test}: scripts/test sets them");
            skip(
                test,
                &format!("{var}_ENDPOINT is not set (`source scripts/s3-servers && s3_servers_start` starts it)"),
            );
        }
        found
    }

    /// The server of `kind` for a part of `test` that needs it: fails under CI when missing,
    /// else is a skip of that part.
    pub(crate) fn require_for_part(kind: S3Kind, test: &str, part: &str) -> Option<Self> {
        let found = Self::find(kind);
        if found.is_none() {
            let var = kind.var();
            assert!(!under_ci(), "{var}_ENDPOINT/_BUCKET are not set, and CI must run {test}: scripts/test sets them");
            skip_part(test, part, &format!("{var}_ENDPOINT is not set"));
        }
        found
    }
}

/// Runs a command to completion within `timeout`, killing it past that. Panics when it cannot start.
pub(crate) fn run(command: &mut Command, timeout: Duration) -> Output {
    run_with_input(command, None, timeout)
}

/// [`run`], with `input` on the command's standard input.
pub(crate) fn run_with_input(command: &mut Command, input: Option<&[u8]>, timeout: Duration) -> Output {
    let shown = format!("{command:?}");
    let mut child = command
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    if let (Some(mut stdin), Some(input)) = (child.stdin.take(), input) {
        let input = input.to_vec();
        std::thread::spawn(move || stdin.write_all(&input));
    }
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
pub(crate) fn describe(output: &Output) -> String {
    format!(
        "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
