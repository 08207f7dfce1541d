//! Catalog side of garbage collection and repacking: chunk lookup for
//! dedup, two-phase condemn/sweep of unreferenced chunks, pack usage,
//! chunk relocation and pack retirement.
//!
//! A chunk is first *condemned* (marked, still readable); writers never
//! dedup against a condemned chunk. It is deleted only when still
//! unreferenced and condemned before the oldest write in flight on any live
//! node started, so no write can still be about to reference it.

use std::collections::HashMap;

use fulcrum_types::{ChunkId, Tier};
use sqlx::any::AnyArguments;
use sqlx::{Arguments, Row};

use crate::db::{now_ms, Catalog};
use crate::error::{db, CatalogError, CatalogResult};
use crate::objects::{chunk_loc, ChunkLoc, CHUNK_COLS};

const UNREFERENCED: &str =
    "NOT EXISTS (SELECT 1 FROM object_chunks oc WHERE oc.chunk_id = chunks.id) \
     AND NOT EXISTS (SELECT 1 FROM upload_part_chunks uc WHERE uc.chunk_id = chunks.id)";

/// What one GC pass changed in the catalog.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct GcCounts {
    pub condemned: u64,
    pub revived: u64,
    pub deleted_chunks: u64,
}

/// A pack with the bytes of live chunks it still holds.
#[derive(Debug, Clone)]
pub struct PackUsage {
    pub id: String,
    pub size: i64,
    pub live_bytes: i64,
    pub live_chunks: i64,
    pub retired_at: Option<i64>,
    pub tier: Tier,
}

/// A chunk copied to a new pack: where it was, and its place and stored
/// form in the new pack (a tier move re-encodes, so length and flags may
/// change).
#[derive(Debug, Clone)]
pub struct Relocation {
    pub chunk: ChunkId,
    pub from_pack: String,
    pub offset: i64,
    pub stored_len: i64,
    pub flags: i64,
}

impl Catalog {
    /// The live (not condemned) chunks among `ids`, for dedup.
    pub async fn find_chunks(&self, ids: &[ChunkId]) -> CatalogResult<HashMap<ChunkId, ChunkLoc>> {
        let mut out = HashMap::new();
        for block in ids.chunks(500) {
            let sql = format!(
                "SELECT {CHUNK_COLS} FROM chunks c LEFT JOIN packs p ON p.id = c.pack_id \
                 WHERE c.condemned_at IS NULL AND c.id IN ({})",
                crate::placeholders(1, block.len())
            );
            let mut args = AnyArguments::default();
            for id in block {
                args.add(id.as_bytes().to_vec())
                    .map_err(|e| CatalogError::Db {
                        op: "bind",
                        source: sqlx::Error::Encode(e),
                    })?;
            }
            let rows = sqlx::query_with(crate::dynamic(sql), args)
                .fetch_all(&self.pool)
                .await
                .map_err(db("find chunks"))?;
            for r in &rows {
                let loc = chunk_loc(r, 0)?;
                out.insert(loc.id, loc);
            }
        }
        Ok(out)
    }

    /// Phase 1: marks unreferenced chunks as condemned.
    pub async fn condemn_unreferenced(&self) -> CatalogResult<u64> {
        let n = sqlx::query(crate::dynamic(format!(
            "UPDATE chunks SET condemned_at = $1 WHERE condemned_at IS NULL AND {UNREFERENCED}"
        )))
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(db("condemn chunks"))?
        .rows_affected();
        Ok(n)
    }

