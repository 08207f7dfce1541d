//! Additional checksums (`x-amz-checksum-crc32`, `-crc32c`, `-crc64nvme`,
//! `-sha1`, `-sha256`) on PutObject and UploadPart, in a header or in the
//! trailer of an `aws-chunked` body (what current AWS SDKs send by
//! default). The body is hashed as it is read; at its end the sums are
//! compared, and a mismatch fails the read, so the engine never commits the
//! object: the client gets 400 `BadDigest` and nothing is stored.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use s3s::checksum::ChecksumHasher;
use s3s::crypto::Checksum as _;
use s3s::dto::{Checksum, ChecksumAlgorithm};
use s3s::{S3Error, S3ErrorCode, TrailingHeaders};
use tokio::io::{AsyncRead, ReadBuf};

/// The checksums a request announces: values from headers, and the
/// algorithm whose value comes in the trailer.
#[derive(Default)]
pub(crate) struct Announced {
    pub headers: Checksum,
    pub algorithm: Option<ChecksumAlgorithm>,
    pub trailers: Option<TrailingHeaders>,
}

/// The sums in the `checksum_*` fields of an input or a part (taken).
macro_rules! sums_of {
    ($i:expr) => {{
        let mut c = s3s::dto::Checksum::default();
        c.checksum_crc32 = $i.checksum_crc32.take();
        c.checksum_crc32c = $i.checksum_crc32c.take();
        c.checksum_sha1 = $i.checksum_sha1.take();
        c.checksum_sha256 = $i.checksum_sha256.take();
        c.checksum_crc64nvme = $i.checksum_crc64nvme.take();
        c
    }};
}

/// The checksums announced by an input with S3's `checksum_*` fields
/// (PutObject, UploadPart), `$trailers` the request's trailing headers.
macro_rules! announced {
    ($i:expr, $trailers:expr) => {{
        $crate::s3::checksum::Announced {
            headers: $crate::s3::checksum::sums_of!($i),
            algorithm: $i.checksum_algorithm.take(),
            trailers: $trailers,
        }
    }};
}
pub(crate) use {announced, sums_of};

/// How a body's checksums came out; set by the reader at the body's end,
/// read by the handler.
#[derive(Clone, Default)]
pub(crate) struct Verdict(Arc<Mutex<Outcome>>);

#[derive(Default)]
struct Outcome {
    /// Why the body was refused.
    refused: Option<String>,
    /// An aws-chunked chunk whose signature s3s found wrong: a forged or
    /// altered body, answered as AWS does (403), not as a short one.
    forged: bool,
    /// The sums of a body that matched all it announced.
    matched: Option<Checksum>,
}

impl Verdict {
    /// The error for the client when the checksum did not match, or a
    /// chunk's signature.
    pub(crate) fn error(&self) -> Option<S3Error> {
        let o = self.0.lock().ok()?;
        if o.forged {
            return Some(S3Error::with_message(
                S3ErrorCode::SignatureDoesNotMatch,
                "The signature of a chunk of the aws-chunked body does not match. Nothing was stored.",
            ));
        }
        let msg = o.refused.clone()?;
        Some(S3Error::with_message(S3ErrorCode::BadDigest, msg))
    }

    /// The checksums the body announced and matched (none announced: empty).
    pub(crate) fn matched(&self) -> Checksum {
        self.0
            .lock()
            .ok()
            .and_then(|o| o.matched.clone())
            .unwrap_or_default()
    }

    /// The matched checksums as object metadata, asked for once the body
    /// has been read (a trailer's value is known only then).
    pub(crate) fn late_metadata(&self) -> fulcrum_engine::LateMetadata {
        let me = self.clone();
        fulcrum_engine::LateMetadata(Arc::new(move || to_metadata(&me.matched())))
    }
}

/// The metadata entry keeping an object's sum of algorithm `name`.
fn meta_key(name: &str) -> String {
    format!(
        "{}{}",
        fulcrum_engine::CONTENT_META_PREFIX,
        name.to_ascii_lowercase()
    )
}

