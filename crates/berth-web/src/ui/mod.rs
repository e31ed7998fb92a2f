//! The web UI: HTML rendered on the server from typed templates (askama: checked when berth is
//! compiled, and escaping every value — names, tags, labels, history — by default), with one small
//! script for the copy buttons. Rendering on the server keeps the UI in the binary and the Lambda
//! with no JavaScript toolchain, lets every page be one request that reads storage close to it
//! (a bounded number of calls, see [`berth_core::browse`]), and works without scripts.
//!
//! Pages (`/r/<name>` is a repository; `-` cannot start a name component, so `/-/` never clashes
//! with one):
//!
//! | path | page |
//! |---|---|
//! | `/` | repositories, filtered by name prefix (`q`), paginated (`after`) |
//! | `/r/<name>` | its tags by push time or name (`sort`), paginated (`page`) |
//! | `/r/<name>/-/<tag or digest>` | an image: layers, config, history; an index's platforms; referrers |
//! | `/r/<name>/-/<tag or digest>/delete` | `GET` the confirmation, `POST` the deletion |
//! | `/-/login`, `/-/logout` | signing in (`GET` the form, `POST` it) and out (`POST`) |
//! | `/-/static/<hash>/<file>` | the stylesheet and the script, cached for a year |
//!
//! Signing in uses the registry's own users and policy: the session token (see `berth_auth`)
//! lives in an `HttpOnly`, `SameSite=Strict` cookie, and a page shows what its viewer may pull
//! (anonymous viewers: what anonymous may pull), delete buttons only to those who may delete.
//! Every `POST` must come from a page of this origin (its `Origin`, else `Referer`, names this
//! host), so no other site can submit a form here, signed in or not. Every answer carries a
//! strict Content-Security-Policy (no inline script or style, nothing from elsewhere) and
//! `Cache-Control: no-store`, except the assets.

mod assets;
mod links;
mod manifest;
mod pages;
mod views;

use berth_core::error::{ErrorKind, RegistryError};
use berth_core::http::{Body, ClientAddr, RequestBody, User};
use bytes::Bytes;
use http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, COOKIE, HOST, LOCATION, ORIGIN, REFERER, SET_COOKIE,
};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};

use berth_core::Registry;

use self::views::{ErrorPage, Layout};

/// The session cookie's name.
const COOKIE_NAME: &str = "berth_session";

/// Largest form body accepted.
const MAX_FORM: usize = 16 * 1024;

/// The Content-Security-Policy of every page.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The web UI.
#[derive(Debug, Clone)]
pub struct Ui {
    /// The registry's public URL, when configured.
    public_url: Option<String>,
}

/// One UI request, as the pages see it.
pub(crate) struct Visit<'a> {
    pub(crate) registry: &'a Registry,
    pub(crate) viewer: berth_core::browse::Viewer,
    /// Path and query of the page, for the sign-in link to come back to.
    pub(crate) here: String,
    pub(crate) query: Vec<(String, String)>,
    /// The registry's host as clients pull from it.
    pub(crate) host: String,
    /// Whether the page was reached over HTTPS (then the cookie is `Secure`).
    pub(crate) https: bool,
    pub(crate) client: Option<std::net::IpAddr>,
}

impl Visit<'_> {
    /// A query parameter.
    pub(crate) fn param(&self, key: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The frame of every page.
    pub(crate) fn layout(&self, title: impl Into<String>) -> Layout {
        Layout::new(title.into(), self)
    }
}

/// What a page answers: HTML, a redirect, or an asset.
pub(crate) type Answer = Result<Response<Body>, RegistryError>;

impl Ui {
    /// The UI; pull commands name the host of `public_url`, else the request's.
    pub fn new(public_url: Option<String>) -> Self {
        Self { public_url }
    }

