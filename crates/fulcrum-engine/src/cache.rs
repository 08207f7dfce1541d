//! The read cache: decoded, verified chunk plaintext kept in memory, at
//! most a configured number of bytes, so a chunk read again and again (a
//! study reopened, the frames of one multi-frame instance requested one by
//! one, a series' metadata) is neither read from its pack nor decompressed
//! and hashed again.
//!
//! A chunk is admitted the second time it is decoded, not the first: its
//! id is remembered on the first read, which so costs nothing more. Copying
//! every chunk of a first read into fresh memory (page faults, a copy) cut
//! the first WADO-RS retrieve of a CT study from ~1.3 to ~0.9 GB/s, and
//! most data is read once (a backup streaming through) or never again.
//!
//! Keys are chunk ids, which name their content: an entry can never be
//! stale, whatever was written, moved between tiers, repaired or deleted
//! since, and every node of a cluster may keep its own. Eviction is
//! quick_cache's CLOCK-PRO-like policy (chunks read again while cached
//! outlive those that are not).

use bytes::Bytes;
use fulcrum_types::ChunkId;
use quick_cache::sync::Cache;
use quick_cache::{OptionsBuilder, Weighter};

/// Default bound of the read cache: 512 MiB.
pub const DEFAULT_READ_CACHE_BYTES: u64 = 512 * 1024 * 1024;

/// Bytes of bookkeeping counted per entry besides its plaintext.
const ENTRY_OVERHEAD: u64 = 96;

#[derive(Clone)]
struct ByLength;

impl Weighter<ChunkId, Bytes> for ByLength {
    fn weight(&self, _: &ChunkId, v: &Bytes) -> u64 {
        v.len() as u64 + ENTRY_OVERHEAD
    }
}

/// Decoded chunks by id, bounded in bytes, and the ids decoded once.
pub(crate) struct ReadCache {
    chunks: Cache<ChunkId, Bytes, ByLength>,
    seen: Cache<ChunkId, ()>,
    /// The heaviest entry the cache takes (half a shard: quick_cache
    /// refuses anything over a shard's "hot" share).
    max_entry: u64,
}

/// Each shard of the cache holds about this much (quick_cache rounds the
/// count of shards up to a power of two, so at least half of it), so that
/// a shard's hot half takes bulk chunks (up to 2 MiB) many times over:
/// quick_cache makes 4 shards per core by default, which on a large host
/// left shards too small to take any bulk chunk.
const MIN_SHARD_BYTES: u64 = 32 * 1024 * 1024;

impl ReadCache {
    /// A cache of at most `bytes` (None when 0: caching off).
    pub(crate) fn new(bytes: u64) -> Option<Self> {
        if bytes == 0 {
            return None;
        }
        // Sized for chunks of about 64 KiB on average (headers are ~16 KiB,
        // bulk data ~1 MiB); the table grows if there are more. As many
        // ids decoded once are remembered (32 bytes each and bookkeeping).
        let items = (bytes / (64 * 1024)).clamp(16, 1 << 20) as usize;
        // Chunks come in already read twice: half the space for those read
        // again since (quick_cache's "hot" part; by default 97 %, which
        // kept only the last few percent of a study just admitted).
        let shards = (bytes / MIN_SHARD_BYTES).clamp(1, 4 * crate::engine::cores() as u64);
        let options = OptionsBuilder::new()
            .estimated_items_capacity(items)
            .weight_capacity(bytes)
            .hot_allocation(0.5)
            .shards(shards as usize)
            .build()
            .ok()?;
        let chunks = Cache::with_options(options, ByLength, Default::default(), Default::default());
        Some(Self {
            max_entry: chunks.shard_capacity() / 2,
            chunks,
            seen: Cache::new(items),
        })
    }

    pub(crate) fn get(&self, id: &ChunkId) -> Option<Bytes> {
        self.chunks.get(id)
    }

    /// Offers `plain`, the verified plaintext of chunk `id` just decoded;
    /// returns the bytes to use. Decoded before, it is kept: as a copy,
    /// because `plain` may be a slice of a whole pack span or a pooled
    /// buffer larger than it, which the cache would then hold on to
    /// unaccounted.
    pub(crate) fn offer(&self, id: ChunkId, plain: Bytes) -> Bytes {
        if plain.len() as u64 + ENTRY_OVERHEAD > self.max_entry {
            // Too big for this cache: not worth a copy it would refuse.
            return plain;
        }
        if self.seen.remove(&id).is_none() {
            self.seen.insert(id, ());
            return plain;
        }
        let kept = Bytes::copy_from_slice(&plain);
        self.chunks.insert(id, kept.clone());
        kept
    }

    /// Bytes held (plaintext and bookkeeping) and the bound.
    pub(crate) fn usage(&self) -> (u64, u64) {
        (self.chunks.weight(), self.chunks.capacity())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u16) -> ChunkId {
        let mut b = [0u8; 32];
        b[..2].copy_from_slice(&n.to_le_bytes());
        ChunkId(b)
    }

    #[test]
    fn keeps_copies_within_the_bound() {
        assert!(ReadCache::new(0).is_none());
        let cache = ReadCache::new(1024 * 1024).expect("enabled");
        let pack = Bytes::from(vec![7u8; 256 * 1024]);
        let plain = pack.slice(1000..2000);
        // Decoded once: remembered, not kept.
        assert_eq!(cache.offer(id(1), plain.clone()), plain);
        assert!(cache.get(&id(1)).is_none());
        assert_eq!(cache.usage().0, 0);
        // Decoded again: kept, as a copy of its own size.
        assert_eq!(cache.offer(id(1), plain.clone()), plain);
        assert_eq!(cache.get(&id(1)).as_deref(), Some(&plain[..]));
        assert_eq!(cache.usage().0, 1000 + ENTRY_OVERHEAD);
        assert!(cache.get(&id(2)).is_none());
        for n in 2..200 {
            let b = Bytes::from(vec![n as u8; 16 * 1024]);
            cache.offer(id(n), b.clone());
            cache.offer(id(n), b);
        }
        let (used, bound) = cache.usage();
        assert!(used <= bound, "{used} > {bound}");
        assert!(
            used > bound / 2,
            "{used} of {bound}: the cache keeps little"
        );
    }

    #[test]
    fn a_small_cache_still_keeps_bulk_chunks() {
        // 16 MiB in 4 shards per core would leave shards whose hot half
        // refuses a 2 MiB chunk.
        let cache = ReadCache::new(16 * 1024 * 1024).expect("enabled");
        let chunk = Bytes::from(vec![1u8; 2 * 1024 * 1024]);
        for n in 0..4 {
            cache.offer(id(n), chunk.clone());
            cache.offer(id(n), chunk.clone());
        }
        let kept = (0..4).filter(|n| cache.get(&id(*n)).is_some()).count();
        assert_eq!(kept, 4, "{:?}", cache.usage());
        // Larger than any cache of this size takes: not kept (nor copied,
        // which this test cannot see).
        let tiny = ReadCache::new(1024 * 1024).expect("enabled");
        for _ in 0..2 {
            tiny.offer(id(9), chunk.clone());
        }
        assert!(tiny.get(&id(9)).is_none());
        assert_eq!(tiny.usage().0, 0);
    }
}
