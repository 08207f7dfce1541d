//! `ChunkId` (a BLAKE3 content address), `PackId` (a time-ordered random pack
//! name) and `TenantId` (a member hospital).

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// A malformed identifier read from outside (a file name, a catalog row).
#[derive(Debug, thiserror::Error)]
pub enum IdError {
    #[error("chunk id must be 32 bytes, got {0}")]
    ChunkIdLength(usize),
    #[error("pack id {0:?} is not of the form <12 hex digits>-<16 hex digits>")]
    PackIdFormat(String),
    #[error("tenant id {0:?} must be 1-64 characters of a-z, 0-9, '-' or '_'")]
    TenantFormat(String),
}

/// The content address of a chunk: BLAKE3 of its plaintext (keyed when the
/// store is encrypted, so ids reveal nothing to someone without the key).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkId(pub [u8; 32]);

impl ChunkId {
    pub fn from_slice(bytes: &[u8]) -> Result<Self, IdError> {
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| IdError::ChunkIdLength(bytes.len()))?;
        Ok(Self(arr))
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkId({})", &self.to_hex()[..16])
    }
}

/// The name of a pack file: creation time in milliseconds (12 hex digits, so
/// names sort by age and GC can tell old orphans from in-flight writes) and
/// 64 random bits (so nodes never coordinate names).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct PackId(String);

impl PackId {
    pub fn generate() -> Self {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Self(format!("{ms:012x}-{:016x}", rand::random::<u64>()))
    }

    pub fn parse(s: &str) -> Result<Self, IdError> {
        let ok = s.len() == 29
            && s.as_bytes()[12] == b'-'
            && s.bytes()
                .enumerate()
                .all(|(i, b)| i == 12 || b.is_ascii_hexdigit());
        if ok {
            Ok(Self(s.to_ascii_lowercase()))
        } else {
            Err(IdError::PackIdFormat(s.to_string()))
        }
    }

    /// Creation time in milliseconds since the Unix epoch.
    pub fn created_ms(&self) -> u64 {
        u64::from_str_radix(&self.0[..12], 16).unwrap_or(0)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The tenant every record belongs to when the platform runs for one hospital.
pub const DEFAULT_TENANT: &str = "default";

/// A member hospital of the consortium; every catalog record carries one.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct TenantId(String);

impl TenantId {
    pub fn new(s: &str) -> Result<Self, IdError> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(s.to_string()))
        } else {
            Err(IdError::TenantFormat(s.to_string()))
        }
    }

    pub fn default_tenant() -> Self {
        Self(DEFAULT_TENANT.to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_ids_round_trip_and_sort_by_time() {
        let a = PackId::generate();
        let parsed = PackId::parse(a.as_str()).expect("generated id parses");
        assert_eq!(a, parsed);
        assert!(a.created_ms() > 1_600_000_000_000);
        assert!(PackId::parse("../../etc/passwd").is_err());
        assert!(PackId::parse("zzzzzzzzzzzz-0000000000000000").is_err());
    }

    #[test]
    fn tenant_ids_are_validated() {
        assert!(TenantId::new("county-7").is_ok());
        assert!(TenantId::new("").is_err());
        assert!(TenantId::new("A/B").is_err());
    }

    #[test]
    fn chunk_id_requires_32_bytes() {
        assert!(ChunkId::from_slice(&[0u8; 31]).is_err());
        assert_eq!(
            ChunkId::from_slice(&[7u8; 32]).expect("32 bytes").0,
            [7u8; 32]
        );
    }
}
