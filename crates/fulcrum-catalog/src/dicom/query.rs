//! Index queries for QIDO-RS and C-FIND: one SQL builder for the four
//! levels (patient, study, series, instance), the matching kinds of PS3.4
//! C.2.2.2 (single value, wildcard, UID list, range, universal) plus fuzzy
//! person-name matching, paging, and the computed counts (stored on the
//! study and series rows, see `counts`).

use sqlx::any::AnyArguments;
use sqlx::{Arguments, Row};

use super::counts::split_set;
use super::{instance_row, name_key, InstanceRecord, SeriesRecord, StudyRecord};
use crate::db::{Catalog, DbKind};
use crate::error::{db, CatalogError, CatalogResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Patient,
    Study,
    Series,
    Instance,
}

/// An indexed attribute that can be matched on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    PatientName,
    PatientId,
    IssuerOfPatientId,
    PatientBirthDate,
    PatientSex,
    StudyUid,
    StudyDate,
    StudyTime,
    AccessionNumber,
    ReferringPhysician,
    StudyDescription,
    StudyId,
    ModalitiesInStudy,
    SeriesUid,
    Modality,
    SeriesNumber,
    SeriesDescription,
    SopUid,
    SopClassUid,
    InstanceNumber,
}

impl Column {
    /// SQL column and whether it holds a person name (matched through its key).
    fn sql(self) -> (&'static str, bool) {
        match self {
            Column::PatientName => ("s.patient_name_key", true),
            Column::PatientId => ("s.patient_id", false),
            Column::IssuerOfPatientId => ("s.issuer_of_patient_id", false),
            Column::PatientBirthDate => ("s.patient_birth_date", false),
            Column::PatientSex => ("s.patient_sex", false),
            Column::StudyUid => ("s.study_uid", false),
            Column::StudyDate => ("s.study_date", false),
            Column::StudyTime => ("s.study_time", false),
            Column::AccessionNumber => ("s.accession_number", false),
            Column::ReferringPhysician => ("s.referring_physician_key", true),
            Column::StudyDescription => ("s.study_description", false),
            Column::StudyId => ("s.study_id", false),
            Column::ModalitiesInStudy => ("m.modality", false),
            Column::SeriesUid => ("r.series_uid", false),
            Column::Modality => ("r.modality", false),
            Column::SeriesNumber => ("r.series_number", false),
            Column::SeriesDescription => ("r.series_description", false),
            Column::SopUid => ("i.sop_uid", false),
            Column::SopClassUid => ("i.sop_class_uid", false),
            Column::InstanceNumber => ("i.instance_number", false),
        }
    }

    fn numeric(self) -> bool {
        matches!(self, Column::SeriesNumber | Column::InstanceNumber)
    }

    /// The level whose table holds the column.
    pub fn level(self) -> Level {
        match self.sql().0.as_bytes()[0] {
            b's' | b'm' => Level::Study,
            b'r' => Level::Series,
            _ => Level::Instance,
        }
    }
}

/// How one attribute is matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Matcher {
    /// Single value matching (case-insensitive for person names).
    Exact(String),
    /// `*` any run of characters, `?` one character.
    Wildcard(String),
    /// Any of these values (UID list matching).
    List(Vec<String>),
    /// Inclusive range; either end may be open.
    Range(Option<String>, Option<String>),
    /// Person name: every word of the query begins some word of the name,
    /// case-insensitively (QIDO-RS `fuzzymatching=true`).
    Fuzzy(String),
}

#[derive(Debug, Clone)]
pub struct DicomQuery {
    pub tenant: String,
    pub level: Level,
    pub filters: Vec<(Column, Matcher)>,
    pub limit: Option<u32>,
    pub offset: u32,
}

