//! Upload endpoints (OCI Distribution Spec, "Pushing blobs"): `POST` (end-4a/4b/11),
//! `PATCH` (end-5), `PUT` (end-6), `GET` (end-13) and `DELETE` on `/v2/<name>/blobs/uploads/…`.
//!
//! Sessions are stateless for the server. A session starts sealed ([`sealed`]): its URL carries
//! it, and a streamed `PATCH` of less than a part stores its bytes once, as the blob of their own
//! digest, for the final `PUT` to link. A session that needs more (chunks, bytes beyond a part)
//! is stored ([`session`]): each PATCH reads the state, streams its body through the hash into
//! parts, and writes the state back; the final `PUT` verifies the digest from the saved hash
//! state (no re-read of the data) and only then makes the bytes visible under `blobs/`, with
//! `CreateOnly` ([`finish`]). A blob whose digest is known before its bytes (`POST ?digest=`, a
//! `PUT` carrying the whole blob) streams straight to its key.
//!
//! Storage calls one after another per request (S3; `+1` on an instance's first upload, which
//! reads the upload secret), for a client that streams each blob in one `PATCH` (docker,
//! containerd, skopeo, podman):
//!
//! | request | blob of less than a part | larger blob |
//! |---|---|---|
//! | `POST` | none | none |
//! | `PATCH` (streamed) | 1: the blob, `CreateOnly` | create, parts (2 at once), state |
//! | `PUT ?digest=` | 1: link (+1 claim, see `gc`) | state; complete; copy; link, then data and state cleanup |
//! | `POST ?digest=`, or `PUT` with the whole body | blob `HEAD`, blob, link | `HEAD`, create, parts, complete, link |

mod finish;
mod sealed;
pub(crate) mod session;

use berth_storage::MIN_PART_SIZE;
use bytes::Bytes;
use futures_util::StreamExt;
use http::StatusCode;
use http::header::{CONTENT_RANGE, LOCATION, RANGE};

pub(crate) use self::sealed::Seal;
use self::sealed::{Held, Sealed};
use self::session::Session;
use crate::digest::{Digest, Hasher};
use crate::error::{ErrorKind, RegistryError, Result};
use crate::http::{Reply, RequestBody, content_length, header, headers};
use crate::names::Name;
use crate::writer::{Multipart, PartWriter};
use crate::{Registry, Req, keys};

/// How an upload URL names its session.
enum Url {
    /// Sealed: carried by the URL itself.
    Sealed(Sealed),
    /// Stored under this id.
    Stored(String),
}

