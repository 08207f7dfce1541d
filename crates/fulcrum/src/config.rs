//! Configuration: one serde struct read from a TOML file (`--config`),
//! overridden by `FULCRUM_*` environment variables and flags, and the
//! commented default that `fulcrum config init` writes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use fulcrum_engine::{ArchiveConfig, BackendConfig, EngineConfig, LifecycleRule, MasterKey};
use serde::Deserialize;

/// Settings as a TOML file holds them; every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub http_addr: Option<String>,
    pub s3_addr: Option<String>,
    pub s3_domains: Option<Vec<String>>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub backend: Option<String>,
    pub backend_access_key: Option<String>,
    pub backend_secret_key: Option<String>,
    pub catalog_url: Option<String>,
    pub s3_access_key: Option<String>,
    pub s3_secret_key: Option<String>,
    pub encryption_key_file: Option<PathBuf>,
    pub max_object_size: Option<u64>,
    pub zstd_level: Option<i32>,
    pub pixel_zstd_level: Option<i32>,
    pub pack_target_mib: Option<usize>,
    pub read_cache_mib: Option<u64>,
    pub http_header_timeout_secs: Option<u64>,
    pub dicom_addr: Option<String>,
    pub dicom_tls_addr: Option<String>,
    pub dicom_tls_ca: Option<PathBuf>,
    pub dicom_tls_client_ca: Option<PathBuf>,
    pub dicom_ae_title: Option<String>,
    pub dicom_nodes: Option<Vec<String>>,
    pub dicom_allowed_aets: Option<Vec<String>>,
    pub dicom_duplicates: Option<String>,
    pub dicom_default_charset: Option<String>,
    pub archive_backend: Option<String>,
    pub archive_backend_access_key: Option<String>,
    pub archive_backend_secret_key: Option<String>,
    pub archive_zstd_level: Option<i32>,
    pub archive_promote_on_read: Option<bool>,
    pub lifecycle_interval: Option<String>,
    /// `[[lifecycle]]` sections.
    pub lifecycle: Option<Vec<LifecycleRule>>,
    /// `[[retention]]` sections: retention policies for new objects.
    #[serde(default)]
    pub retention: Vec<fulcrum_engine::RetentionRule>,
    pub backup: Option<BackupFileConfig>,
    pub scrub_every_hours: Option<f64>,
    pub scrub_rate_mib: Option<u64>,
    pub gc_every_hours: Option<f64>,
}

/// The `[backup]` table.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupFileConfig {
    pub repo: Option<String>,
    pub key_file: Option<PathBuf>,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    pub every_hours: Option<f64>,
    pub keep_last: Option<usize>,
    pub keep_daily: Option<usize>,
    pub keep_weekly: Option<usize>,
    pub keep_monthly: Option<usize>,
    pub keep_yearly: Option<usize>,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        let mut file = Self::parse(&text)
            .with_context(|| format!("parsing config file {}", path.display()))?;
        // A relative data_dir is the file's own folder's, not the working
        // directory's (under systemd that is /: `serve` started a new,
        // empty archive there).
        if let (Some(d), Some(base)) = (&file.data_dir, path.parent()) {
            if d.is_relative() {
                file.data_dir = Some(base.join(d));
            }
        }
        Ok(file)
    }

    /// Parses the text of a config file.
    pub fn parse(text: &str) -> Result<Self> {
        Ok(toml::from_str(text)?)
    }
}

/// Settings after merging flags and environment over the file.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub http_addr: String,
    pub s3_addr: String,
    pub s3_domains: Vec<String>,
    /// PEM certificate chain and key: the HTTP and S3 ports speak HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub backend: Option<String>,
    pub backend_access_key: Option<String>,
    pub backend_secret_key: Option<String>,
    pub catalog_url: Option<String>,
    pub s3_access_key: Option<String>,
    pub s3_secret_key: Option<String>,
    pub encryption_key: Option<String>,
    pub encryption_key_file: Option<PathBuf>,
    pub max_object_size: u64,
    pub zstd_level: i32,
    pub pixel_zstd_level: i32,
    pub pack_target_mib: usize,
    /// Decoded chunks `serve` keeps in memory for reads, in MiB (0: none).
    pub read_cache_mib: u64,
    /// How long an HTTP or S3 client has to send a request header (also
    /// how long a kept-alive connection may idle).
    pub http_header_timeout: std::time::Duration,
    pub dicom: DicomSettings,
    pub retention: Vec<fulcrum_engine::RetentionRule>,
    pub backup: BackupSettings,
    /// The server scrubs this often (unset: never) ...
    pub scrub_every_hours: Option<f64>,
    /// ... reading at most this many MiB/s (0: unthrottled).
    pub scrub_rate_mib: u64,
    /// The server collects garbage this often (default 24; 0: never).
    pub gc_every_hours: Option<f64>,
    pub tier: TierSettings,
}

/// Settings given as command-line flags: they win over everything.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub data_dir: Option<PathBuf>,
    pub backend: Option<String>,
    pub catalog_url: Option<String>,
    pub http_addr: Option<String>,
    pub s3_addr: Option<String>,
    pub dicom_addr: Option<String>,
    pub max_object_size: Option<u64>,
}

/// The environment variable `name` read as a `T`: unset is `None`, a value
/// that does not parse is refused (a typo must not quietly leave the
/// default, or a schedule off).
fn parsed<T>(env: &dyn Fn(&str) -> Option<String>, name: &str) -> Result<Option<T>>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    env(name)
        .map(|v| {
            v.trim()
                .parse()
                .map_err(|e| anyhow::anyhow!("{name}={v:?}: {e}; give a number"))
        })
        .transpose()
}

