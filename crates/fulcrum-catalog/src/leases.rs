//! Leases on named background jobs, so that in a cluster sharing one
//! catalog only one node runs GC, scrub, a scheduled backup or lifecycle at
//! a time. A lease is a row with a holder and an expiry; taking one is a
//! single conditional upsert, the same on SQLite and PostgreSQL.

use crate::db::{now_ms, Catalog};
use crate::error::{db, CatalogResult};

/// Who holds a lease, for messages such as "gc is running on node-…".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseHolder {
    pub holder: String,
    pub expires_at: i64,
}

impl Catalog {
    /// Takes (or renews, when `holder` already has it) the lease `name` for
    /// `ttl_ms`; returns false when another holder's lease has not expired.
    pub async fn try_lease(&self, name: &str, holder: &str, ttl_ms: i64) -> CatalogResult<bool> {
        let now = now_ms();
        let done = sqlx::query(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE leases.holder = excluded.holder OR leases.expires_at < $4",
        )
        .bind(name)
        .bind(holder)
        .bind(now + ttl_ms)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(db("take lease"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives the lease up if `holder` has it.
    pub async fn release_lease(&self, name: &str, holder: &str) -> CatalogResult<()> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await
            .map_err(db("release lease"))?;
        Ok(())
    }

    /// The current, unexpired holder of `name`.
    pub async fn lease_holder(&self, name: &str) -> CatalogResult<Option<LeaseHolder>> {
        let row: Option<(String, i64)> = sqlx::query_as(
            "SELECT holder, expires_at FROM leases WHERE name = $1 AND expires_at >= $2",
        )
        .bind(name)
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await
        .map_err(db("lease holder"))?;
        Ok(row.map(|(holder, expires_at)| LeaseHolder { holder, expires_at }))
    }
}
