//! Compressed frames decoded to native little endian pixels: RLE Lossless
//! (PS3.5 Annex G), JPEG (baseline, extended, lossless, with the
//! pure-Rust jpeg-decoder), JPEG 2000 (see `jpeg2000`) and JPEG-LS (see
//! `jpegls`). Used where a peer or a client needs the pixels
//! uncompressed: WADO-RS frames and rendering, and C-STORE to a node that
//! accepts no compressed transfer syntax (see `dimse::scu`). Stored bytes
//! are never changed. The RLE decoder is written here rather than taken
//! from dicom-rs's adapter, which stops at 16 bits allocated (RT Dose and
//! 32-bit secondary captures are RLE too) and indexes a short fragment
//! without checking it. An RLE frame is a 64-byte header (segment count,
//! then up to 15 offsets) and one PackBits segment per byte of each
//! sample, most significant byte first.

use std::io::Cursor;

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Valid, but not something this decoder handles.
    #[error("{0}")]
    Unsupported(String),
    /// The data does not decode (or not to what the header says).
    #[error("{0}")]
    Corrupt(String),
}

/// What the header says about a frame's pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub rows: u32,
    pub cols: u32,
    pub samples: u32,
    pub bits_allocated: u32,
    /// Planar Configuration: 1 when colour planes follow one another.
    pub planar: u32,
    /// Pixel Representation 1: samples are two's complement.
    pub signed: bool,
}

/// A decoded JPEG frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// Samples, little endian, colour interleaved (RGB).
    pub pixels: Vec<u8>,
    pub width: u32,
    pub height: u32,
    /// 1 (gray) or 3 (RGB: a YCbCr JPEG comes out as RGB).
    pub samples: u8,
    /// 8 or 16.
    pub bits: u8,
}

/// The marker segments of a JPEG (or JPEG-LS) stream before its scan:
/// (marker, body after the length), from after SOI; fill bytes skipped.
/// Ends at the start of scan, or where a segment runs past the data.
pub(crate) fn segments(b: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    let mut at = 2; // past SOI
    std::iter::from_fn(move || loop {
        let (Some(0xFF), Some(&m)) = (b.get(at), b.get(at + 1)) else {
            return None;
        };
        if m == 0xFF {
            at += 1; // fill byte
            continue;
        }
        if m == 0xDA {
            return None; // start of scan
        }
        let l = b.get(at + 2..at + 4)?;
        let len = usize::from(u16::from_be_bytes([l[0], l[1]]));
        let body = b.get(at + 4..at + 2 + len)?;
        at += 2 + len;
        return Some((m, body));
    })
}

/// Whether a lossy JPEG stream says its colour is YCbCr: a JFIF marker
/// (JFIF is YCbCr), an Adobe marker with transform 1, or components with
/// different sampling factors (nobody subsamples RGB). An Adobe transform
/// of 0 says RGB; a lossless stream is left to the header.
fn says_ycbcr(b: &[u8]) -> bool {
    let (mut jfif, mut adobe) = (false, None);
    for (m, body) in segments(b) {
        if m == 0xE0 && body.starts_with(b"JFIF\0") {
            jfif = true;
        }
        if m == 0xEE && body.starts_with(b"Adobe") && body.len() >= 12 {
            adobe = Some(body[11]);
        }
        let sof = matches!(m, 0xC0..=0xCF) && !matches!(m, 0xC4 | 0xC8 | 0xCC);
        if !sof {
            continue;
        }
        if matches!(m, 0xC3 | 0xC7 | 0xCB | 0xCF) {
            return false; // lossless
        }
        if adobe.is_some() {
            return adobe == Some(1);
        }
        if jfif {
            return true;
        }
        // Precision, lines, samples per line, Nf, then per component: id,
        // sampling factors, quantization table.
        let n = usize::from(body.get(5).copied().unwrap_or(0));
        let factors: Vec<u8> = (0..n)
            .filter_map(|i| body.get(6 + 3 * i + 1).copied())
            .collect();
        return factors.windows(2).any(|w| w[0] != w[1]);
    }
    false
}

