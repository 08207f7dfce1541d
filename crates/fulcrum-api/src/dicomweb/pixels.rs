//! Where an instance's pixel data is and how to cut it into frames: the
//! parsed header plus the Pixel Data element the catalog row points at
//! (native: a ranged read per frame; encapsulated: the fragments of each
//! frame, from the fragment table and the Basic or Extended Offset Table).

use axum::http::StatusCode;
use bytes::Bytes;
use dicom_core::value::Value as DicomValue;
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use fulcrum_dicom::scan::{starts_frame, Framing, Walker};
use fulcrum_dicom::InstanceRecord;
use futures::StreamExt;

use super::errors::join_error;
use super::json::le_bytes;
use super::{ApiError, ApiResult, Ctx};

pub const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";

/// An instance's parsed header and its root pixel element.
pub(crate) struct Loaded {
    pub rec: InstanceRecord,
    pub header: InMemDicomObject,
    /// (7FE0,0010), or Float / Double Float Pixel Data.
    pub pixel_tag: Tag,
    /// Root elements of a long header left out of `header` for their
    /// size (see [`walk_past_the_cut`]): bulk data, where it is stored.
    pub left_out: Vec<LeftOut>,
}

/// A root element past a long header's cut, too large to parse for
/// metadata: its tag, VR, and the range of its value in the stored bytes.
#[derive(Debug, Clone)]
pub(crate) struct LeftOut {
    pub tag: Tag,
    pub vr: String,
    pub value: std::ops::Range<u64>,
}

fn parse(bytes: &[u8], ts_uid: &str) -> Result<InMemDicomObject, String> {
    fulcrum_dicom::parse_dataset(bytes, ts_uid).map_err(|e| e.to_string())
}

/// Headers up to this size (all of a batch together) are parsed on the
/// request's own task: a few KiB parse in microseconds, less than a
/// hand-off to a blocking thread costs.
const INLINE_PARSE_BYTES: usize = 64 * 1024;

/// What of an instance's stored bytes its header is: the byte range to
/// read, where the header ends in it, and the pixel element if the catalog
/// knows it. For rows that lack it, the pixel element's header is read in
/// the same range, which decodes the first chunk of the pixel data too (a
/// CT slice's whole pixel data: 500 of them made a study's metadata 8x
/// slower).
/// `Header::Whole` also reads what a header longer than the ingest cap
/// kept past its cut (stored with the bulk data): every element before
/// Pixel Data, or to the end when there is none, when that is at most
/// [`MAX_WHOLE_HEADER`] (an Encapsulated PDF of 300 MB has no Pixel
/// Data: reading it whole for its metadata made one study's metadata
/// request hold a gigabyte).
fn header_range(rec: &InstanceRecord, part: Header) -> (std::ops::Range<u64>, usize, Option<u16>) {
    let start = rec.dataset_offset.max(0) as u64;
    let mut head_end = (rec.header_len.max(0) as u64).max(start);
    if part == Header::Whole {
        let elements_end = elements_end(rec);
        if elements_end.saturating_sub(start) <= MAX_WHOLE_HEADER {
            head_end = head_end.max(elements_end);
        }
    }
    let known = rec.pixel_element.and_then(|e| u16::try_from(e).ok());
    let end = match rec.pixel_offset {
        Some(p) if known.is_none() && p as u64 >= head_end && p as u64 - head_end <= 12 => p as u64,
        _ => head_end,
    };
    (start..end, (head_end - start) as usize, known)
}

/// The most `Header::Whole` reads of a data set: twice the ingest cap, so
/// a header read for metadata is at most twice what it was. Longer ones
/// are walked past the cut instead (see [`walk_past_the_cut`]).
const MAX_WHOLE_HEADER: u64 = 32 * 1024 * 1024;

/// Past the cut of a header longer than [`MAX_WHOLE_HEADER`], elements of
/// up to this size are parsed for metadata; larger ones are bulk data.
const WALK_ELEMENT: usize = 1024 * 1024;

/// A value with at least this much still to come is read past (a new
/// read from its end), not through.
const SEEK_PAST: u64 = 4 * 1024 * 1024;

/// The part of the stored bytes that `Header::Whole` walks rather than
/// reads whole: from the stored header's cut to Pixel Data (or the end),
/// when that data set is longer than [`MAX_WHOLE_HEADER`].
fn walked_range(rec: &InstanceRecord, part: Header) -> Option<std::ops::Range<u64>> {
    let start = rec.dataset_offset.max(0) as u64;
    let cut = (rec.header_len.max(0) as u64).max(start);
    let end = elements_end(rec);
    (part == Header::Whole && end > cut && end - start > MAX_WHOLE_HEADER).then_some(cut..end)
}

/// Where the elements before Pixel Data end: the pixel element's start
/// (its header is 12 bytes with an explicit VR, OB or OW..., 8 without),
/// or the end of the stored bytes.
fn elements_end(rec: &InstanceRecord) -> u64 {
    match rec.pixel_offset {
        Some(p) => (p.max(0) as u64).saturating_sub(if rec.pixel_vr.is_some() { 12 } else { 8 }),
        None => rec.size.max(0) as u64,
    }
}