    /// Phase 2: revives condemned chunks that got referenced again, and
    /// deletes those condemned before `safe_before` and still unreferenced.
    pub async fn sweep_condemned(&self, safe_before: i64) -> CatalogResult<GcCounts> {
        let mut tx = self.begin_write().await.map_err(db("sweep"))?;
        let revived = sqlx::query(crate::dynamic(format!(
            "UPDATE chunks SET condemned_at = NULL WHERE condemned_at IS NOT NULL AND NOT ({UNREFERENCED})"
        )))
        .execute(&mut *tx)
        .await
        .map_err(db("revive chunks"))?
        .rows_affected();
        let deleted = sqlx::query(crate::dynamic(format!(
            "DELETE FROM chunks WHERE condemned_at IS NOT NULL AND condemned_at < $1 AND {UNREFERENCED}"
        )))
        .bind(safe_before)
        .execute(&mut *tx)
        .await
        .map_err(db("delete chunks"))?
        .rows_affected();
        tx.commit().await.map_err(db("sweep"))?;
        Ok(GcCounts {
            condemned: 0,
            revived,
            deleted_chunks: deleted,
        })
    }

    /// Every pack with its live bytes.
    pub async fn pack_usage(&self) -> CatalogResult<Vec<PackUsage>> {
        let rows = sqlx::query(
            "SELECT p.id, p.size, CAST(COALESCE(SUM(c.stored_len), 0) AS BIGINT), COUNT(c.id), p.retired_at, p.tier \
             FROM packs p LEFT JOIN chunks c ON c.pack_id = p.id \
             GROUP BY p.id, p.size, p.retired_at, p.tier ORDER BY p.id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("pack usage"))?;
        rows.iter()
            .map(|r| {
                Ok(PackUsage {
                    id: r.try_get(0)?,
                    size: r.try_get(1)?,
                    live_bytes: r.try_get(2)?,
                    live_chunks: r.try_get(3)?,
                    retired_at: r.try_get(4)?,
                    tier: Tier::parse(&r.try_get::<String, _>(5)?).unwrap_or_default(),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(db("pack usage"))
    }

    /// Chunks whose pack is not in the catalog (id, pack id): data a
    /// restore could not bring back (its chunk rows point at `missing`),
    /// or a catalog damaged by hand. No pack read can find them.
    pub async fn chunks_without_pack(&self) -> CatalogResult<Vec<(ChunkId, String)>> {
        let rows: Vec<(Vec<u8>, String)> = sqlx::query_as(
            "SELECT c.id, c.pack_id FROM chunks c LEFT JOIN packs p ON p.id = c.pack_id \
             WHERE p.id IS NULL AND c.condemned_at IS NULL",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("chunks without pack"))?;
        rows.into_iter()
            .map(|(id, pack)| {
                ChunkId::from_slice(&id)
                    .map(|id| (id, pack))
                    .map_err(|e| CatalogError::BadRow(e.to_string()))
            })
            .collect()
    }

    /// The chunks stored in a pack.
    pub async fn chunks_in_pack(&self, pack_id: &str) -> CatalogResult<Vec<ChunkLoc>> {
        let rows = sqlx::query(crate::dynamic(format!(
            "SELECT {CHUNK_COLS} FROM chunks c LEFT JOIN packs p ON p.id = c.pack_id \
             WHERE c.pack_id = $1 ORDER BY c.pack_offset"
        )))
        .bind(pack_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db("chunks in pack"))?;
        rows.iter().map(|r| chunk_loc(r, 0)).collect()
    }

    /// Records `new_pack` on `tier`, points moved chunks at their copies in
    /// it (only those still where they were: a concurrent move of the same
    /// chunk wins or loses as a whole), and retires every pack of `sources`
    /// left without chunks, in one transaction; returns how many packs it
    /// retired.
    pub async fn relocate_chunks(
        &self,
        tier: Tier,
        new_pack: Option<(&str, i64)>,
        moved: &[Relocation],
        sources: &[String],
    ) -> CatalogResult<u64> {
        let now = now_ms();
        let mut tx = self.begin_write().await.map_err(db("relocate"))?;
        if let Some((id, size)) = new_pack {
            sqlx::query("INSERT INTO packs (id, tier, size, created_at) VALUES ($1, $2, $3, $4)")
                .bind(id)
                .bind(tier.as_str())
                .bind(size)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(db("relocate"))?;
            for m in moved {
                sqlx::query(
                    "UPDATE chunks SET pack_id = $1, pack_offset = $2, stored_len = $3, flags = $4 \
                     WHERE id = $5 AND pack_id = $6",
                )
                .bind(id)
                .bind(m.offset)
                .bind(m.stored_len)
                .bind(m.flags)
                .bind(m.chunk.as_bytes().to_vec())
                .bind(&m.from_pack)
                .execute(&mut *tx)
                    .await
                    .map_err(db("relocate"))?;
            }
        }
        let mut retired = 0;
        for old_pack in sources {
            retired += sqlx::query(
                "UPDATE packs SET retired_at = $1 WHERE id = $2 AND retired_at IS NULL \
                 AND NOT EXISTS (SELECT 1 FROM chunks WHERE pack_id = $2)",
            )
            .bind(now)
            .bind(old_pack)
            .execute(&mut *tx)
            .await
            .map_err(db("relocate"))?
            .rows_affected();
        }
        tx.commit().await.map_err(db("relocate"))?;
        Ok(retired)
    }

    /// Records `new_pack` holding fresh copies of damaged chunks and points
    /// each chunk at its copy (`(id, offset, stored_len, flags)`), in one
    /// transaction.
    pub async fn repoint_chunks(
        &self,
        new_pack: (&str, i64),
        copies: &[(ChunkId, i64, i64, i64)],
    ) -> CatalogResult<()> {
        let mut tx = self.begin_write().await.map_err(db("repair"))?;
        sqlx::query("INSERT INTO packs (id, size, created_at) VALUES ($1, $2, $3)")
            .bind(new_pack.0)
            .bind(new_pack.1)
            .bind(now_ms())
            .execute(&mut *tx)
            .await
            .map_err(db("repair"))?;
        for (chunk, offset, stored_len, flags) in copies {
            sqlx::query(
                "UPDATE chunks SET pack_id = $1, pack_offset = $2, stored_len = $3, flags = $4 WHERE id = $5",
            )
            .bind(new_pack.0)
            .bind(*offset)
            .bind(*stored_len)
            .bind(*flags)
            .bind(chunk.as_bytes().to_vec())
            .execute(&mut *tx)
            .await
            .map_err(db("repair"))?;
        }
        tx.commit().await.map_err(db("repair"))?;
        Ok(())
    }

    /// The tier pack `pack_id` lives on, if the catalog knows the pack.
    pub async fn pack_tier(&self, pack_id: &str) -> CatalogResult<Option<Tier>> {
        let t: Option<String> = sqlx::query_scalar("SELECT tier FROM packs WHERE id = $1")
            .bind(pack_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("pack tier"))?;
        Ok(t.map(|t| Tier::parse(&t).unwrap_or_default()))
    }

    /// The newest packs (at most `n`) the catalog lists on `tier` and has
    /// not retired.
    pub async fn newest_packs(&self, tier: &str, n: i64) -> CatalogResult<Vec<String>> {
        sqlx::query_scalar(
            "SELECT id FROM packs WHERE tier = $1 AND retired_at IS NULL ORDER BY id DESC LIMIT $2",
        )
        .bind(tier)
        .bind(n)
        .fetch_all(&self.pool)
        .await
        .map_err(db("newest packs"))
    }

    /// Ids of every pack the catalog knows, retired ones included.
    pub async fn pack_ids(&self) -> CatalogResult<std::collections::HashSet<String>> {
        let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM packs")
            .fetch_all(&self.pool)
            .await
            .map_err(db("pack ids"))?;
        Ok(ids.into_iter().collect())
    }

    /// Forgets a retired pack whose file was deleted.
    pub async fn delete_pack_row(&self, pack_id: &str) -> CatalogResult<()> {
        sqlx::query("DELETE FROM packs WHERE id = $1 AND retired_at IS NOT NULL")
            .bind(pack_id)
            .execute(&self.pool)
            .await
            .map_err(db("delete pack"))?;
        Ok(())
    }
}
