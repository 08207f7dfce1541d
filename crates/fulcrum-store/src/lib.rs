//! Fulcrum's storage layer: content-defined chunking, chunk codecs
//! (zstd compression, AEAD encryption, hash verification), pack files that
//! aggregate chunks, and backends (local filesystem, S3) through OpenDAL.
//!
//! Nothing here knows about the catalog, HTTP or DICOM: the engine crate
//! combines this layer with the catalog.

pub mod backend;
mod bufpool;
pub mod chunker;
pub mod codec;
pub mod error;
pub mod key;
mod local_writer;
pub mod pack;
mod private;

pub use backend::{Backend, BackendConfig, BackendEntry, BackendWriter, Span};
pub use chunker::{ChunkParams, Chunker};
pub use codec::{Codec, EncodedChunk, Layout, FLAG_AEAD, FLAG_PLANES2, FLAG_PLANES4, FLAG_ZSTD};
pub use error::{StoreError, StoreResult};
pub use key::MasterKey;
pub use pack::{pack_path, PackBuilder, PackEntry, PackStream};
pub use private::{create_private_dir, shared_with_others, write_private_file};
