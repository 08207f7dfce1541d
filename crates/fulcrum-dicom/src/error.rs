//! Errors of the imaging archive, each with the DICOM status it maps to
//! (the failure reasons STOW-RS and C-STORE report are the same codes).

use fulcrum_engine::{CatalogError, EngineError};

pub type DicomResult<T> = Result<T, DicomError>;

#[derive(Debug, thiserror::Error)]
pub enum DicomError {
    #[error("not a DICOM file: {0}")]
    NotDicom(String),
    #[error("malformed DICOM: {0}")]
    Malformed(String),
    #[error("the instance is truncated: {0}")]
    Truncated(String),
    #[error("the instance has no {0}")]
    MissingAttribute(&'static str),
    /// A required attribute not within the header bytes read ahead to
    /// index an instance: an element before it is larger than that.
    #[error(
        "the instance's {what} is not within the first {cap} bytes of its data set, \
         which the archive reads to index it: it is absent, or behind elements that large"
    )]
    HeaderTooLarge { what: &'static str, cap: u64 },
    /// A DICOMDIR: the index of a CD, DVD or USB stick, not an instance
    /// (its SOP class, Media Storage Directory Storage, is no storage class).
    #[error(
        "a DICOMDIR (the directory of a storage medium), not an instance: \
         the files it lists are stored on their own"
    )]
    MediaDirectory,
    #[error("{0}")]
    Mismatch(String),
    #[error(
        "SOP Instance {0} is already stored with different content (duplicate policy: reject)"
    )]
    Duplicate(String),
    #[error("instance is larger than the configured maximum of {0} bytes")]
    TooLarge(u64),
    #[error("{0} not found")]
    NotFound(String),
    #[error("bad query: {0}")]
    BadQuery(String),
    #[error("storage failed: {0}")]
    Engine(EngineError),
    /// An instance that cannot be re-encoded in the transfer syntax asked
    /// for (see `transcode`).
    #[error("{0}")]
    Unconvertible(String),
    /// A DICOM network peer could not be reached or broke the protocol.
    #[error("DICOM network: {0}")]
    Network(String),
}

/// DICOM status codes (PS3.4 C.4.2.1.4, PS3.18 table 10.5.3-…).
pub mod status {
    pub const SUCCESS: u16 = 0x0000;
    pub const DUPLICATE: u16 = 0x0111;
    pub const PROCESSING_FAILURE: u16 = 0x0110;
    pub const SOP_CLASS_NOT_SUPPORTED: u16 = 0x0122;
    pub const OUT_OF_RESOURCES: u16 = 0xA700;
    pub const DOES_NOT_MATCH_SOP_CLASS: u16 = 0xA900;
    pub const CANNOT_UNDERSTAND: u16 = 0xC000;
}

impl DicomError {
    /// The failure status a store reports for this error.
    pub fn status(&self) -> u16 {
        match self {
            DicomError::NotDicom(_) | DicomError::Malformed(_) | DicomError::Truncated(_) => {
                status::CANNOT_UNDERSTAND
            }
            DicomError::MissingAttribute(_) | DicomError::Mismatch(_) => {
                status::DOES_NOT_MATCH_SOP_CLASS
            }
            DicomError::Duplicate(_) => status::DUPLICATE,
            DicomError::MediaDirectory => status::SOP_CLASS_NOT_SUPPORTED,
            DicomError::TooLarge(_) | DicomError::HeaderTooLarge { .. } => status::OUT_OF_RESOURCES,
            DicomError::Engine(EngineError::IncompleteBody { .. }) => status::CANNOT_UNDERSTAND,
            DicomError::Engine(_) => status::OUT_OF_RESOURCES,
            DicomError::NotFound(_)
            | DicomError::BadQuery(_)
            | DicomError::Network(_)
            | DicomError::Unconvertible(_) => status::PROCESSING_FAILURE,
        }
    }
}

impl From<EngineError> for DicomError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::TooLarge { max } => DicomError::TooLarge(max),
            EngineError::Catalog(CatalogError::DuplicateInstance(uid)) => {
                DicomError::Duplicate(uid)
            }
            EngineError::Catalog(CatalogError::BadQuery(q)) => DicomError::BadQuery(q),
            e => DicomError::Engine(e),
        }
    }
}

impl From<CatalogError> for DicomError {
    fn from(e: CatalogError) -> Self {
        DicomError::from(EngineError::Catalog(e))
    }
}