    /// Answers a request for a UI path.
    pub async fn handle(&self, registry: &Registry, request: Request<RequestBody>) -> Response<Body> {
        let (parts, body) = request.into_parts();
        let path = percent_encoding::percent_decode_str(parts.uri.path()).decode_utf8_lossy().into_owned();
        let here = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
        let query =
            parts.uri.query().map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default();
        let session = cookie(&parts.headers, COOKIE_NAME);
        let (host, https) = self.host(&parts.headers);
        let visit = Visit {
            registry,
            viewer: registry.viewer(session.as_deref()),
            here,
            query,
            host,
            https,
            client: parts.extensions.get::<ClientAddr>().map(|c| c.0),
        };
        let method = parts.method.clone();
        let answer = if method == Method::POST {
            match same_origin(&parts.headers, &visit.host) {
                Ok(()) => match read_form(body).await {
                    Ok(form) => pages::post(&visit, &path, &form).await,
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            }
        } else if method == Method::GET || method == Method::HEAD {
            pages::get(&visit, &path).await
        } else {
            Err(RegistryError::new(ErrorKind::MethodNotAllowed, format!("{method} is not supported here")))
        };
        let mut response = answer.unwrap_or_else(|e| error_page(&visit, &e));
        if method == Method::HEAD {
            *response.body_mut() = Body::Empty;
        }
        if let Some(user) = visit.viewer.user() {
            response.extensions_mut().insert(User(user.to_string()));
        }
        response
    }

    /// The registry's host as clients reach it, and whether over HTTPS: the public URL's, else
    /// the request's `Host` and `X-Forwarded-Proto`.
    fn host(&self, headers: &HeaderMap) -> (String, bool) {
        if let Some(url) = &self.public_url {
            let https = url.starts_with("https://");
            let host = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
            return (host.trim_end_matches('/').to_string(), https);
        }
        let header = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
        let https = header("x-forwarded-proto").is_some_and(|p| p.split(',').next().map(str::trim) == Some("https"));
        let host = header(HOST.as_str()).filter(|h| !h.is_empty()).unwrap_or("localhost");
        (host.to_string(), https)
    }
}

/// The value of cookie `name`.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// A `POST` must come from a page of this host: its `Origin` (or, without one, its `Referer`)
/// names it.
fn same_origin(headers: &HeaderMap, host: &str) -> Result<(), RegistryError> {
    let source = headers.get(ORIGIN).or_else(|| headers.get(REFERER)).and_then(|v| v.to_str().ok());
    let source_host = source.and_then(|s| s.split_once("://")).map(|(_, rest)| rest.split('/').next().unwrap_or(""));
    let request_host = headers.get(HOST).and_then(|v| v.to_str().ok());
    match source_host {
        Some(h) if h == host || Some(h) == request_host => Ok(()),
        _ => Err(RegistryError::new(ErrorKind::Denied, "this form was not sent from a page of this registry")),
    }
}

/// Reads a url-encoded form body of at most [`MAX_FORM`] bytes.
async fn read_form(mut body: RequestBody) -> Result<Vec<(String, String)>, RegistryError> {
    use futures_util::StreamExt;
    let mut bytes = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| RegistryError::new(ErrorKind::BlobUploadInvalid, e.to_string()))?;
        bytes.extend_from_slice(&chunk);
        if bytes.len() > MAX_FORM {
            return Err(RegistryError::new(ErrorKind::PayloadTooLarge, "the form is too large"));
        }
    }
    Ok(form_urlencoded::parse(&bytes).into_owned().collect())
}

/// A response with the headers every UI answer carries.
fn response(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut response = Response::new(Body::Full(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    headers.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Body::Full(body) = response.body() {
        let length = HeaderValue::from(body.len());
        response.headers_mut().insert(http::header::CONTENT_LENGTH, length);
    }
    response
}

/// An HTML page.
pub(crate) fn html(status: StatusCode, page: &impl askama::Template) -> Response<Body> {
    match page.render() {
        Ok(text) => response(status, "text/html; charset=utf-8", Bytes::from(text)),
        Err(e) => {
            tracing::error!(error = %e, "cannot render a page");
            response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain; charset=utf-8",
                Bytes::from("cannot render the page"),
            )
        }
    }
}

/// A `303 See Other` to `location`, setting `cookie` when given.
pub(crate) fn see_other(location: &str, cookie: Option<String>) -> Response<Body> {
    let mut response = response(StatusCode::SEE_OTHER, "text/plain; charset=utf-8", Bytes::new());
    if let Ok(location) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, location);
    }
    if let Some(cookie) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert(SET_COOKIE, cookie);
    }
    response
}

/// The `Set-Cookie` value that keeps session `token` (or, with `None`, forgets it).
pub(crate) fn session_cookie(token: Option<&str>, https: bool) -> String {
    let secure = if https { "; Secure" } else { "" };
    match token {
        Some(token) => format!("{COOKIE_NAME}={token}; Path=/; HttpOnly; SameSite=Strict{secure}"),
        None => format!("{COOKIE_NAME}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    }
}

/// The page an error shows: sign in for an anonymous viewer refused, else the error's status
/// and message (internal causes are logged, not shown).
fn error_page(visit: &Visit<'_>, error: &RegistryError) -> Response<Body> {
    if error.kind == ErrorKind::Unauthorized && visit.registry.signs_in() && visit.viewer.user().is_none() {
        return see_other(&links::login_href(&visit.here), None);
    }
    let status = error.kind.status();
    let message = if error.kind == ErrorKind::Internal {
        tracing::error!(error = %error, cause = ?error.source, path = %visit.here, "internal error");
        "the registry's storage failed; try again".to_string()
    } else {
        error.message.clone()
    };
    let title = status.canonical_reason().unwrap_or("Error").to_string();
    html(status, &ErrorPage { layout: visit.layout(title.clone()), title, message })
}
