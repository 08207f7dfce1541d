//! The query model shared by QIDO-RS and C-FIND: which attributes can be
//! matched and returned at each level, how a key's value becomes a matcher
//! (PS3.4 C.2.2.2: universal, single value, wildcard, UID list, range), and
//! how a match becomes a response dataset.

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use fulcrum_catalog::dicom::{Column, DicomMatch, Level, Matcher};

/// A queryable or returnable attribute.
#[derive(Debug, Clone, Copy)]
pub struct QueryAttr {
    pub tag: Tag,
    pub keyword: &'static str,
    pub vr: VR,
    /// The level the attribute belongs to.
    pub level: Level,
    /// The catalog column matched on; `None` for computed return-only keys.
    pub column: Option<Column>,
}

const fn a(
    tag: Tag,
    keyword: &'static str,
    vr: VR,
    level: Level,
    column: Option<Column>,
) -> QueryAttr {
    QueryAttr {
        tag,
        keyword,
        vr,
        level,
        column,
    }
}

use Level::{Instance as I, Patient as P, Series as SE, Study as ST};

/// Every attribute the archive matches on or returns.
pub const ATTRS: &[QueryAttr] = &[
    a(
        tags::PATIENT_NAME,
        "PatientName",
        VR::PN,
        P,
        Some(Column::PatientName),
    ),
    a(
        tags::PATIENT_ID,
        "PatientID",
        VR::LO,
        P,
        Some(Column::PatientId),
    ),
    a(
        tags::ISSUER_OF_PATIENT_ID,
        "IssuerOfPatientID",
        VR::LO,
        P,
        Some(Column::IssuerOfPatientId),
    ),
    a(
        tags::PATIENT_BIRTH_DATE,
        "PatientBirthDate",
        VR::DA,
        P,
        Some(Column::PatientBirthDate),
    ),
    a(
        tags::PATIENT_SEX,
        "PatientSex",
        VR::CS,
        P,
        Some(Column::PatientSex),
    ),
    a(
        tags::NUMBER_OF_PATIENT_RELATED_STUDIES,
        "NumberOfPatientRelatedStudies",
        VR::IS,
        P,
        None,
    ),
    a(
        tags::NUMBER_OF_PATIENT_RELATED_SERIES,
        "NumberOfPatientRelatedSeries",
        VR::IS,
        P,
        None,
    ),
    a(
        tags::NUMBER_OF_PATIENT_RELATED_INSTANCES,
        "NumberOfPatientRelatedInstances",
        VR::IS,
        P,
        None,
    ),
    a(
        tags::STUDY_INSTANCE_UID,
        "StudyInstanceUID",
        VR::UI,
        ST,
        Some(Column::StudyUid),
    ),
    a(
        tags::STUDY_DATE,
        "StudyDate",
        VR::DA,
        ST,
        Some(Column::StudyDate),
    ),
    a(
        tags::STUDY_TIME,
        "StudyTime",
        VR::TM,
        ST,
        Some(Column::StudyTime),
    ),
    a(
        tags::ACCESSION_NUMBER,
        "AccessionNumber",
        VR::SH,
        ST,
        Some(Column::AccessionNumber),
    ),
    a(
        tags::MODALITIES_IN_STUDY,
        "ModalitiesInStudy",
        VR::CS,
        ST,
        Some(Column::ModalitiesInStudy),
    ),
    a(
        tags::REFERRING_PHYSICIAN_NAME,
        "ReferringPhysicianName",
        VR::PN,
        ST,
        Some(Column::ReferringPhysician),
    ),
    a(
        tags::STUDY_DESCRIPTION,
        "StudyDescription",
        VR::LO,
        ST,
        Some(Column::StudyDescription),
    ),
    a(tags::STUDY_ID, "StudyID", VR::SH, ST, Some(Column::StudyId)),
    // Matched relationally, as ModalitiesInStudy is: a study with an
    // instance of the class (it was ignored, and a search answered the
    // whole archive).
    a(
        tags::SOP_CLASSES_IN_STUDY,
        "SOPClassesInStudy",
        VR::UI,
        ST,
        Some(Column::SopClassUid),
    ),
    // Every stored instance is retrievable at once, archive tier too (it
    // is read back transparently): ONLINE (PS3.4 C.4.1.1.3.2).
    a(
        tags::INSTANCE_AVAILABILITY,
        "InstanceAvailability",
        VR::CS,
        ST,
        None,
    ),
    a(
        tags::NUMBER_OF_STUDY_RELATED_SERIES,
        "NumberOfStudyRelatedSeries",
        VR::IS,
        ST,
        None,
    ),
    a(
        tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
        "NumberOfStudyRelatedInstances",
        VR::IS,
        ST,
        None,
    ),
    a(
        tags::SERIES_INSTANCE_UID,
        "SeriesInstanceUID",
        VR::UI,
        SE,
        Some(Column::SeriesUid),
    ),
    a(
        tags::MODALITY,
        "Modality",
        VR::CS,
        SE,
        Some(Column::Modality),
    ),
    a(
        tags::SERIES_NUMBER,
        "SeriesNumber",
        VR::IS,
        SE,
        Some(Column::SeriesNumber),
    ),
    a(
        tags::SERIES_DESCRIPTION,
        "SeriesDescription",
        VR::LO,
        SE,
        Some(Column::SeriesDescription),
    ),
    a(
        tags::NUMBER_OF_SERIES_RELATED_INSTANCES,
        "NumberOfSeriesRelatedInstances",
        VR::IS,
        SE,
        None,
    ),
    a(
        tags::SOP_INSTANCE_UID,
        "SOPInstanceUID",
        VR::UI,
        I,
        Some(Column::SopUid),
    ),
    a(
        tags::SOP_CLASS_UID,
        "SOPClassUID",
        VR::UI,
        I,
        Some(Column::SopClassUid),
    ),
    a(
        tags::INSTANCE_NUMBER,
        "InstanceNumber",
        VR::IS,
        I,
        Some(Column::InstanceNumber),
    ),
    a(tags::NUMBER_OF_FRAMES, "NumberOfFrames", VR::IS, I, None),
    a(tags::ROWS, "Rows", VR::US, I, None),
    a(tags::COLUMNS, "Columns", VR::US, I, None),
    a(tags::BITS_ALLOCATED, "BitsAllocated", VR::US, I, None),
    a(
        tags::TIMEZONE_OFFSET_FROM_UTC,
        "TimezoneOffsetFromUTC",
        VR::SH,
        I,
        None,
    ),
    a(
        tags::AVAILABLE_TRANSFER_SYNTAX_UID,
        "AvailableTransferSyntaxUID",
        VR::UI,
        I,
        None,
    ),
];

