//! RLE Lossless (PS3.5 Annex G) frames decoded to native little endian
//! pixels, for uncompressed frames asked of an RLE image and for rendering
//! it. Written here rather than taken from dicom-rs's adapter, which stops
//! at 16 bits allocated (RT Dose and 32-bit secondary captures are RLE too)
//! and indexes a short fragment without checking it. A frame is a 64-byte
//! header (segment count, then up to 15 offsets) and one PackBits segment
//! per byte of each sample, most significant byte first.

use super::render::{RenderError, Spec};

const HEADER: usize = 64;

fn corrupt(msg: impl Into<String>) -> RenderError {
    RenderError::Corrupt(msg.into())
}

/// One PackBits segment, decoded into `out` (exactly its length).
fn unpack(seg: &[u8], out: &mut [u8]) -> Result<(), RenderError> {
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

/// Decodes one frame: samples interleaved (or by plane when the header's
/// Planar Configuration is 1), each sample little endian.
pub fn decode(frame: &[u8], spec: &Spec) -> Result<Vec<u8>, RenderError> {
    if spec.bits_allocated == 0
        || !spec.bits_allocated.is_multiple_of(8)
        || spec.bits_allocated > 64
    {
        return Err(RenderError::Unsupported(format!(
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(rows: u32, cols: u32, samples: u32, bits: u32) -> Spec {
        Spec {
            rows,
            cols,
            samples,
            bits_allocated: bits,
            bits_stored: bits,
            signed: false,
            photometric: if samples == 3 { "RGB" } else { "MONOCHROME2" }.into(),
            planar: 0,
            slope: 1.0,
            intercept: 0.0,
            window: None,
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
        let px = decode(&f, &spec(1, 2, 1, 16)).expect("decodes");
        assert_eq!(px, [2, 1, 4, 3]);
    }

    #[test]
    fn rgb_is_interleaved_or_planar_as_the_header_says() {
        let f = frame(&[&[1, 10, 11], &[1, 20, 21], &[1, 30, 31]]);
        let mut s = spec(1, 2, 3, 8);
        assert_eq!(decode(&f, &s).expect("decodes"), [10, 20, 30, 11, 21, 31]);
        s.planar = 1;
        assert_eq!(decode(&f, &s).expect("decodes"), [10, 11, 20, 21, 30, 31]);
    }

    #[test]
    fn thirty_two_bits_and_bad_frames() {
        let f = frame(&[&[0, 1], &[0, 2], &[0, 3], &[0, 4]]);
        assert_eq!(
            decode(&f, &spec(1, 1, 1, 32)).expect("decodes"),
            [4, 3, 2, 1]
        );
        // Too short for a header, wrong segment count, a segment past the end.
        assert!(decode(&[0u8; 10], &spec(1, 1, 1, 8)).is_err());
        assert!(decode(&f, &spec(1, 1, 1, 16)).is_err());
        let mut bad = frame(&[&[0, 1]]);
        bad[4..8].copy_from_slice(&1000u32.to_le_bytes());
        assert!(decode(&bad, &spec(1, 1, 1, 8)).is_err());
    }
}