/// Streams `rest` (root elements from a long header's cut on) through the
/// element scanner: the elements of up to [`WALK_ELEMENT`] are kept (at
/// most `budget` bytes of them, what is left of the request's
/// [`MAX_WHOLE_HEADER`]; metadata stops where they run out),
/// the larger ones are noted as bulk data (sequences that large are left
/// out of the metadata).
async fn walk_past_the_cut(
    ctx: &Ctx,
    rec: &InstanceRecord,
    rest: std::ops::Range<u64>,
    budget: usize,
) -> ApiResult<(Vec<u8>, Vec<LeftOut>)> {
    let Some(framing) = Framing::of(&rec.transfer_syntax) else {
        return Ok((Vec::new(), Vec::new()));
    };
    let mut walker = Walker::new(framing).keeping(WALK_ELEMENT, budget);
    let mut s = ctx
        .archive
        .read(&ctx.tenant, rec, rest.start, rest.end)
        .await?;
    while walker.keeps() {
        let Some(piece) = s.next().await else { break };
        let piece = piece.map_err(|e| ApiError::from(fulcrum_dicom::DicomError::from(e)))?;
        if walker.feed(&piece).is_err() {
            tracing::error!(sop = %rec.sop_uid, "DICOMweb: stored elements past the header cut do not parse");
            walker.stop_keeping();
            break;
        }
        // A large value (a 150 MB document) is read past, not through.
        if walker.keeps() && walker.pass_value(SEEK_PAST) > 0 {
            let at = rest.start + walker.position();
            if at >= rest.end {
                break;
            }
            s = ctx.archive.read(&ctx.tenant, rec, at, rest.end).await?;
        }
    }
    let kept = walker.take_kept().unwrap_or_default();
    let left_out = kept
        .skipped
        .iter()
        .filter_map(|sk| {
            let h = sk.header(framing)?;
            let tag = Tag(h.group, h.element);
            let vr = match h.vr {
                Some(v) => String::from_utf8_lossy(&v).into_owned(),
                None => dictionary_vr(tag),
            };
            // Sequences (and undefined lengths) cannot be bulk data.
            (vr != "SQ" && h.len.is_some()).then(|| LeftOut {
                tag,
                vr,
                value: rest.start + h.value_start..rest.start + sk.end,
            })
        })
        .collect();
    Ok((kept.bytes, left_out))
}

/// The VR the standard dictionary gives a tag (implicit VR syntaxes), UN
/// for those it does not know.
fn dictionary_vr(tag: Tag) -> String {
    use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
    match dicom_dictionary_std::StandardDataDictionary
        .by_tag(tag)
        .map(|e| e.vr())
    {
        Some(VirtualVr::Exact(vr)) => vr.to_string().to_string(),
        _ => "UN".to_string(),
    }
}

/// How much of an instance's header to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Header {
    /// As stored before its pixel data or cut: what frames and rendering
    /// need (the header cut at the ingest cap holds the image attributes
    /// unless an element before them is itself that large).
    Stored,
    /// Every element before Pixel Data: metadata and bulk data.
    Whole,
}

/// Parses a header read as [`header_range`] says (when it was walked, with
/// the elements kept past the cut appended, and `left_out` the larger ones).
fn loaded(
    rec: InstanceRecord,
    bytes: Bytes,
    part: Header,
    left_out: Vec<LeftOut>,
) -> ApiResult<Loaded> {
    let (_, split, known) = header_range(&rec, part);
    // A walked header is followed by the elements kept past its cut: all
    // of it parses.
    let split = match walked_range(&rec, part) {
        Some(_) => bytes.len(),
        None => split.min(bytes.len()),
    };
    let header = parse(&bytes[..split], &rec.transfer_syntax).map_err(|e| {
        tracing::error!(sop = %rec.sop_uid, error = %e, "DICOMweb: stored header does not parse");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the stored instance's header could not be parsed",
        )
    })?;
    let elem = &bytes[split..];
    let big = Framing::of(&rec.transfer_syntax).is_some_and(|f| f.big_endian);
    let pixel_tag = match (known, elem.get(..4)) {
        (Some(e), _) => Tag(0x7FE0, e),
        (None, Some(b)) if big => Tag(
            u16::from_be_bytes([b[0], b[1]]),
            u16::from_be_bytes([b[2], b[3]]),
        ),
        (None, Some(b)) => Tag(
            u16::from_le_bytes([b[0], b[1]]),
            u16::from_le_bytes([b[2], b[3]]),
        ),
        // Parsed whole (a deflated data set): whichever pixel element it
        // holds (Float or Double Float Pixel Data in a parametric map).
        (None, None) => [tags::PIXEL_DATA, Tag(0x7FE0, 0x0008), Tag(0x7FE0, 0x0009)]
            .into_iter()
            .find(|t| header.get(*t).is_some())
            .unwrap_or(tags::PIXEL_DATA),
    };
    Ok(Loaded {
        rec,
        header,
        pixel_tag,
        left_out,
    })
}

/// Reads and parses an instance's header.
pub(crate) async fn load(ctx: &Ctx, rec: InstanceRecord, part: Header) -> ApiResult<Loaded> {
    let mut one = load_many(ctx, vec![rec], part).await?;
    one.pop()
        .ok_or_else(|| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "no header was read"))
}

