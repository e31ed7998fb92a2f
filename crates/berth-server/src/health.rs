//! `berth health`: asks the registry on `--listen` for `GET /v2/` and exits 0 when it answers
//! 200 or 401 (authentication on), else 1. The container image's health check; it needs no
//! other program in the image. The settings are `berth serve`'s, so both read the same
//! `BERTH_LISTEN`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use berth_app::Settings;

/// How long the check may take.
const TIMEOUT: Duration = Duration::from_secs(3);

/// Checks the registry that `settings` describe; the error says what is wrong.
pub fn run(settings: &Settings) -> Result<(), String> {
    let mut addr = settings.listen;
    // A server listening on every address is asked on loopback.
    if addr.ip().is_unspecified() {
        addr = match addr {
            SocketAddr::V4(a) => SocketAddr::from(([127, 0, 0, 1], a.port())),
            SocketAddr::V6(a) => SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, a.port())),
        };
    }
    let status = version_check(addr).map_err(|e| format!("no answer from {addr}: {e}"))?;
    match status {
        200 | 401 => Ok(()),
        other => Err(format!("GET /v2/ on {addr} answered {other}")),
    }
}

/// The status of `GET /v2/` on `addr`.
fn version_check(addr: SocketAddr) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    write!(stream, "GET /v2/ HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head)?;
    let line = String::from_utf8_lossy(&head);
    line.strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP/1.1 status line: {line:?}")))
}
