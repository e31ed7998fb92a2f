//! Upload endpoints (OCI Distribution Spec, "Pushing blobs"): `POST` (end-4a/4b/11),
//! `PATCH` (end-5), `PUT` (end-6), `GET` (end-13) and `DELETE` on `/v2/<name>/blobs/uploads/…`.
//!
//! Sessions are stateless for the server: `uploads/<id>/state` holds the offset, the running
//! hash state, the multipart upload id with every part's ETag, and the key of the bytes not yet
//! in a part. Each PATCH reads the state, streams its body through the hash into parts, and
//! writes the state back with `IfMatch`, so of two racing PATCHes one wins and the other fails
//! without touching what the winner recorded. The final `PUT` verifies the digest from the
//! saved hash state (no re-read of the data) and only then makes the bytes visible under
//! `blobs/`, with `CreateOnly`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use berth_storage::{Condition, StorageError};
use bytes::Bytes;
use futures_util::StreamExt;
use http::StatusCode;
use http::header::{CONTENT_RANGE, LOCATION, RANGE};
use serde::{Deserialize, Serialize};

use crate::auth::Action;
use crate::digest::{Algorithm, Digest, Hasher};
use crate::error::{ErrorKind, RegistryError, Result};
use crate::http::{Reply, RequestBody, content_length, header, headers};
use crate::names::Name;
use crate::writer::{self, Multipart, PartWriter};
use crate::{Registry, Req, keys};

/// The state of an upload session, as stored in `uploads/<id>/state`.
#[derive(Debug, Serialize, Deserialize)]
struct Session {
    /// Repository the session belongs to.
    name: String,
    /// Bytes received so far.
    offset: u64,
    /// Saved SHA-256 state of those bytes ([`Hasher::save`]).
    hash: String,
    /// Parts sent to `uploads/<id>/data`.
    #[serde(flatten)]
    multipart: Multipart,
    /// Key of the received bytes that are not in a part yet, when they are too many to inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pending: Option<String>,
    /// The received bytes not in a part yet (base64), when at most [`INLINE_MAX`]: saves a
    /// storage write per PATCH and a read per PUT for the small layers most images have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    inline: Option<String>,
}

/// Largest tail of bytes kept inside the session state rather than in an object of its own.
const INLINE_MAX: usize = 2 * 1024 * 1024;

/// The algorithm sessions hash with while receiving; other digests are verified by reading back.
const SESSION_ALGORITHM: Algorithm = Algorithm::Sha256;

fn upload_url(name: &Name, id: &str) -> String {
    format!("/v2/{name}/blobs/uploads/{id}")
}