/// One result: the rows of the matched entity and its parents, and the
/// counts computed for its level.
#[derive(Debug, Clone, Default)]
pub struct DicomMatch {
    pub study: StudyRecord,
    pub series: Option<SeriesRecord>,
    pub instance: Option<InstanceRecord>,
    /// Modalities and SOP classes present in the study (patient and study
    /// level), or in the series (series level: its SOP classes).
    pub modalities: Vec<String>,
    pub sop_classes: Vec<String>,
    pub studies: Option<i64>,
    pub series_count: Option<i64>,
    /// Instances of the patient, study or series matched; at instance level,
    /// of the instance's series.
    pub instances: Option<i64>,
    /// At series and instance level, the computed attributes of the study
    /// (QIDO-RS returns them for All Series and All Instances).
    pub in_study: Option<StudyTotals>,
    /// At patient level, the study its name, birth date and sex are
    /// taken from (the last written that matches).
    pub patient_study: Option<String>,
}

/// A study's computed attributes, as kept on its row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StudyTotals {
    pub series: i64,
    pub instances: i64,
    pub modalities: Vec<String>,
    pub sop_classes: Vec<String>,
}

const STUDY_COLS: &str = "s.study_uid, s.patient_id, s.patient_name, s.patient_birth_date, \
    s.patient_sex, s.study_date, s.study_time, s.accession_number, s.referring_physician, \
    s.study_description, s.study_id, s.issuer_of_patient_id";
const SERIES_COLS: &str =
    "r.series_uid, r.study_uid, r.modality, r.series_number, r.series_description";

/// The study row's computed attributes, selected after an entity's own.
const IN_STUDY: &str = "s.num_series, s.num_instances, s.modalities, s.sop_classes";

fn totals(r: &sqlx::any::AnyRow, f: usize) -> Result<StudyTotals, sqlx::Error> {
    Ok(StudyTotals {
        series: r.try_get(f)?,
        instances: r.try_get(f + 1)?,
        modalities: split_set(r.try_get(f + 2)?),
        sop_classes: split_set(r.try_get(f + 3)?),
    })
}

fn study_row(r: &sqlx::any::AnyRow) -> Result<StudyRecord, sqlx::Error> {
    Ok(StudyRecord {
        study_uid: r.try_get(0)?,
        patient_id: r.try_get(1)?,
        patient_name: r.try_get(2)?,
        patient_birth_date: r.try_get(3)?,
        patient_sex: r.try_get(4)?,
        study_date: r.try_get(5)?,
        study_time: r.try_get(6)?,
        accession_number: r.try_get(7)?,
        referring_physician: r.try_get(8)?,
        study_description: r.try_get(9)?,
        study_id: r.try_get(10)?,
        issuer_of_patient_id: r.try_get(11)?,
    })
}

fn series_row(r: &sqlx::any::AnyRow, f: usize) -> Result<SeriesRecord, sqlx::Error> {
    Ok(SeriesRecord {
        series_uid: r.try_get(f)?,
        study_uid: r.try_get(f + 1)?,
        modality: r.try_get(f + 2)?,
        series_number: r.try_get(f + 3)?,
        series_description: r.try_get(f + 4)?,
    })
}

/// WHERE clauses and their arguments, numbered from `$2` (`$1` is the tenant).
struct Where {
    kind: DbKind,
    clauses: Vec<String>,
    args: AnyArguments,
    n: usize,
}

impl Where {
    fn arg(&mut self, v: impl Into<ArgValue>) -> CatalogResult<String> {
        self.n += 1;
        let r = match v.into() {
            ArgValue::Text(s) => self.args.add(s),
            ArgValue::Int(i) => self.args.add(i),
        };
        r.map_err(|e| CatalogError::Db {
            op: "bind",
            source: sqlx::Error::Encode(e),
        })?;
        Ok(format!("${}", self.n))
    }

    /// A pattern with `*`/`?` in the database's own pattern language.
    fn pattern(&self, p: &str) -> (String, &'static str) {
        let mut out = String::with_capacity(p.len() + 4);
        match self.kind {
            // GLOB is case-sensitive and can use the column's index.
            DbKind::Sqlite => {
                for c in p.chars() {
                    match c {
                        '[' => out.push_str("[[]"),
                        ']' => out.push_str("[]]"),
                        c => out.push(c),
                    }
                }
                (out, "GLOB")
            }
            DbKind::Postgres => {
                for c in p.chars() {
                    match c {
                        '%' | '_' | '\\' => {
                            out.push('\\');
                            out.push(c);
                        }
                        '*' => out.push('%'),
                        '?' => out.push('_'),
                        c => out.push(c),
                    }
                }
                (out, "LIKE")
            }
        }
    }

