//! Retention and WORM facts (S3 Object Lock): per-object retention (mode
//! and retain-until) and legal hold, per-bucket lock configuration with a
//! default retention, and the rules every delete or overwrite is checked
//! against inside its own transaction (`store`).
//!
//! - **Governance** retention may be shortened or removed, and the object
//!   deleted, only by a request that asks to bypass governance.
//! - **Compliance** retention can never be shortened or removed; it may be
//!   extended.
//! - A **legal hold** blocks deletion whatever the dates, until removed.
//!
//! We keep no S3 versions, so overwriting a protected key would destroy
//! the retained bytes: it is refused, unless the new body is the same
//! chunk list (a re-PUT or a self-copy that changes metadata, such as a new
//! last-visit date), in which case the protection carries over and can
//! only grow.

mod store;

pub(crate) use store::{
    check_overwrites, claim_objects, drop_locks, key_args, lock_from, put_legal_hold,
    release_for_delete, store_write_locks, Claimed, ONE_OBJECT,
};

use std::fmt;

/// Retention mode of S3 Object Lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    Governance,
    Compliance,
}

impl LockMode {
    /// The S3 spelling (`GOVERNANCE`, `COMPLIANCE`), as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            LockMode::Governance => "GOVERNANCE",
            LockMode::Compliance => "COMPLIANCE",
        }
    }

    /// Parses a mode, ignoring case.
    pub fn parse(s: &str) -> Option<Self> {
        if s.eq_ignore_ascii_case("GOVERNANCE") {
            Some(LockMode::Governance)
        } else if s.eq_ignore_ascii_case("COMPLIANCE") {
            Some(LockMode::Compliance)
        } else {
            None
        }
    }
}

impl fmt::Display for LockMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A retention: nobody deletes the object before `until_ms` (ms since the
/// Unix epoch), except a governance bypass in governance mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub mode: LockMode,
    pub until_ms: i64,
}

impl Retention {
    pub fn is_active(&self, now_ms: i64) -> bool {
        self.until_ms > now_ms
    }

    /// The stronger of two retentions: the later date, and compliance
    /// mode if either is (never weaker than either).
    pub fn strongest(a: Option<Self>, b: Option<Self>) -> Option<Self> {
        match (a, b) {
            (Some(a), Some(b)) => Some(Retention {
                mode: if a.mode == LockMode::Compliance || b.mode == LockMode::Compliance {
                    LockMode::Compliance
                } else {
                    LockMode::Governance
                },
                until_ms: a.until_ms.max(b.until_ms),
            }),
            (a, b) => a.or(b),
        }
    }
}

impl fmt::Display for Retention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} retention until {}", self.mode, iso_ms(self.until_ms))
    }
}

/// What protects one object (stored) or what a write asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ObjectLock {
    pub retention: Option<Retention>,
    pub legal_hold: bool,
}

impl ObjectLock {
    pub fn is_empty(&self) -> bool {
        self.retention.is_none() && !self.legal_hold
    }

    /// The part of the protection still in force at `now_ms`.
    pub fn active(self, now_ms: i64) -> Self {
        Self {
            retention: self.retention.filter(|r| r.is_active(now_ms)),
            legal_hold: self.legal_hold,
        }
    }

    /// Why deleting (or overwriting) the object is refused now, if it is.
    pub fn blocks_delete(&self, now_ms: i64, bypass_governance: bool) -> Option<String> {
        if self.legal_hold {
            return Some("it is under a legal hold".into());
        }
        match self.retention {
            Some(r) if r.is_active(now_ms) => match r.mode {
                LockMode::Governance if bypass_governance => None,
                LockMode::Governance => Some(format!(
                    "it is under {r} (only a request that bypasses governance retention may delete it)"
                )),
                LockMode::Compliance => Some(format!("it is under {r}")),
            },
            _ => None,
        }
    }

    /// The union of two protections (each part never weaker).
    pub fn merge(self, other: Self) -> Self {
        Self {
            retention: Retention::strongest(self.retention, other.retention),
            legal_hold: self.legal_hold || other.legal_hold,
        }
    }
}

/// Checks a change of an object's retention from `current` to `new`:
/// compliance retention can only be extended; governance retention can be
/// shortened, removed or turned into compliance only with
/// `bypass_governance` (AWS answers a mode change without it AccessDenied,
/// as ceph's s3-tests check).
pub fn check_retention_change(
    current: Option<Retention>,
    new: Option<Retention>,
    now_ms: i64,
    bypass_governance: bool,
) -> Result<(), String> {
    let Some(cur) = current.filter(|r| r.is_active(now_ms)) else {
        return Ok(());
    };
    let overrides = match new {
        None => true,
        Some(n) => n.until_ms < cur.until_ms || n.mode != cur.mode,
    };
    match (overrides, cur.mode) {
        (false, _) => Ok(()),
        (true, LockMode::Compliance) => Err(format!(
            "the object is under {cur}, which cannot be shortened, removed or turned into governance mode"
        )),
        (true, LockMode::Governance) if bypass_governance => Ok(()),
        (true, LockMode::Governance) => Err(format!(
            "the object is under {cur}; shortening it, removing it or changing its mode needs x-amz-bypass-governance-retention: true"
        )),
    }
}

