//! DICOMweb (PS3.18) on the archive: STOW-RS, QIDO-RS, WADO-RS (instances,
//! metadata, bulk data, frames, rendered images and thumbnails), WADO-URI
//! (`/wado`) and DELETE for administrators, with CORS for browser viewers. Routes are relative
//! to the service root; the caller nests them (e.g. under `/dicom-web`).

mod base;
mod delete;
mod encode;
mod errors;
mod fragments;
mod frames;
mod json;
// Public for the fuzz targets (`fuzz/`): pure parsers of request headers and bodies.
pub mod media;
pub mod multipart;
mod palette;
mod pixels;
mod qido;
mod render;
mod stow;
mod wado;
mod wado_uri;
mod xml;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{from_fn, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use fulcrum_dicom::Archive;
use tokio::sync::Semaphore;

use crate::S3Credentials;
pub(crate) use base::Base;
pub use base::ServedOn;
pub(crate) use errors::{ApiError, ApiResult};

/// What every handler works with.
#[derive(Clone)]
pub(crate) struct Ctx {
    pub archive: Archive,
    pub tenant: Arc<str>,
    pub admin: Arc<S3Credentials>,
    /// Bounds concurrent image decoding/encoding (CPU-heavy).
    pub render_slots: Arc<Semaphore>,
}

impl Ctx {
    /// A slot of `render_slots`, held while an image is decoded or encoded.
    pub(crate) async fn decode_slot(&self) -> ApiResult<tokio::sync::SemaphorePermit<'_>> {
        self.render_slots.acquire().await.map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is shutting down",
            )
        })
    }
}

/// The DICOMweb service for one tenant. `admin` guards DELETE (HTTP Basic
/// with the access key as user name and the secret key as password).
pub fn router(archive: Archive, tenant: String, admin: S3Credentials) -> Router {
    let ctx = Ctx {
        archive,
        tenant: tenant.into(),
        admin: Arc::new(admin),
        render_slots: Arc::new(Semaphore::new(2)),
    };
    const INSTANCE: &str = "/studies/{study}/series/{series}/instances/{instance}";
    Router::new()
        .route("/studies", get(qido::studies).post(stow::store))
        .route(
            "/studies/{study}",
            get(wado::study)
                .post(stow::store_in_study)
                .delete(delete::study),
        )
        .route("/studies/{study}/metadata", get(wado::study_metadata))
        .route(
            "/studies/{study}/thumbnail",
            get(frames::study_image::<true>),
        )
        .route(
            "/studies/{study}/rendered",
            get(frames::study_image::<false>),
        )
        .route("/studies/{study}/series", get(qido::study_series))
        .route("/studies/{study}/instances", get(qido::study_instances))
        .route(
            "/studies/{study}/series/{series}",
            get(wado::series).delete(delete::series),
        )
        .route(
            "/studies/{study}/series/{series}/metadata",
            get(wado::series_metadata),
        )
        .route(
            "/studies/{study}/series/{series}/thumbnail",
            get(frames::series_image::<true>),
        )
        .route(
            "/studies/{study}/series/{series}/rendered",
            get(frames::series_image::<false>),
        )
        .route(
            "/studies/{study}/series/{series}/instances",
            get(qido::series_instances),
        )
        .route(INSTANCE, get(wado::instance).delete(delete::instance))
        .route(
            &format!("{INSTANCE}/metadata"),
            get(wado::instance_metadata),
        )
        .route(
            &format!("{INSTANCE}/rendered"),
            get(frames::instance_rendered),
        )
        .route(
            &format!("{INSTANCE}/thumbnail"),
            get(frames::instance_thumbnail),
        )
        .route(
            &format!("{INSTANCE}/frames/{{frames}}"),
            get(frames::frames),
        )
        .route(
            &format!("{INSTANCE}/frames/{{frames}}/rendered"),
            get(frames::frame_image::<false>),
        )
        .route(
            &format!("{INSTANCE}/frames/{{frames}}/thumbnail"),
            get(frames::frame_image::<true>),
        )
        .route(
            &format!("{INSTANCE}/bulkdata/{{*path}}"),
            get(wado::bulkdata),
        )
        .route("/series", get(qido::all_series))
        .route("/instances", get(qido::all_instances))
        .route("/wado", get(wado_uri::retrieve))
        .fallback(not_found)
        .with_state(ctx.clone())
        .layer(from_fn(cors))
        .layer(from_fn(accept_param))
        .layer(axum::middleware::from_fn_with_state(ctx, count))
}

