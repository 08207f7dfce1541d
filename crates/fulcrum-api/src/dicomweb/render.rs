//! Rendering one frame to an 8-bit image for WADO-RS rendered resources and
//! thumbnails (scaling and encoding are in `encode`): native grayscale (8/16/32-bit, signed or not, rescale, window
//! center/width or min/max, MONOCHROME1 inverted), native RGB / YBR_FULL /
//! YBR_FULL_422, and JPEG (baseline, extended, lossless); frames are
//! decoded by `fulcrum_dicom::decode` (RLE to native first). CPU-bound:
//! callers run it on a blocking thread.

use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use fulcrum_dicom::decode::{self, ybr_to_rgb, DecodeError, Geometry};

use super::palette::Palette;
use super::pixels::int;
use std::sync::Arc;

/// An 8-bit image, gray (1 channel) or RGB (3), rows top to bottom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub width: u32,
    pub height: u32,
    pub channels: u8,
    pub data: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The image is valid but this renderer cannot show it.
    #[error("{0}")]
    Unsupported(String),
    /// The pixel data does not match what the header says.
    #[error("{0}")]
    Corrupt(String),
}

/// What the header says about the pixels.
#[derive(Debug, Clone)]
pub struct Spec {
    pub rows: u32,
    pub cols: u32,
    pub samples: u32,
    pub bits_allocated: u32,
    pub bits_stored: u32,
    pub signed: bool,
    pub photometric: String,
    pub planar: u32,
    pub slope: f64,
    pub intercept: f64,
    /// Window center and width (the first of several) and the VOI LUT
    /// Function.
    pub window: Option<Window>,
    /// The samples are IEEE floats (Float or Double Float Pixel Data,
    /// 7FE0,0008 or 0009: parametric maps), not integers.
    pub float: bool,
    /// A PALETTE COLOR image's tables, or why they cannot be read.
    pub palette: Option<Result<Arc<Palette>, String>>,
}

/// A VOI window: center, width and function (PS3.3 C.11.2.1.2).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    pub center: f64,
    pub width: f64,
    pub function: VoiFunction,
}

impl Window {
    pub fn linear(center: f64, width: f64) -> Window {
        Window {
            center,
            width,
            function: VoiFunction::Linear,
        }
    }
}

/// How a window maps values to output (VOI LUT Function (0028,1056);
/// DICOMweb's `window=c,w,function`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VoiFunction {
    #[default]
    Linear,
    LinearExact,
    Sigmoid,
}

impl VoiFunction {
    /// `linear`, `linear-exact` or `sigmoid` (any case; `_` for `-`, as
    /// the attribute writes it).
    pub fn parse(s: &str) -> Option<VoiFunction> {
        match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "linear" => Some(VoiFunction::Linear),
            "linear-exact" => Some(VoiFunction::LinearExact),
            "sigmoid" => Some(VoiFunction::Sigmoid),
            _ => None,
        }
    }
}

fn first_float(obj: &InMemDicomObject, tag: dicom_core::Tag) -> Option<f64> {
    let s = obj.get(tag)?.to_str().ok()?;
    s.split('\\')
        .next()?
        .trim()
        .parse()
        .ok()
        .filter(|f: &f64| f.is_finite())
}

/// The first window center and width of `obj` (a data set or a Frame VOI
/// LUT item), with its VOI LUT Function.
fn window_of(obj: &InMemDicomObject) -> Option<Window> {
    match (
        first_float(obj, tags::WINDOW_CENTER),
        first_float(obj, tags::WINDOW_WIDTH),
    ) {
        (Some(center), Some(width)) if width > 0.0 => Some(Window {
            center,
            width,
            function: obj
                .get(tags::VOILUT_FUNCTION)
                .and_then(|e| e.to_str().ok())
                .and_then(|f| VoiFunction::parse(&f))
                .unwrap_or_default(),
        }),
        _ => None,
    }
}

