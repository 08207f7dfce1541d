//! Content-defined chunking with FastCDC (v2020): cuts a byte stream where
//! its content says, so an insertion or an edit shifts only the chunks it
//! touches and identical regions of different objects get identical chunks.

use bytes::{Buf, Bytes, BytesMut};
use fastcdc::v2020::{FastCDC, Normalization};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Minimum, average and maximum chunk sizes in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkParams {
    pub min: usize,
    pub avg: usize,
    pub max: usize,
}

impl ChunkParams {
    /// For bulk data (object bodies, pixel data): ~1 MiB chunks, at most
    /// 2 MiB (the read-ahead each body in flight holds in memory).
    pub const BULK: ChunkParams = ChunkParams {
        min: 256 * 1024,
        avg: 1024 * 1024,
        max: 2 * 1024 * 1024,
    };
    /// For small structured regions (DICOM headers): ~16 KiB chunks.
    pub const SMALL: ChunkParams = ChunkParams {
        min: 4 * 1024,
        avg: 16 * 1024,
        max: 64 * 1024,
    };

    /// Length of the first chunk of `data` (all of it when `at_eof` and it is
    /// short); `data` must hold at least `max` bytes unless `at_eof`.
    pub fn cut(&self, data: &[u8]) -> usize {
        if data.len() <= self.min {
            return data.len();
        }
        let cdc = FastCDC::with_level(data, self.min, self.avg, self.max, Normalization::Level1);
        let (_, end) = cdc.cut(0, data.len().min(self.max));
        end.max(1)
    }

    /// Splits an in-memory buffer into chunk lengths.
    pub fn split(&self, data: &[u8]) -> Vec<usize> {
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < data.len() {
            let n = self.cut(&data[pos..]);
            out.push(n);
            pos += n;
        }
        out
    }
}

/// Reads an async byte source and yields its chunks in order, holding at
/// most `max` bytes (plus one read) in memory.
pub struct Chunker<R> {
    source: R,
    params: ChunkParams,
    buf: BytesMut,
    eof: bool,
    total: u64,
}

impl<R: AsyncRead + Unpin> Chunker<R> {
    pub fn new(source: R, params: ChunkParams) -> Self {
        Self {
            source,
            params,
            buf: BytesMut::with_capacity(params.max),
            eof: false,
            total: 0,
        }
    }

    /// Bytes read from the source so far.
    pub fn bytes_read(&self) -> u64 {
        self.total
    }

    /// The next chunk, or `None` at the end of the source.
    pub async fn next_chunk(&mut self) -> std::io::Result<Option<Bytes>> {
        while !self.eof && self.buf.len() < self.params.max {
            if self.buf.capacity() - self.buf.len() < 64 * 1024 {
                self.buf
                    .reserve(self.params.max - self.buf.len().min(self.params.max / 2));
            }
            let n = self.source.read_buf(&mut self.buf).await?;
            if n == 0 {
                self.eof = true;
            }
            self.total += n as u64;
        }
        if self.buf.is_empty() {
            return Ok(None);
        }
        let n = self.params.cut(&self.buf);
        if self.eof && n == self.buf.len() {
            // The last chunk: the buffer will not be read into again, so it
            // becomes the chunk itself (a body smaller than one chunk, such
            // as an image's pixel data, is never copied here).
            return Ok(Some(self.buf.split().freeze()));
        }
        // Copy the chunk out rather than splitting the buffer: a split-off
        // chunk would pin the whole read buffer while it is hashed, packed
        // and MD5'd, and the buffer could never be reused in place.
        let chunk = Bytes::copy_from_slice(&self.buf[..n]);
        self.buf.advance(n);
        Ok(Some(chunk))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    async fn chunk_all(data: &[u8], params: ChunkParams) -> Vec<Bytes> {
        let mut c = Chunker::new(data, params);
        let mut out = Vec::new();
        while let Some(ch) = c.next_chunk().await.expect("in-memory read") {
            out.push(ch);
        }
        out
    }

    #[tokio::test]
    async fn chunks_reassemble_and_respect_bounds() {
        let data = pseudo_random(9 * 1024 * 1024 + 17, 1);
        let chunks = chunk_all(&data, ChunkParams::BULK).await;
        assert_eq!(chunks.concat(), data);
        for c in &chunks[..chunks.len() - 1] {
            assert!(c.len() >= ChunkParams::BULK.min && c.len() <= ChunkParams::BULK.max);
        }
        let lens: Vec<usize> = chunks.iter().map(|c| c.len()).collect();
        assert_eq!(lens, ChunkParams::BULK.split(&data));
    }

    #[tokio::test]
    async fn an_edit_in_the_middle_changes_few_chunks() {
        let a = pseudo_random(8 * 1024 * 1024, 2);
        let mut b = a.clone();
        for byte in &mut b[4_000_000..4_001_024] {
            *byte ^= 0xff;
        }
        let ca = chunk_all(&a, ChunkParams::BULK).await;
        let cb = chunk_all(&b, ChunkParams::BULK).await;
        let changed = cb.iter().filter(|c| !ca.contains(c)).count();
        assert!(changed <= 2, "{changed} chunks changed");
    }

    #[tokio::test]
    async fn empty_source_has_no_chunks() {
        assert!(chunk_all(&[], ChunkParams::SMALL).await.is_empty());
    }
}
