//! Garbage collection of a live berth registry, over any [`Storage`] (S3, the filesystem,
//! memory), with no database and no lock service: conditional writes, timestamps from listings,
//! and a re-check before each delete. A race may fail a push; it never loses data. [`fsck`]
//! checks what is stored for consistency, writing nothing.
//!
//! # What goes
//!
//! A run ([`Collector::run`]) has four phases, each resumable from a checkpoint:
//! 1. **Repositories**, one at a time (found by listing `repos/`, one key per repository):
//!    [`retention`] removes tags; manifests that no kept tag, kept untagged manifest (all of them
//!    unless retention removes untagged ones) or referrer younger than the grace reaches go, with
//!    their referrer entries (an index keeps its entries; a kept manifest keeps its referrers; a
//!    referrer whose subject is gone goes once older than the grace); links that no kept manifest
//!    references and that are older than the grace go; a repository left empty loses its catalog
//!    entry. Removal order is tags, referrer entries, manifests, links, so that no kept object
//!    ever points to a removed one, even if the run dies midway.
//! 2. **Catalog**: entries of repositories that have no object at all.
//! 3. **Blobs** that no repository links and that are older than the grace.
//! 4. **Upload sessions** idle longer than the grace, with their multipart uploads and pending
//!    bytes.
//!
//! A run given a deadline (a Lambda invocation's end) starts no new repository or page within
//! 30 seconds of it and stops removing within 10, then saves its checkpoint; the next run
//! continues from there ([`Outcome::Paused`]).
//!
//! # Why nothing is lost
//!
//! The registry and the collector follow two agreements, documented in `berth_core::gc`:
//! - A repository is swept under its **sweep marker**, written before anything of the repository
//!   is listed; manifest writes announce themselves with an **intent** before reading that
//!   marker. With storage linearizable (S3 is, since 2020), a manifest PUT either sees the sweep
//!   (and waits, then fails `503 UNAVAILABLE`), or the sweep sees its intent (and leaves the
//!   repository for the next run), or the PUT finished before the listing (which then sees the
//!   manifest). So a manifest never becomes visible with a reference the sweep removes; its
//!   reference check fails (`MANIFEST_BLOB_UNKNOWN`) instead when a link went first — that is
//!   also what a client that saw `HEAD` 200 for a blob and skipped it gets, never a manifest
//!   pointing at a removed blob. The sweep stops deleting long before its marker expires
//!   (`SWEEP_BUDGET`, half of `SWEEP_TTL`).
//! - Links are written without that handshake (every upload writes one), so links younger than
//!   the grace stay, and a link is removed only if it is unchanged since the listing (a HEAD
//!   before each delete): a link written again meanwhile stays.
//! - A blob goes only through its **doomed marker**: written before a second listing of every
//!   link, then swapped to `Deleting` with `IfMatch`. A request that links a blob it did not
//!   write (a stored one, a mount, an upload copied over an existing one) reads the marker after
//!   writing its link and vetoes it, or, when too late, waits and uploads anew. Blobs are
//!   global: one stays while any repository links it, so a blob mounted elsewhere stays.
//! - The grace (`--gc-grace`, 24 hours by default) is the floor under all of this: nothing
//!   younger is removed, so pushes in progress keep their layers and sessions.
//! - A run that dies leaves its markers: sweep markers expire (writers ignore them after
//!   `SWEEP_TTL`), doomed markers are removed by the next run, and every removal is one that a
//!   complete run would have made. The next run starts over from the checkpoint.
//!
//! One collector runs at a time: the checkpoint `gc/run` is a lease, renewed with `IfMatch`;
//! another collector finding it fresh refuses to start ([`GcError::Busy`]).
//!
//! # Cost
//!
//! In storage calls (S3 requests):
//! - per repository: 1 listing to find it, 1 PUT and 1 DELETE of its sweep marker, 1 listing per
//!   1000 of its objects, 1 GET per tag and per untagged manifest (their references), and per
//!   removed object 1 DELETE (a link: 1 HEAD more; an emptied repository: its catalog entry);
//! - catalog: 1 listing per 1000 entries, and 1 listing per entry;
//! - blobs: 1 listing of leftover markers, 1 listing of every repository's objects per 1000 of
//!   them; per 1000 blobs 1 listing and, when the page has candidates, that listing of every
//!   repository's objects again; per removed blob 5 (mark, swap, HEAD, DELETE, unmark);
//! - uploads: 1 listing per 1000 objects, and per idle session about 4;
//! - the checkpoint: 1 GET and 1 PUT to start, 1 PUT at each phase and every 10 seconds of work.
//!
//! Listings, not per-object HEADs, find what is there. Measured (`tests/it/api/gc.rs`, on moto):
//! 50 repositories and 602 blobs, of which 360 blobs (441 kB) and 380 links go: 2904 calls. Listings, not per-object HEADs, find what is there.