/// An attribute by keyword (`PatientID`) or tag (`00100020`).
pub fn lookup(key: &str) -> Option<&'static QueryAttr> {
    let key = key.trim();
    if key.len() == 8 && key.chars().all(|c| c.is_ascii_hexdigit()) {
        let g = u16::from_str_radix(&key[..4], 16).ok()?;
        let e = u16::from_str_radix(&key[4..], 16).ok()?;
        return by_tag(Tag(g, e));
    }
    ATTRS.iter().find(|x| x.keyword.eq_ignore_ascii_case(key))
}

pub fn by_tag(tag: Tag) -> Option<&'static QueryAttr> {
    ATTRS.iter().find(|x| x.tag == tag)
}

/// The attributes a response carries by default at a level (PS3.18
/// table 10.6.3-3/4/5 and the C-FIND unique and required keys).
pub fn default_fields(level: Level) -> Vec<Tag> {
    let want: &[&str] = match level {
        Level::Patient => &[
            "PatientName",
            "PatientID",
            "PatientBirthDate",
            "PatientSex",
            "NumberOfPatientRelatedStudies",
            "NumberOfPatientRelatedSeries",
            "NumberOfPatientRelatedInstances",
        ],
        Level::Study => &[
            "StudyDate",
            "StudyTime",
            "AccessionNumber",
            "InstanceAvailability",
            "ModalitiesInStudy",
            "ReferringPhysicianName",
            "PatientName",
            "PatientID",
            "PatientBirthDate",
            "PatientSex",
            "StudyInstanceUID",
            "StudyID",
            "StudyDescription",
            "NumberOfStudyRelatedSeries",
            "NumberOfStudyRelatedInstances",
        ],
        Level::Series => &[
            "Modality",
            "SeriesInstanceUID",
            "SeriesNumber",
            "SeriesDescription",
            "NumberOfSeriesRelatedInstances",
            "StudyInstanceUID",
        ],
        Level::Instance => &[
            "SOPClassUID",
            "SOPInstanceUID",
            "InstanceNumber",
            "NumberOfFrames",
            "Rows",
            "Columns",
            "BitsAllocated",
            "TimezoneOffsetFromUTC",
            "InstanceAvailability",
            "AvailableTransferSyntaxUID",
            "StudyInstanceUID",
            "SeriesInstanceUID",
        ],
    };
    want.iter()
        .filter_map(|k| lookup(k).map(|a| a.tag))
        .collect()
}

