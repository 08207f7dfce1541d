//! JPEG 2000 frames (lossless, lossy and High-Throughput JPEG 2000, PS3.5
//! A.4.4 and A.4.11) decoded to native little endian pixels with `jpeg2k`
//! on openjp2, the pure-Rust port of OpenJPEG (no C library to build). The
//! codestream's size marker is read first and checked against the image
//! header, so a frame claiming a huge image never gets to allocate it.

use crate::decode::{ybr_to_rgb, DecodeError, Decoded, Geometry};

/// JPEG 2000 Image Compression (Lossless Only), JPEG 2000 Image
/// Compression, and the three High-Throughput JPEG 2000 syntaxes.
pub const TRANSFER_SYNTAXES: [&str; 5] = [
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.4.201",
    "1.2.840.10008.1.2.4.202",
    "1.2.840.10008.1.2.4.203",
];

/// What a codestream's SIZ marker says: image width, height, components.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Size {
    pub width: u32,
    pub height: u32,
    pub components: u32,
}

/// Reads the SIZ marker segment that follows the start of codestream (a
/// raw codestream, as DICOM holds it, or one inside a JP2 file, as some
/// writers wrap it).
pub(crate) fn size(b: &[u8]) -> Option<Size> {
    const SOC_SIZ: [u8; 4] = [0xFF, 0x4F, 0xFF, 0x51];
    let head = &b[..b.len().min(64 * 1024)];
    let at = head.windows(4).position(|w| w == SOC_SIZ)? + 4;
    let siz = b.get(at..at + 38)?;
    let be32 = |i: usize| u32::from_be_bytes([siz[i], siz[i + 1], siz[i + 2], siz[i + 3]]);
    // Lsiz, Rsiz, then Xsiz, Ysiz, XOsiz, YOsiz, tile sizes, Csiz.
    let (x, y, x0, y0) = (be32(4), be32(8), be32(12), be32(16));
    Some(Size {
        width: x.checked_sub(x0)?,
        height: y.checked_sub(y0)?,
        components: u32::from(u16::from_be_bytes([siz[36], siz[37]])),
    })
}