    /// A PatientName value without `=` matched against each component
    /// group of the stored names (PS3.4 C.2.2.2.1.1 leaves this to the
    /// SCP): `Wang^XiaoDong` and `王^小东` both find `Wang^XiaoDong=王^小东`.
    /// The alphabetic group is the stored key up to its first `=`; the
    /// ideographic and phonetic groups have keys of their own (partial
    /// indexes: few names have them). The ideographic group is searched
    /// for values beyond ASCII only (it is written in kanji, hanzi or
    /// hangul); the phonetic one for every value: kana and hangul, but
    /// also the pinyin some Chinese writers put there
    /// (`王^小明=王^小明=WANG^XIAOMING` is found by `WANG^XIAOMING`). A value
    /// with `=` matches the whole name, group by group as keyed (empty
    /// components and trailing groups do not count: `Wang^XiaoDong=王^小東`
    /// is `Wang^XiaoDong^^=王^小東=`). None: not such a query.
    fn name_groups(&mut self, m: &Matcher) -> CatalogResult<Option<String>> {
        let (value, wild) = match m {
            Matcher::Exact(v) => (name_key(v), false),
            // The wildcards pass through the name normalisation.
            Matcher::Wildcard(p) => (name_key(p), true),
            _ => return Ok(None),
        };
        if value.contains('=') {
            if wild {
                return Ok(None);
            }
            return Ok(Some(format!("s.patient_name_key = {}", self.arg(value)?)));
        }
        let term = |w: &mut Self, col: &str, v: &str, wild: bool| -> CatalogResult<String> {
            if wild {
                let (pat, op) = w.pattern(v);
                Ok(format!("{col} {op} {}", w.arg(pat)?))
            } else {
                Ok(format!("{col} = {}", w.arg(v.to_string())?))
            }
        };
        let mut terms = vec![term(self, "n.patient_name_key", &value, wild)?];
        if !value.ends_with('*') {
            // The alphabetic group of a name with more groups.
            terms.push(term(
                self,
                "n.patient_name_key",
                &format!("{value}=*"),
                true,
            )?);
        }
        let groups: &[&str] = match value.is_ascii() {
            true => &["n.patient_name_phon_key"],
            false => &["n.patient_name_ideo_key", "n.patient_name_phon_key"],
        };
        for col in groups {
            let t = term(self, col, &value, wild)?;
            terms.push(format!("{col} <> '' AND {t}"));
        }
        // One indexed search per term: the terms OR-ed in one WHERE made
        // both SQLite and PostgreSQL scan the tenant's studies (90 ms for
        // 200,000 of them), since no single index serves them all.
        let searches: Vec<String> = terms
            .iter()
            .map(|t| format!("SELECT n.study_uid FROM dicom_studies n WHERE n.tenant = $1 AND {t}"))
            .collect();
        Ok(Some(format!(
            "s.study_uid IN ({})",
            searches.join(" UNION ALL ")
        )))
    }

