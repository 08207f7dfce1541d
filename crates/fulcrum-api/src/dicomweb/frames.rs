//! WADO-RS frames (the stored frame bytes, as multipart) and rendered
//! resources: a frame or instance as JPEG/PNG, and thumbnails of
//! instances, series and studies. Decoding runs on blocking threads, at
//! most two at a time.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use fulcrum_dicom::{InstanceRecord, Scope};

use super::encode::{crop, encode, fit, scale_to, Crop, Format};
use super::errors::join_error;
use super::media::range_covers;
use super::pixels::{bad_frame, load, read_frame, Header, Loaded};
use super::render::{render, RenderError, Source, Spec, VoiFunction, Window};
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
    load(ctx, rec, Header::Stored).await
}

fn check_frames(l: &Loaded, nums: &[u32]) -> ApiResult<()> {
    if !l.has_pixels() {
        return Err(ApiError::not_found("the instance has no pixel data"));
    }
    let frames = l.geometry().frames;
    match nums.iter().find(|n| **n > frames) {
        Some(n) => Err(bad_frame(*n, frames)),
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
    // A video's frames are one stream, sent once.
    let nums = if l.is_video() { vec![1] } else { nums };
    send_frames(ctx, l, (nums, &accept_of(&headers), false)).await
}

/// Frames `nums` of an instance as parts: as stored when the client takes
/// their media type (or any octet-stream), else decoded to uncompressed
/// ones where this archive can (see `transcoding`), else 406. `value`:
/// they are a bulk data value, sent as one part when decoded and asked
/// for single-part.
pub(crate) async fn send_frames(
    ctx: Ctx,
    l: Loaded,
    (nums, accept, value): (Vec<u32>, &[super::media::MediaType], bool),
) -> ApiResult<Response> {
    let (media, aliases, ts) = l.frame_media();
    // Compressed frames without a media type of their own (a private or
    // newer syntax) are octet-streams with their transfer syntax named: a
    // plain `application/octet-stream` asks for uncompressed ones.
    let plain_octets = |m: &&super::media::MediaType| {
        l.encapsulated() && m.wanted() == ("application/octet-stream".into(), None)
    };
    let named: Vec<_> = accept
        .iter()
        .filter(|m| !plain_octets(m))
        .cloned()
        .collect();
    let label = if super::media::accepts(&named, media, aliases, &ts) {
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
        return frame_parts(ctx, l, (nums, accept, value), media, Some(decode)).await;
    } else {
        return Err(not_acceptable_pixels(media, &ts));
    };
    frame_parts(ctx, l, (nums, accept, value), (label.to_string(), ts), None).await
}

/// Explicit VR Little Endian, the transfer syntax of uncompressed frames.
const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";

/// How this archive decodes frames when uncompressed ones are asked for:
/// JPEG (baseline, extended, lossless) and JPEG 2000 of grayscale images,
/// RLE, and Deflated Image Frame Compression.
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
    if ts == DEFLATED_FRAMES {
        return Some(Arc::new(move |frame: &[u8]| {
            fulcrum_dicom::decode::deflated_frame(frame, &spec.geometry())
                .map_err(|e| decode_error(e.into()))
        }));
    }
    let ts = ts.to_string();
    (is_image_codec(&ts) && spec.samples == 1 && spec.photometric.starts_with("MONOCHROME")).then(
        || -> FrameTranscode {
            Arc::new(move |frame: &[u8]| {
                super::render::gray_to_native(&ts, frame, &spec.geometry()).map_err(decode_error)
            })
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

/// Deflated Image Frame Compression.
const DEFLATED_FRAMES: &str = "1.2.840.10008.1.2.8.1";

/// Query parameters of rendered resources (PS3.18 8.3.5.1).
#[derive(Debug, Clone)]
pub(crate) struct Rendering {
    pub format: Format,
    pub quality: u8,
    /// The viewport's size, vw,vh.
    pub viewport: Option<(u32, u32)>,
    /// Its source region sx,sy,sw,sh, each of which may be left out
    /// (the image's origin and the rest of its extent).
    pub region: Option<[Option<f64>; 4]>,
    pub window: Option<Window>,
}

/// The largest viewport, in pixels.
const MAX_VIEWPORT_PIXELS: f64 = 4096.0 * 4096.0;

/// The comma-separated values of `name`: `counts` says how many there may
/// be; an empty one is `None`.
fn values(name: &str, v: &str, counts: &[usize], form: &str) -> ApiResult<Vec<Option<f64>>> {
    let bad = || ApiError::bad_request(format!("{name}={v:?}: expected {form}"));
    let parts: Vec<&str> = v.split(',').map(str::trim).collect();
    if !counts.contains(&parts.len()) {
        return Err(bad());
    }
    parts
        .iter()
        .map(|p| match p.is_empty() {
            true => Ok(None),
            false => p
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .map(Some)
                .ok_or_else(bad),
        })
        .collect()
}

fn rendering(headers: &HeaderMap, raw: Option<&str>) -> ApiResult<Rendering> {
    let accept = accept_of(headers);
    let mut r = Rendering {
        format: Format::Jpeg,
        quality: 90,
        viewport: None,
        region: None,
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
                let n = values("viewport", &v, &[2, 6], "vw,vh or vw,vh,sx,sy,sw,sh")?;
                let (Some(vw), Some(vh)) = (n[0], n[1]) else {
                    return Err(ApiError::bad_request("viewport needs its width and height"));
                };
                if vw < 1.0 || vh < 1.0 {
                    return Err(ApiError::bad_request("viewport sizes must be positive"));
                }
                // A region is scaled up to the viewport: its size bounds
                // the image made for one request.
                if vw * vh > MAX_VIEWPORT_PIXELS {
                    return Err(ApiError::bad_request(format!(
                        "viewport={vw},{vh}: at most {MAX_VIEWPORT_PIXELS} pixels (4096x4096)"
                    )));
                }
                r.viewport = Some((vw.min(65_535.0) as u32, vh.min(65_535.0) as u32));
                if n.len() == 6 {
                    r.region = Some([n[2], n[3], n[4], n[5]]);
                }
            }
            "window" => {
                let parts: Vec<&str> = v.splitn(3, ',').collect();
                let n = values(
                    "window",
                    &parts[..parts.len().min(2)].join(","),
                    &[2],
                    "center,width[,function]",
                )?;
                let function = match parts.get(2) {
                    None => VoiFunction::Linear,
                    Some(f) => VoiFunction::parse(f).ok_or_else(|| {
                        ApiError::bad_request(format!(
                            "window function {f:?}: expected linear, linear-exact or sigmoid"
                        ))
                    })?,
                };
                let (Some(center), Some(width)) = (n[0], n[1]) else {
                    return Err(ApiError::bad_request("window needs its center and width"));
                };
                let least = if function == VoiFunction::Linear {
                    1.0
                } else {
                    f64::MIN_POSITIVE
                };
                if width < least {
                    return Err(ApiError::bad_request(
                        "the window width must be at least 1 (linear) or above 0",
                    ));
                }
                r.window = Some(Window {
                    center,
                    width,
                    function,
                });
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

/// The viewport's source region in the image's pixels: left out values
/// (and a zero width or height) are the image's origin and the rest of its
/// extent, clamped to the image; a negative width or
/// height runs left or up from sx or sy and mirrors the image (PS3.18
/// 8.3.5.1.2). A region outside the image is a bad request.
fn source_region([sx, sy, sw, sh]: [Option<f64>; 4], spec: &Spec) -> ApiResult<Crop> {
    let (cols, rows) = (f64::from(spec.cols), f64::from(spec.rows));
    let axis = |s: Option<f64>, len: Option<f64>, size: f64| {
        let s = s.unwrap_or(0.0);
        // Left out or zero: the rest of the image's extent.
        let len = len.filter(|l| *l != 0.0).unwrap_or(size - s);
        let (lo, hi, flip) = if len < 0.0 {
            (s + len, s, true)
        } else {
            (s, s + len, false)
        };
        let (lo, hi) = (lo.max(0.0).floor(), hi.min(size).ceil());
        (hi > lo).then_some((lo as u32, (hi - lo) as u32, flip))
    };
    match (axis(sx, sw, cols), axis(sy, sh, rows)) {
        (Some((x, w, flip_x)), Some((y, h, flip_y))) => Ok(Crop {
            x,
            y,
            w,
            h,
            flip_x,
            flip_y,
        }),
        _ => Err(ApiError::bad_request(format!(
            "the viewport's source region lies outside the {}x{} image",
            spec.cols, spec.rows
        ))),
    }
}

/// Whether images in `ts` can be rendered here: uncompressed (deflated
/// too), RLE, the JPEG family or JPEG 2000.
fn renders(ts: &str) -> bool {
    matches!(
        ts,
        "1.2.840.10008.1.2"
            | "1.2.840.10008.1.2.1"
            | "1.2.840.10008.1.2.1.99"
            | "1.2.840.10008.1.2.2"
    ) || ts == RLE
        || is_image_codec(ts)
}

/// Whether encapsulated frames in `ts` are images the decoders read into
/// pixels (JPEG family, JPEG 2000, JPEG-LS), as opposed to RLE (decoded to the
/// header's own layout) or what is not decoded here.
fn is_image_codec(ts: &str) -> bool {
    ts != RLE && fulcrum_dicom::decode::decodable(ts)
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
    if l.is_video() {
        return Err(ApiError::not_acceptable(format!(
            "a video has no still image here: the instance's /rendered ({}) is the video",
            l.frame_media().0
        )));
    }
    if jpeg && !is_image_codec(&ts) {
        return Err(ApiError::not_acceptable(format!(
            "images in transfer syntax {ts} cannot be rendered by this archive (JPEG, JPEG 2000, \
             RLE and uncompressed only); retrieve the frames instead"
        )));
    }
    let mut spec = Spec::of_frame(&l.header, n, l.big_endian());
    spec.float = matches!(l.pixel_tag, dicom_core::Tag(0x7FE0, 0x0008 | 0x0009));
    let region = r.region.map(|reg| source_region(reg, &spec)).transpose()?;
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
            Source::Compressed(&ts, &frame)
        } else if rle {
            Source::Native(&decoded)
        } else {
            Source::Native(&frame)
        };
        let img = render(&spec, src, r.window)?;
        let img = match (region, limit) {
            // A region is scaled to the viewport, up (zoomed in) or down.
            (Some(c), Some((w, h))) => scale_to(crop(&img, c), w, h),
            (_, Some((w, h))) => fit(img, w, h),
            (_, None) => img,
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
    let l = instance_loaded(&ctx, st, se, sop).await?;
    if l.is_video() {
        return rendered_video(&ctx, l, &headers).await;
    }
    // An encapsulated document's rendered form is the document (PS3.18
    // 8.3.5.1.3: application/pdf for an Encapsulated PDF).
    if let Some(mime) = super::wado::document_type(&l).filter(|_| !l.has_pixels()) {
        let accept = accept_of(&headers);
        if accept.is_empty() || super::media::accepts(&accept, &mime, &[], "") {
            let l = load(&ctx, l.rec, Header::Whole).await?;
            return super::wado::document(&ctx, &l, &mime).await;
        }
    }
    let r = rendering(&headers, q.as_deref())?;
    render_frame(&ctx, l, 1, r, None).await
}

/// A video's rendered form is its stream as stored (`video/mp4`,
/// `video/mpeg2`), as browser viewers (OHIF) ask for it; nothing else.
async fn rendered_video(ctx: &Ctx, l: Loaded, headers: &HeaderMap) -> ApiResult<Response> {
    let (media, aliases, ts) = l.frame_media();
    let accept = accept_of(headers);
    if !accept.is_empty() && !super::media::accepts(&accept, media, aliases, &ts) {
        return Err(ApiError::not_acceptable(format!(
            "a video is rendered as its stream, {media}"
        )));
    }
    // A browser's <video> seeks with Range requests: without 206 answers
    // it could not jump in a video, nor step through it.
    let range = super::pixels::ByteRange::of(headers);
    let (total, stream) = super::pixels::video_stream(ctx, &l, range.as_ref()).await?;
    let mut res = axum::body::Body::from_stream(stream).into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(media));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    match range.and_then(|r| r.within(total)) {
        Some(r) => {
            *res.status_mut() = axum::http::StatusCode::PARTIAL_CONTENT;
            let h = res.headers_mut();
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(r.end - r.start));
            if let Ok(v) =
                HeaderValue::from_str(&format!("bytes {}-{}/{total}", r.start, r.end - 1))
            {
                h.insert(header::CONTENT_RANGE, v);
            }
        }
        None => {
            res.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(total));
        }
    }
    Ok(res)
}

/// A frame rendered (`THUMB`: as a thumbnail, PS3.18 10.4.1.1.5).
pub(crate) async fn frame_image<const THUMB: bool>(
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
    let max = THUMB.then(|| r.viewport.unwrap_or((THUMBNAIL, THUMBNAIL)));
    render_frame(&ctx, l, n, r, max).await
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
    let mut images: Vec<InstanceRecord> =
        recs.into_iter().filter(|r| r.num_rows.is_some()).collect();
    // Of the images this archive can render, if there are any (a study of
    // CT slices and one JPEG XL secondary capture is shown by a CT slice).
    if images.iter().any(|r| renders(&r.transfer_syntax)) {
        images.retain(|r| renders(&r.transfer_syntax));
    }
    let Some(rec) = images.get(images.len() / 2).cloned() else {
        return Err(ApiError::not_acceptable("there is no image to render"));
    };
    let l = load(&ctx, rec, Header::Stored).await?;
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
            (r.viewport, r.region, r.window),
            (Some((64, 32)), None, Some(Window::linear(40.0, 400.0)))
        );
        let r = rendering(
            &HeaderMap::new(),
            Some("viewport=64,64,10,,-5,&window=40,400,SIGMOID"),
        )
        .expect("ok");
        assert_eq!(r.region, Some([Some(10.0), None, Some(-5.0), None]));
        assert_eq!(r.window.map(|w| w.function), Some(VoiFunction::Sigmoid));
        for bad in [
            "viewport=64",
            "viewport=64,64,0,0,64",
            "viewport=64,64,a,0,1,1",
            "window=40,0",
            "window=40,0.5",
            "window=40,400,cubic",
            "window=40",
        ] {
            let e = rendering(&HeaderMap::new(), Some(bad)).expect_err(bad);
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad}");
        }
        assert!(rendering(&HeaderMap::new(), Some("window=40,0.5,sigmoid")).is_ok());
        let spec = Spec::of(&dicom_object::InMemDicomObject::new_empty());
        let spec = Spec {
            rows: 100,
            cols: 80,
            ..spec
        };
        let region = |r| source_region(r, &spec);
        assert_eq!(
            region([Some(10.0), None, Some(-5.0), None]).expect("ok"),
            Crop {
                x: 5,
                y: 0,
                w: 5,
                h: 100,
                flip_x: true,
                flip_y: false
            }
        );
        assert_eq!(
            region([None, Some(90.0), Some(200.0), None]).expect("ok"),
            Crop {
                x: 0,
                y: 90,
                w: 80,
                h: 10,
                flip_x: false,
                flip_y: false
            }
        );
        assert!(region([Some(80.0), None, None, None]).is_err());
        assert_eq!(
            region([Some(70.0), None, Some(0.0), Some(0.0)])
                .expect("ok")
                .w,
            10
        );
        let e =
            rendering(&HeaderMap::new(), Some("viewport=65535,65535,0,0,1,1")).expect_err("huge");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(rendering(&HeaderMap::new(), Some("viewport=4096,4096")).is_ok());
    }
}