/// Item `i` of the sequence `tag` of `obj`.
fn item(obj: &InMemDicomObject, tag: dicom_core::Tag, i: usize) -> Option<&InMemDicomObject> {
    obj.get(tag)?.items()?.get(i)
}

impl Spec {
    /// What the header says of frame `n` (from 1): an enhanced multi-frame
    /// image gives its rescale (Pixel Value Transformation) and window
    /// (Frame VOI LUT) in the Shared Functional Groups, and per frame in
    /// the Per-Frame Functional Groups, which take precedence over the
    /// shared ones and both over the top-level attributes. A PALETTE COLOR
    /// image's tables are read here (`big_endian`: of a data set in a
    /// big-endian transfer syntax).
    pub fn of_frame(obj: &InMemDicomObject, n: u32, big_endian: bool) -> Spec {
        let mut spec = Spec::of(obj);
        if spec.photometric == "PALETTE COLOR" {
            spec.palette = Some(Palette::of(obj, spec.signed, big_endian).map(Arc::new));
        }
        let shared = item(obj, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE, 0);
        let own = item(
            obj,
            tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE,
            n.saturating_sub(1) as usize,
        );
        for group in [shared, own].into_iter().flatten() {
            if let Some(t) = item(group, tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE, 0) {
                if let Some(slope) = first_float(t, tags::RESCALE_SLOPE).filter(|s| *s != 0.0) {
                    spec.slope = slope;
                }
                if let Some(intercept) = first_float(t, tags::RESCALE_INTERCEPT) {
                    spec.intercept = intercept;
                }
            }
            if let Some(w) = item(group, tags::FRAME_VOILUT_SEQUENCE, 0).and_then(window_of) {
                spec.window = Some(w);
            }
        }
        spec
    }

    pub fn of(obj: &InMemDicomObject) -> Spec {
        let get = |t, d: i64| int(obj, t).unwrap_or(d).clamp(0, 1 << 20) as u32;
        let bits_allocated = get(tags::BITS_ALLOCATED, 8);
        let window = window_of(obj);
        let signed = int(obj, tags::PIXEL_REPRESENTATION) == Some(1);
        let photometric = obj
            .get(tags::PHOTOMETRIC_INTERPRETATION)
            .and_then(|e| e.to_str().ok())
            .map(|s| s.trim().to_ascii_uppercase())
            .unwrap_or_else(|| "MONOCHROME2".into());
        Spec {
            rows: get(tags::ROWS, 0),
            cols: get(tags::COLUMNS, 0),
            samples: get(tags::SAMPLES_PER_PIXEL, 1),
            bits_allocated,
            bits_stored: get(tags::BITS_STORED, bits_allocated as i64),
            signed,
            photometric,
            planar: get(tags::PLANAR_CONFIGURATION, 0),
            slope: first_float(obj, tags::RESCALE_SLOPE)
                .filter(|s| *s != 0.0)
                .unwrap_or(1.0),
            intercept: first_float(obj, tags::RESCALE_INTERCEPT).unwrap_or(0.0),
            window,
            float: false,
            palette: None,
        }
    }
}

/// Where the frame's pixels come from.
pub enum Source<'a> {
    /// Uncompressed, little endian.
    Native(&'a [u8]),
    /// A JPEG or JPEG 2000 bitstream (one frame's fragments) in the
    /// transfer syntax named.
    Compressed(&'a str, &'a [u8]),
}

/// Renders one frame; `window` overrides the header's.
pub fn render(spec: &Spec, src: Source<'_>, window: Option<Window>) -> Result<Image, RenderError> {
    let window = window.or(spec.window);
    match src {
        Source::Native(b) => native(spec, b, window),
        Source::Compressed(ts, b) => compressed(spec, ts, b, window),
    }
}

