//! Spec error codes and the one table that gives each its HTTP status.
//!
//! OCI Distribution Spec, "Error Codes": a 4XX response body is
//! `{"errors":[{"code":"<CODE>","message":"<text>","detail":<any>}]}`. Every failure the engine
//! answers with is a [`RegistryError`] built from an [`ErrorKind`]; the kind alone decides the
//! spec code and the status, so no call site picks a status. Storage failures become
//! [`ErrorKind::Internal`]: logged once at the edge, never described to the client.

use http::{HeaderName, StatusCode};
use serde::Serialize;

/// What went wrong, as far as the client is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The blob is not known to the repository.
    BlobUnknown,
    /// The upload or its request was invalid (bad chunk, body ended early, concurrent change).
    BlobUploadInvalid,
    /// A chunk did not start where the upload stands (answered 416 with the current `Range`).
    BlobUploadOutOfOrder,
    /// The upload session does not exist (never created, finished or cancelled).
    BlobUploadUnknown,
    /// A digest is malformed, uses an unsupported algorithm, or does not match the content.
    DigestInvalid,
    /// A manifest references a blob or manifest the repository does not have.
    ManifestBlobUnknown,
    /// A manifest is not valid JSON, has an unknown media type, or breaks its schema.
    ManifestInvalid,
    /// A manifest is larger than the registry accepts.
    ManifestTooLarge,
    /// The manifest (by tag or digest) is not known to the repository.
    ManifestUnknown,
    /// The repository name is invalid.
    NameInvalid,
    /// The repository is not known to the registry.
    NameUnknown,
    /// A length did not match the content, or a range header is malformed.
    SizeInvalid,
    /// The requested byte range cannot be served.
    RangeNotSatisfiable,
    /// A pagination parameter (`n`) is not a non-negative integer.
    PaginationNumberInvalid,
    /// The route exists but not for this method.
    MethodNotAllowed,
    /// No such endpoint.
    NotFound,
    /// The request body is larger than this deployment accepts.
    PayloadTooLarge,
    /// No credentials, bad credentials, or a token that does not cover the request (401, with a
    /// `WWW-Authenticate` challenge).
    Unauthorized,
    /// The caller is known and the policy does not allow the action.
    Denied,
    /// Too many failed logins from this client.
    TooManyRequests,
    /// A malformed request to the token endpoint.
    TokenRequestInvalid,
    /// The request met garbage collection at work on what it needs; a retry succeeds.
    Unavailable,
    /// The storage backend failed; details are logged, not sent.
    Internal,
}

