//! The imaging archive's index: study, series and instance rows written in
//! the same transaction as the instance's object, the duplicate policy
//! applied there, and removal of studies, series and instances.

mod query;

use sqlx::{Any, Row, Transaction};

use crate::commit::ObjectWrite;
use crate::db::Catalog;
use crate::error::{db, CatalogError, CatalogResult};

pub use query::{Column, DicomMatch, DicomQuery, Level, Matcher, MAX_RESULTS};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StudyRecord {
    pub study_uid: String,
    pub patient_id: Option<String>,
    pub patient_name: Option<String>,
    pub patient_birth_date: Option<String>,
    pub patient_sex: Option<String>,
    pub study_date: Option<String>,
    pub study_time: Option<String>,
    pub accession_number: Option<String>,
    pub referring_physician: Option<String>,
    pub study_description: Option<String>,
    pub study_id: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeriesRecord {
    pub series_uid: String,
    pub study_uid: String,
    pub modality: Option<String>,
    pub series_number: Option<i64>,
    pub series_description: Option<String>,
}

/// An instance and where its parts sit in its stored Part 10 object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceRecord {
    pub sop_uid: String,
    pub series_uid: String,
    pub study_uid: String,
    pub sop_class_uid: String,
    pub instance_number: Option<i64>,
    pub transfer_syntax: String,
    pub object_key: String,
    pub size: i64,
    pub etag: String,
    /// Offset of the dataset (end of the file meta group).
    pub dataset_offset: i64,
    /// Length of the stored header: everything before Pixel Data.
    pub header_len: i64,
    /// Offset and length of the Pixel Data value (length `None` when encapsulated).
    pub pixel_offset: Option<i64>,
    pub pixel_len: Option<i64>,
    pub pixel_vr: Option<String>,
    /// Encapsulated Pixel Data: JSON `[[offset, len], …]`, Basic Offset Table first.
    pub fragments: Option<String>,
    pub num_frames: Option<i64>,
    pub num_rows: Option<i64>,
    pub num_columns: Option<i64>,
    pub created_at: i64,
}

/// What to do when an instance arrives whose SOP Instance UID is stored
/// with different bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DuplicatePolicy {
    /// Keep the newest; the previous object stays under `versions/`.
    #[default]
    Replace,
    /// Refuse the new one.
    Reject,
}

/// One stored instance: its object and index rows.
#[derive(Debug, Clone)]
pub struct DicomWrite {
    pub tenant: String,
    pub object: ObjectWrite,
    pub study: StudyRecord,
    pub series: SeriesRecord,
    pub instance: InstanceRecord,
    pub policy: DuplicatePolicy,
}

/// Key of an instance's previous version kept by [`DuplicatePolicy::Replace`].
pub fn version_key(sop_uid: &str, etag: &str, at_ms: i64) -> String {
    format!("versions/{sop_uid}/{at_ms}-{etag}")
}

const INSTANCE_COLS: &str = "sop_uid, series_uid, study_uid, sop_class_uid, instance_number, \
    transfer_syntax, object_key, size, etag, dataset_offset, header_len, pixel_offset, \
    pixel_len, pixel_vr, fragments, num_frames, num_rows, num_columns, created_at";

pub(crate) fn instance_row(r: &sqlx::any::AnyRow, f: usize) -> Result<InstanceRecord, sqlx::Error> {
    Ok(InstanceRecord {
        sop_uid: r.try_get(f)?,
        series_uid: r.try_get(f + 1)?,
        study_uid: r.try_get(f + 2)?,
        sop_class_uid: r.try_get(f + 3)?,
        instance_number: r.try_get(f + 4)?,
        transfer_syntax: r.try_get(f + 5)?,
        object_key: r.try_get(f + 6)?,
        size: r.try_get(f + 7)?,
        etag: r.try_get(f + 8)?,
        dataset_offset: r.try_get(f + 9)?,
        header_len: r.try_get(f + 10)?,
        pixel_offset: r.try_get(f + 11)?,
        pixel_len: r.try_get(f + 12)?,
        pixel_vr: r.try_get(f + 13)?,
        fragments: r.try_get(f + 14)?,
        num_frames: r.try_get(f + 15)?,
        num_rows: r.try_get(f + 16)?,
        num_columns: r.try_get(f + 17)?,
        created_at: r.try_get(f + 18)?,
    })
}

