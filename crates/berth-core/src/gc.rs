//! The registry's side of online garbage collection; the collector itself is the `berth-gc`
//! crate, whose documentation gives the whole design. Two agreements keep a collection running
//! beside the registry from losing data, both built on S3's strong consistency and conditional
//! writes (no lock service, no database):
//!
//! **Manifest writes and repository sweeps exclude each other** (a Dekker handshake). A manifest
//! PUT first writes an intent (`repos/<name>/_gc/writing/<uuid>`), then reads the repository's
//! sweep marker (`repos/<name>/_gc/sweep`); the collector first writes the sweep marker, then
//! lists the intents. Storage being linearizable, at least one of them sees the other: either the
//! PUT sees the sweep and waits for it to end ([`SWEEP_WAIT`], then `503 UNAVAILABLE`), or the
//! collector sees the intent and leaves the repository for its next run; and a PUT that ended
//! before the collector looked is seen by the collector's listing. So a manifest never becomes
//! visible with references the collector deletes. A sweep marker older than [`SWEEP_TTL`] is left
//! over from a crashed collector and ignored; the collector stops deleting in a repository long
//! before its marker gets that old.
//!
//! **Links that rely on a stored blob claim it** (a compare-and-swap on a marker). Before deleting
//! a blob, the collector writes `gc/doomed/<alg>/<hex>` as [`Doom::Doomed`], lists every
//! repository's links again, and only then swaps the marker to [`Doom::Deleting`] (`IfMatch`) and
//! deletes. A request that links a blob it did not write itself (stored already, mounted, or
//! copied over an existing one) writes its link first and then reads the marker: absent, the
//! collector's second listing will see the link; [`Doom::Doomed`], it swaps it to
//! [`Doom::Vetoed`], which the collector's swap then fails on; [`Doom::Deleting`], it waits for
//! the collector to finish; [`Doom::Deleted`] (the collector's last word, kept for
//! [`DELETE_TTL`], so that a request whose link came after the second listing but whose read
//! comes after the deletion still learns of it), it checks that the blob is there (uploaded
//! again since), else removes its link and answers `503 UNAVAILABLE` (the client uploads the
//! blob again). A marker stuck in `Deleting` longer than [`DELETE_TTL`] is left over from a
//! crashed collector; the collector deletes only right after its swap.
//!
//! A blob the request wrote itself is younger than the grace when its link is written, so no
//! collector counts it as a candidate — as long as the grace is long: a blob's timestamp may be
//! its upload's start (S3 dates a multipart object by its initiation), and the collector's clock
//! may run ahead of storage's. Below [`CLAIM_OWN_BELOW`] of grace (tests, eager operators) a
//! request therefore claims the blobs it wrote too, for one more storage read each.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use berth_storage::Storage;

use bytes::Bytes;
use http::header::RETRY_AFTER;

use crate::digest::Digest;
use crate::error::{ErrorKind, RegistryError, Result};
use crate::names::Name;
use crate::store::{Replaced, Store};
use crate::upload::session::Session;
use crate::{Registry, keys};

/// A sweep marker older than this is left over from a crashed collector: writers ignore it.
pub const SWEEP_TTL: Duration = Duration::from_secs(120);

/// How long a collector may go on deleting in a repository after writing its sweep marker: half
/// of [`SWEEP_TTL`], which leaves the rest as a margin for clocks that disagree.
pub const SWEEP_BUDGET: Duration = Duration::from_secs(60);

/// An intent older than this is left over from a crashed request: the collector ignores (and
/// removes) it.
pub const INTENT_TTL: Duration = Duration::from_secs(600);

/// How long a manifest write waits for a sweep of its repository to end.
pub const SWEEP_WAIT: Duration = Duration::from_secs(10);

/// A `Deleting` marker older than this is left over from a crashed collector.
pub const DELETE_TTL: Duration = Duration::from_secs(120);

/// How long the collector may take between swapping a marker to `Deleting` and deleting.
pub const DELETE_BUDGET: Duration = Duration::from_secs(30);

/// Below this grace, requests claim the blobs they wrote themselves too (see above).
pub const CLAIM_OWN_BELOW: Duration = Duration::from_secs(3600);

/// How often a waiting request looks at a marker again.
const POLL: Duration = Duration::from_millis(200);

/// The state of a blob's `gc/doomed/…` marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Doom {
    /// The collector means to delete the blob once it has checked every repository again.
    Doomed,
    /// A request linked the blob meanwhile: the collector must keep it.
    Vetoed,
    /// The collector is deleting the blob.
    Deleting,
    /// The collector deleted the blob (it may have been uploaded again since).
    Deleted,
}

impl Doom {
    /// The marker's body.
    pub fn as_bytes(self) -> Bytes {
        Bytes::from_static(match self {
            Doom::Doomed => b"doomed",
            Doom::Vetoed => b"vetoed",
            Doom::Deleting => b"deleting",
            Doom::Deleted => b"deleted",
        })
    }

    /// Reads a marker's body.
    pub fn parse(body: &[u8]) -> Option<Self> {
        match body {
            b"doomed" => Some(Doom::Doomed),
            b"vetoed" => Some(Doom::Vetoed),
            b"deleting" => Some(Doom::Deleting),
            b"deleted" => Some(Doom::Deleted),
            _ => None,
        }
    }
}

