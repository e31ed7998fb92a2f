//! In-memory backend: a sorted map behind a mutex. For tests and ephemeral registries; it
//! enforces the same rules as S3 (conditions, part sizes) so tests catch contract violations.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::{
    CompletedPart, Condition, GetObject, ListPage, ObjectMeta, Result, Storage, StorageError, check_part_sizes,
    resolve_range,
};

#[derive(Clone)]
struct Object {
    data: Bytes,
    etag: String,
    modified: SystemTime,
}

/// The parts of an upload: part number → (ETag, bytes).
type Parts = BTreeMap<u32, (String, Bytes)>;

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Object>,
    /// upload id → (key, parts).
    uploads: HashMap<String, (String, Parts)>,
}

/// Keeps every object in memory.
#[derive(Default)]
pub struct MemoryStorage {
    state: Mutex<State>,
    counter: AtomicU64,
}

impl MemoryStorage {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn next_tag(&self) -> String {
        format!("\"m{}\"", self.counter.fetch_add(1, Ordering::Relaxed))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn store(&self, state: &mut State, key: &str, data: Bytes, cond: &Condition) -> Result<ObjectMeta> {
        check_condition(state.objects.get(key).map(|o| o.etag.as_str()), key, cond)?;
        let object = Object { data, etag: self.next_tag(), modified: SystemTime::now() };
        let meta = meta(key, &object);
        state.objects.insert(key.to_string(), object);
        Ok(meta)
    }
}

/// Decides whether a write under `cond` may replace an object whose current ETag is `current`.
pub(crate) fn check_condition(current: Option<&str>, key: &str, cond: &Condition) -> Result<()> {
    let ok = match (cond, current) {
        (Condition::Overwrite, _) => true,
        (Condition::CreateOnly, existing) => existing.is_none(),
        (Condition::IfMatch(want), Some(have)) => want == have,
        (Condition::IfMatch(_), None) => return Err(StorageError::NotFound(key.to_string())),
    };
    if ok { Ok(()) } else { Err(StorageError::PreconditionFailed(key.to_string())) }
}

/// Rejects part numbers S3 does not accept (it takes 1 to 10,000).
pub(crate) fn check_part_number(number: u32) -> Result<()> {
    if (1..=10_000).contains(&number) {
        Ok(())
    } else {
        Err(StorageError::Invalid(format!("part number {number} is not within 1..=10000")))
    }
}

fn meta(key: &str, object: &Object) -> ObjectMeta {
    ObjectMeta {
        key: key.to_string(),
        size: object.data.len() as u64,
        etag: object.etag.clone(),
        modified: object.modified,
    }
}

#[async_trait::async_trait]
impl Storage for MemoryStorage {
    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        crate::calls::record("HeadObject");
        let state = self.lock();
        let object = state.objects.get(key).ok_or_else(|| StorageError::NotFound(key.to_string()))?;
        Ok(meta(key, object))
    }

    async fn get(&self, key: &str, range: Option<Range<u64>>) -> Result<GetObject> {
        crate::calls::record("GetObject");
        let object = {
            let state = self.lock();
            state.objects.get(key).cloned().ok_or_else(|| StorageError::NotFound(key.to_string()))?
        };
        let range = resolve_range(key, object.data.len() as u64, range)?;
        let body = object.data.slice(range.start as usize..range.end as usize);
        Ok(GetObject { meta: meta(key, &object), range, body: Box::pin(futures_util::stream::iter([Ok(body)])) })
    }

    async fn put(&self, key: &str, body: Bytes, cond: Condition) -> Result<ObjectMeta> {
        crate::calls::record("PutObject");
        let mut state = self.lock();
        self.store(&mut state, key, body, &cond)
    }

    async fn delete(&self, key: &str) -> Result<()> {
        crate::calls::record("DeleteObject");
        self.lock().objects.remove(key);
        Ok(())
    }

    async fn copy(&self, src: &str, dst: &str, cond: Condition) -> Result<ObjectMeta> {
        crate::calls::record("CopyObject");
        let mut state = self.lock();
        let data =
            state.objects.get(src).map(|o| o.data.clone()).ok_or_else(|| StorageError::NotFound(src.to_string()))?;
        self.store(&mut state, dst, data, &cond)
    }

    async fn list(&self, prefix: &str, start_after: Option<&str>, limit: usize) -> Result<ListPage> {
        crate::calls::record("ListObjectsV2");
        let state = self.lock();
        let from = match start_after {
            Some(after) if after >= prefix => std::ops::Bound::Excluded(after.to_string()),
            _ => std::ops::Bound::Included(prefix.to_string()),
        };
        let mut objects = state
            .objects
            .range((from, std::ops::Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, o)| meta(k, o));
        let page: Vec<ObjectMeta> = objects.by_ref().take(limit).collect();
        let truncated = objects.next().is_some();
        Ok(ListPage { objects: page, truncated })
    }

    async fn create_multipart(&self, key: &str) -> Result<String> {
        crate::calls::record("CreateMultipartUpload");
        let id = uuid::Uuid::new_v4().simple().to_string();
        self.lock().uploads.insert(id.clone(), (key.to_string(), BTreeMap::new()));
        Ok(id)
    }

    async fn upload_part(&self, key: &str, upload_id: &str, number: u32, _offset: u64, body: Bytes) -> Result<String> {
        crate::calls::record("UploadPart");
        check_part_number(number)?;
        let etag = self.next_tag();
        let mut state = self.lock();
        let (upload_key, parts) =
            state.uploads.get_mut(upload_id).ok_or_else(|| StorageError::NotFound(format!("upload {upload_id}")))?;
        if upload_key != key {
            return Err(StorageError::NotFound(format!("upload {upload_id} of {key}")));
        }
        parts.insert(number, (etag.clone(), body));
        Ok(etag)
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[CompletedPart],
        cond: Condition,
    ) -> Result<ObjectMeta> {
        crate::calls::record("CompleteMultipartUpload");
        let mut state = self.lock();
        let (upload_key, stored) =
            state.uploads.get(upload_id).ok_or_else(|| StorageError::NotFound(format!("upload {upload_id}")))?;
        if upload_key != key {
            return Err(StorageError::NotFound(format!("upload {upload_id} of {key}")));
        }
        let mut chunks = Vec::with_capacity(parts.len());
        for part in parts {
            match stored.get(&part.number) {
                Some((etag, data)) if *etag == part.etag => chunks.push(data.clone()),
                _ => {
                    return Err(StorageError::Invalid(format!("part {} is not uploaded with that ETag", part.number)));
                }
            }
        }
        check_part_sizes(&chunks.iter().map(|c| c.len() as u64).collect::<Vec<_>>())?;
        let meta = self.store(&mut state, key, chunks.concat().into(), &cond)?;
        state.uploads.remove(upload_id);
        Ok(meta)
    }

    async fn abort_multipart(&self, _key: &str, upload_id: &str) -> Result<()> {
        crate::calls::record("AbortMultipartUpload");
        self.lock().uploads.remove(upload_id);
        Ok(())
    }

    async fn presign_get(&self, _key: &str, _ttl: Duration) -> Result<Option<String>> {
        Ok(None)
    }
}