/// Metadata entries keeping an object's checksums (one per algorithm).
fn to_metadata(c: &Checksum) -> Vec<(String, String)> {
    fields(c)
        .into_iter()
        .zip(NAMES)
        .filter_map(|(v, name)| v.clone().map(|v| (meta_key(name), v)))
        .collect()
}

/// The checksums kept in an object's metadata.
pub(crate) fn of_metadata(m: &std::collections::BTreeMap<String, String>) -> Checksum {
    let mut c = Checksum::default();
    for (f, name) in fields_mut(&mut c).into_iter().zip(NAMES) {
        *f = m.get(&meta_key(name)).cloned();
    }
    c
}

/// Sets an output's five checksum fields from `$c`.
macro_rules! set_checksums {
    ($out:expr, $c:expr) => {{
        let c: s3s::dto::Checksum = $c;
        $out.checksum_crc32 = c.checksum_crc32;
        $out.checksum_crc32c = c.checksum_crc32c;
        $out.checksum_sha1 = c.checksum_sha1;
        $out.checksum_sha256 = c.checksum_sha256;
        $out.checksum_crc64nvme = c.checksum_crc64nvme;
    }};
}
pub(crate) use set_checksums;

/// The checksum type of an object's sums `c`: COMPOSITE for a multipart
/// object's (`…-N`), else FULL_OBJECT; none when it has none.
pub(crate) fn checksum_type(c: &Checksum) -> Option<s3s::dto::ChecksumType> {
    use s3s::dto::ChecksumType;
    let values: Vec<&String> = fields(c).into_iter().flatten().collect();
    let composite = values.iter().any(|v| v.contains('-'));
    (!values.is_empty()).then(|| {
        ChecksumType::from_static(if composite {
            ChecksumType::COMPOSITE
        } else {
            ChecksumType::FULL_OBJECT
        })
    })
}

/// The sums a GET or HEAD answers with: the object's, when the client
/// asks for them (`x-amz-checksum-mode: ENABLED`) and the answer is the
/// whole object (a range or a part has no stored sum).
pub(crate) fn for_reading(
    metadata: &std::collections::BTreeMap<String, String>,
    mode: Option<&s3s::dto::ChecksumMode>,
    whole: bool,
) -> Checksum {
    let enabled = mode.is_some_and(|m| m.as_str().eq_ignore_ascii_case("ENABLED"));
    if enabled && whole {
        of_metadata(metadata)
    } else {
        Checksum::default()
    }
}

const NAMES: [&str; 5] = ["CRC32", "CRC32C", "SHA1", "SHA256", "CRC64NVME"];

/// The algorithms of the sums an object keeps (from its stored metadata,
/// JSON) and their type, as ListObjects names them.
pub(crate) fn listed(
    metadata: &str,
) -> (
    Option<Vec<s3s::dto::ChecksumAlgorithm>>,
    Option<s3s::dto::ChecksumType>,
) {
    if !metadata.contains(fulcrum_engine::CONTENT_META_PREFIX) {
        return (None, None);
    }
    let m: std::collections::BTreeMap<String, String> =
        serde_json::from_str(metadata).unwrap_or_default();
    let c = of_metadata(&m);
    let algorithms: Vec<_> = fields(&c)
        .into_iter()
        .zip(NAMES)
        .filter(|(v, _)| v.is_some())
        .map(|(_, name)| s3s::dto::ChecksumAlgorithm::from(name.to_string()))
        .collect();
    let kind = checksum_type(&c);
    ((!algorithms.is_empty()).then_some(algorithms), kind)
}

/// The five sums of `c`, in NAMES order.
fn fields(c: &Checksum) -> [&Option<String>; 5] {
    [
        &c.checksum_crc32,
        &c.checksum_crc32c,
        &c.checksum_sha1,
        &c.checksum_sha256,
        &c.checksum_crc64nvme,
    ]
}