/// `level` if zstd has it (levels up to 22, and negative fast levels).
fn zstd_level(name: &str, level: i32) -> Result<i32> {
    let levels = zstd::compression_level_range();
    if !levels.contains(&level) {
        bail!(
            "{name} = {level}: zstd levels are {} to {}",
            levels.start(),
            levels.end()
        );
    }
    Ok(level)
}

/// A comma-separated list, blanks dropped.
fn list(v: &str) -> Vec<String> {
    v.split(',')
        .map(|x| x.trim().to_string())
        .filter(|x| !x.is_empty())
        .collect()
}

impl Settings {
    /// Merges flags over the environment (`env` looks a `FULCRUM_*`
    /// variable up) over the config file.
    pub fn resolve(
        file: FileConfig,
        flags: Flags,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Settings> {
        let bk = file.backup.clone().unwrap_or_default();
        let tier = TierSettings::resolve(&file, env)?;
        let retention = file.retention.clone();
        let s = Settings {
            data_dir: flags
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("./fulcrum-data")),
            http_addr: flags
                .http_addr
                .or(file.http_addr)
                .unwrap_or_else(|| "127.0.0.1:8080".into()),
            s3_addr: flags
                .s3_addr
                .or(file.s3_addr)
                .unwrap_or_else(|| "127.0.0.1:9000".into()),
            s3_domains: env("FULCRUM_S3_DOMAINS")
                .map(|v| v.split(',').map(str::to_string).collect())
                .or(file.s3_domains)
                .unwrap_or_else(|| vec!["localhost".into()]),
            tls: match (
                env("FULCRUM_TLS_CERT").map(PathBuf::from).or(file.tls_cert),
                env("FULCRUM_TLS_KEY").map(PathBuf::from).or(file.tls_key),
            ) {
                (Some(c), Some(k)) => Some((c, k)),
                (None, None) => None,
                _ => bail!("TLS needs both a certificate and a key (tls_cert and tls_key, or FULCRUM_TLS_CERT and FULCRUM_TLS_KEY)"),
            },
            backend: flags.backend.or(file.backend),
            backend_access_key: env("FULCRUM_BACKEND_ACCESS_KEY").or(file.backend_access_key),
            backend_secret_key: env("FULCRUM_BACKEND_SECRET_KEY").or(file.backend_secret_key),
            catalog_url: flags.catalog_url.or(file.catalog_url),
            s3_access_key: env("FULCRUM_S3_ACCESS_KEY").or(file.s3_access_key),
            s3_secret_key: env("FULCRUM_S3_SECRET_KEY").or(file.s3_secret_key),
            encryption_key: env("FULCRUM_ENCRYPTION_KEY"),
            encryption_key_file: env("FULCRUM_ENCRYPTION_KEY_FILE")
                .map(PathBuf::from)
                .or(file.encryption_key_file),
            max_object_size: flags
                .max_object_size
                .or(file.max_object_size)
                .unwrap_or(DEFAULT_MAX_OBJECT_SIZE),
            zstd_level: parsed(env, "FULCRUM_ZSTD_LEVEL")?
                .or(file.zstd_level)
                .unwrap_or(fulcrum_engine::DEFAULT_ZSTD_LEVEL),
            pixel_zstd_level: parsed(env, "FULCRUM_PIXEL_ZSTD_LEVEL")?
                .or(file.pixel_zstd_level)
                .unwrap_or(fulcrum_engine::DEFAULT_PIXEL_ZSTD_LEVEL),
            pack_target_mib: file.pack_target_mib.unwrap_or(32),
            http_header_timeout: match parsed(env, "FULCRUM_HTTP_HEADER_TIMEOUT_SECS")?
                .or(file.http_header_timeout_secs)
            {
                Some(0) => bail!("http_header_timeout_secs (FULCRUM_HTTP_HEADER_TIMEOUT_SECS) must be at least 1"),
                Some(secs) => std::time::Duration::from_secs(secs),
                None => fulcrum_api::DEFAULT_HEADER_TIMEOUT,
            },
            read_cache_mib: parsed(env, "FULCRUM_READ_CACHE_MIB")?
                .or(file.read_cache_mib)
                .unwrap_or(fulcrum_engine::DEFAULT_READ_CACHE_BYTES >> 20),
            dicom: DicomSettings {
                addr: flags
                    .dicom_addr
                    .or(file.dicom_addr)
                    .unwrap_or_else(|| "127.0.0.1:11112".into()),
                tls_addr: env("FULCRUM_DICOM_TLS_ADDR").or(file.dicom_tls_addr),
                tls_ca: env("FULCRUM_DICOM_TLS_CA")
                    .map(PathBuf::from)
                    .or(file.dicom_tls_ca),
                tls_client_ca: env("FULCRUM_DICOM_TLS_CLIENT_CA")
                    .map(PathBuf::from)
                    .or(file.dicom_tls_client_ca),
                ae_title: env("FULCRUM_DICOM_AET")
                    .or(file.dicom_ae_title)
                    .unwrap_or_else(|| "FULCRUM".into()),
                nodes: env("FULCRUM_DICOM_NODES")
                    .map(|v| list(&v))
                    .or(file.dicom_nodes)
                    .unwrap_or_default(),
                allowed_aets: env("FULCRUM_DICOM_ALLOWED_AETS")
                    .map(|v| list(&v))
                    .or(file.dicom_allowed_aets),
                duplicates: duplicate_policy(
                    &env("FULCRUM_DICOM_DUPLICATES")
                        .or(file.dicom_duplicates)
                        .unwrap_or_else(|| "replace".into()),
                )?,
                default_charset: match env("FULCRUM_DICOM_DEFAULT_CHARSET")
                    .or(file.dicom_default_charset)
                {
                    Some(t) if !fulcrum_dicom::charset::DEFAULT_TERMS.contains(&t.trim()) => bail!(
                        "dicom_default_charset (FULCRUM_DICOM_DEFAULT_CHARSET) {t:?} is not one of: {}",
                        fulcrum_dicom::charset::DEFAULT_TERMS.join(", ")
                    ),
                    t => t.map(|t| t.trim().to_string()),
                },
            },
            scrub_every_hours: parsed(env, "FULCRUM_SCRUB_EVERY_HOURS")?
                .or(file.scrub_every_hours),
            scrub_rate_mib: parsed(env, "FULCRUM_SCRUB_RATE_MIB")?
                .or(file.scrub_rate_mib)
                .unwrap_or(50),
            gc_every_hours: parsed(env, "FULCRUM_GC_EVERY_HOURS")?
                .or(file.gc_every_hours)
                .or(Some(DEFAULT_GC_EVERY_HOURS)),
            backup: BackupSettings {
                repo: env("FULCRUM_BACKUP_REPO").or(bk.repo),
                key: env("FULCRUM_BACKUP_KEY"),
                key_file: env("FULCRUM_BACKUP_KEY_FILE")
                    .map(PathBuf::from)
                    .or(bk.key_file),
                access_key: env("FULCRUM_BACKUP_ACCESS_KEY").or(bk.access_key),
                secret_key: env("FULCRUM_BACKUP_SECRET_KEY").or(bk.secret_key),
                every_hours: parsed(env, "FULCRUM_BACKUP_EVERY_HOURS")?
                    .or(bk.every_hours),
                keep: fulcrum_backup::KeepPolicy {
                    last: bk.keep_last.unwrap_or(0),
                    daily: bk.keep_daily.unwrap_or(0),
                    weekly: bk.keep_weekly.unwrap_or(0),
                    monthly: bk.keep_monthly.unwrap_or(0),
                    yearly: bk.keep_yearly.unwrap_or(0),
                },
            },
            retention,
            tier,
        };
        if s.dicom.tls_addr.is_some() && s.tls.is_none() {
            bail!("dicom_tls_addr (FULCRUM_DICOM_TLS_ADDR) needs tls_cert and tls_key (FULCRUM_TLS_CERT, FULCRUM_TLS_KEY)");
        }
        // Half a pair would be dropped for generated keys. (Backend and
        // backup keys may take their other half from AWS_* variables, and
        // a backend without both is refused where it is opened.)
        if s.s3_access_key.is_some() != s.s3_secret_key.is_some() {
            bail!("the S3 root credentials need both FULCRUM_S3_ACCESS_KEY and FULCRUM_S3_SECRET_KEY (s3_access_key and s3_secret_key in the file); only one is set");
        }
        zstd_level("zstd_level (FULCRUM_ZSTD_LEVEL)", s.zstd_level)?;
        zstd_level(
            "pixel_zstd_level (FULCRUM_PIXEL_ZSTD_LEVEL)",
            s.pixel_zstd_level,
        )?;
        check_hours("scrub_every_hours", s.scrub_every_hours)?;
        check_hours("gc_every_hours", s.gc_every_hours)?;
        check_hours("backup.every_hours", s.backup.every_hours)?;
        Ok(s)
    }
}

