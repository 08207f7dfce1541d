//! Pack files: immutable backend objects holding many stored chunks back to
//! back, followed by a trailer listing them so a pack can be re-indexed
//! without the catalog.
//!
//! Layout: `chunk bytes… | entries (49 bytes each) | count: u32 LE | magic`.
//! An entry is `id (32) | offset u64 | stored_len u32 | raw_len u32 | flags u8`.

use bytes::Bytes;
use fulcrum_types::{ChunkId, PackId};

use crate::backend::{Backend, BackendWriter};
use crate::codec::EncodedChunk;
use crate::error::{StoreError, StoreResult};

const MAGIC: &[u8; 8] = b"FCPACK01";
const ENTRY_LEN: usize = 32 + 8 + 4 + 4 + 1;
const FOOTER_LEN: usize = 4 + MAGIC.len();

/// Where a chunk sits in a pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackEntry {
    pub id: ChunkId,
    pub offset: u64,
    pub stored_len: u32,
    pub raw_len: u32,
    pub flags: u8,
}

/// The backend path of a pack: spread over 256 folders by its random part.
pub fn pack_path(id: &PackId) -> String {
    let s = id.as_str();
    format!("packs/{}/{}", &s[13..15], s)
}

/// Accumulates encoded chunks in memory until the pack is sealed.
#[derive(Debug, Default)]
pub struct PackBuilder {
    data: Vec<u8>,
    entries: Vec<PackEntry>,
}

impl PackBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// A builder that will hold about `bytes` of chunk data.
    pub fn with_capacity(bytes: usize) -> Self {
        Self {
            data: Vec::with_capacity(bytes),
            entries: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of chunk data held so far.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn entries(&self) -> &[PackEntry] {
        &self.entries
    }

    /// Appends a chunk and returns its entry.
    pub fn push(&mut self, chunk: &EncodedChunk) -> PackEntry {
        let entry = PackEntry {
            id: chunk.id,
            offset: self.data.len() as u64,
            stored_len: chunk.data.len() as u32,
            raw_len: chunk.raw_len,
            flags: chunk.flags,
        };
        self.data.extend_from_slice(&chunk.data);
        self.entries.push(entry.clone());
        entry
    }

    /// Appends a chunk already in stored form (repacking copies chunks
    /// without re-encoding them).
    pub fn push_stored(
        &mut self,
        id: ChunkId,
        stored: &[u8],
        raw_len: u32,
        flags: u8,
    ) -> PackEntry {
        let entry = PackEntry {
            id,
            offset: self.data.len() as u64,
            stored_len: stored.len() as u32,
            raw_len,
            flags,
        };
        self.data.extend_from_slice(stored);
        self.entries.push(entry.clone());
        entry
    }

    /// Moves all chunks of `other` to the end of this builder and returns
    /// their entries at their new offsets.
    pub fn append(&mut self, other: PackBuilder) -> Vec<PackEntry> {
        let moved = shifted(other.entries, self.data.len() as u64);
        self.data.extend_from_slice(&other.data);
        self.entries.extend(moved.iter().cloned());
        moved
    }

    /// Finishes the pack: its chunk bytes and trailer as separate buffers
    /// (written back to back, never copied into one), and its entries.
    pub fn seal(self) -> (Vec<Bytes>, Vec<PackEntry>) {
        let trailer = trailer(&self.entries);
        (
            vec![Bytes::from(self.data), Bytes::from(trailer)],
            self.entries,
        )
    }
}

/// `entries` moved `base` bytes further into a pack.
fn shifted(entries: Vec<PackEntry>, base: u64) -> Vec<PackEntry> {
    entries
        .into_iter()
        .map(|mut e| {
            e.offset += base;
            e
        })
        .collect()
}

/// The trailer listing `entries`, with the footer.
fn trailer(entries: &[PackEntry]) -> Vec<u8> {
    let mut t = Vec::with_capacity(entries.len() * ENTRY_LEN + FOOTER_LEN);
    for e in entries {
        t.extend_from_slice(e.id.as_bytes());
        t.extend_from_slice(&e.offset.to_le_bytes());
        t.extend_from_slice(&e.stored_len.to_le_bytes());
        t.extend_from_slice(&e.raw_len.to_le_bytes());
        t.push(e.flags);
    }
    t.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    t.extend_from_slice(MAGIC);
    t
}

/// A pack streamed to the backend chunk by chunk, for bodies too big to
/// hold in memory; it becomes visible (and durable) only when finished.
pub struct PackStream {
    id: PackId,
    writer: BackendWriter,
    entries: Vec<PackEntry>,
    len: u64,
}

impl PackStream {
    /// Opens a new pack and writes what `builder` holds so far.
    pub async fn start(backend: &Backend, builder: PackBuilder) -> StoreResult<Self> {
        let id = PackId::generate();
        let mut writer = backend.writer(&pack_path(&id)).await?;
        let len = builder.data.len() as u64;
        if len > 0 {
            writer.write(Bytes::from(builder.data)).await?;
        }
        Ok(Self {
            id,
            writer,
            entries: builder.entries,
            len,
        })
    }

    /// Bytes of chunk data written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub async fn push(&mut self, chunk: EncodedChunk) -> StoreResult<()> {
        self.entries.push(PackEntry {
            id: chunk.id,
            offset: self.len,
            stored_len: chunk.data.len() as u32,
            raw_len: chunk.raw_len,
            flags: chunk.flags,
        });
        self.len += chunk.data.len() as u64;
        self.writer.write(chunk.data).await
    }

    /// Appends every chunk `builder` holds (one write); returns their
    /// entries at their offsets in this pack.
    pub async fn append(&mut self, builder: PackBuilder) -> StoreResult<Vec<PackEntry>> {
        let moved = shifted(builder.entries, self.len);
        self.len += builder.data.len() as u64;
        self.entries.extend(moved.iter().cloned());
        self.writer.write(Bytes::from(builder.data)).await?;
        Ok(moved)
    }

    /// This pack's id.
    pub fn id(&self) -> &PackId {
        &self.id
    }

    /// Writes the trailer and closes the pack durably; returns its id,
    /// total size and entries.
    pub async fn finish(mut self) -> StoreResult<(PackId, u64, Vec<PackEntry>)> {
        let t = trailer(&self.entries);
        let size = self.len + t.len() as u64;
        self.writer.write(Bytes::from(t)).await?;
        self.writer.close().await?;
        Ok((self.id, size, self.entries))
    }
}

