//! Blob endpoints: `HEAD`/`GET /v2/<name>/blobs/<digest>` (end-2, with Range → 206/416) and
//! `DELETE` (end-10), plus the repository links every blob access goes through.
//!
//! A `GET` reads the link (the size), then redirects to a presigned storage URL, or, for a blob
//! under `redirect_min_size` or storage that cannot presign (the filesystem), streams the bytes
//! from one (ranged) read: 1 storage call for a redirect, 2 for a served blob.

use std::ops::Range;

use berth_storage::StorageError;
use bytes::Bytes;
use http::StatusCode;
use http::header::{ACCEPT_RANGES, CONTENT_RANGE, LOCATION, RANGE};

use crate::digest::Digest;
use crate::error::{ErrorKind, RegistryError, Result};
use crate::http::{Reply, header, headers};
use crate::names::Name;
use crate::{Registry, Req, keys};

impl Registry {
    /// The size of a blob the repository links, if it links it. One storage read.
    pub(crate) async fn link_size(&self, name: &Name, digest: &Digest) -> Result<Option<u64>> {
        let Some(body) = self.store.read_opt(&keys::blob_link(name, digest)).await? else {
            return Ok(None);
        };
        let size = std::str::from_utf8(&body).ok().and_then(|s| s.trim().parse().ok());
        size.map(Some).ok_or_else(|| StorageError::Invalid(format!("corrupt link for {digest} in {name}")).into())
    }

    /// The size of a blob the repository links, or BLOB_UNKNOWN.
    async fn linked_size(&self, name: &Name, digest: &Digest) -> Result<u64> {
        self.link_size(name, digest).await?.ok_or_else(|| {
            RegistryError::new(ErrorKind::BlobUnknown, format!("blob {digest} is not known to repository {name}"))
        })
    }

    /// Lets repository `name` serve the blob.
    pub(crate) async fn link_blob(&self, name: &Name, digest: &Digest, size: u64) -> Result<()> {
        self.store.put(&keys::blob_link(name, digest), Bytes::from(size.to_string())).await?;
        Ok(())
    }

    /// `GET`/`HEAD /v2/<name>/blobs/<digest>`: the blob, a range of it, or a redirect to storage.
    pub(crate) async fn get_blob(&self, name: &Name, digest: &str, req: &Req) -> Result<Reply> {
        let digest: Digest = digest.parse()?;
        let size = self.linked_size(name, &digest).await?;
        let ok = |status| Reply::new(status).header(headers::CONTENT_DIGEST, digest.to_string());
        if req.method == http::Method::HEAD {
            return Ok(ok(StatusCode::OK)
                .header(ACCEPT_RANGES, "bytes")
                .header(http::header::CONTENT_TYPE, "application/octet-stream")
                .header(http::header::CONTENT_LENGTH, size.to_string()));
        }
        // Checked before redirecting too: storage servers disagree on ranges like `500-0`.
        let range = match header(&req.headers, &RANGE).and_then(parse_range) {
            Some(r) => Some(resolve(r, size).ok_or_else(|| {
                RegistryError::new(
                    ErrorKind::RangeNotSatisfiable,
                    format!("range not satisfiable for a blob of {size} bytes"),
                )
                .with_detail(serde_json::json!({ "size": size }))
            })?),
            None => None,
        };
        // A small blob is cheaper served than redirected: one more storage read here spares the
        // client a second connection, and a Lambda function only a moment.
        if size >= self.config.redirect_min_size
            && let Some(url) = self.store.presign_get(&keys::blob(&digest), self.config.redirect_ttl).await?
        {
            return Ok(ok(StatusCode::TEMPORARY_REDIRECT).header(LOCATION, url));
        }
        let object = self.store.get_opt(&keys::blob(&digest), range.clone()).await?.ok_or_else(|| {
            RegistryError::new(ErrorKind::BlobUnknown, format!("blob {digest} is linked but its data is missing"))
        })?;
        let len = object.range.end - object.range.start;
        let reply = match range {
            Some(_) => ok(StatusCode::PARTIAL_CONTENT).header(
                CONTENT_RANGE,
                format!("bytes {}-{}/{}", object.range.start, object.range.end.saturating_sub(1), object.meta.size),
            ),
            None => ok(StatusCode::OK),
        };
        Ok(reply.header(ACCEPT_RANGES, "bytes").stream("application/octet-stream", len, object.body))
    }

