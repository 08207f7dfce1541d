//! The imaging archive's index: study, series and instance rows written in
//! the same transaction as the instance's object, the duplicate policy
//! applied there, and removal of studies, series and instances.

mod counts;
mod query;
mod reindex;
mod represent;

pub(crate) use counts::refresh_all as refresh_all_counts;

use sqlx::{Any, Row, Transaction};
use unicode_normalization::UnicodeNormalization;

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use sqlx::Arguments;

use crate::commit::{insert_rows, ObjectWrite};
use crate::db::{Catalog, DbKind};
use crate::error::{db, CatalogError, CatalogResult};

pub use query::{Column, DicomMatch, DicomQuery, Level, Matcher, StudyTotals, MAX_RESULTS};
pub use reindex::{InstanceAttrs, ReindexOutcome, Reindexed, StudyPage};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StudyRecord {
    pub study_uid: String,
    pub patient_id: Option<String>,
    /// Issuer of Patient ID (0010,0021): a patient is its Patient ID
    /// within its issuer.
    pub issuer_of_patient_id: Option<String>,
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

/// Sets `$field` of `$into` from `$from` where `$from` has a value.
macro_rules! fill_fields {
    ($into:ident, $from:ident, $($field:ident),+) => {
        $(if $from.$field.is_some() {
            $into.$field.clone_from(&$from.$field);
        })+
    };
}

impl StudyRecord {
    /// Takes `newer`'s attributes where it has them. A study's (and its
    /// patient's) attributes are those of its latest instance, but one
    /// that lacks a value (an empty Patient ID) does not erase it: the
    /// upsert keeps the stored value the same way.
    pub fn fill_from(&mut self, newer: &StudyRecord) {
        fill_fields!(
            self,
            newer,
            patient_id,
            issuer_of_patient_id,
            patient_name,
            patient_birth_date,
            patient_sex,
            study_date,
            study_time,
            accession_number,
            referring_physician,
            study_description,
            study_id
        );
    }

    /// The values of the study row's `STUDY_ATTRS` columns, in their
    /// order: the attributes and the keys names are matched through.
    fn column_values(&self) -> [Option<String>; STUDY_ATTRS.len()] {
        let (ideo, phon) = self.patient_name.as_deref().map(group_keys).unzip();
        [
            self.patient_id.clone(),
            self.issuer_of_patient_id.clone(),
            self.patient_name.clone(),
            self.patient_name.as_deref().map(name_key),
            ideo,
            phon,
            self.patient_birth_date.clone(),
            self.patient_sex.clone(),
            self.study_date.clone(),
            self.study_time.clone(),
            self.accession_number.clone(),
            self.referring_physician.clone(),
            self.referring_physician.as_deref().map(name_key),
            self.study_description.clone(),
            self.study_id.clone(),
        ]
    }
}

impl SeriesRecord {
    /// Like [`StudyRecord::fill_from`].
    pub fn fill_from(&mut self, newer: &SeriesRecord) {
        self.study_uid.clone_from(&newer.study_uid);
        fill_fields!(self, newer, modality, series_number, series_description);
    }
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
    /// Digest of the dataset's chunks (the bytes after the file meta, see
    /// `Staged::digest_from`): the same dataset under another file meta
    /// is the same instance. `None` in rows written before it was kept.
    pub dataset_digest: Option<String>,
    /// Offset of the dataset (end of the file meta group).
    pub dataset_offset: i64,
    /// Length of the stored header: everything before Pixel Data.
    pub header_len: i64,
    /// Offset and length of the Pixel Data value (length `None` when encapsulated).
    pub pixel_offset: Option<i64>,
    pub pixel_len: Option<i64>,
    pub pixel_vr: Option<String>,
    /// Element number of the pixel tag (7FE0,eeee); `None` in rows written
    /// before it was recorded.
    pub pixel_element: Option<i64>,
    /// Encapsulated Pixel Data: JSON `[[offset, len], …]`, Basic Offset Table first.
    pub fragments: Option<String>,
    /// Per item of `fragments`, '1' if it opens a frame's codestream, else
    /// '0'; `None` in rows written before it was kept.
    pub frame_starts: Option<String>,
    pub num_frames: Option<i64>,
    pub num_rows: Option<i64>,
    pub num_columns: Option<i64>,
    pub created_at: i64,
    /// Bits Allocated and Timezone Offset From UTC, as QIDO-RS returns
    /// them; `None` in rows written before they were kept.
    pub bits_allocated: Option<i64>,
    pub timezone_offset: Option<String>,
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

/// Whether an instance stored with this dataset digest and transfer
/// syntax holds the same dataset as `new`: the same instance under another
/// file meta (received over DIMSE, then imported from its file; sent by two
/// senders). Rows stored before the digest was kept (`None`) never do:
/// they compare by their whole bytes only.
pub fn same_dataset((digest, transfer_syntax): (Option<&str>, &str), new: &InstanceRecord) -> bool {
    digest.is_some()
        && digest == new.dataset_digest.as_deref()
        && transfer_syntax == new.transfer_syntax
}

/// Key of an instance's previous version kept by [`DuplicatePolicy::Replace`].
pub fn version_key(sop_uid: &str, etag: &str, at_ms: i64) -> String {
    format!("versions/{sop_uid}/{at_ms}-{etag}")
}

const INSTANCE_COLS: &str = "sop_uid, series_uid, study_uid, sop_class_uid, instance_number, \
    transfer_syntax, object_key, size, etag, dataset_offset, header_len, pixel_offset, \
    pixel_len, pixel_vr, fragments, num_frames, num_rows, num_columns, pixel_element, created_at, \
    dataset_digest, frame_starts, bits_allocated, timezone_offset";

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
        pixel_element: r.try_get(f + 18)?,
        created_at: r.try_get(f + 19)?,
        dataset_digest: r.try_get(f + 20)?,
        frame_starts: r.try_get(f + 21)?,
        bits_allocated: r.try_get(f + 22)?,
        timezone_offset: r.try_get(f + 23)?,
    })
}

