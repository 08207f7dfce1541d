//! Turns a chunk's plaintext into its stored form and back: content id
//! (BLAKE3, keyed when encrypted), zstd compression when it pays (of the
//! bytes split into planes when they are multi-byte samples), AEAD
//! encryption (XChaCha20-Poly1305), and hash verification on every decode.

use bytes::Bytes;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use fulcrum_types::ChunkId;

use crate::bufpool::BufPool;
use crate::error::{StoreError, StoreResult};
use crate::key::MasterKey;

/// The stored bytes are zstd-compressed.
pub const FLAG_ZSTD: u8 = 1;
/// The stored bytes are `nonce(24) || ciphertext || tag(16)`.
pub const FLAG_AEAD: u8 = 2;

/// The compressed bytes are the plaintext split into 2 byte planes (see
/// [`Layout::Samples2`]); only together with [`FLAG_ZSTD`].
pub const FLAG_PLANES2: u8 = 4;
/// The same with 4 byte planes ([`Layout::Samples4`]).
pub const FLAG_PLANES4: u8 = 8;

const KNOWN_FLAGS: u8 = FLAG_ZSTD | FLAG_AEAD | FLAG_PLANES2 | FLAG_PLANES4;

const NONCE_LEN: usize = 24;

/// What a chunk's bytes are, as far as compression cares: a hint from the
/// writer (e.g. native 16-bit pixel data), never needed to read it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    /// Any bytes.
    #[default]
    Bytes,
    /// A run of 2-byte samples (16-bit pixel data, either byte order).
    /// Their high bytes vary slowly and their low bytes are noisy: split
    /// into a plane of each, zstd compresses them smaller and about twice
    /// as fast as interleaved.
    Samples2,
    /// A run of 4-byte samples (32-bit integer or float pixel data, dose
    /// grids): split into 4 planes.
    Samples4,
}

impl Layout {
    fn width(self) -> usize {
        match self {
            Layout::Bytes => 1,
            Layout::Samples2 => 2,
            Layout::Samples4 => 4,
        }
    }

    fn flag(self) -> u8 {
        match self {
            Layout::Bytes => 0,
            Layout::Samples2 => FLAG_PLANES2,
            Layout::Samples4 => FLAG_PLANES4,
        }
    }

    /// The layout a stored chunk was compressed with (to re-encode it the
    /// same way, e.g. at another compression level).
    pub fn of_flags(flags: u8) -> Layout {
        if flags & FLAG_PLANES4 != 0 {
            Layout::Samples4
        } else if flags & FLAG_PLANES2 != 0 {
            Layout::Samples2
        } else {
            Layout::Bytes
        }
    }
}

/// Splits `raw` into `width` planes (every `width`-th byte from offset 0,
/// then from 1, ...); a tail shorter than one sample stays at the end.
/// The planes go to this thread's planes buffer, reused from chunk to
/// chunk (zero-filled only when it grows), and `f` gets them.
fn with_planes<T>(raw: &[u8], width: usize, f: impl FnOnce(&[u8]) -> T) -> T {
    PLANES.with(|cell| {
        let mut buf = cell.borrow_mut();
        if buf.len() < raw.len() {
            buf.resize(raw.len(), 0);
        }
        let out = &mut buf[..raw.len()];
        let body = raw.len() / width * width;
        let (planes, rest) = out.split_at_mut(body);
        match width {
            2 => split2(&raw[..body], planes),
            4 => split4(&raw[..body], planes),
            _ => planes.copy_from_slice(&raw[..body]),
        }
        rest.copy_from_slice(&raw[body..]);
        let res = f(out);
        trim_planes(&mut buf);
        res
    })
}

/// Largest buffer kept for reuse (per-thread planes, pooled output): a
/// chunk's worth.
const KEEP_MAX: usize = 8 * 1024 * 1024;

/// Keeps no more than a chunk's worth in a thread's planes buffer.
fn trim_planes(buf: &mut Vec<u8>) {
    if buf.capacity() > KEEP_MAX {
        *buf = Vec::new();
    }
}

#[cfg(test)]
fn to_planes(raw: &[u8], width: usize) -> Vec<u8> {
    with_planes(raw, width, <[u8]>::to_vec)
}

