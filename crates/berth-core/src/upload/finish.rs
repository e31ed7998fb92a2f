//! `PUT /v2/<name>/blobs/uploads/<id>?digest=<digest>` (end-6): takes an optional last chunk,
//! verifies the digest, stores the blob once under `blobs/`, links it and ends the session.
//!
//! Through a sealed URL, without `Content-Range`: a session that holds the blob of that digest
//! and gets no more bytes is finished by the link alone; a fresh one takes the whole blob
//! straight to its key. Any other sealed session (a last chunk, a fresh URL closed with no
//! body) is finished as its stored session, or as one made from its URL (which has nothing
//! stored to end).
//!
//! Completion is a small state machine: the request's bytes are received first (a failure there
//! leaves the session as it was, for the client to resume); then the [`Finish`] strategy is
//! decided from what was received; then it runs; then the session ends, in one place, with
//! exactly what is still open (a multipart upload that was completed is not aborted).

use berth_storage::{Condition, StorageError};
use futures_util::StreamExt;
use http::header::{CONTENT_RANGE, TRANSFER_ENCODING};

use super::sealed::Held;
use super::session::Session;
use super::{Url, created, digest_mismatch};
use crate::digest::{Digest, Hasher};
use crate::error::{ErrorKind, RegistryError, Result};
use crate::http::{Reply, RequestBody, content_length, header};
use crate::names::Name;
use crate::writer::{Multipart, PartWriter};
use crate::{Registry, Req, keys};

/// How a session's bytes become the blob.
enum Finish {
    /// Nothing was received before this request: its body is the whole blob and streams
    /// straight to the blob's key, hashed with the digest's own algorithm (no copy afterwards).
    Direct,
    /// The content does not match the digest: nothing is stored.
    Reject(PartWriter),
    /// No part was uploaded: the bytes are in hand, and become the blob in one conditional write
    /// (verified first, unless `verified`: hashed with the digest's algorithm while received).
    Put { writer: PartWriter, verified: bool },
    /// Parts were uploaded, and the blob is stored already: the parts are dropped.
    Drop(PartWriter),
    /// Parts were uploaded: the multipart upload is completed, verified unless `verified`, and
    /// copied to the blob's key.
    Assemble { writer: PartWriter, verified: bool },
}