/// The `Range` header value for `offset` received bytes (`0-0` before the first byte).
fn progress(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

fn unknown(id: &str) -> RegistryError {
    RegistryError::new(ErrorKind::BlobUploadUnknown, format!("upload {id:?} is unknown, finished or cancelled"))
}

fn created(name: &Name, digest: &Digest) -> Reply {
    Reply::new(StatusCode::CREATED)
        .header(LOCATION, format!("/v2/{name}/blobs/{digest}"))
        .header(headers::CONTENT_DIGEST, digest.to_string())
}

/// Parses `Content-Range` of a chunk: `<start>-<end>` (also `bytes <start>-<end>[/<total>]`).
fn parse_content_range(value: &str) -> Option<(u64, u64)> {
    let v = value.trim();
    let v = v.strip_prefix("bytes").map(|s| s.trim_start_matches([' ', '='])).unwrap_or(v);
    let v = v.split('/').next()?;
    let (start, end) = v.split_once('-')?;
    Some((start.trim().parse().ok()?, end.trim().parse().ok()?))
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
        let id = uuid::Uuid::new_v4().to_string();
        let session = Session {
            name: name.to_string(),
            offset: 0,
            hash: Hasher::new(SESSION_ALGORITHM).save(),
            multipart: Multipart::default(),
            pending: None,
            inline: None,
        };
        self.store.put(&keys::upload_state(&id), state_bytes(&session)?, Condition::CreateOnly).await?;
        let mut reply = Reply::new(StatusCode::ACCEPTED)
            .header(LOCATION, upload_url(name, &id))
            .header(RANGE, progress(0))
            .header(headers::UPLOAD_UUID, &id);
        if let Some(max) = self.config.max_body {
            reply = reply.header(headers::OCI_CHUNK_MIN_LENGTH, berth_storage::MIN_PART_SIZE.min(max).to_string());
        }
        Ok(reply)
    }

    /// Links a blob of repository `from` into `name`; `None` (fall back to a session) when the
    /// parameters are unusable, the caller may not pull `from`, or `from` does not have the blob.
    async fn try_mount(&self, name: &Name, mount: &str, req: &Req) -> Result<Option<Reply>> {
        let (Ok(digest), Some(Ok(from))) = (mount.parse::<Digest>(), req.query.get("from").map(Name::parse)) else {
            return Ok(None);
        };
        if !req.caller.may(self.auth.as_deref(), &from, Action::Pull) {
            return Ok(None);
        }
        match self.linked_size(&from, &digest).await {
            Ok(size) => {
                self.link_blob(name, &digest, size).await?;
                Ok(Some(created(name, &digest)))
            }
            Err(e) if e.kind == ErrorKind::BlobUnknown => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Receives a blob whose digest is known before its bytes: hashes while streaming straight
    /// to `blobs/<alg>/<hex>` (nothing visible until verified), or only hashes when the blob is
    /// stored already; then links it. Returns the size.
    async fn write_blob(
        &self,
        name: &Name,
        digest: &Digest,
        body: &mut RequestBody,
        expected: Option<u64>,
    ) -> Result<u64> {
        let key = keys::blob(digest);
        let exists = match self.store.head(&key).await {
            Ok(_) => true,
            Err(e) if e.is_not_found() => false,
            Err(e) => return Err(e.into()),
        };
        let mut writer = (!exists).then(|| {
            PartWriter::new(self.store.clone(), key, self.config.part_size, Multipart::default(), Bytes::new())
        });
        let mut hasher = Hasher::new(digest.algorithm());
        let received = match self.receive(body, expected, &mut hasher, writer.as_mut()).await {
            Ok(n) => n,
            Err(e) => return Err(abandon(writer, e).await),
        };
        if hasher.finish() != *digest {
            return Err(abandon(writer, digest_mismatch(digest)).await);
        }
        if let Some(w) = writer {
            match w.finish(Condition::CreateOnly).await {
                Ok(()) | Err(StorageError::PreconditionFailed(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.link_blob(name, digest, received).await?;
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
                        "request body exceeds this registry's limit of {max} bytes per request; \
                         upload the blob in chunks: POST, then PATCH with Content-Range chunks of at most {max} bytes, then PUT"
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

    async fn load(&self, name: &Name, id: &str) -> Result<(Session, String)> {
        let valid_id = !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !valid_id {
            return Err(unknown(id));
        }
        let object = match self.store.get(&keys::upload_state(id), None).await {
            Err(e) if e.is_not_found() => return Err(unknown(id)),
            other => other?,
        };
        let etag = object.meta.etag.clone();
        let session: Session = serde_json::from_slice(&object.bytes().await?)
            .map_err(|e| RegistryError::from(StorageError::Invalid(format!("corrupt upload state {id}: {e}"))))?;
        if session.name != name.as_str() {
            return Err(unknown(id));
        }
        Ok((session, etag))
    }

    /// Restores a session's hash and part writer, with its pending bytes read back.
    async fn resume(&self, id: &str, session: &Session) -> Result<(Hasher, PartWriter)> {
        let hasher = Hasher::restore(&session.hash)
            .ok_or_else(|| RegistryError::from(StorageError::Invalid(format!("corrupt hash state in upload {id}"))))?;
        let pending = match (&session.pending, &session.inline) {
            (Some(key), _) => self.store.get(key, None).await?.bytes().await?,
            (None, Some(inline)) => BASE64.decode(inline).map(Bytes::from).map_err(|e| {
                RegistryError::from(StorageError::Invalid(format!("corrupt inline bytes in upload {id}: {e}")))
            })?,
            (None, None) => Bytes::new(),
        };
        let writer = PartWriter::new(
            self.store.clone(),
            keys::upload_data(id),
            self.config.part_size,
            session.multipart.clone(),
            pending,
        );
        Ok((hasher, writer))
    }

    /// Checks a chunk's `Content-Range` against the session; returns the chunk's declared length.
    fn chunk_length(req: &Req, session: &Session) -> Result<Option<u64>> {
        let length = content_length(&req.headers)?;
        let Some(value) = header(&req.headers, &CONTENT_RANGE) else {
            return Ok(length);
        };
        let out_of_order = |why: String| {
            RegistryError::new(ErrorKind::BlobUploadOutOfOrder, why).with_header(RANGE, progress(session.offset))
        };
        let (start, end) = parse_content_range(value)
            .ok_or_else(|| out_of_order(format!("malformed Content-Range {value:?}; expected <start>-<end>")))?;
        let chunk = end.checked_sub(start).and_then(|n| n.checked_add(1)).filter(|_| start == session.offset);
        let Some(chunk) = chunk else {
            return Err(out_of_order(format!(
                "chunk {start}-{end} does not continue the upload, which has {} bytes",
                session.offset
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

    /// `PATCH /v2/<name>/blobs/uploads/<id>`: appends a chunk (with `Content-Range`) or a
    /// stream (without) and answers 202 with the new `Range`.
    pub(crate) async fn patch_upload(&self, name: &Name, id: &str, req: &Req, body: &mut RequestBody) -> Result<Reply> {
        let (mut session, etag) = self.load(name, id).await?;
        let expected = Self::chunk_length(req, &session)?;
        let (mut hasher, mut writer) = self.resume(id, &session).await?;
        let received = self.receive(body, expected, &mut hasher, Some(&mut writer)).await?;
        if received > 0 {
            let (multipart, rest) = writer.suspend().await?;
            let old_pending = session.pending.take();
            session.inline = None;
            if rest.len() > INLINE_MAX {
                let key = keys::upload_pending(id);
                self.store.put(&key, rest, Condition::Overwrite).await?;
                session.pending = Some(key);
            } else if !rest.is_empty() {
                session.inline = Some(BASE64.encode(&rest));
            }
            session.offset += received;
            session.hash = hasher.save();
            session.multipart = multipart;
            match self.store.put(&keys::upload_state(id), state_bytes(&session)?, Condition::IfMatch(etag)).await {
                Ok(_) => {}
                Err(StorageError::PreconditionFailed(_)) => {
                    return Err(RegistryError::new(
                        ErrorKind::BlobUploadOutOfOrder,
                        "the upload was changed by a concurrent request; GET the upload for its progress and resume",
                    ));
                }
                Err(StorageError::NotFound(_)) => return Err(unknown(id)),
                Err(e) => return Err(e.into()),
            }
            if let Some(old) = old_pending {
                self.cleanup(&old).await;
            }
        }
        Ok(Reply::new(StatusCode::ACCEPTED)
            .header(LOCATION, upload_url(name, id))
            .header(RANGE, progress(session.offset))
            .header(headers::UPLOAD_UUID, id))
    }

    /// `PUT /v2/<name>/blobs/uploads/<id>?digest=<digest>`: takes an optional last chunk,
    /// verifies the digest, stores the blob once under `blobs/`, links it and ends the session.
    pub(crate) async fn finish_upload(
        &self,
        name: &Name,
        id: &str,
        req: &Req,
        body: &mut RequestBody,
    ) -> Result<Reply> {
        let digest: Digest = req
            .query
            .get("digest")
            .ok_or_else(|| {
                RegistryError::new(
                    ErrorKind::DigestInvalid,
                    "the digest query parameter is required to finish an upload",
                )
            })?
            .parse()?;
        let (session, _) = self.load(name, id).await?;
        let expected = Self::chunk_length(req, &session)?;
        if session.offset == 0 {
            // The whole blob is in this request and its digest is known: stream it straight to
            // its final key, hashed with the digest's own algorithm; no copy afterwards.
            return match self.write_blob(name, &digest, body, expected).await {
                Err(e) if e.kind != ErrorKind::DigestInvalid => Err(e),
                written => {
                    self.end_session(id, &session, None).await;
                    written.map(|_| created(name, &digest))
                }
            };
        }
        let (mut hasher, mut writer) = self.resume(id, &session).await?;
        let received = self.receive(body, expected, &mut hasher, Some(&mut writer)).await?;
        let size = session.offset + received;
        let verified = digest.algorithm() == hasher.algorithm();
        if verified && hasher.finish() != digest {
            self.end_session(id, &session, Some(writer)).await;
            return Err(digest_mismatch(&digest));
        }
        // A large blob that exists already needs neither completing nor copying; a small one is
        // written with CreateOnly, which refuses a duplicate at the cost of one request.
        let exists = verified && writer.is_multipart() && self.store.head(&keys::blob(&digest)).await.is_ok();
        let stored = if exists {
            writer.abort().await.map_err(RegistryError::from)
        } else {
            self.store_session_bytes(id, &digest, verified, writer).await
        };
        if let Err(e) = stored {
            self.end_session(id, &session, None).await;
            return Err(e);
        }
        self.link_blob(name, &digest, size).await?;
        self.end_session(id, &session, None).await;
        Ok(created(name, &digest))
    }

    /// Makes a session's bytes the blob `digest`; when the session hashed with another
    /// algorithm (`verified` false), reads the bytes back to verify them first.
    async fn store_session_bytes(&self, id: &str, digest: &Digest, verified: bool, writer: PartWriter) -> Result<()> {
        let blob = keys::blob(digest);
        let created_ok = |r: berth_storage::Result<_>| match r {
            Ok(_) | Err(StorageError::PreconditionFailed(_)) => Ok(()),
            Err(e) => Err(RegistryError::from(e)),
        };
        if !writer.is_multipart() {
            let (_, bytes) = writer.suspend().await?;
            if !verified && Digest::of(digest.algorithm(), &bytes) != *digest {
                return Err(digest_mismatch(digest));
            }
            return created_ok(self.store.put(&blob, bytes, Condition::CreateOnly).await);
        }
        let data = keys::upload_data(id);
        writer.finish(Condition::Overwrite).await?;
        if !verified {
            let mut hasher = Hasher::new(digest.algorithm());
            let mut stream = self.store.get(&data, None).await?.body;
            while let Some(chunk) = stream.next().await {
                hasher.update(&chunk?);
            }
            if hasher.finish() != *digest {
                self.cleanup(&data).await;
                return Err(digest_mismatch(digest));
            }
        }
        // The blob was absent when checked; should a racing upload of the same digest store it
        // meanwhile, both wrote verified bytes of that digest, so overwriting is harmless and
        // spares the slower conditional copy.
        let copied = created_ok(self.store.copy(&data, &blob, Condition::Overwrite).await);
        self.cleanup(&data).await;
        copied
    }

    /// `GET /v2/<name>/blobs/uploads/<id>`: 204 with the session's `Range`.
    pub(crate) async fn upload_status(&self, name: &Name, id: &str) -> Result<Reply> {
        let (session, _) = self.load(name, id).await?;
        Ok(Reply::new(StatusCode::NO_CONTENT)
            .header(LOCATION, upload_url(name, id))
            .header(RANGE, progress(session.offset))
            .header(headers::UPLOAD_UUID, id))
    }

    /// `DELETE /v2/<name>/blobs/uploads/<id>`: cancels the session (204).
    pub(crate) async fn cancel_upload(&self, name: &Name, id: &str) -> Result<Reply> {
        let (session, _) = self.load(name, id).await?;
        self.end_session(id, &session, None).await;
        Ok(Reply::new(StatusCode::NO_CONTENT))
    }

    /// Removes a session's state, pending bytes and multipart upload. Failures only leave
    /// garbage under `uploads/` (which the bucket's lifecycle expires), so they are logged.
    async fn end_session(&self, id: &str, session: &Session, writer: Option<PartWriter>) {
        let aborted = match writer {
            Some(w) => w.abort().await,
            None => writer::abort(self.store(), &keys::upload_data(id), &session.multipart).await,
        };
        if let Err(e) = aborted {
            tracing::warn!(upload = id, error = %e, "could not abort multipart upload");
        }
        if let Some(pending) = &session.pending {
            self.cleanup(pending).await;
        }
        self.cleanup(&keys::upload_state(id)).await;
    }

    async fn cleanup(&self, key: &str) {
        if let Err(e) = self.store.delete(key).await {
            tracing::warn!(key, error = %e, "could not delete");
        }
    }
}

fn state_bytes(session: &Session) -> Result<Bytes> {
    serde_json::to_vec(session).map(Bytes::from).map_err(|e| StorageError::backend(e).into())
}

fn digest_mismatch(digest: &Digest) -> RegistryError {
    RegistryError::new(ErrorKind::DigestInvalid, format!("the uploaded content does not match digest {digest}"))
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
