//! Errors of the storage layer, with the context (pack, chunk, path) needed
//! to act on them.

use fulcrum_types::ChunkId;

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("backend {backend}: {op} {path}: {source}")]
    Backend {
        backend: String,
        op: &'static str,
        path: String,
        #[source]
        source: Box<opendal::Error>,
    },
    #[error("local file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("chunk {id} is corrupt: {reason}")]
    Corrupt { id: ChunkId, reason: String },
    #[error("chunk {id} is encrypted but no encryption key is configured (set FULCRUM_ENCRYPTION_KEY or encryption_key_file)")]
    KeyMissing { id: ChunkId },
    #[error("pack {pack} is malformed: {reason}")]
    BadPack { pack: String, reason: String },
    #[error("invalid backend configuration: {0}")]
    Config(String),
    #[error("invalid encryption key: {0}")]
    BadKey(String),
    #[error("reading the request body: {0}")]
    Source(#[source] std::io::Error),
}

impl StoreError {
    /// True when the data itself is damaged (as opposed to an I/O failure
    /// that a retry may cure).
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            StoreError::Corrupt { .. } | StoreError::BadPack { .. }
        )
    }

    /// True when the backend says the object does not exist (a pack that
    /// was deleted or never written).
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::Backend { source, .. } if source.kind() == opendal::ErrorKind::NotFound)
    }

    /// True when the write failed because the disk (or the backend) is
    /// full.
    pub fn is_no_space(&self) -> bool {
        match self {
            StoreError::Backend { source, .. } => fulcrum_types::no_space_in(source.as_ref()),
            StoreError::Io { source, .. } | StoreError::Source(source) => {
                fulcrum_types::no_space_in(source)
            }
            _ => false,
        }
    }
}