/// Every attribute returnable at a level (`includefield=all`).
pub fn all_fields(level: Level) -> Vec<Tag> {
    ATTRS
        .iter()
        .filter(|a| returnable(a, level))
        .map(|a| a.tag)
        .collect()
}

/// Whether an attribute can be returned at a level: indexed attributes of
/// this level or above; computed ones (counts, ModalitiesInStudy) of this
/// level, and of the study and series above it, which their rows keep
/// (a patient's are summed over its studies, at patient level only).
pub fn returnable(a: &QueryAttr, level: Level) -> bool {
    a.level <= level && (a.column.is_some() || a.level == level || a.level > Level::Patient)
}

/// Most values a list matcher (`UID1\\UID2…`) may hold.
pub const MAX_LIST_VALUES: usize = 5_000;

/// Whether the dates or times a matcher of a DA or TM attribute names are
/// dates (YYYYMMDD, a real day) or times (HH, HHMM, HHMMSS, HHMMSS.FFFFFF,
/// colons allowed), a range's ends too: a value such as 20101301 or 25
/// matches nothing and is the query's mistake, refused (QIDO 400, C-FIND
/// 0xA900) rather than answered with no match. The error says the form.
///
/// A list is at most [`MAX_LIST_VALUES`] values long (40,000 UIDs failed
/// inside the database as "too many SQL variables").
pub fn check_values(attr: &QueryAttr, m: Option<&Matcher>) -> Result<(), &'static str> {
    if let Some(Matcher::List(values)) = m {
        if values.len() > MAX_LIST_VALUES {
            return Err("a list holds at most 5,000 values; split the query");
        }
    }
    let ok: fn(&str) -> bool = match attr.vr {
        VR::DA => is_date,
        VR::TM => is_time,
        _ => return Ok(()),
    };
    let valid = match m {
        None | Some(Matcher::Wildcard(_) | Matcher::Fuzzy(_)) => true,
        Some(Matcher::Exact(d)) => ok(d),
        Some(Matcher::List(ds)) => ds.iter().all(|d| ok(d)),
        Some(Matcher::Range(lo, hi)) => lo.iter().chain(hi.iter()).all(|d| ok(d)),
    };
    match (valid, attr.vr) {
        (true, _) => Ok(()),
        (false, VR::DA) => Err("a date is YYYYMMDD, a range YYYYMMDD-YYYYMMDD (either end may be left out)"),
        (false, _) => Err("a time is HH, HHMM, HHMMSS or HHMMSS.FFFFFF (00-23 hours, 00-59 minutes), a range two of them joined by '-' (either end may be left out)"),
    }
}

fn is_date(d: &str) -> bool {
    if d.len() != 8 || !d.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let n = |r: std::ops::Range<usize>| d[r].parse::<u32>().unwrap_or(0);
    let (y, m, day) = (n(0..4), n(4..6), n(6..8));
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&day)
}

