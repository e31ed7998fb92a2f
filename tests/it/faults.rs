//! A fault-injecting proxy between berth and an S3 server, for the reliability tests: it
//! forwards every request unchanged (the `Host` header too, so signatures stay valid) and, as
//! its [`Rule`]s say, answers some with an S3 error instead (`500 InternalError`, `503
//! SlowDown`, `400 RequestTimeout`), cuts the connection in the middle of the request or the
//! response body, holds requests back (for a while, or for good), or stops accepting
//! connections for a while
//! ([`FaultProxy::down`]). Rules match an S3 operation by name (told from method, query and
//! headers, as S3 does) or any, and a fraction of the matching requests, chosen by a seeded
//! counter so that a run can be repeated. Only berth's requests get faults: presigned GETs of
//! clients following a redirect pass through.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Body, Frame, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;

type ProxyBody = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// What a rule does to a request it picks.
#[derive(Clone, Debug)]
pub(crate) enum Fault {
    /// Answers with this S3 error: status and code (`500 InternalError`, `503 SlowDown`,
    /// `400 RequestTimeout`).
    Error(u16, &'static str),
    /// Reads at most this many bytes of the request body, then drops the connection without an
    /// answer.
    ResetRequest(usize),
    /// Forwards the request, sends the answer's head and at most this many bytes of its body,
    /// then drops the connection.
    ResetResponse(usize),
    /// Holds the request back this long, then forwards it.
    Delay(Duration),
    /// Holds the request for good: it never reaches S3 (a process killed meanwhile never knew
    /// whether it did).
    Hold,
}

/// Which requests get a fault.
#[derive(Clone, Debug)]
pub(crate) struct Rule {
    /// The S3 operation (`PutObject`, `CompleteMultipartUpload`, …); `None`: any.
    pub(crate) operation: Option<&'static str>,
    /// Text the request's path must contain (a key's part, e.g. `/_manifests/`); `None`: any.
    pub(crate) path: Option<&'static str>,
    /// The fraction of matching requests picked (1.0: every one).
    pub(crate) fraction: f64,
    /// How many more times it may fire; `None`: without end.
    pub(crate) times: Option<u64>,
    pub(crate) fault: Fault,
}

impl Rule {
    /// `fault` for `fraction` of every request.
    pub(crate) fn any(fraction: f64, fault: Fault) -> Self {
        Self { operation: None, path: None, fraction, times: None, fault }
    }

    /// `fault` for the next `times` requests of `operation`.
    pub(crate) fn next(operation: &'static str, times: u64, fault: Fault) -> Self {
        Self { operation: Some(operation), path: None, fraction: 1.0, times: Some(times), fault }
    }

    /// `fault` for the next request of `operation` whose path contains `path`.
    pub(crate) fn next_on(operation: &'static str, path: &'static str, fault: Fault) -> Self {
        Self { operation: Some(operation), path: Some(path), fraction: 1.0, times: Some(1), fault }
    }
}

/// What the proxy did, for the tests' assertions.
#[derive(Clone, Debug, Default)]
pub(crate) struct Injected {
    /// Requests forwarded or answered, by operation.
    pub(crate) requests: u64,
    /// Faults injected, with the operation each hit.
    pub(crate) faults: Vec<(&'static str, String)>,
}

struct Shared {
    upstream: String,
    rules: Mutex<Vec<Rule>>,
    injected: Mutex<Injected>,
    counter: AtomicU64,
    seed: u64,
}

/// A running proxy; stopped when dropped.
pub(crate) struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    up: watch::Sender<bool>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl FaultProxy {
    /// A proxy on a free loopback port in front of `upstream` (`http://host:port`), with no
    /// rules yet; `seed` decides which requests fractions pick.
    pub(crate) async fn start(upstream: &str, seed: u64) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_string(),
            rules: Mutex::new(Vec::new()),
            injected: Mutex::new(Injected::default()),
            counter: AtomicU64::new(0),
            seed,
        });
        let (up, up_rx) = watch::channel(true);
        let (stop, stopped) = tokio::sync::oneshot::channel();
        tokio::spawn(accept_loop(listener, addr, shared.clone(), up_rx, stopped));
        Self { addr, shared, up, _stop: stop }
    }

    /// `http://127.0.0.1:<port>`, the endpoint to give berth.
    pub(crate) fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replaces the rules.
    pub(crate) fn set(&self, rules: Vec<Rule>) {
        *self.shared.rules.lock().unwrap() = rules;
    }

    /// Stops accepting connections (the port refuses them) until [`FaultProxy::up`].
    pub(crate) fn down(&self) {
        self.up.send_replace(false);
    }

    /// Accepts connections again.
    pub(crate) fn up(&self) {
        self.up.send_replace(true);
    }

    /// What it did so far.
    pub(crate) fn injected(&self) -> Injected {
        self.shared.injected.lock().unwrap().clone()
    }
}

/// Accepts while up; while down, the listener is closed, so connections are refused.
async fn accept_loop(
    listener: TcpListener,
    addr: SocketAddr,
    shared: Arc<Shared>,
    mut up: watch::Receiver<bool>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let mut listener = Some(listener);
    let connector = HttpConnector::new();
    let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new()).build(connector);
    loop {
        let Some(open) = listener.as_ref() else {
            tokio::select! {
                _ = &mut stopped => return,
                _ = up.wait_for(|up| *up) => {}
            }
            listener = Some(bind_again(addr).await);
            continue;
        };
        tokio::select! {
            _ = &mut stopped => return,
            changed = up.changed() => {
                if changed.is_err() { return; }
                if !*up.borrow() { listener = None; }
            }
            accepted = open.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let (shared, client, mut down) = (shared.clone(), client.clone(), up.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        handle(shared.clone(), client.clone(), request)
                    });
                    let connection = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    // Going down drops the connections already open too (kept-alive ones).
                    tokio::select! {
                        _ = connection => {}
                        _ = down.wait_for(|up| !*up) => {}
                    }
                });
            }
        }
    }
}

