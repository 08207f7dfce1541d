//! Catalog side of the archive tier and lifecycle: last-read tracking,
//! selecting objects for a lifecycle rule (by bucket and key prefix, or
//! the DICOM index), the hot chunks of a set of objects, archived marks,
//! per-tier totals and each bucket's stored S3 lifecycle rules.

use fulcrum_types::Tier;
use sqlx::any::AnyArguments;
use sqlx::{Arguments, Row};

use crate::db::{now_ms, Catalog};
use crate::error::{db, CatalogError, CatalogResult};
use crate::objects::{chunk_loc, ChunkLoc, CHUNK_COLS};

/// Which objects a lifecycle rule selects (objects already archived never).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Objects of one bucket under a key prefix.
    Bucket {
        tenant: String,
        bucket: String,
        prefix: String,
        /// Only objects created before this time (ms).
        created_before: Option<i64>,
        /// Only objects neither read nor written since this time (ms).
        not_read_since: Option<i64>,
    },
    /// The instances of a tenant's DICOM archive (objects `object_key` of
    /// `dicom_instances` in the bucket `bucket`), by study.
    Dicom {
        tenant: String,
        bucket: String,
        /// Only studies with a series of this modality (e.g. "CT").
        modality: Option<String>,
        /// Only studies whose StudyDate (YYYYMMDD) sorts before this one.
        study_date_before: Option<String>,
    },
}

/// An object a lifecycle rule selected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub object_id: i64,
    pub key: String,
    pub size: i64,
}

/// Totals of one tier for `fulcrum stats`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TierStats {
    pub tier: String,
    pub packs: i64,
    /// Bytes of the tier's pack files.
    pub pack_bytes: i64,
    pub chunks: i64,
    /// Bytes of the tier's chunks as stored (compressed, encrypted).
    pub stored_bytes: i64,
    /// Plaintext bytes of the tier's chunks.
    pub raw_bytes: i64,
}

fn add_arg<'a, T>(args: &mut AnyArguments, v: T) -> CatalogResult<()>
where
    T: 'a + sqlx::Encode<'a, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    args.add(v).map_err(|e| CatalogError::Db {
        op: "bind",
        source: sqlx::Error::Encode(e),
    })
}

fn bind_i64s(ids: &[i64]) -> CatalogResult<AnyArguments> {
    let mut args = AnyArguments::default();
    for id in ids {
        add_arg(&mut args, *id)?;
    }
    Ok(args)
}

impl Catalog {
    /// Records a read of `objects` at `now`, except those with one recorded
    /// within `min_interval_ms` (so a busy object costs one write a day at
    /// most); one statement per 200 objects.
    pub async fn touch_reads(
        &self,
        objects: &[i64],
        now: i64,
        min_interval_ms: i64,
    ) -> CatalogResult<u64> {
        let mut n = 0;
        for block in objects.chunks(200) {
            let sql = format!(
                "UPDATE objects SET last_read_at = ${} WHERE id IN ({}) \
                 AND (last_read_at IS NULL OR last_read_at < ${})",
                block.len() + 1,
                crate::placeholders(1, block.len()),
                block.len() + 2
            );
            let mut args = bind_i64s(block)?;
            add_arg(&mut args, now)?;
            add_arg(&mut args, now - min_interval_ms)?;
            n += sqlx::query_with(crate::dynamic(sql), args)
                .execute(&self.pool)
                .await
                .map_err(db("touch reads"))?
                .rows_affected();
        }
        Ok(n)
    }

