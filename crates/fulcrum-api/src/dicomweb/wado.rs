//! WADO-RS retrieve (PS3.18 10.4): studies, series and instances as
//! multipart/related application/dicom (the stored bytes, streamed), their
//! metadata as DICOM JSON with BulkDataURIs, and the bulk data itself.
//! Instances go as stored unless the client names other transfer
//! syntaxes: then an instance is re-encoded in Explicit (or Implicit) VR
//! Little Endian when that is one of them (native data losslessly,
//! RLE/JPEG/JPEG-LS/JPEG 2000 frames decoded, see
//! `fulcrum_dicom::transcode`), and refused with 406 otherwise.

use std::io;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use dicom_dictionary_std::tags;
use fulcrum_dicom::{InstanceRecord, Scope};
use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;
use tracing::error;

use super::json::{bulk, dataset, find_bulk, parse_tag, strings, tag_key, Bulk};
use super::media::{accept_list, accepts, dataset_format, range_covers, DatasetFormat, MediaType};
use super::multipart::{content_type, new_boundary, response_body, OutBody, OutPart};
use super::pixels::{load, load_many, read_frame, Header, Loaded, EXPLICIT_LE};
use super::{xml, ApiError, ApiResult, Base, Ctx};

pub(crate) fn accept_of(headers: &HeaderMap) -> Vec<MediaType> {
    accept_list(
        headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    )
}

/// The instances of a scope, or 404.
pub(crate) async fn instances_of(ctx: &Ctx, scope: &Scope) -> ApiResult<Vec<InstanceRecord>> {
    let recs = ctx.archive.instances(&ctx.tenant, scope).await?;
    if recs.is_empty() {
        return Err(ApiError::not_found(match scope {
            Scope::Study(st) => format!("study {st} not found"),
            Scope::Series(_, se) => format!("series {se} not found in this study"),
            Scope::Instance(_, _, sop) => format!("instance {sop} not found in this series"),
        }));
    }
    Ok(recs)
}

pub(crate) fn engine_io(e: fulcrum_engine::EngineError) -> io::Error {
    error!(error = %e, "DICOMweb: reading stored bytes failed mid-response");
    io::Error::other("stored data could not be read")
}

