//! Catalog errors: precise conditions the protocols map to their own codes,
//! and database failures with the operation that hit them.

pub type CatalogResult<T> = Result<T, CatalogError>;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog {op}: {source}")]
    Db {
        op: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("catalog migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported catalog URL {0:?}: use sqlite://PATH or postgres://USER@HOST/DB")]
    BadUrl(String),
    #[error("bucket {0:?} does not exist")]
    NoSuchBucket(String),
    #[error("bucket {0:?} already exists")]
    BucketExists(String),
    #[error("bucket {0:?} is not empty")]
    BucketNotEmpty(String),
    #[error("multipart upload {0:?} does not exist")]
    NoSuchUpload(String),
    #[error("part {0} of the upload was not uploaded or its ETag does not match")]
    InvalidPart(i64),
    #[error("parts must be listed in ascending order")]
    InvalidPartOrder,
    #[error("part {0} is smaller than the 5 MiB minimum for all but the last part")]
    PartTooSmall(i64),
    #[error("chunk {0} referenced by a write is no longer in the catalog")]
    ChunkGone(String),
    #[error("SOP Instance {0} is already stored with different content")]
    DuplicateInstance(String),
    /// A delete or overwrite refused by retention or a legal hold;
    /// `reason` names the protection and its retain-until date.
    #[error("object {key:?} is protected: {reason}")]
    ObjectLocked { key: String, reason: String },
    #[error("bad query: {0}")]
    BadQuery(String),
    #[error("catalog row is malformed: {0}")]
    BadRow(String),
}

/// Wraps a sqlx error with the operation that hit it.
pub(crate) fn db(op: &'static str) -> impl FnOnce(sqlx::Error) -> CatalogError {
    move |source| CatalogError::Db { op, source }
}
