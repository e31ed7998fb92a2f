//! Cutting a byte stream into multipart parts with bounded memory.
//!
//! A [`PartWriter`] buffers at most one part (plus the chunk being added) and starts an upload
//! each time bytes come beyond a full buffer; up to [`IN_FLIGHT`] parts upload concurrently
//! while the next one is received, so a body of any size costs a fixed amount of memory
//! (`(IN_FLIGHT + 1) × part size`) and the request is not slowed to one part's round trip. Part
//! buffers come from [`Buffers`], within the registry's upload memory budget.
//! Every part's ETag is recorded; completion uses exactly those, never a listing, so a part
//! swapped after it was hashed makes completion fail instead of storing other bytes.

use std::collections::VecDeque;
use std::sync::Arc;

use berth_storage::{CompletedPart, Condition, Storage, StorageError};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::buffers::{Buffer, Buffers};

use berth_storage::Result;

/// A part uploaded so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Part {
    /// 1-based part number.
    pub(crate) number: u32,
    /// The ETag storage returned for it.
    pub(crate) etag: String,
    /// Its size in bytes.
    pub(crate) size: u64,
}

/// Multipart progress towards one key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Multipart {
    /// Upload id, once the first part was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) upload_id: Option<String>,
    /// Parts sent, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) parts: Vec<Part>,
}

/// Parts uploading at once per writer.
pub(crate) const IN_FLIGHT: usize = 2;

/// Buffers bytes and uploads full parts to `key`.
pub(crate) struct PartWriter {
    store: Arc<dyn Storage>,
    key: String,
    buffers: Buffers,
    progress: Multipart,
    /// Uploads started and not yet recorded in `progress`, oldest first.
    uploading: VecDeque<JoinHandle<Result<Part>>>,
    /// Where the next part starts in the object: the sizes of the parts so far.
    offset: u64,
    /// Bytes not yet in a part; a part-sized buffer (charged to the budget) once it outgrows a
    /// small one.
    buf: Buffer,
}

impl PartWriter {
    /// Continues `progress` towards `key`, with `pending` bytes not yet in a part.
    pub(crate) fn new(
        store: Arc<dyn Storage>,
        key: String,
        buffers: Buffers,
        progress: Multipart,
        pending: Bytes,
    ) -> Self {
        let mut buf = Vec::with_capacity(buffers.part_size().min(pending.len().max(64 * 1024)));
        buf.extend_from_slice(&pending);
        let offset = progress.parts.iter().map(|p| p.size).sum();
        Self { store, key, buffers, progress, uploading: VecDeque::new(), offset, buf: Buffer::small(buf) }
    }

    /// Adds bytes, uploading every full part. Full parts are pooled buffers of exactly the part
    /// size, handed to storage without a copy and reused once sent; taking one waits while the
    /// registry's upload memory is spent.
    pub(crate) async fn write(&mut self, mut chunk: &[u8]) -> Result<()> {
        let part_size = self.buffers.part_size();
        while !chunk.is_empty() {
            // A full buffer becomes a part once more bytes come: a body of exactly one part
            // stays one object.
            self.upload_full_buffer().await?;
            let take = (part_size - self.buf.len()).min(chunk.len());
            if self.buf.capacity() < self.buf.len() + take {
                let mut grown = self.buffers.take().await;
                grown.extend_from_slice(&self.buf);
                self.buf = grown;
            }
            self.buf.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
        }
        Ok(())
    }

    /// Starts uploading the buffer as the next part if it is full.
    async fn upload_full_buffer(&mut self) -> Result<()> {
        if self.buf.len() == self.buffers.part_size() {
            let part = std::mem::take(&mut self.buf);
            self.upload(part.freeze()).await?;
        }
        Ok(())
    }