/// The table: spec code, HTTP status and default message of every kind.
const fn describe(kind: ErrorKind) -> (&'static str, StatusCode, &'static str) {
    use ErrorKind::*;
    match kind {
        BlobUnknown => ("BLOB_UNKNOWN", StatusCode::NOT_FOUND, "blob unknown to registry"),
        BlobUploadInvalid => ("BLOB_UPLOAD_INVALID", StatusCode::BAD_REQUEST, "blob upload invalid"),
        BlobUploadOutOfOrder => ("BLOB_UPLOAD_INVALID", StatusCode::RANGE_NOT_SATISFIABLE, "chunk out of order"),
        BlobUploadUnknown => ("BLOB_UPLOAD_UNKNOWN", StatusCode::NOT_FOUND, "blob upload unknown to registry"),
        DigestInvalid => ("DIGEST_INVALID", StatusCode::BAD_REQUEST, "provided digest did not match uploaded content"),
        ManifestBlobUnknown => (
            "MANIFEST_BLOB_UNKNOWN",
            StatusCode::BAD_REQUEST,
            "manifest references a manifest or blob unknown to registry",
        ),
        ManifestInvalid => ("MANIFEST_INVALID", StatusCode::BAD_REQUEST, "manifest invalid"),
        ManifestTooLarge => ("SIZE_INVALID", StatusCode::PAYLOAD_TOO_LARGE, "manifest too large"),
        ManifestUnknown => ("MANIFEST_UNKNOWN", StatusCode::NOT_FOUND, "manifest unknown to registry"),
        NameInvalid => ("NAME_INVALID", StatusCode::BAD_REQUEST, "invalid repository name"),
        NameUnknown => ("NAME_UNKNOWN", StatusCode::NOT_FOUND, "repository name not known to registry"),
        SizeInvalid => ("SIZE_INVALID", StatusCode::BAD_REQUEST, "provided length did not match content length"),
        RangeNotSatisfiable => ("RANGE_INVALID", StatusCode::RANGE_NOT_SATISFIABLE, "requested range not satisfiable"),
        PaginationNumberInvalid => {
            ("PAGINATION_NUMBER_INVALID", StatusCode::BAD_REQUEST, "invalid number of results requested")
        }
        MethodNotAllowed => ("UNSUPPORTED", StatusCode::METHOD_NOT_ALLOWED, "the operation is unsupported"),
        NotFound => ("NOT_FOUND", StatusCode::NOT_FOUND, "no such endpoint"),
        PayloadTooLarge => ("SIZE_INVALID", StatusCode::PAYLOAD_TOO_LARGE, "request body too large"),
        Unauthorized => ("UNAUTHORIZED", StatusCode::UNAUTHORIZED, "authentication required"),
        Denied => ("DENIED", StatusCode::FORBIDDEN, "requested access to the resource is denied"),
        TooManyRequests => ("TOOMANYREQUESTS", StatusCode::TOO_MANY_REQUESTS, "too many requests"),
        TokenRequestInvalid => ("UNSUPPORTED", StatusCode::BAD_REQUEST, "invalid token request"),
        Unavailable => ("UNAVAILABLE", StatusCode::SERVICE_UNAVAILABLE, "service unavailable; retry"),
        Internal => ("UNKNOWN", StatusCode::INTERNAL_SERVER_ERROR, "unknown error; the registry logged the cause"),
    }
}

impl ErrorKind {
    /// The spec error code sent in the body.
    pub const fn code(self) -> &'static str {
        describe(self).0
    }

    /// The HTTP status this kind is answered with.
    pub const fn status(self) -> StatusCode {
        describe(self).1
    }

    /// The default, client-facing message.
    pub const fn message(self) -> &'static str {
        describe(self).2
    }
}

/// An error answered to the client: a kind plus a specific message and optional detail.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", kind.code())]
pub struct RegistryError {
    /// Decides code and status.
    pub kind: ErrorKind,
    /// What the client is told.
    pub message: String,
    /// Optional structured detail for the body.
    pub detail: Option<serde_json::Value>,
    /// Headers to send with the error: `Range` on 416 answers for uploads (the current progress),
    /// `WWW-Authenticate` on 401, `Retry-After` on 429.
    pub headers: Vec<(HeaderName, String)>,
    /// Internal cause, logged at the edge and never sent.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl RegistryError {
    /// An error with a specific message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), detail: None, headers: Vec::new(), source: None }
    }

    /// Attaches structured detail.
    pub fn with_detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = Some(detail);
        self
    }

    /// Attaches a header to the answer.
    pub fn with_header(mut self, name: HeaderName, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The JSON body the spec prescribes.
    pub fn body(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Entry<'a> {
            code: &'a str,
            message: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            detail: Option<&'a serde_json::Value>,
        }
        #[derive(Serialize)]
        struct Body<'a> {
            errors: [Entry<'a>; 1],
        }
        let body =
            Body { errors: [Entry { code: self.kind.code(), message: &self.message, detail: self.detail.as_ref() }] };
        let mut bytes = serde_json::to_vec(&body).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }
}

impl From<ErrorKind> for RegistryError {
    fn from(kind: ErrorKind) -> Self {
        Self::new(kind, kind.message())
    }
}

/// Seconds a client is asked to wait before retrying after storage failed.
pub const STORAGE_RETRY_AFTER: u32 = 5;

