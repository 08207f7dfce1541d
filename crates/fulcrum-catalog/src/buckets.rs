//! Buckets: named containers of objects, each owned by a tenant.

use sqlx::Row;

use crate::db::{now_ms, Catalog};
use crate::error::{db, CatalogError, CatalogResult};

#[derive(Debug, Clone)]
pub struct BucketRow {
    pub id: i64,
    pub name: String,
    pub created_at: i64,
}

impl Catalog {
    pub async fn create_bucket(&self, tenant: &str, name: &str) -> CatalogResult<BucketRow> {
        let created_at = now_ms();
        let row = sqlx::query(
            "INSERT INTO buckets (tenant, name, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (tenant, name) DO NOTHING RETURNING id",
        )
        .bind(tenant)
        .bind(name)
        .bind(created_at)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("create bucket"))?;
        match row {
            Some(r) => Ok(BucketRow {
                id: r.try_get(0).map_err(db("create bucket"))?,
                name: name.to_string(),
                created_at,
            }),
            None => Err(CatalogError::BucketExists(name.to_string())),
        }
    }

    pub async fn bucket(&self, tenant: &str, name: &str) -> CatalogResult<BucketRow> {
        let row = sqlx::query("SELECT id, created_at FROM buckets WHERE tenant = $1 AND name = $2")
            .bind(tenant)
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("get bucket"))?
            .ok_or_else(|| CatalogError::NoSuchBucket(name.to_string()))?;
        Ok(BucketRow {
            id: row.try_get(0).map_err(db("get bucket"))?,
            name: name.to_string(),
            created_at: row.try_get(1).map_err(db("get bucket"))?,
        })
    }

    pub async fn list_buckets(&self, tenant: &str) -> CatalogResult<Vec<BucketRow>> {
        let rows =
            sqlx::query("SELECT id, name, created_at FROM buckets WHERE tenant = $1 ORDER BY name")
                .bind(tenant)
                .fetch_all(&self.pool)
                .await
                .map_err(db("list buckets"))?;
        rows.into_iter()
            .map(|r| {
                Ok(BucketRow {
                    id: r.try_get(0).map_err(db("list buckets"))?,
                    name: r.try_get(1).map_err(db("list buckets"))?,
                    created_at: r.try_get(2).map_err(db("list buckets"))?,
                })
            })
            .collect()
    }

    /// Deletes a bucket that holds no objects. Multipart uploads still in
    /// progress do not keep it (S3 deletes such a bucket too): they are
    /// aborted with it, and their parts' chunks become garbage.
    pub async fn delete_bucket(&self, tenant: &str, name: &str) -> CatalogResult<()> {
        let bucket = self.bucket(tenant, name).await?;
        let mut tx = self.begin_write().await.map_err(db("delete bucket"))?;
        let used: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM objects WHERE bucket_id = $1 LIMIT 1")
                .bind(bucket.id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db("delete bucket"))?;
        if used.is_some() {
            return Err(CatalogError::BucketNotEmpty(name.to_string()));
        }
        let uploads: Vec<String> =
            sqlx::query_scalar("SELECT id FROM uploads WHERE bucket_id = $1")
                .bind(bucket.id)
                .fetch_all(&mut *tx)
                .await
                .map_err(db("delete bucket"))?;
        for upload in uploads {
            crate::uploads::remove_upload(&mut tx, &upload).await?;
        }
        sqlx::query("DELETE FROM bucket_settings WHERE bucket_id = $1")
            .bind(bucket.id)
            .execute(&mut *tx)
            .await
            .map_err(db("delete bucket"))?;
        sqlx::query("DELETE FROM bucket_locks WHERE bucket_id = $1")
            .bind(bucket.id)
            .execute(&mut *tx)
            .await
            .map_err(db("delete bucket"))?;
        sqlx::query("DELETE FROM buckets WHERE id = $1")
            .bind(bucket.id)
            .execute(&mut *tx)
            .await
            .map_err(db("delete bucket"))?;
        tx.commit().await.map_err(db("delete bucket"))
    }

    /// A bucket setting (`None`: not set).
    pub async fn bucket_setting(
        &self,
        bucket_id: i64,
        name: &str,
    ) -> CatalogResult<Option<String>> {
        sqlx::query_scalar("SELECT value FROM bucket_settings WHERE bucket_id = $1 AND name = $2")
            .bind(bucket_id)
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("bucket setting"))
    }

    /// Sets a bucket setting, or removes it with `None`.
    pub async fn set_bucket_setting(
        &self,
        bucket_id: i64,
        name: &str,
        value: Option<&str>,
    ) -> CatalogResult<()> {
        let q = match value {
            Some(v) => sqlx::query(
                "INSERT INTO bucket_settings (bucket_id, name, value) VALUES ($1, $2, $3) \
                 ON CONFLICT (bucket_id, name) DO UPDATE SET value = excluded.value",
            )
            .bind(bucket_id)
            .bind(name)
            .bind(v),
            None => sqlx::query("DELETE FROM bucket_settings WHERE bucket_id = $1 AND name = $2")
                .bind(bucket_id)
                .bind(name),
        };
        q.execute(&self.pool)
            .await
            .map_err(db("set bucket setting"))?;
        Ok(())
    }
}