    /// `DELETE /v2/<name>/blobs/<digest>`: unlinks the blob from the repository (202). The bytes
    /// stay while other repositories link them.
    pub(crate) async fn delete_blob(&self, name: &Name, digest: &str) -> Result<Reply> {
        let digest: Digest = digest.parse()?;
        self.linked_size(name, &digest).await?;
        self.store.delete(&keys::blob_link(name, &digest)).await?;
        Ok(Reply::new(StatusCode::ACCEPTED).header(headers::CONTENT_DIGEST, digest.to_string()))
    }
}

/// A single byte range of a `Range` header (RFC 9110 §14.1.2). Anything else (several ranges,
/// other units, bad syntax) is ignored, as the RFC permits, and the whole blob is sent; a
/// range whose last byte precedes its first is unsatisfiable (416), as the conformance suite expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ByteRange {
    /// `bytes=first-last` or `bytes=first-`.
    From(u64, Option<u64>),
    /// `bytes=-n`: the last n bytes.
    Suffix(u64),
}

fn parse_range(value: &str) -> Option<ByteRange> {
    let spec = value.trim().strip_prefix("bytes=")?;
    let (first, last) = spec.split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        return last.parse().ok().map(ByteRange::Suffix);
    }
    let first: u64 = first.parse().ok()?;
    let last = if last.is_empty() { None } else { Some(last.parse().ok()?) };
    Some(ByteRange::From(first, last))
}

/// The half-open range to read from a blob of `size` bytes, or `None` when unsatisfiable.
fn resolve(range: ByteRange, size: u64) -> Option<Range<u64>> {
    match range {
        ByteRange::From(first, last) if first >= size || last.is_some_and(|l| l < first) => None,
        ByteRange::From(first, last) => Some(first..last.map_or(size, |l| l.saturating_add(1).min(size))),
        ByteRange::Suffix(0) => None,
        ByteRange::Suffix(n) => Some(size.saturating_sub(n)..size),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9"), Some(ByteRange::From(0, Some(9))));
        assert_eq!(parse_range("bytes=5-"), Some(ByteRange::From(5, None)));
        assert_eq!(parse_range("bytes=-3"), Some(ByteRange::Suffix(3)));
        assert_eq!(resolve(parse_range("bytes=500-0").unwrap(), 2048), None);
        assert_eq!(parse_range("items=0-1"), None);
        assert_eq!(resolve(ByteRange::From(0, Some(9)), 5), Some(0..5));
        assert_eq!(resolve(ByteRange::From(5, None), 5), None);
        assert_eq!(resolve(ByteRange::Suffix(3), 10), Some(7..10));
        assert_eq!(resolve(ByteRange::Suffix(30), 10), Some(0..10));
    }
}

/// Property tests: no `Range` header panics; what resolves lies inside the blob.
#[cfg(test)]
mod props {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        #[test]
        fn any_range_resolves_inside_the_blob_or_not_at_all(value in ".{0,60}", size in 0u64..1 << 40) {
            if let Some(range) = parse_range(&value)
                && let Some(r) = resolve(range, size)
            {
                prop_assert!(r.start < r.end && r.end <= size, "{:?} of {} for {:?}", r, size, value);
            }
        }

        #[test]
        fn byte_ranges_round_trip(first in any::<u64>(), last in any::<u64>(), size in 1u64..1 << 40) {
            prop_assert_eq!(parse_range(&format!("bytes={first}-{last}")), Some(ByteRange::From(first, Some(last))));
            prop_assert_eq!(parse_range(&format!("bytes={first}-")), Some(ByteRange::From(first, None)));
            prop_assert_eq!(parse_range(&format!("bytes=-{last}")), Some(ByteRange::Suffix(last)));
            let r = resolve(ByteRange::From(first % size, None), size).unwrap();
            prop_assert_eq!(r, first % size..size);
        }
    }
}
