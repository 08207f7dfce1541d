//! The write transaction: new packs, new chunk locations and the objects or
//! multipart parts that reference them, committed together so a stored
//! object is always complete and a failed one never visible. The engine's
//! group committer puts many writes in one batch (one transaction).

use fulcrum_types::ChunkId;
use sqlx::any::AnyArguments;
use sqlx::{Any, Arguments, Row, Transaction};

use crate::db::{now_ms, Catalog, DbKind};
use crate::error::{db, CatalogError, CatalogResult};

#[derive(Debug, Clone)]
pub struct NewPack {
    pub id: String,
    pub size: i64,
}

#[derive(Debug, Clone)]
pub struct NewChunk {
    pub id: ChunkId,
    pub pack_id: String,
    pub offset: i64,
    pub stored_len: i64,
    pub raw_len: i64,
    pub flags: i64,
}

/// A whole object (replacing any object of the same key).
#[derive(Debug, Clone)]
pub struct ObjectWrite {
    pub bucket_id: i64,
    pub key: String,
    pub size: i64,
    pub etag: String,
    pub content_type: Option<String>,
    /// User metadata as a JSON object of strings.
    pub metadata: String,
    pub chunks: Vec<ChunkId>,
    /// The multipart upload this object completes: its records are removed
    /// in the same transaction.
    pub completes_upload: Option<String>,
    /// Retention and legal hold asked for (see `retention`).
    pub lock: crate::retention::LockRequest,
    /// A precondition on the object the write replaces, checked in the
    /// transaction that would replace it.
    pub condition: Option<WriteCondition>,
}

/// An S3 conditional write (`If-None-Match: *`, `If-Match: "etag"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteCondition {
    /// Only if no object has the key.
    Absent,
    /// Only if an object has the key and, when given, this ETag (hex, no quotes).
    Present(Option<String>),
}

impl WriteCondition {
    /// Checks the condition against the ETag of the object now at the key.
    fn check(&self, key: &str, current: Option<&str>) -> CatalogResult<()> {
        let failed = |reason: &str| {
            Err(CatalogError::ConditionFailed {
                key: key.to_string(),
                missing: current.is_none(),
                reason: reason.to_string(),
            })
        };
        match (self, current) {
            (WriteCondition::Absent, Some(_)) => failed("an object with this key exists"),
            (WriteCondition::Present(_), None) => failed("no object has this key"),
            (WriteCondition::Present(Some(want)), Some(etag)) if want != etag => {
                failed("the object's ETag differs")
            }
            _ => Ok(()),
        }
    }
}

/// An S3 conditional delete (`If-Match`, `x-amz-if-match-size`,
/// `x-amz-if-match-last-modified-time`, or a DeleteObjects entry's ETag,
/// Size and LastModifiedTime): an object must have the key and match each
/// that is given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteCondition {
    /// ETag (hex, no quotes); `None`: any (`If-Match: *`).
    pub etag: Option<String>,
    pub size: Option<i64>,
    /// Last-Modified in whole seconds since the epoch (as HTTP dates say it).
    pub modified_secs: Option<i64>,
}

impl DeleteCondition {
    /// Checks the condition against the object now at the key: its ETag,
    /// size and creation time (ms).
    pub(crate) fn check(&self, key: &str, current: Option<(&str, i64, i64)>) -> CatalogResult<()> {
        let failed = |reason: &str| {
            Err(CatalogError::ConditionFailed {
                key: key.to_string(),
                missing: current.is_none(),
                reason: reason.to_string(),
            })
        };
        let Some((etag, size, created_ms)) = current else {
            return failed("no object has this key");
        };
        if self.etag.as_deref().is_some_and(|want| want != etag) {
            return failed("the object's ETag differs");
        }
        if self.size.is_some_and(|want| want != size) {
            return failed("the object's size differs");
        }
        if self
            .modified_secs
            .is_some_and(|want| want != created_ms.div_euclid(1000))
        {
            return failed("the object's last-modified time differs");
        }
        Ok(())
    }
}