/// Decodes one JPEG frame (baseline, extended, lossless). `photometric`,
/// the header's Photometric Interpretation, says whether three components
/// are YCbCr (`YBR_…`, converted to RGB) or already RGB: the header, not
/// markers inside the JPEG (often absent), decides. Except that a frame
/// the stream itself says is YCbCr (see [`says_ycbcr`]) is read so
/// whatever the header says: some writers (GDCM) label YCbCr 4:2:2 as
/// RGB, which DCMTK, pydicom and browsers decode as YCbCr.
pub fn jpeg(b: &[u8], photometric: Option<&str>) -> Result<Decoded, DecodeError> {
    use jpeg_decoder::ColorTransform;
    let transform = match photometric.map(str::trim) {
        Some("RGB") if says_ycbcr(b) => Some(ColorTransform::YCbCr),
        Some("RGB") => Some(ColorTransform::RGB),
        Some(p) if p.starts_with("YBR") => Some(ColorTransform::YCbCr),
        _ => None,
    };
    std::panic::catch_unwind(|| {
        let mut d = jpeg_decoder::Decoder::new(Cursor::new(b));
        d.set_max_decoding_buffer_size(1 << 30);
        if let Some(t) = transform {
            d.set_color_transform(t);
        }
        let pixels = d.decode().map_err(|e| match e {
            jpeg_decoder::Error::Unsupported(f) => {
                DecodeError::Unsupported(format!("this JPEG cannot be decoded here ({f:?})"))
            }
            e => DecodeError::Corrupt(format!("JPEG: {e}")),
        })?;
        let info = d
            .info()
            .ok_or_else(|| DecodeError::Corrupt("JPEG without a frame header".into()))?;
        let (width, height) = (u32::from(info.width), u32::from(info.height));
        use jpeg_decoder::PixelFormat as F;
        let (samples, bits, pixels) = match info.pixel_format {
            F::L8 => (1, 8, pixels),
            // jpeg-decoder gives native-endian 16-bit samples.
            F::L16 => (
                1,
                16,
                pixels
                    .chunks_exact(2)
                    .flat_map(|c| u16::from_ne_bytes([c[0], c[1]]).to_le_bytes())
                    .collect(),
            ),
            F::RGB24 => (3, 8, pixels),
            F::CMYK32 => {
                return Err(DecodeError::Unsupported(
                    "CMYK JPEG cannot be decoded here".into(),
                ))
            }
        };
        let want = width as usize * height as usize * samples as usize * (bits as usize / 8);
        if pixels.len() < want {
            return Err(DecodeError::Corrupt("JPEG decoded short".into()));
        }
        Ok(Decoded {
            pixels,
            width,
            height,
            samples,
            bits,
        })
    })
    .map_err(|_| DecodeError::Corrupt("the JPEG data could not be decoded".into()))?
}

/// A full-range YCbCr sample (YBR_FULL, PS3.3 C.7.6.3.1.2) as RGB.
pub fn ybr_to_rgb(y: u8, cb: u8, cr: u8) -> [u8; 3] {
    let (y, cb, cr) = (y as f64, cb as f64 - 128.0, cr as f64 - 128.0);
    let c = |v: f64| v.round().clamp(0.0, 255.0) as u8;
    [
        c(y + 1.402 * cr),
        c(y - 0.344_136 * cb - 0.714_136 * cr),
        c(y + 1.772 * cb),
    ]
}

/// Reverses the bytes of each `width`-byte word of `b` (big-endian samples
/// to little endian, and back); widths below 2 leave it as is.
pub fn swap_words(b: &mut [u8], width: usize) {
    if width > 1 {
        for w in b.chunks_exact_mut(width) {
            w.reverse();
        }
    }
}

/// Decodes one frame of the JPEG family or JPEG 2000 (see [`decodable`];
/// RLE, whose output is the header's own layout, is [`rle`]).
pub fn image_frame(
    ts: &str,
    b: &[u8],
    spec: &Geometry,
    photometric: Option<&str>,
) -> Result<Decoded, DecodeError> {
    if crate::jpeg2000::TRANSFER_SYNTAXES.contains(&ts) {
        crate::jpeg2000::decode(b, spec, photometric)
    } else if crate::jpegls::TRANSFER_SYNTAXES.contains(&ts) {
        crate::jpegls::decode(b, spec)
    } else {
        jpeg(b, photometric)
    }
}