    fn add(&mut self, col: Column, m: &Matcher) -> CatalogResult<()> {
        if col == Column::PatientName {
            if let Some(clause) = self.name_groups(m)? {
                self.clauses.push(clause);
                return Ok(());
            }
        }
        let (sql, is_name) = col.sql();
        let norm = |v: &str| if is_name { name_key(v) } else { v.to_string() };
        let val = |w: &mut Self, v: &str| -> CatalogResult<String> {
            if col.numeric() {
                let i: i64 = v
                    .trim()
                    .parse()
                    .map_err(|_| CatalogError::BadQuery(format!("{v:?} is not a number")))?;
                w.arg(i)
            } else {
                w.arg(norm(v))
            }
        };
        let clause = match m {
            Matcher::Exact(v) => format!("{sql} = {}", val(self, v)?),
            Matcher::Wildcard(p) => {
                if col.numeric() {
                    return Err(CatalogError::BadQuery("wildcards on a number".into()));
                }
                let p = if is_name {
                    // The wildcards pass through the name normalisation.
                    name_key(p)
                } else {
                    p.clone()
                };
                let (pat, op) = self.pattern(&p);
                format!("{sql} {op} {}", self.arg(pat)?)
            }
            Matcher::List(vs) => {
                let mut ps = Vec::with_capacity(vs.len());
                for v in vs {
                    ps.push(val(self, v)?);
                }
                format!("{sql} IN ({})", ps.join(","))
            }
            Matcher::Range(lo, hi) => {
                let mut parts = Vec::new();
                if let Some(lo) = lo {
                    parts.push(format!("{sql} >= {}", val(self, lo)?));
                }
                if let Some(hi) = hi {
                    // A bound like 1000 (time) also admits 1000xx.
                    let hi = if col.numeric() {
                        hi.clone()
                    } else {
                        format!("{hi}\u{10FFFF}")
                    };
                    parts.push(format!("{sql} <= {}", self.arg(hi)?));
                }
                if parts.is_empty() {
                    return Ok(());
                }
                parts.join(" AND ")
            }
            Matcher::Fuzzy(v) => {
                // A word starts a name part in any component group: after
                // a space, or after the '=' that opens the ideographic or
                // phonetic group (山田 of `Yamada^Tarou=山田^太郎`).
                let mut parts = Vec::new();
                for word in name_key(v).split([' ', '=']).filter(|w| !w.is_empty()) {
                    let (pat, op) = self.pattern(&format!("* {word}*"));
                    parts.push(format!(
                        "(' ' || REPLACE({sql}, '=', ' ')) {op} {}",
                        self.arg(pat)?
                    ));
                }
                if parts.is_empty() {
                    return Ok(());
                }
                parts.join(" AND ")
            }
        };
        self.clauses.push(clause);
        Ok(())
    }
}

enum ArgValue {
    Text(String),
    Int(i64),
}
impl From<String> for ArgValue {
    fn from(s: String) -> Self {
        ArgValue::Text(s)
    }
}
impl From<i64> for ArgValue {
    fn from(i: i64) -> Self {
        ArgValue::Int(i)
    }
}

/// Most results one query returns, whatever its `limit`.
pub const MAX_RESULTS: u32 = 10_000;

