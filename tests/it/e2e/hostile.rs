//! Hostile input over a real socket, as written (no client library to normalize it): encoded
//! `/`, `..` and NUL in names and references, oversized and malformed `Authorization`, `Range`,
//! `Content-Range` and query strings. Every answer is a 4xx, never a 5xx and never a dropped
//! connection; the registry's own refusals carry the spec's error body. Slow clients: 500
//! connections that never finish their request head cost little memory and are closed after
//! `--request-head-timeout`; a body that stalls fails after `--body-idle-timeout`; heads beyond
//! 100 fields or about 400 KiB are `431`; uploads that stall with part buffers nearly full hold no more
//! than `--upload-memory-mib` together, and all complete once their clients go on.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::server::Server;

/// Sends `head` (request line and headers, without the final blank line) and `body`; the
/// status and body of the answer.
fn raw(server: &Server, head: &str, body: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head =
        format!("{head}\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", server.host(), body.len());
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).to_string();
    let status =
        text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no answer to {head:?}: {text:?}"));
    let body = text.split_once("\r\n\r\n").map_or(String::new(), |(_, b)| b.to_string());
    (status, body)
}

#[test]
fn hostile_requests_get_4xx_answers() {
    let server = Server::start();
    // Something to aim at: an upload session.
    let (status, _) = raw(&server, "POST /v2/ok/blobs/uploads/ HTTP/1.1", b"");
    assert_eq!(status, 202);
    let long = "A".repeat(60_000);
    let cases: Vec<(String, Vec<String>)> = vec![
        ("GET /v2/a%2Fb/manifests/v1".into(), vec![]),
        ("GET /v2/a/%2e%2e/manifests/v1".into(), vec![]),
        ("GET /v2/../../etc/passwd/manifests/v1".into(), vec![]),
        ("GET /v2/a/manifests/..%2F..%2Fetc".into(), vec![]),
        ("GET /v2/a/manifests/v1%00".into(), vec![]),
        ("GET /v2/a%00b/tags/list".into(), vec![]),
        ("GET /v2/a/blobs/sha256:%00%00".into(), vec![]),
        ("PUT /v2/a/manifests/%2e%2e".into(), vec!["Content-Type: application/vnd.oci.image.manifest.v1+json".into()]),
        ("DELETE /v2/a/manifests/sha256:..".into(), vec![]),
        ("GET /v2/_catalog?n=-1".into(), vec![]),
        ("GET /v2/_catalog?n=abc&last=%00".into(), vec![]),
        (format!("GET /v2/ok/tags/list?last={long}"), vec![]),
        ("GET /v2/ok/tags/list?n=99999999999999999999999".into(), vec![]),
        ("GET /v2/".into(), vec![format!("Authorization: Basic {long}")]),
        ("GET /v2/".into(), vec!["Authorization: Basic !!!!".into()]),
        ("GET /v2/".into(), vec![format!("Authorization: Bearer {long}")]),
        ("GET /v2/".into(), vec!["Authorization: Digest username=x".into()]),
        ("GET /v2/".into(), vec!["Authorization: Basic".into()]),
        (
            "GET /v2/ok/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000".into(),
            vec!["Range: bytes=0-1,2-3".into()],
        ),
        (
            "GET /v2/ok/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000".into(),
            vec!["Range: bytes=a-b".into()],
        ),
        (
            "GET /v2/ok/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000".into(),
            vec![format!("Range: bytes={long}-")],
        ),
        ("PATCH /v2/ok/blobs/uploads/not-a-session".into(), vec!["Content-Range: 0-0".into()]),
        ("PATCH /v2/ok/blobs/uploads/%2e%2e%2f%2e%2e".into(), vec!["Content-Range: 0-0".into()]),
        ("GET /v2/ok/blobs/uploads/%00".into(), vec![]),
        ("GET /v2/ok/referrers/sha256:x?artifactType=%ZZ%00".into(), vec![]),
        ("GET /r/..%2F..%2Fetc/-/v1".into(), vec![]),
        ("GET /-/static/..%2F..%2FCargo.toml/style.css".into(), vec![]),
    ];
    for (line, headers) in cases {
        let head =
            [format!("{line} HTTP/1.1")].into_iter().chain(headers.iter().cloned()).collect::<Vec<_>>().join("\r\n");
        let (status, body) = raw(&server, &head, b"x");
        let shown = &head[..head.len().min(120)];
        assert!((400..500).contains(&status) || status == 200 && line == "GET /v2/", "{shown}: {status} {body}");
        if line.starts_with("GET /v2/") && status != 431 && status != 200 {
            let json: serde_json::Value =
                serde_json::from_str(&body).unwrap_or_else(|e| panic!("{shown}: {e}: {body}"));
            assert!(json["errors"][0]["code"].is_string(), "{shown}: {body}");
        }
    }
    // The server still serves.
    assert_eq!(raw(&server, "GET /v2/ HTTP/1.1", b"").0, 200);
    let log = server.log();
    assert!(!log.contains("panicked") && !log.contains("status=5"), "{log}");
}

