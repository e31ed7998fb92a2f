//! `berth health`: asks the registry on `--listen` for `GET /livez` and exits 0 when it answers
//! 200, else 1. The container image's health check; it needs no other program in the image.
//! The settings are `berth serve`'s, so both read the same `BERTH_LISTEN`. With `--tls-cert` the
//! server speaks TLS only, and the check is that it accepts connections.

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
    if settings.tls_cert.is_some() {
        return TcpStream::connect_timeout(&addr, TIMEOUT).map(drop).map_err(|e| format!("no answer from {addr}: {e}"));
    }
    let status = live(addr).map_err(|e| format!("no answer from {addr}: {e}"))?;
    match status {
        200 => Ok(()),
        other => Err(format!("GET /livez on {addr} answered {other}")),
    }
}

/// The status of `GET /livez` on `addr`.
fn live(addr: SocketAddr) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    write!(stream, "GET /livez HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head)?;
    let line = String::from_utf8_lossy(&head);
    line.strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP/1.1 status line: {line:?}")))
}