/// One part of a multipart upload (replacing a part of the same number).
#[derive(Debug, Clone)]
pub struct PartWrite {
    pub upload_id: String,
    pub part_number: i64,
    pub size: i64,
    pub etag: String,
    pub chunks: Vec<ChunkId>,
    /// The part's additional checksums (see `PartRow::checksums`).
    pub checksums: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Write {
    Object(ObjectWrite),
    Part(PartWrite),
    /// A DICOM instance: its object and its index rows.
    Dicom(Box<crate::dicom::DicomWrite>),
}

/// Everything one commit makes visible.
#[derive(Debug, Clone, Default)]
pub struct CommitBatch {
    pub packs: Vec<NewPack>,
    pub chunks: Vec<NewChunk>,
    pub writes: Vec<Write>,
}

const ROWS_PER_INSERT: usize = 400;

/// Bind parameters per statement on SQLite. sqlx binds by looking each
/// parameter's name up, and SQLite finds a name by scanning the list of all
/// of them, so a statement with n parameters costs O(n²): thousands of
/// parameters made group commits of small writes CPU-bound.
const SQLITE_MAX_PARAMS: usize = 240;

/// Rows of `cols` values per multi-row statement on this connection.
fn rows_per_statement(tx: &Transaction<'static, Any>, cols: usize, max_rows: usize) -> usize {
    if DbKind::of(tx) == DbKind::Sqlite {
        (SQLITE_MAX_PARAMS / cols.max(1)).clamp(1, max_rows)
    } else {
        max_rows
    }
}

/// Builds `INSERT … VALUES ($1,$2),($3,$4)…` for `rows` rows of `cols` columns.
fn values_sql(prefix: &str, cols: usize, rows: usize, suffix: &str) -> String {
    let mut s = String::with_capacity(prefix.len() + rows * cols * 5 + suffix.len());
    s.push_str(prefix);
    s.push_str(" VALUES ");
    let mut n = 0;
    for r in 0..rows {
        if r > 0 {
            s.push(',');
        }
        s.push('(');
        for c in 0..cols {
            if c > 0 {
                s.push(',');
            }
            n += 1;
            s.push('$');
            s.push_str(&n.to_string());
        }
        s.push(')');
    }
    s.push(' ');
    s.push_str(suffix);
    s
}

pub(crate) fn bind_err(e: sqlx::error::BoxDynError) -> CatalogError {
    CatalogError::Db {
        op: "bind",
        source: sqlx::Error::Encode(e),
    }
}

impl Catalog {
    /// Commits a batch in one transaction; on error nothing of it is visible.
    pub async fn commit(&self, batch: &CommitBatch) -> CatalogResult<()> {
        let ready = std::future::ready(Ok::<(), std::convert::Infallible>(()));
        self.commit_after(batch, ready)
            .await
            .map(|r| r.unwrap_or_else(|never| match never {}))
    }

    /// Commits a batch once `durable` has succeeded: its statements run
    /// while `durable` makes the data they reference durable (a pack's
    /// write and fsync, or its S3 PUT), and only the final COMMIT waits for
    /// it, so a commit of small writes costs max(pack write, statements)
    /// instead of their sum. When `durable` fails the transaction is rolled
    /// back and its error returned inside `Ok`; it takes precedence over a
    /// failed statement, since nothing of the batch could commit without
    /// its data. Whatever the outcome, `durable` has run to its end when
    /// this returns, so a caller that gets a catalog error and retries the
    /// rows (alone, or one write at a time) finds the data durable.
    ///
    /// A batch that lost a race with another node's commit (both created
    /// one key) is committed again, up to RACE_RETRIES times: the new
    /// attempt sees the other's rows and replaces, versions or refuses as
    /// one node's turn-taking would. Without it the loser was answered as
    /// a failure (S3 500, STOW/C-STORE 0xA700 "out of resources").
    pub async fn commit_after<E>(
        &self,
        batch: &CommitBatch,
        durable: impl std::future::Future<Output = Result<(), E>>,
    ) -> CatalogResult<Result<(), E>> {
        let mut result = self.commit_once(batch, durable).await;
        for attempt in 1..=RACE_RETRIES {
            match &result {
                Err(e) if e.is_race() => {
                    tracing::debug!(attempt, "commit lost a race with another node: {e}");
                    // Spread the losers out: they may race each other again.
                    let jitter = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| u64::from(d.subsec_nanos() % 20));
                    let ms = u64::from(attempt) * 5 + jitter;
                    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                    result = self
                        .commit_once(batch, std::future::ready(Ok::<(), E>(())))
                        .await;
                }
                _ => break,
            }
        }
        result
    }