const HEADER: usize = 64;

fn corrupt(msg: impl Into<String>) -> DecodeError {
    DecodeError::Corrupt(msg.into())
}

/// One PackBits segment, decoded into `out` (exactly its length).
fn unpack(seg: &[u8], out: &mut [u8]) -> Result<(), DecodeError> {
    let (mut i, mut o) = (0, 0);
    while o < out.len() {
        let Some(&n) = seg.get(i) else {
            return Err(corrupt(format!(
                "an RLE segment ends after {o} of {} bytes",
                out.len()
            )));
        };
        i += 1;
        let n = n as i8;
        if n >= 0 {
            let len = n as usize + 1;
            let src = seg
                .get(i..i + len)
                .ok_or_else(|| corrupt("an RLE literal run is cut short"))?;
            let len = len.min(out.len() - o);
            out[o..o + len].copy_from_slice(&src[..len]);
            i += n as usize + 1;
            o += len;
        } else if n != -128 {
            let byte = *seg
                .get(i)
                .ok_or_else(|| corrupt("an RLE replicate run is cut short"))?;
            let len = ((1 - n as isize) as usize).min(out.len() - o);
            out[o..o + len].fill(byte);
            i += 1;
            o += len;
        }
    }
    Ok(())
}

/// Inflates one frame of Deflated Image Frame Compression
/// (1.2.840.10008.1.2.8.1, PS3.5 8.2.16): each frame a raw deflate stream
/// of its native bytes (bit-packed for 1-bit segmentations). Inflating
/// stops at the frame's size, so a stream claiming more is refused, not
/// inflated whole.
pub fn deflated_frame(frame: &[u8], spec: &Geometry) -> Result<Vec<u8>, DecodeError> {
    let bits = u64::from(spec.rows)
        * u64::from(spec.cols)
        * u64::from(spec.samples)
        * u64::from(spec.bits_allocated);
    let want = bits.div_ceil(8);
    let out = inflate_at_most(frame, want)
        .map_err(|e| DecodeError::Corrupt(format!("deflated frame: {e}")))?;
    if out.len() as u64 != want {
        return Err(DecodeError::Corrupt(format!(
            "deflated frame of {} bytes, the header says {want}",
            out.len()
        )));
    }
    Ok(out)
}

/// `deflated` (a raw deflate stream) inflated, stopping one byte past
/// `limit`: a result longer than `limit` means the stream holds more, and
/// a bomb costs no more than that to find out.
pub(crate) fn inflate_at_most(deflated: &[u8], limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::with_capacity(limit.min(1 << 30) as usize);
    flate2::read::DeflateDecoder::new(deflated)
        .take(limit.saturating_add(1))
        .read_to_end(&mut out)?;
    Ok(out)
}

/// Decodes one RLE Lossless frame: samples interleaved (or by plane when the header's
/// Planar Configuration is 1), each sample little endian.
pub fn rle(frame: &[u8], spec: &Geometry) -> Result<Vec<u8>, DecodeError> {
    if spec.bits_allocated == 0
        || !spec.bits_allocated.is_multiple_of(8)
        || spec.bits_allocated > 64
    {
        return Err(DecodeError::Unsupported(format!(
            "RLE with {} bits allocated cannot be decoded",
            spec.bits_allocated
        )));
    }
    let bytes = (spec.bits_allocated / 8) as usize;
    let samples = spec.samples.max(1) as usize;
    let pixels = spec.rows as usize * spec.cols as usize;
    let want = samples * bytes;
    let head = frame
        .get(..HEADER)
        .ok_or_else(|| corrupt("an RLE frame is shorter than its 64-byte header"))?;
    let word = |k: usize| {
        u32::from_le_bytes([
            head[4 * k],
            head[4 * k + 1],
            head[4 * k + 2],
            head[4 * k + 3],
        ]) as usize
    };
    let count = word(0);
    if count != want || count > 15 {
        return Err(corrupt(format!(
            "the RLE frame has {count} segments; {samples} sample(s) of {bytes} byte(s) need {want}"
        )));
    }
    let mut planes = vec![0u8; want * pixels];
    for (k, plane) in planes
        .chunks_exact_mut(pixels.max(1))
        .enumerate()
        .take(want)
    {
        let start = word(k + 1);
        let end = if k + 1 < count {
            word(k + 2)
        } else {
            frame.len()
        };
        let seg = frame
            .get(start.max(HEADER)..end)
            .filter(|_| start >= HEADER)
            .ok_or_else(|| corrupt(format!("RLE segment {k} lies outside the frame")))?;
        unpack(seg, plane)?;
    }
    // Segment k holds byte (bytes - 1 - k % bytes) of sample k / bytes.
    let mut out = vec![0u8; want * pixels];
    for s in 0..samples {
        for b in 0..bytes {
            let plane = &planes[(s * bytes + bytes - 1 - b) * pixels..][..pixels];
            for (p, &v) in plane.iter().enumerate() {
                let at = if spec.planar == 1 {
                    (s * pixels + p) * bytes + b
                } else {
                    (p * samples + s) * bytes + b
                };
                out[at] = v;
            }
        }
    }
    Ok(out)
}