impl Catalog {
    /// Runs a query; results come in a stable order so `offset` pages.
    pub async fn query_dicom(&self, q: &DicomQuery) -> CatalogResult<Vec<DicomMatch>> {
        let mut w = Where {
            kind: self.kind(),
            clauses: Vec::new(),
            args: AnyArguments::default(),
            n: 1,
        };
        w.args.add(q.tenant.clone()).map_err(|e| CatalogError::Db {
            op: "bind",
            source: sqlx::Error::Encode(e),
        })?;
        // Filters on modalities in study become an EXISTS over the series.
        // Keys below the level of the rows read (a study query's Modality
        // or SOP Class UID) match relationally (PS3.4 C.4.1.2.2.2): the
        // entity has a series, or an instance, that matches them all.
        let mut modality_filters = Vec::new();
        let mut below: Vec<(Level, String)> = Vec::new();
        for (col, m) in &q.filters {
            if *col == Column::ModalitiesInStudy {
                modality_filters.push(m);
                continue;
            }
            let before = w.clauses.len();
            w.add(*col, m)?;
            if col.level() > q.level.max(Level::Study) && w.clauses.len() > before {
                let c = w.clauses.pop().unwrap_or_default();
                below.push((col.level(), c));
            }
        }
        for level in [Level::Series, Level::Instance] {
            let cs: Vec<&str> = below
                .iter()
                .filter(|(l, _)| *l == level)
                .map(|(_, c)| c.as_str())
                .collect();
            if cs.is_empty() {
                continue;
            }
            let (table, alias, parent) = match (level, q.level) {
                (Level::Series, _) => ("dicom_series", "r", "s.study_uid = r.study_uid"),
                (_, Level::Series) => ("dicom_instances", "i", "i.series_uid = r.series_uid"),
                _ => ("dicom_instances", "i", "i.study_uid = s.study_uid"),
            };
            let from = if q.level == Level::Series { "r" } else { "s" };
            w.clauses.push(format!(
                "EXISTS (SELECT 1 FROM {table} {alias} WHERE {alias}.tenant = {from}.tenant \
                 AND {parent} AND {})",
                cs.join(" AND ")
            ));
        }
        for m in modality_filters {
            let before = w.clauses.len();
            w.add(Column::ModalitiesInStudy, m)?;
            if w.clauses.len() > before {
                let c = w.clauses.pop().unwrap_or_default();
                w.clauses.push(format!(
                    "EXISTS (SELECT 1 FROM dicom_series m WHERE m.tenant = s.tenant \
                     AND m.study_uid = s.study_uid AND {c})"
                ));
            }
        }
        let filter = w
            .clauses
            .iter()
            .map(|c| format!(" AND {c}"))
            .collect::<String>();
        let limit = q.limit.unwrap_or(MAX_RESULTS).min(MAX_RESULTS);
        let page = format!(" LIMIT {limit} OFFSET {}", q.offset);
        // The computed attributes are stored on the rows (see `counts`); a
        // patient's are those of all its studies together (a patient
        // matches when one of its studies does). A patient is its Patient
        // ID within its Issuer of Patient ID (two sites' MRN1234 are two
        // patients; PS3.3 C.7.1.1), keyed with NULL as '' (no value is
        // stored empty): an equality both databases can hash. Its name,
        // birth date and sex are those of one study, the last written of
        // those that match (each the largest of any study made records no
        // instance holds: one study's name with another's birth date).
        // The page of patients (k) is chosen first, from the matching
        // studies, and only its patients' studies are read: grouping every
        // study of the archive for each page made a C-FIND listing 50,000
        // patients read 100,000 studies 50 times (0.7 s a page).
        let joined = |col: &str| self.kind().comma_list(col, false);
        let sql = match q.level {
            Level::Patient => format!(
                "WITH k AS (SELECT DISTINCT COALESCE(s.patient_id, '') AS pk, \
                  COALESCE(s.issuer_of_patient_id, '') AS ik FROM dicom_studies s \
                  WHERE s.tenant = $1{filter} ORDER BY pk, ik{page}), \
                 a AS (SELECT a.*, COALESCE(a.patient_id, '') AS pk, \
                  COALESCE(a.issuer_of_patient_id, '') AS ik FROM dicom_studies a \
                  WHERE a.tenant = $1 AND (a.patient_id IN (SELECT pk FROM k) \
                   OR (a.patient_id IS NULL AND EXISTS (SELECT 1 FROM k WHERE k.pk = '')))), \
                 g AS (SELECT a.pk, a.ik, MAX(a.patient_id) AS patient_id, \
                  MAX(a.issuer_of_patient_id) AS issuer, COUNT(*) AS studies, \
                  CAST(SUM(a.num_series) AS BIGINT) AS series, \
                  CAST(SUM(a.num_instances) AS BIGINT) AS instances, {} AS modalities, \
                  {} AS sop_classes \
                  FROM a JOIN k ON k.pk = a.pk AND k.ik = a.ik GROUP BY a.pk, a.ik), \
                 l AS (SELECT s.pk, s.ik, s.patient_name, s.patient_birth_date, s.patient_sex, \
                  s.study_uid, ROW_NUMBER() OVER (PARTITION BY s.pk, s.ik \
                   ORDER BY s.updated_at DESC, s.study_uid DESC) AS latest \
                  FROM a s WHERE s.tenant = $1{filter}) \
                 SELECT g.patient_id, g.issuer, l.patient_name, l.patient_birth_date, \
                 l.patient_sex, g.studies, g.series, g.instances, g.modalities, g.sop_classes, \
                 l.study_uid FROM g JOIN l ON l.latest = 1 AND l.pk = g.pk AND l.ik = g.ik \
                 ORDER BY g.pk, g.ik",
                joined("a.modalities"),
                joined("a.sop_classes")
            ),
            Level::Study => format!(
                "SELECT {STUDY_COLS}, s.num_series, s.num_instances, s.modalities, s.sop_classes \
                 FROM dicom_studies s WHERE s.tenant = $1{filter} \
                 ORDER BY s.study_uid{page}"
            ),
            Level::Series => format!(
                "SELECT {STUDY_COLS}, {SERIES_COLS}, r.num_instances, r.sop_classes, {IN_STUDY} \
                 FROM dicom_series r \
                 JOIN dicom_studies s ON s.tenant = r.tenant AND s.study_uid = r.study_uid \
                 WHERE r.tenant = $1{filter} ORDER BY r.study_uid, r.series_uid{page}"
            ),
            Level::Instance => format!(
                "SELECT {STUDY_COLS}, {SERIES_COLS}, r.num_instances, {IN_STUDY}, i.{} \
                 FROM dicom_instances i \
                 JOIN dicom_series r ON r.tenant = i.tenant AND r.series_uid = i.series_uid \
                 JOIN dicom_studies s ON s.tenant = i.tenant AND s.study_uid = i.study_uid \
                 WHERE i.tenant = $1{filter} \
                 ORDER BY i.study_uid, i.series_uid, i.instance_number, i.sop_uid{page}",
                super::INSTANCE_COLS.replace(", ", ", i.")
            ),
        };
        let rows = sqlx::query_with(crate::dynamic(sql), w.args)
            .fetch_all(&self.pool)
            .await
            .map_err(db("query index"))?;
        let read = |e| CatalogError::Db {
            op: "read index row",
            source: e,
        };
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let m = match q.level {
                Level::Patient => DicomMatch {
                    study: StudyRecord {
                        patient_id: r.try_get(0).map_err(read)?,
                        issuer_of_patient_id: r.try_get(1).map_err(read)?,
                        patient_name: r.try_get(2).map_err(read)?,
                        patient_birth_date: r.try_get(3).map_err(read)?,
                        patient_sex: r.try_get(4).map_err(read)?,
                        ..Default::default()
                    },
                    studies: Some(r.try_get(5).map_err(read)?),
                    series_count: Some(r.try_get(6).map_err(read)?),
                    instances: Some(r.try_get(7).map_err(read)?),
                    modalities: split_set(r.try_get(8).map_err(read)?),
                    sop_classes: split_set(r.try_get(9).map_err(read)?),
                    patient_study: Some(r.try_get(10).map_err(read)?),
                    ..Default::default()
                },
                Level::Study => DicomMatch {
                    study: study_row(r).map_err(read)?,
                    series_count: Some(r.try_get(12).map_err(read)?),
                    instances: Some(r.try_get(13).map_err(read)?),
                    modalities: split_set(r.try_get(14).map_err(read)?),
                    sop_classes: split_set(r.try_get(15).map_err(read)?),
                    ..Default::default()
                },
                Level::Series => DicomMatch {
                    study: study_row(r).map_err(read)?,
                    series: Some(series_row(r, 12).map_err(read)?),
                    instances: Some(r.try_get(17).map_err(read)?),
                    sop_classes: split_set(r.try_get(18).map_err(read)?),
                    in_study: Some(totals(r, 19).map_err(read)?),
                    ..Default::default()
                },
                Level::Instance => DicomMatch {
                    study: study_row(r).map_err(read)?,
                    series: Some(series_row(r, 12).map_err(read)?),
                    instances: Some(r.try_get(17).map_err(read)?),
                    in_study: Some(totals(r, 18).map_err(read)?),
                    instance: Some(instance_row(r, 22).map_err(read)?),
                    ..Default::default()
                },
            };
            out.push(m);
        }
        Ok(out)
    }
}
