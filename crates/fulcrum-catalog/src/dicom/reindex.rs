//! Re-indexing stored studies: their study, series and instance
//! attributes rewritten from headers read again (after the default
//! character set was set or changed, or to repair rows an older version
//! wrote), and only where they differ. A study stored to meanwhile is not
//! overwritten: the caller reads it again.

use std::collections::BTreeSet;

use crate::db::Catalog;
use crate::error::{db, CatalogResult};

use super::{lock_study, SeriesRecord, StudyRecord};

/// The attributes of an instance row its header gives besides its UIDs
/// (which a re-index keeps: its place in the object does not change).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceAttrs {
    pub sop_uid: String,
    pub instance_number: Option<i64>,
    pub num_frames: Option<i64>,
    pub num_rows: Option<i64>,
    pub num_columns: Option<i64>,
    pub bits_allocated: Option<i64>,
    pub timezone_offset: Option<String>,
}

/// A study's attributes as its instances' headers give them now.
#[derive(Debug, Clone, Default)]
pub struct Reindexed {
    /// The instances read, as (SOP Instance UID, ETag): the study is
    /// rewritten only if it still holds exactly these.
    pub read: BTreeSet<(String, String)>,
    pub study: StudyRecord,
    pub series: Vec<SeriesRecord>,
    pub instances: Vec<InstanceAttrs>,
}

/// What re-indexing a study changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReindexOutcome {
    /// Instances were stored to or removed from the study since it was
    /// read: nothing was written.
    pub raced: bool,
    pub study: bool,
    pub series: u64,
    pub instances: u64,
}

