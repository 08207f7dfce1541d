//! The small root-level elements of a data set past the ingest header cap,
//! kept while the rest of the stream flows to the chunker: the index
//! attributes of an instance whose header holds an element larger than the
//! cap (an 18 MiB private OB, a 19 MB Referenced Image Sequence) lie behind
//! it. Elements too large are left out whole (where they lie is noted);
//! the kept ones, in order, are a data set that parses on its own.

use crate::scan::{Framing, Walker, LONG_VRS};

/// Root-level elements kept by a [`crate::scan::Walker`] as it is fed.
#[derive(Debug)]
pub(crate) struct Kept {
    buf: Vec<u8>,
    /// Where the element being walked starts in `buf`.
    elem: usize,
    /// The element being walked is larger than `elem_max`: left out.
    dropping: bool,
    /// Keeping ended: at Pixel Data, an element dicom-rs cannot parse,
    /// the padding after the data set, or the budget.
    done: bool,
    /// Keeping ended before the end of the elements: at `budget`, or at
    /// an element dicom-rs cannot parse (what lies past was not looked at).
    overflowed: bool,
    elem_max: usize,
    budget: usize,
    /// Bytes fed so far, and where the element being walked starts.
    pos: u64,
    elem_pos: u64,
    /// The first bytes of the element being left out (its header).
    head: Vec<u8>,
    skipped: Vec<Skipped>,
}

/// A root-level element left out: where it lies among the bytes fed, and
/// its first bytes (at least its header: 8 bytes, 12 with a long VR).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub start: u64,
    pub end: u64,
    pub head: Vec<u8>,
}

/// What a walker kept (see [`crate::scan::Walker::keeping`]).
#[derive(Debug, Default)]
pub struct KeptElements {
    /// The kept elements, in order: a data set that parses on its own.
    pub bytes: Vec<u8>,
    /// Keeping stopped before the end of the elements (at the budget, or
    /// at an element dicom-rs cannot parse): those past were not looked at.
    pub overflowed: bool,
    /// The elements left out for their size, before keeping stopped.
    pub skipped: Vec<Skipped>,
}

/// What a [`Skipped`] element's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SkippedHeader {
    pub group: u16,
    pub element: u16,
    /// `None` in implicit VR syntaxes.
    pub vr: Option<[u8; 2]>,
    /// Where its value starts among the bytes fed.
    pub value_start: u64,
    /// `None`: undefined (a sequence, or items).
    pub len: Option<u32>,
}

impl Skipped {
    /// The element's header, read in `framing`.
    pub fn header(&self, framing: Framing) -> Option<SkippedHeader> {
        let h = self.head.get(..8)?;
        let (group, element) = (framing.u16(&h[0..2]), framing.u16(&h[2..4]));
        let vr = framing.explicit.then(|| [h[4], h[5]]);
        let header = match vr {
            Some(vr) if LONG_VRS.contains(&&vr) => 12,
            _ => 8,
        };
        let len = match header {
            12 => framing.u32(self.head.get(8..12)?),
            _ if framing.explicit => u32::from(framing.u16(&h[6..8])),
            _ => framing.u32(&h[4..8]),
        };
        Some(SkippedHeader {
            group,
            element,
            vr,
            value_start: self.start + header,
            len: (len != u32::MAX).then_some(len),
        })
    }
}

/// How many first bytes of an element left out are noted: its header.
const HEAD: usize = 12;

impl Kept {
    pub(crate) fn new(elem_max: usize, budget: usize) -> Self {
        Self {
            buf: Vec::new(),
            elem: 0,
            dropping: false,
            done: false,
            overflowed: false,
            elem_max,
            budget,
            pos: 0,
            elem_pos: 0,
            head: Vec::new(),
            skipped: Vec::new(),
        }
    }

    /// A root-level element starts: the one before it is whole.
    pub(crate) fn boundary(&mut self) {
        self.note_skipped();
        self.elem = self.buf.len();
        self.elem_pos = self.pos;
    }

    /// Notes the element left out, once it is whole.
    fn note_skipped(&mut self) {
        if std::mem::take(&mut self.dropping) {
            self.skipped.push(Skipped {
                start: self.elem_pos,
                end: self.pos,
                head: std::mem::take(&mut self.head),
            });
        }
    }