fn native(spec: &Spec, b: &[u8], window: Option<Window>) -> Result<Image, RenderError> {
    let (w, h) = (spec.cols, spec.rows);
    if w == 0 || h == 0 {
        return Err(RenderError::Corrupt(
            "the image has no rows or columns".into(),
        ));
    }
    match (spec.samples, spec.photometric.as_str()) {
        (1, "MONOCHROME1" | "MONOCHROME2") => gray(spec, b, window),
        (3, "RGB" | "YBR_FULL" | "YBR_FULL_422") => color(spec, b),
        (1, "PALETTE COLOR") => palette_color(spec, b),
        (s, p) => Err(RenderError::Unsupported(format!(
            "cannot render {s} sample(s) per pixel with photometric interpretation {p}"
        ))),
    }
}

/// The VOI LUT of PS3.3 C.11.2.1.2.1 (linear), C.11.2.1.3.2 (linear
/// exact) or C.11.2.1.3.1 (sigmoid), to 0..=255.
fn window_fn(win: Window) -> impl Fn(f64) -> u8 {
    let Window {
        center: c,
        width: w,
        function,
    } = win;
    let out = |y: f64| (y * 255.0).round().clamp(0.0, 255.0) as u8;
    move |x| match function {
        VoiFunction::Linear => {
            let w = w.max(1.0);
            if x <= c - 0.5 - (w - 1.0) / 2.0 {
                0
            } else if x > c - 0.5 + (w - 1.0) / 2.0 {
                255
            } else {
                (((x - (c - 0.5)) / (w - 1.0).max(1.0) + 0.5) * 255.0).clamp(0.0, 255.0) as u8
            }
        }
        VoiFunction::LinearExact => out((x - c) / w + 0.5),
        VoiFunction::Sigmoid => out(1.0 / (1.0 + (-4.0 * (x - c) / w).exp())),
    }
}

/// Bytes per sample of a one-sample image, after checking that `b` holds
/// the frame.
fn sample_width(spec: &Spec, b: &[u8], what: &str) -> Result<usize, RenderError> {
    let n = spec.cols as usize * spec.rows as usize;
    let width = match (spec.bits_allocated, spec.float) {
        (8, false) => 1,
        (16, false) => 2,
        (32, _) => 4,
        (64, true) => 8,
        (other, false) => {
            return Err(RenderError::Unsupported(format!(
                "cannot render {other}-bit {what} pixels"
            )))
        }
        (other, true) => {
            return Err(RenderError::Corrupt(format!(
                "Float Pixel Data of {other} bits allocated (32 or 64 expected)"
            )))
        }
    };
    if b.len() < n * width {
        return Err(RenderError::Corrupt(
            "the frame is shorter than its rows and columns".into(),
        ));
    }
    Ok(width)
}

/// The stored integer value of sample `i` (Bits Stored of it, sign
/// extended when Pixel Representation says signed).
fn stored_int<'a>(spec: &Spec, b: &'a [u8], width: usize) -> impl Fn(usize) -> i64 + 'a {
    let stored = spec.bits_stored.clamp(1, spec.bits_allocated.min(32));
    let mask: u64 = (1u64 << stored) - 1;
    let sign = 1u64 << (stored - 1);
    let signed = spec.signed;
    move |i| {
        let p = &b[i * width..i * width + width];
        let raw = match width {
            1 => p[0] as u64,
            2 => u16::from_le_bytes([p[0], p[1]]) as u64,
            _ => u32::from_le_bytes([p[0], p[1], p[2], p[3]]) as u64,
        } & mask;
        if signed && raw & sign != 0 {
            raw as i64 - (1i64 << stored)
        } else {
            raw as i64
        }
    }
}

fn palette_color(spec: &Spec, b: &[u8]) -> Result<Image, RenderError> {
    let palette = match &spec.palette {
        Some(Ok(p)) => p,
        Some(Err(m)) => return Err(RenderError::Corrupt(m.clone())),
        None => return Err(RenderError::Corrupt("the palette is missing".into())),
    };
    let width = sample_width(spec, b, "palette colour")?;
    let value = stored_int(spec, b, width);
    let n = spec.cols as usize * spec.rows as usize;
    let data = (0..n).flat_map(|i| palette.rgb(value(i))).collect();
    Ok(Image {
        width: spec.cols,
        height: spec.rows,
        channels: 3,
        data,
    })
}

