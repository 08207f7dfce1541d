//! Turns a chunk's plaintext into its stored form and back: content id
//! (BLAKE3, keyed when encrypted), zstd compression when it pays, AEAD
//! encryption (XChaCha20-Poly1305), and hash verification on every decode.

use bytes::Bytes;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use fulcrum_types::ChunkId;

use crate::error::{StoreError, StoreResult};
use crate::key::MasterKey;

/// The stored bytes are zstd-compressed.
pub const FLAG_ZSTD: u8 = 1;
/// The stored bytes are `nonce(24) || ciphertext || tag(16)`.
pub const FLAG_AEAD: u8 = 2;

const NONCE_LEN: usize = 24;

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
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec")
            .field("encrypted", &self.cipher.is_some())
            .field("zstd_level", &self.zstd_level)
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
        }
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
        let mut flags = 0u8;
        let mut data = match self.try_compress(&raw) {
            Some(c) if c.len() < raw.len() - raw.len() / 50 => {
                flags |= FLAG_ZSTD;
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
    fn try_compress(&self, raw: &[u8]) -> Option<Vec<u8>> {
        const SAMPLE: usize = 64 * 1024;
        if raw.len() >= 4 * SAMPLE {
            let mid = raw.len() / 2;
            let sample = &raw[mid..mid + SAMPLE];
            let trial = compress_with(sample, 1)?;
            if trial.len() > SAMPLE - SAMPLE / 20 {
                return None;
            }
        }
        compress_with(raw, self.zstd_level)
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
            let plain = decompress_with(data, raw_len as usize)
                .map_err(|e| corrupt(format!("zstd: {e}")))?;
            owned = Some(plain);
        }
        let data = owned.as_deref().unwrap_or(stored);
        if data.len() != raw_len as usize {
            return Err(corrupt(format!(
                "length {} instead of {raw_len}",
                data.len()
            )));
        }
        if self.id_of(data) != id {
            return Err(corrupt("content hash mismatch".into()));
        }
        Ok(owned.unwrap_or_else(|| stored.to_vec()))
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

/// Decompresses with this thread's reused context.
fn decompress_with(data: &[u8], capacity: usize) -> std::io::Result<Vec<u8>> {
    DECOMPRESSOR.with(|cell| {
        let mut d = cell.borrow_mut();
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::new()?);
        }
        match d.as_mut() {
            Some(d) => d.decompress(data, capacity),
            None => zstd::bulk::decompress(data, capacity),
        }
    })
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
