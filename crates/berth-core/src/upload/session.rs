//! A stored upload session's state and its life: created (`CreateOnly`) by the first `PATCH` a
//! sealed session cannot take ([`super::sealed`]), rewritten by each later `PATCH` with `IfMatch`
//! (of two racing requests one wins, the other fails without touching what the winner
//! recorded), ended by the final `PUT` or a `DELETE`, which leave the state `ended` (so that the
//! session's first, sealed URL does not take it for a fresh one; garbage collection removes it
//! once idle).
//!
//! The state (`uploads/<id>/state`, JSON) holds the repository, the bytes received, the saved
//! hash state of those bytes, the multipart upload with every part's ETag, and the tail: the
//! received bytes not yet in a part.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use berth_storage::StorageError;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::buffers::Buffers;
use crate::digest::{Algorithm, Hasher};
use crate::error::{ErrorKind, RegistryError, Result};
use crate::keys;
use crate::names::Name;
use crate::store::{Replaced, Store};
use crate::writer::{self, Multipart, PartWriter};

/// Largest tail kept inside the state rather than in an object of its own.
const INLINE_MAX: usize = 2 * 1024 * 1024;

/// The algorithm sessions hash with while receiving; other digests are verified by reading back.
pub(super) const SESSION_ALGORITHM: Algorithm = Algorithm::Sha256;

/// The state of an upload session.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Session {
    /// Repository the session belongs to.
    pub(super) name: String,
    /// Bytes received so far.
    pub(super) offset: u64,
    /// Saved hash state of those bytes ([`Hasher::save`]).
    pub(super) hash: String,
    /// Parts sent to `uploads/<id>/data`.
    #[serde(flatten)]
    pub(crate) multipart: Multipart,
    /// The received bytes not in a part yet.
    #[serde(flatten)]
    pub(super) tail: Tail,
    /// The session was finished or cancelled.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    ended: bool,
}

/// The received bytes of a session that are not in a part yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "TailFields", into = "TailFields")]
pub(super) enum Tail {
    /// None.
    Empty,
    /// At most [`INLINE_MAX`] bytes, inside the state: saves a storage write per PATCH and a read
    /// per PUT for the small layers most images have.
    Inline(Bytes),
    /// More, in the object under this key (unique per write, so racing writers never overwrite
    /// each other's bytes).
    Stored(String),
}

/// How a [`Tail`] is written in the state (the fields of earlier versions, so sessions survive
/// an upgrade).
#[derive(Serialize, Deserialize)]
struct TailFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pending: Option<String>,
    /// Base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    inline: Option<String>,
}

impl TryFrom<TailFields> for Tail {
    type Error = String;
    fn try_from(fields: TailFields) -> Result<Self, String> {
        match (fields.pending, fields.inline) {
            (Some(key), _) => Ok(Tail::Stored(key)),
            (None, Some(inline)) => BASE64
                .decode(inline)
                .map(|b| Tail::Inline(b.into()))
                .map_err(|e| format!("inline bytes are not base64: {e}")),
            (None, None) => Ok(Tail::Empty),
        }
    }
}

impl From<Tail> for TailFields {
    fn from(tail: Tail) -> Self {
        match tail {
            Tail::Empty => TailFields { pending: None, inline: None },
            Tail::Inline(bytes) => TailFields { pending: None, inline: Some(BASE64.encode(bytes)) },
            Tail::Stored(key) => TailFields { pending: Some(key), inline: None },
        }
    }
}

/// BLOB_UPLOAD_UNKNOWN for session `id`.
pub(super) fn unknown(id: &str) -> RegistryError {
    RegistryError::new(ErrorKind::BlobUploadUnknown, format!("upload {id:?} is unknown, finished or cancelled"))
}

fn corrupt(id: &str, what: impl std::fmt::Display) -> RegistryError {
    StorageError::Invalid(format!("upload {id}: {what}")).into()
}

impl Session {
    /// A session of repository `name` that has received `offset` bytes, hashed into `hasher`,
    /// all of them still in `tail`.
    pub(super) fn new(name: &Name, offset: u64, hasher: &Hasher, tail: Bytes) -> Self {
        Session {
            name: name.to_string(),
            offset,
            hash: hasher.save(),
            multipart: Multipart::default(),
            tail: if tail.is_empty() { Tail::Empty } else { Tail::Inline(tail) },
            ended: false,
        }
    }

    /// A session of repository `name` that has received nothing.
    pub(super) fn fresh(name: &Name) -> Self {
        Self::new(name, 0, &Hasher::new(SESSION_ALGORITHM), Bytes::new())
    }

    /// Session `id` of repository `name`, and the version of its state.
    pub(super) async fn load(store: &Store, name: &Name, id: &str) -> Result<(Self, String)> {
        Self::load_opt(store, name, id).await?.ok_or_else(|| unknown(id))
    }

    /// Session `id` of repository `name` and the version of its state; `None` if it has none
    /// (a sealed session).
    pub(super) async fn load_opt(store: &Store, name: &Name, id: &str) -> Result<Option<(Self, String)>> {
        let Some((session, etag)) = Self::load_any(store, id).await? else { return Ok(None) };
        if session.name != name.as_str() || session.ended {
            return Err(unknown(id));
        }
        Ok(Some((session, etag)))
    }

