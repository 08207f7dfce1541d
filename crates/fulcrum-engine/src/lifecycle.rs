//! Lifecycle rules and the tier move that applies them: rules from the
//! config file and from buckets' S3 lifecycle configurations select
//! objects (not read for N days, created more than N days ago, or DICOM
//! studies of a modality older than N days by StudyDate); `tier_apply`
//! shows what they select (dry run) or moves those objects' chunks to the
//! archive tier under the maintenance lease.
//!
//! Chunks are shared by deduplication: a chunk of a selected object that
//! a hot object also references moves too, and that object then reads it
//! from the archive (transparently, counted as a recall).

use std::collections::HashSet;
use std::time::Instant;

use fulcrum_catalog::{now_ms, Selection};
use fulcrum_types::{Tier, DEFAULT_TENANT};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::engine::Engine;
use crate::error::{EngineError, EngineResult};
use crate::lease::MAINTENANCE_LEASE;
use crate::verify::VerifyProgress;

const DAY_MS: i64 = 24 * 3600 * 1000;

/// The bucket holding a tenant's DICOM instances (see fulcrum-dicom).
const DICOM_BUCKET: &str = ".dicom";

/// A move batch holds at most this many objects / logical bytes.
const BATCH_OBJECTS: usize = 500;
const BATCH_BYTES: i64 = 256 * 1024 * 1024;

fn yes() -> bool {
    true
}

fn default_tenant() -> String {
    DEFAULT_TENANT.to_string()
}

/// One lifecycle rule: which objects go to the archive tier. Conditions
/// combine with AND. A bucket rule names `bucket` (and optionally a key
/// `prefix`) with `not_read_days` and/or `older_than_days`; a DICOM rule
/// names `modality` and/or `study_older_than_days` and selects whole
/// studies of the tenant's imaging archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleRule {
    /// A name for reports.
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default = "default_tenant")]
    pub tenant: String,
    #[serde(default)]
    pub bucket: Option<String>,
    #[serde(default)]
    pub prefix: String,
    /// Neither read nor written for this many days.
    #[serde(default)]
    pub not_read_days: Option<u32>,
    /// Created more than this many days ago.
    #[serde(default)]
    pub older_than_days: Option<u32>,
    /// DICOM: studies with a series of this modality (e.g. "CT").
    #[serde(default)]
    pub modality: Option<String>,
    /// DICOM: studies whose StudyDate is more than this many days ago.
    #[serde(default)]
    pub study_older_than_days: Option<u32>,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The S3 storage class a client asked for (all mean the archive tier;
    /// kept to answer GetBucketLifecycleConfiguration as it was put).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// S3 AbortIncompleteMultipartUpload: uploads to the rule's bucket and
    /// prefix begun this many days ago are aborted (by GC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_uploads_days: Option<u32>,
}

impl LifecycleRule {
    /// A rule on a bucket with no conditions yet.
    pub fn for_bucket(tenant: &str, bucket: &str) -> Self {
        Self {
            id: None,
            tenant: tenant.to_string(),
            bucket: Some(bucket.to_string()),
            prefix: String::new(),
            not_read_days: None,
            older_than_days: None,
            modality: None,
            study_older_than_days: None,
            enabled: true,
            storage_class: None,
            abort_uploads_days: None,
        }
    }

    /// Whether the rule moves anything to the archive tier (an S3 rule may
    /// only abort uploads).
    fn transitions(&self) -> bool {
        self.is_dicom() || self.not_read_days.is_some() || self.older_than_days.is_some()
    }

    fn is_dicom(&self) -> bool {
        self.modality.is_some() || self.study_older_than_days.is_some()
    }

    /// The rule's name in reports.
    pub fn name(&self) -> String {
        if let Some(id) = &self.id {
            return id.clone();
        }
        let mut parts = Vec::new();
        match &self.bucket {
            Some(b) => parts.push(format!("{b}/{}", self.prefix)),
            None => parts.push("dicom".to_string()),
        }
        if let Some(m) = &self.modality {
            parts.push(format!("modality={m}"));
        }
        for (k, v) in [
            ("not_read_days", self.not_read_days),
            ("older_than_days", self.older_than_days),
            ("study_older_than_days", self.study_older_than_days),
        ] {
            if let Some(v) = v {
                parts.push(format!("{k}={v}"));
            }
        }
        parts.join(" ")
    }

