//! Blobs that no repository links: removed under the marker protocol of `berth_core::gc`.
//!
//! For each page of blobs: the candidates (unlinked in a listing of every link, older than the
//! grace) get a `Doomed` marker; every link is listed again; a candidate linked now loses its
//! marker and stays; the others are swapped to `Deleting` (`IfMatch`: a request that linked the
//! blob meanwhile has swapped it to `Vetoed`, and the swap fails), checked unchanged since the
//! listing, and deleted; their markers then say `Deleted` until a run finds them older than
//! `DELETE_TTL` (a request that linked the blob after the second listing reads that and sends
//! it again), the markers of blobs that stay are removed at once.

use std::collections::BTreeSet;
use std::time::{Instant, SystemTime};

use berth_core::gc::{DELETE_BUDGET, DELETE_TTL, Doom};
use berth_core::keys;
use berth_storage::{Condition, ObjectMeta, StorageError};

use crate::retention::younger;
use crate::{Collector, Report, Result, unchanged};

/// `<alg>/<hex>` of the blob a key names after `prefix` (a blob, a link, a marker).
fn digest_path<'a>(key: &'a str, prefix: &str) -> Option<&'a str> {
    key.strip_prefix(prefix).filter(|rest| rest.split('/').count() == 2)
}

impl Collector {
    /// Every blob some repository links, as `<alg>/<hex>`: one listing of every repository
    /// (less, in a dry run, the links it would have removed).
    async fn linked(&self) -> Result<BTreeSet<String>> {
        let unlinked = self.unlinked.lock().expect("not poisoned").clone();
        let mut linked = BTreeSet::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.store.list(keys::REPOS_PREFIX, after.as_deref(), 1000).await?;
            after = page.last_key().map(str::to_string);
            for object in page.objects.iter().filter(|o| !unlinked.contains(&o.key)) {
                if let Some((_, link)) = object.key.split_once("/_blobs/") {
                    linked.insert(link.to_string());
                }
            }
            if !page.truncated || after.is_none() {
                return Ok(linked);
            }
        }
    }

    /// Removes unlinked blobs older than the grace, page by page after `cursor` (advanced as
    /// pages are done); `false` when the deadline stopped it first.
    pub(crate) async fn sweep_blobs(&self, cursor: &mut Option<String>, report: &mut Report) -> Result<bool> {
        let mut linked = self.linked().await?;
        loop {
            if self.near_deadline() {
                return Ok(false);
            }
            let page = self.store.list(keys::BLOBS_PREFIX, cursor.as_deref(), 1000).await?;
            let now = SystemTime::now();
            report.blobs.examined += page.objects.len() as u64;
            let candidates: Vec<&ObjectMeta> = page
                .objects
                .iter()
                .filter(|o| digest_path(&o.key, keys::BLOBS_PREFIX).is_some_and(|d| !linked.contains(d)))
                .filter(|o| !younger(o.modified, self.options.grace, now))
                .collect();
            if !candidates.is_empty() {
                linked = self.remove_blobs(&candidates, report).await?;
                if self.out_of_time() {
                    // The page is done again by the next invocation.
                    return Ok(false);
                }
            }
            match page.last_key() {
                Some(last) if page.truncated => *cursor = Some(last.to_string()),
                _ => return Ok(true),
            }
        }
    }

    /// Removes the candidates that stay unlinked through the protocol (those the deadline leaves
    /// only lose their markers); returns the links of the second listing.
    async fn remove_blobs(&self, candidates: &[&ObjectMeta], report: &mut Report) -> Result<BTreeSet<String>> {
        if self.options.dry_run {
            for blob in candidates {
                report.would_remove.push(format!("blob {} ({} bytes)", blob.key, blob.size));
                report.blobs.remove(blob.size);
            }
            return self.linked().await;
        }
        let mut doomed = Vec::with_capacity(candidates.len());
        for blob in candidates {
            let marker = marker_of(&blob.key);
            let written = self.store.put(&marker, Doom::Doomed.as_bytes(), Condition::Overwrite).await?;
            doomed.push((*blob, marker, written.etag));
        }
        let linked = self.linked().await?;
        for (blob, marker, etag) in doomed {
            let path = digest_path(&blob.key, keys::BLOBS_PREFIX).unwrap_or_default();
            if !linked.contains(path) && !self.out_of_time() {
                match self.store.put(&marker, Doom::Deleting.as_bytes(), Condition::IfMatch(etag)).await {
                    Ok(_) => {
                        let swapped = Instant::now();
                        let now = self.head(&blob.key).await?;
                        if now.as_ref().is_some_and(|now| unchanged(blob, now)) && swapped.elapsed() < DELETE_BUDGET {
                            self.store.delete(&blob.key).await?;
                            report.blobs.remove(blob.size);
                            self.store.put(&marker, Doom::Deleted.as_bytes(), Condition::Overwrite).await?;
                            continue;
                        }
                        report.changed += 1;
                    }
                    // Vetoed by a request that linked the blob meanwhile.
                    Err(StorageError::PreconditionFailed(_) | StorageError::NotFound(_)) => report.changed += 1,
                    Err(e) => return Err(e.into()),
                }
            }
            self.store.delete(&marker).await?;
        }
        Ok(linked)
    }

    /// Removes markers earlier runs left behind older than `DELETE_TTL`: `Deleted` ones, and
    /// any a crash left between marking and removing (a request that meets one finds the blob
    /// as storage has it).
    pub(crate) async fn remove_leftover_markers(&self) -> Result<()> {
        if self.options.dry_run {
            return Ok(());
        }
        let now = SystemTime::now();
        let mut after: Option<String> = None;
        loop {
            let page = self.store.list(keys::GC_DOOMED_PREFIX, after.as_deref(), 1000).await?;
            after = page.last_key().map(str::to_string);
            for marker in page.objects.iter().filter(|m| !younger(m.modified, DELETE_TTL, now)) {
                self.store.delete(&marker.key).await?;
            }
            if !page.truncated || after.is_none() {
                return Ok(());
            }
        }
    }
}

/// The marker key of a blob key.
fn marker_of(blob: &str) -> String {
    format!("{}{}", keys::GC_DOOMED_PREFIX, blob.strip_prefix(keys::BLOBS_PREFIX).unwrap_or(blob))
}
