//! Moving chunks between tiers: read each source pack's span once, decode
//! and verify every chunk, re-encode it with the destination tier's codec
//! (zstd at that tier's level; encrypted again when the engine is), write
//! the new packs durably, then relocate the chunk rows in one catalog
//! transaction per new pack. A crash before a relocation commits leaves
//! only an orphan pack that GC deletes; the source packs keep serving
//! until then, and become sparse (GC repacks or deletes them) after.

use std::collections::HashMap;

use bytes::Bytes;
use fulcrum_catalog::{ChunkLoc, Relocation};
use fulcrum_store::{pack_path, EncodedChunk, PackBuilder};
use fulcrum_types::{ChunkId, PackId, Tier};
use futures::StreamExt;
use tracing::warn;

use crate::engine::{Engine, Inner};
use crate::error::{EngineError, EngineResult};
use crate::verify::VerifyProgress;

/// What one move did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct MoveStats {
    pub chunks: u64,
    /// Stored bytes read from the source tier.
    pub read_bytes: u64,
    /// Bytes of the packs written to the destination tier.
    pub written_bytes: u64,
    pub packs_written: u64,
    /// Chunks that failed verification and were left where they were.
    pub damaged_chunks: u64,
}

impl Inner {
    /// Writes `builder` (if it holds anything) to `tier`, points the
    /// chunks of `moved` (chunk → the pack it came from) at the new pack
    /// and retires the packs of `sources` left empty; returns (packs
    /// retired, bytes written). Shared by tier moves and GC's repacking.
    pub(crate) async fn write_relocated(
        &self,
        tier: Tier,
        builder: PackBuilder,
        moved: &mut Vec<(ChunkId, String)>,
        sources: &mut Vec<String>,
    ) -> EngineResult<(u64, u64)> {
        let out = if builder.is_empty() {
            let retired = self
                .catalog
                .relocate_chunks(tier, None, &[], sources)
                .await?;
            (retired, 0)
        } else {
            let (pid, row, entries) = self.write_pack_to(tier, builder).await?;
            let from: HashMap<ChunkId, String> = moved.drain(..).collect();
            let rows: Vec<Relocation> = entries
                .iter()
                .filter_map(|e| {
                    from.get(&e.id).map(|p| Relocation {
                        chunk: e.id,
                        from_pack: p.clone(),
                        offset: e.offset as i64,
                        stored_len: e.stored_len as i64,
                        flags: e.flags as i64,
                    })
                })
                .collect();
            let retired = self
                .catalog
                .relocate_chunks(tier, Some((pid.as_str(), row.size)), &rows, sources)
                .await?;
            (retired, row.size as u64)
        };
        moved.clear();
        sources.clear();
        Ok(out)
    }

    /// Reads the span of `pack` (on `tier`) that holds `chunks`.
    pub(crate) async fn read_span(
        &self,
        tier: Tier,
        pack: &str,
        chunks: &[ChunkLoc],
    ) -> EngineResult<(u64, Bytes)> {
        let pid = PackId::parse(pack).map_err(|e| EngineError::Corrupt(e.to_string()))?;
        let first = chunks.iter().map(|c| c.offset).min().unwrap_or(0);
        let last = chunks
            .iter()
            .map(|c| c.offset + c.stored_len as u64)
            .max()
            .unwrap_or(first);
        let data = self
            .backend_for(tier)?
            .read_range(&pack_path(&pid), first..last)
            .await?;
        Ok((first, data))
    }
}

/// Decodes (verifying the hash) and re-encodes one chunk with `codec`.
fn reencode(
    codec: &fulcrum_store::Codec,
    c: &ChunkLoc,
    span: &Bytes,
    base: u64,
) -> Result<EncodedChunk, String> {
    let at = (c.offset - base) as usize;
    let stored = span
        .get(at..at + c.stored_len as usize)
        .ok_or_else(|| "chunk lies past the end of its pack".to_string())?;
    let raw = codec
        .decode(c.id, stored, c.flags, c.raw_len)
        .map_err(|e| e.to_string())?;
    // The same layout hint, so sample planes stay split in the archive.
    let layout = fulcrum_store::Layout::of_flags(c.flags);
    Ok(codec.encode_as(c.id, Bytes::from(raw), layout))
}

impl Engine {
    /// Moves `chunks` (sorted by pack and offset, any source tier) to
    /// `to`. Damaged chunks are logged and left in place.
    pub(crate) async fn move_chunks(
        &self,
        chunks: Vec<ChunkLoc>,
        to: Tier,
        progress: &mut dyn VerifyProgress,
    ) -> EngineResult<MoveStats> {
        let inner = &self.inner;
        let mut stats = MoveStats::default();
        let mut builder = PackBuilder::new();
        let mut moved: Vec<(ChunkId, String)> = Vec::new();
        let mut sources: Vec<String> = Vec::new();
        let workers = crate::engine::cores();
        let mut groups: Vec<(String, Vec<ChunkLoc>)> = Vec::new();
        for c in chunks.into_iter().filter(|c| c.tier != to) {
            match groups.last_mut() {
                Some((p, g)) if *p == c.pack_id => g.push(c),
                _ => groups.push((c.pack_id.clone(), vec![c])),
            }
        }
        for (pack, group) in groups {
            let (base, span) = inner.read_span(group[0].tier, &pack, &group).await?;
            stats.read_bytes += span.len() as u64;
            let codec = inner.codec_for(to).clone();
            let encoded: Vec<(ChunkLoc, Result<EncodedChunk, String>)> =
                futures::stream::iter(group)
                    .map(|c| {
                        let (codec, span) = (codec.clone(), span.clone());
                        tokio::task::spawn_blocking(move || {
                            let r = reencode(&codec, &c, &span, base);
                            (c, r)
                        })
                    })
                    .buffered(workers)
                    .collect::<Vec<_>>()
                    .await
                    .into_iter()
                    .collect::<Result<_, _>>()
                    .map_err(|e| EngineError::Corrupt(format!("encoder task failed: {e}")))?;
            for (c, r) in encoded {
                match r {
                    Ok(enc) => {
                        builder.push(&enc);
                        moved.push((c.id, pack.clone()));
                        stats.chunks += 1;
                    }
                    Err(e) => {
                        inner.metrics.corrupt_chunks.inc();
                        warn!(pack = %pack, chunk = %c.id, error = %e, "damaged chunk left in place");
                        stats.damaged_chunks += 1;
                    }
                }
            }
            sources.push(pack);
            progress.advance(span.len() as u64);
            if builder.len() >= inner.cfg.pack_target {
                let b = std::mem::take(&mut builder);
                let (_, written) = inner
                    .write_relocated(to, b, &mut moved, &mut sources)
                    .await?;
                stats.written_bytes += written;
                stats.packs_written += 1;
            }
        }
        if !builder.is_empty() {
            let (_, written) = inner
                .write_relocated(to, builder, &mut moved, &mut sources)
                .await?;
            stats.written_bytes += written;
            stats.packs_written += 1;
        }
        if to == Tier::Archive {
            inner.metrics.archived_bytes.inc_by(stats.written_bytes);
        }
        Ok(stats)
    }
}