    /// One attempt of [`Catalog::commit_after`].
    async fn commit_once<E>(
        &self,
        batch: &CommitBatch,
        durable: impl std::future::Future<Output = Result<(), E>>,
    ) -> CatalogResult<Result<(), E>> {
        let mut tx = match self.begin_write().await {
            Ok(tx) => tx,
            Err(e) => {
                if let Err(d) = durable.await {
                    return Ok(Err(d));
                }
                return Err(db("begin commit")(e));
            }
        };
        let (written, durable) = tokio::join!(write_batch(&mut tx, batch), durable);
        if let Err(e) = durable {
            return Ok(Err(e));
        }
        written?;
        tx.commit().await.map_err(db("commit"))?;
        Ok(Ok(()))
    }
}

/// New attempts of a commit that lost a race with another node's.
const RACE_RETRIES: u32 = 5;

/// Every statement of a commit, in the open transaction `tx`.
async fn write_batch(tx: &mut Transaction<'static, Any>, batch: &CommitBatch) -> CatalogResult<()> {
    let now = now_ms();
    for p in &batch.packs {
        sqlx::query("INSERT INTO packs (id, size, created_at) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING")
            .bind(&p.id)
            .bind(p.size)
            .bind(now)
            .execute(&mut **tx)
            .await
            .map_err(db("insert pack"))?;
    }
    // One row per chunk id: PostgreSQL rejects an upsert that touches the
    // same row twice, and two writes of a batch may carry the same chunk.
    let mut seen = std::collections::HashSet::new();
    let chunks: Vec<&NewChunk> = batch.chunks.iter().filter(|c| seen.insert(c.id)).collect();
    insert_rows(
        tx,
        (
            "INSERT INTO chunks (id, pack_id, pack_offset, stored_len, raw_len, flags, created_at)",
            7,
            "ON CONFLICT (id) DO UPDATE SET pack_id = excluded.pack_id, \
             pack_offset = excluded.pack_offset, stored_len = excluded.stored_len, \
             raw_len = excluded.raw_len, flags = excluded.flags, condemned_at = NULL \
             WHERE chunks.condemned_at IS NOT NULL",
        ),
        &chunks,
        "insert chunks",
        |args, c| {
            args.add(c.id.as_bytes().to_vec())?;
            args.add(c.pack_id.clone())?;
            args.add(c.offset)?;
            args.add(c.stored_len)?;
            args.add(c.raw_len)?;
            args.add(c.flags)?;
            args.add(now)
        },
    )
    .await?;
    // Chunks this batch inserts need no presence check.
    let fresh: std::collections::HashSet<ChunkId> = batch.chunks.iter().map(|c| c.id).collect();
    let versions = earlier_versions(batch, now)?;
    let mut objects = Vec::new();
    let mut instances = Vec::new();
    for (i, w) in batch.writes.iter().enumerate() {
        match w {
            Write::Object(o) => objects.push(o),
            Write::Part(p) => write_part(tx, p, now, &fresh).await?,
            Write::Dicom(_) if versions.contains_key(&i) => {}
            Write::Dicom(d) => {
                objects.push(&d.object);
                instances.push(d.as_ref());
            }
        }
    }
    objects.extend(versions.values());
    let previous = crate::dicom::prepare_dicom_writes(tx, &instances, now).await?;
    write_objects(tx, &objects, now, &fresh).await?;
    crate::dicom::write_index(tx, &instances, previous, now).await
}

