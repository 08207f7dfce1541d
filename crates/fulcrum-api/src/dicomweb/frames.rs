//! WADO-RS frames (the stored frame bytes, as multipart) and rendered
//! resources: a frame or instance as JPEG/PNG, and thumbnails of
//! instances, series and studies. Decoding runs on blocking threads, at
//! most two at a time.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use fulcrum_dicom::{InstanceRecord, Scope};

use super::encode::{encode, fit, Format};
use super::errors::join_error;
use super::media::range_covers;
use super::pixels::{load, read_frame, Loaded};
use super::render::{render, RenderError, Source, Spec};
use super::wado::{
    accept_of, frame_parts, instances_of, not_acceptable_pixels, octet_any, FrameTranscode,
};
use super::{ApiError, ApiResult, Ctx};

/// Most frames one request may name.
const MAX_FRAMES_PER_REQUEST: usize = 10_000;
/// Largest side of a thumbnail.
const THUMBNAIL: u32 = 128;

fn parse_frame_list(list: &str) -> ApiResult<Vec<u32>> {
    let nums: Vec<u32> = list
        .split(',')
        .map(|s| s.trim().parse::<u32>().ok().filter(|n| *n >= 1))
        .collect::<Option<_>>()
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "bad frame list {list:?}: expected numbers from 1, comma-separated"
            ))
        })?;
    if nums.len() > MAX_FRAMES_PER_REQUEST {
        return Err(ApiError::bad_request(
            "too many frames in one request (at most 10000)",
        ));
    }
    Ok(nums)
}

async fn instance_loaded(ctx: &Ctx, st: String, se: String, sop: String) -> ApiResult<Loaded> {
    let rec = instances_of(ctx, &Scope::Instance(st, se, sop))
        .await?
        .remove(0);
    load(ctx, rec).await
}

fn check_frames(l: &Loaded, nums: &[u32]) -> ApiResult<()> {
    if !l.has_pixels() {
        return Err(ApiError::not_found("the instance has no pixel data"));
    }
    let frames = l.geometry().frames;
    match nums.iter().find(|n| **n > frames) {
        Some(n) => Err(ApiError::bad_request(format!(
            "frame {n} does not exist: the instance has {frames} frame(s), numbered from 1"
        ))),
        None => Ok(()),
    }
}

pub(crate) async fn frames(
    State(ctx): State<Ctx>,
    Path((st, se, sop, list)): Path<(String, String, String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let nums = parse_frame_list(&list)?;
    let l = instance_loaded(&ctx, st, se, sop).await?;
    check_frames(&l, &nums)?;
    send_frames(ctx, l, nums, &accept_of(&headers)).await
}

/// Frames `nums` of an instance as parts: as stored when the client takes
/// their media type (or any octet-stream), else decoded to uncompressed
/// ones where this archive can (see `transcoding`), else 406.
pub(crate) async fn send_frames(
    ctx: Ctx,
    l: Loaded,
    nums: Vec<u32>,
    accept: &[super::media::MediaType],
) -> ApiResult<Response> {
    let (media, aliases, ts) = l.frame_media();
    let label = if super::media::accepts(accept, media, aliases, &ts) {
        media
    } else if l.encapsulated() && octet_any(accept, &ts) {
        "application/octet-stream"
    } else if let Some(decode) = transcoding(&l, &ts)
        .filter(|_| super::media::accepts(accept, "application/octet-stream", &[], EXPLICIT_LE))
    {
        // Uncompressed frames asked for (application/octet-stream, whose
        // default transfer syntax is Explicit VR Little Endian): grayscale
        // JPEG and any RLE frames are decoded for them.
        let media = (
            "application/octet-stream".to_string(),
            EXPLICIT_LE.to_string(),
        );
        return frame_parts(ctx, l, (nums, accept), media, Some(decode)).await;
    } else {
        return Err(not_acceptable_pixels(media, &ts));
    };
    frame_parts(ctx, l, (nums, accept), (label.to_string(), ts), None).await
}

/// Explicit VR Little Endian, the transfer syntax of uncompressed frames.
const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";

/// How this archive decodes frames when uncompressed ones are asked for:
/// JPEG (baseline, extended, lossless) of grayscale images, and RLE.
fn transcoding(l: &Loaded, ts: &str) -> Option<FrameTranscode> {
    let spec = Spec::of(&l.header);
    if !l.encapsulated() {
        return None;
    }
    if ts == RLE {
        return Some(Arc::new(move |frame: &[u8]| {
            fulcrum_dicom::decode::rle(frame, &spec.geometry()).map_err(|e| decode_error(e.into()))
        }));
    }
    (is_jpeg_family(ts) && spec.samples == 1 && spec.photometric.starts_with("MONOCHROME")).then(
        || -> FrameTranscode {
            Arc::new(|frame: &[u8]| super::render::jpeg_to_native(frame).map_err(decode_error))
        },
    )
}

fn decode_error(e: RenderError) -> ApiError {
    match e {
        RenderError::Unsupported(m) => ApiError::not_acceptable(m),
        RenderError::Corrupt(m) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the stored frame could not be decoded: {m}"),
        ),
    }
}