fn is_time(t: &str) -> bool {
    let t: String = t.chars().filter(|c| *c != ':').collect();
    let (hms, frac) = match t.split_once('.') {
        Some((hms, f)) => (hms.to_string(), Some(f.to_string())),
        None => (t, None),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !digits(&hms) || !matches!(hms.len(), 2 | 4 | 6) {
        return false;
    }
    if let Some(f) = frac {
        if hms.len() != 6 || f.is_empty() || f.len() > 6 || !digits(&f) {
            return false;
        }
    }
    let n = |r: std::ops::Range<usize>| hms.get(r).map_or(0, |x| x.parse::<u32>().unwrap_or(99));
    n(0..2) <= 23 && n(2..4) <= 59 && n(4..6) <= 60
}

/// Turns a query key's value into a matcher; `None` is universal matching
/// (an empty value, or only `*`: "*" matches any value, a zero-length one
/// included, so `**`, what a viewer sends for an empty `*…*` search box,
/// matches absent values too). `fuzzy` applies to person names.
pub fn matcher(attr: &QueryAttr, value: &str, fuzzy: bool) -> Option<Matcher> {
    let v = value.trim_matches(|c: char| c == ' ' || c == '\0');
    if v.chars().all(|c| c == '*') {
        return None;
    }
    match attr.vr {
        VR::UI => {
            let list: Vec<String> = v
                .split(['\\', ','])
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            Some(if list.len() == 1 {
                Matcher::Exact(list.into_iter().next().unwrap_or_default())
            } else {
                Matcher::List(list)
            })
        }
        VR::DA | VR::TM | VR::DT if v.contains('-') => {
            let (lo, hi) = v.split_once('-').unwrap_or((v, ""));
            let clean = |s: &str| {
                let s: String = s.chars().filter(|c| *c != ':').collect();
                let s = s.trim().to_string();
                (!s.is_empty()).then_some(s)
            };
            let (lo, hi) = if attr.vr == VR::TM {
                (clean(lo).map(|t| earliest_form(&t)), clean(hi))
            } else {
                (
                    Some(lo.trim().to_string()).filter(|s| !s.is_empty()),
                    Some(hi.trim().to_string()).filter(|s| !s.is_empty()),
                )
            };
            Some(Matcher::Range(lo, hi))
        }
        VR::PN if fuzzy => Some(Matcher::Fuzzy(v.to_string())),
        _ if v.contains(['*', '?']) => Some(Matcher::Wildcard(v.to_string())),
        // Code strings cannot hold a comma (PS3.5 6.2): `CT,MR` is a list
        // as `CT\MR` is, as QIDO-RS clients written for Orthanc send it.
        VR::CS if v.contains([',', '\\']) => Some(Matcher::List(
            v.split([',', '\\'])
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
        )),
        _ if v.contains('\\') => Some(Matcher::List(v.split('\\').map(str::to_string).collect())),
        _ => Some(Matcher::Exact(v.to_string())),
    }
}

/// The shortest text of a time a lower range bound names: trailing zeros
/// of the fraction, then zero seconds and minutes, dropped
/// (`101500.000` → `1015`). Times are matched as stored text, and each
/// stored form (`1015`, `101500`, `101500.0`) sorts at or after this one,
/// as the instant it names does; `101500.000` sorted after all of them.
fn earliest_form(t: &str) -> String {
    let mut s = match t.split_once('.') {
        Some((hms, frac)) if !frac.trim_end_matches('0').is_empty() => {
            return format!("{hms}.{}", frac.trim_end_matches('0'))
        }
        Some((hms, _)) => hms.to_string(),
        None => t.to_string(),
    };
    while s.len() > 2 && s.ends_with("00") {
        s.truncate(s.len() - 2);
    }
    s
}

fn put(obj: &mut InMemDicomObject, attr: &QueryAttr, value: Option<String>) {
    let v = match value {
        Some(v) if attr.vr == VR::US => match v.parse::<u16>() {
            Ok(n) => PrimitiveValue::from(n),
            Err(_) => PrimitiveValue::Empty,
        },
        // Several values (ModalitiesInStudy, SOPClassesInStudy, a
        // multi-valued name) are one value each, in JSON and XML too; text
        // VRs hold a single value in which a backslash is a character.
        Some(v) if !matches!(attr.vr, VR::LT | VR::ST | VR::UT | VR::UR) && v.contains('\\') => {
            PrimitiveValue::Strs(v.split('\\').map(str::to_string).collect())
        }
        Some(v) => PrimitiveValue::from(v),
        None => PrimitiveValue::Empty,
    };
    obj.put(DataElement::new(attr.tag, attr.vr, v));
}

/// The value of an attribute in a match, as DICOM text.
pub fn value_of(m: &DicomMatch, tag: Tag) -> Option<String> {
    let s = &m.study;
    let r = m.series.as_ref();
    let i = m.instance.as_ref();
    let num = |n: Option<i64>| n.map(|n| n.to_string());
    let joined = |v: &Vec<String>| (!v.is_empty()).then(|| v.join("\\"));
    // The study's computed attributes below study level.
    let t = m.in_study.as_ref();
    Some(match tag {
        tags::PATIENT_NAME => s.patient_name.clone()?,
        tags::PATIENT_ID => s.patient_id.clone()?,
        tags::ISSUER_OF_PATIENT_ID => s.issuer_of_patient_id.clone()?,
        tags::PATIENT_BIRTH_DATE => s.patient_birth_date.clone()?,
        tags::PATIENT_SEX => s.patient_sex.clone()?,
        tags::NUMBER_OF_PATIENT_RELATED_STUDIES => num(m.studies)?,
        tags::NUMBER_OF_PATIENT_RELATED_SERIES => num(m.series_count)?,
        tags::NUMBER_OF_PATIENT_RELATED_INSTANCES => num(m.instances)?,
        tags::STUDY_INSTANCE_UID => (!s.study_uid.is_empty()).then(|| s.study_uid.clone())?,
        tags::STUDY_DATE => s.study_date.clone()?,
        tags::STUDY_TIME => s.study_time.clone()?,
        tags::ACCESSION_NUMBER => s.accession_number.clone()?,
        tags::MODALITIES_IN_STUDY => joined(t.map_or(&m.modalities, |t| &t.modalities))?,
        tags::SOP_CLASSES_IN_STUDY => joined(t.map_or(&m.sop_classes, |t| &t.sop_classes))?,
        tags::REFERRING_PHYSICIAN_NAME => s.referring_physician.clone()?,
        tags::STUDY_DESCRIPTION => s.study_description.clone()?,
        tags::STUDY_ID => s.study_id.clone()?,
        tags::NUMBER_OF_STUDY_RELATED_SERIES => num(t.map(|t| t.series).or(m.series_count))?,
        tags::NUMBER_OF_STUDY_RELATED_INSTANCES => num(t.map(|t| t.instances).or(m.instances))?,
        tags::SERIES_INSTANCE_UID => r?.series_uid.clone(),
        tags::MODALITY => r?.modality.clone()?,
        tags::SERIES_NUMBER => num(r?.series_number)?,
        tags::SERIES_DESCRIPTION => r?.series_description.clone()?,
        tags::NUMBER_OF_SERIES_RELATED_INSTANCES => num(m.instances)?,
        tags::SOP_INSTANCE_UID => i?.sop_uid.clone(),
        tags::SOP_CLASS_UID => i?.sop_class_uid.clone(),
        tags::INSTANCE_NUMBER => num(i?.instance_number)?,
        tags::NUMBER_OF_FRAMES => num(i?.num_frames)?,
        tags::ROWS => num(i?.num_rows)?,
        tags::COLUMNS => num(i?.num_columns)?,
        tags::BITS_ALLOCATED => num(i?.bits_allocated)?,
        tags::TIMEZONE_OFFSET_FROM_UTC => i?.timezone_offset.clone()?,
        tags::INSTANCE_AVAILABILITY => "ONLINE".to_string(),
        tags::AVAILABLE_TRANSFER_SYNTAX_UID => i?.transfer_syntax.clone(),
        _ => return None,
    })
}

/// A response dataset for a match with the given attributes (present but
/// empty when the archive has no value, as C-FIND requires for asked keys).
pub fn to_dataset(m: &DicomMatch, fields: &[Tag]) -> InMemDicomObject {
    let mut obj = InMemDicomObject::new_empty();
    for tag in fields {
        if let Some(attr) = by_tag(*tag) {
            put(&mut obj, attr, value_of(m, *tag));
        }
    }
    obj
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tester's C-FIND of 40,000 Study UIDs failed in the database
    /// ("too many SQL variables") and was answered as a store failure.
    #[test]
    fn long_lists_are_refused() {
        let uid = lookup("StudyInstanceUID").expect("known");
        let list = |n: usize| vec!["1.2.3"; n].join("\\");
        let check = |v: &str| check_values(uid, matcher(uid, v, false).as_ref());
        assert!(check(&list(MAX_LIST_VALUES)).is_ok());
        assert!(check(&list(MAX_LIST_VALUES + 1))
            .expect_err("too long")
            .contains("5,000"));
    }

    #[test]
    fn dates_and_times_are_checked() {
        let (date, time) = (
            lookup("StudyDate").expect("known"),
            lookup("StudyTime").expect("known"),
        );
        let check = |a, v: &str| check_values(a, matcher(a, v, false).as_ref()).is_ok();
        let cases: [(_, &[&str], &[&str]); 2] = [
            (
                date,
                &[
                    "20240229",
                    "20241231-",
                    "-20000101",
                    "19991231-20000101",
                    "*",
                ],
                &[
                    "20230229",
                    "20241301",
                    "20240431",
                    "2024",
                    "2024XX01",
                    "20240101-2024",
                ],
            ),
            (
                time,
                &[
                    "10",
                    "1015",
                    "101500",
                    "101500.123456",
                    "10:15",
                    "10:15:00",
                    "235960",
                    "0900-1000",
                    "-1015",
                ],
                &[
                    "25",
                    "ab",
                    "1060",
                    "101",
                    "101500.1234567",
                    "1015.5",
                    "0900-2400",
                ],
            ),
        ];
        for (attr, good, bad) in cases {
            for v in good {
                assert!(check(attr, v), "{v}");
            }
            for v in bad {
                assert!(!check(attr, v), "{v}");
            }
        }
        assert!(check(lookup("PatientID").expect("known"), "25"));
    }

    #[test]
    fn matchers_follow_ps3_4() {
        let name = lookup("PatientName").expect("known");
        assert_eq!(matcher(name, "", false), None);
        assert_eq!(matcher(name, "*", false), None);
        assert_eq!(matcher(name, "**", false), None);
        assert_eq!(
            matcher(name, "DOE*", false),
            Some(Matcher::Wildcard("DOE*".into()))
        );
        assert_eq!(
            matcher(name, "doe", true),
            Some(Matcher::Fuzzy("doe".into()))
        );
        let date = lookup("00080020").expect("by tag");
        assert_eq!(
            matcher(date, "20200101-", false),
            Some(Matcher::Range(Some("20200101".into()), None))
        );
        assert_eq!(
            matcher(date, "-20201231", false),
            Some(Matcher::Range(None, Some("20201231".into())))
        );
        let time = lookup("StudyTime").expect("known");
        assert_eq!(
            matcher(time, "08:00-10:30", false),
            Some(Matcher::Range(Some("08".into()), Some("1030".into())))
        );
        for (bound, want) in [
            ("101500.000-101600", "1015"),
            ("000000.0-000001", "00"),
            ("235900.000-", "2359"),
            ("101530.250-", "101530.25"),
            ("100000-", "10"),
        ] {
            let Some(Matcher::Range(Some(lo), _)) = matcher(time, bound, false) else {
                panic!("{bound}: not a range");
            };
            assert_eq!(lo, want, "{bound}");
        }
        let uid = lookup("StudyInstanceUID").expect("known");
        assert_eq!(
            matcher(uid, "1.2,1.3", false),
            Some(Matcher::List(vec!["1.2".into(), "1.3".into()]))
        );
        let modalities = lookup("ModalitiesInStudy").expect("known");
        for v in ["SEG,SR", "SEG\\SR", "SEG, SR"] {
            assert_eq!(
                matcher(modalities, v, false),
                Some(Matcher::List(vec!["SEG".into(), "SR".into()])),
                "{v}"
            );
        }
        let description = lookup("StudyDescription").expect("known");
        assert_eq!(
            matcher(description, "CT HEAD, WITHOUT CONTRAST", false),
            Some(Matcher::Exact("CT HEAD, WITHOUT CONTRAST".into()))
        );
    }
}
