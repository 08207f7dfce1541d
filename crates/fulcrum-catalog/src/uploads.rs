//! Multipart uploads: the upload record, its parts (each committed like a
//! small object), and completion, which turns the parts' chunk lists into
//! one object in a single transaction.

use fulcrum_types::ChunkId;
use sqlx::Row;

use crate::db::Catalog;
use crate::error::{db, CatalogError, CatalogResult};

/// S3's minimum size for every part but the last.
pub const MIN_PART_SIZE: i64 = 5 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct UploadRow {
    pub id: String,
    pub bucket_id: i64,
    pub key: String,
    pub content_type: Option<String>,
    pub metadata: String,
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub struct PartRow {
    pub part_number: i64,
    pub size: i64,
    pub etag: String,
    pub created_at: i64,
    /// The additional checksums the part came with, as the protocol keeps
    /// them (S3: a JSON object of metadata entries); `None` without any.
    pub checksums: Option<String>,
}

/// The parts of a multipart upload a completion names, in its order.
#[derive(Debug, Clone, Default)]
pub struct Assembled {
    pub sizes: Vec<i64>,
    pub chunks: Vec<ChunkId>,
    pub etags: Vec<String>,
    pub checksums: Vec<Option<String>>,
}

const UPLOAD_COLS: &str = "id, bucket_id, key, content_type, metadata, created_at";

fn upload_row(r: &sqlx::any::AnyRow) -> Result<UploadRow, sqlx::Error> {
    Ok(UploadRow {
        id: r.try_get(0)?,
        bucket_id: r.try_get(1)?,
        key: r.try_get(2)?,
        content_type: r.try_get(3)?,
        metadata: r.try_get(4)?,
        created_at: r.try_get(5)?,
    })
}

impl Catalog {
    pub async fn create_upload(&self, u: &UploadRow) -> CatalogResult<()> {
        sqlx::query(
            "INSERT INTO uploads (id, bucket_id, key, content_type, metadata, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&u.id)
        .bind(u.bucket_id)
        .bind(&u.key)
        .bind(u.content_type.clone())
        .bind(&u.metadata)
        .bind(u.created_at)
        .execute(&self.pool)
        .await
        .map_err(db("create upload"))?;
        Ok(())
    }

    pub async fn upload(&self, bucket_id: i64, upload_id: &str) -> CatalogResult<UploadRow> {
        let r = sqlx::query(crate::dynamic(format!(
            "SELECT {UPLOAD_COLS} FROM uploads WHERE id = $1 AND bucket_id = $2"
        )))
        .bind(upload_id)
        .bind(bucket_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("get upload"))?
        .ok_or_else(|| CatalogError::NoSuchUpload(upload_id.to_string()))?;
        upload_row(&r).map_err(db("get upload"))
    }

    /// Uploads in progress in a bucket, ordered by key then id.
    pub async fn list_uploads(&self, bucket_id: i64) -> CatalogResult<Vec<UploadRow>> {
        let rows = sqlx::query(crate::dynamic(format!(
            "SELECT {UPLOAD_COLS} FROM uploads WHERE bucket_id = $1 ORDER BY key, id"
        )))
        .bind(bucket_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db("list uploads"))?;
        rows.iter()
            .map(upload_row)
            .collect::<Result<_, sqlx::Error>>()
            .map_err(db("list uploads"))
    }

    pub async fn list_parts(&self, upload_id: &str) -> CatalogResult<Vec<PartRow>> {
        let rows = sqlx::query(
            "SELECT part_number, size, etag, created_at, checksums FROM upload_parts WHERE upload_id = $1 ORDER BY part_number",
        )
        .bind(upload_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db("list parts"))?;
        rows.iter()
            .map(|r| {
                Ok(PartRow {
                    part_number: r.try_get(0)?,
                    size: r.try_get(1)?,
                    etag: r.try_get(2)?,
                    created_at: r.try_get(3)?,
                    checksums: r.try_get(4)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(db("list parts"))
    }

    /// Aborts every multipart upload begun before `before_ms` (epoch ms);
    /// returns how many. Their parts' chunks are then unreferenced, for gc.
    pub async fn abort_uploads_before(&self, before_ms: i64) -> CatalogResult<u64> {
        let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM uploads WHERE created_at < $1")
            .bind(before_ms)
            .fetch_all(&self.pool)
            .await
            .map_err(db("find abandoned uploads"))?;
        self.abort_uploads(ids).await
    }

    /// Aborts the uploads of bucket `bucket_id` to keys starting with
    /// `prefix` begun before `before_ms` (an S3 lifecycle rule's
    /// AbortIncompleteMultipartUpload); returns how many.
    pub async fn abort_uploads_in(
        &self,
        bucket_id: i64,
        prefix: &str,
        before_ms: i64,
    ) -> CatalogResult<u64> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT id, key FROM uploads WHERE bucket_id = $1 AND created_at < $2")
                .bind(bucket_id)
                .bind(before_ms)
                .fetch_all(&self.pool)
                .await
                .map_err(db("find uploads to abort"))?;
        let ids = rows
            .into_iter()
            .filter(|(_, key)| key.starts_with(prefix))
            .map(|(id, _)| id)
            .collect();
        self.abort_uploads(ids).await
    }

    async fn abort_uploads(&self, ids: Vec<String>) -> CatalogResult<u64> {
        let mut n = 0;
        for id in ids {
            let mut tx = self.begin_write().await.map_err(db("abort upload"))?;
            if remove_upload(&mut tx, &id).await? {
                n += 1;
            }
            tx.commit().await.map_err(db("abort upload"))?;
        }
        Ok(n)
    }

    /// Removes an upload and its parts; their chunks become garbage.
    pub async fn abort_upload(&self, upload_id: &str) -> CatalogResult<()> {
        let mut tx = self.begin_write().await.map_err(db("abort upload"))?;
        if !remove_upload(&mut tx, upload_id).await? {
            return Err(CatalogError::NoSuchUpload(upload_id.to_string()));
        }
        tx.commit().await.map_err(db("abort upload"))
    }

    /// Chunk ids of one part, in order.
    pub async fn part_chunks(
        &self,
        upload_id: &str,
        part_number: i64,
    ) -> CatalogResult<Vec<ChunkId>> {
        let rows: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT chunk_id FROM upload_part_chunks WHERE upload_id = $1 AND part_number = $2 ORDER BY seq",
        )
        .bind(upload_id)
        .bind(part_number)
        .fetch_all(&self.pool)
        .await
        .map_err(db("part chunks"))?;
        rows.iter()
            .map(|b| ChunkId::from_slice(b).map_err(|e| CatalogError::BadRow(e.to_string())))
            .collect()
    }

    /// Checks the client's part list against the stored parts and returns
    /// (part sizes, chunk list, part ETags) of the object they form.
    pub async fn assemble_upload(
        &self,
        upload_id: &str,
        parts: &[(i64, String)],
    ) -> CatalogResult<Assembled> {
        let stored = self.list_parts(upload_id).await?;
        let mut out = Assembled::default();
        let mut last = 0i64;
        for (i, (number, etag)) in parts.iter().enumerate() {
            if *number <= last {
                return Err(CatalogError::InvalidPartOrder);
            }
            last = *number;
            let Some(part) = stored.iter().find(|p| {
                p.part_number == *number && p.etag.trim_matches('"') == etag.trim_matches('"')
            }) else {
                // Parts gone because the upload was aborted meanwhile (a
                // racing Abort): that is what the client is told.
                let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM uploads WHERE id = $1")
                    .bind(upload_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db("find upload"))?;
                return Err(match exists {
                    Some(_) => CatalogError::InvalidPart(*number),
                    None => CatalogError::NoSuchUpload(upload_id.to_string()),
                });
            };
            if i + 1 < parts.len() && part.size < MIN_PART_SIZE {
                return Err(CatalogError::PartTooSmall(*number));
            }
            out.sizes.push(part.size);
            out.chunks
                .extend(self.part_chunks(upload_id, *number).await?);
            out.etags.push(part.etag.clone());
            out.checksums.push(part.checksums.clone());
        }
        Ok(out)
    }
}

/// Deletes an upload's rows in `tx`; returns whether it existed.
pub(crate) async fn remove_upload(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    upload_id: &str,
) -> CatalogResult<bool> {
    for table in ["upload_locks", "upload_part_chunks", "upload_parts"] {
        sqlx::query(crate::dynamic(format!(
            "DELETE FROM {table} WHERE upload_id = $1"
        )))
        .bind(upload_id)
        .execute(&mut **tx)
        .await
        .map_err(db("abort upload"))?;
    }
    let n = sqlx::query("DELETE FROM uploads WHERE id = $1")
        .bind(upload_id)
        .execute(&mut **tx)
        .await
        .map_err(db("abort upload"))?
        .rows_affected();
    Ok(n > 0)
}
