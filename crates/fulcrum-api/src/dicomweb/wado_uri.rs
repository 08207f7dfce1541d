//! WADO-URI (PS3.18 chapter 9, the URI service): `GET /dicom-web/wado?
//! requestType=WADO&studyUID=…&seriesUID=…&objectUID=…`, what EMR links,
//! Weasis and cornerstone's `wadouri:` loader use. `contentType`
//! application/dicom sends the stored instance byte for byte (in its own
//! transfer syntax, as Orthanc and dcm4chee do: the archive does not
//! transcode); image/jpeg and image/png render one frame (`frameNumber`,
//! `rows`/`columns`, `windowCenter`/`windowWidth`, `imageQuality`). The
//! default is a JPEG of an image and the instance itself otherwise.
//! Parameters the archive cannot honour (`anonymize`, `region`,
//! presentation states) are refused, never silently ignored: a request for
//! a de-identified object must not get the original.

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use fulcrum_dicom::Scope;
use futures::TryStreamExt;

use super::encode::Format;
use super::frames::{render_frame, Rendering};
use super::media::MediaType;
use super::pixels::{load, Header};
use super::render::Window;
use super::wado::{document_type, engine_io, instances_of};
use super::{ApiError, ApiResult, Ctx};

/// What was asked for, from `contentType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wanted {
    Dicom,
    Image(Format),
    /// `*/*`, `image/*` or no `contentType`: the default for the object.
    Default,
    /// Another type: an encapsulated document's own (application/pdf for
    /// an Encapsulated PDF), if the instance holds one of that type.
    Document,
}

#[derive(Debug, Default)]
struct Request {
    study: String,
    series: String,
    object: String,
    content_types: Vec<MediaType>,
    transfer_syntax: Option<String>,
    frame: Option<u32>,
    rows: Option<u32>,
    columns: Option<u32>,
    window_center: Option<f64>,
    window_width: Option<f64>,
    quality: Option<u8>,
}

fn number<T: std::str::FromStr>(name: &str, v: &str) -> ApiResult<T> {
    v.trim()
        .parse::<T>()
        .map_err(|_| ApiError::bad_request(format!("{name}={v:?} is not a valid number")))
}

fn parse(raw: &str) -> ApiResult<Request> {
    let mut r = Request::default();
    let mut request_type = None;
    for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
        let v = v.trim().to_string();
        match k.to_ascii_lowercase().as_str() {
            "requesttype" => request_type = Some(v),
            "studyuid" => r.study = v,
            "seriesuid" => r.series = v,
            "objectuid" => r.object = v,
            "contenttype" => r
                .content_types
                .extend(super::media::accept_list(std::iter::once(v.as_str()))),
            "transfersyntax" => r.transfer_syntax = Some(v).filter(|v| !v.is_empty()),
            "framenumber" => {
                let n: u32 = number("frameNumber", &v)?;
                if n == 0 {
                    return Err(ApiError::bad_request("frameNumber counts from 1"));
                }
                r.frame = Some(n);
            }
            "rows" => r.rows = Some(number::<u32>("rows", &v)?.max(1)),
            "columns" => r.columns = Some(number::<u32>("columns", &v)?.max(1)),
            "windowcenter" => r.window_center = Some(number("windowCenter", &v)?),
            "windowwidth" => r.window_width = Some(number("windowWidth", &v)?),
            "imagequality" => {
                let q: u8 = number("imageQuality", &v)?;
                if !(1..=100).contains(&q) {
                    return Err(ApiError::bad_request("imageQuality must be 1 to 100"));
                }
                r.quality = Some(q);
            }
            "anonymize" if !v.is_empty() => {
                return Err(ApiError::bad_request(
                    "anonymize is not supported: this archive does not de-identify on retrieval",
                ))
            }
            "region" | "presentationuid" | "presentationseriesuid" if !v.is_empty() => {
                return Err(ApiError::bad_request(format!(
                    "{k} is not supported by this archive's WADO-URI service"
                )))
            }
            // charset, annotation: accepted and ignored (no burnt-in text).
            _ => {}
        }
    }
    match request_type.as_deref() {
        Some("WADO") => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "requestType={other:?}: only requestType=WADO is served"
            )))
        }
        None => return Err(ApiError::bad_request("requestType=WADO is required")),
    }
    for (name, v) in [
        ("studyUID", &r.study),
        ("seriesUID", &r.series),
        ("objectUID", &r.object),
    ] {
        if v.is_empty() {
            return Err(ApiError::bad_request(format!("{name} is required")));
        }
    }
    if r.window_center.is_some() != r.window_width.is_some() {
        return Err(ApiError::bad_request(
            "windowCenter and windowWidth go together",
        ));
    }
    if r.window_width.is_some_and(|w| w < 1.0) {
        return Err(ApiError::bad_request("windowWidth must be at least 1"));
    }
    Ok(r)
}

impl Request {
    /// The first content type asked for that the service can send.
    fn wanted(&self) -> ApiResult<Wanted> {
        if self.content_types.is_empty() {
            return Ok(Wanted::Default);
        }
        self.content_types
            .iter()
            .find_map(|m| match m.essence.as_str() {
                "application/dicom" => Some(Wanted::Dicom),
                "image/jpeg" => Some(Wanted::Image(Format::Jpeg)),
                "image/png" => Some(Wanted::Image(Format::Png)),
                "*/*" | "image/*" => Some(Wanted::Default),
                _ => None,
            })
            .map_or(Ok(Wanted::Document), Ok)
    }

