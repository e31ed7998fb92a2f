//! In-process tests of every endpoint: requests go straight into the engine behind its web front
//! ([`berth_web::Site::handle`], which hands the API to [`berth_core::Registry::handle`]) over the
//! in-memory or filesystem backend, and assert what a client sees (status, headers, bytes) and
//! which storage keys were written.

mod auth;
mod blobs;
mod costs;
mod errors;
mod gc;
mod listing;
mod manifests;
mod races;
mod referrers;
mod ui;
mod upload_host;
mod uploads;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use berth_app::Settings;
use berth_core::http::{Body, RequestBody};
use berth_core::{Config, Registry};
use berth_s3::{S3Options, S3Storage};
use berth_storage::calls::CallCounts;
use berth_storage::{MemoryStorage, Storage};
use berth_web::{Site, SiteConfig};
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use http::{HeaderMap, Method, Request, StatusCode};
use serde_json::Value;

use crate::common::{OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, S3Kind, S3Server, random_bytes, sha256};

/// A registry under test (behind its web front) and the storage it writes to.
pub(crate) struct Harness {
    pub(crate) site: Site,
    pub(crate) store: Arc<dyn Storage>,
    /// Storage calls made by the requests sent so far.
    pub(crate) calls: AtomicU64,
    /// The storage calls of the last request, by operation.
    pub(crate) last_calls: Mutex<CallCounts>,
}

/// A response with its body read.
#[derive(Debug)]
pub(crate) struct Resp {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Resp {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }

    /// The spec error code of an error response.
    pub(crate) fn code(&self) -> String {
        self.json()["errors"][0]["code"].as_str().unwrap_or_default().to_string()
    }

    pub(crate) fn location(&self) -> String {
        self.header("location").unwrap_or_else(|| panic!("no Location in {self:?}")).to_string()
    }
}

impl Harness {
    /// A registry over memory with the smallest allowed part size, so multipart paths run.
    pub(crate) fn new() -> Self {
        Self::with(Arc::new(MemoryStorage::new()), config())
    }

    pub(crate) fn with(store: Arc<dyn Storage>, config: Config) -> Self {
        Self::over(Registry::new(store.clone(), config), store)
    }

    /// A harness around a registry built by the test, with the UI on and CORS off.
    pub(crate) fn over(registry: Registry, store: Arc<dyn Storage>) -> Self {
        Self::fronted(registry, store, SiteConfig { ui: true, ..SiteConfig::default() })
    }

    /// A harness around a registry built by the test, behind a web front set up so.
    pub(crate) fn fronted(registry: Registry, store: Arc<dyn Storage>, site: SiteConfig) -> Self {
        Self { site: Site::new(registry, site), store, calls: AtomicU64::new(0), last_calls: Mutex::default() }
    }

    /// Sends a request whose body arrives in chunks of `chunk` bytes.
    pub(crate) async fn send_chunked(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        chunk: usize,
    ) -> Resp {
        let mut builder = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let chunks: Vec<Result<Bytes, berth_core::http::BoxError>> =
            body.chunks(chunk.max(1)).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        // Yield between chunks, as a network body does, so concurrent requests interleave.
        let stream: RequestBody = Box::pin(futures_util::stream::iter(chunks).then(|c| async {
            tokio::task::yield_now().await;
            c
        }));
        let (response, calls) = berth_storage::calls::count(self.site.handle(builder.body(stream).unwrap())).await;
        self.calls.fetch_add(calls.total(), Ordering::Relaxed);
        *self.last_calls.lock().unwrap() = calls.calls;
        let (parts, body) = response.into_parts();
        let body = match body {
            Body::Empty => Bytes::new(),
            Body::Full(b) => b,
            Body::Stream(s) => s.try_collect::<Vec<Bytes>>().await.unwrap().concat().into(),
        };
        Resp { status: parts.status, headers: parts.headers, body }
    }

    pub(crate) async fn send(&self, method: Method, uri: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        self.send_chunked(method, uri, headers, body, 64 * 1024).await
    }

    pub(crate) async fn get(&self, uri: &str) -> Resp {
        self.send(Method::GET, uri, &[], b"").await
    }

    pub(crate) async fn head(&self, uri: &str) -> Resp {
        self.send(Method::HEAD, uri, &[], b"").await
    }