/// What a write asks for: the client's explicit retention and legal hold
/// (no explicit retention: the bucket's default retention applies) and a
/// floor from the configured retention policies. The stored retention is
/// the strongest of these and of any protection the overwritten object
/// carried.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LockRequest {
    pub retention: Option<Retention>,
    pub legal_hold: bool,
    pub policy: Option<Retention>,
}

impl LockRequest {
    pub fn explicit(lock: ObjectLock) -> Self {
        Self {
            retention: lock.retention,
            legal_hold: lock.legal_hold,
            policy: None,
        }
    }
}

/// A bucket's default retention: a mode and a period of days or years.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultRetention {
    pub mode: LockMode,
    pub days: i64,
    pub years: i64,
}

impl DefaultRetention {
    /// The retain-until of an object written at `from_ms`.
    pub fn retention_from(&self, from_ms: i64) -> Retention {
        Retention {
            mode: self.mode,
            until_ms: add_period(from_ms, self.years, self.days),
        }
    }
}

/// A bucket's Object Lock configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BucketLock {
    pub enabled: bool,
    pub default: Option<DefaultRetention>,
}

const DAY_MS: i64 = 86_400_000;

/// `from_ms` plus calendar years (29 February → 28 February) and days.
pub fn add_period(from_ms: i64, years: i64, days: i64) -> i64 {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp_nanos(from_ms as i128 * 1_000_000) else {
        return i64::MAX;
    };
    let year = t.year() as i64 + years;
    let shifted = i32::try_from(year)
        .ok()
        .and_then(|y| {
            t.replace_year(y)
                .ok()
                .or_else(|| t.replace_day(28).ok().and_then(|d| d.replace_year(y).ok()))
        })
        .map(|d| (d.unix_timestamp_nanos() / 1_000_000) as i64)
        .unwrap_or(i64::MAX);
    shifted.saturating_add(days.saturating_mul(DAY_MS))
}

/// ms since the epoch as ISO 8601 UTC (`2041-03-01T00:00:00Z`), the form
/// error messages name dates in.
pub fn iso_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{ms} ms after the epoch"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    fn r(mode: LockMode, until_ms: i64) -> Option<Retention> {
        Some(Retention { mode, until_ms })
    }

    #[test]
    fn compliance_only_extends() {
        let cur = r(LockMode::Compliance, NOW + 1000);
        assert!(
            check_retention_change(cur, r(LockMode::Compliance, NOW + 2000), NOW, false).is_ok()
        );
        for new in [
            None,
            r(LockMode::Compliance, NOW + 999),
            r(LockMode::Governance, NOW + 5000),
        ] {
            assert!(
                check_retention_change(cur, new, NOW, true).is_err(),
                "{new:?}"
            );
        }
        // Expired: anything goes.
        assert!(check_retention_change(cur, None, NOW + 1000, false).is_ok());
    }

    #[test]
    fn governance_is_overridden_only_with_bypass() {
        let cur = r(LockMode::Governance, NOW + 1000);
        assert!(check_retention_change(cur, None, NOW, false).is_err());
        assert!(check_retention_change(cur, None, NOW, true).is_ok());
        assert!(
            check_retention_change(cur, r(LockMode::Governance, NOW + 10), NOW, false).is_err()
        );
        // A mode change is an override too (AWS: AccessDenied).
        let compliance = r(LockMode::Compliance, NOW + 1000);
        assert!(check_retention_change(cur, compliance, NOW, false).is_err());
        assert!(check_retention_change(cur, compliance, NOW, true).is_ok());
        assert!(
            check_retention_change(cur, r(LockMode::Governance, NOW + 2000), NOW, false).is_ok()
        );
    }

    #[test]
    fn deletion_blocks() {
        let hold = ObjectLock {
            retention: None,
            legal_hold: true,
        };
        assert!(hold.blocks_delete(NOW, true).is_some());
        let gov = ObjectLock {
            retention: r(LockMode::Governance, NOW + 1),
            legal_hold: false,
        };
        assert!(gov.blocks_delete(NOW, false).is_some());
        assert!(gov.blocks_delete(NOW, true).is_none());
        assert!(gov.blocks_delete(NOW + 1, false).is_none());
        let comp = ObjectLock {
            retention: r(LockMode::Compliance, NOW + 1000),
            legal_hold: false,
        };
        let why = comp.blocks_delete(NOW, true).expect("compliance blocks");
        assert!(
            why.contains("COMPLIANCE retention until 2023-11-14T22:13:21Z"),
            "{why}"
        );
    }

    #[test]
    fn strongest_never_weakens() {
        let s = Retention::strongest(r(LockMode::Compliance, 5), r(LockMode::Governance, 9));
        assert_eq!(s, r(LockMode::Compliance, 9));
        assert_eq!(
            Retention::strongest(None, r(LockMode::Governance, 1)),
            r(LockMode::Governance, 1)
        );
    }

    #[test]
    fn periods_use_calendar_years() {
        // 2024-02-29 + 1 year = 2025-02-28; + 30 years = 2054-02-28.
        let leap = 1_709_164_800_000; // 2024-02-29T00:00:00Z
        assert_eq!(iso_ms(add_period(leap, 1, 0)), "2025-02-28T00:00:00Z");
        assert_eq!(iso_ms(add_period(leap, 4, 0)), "2028-02-29T00:00:00Z");
        assert_eq!(iso_ms(add_period(leap, 0, 10)), "2024-03-10T00:00:00Z");
    }
}