impl Settings {
    /// Trust anchors for DICOM nodes reached over TLS, if configured.
    pub fn dicom_tls_client(&self) -> Result<Option<fulcrum_dicom::dimse::TlsClient>> {
        self.dicom
            .tls_ca
            .as_deref()
            .map(|p| {
                use fulcrum_api::tls::{read_certificates, read_key};
                let identity = match &self.tls {
                    Some((cert, key)) => Some((read_certificates(cert)?, read_key(key)?)),
                    None => None,
                };
                fulcrum_dicom::dimse::TlsClient::new(read_certificates(p)?, identity)
                    .map_err(|e| anyhow::anyhow!("dicom_tls_ca {}: {e}", p.display()))
            })
            .transpose()
    }
}

/// Where backups go and how often the server takes them.
#[derive(Debug, Clone, Default)]
pub struct BackupSettings {
    /// A directory or s3://BUCKET[/ROOT]?endpoint=URL.
    pub repo: Option<String>,
    /// The backup key as 64 hex digits (FULCRUM_BACKUP_KEY) ...
    pub key: Option<String>,
    /// ... or a file holding them.
    pub key_file: Option<PathBuf>,
    pub access_key: Option<String>,
    pub secret_key: Option<String>,
    /// The server takes a backup this often (unset: never).
    pub every_hours: Option<f64>,
    /// Applied (with prune) after each scheduled backup when not empty.
    pub keep: fulcrum_backup::KeepPolicy,
}

/// Longest schedule accepted, in hours (ten years).
const MAX_PERIOD_HOURS: f64 = 87_600.0;

/// Refuses a schedule that is not a number or too long to be a time span
/// (zero or negative means off).
/// Deleted and overwritten data is reclaimed within a day unless the
/// configuration says otherwise.
const DEFAULT_GC_EVERY_HOURS: f64 = 24.0;

fn check_hours(name: &str, hours: Option<f64>) -> Result<()> {
    match hours {
        Some(h) if !(h.is_finite() && h <= MAX_PERIOD_HOURS) => {
            bail!("{name} = {h}: give a number of hours up to {MAX_PERIOD_HOURS} (ten years)")
        }
        _ => Ok(()),
    }
}

