//! `berth serve` over the engine: an axum/hyper server with one log line per request
//! (including the storage calls it made) and the same figures added to the process's
//! [`Metrics`], `Connection: close` after a request body the engine left unread,
//! `TCP_NODELAY` on every connection, plain or TLS ([`crate::tls`]), and graceful shutdown on
//! SIGINT/SIGTERM.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::HttpBody;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Response};
use axum::serve::{Listener, ListenerExt};
use berth_core::http::{Body, BoxError, ClientAddr, User};
use berth_metrics::{Metrics, Observation};
use berth_storage::calls;
use berth_web::Site;
use futures_util::{StreamExt, TryStreamExt};
use http::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Version};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt as _;

use crate::tls::TlsListener;

/// What every request is answered with: the site, the metrics it is counted in, and how long
/// its body may stall.
#[derive(Clone)]
struct Front {
    site: Site,
    metrics: Arc<Metrics>,
    body_idle: Duration,
}

/// The registry and its web front as an axum router: every path goes to the [`Site`], and is
/// counted in `metrics`; a request body that sends nothing for `body_idle` fails the request.
pub fn app(site: Site, metrics: Arc<Metrics>, body_idle: Duration) -> Router {
    Router::new().fallback(handle).with_state(Front { site, metrics, body_idle })
}

/// `GET /metrics`: `metrics` as Prometheus text (no credentials, like the health probes).
pub fn metrics_app(metrics: Arc<Metrics>) -> Router {
    let scrape = |State(metrics): State<Arc<Metrics>>| async move {
        ([(CONTENT_TYPE, berth_metrics::CONTENT_TYPE)], metrics.encode()).into_response()
    };
    Router::new().route("/metrics", axum::routing::get(scrape)).with_state(metrics)
}

/// Serves `app` on `listener` until `shutdown` completes, then finishes the requests in flight.
/// A client has `head_timeout` to send each request's head.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    head_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    // Without TCP_NODELAY a response whose body follows its head in a second write (every
    // streamed blob) waits for the client's delayed ACK of the head: 40 ms per small blob on a
    // kept-alive connection.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on a connection");
        }
    });
    tracing::info!(%addr, "berth listening");
    serve_on(listener, app, head_timeout, shutdown).await;
    tracing::info!("berth stopped");
    Ok(())
}

/// As [`serve`], over TLS (the listener sets `TCP_NODELAY` itself).
pub async fn serve_tls(
    listener: TlsListener,
    app: Router,
    head_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr = Listener::local_addr(&listener)?;
    tracing::info!(%addr, "berth listening (TLS)");
    serve_on(listener, app, head_timeout, shutdown).await;
    tracing::info!("berth stopped");
    Ok(())
}

/// Most header fields a request may have (HTTP/1.1; more are `431`). An HTTP/1.1 head must also
/// fit hyper's read buffer (about 400 KiB, `431` beyond), which sizes body reads too: a 64 KiB
/// buffer cost uploads about a sixth of their speed (`bench/blob.sh`), so it stays.
const MAX_HEADERS: usize = 100;
/// Largest HTTP/2 header list, in bytes (hyper's default is 16 MiB). Tokens and cookies are a
/// few KiB.
const MAX_H2_HEAD_BYTES: u32 = 64 * 1024;

/// The accept loop: HTTP/1.1 and HTTP/2 (hyper-util's auto builder, with a timer so that the
/// head timeout applies), each request carrying the client's address, graceful shutdown.
async fn serve_on<L>(mut listener: L, app: Router, head_timeout: Duration, shutdown: impl Future<Output = ()>)
where
    L: Listener<Addr = SocketAddr>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(head_timeout).max_headers(MAX_HEADERS);
    builder.http2().timer(TokioTimer::new()).max_header_list_size(MAX_H2_HEAD_BYTES);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let service = app.clone().layer(axum::Extension(ConnectInfo(peer)));
        let service =
            TowerToHyperService::new(service.map_request(|r: http::Request<Incoming>| r.map(axum::body::Body::new)));
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service).into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Adapts axum's types to the engine's, and logs the request.
async fn handle(State(Front { site, metrics, body_idle }): State<Front>, request: Request) -> Response {
    let started = Instant::now();
    let (mut parts, body) = request.into_parts();
    let (method, path) = (parts.method.clone(), parts.uri.path().to_string());
    let in_flight = metrics.in_flight(&path);
    let http1 = parts.version < Version::HTTP_2;
    if let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>() {
        parts.extensions.insert(ClientAddr(peer.ip()));
    }
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    // Whether the engine read the body to its end; an unread body (an early error answer)
    // leaves the connection unusable for the next request, so the client is told to close it.
    let ended = Arc::new(AtomicBool::new(HttpBody::is_end_stream(&body)));
    let end_flag = ended.clone();
    let body = idle_limited(body.into_data_stream(), body_idle)
        .inspect_ok(move |chunk| {
            counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        })
        .chain(futures_util::stream::poll_fn(move |_| {
            end_flag.store(true, Ordering::Relaxed);
            Poll::Ready(None)
        }));
    let (mut response, calls) = calls::count(site.handle(Request::from_parts(parts, Box::pin(body)))).await;
    // HTTP/2 has no `Connection` header: an unread stream is reset on its own.
    if http1 && !ended.load(Ordering::Relaxed) {
        response.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
    }
    let sent: u64 = response.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(0);
    let user = response.extensions().get::<User>().map(|u| u.0.as_str());
    let observation = Observation {
        method: method.as_str(),
        path: &path,
        status: response.status().as_u16(),
        elapsed: started.elapsed(),
        bytes_in: received.load(Ordering::Relaxed),
        bytes_out: sent,
        storage: &calls,
    };
    tracing::info!(
        %method,
        path,
        user,
        status = observation.status,
        bytes_in = observation.bytes_in,
        bytes_out = sent,
        duration_ms = berth_app::millis(observation.elapsed),
        storage_calls = calls.total(),
        "request"
    );
    metrics.observe(&observation);
    drop(in_flight);
    response.map(|body| match body {
        Body::Empty => axum::body::Body::empty(),
        Body::Full(bytes) => axum::body::Body::from(bytes),
        Body::Stream(stream) => axum::body::Body::from_stream(stream),
    })
}

/// `body`, failing once no chunk arrived for `idle` (a client that stalls an upload holds a
/// connection and a buffer; it gets an error answer instead of keeping them).
fn idle_limited(
    body: axum::body::BodyDataStream,
    idle: Duration,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, BoxError>> + Send {
    futures_util::stream::unfold(Some(body), move |body| async move {
        let mut body = body?;
        match tokio::time::timeout(idle, body.next()).await {
            Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(body))),
            Ok(Some(Err(e))) => Some((Err(Box::new(e) as BoxError), None)),
            Ok(None) => None,
            Err(_) => Some((Err(format!("no request body bytes for {}s", idle.as_secs()).into()), None)),
        }
    })
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}
