//! The storage contract of berth: a narrow, object-store shaped trait.
//!
//! Every backend (in-memory, filesystem, S3) implements [`Storage`] and must pass the shared
//! suite in the `suite` module (feature `suite`). The operations mirror what S3 offers natively, so the
//! S3 backend is a thin mapping and the others emulate S3's semantics:
//!
//! * objects are immutable blobs of bytes addressed by `/`-separated keys;
//! * writes are atomic: a reader sees the old object, the new one, or nothing — never a prefix;
//! * conditional writes ([`Condition`]) fail with [`StorageError::PreconditionFailed`];
//! * multipart uploads take parts of at least [`MIN_PART_SIZE`] bytes, except the last one.

pub mod calls;
mod fs;
mod memory;
#[cfg(any(test, feature = "suite"))]
pub mod suite;

use std::ops::Range;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures_util::Stream;

pub use fs::FsStorage;
pub use memory::MemoryStorage;

/// Smallest size S3 accepts for a multipart part other than the last one (5 MiB).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

/// A stream of object bytes.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, StorageError>> + Send>>;

/// The result type of every storage operation.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// Errors a backend reports. Callers branch on the variant, never on a message.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The key (or multipart upload) does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// A [`Condition`] did not hold: the object exists (`CreateOnly`) or has another ETag (`IfMatch`).
    #[error("precondition failed: {0}")]
    PreconditionFailed(String),
    /// The requested range does not overlap the object.
    #[error("range not satisfiable for {0}")]
    InvalidRange(String),
    /// The request broke the contract (e.g. a non-final multipart part below [`MIN_PART_SIZE`]).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Anything else: I/O, network, the remote service.
    #[error("storage backend failure: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StorageError {
    /// Wraps any error as a backend failure.
    pub fn backend(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        StorageError::Backend(err.into())
    }

    /// True for [`StorageError::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::NotFound(_))
    }
}

/// When a write may happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// Always write, replacing any existing object.
    Overwrite,
    /// Write only if no object exists at the key (S3 `If-None-Match: *`).
    CreateOnly,
    /// Write only if the existing object has this ETag (S3 `If-Match`).
    IfMatch(String),
}

/// What a backend knows of a stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The object's key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// An opaque version tag; it changes whenever the key is written with different content.
    pub etag: String,
    /// When the object was last written, as the backend records it (S3's `LastModified`, a file's
    /// mtime). Writes answer the local time of the write.
    pub modified: SystemTime,
}

/// A (possibly ranged) read of an object.
pub struct GetObject {
    /// The whole object's metadata (`size` is the full size, not the range's).
    pub meta: ObjectMeta,
    /// The byte range being returned (the whole object when no range was asked for).
    pub range: Range<u64>,
    /// The bytes of `range`.
    pub body: ByteStream,
}

impl GetObject {
    /// Reads the whole body into memory. Only for small objects (state, links, manifests).
    pub async fn bytes(self) -> Result<Bytes> {
        use futures_util::TryStreamExt;
        let chunks: Vec<Bytes> = self.body.try_collect().await?;
        Ok(match chunks.len() {
            1 => chunks.into_iter().next().unwrap_or_default(),
            _ => chunks.concat().into(),
        })
    }
}

/// One page of a listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    /// The objects, in ascending byte order of their keys, all starting with the prefix, with
    /// what [`Storage::head`] tells of them (an S3-compatible server may leave the ETag out of
    /// listings: then it is empty).
    pub objects: Vec<ObjectMeta>,
    /// True when more keys follow the last one returned.
    pub truncated: bool,
}

impl ListPage {
    /// The keys of the page, in order.
    pub fn keys(&self) -> Vec<String> {
        self.objects.iter().map(|o| o.key.clone()).collect()
    }

    /// The last key of the page, where the next page starts after.
    pub fn last_key(&self) -> Option<&str> {
        self.objects.last().map(|o| o.key.as_str())
    }
}

/// A part of a multipart upload, as returned by [`Storage::upload_part`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedPart {
    /// 1-based part number.
    pub number: u32,
    /// The ETag the backend gave the part.
    pub etag: String,
    /// Its size in bytes (lets backends whose completion does not report a size return one).
    pub size: u64,
}

/// The storage contract. Keys are `/`-separated, never start with `/` and have no empty,
/// `.` or `..` component.
#[async_trait::async_trait]
pub trait Storage: Send + Sync + 'static {
    /// Metadata of the object at `key`.
    async fn head(&self, key: &str) -> Result<ObjectMeta>;

    /// Streams the object at `key`, or the part of it in `range` (end exclusive, clamped to the
    /// object's size; a range starting at or past the end is [`StorageError::InvalidRange`]).
    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<GetObject>;

    /// Writes `body` at `key` atomically if `cond` holds.
    async fn put(&self, key: &str, body: Bytes, cond: Condition) -> Result<ObjectMeta>;

    /// Deletes the object at `key`; deleting a missing key is not an error.
    async fn delete(&self, key: &str) -> Result<()>;

    /// Copies `src` to `dst` atomically if `cond` holds for `dst`.
    async fn copy(&self, src: &str, dst: &str, cond: Condition) -> Result<ObjectMeta>;

    /// Lists up to `limit` keys starting with `prefix` and sorting after `start_after`.
    async fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> Result<ListPage>;

    /// Starts a multipart upload that will become `key`; returns its upload id.
    async fn create_multipart(&self, key: &str) -> Result<String>;

    /// Uploads part `number` (1-based) of an upload, which starts `offset` bytes into the object
    /// (the sizes of the parts before it: the filesystem writes it there, S3 has no use for it);
    /// returns the part's ETag.
    async fn upload_part(&self, key: &str, upload_id: &str, number: u32, offset: u64, body: Bytes) -> Result<String>;

    /// Assembles exactly `parts`, in order, into `key` if `cond` holds. Every part but the last
    /// must be at least [`MIN_PART_SIZE`] bytes.
    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
        cond: Condition,
    ) -> Result<ObjectMeta>;

    /// Abandons an upload and its parts; aborting an unknown upload is not an error.
    async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<()>;

    /// A URL from which a client may GET `key` directly for `ttl`, when the backend has one.
    async fn presign_get(&self, key: &str, ttl: Duration) -> Result<Option<String>>;
}

/// Clamps `range` to an object of `size` bytes; `None` means the whole object.
pub fn resolve_range(key: &str, size: u64, range: Option<Range<u64>>) -> Result<Range<u64>> {
    match range {
        None => Ok(0..size),
        Some(r) if r.start >= size || r.start >= r.end => {
            if size == 0 && r.start == 0 {
                Ok(0..0)
            } else {
                Err(StorageError::InvalidRange(key.to_string()))
            }
        }
        Some(r) => Ok(r.start..r.end.min(size)),
    }
}

/// Checks the part sizes of a multipart completion against S3's rule.
pub fn check_part_sizes(sizes: &[u64]) -> Result<()> {
    if sizes.is_empty() {
        return Err(StorageError::Invalid("a multipart upload needs at least one part".into()));
    }
    if let Some(pos) = sizes[..sizes.len() - 1].iter().position(|s| *s < MIN_PART_SIZE) {
        return Err(StorageError::Invalid(format!(
            "part {} is {} bytes; every part but the last must be at least {MIN_PART_SIZE}",
            pos + 1,
            sizes[pos]
        )));
    }
    Ok(())
}