/// The DICOM writes of a batch that a later write of the same SOP
/// Instance UID with other content follows (two senders, or two files of
/// one import, at once), by index: each becomes an earlier version under
/// `versions/`, as it would one write at a time (the later object had
/// replaced it outright: acknowledged, then neither served nor kept).
/// Under the reject policy such a batch fails, and the committer commits
/// its writes one at a time: the first is kept, the later refused.
fn earlier_versions(
    batch: &CommitBatch,
    now: i64,
) -> CatalogResult<std::collections::HashMap<usize, ObjectWrite>> {
    let dicom = || {
        batch
            .writes
            .iter()
            .enumerate()
            .filter_map(|(i, w)| match w {
                Write::Dicom(d) => Some((i, d)),
                _ => None,
            })
    };
    let mut last = std::collections::HashMap::new();
    for (i, d) in dicom() {
        last.insert((d.tenant.as_str(), d.instance.sop_uid.as_str()), (i, d));
    }
    let mut out = std::collections::HashMap::new();
    for (i, d) in dicom() {
        let (j, later) = last[&(d.tenant.as_str(), d.instance.sop_uid.as_str())];
        let stored = (
            d.instance.dataset_digest.as_deref(),
            d.instance.transfer_syntax.as_str(),
        );
        if j == i
            || later.instance.etag == d.instance.etag
            || crate::dicom::same_dataset(stored, &later.instance)
        {
            continue;
        }
        if later.policy == crate::dicom::DuplicatePolicy::Reject {
            return Err(CatalogError::DuplicateInstance(
                later.instance.sop_uid.clone(),
            ));
        }
        let mut o = d.object.clone();
        o.key = crate::dicom::version_key(&d.instance.sop_uid, &d.instance.etag, now);
        out.insert(i, o);
    }
    Ok(out)
}

/// Inserts `rows` with multi-row `INSERT … VALUES` statements of at most
/// ROWS_PER_INSERT rows; `bind` adds one row's `cols` values. Returns the
/// rows the statements inserted or updated (an upsert's conflict clause
/// may skip some).
pub(crate) async fn insert_rows<T>(
    tx: &mut Transaction<'static, Any>,
    (prefix, cols, suffix): (&str, usize, &str),
    rows: &[T],
    op: &'static str,
    bind: impl Fn(&mut AnyArguments, &T) -> Result<(), sqlx::error::BoxDynError>,
) -> CatalogResult<u64> {
    let per = rows_per_statement(tx, cols, ROWS_PER_INSERT);
    let mut written = 0;
    for block in rows.chunks(per) {
        let sql = values_sql(prefix, cols, block.len(), suffix);
        let mut args = AnyArguments::default();
        for row in block {
            bind(&mut args, row).map_err(bind_err)?;
        }
        written += sqlx::query_with(crate::dynamic(sql), args)
            .execute(&mut **tx)
            .await
            .map_err(db(op))?
            .rows_affected();
    }
    Ok(written)
}

/// `(owner, seq, chunk)` rows of a chunk list.
fn chunk_list<O: Clone>(owner: O, chunks: &[ChunkId]) -> Vec<(O, i64, ChunkId)> {
    chunks
        .iter()
        .enumerate()
        .map(|(seq, c)| (owner.clone(), seq as i64, *c))
        .collect()
}

/// Checks that every chunk a write references is (still) in the catalog.
async fn check_chunks_present(
    tx: &mut Transaction<'static, Any>,
    chunks: &[ChunkId],
    fresh: &std::collections::HashSet<ChunkId>,
) -> CatalogResult<()> {
    let mut unique: Vec<&ChunkId> = chunks.iter().filter(|c| !fresh.contains(c)).collect();
    unique.sort();
    unique.dedup();
    let per = rows_per_statement(tx, 1, ROWS_PER_INSERT);
    for block in unique.chunks(per) {
        let sql = format!(
            "SELECT COUNT(*) FROM chunks WHERE id IN ({})",
            crate::placeholders(1, block.len())
        );
        let mut args = AnyArguments::default();
        for id in block {
            args.add(id.as_bytes().to_vec()).map_err(bind_err)?;
        }
        let found: i64 = sqlx::query_scalar_with(crate::dynamic(sql), args)
            .fetch_one(&mut **tx)
            .await
            .map_err(db("check chunks"))?;
        if found as usize != block.len() {
            return Err(CatalogError::ChunkGone(format!(
                "one of {} chunks",
                block.len()
            )));
        }
    }
    Ok(())
}

/// Objects per statement when a batch writes many.
const OBJECTS_PER_STATEMENT: usize = 100;