    /// Bytes of the element being walked.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.pos += bytes.len() as u64;
        if self.done || self.dropping {
            return;
        }
        if self.buf.len() - self.elem + bytes.len() > self.elem_max {
            self.leave_out();
        } else if self.buf.len() + bytes.len() > self.budget {
            self.end();
            self.overflowed = true;
        } else {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// `n` bytes of the element being walked pass without being fed: it
    /// is left out.
    pub(crate) fn pass(&mut self, n: u64) {
        if !self.done && !self.dropping {
            self.leave_out();
        }
        self.pos += n;
    }

    /// Leaves the element being walked out, noting its header.
    fn leave_out(&mut self) {
        let at = self.elem..self.buf.len().min(self.elem + HEAD);
        self.head = self.buf[at].to_vec();
        self.buf.truncate(self.elem);
        self.dropping = true;
    }

    /// Keeping ends before the element being walked, which with the ones
    /// after it is not looked at (an undefined-length UN sequence).
    pub(crate) fn end_unseen(&mut self) {
        self.end();
        self.overflowed = true;
    }

    /// Keeping ends before the element being walked.
    pub(crate) fn end(&mut self) {
        self.buf.truncate(self.elem);
        self.done = true;
    }

    pub(crate) fn active(&self) -> bool {
        !self.done
    }

    /// What was kept and left out. Once the walker has finished (it
    /// refuses a stream that ends inside an element), every kept element
    /// is whole.
    pub(crate) fn take(&mut self) -> KeptElements {
        if !self.done {
            self.note_skipped();
        }
        KeptElements {
            bytes: std::mem::take(&mut self.buf),
            overflowed: self.overflowed,
            skipped: std::mem::take(&mut self.skipped),
        }
    }
}

/// Past a header cut at the cap, root-level elements of up to this many
/// bytes are kept for the index (its attributes are short strings and
/// numbers; a larger element is bulk, or a sequence it does not read) ...
const KEPT_ELEMENT: usize = 64 * 1024;

/// A walker over the data set from a header's cut at `cap` on (a
/// root-level element boundary), fed `from_cut` and keeping small
/// elements for the index: at most a quarter of the cap each, at most the
/// cap in all, so an ingest holds at most twice the cap.
pub(crate) fn past_the_cut(framing: Framing, cap: usize, from_cut: &[u8]) -> Option<Walker> {
    let mut w = Walker::new(framing).keeping(KEPT_ELEMENT.min(cap / 4), cap);
    w.feed(from_cut).ok()?;
    Some(w)
}

/// Feeds the walker of [`past_the_cut`] while it keeps; one that fails is
/// dropped (the walker over the whole data set names the error).
pub(crate) fn feed(tail: &mut Option<Walker>, bytes: &[u8]) {
    if let Some(t) = tail {
        if t.keeps() && t.feed(bytes).is_err() {
            *tail = None;
        }
    }
}

/// What to parse for the index: the header's first `parse_end` bytes,
/// then what `tail` kept past its cut; and whether attributes may lie
/// unseen (a header cut at the cap with nothing kept past it, or kept
/// elements over their budget).
pub(crate) fn index_bytes(
    header: &[u8],
    parse_end: usize,
    cut: bool,
    tail: Option<&mut Walker>,
) -> (Vec<u8>, bool) {
    let mut bytes = header[..parse_end].to_vec();
    match tail.and_then(Walker::take_kept) {
        Some(kept) => {
            bytes.extend_from_slice(&kept.bytes);
            (bytes, kept.overflowed)
        }
        None => (bytes, cut),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::scan::tests::le_elem as elem;

    /// A small element, a 100-byte private OB, another small element, then
    /// the header of Pixel Data and some of its value.
    fn sample() -> (Vec<u8>, Vec<u8>, usize, usize) {
        let a = elem(0x0008, 0x0060, b"CS", b"CT");
        let big = elem(0x0009, 0x1000, b"OB", &[7u8; 100]);
        let c = elem(0x0020, 0x000D, b"UI", b"1.2.3\0");
        let mut all = [a.clone(), big.clone(), c.clone()].concat();
        all.extend(elem(0x7FE0, 0x0010, b"OW", &[1u8; 64]));
        let at = a.len();
        ([a, c].concat(), all, at, big.len())
    }

    fn kept_by_pieces(data: &[u8], piece: usize) -> KeptElements {
        let mut w = Walker::new(Framing::EXPLICIT_LE).keeping(50, 1000);
        for p in data.chunks(piece) {
            w.feed(p).expect("walks");
        }
        w.take_kept().expect("keeping")
    }

    #[test]
    fn small_elements_are_kept_and_large_ones_noted_however_bytes_arrive() {
        let (want, all, big_at, big_len) = sample();
        for piece in [1, 3, 7, 12, 64, all.len()] {
            let k = kept_by_pieces(&all, piece);
            assert_eq!(k.bytes, want, "pieces of {piece}");
            assert!(!k.overflowed);
            assert_eq!(k.skipped.len(), 1, "pieces of {piece}");
            let s = &k.skipped[0];
            assert_eq!((s.start, s.end), (big_at as u64, (big_at + big_len) as u64));
            let h = s.header(Framing::EXPLICIT_LE).expect("header");
            assert_eq!((h.group, h.element, h.vr), (0x0009, 0x1000, Some(*b"OB")));
            assert_eq!((h.value_start, h.len), (big_at as u64 + 12, Some(100)));
        }
    }

    #[test]
    fn a_value_passed_over_is_noted_as_left_out() {
        let (want, all, big_at, big_len) = sample();
        let mut w = Walker::new(Framing::EXPLICIT_LE).keeping(50, 1000);
        // The large element's header, and 10 bytes of its value.
        w.feed(&all[..big_at + 22]).expect("walks");
        assert_eq!(w.pass_value(1_000), 0, "less than asked is left to come");
        assert_eq!(w.pass_value(50), 90);
        w.feed(&all[big_at + big_len..])
            .expect("walks on after the value");
        let k = w.take_kept().expect("keeping");
        assert_eq!(k.bytes, want);
        assert_eq!(k.skipped[0].end, (big_at + big_len) as u64);
    }

    #[test]
    fn keeping_stops_unseen_at_the_budget_and_at_an_opaque_element() {
        let (_, all, _, _) = sample();
        let mut w = Walker::new(Framing::EXPLICIT_LE).keeping(50, 12);
        w.feed(&all).expect("walks");
        let k = w.take_kept().expect("keeping");
        assert!(k.overflowed);
        assert_eq!(k.bytes, elem(0x0008, 0x0060, b"CS", b"CT"));
        // An undefined-length UN sequence: neither it nor what follows.
        let mut un = [0x09u8, 0x00, 0x10, 0x10, b'U', b'N', 0, 0].to_vec();
        un.extend_from_slice(&u32::MAX.to_le_bytes());
        un.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        let data = [
            elem(0x0008, 0x0060, b"CS", b"CT"),
            un,
            elem(0x0020, 0x000D, b"UI", b"1.2\0"),
        ]
        .concat();
        let mut w = Walker::new(Framing::EXPLICIT_LE).keeping(50, 1000);
        w.feed(&data).expect("walks");
        let k = w.take_kept().expect("keeping");
        assert!(k.overflowed);
        assert_eq!(k.bytes, elem(0x0008, 0x0060, b"CS", b"CT"));
    }

    #[test]
    fn skipped_headers_read_implicit_and_big_endian_syntaxes() {
        let s = |head: Vec<u8>| Skipped {
            start: 100,
            end: 300,
            head,
        };
        let implicit = Framing {
            explicit: false,
            big_endian: false,
        };
        let h = s([0x09, 0x00, 0x00, 0x10, 200, 0, 0, 0].to_vec())
            .header(implicit)
            .expect("header");
        assert_eq!(
            (h.group, h.element, h.vr, h.value_start, h.len),
            (9, 0x1000, None, 108, Some(200))
        );
        let big = Framing {
            explicit: true,
            big_endian: true,
        };
        let h = s([0x00, 0x09, 0x10, 0x00, b'O', b'B', 0, 0, 0, 0, 0, 188].to_vec())
            .header(big)
            .expect("header");
        assert_eq!(
            (h.group, h.element, h.vr, h.value_start, h.len),
            (9, 0x1000, Some(*b"OB"), 112, Some(188))
        );
        assert!(s(vec![1, 2, 3]).header(big).is_none());
    }
}