fn multipart_response(part_type: &str, parts: BoxStream<'static, io::Result<OutPart>>) -> Response {
    let boundary = new_boundary();
    let ct = content_type(&boundary, part_type);
    let mut res = response_body(boundary, parts).into_response();
    if let Ok(v) = HeaderValue::from_str(&ct) {
        res.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    res
}

/// True when the client takes only single-part answers: it names media
/// types, none of them multipart/related or `*/*` (`Accept:
/// application/dicom`, `image/jpeg`, `application/octet-stream`…). PS3.18
/// lets one instance, one frame or one bulk data value be sent so.
fn single_part(accept: &[MediaType]) -> bool {
    !accept.is_empty()
        && accept
            .iter()
            .all(|m| m.essence != "multipart/related" && m.essence != "*/*")
}

/// One part as the whole response, or as a multipart/related of one part.
fn one_part(accept: &[MediaType], part: OutPart) -> Response {
    if !single_part(accept) {
        let essence = part
            .content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        return multipart_response(&essence, stream::once(async move { Ok(part) }).boxed());
    }
    let mut res = axum::body::Body::from_stream(part.body).into_response();
    if let Ok(v) = HeaderValue::from_str(&part.content_type) {
        res.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    res
}

/// `parts` as a multipart/related response of `part_type`; when they are
/// `lone` (one instance, one frame) and the client takes only single-part
/// answers, the one part as the whole response.
async fn parts_response(
    accept: &[MediaType],
    lone: bool,
    part_type: &str,
    mut parts: BoxStream<'static, io::Result<OutPart>>,
) -> ApiResult<Response> {
    if lone && single_part(accept) {
        if let Some(part) = parts.next().await {
            let part = part.map_err(|e| {
                ApiError::new(
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    format!("reading the stored data failed: {e}"),
                )
            })?;
            return Ok(one_part(accept, part));
        }
    }
    Ok(multipart_response(part_type, parts))
}

/// Native syntaxes an instance is re-encoded in when the client does not
/// take the stored one, in order of preference.
const SENT_INSTEAD: [&str; 2] = [EXPLICIT_LE, "1.2.840.10008.1.2"];

/// The syntax `rec` is sent in: `None` for the stored one, or the one it
/// is converted to. The client's preferences (`accept`, highest weight
/// first) are taken in order: the first that the stored syntax meets
/// (none named, `*`, or that one), or that it can be converted to, wins
/// (a lower-weight `*` after a syntax asked for took over). An error says
/// what was asked and what is stored.
fn sent_as(accept: &[MediaType], rec: &InstanceRecord) -> ApiResult<Option<&'static str>> {
    let stored = rec.transfer_syntax.as_str();
    for m in accept {
        let (range, want) = m.wanted();
        if !range_covers(&range, "application/dicom", &[]) {
            continue;
        }
        match want.map(str::trim) {
            None | Some("*") => return Ok(None),
            Some(t) if t == stored => return Ok(None),
            Some(t) => {
                if let Some(to) = SENT_INSTEAD
                    .into_iter()
                    .find(|to| *to == t && fulcrum_dicom::transcode::convertible(stored, to))
                {
                    return Ok(Some(to));
                }
            }
        }
    }
    Err(ApiError::not_acceptable(format!(
        "instance {} is stored in transfer syntax {stored}, which cannot be converted to the ones \
         asked for (this archive converts to Explicit or Implicit VR Little Endian): ask for \
         multipart/related; type=\"application/dicom\"; transfer-syntax=* (or that syntax)",
        rec.sop_uid
    )))
}

async fn retrieve(ctx: Ctx, base: Base, headers: HeaderMap, scope: Scope) -> ApiResult<Response> {
    let recs = instances_of(&ctx, &scope).await?;
    let accept = accept_of(&headers);
    let mut convert = std::collections::HashMap::new();
    for r in &recs {
        if let Some(to) = sent_as(&accept, r)? {
            convert.insert(r.sop_uid.clone(), to);
        }
    }
    let convert = std::sync::Arc::new(convert);
    let parts = eager_first(
        batches(recs),
        BATCHES_AHEAD,
        move |batch: Vec<InstanceRecord>| {
            let (ctx, base, convert) = (ctx.clone(), base.clone(), convert.clone());
            async move { batch_parts(&ctx, &base, batch, &convert).await }
        },
    )
    .await?;
    let lone = matches!(scope, Scope::Instance(..));
    parts_response(&accept, lone, "application/dicom", parts).await
}

/// Instances up to this size are read whole, in batches, before they are
/// sent; bigger ones stream on their own.
const PREFETCH_BYTES: u64 = 8 * 1024 * 1024;

/// A batch of small instances holds up to this many bytes: read with one
/// engine call, so instances stored together share ranged reads. Batches
/// of 16 MiB gave the same throughput once a server had run a while, but
/// the first retrieve in a process faulted in four times the read-ahead
/// buffers (BATCHES_AHEAD of them): a CT study's first WADO-RS 1,378 ->
/// 1,586 MB/s (medians of 8 fresh servers each).
const BATCH_BYTES: u64 = 4 * 1024 * 1024;

/// Splits the instances of a retrieve into batches: runs of small ones
/// (up to BATCH_BYTES), each large one alone.
fn batches(recs: Vec<InstanceRecord>) -> Vec<Vec<InstanceRecord>> {
    let mut out: Vec<Vec<InstanceRecord>> = Vec::new();
    // Bytes of the last batch while it still takes small instances.
    let mut open: Option<u64> = None;
    for rec in recs {
        let size = rec.size.max(0) as u64;
        let small = size <= PREFETCH_BYTES;
        match (open, out.last_mut()) {
            (Some(bytes), Some(last)) if small && bytes + size <= BATCH_BYTES => {
                open = Some(bytes + size);
                last.push(rec);
            }
            _ => {
                open = small.then_some(size);
                out.push(vec![rec]);
            }
        }
    }
    out
}

fn dicom_part(base: &Base, rec: &InstanceRecord, body: OutBody) -> OutPart {
    OutPart {
        content_type: format!("application/dicom; transfer-syntax={}", rec.transfer_syntax),
        location: Some(base.instance(&rec.study_uid, &rec.series_uid, &rec.sop_uid)),
        body,
    }
}

/// The parts of one batch: a large instance streams; small ones are read
/// together into memory; those in `convert` are re-encoded in the syntax
/// it gives them.
async fn batch_parts(
    ctx: &Ctx,
    base: &Base,
    batch: Vec<InstanceRecord>,
    convert: &std::collections::HashMap<String, &'static str>,
) -> ApiResult<Vec<OutPart>> {
    if batch.iter().any(|r| convert.contains_key(&r.sop_uid)) {
        let mut out = Vec::with_capacity(batch.len());
        for rec in batch {
            match convert.get(&rec.sop_uid) {
                Some(to) => {
                    let file = ctx.archive.transcoded_file(&ctx.tenant, &rec, to).await?;
                    out.push(OutPart {
                        content_type: format!("application/dicom; transfer-syntax={to}"),
                        location: Some(base.instance(
                            &rec.study_uid,
                            &rec.series_uid,
                            &rec.sop_uid,
                        )),
                        body: stream::iter([Ok(Bytes::from(file))]).boxed(),
                    });
                }
                None => out.extend(Box::pin(batch_parts(ctx, base, vec![rec], convert)).await?),
            }
        }
        return Ok(out);
    }
    if let [rec] = &batch[..] {
        if rec.size.max(0) as u64 > PREFETCH_BYTES {
            let s = ctx
                .archive
                .read(&ctx.tenant, rec, 0, rec.size as u64)
                .await?;
            return Ok(vec![dicom_part(base, rec, s.map_err(engine_io).boxed())]);
        }
    }
    let mut pieces: Vec<Vec<Bytes>> = vec![Vec::new(); batch.len()];
    let mut s = ctx.archive.read_many(&ctx.tenant, &batch).await?;
    while let Some((i, b)) = s
        .try_next()
        .await
        .map_err(|e| ApiError::from(fulcrum_dicom::DicomError::from(e)))?
    {
        if let Some(p) = pieces.get_mut(i) {
            p.push(b);
        }
    }
    Ok(batch
        .iter()
        .zip(pieces)
        .map(|(rec, p)| dicom_part(base, rec, stream::iter(p.into_iter().map(Ok)).boxed()))
        .collect())
}

pub(crate) async fn study(
    State(ctx): State<Ctx>,
    Path(st): Path<String>,
    base: Base,
    headers: HeaderMap,
) -> ApiResult<Response> {
    retrieve(ctx, base, headers, Scope::Study(st)).await
}

pub(crate) async fn series(
    State(ctx): State<Ctx>,
    Path((st, se)): Path<(String, String)>,
    base: Base,
    headers: HeaderMap,
) -> ApiResult<Response> {
    retrieve(ctx, base, headers, Scope::Series(st, se)).await
}

pub(crate) async fn instance(
    State(ctx): State<Ctx>,
    Path((st, se, sop)): Path<(String, String, String)>,
    base: Base,
    headers: HeaderMap,
) -> ApiResult<Response> {
    retrieve(ctx, base, headers, Scope::Instance(st, se, sop)).await
}

/// One instance's metadata: its header, Pixel Data as a BulkDataURI, and
/// the transfer syntax it is available in.
fn instance_json(base: &Base, l: &Loaded) -> Value {
    let r = &l.rec;
    let url = base.instance(&r.study_uid, &r.series_uid, &r.sop_uid);
    let mut extra = Vec::new();
    if l.has_pixels() {
        let uri = format!("{url}/bulkdata/{}", tag_key(l.pixel_tag));
        extra.push((l.pixel_tag, bulk(l.pixel_vr(), uri)));
    }
    for e in &l.left_out {
        let uri = format!("{url}/bulkdata/{}", tag_key(e.tag));
        extra.push((e.tag, bulk(&e.vr, uri)));
    }
    if l.header.get(tags::AVAILABLE_TRANSFER_SYNTAX_UID).is_none() {
        extra.push((
            tags::AVAILABLE_TRANSFER_SYNTAX_UID,
            strings("UI", &[&r.transfer_syntax]),
        ));
    }
    dataset(&l.header, Some(Bulk { instance_url: &url }), extra)
}

fn xml_part(doc: String) -> OutPart {
    OutPart {
        content_type: "application/dicom+xml; charset=utf-8".into(),
        location: None,
        body: stream::once(async move { Ok(Bytes::from(doc)) }).boxed(),
    }
}

/// XML documents as the parts of a multipart/related answer.
pub(crate) fn xml_parts(docs: Vec<String>) -> Response {
    let parts = docs.into_iter().map(|d| Ok(xml_part(d)));
    multipart_response("application/dicom+xml", stream::iter(parts).boxed())
}

/// The metadata of a batch of instances, their headers read together.
async fn describe(ctx: &Ctx, base: &Base, batch: Vec<InstanceRecord>) -> ApiResult<Vec<Value>> {
    let loaded = load_many(ctx, batch, Header::Whole).await?;
    Ok(loaded.iter().map(|l| instance_json(base, l)).collect())
}

async fn metadata(ctx: Ctx, base: Base, headers: HeaderMap, scope: Scope) -> ApiResult<Response> {
    let Some(format) = dataset_format(&accept_of(&headers), false) else {
        return Err(ApiError::not_acceptable(
            "metadata is sent as application/dicom+json or multipart/related; \
             type=\"application/dicom+xml\"",
        ));
    };
    // Headers are read a batch at a time (one read, one catalog query);
    // the first batch before answering, so a failure still gets a status.
    let mut recs = instances_of(&ctx, &scope).await?.into_iter();
    let mut batches = std::iter::from_fn(move || {
        let batch: Vec<InstanceRecord> = recs.by_ref().take(METADATA_BATCH).collect();
        (!batch.is_empty()).then_some(batch)
    });
    let Some(first) = batches.next() else {
        return Err(ApiError::not_found("nothing to describe"));
    };
    let first = describe(&ctx, &base, first).await?;
    let rest = stream::iter(batches)
        .map(move |batch| {
            let (ctx, base) = (ctx.clone(), base.clone());
            async move {
                describe(&ctx, &base, batch).await.map_err(|e| {
                    error!(error = %e.message, "DICOMweb: metadata failed mid-response");
                    io::Error::other(e.message)
                })
            }
        })
        .buffered(2);
    let all = stream::once(async move { Ok(first) })
        .chain(rest)
        .map_ok(|v| stream::iter(v.into_iter().map(Ok::<_, io::Error>)))
        .try_flatten();
    if format == DatasetFormat::Xml {
        let parts = all.map_ok(|v| xml_part(xml::document(&v)));
        return Ok(multipart_response("application/dicom+xml", parts.boxed()));
    }
    let body = all
        .enumerate()
        .map(|(i, v)| v.map(|v| Bytes::from(format!("{}{v}", if i == 0 { "[" } else { "," }))))
        .chain(stream::once(async { Ok(Bytes::from_static(b"]")) }));
    let mut res = axum::body::Body::from_stream(body).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/dicom+json"),
    );
    Ok(res)
}