/// `a IS NOT DISTINCT FROM b` for each column against consecutive
/// placeholders from `$first`, joined by AND.
fn all_same(cols: &[&str], first: usize) -> String {
    cols.iter()
        .enumerate()
        .map(|(i, c)| format!("{c} IS NOT DISTINCT FROM ${}", first + i))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// `UPDATE table SET cols = $1.. WHERE <key> AND NOT (cols unchanged)`:
/// the values are bound twice (once to set, once to compare), then the
/// key's values.
fn update_sql(table: &str, cols: &[&str], key: &[&str]) -> String {
    let set: Vec<String> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{c} = ${}", i + 1))
        .collect();
    let n = cols.len();
    let key: Vec<String> = key
        .iter()
        .enumerate()
        .map(|(i, k)| format!("{k} = ${}", 2 * n + 1 + i))
        .collect();
    format!(
        "UPDATE {table} SET {} WHERE {} AND NOT ({})",
        set.join(", "),
        key.join(" AND "),
        all_same(cols, n + 1)
    )
}

/// Binds `values` twice, then `key`, to an update made by `update_sql`.
macro_rules! bind_update {
    ($sql:expr, [$($v:expr),+ $(,)?], [$($k:expr),+ $(,)?]) => {{
        let q = sqlx::query(crate::dynamic($sql));
        $(let q = q.bind($v);)+
        $(let q = q.bind($v);)+
        $(let q = q.bind($k);)+
        q
    }};
}

const STUDY_COLS: [&str; super::STUDY_ATTRS.len()] = super::STUDY_ATTRS;
const SERIES_COLS: [&str; 3] = ["modality", "series_number", "series_description"];
const INSTANCE_ATTR_COLS: [&str; 6] = [
    "instance_number",
    "num_frames",
    "num_rows",
    "num_columns",
    "bits_allocated",
    "timezone_offset",
];

/// Which studies [`Catalog::dicom_study_page`] lists.
#[derive(Debug, Clone, Copy)]
pub enum StudyPage<'a> {
    All,
    One(&'a str),
    NoIssuer,
}

impl Catalog {
    /// A page of studies in (tenant, study UID) order after `after`, at
    /// most `limit`: all, `One` study (in every tenant), or those whose
    /// Issuer of Patient ID is not known (rows older than the column).
    pub async fn dicom_study_page(
        &self,
        after: Option<&(String, String)>,
        which: StudyPage<'_>,
        limit: i64,
    ) -> CatalogResult<Vec<(String, String)>> {
        let (t, s) = after.cloned().unwrap_or_default();
        let (only, study) = match which {
            StudyPage::All => ("", None),
            StudyPage::One(uid) => ("AND study_uid = $4", Some(uid)),
            StudyPage::NoIssuer => ("AND issuer_of_patient_id IS NULL", None),
        };
        let sql = format!(
            "SELECT tenant, study_uid FROM dicom_studies \
             WHERE (tenant > $1 OR (tenant = $1 AND study_uid > $2)) {only} \
             ORDER BY tenant, study_uid LIMIT $3"
        );
        let mut q = sqlx::query_as(crate::dynamic(sql))
            .bind(t)
            .bind(s)
            .bind(limit);
        if let Some(study) = study {
            q = q.bind(study.to_string());
        }
        q.fetch_all(&self.pool)
            .await
            .map_err(db("list studies to re-index"))
    }

    /// Writes a study's re-read attributes where they differ from its
    /// rows, in one transaction, if the study still holds the instances
    /// they were read from (`raced` otherwise, and nothing is written).
    pub async fn reindex_study(
        &self,
        tenant: &str,
        r: &Reindexed,
    ) -> CatalogResult<ReindexOutcome> {
        let uid = r.study.study_uid.clone();
        let mut tx = self.begin_write().await.map_err(db("begin"))?;
        // Only the instances' identities are compared: their whole rows
        // (a slide's fragment table) need not be read under the lock.
        lock_study(&mut tx, tenant, &uid).await?;
        let now: BTreeSet<(String, String)> = sqlx::query_as(
            "SELECT sop_uid, etag FROM dicom_instances WHERE tenant = $1 AND study_uid = $2",
        )
        .bind(tenant)
        .bind(&uid)
        .fetch_all(&mut *tx)
        .await
        .map_err(db("read the study's instances"))?
        .into_iter()
        .collect();
        let mut out = ReindexOutcome::default();
        if now != r.read {
            out.raced = true;
            return Ok(out);
        }
        let values = r.study.column_values();
        let mut q = sqlx::query(crate::dynamic(update_sql(
            "dicom_studies",
            &STUDY_COLS,
            &["tenant", "study_uid"],
        )));
        for v in values.iter().chain(values.iter()) {
            q = q.bind(v.clone());
        }
        out.study = q
            .bind(tenant)
            .bind(&uid)
            .execute(&mut *tx)
            .await
            .map_err(db("re-index study"))?
            .rows_affected()
            > 0;
        for se in &r.series {
            out.series += bind_update!(
                update_sql(
                    "dicom_series",
                    &SERIES_COLS,
                    &["tenant", "series_uid", "study_uid"]
                ),
                [
                    se.modality.clone(),
                    se.series_number,
                    se.series_description.clone()
                ],
                [tenant, se.series_uid.as_str(), uid.as_str()]
            )
            .execute(&mut *tx)
            .await
            .map_err(db("re-index series"))?
            .rows_affected();
        }
        for i in &r.instances {
            out.instances += bind_update!(
                update_sql(
                    "dicom_instances",
                    &INSTANCE_ATTR_COLS,
                    &["tenant", "sop_uid"]
                ),
                [
                    i.instance_number,
                    i.num_frames,
                    i.num_rows,
                    i.num_columns,
                    i.bits_allocated,
                    i.timezone_offset.clone(),
                ],
                [tenant, i.sop_uid.as_str()]
            )
            .execute(&mut *tx)
            .await
            .map_err(db("re-index instance"))?
            .rows_affected();
        }
        if out.series > 0 {
            // ModalitiesInStudy is kept on the study row (a series'
            // modality may be what changed).
            super::counts::refresh(&mut tx, tenant, std::slice::from_ref(&uid)).await?;
        }
        tx.commit().await.map_err(db("commit re-index"))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_compares_the_values_it_sets() {
        assert_eq!(
            update_sql("t", &["a", "b"], &["k"]),
            "UPDATE t SET a = $1, b = $2 WHERE k = $5 AND NOT \
             (a IS NOT DISTINCT FROM $3 AND b IS NOT DISTINCT FROM $4)"
        );
    }
}
