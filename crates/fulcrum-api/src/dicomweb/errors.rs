//! The one mapping from archive errors to DICOMweb HTTP answers. Clients
//! get a status and a short JSON message that says how to fix the request;
//! internals (paths, SQL, storage details) go to the log only.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use fulcrum_dicom::DicomError;
use fulcrum_engine::{CatalogError, EngineError};
use tracing::error;

/// An HTTP error answer: a status and a message safe to show to a client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn not_acceptable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_ACCEPTABLE, message)
    }

    pub fn unsupported_media(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, message)
    }

    fn internal(message: &str) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "status": self.status.as_u16(),
            "message": self.message,
        });
        let mut res = (self.status, body.to_string()).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        res
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match &e {
            EngineError::NoSuchKey { .. } => ApiError::not_found("the instance's data is gone"),
            EngineError::ShuttingDown => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is shutting down; retry on another node or later",
            ),
            EngineError::Corrupt(_) => {
                error!(error = %e, "DICOMweb: refusing to serve damaged data");
                ApiError::internal(
                    "stored data failed its integrity check; no bytes were returned \
                     (the operator can run fulcrum verify)",
                )
            }
            EngineError::Catalog(CatalogError::BadQuery(q)) => {
                ApiError::bad_request(format!("bad query: {q}"))
            }
            EngineError::Catalog(CatalogError::ObjectLocked { reason, .. }) => ApiError::new(
                StatusCode::CONFLICT,
                format!("not deleted: retention protects this data: {reason}"),
            ),
            EngineError::WrongStore(_) => {
                error!(error = %e, "DICOMweb: this node's pack store is not its catalog's");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "this node is misconfigured (its pack store and catalog are not one \
                     platform's, see its log); nothing was stored",
                )
            }
            EngineError::NoSpace(_) => {
                error!(error = %e, "DICOMweb: storage full");
                ApiError::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "the archive's storage is full; nothing was stored",
                )
            }
            _ => {
                error!(error = %e, "DICOMweb: storage failure");
                ApiError::internal("the archive could not complete the request; try again")
            }
        }
    }
}

impl From<DicomError> for ApiError {
    fn from(e: DicomError) -> Self {
        match e {
            DicomError::NotFound(what) => ApiError::not_found(format!("{what} not found")),
            DicomError::BadQuery(q) => ApiError::bad_request(format!("bad query: {q}")),
            e @ DicomError::MediaDirectory => ApiError::bad_request(e.to_string()),
            DicomError::Duplicate(uid) => ApiError::new(
                StatusCode::CONFLICT,
                format!("SOP Instance {uid} is already stored with different content"),
            ),
            DicomError::TooLarge(max) => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the instance is larger than the configured maximum of {max} bytes"),
            ),
            e @ DicomError::HeaderTooLarge { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, e.to_string())
            }
            DicomError::Engine(e) => e.into(),
            DicomError::Unconvertible(m) => ApiError::not_acceptable(m),
            e @ DicomError::Network(_) => {
                error!(error = %e, "DICOMweb: a DICOM peer failed");
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "a DICOM peer of the archive failed",
                )
            }
            // On the read paths these come from parsing what is stored:
            // the archive's problem, not the client's.
            e @ (DicomError::NotDicom(_)
            | DicomError::Malformed(_)
            | DicomError::Truncated(_)
            | DicomError::MissingAttribute(_)
            | DicomError::Mismatch(_)) => {
                error!(error = %e, "DICOMweb: a stored instance cannot be read");
                ApiError::internal("a stored instance could not be parsed")
            }
        }
    }
}

/// A blocking task that died (a panic in a codec): never the client's fault.
pub fn join_error(e: tokio::task::JoinError) -> ApiError {
    error!(error = %e, "DICOMweb: background task failed");
    ApiError::internal("the server could not complete the request")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_details_stay_out_of_messages() {
        let e: ApiError = DicomError::Malformed("at /var/lib/secret".into()).into();
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!e.message.contains("secret"));
        let e: ApiError = DicomError::NotFound("study 1.2.3".into()).into();
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        let e: ApiError = DicomError::BadQuery("x".into()).into();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }
}