    /// Starts uploading `data` as the next part, first waiting for the oldest upload when
    /// [`IN_FLIGHT`] are running.
    async fn upload(&mut self, data: Bytes) -> Result<()> {
        let upload_id = match &self.progress.upload_id {
            Some(id) => id.clone(),
            None => {
                let id = self.store.create_multipart(&self.key).await?;
                self.progress.upload_id = Some(id.clone());
                id
            }
        };
        if self.uploading.len() >= IN_FLIGHT {
            self.settle_one().await?;
        }
        let number = (self.progress.parts.len() + self.uploading.len()) as u32 + 1;
        let (store, key, offset) = (Arc::clone(&self.store), self.key.clone(), self.offset);
        self.offset += data.len() as u64;
        self.uploading.push_back(tokio::spawn(async move {
            let size = data.len() as u64;
            let etag = store.upload_part(&key, &upload_id, number, offset, data).await?;
            Ok(Part { number, etag, size })
        }));
        Ok(())
    }

    /// Waits for the oldest running upload and records its part.
    async fn settle_one(&mut self) -> Result<()> {
        if let Some(handle) = self.uploading.pop_front() {
            let part = handle.await.map_err(StorageError::backend)??;
            self.progress.parts.push(part);
        }
        Ok(())
    }

    /// Waits for every running upload.
    async fn settle(&mut self) -> Result<()> {
        while !self.uploading.is_empty() {
            self.settle_one().await?;
        }
        Ok(())
    }

    /// True once a part was uploaded.
    pub(crate) fn is_multipart(&self) -> bool {
        self.progress.upload_id.is_some()
    }

    /// The multipart upload so far (parts still uploading are not in it yet).
    pub(crate) fn progress(&self) -> &Multipart {
        &self.progress
    }

    /// Stops writing once every started part is uploaded (a full buffer too): the progress so
    /// far and the bytes not yet in a part.
    pub(crate) async fn suspend(mut self) -> Result<(Multipart, Bytes)> {
        self.upload_full_buffer().await?;
        self.settle().await?;
        Ok((self.progress, self.buf.freeze()))
    }

    /// Everything written, when no part was sent ([`PartWriter::is_multipart`]).
    pub(crate) fn into_bytes(self) -> Bytes {
        debug_assert!(!self.is_multipart(), "the bytes of a multipart upload are in its parts");
        self.buf.freeze()
    }

    /// Stores everything written at `key` under `cond`: one put when no part was sent, else the
    /// buffer as the last part and a completion with the recorded parts.
    pub(crate) async fn finish(mut self, cond: Condition) -> Result<()> {
        let Some(upload_id) = self.progress.upload_id.clone() else {
            self.store.put(&self.key, self.buf.freeze(), cond).await?;
            return Ok(());
        };
        if !self.buf.is_empty() {
            let last = std::mem::take(&mut self.buf).freeze();
            self.upload(last).await?;
        }
        self.settle().await?;
        let parts: Vec<CompletedPart> = self
            .progress
            .parts
            .iter()
            .map(|p| CompletedPart { number: p.number, etag: p.etag.clone(), size: p.size })
            .collect();
        self.store.complete_multipart(&self.key, &upload_id, &parts, cond).await?;
        Ok(())
    }

    /// Stores everything written at `key` unless an object is there already: `false` then, and
    /// nothing was written (the multipart upload, if any, is aborted).
    pub(crate) async fn create(self) -> Result<bool> {
        let (store, key, progress) = (self.store.clone(), self.key.clone(), self.progress.clone());
        match self.finish(Condition::CreateOnly).await {
            Ok(()) => Ok(true),
            Err(StorageError::PreconditionFailed(_)) => {
                abort(store.as_ref(), &key, &progress).await?;
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Abandons the multipart upload, if one was started (running part uploads are left to
    /// fail against the aborted upload).
    pub(crate) async fn abort(self) -> Result<()> {
        abort(self.store.as_ref(), &self.key, &self.progress).await
    }
}

/// Abandons the multipart upload of `progress`, if one was started.
pub(crate) async fn abort(store: &dyn Storage, key: &str, progress: &Multipart) -> Result<()> {
    if let Some(id) = &progress.upload_id {
        store.abort_multipart(key, id).await?;
    }
    Ok(())
}
