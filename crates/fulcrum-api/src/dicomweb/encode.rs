//! Scaling and encoding rendered images: area-average downscaling, JPEG
//! with the pure-Rust jpeg-encoder, PNG with a small writer of our own over
//! flate2 (8-bit gray or RGB, no filters), which spares the `png`/`image`
//! crates and their dependency trees.

use std::io::Write;

use super::render::{Image, RenderError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jpeg,
    Png,
}

impl Format {
    pub fn media_type(self) -> &'static str {
        match self {
            Format::Jpeg => "image/jpeg",
            Format::Png => "image/png",
        }
    }
}

pub fn encode(img: &Image, format: Format, quality: u8) -> Result<Vec<u8>, RenderError> {
    let expected = img.width as usize * img.height as usize * img.channels as usize;
    if img.data.len() != expected || img.width == 0 || img.height == 0 {
        return Err(RenderError::Corrupt(
            "image buffer does not match its size".into(),
        ));
    }
    match format {
        Format::Jpeg => jpeg(img, quality),
        Format::Png => png(img),
    }
}

fn jpeg(img: &Image, quality: u8) -> Result<Vec<u8>, RenderError> {
    let (Ok(w), Ok(h)) = (u16::try_from(img.width), u16::try_from(img.height)) else {
        return Err(RenderError::Unsupported(
            "images wider or taller than 65535 pixels can only be rendered as PNG".into(),
        ));
    };
    let color = if img.channels == 3 {
        jpeg_encoder::ColorType::Rgb
    } else {
        jpeg_encoder::ColorType::Luma
    };
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, quality.clamp(1, 100))
        .encode(&img.data, w, h, color)
        .map_err(|e| RenderError::Unsupported(format!("JPEG encoding failed: {e}")))?;
    Ok(out)
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc.finalize().to_be_bytes());
}

fn png(img: &Image) -> Result<Vec<u8>, RenderError> {
    let mut out = Vec::with_capacity(img.data.len() / 2 + 64);
    out.extend_from_slice(b"\x89PNG\r\n\x1a\n");
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&img.width.to_be_bytes());
    ihdr.extend_from_slice(&img.height.to_be_bytes());
    // Bit depth 8; colour type 0 (gray) or 2 (RGB); deflate; no filter; no interlace.
    ihdr.extend_from_slice(&[8, if img.channels == 3 { 2 } else { 0 }, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    let row = img.width as usize * img.channels as usize;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    let failed = |e: std::io::Error| RenderError::Corrupt(format!("PNG compression failed: {e}"));
    for line in img.data.chunks_exact(row) {
        z.write_all(&[0]).map_err(failed)?;
        z.write_all(line).map_err(failed)?;
    }
    let idat = z.finish().map_err(failed)?;
    chunk(&mut out, b"IDAT", &idat);
    chunk(&mut out, b"IEND", &[]);
    Ok(out)
}

/// A region of an image, mirrored or not (DICOMweb's viewport source
/// region with a negative width or height).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crop {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
    pub flip_x: bool,
    pub flip_y: bool,
}

/// The region `c` of `img` (clamped to it).
pub fn crop(img: &Image, c: Crop) -> Image {
    let x0 = c.x.min(img.width);
    let y0 = c.y.min(img.height);
    let w = c.w.min(img.width - x0) as usize;
    let h = c.h.min(img.height - y0) as usize;
    let ch = img.channels as usize;
    let mut data = Vec::with_capacity(w * h * ch);
    for oy in 0..h {
        let y = y0 as usize + if c.flip_y { h - 1 - oy } else { oy };
        for ox in 0..w {
            let x = x0 as usize + if c.flip_x { w - 1 - ox } else { ox };
            let at = (y * img.width as usize + x) * ch;
            data.extend_from_slice(&img.data[at..at + ch]);
        }
    }
    Image {
        width: w as u32,
        height: h as u32,
        channels: img.channels,
        data,
    }
}

/// Scales to fit `w` × `h`, aspect ratio kept: down as [`fit`] does, up
/// (a zoomed-in region) by repeating pixels.
pub fn scale_to(img: Image, w: u32, h: u32) -> Image {
    let (iw, ih) = (u64::from(img.width), u64::from(img.height));
    let (bw, bh) = (u64::from(w.max(1)), u64::from(h.max(1)));
    if iw == 0 || ih == 0 || iw > bw || ih > bh {
        return fit(img, w, h);
    }
    let (nw, nh) = fitted((iw, ih), (bw, bh));
    let ch = img.channels as usize;
    let mut data = Vec::with_capacity((nw * nh) as usize * ch);
    for oy in 0..nh {
        let y = (oy * ih / nh) as usize;
        for ox in 0..nw {
            let at = (y * iw as usize + (ox * iw / nw) as usize) * ch;
            data.extend_from_slice(&img.data[at..at + ch]);
        }
    }
    Image {
        width: nw as u32,
        height: nh as u32,
        channels: img.channels,
        data,
    }
}