fn fields_mut(c: &mut Checksum) -> [&mut Option<String>; 5] {
    [
        &mut c.checksum_crc32,
        &mut c.checksum_crc32c,
        &mut c.checksum_sha1,
        &mut c.checksum_sha256,
        &mut c.checksum_crc64nvme,
    ]
}

/// A hasher of the algorithms `on(i)` selects (indexes into NAMES).
fn hasher(on: impl Fn(usize) -> bool) -> ChecksumHasher {
    use s3s::crypto::{Crc32, Crc32c, Crc64Nvme, Sha1, Sha256};
    let mut h = ChecksumHasher::default();
    h.crc32 = on(0).then(Crc32::new);
    h.crc32c = on(1).then(Crc32c::new);
    h.sha1 = on(2).then(Sha1::new);
    h.sha256 = on(3).then(Sha256::new);
    h.crc64nvme = on(4).then(Crc64Nvme::new);
    h
}

/// The checksums kept with a part (`PartRow::checksums`).
pub(crate) fn of_part(kept: Option<&str>) -> Checksum {
    let m: std::collections::BTreeMap<String, String> = kept
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default();
    of_metadata(&m)
}

/// What a CompleteMultipartUpload says of checksums: the sums it names
/// for each part, the object's (its `x-amz-checksum-*` headers), and the
/// checksum type it asks for.
pub(crate) struct Completion {
    pub parts: Vec<(i64, Checksum)>,
    pub object: Checksum,
    pub full_object: Option<bool>,
}

/// The upload's metadata entry keeping the checksum type its creation
/// asked for (`x-amz-checksum-type`), which its completion need not repeat.
const INTENT_TYPE: &str = ":upload-checksum-type";
/// ... and the algorithm it named (`x-amz-checksum-algorithm`).
const INTENT_ALGORITHM: &str = ":upload-checksum-algorithm";

/// What CreateMultipartUpload says the object's checksum will be: its
/// type is kept with the upload for the completion. FULL_OBJECT exists for
/// the CRCs only (S3 refuses it with SHA-1 or SHA-256).
pub(crate) fn upload_intent(
    algorithm: Option<&s3s::dto::ChecksumAlgorithm>,
    kind: Option<&s3s::dto::ChecksumType>,
    metadata: &mut std::collections::BTreeMap<String, String>,
) -> Result<(), s3s::S3Error> {
    if let Some(a) = algorithm {
        metadata.insert(INTENT_ALGORITHM.into(), a.as_str().to_ascii_uppercase());
    }
    let Some(kind) = kind else {
        return Ok(());
    };
    let full = kind.as_str().eq_ignore_ascii_case("FULL_OBJECT");
    if !full && !kind.as_str().eq_ignore_ascii_case("COMPOSITE") {
        return Err(s3s::s3_error!(
            InvalidRequest,
            "Value for x-amz-checksum-type header is invalid: it is FULL_OBJECT or COMPOSITE."
        ));
    }
    if let Some(a) = algorithm {
        let sha = a.as_str().to_ascii_uppercase().starts_with("SHA");
        let nvme = a.as_str().eq_ignore_ascii_case("CRC64NVME");
        if (full && sha) || (!full && nvme) {
            return Err(s3s::s3_error!(
                InvalidRequest,
                "The {} checksum type cannot be used with the {} checksum algorithm.",
                kind.as_str(),
                a.as_str().to_ascii_lowercase()
            ));
        }
    }
    metadata.insert(
        INTENT_TYPE.into(),
        if full { "FULL_OBJECT" } else { "COMPOSITE" }.into(),
    );
    Ok(())
}

