//! Retention rows in the catalog: bucket lock configurations, object
//! locks, the lock a multipart upload asked for, and the checks deletes
//! and overwrites make inside their own transaction. Every such
//! transaction first claims the object rows it is about (an `UPDATE` that
//! takes their row locks on PostgreSQL; SQLite serialises writers anyway),
//! then reads their protection with a fresh statement, so a concurrent
//! retention change is either seen or waits: no check-then-act race.

use std::collections::HashMap;

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::{Any, Arguments, Row, Transaction};

use super::{
    check_retention_change, BucketLock, DefaultRetention, LockMode, ObjectLock, Retention,
};
use crate::commit::{bind_err, insert_rows, ObjectWrite};
use crate::db::{now_ms, Catalog};
use crate::error::{db, CatalogError, CatalogResult};

/// Reads `(mode, retain_until, legal_hold)` from `first` on (all nullable).
pub(crate) fn lock_from(r: &AnyRow, first: usize) -> Result<ObjectLock, sqlx::Error> {
    let mode: Option<String> = r.try_get(first)?;
    let until: Option<i64> = r.try_get(first + 1)?;
    let hold: Option<i64> = r.try_get(first + 2)?;
    Ok(ObjectLock {
        retention: match (mode.as_deref().and_then(LockMode::parse), until) {
            (Some(mode), Some(until_ms)) => Some(Retention { mode, until_ms }),
            _ => None,
        },
        legal_hold: hold.unwrap_or(0) != 0,
    })
}

/// Sets or removes the legal hold of a claimed object.
pub(crate) async fn put_legal_hold(
    tx: &mut Transaction<'static, Any>,
    object_id: i64,
    on: bool,
) -> CatalogResult<()> {
    sqlx::query(
        "INSERT INTO object_locks (object_id, legal_hold) VALUES ($1, $2) \
         ON CONFLICT (object_id) DO UPDATE SET legal_hold = excluded.legal_hold",
    )
    .bind(object_id)
    .bind(on as i64)
    .execute(&mut **tx)
    .await
    .map_err(db("set legal hold"))?;
    Ok(())
}

/// An object row claimed by a delete or overwrite, with its protection.
#[derive(Debug, Clone)]
pub(crate) struct Claimed {
    pub id: i64,
    pub bucket_id: i64,
    pub key: String,
    pub etag: String,
    pub lock: ObjectLock,
}

/// Claims the objects `cond` selects (binding `args`) and reads their
/// protection.
pub(crate) async fn claim_objects(
    tx: &mut Transaction<'static, Any>,
    cond: &str,
    args: AnyArguments,
) -> CatalogResult<Vec<Claimed>> {
    let rows = sqlx::query_with(
        crate::dynamic(format!(
            "UPDATE objects SET created_at = created_at WHERE {cond} RETURNING id, bucket_id, key, etag"
        )),
        args,
    )
    .fetch_all(&mut **tx)
    .await
    .map_err(db("claim objects"))?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push(Claimed {
            id: r.try_get(0).map_err(db("claim objects"))?,
            bucket_id: r.try_get(1).map_err(db("claim objects"))?,
            key: r.try_get(2).map_err(db("claim objects"))?,
            etag: r.try_get(3).map_err(db("claim objects"))?,
            lock: ObjectLock::default(),
        });
    }
    for block in out.chunks_mut(200) {
        let sql = format!(
            "SELECT object_id, mode, retain_until, legal_hold FROM object_locks WHERE object_id IN ({})",
            crate::placeholders(1, block.len())
        );
        let mut q = sqlx::query(crate::dynamic(sql));
        for c in block.iter() {
            q = q.bind(c.id);
        }
        let locks = q.fetch_all(&mut **tx).await.map_err(db("read locks"))?;
        let mut by_id = HashMap::new();
        for r in &locks {
            let id: i64 = r.try_get(0).map_err(db("read locks"))?;
            by_id.insert(id, lock_from(r, 1).map_err(db("read locks"))?);
        }
        for c in block.iter_mut() {
            c.lock = by_id.remove(&c.id).unwrap_or_default();
        }
    }
    Ok(out)
}

/// Refuses a delete of claimed objects when any is protected now; on
/// success removes their lock rows (the objects are about to go).
pub(crate) async fn release_for_delete(
    tx: &mut Transaction<'static, Any>,
    claimed: &[Claimed],
    bypass_governance: bool,
) -> CatalogResult<()> {
    let now = now_ms();
    for c in claimed {
        if let Some(reason) = c.lock.blocks_delete(now, bypass_governance) {
            return Err(CatalogError::ObjectLocked {
                key: c.key.clone(),
                reason,
            });
        }
    }
    drop_locks(tx, claimed).await
}

/// Removes the lock rows of claimed objects.
pub(crate) async fn drop_locks(
    tx: &mut Transaction<'static, Any>,
    claimed: &[Claimed],
) -> CatalogResult<()> {
    let ids: Vec<i64> = claimed
        .iter()
        .filter(|c| !c.lock.is_empty())
        .map(|c| c.id)
        .collect();
    for block in ids.chunks(200) {
        let sql = format!(
            "DELETE FROM object_locks WHERE object_id IN ({})",
            crate::placeholders(1, block.len())
        );
        let mut q = sqlx::query(crate::dynamic(sql));
        for id in block {
            q = q.bind(*id);
        }
        q.execute(&mut **tx).await.map_err(db("drop locks"))?;
    }
    Ok(())
}

