//! DELETE of a study, series or instance (PS3.18 "Delete" transaction of
//! the archive's administrators): HTTP Basic with the admin credentials.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use fulcrum_dicom::Scope;
use tracing::info;

use super::{ApiError, ApiResult, Ctx};

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether the request carries the administrator's Basic credentials.
fn authorized(ctx: &Ctx, headers: &HeaderMap) -> bool {
    let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some((scheme, token)) = v.trim().split_once(' ') else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return false;
    }
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(token.trim()) else {
        return false;
    };
    let Some(colon) = raw.iter().position(|b| *b == b':') else {
        return false;
    };
    let (user, pass) = (&raw[..colon], &raw[colon + 1..]);
    // Evaluate both so timing does not tell which one was wrong.
    let u = same(user, ctx.admin.access_key.as_bytes());
    let p = same(pass, ctx.admin.secret_key.as_bytes());
    u & p
}

fn unauthorized() -> Response {
    let mut res = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "deleting needs the administrator's credentials (HTTP Basic: access key and secret key)",
    )
    .into_response();
    res.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"fulcrum-dicomweb\", charset=\"UTF-8\""),
    );
    res
}

async fn delete(ctx: Ctx, headers: HeaderMap, scope: Scope, what: String) -> ApiResult<Response> {
    if !authorized(&ctx, &headers) {
        return Ok(unauthorized());
    }
    // The S3 header that lifts governance-mode retention (never compliance
    // mode or a legal hold); the request is already the administrator's.
    let bypass = headers
        .get("x-amz-bypass-governance-retention")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let gone = ctx.archive.delete(&ctx.tenant, &scope, bypass).await?;
    if gone == 0 {
        return Err(ApiError::not_found(format!("{what} not found")));
    }
    info!(tenant = %ctx.tenant, ?scope, instances = gone, "DICOMweb delete");
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) async fn study(
    State(ctx): State<Ctx>,
    Path(st): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let what = format!("study {st}");
    delete(ctx, headers, Scope::Study(st), what).await
}

pub(crate) async fn series(
    State(ctx): State<Ctx>,
    Path((st, se)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let what = format!("series {se} of study {st}");
    delete(ctx, headers, Scope::Series(st, se), what).await
}

pub(crate) async fn instance(
    State(ctx): State<Ctx>,
    Path((st, se, sop)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let what = format!("instance {sop} of series {se}");
    delete(ctx, headers, Scope::Instance(st, se, sop), what).await
}