/// RLE Lossless.
pub const RLE_LOSSLESS: &str = "1.2.840.10008.1.2.5";
const JPEG: [&str; 4] = [
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",
];
/// Largest decoded Pixel Data [`decompress`] builds in memory.
const MAX_DECODED: u64 = 1 << 30;

/// Whether frames in transfer syntax `ts` are the JPEG family.
fn is_jpeg(ts: &str) -> bool {
    JPEG.contains(&ts)
}

/// Whether frames in transfer syntax `ts` can be decoded here.
pub fn decodable(ts: &str) -> bool {
    ts == RLE_LOSSLESS
        || is_jpeg(ts)
        || crate::jpeg2000::TRANSFER_SYNTAXES.contains(&ts)
        || crate::jpegls::TRANSFER_SYNTAXES.contains(&ts)
}

fn int(obj: &InMemDicomObject, tag: Tag) -> Option<u32> {
    obj.get(tag)?.to_int::<u32>().ok()
}

/// The frames of encapsulated Pixel Data: one fragment each, or as the
/// Basic Offset Table groups them, or (JPEG) up to each end-of-image marker.
fn frames<'a>(
    fragments: &'a [Vec<u8>],
    offsets: &[u32],
    n: usize,
) -> Result<Vec<Vec<&'a [u8]>>, DecodeError> {
    if n == 1 {
        return Ok(vec![fragments.iter().map(Vec::as_slice).collect()]);
    }
    if fragments.len() == n {
        return Ok(fragments.iter().map(|f| vec![f.as_slice()]).collect());
    }
    let mut out: Vec<Vec<&[u8]>> = Vec::new();
    if offsets.len() == n {
        // Item k starts at the sum of 8 + length of the items before it.
        let mut at = 0u64;
        for f in fragments {
            let k = offsets
                .iter()
                .rposition(|o| u64::from(*o) <= at)
                .unwrap_or(0);
            if out.len() <= k {
                out.resize_with(k + 1, Vec::new);
            }
            out[k].push(f);
            at += 8 + f.len() as u64;
        }
    } else {
        let mut cur = Vec::new();
        for f in fragments {
            cur.push(f.as_slice());
            let end = f
                .iter()
                .rposition(|b| *b != 0)
                .map(|i| &f[..=i])
                .unwrap_or(&[]);
            if end.ends_with(&[0xFF, 0xD9]) {
                out.push(std::mem::take(&mut cur));
            }
        }
    }
    if out.len() != n || out.iter().any(Vec::is_empty) {
        return Err(DecodeError::Unsupported(format!(
            "{} fragments cannot be told apart into {n} frames",
            fragments.len()
        )));
    }
    Ok(out)
}