/// Reads the trailer of a whole pack.
pub fn parse_trailer(pack: &str, data: &[u8]) -> StoreResult<Vec<PackEntry>> {
    let bad = |reason: &str| StoreError::BadPack {
        pack: pack.to_string(),
        reason: reason.to_string(),
    };
    if data.len() < FOOTER_LEN || &data[data.len() - MAGIC.len()..] != MAGIC {
        return Err(bad("missing pack footer"));
    }
    let count_at = data.len() - FOOTER_LEN;
    let count = u32::from_le_bytes(
        data[count_at..count_at + 4]
            .try_into()
            .map_err(|_| bad("footer"))?,
    ) as usize;
    let table_len = count
        .checked_mul(ENTRY_LEN)
        .ok_or_else(|| bad("entry count overflows"))?;
    let start = count_at
        .checked_sub(table_len)
        .ok_or_else(|| bad("trailer longer than pack"))?;
    let mut out = Vec::with_capacity(count);
    for raw in data[start..count_at].chunks_exact(ENTRY_LEN) {
        let u32_at = |i: usize| u32::from_le_bytes([raw[i], raw[i + 1], raw[i + 2], raw[i + 3]]);
        let mut off = [0u8; 8];
        off.copy_from_slice(&raw[32..40]);
        let e = PackEntry {
            id: ChunkId::from_slice(&raw[..32]).map_err(|_| bad("entry id"))?,
            offset: u64::from_le_bytes(off),
            stored_len: u32_at(40),
            raw_len: u32_at(44),
            flags: raw[48],
        };
        let end = e.offset.checked_add(e.stored_len as u64);
        if end.is_none_or(|end| end > start as u64) {
            return Err(bad("entry points past the chunk area"));
        }
        out.push(e);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `catalog_dump` fuzz target: an entry whose offset +
    /// length overflows u64 panicked instead of being a bad pack.
    #[test]
    fn fuzz_trailer_entry_past_u64_is_a_bad_pack() {
        let data = include_bytes!("../tests/fuzz/pack_trailer_offset_overflow");
        let err = parse_trailer("p", data).expect_err("overflowing entry");
        assert!(matches!(err, StoreError::BadPack { .. }), "{err}");
    }
    use crate::codec::Codec;

    #[test]
    fn sealed_pack_lists_its_chunks() {
        let codec = Codec::new(None, 3);
        let mut b = PackBuilder::new();
        let mut chunks = Vec::new();
        for i in 0..5u8 {
            let raw = vec![i; 1000 + i as usize];
            let enc = codec.encode(codec.id_of(&raw), bytes::Bytes::from(raw.clone()));
            b.push(&enc);
            chunks.push((raw, enc));
        }
        let (parts, entries) = b.seal();
        let bytes = parts.concat();
        let parsed = parse_trailer("p", &bytes).expect("valid pack");
        assert_eq!(parsed, entries);
        for (e, (raw, _)) in parsed.iter().zip(&chunks) {
            let stored = &bytes[e.offset as usize..(e.offset + e.stored_len as u64) as usize];
            assert_eq!(
                &codec
                    .decode(e.id, stored, e.flags, e.raw_len)
                    .expect("decodes"),
                raw
            );
        }
        assert!(parse_trailer("p", &bytes[..bytes.len() - 1]).is_err());
    }
}
