//! What a collection examined and removed, by kind, and what it would remove (a dry run).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Objects of one kind: how many were looked at, and how many (and bytes) were removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Count {
    /// Looked at.
    pub examined: u64,
    /// Removed (or, in a dry run, that would be).
    pub removed: u64,
    /// Bytes removed.
    pub removed_bytes: u64,
}

impl Count {
    pub(crate) fn remove(&mut self, bytes: u64) {
        self.removed += 1;
        self.removed_bytes += bytes;
    }
}

/// The summary of a collection (accumulated over the invocations of a resumed run).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Repositories swept; removed: their catalog entries, once empty.
    pub repositories: Count,
    /// Repositories left for the next run: a manifest write was in progress, or the sweep ran out
    /// of its time budget.
    pub repositories_busy: u64,
    /// Tags (removed by retention).
    pub tags: Count,
    /// Manifests (untagged, by retention, or referrers of a subject that is gone).
    pub manifests: Count,
    /// Referrer entries.
    pub referrers: Count,
    /// Repository links to blobs.
    pub links: Count,
    /// Blobs (the bytes).
    pub blobs: Count,
    /// Upload sessions.
    pub uploads: Count,
    /// Objects that changed after they were listed, and were kept.
    pub changed: u64,
    /// Storage calls made.
    pub storage_calls: u64,
    /// Seconds spent.
    pub seconds: f64,
    /// In a dry run: what would be removed, one line per object.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub would_remove: Vec<String>,
}

impl Report {
    /// Adds what another invocation of the same run did.
    pub(crate) fn add(&mut self, other: &Report) {
        for (mine, (_, theirs)) in self.counts_mut().into_iter().zip(other.by_kind()) {
            mine.examined += theirs.examined;
            mine.removed += theirs.removed;
            mine.removed_bytes += theirs.removed_bytes;
        }
        self.repositories_busy += other.repositories_busy;
        self.changed += other.changed;
        self.storage_calls += other.storage_calls;
        self.seconds += other.seconds;
        self.would_remove.extend(other.would_remove.iter().cloned());
    }

    /// Each kind's count, by name.
    pub fn by_kind(&self) -> [(&'static str, Count); 7] {
        [
            ("repositories", self.repositories),
            ("tags", self.tags),
            ("manifests", self.manifests),
            ("referrers", self.referrers),
            ("links", self.links),
            ("blobs", self.blobs),
            ("upload sessions", self.uploads),
        ]
    }

    fn counts_mut(&mut self) -> [&mut Count; 7] {
        [
            &mut self.repositories,
            &mut self.tags,
            &mut self.manifests,
            &mut self.referrers,
            &mut self.links,
            &mut self.blobs,
            &mut self.uploads,
        ]
    }

    /// Bytes removed, all kinds.
    pub fn removed_bytes(&self) -> u64 {
        self.by_kind().iter().map(|(_, c)| c.removed_bytes).sum()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:<16} {:>10} {:>10} {:>16}", "kind", "examined", "removed", "bytes removed")?;
        for (kind, count) in self.by_kind() {
            writeln!(f, "{kind:<16} {:>10} {:>10} {:>16}", count.examined, count.removed, count.removed_bytes)?;
        }
        writeln!(
            f,
            "repositories left for the next run: {}; objects changed meanwhile and kept: {}",
            self.repositories_busy, self.changed
        )?;
        write!(f, "{:.1} s, {} storage calls", self.seconds, self.storage_calls)?;
        for line in &self.would_remove {
            write!(f, "\nwould remove {line}")?;
        }
        Ok(())
    }
}
