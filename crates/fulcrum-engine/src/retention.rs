//! Retention policies from the configuration (medical-record rules such as
//! "outpatient records 15 years from the last visit, inpatient 30 years
//! from discharge") and the engine's Object Lock operations.
//!
//! A rule names what it covers (an S3 bucket, or a tenant's DICOM
//! archive), optionally a key prefix, a mode, a period (years and/or days)
//! and the date the period runs from:
//!
//! ```toml
//! [[retention]]
//! name = "outpatient"
//! bucket = "outpatient-records"   # or: dicom_tenant = "default" ("*": every tenant)
//! prefix = ""                     # only keys starting with this
//! mode = "compliance"             # or "governance"
//! years = 15                      # and/or days = N
//! anchor = "meta:last-visit"      # "created" (default) | "meta:<x-amz-meta- name>" | "study-date"
//! ```
//!
//! The retain-until is computed when an object is written and stored with
//! it; the strongest of all matching rules applies. A missing or
//! unreadable anchor date falls back to the write time, and an anchor in
//! the future counts as the write time (a visit cannot be later than the
//! record of it), so a typo can never push retention past what the write
//! time gives. Dates are ISO (`2024-05-01`, `2024-05-01T10:00:00Z`) or
//! DICOM DA (`20240501`). A later write of the same content with a newer
//! anchor extends the stored retention; nothing shortens it.

use std::collections::BTreeMap;

pub use fulcrum_catalog::retention::{add_period, iso_ms};
use fulcrum_catalog::{BucketLock, DeleteCondition, LockMode, LockRequest, ObjectLock, Retention};
use serde::Deserialize;

use crate::engine::Engine;
use crate::error::{EngineError, EngineResult};

/// What a rule covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleScope {
    /// An S3 bucket of this name (any tenant).
    Bucket(String),
    /// A tenant's DICOM archive (`*`: every tenant's).
    Dicom(String),
}

/// The date a rule's period runs from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anchor {
    /// The time the object is written.
    Created,
    /// A user-metadata date (`x-amz-meta-<name>`; stored lower-case).
    Metadata(String),
    /// The DICOM Study Date (0008,0020).
    StudyDate,
}

/// One `[[retention]]` section of the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RuleSpec")]
pub struct RetentionRule {
    pub name: String,
    pub scope: RuleScope,
    pub prefix: String,
    pub mode: LockMode,
    pub years: i64,
    pub days: i64,
    pub anchor: Anchor,
}

/// The TOML form of a rule, checked into a [`RetentionRule`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    name: Option<String>,
    bucket: Option<String>,
    dicom_tenant: Option<String>,
    #[serde(default)]
    prefix: String,
    mode: String,
    #[serde(default)]
    years: u32,
    #[serde(default)]
    days: u32,
    anchor: Option<String>,
}

impl TryFrom<RuleSpec> for RetentionRule {
    type Error = String;

    fn try_from(s: RuleSpec) -> Result<Self, String> {
        let scope = match (s.bucket, s.dicom_tenant) {
            (Some(b), None) => RuleScope::Bucket(b),
            (None, Some(t)) => RuleScope::Dicom(t),
            _ => {
                return Err(
                    "a retention rule names exactly one of bucket = \"NAME\" or dicom_tenant = \"TENANT\""
                        .into(),
                )
            }
        };
        let name = s.name.unwrap_or_else(|| match &scope {
            RuleScope::Bucket(b) => format!("bucket {b}"),
            RuleScope::Dicom(t) => format!("DICOM archive of {t}"),
        });
        let mode = LockMode::parse(&s.mode).ok_or_else(|| {
            format!(
                "retention rule {name:?}: mode {:?} is not \"governance\" or \"compliance\"",
                s.mode
            )
        })?;
        if s.years == 0 && s.days == 0 {
            return Err(format!(
                "retention rule {name:?}: give a period (years = N and/or days = N)"
            ));
        }
        let anchor = match s.anchor.as_deref().unwrap_or("created") {
            "created" => Anchor::Created,
            "study-date" if matches!(scope, RuleScope::Dicom(_)) => Anchor::StudyDate,
            "study-date" => {
                return Err(format!(
                    "retention rule {name:?}: anchor \"study-date\" needs dicom_tenant"
                ))
            }
            a => match a.strip_prefix("meta:") {
                Some(m) if !m.is_empty() && matches!(scope, RuleScope::Bucket(_)) => {
                    let m = m.to_ascii_lowercase();
                    Anchor::Metadata(m.strip_prefix("x-amz-meta-").unwrap_or(&m).to_string())
                }
                _ => {
                    return Err(format!(
                        "retention rule {name:?}: anchor {a:?} is not \"created\", \"meta:NAME\" (buckets) or \"study-date\" (DICOM)"
                    ))
                }
            },
        };
        Ok(RetentionRule {
            name,
            scope,
            prefix: s.prefix,
            mode,
            years: s.years.into(),
            days: s.days.into(),
            anchor,
        })
    }
}

