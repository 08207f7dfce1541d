//! Reading and deleting objects: metadata rows, chunk lists with pack
//! locations, and ordered listings for S3's ListObjectsV2.

use fulcrum_types::{ChunkId, Tier};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::db::Catalog;
use crate::error::{db, CatalogError, CatalogResult};

#[derive(Debug, Clone)]
pub struct ObjectRow {
    pub id: i64,
    pub bucket_id: i64,
    pub key: String,
    pub size: i64,
    pub etag: String,
    pub content_type: Option<String>,
    pub metadata: String,
    pub created_at: i64,
    /// Retention and legal hold (see `retention`).
    pub lock: crate::retention::ObjectLock,
    /// When a tier move archived it (`None`: hot).
    pub archived_at: Option<i64>,
}

/// An object as listed (no chunk list).
#[derive(Debug, Clone)]
pub struct ObjectSummary {
    pub key: String,
    pub size: i64,
    pub etag: String,
    pub created_at: i64,
    /// When a tier move archived it (`None`: hot).
    pub archived_at: Option<i64>,
    /// Its metadata as stored (JSON; checksums are listed from it).
    pub metadata: String,
}

/// Where one chunk of an object is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkLoc {
    pub id: ChunkId,
    pub pack_id: String,
    pub offset: u64,
    pub stored_len: u32,
    pub raw_len: u32,
    pub flags: u8,
    /// The tier of its pack, which says which backend holds it.
    pub tier: Tier,
}

const OBJECT_COLS: &str = "o.id, o.bucket_id, o.key, o.size, o.etag, o.content_type, o.metadata, \
    o.created_at, l.mode, l.retain_until, l.legal_hold, o.archived_at";

/// The columns `chunk_loc` reads, from `chunks c` joined with its pack
/// (`LEFT JOIN packs p ON p.id = c.pack_id`).
pub(crate) const CHUNK_COLS: &str =
    "c.id, c.pack_id, c.pack_offset, c.stored_len, c.raw_len, c.flags, p.tier";

fn object_row(r: &AnyRow) -> Result<ObjectRow, sqlx::Error> {
    Ok(ObjectRow {
        id: r.try_get(0)?,
        bucket_id: r.try_get(1)?,
        key: r.try_get(2)?,
        size: r.try_get(3)?,
        etag: r.try_get(4)?,
        content_type: r.try_get(5)?,
        metadata: r.try_get(6)?,
        created_at: r.try_get(7)?,
        lock: crate::retention::lock_from(r, 8)?,
        archived_at: r.try_get(11)?,
    })
}

pub(crate) fn chunk_loc(r: &AnyRow, first: usize) -> CatalogResult<ChunkLoc> {
    let get = |e| CatalogError::Db {
        op: "read chunk row",
        source: e,
    };
    let id: Vec<u8> = r.try_get(first).map_err(get)?;
    Ok(ChunkLoc {
        id: ChunkId::from_slice(&id).map_err(|e| CatalogError::BadRow(e.to_string()))?,
        pack_id: r.try_get(first + 1).map_err(get)?,
        offset: r.try_get::<i64, _>(first + 2).map_err(get)? as u64,
        stored_len: r.try_get::<i64, _>(first + 3).map_err(get)? as u32,
        raw_len: r.try_get::<i64, _>(first + 4).map_err(get)? as u32,
        flags: r.try_get::<i64, _>(first + 5).map_err(get)? as u8,
        tier: r
            .try_get::<Option<String>, _>(first + 6)
            .map_err(get)?
            .and_then(|t| Tier::parse(&t))
            .unwrap_or_default(),
    })
}