pub(crate) async fn study_metadata(
    State(ctx): State<Ctx>,
    Path(st): Path<String>,
    base: Base,
    headers: HeaderMap,
) -> ApiResult<Response> {
    metadata(ctx, base, headers, Scope::Study(st)).await
}

pub(crate) async fn series_metadata(
    State(ctx): State<Ctx>,
    Path((st, se)): Path<(String, String)>,
    base: Base,
    headers: HeaderMap,
) -> ApiResult<Response> {
    metadata(ctx, base, headers, Scope::Series(st, se)).await
}

pub(crate) async fn instance_metadata(
    State(ctx): State<Ctx>,
    Path((st, se, sop)): Path<(String, String, String)>,
    base: Base,
    headers: HeaderMap,
) -> ApiResult<Response> {
    metadata(ctx, base, headers, Scope::Instance(st, se, sop)).await
}

/// The MIME Type of Encapsulated Document (0042,0012) of an instance
/// that holds one (lower case).
pub(crate) fn document_type(l: &Loaded) -> Option<String> {
    l.header
        .get(tags::MIME_TYPE_OF_ENCAPSULATED_DOCUMENT)
        .and_then(|e| e.to_str().ok())
        .map(|m| m.trim().to_ascii_lowercase())
        .filter(|m| m.contains('/'))
        .filter(|_| {
            l.header.get(tags::ENCAPSULATED_DOCUMENT).is_some()
                || l.left_out
                    .iter()
                    .any(|e| e.tag == tags::ENCAPSULATED_DOCUMENT)
        })
}

