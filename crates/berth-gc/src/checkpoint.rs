//! The run's checkpoint, `gc/run`: its phase, how far the phase got, what the run did so far, and
//! when it finished. Written with `IfMatch` on the version last read or written, it is also a
//! lease: a collector that finds an unfinished run whose checkpoint is younger than [`LEASE`]
//! refuses to start, and one whose write fails (another took over) stops. A collector that
//! stops at its deadline marks the checkpoint paused, which gives the lease up.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use berth_core::keys;
use berth_storage::{Condition, Storage, StorageError};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::retention::younger;
use crate::{GcError, Report, Result};

/// A checkpoint younger than this belongs to a collector at work. Collectors write theirs every
/// [`SAVE_EVERY`] of work, and a repository sweep takes at most `SWEEP_BUDGET`.
const LEASE: Duration = Duration::from_secs(600);

/// How often a collector at work writes its checkpoint.
const SAVE_EVERY: Duration = Duration::from_secs(10);

/// The phases of a run, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Phase {
    Repositories,
    Catalog,
    Blobs,
    Uploads,
    Done,
}

/// What `gc/run` holds.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RunState {
    /// Seconds since the epoch when the run started.
    pub(crate) started: u64,
    pub(crate) phase: Phase,
    /// The key the phase goes on after.
    pub(crate) after: Option<String>,
    /// Seconds since the epoch when the run finished.
    pub(crate) finished: Option<u64>,
    /// The last collector stopped at a deadline and gave the lease up: the next one continues
    /// at once.
    #[serde(default)]
    pub(crate) paused: bool,
    /// What the run did, over all its invocations.
    pub(crate) report: Report,
}

/// A run's checkpoint as this collector holds it.
pub(crate) struct Checkpoint {
    pub(crate) state: RunState,
    /// The run's report before this invocation.
    base: Report,
    /// The version of `gc/run` this collector wrote or took; `None`: there was none.
    etag: Option<String>,
    saved: Instant,
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn fresh() -> RunState {
    RunState {
        started: now_secs(),
        phase: Phase::Repositories,
        after: None,
        finished: None,
        paused: false,
        report: Report::default(),
    }
}

/// The stored checkpoint, its version and its age.
async fn load(store: &dyn Storage) -> Result<Option<(RunState, String, SystemTime)>> {
    let object = match store.get(keys::GC_RUN, None).await {
        Ok(object) => object,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let (etag, modified) = (object.meta.etag.clone(), object.meta.modified);
    let bytes = object.bytes().await?;
    match serde_json::from_slice(&bytes) {
        Ok(state) => Ok(Some((state, etag, modified))),
        Err(e) => {
            tracing::warn!(error = %e, "unreadable garbage-collection checkpoint: starting a new run");
            Ok(Some((RunState { finished: Some(0), ..fresh() }, etag, modified)))
        }
    }
}

impl Checkpoint {
    /// A checkpoint that is never written (a dry run).
    pub(crate) fn scratch() -> Self {
        Self { state: fresh(), base: Report::default(), etag: None, saved: Instant::now() }
    }

    /// Takes the lease: continues the unfinished run, or starts one.
    pub(crate) async fn take(store: &dyn Storage) -> Result<Self> {
        let (state, etag) = match load(store).await? {
            None => (fresh(), None),
            Some((state, etag, _)) if state.finished.is_some() => (fresh(), Some(etag)),
            Some((state, _, modified)) if !state.paused && younger(modified, LEASE, SystemTime::now()) => {
                let age = SystemTime::now().duration_since(modified).unwrap_or_default();
                return Err(GcError::Busy(age.as_secs()));
            }
            Some((state, etag, _)) => {
                tracing::info!(phase = ?state.phase, "continuing the unfinished garbage collection");
                (state, Some(etag))
            }
        };
        let state = RunState { paused: false, ..state };
        let mut checkpoint = Self { base: state.report.clone(), state, etag, saved: Instant::now() };
        checkpoint.save(store, &Report::default(), true).await?;
        Ok(checkpoint)
    }

    /// Whether a run is due: one is unfinished and no collector is at it, or the last finished
    /// `every` ago, or there was none.
    pub(crate) async fn due(store: &dyn Storage, every: Duration) -> Result<bool> {
        let now = SystemTime::now();
        Ok(match load(store).await? {
            None => true,
            Some((state, _, modified)) => match state.finished {
                Some(finished) => finished + every.as_secs() <= now_secs(),
                None => state.paused || !younger(modified, LEASE, now),
            },
        })
    }

    async fn save(&mut self, store: &dyn Storage, report: &Report, write: bool) -> Result<()> {
        let mut total = self.base.clone();
        total.add(report);
        total.would_remove.clear();
        self.state.report = total;
        if !write {
            return Ok(());
        }
        let body = Bytes::from(serde_json::to_vec(&self.state).map_err(StorageError::backend)?);
        let cond = match &self.etag {
            Some(etag) => Condition::IfMatch(etag.clone()),
            None => Condition::CreateOnly,
        };
        match store.put(keys::GC_RUN, body, cond).await {
            Ok(meta) => {
                self.etag = Some(meta.etag);
                self.saved = Instant::now();
                Ok(())
            }
            Err(StorageError::PreconditionFailed(_) | StorageError::NotFound(_)) => Err(GcError::Busy(0)),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes the checkpoint when the last write is [`SAVE_EVERY`] old.
    pub(crate) async fn save_now_and_then(&mut self, store: &dyn Storage, report: &Report, write: bool) -> Result<()> {
        if self.saved.elapsed() >= SAVE_EVERY { self.save(store, report, write).await } else { Ok(()) }
    }

    /// Moves to the next phase, and writes the checkpoint.
    pub(crate) async fn next_phase(&mut self, store: &dyn Storage, report: &Report, write: bool) -> Result<()> {
        self.state.phase = match self.state.phase {
            Phase::Repositories => Phase::Catalog,
            Phase::Catalog => Phase::Blobs,
            Phase::Blobs => Phase::Uploads,
            Phase::Uploads | Phase::Done => Phase::Done,
        };
        self.state.after = None;
        self.save(store, report, write).await
    }

    /// Writes the checkpoint for the next invocation to continue from, giving the lease up.
    pub(crate) async fn pause(&mut self, store: &dyn Storage, report: &Report, write: bool) -> Result<Report> {
        self.state.paused = true;
        self.close(store, report, write).await
    }

    /// Marks the run finished.
    pub(crate) async fn finish(&mut self, store: &dyn Storage, report: &Report, write: bool) -> Result<Report> {
        self.state.finished = Some(now_secs());
        self.close(store, report, write).await
    }

    /// Writes the checkpoint a last time; the report it returns is the run's, with this
    /// invocation's dry-run lines.
    async fn close(&mut self, store: &dyn Storage, report: &Report, write: bool) -> Result<Report> {
        self.save(store, report, write).await?;
        Ok(Report { would_remove: report.would_remove.clone(), ..self.state.report.clone() })
    }
}