mod blobs;
mod checkpoint;
pub mod fsck;
mod report;
mod repository;
pub mod retention;
mod uploads;

pub use self::report::{Count, Report};
pub use self::retention::Retention;

use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_core::error::RegistryError;
use berth_storage::{ObjectMeta, Storage, StorageError};

use self::checkpoint::{Checkpoint, Phase};

/// How a collection runs.
pub struct Options {
    /// Nothing younger than this is removed.
    pub grace: Duration,
    /// Which tags and untagged manifests are removed.
    pub retention: Arc<Retention>,
    /// Only report what would be removed; write nothing.
    pub dry_run: bool,
    /// When to stop, with a checkpoint the next run continues from (a Lambda invocation's end).
    pub deadline: Option<Instant>,
}

/// Why a collection could not run.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A stored object could not be read.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// Another collector holds the lease.
    #[error("another garbage collection is running (its checkpoint is {0} s old); try later")]
    Busy(u64),
}

/// Result of collection steps.
pub type Result<T, E = GcError> = std::result::Result<T, E>;

/// How a run ended.
#[derive(Debug)]
pub enum Outcome {
    /// Every phase is done.
    Finished(Report),
    /// The deadline came first; the next run continues from the checkpoint.
    Paused(Report),
}

impl Outcome {
    /// The report of the run so far.
    pub fn report(&self) -> &Report {
        match self {
            Outcome::Finished(report) | Outcome::Paused(report) => report,
        }
    }
}

/// A garbage collector over one registry's storage.
pub struct Collector {
    store: Arc<dyn Storage>,
    options: Options,
    /// Written into sweep markers, for whoever looks at them.
    run_id: String,
    /// In a dry run, the links the run would have removed: the blob phase counts them as gone.
    unlinked: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

/// How long before the deadline a run starts no new repository or page of objects.
const DEADLINE_MARGIN: Duration = Duration::from_secs(30);

/// How long before the deadline a run stops removing, to save its checkpoint in time.
const STOP_MARGIN: Duration = Duration::from_secs(10);

/// Whether an object is as it was listed: same size and time of last write, and the same ETag
/// when the listing had one.
pub(crate) fn unchanged(listed: &ObjectMeta, now: &ObjectMeta) -> bool {
    listed.size == now.size && listed.modified == now.modified && (listed.etag.is_empty() || listed.etag == now.etag)
}

impl Collector {
    /// A collector over `store`.
    pub fn new(store: Arc<dyn Storage>, options: Options) -> Self {
        Self { store, options, run_id: uuid::Uuid::new_v4().simple().to_string(), unlinked: Default::default() }
    }

    fn left_under(&self, margin: Duration) -> bool {
        self.options.deadline.is_some_and(|d| Instant::now() + margin >= d)
    }

    /// Time to start nothing new.
    fn near_deadline(&self) -> bool {
        self.left_under(DEADLINE_MARGIN)
    }