/// Reads and parses the headers of several instances with one read
/// (instances stored together share ranged reads), in order.
pub(crate) async fn load_many(
    ctx: &Ctx,
    recs: Vec<InstanceRecord>,
    part: Header,
) -> ApiResult<Vec<Loaded>> {
    let items: Vec<(&InstanceRecord, std::ops::Range<u64>)> =
        recs.iter().map(|r| (r, header_range(r, part).0)).collect();
    let mut bytes = ctx.archive.read_ranges(&ctx.tenant, &items).await?;
    let mut left_out = vec![Vec::new(); recs.len()];
    // What the walks keep is bounded per request, not per instance: a
    // batch of 64 crafted instances would otherwise hold 64 budgets.
    let mut budget = MAX_WHOLE_HEADER as usize;
    for (i, rec) in recs.iter().enumerate() {
        if let Some(rest) = walked_range(rec, part).filter(|_| budget > 0) {
            let (kept, out) = walk_past_the_cut(ctx, rec, rest, budget).await?;
            budget = budget.saturating_sub(kept.len());
            bytes[i] = [&bytes[i][..], &kept].concat().into();
            left_out[i] = out;
        }
    }
    let total: usize = bytes.iter().map(Bytes::len).sum();
    let parse_all = move || -> ApiResult<Vec<Loaded>> {
        recs.into_iter()
            .zip(bytes)
            .zip(left_out)
            .map(|((r, b), out)| loaded(r, b, part, out))
            .collect()
    };
    if total <= INLINE_PARSE_BYTES {
        parse_all()
    } else {
        tokio::task::spawn_blocking(parse_all)
            .await
            .map_err(join_error)?
    }
}

/// A whole-number attribute (US or IS).
pub(crate) fn int(obj: &InMemDicomObject, tag: Tag) -> Option<i64> {
    obj.get(tag)?.to_int::<i64>().ok()
}

/// What is needed to cut native pixel data into frames.
#[derive(Debug, Clone)]
pub(crate) struct Geometry {
    pub rows: u32,
    pub cols: u32,
    pub samples: u32,
    pub bits_allocated: u32,
    pub frames: u32,
    /// Native YBR_FULL_422 holds two samples per pixel (Y Y Cb Cr per pair).
    pub ybr_422: bool,
}

impl Geometry {
    pub fn of(obj: &InMemDicomObject) -> Geometry {
        let get = |t, d: i64| int(obj, t).unwrap_or(d).clamp(0, u32::MAX as i64) as u32;
        Geometry {
            rows: get(tags::ROWS, 0),
            cols: get(tags::COLUMNS, 0),
            samples: get(tags::SAMPLES_PER_PIXEL, 1),
            bits_allocated: get(tags::BITS_ALLOCATED, 8),
            frames: get(tags::NUMBER_OF_FRAMES, 1).max(1),
            ybr_422: obj
                .get(tags::PHOTOMETRIC_INTERPRETATION)
                .and_then(|e| e.to_str().ok())
                .is_some_and(|p| p.trim() == "YBR_FULL_422"),
        }
    }

    /// Bytes per native frame; `None` when frames are not whole bytes.
    pub fn frame_len(&self) -> Option<u64> {
        let samples = if self.ybr_422 && self.samples == 3 {
            2
        } else {
            self.samples
        };
        let bits =
            self.rows as u64 * self.cols as u64 * samples as u64 * self.bits_allocated as u64;
        (bits > 0 && bits.is_multiple_of(8)).then_some(bits / 8)
    }
}

impl Loaded {
    pub fn geometry(&self) -> Geometry {
        Geometry::of(&self.header)
    }

    pub fn encapsulated(&self) -> bool {
        match self.rec.pixel_offset {
            Some(_) => self.rec.pixel_len.is_none(),
            None => matches!(
                self.header.get(self.pixel_tag).map(|e| e.value()),
                Some(DicomValue::PixelSequence(_))
            ),
        }
    }

    /// The pixel data is a video stream (MPEG-2, MPEG-4 AVC/H.264, HEVC):
    /// its fragments hold one stream of all the frames, which are not
    /// sent apart (PS3.5 8.2.5-8.2.8), so frame requests get the stream.
    pub fn is_video(&self) -> bool {
        self.encapsulated() && self.frame_media().0.starts_with("video/")
    }

    /// The data set is in a big-endian transfer syntax.
    pub fn big_endian(&self) -> bool {
        Framing::of(&self.rec.transfer_syntax).is_some_and(|f| f.big_endian)
    }

    /// For native pixel data stored big endian: the width of the words
    /// to byte-swap into little endian, the samples' width (16 bits and
    /// up), or 2 for 8-bit samples in an OW value (PS3.5 8.1.1: OW is a
    /// stream of 16-bit words, two 8-bit samples each). `None` otherwise.
    pub fn big_endian_words(&self) -> Option<usize> {
        if !fulcrum_dicom::scan::pixels_big_endian(&self.rec.transfer_syntax) || self.encapsulated()
        {
            return None;
        }
        match self.geometry().bits_allocated {
            b if b >= 16 => Some((b / 8) as usize),
            _ if self.pixel_vr() == "OW" => Some(2),
            _ => None,
        }
    }

    pub fn has_pixels(&self) -> bool {
        self.rec.pixel_offset.is_some() || self.header.get(self.pixel_tag).is_some()
    }