/// The keys of a person name's ideographic and phonetic component groups
/// (`Wang^XiaoDong=王^小东` -> `王 小东`, ''), '' for a group it lacks.
pub fn group_keys(name: &str) -> (String, String) {
    let mut groups = name.split('=').skip(1).map(group_key);
    (
        groups.next().unwrap_or_default(),
        groups.next().unwrap_or_default(),
    )
}

/// The form person names are matched in: each component group
/// upper-cased, `^` as space, empty components dropped; groups joined by
/// `=`, empty trailing groups dropped (`Doe^John^^=` and `DOE^JOHN` are
/// the same name). Wildcards pass through, so a pattern is keyed alike.
pub fn name_key(name: &str) -> String {
    let mut groups: Vec<String> = name.split('=').map(group_key).collect();
    while groups.len() > 1 && groups.last().is_some_and(String::is_empty) {
        groups.pop();
    }
    groups.join("=")
}

/// One component group's key (see [`name_key`]), in Unicode
/// compatibility form (NFKC): full-width Latin (`ＷＡＮＧ`) is Latin,
/// half-width katakana (`ﾔﾏﾀﾞ`, ISO 2022 IR 13) is katakana, decomposed
/// hangul is composed, and the ideographic space (U+3000), which Japanese
/// systems write between family and given name, separates words as a
/// space does, and so do the middle dots that separate the parts of
/// transliterated names (`买买提·艾力`, `ジョン・スミス`: U+00B7, U+30FB,
/// and U+FF65, which the folding makes U+30FB). A `=` that only the
/// folding makes (from `＝`) separates words too, never groups; `＊` and
/// `？` stay themselves (no wildcards).
fn group_key(group: &str) -> String {
    // Full-width `＊` and `？` are characters of a name, not wildcards:
    // they pass the folding as private-use stand-ins.
    let hide = |c| match c {
        '\u{FF0A}' => '\u{E000}',
        '\u{FF1F}' => '\u{E001}',
        c => c,
    };
    let show = |c| match c {
        '\u{E000}' => '\u{FF0A}',
        '\u{E001}' => '\u{FF1F}',
        c => c,
    };
    group
        .chars()
        .map(hide)
        .nfkc()
        .map(show)
        .collect::<String>()
        .to_uppercase()
        .split(['^', ' ', '=', '\u{00B7}', '\u{30FB}'])
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Before the object rows of a batch are written: applies the duplicate
/// policy (an earlier version is renamed under `versions/`, or the write
/// is refused). One lookup per tenant and block of SOP Instance UIDs.
/// Returns the (tenant, study) each instance already stored belongs to,
/// whose counts change if the instance moves.
pub(crate) async fn prepare_dicom_writes(
    tx: &mut Transaction<'static, Any>,
    writes: &[&DicomWrite],
    now: i64,
) -> CatalogResult<Vec<(String, String)>> {
    lock_instances(tx, writes).await?;
    let mut existing: HashMap<(String, String), Stored> = HashMap::new();
    let mut previous = Vec::new();
    for s in stored_instances(tx, writes).await? {
        previous.push((s.tenant.clone(), s.study_uid.clone()));
        existing.insert((s.tenant.clone(), s.sop_uid.clone()), s);
    }
    for w in writes {
        let Some(stored) = existing.get(&(w.tenant.clone(), w.instance.sop_uid.clone())) else {
            continue;
        };
        // The same bytes, or the same dataset under another file meta
        // (stored meanwhile by a concurrent writer): nothing to keep.
        let stored_dataset = (
            stored.dataset_digest.as_deref(),
            stored.transfer_syntax.as_str(),
        );
        if stored.etag == w.instance.etag || same_dataset(stored_dataset, &w.instance) {
            continue;
        }
        let (etag, key) = (&stored.etag, &stored.object_key);
        match w.policy {
            DuplicatePolicy::Reject => {
                return Err(CatalogError::DuplicateInstance(w.instance.sop_uid.clone()))
            }
            DuplicatePolicy::Replace => {
                sqlx::query("UPDATE objects SET key = $1 WHERE bucket_id = $2 AND key = $3")
                    .bind(version_key(&w.instance.sop_uid, etag, now))
                    .bind(w.object.bucket_id)
                    .bind(key)
                    .execute(&mut **tx)
                    .await
                    .map_err(db("keep previous version"))?;
            }
        }
    }
    Ok(previous)
}

/// On PostgreSQL, takes a transaction lock per SOP Instance the batch
/// writes (advisory, keyed by a hash of tenant and UID, in key order), so
/// another node's transaction writing one of them commits before this one
/// reads what is stored: reading first, a writer that saw nothing stored
/// then found the other's new object at the key and replaced it outright,
/// neither kept as a version nor refused (re-tester: 4-5 % of one SOP's
/// different versions sent to two nodes at once). SQLite's writers take
/// turns already. A deadlock among them is retried (see `is_race`).
async fn lock_instances(
    tx: &mut Transaction<'static, Any>,
    writes: &[&DicomWrite],
) -> CatalogResult<()> {
    if DbKind::of(tx) != DbKind::Postgres || writes.is_empty() {
        return Ok(());
    }
    let mut keys: Vec<String> = writes
        .iter()
        .map(|w| format!("{}/{}", w.tenant, w.instance.sop_uid))
        .collect();
    keys.sort();
    keys.dedup();
    for block in keys.chunks(IN_BLOCK) {
        let values = (1..=block.len())
            .map(|i| format!("(${i})"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT COUNT(pg_advisory_xact_lock(k)) FROM \
             (SELECT hashtextextended(v, 0) AS k FROM (VALUES {values}) t(v) ORDER BY 1) s"
        );
        let mut q = sqlx::query_scalar::<_, i64>(crate::dynamic(sql));
        for k in block {
            q = q.bind(k.clone());
        }
        q.fetch_one(&mut **tx).await.map_err(db("lock instances"))?;
    }
    Ok(())
}

/// A study's tenant, UID, PatientName and ReferringPhysicianName.
type NameRow = (String, String, Option<String>, Option<String>);

/// A [`NameRow`] with the name keys stored for it.
type KeyedNameRow = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// The row of an instance already stored.
struct Stored {
    tenant: String,
    sop_uid: String,
    etag: String,
    object_key: String,
    study_uid: String,
    dataset_digest: Option<String>,
    transfer_syntax: String,
}

type StoredRow = (String, String, String, String, Option<String>, String);

/// The stored rows of the instances `writes` write, if any: one lookup
/// per tenant and block of SOP Instance UIDs.
async fn stored_instances(
    tx: &mut Transaction<'static, Any>,
    writes: &[&DicomWrite],
) -> CatalogResult<Vec<Stored>> {
    let mut out = Vec::new();
    let mut tenants: Vec<&str> = writes.iter().map(|w| w.tenant.as_str()).collect();
    tenants.sort();
    tenants.dedup();
    for tenant in tenants {
        let sops: Vec<&str> = writes
            .iter()
            .filter(|w| w.tenant == tenant)
            .map(|w| w.instance.sop_uid.as_str())
            .collect();
        for block in sops.chunks(IN_BLOCK) {
            let sql = format!(
                "SELECT sop_uid, etag, object_key, study_uid, dataset_digest, transfer_syntax \
                 FROM dicom_instances WHERE tenant = $1 AND sop_uid IN ({})",
                crate::placeholders(2, block.len())
            );
            let mut q =
                sqlx::query_as::<_, StoredRow>(crate::dynamic(sql)).bind(tenant.to_string());
            for sop in block {
                q = q.bind(sop.to_string());
            }
            for (sop_uid, etag, object_key, study_uid, dataset_digest, transfer_syntax) in
                q.fetch_all(&mut **tx).await.map_err(db("find instances"))?
            {
                out.push(Stored {
                    tenant: tenant.to_string(),
                    sop_uid,
                    etag,
                    object_key,
                    study_uid,
                    dataset_digest,
                    transfer_syntax,
                });
            }
        }
    }
    Ok(out)
}

/// SOP Instance UIDs per lookup statement.
const IN_BLOCK: usize = 200;

/// One row per key, sorted by key, each the merge of that key's rows in
/// order (`fold` folds a later row into it): the study, series and
/// instance rows of a batch (PostgreSQL refuses an upsert that touches
/// one row twice). Sorted, so concurrent writers lock rows in one order.
fn merged_by_key<K: Ord, T>(
    rows: impl Iterator<Item = T>,
    key: impl Fn(&T) -> K,
    fold: impl Fn(&mut T, &T),
) -> Vec<T> {
    let mut out: BTreeMap<K, T> = BTreeMap::new();
    for r in rows {
        match out.entry(key(&r)) {
            Entry::Occupied(mut e) => fold(e.get_mut(), &r),
            Entry::Vacant(e) => {
                e.insert(r);
            }
        }
    }
    out.into_values().collect()
}

/// Study columns an instance may lack a value for, in the order they are
/// bound (see `StudyRecord::fill_from`); the patient's are among them.
const STUDY_ATTRS: [&str; 15] = [
    "patient_id",
    "issuer_of_patient_id",
    "patient_name",
    "patient_name_key",
    "patient_name_ideo_key",
    "patient_name_phon_key",
    "patient_birth_date",
    "patient_sex",
    "study_date",
    "study_time",
    "accession_number",
    "referring_physician",
    "referring_physician_key",
    "study_description",
    "study_id",
];

/// `SET` assignments of an upsert that take each of `cols` from the new
/// row unless it is NULL there, keeping the stored value then.
fn keep_stored_unless_given(table: &str, cols: &[&str]) -> String {
    cols.iter()
        .map(|c| format!("{c} = COALESCE(excluded.{c}, {table}.{c})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// After the object rows: the index rows of a batch (upserts, newest
/// values win), a few multi-row statements per table, then the counts of
/// the studies touched (those written to and `previous`, the studies
/// re-sent instances belonged to): added to for new instances, recounted
/// where instances or series left a study (see `counts`).
pub(crate) async fn write_index(
    tx: &mut Transaction<'static, Any>,
    writes: &[&DicomWrite],
    previous: Vec<(String, String)>,
    now: i64,
) -> CatalogResult<()> {
    if writes.is_empty() {
        return Ok(());
    }
    let studies = merged_by_key(
        writes.iter().map(|w| (w.tenant.clone(), w.study.clone())),
        |(t, r)| (t.clone(), r.study_uid.clone()),
        |into, (_, r)| into.1.fill_from(r),
    );
    insert_rows(
        tx,
        (
            &format!(
                "INSERT INTO dicom_studies (tenant, study_uid, {}, updated_at)",
                STUDY_ATTRS.join(", ")
            ),
            STUDY_ATTRS.len() + 3,
            &format!(
                "ON CONFLICT (tenant, study_uid) DO UPDATE SET {}, updated_at = excluded.updated_at",
                keep_stored_unless_given("dicom_studies", &STUDY_ATTRS)
            ),
        ),
        &studies,
        "index studies",
        |args, (tenant, s)| {
            args.add(tenant.clone())?;
            args.add(s.study_uid.clone())?;
            for v in s.column_values() {
                args.add(v)?;
            }
            args.add(now)
        },
    )
    .await?;
    let series = merged_by_key(
        writes.iter().map(|w| (w.tenant.clone(), w.series.clone())),
        |(t, r)| (t.clone(), r.series_uid.clone()),
        |into, (_, r)| into.1.fill_from(r),
    );
    // Studies whose counts are recomputed: those instances left (re-sent
    // elsewhere or replaced), and both studies of a series that moved.
    let mut full: BTreeSet<(String, String)> = previous.into_iter().collect();
    // A series stored under another study is neither updated nor counted
    // by the first statement: it is found, and moved by the second.
    if upsert_series(tx, &series, false, now).await? < series.len() as u64 {
        let mut moved = Vec::new();
        for (tenant, r) in series {
            let stored: Option<String> = sqlx::query_scalar(
                "SELECT study_uid FROM dicom_series WHERE tenant = $1 AND series_uid = $2",
            )
            .bind(&tenant)
            .bind(&r.series_uid)
            .fetch_optional(&mut **tx)
            .await
            .map_err(db("find moved series"))?;
            if let Some(old) = stored.filter(|old| *old != r.study_uid) {
                full.insert((tenant.clone(), old));
                full.insert((tenant.clone(), r.study_uid.clone()));
                moved.push((tenant, r));
            }
        }
        upsert_series(tx, &moved, true, now).await?;
    }
    // Later writes of an instance win, as one by one.
    let instances = merged_by_key(
        writes.iter().copied(),
        |w| (w.tenant.clone(), w.instance.sop_uid.clone()),
        |into, w| *into = *w,
    );
    // An instance written twice in this batch into different studies or
    // series (a re-send racing a correction) ends in the last one: the
    // others got a study or series row above and no instance; their
    // studies are recounted (which removes what is left empty).
    let place = |w: &DicomWrite| {
        (
            w.tenant.clone(),
            w.instance.study_uid.clone(),
            w.instance.series_uid.clone(),
        )
    };
    let ended: BTreeSet<_> = instances.iter().map(|w| place(w)).collect();
    full.extend(
        writes
            .iter()
            .filter(|w| !ended.contains(&place(w)))
            .map(|w| (w.tenant.clone(), w.instance.study_uid.clone())),
    );
    // New instances are added to the counts. The first statement inserts
    // only rows not stored yet (by this batch, or by a concurrent writer
    // that committed first); when it skips any, the second writes them
    // all and their studies are recounted.
    let new =
        insert_instances(tx, &instances, INSTANCE_INSERT, now).await? == instances.len() as u64;
    if !new {
        // Instances stored since `prepare_dicom_writes` looked (by a
        // concurrent writer) leave the studies they are in now.
        let now_in = stored_instances(tx, &instances).await?;
        full.extend(now_in.into_iter().map(|s| (s.tenant, s.study_uid)));
        insert_instances(tx, &instances, INSTANCE_UPSERT, now).await?;
        full.extend(
            instances
                .iter()
                .map(|w| (w.tenant.clone(), w.instance.study_uid.clone())),
        );
    }
    let added = instances.iter().filter(|_| new).map(|w| counts::Added {
        tenant: &w.tenant,
        study: &w.instance.study_uid,
        series: &w.instance.series_uid,
        sop_class: &w.instance.sop_class_uid,
    });
    counts::apply(tx, added, full).await
}

/// A new instance's row is inserted; a stored one is left as it is.
const INSTANCE_INSERT: &str = "ON CONFLICT (tenant, sop_uid) DO NOTHING";

/// What a re-sent instance's row takes from the new one.
const INSTANCE_UPSERT: &str =
    "ON CONFLICT (tenant, sop_uid) DO UPDATE SET series_uid = excluded.series_uid, \
     study_uid = excluded.study_uid, sop_class_uid = excluded.sop_class_uid, \
     instance_number = excluded.instance_number, transfer_syntax = excluded.transfer_syntax, \
     object_key = excluded.object_key, size = excluded.size, etag = excluded.etag, \
     dataset_offset = excluded.dataset_offset, header_len = excluded.header_len, \
     pixel_offset = excluded.pixel_offset, pixel_len = excluded.pixel_len, \
     pixel_vr = excluded.pixel_vr, fragments = excluded.fragments, \
     num_frames = excluded.num_frames, num_rows = excluded.num_rows, \
     num_columns = excluded.num_columns, pixel_element = excluded.pixel_element, \
     created_at = excluded.created_at, dataset_digest = excluded.dataset_digest, \
     frame_starts = excluded.frame_starts, bits_allocated = excluded.bits_allocated, \
     timezone_offset = excluded.timezone_offset";

/// Inserts instance rows; `conflict` says what a row already stored does.
/// Returns the rows inserted or updated.
async fn insert_instances(
    tx: &mut Transaction<'static, Any>,
    instances: &[&DicomWrite],
    conflict: &str,
    now: i64,
) -> CatalogResult<u64> {
    let prefix = format!("INSERT INTO dicom_instances (tenant, {INSTANCE_COLS})");
    insert_rows(
        tx,
        (&prefix, 25, conflict),
        instances,
        "index instances",
        |args, w| {
            let i = &w.instance;
            args.add(w.tenant.clone())?;
            args.add(i.sop_uid.clone())?;
            args.add(i.series_uid.clone())?;
            args.add(i.study_uid.clone())?;
            args.add(i.sop_class_uid.clone())?;
            args.add(i.instance_number)?;
            args.add(i.transfer_syntax.clone())?;
            args.add(i.object_key.clone())?;
            args.add(i.size)?;
            args.add(i.etag.clone())?;
            args.add(i.dataset_offset)?;
            args.add(i.header_len)?;
            args.add(i.pixel_offset)?;
            args.add(i.pixel_len)?;
            args.add(i.pixel_vr.clone())?;
            args.add(i.fragments.clone())?;
            args.add(i.num_frames)?;
            args.add(i.num_rows)?;
            args.add(i.num_columns)?;
            args.add(i.pixel_element)?;
            args.add(now)?;
            args.add(i.dataset_digest.clone())?;
            args.add(i.frame_starts.clone())?;
            args.add(i.bits_allocated)?;
            args.add(i.timezone_offset.clone())
        },
    )
    .await
}

/// Upserts series rows: `moving` also sets their study; otherwise a row
/// stored under another study is left alone. Returns the rows written.
async fn upsert_series(
    tx: &mut Transaction<'static, Any>,
    series: &[(String, SeriesRecord)],
    moving: bool,
    now: i64,
) -> CatalogResult<u64> {
    let keep = keep_stored_unless_given(
        "dicom_series",
        &["modality", "series_number", "series_description"],
    );
    let conflict = if moving {
        format!(
            "ON CONFLICT (tenant, series_uid) DO UPDATE SET study_uid = excluded.study_uid, {keep}, \
             updated_at = excluded.updated_at"
        )
    } else {
        format!(
            "ON CONFLICT (tenant, series_uid) DO UPDATE SET {keep}, updated_at = excluded.updated_at \
             WHERE dicom_series.study_uid = excluded.study_uid"
        )
    };
    insert_rows(
        tx,
        (
            "INSERT INTO dicom_series (tenant, series_uid, study_uid, modality, series_number, \
             series_description, updated_at)",
            7,
            &conflict,
        ),
        series,
        "index series",
        |args, (tenant, r)| {
            args.add(tenant.clone())?;
            args.add(r.series_uid.clone())?;
            args.add(r.study_uid.clone())?;
            args.add(r.modality.clone())?;
            args.add(r.series_number)?;
            args.add(r.series_description.clone())?;
            args.add(now)
        },
    )
    .await
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
    /// Fills the component-group keys of studies whose rows predate them
    /// (migration 0009, a restored older dump). Cheap when there are none:
    /// an indexed look-up (0010) that finds nothing.
    pub(crate) async fn fill_name_group_keys(&self) -> CatalogResult<()> {
        let rows: Vec<NameRow> = sqlx::query_as(
            "SELECT tenant, study_uid, patient_name, referring_physician FROM dicom_studies \
             WHERE patient_name IS NOT NULL AND patient_name_ideo_key IS NULL \
             ORDER BY tenant, study_uid",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db("find studies without name group keys"))?;
        self.write_name_keys(&rows).await?;
        if !rows.is_empty() {
            tracing::info!(
                studies = rows.len(),
                "filled the name group keys of older study rows"
            );
        }
        Ok(())
    }

    /// Re-keys the person names of study rows keyed before each component
    /// group was keyed on its own (`A^B^^=C` was `A B =C`, now `A B=C`),
    /// or before names were keyed in compatibility form (`ＷＡＮＧ`,
    /// `佐藤　一郎`), or before middle dots separated words (`买买提·艾力`):
    /// only names with a `=` or beyond ASCII can change, and only those
    /// whose key does are written. Runs once per catalog (a meta flag), and
    /// again after a restore from an older dump.
    pub(crate) async fn rekey_names(&self) -> CatalogResult<()> {
        const DONE: &str = "name_keys_v4";
        if self.get_meta(DONE).await?.is_some() {
            return Ok(());
        }
        // Read a page of rows at a time (a catalog of millions of studies
        // is not held in memory), in key order.
        const PAGE: i64 = 10_000;
        let (mut after, mut rekeyed) = ((String::new(), String::new()), 0usize);
        loop {
            let rows: Vec<KeyedNameRow> = sqlx::query_as(
                "SELECT tenant, study_uid, patient_name, referring_physician, patient_name_key, \
                     referring_physician_key FROM dicom_studies \
                     WHERE (tenant > $1 OR (tenant = $1 AND study_uid > $2)) \
                     ORDER BY tenant, study_uid LIMIT $3",
            )
            .bind(&after.0)
            .bind(&after.1)
            .bind(PAGE)
            .fetch_all(&self.pool)
            .await
            .map_err(db("find names to re-key"))?;
            let Some(last) = rows.last() else { break };
            after = (last.0.clone(), last.1.clone());
            let full = rows.len() as i64 == PAGE;
            let stale: Vec<NameRow> = rows
                .into_iter()
                .filter(|(_, _, name, phys, _, _)| {
                    let plain = |n: &Option<String>| {
                        n.as_deref()
                            .is_none_or(|n| n.is_ascii() && !n.contains('='))
                    };
                    !(plain(name) && plain(phys))
                })
                .filter(|(_, _, name, phys, name_key_now, phys_key_now)| {
                    name.as_deref().map(name_key) != *name_key_now
                        || phys.as_deref().map(name_key) != *phys_key_now
                })
                .map(|(tenant, study, name, phys, _, _)| (tenant, study, name, phys))
                .collect();
            self.write_name_keys(&stale).await?;
            rekeyed += stale.len();
            if !full {
                break;
            }
        }
        if rekeyed > 0 {
            tracing::info!(studies = rekeyed, "re-keyed person names");
        }
        self.set_meta(DONE, "1").await
    }

    /// Writes every name key of these study rows (the whole name's, its
    /// groups', the referring physician's) as its names give them now: in
    /// key order (nodes starting together lock rows in one order), a
    /// transaction per 1,000 rows, and only where the names are still those
    /// read (another node may have stored a corrected one meanwhile).
    async fn write_name_keys(&self, rows: &[NameRow]) -> CatalogResult<()> {
        for block in rows.chunks(1000) {
            let mut tx = self.begin_write().await.map_err(db("begin"))?;
            for (tenant, study, name, phys) in block {
                let (ideo, phon) = name.as_deref().map(group_keys).unzip();
                sqlx::query(
                    "UPDATE dicom_studies SET patient_name_key = $1, patient_name_ideo_key = $2, \
                     patient_name_phon_key = $3, referring_physician_key = $4 \
                     WHERE tenant = $5 AND study_uid = $6 \
                     AND patient_name IS NOT DISTINCT FROM $7 \
                     AND referring_physician IS NOT DISTINCT FROM $8",
                )
                .bind(name.as_deref().map(name_key))
                .bind(ideo)
                .bind(phon)
                .bind(phys.as_deref().map(name_key))
                .bind(tenant)
                .bind(study)
                .bind(name)
                .bind(phys)
                .execute(&mut *tx)
                .await
                .map_err(db("write name keys"))?;
            }
            tx.commit().await.map_err(db("commit name keys"))?;
        }
        Ok(())
    }

    /// Recounts every study and series (NumberOfStudyRelatedInstances and
    /// the rest) from the instance rows, as a restore does: a check that
    /// the counts kept up commit by commit are right.
    pub async fn recount_dicom(&self) -> CatalogResult<()> {
        let mut tx = self.begin_write().await.map_err(db("begin recount"))?;
        counts::refresh_all(&mut tx).await?;
        tx.commit().await.map_err(db("commit recount"))
    }

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

    /// Sets (`on`) or removes a legal hold on every object of a scope's
    /// instances, their earlier versions kept under `versions/` included,
    /// in one transaction: while it holds, no protocol deletes them.
    /// Returns how many instances the scope has, and how many objects it
    /// put on hold or how many holds it lifted; instances stored later
    /// are not held. The hold is the
    /// objects' one legal-hold flag, the one S3's PutObjectLegalHold sets.
    pub async fn hold_dicom(
        &self,
        tenant: &str,
        bucket_id: i64,
        scope: &Scope,
        on: bool,
    ) -> CatalogResult<(u64, u64)> {
        let mut tx = self.begin_write().await.map_err(db("begin legal hold"))?;
        let mut changed = 0;
        let instances = lock_scope(&mut tx, tenant, scope).await?;
        for i in &instances {
            for obj in claim_instance_objects(&mut tx, bucket_id, i).await? {
                if on {
                    crate::retention::put_legal_hold(&mut tx, obj.id, true).await?;
                    changed += 1;
                } else {
                    // Lift only holds there are: no lock row for an object
                    // that never had one.
                    changed += sqlx::query(
                        "UPDATE object_locks SET legal_hold = 0 WHERE object_id = $1 AND legal_hold = 1",
                    )
                    .bind(obj.id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db("lift legal hold"))?
                    .rows_affected();
                }
            }
        }
        tx.commit().await.map_err(db("commit legal hold"))?;
        Ok((instances.len() as u64, changed))
    }

    /// Removes a scope's instances, their objects (and earlier versions)
    /// and the series and studies left empty, in one transaction. Returns
    /// the instances removed. Nothing is removed when any of those objects
    /// is under retention or legal hold ([`CatalogError::ObjectLocked`]);
    /// `bypass_governance` lifts governance-mode retention only.
    pub async fn delete_dicom(
        &self,
        tenant: &str,
        bucket_id: i64,
        scope: &Scope,
        bypass_governance: bool,
    ) -> CatalogResult<Vec<InstanceRecord>> {
        let mut tx = self.begin_write().await.map_err(db("begin delete"))?;
        let (cond, args) = scope.condition();
        let gone = lock_scope(&mut tx, tenant, scope).await?;
        for i in &gone {
            let versions = versions_pattern(i);
            let claimed = claim_instance_objects(&mut tx, bucket_id, i).await?;
            crate::retention::release_for_delete(&mut tx, &claimed, bypass_governance)
                .await
                .map_err(|e| match e {
                    CatalogError::ObjectLocked { key, reason } => CatalogError::ObjectLocked {
                        reason: format!("{reason} (instance {}, object {key})", i.sop_uid),
                        key,
                    },
                    e => e,
                })?;
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
            counts::refresh(&mut tx, tenant, &[study]).await?;
        }
        tx.commit().await.map_err(db("commit delete"))?;
        Ok(gone)
    }
}

/// Locks a scope's study row (as ingest's upsert does, so counts
/// refreshed after are computed after any concurrent ingest of the study
/// committed; PostgreSQL, SQLite's write lock covers it), then reads its
/// instances in SOP Instance UID order, the order their objects are then
/// claimed in by every caller.
async fn lock_scope(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    tenant: &str,
    scope: &Scope,
) -> CatalogResult<Vec<InstanceRecord>> {
    let (cond, args) = scope.condition();
    lock_study(tx, tenant, args[0]).await?;
    let sql = format!(
        "SELECT {INSTANCE_COLS} FROM dicom_instances WHERE tenant = $1 AND {cond} ORDER BY sop_uid"
    );
    let mut q = sqlx::query(crate::dynamic(sql)).bind(tenant);
    for a in &args {
        q = q.bind(*a);
    }
    let rows = q.fetch_all(&mut **tx).await.map_err(db("read instances"))?;
    rows.iter()
        .map(|r| instance_row(r, 0).map_err(db("read instance row")))
        .collect()
}

impl Catalog {
    /// Whether an earlier version of instance `sop_uid` with these bytes
    /// (`etag`) is kept under `versions/` in bucket `bucket_id`.
    pub async fn dicom_version_kept(
        &self,
        bucket_id: i64,
        sop_uid: &str,
        etag: &str,
    ) -> CatalogResult<bool> {
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM objects WHERE bucket_id = $1 AND key LIKE $2 AND etag = $3 LIMIT 1",
        )
        .bind(bucket_id)
        .bind(format!("versions/{sop_uid}/%"))
        .bind(etag)
        .fetch_optional(&self.pool)
        .await
        .map_err(db("find kept version"))?;
        Ok(found.is_some())
    }
}

/// Locks a study's row, as ingest's upsert does (see [`lock_scope`]).
async fn lock_study(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    tenant: &str,
    study_uid: &str,
) -> CatalogResult<()> {
    sqlx::query(
        "UPDATE dicom_studies SET updated_at = updated_at WHERE tenant = $1 AND study_uid = $2",
    )
    .bind(tenant)
    .bind(study_uid)
    .execute(&mut **tx)
    .await
    .map_err(db("lock study"))?;
    Ok(())
}

/// The keys of an instance's earlier versions, as a LIKE pattern.
fn versions_pattern(i: &InstanceRecord) -> String {
    format!("versions/{}/%", i.sop_uid)
}

/// Claims (locks, in `tx`) an instance's objects: its current one and the
/// earlier versions kept under `versions/<SOP UID>/`.
async fn claim_instance_objects(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    bucket_id: i64,
    i: &InstanceRecord,
) -> CatalogResult<Vec<crate::retention::Claimed>> {
    let mut args = crate::retention::key_args(bucket_id, &i.object_key)?;
    args.add(versions_pattern(i))
        .map_err(crate::commit::bind_err)?;
    crate::retention::claim_objects(tx, "bucket_id = $1 AND (key = $2 OR key LIKE $3)", args).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn name_keys_ignore_case_and_carets() {
        assert_eq!(super::name_key("Doe^John^^^"), "DOE JOHN");
        assert_eq!(super::name_key("doe^john"), "DOE JOHN");
    }

    #[test]
    fn name_keys_normalise_each_component_group() {
        let key = super::name_key;
        assert_eq!(
            key("Yamada^Tarou^^=山田^太郎=やまだ^たろう"),
            "YAMADA TAROU=山田 太郎=やまだ たろう"
        );
        assert_eq!(
            key("Wang^XiaoDong^^=王^小東="),
            key("Wang^XiaoDong=王^小東")
        );
        assert_eq!(key("Doe^John=="), "DOE JOHN");
        assert_eq!(key("=山田^太郎"), "=山田 太郎");
        assert_eq!(key("Doe^*=山田*"), "DOE *=山田*");
        assert_eq!(super::group_keys("A^B^^=C^^=D"), ("C".into(), "D".into()));
        // Compatibility forms: full-width Latin, half-width katakana,
        // decomposed hangul, ideographic and full-width separators.
        assert_eq!(key("ｗａｎｇ＾ｘｉａｏｄｏｎｇ"), "WANG XIAODONG");
        assert_eq!(key("=山田\u{3000}太郎=ﾔﾏﾀﾞ^ﾀﾛｳ"), "=山田 太郎=ヤマダ タロウ");
        assert_eq!(key("=\u{1100}\u{1161}\u{11A8}"), "=각");
        assert_eq!(key("A＝B"), "A B");
        assert_eq!(key("ｗａｎｇ＊"), "WANG＊");
    }
}
