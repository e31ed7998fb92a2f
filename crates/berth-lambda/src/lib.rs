//! The Lambda shell of berth: [`settings`] reads the same settings `berth serve` takes, from
//! the function's environment alone (`BERTH_*`), with the Lambda's body limit; [`handle`]
//! converts API Gateway (HTTP API v2) and function-URL events, which `lambda_http` turns into
//! `http::Request`s with a buffered body, to the engine's request type and back.
//!
//! Lambda takes at most ~6 MB per request (≈4.5 MiB of binary after base64), so the engine runs
//! with a body limit ([`MAX_BODY`]). With `BERTH_UPLOAD_URL`, upload sessions are handed to an
//! upload host (`berth serve` over the same bucket) and no layer byte reaches the function;
//! without it, larger PATCHes are refused with a message that says to upload in chunks or to set
//! up an upload host, and chunked PATCHes below the limit are merged into ≥ 5 MiB parts across
//! invocations. Responses stay small: blob GETs are redirects to presigned S3 URLs.
//!
//! The same binary is also the garbage collector's function ([`collector`]).

pub mod collector;

use berth_app::{Settings, StorageKind};
use std::time::Instant;

use berth_core::http::{Body, ClientAddr, RequestBody, User};
use berth_metrics::{Observation, emf};
use berth_storage::calls;
use berth_web::Site;
use bytes::Bytes;
use futures_util::TryStreamExt;
use lambda_http::http::header::CONTENT_LENGTH;
use lambda_http::request::RequestContext;
use lambda_http::{Body as LambdaBody, Request, RequestExt, Response, http};

/// Largest request body accepted per invocation: Lambda's 6 MB payload limit less base64.
pub const MAX_BODY: u64 = 4_500_000;

/// The function's settings: the environment's `BERTH_*` variables, the body limit fixed at
/// [`MAX_BODY`]. The function keeps its data in S3 (`BERTH_STORAGE=s3`): an instance's memory
/// and disk do not outlive it.
pub fn settings() -> Result<Settings, String> {
    let mut settings = Settings::from_env().map_err(|e| e.to_string())?;
    if settings.storage != StorageKind::S3 {
        return Err("the Lambda function stores its data in S3: set BERTH_STORAGE=s3 and BERTH_S3_BUCKET".into());
    }
    settings.max_body = Some(MAX_BODY);
    Ok(settings)
}

/// Answers one invocation, logs it as `berth serve` logs a request (method, path, user,
/// status, bytes in and out, duration, storage calls), and prints its metrics as an Embedded
/// Metric Format line.
pub async fn handle(site: &Site, request: Request) -> Response<LambdaBody> {
    let started = Instant::now();
    let client = source_ip(&request);
    let (mut parts, body) = request.into_parts();
    let (method, path) = (parts.method.clone(), parts.uri.path().to_string());
    if let Some(ip) = client {
        parts.extensions.insert(ClientAddr(ip));
    }
    let bytes = match body {
        LambdaBody::Empty => Bytes::new(),
        LambdaBody::Text(text) => Bytes::from(text),
        LambdaBody::Binary(binary) => Bytes::from(binary),
        // The enum is non-exhaustive; events carry no other kind of body today.
        _ => Bytes::new(),
    };
    let received = bytes.len();
    let body: RequestBody = Box::pin(futures_util::stream::iter([Ok(bytes)]));
    let (response, calls) = calls::count(site.handle(http::Request::from_parts(parts, body))).await;
    let (parts, body) = response.into_parts();
    let sent: u64 = parts.headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok()).unwrap_or(0);
    let observation = Observation {
        method: method.as_str(),
        path: &path,
        status: parts.status.as_u16(),
        elapsed: started.elapsed(),
        bytes_in: received as u64,
        bytes_out: sent,
        storage: &calls,
    };
    tracing::info!(
        %method,
        path,
        user = parts.extensions.get::<User>().map(|u| u.0.as_str()),
        status = observation.status,
        bytes_in = received,
        bytes_out = sent,
        duration_ms = berth_app::millis(observation.elapsed),
        storage_calls = calls.total(),
        "request"
    );
    // The request's metrics, as an Embedded Metric Format line on stdout (CloudWatch Logs).
    println!("{}", emf::request(&observation));
    let body = match body {
        Body::Empty => LambdaBody::Empty,
        Body::Full(bytes) => LambdaBody::Binary(bytes.to_vec()),
        // Only the filesystem and memory backends stream blobs; S3 redirects instead.
        Body::Stream(stream) => match stream.try_collect::<Vec<Bytes>>().await {
            Ok(chunks) => LambdaBody::Binary(chunks.concat()),
            Err(e) => {
                tracing::error!(error = %e, "reading a blob failed");
                return Response::builder().status(500).body(LambdaBody::Empty).unwrap_or_default();
            }
        },
    };
    Response::from_parts(parts, body)
}

/// The caller's address as API Gateway or the function URL saw it (failed logins are counted per
/// address).
fn source_ip(request: &Request) -> Option<std::net::IpAddr> {
    match request.request_context_ref()? {
        RequestContext::ApiGatewayV2(context) => context.http.source_ip.as_deref()?.parse().ok(),
        _ => None,
    }
}