/// An encapsulated document (PDF, CDA, STL...) in its own type, as its
/// creator made it: WADO-URI's and /rendered's answer for one.
pub(crate) async fn document(ctx: &Ctx, l: &Loaded, mime: &str) -> ApiResult<Response> {
    let path = super::json::tag_key(tags::ENCAPSULATED_DOCUMENT);
    let body = bulk_value(ctx, l, &path, true).await?;
    let mut res = axum::body::Body::from_stream(body).into_response();
    if let Ok(v) = HeaderValue::from_str(mime) {
        res.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    // Shown in place, and saved under the instance's UID rather than
    // "rendered" (what a browser or OHIF named it).
    let ext = match mime {
        "application/pdf" => "pdf",
        "text/xml" | "application/xml" => "xml",
        "model/stl" => "stl",
        "model/obj" => "obj",
        "model/mtl" => "mtl",
        _ => "bin",
    };
    let disposition = format!("inline; filename=\"{}.{ext}\"", l.rec.sop_uid);
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        res.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(res)
}

/// The value a bulk data path names: a large element past a long
/// header's cut streams from where it is stored, the others come from the
/// parsed header. `as_document`: an Encapsulated Document as its creator
/// made it, without the pad byte an odd-length one gets (its length is
/// Encapsulated Document Length (0042,0015), PS3.3 C.24.2.1).
pub(crate) async fn bulk_value(
    ctx: &Ctx,
    l: &Loaded,
    path: &str,
    as_document: bool,
) -> ApiResult<BoxStream<'static, io::Result<Bytes>>> {
    let tag = parse_tag(path);
    let stated = l
        .header
        .get(tags::ENCAPSULATED_DOCUMENT_LENGTH)
        .and_then(|e| e.to_int::<u64>().ok());
    // Without a stated length (older objects omit it), a trailing NUL of a
    // PDF or a text document is the pad: neither ends with one.
    let textual = document_type(l)
        .is_some_and(|m| m == "application/pdf" || m.starts_with("text/") || m.ends_with("xml"));
    let keep = |len: u64, last_nul: bool| match stated {
        Some(n) if as_document && n <= len && len - n <= 1 => n,
        None if as_document && textual && last_nul && len.is_multiple_of(2) => len - 1,
        _ => len,
    };
    if let Some(e) = tag.and_then(|t| l.left_out.iter().find(|e| e.tag == t)) {
        let len = e.value.end - e.value.start;
        let last_nul = match len {
            _ if !(as_document && textual && stated.is_none()) => false,
            0 => false,
            _ => {
                let last = e.value.end - 1;
                let b = ctx
                    .archive
                    .read_bytes(&ctx.tenant, &l.rec, last, e.value.end)
                    .await?;
                b.first() == Some(&0)
            }
        };
        let end = e.value.start + keep(len, last_nul);
        let s = ctx
            .archive
            .read(&ctx.tenant, &l.rec, e.value.start, end)
            .await?;
        return Ok(s.map_err(engine_io).boxed());
    }
    let mut value = find_bulk(&l.header, path)
        .ok_or_else(|| ApiError::not_found(format!("no bulk data at {path}")))?;
    let last_nul = value.last() == Some(&0);
    value.truncate(keep(value.len() as u64, last_nul) as usize);
    Ok(stream::once(async move { Ok(Bytes::from(value)) }).boxed())
}