/// A schedule given in hours: `None` when unset, not positive, or not a
/// time span (`Settings::resolve` refuses those).
fn period(hours: Option<f64>) -> Option<Duration> {
    hours
        .filter(|h| *h > 0.0)
        .and_then(|h| Duration::try_from_secs_f64(h * 3600.0).ok())
}

impl BackupSettings {
    /// How often the server takes a backup (`every_hours`).
    pub fn period(&self) -> Option<Duration> {
        period(self.every_hours)
    }

    /// The repository's backend and the backup key.
    pub fn target(&self) -> Result<(BackendConfig, MasterKey)> {
        let Some(repo) = self.repo.as_deref() else {
            bail!("no backup repository: give --repo or set FULCRUM_BACKUP_REPO (a directory or s3://BUCKET/PATH?endpoint=URL&region=R)");
        };
        // A plain path (relative ones too) is a directory repository.
        let repo = if repo.contains("://") || repo == "fs" {
            repo.to_string()
        } else {
            std::path::absolute(repo)
                .with_context(|| format!("backup repository path {repo:?}"))?
                .display()
                .to_string()
        };
        if repo == "fs" {
            bail!("the backup repository must be a directory path or an s3:// URL, not \"fs\"");
        }
        let backend = backend_config(
            Some(&repo),
            (self.access_key.clone(), self.secret_key.clone()),
            PathBuf::from(&repo),
            "FULCRUM_BACKUP",
        )?;
        let key = match (&self.key, &self.key_file) {
            (Some(hex), _) => MasterKey::from_hex(hex).context("FULCRUM_BACKUP_KEY")?,
            (None, Some(path)) => MasterKey::from_file(path)
                .with_context(|| format!("backup key file {}", path.display()))?,
            (None, None) => bail!("no backup key: set FULCRUM_BACKUP_KEY (64 hex digits, e.g. from `openssl rand -hex 32`) or FULCRUM_BACKUP_KEY_FILE"),
        };
        Ok((backend, key))
    }
}

/// The archive tier and lifecycle rules.
#[derive(Debug, Clone)]
pub struct TierSettings {
    /// "fs" (the data dir's `archive/`), fs:///PATH or an S3 URL; unset:
    /// no archive tier.
    pub archive_backend: Option<String>,
    pub archive_access_key: Option<String>,
    pub archive_secret_key: Option<String>,
    pub archive_zstd_level: i32,
    pub promote_on_read: bool,
    /// How often the server applies the rules (`None`: never).
    pub interval: Option<std::time::Duration>,
    pub rules: Vec<LifecycleRule>,
}

