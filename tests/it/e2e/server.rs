//! A real `berth serve` process for end-to-end tests: fs storage in a fresh temporary root (or
//! a given one), or a prefix of an S3 bucket ([`Server::start_s3`]), or any arguments and
//! environment ([`Server::start_with`], [`Server::start_with_env`]), or run by another program
//! such as strace ([`Server::start_under`]), on a free loopback port,
//! stderr logged to a file under `target/e2e-logs/`, stopped with SIGTERM when dropped.
//!
//! A test that panics prints the end of the log of each server it drops and keeps the file;
//! other logs are removed unless `BERTH_E2E_KEEP_LOGS` is set.
//!
//! The binary is `$BERTH_BIN`, else `<workspace>/target/debug/berth`; build it first with
//! `cargo build -p berth-server` (scripts/test does).

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::common::unique;
use tempfile::TempDir;

/// How long a server may take to listen and answer `GET /v2/`.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a server may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `berth serve`.
pub(crate) struct Server {
    child: Option<Child>,
    /// Whether `child` is a program that runs berth (berth is its child).
    wrapped: bool,
    addr: SocketAddr,
    log: PathBuf,
    /// The root, when the server made it; removed after the server stops.
    _temp: Option<TempDir>,
}

/// The workspace root (this crate lives in `<root>/tests`).
pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// The `berth` binary under test.
pub(crate) fn binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("BERTH_BIN") {
        let bin = PathBuf::from(bin);
        assert!(bin.is_file(), "BERTH_BIN={} is not a file", bin.display());
        return bin;
    }
    let bin = workspace_root().join("target/debug/berth");
    assert!(
        bin.is_file(),
        "the end-to-end tests run the real binary, and {} does not exist: run `cargo build -p berth-server` \
         first (scripts/test does), or point BERTH_BIN at a berth binary",
        bin.display()
    );
    bin
}

impl Server {
    /// A server over a fresh temporary root.
    pub(crate) fn start() -> Self {
        let temp = tempfile::Builder::new().prefix("berth-e2e-root-").tempdir().expect("cannot make a temp dir");
        let mut server = Self::start_on(temp.path());
        server._temp = Some(temp);
        server
    }

    /// A server over `root` (which may hold the data of an earlier server).
    pub(crate) fn start_on(root: &Path) -> Self {
        Self::start_with(&[OsStr::new("--storage"), OsStr::new("fs"), OsStr::new("--root"), root.as_os_str()])
    }

    /// An open server (`--auth none`) over `prefix` of an S3 bucket (path-style addressing;
    /// credentials from the AWS environment, which the server inherits). It starts only if its
    /// start-up check passes.
    pub(crate) fn start_s3(endpoint: &str, bucket: &str, prefix: &str) -> Self {
        Self::start_s3_with(endpoint, bucket, prefix, &["--auth", "none"])
    }

    /// A server over `prefix` of an S3 bucket, with further arguments.
    pub(crate) fn start_s3_with(endpoint: &str, bucket: &str, prefix: &str, extra: &[&str]) -> Self {
        let args =
            ["--storage", "s3", "--s3-endpoint", endpoint, "--s3-bucket", bucket, "--s3-path-style", "--s3-prefix"];
        let args: Vec<&OsStr> = args.into_iter().chain([prefix]).chain(extra.iter().copied()).map(OsStr::new).collect();
        Self::start_with(&args)
    }

    /// A server with these storage (and other) arguments.
    pub(crate) fn start_with(storage: &[&OsStr]) -> Self {
        Self::start_with_env(storage, &[])
    }

    /// A server with these arguments and further environment variables.
    pub(crate) fn start_with_env(storage: &[&OsStr], env: &[(&str, &str)]) -> Self {
        Self::launch(&[], storage, env)
    }

    /// A server run by `wrapper` (a program and its arguments, to which berth's command line is
    /// appended), e.g. strace. Stopping it stops berth first.
    pub(crate) fn start_under(wrapper: &[&OsStr], storage: &[&OsStr]) -> Self {
        Self::launch(wrapper, storage, &[])
    }