/// The head of the answer to a bodiless request.
fn raw_head(server: &Server, line: &str) -> String {
    let mut stream = TcpStream::connect(server.addr()).unwrap();
    let head = format!("{line}\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", server.host());
    stream.write_all(head.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.split("\r\n\r\n").next().unwrap_or_default().to_string()
}

/// Resident memory of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn slow_clients_are_cut_off_and_cost_little() {
    let args = ["--storage", "memory", "--request-head-timeout", "3s", "--body-idle-timeout", "3s"];
    let server = Server::start_with(&args.map(std::ffi::OsStr::new));
    let before = rss_kib(server.pid());
    let mut idle: Vec<TcpStream> = (0..500)
        .map(|_| {
            let mut s = TcpStream::connect(server.addr()).unwrap();
            s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: slow\r\nX-Slow: ").unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let with_idle = rss_kib(server.pid());
    eprintln!("RSS of berth serve: {before} KiB, with 500 idle connections {with_idle} KiB");
    assert!(with_idle < 64 * 1024, "{with_idle} KiB with 500 idle connections");
    assert_eq!(raw(&server, "GET /v2/ HTTP/1.1", b"").0, 200, "others are still served");

    // Past the head timeout, every one of them has been closed by the server.
    let mut open = 0;
    for stream in &mut idle {
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 512];
        match stream.read(&mut buf) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(_) => open += 1,
        }
    }
    assert_eq!(open, 0, "connections still open after the head timeout");

    // A body that stalls: the request fails, the connection does not hang.
    let mut stalled = TcpStream::connect(server.addr()).unwrap();
    stalled.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let started = raw_head(&server, "POST /v2/slow/blobs/uploads/ HTTP/1.1");
    let location = started.lines().find_map(|l| l.strip_prefix("location: ")).expect("a Location").trim().to_string();
    let head = format!(
        "PATCH {location} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n",
        server.host()
    );
    stalled.write_all(head.as_bytes()).unwrap();
    stalled.write_all(&[0u8; 100]).unwrap();
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    let _ = stalled.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(started.elapsed() < Duration::from_secs(12), "the stalled body held on for {:?}", started.elapsed());
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 4"), "{answer}");
    assert_eq!(raw(&server, "GET /v2/ HTTP/1.1", b"").0, 200, "the server still serves");
}

/// Heads with too many fields, or too long, are refused with `431`; the server goes on serving.
#[test]
fn oversized_heads_are_431() {
    let server = Server::start();
    let many: String = (0..150).map(|i| format!("X-Field-{i}: {i}\r\n")).collect();
    let (status, _) = raw(&server, &format!("GET /v2/ HTTP/1.1\r\n{}", many.trim_end()), b"");
    assert_eq!(status, 431, "150 header fields");
    let (status, _) = raw(&server, &format!("GET /v2/ HTTP/1.1\r\nX-Long: {}", "a".repeat(500_000)), b"");
    assert_eq!(status, 431, "a 500 kB header field");
    let (status, _) =
        raw(&server, &format!("GET /v2/ HTTP/1.1\r\n{}", many.lines().take(90).collect::<Vec<_>>().join("\r\n")), b"");
    assert_eq!(status, 200, "90 header fields are fine");
}

