//! `berth serve`: the engine over the filesystem, memory or S3, behind an axum/hyper HTTP server, with one log line per request
//! (including the storage calls it made) and graceful shutdown on SIGINT/SIGTERM.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::Poll;
use std::time::Instant;

use axum::body::HttpBody;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use axum::serve::ListenerExt;
use berth_core::auth::User;
use berth_core::http::{Body, BoxError, ClientAddr};
use berth_core::{Config, Registry};
use berth_s3::{S3Options, S3Storage};
use berth_storage::{FsStorage, MemoryStorage, Storage, calls};
use futures_util::{StreamExt, TryStreamExt};
use http::HeaderValue;
use http::header::{CONNECTION, CONTENT_LENGTH};

use crate::{S3Args, ServeArgs, StorageKind, auth};

/// Builds the storage and the registry, binds, and serves until a shutdown signal.
pub async fn run(args: ServeArgs) -> Result<(), String> {
    let (store, auth): (Arc<dyn Storage>, _) = match args.storage {
        StorageKind::Fs => (
            Arc::new(
                FsStorage::new(&args.root)
                    .map_err(|e| format!("cannot use data directory {}: {e}", args.root.display()))?,
            ),
            auth::setup(&args, None).await?,
        ),
        StorageKind::Memory => (Arc::new(MemoryStorage::new()), auth::setup(&args, None).await?),
        StorageKind::S3 => {
            let s3 = Arc::new(s3_storage(&args.s3).await?);
            let auth = auth::setup(&args, Some(s3.clone())).await?;
            (s3, auth)
        }
    };
    let config = Config {
        part_size: (args.part_size_mib * 1024 * 1024) as usize,
        redirect_ttl: args.redirect_ttl,
        ..Config::default()
    };
    let mut registry = Registry::new(store, config);
    if let Some(auth) = auth {
        registry = registry.with_auth(auth);
    }
    let app = axum::Router::new()
        .fallback(handle)
        .with_state(App { registry, trust_forwarded_for: args.trust_forwarded_for });
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    // Without TCP_NODELAY a response whose body follows its head in a second write (every
    // streamed blob) waits for the client's delayed ACK of the head: 40 ms per small blob on a
    // kept-alive connection.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on a connection");
        }
    });
    match args.storage {
        StorageKind::Fs => tracing::info!(%addr, storage = "fs", root = %args.root.display(), "berth listening"),
        StorageKind::Memory => tracing::info!(%addr, storage = "memory", "berth listening"),
        StorageKind::S3 => {
            tracing::info!(%addr, storage = "s3", bucket = args.s3.s3_bucket.as_deref(), "berth listening")
        }
    }
    axum::serve(listener, app).with_graceful_shutdown(shutdown()).await.map_err(|e| format!("server failed: {e}"))?;
    tracing::info!("berth stopped");
    Ok(())
}

/// Connects to the bucket and checks it before serving: a missing bucket, bad credentials or a
/// server without conditional writes stop the start with one clear line.
async fn s3_storage(args: &S3Args) -> Result<S3Storage, String> {
    let bucket = args.s3_bucket.clone().ok_or("--storage s3 needs --s3-bucket (or BERTH_S3_BUCKET)")?;
    let store = S3Storage::new(S3Options {
        bucket,
        region: args.s3_region.clone(),
        endpoint: args.s3_endpoint.clone(),
        public_endpoint: args.s3_public_endpoint.clone(),
        path_style: args.s3_path_style,
        prefix: args.s3_prefix.clone(),
    })
    .await;
    store.check().await?;
    Ok(store)
}

/// Adapts axum's types to the engine's, and logs the request.
/// What the request handler needs.
#[derive(Clone)]
struct App {
    registry: Registry,
    /// Take the client's address from the last `X-Forwarded-For` entry (set by a trusted proxy).
    trust_forwarded_for: bool,
}

/// The client's address: the TCP peer, or what the proxy in front appended to `X-Forwarded-For`.
fn client_addr(parts: &http::request::Parts, trust_forwarded_for: bool) -> Option<IpAddr> {
    let forwarded = || {
        let header = parts.headers.get_all("x-forwarded-for").iter().next_back()?.to_str().ok()?;
        header.rsplit(',').next()?.trim().parse().ok()
    };
    let peer = || parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(peer)| peer.ip());
    if trust_forwarded_for { forwarded().or_else(peer) } else { peer() }
}

async fn handle(State(app): State<App>, request: Request) -> Response {
    let started = Instant::now();
    let (mut parts, body) = request.into_parts();
    let (method, path) = (parts.method.clone(), parts.uri.path().to_string());
    if let Some(ip) = client_addr(&parts, app.trust_forwarded_for) {
        parts.extensions.insert(ClientAddr(ip));
    }
    let received = Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    // Whether the engine read the body to its end; an unread body (an early error answer)
    // leaves the connection unusable for the next request, so the client is told to close it.
    let ended = Arc::new(AtomicBool::new(HttpBody::is_end_stream(&body)));
    let end_flag = ended.clone();
    let body = body
        .into_data_stream()
        .inspect_ok(move |chunk| {
            counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        })
        .map_err(|e| Box::new(e) as BoxError)
        .chain(futures_util::stream::poll_fn(move |_| {
            end_flag.store(true, Ordering::Relaxed);
            Poll::Ready(None)
        }));
    let (mut response, calls) = calls::count(app.registry.handle(Request::from_parts(parts, Box::pin(body)))).await;
    if !ended.load(Ordering::Relaxed) {
        response.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
    }
    let sent: u64 = response.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(0);
    let user = response.extensions().get::<User>().map(|u| u.0.as_str());
    tracing::info!(
        %method,
        path,
        user,
        status = response.status().as_u16(),
        bytes_in = received.load(Ordering::Relaxed),
        bytes_out = sent,
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        storage_calls = calls::total(&calls),
        "request"
    );
    response.map(|body| match body {
        Body::Empty => axum::body::Body::empty(),
        Body::Full(bytes) => axum::body::Body::from(bytes),
        Body::Stream(stream) => axum::body::Body::from_stream(stream),
    })
}

async fn shutdown() {
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
