//! STOW-RS (PS3.18 10.5): instances sent as multipart/related parts (or a
//! bare application/dicom body) are streamed one after another into the
//! archive; the answer lists what was stored and what failed and why.

use std::io;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use fulcrum_dicom::part10::parse_prelude;
use fulcrum_dicom::{status, DicomError, PendingInstance, StoreContext, StoredInstance};
use fulcrum_engine::StageBatch;
use futures::TryStreamExt;
use serde_json::{json, Map, Value};
use tokio::io::{AsyncRead, AsyncReadExt};
use tracing::{error, info};

use super::json::{sequence, strings};
use super::media::{dataset_format, DatasetFormat, MediaType};
use super::multipart::{self, BodyStream, MultipartError, MultipartReader, PartData};
use super::{ApiError, ApiResult, Base, Ctx};

/// How one part went.
enum PartResult {
    /// Read into memory, being stored by its own task.
    Running(tokio::task::JoinHandle<PartResult>),
    /// Read and stored, not yet committed.
    Staged(Box<PendingInstance>),
    Stored(StoredInstance),
    Failed {
        sop_class: Option<String>,
        sop_instance: Option<String>,
        reason: u16,
        /// Refused because the storage is full (the answer is then 507).
        full: bool,
    },
}

/// Bytes of a part kept to name the instance if it fails.
const TAP_LEN: usize = 16 * 1024;

/// Whether a part opens with a file meta element, explicit VR little
/// endian `(0002,xxxx)`, instead of the 128-byte preamble and `DICM`.
fn bare_meta(head: &[u8]) -> bool {
    head.len() >= 6
        && head[..2] == [0x02, 0x00]
        && head[4..6].iter().all(|b| b.is_ascii_uppercase())
}

/// pydicom's `dcmwrite` of a dataset built in memory (what
/// dicomweb-client's `store_instances` sends) writes the file meta group
/// without preamble and `DICM`. Such a part gets a zero preamble and
/// `DICM` in front; the meta and dataset bytes are stored as received.
async fn with_prefix<R: AsyncRead + Unpin>(mut src: R) -> io::Result<impl AsyncRead + Unpin> {
    let mut head = [0u8; 8];
    let mut got = 0;
    while got < head.len() {
        let n = src.read(&mut head[got..]).await?;
        if n == 0 {
            break;
        }
        got += n;
    }
    let mut first = Vec::with_capacity(132 + got);
    if bare_meta(&head[..got]) {
        first.extend_from_slice(&[0u8; 128]);
        first.extend_from_slice(b"DICM");
    }
    first.extend_from_slice(&head[..got]);
    Ok(io::Cursor::new(first).chain(src))
}

async fn store_one<R: AsyncRead + Unpin + Send>(
    ctx: &Ctx,
    src: R,
    sctx: &StoreContext,
) -> PartResult {
    let src = match with_prefix(src).await {
        Ok(s) => s,
        Err(e) => {
            info!(error = %e, "STOW-RS: reading a part failed");
            return PartResult::Failed {
                sop_class: None,
                sop_instance: None,
                reason: status::CANNOT_UNDERSTAND,
                full: false,
            };
        }
    };
    let mut head = Vec::new();
    let tap = tokio_util::io::InspectReader::new(src, |new: &[u8]| {
        let room = TAP_LEN.saturating_sub(head.len());
        head.extend_from_slice(&new[..new.len().min(room)]);
    });
    let staged = ctx.archive.stage_file(&ctx.tenant, tap, sctx).await;
    match staged {
        Ok(pending) => PartResult::Staged(Box::new(pending)),
        Err(e) => {
            let prelude = parse_prelude(&head, false).ok().flatten();
            failed(
                &e,
                prelude.as_ref().and_then(|p| p.sop_class_uid.clone()),
                prelude.and_then(|p| p.sop_instance_uid),
            )
        }
    }
}

fn failed(e: &DicomError, sop_class: Option<String>, sop_instance: Option<String>) -> PartResult {
    match e {
        DicomError::Engine(_) => error!(error = %e, "STOW-RS: storing an instance failed"),
        // The sender's fault (a client's log says it too): not a warning
        // to the operator, who was paged for every truncated upload.
        _ => {
            info!(error = %e, sop = sop_instance.as_deref().unwrap_or(""), "STOW-RS: instance refused")
        }
    }
    PartResult::Failed {
        sop_class,
        sop_instance,
        reason: e.status(),
        full: matches!(
            e,
            DicomError::Engine(fulcrum_engine::EngineError::NoSpace(_))
        ),
    }
}

