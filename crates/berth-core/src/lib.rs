//! berth's protocol engine: the OCI Distribution Spec 1.1 over a [`Storage`].
//!
//! [`Registry::handle`] takes an `http::Request` with a streamed body and answers it: route
//! parsing ([`route`]), names and digests ([`names`], [`digest`]), blobs, stateless upload
//! sessions, manifests, tags, referrers and the catalog, with the spec's error codes
//! ([`error`]), behind one authorization check (`access`, with `berth-auth` deciding who the
//! caller is and what the policy grants). It holds no state between requests: everything lives
//! in storage under the layout of [`keys`], so any instance can continue any upload. No web
//! framework, AWS, Lambda or configuration code lives here; the shells adapt their types to
//! [`http`]'s, and the composition root (`berth-app`) fills in [`Config`]. [`browse`] reads the
//! registry for the web UI, through the same authorization.

pub mod browse;
pub mod digest;
pub mod error;
pub mod gc;
pub mod http;
pub mod keys;
pub mod manifests;
pub mod names;
pub mod route;

mod access;
mod blobs;
mod buffers;
mod listing;
mod referrers;
mod store;
mod token;
mod upload;
mod writer;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ::http::{HeaderMap, Method, Request, Response, StatusCode};
use berth_auth::Auth;
use berth_storage::Storage;

use crate::access::Access;
use crate::buffers::Buffers;
use crate::error::{ErrorKind, RegistryError, Result};
use crate::http::{Body, ClientAddr, Query, Reply, RequestBody, User};
use crate::route::Route;
use crate::store::Store;

/// Tunables of the engine, filled in by the composition root (which declares their defaults).
#[derive(Debug, Clone)]
pub struct Config {
    /// Size of multipart parts when streaming uploads (at least 5 MiB).
    pub part_size: usize,
    /// Lifetime of presigned blob URLs handed out as redirects.
    pub redirect_ttl: Duration,
    /// Blobs smaller than this are served, not redirected.
    pub redirect_min_size: u64,
    /// Largest request body accepted in one PATCH/PUT/POST, if the deployment has a limit.
    pub max_body: Option<u64>,
    /// Base URL clients reach the registry at (the token realm is `<url>/token`); by default
    /// taken from each request's `Host` and `X-Forwarded-Proto`.
    pub public_url: Option<String>,
    /// Take the client's address from the last `X-Forwarded-For` entry (which a trusted proxy
    /// appends) rather than from the connection.
    pub trust_forwarded_for: bool,
    /// Base URL of the upload host that upload sessions are handed to (their `Location`), when
    /// this deployment cannot take large request bodies itself.
    pub upload_url: Option<String>,
    /// How long an upload URL's capability stays valid after each answer that hands it out.
    pub upload_ttl: Duration,
    /// What garbage collection spares (`berth_gc`'s grace): the server's collector and any
    /// other must not use a shorter one (see `gc`).
    pub gc_grace: Duration,
    /// Memory all uploads together may hold in buffers on the way to storage (`buffers`).
    pub upload_memory: usize,
}

/// The registry: a storage backend, the engine's configuration, and authentication (`None`:
/// open to everyone).
#[derive(Clone)]
pub struct Registry {
    store: Store,
    config: Config,
    buffers: Buffers,
    auth: Option<Arc<Auth>>,
    /// The upload secret, read (or made) on the first upload; shared by clones.
    seal: Arc<tokio::sync::OnceCell<upload::Seal>>,
}

/// A request as the engine sees it.
pub(crate) struct Req {
    pub(crate) method: Method,
    pub(crate) headers: HeaderMap,
    pub(crate) query: Query,
    /// The URI's authority (HTTP/2 requests carry the host there instead of `Host`).
    pub(crate) authority: Option<String>,
    /// The client's address, when known.
    pub(crate) client: Option<IpAddr>,
    /// What the caller may do; established in dispatch.
    pub(crate) access: Access,
}

impl Registry {
    /// A registry over `store`, open to everyone.
    pub fn new(store: Arc<dyn Storage>, config: Config) -> Self {
        let buffers = Buffers::new(config.part_size, config.upload_memory);
        Self { store: Store::new(store), config, buffers, auth: None, seal: Default::default() }
    }

    /// The storage the registry keeps everything in (for its garbage collector).
    pub fn storage(&self) -> Arc<dyn Storage> {
        self.store.backend().clone()
    }

    /// The same registry, requiring authentication and authorizing every request by `auth`.
    pub fn with_auth(mut self, auth: Auth) -> Self {
        self.auth = Some(Arc::new(auth));
        self
    }