    /// The VR of Pixel Data for metadata.
    pub fn pixel_vr(&self) -> &'static str {
        match self.pixel_tag {
            Tag(0x7FE0, 0x0008) => "OF",
            Tag(0x7FE0, 0x0009) => "OD",
            _ if self.encapsulated() => "OB",
            _ => match self.rec.pixel_vr.as_deref() {
                Some("OB") => "OB",
                Some("OW") => "OW",
                _ if self.geometry().bits_allocated > 8 => "OW",
                _ => "OB",
            },
        }
    }

    /// Media type of a frame, other names clients use for it, and the
    /// transfer syntax its bytes are in.
    pub fn frame_media(&self) -> (&'static str, &'static [&'static str], String) {
        if !self.encapsulated() {
            return ("application/octet-stream", &[], EXPLICIT_LE.to_string());
        }
        let ts = self.rec.transfer_syntax.clone();
        let (m, aliases): (&str, &[&str]) = match ts.as_str() {
            "1.2.840.10008.1.2.4.50"
            | "1.2.840.10008.1.2.4.51"
            | "1.2.840.10008.1.2.4.57"
            | "1.2.840.10008.1.2.4.70" => ("image/jpeg", &[]),
            "1.2.840.10008.1.2.4.80" | "1.2.840.10008.1.2.4.81" => ("image/jls", &["image/x-jls"]),
            "1.2.840.10008.1.2.4.90" | "1.2.840.10008.1.2.4.91" => ("image/jp2", &[]),
            "1.2.840.10008.1.2.4.92" | "1.2.840.10008.1.2.4.93" => ("image/jpx", &[]),
            "1.2.840.10008.1.2.4.201" | "1.2.840.10008.1.2.4.202" | "1.2.840.10008.1.2.4.203" => {
                ("image/jphc", &[])
            }
            "1.2.840.10008.1.2.4.110" | "1.2.840.10008.1.2.4.111" | "1.2.840.10008.1.2.4.112" => {
                ("image/jxl", &[])
            }
            "1.2.840.10008.1.2.5" => ("image/dicom-rle", &["image/x-dicom-rle"]),
            "1.2.840.10008.1.2.4.100" | "1.2.840.10008.1.2.4.101" => ("video/mpeg2", &[]),
            t if t.starts_with("1.2.840.10008.1.2.4.10") => ("video/mp4", &[]),
            _ => ("application/octet-stream", &[]),
        };
        (m, aliases, ts)
    }
}

/// Frame 0 is no frame number (400); one past the last is not there (404,
/// as dcm4chee-arc and Microsoft's DICOM server answer).
pub(crate) fn bad_frame(n: u32, frames: u32) -> ApiError {
    let why =
        format!("frame {n} does not exist: the instance has {frames} frame(s), numbered from 1");
    match n {
        0 => ApiError::bad_request(why),
        _ => ApiError::new(StatusCode::NOT_FOUND, why),
    }
}

/// Frame `n` lies past the end of a native Pixel Data value shorter than
/// its frames need (the instance was stored as sent).
fn short_pixels(n: u32, have: u64, need: u64) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "frame {n} is missing from the stored instance: its Pixel Data holds {have} bytes, \
             its rows, columns and frames need {need}"
        ),
    )
}

fn unsupported(why: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_IMPLEMENTED, why.to_string())
}

/// Which fragment items make up frame `n` (1-based) of `frames`, given
/// each item's offset relative to the first item, an offset table, and
/// which items open a frame's codestream (empty when unknown).
fn frame_items(
    rel: &[u64],
    n: u32,
    frames: u32,
    table: &[u64],
    starts: &[bool],
) -> ApiResult<Vec<usize>> {
    if frames <= 1 {
        return Ok((0..rel.len()).collect());
    }
    if rel.len() == frames as usize {
        return Ok(vec![n as usize - 1]);
    }
    if table.len() < frames as usize {
        // No offset table: frames begin where a codestream does.
        let begins: Vec<usize> = (0..starts.len()).filter(|i| starts[*i]).collect();
        if starts.len() == rel.len()
            && starts.first() == Some(&true)
            && begins.len() == frames as usize
        {
            let lo = begins[n as usize - 1];
            let hi = begins.get(n as usize).copied().unwrap_or(rel.len());
            return Ok((lo..hi).collect());
        }
        return Err(unsupported(
            "cannot locate this frame: the instance has no offset table, more fragments than frames, \
             and fragments that do not each open with a codestream marker (JPEG, JPEG-LS, JPEG 2000, JPEG XL)",
        ));
    }
    let lo = table[n as usize - 1];
    let hi = table.get(n as usize).copied().unwrap_or(u64::MAX);
    let idx: Vec<usize> = (0..rel.len())
        .filter(|i| rel[*i] >= lo && rel[*i] < hi)
        .collect();
    if idx.is_empty() {
        return Err(unsupported("the offset table does not match the fragments"));
    }
    Ok(idx)
}

/// A fragment item as the catalog keeps it: value offset, length.
type Item = (i64, u32);