/// Staged instances committed at once (they share group commits); a
/// request's first batch is committed only once its whole multipart body
/// proved well-formed, so a malformed small request stores nothing.
const COMMIT_BATCH: usize = 64;

/// Parts up to this size are read into memory and stored by tasks of
/// their own, so the CPU work of several parts (hashing, compression)
/// overlaps while the next part is read; bigger parts stream.
const PARALLEL_PART_MAX: usize = 8 * 1024 * 1024;

/// Parts being stored at once by their own tasks.
const MAX_RUNNING: usize = 16;

/// Waits for the oldest running parts until fewer than `max` run.
async fn limit_running(results: &mut [PartResult], max: usize) {
    loop {
        let running: Vec<usize> = results
            .iter()
            .enumerate()
            .filter(|(_, r)| matches!(r, PartResult::Running(_)))
            .map(|(i, _)| i)
            .collect();
        if running.len() < max {
            return;
        }
        let i = running[0];
        let slot = std::mem::replace(
            &mut results[i],
            PartResult::Failed {
                sop_class: None,
                sop_instance: None,
                reason: status::PROCESSING_FAILURE,
                full: false,
            },
        );
        if let PartResult::Running(h) = slot {
            results[i] = match h.await {
                Ok(r) => r,
                Err(e) => {
                    error!(error = %e, "STOW-RS: a store task failed");
                    PartResult::Failed {
                        sop_class: None,
                        sop_instance: None,
                        reason: status::PROCESSING_FAILURE,
                        full: false,
                    }
                }
            };
        }
    }
}

/// Reads one part and stores it: in a task of its own when it is small.
/// `size_hint` is the size of the part before (the parts of one request,
/// slices of a series, tend to be alike): room for that much is made at
/// once, so reading a part does not copy it again at each doubling of the
/// buffer.
async fn stage_part(
    ctx: &Ctx,
    results: &mut Vec<PartResult>,
    reader: &mut MultipartReader,
    sctx: &StoreContext,
    size_hint: &mut usize,
) {
    match reader.read_part(PARALLEL_PART_MAX, *size_hint).await {
        Err(e) => {
            info!(error = %e, "STOW-RS: reading a part failed");
            results.push(PartResult::Failed {
                sop_class: None,
                sop_instance: None,
                reason: status::CANNOT_UNDERSTAND,
                full: false,
            });
        }
        Ok(PartData::Whole(part)) => {
            *size_hint = part.len();
            limit_running(results, MAX_RUNNING).await;
            let (ctx, sctx) = (ctx.clone(), sctx.clone());
            results.push(PartResult::Running(tokio::spawn(async move {
                store_one(&ctx, io::Cursor::new(part), &sctx).await
            })));
        }
        Ok(PartData::Head(head)) => {
            *size_hint = head.len();
            let src = io::Cursor::new(head).chain(reader.body());
            results.push(store_one(ctx, src, sctx).await);
        }
    }
}

/// Commits every staged part, concurrently.
async fn commit_staged(results: &mut [PartResult]) {
    limit_running(results, 1).await;
    let mut pending = Vec::new();
    for (i, r) in results.iter_mut().enumerate() {
        if let PartResult::Staged(_) = r {
            let taken = std::mem::replace(
                r,
                PartResult::Failed {
                    sop_class: None,
                    sop_instance: None,
                    reason: status::PROCESSING_FAILURE,
                    full: false,
                },
            );
            if let PartResult::Staged(p) = taken {
                pending.push((i, p));
            }
        }
    }
    let refresh = pending.first().map(|(_, p)| p.refresher());
    let done = futures::future::join_all(pending.into_iter().map(|(i, p)| async move {
        let ids = (p.sop_class_uid().to_string(), p.sop_uid().to_string());
        (i, p.commit_only().await, ids)
    }))
    .await;
    // Studies instances left (re-sent under corrected UIDs) are refreshed
    // once each, after the whole batch.
    let left: std::collections::BTreeSet<&String> = done
        .iter()
        .filter_map(|(_, r, _)| r.as_ref().ok()?.left.as_ref())
        .collect();
    if let Some((archive, tenant)) = &refresh {
        for study in left {
            archive.refresh_left(tenant, study).await;
        }
    }
    for (i, res, (class, sop)) in done {
        results[i] = match res {
            Ok(stored) => PartResult::Stored(stored),
            Err(e) => failed(&e, Some(class), Some(sop)),
        };
    }
}

