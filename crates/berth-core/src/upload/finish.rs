//! `PUT /v2/<name>/blobs/uploads/<id>?digest=<digest>` (end-6): takes an optional last chunk,
//! verifies the digest, stores the blob once under `blobs/`, links it and ends the session.
//!
//! Completion is a small state machine: the request's bytes are received first (a failure there
//! leaves the session as it was, for the client to resume); then the [`Finish`] strategy is
//! decided from what was received; then it runs; then the session ends, in one place, with
//! exactly what is still open (a multipart upload that was completed is not aborted).

use berth_storage::{Condition, StorageError};
use futures_util::StreamExt;

use super::session::Session;
use super::{created, digest_mismatch};
use crate::digest::{Digest, Hasher};
use crate::error::{ErrorKind, RegistryError, Result};
use crate::http::{Reply, RequestBody};
use crate::names::Name;
use crate::writer::PartWriter;
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
        let (session, _) = Session::load(&self.store, name, id).await?;
        let expected = super::chunk_length(req, session.offset)?;
        // Receive: a failure before the digest is checked leaves the session as it was.
        let (finish, size) = if session.offset == 0 {
            (Finish::Direct, None)
        } else {
            let (mut hasher, mut writer) = session.resume(&self.store, id, &self.buffers).await?;
            let received = self.receive(body, expected, &mut hasher, Some(&mut writer)).await?;
            (self.decide(&digest, hasher, writer).await?, Some(session.offset + received))
        };
        // Run: the outcome (whether the blob is an object this request created), and the
        // multipart upload left open, if any.
        let (stored, open) = match finish {
            Finish::Direct => match self.write_blob(name, &digest, body, expected).await {
                Err(e) if e.kind != ErrorKind::DigestInvalid => return Err(e),
                written => (written.map(|_| true), None),
            },
            Finish::Reject(writer) => (Err(digest_mismatch(&digest)), Some(writer.progress().clone())),
            Finish::Put { writer, verified } => (self.put_whole(&digest, verified, writer).await, None),
            Finish::Drop(writer) => (Ok(false), Some(writer.progress().clone())),
            Finish::Assemble { writer, verified } => {
                let progress = writer.progress().clone();
                match writer.finish(Condition::Overwrite).await {
                    Ok(()) => (self.assemble(id, &digest, verified).await.map(|()| false), None),
                    Err(e) => (Err(e.into()), Some(progress)),
                }
            }
        };
        let linked = match (stored, size) {
            // The blob is claimed against garbage collection (see `gc`): always when this
            // request did not create it (stored before, or overwritten), else under a short grace.
            (Ok(created), Some(size)) => match self.link_blob(name, &digest, size).await {
                Ok(()) => self.claim_blob(name, &digest, created).await,
                other => other,
            },
            (other, _) => other.map(drop),
        };
        // End: the one place a finished session ends.
        session.end(&self.store, id, open.as_ref()).await;
        linked.map(|()| created(name, &digest))
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
        let (_, bytes) = writer.suspend().await?;
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