/// 16 uploads each send 15 MiB of a 16 MiB PATCH (a full 8 MiB part, then 7 MiB of the next)
/// and stall: without a budget they would hold 112 MiB of part buffers; with
/// `--upload-memory-mib 24` the server's RSS grows by less than the budget plus slack, while
/// the uploads beyond it wait with their bytes in the kernel's socket buffers. When the clients
/// send their last MiB, every upload completes and verifies.
#[test]
fn stalled_uploads_hold_at_most_the_upload_memory_budget() {
    const MIB: usize = 1 << 20;
    const UPLOADS: usize = 16;
    let root = tempfile::tempdir().unwrap();
    let arg = std::ffi::OsStr::new;
    let server = Server::start_with(&[
        arg("--storage"),
        arg("fs"),
        arg("--root"),
        root.path().as_os_str(),
        arg("--upload-memory-mib"),
        arg("24"),
    ]);
    let before = rss_kib(server.pid());
    let (go_on, wait) = std::sync::mpsc::channel::<()>();
    let wait = std::sync::Arc::new(std::sync::Mutex::new(wait));
    let (sent, sent_rx) = std::sync::mpsc::channel::<()>();
    let clients: Vec<_> = (0..UPLOADS)
        .map(|i| {
            let data = crate::common::random_bytes(16 * MIB, 900 + i as u64);
            let started = raw_head(&server, &format!("POST /v2/budget/n{i}/blobs/uploads/ HTTP/1.1"));
            let location =
                started.lines().find_map(|l| l.strip_prefix("location: ")).expect("a Location").trim().to_string();
            let (addr, host) = (server.addr(), server.host());
            let (wait, sent) = (wait.clone(), sent.clone());
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(addr).unwrap();
                let head = format!(
                    "PATCH {location} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/octet-stream\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n",
                    data.len()
                );
                stream.write_all(head.as_bytes()).unwrap();
                // Beyond the budget this blocks until the server reads again.
                stream.write_all(&data[..15 * MIB]).unwrap();
                let _ = sent.send(());
                wait.lock().unwrap().recv().unwrap();
                stream.write_all(&data[15 * MIB..]).unwrap();
                stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                let mut answer = Vec::new();
                let _ = stream.read_to_end(&mut answer);
                (location, crate::common::sha256(&data), String::from_utf8_lossy(&answer).to_string())
            })
        })
        .collect();
    drop(sent);
    // Wait until the server has taken what it will take: its RSS stops growing.
    let mut peak = before;
    let mut steady = 0;
    while steady < 10 {
        std::thread::sleep(Duration::from_millis(200));
        let now = rss_kib(server.pid());
        steady = if now > peak { 0 } else { steady + 1 };
        peak = peak.max(now);
    }
    let clients_done = sent_rx.try_iter().count();
    eprintln!(
        "RSS of berth serve: {before} KiB, with {UPLOADS} stalled uploads {peak} KiB \
         ({clients_done} clients got all 15 MiB out; the others wait)"
    );
    assert!(peak - before < (24 + 32) * 1024, "stalled uploads grew RSS from {before} KiB to {peak} KiB");

    for _ in 0..UPLOADS {
        go_on.send(()).unwrap();
    }
    for client in clients {
        let (location, digest, answer) = client.join().unwrap();
        assert!(answer.starts_with("HTTP/1.1 202"), "the PATCH: {answer}");
        let separator = if location.contains('?') { '&' } else { '?' };
        let put = raw_head(&server, &format!("PUT {location}{separator}digest={digest} HTTP/1.1"));
        assert!(put.starts_with("HTTP/1.1 201"), "the PUT: {put}");
    }
}