/// Bulk data named by a BulkDataURI: Pixel Data (native: the whole value;
/// encapsulated: one part per frame) or a large element of the header.
pub(crate) async fn bulkdata(
    State(ctx): State<Ctx>,
    Path((st, se, sop, path)): Path<(String, String, String, String)>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let rec = instances_of(&ctx, &Scope::Instance(st, se, sop))
        .await?
        .remove(0);
    let l = load(&ctx, rec, Header::Whole).await?;
    let accept = accept_of(&headers);
    let path = path.trim_matches('/').to_string();
    let is_pixels = parse_tag(&path).is_some_and(|t| t == l.pixel_tag) && l.has_pixels();
    if !is_pixels {
        // An encapsulated document (PDF, CDA, STL…) is also sent as its
        // own media type (PS3.18 8.7.3.5), for viewers that show it as it is.
        let document = parse_tag(&path)
            .filter(|t| *t == tags::ENCAPSULATED_DOCUMENT)
            .and_then(|_| document_type(&l));
        let (content_type, body) = if accepts(&accept, "application/octet-stream", &[], EXPLICIT_LE)
        {
            let body = bulk_value(&ctx, &l, &path, false).await?;
            ("application/octet-stream".to_string(), body)
        } else if let Some(m) = document.filter(|m| accepts(&accept, m, &[], EXPLICIT_LE)) {
            (m, bulk_value(&ctx, &l, &path, true).await?)
        } else {
            return Err(ApiError::not_acceptable(
                "bulk data is sent as application/octet-stream (an encapsulated document also as \
                     its MIME Type of Encapsulated Document)",
            ));
        };
        let part = OutPart {
            content_type,
            location: None,
            body,
        };
        return Ok(one_part(&accept, part));
    }
    if !l.encapsulated() {
        if !accepts(&accept, "application/octet-stream", &[], EXPLICIT_LE) {
            let (media, _, ts) = l.frame_media();
            return Err(not_acceptable_pixels(media, &ts));
        }
        return native_value(ctx, l, &accept).await;
    }
    // Encapsulated: its frames, as /frames sends them (decoded when
    // uncompressed ones are asked for and this archive can); a video's
    // one stream.
    let frames = match l.is_video() {
        true => vec![1],
        false => (1..=l.geometry().frames).collect::<Vec<_>>(),
    };
    super::frames::send_frames(ctx, l, (frames, &accept, true)).await
}

