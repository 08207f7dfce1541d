//! Fulcrum's backups: incremental, deduplicated, encrypted snapshots of the
//! whole platform — a point-in-time export of the catalog plus every chunk
//! it references — in a repository on a second backend (a directory, an
//! off-site S3 bucket). Content ids make every run incremental: only blobs
//! the repository lacks move. Everything in the repository is sealed with
//! the backup's own key.
//!
//! Sits beside the protocols, on the engine: `run` takes a snapshot,
//! `restore_to_dir` rebuilds a data dir, `SnapshotView` streams single
//! objects or studies back, `verify` re-hashes the repository, `forget`
//! applies a keep policy and prunes.

mod error;
mod forget;
mod lock;
mod repo;
mod restore;
mod run;
mod seal;
mod snapshot;
mod verify;

pub use error::{BackupError, BackupResult};
pub use forget::{forget, ForgetReport};
pub use lock::RepoLock;
pub use repo::{pack_tail, parse_pack_index, BlobKind, BlobLoc, Index, Repo};
pub use restore::{restore_to_dir, RestoreReport, SnapObject, SnapshotView};
pub use run::{run, RunOptions};
pub use snapshot::{KeepPolicy, Snapshot};
pub use verify::{verify, RepoVerifyReport};
