//! Per-request accounting of storage calls and how they ended.
//!
//! Backends call [`record`] once per request they make to their store (one S3 request, one
//! trait operation for memory and filesystem), and the S3 and filesystem backends call
//! [`failed`] when one of them ends in an error (the memory backend, for tests, does not). A
//! shell wraps the handling of each registry request in [`count`] and learns what that request
//! cost ([`Tally`]); outside [`count`], both do nothing. The tally lives in a tokio task-local,
//! so concurrent requests never mix.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;

use crate::StorageError;

/// Calls made, by operation name (S3's names: `GetObject`, `PutObject`, …).
pub type CallCounts = BTreeMap<&'static str, u64>;

/// How a storage call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    /// It did what was asked.
    Ok,
    /// The key or upload does not exist (often expected: a probe for a blob).
    NotFound,
    /// A condition did not hold (`If-None-Match`, `If-Match`): a race, or a dedupe.
    Conflict,
    /// The request was refused as invalid (range, part size).
    Invalid,
    /// The store failed: I/O, network, the remote service.
    Error,
}

impl Outcome {
    /// The outcome an error stands for.
    pub fn of(error: &StorageError) -> Self {
        match error {
            StorageError::NotFound(_) => Outcome::NotFound,
            StorageError::PreconditionFailed(_) => Outcome::Conflict,
            StorageError::InvalidRange(_) | StorageError::Invalid(_) => Outcome::Invalid,
            StorageError::Backend(_) => Outcome::Error,
        }
    }

    /// Its name in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::NotFound => "not_found",
            Outcome::Conflict => "conflict",
            Outcome::Invalid => "invalid",
            Outcome::Error => "error",
        }
    }
}

/// What a counted piece of work cost in storage calls.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Calls made, by operation.
    pub calls: CallCounts,
    /// Calls that ended in an error, by operation and outcome (never [`Outcome::Ok`]).
    pub failed: BTreeMap<(&'static str, Outcome), u64>,
}

impl Tally {
    /// All calls made.
    pub fn total(&self) -> u64 {
        total(&self.calls)
    }

    /// Calls by operation and outcome, the successful ones included.
    pub fn by_outcome(&self) -> BTreeMap<(&'static str, Outcome), u64> {
        let mut outcomes = self.failed.clone();
        for (&operation, &made) in &self.calls {
            let failed: u64 = self.failed.iter().filter(|((op, _), _)| *op == operation).map(|(_, n)| n).sum();
            if made > failed {
                outcomes.insert((operation, Outcome::Ok), made - failed);
            }
        }
        outcomes
    }
}

tokio::task_local! {
    static CALLS: RefCell<Tally>;
}

/// Records one call of `operation` for the work being counted, if any.
pub fn record(operation: &'static str) {
    let _ = CALLS.try_with(|tally| *tally.borrow_mut().calls.entry(operation).or_default() += 1);
}

/// Records that a call of `operation` (already [`record`]ed) ended in `error`.
pub fn failed(operation: &'static str, error: &StorageError) {
    let outcome = Outcome::of(error);
    let _ = CALLS.try_with(|tally| *tally.borrow_mut().failed.entry((operation, outcome)).or_default() += 1);
}

/// Records the end of a call of `operation` from its result: [`failed`] if it is an error.
pub fn ended<T>(operation: &'static str, result: crate::Result<T>) -> crate::Result<T> {
    if let Err(e) = &result {
        failed(operation, e);
    }
    result
}

/// Runs `work`, returning its output and the storage calls it made.
pub async fn count<F: Future>(work: F) -> (F::Output, Tally) {
    CALLS
        .scope(RefCell::new(Tally::default()), async {
            let output = work.await;
            (output, CALLS.with(|tally| tally.take()))
        })
        .await
}

/// The sum of all counts.
pub fn total(counts: &CallCounts) -> u64 {
    counts.values().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn calls_are_tallied_with_their_outcomes() {
        let ((), tally) = count(async {
            record("GetObject");
            record("GetObject");
            let _ = ended::<()>("GetObject", Err(StorageError::NotFound("k".into())));
            record("PutObject");
            let _ = ended::<()>("PutObject", Err(StorageError::backend("disk on fire")));
            record("HeadObject");
            let _ = ended("HeadObject", Ok(()));
        })
        .await;
        assert_eq!(tally.total(), 4);
        let outcomes: Vec<_> = tally.by_outcome().into_iter().collect();
        assert_eq!(
            outcomes,
            [
                (("GetObject", Outcome::Ok), 1),
                (("GetObject", Outcome::NotFound), 1),
                (("HeadObject", Outcome::Ok), 1),
                (("PutObject", Outcome::Error), 1)
            ]
        );
        record("GetObject"); // outside count: nothing, and no panic
    }
}