/// The intent of a manifest write in progress, to remove once it is done.
pub(crate) struct Intent(String);

fn unavailable(message: String) -> RegistryError {
    RegistryError::new(ErrorKind::Unavailable, message).with_header(RETRY_AFTER, "5".into())
}

/// Whether an object written at `modified` is younger than `age` now.
fn younger(modified: SystemTime, age: Duration) -> bool {
    SystemTime::now().duration_since(modified).map_or(true, |elapsed| elapsed < age)
}

impl Registry {
    /// Announces a manifest write in repository `name`, waiting for a sweep of it to end.
    pub(crate) async fn begin_manifest_write(&self, name: &Name) -> Result<Intent> {
        let intent = Intent(keys::gc_intent(name));
        self.store.put(&intent.0, Bytes::new()).await?;
        let waited = tokio::time::Instant::now();
        loop {
            match self.store.head_opt(&keys::gc_sweep(name)).await {
                Ok(Some(sweep)) if younger(sweep.modified, SWEEP_TTL) => {}
                Ok(_) => return Ok(intent),
                Err(e) => {
                    self.end_manifest_write(intent).await;
                    return Err(e);
                }
            }
            if waited.elapsed() >= SWEEP_WAIT {
                self.end_manifest_write(intent).await;
                return Err(unavailable(format!(
                    "garbage collection is sweeping repository {name}; retry the manifest in a few seconds"
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Ends a manifest write announced by [`Registry::begin_manifest_write`].
    pub(crate) async fn end_manifest_write(&self, intent: Intent) {
        self.store.cleanup(&intent.0).await;
    }

    /// Claims blob `digest`, which repository `name` now links, against a collector that is
    /// deleting it, unless this request `created` the bytes and the grace is long enough to
    /// protect them. On failure the link is removed again and
    /// the answer is `503 UNAVAILABLE`: the blob is gone, and the client must send it again.
    pub(crate) async fn claim_blob(&self, name: &Name, digest: &Digest, created: bool) -> Result<()> {
        if created && self.config.gc_grace >= CLAIM_OWN_BELOW {
            return Ok(());
        }
        match claim(&self.store, digest).await {
            Ok(true) => Ok(()),
            Ok(false) => {
                self.store.delete(&keys::blob_link(name, digest)).await?;
                Err(unavailable(format!("blob {digest} was removed by garbage collection meanwhile; upload it again")))
            }
            Err(e) => Err(e),
        }
    }
}

/// Whether blob `digest` stays: the marker is absent, vetoed now, or the collector deleting it is
/// done and left the blob.
async fn claim(store: &Store, digest: &Digest) -> Result<bool> {
    let key = keys::gc_doomed(digest);
    let mut deleting = false;
    loop {
        let Some(object) = store.get_opt(&key, None).await? else {
            // After a deletion, the blob is whatever storage has now.
            return if deleting { store.exists(&keys::blob(digest)).await } else { Ok(true) };
        };
        let (etag, modified) = (object.meta.etag.clone(), object.meta.modified);
        match Doom::parse(&object.bytes().await?) {
            Some(Doom::Vetoed) | None => return Ok(true),
            Some(Doom::Doomed) => match store.replace(&key, Doom::Vetoed.as_bytes(), etag).await? {
                Replaced::Done | Replaced::Gone => return Ok(true),
                Replaced::Changed => {}
            },
            // The collector deletes within DELETE_BUDGET of its swap and removes the marker.
            Some(Doom::Deleting) if younger(modified, DELETE_TTL) => {
                deleting = true;
                tokio::time::sleep(POLL).await;
            }
            // Deleted, perhaps uploaded again since; or a crashed collector's marker.
            Some(Doom::Deleted | Doom::Deleting) => return store.exists(&keys::blob(digest)).await,
        }
    }
}

/// Ends upload session `id`, whichever repository it belongs to: aborts its multipart upload and
/// removes its state, its pending bytes and an assembled object a crash left behind. For the
/// collector, once the session has been idle past the grace period; a client that comes back to
/// it then finds it unknown (404 BLOB_UPLOAD_UNKNOWN), or, through the session's first (sealed)
/// URL, a fresh session.
pub async fn end_abandoned_upload(store: Arc<dyn Storage>, id: &str) -> Result<()> {
    let store = Store::new(store);
    match Session::load_any(&store, id).await {
        Ok(Some((session, _))) => session.release(&store, id, Some(&session.multipart)).await,
        Ok(None) => {}
        Err(e) if e.kind == ErrorKind::BlobUploadUnknown => {}
        Err(e) => return Err(e),
    }
    store.delete(&keys::upload_data(id)).await?;
    store.delete(&keys::upload_state(id)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_read_back() {
        for doom in [Doom::Doomed, Doom::Vetoed, Doom::Deleting, Doom::Deleted] {
            assert_eq!(Doom::parse(&doom.as_bytes()), Some(doom));
        }
        assert_eq!(Doom::parse(b"other"), None);
    }
}
