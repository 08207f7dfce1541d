//! A push parser over a dataset's bytes that finds element boundaries
//! without decoding values: where root-level Pixel Data starts, where the
//! fragments of encapsulated Pixel Data are, and whether the stream ended
//! on an element boundary (truncation) or in zero padding after the last
//! element. It is fed the bytes as they arrive (PDVs, HTTP body pieces)
//! and keeps only a header's worth of them.

use thiserror::Error;

use crate::kept::Kept;
pub use crate::kept::{KeptElements, Skipped, SkippedHeader};

/// How a dataset is encoded, as far as element framing goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing {
    pub explicit: bool,
    pub big_endian: bool,
}

/// Transfer syntaxes whose dataset is deflated: no element framing in the
/// raw bytes. (Deflated Image Frame Compression, 1.2.840.10008.1.2.8.1,
/// deflates each frame, not the dataset: it is encapsulated.)
pub const DEFLATED_TS: [&str; 3] = [
    "1.2.840.10008.1.2.1.99",
    // JPIP Referenced Deflate, JPIP HTJ2K Referenced Deflate.
    "1.2.840.10008.1.2.4.95",
    "1.2.840.10008.1.2.4.205",
];

/// GE's private "Implicit VR Big Endian pixel data" syntax of older GE
/// systems (Genesis, Advantage Windows): an Implicit VR Little Endian data
/// set whose native pixel data is in big-endian words.
pub const GE_PRIVATE_IMPLICIT: &str = "1.2.840.113619.5.2";

/// Whether native pixel data in transfer syntax `ts` is in big-endian
/// words: Explicit VR Big Endian, and GE's private syntax.
pub fn pixels_big_endian(ts: &str) -> bool {
    ts == GE_PRIVATE_IMPLICIT || Framing::of(ts).is_some_and(|f| f.big_endian)
}

impl Framing {
    pub const EXPLICIT_LE: Framing = Framing {
        explicit: true,
        big_endian: false,
    };
    pub const IMPLICIT_LE: Framing = Framing {
        explicit: false,
        big_endian: false,
    };

    /// The framing of a transfer syntax; `None` for deflated datasets. Every
    /// other syntax not known here (the compressed families) is explicit LE.
    pub fn of(ts_uid: &str) -> Option<Framing> {
        match ts_uid {
            "1.2.840.10008.1.2" | GE_PRIVATE_IMPLICIT => Some(Self::IMPLICIT_LE),
            "1.2.840.10008.1.2.2" => Some(Framing {
                explicit: true,
                big_endian: true,
            }),
            t if DEFLATED_TS.contains(&t) => None,
            _ => Some(Self::EXPLICIT_LE),
        }
    }

    pub(crate) fn u16(&self, b: &[u8]) -> u16 {
        let a = [b[0], b[1]];
        if self.big_endian {
            u16::from_be_bytes(a)
        } else {
            u16::from_le_bytes(a)
        }
    }