fn gray(spec: &Spec, b: &[u8], window: Option<Window>) -> Result<Image, RenderError> {
    let n = spec.cols as usize * spec.rows as usize;
    let width = sample_width(spec, b, "grayscale")?;
    let (slope, icpt, float) = (spec.slope, spec.intercept, spec.float);
    let int = stored_int(spec, b, width);
    let value = |i: usize| -> f64 {
        let p = &b[i * width..i * width + width];
        match (float, width) {
            (true, 4) => f32::from_le_bytes([p[0], p[1], p[2], p[3]]) as f64 * slope + icpt,
            (true, _) => {
                f64::from_le_bytes([p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]]) * slope + icpt
            }
            (false, _) => int(i) as f64 * slope + icpt,
        }
    };
    let win = match window {
        // Real values have no integer steps: the linear function's
        // half-unit offsets (C.11.2.1.2.1) are for integers, so it is the
        // exact one that maps them (a 0..1 map windowed 0.5/1.0 is 0..255).
        Some(win) if float && win.function == VoiFunction::Linear => Window {
            function: VoiFunction::LinearExact,
            ..win
        },
        Some(win) => win,
        None => {
            let (mut lo, mut hi) = (f64::MAX, f64::MIN);
            for v in (0..n).map(value).filter(|v| v.is_finite()) {
                lo = lo.min(v);
                hi = hi.max(v);
            }
            if hi < lo {
                (lo, hi) = (0.0, 0.0);
            }
            match float || spec.slope.fract() != 0.0 || spec.intercept.fract() != 0.0 {
                // The window that maps [lo, hi] onto 0..=255: values that
                // are not integers (a PET's slope of 6e-8 made the whole
                // range narrower than the linear function's unit width,
                // two grey levels).
                true => Window {
                    center: (lo + hi) / 2.0,
                    width: (hi - lo).max(f64::MIN_POSITIVE),
                    function: VoiFunction::LinearExact,
                },
                false => Window::linear((lo + hi) / 2.0 + 0.5, (hi - lo) + 1.0),
            }
        }
    };
    let f = window_fn(win);
    let invert = spec.photometric == "MONOCHROME1";
    let data = (0..n)
        .map(|i| {
            let v = f(value(i));
            if invert {
                255 - v
            } else {
                v
            }
        })
        .collect();
    Ok(Image {
        width: spec.cols,
        height: spec.rows,
        channels: 1,
        data,
    })
}

fn color(spec: &Spec, b: &[u8]) -> Result<Image, RenderError> {
    let n = spec.cols as usize * spec.rows as usize;
    let sample = |v: &[u8]| -> u8 {
        match spec.bits_allocated {
            8 => v[0],
            _ => {
                (u16::from_le_bytes([v[0], v[1]])
                    >> spec.bits_stored.clamp(8, 16).saturating_sub(8)) as u8
            }
        }
    };
    let bps = match spec.bits_allocated {
        8 => 1,
        16 => 2,
        other => {
            return Err(RenderError::Unsupported(format!(
                "cannot render {other}-bit colour"
            )))
        }
    };
    let short = || RenderError::Corrupt("the frame is shorter than its rows and columns".into());
    let mut data = Vec::with_capacity(n * 3);
    if spec.photometric == "YBR_FULL_422" {
        // Two pixels share Cb and Cr: Y1 Y2 Cb Cr.
        if bps != 1 || b.len() < n.div_ceil(2) * 4 {
            return Err(short());
        }
        for i in 0..n {
            let q = &b[(i / 2) * 4..(i / 2) * 4 + 4];
            data.extend_from_slice(&ybr_to_rgb(q[i % 2], q[2], q[3]));
        }
    } else {
        if b.len() < n * 3 * bps {
            return Err(short());
        }
        let ybr = spec.photometric == "YBR_FULL";
        for i in 0..n {
            let at = |s: usize| {
                let k = if spec.planar == 1 {
                    s * n + i
                } else {
                    i * 3 + s
                };
                sample(&b[k * bps..k * bps + bps])
            };
            let px = [at(0), at(1), at(2)];
            data.extend_from_slice(&if ybr {
                ybr_to_rgb(px[0], px[1], px[2])
            } else {
                px
            });
        }
    }
    Ok(Image {
        width: spec.cols,
        height: spec.rows,
        channels: 3,
        data,
    })
}