/// Writes a batch's objects with a handful of statements (not a few per
/// object): each statement is a round trip to the database. When a batch
/// writes one key twice, the later write wins, as it would one by one.
async fn write_objects(
    tx: &mut Transaction<'static, Any>,
    objects: &[&ObjectWrite],
    now: i64,
    fresh: &std::collections::HashSet<ChunkId>,
) -> CatalogResult<()> {
    // Per key: the index of its last write in the batch, and how many.
    let mut by_key = std::collections::HashMap::<_, (usize, usize)>::new();
    for (i, o) in objects.iter().enumerate() {
        let e = by_key.entry((o.bucket_id, o.key.as_str())).or_default();
        *e = (i, e.1 + 1);
    }
    // A conditional write must see the writes before it and be seen by
    // those after it; sharing its key within a batch, it fails the batch
    // and the committer commits the batch's writes one by one.
    if let Some(o) = objects
        .iter()
        .find(|o| o.condition.is_some() && by_key[&(o.bucket_id, o.key.as_str())].1 > 1)
    {
        return Err(CatalogError::ConditionFailed {
            key: o.key.clone(),
            missing: false,
            reason: "another write to the key was committed with it".into(),
        });
    }
    let objects: Vec<&ObjectWrite> = objects
        .iter()
        .enumerate()
        .filter(|(i, o)| by_key[&(o.bucket_id, o.key.as_str())].0 == *i)
        .map(|(_, o)| *o)
        .collect();
    let referenced: Vec<ChunkId> = objects
        .iter()
        .flat_map(|o| o.chunks.iter().copied())
        .collect();
    check_chunks_present(tx, &referenced, fresh).await?;
    let per = rows_per_statement(tx, 7, OBJECTS_PER_STATEMENT);
    for block in objects.chunks(per) {
        let matches: Vec<String> = (0..block.len())
            .map(|i| format!("(bucket_id = ${} AND key = ${})", 2 * i + 1, 2 * i + 2))
            .collect();
        let matches = matches.join(" OR ");
        let mut key_args = AnyArguments::default();
        for o in block {
            key_args.add(o.bucket_id).map_err(bind_err)?;
            key_args.add(o.key.clone()).map_err(bind_err)?;
        }
        // Overwrites of protected objects are refused here, in the
        // transaction that would replace them.
        let claimed = crate::retention::claim_objects(tx, &matches, key_args).await?;
        for o in block {
            if let Some(c) = &o.condition {
                let current = claimed
                    .iter()
                    .find(|c| (c.bucket_id, c.key.as_str()) == (o.bucket_id, o.key.as_str()));
                c.check(&o.key, current.map(|c| c.etag.as_str()))?;
            }
        }
        let carried = crate::retention::check_overwrites(tx, block, &claimed).await?;
        crate::retention::drop_locks(tx, &claimed).await?;
        // The rows replaced are the ones claimed (locked by the claim):
        // most writes are of new keys, which then cost no deletes at all.
        if !claimed.is_empty() {
            let ids = crate::placeholders(1, claimed.len());
            for sql in [
                format!("DELETE FROM object_chunks WHERE object_id IN ({ids})"),
                format!("DELETE FROM objects WHERE id IN ({ids})"),
            ] {
                let mut args = AnyArguments::default();
                for c in &claimed {
                    args.add(c.id).map_err(bind_err)?;
                }
                sqlx::query_with(crate::dynamic(sql), args)
                    .execute(&mut **tx)
                    .await
                    .map_err(db("replace objects"))?;
            }
        }
        let sql = values_sql(
            "INSERT INTO objects (bucket_id, key, size, etag, content_type, metadata, created_at)",
            7,
            block.len(),
            "RETURNING id, bucket_id, key",
        );
        let mut args = AnyArguments::default();
        for o in block {
            args.add(o.bucket_id).map_err(bind_err)?;
            args.add(o.key.clone()).map_err(bind_err)?;
            args.add(o.size).map_err(bind_err)?;
            args.add(o.etag.clone()).map_err(bind_err)?;
            args.add(o.content_type.clone()).map_err(bind_err)?;
            args.add(o.metadata.clone()).map_err(bind_err)?;
            args.add(now).map_err(bind_err)?;
        }
        let rows = sqlx::query_with(crate::dynamic(sql), args)
            .fetch_all(&mut **tx)
            .await
            .map_err(db("insert objects"))?;
        let mut ids = std::collections::HashMap::new();
        for r in &rows {
            let id: i64 = r.try_get(0).map_err(db("insert objects"))?;
            let bucket: i64 = r.try_get(1).map_err(db("insert objects"))?;
            let key: String = r.try_get(2).map_err(db("insert objects"))?;
            ids.insert((bucket, key), id);
        }
        let mut list = Vec::new();
        let mut written = Vec::with_capacity(block.len());
        for (o, carried) in block.iter().zip(carried) {
            let id = *ids.get(&(o.bucket_id, o.key.clone())).ok_or_else(|| {
                CatalogError::BadRow(format!("no id returned for object {:?}", o.key))
            })?;
            list.extend(chunk_list(id, &o.chunks));
            written.push((id, *o, carried));
        }
        crate::retention::store_write_locks(tx, &written, now).await?;
        insert_rows(
            tx,
            (
                "INSERT INTO object_chunks (object_id, seq, chunk_id)",
                3,
                "",
            ),
            &list,
            "insert object chunks",
            |args, (id, seq, chunk)| {
                args.add(*id)?;
                args.add(*seq)?;
                args.add(chunk.as_bytes().to_vec())
            },
        )
        .await?;
    }
    for o in &objects {
        if let Some(upload_id) = &o.completes_upload {
            for (table, col) in [
                ("upload_locks", "upload_id"),
                ("upload_part_chunks", "upload_id"),
                ("upload_parts", "upload_id"),
                ("uploads", "id"),
            ] {
                let gone = sqlx::query(crate::dynamic(format!(
                    "DELETE FROM {table} WHERE {col} = $1"
                )))
                .bind(upload_id)
                .execute(&mut **tx)
                .await
                .map_err(db("complete upload"))?
                .rows_affected();
                // An upload aborted (or completed) since its parts were
                // read is not completed again: one of a racing Complete and
                // Abort wins, the other is NoSuchUpload, as on S3.
                if table == "uploads" && gone == 0 {
                    return Err(CatalogError::NoSuchUpload(upload_id.clone()));
                }
            }
        }
    }
    Ok(())
}

