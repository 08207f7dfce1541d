//! Opening the catalog: URL → driver, connection settings (WAL and full
//! synchronous commits on SQLite), migrations, the default tenant.

use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

use crate::error::{db, CatalogError, CatalogResult};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    Sqlite,
    Postgres,
}

impl DbKind {
    /// The database a transaction runs on.
    pub(crate) fn of(tx: &sqlx::Transaction<'static, sqlx::Any>) -> Self {
        if tx.backend_name().eq_ignore_ascii_case("sqlite") {
            DbKind::Sqlite
        } else {
            DbKind::Postgres
        }
    }

    /// The values of `col` over a group joined by commas (`distinct`:
    /// each value once), in this database's dialect.
    pub(crate) fn comma_list(self, col: &str, distinct: bool) -> String {
        let d = if distinct { "DISTINCT " } else { "" };
        match self {
            DbKind::Sqlite => format!("group_concat({d}{col})"),
            DbKind::Postgres => format!("string_agg({d}{col}, ',')"),
        }
    }
}

/// A pool of `max` connections to a database of `kind`; SQLite
/// connections run SQLITE_SETTINGS and then `extra`.
fn pool_options(kind: DbKind, max: u32, extra: &'static str) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(30))
        // A pooled SQLite connection is a file handle of this process
        // and cannot go stale: pinging its worker thread before every
        // query doubled the thread hand-offs of each catalog call. A
        // PostgreSQL connection can (a restarted server), so it is
        // still checked.
        .test_before_acquire(kind != DbKind::Sqlite)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if kind == DbKind::Sqlite {
                    conn.execute(SQLITE_SETTINGS).await?;
                    if !extra.is_empty() {
                        conn.execute(extra).await?;
                    }
                } else {
                    // The migrations' CREATE … IF NOT EXISTS notices
                    // ("relation already exists, skipping") are not news
                    // to an operator: log PostgreSQL's warnings and up.
                    conn.execute("SET client_min_messages = warning").await?;
                }
                Ok(())
            })
        })
}

/// A handle on the catalog database; cheap to clone.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub(crate) pool: AnyPool,
    /// Where write transactions run. On SQLite, one connection of its own:
    /// SQLite has one writer at a time anyway, and a connection keeps its
    /// page cache only while no other connection writes, so write
    /// transactions taking turns over the pool's eight connections each
    /// began by re-reading every page they touched (57 reads per DIMSE
    /// C-STORE). On PostgreSQL, the pool.
    writer: AnyPool,
    kind: DbKind,
}

/// Settings of every SQLite connection: WAL, a durable commit (the WAL is
/// fsynced before COMMIT returns), and reads of the database file mapped.
const SQLITE_SETTINGS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
     PRAGMA busy_timeout = 30000; PRAGMA foreign_keys = ON; \
     PRAGMA mmap_size = 268435456;";

/// The SQLite writer's page cache, 32 MiB instead of 2: the index pages
/// that inserts touch stay cached between commits.
const SQLITE_WRITER_SETTINGS: &str = "PRAGMA cache_size = -32768;";

/// How long the first connection to a PostgreSQL catalog may take.
const FIRST_CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// One connection to the PostgreSQL catalog, made and closed before the
/// pool's: a pool that cannot connect retries until its acquire timeout and
/// then names no cause ("pool timed out"), where this says "connection
/// refused" or the server's own words ("database … does not exist") at once.
async fn first_connection(url: &str, opts: &AnyConnectOptions) -> CatalogResult<()> {
    use sqlx::Connection;
    let unreachable = |reason: String| CatalogError::Unreachable {
        at: without_password(url),
        reason,
    };
    match tokio::time::timeout(
        FIRST_CONNECT_TIMEOUT,
        sqlx::AnyConnection::connect_with(opts),
    )
    .await
    {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            Ok(())
        }
        Ok(Err(sqlx::Error::Database(d))) => Err(unreachable(d.message().to_string())),
        Ok(Err(e)) => Err(unreachable(e.to_string())),
        Err(_) => Err(unreachable(format!(
            "no answer in {} s",
            FIRST_CONNECT_TIMEOUT.as_secs()
        ))),
    }
}

/// `url` with the password of its user info (`user:secret@`) left out.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    // The query may carry a password too (`?password=`): left out whole.
    let rest = rest.split('?').next().unwrap_or(rest);
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((user, host)) => {
            let user = user.split_once(':').map_or(user, |(u, _)| u);
            format!("{scheme}://{user}@{host}{path}")
        }
        None => url.to_string(),
    }
}