/// Inverts [`to_planes`], joining the samples straight into a buffer
/// taken from the pool of output buffers ([`OUT_POOL`]): a buffer used
/// before is neither zero-filled nor faulted in again.
fn from_planes(planes: &[u8], width: usize) -> Vec<u8> {
    let n = planes.len() / width;
    let mut out = OUT_POOL.take(planes.len());
    // Shrinking or reusing initialised bytes writes nothing; only growth
    // is zero-filled.
    out.resize(planes.len(), 0);
    let body = n * width;
    let plane = |k: usize| &planes[k * n..(k + 1) * n];
    match width {
        2 => join2([plane(0), plane(1)], &mut out[..body]),
        4 => join4([plane(0), plane(1), plane(2), plane(3)], &mut out[..body]),
        _ => out[..body].copy_from_slice(&planes[..body]),
    }
    out[body..].copy_from_slice(&planes[body..]);
    out
}

/// Joined sample buffers, given back once sent: a retrieve keeps tens of
/// decoded chunks in flight (parts read ahead, several decoders), and a
/// pool smaller than that hands out fresh, zero-filled buffers for most.
static OUT_POOL: BufPool = BufPool::new(64 * 1024 * 1024, KEEP_MAX);

// Both directions walk the samples once, in order, reading or writing the
// planes side by side (zips, so no bounds checks; the joins vectorize, the
// 2-byte split gathers bytes with shifts instead); a pass per plane with
// strided accesses was several times slower, a tenth of a CT study's STOW
// or WADO CPU.

/// Eight samples at a time, as two 64-bit words whose even and odd bytes
/// are gathered by shifts and masks (the byte-by-byte loop does not
/// vectorize: 2.7 GB/s on the benchmark machine, this 8 GB/s, 7 % of a CT
/// study's STOW-RS CPU before); the last few samples one by one.
fn split2(raw: &[u8], planes: &mut [u8]) {
    /// The even bytes of `v`, in order, in its low half.
    fn evens(v: u64) -> u64 {
        let v = v & 0x00ff_00ff_00ff_00ff;
        let v = (v | (v >> 8)) & 0x0000_ffff_0000_ffff;
        (v | (v >> 16)) & 0x0000_0000_ffff_ffff
    }
    let n = raw.len() / 2;
    let (p0, p1) = planes.split_at_mut(n);
    let (eights, _) = raw.as_chunks::<16>();
    let (a8, a_rest) = p0.as_chunks_mut::<8>();
    let (b8, b_rest) = p1.as_chunks_mut::<8>();
    for ((s, a), b) in eights.iter().zip(a8).zip(b8) {
        let (words, _) = s.as_chunks::<8>();
        let (x, y) = (u64::from_le_bytes(words[0]), u64::from_le_bytes(words[1]));
        *a = (evens(x) | evens(y) << 32).to_le_bytes();
        *b = (evens(x >> 8) | evens(y >> 8) << 32).to_le_bytes();
    }
    let (samples, _) = raw[eights.len() * 16..].as_chunks::<2>();
    for ((s, a), b) in samples.iter().zip(a_rest).zip(b_rest) {
        *a = s[0];
        *b = s[1];
    }
}

fn split4(raw: &[u8], planes: &mut [u8]) {
    let (samples, _) = raw.as_chunks::<4>();
    let n = samples.len();
    let (p01, p23) = planes.split_at_mut(2 * n);
    let (p0, p1) = p01.split_at_mut(n);
    let (p2, p3) = p23.split_at_mut(n);
    for ((((s, a), b), c), d) in samples.iter().zip(p0).zip(p1).zip(p2).zip(p3) {
        *a = s[0];
        *b = s[1];
        *c = s[2];
        *d = s[3];
    }
}

fn join2([p0, p1]: [&[u8]; 2], raw: &mut [u8]) {
    let (samples, _) = raw.as_chunks_mut::<2>();
    for ((s, a), b) in samples.iter_mut().zip(p0).zip(p1) {
        s[0] = *a;
        s[1] = *b;
    }
}

fn join4([p0, p1, p2, p3]: [&[u8]; 4], raw: &mut [u8]) {
    let (samples, _) = raw.as_chunks_mut::<4>();
    for ((((s, a), b), c), d) in samples.iter_mut().zip(p0).zip(p1).zip(p2).zip(p3) {
        s[0] = *a;
        s[1] = *b;
        s[2] = *c;
        s[3] = *d;
    }
}

/// A chunk ready to append to a pack.
#[derive(Debug, Clone)]
pub struct EncodedChunk {
    pub id: ChunkId,
    pub data: Bytes,
    pub raw_len: u32,
    pub flags: u8,
}

