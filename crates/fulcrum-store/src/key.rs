//! The platform's master key for encryption at rest, and the keys derived
//! from it (chunk encryption, keyed chunk ids, a key check value).

use crate::error::{StoreError, StoreResult};

/// 32 secret bytes; every other key is derived from them with BLAKE3's KDF.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    /// Parses 64 hex digits (surrounding whitespace ignored).
    pub fn from_hex(s: &str) -> StoreResult<Self> {
        let bytes = hex::decode(s.trim())
            .map_err(|e| StoreError::BadKey(format!("expected 64 hex digits: {e}")))?;
        let arr: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
            StoreError::BadKey(format!(
                "expected 32 bytes (64 hex digits), got {} bytes",
                b.len()
            ))
        })?;
        Ok(Self(arr))
    }

    /// Reads a key file holding 64 hex digits.
    pub fn from_file(path: &std::path::Path) -> StoreResult<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| StoreError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_hex(&text)
    }

    pub fn generate() -> Self {
        Self(rand::random())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// A 32-byte key for `context`, derived with BLAKE3's KDF.
    pub fn derive(&self, context: &str) -> [u8; 32] {
        blake3::derive_key(context, &self.0)
    }

    /// A value stored beside encrypted data so a wrong key is detected at
    /// start-up instead of as corrupt chunks; it reveals nothing of the key.
    pub fn check_value(&self) -> String {
        hex::encode(&self.derive("fulcrum 2026 key check v1")[..16])
    }
}