async fn write_part(
    tx: &mut Transaction<'static, Any>,
    p: &PartWrite,
    now: i64,
    fresh: &std::collections::HashSet<ChunkId>,
) -> CatalogResult<()> {
    check_chunks_present(tx, &p.chunks, fresh).await?;
    let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM uploads WHERE id = $1")
        .bind(&p.upload_id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db("write part"))?;
    if exists.is_none() {
        return Err(CatalogError::NoSuchUpload(p.upload_id.clone()));
    }
    for table in ["upload_part_chunks", "upload_parts"] {
        sqlx::query(crate::dynamic(format!(
            "DELETE FROM {table} WHERE upload_id = $1 AND part_number = $2"
        )))
        .bind(&p.upload_id)
        .bind(p.part_number)
        .execute(&mut **tx)
        .await
        .map_err(db("replace part"))?;
    }
    sqlx::query("INSERT INTO upload_parts (upload_id, part_number, size, etag, created_at, checksums) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(&p.upload_id)
        .bind(p.part_number)
        .bind(p.size)
        .bind(&p.etag)
        .bind(now)
        .bind(&p.checksums)
        .execute(&mut **tx)
        .await
        .map_err(db("insert part"))?;
    insert_rows(
        tx,
        (
            "INSERT INTO upload_part_chunks (upload_id, part_number, seq, chunk_id)",
            4,
            "",
        ),
        &chunk_list((), &p.chunks),
        "insert part chunks",
        |args, (_, seq, chunk)| {
            args.add(p.upload_id.clone())?;
            args.add(p.part_number)?;
            args.add(*seq)?;
            args.add(chunk.as_bytes().to_vec())
        },
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn values_sql_numbers_placeholders() {
        assert_eq!(
            super::values_sql("INSERT INTO t (a, b)", 2, 2, "x"),
            "INSERT INTO t (a, b) VALUES ($1,$2),($3,$4) x"
        );
    }
}