/// Encoding settings shared by every writer and reader of one store.
#[derive(Clone)]
pub struct Codec {
    cipher: Option<XChaCha20Poly1305>,
    id_key: Option<[u8; 32]>,
    zstd_level: i32,
    /// zstd level for sample planes (see [`Codec::with_plane_level`]).
    plane_level: i32,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec")
            .field("encrypted", &self.cipher.is_some())
            .field("zstd_level", &self.zstd_level)
            .field("plane_level", &self.plane_level)
            .finish()
    }
}

impl Codec {
    pub fn new(key: Option<&MasterKey>, zstd_level: i32) -> Self {
        let cipher =
            key.map(|k| XChaCha20Poly1305::new(&k.derive("fulcrum 2026 chunk aead v1").into()));
        let id_key = key.map(|k| k.derive("fulcrum 2026 chunk id v1"));
        Self {
            cipher,
            id_key,
            zstd_level,
            plane_level: zstd_level,
        }
    }

    /// Compresses sample planes ([`Layout::Samples2`], [`Layout::Samples4`])
    /// at `level` instead of the general one. Planes of CT pixel data at
    /// zstd's fast level -1 take ~39 % of their size at ~1.5 GB/s and
    /// decompress at ~5 GB/s; level 1 takes ~33 % at ~750 MB/s.
    pub fn with_plane_level(mut self, level: i32) -> Self {
        self.plane_level = level;
        self
    }

    pub fn is_encrypted(&self) -> bool {
        self.cipher.is_some()
    }

    /// The content address of `raw`.
    pub fn id_of(&self, raw: &[u8]) -> ChunkId {
        match &self.id_key {
            Some(k) => ChunkId(*blake3::keyed_hash(k, raw).as_bytes()),
            None => ChunkId(*blake3::hash(raw).as_bytes()),
        }
    }

    /// Compresses (when it shrinks the chunk by at least 2 %) and encrypts.
    /// A chunk stored as is shares `raw`'s buffer (no copy).
    pub fn encode(&self, id: ChunkId, raw: Bytes) -> EncodedChunk {
        self.encode_as(id, raw, Layout::Bytes)
    }

    /// Like [`Codec::encode`], compressing `raw` as `layout` says it is
    /// laid out.
    pub fn encode_as(&self, id: ChunkId, raw: Bytes, layout: Layout) -> EncodedChunk {
        let mut flags = 0u8;
        let width = layout.width();
        let compressed = if width > 1 && raw.len() >= 2 * width {
            with_planes(&raw, width, |planes| {
                self.try_compress(planes, self.plane_level)
            })
            .map(|c| (c, layout.flag()))
        } else {
            self.try_compress(&raw, self.zstd_level).map(|c| (c, 0))
        };
        let mut data = match compressed {
            Some((c, planes)) if c.len() < raw.len() - raw.len() / 50 => {
                flags |= FLAG_ZSTD | planes;
                Bytes::from(c)
            }
            _ => raw.clone(),
        };
        if let Some(cipher) = &self.cipher {
            let nonce: [u8; NONCE_LEN] = rand::random();
            let sealed = cipher
                .encrypt(
                    XNonce::from_slice(&nonce),
                    Payload {
                        msg: &data,
                        aad: id.as_bytes(),
                    },
                )
                .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory buffers");
            let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
            out.extend_from_slice(&nonce);
            out.extend_from_slice(&sealed);
            data = Bytes::from(out);
            flags |= FLAG_AEAD;
        }
        EncodedChunk {
            id,
            data,
            raw_len: raw.len() as u32,
            flags,
        }
    }

    /// zstd of `raw`, unless a fast trial on a sample says it will not pay
    /// (JPEG pixel data, video, already-compressed archives).
    fn try_compress(&self, raw: &[u8], level: i32) -> Option<Vec<u8>> {
        const SAMPLE: usize = 64 * 1024;
        if raw.len() >= 4 * SAMPLE {
            let mid = raw.len() / 2;
            let sample = &raw[mid..mid + SAMPLE];
            let trial = compress_with(sample, 1)?;
            if trial.len() > SAMPLE - SAMPLE / 20 {
                return None;
            }
        }
        compress_with(raw, level)
    }

    /// Like [`Codec::decode`] for a chunk held in a shared buffer: a chunk
    /// stored as is comes back as that same buffer (verified, not copied).
    pub fn decode_shared(
        &self,
        id: ChunkId,
        stored: Bytes,
        flags: u8,
        raw_len: u32,
    ) -> StoreResult<Bytes> {
        if flags != 0 {
            let plain = self.decode(id, &stored, flags, raw_len)?;
            return Ok(if Layout::of_flags(flags).width() > 1 {
                OUT_POOL.lend(plain)
            } else {
                Bytes::from(plain)
            });
        }
        self.verify(id, &stored, raw_len)?;
        Ok(stored)
    }

