//! Per-request accounting of storage calls.
//!
//! Backends call [`record`] once per request they make to their store (one S3 request, one
//! trait operation for memory and filesystem). A shell wraps the handling of each registry
//! request in [`count`] and learns what that request cost; outside [`count`], [`record`] does
//! nothing. The tally lives in a tokio task-local, so concurrent requests never mix.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;

/// Calls made, by operation name (S3's names: `GetObject`, `PutObject`, …).
pub type CallCounts = BTreeMap<&'static str, u64>;

tokio::task_local! {
    static CALLS: RefCell<CallCounts>;
}

/// Records one call of `operation` for the request being counted, if any.
pub fn record(operation: &'static str) {
    let _ = CALLS.try_with(|calls| *calls.borrow_mut().entry(operation).or_default() += 1);
}

/// Runs `work`, returning its output and the storage calls it made.
pub async fn count<F: Future>(work: F) -> (F::Output, CallCounts) {
    CALLS
        .scope(RefCell::new(CallCounts::new()), async {
            let output = work.await;
            (output, CALLS.with(|calls| calls.take()))
        })
        .await
}

/// The sum of all counts.
pub fn total(counts: &CallCounts) -> u64 {
    counts.values().sum()
}