    /// Checks that the rule says what it selects, in words for the config
    /// file's author.
    pub fn validate(&self) -> Result<(), String> {
        let name = self.name();
        if self.is_dicom() {
            if self.bucket.is_some() || !self.prefix.is_empty() {
                return Err(format!("lifecycle rule {name:?}: a DICOM rule (modality, study_older_than_days) selects studies; it takes no bucket or prefix"));
            }
            if self.not_read_days.is_some() || self.older_than_days.is_some() {
                return Err(format!("lifecycle rule {name:?}: a DICOM rule takes modality and study_older_than_days only"));
            }
            return Ok(());
        }
        if self.bucket.as_deref().is_none_or(str::is_empty) {
            return Err(format!("lifecycle rule {name:?} needs a bucket (or modality / study_older_than_days for DICOM studies)"));
        }
        if !self.transitions() && self.abort_uploads_days.is_none() {
            return Err(format!(
                "lifecycle rule {name:?} needs not_read_days or older_than_days"
            ));
        }
        Ok(())
    }

    /// What the rule selects at `now` (ms).
    fn selection(&self, now: i64) -> Selection {
        let before = |days: Option<u32>| days.map(|d| now - d as i64 * DAY_MS);
        if self.is_dicom() {
            return Selection::Dicom {
                tenant: self.tenant.clone(),
                bucket: DICOM_BUCKET.to_string(),
                modality: self.modality.clone(),
                study_date_before: before(self.study_older_than_days).map(dicom_date),
            };
        }
        Selection::Bucket {
            tenant: self.tenant.clone(),
            bucket: self.bucket.clone().unwrap_or_default(),
            prefix: self.prefix.clone(),
            created_before: before(self.older_than_days),
            not_read_since: before(self.not_read_days),
        }
    }
}

/// The date of a Unix time in ms, as DICOM writes dates (YYYYMMDD, UTC).
fn dicom_date(ms: i64) -> String {
    let d = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .date();
    format!("{:04}{:02}{:02}", d.year(), d.month() as u8, d.day())
}

/// What one rule selects.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RulePlan {
    pub rule: String,
    pub objects: u64,
    /// Logical bytes of those objects.
    pub bytes: u64,
}

/// What a tier run selected and (unless a dry run) moved.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TierReport {
    pub dry_run: bool,
    pub rules: Vec<RulePlan>,
    /// Objects selected by any rule (each counted once).
    pub objects: u64,
    pub bytes: u64,
    /// Objects now wholly on the archive tier.
    pub archived_objects: u64,
    pub moved: crate::tier_move::MoveStats,
    pub seconds: f64,
}

impl Engine {
    /// The rules in force: `config` plus every bucket's S3 lifecycle rules
    /// (disabled rules left out).
    pub async fn lifecycle_rules(
        &self,
        config: &[LifecycleRule],
    ) -> EngineResult<Vec<LifecycleRule>> {
        let mut out: Vec<LifecycleRule> = config.iter().filter(|r| r.enabled).cloned().collect();
        for (tenant, bucket, json) in self.inner.catalog.all_bucket_lifecycles().await? {
            match serde_json::from_str::<Vec<LifecycleRule>>(&json) {
                Ok(rules) => out.extend(rules.into_iter().filter(|r| r.enabled).map(|mut r| {
                    r.tenant = tenant.clone();
                    r.bucket = Some(bucket.clone());
                    r
                })),
                Err(e) => {
                    warn!(%tenant, %bucket, error = %e, "unreadable bucket lifecycle rules skipped")
                }
            }
        }
        Ok(out)
    }

    /// The S3 lifecycle rules of a bucket (empty: none).
    pub async fn bucket_lifecycle(
        &self,
        tenant: &str,
        bucket: &str,
    ) -> EngineResult<Vec<LifecycleRule>> {
        let b = self.bucket(tenant, bucket).await?;
        Ok(match self.inner.catalog.bucket_lifecycle(b.id).await? {
            Some(json) => serde_json::from_str(&json)
                .map_err(|e| EngineError::Corrupt(format!("bucket lifecycle rules: {e}")))?,
            None => Vec::new(),
        })
    }

    /// Replaces a bucket's S3 lifecycle rules (an empty list removes them).
    pub async fn put_bucket_lifecycle(
        &self,
        tenant: &str,
        bucket: &str,
        rules: &[LifecycleRule],
    ) -> EngineResult<()> {
        let b = self.bucket(tenant, bucket).await?;
        if rules.is_empty() {
            self.inner.catalog.delete_bucket_lifecycle(b.id).await?;
            return Ok(());
        }
        let json = serde_json::to_string(rules)
            .map_err(|e| EngineError::Corrupt(format!("bucket lifecycle rules: {e}")))?;
        Ok(self.inner.catalog.put_bucket_lifecycle(b.id, &json).await?)
    }