    /// Whether `contentType` names this MIME type.
    fn names(&self, mime: &str) -> bool {
        self.content_types.iter().any(|m| m.essence == mime)
    }

    fn rendering(&self, format: Format) -> Rendering {
        let viewport = match (self.columns, self.rows) {
            (None, None) => None,
            (w, h) => Some((w.unwrap_or(u32::MAX), h.unwrap_or(u32::MAX))),
        };
        Rendering {
            format,
            quality: self.quality.unwrap_or(90),
            viewport,
            window: self
                .window_center
                .zip(self.window_width)
                .map(|(c, w)| Window::linear(c, w)),
            region: None,
        }
    }
}

pub(crate) async fn retrieve(State(ctx): State<Ctx>, RawQuery(q): RawQuery) -> ApiResult<Response> {
    let r = parse(q.as_deref().unwrap_or(""))?;
    let wanted = r.wanted()?;
    let rec = instances_of(
        &ctx,
        &Scope::Instance(r.study.clone(), r.series.clone(), r.object.clone()),
    )
    .await?
    .remove(0);
    let is_image = rec.num_rows.is_some();
    let format = match wanted {
        Wanted::Image(f) => Some(f),
        Wanted::Default if is_image => Some(Format::Jpeg),
        _ => None,
    };
    if let Some(format) = format {
        let l = load(&ctx, rec, Header::Stored).await?;
        return render_frame(&ctx, l, r.frame.unwrap_or(1), r.rendering(format), None).await;
    }
    if wanted == Wanted::Document {
        // An encapsulated document in its own type (PS3.18 9.1.2.1.5:
        // application/pdf for an Encapsulated PDF, text/xml for CDA).
        let l = load(&ctx, rec, Header::Whole).await?;
        let Some(mime) = document_type(&l).filter(|m| r.names(m)) else {
            return Err(ApiError::not_acceptable(
                "WADO-URI objects are sent as application/dicom, image/jpeg or image/png, and an \
                 encapsulated document also as its MIME Type of Encapsulated Document",
            ));
        };
        return super::wado::document(&ctx, &l, &mime).await;
    }
    if let Some(ts) = r.transfer_syntax.as_deref() {
        if ts != "*" && ts != rec.transfer_syntax {
            return Err(ApiError::not_acceptable(format!(
                "the instance is stored in transfer syntax {} and this archive does not \
                 transcode: leave transferSyntax out (or ask for that one)",
                rec.transfer_syntax
            )));
        }
    }
    let size = rec.size.max(0) as u64;
    let body = ctx.archive.read(&ctx.tenant, &rec, 0, size).await?;
    let mut res = Body::from_stream(body.map_err(engine_io)).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/dicom"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDS: &str = "requestType=WADO&studyUID=1.2&seriesUID=1.2.3&objectUID=1.2.3.4";

    #[test]
    fn parameters_follow_ps3_18_chapter_9() {
        let r = parse(&format!(
            "{IDS}&contentType=image%2Fpng&frameNumber=3&rows=64&windowCenter=40&windowWidth=400&imageQuality=70"
        ))
        .expect("valid");
        assert_eq!((r.frame, r.rows, r.columns), (Some(3), Some(64), None));
        assert_eq!(r.wanted().expect("png"), Wanted::Image(Format::Png));
        let render = r.rendering(Format::Png);
        assert_eq!(render.viewport, Some((u32::MAX, 64)));
        assert_eq!(render.window, Some(Window::linear(40.0, 400.0)));
        assert_eq!(render.quality, 70);
        let r = parse(&format!("{IDS}&contentType=image/gif,application/dicom")).expect("valid");
        assert_eq!(r.wanted().expect("dicom"), Wanted::Dicom);
        assert_eq!(
            parse(IDS).expect("valid").wanted().expect("default"),
            Wanted::Default
        );
    }

    #[test]
    fn bad_or_unhonourable_requests_are_refused() {
        for q in [
            "studyUID=1&seriesUID=2&objectUID=3".to_string(),
            "requestType=WADOX&studyUID=1&seriesUID=2&objectUID=3".to_string(),
            "requestType=WADO&studyUID=1&seriesUID=2".to_string(),
            format!("{IDS}&anonymize=yes"),
            format!("{IDS}&region=0,0,0.5,0.5"),
            format!("{IDS}&frameNumber=0"),
            format!("{IDS}&windowCenter=40"),
            format!("{IDS}&imageQuality=101"),
            format!("{IDS}&rows=abc"),
        ] {
            assert!(parse(&q).is_err(), "{q} was accepted");
        }
        // Any other type is an encapsulated document's, if the instance
        // holds one of that type (checked against the instance).
        let r = parse(&format!("{IDS}&contentType=application/pdf")).expect("parses");
        assert_eq!(r.wanted().expect("document"), Wanted::Document);
        assert!(r.names("application/pdf") && !r.names("text/xml"));
    }
}