/// Counts each request in fulcrum_requests_total{protocol="dicomweb"}, by
/// service (STOW, QIDO, WADO, metadata, frames, …) and status.
async fn count(
    axum::extract::State(ctx): axum::extract::State<Ctx>,
    req: Request,
    next: Next,
) -> Response {
    let op = operation(req.method(), req.uri().path());
    let res = next.run(req).await;
    if let Some(op) = op {
        ctx.archive
            .engine()
            .metrics()
            .request("dicomweb", op, res.status().as_str());
    }
    res
}

/// The DICOMweb service a request is for (None: a CORS preflight).
fn operation(method: &Method, path: &str) -> Option<&'static str> {
    let path = path.trim_end_matches('/');
    Some(match *method {
        Method::OPTIONS => return None,
        Method::POST => "STOW",
        Method::DELETE => "DELETE",
        _ if path.ends_with("/wado") => "WADO-URI",
        _ if path.ends_with("/metadata") => "metadata",
        _ if path.ends_with("/rendered") => "rendered",
        _ if path.ends_with("/thumbnail") => "thumbnail",
        _ if path.contains("/frames/") => "frames",
        _ if path.contains("/bulkdata/") => "bulkdata",
        _ if path.ends_with("/studies")
            || path.ends_with("/series")
            || path.ends_with("/instances") =>
        {
            "QIDO"
        }
        _ => "WADO",
    })
}

/// PS3.18 8.3.3.1: an `accept` query parameter takes the place of the
/// Accept header (links a browser follows, viewers that name the media
/// type in a BulkDataURI: `…/bulkdata/00420011?accept=application/pdf`).
async fn accept_param(mut req: Request, next: Next) -> Response {
    let asked: Vec<String> = form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .filter(|(k, _)| k.eq_ignore_ascii_case("accept"))
        .map(|(_, v)| v.into_owned())
        .collect();
    if !asked.is_empty() {
        match HeaderValue::from_str(&asked.join(", ")) {
            Ok(v) => {
                req.headers_mut().insert(header::ACCEPT, v);
            }
            Err(_) => {
                return ApiError::bad_request("accept: not a media type a header can carry")
                    .into_response()
            }
        }
    }
    next.run(req).await
}

async fn not_found() -> ApiError {
    ApiError::not_found(
        "no such DICOMweb resource (see PS3.18: /studies, /series, /instances, …/metadata, …/frames/{n})",
    )
}

const EXPOSED: &str =
    "Content-Type, Content-Length, Content-Location, Location, Warning, Content-Range, Accept-Ranges";
const ALLOWED_HEADERS: &str =
    "Authorization, Content-Type, Accept, Range, Cache-Control, X-Requested-With";

/// CORS for browser viewers (OHIF): any origin, preflights answered here.
async fn cors(req: Request, next: Next) -> Response {
    if req.method() == Method::OPTIONS {
        let mut res = StatusCode::NO_CONTENT.into_response();
        let h = res.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, HEAD, POST, DELETE, OPTIONS"),
        );
        let asked = req
            .headers()
            .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
            .filter(|v| v.to_str().map(|s| s.len() < 1024).unwrap_or(false))
            .cloned()
            .unwrap_or(HeaderValue::from_static(ALLOWED_HEADERS));
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked);
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        return res;
    }
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSED),
    );
    // Embeddable by a cross-origin-isolated page (OHIF served with
    // COOP/COEP shows a rendered PDF or video in an <object>/<video>,
    // which CORS alone does not let load).
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("cross-origin"),
    );
    res
}