/// RLE Lossless.
const RLE: &str = "1.2.840.10008.1.2.5";

/// Query parameters of rendered resources (PS3.18 8.3.5.1).
#[derive(Debug, Clone)]
pub(crate) struct Rendering {
    pub format: Format,
    pub quality: u8,
    pub viewport: Option<(u32, u32)>,
    pub window: Option<(f64, f64)>,
}

fn numbers(name: &str, v: &str) -> ApiResult<Vec<f64>> {
    v.split(',')
        .take(2)
        .map(|s| s.trim().parse::<f64>().ok().filter(|f| f.is_finite()))
        .collect::<Option<Vec<_>>>()
        .filter(|v| v.len() == 2)
        .ok_or_else(|| ApiError::bad_request(format!("{name}={v:?}: expected two numbers")))
}

fn rendering(headers: &HeaderMap, raw: Option<&str>) -> ApiResult<Rendering> {
    let accept = accept_of(headers);
    let mut r = Rendering {
        format: Format::Jpeg,
        quality: 90,
        viewport: None,
        window: None,
    };
    for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        match k.to_ascii_lowercase().as_str() {
            "quality" => {
                r.quality = v
                    .trim()
                    .parse::<u8>()
                    .ok()
                    .filter(|q| (1..=100).contains(q))
                    .ok_or_else(|| ApiError::bad_request("quality must be 1 to 100"))?;
            }
            "viewport" => {
                let n = numbers("viewport", &v)?;
                if n[0] < 1.0 || n[1] < 1.0 {
                    return Err(ApiError::bad_request("viewport sizes must be positive"));
                }
                r.viewport = Some((n[0].min(65_535.0) as u32, n[1].min(65_535.0) as u32));
            }
            "window" => {
                let n = numbers("window", &v)?;
                r.window = Some((n[0], n[1].max(1.0)));
            }
            // accept (the Accept header by now: see accept_param),
            // annotation, charset, iccprofile …: accepted and ignored.
            _ => {}
        }
    }
    r.format = accept
        .iter()
        .find_map(|m| {
            let (range, _) = m.wanted();
            if range_covers(&range, "image/jpeg", &[]) {
                Some(Format::Jpeg)
            } else if range_covers(&range, "image/png", &[]) {
                Some(Format::Png)
            } else {
                None
            }
        })
        .ok_or_else(|| {
            ApiError::not_acceptable("rendered images are sent as image/jpeg or image/png")
        })?;
    Ok(r)
}

fn is_jpeg_family(ts: &str) -> bool {
    matches!(
        ts,
        "1.2.840.10008.1.2.4.50"
            | "1.2.840.10008.1.2.4.51"
            | "1.2.840.10008.1.2.4.57"
            | "1.2.840.10008.1.2.4.70"
    )
}

fn image(format: Format, bytes: Vec<u8>) -> Response {
    let mut res = bytes.into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.media_type()),
    );
    res
}

pub(crate) async fn render_frame(
    ctx: &Ctx,
    l: Loaded,
    n: u32,
    r: Rendering,
    max: Option<(u32, u32)>,
) -> ApiResult<Response> {
    if !l.has_pixels() {
        return Err(ApiError::not_acceptable(
            "the instance has no pixel data to render",
        ));
    }
    check_frames(&l, &[n])?;
    let ts = l.rec.transfer_syntax.clone();
    let rle = l.encapsulated() && ts == RLE;
    let jpeg = l.encapsulated() && !rle;
    if jpeg && !is_jpeg_family(&ts) {
        return Err(ApiError::not_acceptable(format!(
            "images in transfer syntax {ts} cannot be rendered by this archive (JPEG, RLE and \
             uncompressed only); retrieve the frames instead"
        )));
    }
    let spec = Spec::of(&l.header);
    let frame = read_frame(ctx, &l, n).await?;
    let limit = max.or(r.viewport);
    // Baseline JPEG as stored is already what was asked for.
    if jpeg
        && ts == "1.2.840.10008.1.2.4.50"
        && r.format == Format::Jpeg
        && limit.is_none()
        && r.window.is_none()
        && spec.photometric != "MONOCHROME1"
    {
        return Ok(image(Format::Jpeg, frame.to_vec()));
    }
    let _slot = ctx.decode_slot().await?;
    let format = r.format;
    let out = tokio::task::spawn_blocking(move || {
        let decoded = if rle {
            fulcrum_dicom::decode::rle(&frame, &spec.geometry())?
        } else {
            Vec::new()
        };
        let src = if jpeg {
            Source::Jpeg(&frame)
        } else if rle {
            Source::Native(&decoded)
        } else {
            Source::Native(&frame)
        };
        let img = render(&spec, src, r.window)?;
        let img = match limit {
            Some((w, h)) => fit(img, w, h),
            None => img,
        };
        encode(&img, format, r.quality)
    })
    .await
    .map_err(join_error)?;
    match out {
        Ok(bytes) => Ok(image(format, bytes)),
        Err(RenderError::Unsupported(m)) => Err(ApiError::not_acceptable(m)),
        Err(RenderError::Corrupt(m)) => {
            tracing::warn!(sop = %l.rec.sop_uid, error = %m, "DICOMweb: rendering failed");
            Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the stored pixel data could not be rendered: {m}"),
            ))
        }
    }
}

