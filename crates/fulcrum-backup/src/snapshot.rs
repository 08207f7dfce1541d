//! Snapshots: what one backup run captured — the catalog export (as blob
//! ids), small data-dir files, and counts for `backup list` — and the
//! retention policy `backup forget` applies to them.

use std::collections::{BTreeMap, HashSet};

use fulcrum_types::ChunkId;
use time::OffsetDateTime;

use crate::error::{BackupError, BackupResult};

/// One point-in-time copy of the platform.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    /// 16 random hex digits; any unique prefix names it (`backup list`
    /// shows 8).
    pub id: String,
    pub time_ms: i64,
    pub host: String,
    /// The platform backed up (backend and catalog kind), for people.
    pub source: String,
    /// Blob ids of the catalog export, in order.
    pub dump: Vec<String>,
    pub dump_bytes: u64,
    /// Small files of the data dir (S3 credentials), by name.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
    pub objects: u64,
    pub logical_bytes: u64,
    pub chunks: u64,
    /// Stored bytes of the chunks the catalog export references.
    pub chunk_bytes: u64,
    /// Blobs and bytes this run sent (sealed, as the repository holds them).
    pub new_blobs: u64,
    pub new_bytes: u64,
    /// Stored bytes the repository already had.
    pub reused_bytes: u64,
    /// Chunks that failed verification on the platform and were left out.
    #[serde(default)]
    pub damaged: Vec<String>,
    pub duration_ms: u64,
}

impl Snapshot {
    pub fn new_id() -> String {
        format!("{:016x}", rand::random::<u64>())
    }

    pub fn dump_ids(&self) -> BackupResult<Vec<ChunkId>> {
        self.dump
            .iter()
            .map(|h| {
                hex::decode(h)
                    .ok()
                    .and_then(|b| ChunkId::from_slice(&b).ok())
                    .ok_or_else(|| {
                        BackupError::Damaged(format!("snapshot {}: bad blob id {h:?}", self.id))
                    })
            })
            .collect()
    }

    pub fn time(&self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(self.time_ms as i128 * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}

/// The period (year and day, week, month …) a time falls in.
type PeriodOf = fn(&OffsetDateTime) -> (i32, u32);

/// How many snapshots to keep per period (restic's `forget` policy): the
/// newest snapshot of each of the last N days, weeks, months and years,
/// plus the last N snapshots.
#[derive(Debug, Clone, Default)]
pub struct KeepPolicy {
    pub last: usize,
    pub daily: usize,
    pub weekly: usize,
    pub monthly: usize,
    pub yearly: usize,
}

impl KeepPolicy {
    pub fn is_empty(&self) -> bool {
        self.last + self.daily + self.weekly + self.monthly + self.yearly == 0
    }

    /// Ids of the snapshots to keep.
    pub fn keep(&self, snapshots: &[Snapshot]) -> HashSet<String> {
        let mut newest_first: Vec<&Snapshot> = snapshots.iter().collect();
        newest_first.sort_by(|a, b| (b.time_ms, &b.id).cmp(&(a.time_ms, &a.id)));
        let mut keep: HashSet<String> = newest_first
            .iter()
            .take(self.last)
            .map(|s| s.id.clone())
            .collect();
        let periods: [(usize, PeriodOf); 4] = [
            (self.daily, |t| (t.year(), t.ordinal() as u32)),
            (self.weekly, |t| {
                let (y, w, _) = t.to_iso_week_date();
                (y, w as u32)
            }),
            (self.monthly, |t| (t.year(), t.month() as u32)),
            (self.yearly, |t| (t.year(), 0)),
        ];
        for (n, bucket) in periods {
            let mut seen = HashSet::new();
            for s in &newest_first {
                if seen.len() >= n {
                    break;
                }
                if seen.insert(bucket(&s.time())) {
                    keep.insert(s.id.clone());
                }
            }
        }
        keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(day: i64, hour: i64) -> Snapshot {
        let time_ms = (day * 86_400 + hour * 3600) * 1000;
        Snapshot {
            id: Snapshot::new_id(),
            time_ms,
            host: String::new(),
            source: String::new(),
            dump: vec![],
            dump_bytes: 0,
            files: BTreeMap::new(),
            objects: 0,
            logical_bytes: 0,
            chunks: 0,
            chunk_bytes: 0,
            new_blobs: 0,
            new_bytes: 0,
            reused_bytes: 0,
            damaged: vec![],
            duration_ms: 0,
        }
    }

    #[test]
    fn keep_policy_keeps_the_newest_of_each_period() {
        // Two snapshots a day for 60 days from 2024-01-01 (day 19723).
        let all: Vec<Snapshot> = (0..60)
            .flat_map(|d| [snap(19723 + d, 1), snap(19723 + d, 13)])
            .collect();
        let daily = KeepPolicy {
            daily: 7,
            ..Default::default()
        }
        .keep(&all);
        assert_eq!(daily.len(), 7);
        // The newest of each day: the 13:00 one.
        assert!(daily.contains(&all[119].id) && !daily.contains(&all[118].id));
        let monthly = KeepPolicy {
            monthly: 12,
            ..Default::default()
        }
        .keep(&all);
        assert_eq!(monthly.len(), 2, "January and February");
        let mixed = KeepPolicy {
            last: 3,
            daily: 2,
            yearly: 1,
            ..Default::default()
        }
        .keep(&all);
        // The last 3 already include the newest of the last two days and of
        // the year.
        assert_eq!(mixed.len(), 3);
        assert!(KeepPolicy::default().keep(&all).is_empty());
    }
}