/// Upper-cased, `^` as space: the form person names are matched in.
pub fn name_key(name: &str) -> String {
    let s: String = name
        .to_uppercase()
        .chars()
        .map(|c| if c == '^' { ' ' } else { c })
        .collect();
    s.split(' ')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Before the object rows of a batch are written: applies the duplicate
/// policy (an earlier version is renamed under `versions/`, or the write
/// is refused).
pub(crate) async fn prepare_dicom_write(
    tx: &mut Transaction<'static, Any>,
    w: &DicomWrite,
    now: i64,
) -> CatalogResult<()> {
    let existing: Option<(String, String)> = sqlx::query_as(
        "SELECT etag, object_key FROM dicom_instances WHERE tenant = $1 AND sop_uid = $2",
    )
    .bind(&w.tenant)
    .bind(&w.instance.sop_uid)
    .fetch_optional(&mut **tx)
    .await
    .map_err(db("find instance"))?;
    let Some((etag, key)) = existing else {
        return Ok(());
    };
    if etag == w.instance.etag {
        return Ok(());
    }
    match w.policy {
        DuplicatePolicy::Reject => Err(CatalogError::DuplicateInstance(w.instance.sop_uid.clone())),
        DuplicatePolicy::Replace => {
            sqlx::query("UPDATE objects SET key = $1 WHERE bucket_id = $2 AND key = $3")
                .bind(version_key(&w.instance.sop_uid, &etag, now))
                .bind(w.object.bucket_id)
                .bind(&key)
                .execute(&mut **tx)
                .await
                .map_err(db("keep previous version"))?;
            Ok(())
        }
    }
}

/// After the object rows: the index rows (upserts, newest values win).
pub(crate) async fn write_index(
    tx: &mut Transaction<'static, Any>,
    w: &DicomWrite,
    now: i64,
) -> CatalogResult<()> {
    let s = &w.study;
    sqlx::query(
        "INSERT INTO dicom_studies (tenant, study_uid, patient_id, patient_name, patient_name_key, \
         patient_birth_date, patient_sex, study_date, study_time, accession_number, \
         referring_physician, referring_physician_key, study_description, study_id, updated_at) \
         VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15) \
         ON CONFLICT (tenant, study_uid) DO UPDATE SET patient_id = excluded.patient_id, \
         patient_name = excluded.patient_name, patient_name_key = excluded.patient_name_key, \
         patient_birth_date = excluded.patient_birth_date, patient_sex = excluded.patient_sex, \
         study_date = excluded.study_date, study_time = excluded.study_time, \
         accession_number = excluded.accession_number, \
         referring_physician = excluded.referring_physician, \
         referring_physician_key = excluded.referring_physician_key, \
         study_description = excluded.study_description, study_id = excluded.study_id, \
         updated_at = excluded.updated_at",
    )
    .bind(&w.tenant)
    .bind(&s.study_uid)
    .bind(&s.patient_id)
    .bind(&s.patient_name)
    .bind(s.patient_name.as_deref().map(name_key))
    .bind(&s.patient_birth_date)
    .bind(&s.patient_sex)
    .bind(&s.study_date)
    .bind(&s.study_time)
    .bind(&s.accession_number)
    .bind(&s.referring_physician)
    .bind(s.referring_physician.as_deref().map(name_key))
    .bind(&s.study_description)
    .bind(&s.study_id)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(db("index study"))?;
    let r = &w.series;
    sqlx::query(
        "INSERT INTO dicom_series (tenant, series_uid, study_uid, modality, series_number, \
         series_description, updated_at) VALUES ($1,$2,$3,$4,$5,$6,$7) \
         ON CONFLICT (tenant, series_uid) DO UPDATE SET study_uid = excluded.study_uid, \
         modality = excluded.modality, series_number = excluded.series_number, \
         series_description = excluded.series_description, updated_at = excluded.updated_at",
    )
    .bind(&w.tenant)
    .bind(&r.series_uid)
    .bind(&r.study_uid)
    .bind(&r.modality)
    .bind(r.series_number)
    .bind(&r.series_description)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(db("index series"))?;
    let i = &w.instance;
    sqlx::query(crate::dynamic(format!(
        "INSERT INTO dicom_instances (tenant, {INSTANCE_COLS}) VALUES \
         ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20) \
         ON CONFLICT (tenant, sop_uid) DO UPDATE SET series_uid = excluded.series_uid, \
         study_uid = excluded.study_uid, sop_class_uid = excluded.sop_class_uid, \
         instance_number = excluded.instance_number, transfer_syntax = excluded.transfer_syntax, \
         object_key = excluded.object_key, size = excluded.size, etag = excluded.etag, \
         dataset_offset = excluded.dataset_offset, header_len = excluded.header_len, \
         pixel_offset = excluded.pixel_offset, pixel_len = excluded.pixel_len, \
         pixel_vr = excluded.pixel_vr, fragments = excluded.fragments, \
         num_frames = excluded.num_frames, num_rows = excluded.num_rows, \
         num_columns = excluded.num_columns, created_at = excluded.created_at"
    )))
    .bind(&w.tenant)
    .bind(&i.sop_uid)
    .bind(&i.series_uid)
    .bind(&i.study_uid)
    .bind(&i.sop_class_uid)
    .bind(i.instance_number)
    .bind(&i.transfer_syntax)
    .bind(&i.object_key)
    .bind(i.size)
    .bind(&i.etag)
    .bind(i.dataset_offset)
    .bind(i.header_len)
    .bind(i.pixel_offset)
    .bind(i.pixel_len)
    .bind(&i.pixel_vr)
    .bind(&i.fragments)
    .bind(i.num_frames)
    .bind(i.num_rows)
    .bind(i.num_columns)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(db("index instance"))?;
    Ok(())
}

/// Which instances a retrieve or delete is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Study(String),
    Series(String, String),
    Instance(String, String, String),
}