/// Replaces the encapsulated Pixel Data of `obj` (transfer syntax `ts`,
/// see [`decodable`]) by its decoded frames, so the data set can be
/// written in a native little endian transfer syntax: OB or OW, a colour
/// JPEG's Photometric Interpretation becomes RGB (what decoding YCbCr
/// gives), and lossy JPEG is marked as such.
pub fn decompress(obj: &mut InMemDicomObject, ts: &str) -> Result<(), DecodeError> {
    let unsupported = |m: &str| DecodeError::Unsupported(m.to_string());
    if !decodable(ts) {
        return Err(DecodeError::Unsupported(format!(
            "frames in transfer syntax {ts} cannot be decoded here"
        )));
    }
    let geom = Geometry {
        rows: int(obj, tags::ROWS).ok_or_else(|| unsupported("no Rows"))?,
        cols: int(obj, tags::COLUMNS).ok_or_else(|| unsupported("no Columns"))?,
        samples: int(obj, tags::SAMPLES_PER_PIXEL).unwrap_or(1),
        bits_allocated: int(obj, tags::BITS_ALLOCATED).unwrap_or(8),
        planar: int(obj, tags::PLANAR_CONFIGURATION).unwrap_or(0),
        signed: int(obj, tags::PIXEL_REPRESENTATION) == Some(1),
    };
    let n = int(obj, tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1) as usize;
    let frame_len = u64::from(geom.rows)
        * u64::from(geom.cols)
        * u64::from(geom.samples)
        * u64::from(geom.bits_allocated / 8);
    if frame_len == 0 || frame_len * n as u64 > MAX_DECODED {
        return Err(unsupported(
            "the decoded pixel data would be empty or too large",
        ));
    }
    let pixel = obj
        .get(tags::PIXEL_DATA)
        .ok_or_else(|| unsupported("no Pixel Data"))?;
    let (Some(fragments), offsets) = (pixel.value().fragments(), pixel.value().offset_table())
    else {
        return Err(unsupported("the Pixel Data is not encapsulated"));
    };
    let photometric = obj
        .get(tags::PHOTOMETRIC_INTERPRETATION)
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim().to_string());
    let mut out = Vec::with_capacity((frame_len * n as u64) as usize);
    let mut colour = false;
    for parts in frames(fragments, offsets.unwrap_or(&[]), n)? {
        let frame = parts.concat();
        let pixels = if ts == RLE_LOSSLESS {
            rle(&frame, &geom)?
        } else {
            let d = image_frame(ts, &frame, &geom, photometric.as_deref())?;
            if (d.width, d.height) != (geom.cols, geom.rows)
                || u32::from(d.samples) != geom.samples
                || u32::from(d.bits) != geom.bits_allocated.clamp(8, 16)
            {
                return Err(DecodeError::Corrupt(format!(
                    "the frame decodes to {}x{}, {} sample(s) of {} bits; the header says {}x{}, {} of {}",
                    d.width, d.height, d.samples, d.bits, geom.cols, geom.rows, geom.samples, geom.bits_allocated
                )));
            }
            colour |= d.samples == 3;
            d.pixels
        };
        if pixels.len() as u64 != frame_len {
            return Err(DecodeError::Corrupt(
                "a frame decoded to the wrong size".into(),
            ));
        }
        out.extend_from_slice(&pixels);
    }
    if out.len() % 2 == 1 {
        out.push(0);
    }
    let vr = if geom.bits_allocated > 8 {
        VR::OW
    } else {
        VR::OB
    };
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        vr,
        PrimitiveValue::U8(out.into()),
    ));
    let cs = |v: &str| PrimitiveValue::from(v);
    if colour {
        obj.put(DataElement::new(
            tags::PHOTOMETRIC_INTERPRETATION,
            VR::CS,
            cs("RGB"),
        ));
        obj.put(DataElement::new(
            tags::PLANAR_CONFIGURATION,
            VR::US,
            PrimitiveValue::from(0u16),
        ));
    }
    let lossy = matches!(
        ts,
        "1.2.840.10008.1.2.4.50" | "1.2.840.10008.1.2.4.51" | "1.2.840.10008.1.2.4.81"
    );
    if lossy && obj.get(tags::LOSSY_IMAGE_COMPRESSION).is_none() {
        obj.put(DataElement::new(
            tags::LOSSY_IMAGE_COMPRESSION,
            VR::CS,
            cs("01"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(rows: u32, cols: u32, samples: u32, bits: u32) -> Geometry {
        Geometry {
            rows,
            cols,
            samples,
            bits_allocated: bits,
            planar: 0,
            signed: false,
        }
    }

    /// A frame of the given segments, each already PackBits-encoded.
    fn frame(segments: &[&[u8]]) -> Vec<u8> {
        let mut head = vec![0u8; HEADER];
        head[..4].copy_from_slice(&(segments.len() as u32).to_le_bytes());
        let mut at = HEADER;
        for (k, s) in segments.iter().enumerate() {
            head[4 * (k + 1)..4 * (k + 2)].copy_from_slice(&(at as u32).to_le_bytes());
            at += s.len();
        }
        let mut out = head;
        for s in segments {
            out.extend_from_slice(s);
        }
        out
    }

    #[test]
    fn fragments_are_told_apart_into_frames() {
        let f = |b: &[u8]| b.to_vec();
        let frags = vec![f(b"abcd"), f(b"efgh"), f(b"ijkl")];
        assert_eq!(
            frames(&frags, &[], 1).expect("one"),
            vec![vec![&b"abcd"[..], b"efgh", b"ijkl"]]
        );
        assert_eq!(frames(&frags, &[], 3).expect("one each").len(), 3);
        // Items are 8 + 4 bytes: offsets 0 and 24 put a, b in frame 1, c in frame 2.
        let by_table = frames(&frags, &[0, 24], 2).expect("by the offset table");
        assert_eq!(
            by_table,
            vec![vec![&b"abcd"[..], b"efgh"], vec![&b"ijkl"[..]]]
        );
        // No table: JPEG frames end with an end-of-image marker (padding after it).
        let jpegs = vec![
            f(b"\xff\xd8a"),
            f(b"b\xff\xd9\x00"),
            f(b"\xff\xd8c\xff\xd9"),
        ];
        let split = frames(&jpegs, &[], 2).expect("by markers");
        assert_eq!((split[0].len(), split[1].len()), (2, 1));
        assert!(frames(&frags, &[], 2).is_err());
    }

    #[test]
    fn packbits_literal_and_replicate_runs() {
        let mut out = [0u8; 7];
        // 2 literals (1, 2), then 5 × 9, then a no-op (-128) never reached.
        unpack(&[1, 1, 2, (-4i8) as u8, 9, 0x80], &mut out).expect("decodes");
        assert_eq!(out, [1, 2, 9, 9, 9, 9, 9]);
        assert!(unpack(&[5, 1, 2], &mut [0u8; 6]).is_err());
        assert!(unpack(&[0, 1], &mut [0u8; 3]).is_err());
    }

    #[test]
    fn sixteen_bit_gray_is_little_endian() {
        // Two pixels 0x0102, 0x0304: MSB segment [1, 3], LSB segment [2, 4].
        let f = frame(&[&[1, 1, 3], &[1, 2, 4]]);
        let px = rle(&f, &spec(1, 2, 1, 16)).expect("decodes");
        assert_eq!(px, [2, 1, 4, 3]);
    }

    #[test]
    fn rgb_is_interleaved_or_planar_as_the_header_says() {
        let f = frame(&[&[1, 10, 11], &[1, 20, 21], &[1, 30, 31]]);
        let mut s = spec(1, 2, 3, 8);
        assert_eq!(rle(&f, &s).expect("decodes"), [10, 20, 30, 11, 21, 31]);
        s.planar = 1;
        assert_eq!(rle(&f, &s).expect("decodes"), [10, 11, 20, 21, 30, 31]);
    }

    #[test]
    fn thirty_two_bits_and_bad_frames() {
        let f = frame(&[&[0, 1], &[0, 2], &[0, 3], &[0, 4]]);
        assert_eq!(rle(&f, &spec(1, 1, 1, 32)).expect("decodes"), [4, 3, 2, 1]);
        // Too short for a header, wrong segment count, a segment past the end.
        assert!(rle(&[0u8; 10], &spec(1, 1, 1, 8)).is_err());
        assert!(rle(&f, &spec(1, 1, 1, 16)).is_err());
        let mut bad = frame(&[&[0, 1]]);
        bad[4..8].copy_from_slice(&1000u32.to_le_bytes());
        assert!(rle(&bad, &spec(1, 1, 1, 8)).is_err());
    }
}
