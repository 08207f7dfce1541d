//! The read path: an object's chunk list → coalesced byte-range reads of
//! packs → decrypt → decompress → verify the hash → stream out. A chunk
//! that fails verification ends the stream with an error; its bytes are
//! never sent.

use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use fulcrum_catalog::ChunkLoc;
use fulcrum_types::Tier;
use futures::{Stream, StreamExt};
use tracing::error;

use crate::engine::Inner;
use crate::error::{EngineError, EngineResult};

pub type ByteStream = Pin<Box<dyn Stream<Item = EngineResult<Bytes>> + Send>>;

/// A chunk to read, the slice of its plaintext to emit, and the index of
/// the object it belongs to.
type Piece = (ChunkLoc, std::ops::Range<usize>, usize);

/// Chunks read from one pack with one ranged request.
struct Group {
    pack: String,
    tier: Tier,
    /// The pack range read: from the lowest chunk offset to the highest end.
    start: u64,
    end: u64,
    /// Stored bytes of the chunks (the rest of the span is read for nothing).
    wanted: u64,
    chunks: Vec<Piece>,
}

/// A group reads at most this span of a pack ...
const MAX_GROUP_BYTES: u64 = 16 * 1024 * 1024;
/// ... of which at most this much is not wanted (bytes between chunks).
const MAX_GAP: u64 = 1024 * 1024;

/// The chunks of `[start, end)` of an object made of `chunks`, each with
/// the slice of its plaintext that falls in the range.
fn slices(
    chunks: Vec<ChunkLoc>,
    start: u64,
    end: u64,
) -> impl Iterator<Item = (ChunkLoc, std::ops::Range<usize>)> {
    let mut pos = 0u64;
    chunks.into_iter().filter_map(move |c| {
        let (c_start, c_end) = (pos, pos + c.raw_len as u64);
        pos = c_end;
        if c_end <= start || c_start >= end {
            return None;
        }
        let slice = (start.max(c_start) - c_start) as usize..(end.min(c_end) - c_start) as usize;
        Some((c, slice))
    })
}

/// Groups consecutive chunks (in read order) that lie close together in
/// one pack, in any order there (a pack shared by concurrent writes holds
/// them in the order they finished), so each group is one ranged read.
fn plan(items: impl IntoIterator<Item = Piece>) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for (c, slice, tag) in items {
        let (c_start, c_end) = (c.offset, c.offset + c.stored_len as u64);
        if let Some(g) = groups.last_mut() {
            let (start, end) = (g.start.min(c_start), g.end.max(c_end));
            let wanted = g.wanted + c.stored_len as u64;
            if g.pack == c.pack_id
                && g.tier == c.tier
                && end - start <= MAX_GROUP_BYTES
                && (end - start).saturating_sub(wanted) <= MAX_GAP
            {
                g.start = start;
                g.end = end;
                g.wanted = wanted;
                g.chunks.push((c, slice, tag));
                continue;
            }
        }
        groups.push(Group {
            pack: c.pack_id.clone(),
            tier: c.tier,
            start: c_start,
            end: c_end,
            wanted: c.stored_len as u64,
            chunks: vec![(c, slice, tag)],
        });
    }
    groups
}

/// Pieces of several objects, in order, each tagged with its object's
/// index (see `Engine::read_objects`).
pub type TaggedStream = Pin<Box<dyn Stream<Item = EngineResult<(usize, Bytes)>> + Send>>;

/// Groups fetched and decoded at once.
const GROUPS_AHEAD: usize = 3;

/// A group's chunks are decoded in jobs of about this much plaintext, run
/// side by side (up to one per core, see `Inner::decoders`): one job per
/// group left a retrieve of many small instances stored together (one
/// group per batch) decoding on a single core while the others idled.
const DECODE_JOB_BYTES: u64 = 2 * 1024 * 1024;

/// A group with at most this much plaintext is decoded where it was read,
/// not handed to a blocking thread: tens of microseconds of work (a
/// header, a small object), less than the hand-offs cost, which were most
/// of the time of a metadata or frame request.
const INLINE_DECODE_BYTES: u64 = 64 * 1024;

/// `chunks` cut, in order, into runs of at least DECODE_JOB_BYTES of
/// plaintext (the last one may be shorter).
fn decode_jobs(chunks: Vec<Piece>) -> Vec<Vec<Piece>> {
    let mut jobs: Vec<Vec<Piece>> = Vec::new();
    let mut open = 0u64;
    for item in chunks {
        let raw = item.0.raw_len as u64;
        match jobs.last_mut() {
            Some(job) if open < DECODE_JOB_BYTES => job.push(item),
            _ => {
                open = 0;
                jobs.push(vec![item]);
            }
        }
        open += raw;
    }
    jobs
}

