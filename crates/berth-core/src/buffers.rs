//! A small pool of part-sized buffers, so streaming uploads reuse memory instead of churning
//! the allocator: freeing many multi-MiB buffers from several threads leaves glibc's
//! per-thread arenas holding them, and a long upload's resident size then creeps up with its
//! length. Pooled buffers keep it flat.

use std::sync::Mutex;

use bytes::Bytes;

/// Buffers kept for reuse; more are allocated (and freed) under heavier concurrency.
const POOL_MAX: usize = 4;

static POOL: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// An empty buffer with room for at least `capacity` bytes, from the pool when one fits.
pub(crate) fn take(capacity: usize) -> Vec<u8> {
    let pooled = POOL.lock().unwrap_or_else(|p| p.into_inner()).pop();
    match pooled {
        Some(buf) if buf.capacity() >= capacity => buf,
        _ => Vec::with_capacity(capacity),
    }
}

/// Freezes `buf` into `Bytes` that give the buffer back to the pool when the last reference
/// is dropped (once storage has sent the part).
pub(crate) fn freeze(buf: Vec<u8>) -> Bytes {
    Bytes::from_owner(Pooled(buf))
}

struct Pooled(Vec<u8>);

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let mut buf = std::mem::take(&mut self.0);
        let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
        if pool.len() < POOL_MAX {
            buf.clear();
            pool.push(buf);
        }
    }
}
