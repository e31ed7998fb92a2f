//! Health probes that need no credentials, for orchestrators and load balancers (`/v2/` asks
//! for them when auth is on): `/livez` answers 200 while the process serves requests;
//! `/readyz` answers 200 when storage answers too, 503 when it does not. Readiness costs one
//! cheap storage call (a `HEAD` of a key that need not exist), remembered for [`READY_FOR`] so
//! that probes at any rate cost at most one call per that time.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_core::Registry;
use berth_core::http::Body;
use bytes::Bytes;
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use http::{Method, Response, StatusCode};

/// How long a readiness check is remembered.
pub const READY_FOR: Duration = Duration::from_secs(2);

/// The key readiness looks for; its absence is a fine answer.
const PROBE_KEY: &str = "_berth/ready";

/// The probes' paths.
pub(crate) fn is_probe(path: &str) -> bool {
    path == "/livez" || path == "/readyz"
}

/// The last readiness check: when, and whether storage answered.
#[derive(Clone, Default)]
pub(crate) struct Health {
    last: Arc<Mutex<Option<(Instant, bool)>>>,
}

impl Health {
    /// Answers `/livez` or `/readyz`.
    pub(crate) async fn answer(&self, registry: &Registry, method: &Method, path: &str) -> Response<Body> {
        if method != Method::GET && method != Method::HEAD {
            let mut response = reply(StatusCode::METHOD_NOT_ALLOWED, "{\"status\":\"method not allowed\"}\n");
            response.headers_mut().insert(ALLOW, http::HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        if path == "/livez" {
            return reply(StatusCode::OK, "{\"status\":\"live\"}\n");
        }
        if self.ready(registry).await {
            reply(StatusCode::OK, "{\"status\":\"ready\"}\n")
        } else {
            reply(StatusCode::SERVICE_UNAVAILABLE, "{\"status\":\"unready\",\"reason\":\"storage does not answer\"}\n")
        }
    }

    /// Whether storage answered, from the last check if it is recent.
    async fn ready(&self, registry: &Registry) -> bool {
        let cached = *self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, ready)) = cached
            && at.elapsed() < READY_FOR
        {
            return ready;
        }
        let ready = match registry.storage().head(PROBE_KEY).await {
            Ok(_) => true,
            Err(e) if e.is_not_found() => true,
            Err(e) => {
                // The detail goes to the log only: the probe needs no credentials.
                tracing::warn!(error = %e, "not ready: storage does not answer");
                false
            }
        };
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), ready));
        ready
    }
}

fn reply(status: StatusCode, json: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::Full(Bytes::from_static(json.as_bytes())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    headers.insert(CONTENT_LENGTH, http::HeaderValue::from(json.len()));
    headers.insert(CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    response
}