/// For each write of `block` (in order): the protection its overwritten
/// object carries forward. An overwrite of a protected object is refused
/// unless the new body is the same chunk list (we keep no versions, so a
/// different body would destroy retained data).
pub(crate) async fn check_overwrites(
    tx: &mut Transaction<'static, Any>,
    block: &[&ObjectWrite],
    claimed: &[Claimed],
) -> CatalogResult<Vec<ObjectLock>> {
    let now = now_ms();
    let by_key: HashMap<(i64, &str), &Claimed> = claimed
        .iter()
        .map(|c| ((c.bucket_id, c.key.as_str()), c))
        .collect();
    let mut carried = Vec::with_capacity(block.len());
    for o in block {
        let Some(old) = by_key.get(&(o.bucket_id, o.key.as_str())) else {
            carried.push(ObjectLock::default());
            continue;
        };
        let Some(reason) = old.lock.blocks_delete(now, false) else {
            carried.push(ObjectLock::default());
            continue;
        };
        let old_chunks: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT chunk_id FROM object_chunks WHERE object_id = $1 ORDER BY seq",
        )
        .bind(old.id)
        .fetch_all(&mut **tx)
        .await
        .map_err(db("compare overwrite"))?;
        let same = old_chunks.len() == o.chunks.len()
            && old_chunks
                .iter()
                .zip(&o.chunks)
                .all(|(a, b)| a.as_slice() == b.as_bytes());
        if !same {
            return Err(CatalogError::ObjectLocked {
                key: o.key.clone(),
                reason: format!(
                    "{reason}; it cannot be overwritten with different content (no versions are kept)"
                ),
            });
        }
        carried.push(old.lock.active(now));
    }
    Ok(carried)
}

/// Stores the protection of newly written objects: the explicit retention
/// (or else the bucket's default), raised to the policy floor and to what
/// the overwritten object carried. `written` is `(object id, write,
/// carried)`.
pub(crate) async fn store_write_locks(
    tx: &mut Transaction<'static, Any>,
    written: &[(i64, &ObjectWrite, ObjectLock)],
    now: i64,
) -> CatalogResult<()> {
    let mut need_default: Vec<i64> = written
        .iter()
        .filter(|(_, o, _)| o.lock.retention.is_none())
        .map(|(_, o, _)| o.bucket_id)
        .collect();
    need_default.sort_unstable();
    need_default.dedup();
    let mut defaults = HashMap::new();
    for block in need_default.chunks(200) {
        let sql = format!(
            "SELECT bucket_id, default_mode, default_days, default_years FROM bucket_locks \
             WHERE enabled <> 0 AND default_mode IS NOT NULL AND bucket_id IN ({})",
            crate::placeholders(1, block.len())
        );
        let mut q = sqlx::query(crate::dynamic(sql));
        for id in block {
            q = q.bind(*id);
        }
        for r in q
            .fetch_all(&mut **tx)
            .await
            .map_err(db("bucket defaults"))?
        {
            let d = default_from(&r, 1).map_err(db("bucket defaults"))?;
            let id: i64 = r.try_get(0).map_err(db("bucket defaults"))?;
            if let Some(d) = d {
                defaults.insert(id, d);
            }
        }
    }
    let rows: Vec<(i64, ObjectLock)> = written
        .iter()
        .map(|(id, o, carried)| {
            let base = o.lock.retention.or_else(|| {
                defaults
                    .get(&o.bucket_id)
                    .map(|d: &DefaultRetention| d.retention_from(now))
            });
            let lock = ObjectLock {
                retention: Retention::strongest(base, o.lock.policy),
                legal_hold: o.lock.legal_hold,
            }
            .merge(*carried);
            (*id, lock)
        })
        .filter(|(_, l)| !l.is_empty())
        .collect();
    insert_rows(
        tx,
        (
            "INSERT INTO object_locks (object_id, mode, retain_until, legal_hold)",
            4,
            "",
        ),
        &rows,
        "store locks",
        |args, (id, lock)| {
            args.add(*id)?;
            args.add(lock.retention.map(|r| r.mode.as_str().to_string()))?;
            args.add(lock.retention.map(|r| r.until_ms))?;
            args.add(lock.legal_hold as i64)
        },
    )
    .await?;
    Ok(())
}

fn default_from(r: &AnyRow, first: usize) -> Result<Option<DefaultRetention>, sqlx::Error> {
    let mode: Option<String> = r.try_get(first)?;
    let days: Option<i64> = r.try_get(first + 1)?;
    let years: Option<i64> = r.try_get(first + 2)?;
    Ok(mode
        .as_deref()
        .and_then(LockMode::parse)
        .map(|mode| DefaultRetention {
            mode,
            days: days.unwrap_or(0),
            years: years.unwrap_or(0),
        }))
}