    /// Session `id`, of whichever repository, ended or not, and the version of its state.
    pub(crate) async fn load_any(store: &Store, id: &str) -> Result<Option<(Self, String)>> {
        let valid_id = !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !valid_id {
            return Err(unknown(id));
        }
        let Some(object) = store.get_opt(&keys::upload_state(id), None).await? else { return Ok(None) };
        let etag = object.meta.etag.clone();
        let session: Session = serde_json::from_slice(&object.bytes().await?).map_err(|e| corrupt(id, e))?;
        Ok(Some((session, etag)))
    }

    /// Writes the session back if its state is still version `etag`, or creates it (`None`)
    /// if it has none yet.
    pub(super) async fn save(&self, store: &Store, id: &str, etag: Option<String>) -> Result<()> {
        let changed = || {
            RegistryError::new(
                ErrorKind::BlobUploadOutOfOrder,
                "the upload was changed by a concurrent request; GET the upload for its progress and resume",
            )
        };
        let Some(etag) = etag else {
            return match store.create(&keys::upload_state(id), self.bytes()?).await? {
                true => Ok(()),
                false => Err(changed()),
            };
        };
        match store.replace(&keys::upload_state(id), self.bytes()?, etag).await? {
            Replaced::Done => Ok(()),
            Replaced::Changed => Err(changed()),
            Replaced::Gone => Err(unknown(id)),
        }
    }

    fn bytes(&self) -> Result<Bytes> {
        serde_json::to_vec(self).map(Bytes::from).map_err(|e| StorageError::backend(e).into())
    }

    /// The session's hash and part writer, with the tail read back, to receive more bytes.
    pub(super) async fn resume(&self, store: &Store, id: &str, buffers: &Buffers) -> Result<(Hasher, PartWriter)> {
        let hasher = Hasher::restore(&self.hash).ok_or_else(|| corrupt(id, "corrupt hash state"))?;
        let tail = match &self.tail {
            Tail::Empty => Bytes::new(),
            Tail::Inline(bytes) => bytes.clone(),
            Tail::Stored(key) => store.read_opt(key).await?.ok_or_else(|| corrupt(id, "its pending bytes are gone"))?,
        };
        let writer = PartWriter::new(
            store.backend().clone(),
            keys::upload_data(id),
            buffers.clone(),
            self.multipart.clone(),
            tail,
        );
        Ok((hasher, writer))
    }

    /// Records `received` more bytes: the hash state, the parts written and the new tail (kept
    /// inline when small, else written to an object of its own). Returns the key of a tail
    /// object that the new state no longer refers to, to delete once the state is saved.
    pub(super) async fn advance(
        &mut self,
        store: &Store,
        id: &str,
        received: u64,
        hasher: &Hasher,
        multipart: Multipart,
        tail: Bytes,
    ) -> Result<Option<String>> {
        let tail = if tail.len() > INLINE_MAX {
            let key = keys::upload_pending(id);
            store.put(&key, tail).await?;
            Tail::Stored(key)
        } else if tail.is_empty() {
            Tail::Empty
        } else {
            Tail::Inline(tail)
        };
        let old = std::mem::replace(&mut self.tail, tail);
        self.offset += received;
        self.hash = hasher.save();
        self.multipart = multipart;
        Ok(match old {
            Tail::Stored(key) => Some(key),
            _ => None,
        })
    }

    /// Ends the session: releases what it holds ([`Session::release`]) and leaves its state
    /// `ended`. The one place a client's session ends. Failures only leave garbage under
    /// `uploads/` (which garbage collection and the bucket's lifecycle remove), so they are logged.
    pub(super) async fn end(mut self, store: &Store, id: &str, open: Option<&Multipart>) {
        self.release(store, id, open).await;
        self.ended = true;
        self.offset = 0;
        self.hash = String::new();
        self.multipart = Multipart::default();
        self.tail = Tail::Empty;
        let ended = match self.bytes() {
            Ok(bytes) => store.put(&keys::upload_state(id), bytes).await.map(drop),
            Err(e) => Err(e),
        };
        if let Err(e) = ended {
            tracing::warn!(upload = id, error = %e, "could not record the end of an upload session");
        }
    }

    /// Aborts `open`, the multipart upload of the session's bytes if that is still open, and
    /// removes its stored tail; the state stays.
    pub(crate) async fn release(&self, store: &Store, id: &str, open: Option<&Multipart>) {
        if let Some(multipart) = open
            && let Err(e) = writer::abort(store.backend().as_ref(), &keys::upload_data(id), multipart).await
        {
            tracing::warn!(upload = id, error = %e, "could not abort multipart upload");
        }
        if let Tail::Stored(key) = &self.tail {
            store.cleanup(key).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_is_stored_as_earlier_versions_wrote_it() {
        for (tail, json) in [
            (Tail::Empty, r#"{"name":"a","offset":0,"hash":"h"}"#),
            (Tail::Inline(Bytes::from_static(b"hi")), r#"{"name":"a","offset":0,"hash":"h","inline":"aGk="}"#),
            (Tail::Stored("k".into()), r#"{"name":"a","offset":0,"hash":"h","pending":"k"}"#),
        ] {
            let session = Session {
                name: "a".into(),
                offset: 0,
                hash: "h".into(),
                multipart: Multipart::default(),
                tail,
                ended: false,
            };
            assert_eq!(serde_json::to_string(&session).unwrap(), json);
            let back: Session = serde_json::from_str(json).unwrap();
            assert_eq!(back.tail, session.tail);
        }
        assert!(serde_json::from_str::<Session>(r#"{"name":"a","offset":0,"hash":"h","inline":"!"}"#).is_err());
    }
}
