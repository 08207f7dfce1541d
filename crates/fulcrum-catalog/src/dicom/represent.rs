//! The instance that stands for a study or a series when a query asks
//! for an attribute the index does not hold (Institution Name, Body Part
//! Examined, Issuer of Patient ID…): its stored header is read for it:
//! the last written instance, whose attributes the study's and series'
//! rows hold. One statement per page of matches.

use std::collections::HashMap;

use crate::db::Catalog;
use crate::error::{db, CatalogResult};

use super::{instance_row, InstanceRecord, Level, INSTANCE_COLS};

impl Catalog {
    /// One instance for each of `uids` (study UIDs at study level, series
    /// UIDs at series level; other levels have none), keyed by that UID.
    pub async fn representative_instances(
        &self,
        tenant: &str,
        level: Level,
        uids: &[String],
    ) -> CatalogResult<HashMap<String, InstanceRecord>> {
        // The last written, whose attributes the study's and series' rows
        // hold (see `fill_from`).
        let (table, col) = match level {
            Level::Study => ("dicom_studies", "study_uid"),
            Level::Series => ("dicom_series", "series_uid"),
            _ => return Ok(HashMap::new()),
        };
        let order = "j.created_at DESC, j.sop_uid DESC";
        let mut out = HashMap::new();
        for block in uids.chunks(500) {
            let sql = format!(
                "SELECT {INSTANCE_COLS} FROM dicom_instances WHERE tenant = $1 AND sop_uid IN \
                 (SELECT (SELECT j.sop_uid FROM dicom_instances j \
                   WHERE j.tenant = $1 AND j.{col} = g.{col} ORDER BY {order} LIMIT 1) \
                  FROM {table} g WHERE g.tenant = $1 AND g.{col} IN ({}))",
                crate::placeholders(2, block.len())
            );
            let mut q = sqlx::query(crate::dynamic(sql)).bind(tenant);
            for uid in block {
                q = q.bind(uid);
            }
            let rows = q
                .fetch_all(&self.pool)
                .await
                .map_err(db("find representative instances"))?;
            for r in &rows {
                let rec = instance_row(r, 0).map_err(db("read instance row"))?;
                let key = match level {
                    Level::Study => rec.study_uid.clone(),
                    _ => rec.series_uid.clone(),
                };
                out.insert(key, rec);
            }
        }
        Ok(out)
    }
}