/// A grayscale JPEG (baseline, extended, lossless) or JPEG 2000 frame in
/// transfer syntax `ts` decoded to native little-endian samples (1 or 2
/// bytes each), as a frame is sent in Explicit VR Little Endian. Color is
/// refused: decoding turns YCbCr into RGB, which the instance's header
/// would misdescribe.
pub fn gray_to_native(ts: &str, b: &[u8], geometry: &Geometry) -> Result<Vec<u8>, RenderError> {
    let d = decode::image_frame(ts, b, geometry, None)?;
    if d.samples != 1 {
        return Err(RenderError::Unsupported(
            "a colour frame is not transcoded here (grayscale only)".into(),
        ));
    }
    Ok(d.pixels)
}

impl From<DecodeError> for RenderError {
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::Unsupported(m) => RenderError::Unsupported(m),
            DecodeError::Corrupt(m) => RenderError::Corrupt(m),
        }
    }
}

impl Spec {
    /// The frame geometry the decoders need.
    pub fn geometry(&self) -> Geometry {
        Geometry {
            rows: self.rows,
            cols: self.cols,
            samples: self.samples,
            bits_allocated: self.bits_allocated,
            planar: self.planar,
            signed: self.signed,
        }
    }
}

fn compressed(
    spec: &Spec,
    ts: &str,
    b: &[u8],
    window: Option<Window>,
) -> Result<Image, RenderError> {
    let d = decode::image_frame(ts, b, &spec.geometry(), Some(&spec.photometric))?;
    let mut s = spec.clone();
    s.rows = d.height;
    s.cols = d.width;
    s.samples = 1;
    s.planar = 0;
    let palette = s.photometric == "PALETTE COLOR";
    if s.photometric != "MONOCHROME1" && !palette {
        s.photometric = "MONOCHROME2".into();
    }
    match (d.samples, d.bits) {
        (1, bits) => {
            (s.bits_allocated, s.bits_stored) = match bits {
                8 => (8, s.bits_stored.clamp(1, 8)),
                _ => (16, s.bits_stored.clamp(1, 16)),
            };
            match palette {
                true => palette_color(&s, &d.pixels),
                false => gray(&s, &d.pixels, window),
            }
        }
        _ => Ok(Image {
            width: d.width,
            height: d.height,
            channels: 3,
            data: d.pixels,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::value::DataSetSequence;
    use dicom_core::{DataElement, PrimitiveValue, VR};

    fn spec(bits: u32, photometric: &str) -> Spec {
        Spec {
            rows: 1,
            cols: 4,
            samples: 1,
            bits_allocated: bits,
            bits_stored: bits,
            signed: false,
            photometric: photometric.into(),
            planar: 0,
            slope: 1.0,
            intercept: 0.0,
            window: None,
            float: false,
            palette: None,
        }
    }

    #[test]
    fn float_pixels_are_rendered_by_their_values() {
        // A 0..1 ramp, and one negative value: the bit patterns read as
        // integers put 0.25 at grey 250 and -1 above 1.
        let px: Vec<u8> = [-1.0f32, 0.0, 0.25, 0.5, 1.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let mut s = spec(32, "MONOCHROME2");
        (s.cols, s.float) = (5, true);
        let img = render(&s, Source::Native(&px), None).expect("renders");
        assert_eq!(img.data, vec![0, 128, 159, 191, 255]);
        // The header's window over real values (0.5 / 1.0 spans 0..1).
        let win = Window::linear(0.5, 1.0);
        let img = render(&s, Source::Native(&px), Some(win)).expect("renders");
        assert_eq!(img.data, vec![0, 0, 64, 128, 255]);
    }

    fn put(obj: &mut InMemDicomObject, tag: dicom_core::Tag, vr: VR, v: PrimitiveValue) {
        obj.put(DataElement::new(tag, vr, v));
    }

    fn seq(tag: dicom_core::Tag, items: Vec<InMemDicomObject>) -> DataElement<InMemDicomObject> {
        DataElement::new(tag, VR::SQ, DataSetSequence::from(items))
    }

    #[test]
    fn functional_groups_give_each_frame_its_rescale_and_window() {
        let mut obj = InMemDicomObject::new_empty();
        put(&mut obj, tags::WINDOW_CENTER, VR::DS, "10".into());
        put(&mut obj, tags::WINDOW_WIDTH, VR::DS, "20".into());
        let group = |slope: Option<&str>, icpt: &str, window: Option<(&str, &str)>| {
            let mut g = InMemDicomObject::new_empty();
            let mut t = InMemDicomObject::new_empty();
            if let Some(slope) = slope {
                put(&mut t, tags::RESCALE_SLOPE, VR::DS, slope.into());
            }
            put(&mut t, tags::RESCALE_INTERCEPT, VR::DS, icpt.into());
            g.put(seq(tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE, vec![t]));
            if let Some((c, w)) = window {
                let mut v = InMemDicomObject::new_empty();
                put(&mut v, tags::WINDOW_CENTER, VR::DS, c.into());
                put(&mut v, tags::WINDOW_WIDTH, VR::DS, w.into());
                put(&mut v, tags::VOILUT_FUNCTION, VR::CS, "SIGMOID".into());
                g.put(seq(tags::FRAME_VOILUT_SEQUENCE, vec![v]));
            }
            g
        };
        obj.put(seq(
            tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE,
            vec![group(Some("2"), "-1024", None)],
        ));
        obj.put(seq(
            tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE,
            vec![
                group(None, "-1000", Some(("40", "400"))),
                InMemDicomObject::new_empty(),
            ],
        ));
        let first = Spec::of_frame(&obj, 1, false);
        assert_eq!((first.slope, first.intercept), (2.0, -1000.0));
        let win = first.window.expect("the frame's window");
        assert_eq!((win.center, win.width), (40.0, 400.0));
        assert_eq!(win.function, VoiFunction::Sigmoid);
        // The second frame has only the shared groups and the top level.
        let second = Spec::of_frame(&obj, 2, false);
        assert_eq!((second.slope, second.intercept), (2.0, -1024.0));
        assert_eq!(second.window, Some(Window::linear(10.0, 20.0)));
        // Past the per-frame items (and without groups) the top level holds.
        let plain = Spec::of_frame(&obj, 9, false);
        assert_eq!(plain.intercept, -1024.0);
        assert_eq!(Spec::of(&obj).intercept, 0.0);
        // Rendered through the frame's values: stored 500 is 0 HU.
        let px: Vec<u8> = [300u16, 500, 800]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let s = Spec {
            cols: 3,
            bits_allocated: 16,
            bits_stored: 16,
            rows: 1,
            window: Some(Window::linear(0.5, 2.0)),
            ..first
        };
        let img = render(&s, Source::Native(&px), None).expect("renders");
        assert_eq!(img.data, vec![0, 127, 255]);
    }

    #[test]
    fn a_tiny_rescale_slope_keeps_the_image() {
        // Stored 0..1000 with a slope of 6e-8 (a PET's Bq/ml): min/max
        // spans 0.00006, which the integer window widened to 1.
        let px: Vec<u8> = [0i16, 250, 500, 1000]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let mut s = spec(16, "MONOCHROME2");
        (s.signed, s.slope) = (true, 6e-8);
        let img = render(&s, Source::Native(&px), None).expect("renders");
        assert_eq!(img.data, vec![0, 64, 128, 255]);
    }

    #[test]
    fn double_float_and_palette_colour_render() {
        let px: Vec<u8> = [0.0f64, 0.5, 1.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let mut s = spec(64, "MONOCHROME2");
        (s.cols, s.float) = (3, true);
        let img = render(&s, Source::Native(&px), None).expect("renders");
        assert_eq!(img.data, vec![0, 128, 255]);
        s.bits_allocated = 16;
        assert!(matches!(
            render(&s, Source::Native(&px), None),
            Err(RenderError::Corrupt(_))
        ));
        // Indices 0..3 through a red, green, blue, white palette.
        let mut obj = InMemDicomObject::new_empty();
        put(
            &mut obj,
            tags::PHOTOMETRIC_INTERPRETATION,
            VR::CS,
            "PALETTE COLOR".into(),
        );
        put(
            &mut obj,
            tags::BITS_ALLOCATED,
            VR::US,
            PrimitiveValue::from(8u16),
        );
        put(&mut obj, tags::ROWS, VR::US, PrimitiveValue::from(1u16));
        put(&mut obj, tags::COLUMNS, VR::US, PrimitiveValue::from(4u16));
        let tables = [
            (
                tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
                tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
                [0xFFFFu16, 0, 0, 0xFFFF],
            ),
            (
                tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
                tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
                [0, 0xFFFF, 0, 0xFFFF],
            ),
            (
                tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
                tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
                [0, 0, 0xFFFF, 0xFFFF],
            ),
        ];
        for (desc, data, lut) in tables {
            put(
                &mut obj,
                desc,
                VR::US,
                PrimitiveValue::U16([4u16, 0, 16].into_iter().collect()),
            );
            put(
                &mut obj,
                data,
                VR::OW,
                PrimitiveValue::U16(lut.to_vec().into()),
            );
        }
        let img = render(
            &Spec::of_frame(&obj, 1, false),
            Source::Native(&[0, 1, 2, 3]),
            None,
        )
        .expect("renders");
        assert_eq!(img.channels, 3);
        assert_eq!(
            img.data,
            vec![255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255]
        );
    }

    #[test]
    fn windows_and_inverts() {
        let px: Vec<u8> = [0u16, 100, 200, 1000]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let img = render(&spec(16, "MONOCHROME2"), Source::Native(&px), None).expect("renders");
        assert_eq!(img.data[0], 0);
        assert_eq!(img.data[3], 255);
        let img = render(
            &spec(16, "MONOCHROME2"),
            Source::Native(&px),
            Some(Window::linear(100.5, 101.0)),
        )
        .expect("renders");
        assert_eq!(img.data, vec![0, 127, 255, 255]);
        let with = |function| {
            let win = Window {
                center: 100.0,
                width: 200.0,
                function,
            };
            let img = render(&spec(16, "MONOCHROME2"), Source::Native(&px), Some(win));
            img.expect("renders").data
        };
        assert_eq!(with(VoiFunction::LinearExact), vec![0, 128, 255, 255]);
        // 1 / (1 + e^2) and 1 / (1 + e^-2) of the range.
        assert_eq!(with(VoiFunction::Sigmoid), vec![30, 128, 225, 255]);
        assert_eq!(
            VoiFunction::parse("LINEAR_EXACT"),
            Some(VoiFunction::LinearExact)
        );
        assert_eq!(VoiFunction::parse("cubic"), None);
        let img = render(&spec(16, "MONOCHROME1"), Source::Native(&px), None).expect("renders");
        assert_eq!(img.data[0], 255);
        let short = render(&spec(16, "MONOCHROME2"), Source::Native(&px[..3]), None);
        assert!(matches!(short, Err(RenderError::Corrupt(_))));
        let bad = render(&spec(8, "PALETTE COLOR"), Source::Native(&px), None);
        assert!(matches!(bad, Err(RenderError::Corrupt(m)) if m.contains("palette")));
        let bad = render(&spec(8, "YBR_ICT"), Source::Native(&px), None);
        assert!(matches!(bad, Err(RenderError::Unsupported(_))));
        assert!(render(
            &spec(8, "MONOCHROME2"),
            Source::Compressed("1.2.840.10008.1.2.4.50", b"not a jpeg"),
            None
        )
        .is_err());
    }
}