fn staged(results: &[PartResult]) -> usize {
    results
        .iter()
        .filter(|r| matches!(r, PartResult::Staged(_) | PartResult::Running(_)))
        .count()
}

pub(crate) async fn store(
    State(ctx): State<Ctx>,
    base: Base,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    run(ctx, base, headers, body, None).await
}

pub(crate) async fn store_in_study(
    State(ctx): State<Ctx>,
    Path(study): Path<String>,
    base: Base,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    run(ctx, base, headers, body, Some(study)).await
}

const HOW: &str = "send Part 10 instances as multipart/related; type=\"application/dicom\" (or one as application/dicom)";

/// How a STOW-RS body holds its instances.
enum StowBody {
    /// multipart/related with this boundary.
    Multipart(String),
    /// One application/dicom instance.
    Single,
}

/// The request's body form and answer format, or why it is refused
/// before its body is read.
fn check_request(headers: &HeaderMap) -> ApiResult<(StowBody, DatasetFormat)> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(MediaType::parse)
        .ok_or_else(|| {
            ApiError::unsupported_media(format!("missing or unreadable Content-Type: {HOW}"))
        })?;
    let accept = super::wado::accept_of(headers);
    let Some(format) = dataset_format(&accept, true) else {
        return Err(ApiError::not_acceptable(
            "STOW-RS answers are sent as application/dicom+json or application/dicom+xml",
        ));
    };
    match ct.essence.as_str() {
        "multipart/related" => {
            if let Some(t) = ct.param("type") {
                if !t.trim().eq_ignore_ascii_case("application/dicom") {
                    return Err(ApiError::unsupported_media(format!(
                        "STOW-RS of type {t:?} is not supported: {HOW}"
                    )));
                }
            }
            let boundary = multipart::boundary(&ct).ok_or_else(|| {
                ApiError::bad_request("the multipart Content-Type has no boundary parameter")
            })?;
            Ok((StowBody::Multipart(boundary.to_string()), format))
        }
        "application/dicom" => Ok((StowBody::Single, format)),
        other => Err(ApiError::unsupported_media(format!(
            "Content-Type {other} is not accepted: {HOW}"
        ))),
    }
}

/// Bytes of a refused request's body read and dropped before the answer.
const DRAIN_MAX: usize = 16 * 1024 * 1024;
/// How long a refused request's body is read for.
const DRAIN_FOR: std::time::Duration = std::time::Duration::from_secs(5);

/// Reads what a client is still sending of a refused request (at most
/// DRAIN_MAX bytes for DRAIN_FOR): answered before its body was read, the
/// connection was closed under the upload and the client saw a reset
/// instead of the 415 or 400 that says why.
async fn drain(body: Body) {
    let mut stream = body.into_data_stream();
    let mut read = 0usize;
    let _ = tokio::time::timeout(DRAIN_FOR, async {
        while let Some(Ok(b)) = futures::StreamExt::next(&mut stream).await {
            read += b.len();
            if read > DRAIN_MAX {
                break;
            }
        }
    })
    .await;
}