impl Scope {
    fn condition(&self) -> (&'static str, Vec<&str>) {
        match self {
            Scope::Study(st) => ("study_uid = $2", vec![st]),
            Scope::Series(st, se) => ("study_uid = $2 AND series_uid = $3", vec![st, se]),
            Scope::Instance(st, se, sop) => (
                "study_uid = $2 AND series_uid = $3 AND sop_uid = $4",
                vec![st, se, sop],
            ),
        }
    }
}

impl Catalog {
    /// The instances in a study, series or instance scope, in series then
    /// instance-number order.
    pub async fn dicom_instances(
        &self,
        tenant: &str,
        scope: &Scope,
    ) -> CatalogResult<Vec<InstanceRecord>> {
        let (cond, args) = scope.condition();
        let sql = format!(
            "SELECT {INSTANCE_COLS} FROM dicom_instances WHERE tenant = $1 AND {cond} \
             ORDER BY series_uid, instance_number, sop_uid"
        );
        let mut q = sqlx::query(crate::dynamic(sql)).bind(tenant);
        for a in args {
            q = q.bind(a);
        }
        let rows = q
            .fetch_all(&self.pool)
            .await
            .map_err(db("list instances"))?;
        rows.iter()
            .map(|r| instance_row(r, 0).map_err(db("read instance row")))
            .collect()
    }

    /// Looks one instance up by SOP Instance UID alone.
    pub async fn dicom_instance(
        &self,
        tenant: &str,
        sop_uid: &str,
    ) -> CatalogResult<Option<InstanceRecord>> {
        let row = sqlx::query(crate::dynamic(format!(
            "SELECT {INSTANCE_COLS} FROM dicom_instances WHERE tenant = $1 AND sop_uid = $2"
        )))
        .bind(tenant)
        .bind(sop_uid)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("find instance"))?;
        row.map(|r| instance_row(&r, 0).map_err(db("read instance row")))
            .transpose()
    }

    /// Removes a scope's instances, their objects (and earlier versions)
    /// and the series and studies left empty, in one transaction. Returns
    /// the instances removed.
    pub async fn delete_dicom(
        &self,
        tenant: &str,
        bucket_id: i64,
        scope: &Scope,
    ) -> CatalogResult<Vec<InstanceRecord>> {
        let mut tx = self.begin_write().await.map_err(db("begin delete"))?;
        let (cond, args) = scope.condition();
        let sql =
            format!("SELECT {INSTANCE_COLS} FROM dicom_instances WHERE tenant = $1 AND {cond}");
        let mut q = sqlx::query(crate::dynamic(sql)).bind(tenant);
        for a in &args {
            q = q.bind(*a);
        }
        let rows = q
            .fetch_all(&mut *tx)
            .await
            .map_err(db("delete instances"))?;
        let gone: Vec<InstanceRecord> = rows
            .iter()
            .map(|r| instance_row(r, 0).map_err(db("read instance row")))
            .collect::<CatalogResult<_>>()?;
        for i in &gone {
            let versions = format!("versions/{}/%", i.sop_uid);
            for sql in [
                "DELETE FROM object_chunks WHERE object_id IN \
                 (SELECT id FROM objects WHERE bucket_id = $1 AND (key = $2 OR key LIKE $3))",
                "DELETE FROM objects WHERE bucket_id = $1 AND (key = $2 OR key LIKE $3)",
            ] {
                sqlx::query(sql)
                    .bind(bucket_id)
                    .bind(&i.object_key)
                    .bind(&versions)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("delete instance object"))?;
            }
        }
        let sql = format!("DELETE FROM dicom_instances WHERE tenant = $1 AND {cond}");
        let mut q = sqlx::query(crate::dynamic(sql)).bind(tenant);
        for a in &args {
            q = q.bind(*a);
        }
        q.execute(&mut *tx).await.map_err(db("delete instances"))?;
        let study = gone.first().map(|i| i.study_uid.clone());
        if let Some(study) = study {
            sqlx::query(
                "DELETE FROM dicom_series WHERE tenant = $1 AND study_uid = $2 AND NOT EXISTS \
                 (SELECT 1 FROM dicom_instances i WHERE i.tenant = dicom_series.tenant \
                 AND i.series_uid = dicom_series.series_uid)",
            )
            .bind(tenant)
            .bind(&study)
            .execute(&mut *tx)
            .await
            .map_err(db("delete empty series"))?;
            sqlx::query(
                "DELETE FROM dicom_studies WHERE tenant = $1 AND study_uid = $2 AND NOT EXISTS \
                 (SELECT 1 FROM dicom_series r WHERE r.tenant = dicom_studies.tenant \
                 AND r.study_uid = dicom_studies.study_uid)",
            )
            .bind(tenant)
            .bind(&study)
            .execute(&mut *tx)
            .await
            .map_err(db("delete empty study"))?;
        }
        tx.commit().await.map_err(db("commit delete"))?;
        Ok(gone)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn name_keys_ignore_case_and_carets() {
        assert_eq!(super::name_key("Doe^John^^^"), "DOE JOHN");
        assert_eq!(super::name_key("doe^john"), "DOE JOHN");
    }
}