/// A row's fragment items ([offset, length], the Basic Offset Table
/// first) and, for the items after it, which open a frame's codestream
/// (empty when not recorded).
fn fragment_table(rec: &InstanceRecord) -> Option<(Vec<Item>, Vec<bool>)> {
    let list: Vec<Item> = serde_json::from_str(rec.fragments.as_deref()?).ok()?;
    let starts = match rec.frame_starts.as_deref() {
        Some(f) if f.len() == list.len() => f.chars().skip(1).map(|c| c == '1').collect(),
        _ => Vec::new(),
    };
    Some((list, starts))
}

/// The Extended Offset Table (7FE0,0001) of the header, if any.
fn extended_offsets(h: &InMemDicomObject) -> Vec<u64> {
    match h.get(Tag(0x7FE0, 0x0001)).map(|e| e.value()) {
        Some(DicomValue::Primitive(v)) => le_bytes(v)
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect(),
        _ => Vec::new(),
    }
}

fn u32s_le(b: &[u8]) -> Vec<u64> {
    b.chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as u64)
        .collect()
}

/// The bytes of frame `n` (1-based): native little endian, or the
/// concatenated fragments of an encapsulated frame.
pub(crate) async fn read_frame(ctx: &Ctx, l: &Loaded, n: u32) -> ApiResult<Bytes> {
    let g = l.geometry();
    if n == 0 || n > g.frames {
        return Err(bad_frame(n, g.frames));
    }
    if !l.has_pixels() {
        return Err(ApiError::not_found("the instance has no pixel data"));
    }
    if l.is_video() {
        return encapsulated_frame(ctx, l, 1, 1).await;
    }
    if l.encapsulated() {
        return encapsulated_frame(ctx, l, n, g.frames).await;
    }
    let Some(flen) = g.frame_len() else {
        return bit_frame(ctx, l, n).await;
    };
    let first = (n as u64 - 1) * flen;
    let Some(off) = l.rec.pixel_offset else {
        let Some(DicomValue::Primitive(v)) = l.header.get(l.pixel_tag).map(|e| e.value()) else {
            return Err(ApiError::not_found("the instance has no pixel data"));
        };
        let all = le_bytes(v);
        let end = (first + flen) as usize;
        return all
            .get(first as usize..end)
            .map(Bytes::copy_from_slice)
            .ok_or_else(|| short_pixels(n, all.len() as u64, flen * u64::from(g.frames)));
    };
    let total = l.rec.pixel_len.unwrap_or(0).max(0) as u64;
    if first + flen > total {
        return Err(short_pixels(n, total, flen * u64::from(g.frames)));
    }
    let Some(w) = l.big_endian_words() else {
        let start = off as u64 + first;
        return Ok(ctx
            .archive
            .read_bytes(&ctx.tenant, &l.rec, start, start + flen)
            .await?);
    };
    // Whole words of the value, swapped, then the frame's bytes (an 8-bit
    // frame in OW words may start or end inside a word).
    let w = w as u64;
    let (lo, hi) = (first / w * w, (first + flen).div_ceil(w) * w);
    let mut v = ctx
        .archive
        .read_bytes(
            &ctx.tenant,
            &l.rec,
            off as u64 + lo,
            off as u64 + hi.min(total),
        )
        .await?
        .to_vec();
    fulcrum_dicom::decode::swap_words(&mut v, w as usize);
    let at = (first - lo) as usize;
    Ok(Bytes::from(v).slice(at..at + flen as usize))
}

/// A video's stream, or the part `range` asks for, and the stream's whole
/// length: its fragments' values one after the other, read from storage
/// as they are sent (a surgical video may be gigabytes; it was read whole
/// into memory first).
pub(crate) async fn video_stream(
    ctx: &Ctx,
    l: &Loaded,
    range: Option<&ByteRange>,
) -> ApiResult<(
    u64,
    futures::stream::BoxStream<'static, std::io::Result<Bytes>>,
)> {
    use futures::{StreamExt, TryStreamExt};
    if l.rec.pixel_offset.is_none() {
        // Parsed with the header (a small instance stored whole).
        let whole = encapsulated_frame(ctx, l, 1, 1).await?;
        let total = whole.len() as u64;
        let part = match range.map(|r| r.within(total)) {
            Some(Some(r)) => whole.slice(r.start as usize..r.end as usize),
            Some(None) => return Err(unsatisfiable(total)),
            None => whole,
        };
        return Ok((
            total,
            futures::stream::once(async move { Ok(part) }).boxed(),
        ));
    }
    let kept = super::fragments::table(&l.rec, fragment_table)
        .ok_or_else(|| unsupported("the fragment table of this instance is missing"))?;
    let items: Vec<(u64, u64)> = kept
        .0
        .iter()
        .skip(1) // the Basic Offset Table
        .map(|(o, len)| ((*o).max(0) as u64, u64::from(*len)))
        .collect();
    if items.is_empty() {
        return Err(ApiError::not_found(
            "the instance has no pixel data fragments",
        ));
    }
    let total: u64 = items.iter().map(|(_, len)| len).sum();
    let items = match range.map(|r| r.within(total)) {
        Some(Some(want)) => {
            // The pieces of the fragments that fall in the range.
            let mut at = 0u64;
            let mut cut = Vec::new();
            for (start, len) in items {
                let (lo, hi) = (want.start.max(at), want.end.min(at + len));
                if lo < hi {
                    cut.push((start + (lo - at), hi - lo));
                }
                at += len;
            }
            cut
        }
        Some(None) => return Err(unsatisfiable(total)),
        None => items,
    };
    let (archive, tenant, rec) = (ctx.archive.clone(), ctx.tenant.clone(), l.rec.clone());
    let reads = futures::stream::iter(items).then(move |(start, len)| {
        let (archive, tenant, rec) = (archive.clone(), tenant.clone(), rec.clone());
        async move {
            archive
                .read(&tenant, &rec, start, start + len)
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))
        }
    });
    Ok((
        total,
        reads
            .map_ok(|s| s.map_err(super::wado::engine_io))
            .try_flatten()
            .boxed(),
    ))
}

