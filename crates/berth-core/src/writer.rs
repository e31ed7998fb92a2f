//! Cutting a byte stream into multipart parts with bounded memory.
//!
//! A [`PartWriter`] buffers at most one part (plus the chunk being added) and uploads a part
//! each time the buffer reaches the part size, so a body of any size costs a fixed amount of
//! memory. Every part's ETag is recorded; completion uses exactly those, never a listing, so a
//! part swapped after it was hashed makes completion fail instead of storing other bytes.

use berth_storage::{CompletedPart, Condition, MIN_PART_SIZE, Storage};
use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use berth_storage::Result;

/// A part uploaded so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// 1-based part number.
    pub number: u32,
    /// The ETag storage returned for it.
    pub etag: String,
    /// Its size in bytes.
    pub size: u64,
}

/// Multipart progress towards one key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Multipart {
    /// Upload id, once the first part was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_id: Option<String>,
    /// Parts sent, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<Part>,
}

/// Buffers bytes and uploads full parts to `key`.
pub struct PartWriter<'a> {
    store: &'a dyn Storage,
    key: String,
    part_size: usize,
    progress: Multipart,
    buf: BytesMut,
}

impl<'a> PartWriter<'a> {
    /// Continues `progress` towards `key`, with `pending` bytes not yet in a part.
    pub fn new(store: &'a dyn Storage, key: String, part_size: usize, progress: Multipart, pending: Bytes) -> Self {
        let part_size = part_size.max(MIN_PART_SIZE as usize);
        let mut buf = BytesMut::with_capacity(part_size.min(pending.len().max(64 * 1024)));
        buf.extend_from_slice(&pending);
        Self { store, key, part_size, progress, buf }
    }

    /// Adds bytes, uploading every full part.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<()> {
        self.buf.extend_from_slice(chunk);
        while self.buf.len() >= self.part_size {
            let part = self.buf.split_to(self.part_size).freeze();
            self.upload(part).await?;
        }
        Ok(())
    }

    async fn upload(&mut self, data: Bytes) -> Result<()> {
        let upload_id = match &self.progress.upload_id {
            Some(id) => id.clone(),
            None => {
                let id = self.store.create_multipart(&self.key).await?;
                self.progress.upload_id = Some(id.clone());
                id
            }
        };
        let number = self.progress.parts.len() as u32 + 1;
        let size = data.len() as u64;
        let etag = self.store.upload_part(&self.key, &upload_id, number, data).await?;
        self.progress.parts.push(Part { number, etag, size });
        Ok(())
    }

    /// True once a part was uploaded.
    pub fn is_multipart(&self) -> bool {
        self.progress.upload_id.is_some()
    }

    /// Stops writing: the progress so far and the bytes not yet in a part.
    pub fn suspend(self) -> (Multipart, Bytes) {
        (self.progress, self.buf.freeze())
    }

    /// Stores everything written at `key` under `cond`: one put when no part was sent, else the
    /// buffer as the last part and a completion with the recorded parts.
    pub async fn finish(mut self, cond: Condition) -> Result<()> {
        let Some(upload_id) = self.progress.upload_id.clone() else {
            self.store.put(&self.key, self.buf.freeze(), cond).await?;
            return Ok(());
        };
        if !self.buf.is_empty() {
            let last = std::mem::take(&mut self.buf).freeze();
            self.upload(last).await?;
        }
        let parts: Vec<CompletedPart> =
            self.progress.parts.iter().map(|p| CompletedPart { number: p.number, etag: p.etag.clone() }).collect();
        self.store.complete_multipart(&self.key, &upload_id, &parts, cond).await?;
        Ok(())
    }

    /// Abandons the multipart upload, if one was started.
    pub async fn abort(self) -> Result<()> {
        abort(self.store, &self.key, &self.progress).await
    }
}

/// Abandons the multipart upload of `progress`, if one was started.
pub async fn abort(store: &dyn Storage, key: &str, progress: &Multipart) -> Result<()> {
    if let Some(id) = &progress.upload_id {
        store.abort_multipart(key, id).await?;
    }
    Ok(())
}