pub(crate) async fn instance_rendered(
    State(ctx): State<Ctx>,
    Path((st, se, sop)): Path<(String, String, String)>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let r = rendering(&headers, q.as_deref())?;
    let l = instance_loaded(&ctx, st, se, sop).await?;
    render_frame(&ctx, l, 1, r, None).await
}

pub(crate) async fn frame_rendered(
    State(ctx): State<Ctx>,
    Path((st, se, sop, list)): Path<(String, String, String, String)>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let r = rendering(&headers, q.as_deref())?;
    let nums = parse_frame_list(&list)?;
    let [n] = nums[..] else {
        return Err(ApiError::bad_request(
            "rendered frames are sent one at a time: name one frame",
        ));
    };
    let l = instance_loaded(&ctx, st, se, sop).await?;
    render_frame(&ctx, l, n, r, None).await
}

/// What a study or series is shown as: its representative image (the
/// middle frame of the middle one of its instances with pixels), rendered
/// at full size, or fitted in THUMBNAIL pixels for a thumbnail (unless a
/// viewport says otherwise).
async fn representative(
    ctx: Ctx,
    (headers, q): (HeaderMap, Option<String>),
    recs: Vec<InstanceRecord>,
    thumbnail: bool,
) -> ApiResult<Response> {
    let r = rendering(&headers, q.as_deref())?;
    let images: Vec<InstanceRecord> = recs.into_iter().filter(|r| r.num_rows.is_some()).collect();
    let Some(rec) = images.get(images.len() / 2).cloned() else {
        return Err(ApiError::not_acceptable("there is no image to render"));
    };
    let l = load(&ctx, rec).await?;
    let frame = l.geometry().frames.div_ceil(2).max(1);
    let max = thumbnail.then(|| r.viewport.unwrap_or((THUMBNAIL, THUMBNAIL)));
    render_frame(&ctx, l, frame, r, max).await
}

pub(crate) async fn instance_thumbnail(
    State(ctx): State<Ctx>,
    Path((st, se, sop)): Path<(String, String, String)>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let recs = instances_of(&ctx, &Scope::Instance(st, se, sop)).await?;
    representative(ctx, (headers, q), recs, true).await
}

/// A series' thumbnail (`THUMB`) or Rendered Series (PS3.18 10.4): its
/// representative image, as Orthanc and the viewers built on it (Stone's
/// series thumbnails) use it.
pub(crate) async fn series_image<const THUMB: bool>(
    State(ctx): State<Ctx>,
    Path((st, se)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let recs = instances_of(&ctx, &Scope::Series(st, se)).await?;
    representative(ctx, (headers, q), recs, THUMB).await
}

/// A study's thumbnail (`THUMB`) or Rendered Study: its representative
/// image.
pub(crate) async fn study_image<const THUMB: bool>(
    State(ctx): State<Ctx>,
    Path(st): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let recs = instances_of(&ctx, &Scope::Study(st)).await?;
    representative(ctx, (headers, q), recs, THUMB).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_lists() {
        assert_eq!(parse_frame_list("1,3, 2").expect("ok"), vec![1, 3, 2]);
        for bad in ["0", "", "1,,2", "x", "-1", "1.5"] {
            assert!(parse_frame_list(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rendering_follows_accept() {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_static("image/png"));
        assert_eq!(rendering(&h, None).expect("ok").format, Format::Png);
        h.insert(header::ACCEPT, HeaderValue::from_static("image/gif"));
        assert_eq!(
            rendering(&h, None).expect_err("406").status,
            StatusCode::NOT_ACCEPTABLE
        );
        assert!(rendering(&HeaderMap::new(), Some("quality=0")).is_err());
        let r = rendering(&HeaderMap::new(), Some("viewport=64,32&window=40,400")).expect("ok");
        assert_eq!(
            (r.viewport, r.window),
            (Some((64, 32)), Some((40.0, 400.0)))
        );
    }
}