impl TierSettings {
    /// Environment over the file's settings; checks every rule.
    pub fn resolve(file: &FileConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<Self> {
        let rules = file.lifecycle.clone().unwrap_or_default();
        for r in &rules {
            r.validate().map_err(anyhow::Error::msg)?;
        }
        let interval = env("FULCRUM_LIFECYCLE_INTERVAL")
            .or_else(|| file.lifecycle_interval.clone())
            .unwrap_or_else(|| "1h".into());
        Ok(Self {
            archive_backend: env("FULCRUM_ARCHIVE_BACKEND")
                .or_else(|| file.archive_backend.clone()),
            archive_access_key: env("FULCRUM_ARCHIVE_BACKEND_ACCESS_KEY")
                .or_else(|| file.archive_backend_access_key.clone()),
            archive_secret_key: env("FULCRUM_ARCHIVE_BACKEND_SECRET_KEY")
                .or_else(|| file.archive_backend_secret_key.clone()),
            archive_zstd_level: zstd_level(
                "archive_zstd_level (FULCRUM_ARCHIVE_ZSTD_LEVEL)",
                parsed(env, "FULCRUM_ARCHIVE_ZSTD_LEVEL")?
                    .or(file.archive_zstd_level)
                    .unwrap_or(fulcrum_engine::DEFAULT_ARCHIVE_ZSTD_LEVEL),
            )?,
            promote_on_read: match env("FULCRUM_ARCHIVE_PROMOTE_ON_READ") {
                Some(v) => v
                    .parse()
                    .context("FULCRUM_ARCHIVE_PROMOTE_ON_READ (true or false)")?,
                None => file.archive_promote_on_read.unwrap_or(false),
            },
            interval: parse_interval(&interval)?,
            rules,
        })
    }
}

/// "90s", "30m", "1h", "1d" or plain seconds; "0" or "off": never.
pub fn parse_interval(s: &str) -> Result<Option<std::time::Duration>> {
    let s = s.trim();
    if s == "off" || s == "0" {
        return Ok(None);
    }
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .with_context(|| format!("interval {s:?}: expected e.g. 90s, 30m, 1h or 1d"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => bail!("interval {s:?}: unit must be s, m, h or d"),
    };
    Ok(Some(std::time::Duration::from_secs(secs)))
}

/// A backend setting: "fs" (or unset) for `default_root`, fs:///PATH, or
/// s3://BUCKET[/ROOT]?endpoint=URL with credentials from the settings
/// named by `env_prefix` (`<env_prefix>_ACCESS_KEY`, `_SECRET_KEY`).
fn backend_config(
    setting: Option<&str>,
    creds: (Option<String>, Option<String>),
    default_root: PathBuf,
    env_prefix: &str,
) -> Result<BackendConfig> {
    Ok(match setting {
        None | Some("") | Some("fs") => BackendConfig::Fs { root: default_root },
        Some(url) if url.starts_with("s3://") => {
            let ak = creds.0.or_else(|| std::env::var("AWS_ACCESS_KEY_ID").ok());
            let sk = creds
                .1
                .or_else(|| std::env::var("AWS_SECRET_ACCESS_KEY").ok());
            let (Some(ak), Some(sk)) = (ak, sk) else {
                bail!("the S3 backend {url:?} needs credentials: set {env_prefix}_ACCESS_KEY and {env_prefix}_SECRET_KEY");
            };
            BackendConfig::parse_s3_url(url, &ak, &sk)?
        }
        Some(path) if path.starts_with("fs://") || path.starts_with('/') => BackendConfig::Fs {
            root: PathBuf::from(path.trim_start_matches("fs://")),
        },
        Some(other) => {
            bail!("unknown backend {other:?}: use \"fs\", fs:///PATH or s3://BUCKET?endpoint=URL")
        }
    })
}

/// The imaging archive's settings.
#[derive(Debug, Clone)]
pub struct DicomSettings {
    /// DIMSE listener.
    pub addr: String,
    /// DIMSE over TLS (PS3.15 B.1, usually port 2762), with the `tls_*` certificate.
    pub tls_addr: Option<String>,
    /// CA certificate(s) trusted for nodes reached over TLS (`AET@HOST:PORT/tls`).
    pub tls_ca: Option<PathBuf>,
    /// When set, the DICOM TLS port requires client certificates this CA signed.
    pub tls_client_ca: Option<PathBuf>,
    pub ae_title: String,
    /// Known C-MOVE destinations, `AET@HOST:PORT`.
    pub nodes: Vec<String>,
    /// Calling AE titles allowed to associate; `None` = any.
    pub allowed_aets: Option<Vec<String>>,
    pub duplicates: fulcrum_dicom::DuplicatePolicy,
    /// The character set of data sets without (0008,0005) (a term of
    /// `fulcrum_dicom::charset::DEFAULT_TERMS`); `None`: the default
    /// repertoire, as the standard says.
    pub default_charset: Option<String>,
}

/// Parses a duplicate policy name.
pub fn duplicate_policy(s: &str) -> Result<fulcrum_dicom::DuplicatePolicy> {
    match s {
        "replace" => Ok(fulcrum_dicom::DuplicatePolicy::Replace),
        "reject" => Ok(fulcrum_dicom::DuplicatePolicy::Reject),
        other => bail!("unknown DICOM duplicate policy {other:?}: use \"replace\" or \"reject\""),
    }
}

pub use fulcrum_engine::DEFAULT_MAX_OBJECT_SIZE;

/// Largest pack size accepted (packs are held in memory while they fill).
const MAX_PACK_TARGET_MIB: usize = 4096;

impl Settings {
    /// How often the server scrubs (`scrub_every_hours`).
    pub fn scrub_period(&self) -> Option<Duration> {
        period(self.scrub_every_hours)
    }

    /// How often the server collects garbage (`gc_every_hours`).
    pub fn gc_period(&self) -> Option<Duration> {
        period(self.gc_every_hours)
    }

    /// The engine of a one-shot command (import, export, verify...): no
    /// read cache, since it reads each chunk once.
    pub fn command_engine_config(&self) -> Result<EngineConfig> {
        let mut cfg = self.engine_config()?;
        cfg.read_cache_bytes = 0;
        Ok(cfg)
    }

    pub fn engine_config(&self) -> Result<EngineConfig> {
        let backend = backend_config(
            self.backend.as_deref(),
            (
                self.backend_access_key.clone(),
                self.backend_secret_key.clone(),
            ),
            self.data_dir.join("store"),
            "FULCRUM_BACKEND",
        )?;
        let catalog_url = match &self.catalog_url {
            Some(u) => u.clone(),
            None => format!("sqlite://{}", self.data_dir.join("catalog.db").display()),
        };
        let mut cfg = EngineConfig::new(backend, catalog_url);
        cfg.encryption_key = match (&self.encryption_key, &self.encryption_key_file) {
            (Some(hex), _) => Some(MasterKey::from_hex(hex).context("FULCRUM_ENCRYPTION_KEY")?),
            (None, Some(path)) => Some(
                MasterKey::from_file(path)
                    .with_context(|| format!("encryption key file {}", path.display()))?,
            ),
            (None, None) => None,
        };
        cfg.max_object_size = self.max_object_size;
        cfg.zstd_level = self.zstd_level;
        cfg.pixel_zstd_level = self.pixel_zstd_level;
        cfg.pack_target = self
            .pack_target_mib
            .max(1)
            .checked_mul(1024 * 1024)
            .filter(|_| self.pack_target_mib <= MAX_PACK_TARGET_MIB)
            .with_context(|| {
                format!(
                    "pack_target_mib = {}: give at most {MAX_PACK_TARGET_MIB} MiB",
                    self.pack_target_mib
                )
            })?;
        cfg.read_cache_bytes = self
            .read_cache_mib
            .checked_mul(1024 * 1024)
            .with_context(|| format!("read_cache_mib = {}: too large", self.read_cache_mib))?;
        cfg.retention = self.retention.clone();
        let t = &self.tier;
        if let Some(url) = t.archive_backend.as_deref() {
            let mut archive = ArchiveConfig::new(backend_config(
                Some(url),
                (t.archive_access_key.clone(), t.archive_secret_key.clone()),
                self.data_dir.join("archive"),
                "FULCRUM_ARCHIVE_BACKEND",
            )?);
            archive.zstd_level = t.archive_zstd_level;
            archive.promote_on_read = t.promote_on_read;
            cfg.archive = Some(archive);
        }
        Ok(cfg)
    }
}

/// The commented default written by `fulcrum config init`.
pub const DEFAULT_TOML: &str = r#"# Fulcrum configuration. Every setting can also be given as a flag or as a
# FULCRUM_* environment variable (e.g. FULCRUM_DATA_DIR); those win over
# this file. Unset settings take the defaults shown.

# Where the embedded catalog (SQLite) and the local pack store live; a
# relative path is taken from this file's folder.
data_dir = "./fulcrum-data"

# Admin HTTP port: /healthz, /metrics.
http_addr = "127.0.0.1:8080"

# S3-compatible API.
s3_addr = "127.0.0.1:9000"

# Base domains for virtual-hosted-style requests (bucket.DOMAIN); requests to
# any other host name or an IP address are path-style.
s3_domains = ["localhost"]

# HTTPS on the HTTP and S3 ports (TLS 1.2/1.3): a PEM certificate chain, leaf
# first, and its PEM private key. Both or neither.
# tls_cert = "/etc/fulcrum/tls/fullchain.pem"   # or FULCRUM_TLS_CERT
# tls_key = "/etc/fulcrum/tls/key.pem"          # or FULCRUM_TLS_KEY

# Where packs are stored: "fs" (the data dir) or an S3-compatible bucket:
# backend = "s3://fulcrum-packs/prod?endpoint=http://127.0.0.1:3900&region=garage"
# backend_access_key = "..."
# backend_secret_key = "..."

# The catalog: SQLite in the data dir by default; PostgreSQL for clusters:
# catalog_url = "postgres://fulcrum@db.example:5432/fulcrum"

# Root credentials of the S3 API. When unset, Fulcrum generates them on
# first start, keeps them in the catalog (every node of a cluster answers
# to the same keys), copies them to <data_dir>/s3-credentials.toml and
# prints them.
# s3_access_key = "..."
# s3_secret_key = "..."

# Encryption at rest: a file holding 64 hex digits (32 bytes). Keep a copy
# somewhere safe: without it the data cannot be read.
# encryption_key_file = "/etc/fulcrum/master.key"

# Largest object or part body accepted, in bytes (default 5 TiB).
max_object_size = 5497558138880

# zstd level for hot data (1 fastest .. 19 smallest).
zstd_level = 1

# zstd level for native 16/32-bit DICOM pixel data on the hot tier, which is
# compressed as byte planes (-1 stores CT in ~39 % of its size at ~1.5 GB/s;
# 1: ~33 % at ~750 MB/s). The archive tier uses archive_zstd_level.
pixel_zstd_level = -1

# Packs are written once they hold this many MiB.
pack_target_mib = 32

# Memory for decoded chunks that `serve` keeps for reads (a study opened
# again, the frames of a multi-frame instance, series metadata), in MiB; 0
# turns it off. Chunks read once (a backup streaming through) do not push
# out those read repeatedly. Or FULCRUM_READ_CACHE_MIB.
read_cache_mib = 512

# Seconds an HTTP or S3 client has to send a request header; a kept-alive
# connection idle this long is closed (clients reopen it).
http_header_timeout_secs = 60

# DICOM DIMSE listener (C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET) and its AE title.
dicom_addr = "127.0.0.1:11112"
# DIMSE over TLS (PS3.15 B.1) on a second port, with tls_cert / tls_key:
# dicom_tls_addr = "0.0.0.0:2762"
# Require peers on that port to present a certificate this CA signed (mutual
# TLS, as IHE ATNA secure nodes do; outgoing TLS presents tls_cert when asked):
# dicom_tls_client_ca = "/etc/fulcrum/tls/hospital-ca.pem"
dicom_ae_title = "FULCRUM"

# CA certificate(s) (PEM) trusted for nodes reached over TLS, named
# "AET@HOST:PORT/tls" in dicom_nodes or `dicom send --to`:
# dicom_tls_ca = "/etc/fulcrum/tls/hospital-ca.pem"

# C-MOVE destinations this archive may send to, as "AET@HOST:PORT".
# dicom_nodes = ["WORKSTATION1@10.0.0.21:104", "PARTNER_PACS@pacs.example:11112"]

# Only these calling AE titles may associate (unset: any).
# dicom_allowed_aets = ["CT01", "MR02", "WORKSTATION1"]

# An instance whose SOP Instance UID is stored with different bytes:
# "replace" keeps the newest and retains the old one as a version;
# "reject" refuses it (status 0x0111). Identical re-sends always succeed.
dicom_duplicates = "replace"

# Text of instances without Specific Character Set (0008,0005) is ASCII by
# the standard; older modalities send their local one without saying so.
# Name it to have their names decoded in the index, QIDO-RS, C-FIND and
# metadata (stored bytes are not changed): "GB18030", "GBK", "ISO_IR 192"
# (UTF-8), "ISO_IR 13" (Shift_JIS), "ISO 2022 IR 149" (EUC-KR), "ISO_IR 100"...
# dicom_default_charset = "GB18030"

# Archive tier: cold data moves here by lifecycle rules, recompressed at
# archive_zstd_level; reads recall it transparently. "fs" is the data dir's
# archive/ folder; a slow disk (fs:///mnt/archive) or a cold S3 bucket work too:
# archive_backend = "s3://fulcrum-archive/prod?endpoint=http://127.0.0.1:3900&region=garage"
# archive_backend_access_key = "..."
# archive_backend_secret_key = "..."
# archive_backend = "fs"
archive_zstd_level = 19
# Move an object back to the hot tier after it was read from the archive.
archive_promote_on_read = false

# How often the server applies the lifecycle rules ("off": only
# `fulcrum tier apply`). S3 clients add rules per bucket with
# PutBucketLifecycleConfiguration.
lifecycle_interval = "1h"

# Background scrub: re-hash all stored data this often, at most this many
# MiB/s; damaged chunks are repaired from the backup repository.
# scrub_every_hours = 168
scrub_rate_mib = 50

# Garbage collection: space of deleted and overwritten data is reclaimed
# (packs repacked, multipart uploads abandoned for 7 days aborted) this
# often, on one node of a cluster; 0 turns it off (then run `fulcrum gc`).
# gc_every_hours = 24

# Lifecycle rules (conditions combine with AND):
# [[lifecycle]]
# id = "cold-scans"
# bucket = "scans"
# prefix = "2024/"
# not_read_days = 180        # neither read nor written for 180 days
# # older_than_days = 365    # created more than a year ago
#
# [[lifecycle]]
# id = "old-ct"
# modality = "CT"            # DICOM studies with a CT series ...
# study_older_than_days = 730  # ... whose StudyDate is over two years ago

# Backups (`fulcrum backup ...`): a second backend that receives incremental,
# deduplicated, encrypted snapshots of the whole platform. The key (64 hex
# digits) is the backup's own; keep a copy off site: without it the backups
# cannot be read. FULCRUM_BACKUP_REPO / FULCRUM_BACKUP_KEY /
# FULCRUM_BACKUP_KEY_FILE / FULCRUM_BACKUP_ACCESS_KEY / FULCRUM_BACKUP_SECRET_KEY
# override these.
# [backup]
# repo = "/mnt/backup/fulcrum"   # or "s3://offsite/fulcrum?endpoint=https://s3.example&region=R"
# key_file = "/etc/fulcrum/backup.key"
# every_hours = 24               # the server takes a backup this often
# keep_daily = 7                 # then forgets and prunes older snapshots
# keep_weekly = 4
# keep_monthly = 12
# keep_yearly = 10

# Retention policies (WORM): objects a rule covers get a retention when
# written, and cannot be deleted or overwritten before it ends. A rule names
# an S3 bucket (bucket = "NAME") or a tenant's DICOM archive
# (dicom_tenant = "TENANT", "*" for all), optionally a key prefix, a mode
# ("compliance": nobody can shorten it; "governance": an administrator can,
# with x-amz-bypass-governance-retention), a period (years and/or days) and
# the date it runs from: "created" (default), "meta:NAME" (an ISO date in
# x-amz-meta-NAME) or "study-date" (DICOM). The strongest matching rule wins.
#
# [[retention]]
# name = "outpatient"
# bucket = "outpatient-records"
# mode = "compliance"
# years = 15
# anchor = "meta:last-visit"
#
# [[retention]]
# name = "inpatient"
# bucket = "inpatient-records"
# mode = "compliance"
# years = 30
# anchor = "meta:discharge-date"
#
# [[retention]]
# name = "imaging"
# dicom_tenant = "*"
# mode = "compliance"
# years = 15
# anchor = "study-date"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_default_config_parses() {
        let c: FileConfig = toml::from_str(DEFAULT_TOML).expect("default config parses");
        assert_eq!(c.s3_addr.as_deref(), Some("127.0.0.1:9000"));
        assert_eq!(c.max_object_size, Some(DEFAULT_MAX_OBJECT_SIZE));
    }