    /// Inverts `encode` and verifies the content hash; damaged or tampered
    /// data is an error, never returned.
    pub fn decode(
        &self,
        id: ChunkId,
        stored: &[u8],
        flags: u8,
        raw_len: u32,
    ) -> StoreResult<Vec<u8>> {
        let corrupt = |reason: String| StoreError::Corrupt { id, reason };
        if flags & !KNOWN_FLAGS != 0
            || (flags & (FLAG_PLANES2 | FLAG_PLANES4) != 0 && flags & FLAG_ZSTD == 0)
        {
            return Err(corrupt(format!("unknown encoding flags {flags:#04x}")));
        }
        let mut owned: Option<Vec<u8>> = None;
        if flags & FLAG_AEAD != 0 {
            let data = stored;
            let cipher = self.cipher.as_ref().ok_or(StoreError::KeyMissing { id })?;
            if data.len() < NONCE_LEN + 16 {
                return Err(corrupt("encrypted chunk shorter than nonce and tag".into()));
            }
            let plain = cipher
                .decrypt(
                    XNonce::from_slice(&data[..NONCE_LEN]),
                    Payload {
                        msg: &data[NONCE_LEN..],
                        aad: id.as_bytes(),
                    },
                )
                .map_err(|_| corrupt("authentication failed (damaged data or wrong key)".into()))?;
            owned = Some(plain);
        }
        if flags & FLAG_ZSTD != 0 {
            let data = owned.as_deref().unwrap_or(stored);
            let width = Layout::of_flags(flags).width();
            let plain = if width > 1 {
                decompress_planes(data, raw_len as usize, width)
            } else {
                decompress_with(data, raw_len as usize)
            };
            owned = Some(plain.map_err(|e| corrupt(format!("zstd: {e}")))?);
        }
        self.verify(id, owned.as_deref().unwrap_or(stored), raw_len)?;
        Ok(owned.unwrap_or_else(|| stored.to_vec()))
    }

    /// Checks a chunk's plaintext against its length and content id.
    fn verify(&self, id: ChunkId, data: &[u8], raw_len: u32) -> StoreResult<()> {
        let corrupt = |reason: String| StoreError::Corrupt { id, reason };
        if data.len() != raw_len as usize {
            return Err(corrupt(format!(
                "length {} instead of {raw_len}",
                data.len()
            )));
        }
        if self.id_of(data) != id {
            return Err(corrupt("content hash mismatch".into()));
        }
        Ok(())
    }
}

