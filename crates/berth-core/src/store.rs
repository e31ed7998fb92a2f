//! The engine's view of storage: every read that may find nothing answers `Option`, and every
//! conditional write says whether it happened, so "missing" and "lost a race" are typed choices
//! the handlers must make (a forgotten case does not compile) instead of storage errors that
//! would reach the client as 500s. What is left as an error is a real storage failure.

use std::ops::Range;
use std::sync::Arc;

use berth_storage::{Condition, GetObject, ListPage, ObjectMeta, Storage, StorageError};
use bytes::Bytes;

use crate::error::Result;

/// Storage as the handlers use it.
#[derive(Clone)]
pub(crate) struct Store(Arc<dyn Storage>);

/// What a write conditioned on the current version (`IfMatch`) did.
pub(crate) enum Replaced {
    /// It replaced the version read.
    Done,
    /// Another writer changed the object since it was read.
    Changed,
    /// The object is gone.
    Gone,
}

impl Store {
    pub(crate) fn new(inner: Arc<dyn Storage>) -> Self {
        Self(inner)
    }

    /// The backend itself, for multipart writers.
    pub(crate) fn backend(&self) -> &Arc<dyn Storage> {
        &self.0
    }

    /// Metadata of `key`, if it exists.
    pub(crate) async fn head_opt(&self, key: &str) -> Result<Option<ObjectMeta>> {
        missing_is_none(self.0.head(key).await)
    }

    /// Whether `key` exists.
    pub(crate) async fn exists(&self, key: &str) -> Result<bool> {
        Ok(self.head_opt(key).await?.is_some())
    }

    /// A stream of `key` (or of `range` of it), if it exists.
    pub(crate) async fn get_opt(&self, key: &str, range: Option<Range<u64>>) -> Result<Option<GetObject>> {
        missing_is_none(self.0.get(key, range).await)
    }

    /// The whole of a small object (state, links, manifests), if it exists.
    pub(crate) async fn read_opt(&self, key: &str) -> Result<Option<Bytes>> {
        match self.get_opt(key, None).await? {
            Some(object) => Ok(Some(object.bytes().await?)),
            None => Ok(None),
        }
    }

    /// Writes `key`, replacing what is there.
    pub(crate) async fn put(&self, key: &str, body: Bytes) -> Result<ObjectMeta> {
        Ok(self.0.put(key, body, Condition::Overwrite).await?)
    }

    /// Writes `key` unless it exists; `false` when it did (then nothing was written).
    pub(crate) async fn create(&self, key: &str, body: Bytes) -> Result<bool> {
        match self.0.put(key, body, Condition::CreateOnly).await {
            Ok(_) => Ok(true),
            Err(StorageError::PreconditionFailed(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes `key` if it is still the version `etag`.
    pub(crate) async fn replace(&self, key: &str, body: Bytes, etag: String) -> Result<Replaced> {
        match self.0.put(key, body, Condition::IfMatch(etag)).await {
            Ok(_) => Ok(Replaced::Done),
            Err(StorageError::PreconditionFailed(_)) => Ok(Replaced::Changed),
            Err(StorageError::NotFound(_)) => Ok(Replaced::Gone),
            Err(e) => Err(e.into()),
        }
    }

    /// Copies `src` over `dst`.
    pub(crate) async fn copy(&self, src: &str, dst: &str) -> Result<()> {
        self.0.copy(src, dst, Condition::Overwrite).await?;
        Ok(())
    }

    /// Deletes `key` (a missing key is no error).
    pub(crate) async fn delete(&self, key: &str) -> Result<()> {
        Ok(self.0.delete(key).await?)
    }

    /// Deletes `key`, logging rather than failing: for leftovers that only cost space (the
    /// bucket's lifecycle rules expire what stays under `uploads/`).
    pub(crate) async fn cleanup(&self, key: &str) {
        if let Err(e) = self.0.delete(key).await {
            tracing::warn!(key, error = %e, "could not delete");
        }
    }

    /// One page of keys under `prefix` after `start_after`.
    pub(crate) async fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> Result<ListPage> {
        Ok(self.0.list(prefix, start_after, limit).await?)
    }

    /// A URL clients may fetch `key` from directly, when the backend has one.
    pub(crate) async fn presign_get(&self, key: &str, ttl: std::time::Duration) -> Result<Option<String>> {
        Ok(self.0.presign_get(key, ttl).await?)
    }
}

fn missing_is_none<T>(result: berth_storage::Result<T>) -> Result<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(StorageError::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}