/// The `Range` header value for `offset` received bytes (`0-0` before the first byte).
fn progress(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

/// The answer to a stored blob (201).
fn created(name: &Name, digest: &Digest) -> Reply {
    Reply::new(StatusCode::CREATED)
        .header(LOCATION, format!("/v2/{name}/blobs/{digest}"))
        .header(headers::CONTENT_DIGEST, digest.to_string())
}

/// The query parameter of an upload URL that carries its capability (as distribution's carries
/// its signed `_state`, which clients are known to keep).
pub(crate) const CAPABILITY: &str = "_state";

fn digest_mismatch(digest: &Digest) -> RegistryError {
    RegistryError::new(ErrorKind::DigestInvalid, format!("the uploaded content does not match digest {digest}"))
}

/// Parses `Content-Range` of a chunk: `<start>-<end>` (also `bytes <start>-<end>[/<total>]`).
fn parse_content_range(value: &str) -> Option<(u64, u64)> {
    let v = value.trim();
    let v = v.strip_prefix("bytes").map(|s| s.trim_start_matches([' ', '='])).unwrap_or(v);
    let v = v.split('/').next()?;
    let (start, end) = v.split_once('-')?;
    Some((start.trim().parse().ok()?, end.trim().parse().ok()?))
}

/// Checks a chunk's `Content-Range` against the session; returns the chunk's declared length.
fn chunk_length(req: &Req, offset: u64) -> Result<Option<u64>> {
    let length = content_length(&req.headers)?;
    let Some(value) = header(&req.headers, &CONTENT_RANGE) else {
        return Ok(length);
    };
    let out_of_order =
        |why: String| RegistryError::new(ErrorKind::BlobUploadOutOfOrder, why).with_header(RANGE, progress(offset));
    let (start, end) = parse_content_range(value)
        .ok_or_else(|| out_of_order(format!("malformed Content-Range {value:?}; expected <start>-<end>")))?;
    let chunk = end.checked_sub(start).and_then(|n| n.checked_add(1)).filter(|_| start == offset);
    let Some(chunk) = chunk else {
        return Err(out_of_order(format!(
            "chunk {start}-{end} does not continue the upload, which has {offset} bytes"
        )));
    };
    match length {
        Some(l) if l != chunk => Err(RegistryError::new(
            ErrorKind::SizeInvalid,
            format!("Content-Length {l} does not match Content-Range {value:?} ({chunk} bytes)"),
        )),
        _ => Ok(Some(chunk)),
    }
}

impl Registry {
    /// `POST /v2/<name>/blobs/uploads/`: mount (`?mount=&from=`, 201, else a new session),
    /// monolithic upload (`?digest=`, 201) or a new session (202).
    pub(crate) async fn start_upload(&self, name: &Name, req: &Req, body: &mut RequestBody) -> Result<Reply> {
        if let Some(mount) = req.query.get("mount") {
            if let Some(reply) = self.try_mount(name, mount, req).await? {
                return Ok(reply);
            }
        } else if let Some(digest) = req.query.get("digest") {
            let digest: Digest = digest.parse()?;
            let expected = content_length(&req.headers)?;
            self.write_blob(name, &digest, body, expected).await?;
            return Ok(created(name, &digest));
        }
        let fresh = Sealed { id: uuid::Uuid::new_v4().simple().to_string(), offset: 0, held: None };
        let url = self.seal().await?.seal(name, &fresh);
        let mut reply = self.in_progress(StatusCode::ACCEPTED, req, name, &url, 0);
        if let (Some(max), None) = (self.config.max_body, &self.config.upload_url) {
            reply = reply.header(headers::OCI_CHUNK_MIN_LENGTH, MIN_PART_SIZE.min(max).to_string());
        }
        Ok(reply)
    }

    /// The answer to a session in progress: its `Location`, `Range` and id. The `Location` is on
    /// the upload host when there is one, and carries a capability for the session (`_state`)
    /// when authentication is on and the next request may come without credentials: to an
    /// upload host, or from a client that came with a capability.
    fn in_progress(&self, status: StatusCode, req: &Req, name: &Name, id: &str, offset: u64) -> Reply {
        let base = self.config.upload_url.as_deref().unwrap_or_default();
        let mut location = format!("{base}/v2/{name}/blobs/uploads/{id}");
        if let Some(auth) = &self.auth
            && (self.config.upload_url.is_some() || req.query.get(CAPABILITY).is_some())
        {
            let capability = auth.upload_capability(name.as_str(), id, self.config.upload_ttl);
            location.push_str(&format!("?{CAPABILITY}={capability}"));
        }
        Reply::new(status).header(LOCATION, location).header(RANGE, progress(offset)).header(headers::UPLOAD_UUID, id)
    }

    /// Links a blob of repository `from` into `name`; `None` (fall back to a session) when the
    /// parameters are unusable, the caller may not pull `from`, or `from` does not have the blob.
    async fn try_mount(&self, name: &Name, mount: &str, req: &Req) -> Result<Option<Reply>> {
        let (Ok(digest), Some(Ok(from))) = (mount.parse::<Digest>(), req.query.get("from").map(Name::parse)) else {
            return Ok(None);
        };
        if !req.access.allows(&from, berth_auth::Action::Pull) {
            return Ok(None);
        }
        let Some(size) = self.link_size(&from, &digest).await? else { return Ok(None) };
        self.link_blob(name, &digest, size).await?;
        match self.claim_blob(name, &digest, false).await {
            Ok(()) => Ok(Some(created(name, &digest))),
            // Deleted by garbage collection meanwhile: the client sends the bytes instead.
            Err(e) if e.kind == ErrorKind::Unavailable => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Receives a blob whose digest is known before its bytes: hashes while streaming straight
    /// to `blobs/<alg>/<hex>` (nothing visible until verified), or only hashes when the blob is
    /// stored already; then links it (and claims a blob it did not write, see `gc`). Returns the
    /// size.
    async fn write_blob(
        &self,
        name: &Name,
        digest: &Digest,
        body: &mut RequestBody,
        expected: Option<u64>,
    ) -> Result<u64> {
        let key = keys::blob(digest);
        let exists = self.store.exists(&key).await?;
        let mut writer = (!exists).then(|| {
            PartWriter::new(self.store.backend().clone(), key, self.buffers.clone(), Multipart::default(), Bytes::new())
        });
        let mut hasher = Hasher::new(digest.algorithm());
        let received = match self.receive(body, expected, &mut hasher, writer.as_mut()).await {
            Ok(n) => n,
            Err(e) => return Err(abandon(writer, e).await),
        };
        if hasher.finish() != *digest {
            return Err(abandon(writer, digest_mismatch(digest)).await);
        }
        // Refused only when a racing upload stored the same verified bytes first.
        let wrote = match writer {
            Some(w) => w.create().await?,
            None => false,
        };
        self.link_blob(name, digest, received).await?;
        self.claim_blob(name, digest, wrote).await?;
        Ok(received)
    }

    /// Streams `body` through `hasher` into `writer`, enforcing the expected length and the
    /// deployment's body limit. Returns the number of bytes received.
    async fn receive(
        &self,
        body: &mut RequestBody,
        expected: Option<u64>,
        hasher: &mut Hasher,
        mut writer: Option<&mut PartWriter>,
    ) -> Result<u64> {
        let mut received = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| {
                RegistryError::new(ErrorKind::BlobUploadInvalid, format!("the request body could not be read: {e}"))
            })?;
            received += chunk.len() as u64;
            if let Some(max) = self.config.max_body.filter(|max| received > *max) {
                return Err(RegistryError::new(
                    ErrorKind::PayloadTooLarge,
                    format!(
                        "request body exceeds this registry's limit of {max} bytes per request; upload the blob in \
                         chunks (POST, then PATCH with Content-Range chunks of at most {max} bytes, then PUT), or have \
                         the registry's operator set BERTH_UPLOAD_URL to an upload host, which takes layers of any \
                         size from any client"
                    ),
                ));
            }
            if expected.is_some_and(|e| received > e) {
                break;
            }
            hasher.update(&chunk);
            if let Some(w) = writer.as_mut() {
                w.write(&chunk).await?;
            }
        }
        match expected {
            Some(e) if e != received => Err(RegistryError::new(
                ErrorKind::SizeInvalid,
                format!(
                    "the body has {}{received} bytes but {e} were declared",
                    if received > e { "more than " } else { "" }
                ),
            )),
            _ => Ok(received),
        }
    }

    /// The registry's upload secret, read or made on first use.
    async fn seal(&self) -> Result<&Seal> {
        self.seal.get_or_try_init(|| Seal::load(&self.store)).await
    }

    /// The session an upload URL's last segment names: sealed (checked, else unknown) or stored.
    async fn open_url(&self, name: &Name, id: &str) -> Result<Url> {
        if !sealed::is_sealed(id) {
            return Ok(Url::Stored(id.to_string()));
        }
        self.seal().await?.open(name, id).map(Url::Sealed).ok_or_else(|| session::unknown(id))
    }

    /// The stored session of sealed URL `sealed` — stored by a request through another of its
    /// URLs, or else made from the URL (reading its blob back) — and the version of its state
    /// (`None`: not stored yet).
    async fn promote(&self, name: &Name, sealed: &Sealed) -> Result<(Session, Option<String>)> {
        if let Some((session, etag)) = Session::load_opt(&self.store, name, &sealed.id).await? {
            return Ok((session, Some(etag)));
        }
        let mut hasher = Hasher::new(session::SESSION_ALGORITHM);
        let tail = match &sealed.held {
            None => Bytes::new(),
            Some(held) => {
                let bytes = self.store.read_opt(&keys::blob(&held.digest)).await?;
                // Removed by garbage collection: the session's bytes are gone.
                let bytes = bytes.ok_or_else(|| session::unknown(&sealed.id))?;
                hasher.update(&bytes);
                bytes
            }
        };
        Ok((Session::new(name, sealed.offset, &hasher, tail), None))
    }

    /// `PATCH /v2/<name>/blobs/uploads/<id>`: appends a chunk (with `Content-Range`) or a
    /// stream (without) and answers 202 with the new `Range`.
    pub(crate) async fn patch_upload(&self, name: &Name, id: &str, req: &Req, body: &mut RequestBody) -> Result<Reply> {
        // The session's id, the URL it was reached by, its state and the state's version.
        let (id, url, mut session, etag) = match self.open_url(name, id).await? {
            Url::Sealed(sealed) if sealed.held.is_none() && header(&req.headers, &CONTENT_RANGE).is_none() => {
                return self.patch_sealed(name, id, sealed, req, body).await;
            }
            Url::Sealed(sealed) => {
                let (session, etag) = self.promote(name, &sealed).await?;
                (sealed.id, id.to_string(), session, etag)
            }
            Url::Stored(id) => {
                let (session, etag) = Session::load(&self.store, name, &id).await?;
                (id.clone(), id, session, Some(etag))
            }
        };
        let expected = chunk_length(req, session.offset)?;
        let (mut hasher, mut writer) = session.resume(&self.store, &id, &self.buffers).await?;
        let received = self.receive(body, expected, &mut hasher, Some(&mut writer)).await?;
        if received == 0 {
            return Ok(self.in_progress(StatusCode::ACCEPTED, req, name, &url, session.offset));
        }
        let (multipart, tail) = writer.suspend().await?;
        let replaced = session.advance(&self.store, &id, received, &hasher, multipart, tail).await?;
        session.save(&self.store, &id, etag).await?;
        if let Some(old) = replaced {
            self.store.cleanup(&old).await;
        }
        Ok(self.in_progress(StatusCode::ACCEPTED, req, name, &id, session.offset))
    }

    /// A streamed `PATCH` of a fresh sealed session: bytes that fit in a part become the blob of
    /// their digest, named by the next sealed URL; more start a stored session.
    async fn patch_sealed(
        &self,
        name: &Name,
        url: &str,
        sealed: Sealed,
        req: &Req,
        body: &mut RequestBody,
    ) -> Result<Reply> {
        let expected = content_length(&req.headers)?;
        let key = keys::upload_data(&sealed.id);
        let mut writer = PartWriter::new(
            self.store.backend().clone(),
            key,
            self.buffers.clone(),
            Multipart::default(),
            Bytes::new(),
        );
        let mut hasher = Hasher::new(session::SESSION_ALGORITHM);
        let received = match self.receive(body, expected, &mut hasher, Some(&mut writer)).await {
            Ok(n) => n,
            Err(e) => return Err(abandon(Some(writer), e).await),
        };
        if received == 0 {
            return Ok(self.in_progress(StatusCode::ACCEPTED, req, name, url, 0));
        }
        if !writer.is_multipart() {
            let digest = hasher.finish();
            let created = self.store.create(&keys::blob(&digest), writer.into_bytes()).await?;
            let held = Held { digest, created, at: sealed::now() };
            let next = Sealed { id: sealed.id, offset: received, held: Some(held) };
            let url = self.seal().await?.seal(name, &next);
            return Ok(self.in_progress(StatusCode::ACCEPTED, req, name, &url, received));
        }
        let (multipart, tail) = writer.suspend().await?;
        let mut session = Session::fresh(name);
        let open = multipart.clone();
        let stored = async {
            session.advance(&self.store, &sealed.id, received, &hasher, multipart, tail).await?;
            session.save(&self.store, &sealed.id, None).await
        };
        if let Err(e) = stored.await {
            session.release(&self.store, &sealed.id, Some(&open)).await;
            return Err(e);
        }
        Ok(self.in_progress(StatusCode::ACCEPTED, req, name, &sealed.id, session.offset))
    }

    /// `GET /v2/<name>/blobs/uploads/<id>`: 204 with the session's `Range` (a sealed URL's own,
    /// unless the session was stored since through another of its URLs).
    pub(crate) async fn upload_status(&self, name: &Name, id: &str, req: &Req) -> Result<Reply> {
        let (id, offset) = match self.open_url(name, id).await? {
            Url::Sealed(sealed) => match Session::load_opt(&self.store, name, &sealed.id).await? {
                Some((session, _)) => (sealed.id, session.offset),
                None => (id.to_string(), sealed.offset),
            },
            Url::Stored(id) => {
                let (session, _) = Session::load(&self.store, name, &id).await?;
                (id, session.offset)
            }
        };
        Ok(self.in_progress(StatusCode::NO_CONTENT, req, name, &id, offset))
    }

    /// `DELETE /v2/<name>/blobs/uploads/<id>`: cancels the session (204). A sealed session's blob
    /// stays, unlinked, for garbage collection.
    pub(crate) async fn cancel_upload(&self, name: &Name, id: &str) -> Result<Reply> {
        let (id, session) = match self.open_url(name, id).await? {
            Url::Sealed(sealed) => {
                let stored = Session::load_opt(&self.store, name, &sealed.id).await?.map(|(s, _)| s);
                (sealed.id, stored.unwrap_or_else(|| Session::fresh(name)))
            }
            Url::Stored(id) => {
                let (session, _) = Session::load(&self.store, name, &id).await?;
                (id, session)
            }
        };
        let open = session.multipart.clone();
        session.end(&self.store, &id, Some(&open)).await;
        Ok(Reply::new(StatusCode::NO_CONTENT))
    }
}

/// Aborts a direct write after `err`, returning `err`.
async fn abandon(writer: Option<PartWriter>, err: RegistryError) -> RegistryError {
    if let Some(w) = writer
        && let Err(e) = w.abort().await
    {
        tracing::warn!(error = %e, "could not abort multipart upload");
    }
    err
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("0-99"), Some((0, 99)));
        assert_eq!(parse_content_range("bytes 100-199/1000"), Some((100, 199)));
        assert_eq!(parse_content_range("bytes=5-9"), Some((5, 9)));
        assert_eq!(parse_content_range("x"), None);
        assert_eq!(parse_content_range("-5"), None);
    }
}

/// Property tests: no `Content-Range` panics; both spellings of a range parse back.
#[cfg(test)]
mod props {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        #[test]
        fn any_content_range_parses_or_not(value in ".{0,80}") {
            let _ = parse_content_range(&value);
        }

        #[test]
        fn content_ranges_round_trip(start in any::<u64>(), end in any::<u64>(), total in any::<u64>()) {
            prop_assert_eq!(parse_content_range(&format!("{start}-{end}")), Some((start, end)));
            prop_assert_eq!(parse_content_range(&format!("bytes {start}-{end}/{total}")), Some((start, end)));
            prop_assert_eq!(parse_content_range(&format!("bytes {start}-{end}/*")), Some((start, end)));
        }
    }
}
