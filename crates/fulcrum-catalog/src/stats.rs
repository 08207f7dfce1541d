//! Totals for `fulcrum stats` and `/metrics`: logical bytes (what clients
//! stored), unique and stored chunk bytes, pack bytes.

use sqlx::Row;

use crate::db::Catalog;
use crate::error::{db, CatalogResult};

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CatalogStats {
    pub objects: i64,
    pub logical_bytes: i64,
    pub chunks: i64,
    /// Plaintext bytes of all distinct chunks.
    pub unique_bytes: i64,
    /// Bytes of all distinct chunks as stored (compressed, encrypted).
    pub stored_bytes: i64,
    pub packs: i64,
    /// Bytes of all pack files, trailers and not-yet-collected garbage included.
    pub pack_bytes: i64,
}

impl Catalog {
    pub async fn stats(&self) -> CatalogResult<CatalogStats> {
        let r = sqlx::query(
            "SELECT \
               (SELECT COUNT(*) FROM objects), \
               (SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM objects), \
               (SELECT COUNT(*) FROM chunks), \
               (SELECT CAST(COALESCE(SUM(raw_len), 0) AS BIGINT) FROM chunks), \
               (SELECT CAST(COALESCE(SUM(stored_len), 0) AS BIGINT) FROM chunks), \
               (SELECT COUNT(*) FROM packs), \
               (SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM packs)",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db("stats"))?;
        let g = |i| r.try_get::<i64, _>(i).map_err(db("stats"));
        Ok(CatalogStats {
            objects: g(0)?,
            logical_bytes: g(1)?,
            chunks: g(2)?,
            unique_bytes: g(3)?,
            stored_bytes: g(4)?,
            packs: g(5)?,
            pack_bytes: g(6)?,
        })
    }
}