async fn run(
    ctx: Ctx,
    base: Base,
    headers: HeaderMap,
    body: Body,
    study: Option<String>,
) -> ApiResult<Response> {
    let (form, format) = match check_request(&headers) {
        Ok(checked) => checked,
        Err(e) => {
            drain(body).await;
            return Err(e);
        }
    };
    let stream: BodyStream = Box::pin(body.into_data_stream().map_err(io::Error::other));
    let mut results = Vec::new();
    // The parts staged for one commit share packs, written as they come.
    let mut sctx = StoreContext {
        study_uid: study.clone(),
        batch: Some(StageBatch::default()),
        ..StoreContext::default()
    };
    match form {
        StowBody::Multipart(boundary) => {
            let mut reader = MultipartReader::new(stream, &boundary);
            let mut committed_any = false;
            let mut size_hint = 0;
            loop {
                let part = match reader.next_part().await {
                    Ok(Some(p)) => p,
                    Ok(None) => break,
                    // Nothing committed yet: refuse the whole request (the
                    // staged parts are dropped, their data is garbage).
                    Err(e) if !committed_any => return Err(malformed(e)),
                    Err(e) => {
                        info!(error = %e, "STOW-RS: multipart body ends irregularly");
                        break;
                    }
                };
                let is_dicom = part
                    .content_type
                    .as_deref()
                    .map(|c| MediaType::parse(c).is_some_and(|m| m.essence == "application/dicom"))
                    .unwrap_or(true);
                if !is_dicom {
                    results.push(PartResult::Failed {
                        sop_class: None,
                        sop_instance: None,
                        reason: status::CANNOT_UNDERSTAND,
                        full: false,
                    });
                    continue;
                }
                stage_part(&ctx, &mut results, &mut reader, &sctx, &mut size_hint).await;
                if staged(&results) >= COMMIT_BATCH {
                    commit_staged(&mut results).await;
                    committed_any = true;
                    sctx.batch = Some(StageBatch::default());
                }
            }
            if results.is_empty() {
                return Err(ApiError::bad_request("the multipart body holds no parts"));
            }
        }
        StowBody::Single => {
            let reader = tokio_util::io::StreamReader::new(stream);
            sctx.batch = None; // one instance: its tail rides with the commit
            results.push(store_one(&ctx, reader, &sctx).await);
        }
    }
    commit_staged(&mut results).await;
    let stored = results
        .iter()
        .filter(|r| matches!(r, PartResult::Stored(_)))
        .count();
    info!(tenant = %ctx.tenant, stored, failed = results.len() - stored, "STOW-RS");
    Ok(answer(&base, study.as_deref(), results, format))
}

fn malformed(e: MultipartError) -> ApiError {
    match e {
        MultipartError::Io(e) => {
            info!(error = %e, "STOW-RS: reading the request failed");
            ApiError::bad_request("the request body could not be read")
        }
        e => ApiError::bad_request(e.to_string()),
    }
}

/// The STOW-RS response dataset and its status: 200 all stored, 202 some
/// failed, 409 none stored (PS3.18 10.5.3).
fn answer(
    base: &Base,
    study: Option<&str>,
    results: Vec<PartResult>,
    format: DatasetFormat,
) -> Response {
    let mut referenced = Vec::new();
    let mut all_full = true;
    let mut failed = Vec::new();
    let mut studies: Vec<String> = Vec::new();
    for r in results {
        match r {
            // `run` settles and commits every part before answering.
            PartResult::Staged(_) | PartResult::Running(_) => {}
            PartResult::Stored(s) => {
                let url = base.instance(&s.study_uid, &s.series_uid, &s.sop_uid);
                referenced.push(json!({
                    "00081150": strings("UI", &[&s.sop_class_uid]),
                    "00081155": strings("UI", &[&s.sop_uid]),
                    "00081190": strings("UR", &[&url]),
                }));
                if !studies.contains(&s.study_uid) {
                    studies.push(s.study_uid);
                }
            }
            PartResult::Failed {
                sop_class,
                sop_instance,
                reason,
                full,
            } => {
                all_full &= full;
                let mut item = Map::new();
                if let Some(c) = sop_class {
                    item.insert("00081150".into(), strings("UI", &[&c]));
                }
                if let Some(i) = sop_instance {
                    item.insert("00081155".into(), strings("UI", &[&i]));
                }
                item.insert("00081197".into(), json!({ "vr": "US", "Value": [reason] }));
                failed.push(Value::Object(item));
            }
        }
    }
    let code = match (referenced.is_empty(), failed.is_empty()) {
        (true, false) if all_full => StatusCode::INSUFFICIENT_STORAGE,
        (false, true) => StatusCode::OK,
        (false, false) => StatusCode::ACCEPTED,
        _ => StatusCode::CONFLICT,
    };
    let mut out = Map::new();
    let study = study
        .map(str::to_string)
        .or_else(|| match studies.as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        });
    if let Some(st) = &study {
        out.insert("00081190".into(), strings("UR", &[&base.study(st)]));
    }
    if !failed.is_empty() {
        out.insert("00081198".into(), sequence(failed));
    }
    if !referenced.is_empty() {
        out.insert("00081199".into(), sequence(referenced));
    }
    let (body, media) = match format {
        DatasetFormat::Json => (Value::Object(out).to_string(), "application/dicom+json"),
        DatasetFormat::Xml => (
            super::xml::document(&Value::Object(out)),
            "application/dicom+xml",
        ),
    };
    let mut res = (code, body).into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(media));
    res
}
