//! Request and response types of the engine, and the small HTTP helpers every endpoint shares.
//!
//! The engine takes an `http::Request<RequestBody>` and returns an `http::Response<Body>`;
//! shells (hyper server, Lambda) convert their own body types to and from these.

use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, Response, StatusCode};

use crate::error::{ErrorKind, RegistryError, Result};

/// Error type of a request body stream.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A streamed request body.
pub type RequestBody = Pin<Box<dyn Stream<Item = Result<Bytes, BoxError>> + Send>>;

/// A response body: nothing, bytes in memory, or a stream from storage.
pub enum Body {
    /// No body.
    Empty,
    /// A small body held in memory (JSON documents, manifests).
    Full(Bytes),
    /// A blob streamed from storage.
    Stream(berth_storage::ByteStream),
}

/// Header names the spec defines.
pub mod headers {
    use http::HeaderName;
    /// `Docker-Distribution-API-Version`.
    pub const API_VERSION: HeaderName = HeaderName::from_static("docker-distribution-api-version");
    /// `Docker-Content-Digest`.
    pub const CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");
    /// `Docker-Upload-UUID`.
    pub const UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");
    /// `OCI-Subject`.
    pub const OCI_SUBJECT: HeaderName = HeaderName::from_static("oci-subject");
    /// `OCI-Filters-Applied`.
    pub const OCI_FILTERS_APPLIED: HeaderName = HeaderName::from_static("oci-filters-applied");
    /// `OCI-Tag`.
    pub const OCI_TAG: HeaderName = HeaderName::from_static("oci-tag");
    /// `OCI-Chunk-Min-Length`.
    pub const OCI_CHUNK_MIN_LENGTH: HeaderName = HeaderName::from_static("oci-chunk-min-length");
}

/// A response under construction: status, headers, body.
pub(crate) struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Body,
}

impl Reply {
    /// A reply with `status` and no body (`Content-Length: 0`).
    pub(crate) fn new(status: StatusCode) -> Self {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
        Self { status, headers, body: Body::Empty }
    }

    /// Sets a header; values are built from validated names, digests and numbers.
    pub(crate) fn header(mut self, name: HeaderName, value: impl AsRef<str>) -> Self {
        if let Ok(v) = HeaderValue::from_str(value.as_ref()) {
            self.headers.insert(name, v);
        }
        self
    }

    /// Adds a header, keeping earlier values of the same name.
    pub(crate) fn append_header(mut self, name: HeaderName, value: impl AsRef<str>) -> Self {
        if let Ok(v) = HeaderValue::from_str(value.as_ref()) {
            self.headers.append(name, v);
        }
        self
    }

    /// An in-memory body with its type and length.
    pub(crate) fn bytes(self, content_type: &str, body: impl Into<Bytes>) -> Self {
        let body = body.into();
        let mut reply = self.header(CONTENT_TYPE, content_type).header(CONTENT_LENGTH, body.len().to_string());
        reply.body = Body::Full(body);
        reply
    }

    /// A JSON body, ending with a newline as distribution's do (so that `curl` output does not
    /// run into the shell's next line).
    pub(crate) fn json(self, value: &impl serde::Serialize) -> Self {
        let mut body = serde_json::to_vec(value).unwrap_or_default();
        body.push(b'\n');
        self.bytes("application/json", body)
    }

    /// A streamed body of `len` bytes.
    pub(crate) fn stream(mut self, content_type: &str, len: u64, body: berth_storage::ByteStream) -> Self {
        self = self.header(CONTENT_TYPE, content_type).header(CONTENT_LENGTH, len.to_string());
        self.body = Body::Stream(body);
        self
    }

    /// Finishes the reply; a HEAD request keeps the headers (incl. `Content-Length`) and drops the body.
    pub(crate) fn finish(mut self, head: bool) -> Response<Body> {
        self.headers.insert(headers::API_VERSION, HeaderValue::from_static("registry/2.0"));
        let body = if head { Body::Empty } else { self.body };
        let mut response = Response::new(body);
        *response.status_mut() = self.status;
        *response.headers_mut() = self.headers;
        response
    }
}

impl From<&RegistryError> for Reply {
    fn from(err: &RegistryError) -> Self {
        let mut reply = Reply::new(err.kind.status()).bytes("application/json", err.body());
        for (name, value) in &err.headers {
            reply = reply.append_header(name.clone(), value);
        }
        reply
    }
}

/// The address of the client, as a shell knows it (the TCP peer, or the source IP an API gateway
/// reports); shells put it in the request's extensions. Failed logins are counted per address.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::IpAddr);

/// The authenticated user of a request, put in the response's extensions for the shells' logs.
#[derive(Debug, Clone)]
pub struct User(pub String);

/// Decoded query parameters.
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    /// Parses the query string of a URI.
    pub(crate) fn parse(query: Option<&str>) -> Self {
        Query(form_urlencoded::parse(query.unwrap_or("").as_bytes()).into_owned().collect())
    }

    /// Every value of `key`, in order.
    pub(crate) fn get_all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter(move |(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The first value of `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// Builds a query string component, percent-encoded.
pub(crate) fn encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// The value of a header as text, if present and valid.
pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `Content-Length` as a number; a malformed one is SIZE_INVALID.
pub(crate) fn content_length(headers: &HeaderMap) -> Result<Option<u64>> {
    match headers.get(CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| RegistryError::new(ErrorKind::SizeInvalid, "Content-Length is not a number")),
    }
}