/// `bucket_id = $1 AND key = $2` arguments.
pub(crate) fn key_args(bucket_id: i64, key: &str) -> CatalogResult<AnyArguments> {
    let mut args = AnyArguments::default();
    args.add(bucket_id).map_err(bind_err)?;
    args.add(key.to_string()).map_err(bind_err)?;
    Ok(args)
}

pub(crate) const ONE_OBJECT: &str = "bucket_id = $1 AND key = $2";

impl Catalog {
    /// A bucket's Object Lock configuration (disabled when never set).
    pub async fn bucket_lock(&self, bucket_id: i64) -> CatalogResult<BucketLock> {
        let row = sqlx::query(
            "SELECT enabled, default_mode, default_days, default_years FROM bucket_locks WHERE bucket_id = $1",
        )
        .bind(bucket_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("get bucket lock"))?;
        let Some(r) = row else {
            return Ok(BucketLock::default());
        };
        Ok(BucketLock {
            enabled: r.try_get::<i64, _>(0).map_err(db("get bucket lock"))? != 0,
            default: default_from(&r, 1).map_err(db("get bucket lock"))?,
        })
    }

    pub async fn set_bucket_lock(&self, bucket_id: i64, lock: &BucketLock) -> CatalogResult<()> {
        let d = lock.default;
        sqlx::query(
            "INSERT INTO bucket_locks (bucket_id, enabled, default_mode, default_days, default_years) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (bucket_id) DO UPDATE SET \
             enabled = excluded.enabled, default_mode = excluded.default_mode, \
             default_days = excluded.default_days, default_years = excluded.default_years",
        )
        .bind(bucket_id)
        .bind(lock.enabled as i64)
        .bind(d.map(|d| d.mode.as_str().to_string()))
        .bind(d.map(|d| d.days))
        .bind(d.map(|d| d.years))
        .execute(&self.pool)
        .await
        .map_err(db("set bucket lock"))?;
        Ok(())
    }

    /// Sets (or with `None` removes) an object's retention, refusing what
    /// would weaken it (see [`check_retention_change`]). Returns whether
    /// the object exists.
    pub async fn set_object_retention(
        &self,
        bucket_id: i64,
        key: &str,
        new: Option<Retention>,
        bypass_governance: bool,
    ) -> CatalogResult<bool> {
        let mut tx = self.begin_write().await.map_err(db("set retention"))?;
        let claimed = claim_objects(&mut tx, ONE_OBJECT, key_args(bucket_id, key)?).await?;
        let Some(obj) = claimed.first() else {
            return Ok(false);
        };
        check_retention_change(obj.lock.retention, new, now_ms(), bypass_governance).map_err(
            |reason| CatalogError::ObjectLocked {
                key: key.to_string(),
                reason,
            },
        )?;
        sqlx::query(
            "INSERT INTO object_locks (object_id, mode, retain_until, legal_hold) VALUES ($1, $2, $3, 0) \
             ON CONFLICT (object_id) DO UPDATE SET mode = excluded.mode, retain_until = excluded.retain_until",
        )
        .bind(obj.id)
        .bind(new.map(|r| r.mode.as_str().to_string()))
        .bind(new.map(|r| r.until_ms))
        .execute(&mut *tx)
        .await
        .map_err(db("set retention"))?;
        tx.commit().await.map_err(db("set retention"))?;
        Ok(true)
    }

    /// Places or removes an object's legal hold. Returns whether the
    /// object exists.
    pub async fn set_legal_hold(&self, bucket_id: i64, key: &str, on: bool) -> CatalogResult<bool> {
        let mut tx = self.begin_write().await.map_err(db("set legal hold"))?;
        let claimed = claim_objects(&mut tx, ONE_OBJECT, key_args(bucket_id, key)?).await?;
        let Some(obj) = claimed.first() else {
            return Ok(false);
        };
        put_legal_hold(&mut tx, obj.id, on).await?;
        tx.commit().await.map_err(db("set legal hold"))?;
        Ok(true)
    }

    /// Remembers the Object Lock headers of a multipart upload.
    pub async fn set_upload_lock(&self, upload_id: &str, lock: &ObjectLock) -> CatalogResult<()> {
        sqlx::query(
            "INSERT INTO upload_locks (upload_id, mode, retain_until, legal_hold) VALUES ($1, $2, $3, $4)",
        )
        .bind(upload_id)
        .bind(lock.retention.map(|r| r.mode.as_str().to_string()))
        .bind(lock.retention.map(|r| r.until_ms))
        .bind(lock.legal_hold as i64)
        .execute(&self.pool)
        .await
        .map_err(db("set upload lock"))?;
        Ok(())
    }

    /// The Object Lock headers a multipart upload was created with.
    pub async fn upload_lock(&self, upload_id: &str) -> CatalogResult<ObjectLock> {
        let row = sqlx::query(
            "SELECT mode, retain_until, legal_hold FROM upload_locks WHERE upload_id = $1",
        )
        .bind(upload_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("get upload lock"))?;
        row.map(|r| lock_from(&r, 0).map_err(db("get upload lock")))
            .transpose()
            .map(Option::unwrap_or_default)
    }
}
