//! Engine errors: what went wrong in terms a protocol can map to its own
//! status codes (S3 error codes, DICOM status, HTTP status).

use fulcrum_catalog::CatalogError;
use fulcrum_store::StoreError;

pub type EngineResult<T> = Result<T, EngineError>;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("object {bucket}/{key} does not exist")]
    NoSuchKey { bucket: String, key: String },
    #[error("object is larger than the configured maximum of {max} bytes")]
    TooLarge { max: u64 },
    #[error("request body ended after {got} of {expected} bytes")]
    IncompleteBody { expected: u64, got: u64 },
    #[error("the Content-MD5 of the body does not match")]
    BadDigest,
    /// A checksum the client gave that does not match the data (the
    /// protocol's message).
    #[error("{0}")]
    BadChecksum(String),
    /// A request that contradicts itself or what it names (the protocol's
    /// message), refused before anything is written.
    #[error("{0}")]
    InvalidRequest(String),
    #[error("stored data is damaged: {0}")]
    Corrupt(String),
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("busy: {0}")]
    Busy(String),
    #[error("lost the {0} lease to another node")]
    LeaseLost(String),
    #[error("encryption key does not fit this data: {0}")]
    KeyMismatch(String),
    /// The pack store and the catalog are not one platform's (see
    /// `identity`).
    #[error("wrong pack store: {0}")]
    WrongStore(String),
    #[error("storage is full: {0}")]
    NoSpace(String),
    /// Archive-tier work without an archive backend configured.
    #[error("{0}")]
    NoArchive(String),
    #[error(transparent)]
    Catalog(CatalogError),
    #[error(transparent)]
    Store(StoreError),
    /// A pack write shared by a group commit failed (the message of the
    /// underlying storage error, shared by every write of the batch).
    #[error("writing a shared pack failed: {0}")]
    PackWrite(String),
    /// A task the engine ran (hashing, compression, a pack write) panicked
    /// or was cancelled: the server's fault, never the request's.
    #[error("an internal task failed: {0}")]
    Internal(String),
}

impl From<CatalogError> for EngineError {
    fn from(e: CatalogError) -> Self {
        if e.is_no_space() {
            EngineError::NoSpace(e.to_string())
        } else {
            EngineError::Catalog(e)
        }
    }
}

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> Self {
        if e.is_no_space() {
            EngineError::NoSpace(e.to_string())
        } else if e.is_corruption() {
            EngineError::Corrupt(e.to_string())
        } else {
            EngineError::Store(e)
        }
    }
}