thread_local! {
    /// One zstd context per thread and level: creating one per chunk costs
    /// more than compressing a small chunk.
    static COMPRESSORS: std::cell::RefCell<Vec<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

thread_local! {
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

thread_local! {
    /// Sample planes being compressed or just decompressed, reused from
    /// chunk to chunk: only their compressed or joined form leaves (a fresh
    /// buffer per chunk costs a memset and page faults).
    static PLANES: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Decompresses sample planes into this thread's planes buffer and joins
/// them into samples.
fn decompress_planes(data: &[u8], capacity: usize, width: usize) -> std::io::Result<Vec<u8>> {
    PLANES.with(|cell| {
        let mut planes = cell.borrow_mut();
        planes.clear();
        planes.reserve(capacity);
        with_decompressor(|d| d.decompress_to_buffer(data, &mut *planes))?;
        let out = from_planes(&planes, width);
        trim_planes(&mut planes);
        Ok(out)
    })
}

/// Runs `f` with this thread's reused decompression context.
fn with_decompressor<T>(
    f: impl FnOnce(&mut zstd::bulk::Decompressor<'static>) -> std::io::Result<T>,
) -> std::io::Result<T> {
    DECOMPRESSOR.with(|cell| match &mut *cell.borrow_mut() {
        Some(d) => f(d),
        slot => f(slot.insert(zstd::bulk::Decompressor::new()?)),
    })
}

/// Decompresses with this thread's reused context.
fn decompress_with(data: &[u8], capacity: usize) -> std::io::Result<Vec<u8>> {
    with_decompressor(|d| d.decompress(data, capacity))
}

fn compress_with(data: &[u8], level: i32) -> Option<Vec<u8>> {
    COMPRESSORS.with(|cell| {
        let mut v = cell.borrow_mut();
        if !v.iter().any(|(l, _)| *l == level) {
            v.push((level, zstd::bulk::Compressor::new(level).ok()?));
        }
        let (_, c) = v.iter_mut().find(|(l, _)| *l == level)?;
        c.compress(data).ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(codec: &Codec, raw: &[u8]) -> EncodedChunk {
        let id = codec.id_of(raw);
        let enc = codec.encode(id, Bytes::copy_from_slice(raw));
        let dec = codec
            .decode(id, &enc.data, enc.flags, enc.raw_len)
            .expect("decodes");
        assert_eq!(dec, raw);
        enc
    }

    #[test]
    fn compressible_data_is_compressed_and_random_is_not() {
        let codec = Codec::new(None, 3);
        let text = b"patient name ^ study ".repeat(1000);
        assert_eq!(round_trip(&codec, &text).flags & FLAG_ZSTD, FLAG_ZSTD);
        let noise: Vec<u8> = (0..65536).map(|_| rand::random::<u8>()).collect();
        let enc = round_trip(&codec, &noise);
        assert_eq!(enc.flags & FLAG_ZSTD, 0);
        assert_eq!(enc.data, noise);
    }

    /// 16-bit samples like CT pixel data: a smooth signal plus noise.
    fn samples16(n: usize, odd_start: bool) -> Vec<u8> {
        let mut v: Vec<u8> = (0..n)
            .flat_map(|i| {
                let s =
                    1000 + ((i as f64 / 300.0).sin() * 400.0) as i32 + rand::random::<i32>() % 12;
                (s as u16).to_le_bytes()
            })
            .collect();
        if odd_start {
            v.remove(0);
        }
        v
    }

    #[test]
    fn sample_planes_round_trip_any_length_and_compress_better() {
        for codec in [
            Codec::new(None, 1),
            Codec::new(Some(&MasterKey::generate()), 1),
        ] {
            for (layout, flag) in [
                (Layout::Samples2, FLAG_PLANES2),
                (Layout::Samples4, FLAG_PLANES4),
            ] {
                for odd in [false, true] {
                    for n in [3usize, 4, 5, 7, 2000, 100_001] {
                        let raw = samples16(n, odd);
                        let id = codec.id_of(&raw);
                        let enc = codec.encode_as(id, Bytes::from(raw.clone()), layout);
                        let dec = codec
                            .decode(id, &enc.data, enc.flags, enc.raw_len)
                            .expect("decodes");
                        assert_eq!(dec, raw, "{layout:?} n={n} odd={odd}");
                        if n >= 2000 {
                            assert_eq!(enc.flags & (flag | FLAG_ZSTD), flag | FLAG_ZSTD);
                            assert_eq!(Layout::of_flags(enc.flags), layout);
                        }
                    }
                }
            }
            let raw = samples16(200_000, false);
            let id = codec.id_of(&raw);
            let planes = codec.encode_as(id, Bytes::from(raw.clone()), Layout::Samples2);
            let plain = codec.encode(id, Bytes::from(raw));
            assert!(
                planes.data.len() < plain.data.len(),
                "{} vs {}",
                planes.data.len(),
                plain.data.len()
            );
        }
    }

    #[test]
    fn pooled_sample_buffers_come_back_exact_whatever_size_came_before() {
        let codec = Codec::new(None, 1);
        let long = samples16(300_001, false);
        let short = samples16(70_000, true);
        let enc = |raw: &Vec<u8>| {
            let id = codec.id_of(raw);
            (
                id,
                codec.encode_as(id, Bytes::from(raw.clone()), Layout::Samples2),
            )
        };
        let (long_id, long_enc) = enc(&long);
        let (short_id, short_enc) = enc(&short);
        assert_ne!(long_enc.flags & FLAG_PLANES2, 0);
        let dec = |id, e: &EncodedChunk| {
            codec
                .decode_shared(id, e.data.clone(), e.flags, e.raw_len)
                .expect("decodes")
        };
        for _ in 0..3 {
            // Each decoded buffer is dropped (back to the pool) before the next.
            assert!(dec(long_id, &long_enc) == long);
            assert!(dec(short_id, &short_enc) == short);
        }
        let held = dec(short_id, &short_enc);
        assert!(dec(long_id, &long_enc) == long);
        assert!(held == short, "a buffer still in use is never handed out");
    }

    #[test]
    fn planes_invert() {
        for w in [2, 4] {
            for n in 0..80 {
                let raw: Vec<u8> = (0..n as u8).map(|b| b.wrapping_mul(37) ^ 0xa5).collect();
                let samples = n / w;
                let mut expected = vec![0u8; n];
                for i in 0..samples {
                    for k in 0..w {
                        expected[k * samples + i] = raw[i * w + k];
                    }
                }
                expected[samples * w..].copy_from_slice(&raw[samples * w..]);
                assert_eq!(to_planes(&raw, w), expected, "width {w}, {n} bytes");
                assert_eq!(from_planes(&to_planes(&raw, w), w), raw);
            }
        }
        assert_eq!(to_planes(&[1, 2, 3, 4, 5], 2), vec![1, 3, 2, 4, 5]);
    }

    #[test]
    fn incompressible_samples_are_stored_as_is_and_unknown_flags_refused() {
        let codec = Codec::new(None, 1);
        let noise: Vec<u8> = (0..65536).map(|_| rand::random::<u8>()).collect();
        let id = codec.id_of(&noise);
        let enc = codec.encode_as(id, Bytes::from(noise.clone()), Layout::Samples2);
        assert_eq!(enc.flags, 0);
        assert_eq!(enc.data, noise);
        assert!(codec.decode(id, &enc.data, 0x40, enc.raw_len).is_err());
        assert!(codec
            .decode(id, &enc.data, FLAG_PLANES2, enc.raw_len)
            .is_err());
    }

    #[test]
    fn encryption_round_trips_and_hides_content() {
        let key = MasterKey::generate();
        let codec = Codec::new(Some(&key), 3);
        let raw = b"confidential ".repeat(100);
        let enc = round_trip(&codec, &raw);
        assert_eq!(enc.flags & FLAG_AEAD, FLAG_AEAD);
        assert!(!enc.data.windows(12).any(|w| w == b"confidential"));
        // keyed ids differ from plain ones
        assert_ne!(codec.id_of(&raw), Codec::new(None, 3).id_of(&raw));
    }

    #[test]
    fn wrong_key_and_missing_key_are_errors() {
        let codec = Codec::new(Some(&MasterKey::generate()), 3);
        let raw = b"abc".repeat(50);
        let id = codec.id_of(&raw);
        let enc = codec.encode(id, Bytes::from(raw.clone()));
        let other = Codec::new(Some(&MasterKey::generate()), 3);
        assert!(other.decode(id, &enc.data, enc.flags, enc.raw_len).is_err());
        let none = Codec::new(None, 3);
        assert!(matches!(
            none.decode(id, &enc.data, enc.flags, enc.raw_len),
            Err(StoreError::KeyMissing { .. })
        ));
    }

    #[test]
    fn shared_decode_verifies_and_does_not_copy_raw_chunks() {
        let codec = Codec::new(None, 1);
        let noise: Vec<u8> = (0..65536).map(|_| rand::random::<u8>()).collect();
        let id = codec.id_of(&noise);
        let enc = codec.encode(id, Bytes::from(noise.clone()));
        assert_eq!(enc.flags, 0);
        let out = codec
            .decode_shared(id, enc.data.clone(), 0, enc.raw_len)
            .expect("decodes");
        assert_eq!(out.as_ptr(), enc.data.as_ptr());
        let mut bad = noise.clone();
        bad[100] ^= 1;
        assert!(codec
            .decode_shared(id, Bytes::from(bad), 0, enc.raw_len)
            .is_err());
        assert!(codec
            .decode_shared(id, enc.data.slice(1..), 0, enc.raw_len)
            .is_err());
        let text = b"patient ".repeat(1000);
        let id = codec.id_of(&text);
        let enc = codec.encode(id, Bytes::from(text.clone()));
        let out = codec.decode_shared(id, enc.data, enc.flags, enc.raw_len);
        assert_eq!(out.expect("decodes"), text);
    }

    #[test]
    fn any_flipped_byte_is_detected() {
        for codec in [
            Codec::new(None, 3),
            Codec::new(Some(&MasterKey::generate()), 3),
        ] {
            for raw in [
                b"x".repeat(5000),
                (0..5000u32).map(|i| (i * 7919 % 251) as u8).collect(),
            ] {
                let id = codec.id_of(&raw);
                let enc = codec.encode(id, Bytes::from(raw.clone()));
                for pos in [0, enc.data.len() / 2, enc.data.len() - 1] {
                    let mut bad = enc.data.to_vec();
                    bad[pos] ^= 0x40;
                    assert!(
                        codec.decode(id, &bad, enc.flags, enc.raw_len).is_err(),
                        "flip at {pos}"
                    );
                }
            }
        }
    }
}
