//! Re-indexing a stored study from its instances' headers read again
//! (`fulcrum dicom reindex`): after the default character set was set or
//! changed, or to repair rows an older version wrote. The study's and
//! each series' attributes are folded as ingest folds them, in the order
//! the instances were stored (the latest instance's values, where it has
//! them), and written where they differ from the rows.

use std::collections::BTreeMap;

use fulcrum_catalog::dicom::{
    InstanceAttrs, InstanceRecord, ReindexOutcome, Reindexed, Scope, StudyPage,
};
use tracing::{info, warn};

use crate::archive::Archive;
use crate::error::{DicomError, DicomResult};
use crate::index::extract;

/// Headers read and parsed at a time (a study of 100,000 instances is not
/// held in memory at once).
const HEADERS_PER_READ: usize = 256;

/// Instances whose headers a refresh reads (the latest; and the last of
/// each series).
const LATEST_READ: usize = 8;

/// Times a study is read again when instances were stored to it (or
/// removed) while it was being read.
const ATTEMPTS: usize = 3;

impl Archive {
    /// Re-reads the headers of a study's instances and writes the index
    /// attributes they give where the rows differ. `raced` when the study
    /// kept changing under it ATTEMPTS times (nothing written then).
    pub async fn reindex_study(
        &self,
        tenant: &str,
        study_uid: &str,
    ) -> DicomResult<ReindexOutcome> {
        self.reindex(tenant, study_uid, true).await
    }

    /// The study and series attributes of a study after instances left it
    /// (see `refresh_left`): folded from its latest instances only (the
    /// last LATEST_READ of the study and the last of each series), whose
    /// headers hold them: a study re-sent instance by instance under new
    /// UIDs read its whole remaining study once per instance (500 CT
    /// slices by C-STORE: 1.9 -> 21.8 s).
    pub(crate) async fn refresh_study(
        &self,
        tenant: &str,
        study_uid: &str,
    ) -> DicomResult<ReindexOutcome> {
        self.reindex(tenant, study_uid, false).await
    }

    /// Fills the index columns added after studies were stored from their
    /// latest headers, once per catalog (a meta flag; again after a
    /// restore from an older dump): the Issuer of Patient ID of rows
    /// written before it was kept (a patient is its ID within its
    /// issuer). Meant to run in the background at start; safe while
    /// serving (each study is written in its own transaction, only if it
    /// did not change meanwhile). Returns the studies read.
    pub async fn upgrade_index(&self) -> DicomResult<u64> {
        const DONE: &str = "patient_issuer_v1";
        let catalog = self.engine().catalog();
        if catalog.get_meta(DONE).await?.is_some() {
            return Ok(0);
        }
        let (mut after, mut read, mut filled) = (None, 0u64, 0u64);
        loop {
            let page = catalog
                .dicom_study_page(after.as_ref(), StudyPage::NoIssuer, 1000)
                .await?;
            let Some(last) = page.last().cloned() else {
                break;
            };
            for (tenant, uid) in page {
                read += 1;
                match self.refresh_study(&tenant, &uid).await {
                    Ok(o) if o.study => filled += 1,
                    Ok(_) => {}
                    // One unreadable study does not hold up the others;
                    // `fulcrum dicom reindex` names it.
                    Err(e) => warn!(study = %uid, "index upgrade: {e}"),
                }
            }
            after = Some(last);
        }
        catalog.set_meta(DONE, "1").await?;
        if read > 0 {
            info!("index upgrade: read {read} studies' latest headers, {filled} rows filled");
        }
        Ok(read)
    }

    /// Reads a study's headers (`all`, or its latest ones) and writes what
    /// they give where the rows differ.
    async fn reindex(
        &self,
        tenant: &str,
        study_uid: &str,
        all: bool,
    ) -> DicomResult<ReindexOutcome> {
        let mut out = ReindexOutcome::default();
        for _ in 0..ATTEMPTS {
            let recs = self
                .instances(tenant, &Scope::Study(study_uid.to_string()))
                .await?;
            if recs.is_empty() {
                return Ok(ReindexOutcome::default());
            }
            let r = self.reread(tenant, study_uid, recs, all).await?;
            out = self.engine().catalog().reindex_study(tenant, &r).await?;
            if !out.raced {
                break;
            }
        }
        Ok(out)
    }

    /// The study's attributes from its instances' headers: all of them
    /// (`all`, and each instance's own attributes too), or its latest.
    async fn reread(
        &self,
        tenant: &str,
        study_uid: &str,
        mut recs: Vec<InstanceRecord>,
        all: bool,
    ) -> DicomResult<Reindexed> {
        recs.sort_by(|a, b| (a.created_at, &a.sop_uid).cmp(&(b.created_at, &b.sop_uid)));
        let mut r = Reindexed {
            read: recs
                .iter()
                .map(|i| (i.sop_uid.clone(), i.etag.clone()))
                .collect(),
            ..Reindexed::default()
        };
        if !all {
            // The last LATEST_READ, and the last of each series.
            let mut last_of_series = BTreeMap::new();
            for (i, rec) in recs.iter().enumerate() {
                last_of_series.insert(rec.series_uid.clone(), i);
            }
            let tail = recs.len().saturating_sub(LATEST_READ);
            let keep: std::collections::BTreeSet<usize> = (tail..recs.len())
                .chain(last_of_series.into_values())
                .collect();
            recs = keep.into_iter().map(|i| recs[i].clone()).collect();
        }
        r.study.study_uid = study_uid.to_string();
        let mut series = BTreeMap::new();
        for block in recs.chunks(HEADERS_PER_READ) {
            let refs: Vec<&InstanceRecord> = block.iter().collect();
            let parsed = self
                .headers(tenant, &refs)
                .await?
                .into_iter()
                .zip(block)
                .map(|(h, rec)| {
                    h.and_then(|o| extract(&o)).map_err(|e| {
                        DicomError::Malformed(format!("instance {}: {e}", rec.sop_uid))
                    })
                })
                .collect::<DicomResult<Vec<_>>>()?;
            for (rec, x) in block.iter().zip(parsed) {
                r.study.fill_from(&x.study);
                // The row's UIDs are kept (the header gave them at ingest).
                let se = series.entry(rec.series_uid.clone()).or_insert_with(|| {
                    fulcrum_catalog::dicom::SeriesRecord {
                        series_uid: rec.series_uid.clone(),
                        study_uid: study_uid.to_string(),
                        ..Default::default()
                    }
                });
                se.fill_from(&x.series);
                se.study_uid = study_uid.to_string();
                // The row's SOP Instance UID is kept, as its others.
                if all {
                    r.instances.push(InstanceAttrs {
                        sop_uid: rec.sop_uid.clone(),
                        ..x.attrs
                    });
                }
            }
        }
        r.study.study_uid = study_uid.to_string();
        r.series = series.into_values().collect();
        Ok(r)
    }
}