impl Registry {
    /// The `PUT` that ends an upload session.
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
        let sealed = match self.open_url(name, id).await? {
            Url::Stored(id) => {
                let (session, _) = Session::load(&self.store, name, &id).await?;
                let (linked, open) = self.finish_session(name, &id, &session, &digest, req, body).await?;
                session.end(&self.store, &id, open.as_ref()).await;
                return linked.map(|()| created(name, &digest));
            }
            Url::Sealed(sealed) => sealed,
        };
        // A chunk (`Content-Range`) may continue the session through a stale URL: it is stored.
        // So is an empty body through a fresh URL (unless the blob is empty): the client is
        // closing a session it sent chunks to through that URL.
        let length = content_length(&req.headers)?;
        let empty = length == Some(0) || (length.is_none() && !req.headers.contains_key(TRANSFER_ENCODING));
        if header(&req.headers, &CONTENT_RANGE).is_none() {
            match &sealed.held {
                None if !empty || digest == Digest::of(digest.algorithm(), b"") => {
                    self.write_blob(name, &digest, body, length).await?;
                    return Ok(created(name, &digest));
                }
                None => {}
                // The held bytes have that digest: any more would not.
                Some(held) if held.digest == digest && length.unwrap_or(0) == 0 => {
                    while let Some(chunk) = body.next().await {
                        if chunk.map_or(true, |c| !c.is_empty()) {
                            return Err(digest_mismatch(&digest));
                        }
                    }
                    self.link_held(name, held, sealed.offset).await?;
                    return Ok(created(name, &digest));
                }
                Some(_) => {}
            }
        }
        let (session, etag) = self.promote(name, &sealed).await?;
        let (linked, open) = self.finish_session(name, &sealed.id, &session, &digest, req, body).await?;
        match etag {
            Some(_) => session.end(&self.store, &sealed.id, open.as_ref()).await,
            None => session.release(&self.store, &sealed.id, open.as_ref()).await,
        }
        linked.map(|()| created(name, &digest))
    }

    /// Links the blob a sealed session holds: as its own while it is young (see `gc`), else
    /// claimed like any stored blob, once checked to be there still.
    async fn link_held(&self, name: &Name, held: &Held, size: u64) -> Result<()> {
        let own = held.own();
        if !own && !self.store.exists(&keys::blob(&held.digest)).await? {
            return Err(RegistryError::new(
                ErrorKind::BlobUploadUnknown,
                "the upload's bytes were removed by garbage collection meanwhile; upload the blob again",
            ));
        }
        self.link_blob(name, &held.digest, size).await?;
        self.claim_blob(name, &held.digest, own).await
    }

    /// Finishes session `id` from its state `session`: fails when receiving the request's bytes
    /// fails (the session stays as it was), else answers the outcome and the multipart upload
    /// left open, for the caller to end the session with.
    async fn finish_session(
        &self,
        name: &Name,
        id: &str,
        session: &Session,
        digest: &Digest,
        req: &Req,
        body: &mut RequestBody,
    ) -> Result<(Result<()>, Option<Multipart>)> {
        let expected = super::chunk_length(req, session.offset)?;
        // Receive: a failure before the digest is checked leaves the session as it was.
        let (finish, size) = if session.offset == 0 {
            (Finish::Direct, None)
        } else {
            let (mut hasher, mut writer) = session.resume(&self.store, id, &self.buffers).await?;
            let received = self.receive(body, expected, &mut hasher, Some(&mut writer)).await?;
            (self.decide(digest, hasher, writer).await?, Some(session.offset + received))
        };
        // Run: the outcome (whether the blob is an object this request created), and the
        // multipart upload left open, if any.
        let (stored, open) = match finish {
            Finish::Direct => match self.write_blob(name, digest, body, expected).await {
                Err(e) if e.kind != ErrorKind::DigestInvalid => return Err(e),
                written => (written.map(|_| true), None),
            },
            Finish::Reject(writer) => (Err(digest_mismatch(digest)), Some(writer.progress().clone())),
            Finish::Put { writer, verified } => (self.put_whole(digest, verified, writer).await, None),
            Finish::Drop(writer) => (Ok(false), Some(writer.progress().clone())),
            Finish::Assemble { writer, verified } => {
                let progress = writer.progress().clone();
                match writer.finish(Condition::Overwrite).await {
                    Ok(()) => (self.assemble(id, digest, verified).await.map(|()| false), None),
                    Err(e) => (Err(e.into()), Some(progress)),
                }
            }
        };
        let linked = match (stored, size) {
            // The blob is claimed against garbage collection (see `gc`): always when this
            // request did not create it (stored before, or overwritten), else under a short grace.
            (Ok(created), Some(size)) => match self.link_blob(name, digest, size).await {
                Ok(()) => self.claim_blob(name, digest, created).await,
                other => other,
            },
            (other, _) => other.map(drop),
        };
        Ok((linked, open))
    }

    /// Decides how to finish once every byte is in.
    async fn decide(&self, digest: &Digest, hasher: Hasher, writer: PartWriter) -> Result<Finish> {
        let verified = hasher.algorithm() == digest.algorithm();
        if verified && hasher.finish() != *digest {
            return Ok(Finish::Reject(writer));
        }
        if !writer.is_multipart() {
            return Ok(Finish::Put { writer, verified });
        }
        // A large blob that exists already needs neither completing nor copying.
        if verified && self.store.exists(&keys::blob(digest)).await? {
            return Ok(Finish::Drop(writer));
        }
        Ok(Finish::Assemble { writer, verified })
    }

    /// [`Finish::Put`]: the bytes in hand become the blob (verified first when they were hashed
    /// with another algorithm); a blob stored meanwhile by a racing upload is left as it is.
    /// Whether this request created the blob.
    async fn put_whole(&self, digest: &Digest, verified: bool, writer: PartWriter) -> Result<bool> {
        let bytes = writer.into_bytes();
        if !verified && Digest::of(digest.algorithm(), &bytes) != *digest {
            return Err(digest_mismatch(digest));
        }
        self.store.create(&keys::blob(digest), bytes).await
    }

    /// [`Finish::Assemble`], once the multipart upload is complete in `uploads/<id>/data`:
    /// reads it back to verify a digest of another algorithm, and copies it to the blob's key.
    async fn assemble(&self, id: &str, digest: &Digest, verified: bool) -> Result<()> {
        let data = keys::upload_data(id);
        let result = async {
            if !verified {
                let object = self.store.get_opt(&data, None).await?.ok_or_else(|| {
                    RegistryError::from(StorageError::Invalid(format!("upload {id}: the assembled data is gone")))
                })?;
                let mut hasher = Hasher::new(digest.algorithm());
                let mut stream = object.body;
                while let Some(chunk) = stream.next().await {
                    hasher.update(&chunk?);
                }
                if hasher.finish() != *digest {
                    return Err(digest_mismatch(digest));
                }
            }
            // The blob was absent when checked; should a racing upload of the same digest store
            // it meanwhile, both wrote verified bytes of that digest, so overwriting is harmless
            // and spares the slower conditional copy.
            self.store.copy(&data, &keys::blob(digest)).await
        }
        .await;
        self.store.cleanup(&data).await;
        result
    }
}