    /// Selects what the rules in force (`config` plus the buckets' rules)
    /// send to the archive and, unless `dry_run`, moves it there under the
    /// maintenance lease. `progress` counts logical bytes of objects.
    pub async fn tier_apply(
        &self,
        config: &[LifecycleRule],
        dry_run: bool,
        progress: &mut dyn VerifyProgress,
    ) -> EngineResult<TierReport> {
        let started = Instant::now();
        if !dry_run && !self.has_archive() {
            return Err(EngineError::NoArchive(
                "no archive backend is configured (set archive_backend / FULCRUM_ARCHIVE_BACKEND)"
                    .into(),
            ));
        }
        let lease = match dry_run {
            true => None,
            false => Some(self.lease(MAINTENANCE_LEASE).await?),
        };
        let out = self
            .tier_apply_inner(config, dry_run, progress, lease.as_ref())
            .await;
        if let Some(l) = lease {
            l.release().await;
        }
        let mut report = out?;
        report.seconds = started.elapsed().as_secs_f64();
        if !dry_run {
            info!(
                objects = report.objects,
                bytes = report.bytes,
                moved_chunks = report.moved.chunks,
                written = report.moved.written_bytes,
                "lifecycle rules applied"
            );
        }
        Ok(report)
    }

    async fn tier_apply_inner(
        &self,
        config: &[LifecycleRule],
        dry_run: bool,
        progress: &mut dyn VerifyProgress,
        lease: Option<&crate::Lease>,
    ) -> EngineResult<TierReport> {
        let cat = &self.inner.catalog;
        let now = now_ms();
        let mut report = TierReport {
            dry_run,
            ..Default::default()
        };
        let mut seen: HashSet<i64> = HashSet::new();
        let mut selected: Vec<(i64, i64)> = Vec::new();
        for rule in self.lifecycle_rules(config).await? {
            if let Err(e) = rule.validate() {
                warn!(error = %e, "lifecycle rule skipped");
                continue;
            }
            if !rule.transitions() {
                continue;
            }
            let mut plan = RulePlan {
                rule: rule.name(),
                ..Default::default()
            };
            for c in cat.lifecycle_candidates(&rule.selection(now)).await? {
                if seen.insert(c.object_id) {
                    plan.objects += 1;
                    plan.bytes += c.size as u64;
                    selected.push((c.object_id, c.size));
                }
            }
            report.objects += plan.objects;
            report.bytes += plan.bytes;
            report.rules.push(plan);
        }
        if dry_run {
            return Ok(report);
        }
        let _guard = self.inner.inflight.begin();
        progress.start(report.bytes);
        let mut batch: Vec<i64> = Vec::new();
        let mut batch_bytes = 0i64;
        let last = selected.len();
        for (i, (id, size)) in selected.into_iter().enumerate() {
            batch.push(id);
            batch_bytes += size;
            if batch.len() < BATCH_OBJECTS && batch_bytes < BATCH_BYTES && i + 1 < last {
                continue;
            }
            if let Some(l) = lease {
                l.check()?;
            }
            let chunks = cat.chunks_of_objects_on(&batch, Tier::Hot).await?;
            let moved = self.move_chunks(chunks, Tier::Archive, &mut ()).await?;
            add_moves(&mut report.moved, &moved);
            report.archived_objects += cat.mark_archived(&batch).await?;
            progress.advance(batch_bytes as u64);
            batch.clear();
            batch_bytes = 0;
        }
        Ok(report)
    }
}

fn add_moves(total: &mut crate::tier_move::MoveStats, m: &crate::tier_move::MoveStats) {
    total.chunks += m.chunks;
    total.read_bytes += m.read_bytes;
    total.written_bytes += m.written_bytes;
    total.packs_written += m.packs_written;
    total.damaged_chunks += m.damaged_chunks;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_validate_and_select() {
        let mut r = LifecycleRule::for_bucket("default", "scans");
        assert!(r.validate().is_err(), "no condition");
        r.not_read_days = Some(180);
        r.validate().expect("valid bucket rule");
        let now = 1_000 * DAY_MS;
        assert_eq!(
            r.selection(now),
            Selection::Bucket {
                tenant: "default".into(),
                bucket: "scans".into(),
                prefix: String::new(),
                created_before: None,
                not_read_since: Some(820 * DAY_MS),
            }
        );
        let ct: LifecycleRule =
            toml::from_str("modality = \"CT\"\nstudy_older_than_days = 730").expect("parses");
        ct.validate().expect("valid DICOM rule");
        match ct.selection(0) {
            Selection::Dicom {
                study_date_before, ..
            } => assert_eq!(study_date_before.as_deref(), Some("19680102")),
            other => panic!("{other:?}"),
        }
        let mut bad = ct.clone();
        bad.bucket = Some("x".into());
        assert!(bad.validate().is_err());
        assert!(toml::from_str::<LifecycleRule>("colour = 1").is_err());
    }

    #[test]
    fn dicom_dates_are_utc_calendar_dates() {
        assert_eq!(dicom_date(0), "19700101");
        assert_eq!(dicom_date(1_709_251_200_000), "20240301");
    }
}