/// One byte range of a `Range: bytes=…` header (what a browser's <video>
/// asks for to seek): `first-last`, `first-` or `-suffix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ByteRange {
    From(u64, Option<u64>),
    Last(u64),
}

impl ByteRange {
    /// The header's range; None for no header, several ranges or a form
    /// this does not read (the whole stream is sent then, as RFC 9110
    /// allows).
    pub(crate) fn of(headers: &axum::http::HeaderMap) -> Option<ByteRange> {
        let v = headers.get(axum::http::header::RANGE)?.to_str().ok()?;
        let spec = v.trim().strip_prefix("bytes=")?.trim();
        if spec.contains(',') {
            return None;
        }
        let (a, b) = spec.split_once('-')?;
        let num = |s: &str| s.trim().parse::<u64>().ok();
        match (a.trim().is_empty(), b.trim().is_empty()) {
            (true, false) => Some(ByteRange::Last(num(b)?)),
            (false, true) => Some(ByteRange::From(num(a)?, None)),
            (false, false) => {
                let (first, last) = (num(a)?, num(b)?);
                (first <= last).then_some(ByteRange::From(first, Some(last)))
            }
            (true, true) => None,
        }
    }

    /// The bytes of a `total`-byte stream the range names; None when it
    /// names none (416).
    pub(crate) fn within(&self, total: u64) -> Option<std::ops::Range<u64>> {
        let r = match *self {
            ByteRange::From(first, last) => {
                first..last.map_or(total, |l| l.saturating_add(1).min(total))
            }
            ByteRange::Last(n) => total.saturating_sub(n)..total,
        };
        (r.start < r.end).then_some(r)
    }
}

fn unsatisfiable(total: u64) -> ApiError {
    ApiError::new(
        StatusCode::RANGE_NOT_SATISFIABLE,
        format!("the range asked for lies outside the {total}-byte stream"),
    )
}

/// Frame `n` of 1-bit pixel data (a binary segmentation) whose frames do
/// not end on a byte: its bits, from the value's bit stream (first pixel
/// in the lowest bit, PS3.5 8.1.1), moved to start a byte; the last
/// byte's unused bits are zero.
async fn bit_frame(ctx: &Ctx, l: &Loaded, n: u32) -> ApiResult<Bytes> {
    let g = l.geometry();
    if g.rows == 0 || g.cols == 0 || g.samples == 0 {
        return Err(unsupported(
            "the header gives the frames no pixels to cut: Rows, Columns or Samples per Pixel \
             is 0 or absent",
        ));
    }
    if g.bits_allocated != 1 || l.big_endian_words().is_some() {
        return Err(unsupported(
            "frames of this pixel layout (bits not byte-aligned) cannot be cut",
        ));
    }
    let fbits = u64::from(g.rows) * u64::from(g.cols) * u64::from(g.samples);
    let first = (u64::from(n) - 1)
        .checked_mul(fbits)
        .filter(|_| fbits > 0)
        .ok_or_else(|| unsupported("the header gives the frames no pixels to cut"))?;
    let (lo, hi) = (first / 8, (first + fbits).div_ceil(8));
    let bytes = match l.rec.pixel_offset {
        Some(off) => {
            let total = l.rec.pixel_len.unwrap_or(0).max(0) as u64;
            if hi > total {
                return Err(short_pixels(
                    n,
                    total,
                    (fbits * u64::from(g.frames)).div_ceil(8),
                ));
            }
            let start = off.max(0) as u64;
            ctx.archive
                .read_bytes(&ctx.tenant, &l.rec, start + lo, start + hi)
                .await?
        }
        None => {
            let Some(DicomValue::Primitive(v)) = l.header.get(l.pixel_tag).map(|e| e.value())
            else {
                return Err(ApiError::not_found("the instance has no pixel data"));
            };
            let all = le_bytes(v);
            let part = all.get(lo as usize..hi as usize).ok_or_else(|| {
                short_pixels(
                    n,
                    all.len() as u64,
                    (fbits * u64::from(g.frames)).div_ceil(8),
                )
            })?;
            Bytes::copy_from_slice(part)
        }
    };
    Ok(shift_bits(&bytes, (first % 8) as u32, fbits).into())
}

/// `fbits` bits of `b` from bit `skip` of its first byte (lowest bit
/// first), starting a byte.
fn shift_bits(b: &[u8], skip: u32, fbits: u64) -> Vec<u8> {
    let len = fbits.div_ceil(8) as usize;
    let mut out: Vec<u8> = (0..len)
        .map(|j| {
            let low = b[j] >> skip;
            let high = match (skip, b.get(j + 1)) {
                (0, _) | (_, None) => 0,
                (s, Some(next)) => next << (8 - s),
            };
            low | high
        })
        .collect();
    let tail = (fbits % 8) as u32;
    if let (Some(last), true) = (out.last_mut(), tail != 0) {
        *last &= (1u8 << tail) - 1;
    }
    out
}

