//! Node heartbeats: each running server records, every few seconds, when
//! its oldest in-flight write started. GC never deletes a chunk condemned
//! after that moment, so a write that found a chunk by dedup is safe.

use crate::db::{now_ms, Catalog};
use crate::error::{db, CatalogResult};

/// Heartbeats older than this are from dead nodes and are ignored.
pub const NODE_TIMEOUT_MS: i64 = 60_000;

impl Catalog {
    /// Records that node `id` is alive and its oldest write in flight
    /// started at `oldest_inflight` (now, when none is in flight).
    pub async fn heartbeat(&self, id: &str, oldest_inflight: i64) -> CatalogResult<()> {
        sqlx::query(
            "INSERT INTO nodes (id, heartbeat_at, oldest_inflight) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at, oldest_inflight = excluded.oldest_inflight",
        )
        .bind(id)
        .bind(now_ms())
        .bind(oldest_inflight)
        .execute(&self.pool)
        .await
        .map_err(db("heartbeat"))?;
        Ok(())
    }

    /// Records the settings node `id` must share with the others (text of
    /// `key=value` lines), once it has heartbeated.
    pub async fn set_node_settings(&self, id: &str, settings: &str) -> CatalogResult<()> {
        sqlx::query("UPDATE nodes SET settings = $2 WHERE id = $1")
            .bind(id)
            .bind(settings)
            .execute(&self.pool)
            .await
            .map_err(db("node settings"))?;
        Ok(())
    }

    /// The live nodes' ids and shared settings (None: not recorded).
    pub async fn live_node_settings(&self) -> CatalogResult<Vec<(String, Option<String>)>> {
        sqlx::query_as("SELECT id, settings FROM nodes WHERE heartbeat_at > $1 ORDER BY id")
            .bind(now_ms() - NODE_TIMEOUT_MS)
            .fetch_all(&self.pool)
            .await
            .map_err(db("node settings"))
    }

    pub async fn remove_node(&self, id: &str) -> CatalogResult<()> {
        sqlx::query("DELETE FROM nodes WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db("remove node"))?;
        Ok(())
    }

    /// How many live nodes have not heartbeated since `since`.
    pub async fn nodes_silent_since(&self, since: i64) -> CatalogResult<i64> {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM nodes WHERE heartbeat_at > $1 AND heartbeat_at <= $2",
        )
        .bind(now_ms() - NODE_TIMEOUT_MS)
        .bind(since)
        .fetch_one(&self.pool)
        .await
        .map_err(db("silent nodes"))
    }

    /// The earliest start of any write in flight on a live node, or `now`.
    pub async fn oldest_inflight(&self, now: i64) -> CatalogResult<i64> {
        let v: Option<i64> = sqlx::query_scalar(
            "SELECT CAST(MIN(oldest_inflight) AS BIGINT) FROM nodes WHERE heartbeat_at > $1",
        )
        .bind(now - NODE_TIMEOUT_MS)
        .fetch_one(&self.pool)
        .await
        .map_err(db("oldest inflight"))?;
        Ok(v.unwrap_or(now).min(now))
    }
}