/// Native Pixel Data as one part: the stored value, little endian.
async fn native_value(ctx: Ctx, l: Loaded, accept: &[MediaType]) -> ApiResult<Response> {
    let ct = format!("application/octet-stream; transfer-syntax={EXPLICIT_LE}");
    let body = match (l.rec.pixel_offset, l.rec.pixel_len) {
        (Some(off), Some(len)) => {
            let (start, end) = (off.max(0) as u64, (off.max(0) + len.max(0)) as u64);
            if let Some(width) = l.big_endian_words() {
                let mut v = ctx
                    .archive
                    .read_bytes(&ctx.tenant, &l.rec, start, end)
                    .await?
                    .to_vec();
                for w in v.chunks_exact_mut(width) {
                    w.reverse();
                }
                stream::once(async move { Ok(Bytes::from(v)) }).boxed()
            } else {
                ctx.archive
                    .read(&ctx.tenant, &l.rec, start, end)
                    .await?
                    .map_err(engine_io)
                    .boxed()
            }
        }
        _ => {
            let v = match l.header.get(l.pixel_tag).map(|e| e.value()) {
                Some(dicom_core::value::Value::Primitive(v)) => super::json::le_bytes(v),
                _ => return Err(ApiError::not_found("the instance has no pixel data")),
            };
            stream::once(async move { Ok(Bytes::from(v)) }).boxed()
        }
    };
    let part = OutPart {
        content_type: ct,
        location: None,
        body,
    };
    Ok(one_part(accept, part))
}

/// `application/octet-stream; transfer-syntax=*` (or the stored syntax)
/// also takes compressed frames as they are stored.
pub(crate) fn octet_any(accept: &[MediaType], ts: &str) -> bool {
    accept.iter().any(|m| {
        let (range, want) = m.wanted();
        range == "application/octet-stream" && matches!(want, Some(t) if t == "*" || t == ts)
    })
}

pub(crate) fn not_acceptable_pixels(media: &str, ts: &str) -> ApiError {
    ApiError::not_acceptable(format!(
        "the pixel data is stored as {media} (transfer syntax {ts}) and this archive does not \
         transcode: accept multipart/related; type=\"{media}\" or type=\"*/*\""
    ))
}

/// Turns a stored frame into the one sent (a transcoding).
pub(crate) type FrameTranscode = std::sync::Arc<dyn Fn(&[u8]) -> ApiResult<Vec<u8>> + Send + Sync>;