/// Binds `addr` again after a pause (the port was just released).
async fn bind_again(addr: SocketAddr) -> TcpListener {
    for _ in 0..100 {
        if let Ok(listener) = TcpListener::bind(addr).await {
            return listener;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the proxy cannot listen on {addr} again");
}

/// The S3 operation of a path-style request.
pub(crate) fn operation<B>(request: &Request<B>) -> &'static str {
    let query = request.uri().query().unwrap_or("");
    let has = |key: &str| query.split('&').any(|p| p == key || p.starts_with(&format!("{key}=")));
    let key_path = request.uri().path().trim_start_matches('/').contains('/');
    let copy = request.headers().contains_key("x-amz-copy-source");
    match request.method().as_str() {
        "GET" if !key_path => "ListObjectsV2",
        "GET" => "GetObject",
        "HEAD" if !key_path => "HeadBucket",
        "HEAD" => "HeadObject",
        "PUT" if has("partNumber") && copy => "UploadPartCopy",
        "PUT" if has("partNumber") => "UploadPart",
        "PUT" if copy => "CopyObject",
        "PUT" => "PutObject",
        "POST" if has("uploads") => "CreateMultipartUpload",
        "POST" if has("uploadId") => "CompleteMultipartUpload",
        "POST" if has("delete") => "DeleteObjects",
        "DELETE" if has("uploadId") => "AbortMultipartUpload",
        "DELETE" => "DeleteObject",
        _ => "Other",
    }
}

/// The fault for this request, if a rule picks it.
fn pick(shared: &Shared, operation: &'static str, path: &str) -> Option<Fault> {
    let n = shared.counter.fetch_add(1, Ordering::Relaxed);
    // splitmix64 of the seeded counter: a fraction is the same requests in every run.
    let mut z = shared.seed.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    let roll = (z ^ (z >> 31)) as f64 / u64::MAX as f64;
    let mut rules = shared.rules.lock().unwrap();
    let rule = rules.iter_mut().find(|r| {
        r.operation.is_none_or(|op| op == operation)
            && r.path.is_none_or(|part| path.contains(part))
            && roll < r.fraction
            && r.times.is_none_or(|t| t > 0)
    })?;
    if let Some(times) = rule.times.as_mut() {
        *times -= 1;
    }
    Some(rule.fault.clone())
}

async fn handle(
    shared: Arc<Shared>,
    client: Client<HttpConnector, Incoming>,
    request: Request<Incoming>,
) -> Result<Response<ProxyBody>, Box<dyn std::error::Error + Send + Sync>> {
    let operation = operation(&request);
    // Faults are for berth's own requests (signed in the Authorization header); the clients'
    // presigned GETs after a redirect are between them and S3, and pass through.
    let path = request.uri().path().to_string();
    let fault = request.headers().contains_key("authorization").then(|| pick(&shared, operation, &path)).flatten();
    {
        let mut injected = shared.injected.lock().unwrap();
        injected.requests += 1;
        if let Some(fault) = &fault {
            injected.faults.push((operation, format!("{fault:?}")));
        }
    }
    match fault {
        Some(Fault::Error(status, code)) => {
            // The request body is left unread: the connection closes after the answer.
            let xml = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>injected by the test \
                 proxy</Message><RequestId>fault</RequestId></Error>"
            );
            let mut response = Response::new(Full::new(Bytes::from(xml)).map_err(|e: Infallible| e.into()).boxed());
            *response.status_mut() = StatusCode::from_u16(status).unwrap();
            response.headers_mut().insert("content-type", "application/xml".parse().unwrap());
            response.headers_mut().insert("connection", "close".parse().unwrap());
            Ok(response)
        }
        Some(Fault::ResetRequest(after)) => {
            let mut body = request.into_body();
            let mut read = 0;
            while read < after {
                match body.frame().await {
                    Some(Ok(frame)) => read += frame.data_ref().map_or(0, |d| d.len()),
                    _ => break,
                }
            }
            Err("injected: connection reset during the request body".into())
        }
        Some(Fault::ResetResponse(after)) => {
            let response = forward(&shared, &client, request).await?;
            let (parts, body) = response.into_parts();
            Ok(Response::from_parts(parts, Cut { inner: body, left: after }.boxed()))
        }
        Some(Fault::Hold) => std::future::pending().await,
        Some(Fault::Delay(delay)) => {
            tokio::time::sleep(delay).await;
            forward(&shared, &client, request).await
        }
        None => forward(&shared, &client, request).await,
    }
}

async fn forward(
    shared: &Shared,
    client: &Client<HttpConnector, Incoming>,
    request: Request<Incoming>,
) -> Result<Response<ProxyBody>, Box<dyn std::error::Error + Send + Sync>> {
    let (mut parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = format!("{}{path}", shared.upstream).parse()?;
    let response = client.request(Request::from_parts(parts, body)).await?;
    Ok(response.map(|b| b.map_err(|e| e.into()).boxed()))
}

/// A body that fails after `left` bytes: hyper then drops the connection mid-body.
struct Cut {
    inner: ProxyBody,
    left: usize,
}

impl Body for Cut {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.left == 0 {
            return Poll::Ready(Some(Err("injected: connection reset during the response body".into())));
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(mut data) => {
                    if data.len() > self.left {
                        data.truncate(self.left);
                    }
                    self.left -= data.len();
                    Poll::Ready(Some(Ok(Frame::data(data))))
                }
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
            other => other,
        }
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}
