//! Backup errors: what went wrong with the repository, its key or a
//! snapshot, precise enough for an operator to act on.

use fulcrum_catalog::CatalogError;
use fulcrum_engine::EngineError;
use fulcrum_store::StoreError;

pub type BackupResult<T> = Result<T, BackupError>;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0} is not a Fulcrum backup repository (run `fulcrum backup init` or `backup run` to create one)")]
    NotARepo(String),
    #[error("the backup key does not open this repository (wrong FULCRUM_BACKUP_KEY or key file)")]
    WrongKey,
    #[error("no backup key: set FULCRUM_BACKUP_KEY (64 hex digits) or --key-file")]
    NoKey,
    #[error("backup repository data is damaged: {0}")]
    Damaged(String),
    #[error("no snapshot matches {0:?}")]
    NoSuchSnapshot(String),
    #[error("{0:?} matches several snapshots; give more digits")]
    AmbiguousSnapshot(String),
    #[error("the repository is locked: {0}")]
    Locked(String),
    #[error("restore target {0} is not empty; restore into a new or empty directory")]
    TargetNotEmpty(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Engine(#[from] EngineError),
}