    pub(crate) fn u32(&self, b: &[u8]) -> u32 {
        let a = [b[0], b[1], b[2], b[3]];
        if self.big_endian {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        }
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ScanError {
    #[error("malformed dataset at byte {offset}: {reason}")]
    Malformed { offset: u64, reason: &'static str },
    #[error("dataset truncated: it ends inside an element (byte {offset})")]
    Truncated { offset: u64 },
}

/// Root-level Pixel Data (or Float / Double Float Pixel Data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PixelData {
    /// Offset of the element's header in the dataset.
    pub elem_offset: u64,
    /// Offset of its value.
    pub value_offset: u64,
    pub element: u16,
    /// The VR as written (explicit VR), e.g. `*b"OW"`.
    pub vr: Option<[u8; 2]>,
    /// Value length; `None` when encapsulated (undefined length).
    pub len: Option<u32>,
    /// Encapsulated only: (value offset, length) of each item, the Basic
    /// Offset Table first.
    pub fragments: Vec<(u64, u32)>,
    /// For each item of `fragments`: whether its value opens with a
    /// codestream's start marker (see [`starts_frame`]).
    pub frame_starts: Vec<bool>,
}

/// Bytes of each fragment [`starts_frame`] looks at.
const HEAD: usize = 8;

/// Whether a fragment whose value begins with `head` starts a frame's
/// codestream: JPEG and JPEG-LS (SOI then a marker, FFD8 FF), JPEG 2000
/// and HTJ2K (SOC then SIZ, FF4F FF51), JPEG XL (codestream FF0A, or its
/// container's signature box). How frames split over fragments is found
/// this way when there is no offset table (PS3.5 A.4 allows several
/// fragments per frame and an empty Basic Offset Table), as pydicom and
/// DCMTK do. A later fragment of a frame can begin so only by chance
/// (JPEG entropy-coded data follows FF only with 00 or a restart marker;
/// JPEG-LS and JPEG 2000 data may hold FF 0A): the frames found are used
/// only when they are exactly as many as the header says, so a chance
/// match is refused, not answered with wrong frames.
pub fn starts_frame(head: &[u8]) -> bool {
    matches!(
        head,
        [0xFF, 0xD8, 0xFF, ..]
            | [0xFF, 0x4F, 0xFF, 0x51, ..]
            | [0xFF, 0x0A, ..]
            | [0, 0, 0, 0x0C, b'J', b'X', b'L', b' ', ..]
    )
}

const UNDEFINED: u32 = 0xFFFF_FFFF;

/// Sequences and items open at once, at most: 128 levels of nested
/// sequences (a sequence and its item are two). Real data sets nest a few
/// levels, structured reports a few dozen; a crafted one nests 100,000
/// deep, which every recursive parser (dicom-rs, DCMTK's dcmdump) follows
/// until its stack overflows.
pub const MAX_NESTING: usize = 256;
/// Lowest root-level pixel tag: (7FE0,0008) Float Pixel Data.
const FIRST_PIXEL_ELEMENT: u16 = 0x0008;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A sequence: items follow until its end or a sequence delimiter.
    /// `implicit` for an undefined-length UN (CP-246: implicit VR LE inside).
    Seq { implicit: bool },
    /// A sequence item: elements until its end or an item delimiter.
    Item,
    /// Encapsulated Pixel Data: fragment items until a sequence delimiter.
    Fragments,
}

/// An open sequence or item; `end` is set when its length is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Frame {
    kind: Kind,
    end: Option<u64>,
}

/// The parser. Offsets are relative to the first byte fed.
#[derive(Debug)]
pub struct Walker {
    framing: Framing,
    pos: u64,
    /// Value bytes still to skip.
    skip: u64,
    /// The first bytes of the fragment being skipped, until HEAD are seen
    /// or it ends.
    head: Option<Vec<u8>>,
    /// A header being assembled across feeds.
    hdr: Vec<u8>,
    stack: Vec<Frame>,
    pixel: Option<PixelData>,
    pixel_done: bool,
    root_boundary: u64,
    /// The latest root-level element start before `cut_limit`.
    cut: u64,
    cut_limit: u64,
    opaque_at: Option<u64>,
    /// Root-level elements holding an undefined-length UN (CP-246) seen
    /// whole, and the start of one still open.
    opaque: Vec<std::ops::Range<u64>>,
    opaque_open: Option<u64>,
    /// Where zero bytes in place of a root-level element begin: padding
    /// some writers leave after the dataset, which DCMTK and pydicom
    /// accept; everything from there on must be zero.
    padding_at: Option<u64>,
    /// Small root-level elements kept as they are fed (see
    /// [`Walker::keeping`]).
    kept: Option<Kept>,
}

/// VRs whose explicit-VR element header is 12 bytes, a 32-bit length
/// after two reserved bytes (PS3.5 7.1.2; SV and UV, the 64-bit integers,
/// among them: taken for short ones, their elements were refused).
pub(crate) const LONG_VRS: [&[u8; 2]; 13] = [
    b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV",
];
const SHORT_VRS: [&[u8; 2]; 21] = [
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"PN",
    b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US",
];

impl Walker {
    pub fn new(framing: Framing) -> Self {
        Self {
            framing,
            pos: 0,
            skip: 0,
            head: None,
            hdr: Vec::with_capacity(12),
            stack: Vec::new(),
            pixel: None,
            pixel_done: false,
            root_boundary: 0,
            cut: 0,
            cut_limit: u64::MAX,
            opaque_at: None,
            opaque: Vec::new(),
            opaque_open: None,
            padding_at: None,
            kept: None,
        }
    }

    /// Keeps the bytes of the root-level elements fed, up to Pixel Data:
    /// those of at most `elem_max` bytes, while they add up to at most
    /// `budget` (see [`Walker::take_kept`]).
    pub fn keeping(mut self, elem_max: usize, budget: usize) -> Self {
        self.kept = Some(Kept::new(elem_max, budget));
        self
    }

