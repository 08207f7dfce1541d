//! Byte buffers of the read path, reused instead of freed: a retrieve
//! reads and decodes megabytes per request, and a freshly allocated buffer
//! costs a page fault (and a zeroed page) every 4 KiB the first time it
//! is written: a fifth of the first WADO-RS retrieve of a CT study in a
//! fresh process. A buffer lent out as [`Bytes`] comes back when the last
//! clone is dropped (after it was sent).

use std::sync::Mutex;

use bytes::Bytes;

/// Free buffers, together at most `max_bytes`, each at most `keep_max`.
pub(crate) struct BufPool {
    free: Mutex<Free>,
    max_bytes: usize,
    keep_max: usize,
}

struct Free {
    bufs: Vec<Vec<u8>>,
    /// Capacity of `bufs`, summed.
    bytes: usize,
}

impl BufPool {
    pub(crate) const fn new(max_bytes: usize, keep_max: usize) -> Self {
        Self {
            free: Mutex::new(Free {
                bufs: Vec::new(),
                bytes: 0,
            }),
            max_bytes,
            keep_max,
        }
    }

    /// A buffer for `want` bytes: the smallest free one that holds them,
    /// else a new one with room for them (and the largest free one is
    /// dropped, so the pool's sizes follow what is asked of it; growing it
    /// instead would copy its old bytes). A reused buffer keeps its earlier
    /// contents and length: resizing it over bytes already initialised
    /// writes nothing.
    pub(crate) fn take(&self, want: usize) -> Vec<u8> {
        let Ok(mut free) = self.free.lock() else {
            return Vec::new();
        };
        let pick = free
            .bufs
            .iter()
            .enumerate()
            .min_by_key(|(_, b)| {
                let cap = b.capacity();
                // Fitting ones first, smallest first; then largest first.
                if cap >= want {
                    (0, cap)
                } else {
                    (1, usize::MAX - cap)
                }
            })
            .map(|(i, _)| i);
        let Some(i) = pick else {
            return Vec::with_capacity(want);
        };
        let buf = free.bufs.swap_remove(i);
        free.bytes -= buf.capacity();
        if buf.capacity() < want {
            return Vec::with_capacity(want);
        }
        buf
    }

    /// Keeps `buf` for a later `take` if it fits the bounds.
    pub(crate) fn give(&self, buf: Vec<u8>) {
        let cap = buf.capacity();
        if cap == 0 || cap > self.keep_max {
            return;
        }
        if let Ok(mut free) = self.free.lock() {
            if free.bytes + cap <= self.max_bytes {
                free.bytes += cap;
                free.bufs.push(buf);
            }
        }
    }

    /// `buf` as shared bytes that return to this pool once the last clone
    /// is dropped.
    pub(crate) fn lend(&'static self, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Lent { buf, pool: self })
    }
}

struct Lent {
    buf: Vec<u8>,
    pool: &'static BufPool,
}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lent_buffers_come_back_within_bounds_and_best_fitting_first() {
        static POOL: BufPool = BufPool::new(300, 200);
        let lent = POOL.lend(Vec::with_capacity(100));
        let copy = lent.clone();
        drop(lent);
        let free_bytes = || POOL.free.lock().expect("pool lock").bytes;
        assert_eq!(free_bytes(), 0, "still shared: not back yet");
        drop(copy);
        assert_eq!(free_bytes(), 100, "the last clone gave it back");
        POOL.give(Vec::with_capacity(150));
        POOL.give(Vec::with_capacity(500)); // over keep_max
        POOL.give(Vec::with_capacity(100)); // over max_bytes (100 + 150 + 100)
        assert_eq!(free_bytes(), 250);
        assert_eq!(POOL.take(120).capacity(), 150, "smallest that fits");
        POOL.give(Vec::with_capacity(150));
        let fresh = POOL.take(400);
        assert!(fresh.capacity() >= 400, "none fits: a new one");
        assert_eq!(free_bytes(), 100, "... and the largest free one is dropped");
        assert_eq!(POOL.take(10).capacity(), 100);
        assert_eq!(free_bytes(), 0);
        assert!(POOL.take(10).capacity() >= 10, "empty: a new one");
    }
}