impl Catalog {
    pub async fn get_object(&self, bucket_id: i64, key: &str) -> CatalogResult<Option<ObjectRow>> {
        let row = sqlx::query(crate::dynamic(format!(
            "SELECT {OBJECT_COLS} FROM objects o LEFT JOIN object_locks l ON l.object_id = o.id \
             WHERE o.bucket_id = $1 AND o.key = $2"
        )))
        .bind(bucket_id)
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("get object"))?;
        row.map(|r| object_row(&r).map_err(db("get object")))
            .transpose()
    }

    /// The chunk ids of an object, in order.
    pub async fn object_chunk_ids(&self, object_id: i64) -> CatalogResult<Vec<ChunkId>> {
        let rows: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT chunk_id FROM object_chunks WHERE object_id = $1 ORDER BY seq",
        )
        .bind(object_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db("object chunks"))?;
        rows.iter()
            .map(|b| ChunkId::from_slice(b).map_err(|e| CatalogError::BadRow(e.to_string())))
            .collect()
    }

    /// The chunks of an object, in order, with where each is stored.
    pub async fn object_chunks(&self, object_id: i64) -> CatalogResult<Vec<ChunkLoc>> {
        let rows = sqlx::query(crate::dynamic(format!(
            "SELECT {CHUNK_COLS} FROM object_chunks oc JOIN chunks c ON c.id = oc.chunk_id \
             LEFT JOIN packs p ON p.id = c.pack_id WHERE oc.object_id = $1 ORDER BY oc.seq"
        )))
        .bind(object_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db("object chunks"))?;
        rows.iter().map(|r| chunk_loc(r, 0)).collect()
    }

    /// Objects of a bucket by key with their chunk locations, in one query
    /// per 200 keys: `(key, object id, size, chunks in order)`. Keys with no
    /// object are left out.
    pub async fn objects_with_chunks(
        &self,
        bucket_id: i64,
        keys: &[&str],
    ) -> CatalogResult<Vec<(String, i64, i64, Vec<ChunkLoc>)>> {
        let mut out: Vec<(String, i64, i64, Vec<ChunkLoc>)> = Vec::new();
        for block in keys.chunks(200) {
            let mut q = sqlx::query(crate::dynamic(format!(
                "SELECT {CHUNK_COLS}, o.id, o.key, o.size FROM objects o \
                 JOIN object_chunks oc ON oc.object_id = o.id \
                 JOIN chunks c ON c.id = oc.chunk_id LEFT JOIN packs p ON p.id = c.pack_id \
                 WHERE o.bucket_id = $1 AND o.key IN ({}) ORDER BY o.id, oc.seq",
                crate::placeholders(2, block.len())
            )))
            .bind(bucket_id);
            for k in block {
                q = q.bind(k.to_string());
            }
            let rows = q
                .fetch_all(&self.pool)
                .await
                .map_err(db("objects with chunks"))?;
            for r in &rows {
                let get = |i| r.try_get::<i64, _>(i).map_err(db("objects with chunks"));
                let id = get(7)?;
                let loc = chunk_loc(r, 0)?;
                match out.last_mut() {
                    Some(last) if last.1 == id => last.3.push(loc),
                    _ => {
                        let key: String = r.try_get(8).map_err(db("objects with chunks"))?;
                        out.push((key, id, get(9)?, vec![loc]));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Objects whose key starts with `prefix` and sorts after `after`, in
    /// key order (byte order on both databases), at most `limit`.
    pub async fn list_objects(
        &self,
        bucket_id: i64,
        prefix: &str,
        after: &str,
        limit: i64,
    ) -> CatalogResult<Vec<ObjectSummary>> {
        // Keys in [prefix, prefix + U+10FFFF) start with prefix; comparing
        // with >= / < keeps the query on the (bucket_id, key) index.
        let upper = format!("{prefix}\u{10FFFF}");
        // Keys sort bytewise on both databases (BINARY in SQLite, COLLATE "C"
        // on the PostgreSQL column).
        let rows = sqlx::query(
            "SELECT key, size, etag, created_at, archived_at, metadata FROM objects WHERE bucket_id = $1 \
             AND key >= $2 AND key < $3 AND key > $4 ORDER BY key LIMIT $5",
        )
        .bind(bucket_id)
        .bind(prefix)
        .bind(upper)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db("list objects"))?;
        rows.iter()
            .map(|r| {
                Ok(ObjectSummary {
                    key: r.try_get(0)?,
                    size: r.try_get(1)?,
                    etag: r.try_get(2)?,
                    created_at: r.try_get(3)?,
                    archived_at: r.try_get(4)?,
                    metadata: r.try_get(5)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(db("list objects"))
    }

    /// Sets one entry of an object's metadata (removes it with `None`) in
    /// place: the object keeps its content, ETag and Last-Modified (S3
    /// object tagging). Returns false when there is no such object. A
    /// compare-and-swap on the metadata text, retried, so two concurrent
    /// changes of different entries both land.
    pub async fn set_object_meta(
        &self,
        bucket_id: i64,
        key: &str,
        name: &str,
        value: Option<&str>,
    ) -> CatalogResult<bool> {
        loop {
            let old: Option<String> = sqlx::query_scalar(
                "SELECT metadata FROM objects WHERE bucket_id = $1 AND key = $2",
            )
            .bind(bucket_id)
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("set object metadata"))?;
            let Some(old) = old else {
                return Ok(false);
            };
            let mut m: std::collections::BTreeMap<String, String> =
                serde_json::from_str(&old).unwrap_or_default();
            match value {
                Some(v) => m.insert(name.to_string(), v.to_string()),
                None => m.remove(name),
            };
            let new = serde_json::to_string(&m)
                .map_err(|e| CatalogError::BadRow(format!("object metadata: {e}")))?;
            let n = sqlx::query(
                "UPDATE objects SET metadata = $1 WHERE bucket_id = $2 AND key = $3 AND metadata = $4",
            )
            .bind(new)
            .bind(bucket_id)
            .bind(key)
            .bind(old)
            .execute(&self.pool)
            .await
            .map_err(db("set object metadata"))?
            .rows_affected();
            if n > 0 {
                return Ok(true);
            }
        }
    }

    /// Deletes an object; its chunks become garbage for GC. Returns whether
    /// it existed. An object under retention or legal hold is refused
    /// ([`CatalogError::ObjectLocked`]).
    pub async fn delete_object(&self, bucket_id: i64, key: &str) -> CatalogResult<bool> {
        self.delete_object_with(bucket_id, key, false).await
    }

    /// [`Catalog::delete_object`], optionally bypassing governance-mode
    /// retention (never compliance mode or a legal hold). The check runs
    /// in the deleting transaction.
    pub async fn delete_object_with(
        &self,
        bucket_id: i64,
        key: &str,
        bypass_governance: bool,
    ) -> CatalogResult<bool> {
        self.delete_object_if(bucket_id, key, bypass_governance, None)
            .await
    }

    /// [`Catalog::delete_object_with`], only if the object at the key
    /// meets `cond` (checked in the transaction that deletes it).
    pub async fn delete_object_if(
        &self,
        bucket_id: i64,
        key: &str,
        bypass_governance: bool,
        cond: Option<&crate::DeleteCondition>,
    ) -> CatalogResult<bool> {
        let mut tx = self.begin_write().await.map_err(db("delete object"))?;
        if let Some(cond) = cond {
            // The row checked stays the row deleted: on PostgreSQL (read
            // committed) a version written between the check and the
            // DELETE would otherwise be deleted unchecked; the lock makes
            // that writer wait. SQLite's write lock is database-wide.
            let lock = match crate::db::DbKind::of(&tx) {
                crate::db::DbKind::Postgres => " FOR UPDATE",
                _ => "",
            };
            let row = sqlx::query(crate::dynamic(format!(
                "SELECT etag, size, created_at FROM objects WHERE bucket_id = $1 AND key = $2{lock}"
            )))
            .bind(bucket_id)
            .bind(key)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db("delete object"))?;
            let current = match &row {
                Some(r) => Some((
                    r.try_get::<String, _>(0).map_err(db("delete object"))?,
                    r.try_get::<i64, _>(1).map_err(db("delete object"))?,
                    r.try_get::<i64, _>(2).map_err(db("delete object"))?,
                )),
                None => None,
            };
            cond.check(key, current.as_ref().map(|(e, s, c)| (e.as_str(), *s, *c)))?;
        }
        let claimed = crate::retention::claim_objects(
            &mut tx,
            crate::retention::ONE_OBJECT,
            crate::retention::key_args(bucket_id, key)?,
        )
        .await?;
        crate::retention::release_for_delete(&mut tx, &claimed, bypass_governance).await?;
        sqlx::query("DELETE FROM object_chunks WHERE object_id IN (SELECT id FROM objects WHERE bucket_id = $1 AND key = $2)")
            .bind(bucket_id)
            .bind(key)
            .execute(&mut *tx)
            .await
            .map_err(db("delete object"))?;
        let n = sqlx::query("DELETE FROM objects WHERE bucket_id = $1 AND key = $2")
            .bind(bucket_id)
            .bind(key)
            .execute(&mut *tx)
            .await
            .map_err(db("delete object"))?
            .rows_affected();
        tx.commit().await.map_err(db("delete object"))?;
        Ok(n > 0)
    }

    /// `bucket/key` of every object that references any of `chunks` (for
    /// verify: which objects a damaged chunk hurts), sorted.
    pub async fn objects_referencing(&self, chunks: &[ChunkId]) -> CatalogResult<Vec<String>> {
        let mut out = std::collections::BTreeSet::new();
        for block in chunks.chunks(500) {
            let sql = format!(
                "SELECT DISTINCT b.name, o.key FROM object_chunks oc \
                 JOIN objects o ON o.id = oc.object_id JOIN buckets b ON b.id = o.bucket_id \
                 WHERE oc.chunk_id IN ({})",
                crate::placeholders(1, block.len())
            );
            let mut q = sqlx::query(crate::dynamic(sql));
            for id in block {
                q = q.bind(id.as_bytes().to_vec());
            }
            for r in q
                .fetch_all(&self.pool)
                .await
                .map_err(db("objects referencing"))?
            {
                let bucket: String = r.try_get(0).map_err(db("objects referencing"))?;
                let key: String = r.try_get(1).map_err(db("objects referencing"))?;
                out.insert(format!("{bucket}/{key}"));
            }
        }
        Ok(out.into_iter().collect())
    }
}