impl Catalog {
    /// Opens (creating a SQLite file if needed) and migrates the catalog.
    pub async fn open(url: &str) -> CatalogResult<Self> {
        sqlx::any::install_default_drivers();
        let kind = if url.starts_with("sqlite:") {
            DbKind::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            DbKind::Postgres
        } else {
            return Err(CatalogError::BadUrl(url.to_string()));
        };
        let url = match kind {
            DbKind::Sqlite if !url.contains('?') => format!("{url}?mode=rwc"),
            _ => url.to_string(),
        };
        let opts = AnyConnectOptions::from_str(&url).map_err(db("parse url"))?;
        if kind == DbKind::Postgres {
            first_connection(&url, &opts).await?;
        }
        let pool = pool_options(kind, if kind == DbKind::Sqlite { 8 } else { 16 }, "")
            .connect_with(opts.clone())
            .await
            .map_err(db("connect"))?;
        match kind {
            DbKind::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
            DbKind::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        let writer = match kind {
            DbKind::Sqlite => pool_options(kind, 1, SQLITE_WRITER_SETTINGS)
                .connect_with(opts)
                .await
                .map_err(db("connect"))?,
            DbKind::Postgres => pool.clone(),
        };
        let cat = Self { pool, writer, kind };
        cat.ensure_tenant(fulcrum_types::DEFAULT_TENANT).await?;
        cat.fill_name_group_keys().await?;
        cat.rekey_names().await?;
        if kind == DbKind::Sqlite {
            // Refresh the planner's statistics where they are missing or
            // stale (cheap; SQLite decides what needs it), so index queries
            // pick their index on large catalogs. PostgreSQL's autovacuum
            // does this by itself.
            // It writes statistics: a full disk must not stop the start.
            if let Err(e) = cat.pool.execute("PRAGMA optimize=0x10002").await {
                tracing::warn!(error = %e, "catalog: PRAGMA optimize failed (disk full?); the planner keeps its old statistics");
            }
        }
        Ok(cat)
    }

    /// Begins a write transaction. On SQLite it takes the write lock at
    /// once (`BEGIN IMMEDIATE`), so a transaction that reads first cannot
    /// fail later with SQLITE_BUSY when another writer committed meanwhile.
    pub(crate) async fn begin_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.kind {
            DbKind::Sqlite => self.writer.begin_with("BEGIN IMMEDIATE").await,
            DbKind::Postgres => self.writer.begin().await,
        }
    }

    pub fn kind(&self) -> DbKind {
        self.kind
    }

    pub async fn close(&self) {
        self.writer.close().await;
        self.pool.close().await;
    }

    pub async fn ensure_tenant(&self, tenant: &str) -> CatalogResult<()> {
        // A read first: opening the catalog must not need to write (a
        // full disk must still let the server start and serve reads).
        let known: Option<String> = sqlx::query_scalar("SELECT id FROM tenants WHERE id = $1")
            .bind(tenant)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("find tenant"))?;
        if known.is_some() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO tenants (id, created_at) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
        )
        .bind(tenant)
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(db("ensure tenant"))?;
        Ok(())
    }

    /// A platform-wide setting (e.g. the encryption key check value).
    pub async fn get_meta(&self, key: &str) -> CatalogResult<Option<String>> {
        sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(db("get meta"))
    }

    /// Every setting whose key starts with `prefix`, in one query.
    pub async fn metas_with_prefix(
        &self,
        prefix: &str,
    ) -> CatalogResult<std::collections::BTreeMap<String, String>> {
        // `_` and `%` of the prefix are themselves, not wildcards.
        let mut pattern = String::with_capacity(prefix.len() + 2);
        for c in prefix.chars() {
            if matches!(c, '_' | '%' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('%');
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT key, value FROM meta WHERE key LIKE $1 ESCAPE '\\'")
                .bind(pattern)
                .fetch_all(&self.pool)
                .await
                .map_err(db("get meta"))?;
        // LIKE ignores ASCII case on SQLite: keep exact prefixes only.
        Ok(rows
            .into_iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .collect())
    }

    /// Sets a setting, replacing any value.
    pub async fn set_meta(&self, key: &str, value: &str) -> CatalogResult<()> {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await
        .map_err(db("set meta"))?;
        Ok(())
    }

    /// Sets a setting only if it is unset; returns the value now stored.
    /// A set one is only read: a start must not need to write (a full
    /// disk), and every start of every node asks.
    pub async fn init_meta(&self, key: &str, value: &str) -> CatalogResult<String> {
        if let Some(v) = self.get_meta(key).await? {
            return Ok(v);
        }
        sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await
            .map_err(db("init meta"))?;
        Ok(self.get_meta(key).await?.unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_their_password() {
        for (url, shown) in [
            (
                "postgres://fulcrum:s3cret@db:5432/fulcrum",
                "postgres://fulcrum@db:5432/fulcrum",
            ),
            (
                "postgres://fulcrum@db/fulcrum?sslmode=require&password=x",
                "postgres://fulcrum@db/fulcrum",
            ),
            ("postgresql://db/fulcrum", "postgresql://db/fulcrum"),
            ("postgres://a:b@c", "postgres://a@c"),
        ] {
            assert_eq!(without_password(url), shown);
        }
    }

    /// A new user's walkthrough: with nothing listening, opening the
    /// catalog said "pool timed out" after 30 s.
    #[tokio::test]
    async fn an_unreachable_postgres_is_named_with_its_cause() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let url = format!("postgres://fulcrum:pw@127.0.0.1:{port}/fulcrum");
        let started = std::time::Instant::now();
        let Err(err) = Catalog::open(&url).await else {
            panic!("nothing listens on {port}");
        };
        let msg = err.to_string();
        assert!(matches!(err, CatalogError::Unreachable { .. }), "{msg}");
        assert!(
            msg.contains(&format!("postgres://fulcrum@127.0.0.1:{port}/fulcrum")),
            "{msg}"
        );
        assert!(msg.to_lowercase().contains("refused"), "{msg}");
        assert!(!msg.contains("pw"), "{msg}");
        assert!(started.elapsed() < FIRST_CONNECT_TIMEOUT, "{msg}");
    }
}