    /// Answers one request. Never fails: errors become spec error responses. Internal errors
    /// are logged here, once, with their cause.
    pub async fn handle(&self, request: Request<RequestBody>) -> Response<Body> {
        let (parts, mut body) = request.into_parts();
        let head = parts.method == Method::HEAD;
        let path = percent_encoding::percent_decode_str(parts.uri.path()).decode_utf8_lossy().into_owned();
        let peer = parts.extensions.get::<ClientAddr>().map(|c| c.0);
        let mut req = Req {
            method: parts.method,
            query: Query::parse(parts.uri.query()),
            authority: parts.uri.authority().map(|a| a.to_string()),
            client: if self.config.trust_forwarded_for { forwarded_for(&parts.headers).or(peer) } else { peer },
            headers: parts.headers,
            access: Access::Open,
        };
        let result = self.dispatch(&path, &mut req, &mut body).await;
        drain(&mut body).await;
        let mut response = match result {
            Ok(reply) => reply.finish(head),
            Err(err) => {
                // Once per request that saw it: what the client was told, and the cause (a
                // storage error names its operation and key).
                if let Some(cause) = &err.source {
                    tracing::error!(error = %err, %cause, method = %req.method, %path, "request failed");
                } else if err.kind == ErrorKind::Internal {
                    tracing::error!(error = %err, method = %req.method, %path, "internal error");
                }
                Reply::from(&err).finish(head)
            }
        };
        if let Some(user) = req.access.user() {
            response.extensions_mut().insert(User(user.to_string()));
        }
        response
    }

    async fn dispatch(&self, path: &str, req: &mut Req, body: &mut RequestBody) -> Result<Reply> {
        let route = route::parse(path)?;
        let m = req.method.clone();
        if route == Route::Token {
            return match m {
                Method::GET => self.token_get(req).await,
                Method::POST => self.token_post(req, body).await,
                _ => self.token_auth().and_then(|_| {
                    Err(RegistryError::new(ErrorKind::MethodNotAllowed, format!("{m} is not supported on {path}")))
                }),
            };
        }
        req.access = self.authenticate(req).await?;
        self.authorize(&route, req)?;
        let req = &*req;
        let get = m == Method::GET || m == Method::HEAD;
        match route {
            Route::Base if get => Ok(Reply::new(StatusCode::OK).json(&serde_json::json!({}))),
            Route::Catalog if get => self.catalog(req).await,
            Route::Tags(name) if get => self.tags_list(&name, req).await,
            Route::Manifest(name, r) if get => self.get_manifest(&name, &r).await,
            Route::Manifest(name, r) if m == Method::PUT => self.put_manifest(&name, &r, req, body).await,
            Route::Manifest(name, r) if m == Method::DELETE => self.delete_manifest(&name, &r).await,
            Route::Blob(name, d) if get => self.get_blob(&name, &d, req).await,
            Route::Blob(name, d) if m == Method::DELETE => self.delete_blob(&name, &d).await,
            Route::UploadStart(name) if m == Method::POST => self.start_upload(&name, req, body).await,
            Route::Upload(name, id) if get => self.upload_status(&name, &id, req).await,
            Route::Upload(name, id) if m == Method::PATCH => self.patch_upload(&name, &id, req, body).await,
            Route::Upload(name, id) if m == Method::PUT => self.finish_upload(&name, &id, req, body).await,
            Route::Upload(name, id) if m == Method::DELETE => self.cancel_upload(&name, &id).await,
            Route::Referrers(name, d) if get => self.referrers(&name, &d, req).await,
            _ => Err(RegistryError::new(ErrorKind::MethodNotAllowed, format!("{m} is not supported on {path}"))),
        }
    }
}

/// The address a proxy in front appended to `X-Forwarded-For`: the last entry.
fn forwarded_for(headers: &HeaderMap) -> Option<IpAddr> {
    let header = headers.get_all("x-forwarded-for").iter().next_back()?.to_str().ok()?;
    header.rsplit(',').next()?.trim().parse().ok()
}

/// Most bytes of an unread request body consumed after answering, so that a client that sent a
/// body the endpoint did not need (or one refused early, e.g. a manifest PUT answered 401 before
/// the client had a token) reads the answer instead of a reset, and can reuse its connection.
/// Covers the largest manifest; blob bodies beyond it are cut off by closing the connection.
const DRAIN_LIMIT: usize = manifests::MAX_MANIFEST_SIZE + 64 * 1024;

/// Reads and discards what is left of a request body, up to [`DRAIN_LIMIT`] bytes. A shell sees
/// a body still unfinished after that and closes the connection.
async fn drain(body: &mut RequestBody) {
    use futures_util::StreamExt;
    let mut drained = 0;
    while drained <= DRAIN_LIMIT {
        match body.next().await {
            Some(Ok(chunk)) => drained += chunk.len(),
            _ => return,
        }
    }
}