/// Where a write goes, for matching rules.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    Bucket(&'a str),
    Dicom { tenant: &'a str },
}

/// The facts of one write that rules look at.
#[derive(Debug, Clone, Copy)]
pub struct WriteFacts<'a> {
    pub target: Target<'a>,
    pub key: &'a str,
    pub metadata: &'a BTreeMap<String, String>,
    pub study_date: Option<&'a str>,
    pub now_ms: i64,
}

impl RetentionRule {
    fn matches(&self, w: &WriteFacts<'_>) -> bool {
        let scope = match (&self.scope, w.target) {
            (RuleScope::Bucket(b), Target::Bucket(name)) => b == name,
            (RuleScope::Dicom(t), Target::Dicom { tenant }) => t == "*" || t == tenant,
            _ => false,
        };
        scope && w.key.starts_with(&self.prefix)
    }

    /// The retention this rule gives a write it matches.
    pub fn retention_for(&self, w: &WriteFacts<'_>) -> Retention {
        let anchor = match &self.anchor {
            Anchor::Created => None,
            Anchor::Metadata(m) => w.metadata.get(m).and_then(|d| parse_date_ms(d)),
            Anchor::StudyDate => w.study_date.and_then(parse_date_ms),
        };
        let from = anchor.map_or(w.now_ms, |a| a.min(w.now_ms));
        Retention {
            mode: self.mode,
            until_ms: add_period(from, self.years, self.days),
        }
    }
}

/// The strongest retention the matching rules give a write (`None` when
/// no rule matches).
pub fn evaluate(rules: &[RetentionRule], w: &WriteFacts<'_>) -> Option<Retention> {
    rules
        .iter()
        .filter(|r| r.matches(w))
        .map(|r| r.retention_for(w))
        .fold(None, |acc, r| Retention::strongest(acc, Some(r)))
}

/// Midnight UTC of a date given as `YYYY-MM-DD…` (ISO date or date-time;
/// the day is what counts) or DICOM DA `YYYYMMDD`, in ms since the epoch.
pub fn parse_date_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    let digits =
        |r: std::ops::Range<usize>| s.get(r).filter(|p| p.bytes().all(|b| b.is_ascii_digit()));
    let (y, m, d) = if s.get(4..5) == Some("-") && s.get(7..8) == Some("-") {
        (digits(0..4)?, digits(5..7)?, digits(8..10)?)
    } else if s.len() == 8 {
        (digits(0..4)?, digits(4..6)?, digits(6..8)?)
    } else {
        return None;
    };
    let month = time::Month::try_from(m.parse::<u8>().ok()?).ok()?;
    let date = time::Date::from_calendar_date(y.parse().ok()?, month, d.parse().ok()?).ok()?;
    Some(date.midnight().assume_utc().unix_timestamp() * 1000)
}

impl Engine {
    /// The retention the configured policies give a write.
    pub(crate) fn policy_retention(&self, w: WriteFacts<'_>) -> Option<Retention> {
        evaluate(&self.inner.cfg.retention, &w)
    }

    /// What an S3 write asks for: the client's explicit lock and the
    /// configured policies' floor for this bucket, key and metadata.
    pub(crate) fn lock_request(
        &self,
        explicit: ObjectLock,
        (bucket, key): (&str, &str),
        metadata: &BTreeMap<String, String>,
    ) -> LockRequest {
        let mut req = LockRequest::explicit(explicit);
        req.policy = self.policy_retention(WriteFacts {
            target: Target::Bucket(bucket),
            key,
            metadata,
            study_date: None,
            now_ms: fulcrum_catalog::now_ms(),
        });
        req
    }

