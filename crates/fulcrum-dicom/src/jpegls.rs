//! JPEG-LS frames (PS3.5 A.4.3: lossless 1.2.840.10008.1.2.4.80 and
//! near-lossless .81) decoded to native little endian pixels with
//! pure_jpegls, a pure-Rust decoder checked against CharLS's streams.
//! It reads single-component images (the CT, MR, CR and DX that archives
//! compress with JPEG-LS); colour JPEG-LS is refused as unsupported. The
//! frame header (SOF55) is read first and checked against the image
//! header, so a frame claiming a huge image never gets to allocate it.

use crate::decode::{DecodeError, Decoded, Geometry};

/// JPEG-LS Lossless and JPEG-LS Lossy (Near-Lossless).
pub const TRANSFER_SYNTAXES: [&str; 2] = ["1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"];

/// What a stream's SOF55 segment says: sample precision, lines, columns,
/// components.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Frame {
    precision: u8,
    height: u32,
    width: u32,
    components: u8,
}

/// The SOF55 segment before the scan (see [`crate::decode::segments`]).
fn frame(b: &[u8]) -> Option<Frame> {
    if !b.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let (_, s) = crate::decode::segments(b).find(|(m, _)| *m == 0xF7)?;
    let s = s.get(..6)?;
    Some(Frame {
        precision: s[0],
        height: u32::from(u16::from_be_bytes([s[1], s[2]])),
        width: u32::from(u16::from_be_bytes([s[3], s[4]])),
        components: s[5],
    })
}

/// Decodes one JPEG-LS frame of an image the header describes as `spec`:
/// 8-bit gray when the header allocates 8 bits (and the samples are
/// unsigned), else 16-bit, signed samples in two's complement.
pub fn decode(b: &[u8], spec: &Geometry) -> Result<Decoded, DecodeError> {
    let corrupt = |m: String| DecodeError::Corrupt(m);
    let f = frame(b).ok_or_else(|| corrupt("JPEG-LS: no frame header".into()))?;
    if f.components != 1 || spec.samples != 1 {
        return Err(DecodeError::Unsupported(
            "colour JPEG-LS cannot be decoded here".into(),
        ));
    }
    if (f.width, f.height) != (spec.cols, spec.rows) {
        return Err(corrupt(format!(
            "the JPEG-LS frame is {}x{}; the header says {}x{}",
            f.width, f.height, spec.cols, spec.rows
        )));
    }
    let p = u32::from(f.precision);
    if !(2..=16).contains(&p) {
        return Err(corrupt(format!("JPEG-LS sample precision {p}")));
    }
    let (width, height) = (spec.cols, spec.rows);
    let (samples, _, _) = std::panic::catch_unwind(|| jpegls::decode(b, width, height))
        .map_err(|_| corrupt("the JPEG-LS data could not be decoded".into()))?
        .map_err(|e| match e {
            jpegls::CodecError::Unsupported(m) => {
                DecodeError::Unsupported(format!("this JPEG-LS cannot be decoded here ({m})"))
            }
            e => corrupt(format!("JPEG-LS: {e}")),
        })?;
    let n = width as usize * height as usize;
    if samples.len() < n {
        return Err(corrupt("JPEG-LS decoded short".into()));
    }
    let samples = &samples[..n];
    if p <= 8 && spec.bits_allocated <= 8 && !spec.signed {
        return Ok(Decoded {
            pixels: samples.iter().map(|&v| v as u8).collect(),
            width,
            height,
            samples: 1,
            bits: 8,
        });
    }
    // The stream holds the samples' bit patterns: signed ones are
    // extended from their precision, as native data is stored.
    let pixels = samples
        .iter()
        .map(|&v| match spec.signed && p < 16 && v >= 1 << (p - 1) {
            true => (i32::from(v) - (1 << p)) as u16,
            false => v,
        })
        .flat_map(u16::to_le_bytes)
        .collect();
    Ok(Decoded {
        pixels,
        width,
        height,
        samples: 1,
        bits: 16,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gray(rows: u32, cols: u32, bits: u32, signed: bool) -> Geometry {
        Geometry {
            rows,
            cols,
            samples: 1,
            bits_allocated: bits,
            planar: 0,
            signed,
        }
    }

    fn encoded(px: &[u16], w: u32, h: u32, precision: u8) -> Vec<u8> {
        let mut out = Vec::new();
        let mut opts = jpegls::EncodeOptions::default();
        opts.precision = Some(precision);
        jpegls::encode_with_options(px, w, h, &opts, &mut out).expect("encode");
        out
    }

    #[test]
    fn twelve_bit_gray_decodes_exact_and_signed_samples_are_extended() {
        let (w, h) = (37u32, 21u32);
        let px: Vec<u16> = (0..w * h).map(|i| ((i * 97) % 4096) as u16).collect();
        let b = encoded(&px, w, h, 12);
        assert_eq!(
            frame(&b),
            Some(Frame {
                precision: 12,
                height: h,
                width: w,
                components: 1
            })
        );
        let d = decode(&b, &gray(h, w, 16, false)).expect("decode");
        let want: Vec<u8> = px.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(
            (d.bits, d.samples, d.pixels.as_slice()),
            (16, 1, want.as_slice())
        );
        let d = decode(&b, &gray(h, w, 16, true)).expect("decode signed");
        let first = |i: usize| i16::from_le_bytes([d.pixels[2 * i], d.pixels[2 * i + 1]]);
        for (i, &v) in px.iter().enumerate() {
            let v = i32::from(v);
            assert_eq!(i32::from(first(i)), if v >= 2048 { v - 4096 } else { v });
        }
    }

    #[test]
    fn eight_bit_gray_comes_out_in_bytes() {
        let px: Vec<u16> = (0..64u16).map(|i| i * 3).collect();
        let d = decode(&encoded(&px, 8, 8, 8), &gray(8, 8, 8, false)).expect("decode");
        assert_eq!(d.bits, 8);
        assert_eq!(d.pixels, px.iter().map(|&v| v as u8).collect::<Vec<_>>());
    }

    #[test]
    fn a_frame_unlike_the_header_or_damaged_is_refused() {
        let px: Vec<u16> = (0..64u16).collect();
        let b = encoded(&px, 8, 8, 8);
        assert!(matches!(
            decode(&b, &gray(9, 8, 8, false)),
            Err(DecodeError::Corrupt(_))
        ));
        let mut colour = gray(8, 8, 8, false);
        colour.samples = 3;
        assert!(matches!(
            decode(&b, &colour),
            Err(DecodeError::Unsupported(_))
        ));
        assert!(decode(&b[..b.len() / 2], &gray(8, 8, 8, false)).is_err());
        assert!(decode(b"not a JPEG-LS stream", &gray(8, 8, 8, false)).is_err());
        // A stream cut anywhere before its scan ends decodes to nothing.
        for cut in 0..b.len() - 2 {
            assert!(
                decode(&b[..cut], &gray(8, 8, 8, false)).is_err(),
                "cut at {cut}"
            );
        }
    }
}