    /// Passes over the rest of the value being walked, if at least `min`
    /// bytes of it are still to come and it is not a pixel data fragment:
    /// returns how many bytes the caller must not feed (0 if none), which
    /// count as fed. For a caller that can read from anywhere (a stored
    /// instance), so a large value is not read only to be skipped; a
    /// value passed over is not kept.
    pub fn pass_value(&mut self, min: u64) -> u64 {
        if self.skip < min.max(1) || self.head.is_some() || self.pixel.is_some() {
            return 0;
        }
        let n = std::mem::take(&mut self.skip);
        self.pos += n;
        if let Some(k) = self.kept.as_mut() {
            k.pass(n);
        }
        n
    }

    /// Stops keeping, leaving out the element being walked (a caller that
    /// met an error in it keeps only whole elements).
    pub fn stop_keeping(&mut self) {
        if let Some(k) = self.kept.as_mut().filter(|k| k.active()) {
            k.end_unseen();
        }
    }

    /// Whether elements are still being kept.
    pub fn keeps(&self) -> bool {
        self.kept.as_ref().is_some_and(Kept::active)
    }

    /// What was kept, and the elements left out for their size. Call it
    /// once the stream has finished.
    pub fn take_kept(&mut self) -> Option<KeptElements> {
        self.kept.as_mut().map(Kept::take)
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Root-level Pixel Data, once its header has been read. Its fragment
    /// list is complete once [`Walker::pixel_complete`] says so.
    pub fn pixel(&self) -> Option<&PixelData> {
        self.pixel.as_ref()
    }

    pub fn pixel_complete(&self) -> bool {
        self.pixel_done
    }

    /// Start of the latest root-level element (a safe place to cut the
    /// dataset so the part before it parses on its own).
    pub fn root_boundary(&self) -> u64 {
        self.root_boundary
    }

    /// Makes [`Walker::cut_before_limit`] the latest root-level element
    /// start before `limit`.
    pub fn with_cut_limit(mut self, limit: u64) -> Self {
        self.cut_limit = limit;
        self
    }

    /// The limit given to [`Walker::with_cut_limit`] (u64::MAX: none).
    pub fn cut_limit(&self) -> u64 {
        self.cut_limit
    }

    /// Root-level Pixel Data whose element starts before the cut limit:
    /// the one a header is cut at (Pixel Data found past it, because a
    /// read brought more, does not move the cut).
    pub fn pixel_before_limit(&self) -> Option<&PixelData> {
        self.pixel().filter(|p| p.elem_offset < self.cut_limit)
    }

    /// The latest root-level element start before the cut limit (once at
    /// least that many bytes were fed): where a header longer than a cap is
    /// cut, the same place however the bytes arrived (the latest boundary
    /// fed so far depends on how much each read brought).
    pub fn cut_before_limit(&self) -> u64 {
        self.cut
    }

    /// The root-level elements that are or hold an undefined-length UN
    /// sequence (CP-246: items in Implicit VR Little Endian), which
    /// dicom-rs cannot parse in place, as ranges of the bytes fed (see
    /// [`crate::store::parse_dataset`]).
    pub fn opaque_elements(&self) -> Vec<std::ops::Range<u64>> {
        let mut out = self.opaque.clone();
        if let Some(start) = self.opaque_open.filter(|_| self.at_root_boundary()) {
            out.push(start..self.pos);
        }
        out
    }

    /// Where the elements seen so far end: the start of the zero padding
    /// that ends the dataset, or of a header not yet complete (at the end
    /// of the stream, a few zero bytes too short for a header).
    pub fn data_end(&self) -> u64 {
        self.padding_at.unwrap_or(self.pos - self.hdr.len() as u64)
    }

    /// Whether the parser stands between root-level elements (open
    /// defined-length frames that end exactly here count as closed), or
    /// in the zero padding after them (2 to 7 zero bytes at the very end,
    /// too short for an element header, count as padding too; a single
    /// one could be the first byte of a big-endian group number).
    pub fn at_root_boundary(&self) -> bool {
        let closed = self.stack.iter().all(|f| f.end == Some(self.pos));
        let padded = self.hdr.len() != 1 && self.hdr.iter().all(|&b| b == 0);
        self.padding_at.is_some() || (self.skip == 0 && closed && padded)
    }

    /// Records whether the fragment whose first bytes were collected
    /// starts a frame.
    fn end_head(&mut self) {
        let head = self.head.take().unwrap_or_default();
        if let Some(last) = self.pixel.as_mut().and_then(|p| p.frame_starts.last_mut()) {
            *last = starts_frame(&head);
        }
    }

    /// Closes the defined-length sequences and items that end here.
    fn close_ended(&mut self) {
        while self.stack.last().is_some_and(|f| f.end == Some(self.pos)) {
            self.stack.pop();
        }
    }

    /// Whether a value of `len` bytes from here fits in every open frame.
    fn fits(&self, len: u64) -> bool {
        let end = self.pos.saturating_add(len);
        self.stack.iter().all(|f| f.end.is_none_or(|e| end <= e))
    }

    /// The stream ended: fine only between root-level elements.
    pub fn finish(&self) -> Result<(), ScanError> {
        if self.at_root_boundary() {
            Ok(())
        } else {
            Err(ScanError::Truncated { offset: self.pos })
        }
    }

    /// Consumes the next bytes of the dataset.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), ScanError> {
        if self.padding_at.is_some() {
            if let Some(i) = data.iter().position(|&b| b != 0) {
                self.pos += i as u64;
                return Err(self.malformed("data after the zero padding that ends the dataset"));
            }
            self.pos += data.len() as u64;
            return Ok(());
        }
        while !data.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(data.len() as u64);
                if let Some(k) = self.kept.as_mut() {
                    k.push(&data[..n as usize]);
                }
                if let Some(head) = self.head.as_mut() {
                    let take = (HEAD - head.len()).min(n as usize);
                    head.extend_from_slice(&data[..take]);
                    if head.len() == HEAD || take as u64 == self.skip {
                        self.end_head();
                    }
                }
                self.skip -= n;
                self.pos += n;
                data = &data[n as usize..];
                if self.skip == 0 && self.stack.is_empty() && self.pixel.is_some() {
                    self.pixel_done = true;
                }
                continue;
            }
            if self.hdr.is_empty() {
                self.close_ended();
                if self.stack.is_empty() {
                    if let Some(k) = self.kept.as_mut() {
                        k.boundary();
                    }
                    self.root_boundary = self.pos;
                    if let Some(start) = self.opaque_open.take() {
                        self.opaque.push(start..self.pos);
                    }
                    if self.pos < self.cut_limit {
                        self.cut = self.pos;
                    }
                }
            }
            // Assemble a header: 4 bytes tell whether it is an item (8
            // bytes) or an element (8, or 12 for explicit long VRs).
            let want = self.header_len();
            let take = (want - self.hdr.len()).min(data.len());
            self.hdr.extend_from_slice(&data[..take]);
            if let Some(k) = self.kept.as_mut() {
                k.push(&data[..take]);
            }
            data = &data[take..];
            self.pos += take as u64;
            if self.hdr.len() < want {
                continue;
            }
            if want == 6 || want == 4 {
                // Now long enough to know the real header length.
                continue;
            }
            let hdr = std::mem::take(&mut self.hdr);
            if self.stack.is_empty() && hdr.iter().all(|&b| b == 0) {
                // No element has tag (0000,0000) in a dataset: padding.
                self.padding_at = Some(self.pos - hdr.len() as u64);
                if let Some(k) = self.kept.as_mut() {
                    k.end();
                }
                return self.feed(data);
            }
            self.header(&hdr)?;
            if let Some(k) = self.kept.as_mut().filter(|k| k.active()) {
                // Pixel Data ends the header; dicom-rs cannot parse an
                // undefined-length UN sequence (CP-246), nor what follows.
                if self.pixel.is_some() {
                    k.end();
                } else if self.opaque_at.is_some() {
                    k.end_unseen();
                }
            }
        }
        Ok(())
    }

    /// Framing of elements at the current depth (implicit inside CP-246 UN).
    fn current(&self) -> Framing {
        let implicit = self
            .stack
            .iter()
            .any(|f| f.kind == Kind::Seq { implicit: true });
        if implicit {
            Framing::IMPLICIT_LE
        } else {
            self.framing
        }
    }

    /// How many header bytes are needed given what is assembled so far.
    fn header_len(&self) -> usize {
        let f = self.current();
        if self.hdr.len() < 4 {
            return 4;
        }
        let group = f.u16(&self.hdr[0..2]);
        if group == 0xFFFE || !f.explicit {
            return 8;
        }
        if self.hdr.len() < 6 {
            return 6;
        }
        let vr = [self.hdr[4], self.hdr[5]];
        if LONG_VRS.contains(&&vr) {
            12
        } else {
            8
        }
    }

    fn malformed(&self, reason: &'static str) -> ScanError {
        ScanError::Malformed {
            offset: self.pos,
            reason,
        }
    }

    /// Handles one complete header; `self.pos` is just past it.
    fn header(&mut self, h: &[u8]) -> Result<(), ScanError> {
        let f = self.current();
        let start = self.pos - h.len() as u64;
        let group = f.u16(&h[0..2]);
        let element = f.u16(&h[2..4]);
        let top = self.stack.last().map(|f| f.kind);
        if group == 0xFFFE {
            let len = f.u32(&h[4..8]);
            let defined = len != UNDEFINED;
            if defined && !self.fits(len as u64) {
                return Err(self.malformed("item longer than its sequence"));
            }
            return match (element, top) {
                (0xE000, Some(Kind::Fragments)) => {
                    if !defined {
                        return Err(self.malformed("undefined-length pixel data fragment"));
                    }
                    if let Some(p) = self.pixel.as_mut().filter(|_| self.stack.len() == 1) {
                        p.fragments.push((self.pos, len));
                        p.frame_starts.push(false);
                        self.head = Some(Vec::with_capacity(HEAD));
                        if len == 0 {
                            self.end_head();
                        }
                    }
                    self.skip = len as u64;
                    Ok(())
                }
                (0xE000, Some(Kind::Seq { .. })) => {
                    let end = defined.then(|| self.pos + len as u64);
                    self.check_depth()?;
                    self.stack.push(Frame {
                        kind: Kind::Item,
                        end,
                    });
                    Ok(())
                }
                (0xE00D, Some(Kind::Item))
                    if self.stack.last().is_some_and(|f| f.end.is_none()) =>
                {
                    self.stack.pop();
                    Ok(())
                }
                (0xE0DD, Some(Kind::Seq { .. } | Kind::Fragments))
                    if self.stack.last().is_some_and(|f| f.end.is_none()) =>
                {
                    self.stack.pop();
                    if self.stack.is_empty() && self.pixel.is_some() {
                        self.pixel_done = true;
                    }
                    Ok(())
                }
                _ => Err(self.malformed("item or delimiter out of place")),
            };
        }
        if matches!(top, Some(Kind::Seq { .. } | Kind::Fragments)) {
            return Err(self.malformed("element where a sequence item was expected"));
        }
        let (vr, len) = if f.explicit {
            let vr = [h[4], h[5]];
            if h.len() == 12 {
                (Some(vr), f.u32(&h[8..12]))
            } else if SHORT_VRS.contains(&&vr) {
                (Some(vr), f.u16(&h[6..8]) as u32)
            } else {
                return Err(self.malformed("unknown value representation"));
            }
        } else {
            (None, f.u32(&h[4..8]))
        };
        let defined = len != UNDEFINED;
        if defined && !self.fits(len as u64) {
            return Err(self.malformed("value longer than its sequence item"));
        }
        let root = self.stack.is_empty();
        if root && group == 0x7FE0 && element >= FIRST_PIXEL_ELEMENT && self.pixel.is_none() {
            self.pixel = Some(PixelData {
                elem_offset: start,
                value_offset: self.pos,
                element,
                vr,
                len: defined.then_some(len),
                fragments: Vec::new(),
                frame_starts: Vec::new(),
            });
            if len == 0 {
                self.pixel_done = true;
            }
        }
        let is_sq = match vr {
            Some(v) => &v == b"SQ",
            // Implicit VR: the dictionary says which elements are sequences.
            None => is_sequence_tag(group, element),
        };
        let kind = match vr {
            _ if is_sq => Kind::Seq { implicit: false },
            Some(v) if &v == b"UN" && !defined => {
                if self.opaque_at.is_none() {
                    self.opaque_at = Some(self.root_boundary);
                }
                if self.opaque_open.is_none() {
                    self.opaque_open = Some(self.root_boundary);
                }
                Kind::Seq { implicit: true }
            }
            Some(v) if (&v == b"OB" || &v == b"OW") && group == 0x7FE0 && !defined => {
                Kind::Fragments
            }
            None if !defined => Kind::Seq { implicit: false },
            _ if !defined => return Err(self.malformed("undefined length on a non-sequence VR")),
            _ => {
                self.skip = len as u64;
                return Ok(());
            }
        };
        let end = defined.then(|| self.pos + len as u64);
        self.check_depth()?;
        self.stack.push(Frame { kind, end });
        Ok(())
    }

    fn check_depth(&self) -> Result<(), ScanError> {
        match self.stack.len() < MAX_NESTING {
            true => Ok(()),
            false => Err(self.malformed("sequences nested more than 128 levels deep")),
        }
    }
}