    fn launch(wrapper: &[&OsStr], storage: &[&OsStr], env: &[(&str, &str)]) -> Self {
        let bin = binary();
        let logs = workspace_root().join("target/e2e-logs");
        std::fs::create_dir_all(&logs).expect("cannot make target/e2e-logs");
        let log = logs.join(format!("berth-{}.log", unique()));
        let stderr = File::create(&log).unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(&bin);
                command
            }
            None => Command::new(&bin),
        };
        let child = command
            .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "text"])
            .args(storage)
            .args(["--part-size-mib", "8"])
            .env("BERTH_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let wrapped = !wrapper.is_empty();
        let mut server =
            Self { child: Some(child), wrapped, addr: SocketAddr::from(([127, 0, 0, 1], 0)), log, _temp: None };
        server.addr = server.wait_listening();
        server.wait_ready();
        server
    }

    /// Waits for the "berth listening" log line and returns its `addr=`.
    fn wait_listening(&mut self) -> SocketAddr {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let log = self.log();
            if let Some(addr) = log
                .lines()
                .filter(|l| l.contains("berth listening"))
                .find_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("addr=")))
            {
                return addr.parse().unwrap_or_else(|e| panic!("bad addr {addr:?} in the log ({e}):\n{log}"));
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("berth exited ({status}) before listening; its log:\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "berth did not log \"berth listening\" within {START_TIMEOUT:?}:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until `GET /v2/` answers 200 (or 401: authentication is on); over TLS, listening is
    /// enough (the tests ask with a client that trusts their CA).
    fn wait_ready(&self) {
        if self.log().contains("berth listening (TLS)") {
            return;
        }
        let deadline = Instant::now() + START_TIMEOUT;
        let mut last = String::new();
        while Instant::now() < deadline {
            match get_status(self.addr, "/v2/") {
                Ok(200 | 401) => return,
                Ok(status) => last = format!("status {status}"),
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("GET /v2/ did not answer 200 within {START_TIMEOUT:?} (last: {last}); log:\n{}", self.log());
    }

    /// Its process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().expect("the server runs").id()
    }

    /// The address it listens on.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `127.0.0.1:<port>`, as image references name the registry.
    pub(crate) fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:<port><path>`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The server's log (stderr) so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The requests the server has logged so far, in order.
    pub(crate) fn requests(&self) -> Vec<Logged> {
        requests(&self.log())
    }

    /// Stops the server with SIGTERM, waits for it to exit, and returns how it exited and its log.
    pub(crate) fn stop(mut self) -> (ExitStatus, String) {
        let status = self.terminate().expect("the server was running");
        (status, self.log())
    }

    /// Kills the server at once (SIGKILL: no request in flight finishes), returning its log.
    pub(crate) fn kill(mut self) -> String {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.log()
    }

    fn terminate(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if self.wrapped {
            // berth first: the wrapper may leave its child running when it is stopped.
            let _ = Command::new("pkill").args(["-TERM", "-P", &child.id().to_string()]).status();
        }
        let sent = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        if !sent.as_ref().is_ok_and(|s| s.success()) {
            eprintln!("berth e2e: `kill -TERM {}` failed ({sent:?}); killing it", child.id());
            let _ = child.kill();
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                _ => {
                    eprintln!("berth e2e: server {} ignored SIGTERM for {STOP_TIMEOUT:?}; killing it", child.id());
                    let _ = child.kill();
                    return child.wait().ok();
                }
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.terminate();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!(
                "--- last lines of the berth log {} (server {}) ---\n{}\n---",
                self.log.display(),
                self.addr,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        } else if std::env::var_os("BERTH_E2E_KEEP_LOGS").is_none() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// The status of a plain `GET` over a fresh connection (no client library: used before the
/// server is known to be up).
pub(super) fn get_status(addr: SocketAddr, path: &str) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head)?;
    let line = String::from_utf8_lossy(&head);
    line.strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP/1.1 status line: {line:?}")))
}

/// One request line of a berth log (`berth serve`'s, or the Lambda function's).
#[derive(Debug, Clone)]
pub(crate) struct Logged {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) status: u16,
    pub(crate) bytes_in: u64,
    pub(crate) storage_calls: u64,
}

impl std::fmt::Display for Logged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = if self.path.len() > 90 { format!("{}…", &self.path[..90]) } else { self.path.clone() };
        write!(f, "{:<6} {path:<92} {} in={:<8} calls={}", self.method, self.status, self.bytes_in, self.storage_calls)
    }
}

/// The value of `name=` in a log line, unquoted.
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!(" {name}="))? + name.len() + 2;
    let value = line[start..].split_whitespace().next()?;
    Some(value.trim_matches('"'))
}

/// The requests a log holds, in order.
pub(crate) fn requests(log: &str) -> Vec<Logged> {
    log.lines()
        .filter(|l| l.contains(" storage_calls="))
        .map(|l| {
            let num = |name| field(l, name).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("no {name} in {l}"));
            Logged {
                method: field(l, "method").unwrap_or_else(|| panic!("no method in {l}")).to_string(),
                path: field(l, "path").unwrap_or_else(|| panic!("no path in {l}")).to_string(),
                status: num("status") as u16,
                bytes_in: num("bytes_in"),
                storage_calls: num("storage_calls"),
            }
        })
        .collect()
}

/// Requests, one per line, for assertion messages.
pub(crate) fn list(requests: &[Logged]) -> String {
    requests.iter().map(|r| format!("  {r}\n")).collect()
}