async fn encapsulated_frame(ctx: &Ctx, l: &Loaded, n: u32, frames: u32) -> ApiResult<Bytes> {
    if l.rec.pixel_offset.is_none() {
        // Parsed with the header (an instance stored whole).
        let Some(DicomValue::PixelSequence(seq)) = l.header.get(l.pixel_tag).map(|e| e.value())
        else {
            return Err(ApiError::not_found("the instance has no pixel data"));
        };
        let frags = seq.fragments();
        let mut rel = Vec::with_capacity(frags.len());
        let mut at = 0u64;
        for f in frags {
            rel.push(at);
            at += 8 + f.len() as u64;
        }
        let mut table: Vec<u64> = seq.offset_table().iter().map(|o| *o as u64).collect();
        if table.is_empty() {
            table = extended_offsets(&l.header);
        }
        let starts: Vec<bool> = frags.iter().map(|f| starts_frame(f)).collect();
        let idx = frame_items(&rel, n, frames, &table, &starts)?;
        return Ok(idx
            .iter()
            .flat_map(|i| frags[*i].iter().copied())
            .collect::<Vec<u8>>()
            .into());
    }
    let kept = super::fragments::table(&l.rec, fragment_table)
        .ok_or_else(|| unsupported("the fragment table of this instance is missing"))?;
    let (list, starts) = (&kept.0, &kept.1);
    let Some(((bot_off, bot_len), items)) = list.split_first() else {
        return Err(ApiError::not_found(
            "the instance has no pixel data fragments",
        ));
    };
    if items.is_empty() {
        return Err(ApiError::not_found(
            "the instance has no pixel data fragments",
        ));
    }
    let base = items[0].0;
    let rel: Vec<u64> = items
        .iter()
        .map(|(o, _)| (o - base).max(0) as u64)
        .collect();
    let mut table = Vec::new();
    if frames > 1 && items.len() != frames as usize {
        if *bot_len > 0 {
            let b = *bot_off as u64;
            let bot = ctx
                .archive
                .read_bytes(&ctx.tenant, &l.rec, b, b + *bot_len as u64)
                .await?;
            table = u32s_le(&bot);
        } else {
            table = extended_offsets(&l.header);
        }
    }
    // Frames found by their codestream markers (no offset table, more
    // fragments than frames): the flags are those of the fragments read.
    let by_markers = frames > 1 && items.len() != frames as usize && table.len() < frames as usize;
    let idx = frame_items(&rel, n, frames, &table, starts)?;
    let (first, last) = match (idx.first(), idx.last()) {
        (Some(f), Some(z)) => (items[*f], items[*z]),
        _ => return Err(bad_frame(n, frames)),
    };
    let (start, end) = (first.0.max(0) as u64, last.0.max(0) as u64 + last.1 as u64);
    if end < start {
        return Err(unsupported(
            "the fragment table does not match the stored bytes",
        ));
    }
    let span = ctx
        .archive
        .read_bytes(&ctx.tenant, &l.rec, start, end)
        .await?;
    if idx.len() == 1 && !by_markers {
        return Ok(span);
    }
    let mut out = Vec::with_capacity(span.len());
    for (k, i) in idx.into_iter().enumerate() {
        let (o, len) = items[i];
        let s = (o as u64).saturating_sub(start) as usize;
        let piece = span
            .get(s..s.saturating_add(len as usize))
            .ok_or_else(|| unsupported("the fragment table does not match the stored bytes"))?;
        // The flags were taken from the stored bytes at ingest; flags that
        // disagree with them (a row an older node replaced without its
        // flags, in a cluster being upgraded) would cut a wrong frame.
        if by_markers && starts_frame(piece) != (k == 0) {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the frame boundaries recorded for this instance do not match its stored bytes",
            ));
        }
        out.extend_from_slice(piece);
    }
    Ok(out.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_ranges_are_read_and_cut_to_the_stream() {
        let of = |v: &str| {
            let mut h = axum::http::HeaderMap::new();
            h.insert(axum::http::header::RANGE, v.parse().expect("value"));
            ByteRange::of(&h)
        };
        assert_eq!(
            of("bytes=100-199").and_then(|r| r.within(1000)),
            Some(100..200)
        );
        assert_eq!(
            of("bytes=900-").and_then(|r| r.within(1000)),
            Some(900..1000)
        );
        assert_eq!(
            of("bytes=-50").and_then(|r| r.within(1000)),
            Some(950..1000)
        );
        assert_eq!(
            of("bytes=990-5000").and_then(|r| r.within(1000)),
            Some(990..1000)
        );
        assert_eq!(
            of("bytes=-5000").and_then(|r| r.within(1000)),
            Some(0..1000)
        );
        // Outside the stream: 416.
        assert_eq!(of("bytes=1000-").map(|r| r.within(1000)), Some(None));
        // Not read: the whole stream is sent.
        for v in [
            "bytes=1-2,5-6",
            "bytes=5-1",
            "items=1-2",
            "bytes=-",
            "bytes=a-b",
        ] {
            assert_eq!(of(v), None, "{v}");
        }
    }

    #[test]
    fn frames_map_to_fragments() {
        // One fragment per frame.
        assert_eq!(
            frame_items(&[0, 100, 200], 2, 3, &[], &[]).expect("ok"),
            vec![1]
        );
        // Two fragments per frame, located through the offset table.
        let rel = [0, 50, 100, 150];
        assert_eq!(
            frame_items(&rel, 2, 2, &[0, 100], &[]).expect("ok"),
            vec![2, 3]
        );
        assert_eq!(
            frame_items(&rel, 1, 2, &[0, 100], &[]).expect("ok"),
            vec![0, 1]
        );
        // Single frame: everything.
        assert_eq!(
            frame_items(&rel, 1, 1, &[], &[]).expect("ok"),
            vec![0, 1, 2, 3]
        );
        assert!(frame_items(&rel, 1, 2, &[], &[]).is_err());
        // No offset table: frames begin at codestream markers.
        let starts = [true, false, false, true];
        assert_eq!(
            frame_items(&rel, 1, 2, &[], &starts).expect("ok"),
            vec![0, 1, 2]
        );
        assert_eq!(frame_items(&rel, 2, 2, &[], &starts).expect("ok"), vec![3]);
        // Markers that do not give as many frames, or a first fragment
        // that opens none: not guessed.
        assert!(frame_items(&rel, 1, 3, &[], &starts).is_err());
        assert!(frame_items(&rel, 1, 2, &[], &[false, true, false, true]).is_err());
        // No fragments at all (only the offset table item): an error, not a panic.
        assert!(frame_items(&[], 1, 2, &[], &[]).is_err());
    }

    #[test]
    fn whole_headers_read_past_the_cut_within_a_bound() {
        const MIB: i64 = 1024 * 1024;
        let rec = |size: i64, pixel_offset: Option<i64>| InstanceRecord {
            dataset_offset: 300,
            header_len: 16 * MIB,
            size,
            pixel_offset,
            pixel_vr: Some("OW".into()),
            pixel_element: pixel_offset.map(|_| 0x0010),
            ..Default::default()
        };
        let end = |r: &InstanceRecord, part| header_range(r, part).0.end as i64;
        // A 25 MB report without Pixel Data: read to its end.
        assert_eq!(end(&rec(25 * MIB, None), Header::Whole), 25 * MIB);
        assert_eq!(end(&rec(25 * MIB, None), Header::Stored), 16 * MIB);
        // Pixel Data after a cut header: up to its element header.
        assert_eq!(
            end(&rec(90 * MIB, Some(20 * MIB)), Header::Whole),
            20 * MIB - 12
        );
        // A header cut at the start of one 20 MB sequence (an SR's
        // Content Sequence): read whole.
        let mut sr = rec(20 * MIB, None);
        sr.header_len = 1000;
        assert_eq!(end(&sr, Header::Whole), 20 * MIB);
        // A 300 MB document: not read whole for its metadata.
        assert_eq!(end(&rec(300 * MIB, None), Header::Whole), 16 * MIB);
    }

    #[test]
    fn fragment_tables_are_read_in_every_stored_form() {
        let rec = |fragments: &str, starts: Option<&str>| InstanceRecord {
            fragments: Some(fragments.into()),
            frame_starts: starts.map(Into::into),
            ..Default::default()
        };
        let two = "[[100,0],[108,50],[166,40]]";
        let want = vec![(100, 0), (108, 50), (166, 40)];
        assert_eq!(
            fragment_table(&rec(two, None)),
            Some((want.clone(), vec![]))
        );
        assert_eq!(
            fragment_table(&rec(two, Some("010"))),
            Some((want.clone(), vec![true, false]))
        );
        assert_eq!(fragment_table(&rec(two, Some("01"))), Some((want, vec![])));
        assert_eq!(fragment_table(&rec("[[1]]", None)), None);
        assert_eq!(fragment_table(&rec("not json", None)), None);
        let mut b = vec![1, 2, 3, 4];
        fulcrum_dicom::decode::swap_words(&mut b, 2);
        assert_eq!(b, vec![2, 1, 4, 3]);
    }

    #[test]
    fn bit_frames_are_moved_to_start_a_byte() {
        // Frames of 5 bits: 10110 | 01101 | 1... (lowest bit first).
        let stream = [0b1011_0101u8, 0b0000_0011];
        let bits = |v: &[u8], n: u64| -> Vec<u8> {
            (0..n)
                .map(|i| (v[(i / 8) as usize] >> (i % 8)) & 1)
                .collect()
        };
        let all = bits(&stream, 16);
        for (k, skip) in [(0usize, 0u32), (1, 5)] {
            let lo = k * 5 / 8;
            let out = shift_bits(&stream[lo..], skip, 5);
            assert_eq!(out.len(), 1);
            assert_eq!(bits(&out, 5), all[k * 5..k * 5 + 5].to_vec());
            assert_eq!(out[0] >> 5, 0, "unused bits are zero");
        }
        // A frame across a byte boundary, longer than a byte.
        let out = shift_bits(&stream, 3, 11);
        assert_eq!(bits(&out, 11), all[3..14].to_vec());
    }
}