impl From<berth_storage::StorageError> for RegistryError {
    /// A storage failure (S3 unreachable or refusing, a disk error) is `503 UNAVAILABLE` with
    /// `Retry-After`: the request changed nothing it cannot redo, and clients retry. Any other
    /// storage error reaching the client is a bug of the engine: `500 UNKNOWN`. Either way the
    /// cause is logged, never sent.
    fn from(err: berth_storage::StorageError) -> Self {
        if matches!(err, berth_storage::StorageError::Backend(_)) {
            let unavailable = Self::new(ErrorKind::Unavailable, "storage is unavailable; retry")
                .with_header(http::header::RETRY_AFTER, STORAGE_RETRY_AFTER.to_string());
            return Self { source: Some(Box::new(err)), ..unavailable };
        }
        Self { source: Some(Box::new(err)), ..ErrorKind::Internal.into() }
    }
}

/// Result of engine operations.
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use ErrorKind::*;

    /// Every kind, with the code and status clients must see (OCI Distribution Spec, "Error
    /// Codes"; `UNKNOWN` for 500s, as distribution answers them).
    const TABLE: [(ErrorKind, &str, u16); 23] = [
        (BlobUnknown, "BLOB_UNKNOWN", 404),
        (BlobUploadInvalid, "BLOB_UPLOAD_INVALID", 400),
        (BlobUploadOutOfOrder, "BLOB_UPLOAD_INVALID", 416),
        (BlobUploadUnknown, "BLOB_UPLOAD_UNKNOWN", 404),
        (DigestInvalid, "DIGEST_INVALID", 400),
        (ManifestBlobUnknown, "MANIFEST_BLOB_UNKNOWN", 400),
        (ManifestInvalid, "MANIFEST_INVALID", 400),
        (ManifestTooLarge, "SIZE_INVALID", 413),
        (ManifestUnknown, "MANIFEST_UNKNOWN", 404),
        (NameInvalid, "NAME_INVALID", 400),
        (NameUnknown, "NAME_UNKNOWN", 404),
        (SizeInvalid, "SIZE_INVALID", 400),
        (RangeNotSatisfiable, "RANGE_INVALID", 416),
        (PaginationNumberInvalid, "PAGINATION_NUMBER_INVALID", 400),
        (MethodNotAllowed, "UNSUPPORTED", 405),
        (NotFound, "NOT_FOUND", 404),
        (PayloadTooLarge, "SIZE_INVALID", 413),
        (Unauthorized, "UNAUTHORIZED", 401),
        (Denied, "DENIED", 403),
        (TooManyRequests, "TOOMANYREQUESTS", 429),
        (TokenRequestInvalid, "UNSUPPORTED", 400),
        (Unavailable, "UNAVAILABLE", 503),
        (Internal, "UNKNOWN", 500),
    ];

    #[test]
    fn every_kind_has_its_code_status_and_a_message() {
        for (kind, code, status) in TABLE {
            assert_eq!((kind.code(), kind.status().as_u16()), (code, status), "{kind:?}");
            assert!(!kind.message().is_empty(), "{kind:?}");
        }
    }

    #[test]
    fn the_body_is_the_spec_shape_and_hides_internal_causes() {
        let err = RegistryError::from(berth_storage::StorageError::backend("disk on fire"));
        let body: serde_json::Value = serde_json::from_slice(&err.body()).unwrap();
        assert_eq!((body["errors"][0]["code"].as_str(), err.kind.status().as_u16()), (Some("UNAVAILABLE"), 503));
        assert_eq!(err.headers, [(http::header::RETRY_AFTER, "5".to_string())]);
        assert!(!body.to_string().contains("fire"), "{body}");
        let err = RegistryError::from(berth_storage::StorageError::Invalid("part 3 is too small".into()));
        let body: serde_json::Value = serde_json::from_slice(&err.body()).unwrap();
        assert_eq!(body["errors"][0]["code"], "UNKNOWN");
        assert!(!body.to_string().contains("part 3"), "{body}");
        let err = RegistryError::new(BlobUnknown, "blob x").with_detail(serde_json::json!({"digest": "x"}));
        let body: serde_json::Value = serde_json::from_slice(&err.body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"errors": [{"code": "BLOB_UNKNOWN", "message": "blob x", "detail": {"digest": "x"}}]})
        );
    }
}