/// Whether the standard dictionary defines the tag as a sequence.
fn is_sequence_tag(group: u16, element: u16) -> bool {
    use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
    dicom_dictionary_std::StandardDataDictionary
        .by_tag(dicom_core::Tag(group, element))
        .is_some_and(|e| e.vr() == VirtualVr::Exact(dicom_core::VR::SQ))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An explicit VR little endian element.
    pub(crate) fn le_elem(group: u16, element: u16, vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&group.to_le_bytes());
        v.extend_from_slice(&element.to_le_bytes());
        v.extend_from_slice(vr);
        if LONG_VRS.contains(&vr) {
            v.extend_from_slice(&[0, 0]);
            v.extend_from_slice(&(value.len() as u32).to_le_bytes());
        } else {
            v.extend_from_slice(&(value.len() as u16).to_le_bytes());
        }
        v.extend_from_slice(value);
        v
    }

    fn item(tag_el: u16, len: u32) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&0xFFFEu16.to_le_bytes());
        v.extend_from_slice(&tag_el.to_le_bytes());
        v.extend_from_slice(&len.to_le_bytes());
        v
    }

    /// A dataset with an undefined-length sequence holding an icon image
    /// (its own Pixel Data, which must not count), then encapsulated
    /// root Pixel Data with a BOT and two fragments.
    fn sample() -> (Vec<u8>, u64) {
        let mut d = le_elem(0x0008, 0x0018, b"UI", b"1.2.3\0");
        // (0088,0200) SQ undefined length, one undefined-length item.
        d.extend_from_slice(&0x0088u16.to_le_bytes());
        d.extend_from_slice(&0x0200u16.to_le_bytes());
        d.extend_from_slice(b"SQ\0\0");
        d.extend_from_slice(&UNDEFINED.to_le_bytes());
        d.extend(item(0xE000, UNDEFINED));
        d.extend(le_elem(0x7FE0, 0x0010, b"OW", &[1, 2, 3, 4]));
        d.extend(item(0xE00D, 0));
        d.extend(item(0xE0DD, 0));
        let pixel_at = d.len() as u64;
        d.extend_from_slice(&0x7FE0u16.to_le_bytes());
        d.extend_from_slice(&0x0010u16.to_le_bytes());
        d.extend_from_slice(b"OB\0\0");
        d.extend_from_slice(&UNDEFINED.to_le_bytes());
        d.extend(item(0xE000, 0));
        d.extend(item(0xE000, 6));
        d.extend_from_slice(&[0xFF, 0xD8, 0xFF, 0xE0, 9, 9]); // a JPEG's SOI
        d.extend(item(0xE000, 2));
        d.extend_from_slice(&[7; 2]);
        d.extend(item(0xE0DD, 0));
        (d, pixel_at)
    }

    #[test]
    fn finds_root_pixel_data_and_fragments_in_any_piece_size() {
        let (d, pixel_at) = sample();
        for piece in [1, 3, 7, 64] {
            let mut w = Walker::new(Framing::EXPLICIT_LE);
            for p in d.chunks(piece) {
                w.feed(p).expect("valid dataset");
            }
            w.finish().expect("complete");
            let px = w.pixel().expect("pixel data");
            assert_eq!(px.elem_offset, pixel_at);
            assert_eq!(px.len, None);
            assert_eq!(px.fragments.len(), 3);
            assert_eq!(px.fragments[1].1, 6);
            let (off, len) = px.fragments[2];
            assert_eq!(&d[off as usize..(off + len as u64) as usize], &[7, 7]);
            // The BOT (empty), the fragment opening with SOI, the short one.
            assert_eq!(px.frame_starts, [false, true, false], "pieces of {piece}");
            assert!(w.pixel_complete());
        }
    }

    #[test]
    fn zero_padding_after_the_dataset_ends_it() {
        let (d, _) = sample();
        for pad in [2, 7, 8, 9, 5000] {
            for piece in [1, 3, 64, 8192] {
                let padded = [d.clone(), vec![0; pad]].concat();
                let mut w = Walker::new(Framing::EXPLICIT_LE);
                for p in padded.chunks(piece) {
                    w.feed(p).expect("padding is fine");
                }
                w.finish().expect("padding ends the dataset");
                assert_eq!(
                    w.data_end(),
                    d.len() as u64,
                    "{pad} bytes in pieces of {piece}"
                );
                assert!(w.pixel_complete());
            }
        }
        // A lone zero byte could be half a big-endian group number.
        let mut w = Walker::new(Framing::EXPLICIT_LE);
        w.feed(&[d.clone(), vec![0]].concat()).expect("so far");
        assert!(w.finish().is_err());
        // Anything but zeros after the padding is refused.
        let mut w = Walker::new(Framing::EXPLICIT_LE);
        w.feed(&[d.clone(), vec![0; 20]].concat()).expect("so far");
        let err = w.feed(&[0, 0, 5]).expect_err("data after padding");
        assert_eq!(
            err,
            ScanError::Malformed {
                offset: d.len() as u64 + 22,
                reason: "data after the zero padding that ends the dataset"
            }
        );
        // Zeros where an element is expected inside a sequence are not padding.
        let mut seq = le_elem(0x0008, 0x1115, b"SQ", &[]);
        seq.truncate(seq.len() - 4);
        seq.extend_from_slice(&UNDEFINED.to_le_bytes());
        seq.extend(item(0xE000, UNDEFINED));
        seq.extend_from_slice(&[0; 16]);
        let mut w = Walker::new(Framing::EXPLICIT_LE);
        assert!(w.feed(&seq).is_err() || w.finish().is_err());
    }

    #[test]
    fn the_64_bit_integer_vrs_have_the_long_header() {
        // (0072,0082) SV and (0072,0083) UV, 8-byte values, written as
        // PS3.5 7.1.2 says (pydicom, DCMTK): VR, two reserved bytes, a
        // 32-bit length. They were read as short and refused.
        let mut d = Vec::new();
        for (element, vr) in [(0x0082u16, b"SV"), (0x0083, b"UV")] {
            d.extend_from_slice(&0x0072u16.to_le_bytes());
            d.extend_from_slice(&element.to_le_bytes());
            d.extend_from_slice(vr);
            d.extend_from_slice(&[0, 0, 8, 0, 0, 0]);
            d.extend_from_slice(&(-5i64).to_le_bytes());
        }
        d.extend(le_elem(0x0072, 0x0084, b"LO", b"ok"));
        let mut w = Walker::new(Framing::EXPLICIT_LE);
        w.feed(&d).expect("SV and UV elements");
        w.finish().expect("complete");
        assert_eq!(w.data_end(), d.len() as u64);
    }

    #[test]
    fn truncation_is_detected() {
        let (d, _) = sample();
        for cut in [1, 5, 20, d.len() - 1] {
            let mut w = Walker::new(Framing::EXPLICIT_LE);
            w.feed(&d[..cut]).expect("prefix is fine so far");
            assert!(w.finish().is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn implicit_and_big_endian_native_pixels() {
        let mut d = Vec::new();
        d.extend_from_slice(&0x0010u16.to_le_bytes());
        d.extend_from_slice(&0x0010u16.to_le_bytes());
        d.extend_from_slice(&4u32.to_le_bytes());
        d.extend_from_slice(b"DOE ");
        d.extend_from_slice(&0x7FE0u16.to_le_bytes());
        d.extend_from_slice(&0x0010u16.to_le_bytes());
        d.extend_from_slice(&8u32.to_le_bytes());
        d.extend_from_slice(&[0; 8]);
        let mut w = Walker::new(Framing::IMPLICIT_LE);
        w.feed(&d).expect("valid");
        w.finish().expect("complete");
        let px = w.pixel().expect("pixel");
        assert_eq!((px.elem_offset, px.value_offset, px.len), (12, 20, Some(8)));

        let mut b = Vec::new();
        b.extend_from_slice(&0x7FE0u16.to_be_bytes());
        b.extend_from_slice(&0x0010u16.to_be_bytes());
        b.extend_from_slice(b"OW\0\0");
        b.extend_from_slice(&4u32.to_be_bytes());
        b.extend_from_slice(&[0; 4]);
        let mut w = Walker::new(Framing::of("1.2.840.10008.1.2.2").expect("BE"));
        w.feed(&b).expect("valid");
        assert_eq!(w.pixel().map(|p| p.len), Some(Some(4)));
    }

    /// A defined-length sequence with one defined-length item holding `inner`.
    fn defined_seq(inner: &[u8]) -> Vec<u8> {
        let mut item_v = item(0xE000, inner.len() as u32);
        item_v.extend_from_slice(inner);
        let mut d = Vec::new();
        d.extend_from_slice(&0x0008u16.to_le_bytes());
        d.extend_from_slice(&0x1115u16.to_le_bytes());
        d.extend_from_slice(b"SQ\0\0");
        d.extend_from_slice(&(item_v.len() as u32).to_le_bytes());
        d.extend(item_v);
        d
    }

    #[test]
    fn nesting_is_bounded() {
        // (0040,A730) SQ undefined length, an undefined-length item, and
        // so on, `levels` deep, closed again.
        let nest = |levels: usize| {
            let (mut d, mut close) = (Vec::new(), Vec::new());
            for _ in 0..levels {
                d.extend_from_slice(&0x0040u16.to_le_bytes());
                d.extend_from_slice(&0xA730u16.to_le_bytes());
                d.extend_from_slice(b"SQ\0\0");
                d.extend_from_slice(&UNDEFINED.to_le_bytes());
                d.extend_from_slice(&item(0xE000, UNDEFINED));
                close.extend_from_slice(&item(0xE00D, 0));
                close.extend_from_slice(&item(0xE0DD, 0));
            }
            d.extend(close);
            d
        };
        let mut w = Walker::new(Framing::EXPLICIT_LE);
        w.feed(&nest(128)).expect("128 levels");
        w.finish().expect("closed");
        let mut w = Walker::new(Framing::EXPLICIT_LE);
        let e = w.feed(&nest(129)).expect_err("129 levels");
        assert!(e.to_string().contains("nested more than 128"), "{e}");
    }

    #[test]
    fn nested_lengths_must_fit_their_parents() {
        let ok = defined_seq(&le_elem(0x0008, 0x1150, b"UI", b"1.2\0\0"));
        let mut d = ok.clone();
        d.extend(le_elem(0x7FE0, 0x0010, b"OW", &[0; 4]));
        for piece in [1, 5, 100] {
            let mut w = Walker::new(Framing::EXPLICIT_LE);
            for p in d.chunks(piece) {
                w.feed(p).expect("valid nesting");
            }
            w.finish().expect("complete");
            assert_eq!(w.pixel().map(|p| p.elem_offset), Some(ok.len() as u64));
        }
        // An inner OB claiming 4 GiB inside a 20-byte item.
        let mut bad_inner = Vec::new();
        bad_inner.extend_from_slice(&0x0009u16.to_le_bytes());
        bad_inner.extend_from_slice(&0x1010u16.to_le_bytes());
        bad_inner.extend_from_slice(b"OB\0\0");
        bad_inner.extend_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
        bad_inner.extend_from_slice(&[0; 8]);
        let mut w = Walker::new(Framing::EXPLICIT_LE);
        let err = w.feed(&defined_seq(&bad_inner)).expect_err("too long");
        assert!(matches!(err, ScanError::Malformed { .. }), "{err}");
        // Implicit VR: the dictionary knows (0008,1115) is a sequence.
        let mut imp = Vec::new();
        imp.extend_from_slice(&0x0008u16.to_le_bytes());
        imp.extend_from_slice(&0x1115u16.to_le_bytes());
        imp.extend_from_slice(&16u32.to_le_bytes());
        imp.extend(item(0xE000, 8));
        imp.extend_from_slice(&0x0008u16.to_le_bytes());
        imp.extend_from_slice(&0x1150u16.to_le_bytes());
        imp.extend_from_slice(&0x7FFF_FFF0u32.to_le_bytes());
        let mut w = Walker::new(Framing::IMPLICIT_LE);
        assert!(w.feed(&imp).is_err(), "inner length beyond the item");
    }

    #[test]
    fn garbage_is_malformed() {
        let mut w = Walker::new(Framing::EXPLICIT_LE);
        let err = w
            .feed(b"\x08\x00\x18\x00ZZ\x02\x00ab")
            .expect_err("ZZ is no VR");
        assert!(matches!(err, ScanError::Malformed { .. }));
    }
}