    /// Time to stop removing (what is left stays for the next invocation).
    fn out_of_time(&self) -> bool {
        self.left_under(STOP_MARGIN)
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        match self.store.head(key).await {
            Ok(meta) => Ok(Some(meta)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Runs a collection: continues the unfinished one, or starts one, until it is done or the
    /// deadline nears. A dry run starts afresh, reports, and writes nothing.
    pub async fn run(&self) -> Result<Outcome> {
        let started = Instant::now();
        let (outcome, calls) = berth_storage::calls::count(self.run_counted()).await;
        let mut outcome = outcome?;
        let (Outcome::Finished(report) | Outcome::Paused(report)) = &mut outcome;
        report.storage_calls += calls.total();
        report.seconds += started.elapsed().as_secs_f64();
        let report = outcome.report();
        tracing::info!(
            finished = matches!(outcome, Outcome::Finished(_)),
            dry_run = self.options.dry_run,
            repositories = report.repositories.examined,
            repositories_removed = report.repositories.removed,
            repositories_busy = report.repositories_busy,
            tags_removed = report.tags.removed,
            manifests_removed = report.manifests.removed,
            referrers_removed = report.referrers.removed,
            links_removed = report.links.removed,
            blobs_examined = report.blobs.examined,
            blobs_removed = report.blobs.removed,
            blob_bytes_removed = report.blobs.removed_bytes,
            uploads_removed = report.uploads.removed,
            changed = report.changed,
            storage_calls = report.storage_calls,
            seconds = report.seconds,
            "garbage collection"
        );
        Ok(outcome)
    }

    /// Runs a collection if one is due: one is unfinished, or the last finished `every` ago.
    pub async fn run_if_due(&self, every: Duration) -> Result<Option<Outcome>> {
        if !Checkpoint::due(self.store.as_ref(), every).await? {
            return Ok(None);
        }
        self.run().await.map(Some)
    }

    async fn run_counted(&self) -> Result<Outcome> {
        let (store, write) = (self.store.as_ref(), !self.options.dry_run);
        let mut checkpoint =
            if self.options.dry_run { Checkpoint::scratch() } else { Checkpoint::take(self.store.as_ref()).await? };
        // This invocation's work; the checkpoint keeps the run's total.
        let mut report = Report::default();
        loop {
            let done = match checkpoint.state.phase {
                Phase::Repositories => self.repositories(&mut checkpoint, &mut report).await?,
                Phase::Catalog => self.catalog(&mut checkpoint, &mut report).await?,
                Phase::Blobs => {
                    if checkpoint.state.after.is_none() {
                        self.remove_leftover_markers().await?;
                    }
                    let mut after = checkpoint.state.after.clone();
                    let done = self.sweep_blobs(&mut after, &mut report).await?;
                    checkpoint.state.after = after;
                    done
                }
                Phase::Uploads => {
                    let mut after = checkpoint.state.after.clone();
                    let done = self.sweep_uploads(&mut after, &mut report).await?;
                    checkpoint.state.after = after;
                    done
                }
                Phase::Done => {
                    return Ok(Outcome::Finished(checkpoint.finish(store, &report, write).await?));
                }
            };
            if done {
                checkpoint.next_phase(store, &report, write).await?;
            } else {
                return Ok(Outcome::Paused(checkpoint.pause(store, &report, write).await?));
            }
        }
    }

    /// Phase 1: each repository, found by a listing of one key after the last one swept.
    async fn repositories(&self, checkpoint: &mut Checkpoint, report: &mut Report) -> Result<bool> {
        loop {
            if self.near_deadline() {
                return Ok(false);
            }
            let page = self.store.list(berth_core::keys::REPOS_PREFIX, checkpoint.state.after.as_deref(), 1).await?;
            let Some(key) = page.last_key() else { return Ok(true) };
            let name = key
                .strip_prefix(berth_core::keys::REPOS_PREFIX)
                .and_then(|rest| rest.split_once("/_"))
                .and_then(|(name, _)| berth_core::names::Name::parse(name).ok());
            let after = match &name {
                // Past every key of the repository (its keys go on with `_` and a lowercase
                // letter; nested repositories' keys go on with a letter or digit, and stay).
                Some(name) => format!("{}~", berth_core::keys::repo_prefix(name)),
                None => key.to_string(),
            };
            if let Some(name) = name {
                self.sweep_repository(&name, report).await?;
            }
            checkpoint.state.after = Some(after);
            checkpoint.save_now_and_then(self.store.as_ref(), report, !self.options.dry_run).await?;
        }
    }

    /// Phase 2: catalog entries of repositories without any object.
    async fn catalog(&self, checkpoint: &mut Checkpoint, report: &mut Report) -> Result<bool> {
        use berth_core::keys;
        loop {
            if self.near_deadline() {
                return Ok(false);
            }
            let page = self.store.list(keys::CATALOG_PREFIX, checkpoint.state.after.as_deref(), 1000).await?;
            for marker in &page.objects {
                let name =
                    marker.key.strip_prefix(keys::CATALOG_PREFIX).and_then(|k| k.strip_suffix(keys::CATALOG_SUFFIX));
                let Some(name) = name.and_then(|n| berth_core::names::Name::parse(n).ok()) else { continue };
                if self.store.list(&keys::repo_prefix(&name), None, 1).await?.objects.is_empty() {
                    // Swept like any repository: under its marker, which a manifest PUT respects.
                    self.sweep_repository(&name, report).await?;
                }
            }
            match page.last_key() {
                Some(last) if page.truncated => checkpoint.state.after = Some(last.to_string()),
                _ => return Ok(true),
            }
            checkpoint.save_now_and_then(self.store.as_ref(), report, !self.options.dry_run).await?;
        }
    }
}