/// The size of a `w` × `h` image scaled to fit a box, aspect ratio kept
/// (the side that needs the larger scaling decides).
fn fitted((w, h): (u64, u64), (bw, bh): (u64, u64)) -> (u64, u64) {
    if w * bh > h * bw {
        (bw, (h * bw / w).max(1))
    } else {
        ((w * bh / h).max(1), bh)
    }
}

/// Scales down (area average) to fit `max_w` × `max_h`; never scales up.
pub fn fit(img: Image, max_w: u32, max_h: u32) -> Image {
    let (w, h) = (img.width as u64, img.height as u64);
    let (mw, mh) = (max_w.max(1) as u64, max_h.max(1) as u64);
    if w <= mw && h <= mh || w == 0 || h == 0 {
        return img;
    }
    let (nw, nh) = fitted((w, h), (mw, mh));
    let ch = img.channels as usize;
    let mut data = Vec::with_capacity((nw * nh) as usize * ch);
    for oy in 0..nh {
        let (y0, y1) = (oy * h / nh, ((oy + 1) * h / nh).max(oy * h / nh + 1));
        for ox in 0..nw {
            let (x0, x1) = (ox * w / nw, ((ox + 1) * w / nw).max(ox * w / nw + 1));
            for c in 0..ch {
                let mut sum = 0u64;
                for y in y0..y1 {
                    let row = (y * w) as usize;
                    for x in x0..x1 {
                        sum += img.data[(row + x as usize) * ch + c] as u64;
                    }
                }
                data.push((sum / ((y1 - y0) * (x1 - x0))) as u8);
            }
        }
    }
    Image {
        width: nw as u32,
        height: nh as u32,
        channels: img.channels,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// A 3×2 gray image, 1 to 6 row by row.
    fn sample() -> Image {
        Image {
            width: 3,
            height: 2,
            channels: 1,
            data: vec![1, 2, 3, 4, 5, 6],
        }
    }

    #[test]
    fn crops_mirrors_and_zooms() {
        let img = sample();
        let c = |x, y, w, h, flip_x, flip_y| {
            crop(
                &img,
                Crop {
                    x,
                    y,
                    w,
                    h,
                    flip_x,
                    flip_y,
                },
            )
            .data
        };
        assert_eq!(c(1, 0, 2, 2, false, false), vec![2, 3, 5, 6]);
        assert_eq!(c(1, 0, 2, 2, true, false), vec![3, 2, 6, 5]);
        assert_eq!(c(0, 0, 3, 2, false, true), vec![4, 5, 6, 1, 2, 3]);
        assert_eq!(c(2, 1, 9, 9, false, false), vec![6]);
        let zoomed = scale_to(
            crop(
                &img,
                Crop {
                    x: 1,
                    y: 0,
                    w: 2,
                    h: 1,
                    flip_x: false,
                    flip_y: false,
                },
            ),
            4,
            4,
        );
        assert_eq!(
            (zoomed.width, zoomed.height, zoomed.data),
            (4, 2, vec![2, 2, 3, 3, 2, 2, 3, 3])
        );
        assert_eq!(scale_to(img.clone(), 3, 2), img);
    }

    #[test]
    fn png_round_trips_through_inflate() {
        let img = sample();
        let png = encode(&img, Format::Png, 90).expect("encodes");
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&png[12..16], b"IHDR");
        let idat_len = u32::from_be_bytes([png[33], png[34], png[35], png[36]]) as usize;
        assert_eq!(&png[37..41], b"IDAT");
        let mut raw = Vec::new();
        flate2::read::ZlibDecoder::new(&png[41..41 + idat_len])
            .read_to_end(&mut raw)
            .expect("inflates");
        assert_eq!(raw, vec![0, 1, 2, 3, 0, 4, 5, 6]);
        assert!(png.ends_with(&[0xAE, 0x42, 0x60, 0x82]));
    }

    #[test]
    fn jpeg_decodes_back() {
        let img = Image {
            width: 16,
            height: 8,
            channels: 3,
            data: vec![200; 16 * 8 * 3],
        };
        let jpg = encode(&img, Format::Jpeg, 90).expect("encodes");
        let mut d = jpeg_decoder::Decoder::new(std::io::Cursor::new(&jpg));
        let px = d.decode().expect("decodes");
        assert_eq!(px.len(), 16 * 8 * 3);
    }

    #[test]
    fn fits_keeping_aspect() {
        let img = Image {
            width: 400,
            height: 200,
            channels: 1,
            data: vec![7; 80_000],
        };
        let t = fit(img, 128, 128);
        assert_eq!((t.width, t.height), (128, 64));
        assert!(t.data.iter().all(|v| *v == 7));
    }
}
