//! Fulcrum's imaging archive: DICOM instances stored byte-exact on the
//! engine with DICOM-aware chunking (header and pixel data apart), indexed
//! in the catalog for QIDO-RS and C-FIND, and served over DIMSE. DICOMweb's
//! HTTP layer lives in fulcrum-api and calls [`Archive`].

mod archive;
pub mod charset;
pub mod decode;
pub mod dimse;
mod error;
pub mod header_keys;
pub mod index;
pub mod jpeg2000;
pub mod jpegls;
mod kept;
pub mod part10;
pub mod query;
mod reindex;
pub mod scan;
mod store;
pub mod transcode;
pub mod unknown_vr;

pub use archive::{instance_key, Archive, ArchiveConfig, DICOM_BUCKET};
pub use error::{status, DicomError, DicomResult};
pub use fulcrum_catalog::dicom::{
    Column, DicomMatch, DicomQuery, DuplicatePolicy, InstanceRecord, Level, Matcher,
    ReindexOutcome, Scope, SeriesRecord, StudyRecord, MAX_RESULTS,
};
pub use store::{
    inspect_file, parse_dataset, parse_dataset_within, Inspected, Outcome, PendingInstance,
    StoreContext, StoredInstance,
};
