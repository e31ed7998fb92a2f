//! The memory uploads hold while their bytes are on the way to storage: part-sized buffers,
//! within one budget for the whole registry, from a small pool.
//!
//! **Budget.** Every part buffer (and every manifest body being read) is charged to
//! [`Buffers`]' budget (`Config::upload_memory`) until storage has taken its bytes. An upload
//! that needs a buffer when the budget is spent waits, reading nothing more from its client
//! (TCP pushes back), until parts already received are stored. So any number of uploads, fast or
//! stalled, holds at most the budget (plus hyper's per-connection read buffers); a stalled one
//! is failed by the body idle timeout and gives its share back. There is no deadlock: a waiting
//! upload holds no buffer, parts in flight to storage always finish, and one buffer never asks
//! for more than the whole budget.
//!
//! **Pool.** Freeing many multi-MiB buffers from several threads leaves glibc's per-thread
//! arenas holding them, and a long upload's resident size then creeps up with its length.
//! Pooled buffers keep it flat.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Buffers kept for reuse; more are allocated (and freed) under heavier concurrency.
const POOL_MAX: usize = 4;

/// The budget is counted in units of this many bytes (a semaphore counts in `u32`).
const UNIT: usize = 1024;

static POOL: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// How uploads buffer: the part size, and the budget all buffers share.
#[derive(Clone)]
pub(crate) struct Buffers {
    part_size: usize,
    budget: Arc<Semaphore>,
    /// The budget's size, in units.
    units: usize,
}

/// Memory charged to the budget, given back when dropped.
pub(crate) struct Reserved {
    _permit: Option<OwnedSemaphorePermit>,
}

impl Buffers {
    /// Parts of `part_size` bytes (at least [`berth_storage::MIN_PART_SIZE`]) within a budget
    /// of `budget` bytes.
    pub(crate) fn new(part_size: usize, budget: usize) -> Self {
        let part_size = part_size.max(berth_storage::MIN_PART_SIZE as usize);
        let units = budget.div_ceil(UNIT).clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        Self { part_size, budget: Arc::new(Semaphore::new(units)), units }
    }

    pub(crate) fn part_size(&self) -> usize {
        self.part_size
    }

    /// Charges `bytes` to the budget (all of it, if `bytes` is more), waiting for room.
    pub(crate) async fn reserve(&self, bytes: usize) -> Reserved {
        let units = bytes.div_ceil(UNIT).min(self.units) as u32;
        let permit = Arc::clone(&self.budget).acquire_many_owned(units).await;
        // The semaphore is never closed.
        Reserved { _permit: permit.ok() }
    }

    /// An empty part-sized buffer charged to the budget, from the pool when one fits; waits
    /// while the budget is spent.
    pub(crate) async fn take(&self) -> Buffer {
        let reserved = self.reserve(self.part_size).await;
        let pooled = POOL.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let vec = match pooled {
            Some(buf) if buf.capacity() >= self.part_size => buf,
            _ => Vec::with_capacity(self.part_size),
        };
        Buffer { vec, _reserved: Some(reserved) }
    }
}

/// Bytes on their way to storage: a vector, and its charge to the budget, if any. The default
/// is empty and uncharged.
#[derive(Default)]
pub(crate) struct Buffer {
    vec: Vec<u8>,
    _reserved: Option<Reserved>,
}

impl Buffer {
    /// A small buffer outside the budget (the bytes an upload resumes with).
    pub(crate) fn small(vec: Vec<u8>) -> Self {
        Self { vec, _reserved: None }
    }

    /// Freezes the buffer into `Bytes` that give the vector back to the pool, and its charge
    /// back to the budget, when the last reference is dropped (once storage has sent the part).
    pub(crate) fn freeze(self) -> Bytes {
        Bytes::from_owner(Pooled(self))
    }
}

impl Deref for Buffer {
    type Target = Vec<u8>;

    fn deref(&self) -> &Vec<u8> {
        &self.vec
    }
}

impl DerefMut for Buffer {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.vec
    }
}

struct Pooled(Buffer);

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.0.vec
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if self.0._reserved.is_none() {
            return;
        }
        let mut buf = std::mem::take(&mut self.0.vec);
        let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < POOL_MAX {
            buf.clear();
            pool.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const MIB: usize = 1024 * 1024;

    /// A buffer beyond the budget waits until one given back frees room.
    #[tokio::test]
    async fn a_spent_budget_waits_until_a_buffer_is_given_back() {
        let buffers = Buffers::new(5 * MIB, 10 * MIB);
        let first = buffers.take().await;
        let second = buffers.take().await;
        let third = tokio::time::timeout(Duration::from_millis(100), buffers.take()).await;
        assert!(third.is_err(), "a third part-sized buffer fits a budget of two");
        let bytes = first.freeze();
        let waiting = tokio::spawn({
            let buffers = buffers.clone();
            async move { buffers.take().await.capacity() }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "the budget was given back before the bytes were dropped");
        drop(bytes);
        assert!(waiting.await.unwrap() >= 5 * MIB);
        drop(second);
    }

    /// One buffer larger than the whole budget still gets it (alone), rather than waiting for
    /// ever.
    #[tokio::test]
    async fn a_part_larger_than_the_budget_takes_all_of_it() {
        let buffers = Buffers::new(8 * MIB, MIB);
        let buffer = tokio::time::timeout(Duration::from_secs(1), buffers.take()).await.expect("no deadlock");
        assert!(tokio::time::timeout(Duration::from_millis(50), buffers.reserve(1)).await.is_err());
        drop(buffer);
        tokio::time::timeout(Duration::from_secs(1), buffers.reserve(1)).await.expect("given back");
    }
}