/// The checksum algorithm and type an upload was created with, as
/// ListParts names them; without a type, S3's default for the algorithm
/// (FULL_OBJECT for CRC64NVME, else COMPOSITE).
pub(crate) fn upload_checksum(
    upload: &std::collections::BTreeMap<String, String>,
) -> (
    Option<s3s::dto::ChecksumAlgorithm>,
    Option<s3s::dto::ChecksumType>,
) {
    let Some(algorithm) = upload.get(INTENT_ALGORITHM) else {
        return (None, None);
    };
    let kind = upload.get(INTENT_TYPE).cloned().unwrap_or_else(|| {
        match full_by_default(algorithm) {
            true => "FULL_OBJECT",
            false => "COMPOSITE",
        }
        .into()
    });
    (
        Some(s3s::dto::ChecksumAlgorithm::from(algorithm.clone())),
        Some(s3s::dto::ChecksumType::from(kind)),
    )
}

/// Whether a multipart object's sum of `algorithm` is of the whole body
/// unless the upload says otherwise: CRC64NVME's only type is FULL_OBJECT.
fn full_by_default(algorithm: &str) -> bool {
    algorithm.eq_ignore_ascii_case("CRC64NVME")
}

impl Completion {
    /// This completion, its checksum type taken from the upload's creation
    /// when it does not name one.
    pub(crate) fn with_intent(
        &self,
        upload: &std::collections::BTreeMap<String, String>,
    ) -> Completion {
        Completion {
            parts: self.parts.clone(),
            object: self.object.clone(),
            full_object: self
                .full_object
                .or_else(|| upload.get(INTENT_TYPE).map(|t| t == "FULL_OBJECT")),
        }
    }
}

/// A completed upload's object-level checksums, as metadata entries: for
/// each algorithm every part was uploaded with, S3's composite (that
/// algorithm over the parts' binary sums, then `-N`), or for a CRC asked
/// for as FULL_OBJECT (CRC64NVME's only type; or a whole-object value
/// given without `-N`) the CRC of the whole object, combined from the
/// parts' CRCs and sizes. Refused when a part is named with a sum other
/// than the one it came with (InvalidPart, as for an ETag), or the object's
/// sum given does not match or cannot be checked (BadDigest).
pub(crate) fn object_sums(
    kept: &[(i64, Option<String>)],
    c: &Completion,
) -> fulcrum_engine::EngineResult<Vec<(String, String)>> {
    use base64::Engine as _;
    use fulcrum_engine::{CatalogError, EngineError};
    let b64 = &base64::engine::general_purpose::STANDARD;
    let sums: Vec<Checksum> = kept.iter().map(|(_, k)| of_part(k.as_deref())).collect();
    for ((number, said), had) in c.parts.iter().zip(&sums) {
        for (s, h) in fields(said).into_iter().zip(fields(had)) {
            if let (Some(s), Some(h)) = (s, h) {
                if s.trim() != h {
                    return Err(CatalogError::InvalidPart(*number).into());
                }
            }
        }
    }
    let crc = |i: usize| match i {
        0 => Some(crate::s3::crc_combine::CRC32),
        1 => Some(crate::s3::crc_combine::CRC32C),
        4 => Some(crate::s3::crc_combine::CRC64NVME),
        _ => None,
    };
    let mut out = Checksum::default();
    for (i, name) in NAMES.iter().enumerate() {
        let given = fields(&c.object)[i].as_deref().map(str::trim);
        let raw: Option<Vec<Vec<u8>>> = sums
            .iter()
            .map(|s| fields(s)[i].as_deref().and_then(|v| b64.decode(v).ok()))
            .collect();
        let Some(raw) = raw.filter(|r| !r.is_empty()) else {
            if given.is_some() {
                return Err(EngineError::BadChecksum(format!(
                    "The object's {name} checksum cannot be checked: not every part was uploaded with one."
                )));
            }
            continue;
        };
        let full = c
            .full_object
            .unwrap_or(full_by_default(name) || given.is_some_and(|g| !g.contains('-')));
        let value = match crc(i).filter(|_| full) {
            Some(alg) => {
                let mut whole: Option<u64> = None;
                for (part, (size, _)) in raw.iter().zip(kept) {
                    let mut be = [0u8; 8];
                    let at = 8usize.saturating_sub(part.len());
                    be[at..].copy_from_slice(&part[part.len().saturating_sub(8)..]);
                    let v = u64::from_be_bytes(be);
                    whole = Some(match whole {
                        None => v,
                        Some(w) => alg.combine(w, v, *size as u64),
                    });
                }
                let bytes = whole.unwrap_or(0).to_be_bytes();
                b64.encode(&bytes[8 - alg.width as usize / 8..])
            }
            None => {
                let mut h = hasher(|j| j == i);
                h.update(&raw.concat());
                let sum = fields(&h.finalize())[i].clone().unwrap_or_default();
                format!("{sum}-{}", raw.len())
            }
        };
        if given.is_some_and(|g| g != value) {
            return Err(EngineError::BadChecksum(format!(
                "The {name} checksum you specified for the object did not match the calculated checksum."
            )));
        }
        *fields_mut(&mut out)[i] = Some(value);
    }
    Ok(to_metadata(&out))
}