    #[test]
    fn a_relative_data_dir_is_the_config_files_folders() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("fulcrum.toml");
        std::fs::write(&path, "data_dir = \"./fulcrum-data\"\n").expect("write");
        let file = FileConfig::load(&path).expect("loads");
        assert_eq!(file.data_dir, Some(dir.path().join("./fulcrum-data")));
        std::fs::write(&path, "data_dir = \"/srv/fulcrum\"\n").expect("write");
        let file = FileConfig::load(&path).expect("loads");
        assert_eq!(file.data_dir, Some(PathBuf::from("/srv/fulcrum")));
    }

    fn resolve(text: &str) -> Result<Settings> {
        Settings::resolve(FileConfig::parse(text)?, Flags::default(), &|_| None)
    }

    /// Found by the `config` fuzz target: a schedule too long for a
    /// `Duration` panicked when the server started its jobs.
    #[test]
    fn fuzz_huge_schedule_is_refused() {
        let text = include_str!("../tests/fuzz/huge_scrub_every_hours.toml");
        let err = resolve(text).expect_err("1.6e36 hours");
        assert!(err.to_string().contains("scrub_every_hours"), "{err}");
        for bad in ["inf", "nan", "1e20"] {
            assert!(resolve(&format!("[backup]\nevery_hours = {bad}")).is_err());
        }
        let ok = resolve("scrub_every_hours = -1.0\n[backup]\nevery_hours = 0.5").expect("valid");
        assert_eq!(ok.scrub_period(), None);
        assert_eq!(ok.backup.period(), Some(Duration::from_secs(1800)));
    }

    /// Found by a helper session walking the README: uncommenting the
    /// `[[lifecycle]]` examples of `config init`'s file made the settings
    /// after them part of the last rule. Every commented table, uncommented
    /// on its own, must leave a file that loads.
    #[test]
    fn each_commented_table_of_the_default_file_can_be_uncommented() {
        let lines: Vec<&str> = DEFAULT_TOML.lines().collect();
        let mut tables = 0;
        for (at, line) in lines.iter().enumerate() {
            if !line.starts_with("# [") {
                continue;
            }
            tables += 1;
            let mut edited: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
            for l in edited.iter_mut().skip(at) {
                if !l.starts_with('#') || l.trim() == "#" {
                    break;
                }
                *l = l.trim_start_matches("# ").to_string();
            }
            let text = edited.join("\n");
            if let Err(e) = FileConfig::parse(&text) {
                panic!("uncommenting the table at line {}: {e}", at + 1);
            }
        }
        assert!(tables >= 5, "{tables} commented tables");
    }

    /// GC runs daily unless the configuration says otherwise; 0 turns it off.
    #[test]
    fn gc_is_scheduled_daily_by_default() {
        let day = Some(Duration::from_secs(24 * 3600));
        assert_eq!(resolve("").expect("valid").gc_period(), day);
        assert_eq!(
            resolve("gc_every_hours = 0").expect("valid").gc_period(),
            None
        );
        let env = |k: &str| (k == "FULCRUM_GC_EVERY_HOURS").then(|| "1".to_string());
        let s = Settings::resolve(FileConfig::default(), Flags::default(), &env).expect("valid");
        assert_eq!(s.gc_period(), Some(Duration::from_secs(3600)));
        assert!(resolve("gc_every_hours = inf").is_err());
    }

    /// A new user's walkthrough: FULCRUM_GC_EVERY_HOURS=off and
    /// FULCRUM_ZSTD_LEVEL=abc started a server with the defaults, and an
    /// access key without its secret was dropped for generated ones.
    #[test]
    fn environment_values_that_do_not_parse_are_refused() {
        let with = |pairs: &'static [(&'static str, &'static str)]| {
            let env = move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            };
            Settings::resolve(FileConfig::default(), Flags::default(), &env)
        };
        for (name, value) in [
            ("FULCRUM_GC_EVERY_HOURS", "off"),
            ("FULCRUM_BACKUP_EVERY_HOURS", "abc"),
            ("FULCRUM_SCRUB_EVERY_HOURS", "2h"),
            ("FULCRUM_SCRUB_RATE_MIB", "-5"),
            ("FULCRUM_READ_CACHE_MIB", "lots"),
            ("FULCRUM_ZSTD_LEVEL", "abc"),
            ("FULCRUM_ZSTD_LEVEL", "99"),
            ("FULCRUM_PIXEL_ZSTD_LEVEL", "23"),
            ("FULCRUM_ARCHIVE_ZSTD_LEVEL", "99"),
            ("FULCRUM_S3_ACCESS_KEY", "admin"),
            ("FULCRUM_S3_SECRET_KEY", "s"),
        ] {
            let pairs: &'static [(&str, &str)] = Box::leak(Box::new([(name, value)]));
            let err = with(pairs).expect_err(name);
            let msg = format!("{err:#}");
            assert!(msg.contains(name), "{name}: {msg}");
        }
        let s = with(&[
            ("FULCRUM_ZSTD_LEVEL", " 3 "),
            ("FULCRUM_PIXEL_ZSTD_LEVEL", "-5"),
        ])
        .expect("valid levels");
        assert_eq!((s.zstd_level, s.pixel_zstd_level), (3, -5));
        assert!(resolve("zstd_level = 40").is_err());
        with(&[
            ("FULCRUM_S3_ACCESS_KEY", "a"),
            ("FULCRUM_S3_SECRET_KEY", "b"),
        ])
        .expect("both halves");
    }

    /// Found by review next to the fuzz target: `pack_target_mib` times
    /// 1 MiB overflowed.
    #[test]
    fn fuzz_huge_pack_target_is_refused() {
        let s = resolve("pack_target_mib = 9223372036854775807").expect("parses");
        let err = s.engine_config().expect_err("overflows");
        assert!(err.to_string().contains("pack_target_mib"), "{err}");
    }

    #[test]
    fn shipped_retention_examples_parse() {
        // The commented examples of the default config, uncommented.
        let examples: String = DEFAULT_TOML
            .split_once("# [[retention]]")
            .map(|(_, rest)| format!("# [[retention]]{rest}"))
            .expect("examples present")
            .lines()
            .map(|l| l.strip_prefix("# ").unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n");
        let c: FileConfig = toml::from_str(&examples).expect("retention examples parse");
        assert_eq!(c.retention.len(), 3);
        assert_eq!(c.retention[0].years, 15);
        assert!(toml::from_str::<FileConfig>(
            "[[retention]]\nbucket = \"a\"\nmode = \"x\"\nyears = 1"
        )
        .is_err());
    }

    #[test]
    fn lifecycle_rules_and_intervals_parse() {
        // The lifecycle examples of the default config, uncommented.
        let (head, rest) = DEFAULT_TOML
            .split_once("# Lifecycle rules")
            .expect("lifecycle examples present");
        let (examples, tail) = rest.split_once("\n\n").expect("a block after them");
        let examples = examples
            .replace("# [[lifecycle]]", "[[lifecycle]]")
            .replace("\n# id", "\nid")
            .replace("\n# bucket", "\nbucket")
            .replace("\n# prefix", "\nprefix")
            .replace("\n# not_read_days", "\nnot_read_days")
            .replace("\n# modality", "\nmodality")
            .replace("\n# study_older", "\nstudy_older");
        // Tables last: the top-level keys after them stay top-level.
        let text = format!("{head}\n\n{tail}\n# Lifecycle rules{examples}\n");
        let c: FileConfig = toml::from_str(&text).expect("rules parse");
        let t = TierSettings::resolve(&c, &|_| None).expect("valid rules");
        assert_eq!(t.rules.len(), 2);
        assert_eq!(t.rules[1].modality.as_deref(), Some("CT"));
        assert_eq!(
            parse_interval("90s").expect("90s"),
            Some(std::time::Duration::from_secs(90))
        );
        assert_eq!(
            parse_interval("2h").expect("2h"),
            Some(std::time::Duration::from_secs(7200))
        );
        assert_eq!(parse_interval("off").expect("off"), None);
        assert!(parse_interval("soon").is_err());
        let bad: FileConfig = toml::from_str("[[lifecycle]]\nbucket = \"b\"").expect("parses");
        assert!(
            TierSettings::resolve(&bad, &|_| None).is_err(),
            "a rule without a condition"
        );
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(toml::from_str::<FileConfig>("colour = \"red\"").is_err());
    }
}
