//! The small root-level elements of a data set past the ingest header cap,
//! kept while the rest of the stream flows to the chunker: the index
//! attributes of an instance whose header holds an element larger than the
//! cap (an 18 MiB private OB, a 19 MB Referenced Image Sequence) lie behind
//! it. Elements too large are left out whole; the kept ones, in order, are
//! a data set that parses on its own.

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
    /// Keeping ended because the kept elements reached `budget`.
    overflowed: bool,
    elem_max: usize,
    budget: usize,
}

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
        }
    }

    /// A root-level element starts: the one before it is whole.
    pub(crate) fn boundary(&mut self) {
        self.dropping = false;
        self.elem = self.buf.len();
    }

    /// Bytes of the element being walked.
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        if self.done || self.dropping {
            return;
        }
        if self.buf.len() - self.elem + bytes.len() > self.elem_max {
            self.buf.truncate(self.elem);
            self.dropping = true;
        } else if self.buf.len() + bytes.len() > self.budget {
            self.end();
            self.overflowed = true;
        } else {
            self.buf.extend_from_slice(bytes);
        }
    }

    /// Keeping ends before the element being walked.
    pub(crate) fn end(&mut self) {
        self.buf.truncate(self.elem);
        self.done = true;
    }

    pub(crate) fn active(&self) -> bool {
        !self.done
    }

    /// The kept elements, and whether some past them were not looked at
    /// because the budget ran out.
    /// Once the walker has finished (it refuses a stream that ends inside
    /// an element), every kept element is whole.
    pub(crate) fn take(&mut self) -> (Vec<u8>, bool) {
        (std::mem::take(&mut self.buf), self.overflowed)
    }
}

use crate::scan::{Framing, Walker};

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
        Some((kept, overflowed)) => {
            bytes.extend_from_slice(&kept);
            (bytes, overflowed)
        }
        None => (bytes, cut),
    }
}
