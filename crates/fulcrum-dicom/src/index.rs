//! Index rows from a parsed header: the study, series and instance
//! attributes the catalog matches on, read with dicom-rs.

use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use fulcrum_catalog::dicom::{InstanceAttrs, SeriesRecord, StudyRecord};

use crate::error::{DicomError, DicomResult};

/// What the index needs from one instance's header.
#[derive(Debug, Clone, Default)]
pub struct Extracted {
    pub study: StudyRecord,
    pub series: SeriesRecord,
    pub sop_class_uid: Option<String>,
    /// The SOP Instance UID and the instance row's other attributes.
    pub attrs: InstanceAttrs,
}

/// A text attribute, trimmed; `None` when absent or empty.
pub fn text(obj: &InMemDicomObject, tag: dicom_core::Tag) -> Option<String> {
    let e = obj.get(tag)?;
    // Elements written with VR UN (e.g. by converters that lost the VR)
    // hold the text as raw bytes.
    let s = if e.vr() == dicom_core::VR::UN {
        std::borrow::Cow::Owned(String::from_utf8_lossy(&e.to_bytes().ok()?).into_owned())
    } else {
        e.to_str().ok()?
    };
    let s = s.trim_matches(|c: char| c == ' ' || c == '\0');
    (!s.is_empty()).then(|| s.to_string())
}

fn int(obj: &InMemDicomObject, tag: dicom_core::Tag) -> Option<i64> {
    obj.get(tag)?.to_int::<i64>().ok()
}

/// Reads the index attributes; fails when a UID the archive needs is missing.
pub fn extract(obj: &InMemDicomObject) -> DicomResult<Extracted> {
    let study_uid = text(obj, tags::STUDY_INSTANCE_UID).ok_or(DicomError::MissingAttribute(
        "Study Instance UID (0020,000D)",
    ))?;
    let series_uid = text(obj, tags::SERIES_INSTANCE_UID).ok_or(DicomError::MissingAttribute(
        "Series Instance UID (0020,000E)",
    ))?;
    let sop_uid = text(obj, tags::SOP_INSTANCE_UID)
        .ok_or(DicomError::MissingAttribute("SOP Instance UID (0008,0018)"))?;
    Ok(Extracted {
        study: StudyRecord {
            study_uid: study_uid.clone(),
            patient_id: text(obj, tags::PATIENT_ID),
            issuer_of_patient_id: text(obj, tags::ISSUER_OF_PATIENT_ID),
            patient_name: text(obj, tags::PATIENT_NAME),
            patient_birth_date: text(obj, tags::PATIENT_BIRTH_DATE),
            patient_sex: text(obj, tags::PATIENT_SEX),
            study_date: text(obj, tags::STUDY_DATE),
            study_time: text(obj, tags::STUDY_TIME),
            accession_number: text(obj, tags::ACCESSION_NUMBER),
            referring_physician: text(obj, tags::REFERRING_PHYSICIAN_NAME),
            study_description: text(obj, tags::STUDY_DESCRIPTION),
            study_id: text(obj, tags::STUDY_ID),
        },
        series: SeriesRecord {
            series_uid,
            study_uid,
            modality: text(obj, tags::MODALITY),
            series_number: int(obj, tags::SERIES_NUMBER),
            series_description: text(obj, tags::SERIES_DESCRIPTION),
        },
        sop_class_uid: text(obj, tags::SOP_CLASS_UID),
        attrs: InstanceAttrs {
            sop_uid,
            instance_number: int(obj, tags::INSTANCE_NUMBER),
            num_frames: int(obj, tags::NUMBER_OF_FRAMES),
            num_rows: int(obj, tags::ROWS),
            num_columns: int(obj, tags::COLUMNS),
            bits_allocated: int(obj, tags::BITS_ALLOCATED),
            timezone_offset: text(obj, tags::TIMEZONE_OFFSET_FROM_UTC),
        },
    })
}