/// Frames as parts, read one at a time as the client takes them, each
/// passed through `transcode` when given (on the blocking pool, holding a
/// decode slot as rendering does).
pub(crate) async fn frame_parts(
    ctx: Ctx,
    l: Loaded,
    (frames, accept, value): (Vec<u32>, &[MediaType], bool),
    (media, ts): (String, String),
    transcode: Option<FrameTranscode>,
) -> ApiResult<Response> {
    let lone = frames.len() == 1;
    if l.is_video() && transcode.is_none() {
        // One stream, streamed from storage.
        let part = OutPart {
            content_type: format!("{media}; transfer-syntax={ts}"),
            location: None,
            body: super::pixels::video_stream(&ctx, &l, None).await?.1,
        };
        return parts_response(
            accept,
            true,
            &media,
            stream::once(async move { Ok(part) }).boxed(),
        )
        .await;
    }
    // Bulk data (`value`) asked for as one part: decoded frames, one after
    // the other, are the uncompressed Pixel Data value.
    let joined = value && !lone && transcode.is_some() && single_part(accept);
    let l = std::sync::Arc::new(l);
    let part_ct = format!("{media}; transfer-syntax={ts}");
    let joined_ct = part_ct.clone();
    let parts = eager_first(frames, FRAMES_AHEAD, move |n| {
        let (ctx, l, ct, transcode) = (ctx.clone(), l.clone(), part_ct.clone(), transcode.clone());
        async move {
            let mut bytes = read_frame(&ctx, &l, n).await?;
            if let Some(f) = transcode {
                let _slot = ctx.decode_slot().await?;
                let f = f.clone();
                bytes = tokio::task::spawn_blocking(move || f(&bytes))
                    .await
                    .map_err(super::errors::join_error)??
                    .into();
            }
            Ok(vec![OutPart {
                content_type: ct,
                location: None,
                body: stream::once(async move { Ok(bytes) }).boxed(),
            }])
        }
    })
    .await?;
    if joined {
        let body = parts.map_ok(|p| p.body).try_flatten().boxed();
        let part = OutPart {
            content_type: joined_ct,
            location: None,
            body,
        };
        return Ok(one_part(accept, part));
    }
    parts_response(accept, lone, &media, parts).await
}

/// Instances whose headers a metadata request reads together.
pub(crate) const METADATA_BATCH: usize = 64;

/// Frames prepared ahead of the one being sent.
const FRAMES_AHEAD: usize = 4;

/// Batches of instances read ahead of the one being sent (each up to
/// BATCH_BYTES).
const BATCHES_AHEAD: usize = 4;

/// The parts of a response, made `ahead` items at a time: the first
/// item's before answering (so a failure still gets a proper status), the
/// rest as the client reads.
async fn eager_first<T, F, Fut>(
    items: Vec<T>,
    ahead: usize,
    make: F,
) -> ApiResult<BoxStream<'static, io::Result<OutPart>>>
where
    T: Send + 'static,
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ApiResult<Vec<OutPart>>> + Send + 'static,
{
    let mut items = items.into_iter();
    let Some(first) = items.next() else {
        return Ok(stream::empty().boxed());
    };
    let first = make(first).await?;
    // The next parts are prepared while earlier ones are sent: each in a
    // task of its own, so it goes on while the body of an earlier part is
    // written (the stream itself is polled only between parts).
    let rest = stream::iter(items)
        .map(move |item| tokio::spawn(make(item)))
        .buffered(ahead)
        .map(|joined| {
            joined.unwrap_or_else(|e| {
                error!(error = %e, "DICOMweb: a part's task failed");
                Err(ApiError::new(
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error while reading the instances",
                ))
            })
        })
        .flat_map(|r| match r {
            Ok(parts) => stream::iter(parts.into_iter().map(Ok).collect::<Vec<_>>()),
            Err(e) => {
                error!(error = %e.message, "DICOMweb: a part failed mid-response");
                stream::iter(vec![Err(io::Error::other(e.message))])
            }
        });
    Ok(stream::iter(first.into_iter().map(Ok)).chain(rest).boxed())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(size: u64) -> InstanceRecord {
        InstanceRecord {
            size: size as i64,
            ..Default::default()
        }
    }

    #[test]
    fn small_instances_batch_up_to_the_cap_and_large_ones_go_alone() {
        let q = BATCH_BYTES / 4;
        let big = PREFETCH_BYTES + 1;
        let sizes = [q, q, big, q, 2 * q, q, 2 * q, 0];
        let got: Vec<Vec<u64>> = batches(sizes.iter().map(|&s| rec(s)).collect())
            .iter()
            .map(|b| b.iter().map(|r| r.size as u64).collect())
            .collect();
        assert_eq!(
            got,
            vec![vec![q, q], vec![big], vec![q, 2 * q, q], vec![2 * q, 0],]
        );
    }
}