    pub(crate) async fn delete(&self, uri: &str) -> Resp {
        self.send(Method::DELETE, uri, &[], b"").await
    }

    /// Pushes a blob monolithically (`POST ?digest=`); returns its digest.
    pub(crate) async fn push_blob(&self, name: &str, data: &[u8]) -> String {
        let digest = sha256(data);
        let r = self.send(Method::POST, &format!("/v2/{name}/blobs/uploads/?digest={digest}"), &[], data).await;
        assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
        digest
    }

    /// Starts an upload session; returns its Location.
    pub(crate) async fn start(&self, name: &str) -> String {
        let r = self.send(Method::POST, &format!("/v2/{name}/blobs/uploads/"), &[], b"").await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
        r.location()
    }

    /// Pushes a manifest; returns the response.
    pub(crate) async fn put_manifest(&self, name: &str, reference: &str, media_type: &str, body: &[u8]) -> Resp {
        self.send(Method::PUT, &format!("/v2/{name}/manifests/{reference}"), &[("content-type", media_type)], body)
            .await
    }

    /// Storage calls since the last call of this method.
    pub(crate) fn take_calls(&self) -> u64 {
        self.calls.swap(0, Ordering::Relaxed)
    }

    /// Keys in storage under `prefix`.
    pub(crate) async fn keys(&self, prefix: &str) -> Vec<String> {
        self.store.list(prefix, None, 10_000).await.unwrap().keys()
    }

    /// Keys under `uploads/` of sessions that hold something: all but the states that ended
    /// sessions leave (for garbage collection to remove).
    pub(crate) async fn open_uploads(&self) -> Vec<String> {
        let mut open = Vec::new();
        for key in self.keys("uploads/").await {
            let body = self.store.get(&key, None).await.unwrap().bytes().await.unwrap();
            let ended = key.ends_with("/state")
                && serde_json::from_slice::<serde_json::Value>(&body).is_ok_and(|s| s["ended"] == true);
            if !ended {
                open.push(key);
            }
        }
        open
    }
}

/// Memory, and the S3 server of `kind` (under a fresh prefix starting with `prefix`) when the
/// test script started it: under CI it must have; elsewhere that part of `test` is skipped.
pub(crate) async fn backends(kind: S3Kind, test: &str, prefix: &str) -> Vec<(&'static str, Arc<dyn Storage>)> {
    let mut all: Vec<(&'static str, Arc<dyn Storage>)> = vec![("memory", Arc::new(MemoryStorage::new()))];
    let label = match kind {
        S3Kind::Signing => "s3",
        S3Kind::Moto => "moto",
    };
    if let Some(server) = S3Server::require_for_part(kind, test, &format!("the {label} backend")) {
        let store = S3Storage::new(S3Options {
            bucket: server.bucket,
            region: "us-east-1".into(),
            endpoint: Some(server.endpoint),
            public_endpoint: None,
            path_style: true,
            prefix: format!("{prefix}-{}", uuid::Uuid::new_v4().simple()),
        })
        .await;
        store.check().await.unwrap_or_else(|e| panic!("{label} bucket unusable: {e}"));
        all.push((label, Arc::new(store)));
    }
    all
}

/// The engine's configuration with the settings' defaults (the smallest part size, so that
/// multipart paths run with small blobs).
pub(crate) fn config() -> Config {
    let mut settings = Settings::from_env().expect("the default settings parse");
    settings.part_size_mib = 5;
    settings.config()
}

/// An OCI image manifest over blobs that exist in `name`, with optional extras merged in.
pub(crate) async fn image(h: &Harness, name: &str, seed: u64, extra: Value) -> (Vec<u8>, String) {
    let config = format!("{{\"architecture\":\"amd64\",\"os\":\"linux\",\"seed\":{seed}}}");
    let layer = random_bytes(1000, seed);
    let c = h.push_blob(name, config.as_bytes()).await;
    let l = h.push_blob(name, &layer).await;
    let mut m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": c, "size": config.len()},
        "layers": [{"mediaType": OCI_LAYER, "digest": l, "size": layer.len()}],
    });
    if let (Some(m), Some(extra)) = (m.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            m.insert(k.clone(), v.clone());
        }
    }
    let body = serde_json::to_vec_pretty(&m).unwrap();
    let digest = sha256(&body);
    (body, digest)
}
