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

/// Chunks read from one pack with one ranged request.
struct Group {
    pack: String,
    tier: Tier,
    /// (chunk, slice of its plaintext to emit)
    chunks: Vec<(ChunkLoc, std::ops::Range<usize>)>,
}

const MAX_GROUP_BYTES: u64 = 16 * 1024 * 1024;
const MAX_GAP: u64 = 1024 * 1024;

fn plan(chunks: Vec<ChunkLoc>, start: u64, end: u64) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    let mut pos = 0u64;
    for c in chunks {
        let (c_start, c_end) = (pos, pos + c.raw_len as u64);
        pos = c_end;
        if c_end <= start || c_start >= end {
            continue;
        }
        let slice = (start.max(c_start) - c_start) as usize..(end.min(c_end) - c_start) as usize;
        if let Some(g) = groups.last_mut() {
            if let Some((last, _)) = g.chunks.last() {
                let first = &g.chunks[0].0;
                let last_end = last.offset + last.stored_len as u64;
                if g.pack == c.pack_id
                    && c.offset >= last_end
                    && c.offset - last_end <= MAX_GAP
                    && c.offset + c.stored_len as u64 - first.offset <= MAX_GROUP_BYTES
                {
                    g.chunks.push((c, slice));
                    continue;
                }
            }
        }
        groups.push(Group {
            pack: c.pack_id.clone(),
            tier: c.tier,
            chunks: vec![(c, slice)],
        });
    }
    groups
}

impl Inner {
    async fn fetch_group(self: Arc<Self>, g: Group) -> EngineResult<Vec<Bytes>> {
        let first = g.chunks[0].0.offset;
        let last = g
            .chunks
            .last()
            .map(|(c, _)| c.offset + c.stored_len as u64)
            .unwrap_or(first);
        let data = self.read_pack_range(&g.pack, g.tier, first..last).await?;
        let inner = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::with_capacity(g.chunks.len());
            for (c, slice) in g.chunks {
                let at = (c.offset - first) as usize;
                let stored = &data[at..at + c.stored_len as usize];
                match inner.codec.decode(c.id, stored, c.flags, c.raw_len) {
                    Ok(plain) => {
                        let plain = Bytes::from(plain);
                        out.push(plain.slice(slice));
                    }
                    Err(e) => {
                        inner.metrics.corrupt_chunks.inc();
                        error!(pack = %g.pack, chunk = %c.id, error = %e, "chunk failed verification");
                        return Err(EngineError::from(e));
                    }
                }
            }
            Ok(out)
        })
        .await
        .map_err(|e| EngineError::Corrupt(format!("decoder task failed: {e}")))?
    }

    /// Streams `[start, end)` of the object made of `chunks`.
    pub(crate) fn read_chunks(
        self: &Arc<Self>,
        chunks: Vec<ChunkLoc>,
        start: u64,
        end: u64,
    ) -> ByteStream {
        let groups = plan(chunks, start, end);
        let inner = self.clone();
        let metrics_inner = self.clone();
        let s = futures::stream::iter(groups)
            .map(move |g| inner.clone().fetch_group(g))
            .buffered(2)
            .flat_map(move |r| {
                let items: Vec<EngineResult<Bytes>> = match r {
                    Ok(v) => {
                        for b in &v {
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
        let g = plan(chunks.clone(), 0, 400);
        assert_eq!(g.len(), 3);
        assert_eq!(g[0].chunks.len(), 2);
        let g = plan(chunks, 150, 250);
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].chunks[0].1, 50..100);
        assert_eq!(g[1].chunks[0].1, 0..50);
    }
}
