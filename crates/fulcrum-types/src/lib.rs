//! Identifiers shared by every Fulcrum crate: content hashes of chunks, pack
//! names and tenants; and the one test for "the disk is full" every layer
//! uses. Pure values, no I/O.

mod ids;
mod space;
mod tier;

pub use ids::{ChunkId, IdError, PackId, TenantId, DEFAULT_TENANT};
pub use space::no_space_in;
pub use tier::Tier;