impl Group {
    /// One ranged read of `pack` covering `chunks`.
    fn spanning(pack: String, tier: Tier, chunks: Vec<Piece>) -> Self {
        let start = chunks.iter().map(|(c, _, _)| c.offset).min().unwrap_or(0);
        let end = chunks
            .iter()
            .map(|(c, _, _)| c.offset + u64::from(c.stored_len))
            .max()
            .unwrap_or(0);
        let wanted = chunks.iter().map(|(c, _, _)| u64::from(c.stored_len)).sum();
        Group {
            pack,
            tier,
            start,
            end,
            wanted,
            chunks,
        }
    }
}

impl Inner {
    /// The group's pieces in order: those the read cache holds from there,
    /// the others read (one span covering them) and decoded.
    async fn fetch_group(self: Arc<Self>, g: Group) -> EngineResult<Vec<(usize, Bytes)>> {
        let Some(cache) = &self.cache else {
            return self.fetch_span(g).await;
        };
        let cached: Vec<Option<Bytes>> =
            g.chunks.iter().map(|(c, _, _)| cache.get(&c.id)).collect();
        let hits = cached.iter().flatten().count();
        self.metrics.read_cache_hits.inc_by(hits as u64);
        self.metrics
            .read_cache_misses
            .inc_by((cached.len() - hits) as u64);
        if hits == 0 {
            return self.fetch_span(g).await;
        }
        let mut misses = Vec::new();
        let mut slots = Vec::with_capacity(cached.len());
        for ((c, slice, tag), hit) in g.chunks.into_iter().zip(cached) {
            match hit {
                Some(plain) => slots.push(Some((tag, plain.slice(slice)))),
                None => {
                    slots.push(None);
                    misses.push((c, slice, tag));
                }
            }
        }
        let decoded = match misses.is_empty() {
            true => Vec::new(),
            false => {
                let span = Group::spanning(g.pack, g.tier, misses);
                self.clone().fetch_span(span).await?
            }
        };
        // fetch_span yields one piece per chunk, in order.
        let mut decoded = decoded.into_iter();
        slots
            .into_iter()
            .map(|s| s.or_else(|| decoded.next()))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| EngineError::Internal("a cached read lost a piece".into()))
    }

    /// Reads the group's span of its pack and decodes its chunks.
    async fn fetch_span(self: Arc<Self>, g: Group) -> EngineResult<Vec<(usize, Bytes)>> {
        let first = g.start;
        let data = self.read_pack_span(&g.pack, g.tier, g.start..g.end).await?;
        let pack: Arc<str> = g.pack.into();
        let raw: u64 = g.chunks.iter().map(|(c, _, _)| u64::from(c.raw_len)).sum();
        if raw <= INLINE_DECODE_BYTES {
            return self.decode_job(&data, first, g.chunks, &pack);
        }
        let (this, data, pack) = (&self, &data, &pack);
        let jobs = decode_jobs(g.chunks).into_iter().map(|job| async move {
            // A closed semaphore cannot happen (it is never closed);
            // decoding without a slot would still be correct.
            let _slot = this.decoders.acquire().await.ok();
            let (inner, data, pack) = (this.clone(), data.clone(), pack.clone());
            tokio::task::spawn_blocking(move || inner.decode_job(&data, first, job, &pack))
                .await
                .map_err(|e| EngineError::Corrupt(format!("decoder task failed: {e}")))?
        });
        let decoded = futures::future::try_join_all(jobs).await?;
        Ok(decoded.into_iter().flatten().collect())
    }

    /// Decodes and verifies a run of chunks out of `data` (a pack's bytes
    /// from offset `first`).
    fn decode_job(
        &self,
        data: &fulcrum_store::Span,
        first: u64,
        job: Vec<Piece>,
        pack: &str,
    ) -> EngineResult<Vec<(usize, Bytes)>> {
        let mut out = Vec::with_capacity(job.len());
        for (c, slice, tag) in job {
            let at = (c.offset - first) as usize;
            let stored = data.slice(at..at + c.stored_len as usize);
            match self.codec.decode_shared(c.id, stored, c.flags, c.raw_len) {
                Ok(plain) => {
                    self.metrics.chunk_bytes_read.inc_by(u64::from(c.raw_len));
                    let plain = match &self.cache {
                        Some(cache) => cache.offer(c.id, plain),
                        None => plain,
                    };
                    out.push((tag, plain.slice(slice)));
                }
                Err(e) => {
                    self.metrics.corrupt_chunks.inc();
                    error!(pack, chunk = %c.id, error = %e, "chunk failed verification");
                    return Err(EngineError::from(e));
                }
            }
        }
        Ok(out)
    }

    /// Streams the planned groups' pieces in order, a few groups ahead.
    fn read_groups(self: &Arc<Self>, groups: Vec<Group>) -> TaggedStream {
        let inner = self.clone();
        let metrics_inner = self.clone();
        let s = futures::stream::iter(groups)
            .map(move |g| inner.clone().fetch_group(g))
            .buffered(GROUPS_AHEAD)
            .flat_map(move |r| {
                let items: Vec<EngineResult<(usize, Bytes)>> = match r {
                    Ok(v) => {
                        for (_, b) in &v {
                            metrics_inner.metrics.bytes_out.inc_by(b.len() as u64);
                        }
                        v.into_iter().map(Ok).collect()
                    }
                    Err(e) => vec![Err(e)],
                };
                futures::stream::iter(items)
            });
        Box::pin(s)
    }

    /// Streams `[start, end)` of the object made of `chunks`.
    pub(crate) fn read_chunks(
        self: &Arc<Self>,
        chunks: Vec<ChunkLoc>,
        start: u64,
        end: u64,
    ) -> ByteStream {
        let groups = plan(slices(chunks, start, end).map(|(c, s)| (c, s, 0)));
        Box::pin(self.read_groups(groups).map(|r| r.map(|(_, b)| b)))
    }

    /// Streams a range of each object, one after the other, each piece
    /// tagged with its object's index; neighbouring objects share ranged
    /// reads.
    pub(crate) fn read_many(
        self: &Arc<Self>,
        objects: Vec<(std::ops::Range<u64>, Vec<ChunkLoc>)>,
    ) -> TaggedStream {
        let items = objects
            .into_iter()
            .enumerate()
            .flat_map(|(i, (r, chunks))| {
                slices(chunks, r.start, r.end).map(move |(c, s)| (c, s, i))
            });
        self.read_groups(plan(items))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fulcrum_types::ChunkId;

    fn loc(n: u8, pack: &str, offset: u64, len: u32) -> ChunkLoc {
        ChunkLoc {
            id: ChunkId([n; 32]),
            pack_id: pack.into(),
            offset,
            stored_len: len,
            raw_len: len,
            flags: 0,
            tier: Tier::Hot,
        }
    }

    #[test]
    fn plan_coalesces_neighbours_and_cuts_the_range() {
        let chunks = vec![
            loc(1, "a", 0, 100),
            loc(2, "a", 100, 100),
            loc(3, "b", 0, 100),
            loc(4, "a", 200, 100),
        ];
        let tagged = |start, end| plan(slices(chunks.clone(), start, end).map(|(c, s)| (c, s, 0)));
        let g = tagged(0, 400);
        assert_eq!(g.len(), 3);
        assert_eq!(g[0].chunks.len(), 2);
        let g = tagged(150, 250);
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].chunks[0].1, 50..100);
        assert_eq!(g[1].chunks[0].1, 0..50);
        // Out of order within a pack still shares a read; far apart does not.
        let g = plan(
            [
                loc(1, "a", 300, 100),
                loc(2, "a", 0, 100),
                loc(3, "a", 100, 100),
            ]
            .into_iter()
            .map(|c| (c, 0..100, 0)),
        );
        assert_eq!(g.len(), 1);
        assert_eq!((g[0].start, g[0].end), (0, 400));
        let far = MAX_GAP + 500;
        let g = plan(
            [loc(1, "a", 0, 100), loc(2, "a", far, 100)]
                .into_iter()
                .map(|c| (c, 0..100, 0)),
        );
        assert_eq!(g.len(), 2);
    }

    #[test]
    fn decode_jobs_keep_order_and_hold_at_least_the_job_size() {
        const MIB: u32 = 1024 * 1024;
        let sizes = [MIB / 2, MIB / 2, MIB, MIB / 2, 3 * MIB, MIB, 10];
        let chunks = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| (loc(i as u8, "a", 0, n), 0..0, i))
            .collect();
        let jobs: Vec<Vec<usize>> = decode_jobs(chunks)
            .into_iter()
            .map(|j| j.into_iter().map(|(_, _, i)| i).collect())
            .collect();
        assert_eq!(jobs, vec![vec![0, 1, 2], vec![3, 4], vec![5, 6]]);
        assert!(decode_jobs(Vec::new()).is_empty());
    }
}
