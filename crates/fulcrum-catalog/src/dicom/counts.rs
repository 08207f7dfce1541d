//! The computed attributes of studies and series (NumberOfStudyRelated-
//! Series/Instances, NumberOfSeriesRelatedInstances, ModalitiesInStudy,
//! SOPClassesInStudy), kept on their rows by migration 0006 and refreshed
//! here, in the transaction that adds, moves or removes instances, so
//! QIDO-RS and C-FIND read them instead of counting per query.
//!
//! Under concurrent writers (PostgreSQL, several nodes) the refresh runs
//! after the transaction locked the study row (ingest's study upsert,
//! delete's first statement), so its statement snapshot holds every
//! earlier writer of the study. (A re-sent instance moving out of another
//! study refreshes that study without locking it first.)

use sqlx::any::AnyArguments;
use sqlx::{Any, Arguments, Transaction};

use crate::commit::bind_err;
use crate::db::DbKind;
use crate::error::{db, CatalogResult};

/// Studies per refresh statement.
const STUDIES_PER_STATEMENT: usize = 200;

/// Recomputes the counts and sets of the studies `study_uids` of `tenant`
/// and of all their series.
pub(crate) async fn refresh(
    tx: &mut Transaction<'static, Any>,
    tenant: &str,
    study_uids: &[String],
) -> CatalogResult<()> {
    let kind = DbKind::of(tx);
    let classes = kind.comma_list("i.sop_class_uid", true);
    let modalities = kind.comma_list("r.modality", true);
    for block in study_uids.chunks(STUDIES_PER_STATEMENT) {
        let list = crate::placeholders(2, block.len());
        let args = || -> CatalogResult<AnyArguments> {
            let mut a = AnyArguments::default();
            a.add(tenant.to_string()).map_err(bind_err)?;
            for s in block {
                a.add(s.clone()).map_err(bind_err)?;
            }
            Ok(a)
        };
        let series = format!(
            "UPDATE dicom_series SET \
             num_instances = (SELECT COUNT(*) FROM dicom_instances i \
                WHERE i.tenant = dicom_series.tenant AND i.series_uid = dicom_series.series_uid), \
             sop_classes = (SELECT {classes} FROM dicom_instances i \
                WHERE i.tenant = dicom_series.tenant AND i.series_uid = dicom_series.series_uid) \
             WHERE tenant = $1 AND study_uid IN ({list})"
        );
        let studies = format!(
            "UPDATE dicom_studies SET \
             num_series = (SELECT COUNT(*) FROM dicom_series r \
                WHERE r.tenant = dicom_studies.tenant AND r.study_uid = dicom_studies.study_uid), \
             modalities = (SELECT {modalities} FROM dicom_series r \
                WHERE r.tenant = dicom_studies.tenant AND r.study_uid = dicom_studies.study_uid), \
             num_instances = (SELECT COUNT(*) FROM dicom_instances i \
                WHERE i.tenant = dicom_studies.tenant AND i.study_uid = dicom_studies.study_uid), \
             sop_classes = (SELECT {classes} FROM dicom_instances i \
                WHERE i.tenant = dicom_studies.tenant AND i.study_uid = dicom_studies.study_uid) \
             WHERE tenant = $1 AND study_uid IN ({list})"
        );
        for sql in [series, studies] {
            sqlx::query_with(crate::dynamic(sql), args()?)
                .execute(&mut **tx)
                .await
                .map_err(db("refresh study counts"))?;
        }
    }
    Ok(())
}

/// Recomputes the counts of every study (after a catalog import).
pub(crate) async fn refresh_all(tx: &mut Transaction<'static, Any>) -> CatalogResult<()> {
    let studies: Vec<(String, String)> =
        sqlx::query_as("SELECT tenant, study_uid FROM dicom_studies ORDER BY tenant, study_uid")
            .fetch_all(&mut **tx)
            .await
            .map_err(db("list studies"))?;
    for same in studies.chunk_by(|a, b| a.0 == b.0) {
        let uids: Vec<String> = same.iter().map(|(_, s)| s.clone()).collect();
        refresh(tx, &same[0].0, &uids).await?;
    }
    Ok(())
}

/// A comma-separated set as stored, sorted.
pub(crate) fn split_set(s: Option<&str>) -> Vec<String> {
    let mut v: Vec<String> = s
        .unwrap_or("")
        .split(',')
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect();
    v.sort();
    v.dedup();
    v
}