    pub async fn bucket_lock(&self, tenant: &str, bucket: &str) -> EngineResult<BucketLock> {
        let b = self.bucket(tenant, bucket).await?;
        Ok(self.inner.catalog.bucket_lock(b.id).await?)
    }

    pub async fn set_bucket_lock(
        &self,
        tenant: &str,
        bucket: &str,
        lock: &BucketLock,
    ) -> EngineResult<()> {
        let b = self.bucket(tenant, bucket).await?;
        Ok(self.inner.catalog.set_bucket_lock(b.id, lock).await?)
    }

    pub(crate) fn no_such_key(bucket: &str, key: &str) -> EngineError {
        EngineError::NoSuchKey {
            bucket: bucket.to_string(),
            key: key.to_string(),
        }
    }

    /// Sets or removes an object's retention (compliance only extends;
    /// governance weakens only with `bypass_governance`).
    pub async fn set_object_retention(
        &self,
        tenant: &str,
        bucket: &str,
        key: &str,
        retention: Option<Retention>,
        bypass_governance: bool,
    ) -> EngineResult<()> {
        let b = self.bucket(tenant, bucket).await?;
        match self
            .inner
            .catalog
            .set_object_retention(b.id, key, retention, bypass_governance)
            .await?
        {
            true => Ok(()),
            false => Err(Self::no_such_key(bucket, key)),
        }
    }

    pub async fn set_legal_hold(
        &self,
        tenant: &str,
        bucket: &str,
        key: &str,
        on: bool,
    ) -> EngineResult<()> {
        let b = self.bucket(tenant, bucket).await?;
        match self.inner.catalog.set_legal_hold(b.id, key, on).await? {
            true => Ok(()),
            false => Err(Self::no_such_key(bucket, key)),
        }
    }

    /// Deletes an object unless retention or a legal hold protects it;
    /// `bypass_governance` lifts governance-mode retention only.
    pub async fn delete_object_with(
        &self,
        tenant: &str,
        bucket: &str,
        key: &str,
        bypass_governance: bool,
    ) -> EngineResult<bool> {
        self.delete_object_if(tenant, bucket, key, bypass_governance, None)
            .await
    }

    /// [`Engine::delete_object_with`], only if the object at the key meets
    /// `cond` (an S3 conditional delete).
    pub async fn delete_object_if(
        &self,
        tenant: &str,
        bucket: &str,
        key: &str,
        bypass_governance: bool,
        cond: Option<&DeleteCondition>,
    ) -> EngineResult<bool> {
        let b = self.bucket(tenant, bucket).await?;
        Ok(self
            .inner
            .catalog
            .delete_object_if(b.id, key, bypass_governance, cond)
            .await?)
    }

    /// The Object Lock headers a multipart upload was created with.
    pub(crate) async fn upload_lock(&self, upload_id: &str) -> EngineResult<ObjectLock> {
        Ok(self.inner.catalog.upload_lock(upload_id).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(toml_text: &str) -> Result<RetentionRule, String> {
        #[derive(Deserialize)]
        struct F {
            retention: Vec<RetentionRule>,
        }
        toml::from_str::<F>(toml_text)
            .map(|f| f.retention.into_iter().next().expect("one rule"))
            .map_err(|e| e.to_string())
    }

    const NOW: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    fn facts<'a>(
        target: Target<'a>,
        key: &'a str,
        metadata: &'a BTreeMap<String, String>,
        study_date: Option<&'a str>,
    ) -> WriteFacts<'a> {
        WriteFacts {
            target,
            key,
            metadata,
            study_date,
            now_ms: NOW,
        }
    }

    fn iso(r: Option<Retention>) -> Option<String> {
        r.map(|r| fulcrum_catalog::retention::iso_ms(r.until_ms))
    }