/// Decodes one JPEG 2000 frame of an image the header describes as
/// `spec`: 8-bit unsigned gray when the header allocates 8 bits, else
/// 16-bit. Three components come out as RGB: the reversible or
/// irreversible colour transform (YBR_RCT, YBR_ICT) is undone by the
/// decoder, and YBR_FULL samples are converted here.
pub fn decode(
    b: &[u8],
    spec: &Geometry,
    photometric: Option<&str>,
) -> Result<Decoded, DecodeError> {
    let (rows, cols, samples) = (spec.rows, spec.cols, spec.samples);
    let corrupt = |m: String| DecodeError::Corrupt(m);
    let s = size(b).ok_or_else(|| corrupt("JPEG 2000: no image size marker".into()))?;
    if (s.width, s.height, s.components) != (cols, rows, samples) {
        return Err(corrupt(format!(
            "the JPEG 2000 frame is {}x{} with {} component(s); the header says {cols}x{rows} with {samples}",
            s.width, s.height, s.components
        )));
    }
    let image = std::panic::catch_unwind(|| jpeg2k::Image::from_bytes(b))
        .map_err(|_| corrupt("the JPEG 2000 data could not be decoded".into()))?
        .map_err(|e| corrupt(format!("JPEG 2000: {e}")))?;
    let comps = image.components();
    if comps.len() != samples as usize
        || comps
            .iter()
            .any(|c| (c.width(), c.height()) != (cols, rows))
    {
        return Err(DecodeError::Unsupported(
            "JPEG 2000 with subsampled components cannot be decoded here".into(),
        ));
    }
    let n = cols as usize * rows as usize;
    if comps.iter().any(|c| c.data().len() < n) {
        return Err(corrupt("JPEG 2000 decoded short".into()));
    }
    let precision = comps.iter().map(|c| c.precision()).max().unwrap_or(0);
    match (comps, precision) {
        ([gray], 1..=8) if !gray.is_signed() && spec.bits_allocated <= 8 => Ok(Decoded {
            pixels: gray.data()[..n].iter().map(|v| *v as u8).collect(),
            width: cols,
            height: rows,
            samples: 1,
            bits: 8,
        }),
        // Signed samples keep their two's complement form in 16 bits. A
        // codestream that calls them unsigned when the header says signed
        // (some writers do) is read as the header says, as pydicom and
        // GDCM read it.
        ([gray], p @ 1..=16) => Ok(Decoded {
            pixels: gray.data()[..n]
                .iter()
                .map(
                    |&v| match spec.signed && !gray.is_signed() && p < 16 && v >= 1 << (p - 1) {
                        true => v - (1 << p),
                        false => v,
                    },
                )
                .flat_map(|v| (v as u16).to_le_bytes())
                .collect(),
            width: cols,
            height: rows,
            samples: 1,
            bits: 16,
        }),
        ([r, g, b], 1..=8) => {
            let ybr = photometric.is_some_and(|p| p.trim().starts_with("YBR_FULL"));
            let mut pixels = Vec::with_capacity(n * 3);
            for i in 0..n {
                let px = [r.data()[i] as u8, g.data()[i] as u8, b.data()[i] as u8];
                pixels.extend_from_slice(&if ybr {
                    ybr_to_rgb(px[0], px[1], px[2])
                } else {
                    px
                });
            }
            Ok(Decoded {
                pixels,
                width: cols,
                height: rows,
                samples: 3,
                bits: 8,
            })
        }
        (c, p) => Err(DecodeError::Unsupported(format!(
            "JPEG 2000 with {} component(s) of {p} bits cannot be decoded here",
            c.len()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SOC then a SIZ segment for a `w` × `h` image at offset (`x0`, `y0`)
    /// with `c` components.
    fn siz(w: u32, h: u32, x0: u32, y0: u32, c: u16) -> Vec<u8> {
        let mut b = vec![0xFF, 0x4F, 0xFF, 0x51, 0, 41, 0, 0];
        for v in [w + x0, h + y0, x0, y0, w, h, 0, 0] {
            b.extend_from_slice(&v.to_be_bytes());
        }
        b.extend_from_slice(&c.to_be_bytes());
        b.extend_from_slice(&[7, 1, 1]);
        b
    }

    #[test]
    fn size_marker_is_read_with_its_offsets_and_in_a_jp2_box() {
        let want = Size {
            width: 512,
            height: 256,
            components: 3,
        };
        assert_eq!(size(&siz(512, 256, 0, 0, 3)), Some(want));
        assert_eq!(size(&siz(512, 256, 10, 20, 3)), Some(want));
        let mut jp2 = b"\0\0\0\x0cjP  \r\n\x87\n".to_vec();
        jp2.extend_from_slice(&siz(512, 256, 0, 0, 3));
        assert_eq!(size(&jp2), Some(want));
        assert_eq!(size(&siz(512, 256, 0, 0, 3)[..20]), None);
        assert_eq!(size(b"not a codestream"), None);
    }

    fn gray(rows: u32, cols: u32) -> Geometry {
        Geometry {
            rows,
            cols,
            samples: 1,
            bits_allocated: 16,
            planar: 0,
            signed: false,
        }
    }

    /// A 16 x 12 image of 16-bit samples (x * 37 + y * 101) % 4096 in
    /// High-Throughput JPEG 2000, as OpenJPH 0.26 (through imagecodecs)
    /// encodes it.
    const HTJ2K: &str = "ff4fff5100294000000000100000000c0000000000000000000000100000000c000000000000000000010f0101ff50000800020000000aff52000c00020001000504044001ff5c00132088909090909090909090909090888888ff64001700014f70656e4a50482056657220302e32362e332eff90000a00000000007d0001ff93c0002667fb0507740000c0001340001300a2fe02077400c0fe02877400c0001340001300505001827400f7fd00023400c00015300005582412e9a04231027600c4891327fec03181beb600c0002b2000168808822008f2e78a7a70827700c8482412894422fa08407bf62101ecba00ffd9";

    #[test]
    fn high_throughput_jpeg_2000_decodes_losslessly() {
        let b = hex::decode(HTJ2K).expect("hex");
        let d = decode(&b, &gray(12, 16), None).expect("decodes");
        assert_eq!((d.width, d.height, d.samples, d.bits), (16, 12, 1, 16));
        let want: Vec<u8> = (0..12u32)
            .flat_map(|y| (0..16u32).map(move |x| ((x * 37 + y * 101) % 4096) as u16))
            .flat_map(u16::to_le_bytes)
            .collect();
        assert_eq!(d.pixels, want);
    }

    #[test]
    fn a_frame_larger_than_its_header_is_refused_before_decoding() {
        // A SIZ claiming 60000 x 60000 and nothing after it.
        let b = siz(60_000, 60_000, 0, 0, 1);
        let e = decode(&b, &gray(512, 512), None).expect_err("refused");
        assert!(e.to_string().contains("60000x60000"), "{e}");
        // Matching sizes, but no data: a decode error, not a panic.
        let b = siz(4, 4, 0, 0, 1);
        assert!(matches!(
            decode(&b, &gray(4, 4), None),
            Err(DecodeError::Corrupt(_))
        ));
    }
}
