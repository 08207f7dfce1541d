//! Authenticated encryption of everything a repository holds, with keys
//! derived from the backup key (never the platform's own key): XChaCha20-
//! Poly1305 with a random nonce per item, bound by associated data to
//! what the item is (a chunk id, an index of one pack, a snapshot), so a
//! file swapped for another fails to open.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use fulcrum_store::MasterKey;

const NONCE_LEN: usize = 24;
/// Bytes a sealed item adds to its plaintext.
pub const OVERHEAD: usize = NONCE_LEN + 16;

#[derive(Clone)]
pub struct Sealer {
    cipher: XChaCha20Poly1305,
    check: String,
}

impl Sealer {
    pub fn new(key: &MasterKey) -> Self {
        Self {
            cipher: XChaCha20Poly1305::new(&key.derive("fulcrum 2026 backup aead v1").into()),
            check: hex::encode(&key.derive("fulcrum 2026 backup key check v1")[..16]),
        }
    }

    /// A value that tells a wrong key from the right one and reveals
    /// nothing of it.
    pub fn key_check(&self) -> &str {
        &self.check
    }

    pub fn seal(&self, aad: &[u8], plain: &[u8]) -> Vec<u8> {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let ct = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: plain, aad })
            .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory buffers");
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    /// The plaintext, or `None` when the item is damaged, swapped or was
    /// sealed with another key.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < OVERHEAD {
            return None;
        }
        self.cipher
            .decrypt(
                XNonce::from_slice(&sealed[..NONCE_LEN]),
                Payload {
                    msg: &sealed[NONCE_LEN..],
                    aad,
                },
            )
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_items_open_only_with_their_key_and_label() {
        let k = MasterKey::generate();
        let s = Sealer::new(&k);
        let sealed = s.seal(b"a", b"hello");
        assert_eq!(s.open(b"a", &sealed).as_deref(), Some(&b"hello"[..]));
        assert!(s.open(b"b", &sealed).is_none());
        assert!(Sealer::new(&MasterKey::generate())
            .open(b"a", &sealed)
            .is_none());
        let mut flipped = sealed.clone();
        flipped[30] ^= 1;
        assert!(s.open(b"a", &flipped).is_none());
        assert_ne!(
            s.key_check(),
            Sealer::new(&MasterKey::generate()).key_check()
        );
    }
}