/// A body reader that checks the announced checksums at its end.
pub(crate) struct Checked<R> {
    inner: R,
    hasher: Option<ChecksumHasher>,
    announced: Announced,
    verdict: Verdict,
}

impl<R> Checked<R> {
    /// Wraps `inner`; passes it through untouched when nothing is announced.
    pub(crate) fn new(inner: R, announced: Announced) -> (Self, Verdict) {
        let wanted = |name: &str| {
            announced
                .algorithm
                .as_ref()
                .is_some_and(|a| a.as_str().eq_ignore_ascii_case(name))
        };
        let given = fields(&announced.headers).map(|f| f.is_some());
        let on = |i: usize| given[i] || wanted(NAMES[i]);
        let h = hasher(on);
        let any = (0..5).any(on);
        let verdict = Verdict::default();
        let me = Self {
            inner,
            hasher: any.then_some(h),
            announced,
            verdict: verdict.clone(),
        };
        (me, verdict)
    }

    /// The value the client sent for algorithm `i`: header, else trailer.
    fn expected(&self, i: usize) -> Option<String> {
        if let Some(v) = fields(&self.announced.headers)[i] {
            return Some(v.clone());
        }
        let name = format!("x-amz-checksum-{}", NAMES[i].to_ascii_lowercase());
        self.announced.trailers.as_ref().and_then(|t| {
            t.read(|h| {
                h.get(&name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            })
            .flatten()
        })
    }

    /// Compares the sums at the end of the body.
    fn finish(&mut self) -> Result<(), String> {
        let Some(h) = self.hasher.take() else {
            return Ok(());
        };
        let got = h.finalize();
        self.compare(&got)?;
        if let Ok(mut v) = self.verdict.0.lock() {
            v.matched = Some(got);
        }
        Ok(())
    }

    fn compare(&self, got: &Checksum) -> Result<(), String> {
        for (i, computed) in fields(got).into_iter().enumerate() {
            let Some(computed) = computed else { continue };
            match self.expected(i) {
                Some(want) if want.trim() == computed => {}
                Some(_) => {
                    return Err(format!(
                        "The {} you specified did not match the calculated checksum.",
                        NAMES[i]
                    ))
                }
                None => {
                    return Err(format!(
                        "x-amz-sdk-checksum-algorithm is {} but no x-amz-checksum-{} value came with the body.",
                        NAMES[i],
                        NAMES[i].to_ascii_lowercase()
                    ))
                }
            }
        }
        Ok(())
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Checked<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Err(e)) = &res {
            // s3s's error type for it is private: known by its message.
            if e.to_string().contains("SignatureMismatch") {
                if let Ok(mut v) = self.verdict.0.lock() {
                    v.forged = true;
                }
            }
        }
        if let Poll::Ready(Ok(())) = res {
            let new = &buf.filled()[before..];
            if !new.is_empty() {
                if let Some(h) = self.hasher.as_mut() {
                    h.update(new);
                }
            } else if buf.remaining() > 0 {
                // End of the body.
                if let Err(msg) = self.finish() {
                    if let Ok(mut v) = self.verdict.0.lock() {
                        v.refused = Some(msg.clone());
                    }
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        msg,
                    )));
                }
            }
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn crc32_of(data: &[u8]) -> String {
        let mut h = ChecksumHasher {
            crc32: Some(s3s::crypto::Crc32::new()),
            ..Default::default()
        };
        h.update(data);
        h.finalize().checksum_crc32.unwrap_or_default()
    }

    async fn read(
        data: &'static [u8],
        announced: Announced,
    ) -> (std::io::Result<Vec<u8>>, Verdict) {
        let (mut r, verdict) = Checked::new(data, announced);
        let mut out = Vec::new();
        let res = r.read_to_end(&mut out).await.map(|_| out);
        (res, verdict)
    }

    fn sums_of_bytes(data: &[u8], alg: usize) -> Checksum {
        let mut h = hasher(|j| j == alg);
        h.update(data);
        h.finalize()
    }

    /// CRC64NVME multipart objects are FULL_OBJECT: the whole body's CRC,
    /// combined from the parts' (as s3s computes each), byte order and all.
    #[test]
    fn a_crc64nvme_upload_gets_the_whole_body_crc() {
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let (a, b) = data.split_at(200_003);
        let kept: Vec<(i64, Option<String>)> = [a, b]
            .iter()
            .map(|p| {
                let m: std::collections::BTreeMap<_, _> =
                    to_metadata(&sums_of_bytes(p, 4)).into_iter().collect();
                (
                    p.len() as i64,
                    Some(serde_json::to_string(&m).expect("json")),
                )
            })
            .collect();
        let c = Completion {
            parts: vec![],
            object: Checksum::default(),
            full_object: None,
        };
        let out: std::collections::BTreeMap<_, _> =
            object_sums(&kept, &c).expect("sums").into_iter().collect();
        let whole = sums_of_bytes(&data, 4).checksum_crc64nvme;
        assert_eq!(of_metadata(&out).checksum_crc64nvme, whole);
        assert!(whole.is_some_and(|w| !w.contains('-')));
    }

    #[tokio::test]
    async fn matching_sums_pass_and_others_fail_at_the_end() {
        let body: &[u8] = b"a county hospital's report";
        let mut ok = Announced::default();
        ok.headers.checksum_crc32 = Some(crc32_of(body));
        let (res, verdict) = read(body, ok).await;
        assert_eq!(res.expect("read"), body);
        assert!(verdict.error().is_none());
        // Kept as metadata, read back as the same sums.
        let kept: std::collections::BTreeMap<_, _> =
            (verdict.late_metadata().0)().into_iter().collect();
        assert_eq!(of_metadata(&kept).checksum_crc32, Some(crc32_of(body)));

        let mut bad = Announced::default();
        bad.headers.checksum_crc32 = Some(crc32_of(b"something else"));
        let (res, verdict) = read(body, bad).await;
        assert!(res.is_err());
        assert!((verdict.late_metadata().0)().is_empty());
        assert_eq!(
            verdict
                .error()
                .map(|e| e.code().as_str().to_string())
                .as_deref(),
            Some("BadDigest")
        );

        // Announced for the trailer, which never came.
        let missing = Announced {
            algorithm: Some(ChecksumAlgorithm::from_static(ChecksumAlgorithm::SHA256)),
            ..Default::default()
        };
        let (res, verdict) = read(body, missing).await;
        assert!(res.is_err() && verdict.error().is_some());

        // Nothing announced: passed through.
        let (res, verdict) = read(body, Announced::default()).await;
        assert_eq!(res.expect("read"), body);
        assert!(verdict.error().is_none());
    }
}
