//! Identifiers shared by every Fulcrum crate: content hashes of chunks, pack
//! names and tenants. Pure values, no I/O.

mod ids;
mod tier;

pub use ids::{ChunkId, IdError, PackId, TenantId, DEFAULT_TENANT};
pub use tier::Tier;