    /// The not yet archived objects `sel` selects, in key order.
    pub async fn lifecycle_candidates(&self, sel: &Selection) -> CatalogResult<Vec<Candidate>> {
        let q = match sel {
            Selection::Bucket {
                tenant,
                bucket,
                prefix,
                created_before,
                not_read_since,
            } => sqlx::query(
                "SELECT o.id, o.key, o.size FROM objects o JOIN buckets b ON b.id = o.bucket_id \
                 WHERE b.tenant = $1 AND b.name = $2 AND o.key >= $3 AND o.key < $4 \
                 AND o.archived_at IS NULL AND o.created_at < $5 \
                 AND COALESCE(o.last_read_at, o.created_at) < $6 ORDER BY o.key",
            )
            .bind(tenant.clone())
            .bind(bucket.clone())
            .bind(prefix.clone())
            .bind(format!("{prefix}\u{10FFFF}"))
            .bind(created_before.unwrap_or(i64::MAX))
            .bind(not_read_since.unwrap_or(i64::MAX)),
            Selection::Dicom {
                tenant,
                bucket,
                modality,
                study_date_before,
            } => sqlx::query(
                "SELECT o.id, o.key, o.size FROM dicom_instances i \
                 JOIN dicom_studies s ON s.tenant = i.tenant AND s.study_uid = i.study_uid \
                 JOIN buckets b ON b.tenant = i.tenant AND b.name = $2 \
                 JOIN objects o ON o.bucket_id = b.id AND o.key = i.object_key \
                 WHERE i.tenant = $1 AND o.archived_at IS NULL \
                 AND ($3 = '' OR EXISTS (SELECT 1 FROM dicom_series se WHERE se.tenant = i.tenant \
                      AND se.study_uid = i.study_uid AND UPPER(se.modality) = $3)) \
                 AND ($4 = '' OR (s.study_date IS NOT NULL AND s.study_date <> '' AND s.study_date < $4)) \
                 ORDER BY o.key",
            )
            .bind(tenant.clone())
            .bind(bucket.clone())
            .bind(modality.clone().unwrap_or_default().to_uppercase())
            .bind(study_date_before.clone().unwrap_or_default()),
        };
        let rows = q
            .fetch_all(&self.pool)
            .await
            .map_err(db("lifecycle candidates"))?;
        rows.iter()
            .map(|r| {
                Ok(Candidate {
                    object_id: r.try_get(0)?,
                    key: r.try_get(1)?,
                    size: r.try_get(2)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(db("lifecycle candidates"))
    }

    /// The distinct chunks of `objects` stored on `tier`, by pack and offset.
    pub async fn chunks_of_objects_on(
        &self,
        objects: &[i64],
        tier: Tier,
    ) -> CatalogResult<Vec<ChunkLoc>> {
        let mut out: Vec<ChunkLoc> = Vec::new();
        for block in objects.chunks(500) {
            let sql = format!(
                "SELECT DISTINCT {CHUNK_COLS} FROM object_chunks oc \
                 JOIN chunks c ON c.id = oc.chunk_id JOIN packs p ON p.id = c.pack_id \
                 WHERE p.tier = ${} AND oc.object_id IN ({})",
                block.len() + 1,
                crate::placeholders(1, block.len())
            );
            let mut args = bind_i64s(block)?;
            add_arg(&mut args, tier.as_str())?;
            let rows = sqlx::query_with(crate::dynamic(sql), args)
                .fetch_all(&self.pool)
                .await
                .map_err(db("chunks of objects"))?;
            for r in &rows {
                out.push(chunk_loc(r, 0)?);
            }
        }
        out.sort_by(|a, b| (&a.pack_id, a.offset).cmp(&(&b.pack_id, b.offset)));
        out.dedup_by(|a, b| a.id == b.id);
        Ok(out)
    }

    /// Marks as archived those of `objects` with no chunk left on the hot
    /// tier; returns how many it marked.
    pub async fn mark_archived(&self, objects: &[i64]) -> CatalogResult<u64> {
        let mut n = 0;
        for block in objects.chunks(500) {
            let sql = format!(
                "UPDATE objects SET archived_at = ${} WHERE archived_at IS NULL AND id IN ({}) \
                 AND NOT EXISTS (SELECT 1 FROM object_chunks oc JOIN chunks c ON c.id = oc.chunk_id \
                 JOIN packs p ON p.id = c.pack_id WHERE oc.object_id = objects.id AND p.tier = 'hot')",
                block.len() + 1,
                crate::placeholders(1, block.len())
            );
            let mut args = bind_i64s(block)?;
            add_arg(&mut args, now_ms())?;
            n += sqlx::query_with(crate::dynamic(sql), args)
                .execute(&self.pool)
                .await
                .map_err(db("mark archived"))?
                .rows_affected();
        }
        Ok(n)
    }

    /// Clears the archived mark of an object promoted back to hot.
    pub async fn unmark_archived(&self, object_id: i64) -> CatalogResult<()> {
        sqlx::query("UPDATE objects SET archived_at = NULL WHERE id = $1")
            .bind(object_id)
            .execute(&self.pool)
            .await
            .map_err(db("unmark archived"))?;
        Ok(())
    }

    /// Packs and chunks per tier (tiers without packs are left out).
    pub async fn tier_stats(&self) -> CatalogResult<Vec<TierStats>> {
        let packs = sqlx::query(
            "SELECT tier, COUNT(*), CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM packs \
             GROUP BY tier ORDER BY tier",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("tier stats"))?;
        let chunks = sqlx::query(
            "SELECT p.tier, COUNT(*), CAST(COALESCE(SUM(c.stored_len), 0) AS BIGINT), \
             CAST(COALESCE(SUM(c.raw_len), 0) AS BIGINT) \
             FROM chunks c JOIN packs p ON p.id = c.pack_id GROUP BY p.tier",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("tier stats"))?;
        let mut out: Vec<TierStats> = Vec::new();
        for r in &packs {
            out.push(TierStats {
                tier: r.try_get(0).map_err(db("tier stats"))?,
                packs: r.try_get(1).map_err(db("tier stats"))?,
                pack_bytes: r.try_get(2).map_err(db("tier stats"))?,
                ..Default::default()
            });
        }
        for r in &chunks {
            let tier: String = r.try_get(0).map_err(db("tier stats"))?;
            if let Some(t) = out.iter_mut().find(|t| t.tier == tier) {
                t.chunks = r.try_get(1).map_err(db("tier stats"))?;
                t.stored_bytes = r.try_get(2).map_err(db("tier stats"))?;
                t.raw_bytes = r.try_get(3).map_err(db("tier stats"))?;
            }
        }
        Ok(out)
    }

    /// Stores (replaces) a bucket's lifecycle rules, as JSON.
    pub async fn put_bucket_lifecycle(&self, bucket_id: i64, rules: &str) -> CatalogResult<()> {
        sqlx::query(
            "INSERT INTO bucket_lifecycle (bucket_id, rules, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (bucket_id) DO UPDATE SET rules = excluded.rules, updated_at = excluded.updated_at",
        )
        .bind(bucket_id)
        .bind(rules)
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(db("put bucket lifecycle"))?;
        Ok(())
    }

    pub async fn bucket_lifecycle(&self, bucket_id: i64) -> CatalogResult<Option<String>> {
        sqlx::query_scalar("SELECT rules FROM bucket_lifecycle WHERE bucket_id = $1")
            .bind(bucket_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("get bucket lifecycle"))
    }

    /// Removes a bucket's lifecycle rules; returns whether it had any.
    pub async fn delete_bucket_lifecycle(&self, bucket_id: i64) -> CatalogResult<bool> {
        let n = sqlx::query("DELETE FROM bucket_lifecycle WHERE bucket_id = $1")
            .bind(bucket_id)
            .execute(&self.pool)
            .await
            .map_err(db("delete bucket lifecycle"))?
            .rows_affected();
        Ok(n > 0)
    }

    /// Every bucket's lifecycle rules: (tenant, bucket name, JSON rules).
    pub async fn all_bucket_lifecycles(&self) -> CatalogResult<Vec<(String, String, String)>> {
        let rows = sqlx::query(
            "SELECT b.tenant, b.name, l.rules FROM bucket_lifecycle l \
             JOIN buckets b ON b.id = l.bucket_id ORDER BY b.tenant, b.name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("bucket lifecycles"))?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(db("bucket lifecycles"))
    }
}
