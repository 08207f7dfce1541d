//! The targets every behaviour test runs against: filesystem + SQLite
//! always; S3 (a real Garage server) + PostgreSQL when the test script
//! provides them (FULCRUM_TEST_S3_* and FULCRUM_TEST_PG_URL). With
//! FULCRUM_TEST_REQUIRE_ALL=1 a missing target fails instead of skipping.

#![allow(dead_code)]

use std::time::Duration;

use fulcrum_engine::{BackendConfig, Engine, EngineConfig, MasterKey};
use sqlx::Connection;

pub struct Target {
    pub name: String,
    pub cfg: EngineConfig,
    _dir: tempfile::TempDir,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn unique() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// A fresh PostgreSQL database on the test server.
async fn fresh_pg(base: &str) -> String {
    let mut conn = sqlx::PgConnection::connect(base)
        .await
        .expect("connect to the test PostgreSQL");
    let db = format!("fulcrum_t_{}", unique());
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let (head, _) = base.rsplit_once('/').expect("PG URL names a database");
    format!("{head}/{db}")
}

pub async fn targets() -> Vec<Target> {
    let mut out = Vec::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = EngineConfig::local(dir.path());
    out.push(Target {
        name: "fs+sqlite".into(),
        cfg,
        _dir: dir,
    });
    let s3 = (
        env("FULCRUM_TEST_S3_ENDPOINT"),
        env("FULCRUM_TEST_S3_BUCKET"),
        env("FULCRUM_TEST_S3_ACCESS_KEY"),
        env("FULCRUM_TEST_S3_SECRET_KEY"),
        env("FULCRUM_TEST_PG_URL"),
    );
    match s3 {
        (Some(endpoint), Some(bucket), Some(ak), Some(sk), Some(pg)) => {
            let dir = tempfile::tempdir().expect("tempdir");
            let root = format!("/t-{}", unique());
            let backend = BackendConfig::S3 {
                bucket,
                endpoint,
                region: env("FULCRUM_TEST_S3_REGION").unwrap_or_else(|| "garage".into()),
                access_key: ak,
                secret_key: sk,
                root: root.clone(),
            };
            let cfg = EngineConfig::new(backend, fresh_pg(&pg).await);
            out.push(Target {
                name: "s3+postgres".into(),
                cfg,
                _dir: dir,
            });
        }
        _ if env("FULCRUM_TEST_REQUIRE_ALL").is_some() => {
            panic!("FULCRUM_TEST_REQUIRE_ALL is set but the S3/PostgreSQL test environment is incomplete")
        }
        _ => eprintln!("note: S3 + PostgreSQL target skipped (run scripts/test.sh to include it)"),
    }
    out
}

impl Target {
    /// Another location beside this target's data, on the same kind of
    /// backend: a folder of its temporary directory, or a sibling S3 root
    /// in the same bucket (the archive tier, a backup repository).
    pub fn beside(&self, name: &str) -> BackendConfig {
        let mut cfg = self.cfg.backend.clone();
        match &mut cfg {
            BackendConfig::Fs { root } => *root = self._dir.path().join(name),
            BackendConfig::S3 { root, .. } => *root = format!("{root}-{name}"),
        }
        cfg
    }

    /// A new, empty catalog of this target's kind (another platform's).
    pub async fn other_catalog(&self, name: &str) -> String {
        match &self.cfg.backend {
            BackendConfig::Fs { .. } => format!(
                "sqlite://{}",
                self._dir.path().join(format!("{name}.db")).display()
            ),
            BackendConfig::S3 { .. } => {
                fresh_pg(&env("FULCRUM_TEST_PG_URL").expect("PostgreSQL for this target")).await
            }
        }
    }

    /// Where this target's archive tier lives.
    pub fn archive(&self) -> BackendConfig {
        self.beside("archive")
    }

    pub async fn open(&self) -> Engine {
        Engine::open(self.cfg.clone()).await.expect("engine opens")
    }

    /// The engine with this target's archive tier (small packs, so moves
    /// write several).
    pub fn tiered_config(&self, promote_on_read: bool) -> EngineConfig {
        let mut cfg = self.cfg.clone();
        let mut archive = fulcrum_engine::ArchiveConfig::new(self.archive());
        archive.promote_on_read = promote_on_read;
        cfg.archive = Some(archive);
        cfg.pack_target = 1024 * 1024;
        cfg
    }

    pub async fn open_tiered(&self, promote_on_read: bool) -> Engine {
        Engine::open(self.tiered_config(promote_on_read))
            .await
            .expect("engine opens")
    }

    /// A plain connection to this target's catalog, for tests that set
    /// rows up directly (backdating, damage a restore would leave).
    pub async fn catalog_sql(&self) -> sqlx::AnyConnection {
        sqlx::any::install_default_drivers();
        sqlx::AnyConnection::connect(&self.cfg.catalog_url)
            .await
            .expect("connect to the catalog")
    }

    /// Moves the creation and last-read times of the objects whose key
    /// starts with `prefix` `days` into the past (straight in the catalog).
    pub async fn backdate(&self, prefix: &str, days: i64) {
        let mut conn = self.catalog_sql().await;
        sqlx::query(
            "UPDATE objects SET created_at = created_at - $1, \
             last_read_at = last_read_at - $1 WHERE key LIKE $2",
        )
        .bind(days * 24 * 3600 * 1000)
        .bind(format!("{prefix}%"))
        .execute(&mut conn)
        .await
        .expect("backdate objects");
    }

    /// Holds the catalog's write lock on chunk rows (SQLite: the database
    /// write lock; PostgreSQL: a table lock that blocks updates, not reads)
    /// until the returned connection runs ROLLBACK or is dropped.
    pub async fn lock_chunk_writes(&self) -> sqlx::AnyConnection {
        let mut conn = self.catalog_sql().await;
        let sql = if self.cfg.catalog_url.starts_with("sqlite:") {
            "BEGIN IMMEDIATE"
        } else {
            "BEGIN; LOCK TABLE chunks IN SHARE ROW EXCLUSIVE MODE"
        };
        sqlx::raw_sql(sql)
            .execute(&mut conn)
            .await
            .expect("lock chunk writes");
        conn
    }

    pub async fn open_with_key(
        &self,
        key: Option<MasterKey>,
    ) -> Result<Engine, fulcrum_engine::EngineError> {
        let mut cfg = self.cfg.clone();
        cfg.encryption_key = key;
        Engine::open(cfg).await
    }
}

/// Deterministic pseudo-random bytes (incompressible).
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

pub async fn read_all(
    engine: &Engine,
    bucket: &str,
    key: &str,
) -> Result<Vec<u8>, fulcrum_engine::EngineError> {
    use futures::StreamExt;
    let info = engine.head_object("default", bucket, key).await?;
    let mut s = engine.read_object(&info, 0, info.size).await?;
    let mut out = Vec::new();
    while let Some(b) = s.next().await {
        out.extend_from_slice(&b?);
    }
    Ok(out)
}

pub fn no_grace() -> fulcrum_engine::GcOptions {
    fulcrum_engine::GcOptions {
        grace: Duration::ZERO,
        ..Default::default()
    }
}
