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
    /// The first connection to a PostgreSQL catalog failed: `at` is its
    /// URL without the password, `reason` the driver's or server's words.
    #[error("cannot connect to the catalog database {at}: {reason}")]
    Unreachable { at: String, reason: String },
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
    /// A conditional write whose condition does not hold; `missing` when
    /// no object has the key.
    #[error("object {key:?}: precondition failed: {reason}")]
    ConditionFailed {
        key: String,
        missing: bool,
        reason: String,
    },
    #[error("bad query: {0}")]
    BadQuery(String),
    #[error("catalog dump is damaged: {0}")]
    BadDump(String),
    #[error("catalog row is malformed: {0}")]
    BadRow(String),
}

impl CatalogError {
    /// True when the statement lost a race with another node's transaction
    /// that a new attempt would see committed: a unique key it inserted
    /// meanwhile (PostgreSQL 23505: two nodes creating one object key, one
    /// SOP Instance), a deadlock (40P01) or a serialization failure
    /// (40001). SQLite writers take turns, so only PostgreSQL raises them.
    pub fn is_race(&self) -> bool {
        match self {
            CatalogError::Db {
                source: sqlx::Error::Database(d),
                ..
            } => matches!(d.code().as_deref(), Some("23505" | "40P01" | "40001")),
            _ => false,
        }
    }

    /// True when the database could not write because its disk is full
    /// (SQLite's SQLITE_FULL, PostgreSQL's disk_full, or ENOSPC).
    pub fn is_no_space(&self) -> bool {
        let CatalogError::Db { source, .. } = self else {
            return false;
        };
        if let sqlx::Error::Database(d) = source {
            let code = d.code().unwrap_or_default();
            if code == "13" || code == "53100" || d.message().contains("database or disk is full") {
                return true;
            }
        }
        fulcrum_types::no_space_in(source)
    }
}

/// Wraps a sqlx error with the operation that hit it.
pub(crate) fn db(op: &'static str) -> impl FnOnce(sqlx::Error) -> CatalogError {
    move |source| CatalogError::Db { op, source }
}