    #[test]
    fn outpatient_runs_from_the_last_visit() {
        let r = rule(
            "[[retention]]\nbucket = \"outpatient\"\nmode = \"COMPLIANCE\"\nyears = 15\nanchor = \"meta:x-amz-meta-Last-Visit\"",
        )
        .expect("rule parses");
        assert_eq!(r.anchor, Anchor::Metadata("last-visit".into()));
        let meta = BTreeMap::from([("last-visit".to_string(), "2024-03-05".to_string())]);
        let got = evaluate(
            std::slice::from_ref(&r),
            &facts(Target::Bucket("outpatient"), "p/1", &meta, None),
        );
        assert_eq!(iso(got).as_deref(), Some("2039-03-05T00:00:00Z"));
        assert_eq!(got.map(|g| g.mode), Some(LockMode::Compliance));
        // Other buckets and DICOM are not covered.
        assert!(evaluate(
            std::slice::from_ref(&r),
            &facts(Target::Bucket("other"), "p/1", &meta, None)
        )
        .is_none());
        // No or bad date: from the write time; a future date counts as now.
        for bad in ["", "yesterday", "2024-13-01", "2099-01-01"] {
            let meta = BTreeMap::from([("last-visit".to_string(), bad.to_string())]);
            let got = evaluate(
                std::slice::from_ref(&r),
                &facts(Target::Bucket("outpatient"), "k", &meta, None),
            );
            assert_eq!(iso(got).as_deref(), Some("2041-01-01T00:00:00Z"), "{bad:?}");
        }
    }

    #[test]
    fn strongest_rule_wins_and_study_date_anchors_dicom() {
        let rules = vec![
            rule("[[retention]]\ndicom_tenant = \"*\"\nmode = \"governance\"\nyears = 30\nanchor = \"study-date\"")
                .expect("dicom rule"),
            rule("[[retention]]\ndicom_tenant = \"default\"\nmode = \"compliance\"\ndays = 10")
                .expect("short rule"),
        ];
        let meta = BTreeMap::new();
        let got = evaluate(
            &rules,
            &facts(
                Target::Dicom { tenant: "default" },
                "instances/1",
                &meta,
                Some("20000102"),
            ),
        );
        assert_eq!(iso(got).as_deref(), Some("2030-01-02T00:00:00Z"));
        assert_eq!(got.map(|g| g.mode), Some(LockMode::Compliance));
        let other = evaluate(
            &rules,
            &facts(
                Target::Dicom { tenant: "h2" },
                "instances/1",
                &meta,
                Some("20000102"),
            ),
        );
        assert_eq!(other.map(|g| g.mode), Some(LockMode::Governance));
    }

    #[test]
    fn prefixes_limit_a_rule() {
        let r = rule("[[retention]]\nbucket = \"records\"\nprefix = \"inpatient/\"\nmode = \"compliance\"\nyears = 30\nanchor = \"meta:discharge-date\"")
            .expect("rule");
        let meta = BTreeMap::from([(
            "discharge-date".to_string(),
            "2020-06-30T12:00:00+08:00".to_string(),
        )]);
        let hit = evaluate(
            std::slice::from_ref(&r),
            &facts(Target::Bucket("records"), "inpatient/7", &meta, None),
        );
        assert_eq!(iso(hit).as_deref(), Some("2050-06-30T00:00:00Z"));
        assert!(evaluate(
            &[r],
            &facts(Target::Bucket("records"), "outpatient/7", &meta, None)
        )
        .is_none());
    }

    #[test]
    fn bad_rules_are_refused_with_a_reason() {
        for (text, says) in [
            (
                "bucket = \"a\"\ndicom_tenant = \"t\"\nmode = \"compliance\"\nyears = 1",
                "exactly one",
            ),
            ("bucket = \"a\"\nmode = \"forever\"\nyears = 1", "mode"),
            ("bucket = \"a\"\nmode = \"compliance\"", "period"),
            (
                "bucket = \"a\"\nmode = \"compliance\"\nyears = 1\nanchor = \"study-date\"",
                "dicom_tenant",
            ),
            (
                "dicom_tenant = \"t\"\nmode = \"compliance\"\nyears = 1\nanchor = \"meta:x\"",
                "anchor",
            ),
            (
                "bucket = \"a\"\nmode = \"compliance\"\nyears = 1\ncolour = \"red\"",
                "colour",
            ),
        ] {
            let err = rule(&format!("[[retention]]\n{text}")).expect_err(text);
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn dates_parse_in_iso_and_dicom_forms() {
        assert_eq!(parse_date_ms("1970-01-02"), Some(86_400_000));
        assert_eq!(parse_date_ms("19700102"), Some(86_400_000));
        assert_eq!(parse_date_ms("1970-01-02T23:59:59Z"), Some(86_400_000));
        assert_eq!(parse_date_ms("1970-02-30"), None);
        assert_eq!(parse_date_ms("1970/01/02"), None);
    }
}
