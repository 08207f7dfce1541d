//! Palette colour lookup tables (PS3.3 C.7.6.3.1.5-6 and C.7.9): the red,
//! green and blue tables of a PALETTE COLOR image, given whole or as
//! segments (discrete and linear), read from the header, and the mapping of
//! a stored pixel value to an 8-bit RGB triple for rendering.

use dicom_core::{DicomValue, PrimitiveValue, Tag};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

/// The three tables of a palette colour image.
#[derive(Debug, Clone, PartialEq)]
pub struct Palette {
    /// The pixel value that maps to each table's first entry.
    first: i64,
    /// Red, green, blue, already scaled to 8 bits.
    luts: [Vec<u8>; 3],
}

/// A table has at most this many entries (the descriptor's 0 means it).
const MAX_ENTRIES: usize = 1 << 16;

const DESCRIPTORS: [Tag; 3] = [
    tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
    tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
    tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
];
const DATA: [Tag; 3] = [
    tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
    tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
    tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
];
const SEGMENTED: [Tag; 3] = [
    tags::SEGMENTED_RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
    tags::SEGMENTED_GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
    tags::SEGMENTED_BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
];
const COLOURS: [&str; 3] = ["red", "green", "blue"];

impl Palette {
    /// The palette of `obj`, whose pixel values are signed when `signed`
    /// (the descriptor's first mapped value is then read as SS), from a
    /// data set in a big-endian transfer syntax when `big_endian`. The
    /// error says which table is missing or malformed.
    pub fn of(obj: &InMemDicomObject, signed: bool, big_endian: bool) -> Result<Palette, String> {
        let mut first = None;
        let mut luts: [Vec<u8>; 3] = Default::default();
        for c in 0..3 {
            let colour = COLOURS[c];
            let desc: Vec<i64> = obj
                .get(DESCRIPTORS[c])
                .and_then(|e| e.to_multi_int::<i64>().ok())
                .filter(|d| d.len() == 3)
                .ok_or_else(|| {
                    format!("the {colour} palette descriptor is missing or malformed")
                })?;
            let entries = match desc[0] & 0xFFFF {
                0 => MAX_ENTRIES,
                n => n as usize,
            };
            // The descriptor's values are US or SS (and an implicit VR
            // data set says neither): read the raw 16 bits either way.
            let map = desc[1] & 0xFFFF;
            first = Some(match signed && map >= 0x8000 {
                true => map - 0x10000,
                false => map,
            });
            let bits = desc[2];
            if bits != 8 && bits != 16 {
                return Err(format!(
                    "the {colour} palette has {bits} bits per entry (8 or 16 expected)"
                ));
            }
            let words = if let Some(e) = obj.get(DATA[c]) {
                let bytes = le_bytes(e.value(), big_endian)
                    .ok_or_else(|| format!("the {colour} palette data is not binary"))?;
                table(&bytes, entries, bits)?
            } else if let Some(e) = obj.get(SEGMENTED[c]) {
                let bytes = le_bytes(e.value(), big_endian)
                    .ok_or_else(|| format!("the segmented {colour} palette is not binary"))?;
                let words = match bits {
                    8 => bytes.iter().map(|&b| u16::from(b)).collect(),
                    _ => le_words(&bytes),
                };
                expand_segments(&words).map_err(|m| format!("the {colour} palette: {m}"))?
            } else {
                return Err(format!("the {colour} palette data is missing"));
            };
            if words.is_empty() {
                return Err(format!("the {colour} palette is empty"));
            }
            luts[c] = words
                .into_iter()
                .map(|w| match bits {
                    16 => (w >> 8) as u8,
                    _ => w.min(255) as u8,
                })
                .collect();
        }
        Ok(Palette {
            first: first.unwrap_or(0),
            luts,
        })
    }

    /// The colour of pixel value `v`: values below the first mapped one
    /// take the first entry, values past the end the last.
    pub fn rgb(&self, v: i64) -> [u8; 3] {
        let at = |lut: &Vec<u8>| {
            let i = (v - self.first).clamp(0, lut.len() as i64 - 1);
            lut[i as usize]
        };
        [at(&self.luts[0]), at(&self.luts[1]), at(&self.luts[2])]
    }
}

/// An OW value's bytes in little-endian order: a value parsed into words
/// is native already, while one kept as the bytes read from a big-endian
/// data set has each word's bytes swapped.
fn le_bytes(v: &DicomValue<InMemDicomObject>, big_endian: bool) -> Option<Vec<u8>> {
    let DicomValue::Primitive(p @ (PrimitiveValue::U8(_) | PrimitiveValue::U16(_))) = v else {
        return None;
    };
    let mut bytes = super::json::le_bytes(p);
    if big_endian && matches!(p, PrimitiveValue::U8(_)) {
        bytes.chunks_exact_mut(2).for_each(|w| w.swap(0, 1));
    }
    Some(bytes)
}

fn le_words(b: &[u8]) -> Vec<u16> {
    b.chunks_exact(2)
        .map(|p| u16::from_le_bytes([p[0], p[1]]))
        .collect()
}

/// A whole table of `entries` values. Entries of 8 bits are found either
/// one per byte or, as many writers do, one per 16-bit word: the data's
/// length tells which (as pydicom and DCMTK read it).
fn table(b: &[u8], entries: usize, bits: i64) -> Result<Vec<u16>, String> {
    if bits == 8 && (b.len() == entries || b.len() == entries + 1) {
        return Ok(b[..entries].iter().map(|&x| u16::from(x)).collect());
    }
    let words = le_words(b);
    if words.len() < entries {
        return Err(format!(
            "the palette data holds {} entries where its descriptor says {entries}",
            words.len()
        ));
    }
    Ok(words[..entries].to_vec())
}

/// The table that segments (PS3.3 C.7.9.2) describe: discrete segments
/// (opcode 0) give their values, linear ones (1) run from the previous
/// value to theirs. Indirect segments (2) copy earlier ones and are refused.
fn expand_segments(words: &[u16]) -> Result<Vec<u16>, String> {
    let mut out: Vec<u16> = Vec::new();
    let mut at = 0;
    while at < words.len() {
        let (op, len) = (
            words[at],
            usize::from(*words.get(at + 1).ok_or("a segment is cut short")?),
        );
        at += 2;
        match op {
            0 => {
                let vals = words.get(at..at + len).ok_or("a segment is cut short")?;
                out.extend_from_slice(vals);
                at += len;
            }
            1 => {
                let y1 = f64::from(*words.get(at).ok_or("a segment is cut short")?);
                let y0 = f64::from(
                    *out.last()
                        .ok_or("a linear segment comes before any value")?,
                );
                out.extend(
                    (1..=len).map(|i| (y0 + (y1 - y0) * i as f64 / len as f64).round() as u16),
                );
                at += 1;
            }
            2 => return Err("indirect segments are not supported".into()),
            other => return Err(format!("unknown segment type {other}")),
        }
        if out.len() > MAX_ENTRIES {
            return Err("the segments give more than 65,536 entries".into());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::{DataElement, VR};

    fn with_palette(desc: [u16; 3], data: &[u16], segmented: bool) -> InMemDicomObject {
        let mut obj = InMemDicomObject::new_empty();
        for c in 0..3 {
            obj.put(DataElement::new(
                DESCRIPTORS[c],
                VR::US,
                PrimitiveValue::U16(desc.to_vec().into()),
            ));
            let tag = if segmented { SEGMENTED[c] } else { DATA[c] };
            obj.put(DataElement::new(
                tag,
                VR::OW,
                PrimitiveValue::U16(data.to_vec().into()),
            ));
        }
        obj
    }

    #[test]
    fn plain_tables_map_and_clamp() {
        // 4 entries from pixel value 10, 16 bits each.
        let p = Palette::of(
            &with_palette([4, 10, 16], &[0, 0x1000, 0x8000, 0xFFFF], false),
            false,
            false,
        )
        .expect("palette");
        assert_eq!(p.rgb(9), [0, 0, 0]);
        assert_eq!(p.rgb(11), [0x10, 0x10, 0x10]);
        assert_eq!(p.rgb(13), [255, 255, 255]);
        assert_eq!(p.rgb(400), [255, 255, 255]);
        // 8-bit entries, one per word; 0 entries means 65,536 (too few here).
        let p =
            Palette::of(&with_palette([2, 0, 8], &[7, 200], false), false, false).expect("palette");
        assert_eq!(p.rgb(1), [200, 200, 200]);
        let e = Palette::of(&with_palette([0, 0, 16], &[1, 2], false), false, false)
            .expect_err("short");
        assert!(e.contains("65536"), "{e}");
        // A signed image's first mapped value is SS.
        let p = Palette::of(
            &with_palette([2, 0xFFFF, 16], &[0x0100, 0x0200], false),
            true,
            false,
        )
        .expect("palette");
        assert_eq!(p.rgb(-1), [1, 1, 1]);
        assert_eq!(p.rgb(0), [2, 2, 2]);
        let mut obj = with_palette([2, 0, 16], &[1, 2], false);
        obj.remove_element(tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA);
        let e = Palette::of(&obj, false, false).expect_err("no blue");
        assert!(e.contains("blue"), "{e}");
        // Tables kept as the bytes of a big-endian data set.
        let mut obj = with_palette([2, 0, 16], &[1, 2], false);
        for tag in DATA {
            let be = PrimitiveValue::U8([0x12, 0x34, 0xAB, 0xCD].into_iter().collect());
            obj.put(DataElement::new(tag, VR::OW, be));
        }
        let p = Palette::of(&obj, false, true).expect("palette");
        assert_eq!((p.rgb(0), p.rgb(1)), ([0x12; 3], [0xAB; 3]));
        let p = Palette::of(&obj, false, false).expect("palette");
        assert_eq!((p.rgb(0), p.rgb(1)), ([0x34; 3], [0xCD; 3]));
    }

    #[test]
    fn segments_expand() {
        // Discrete 0, 100; linear to 400 over 3; discrete 7.
        let words = [0, 2, 0, 100, 1, 3, 400, 0, 1, 7];
        assert_eq!(
            expand_segments(&words).expect("ok"),
            vec![0, 100, 200, 300, 400, 7]
        );
        assert!(expand_segments(&[1, 3, 400]).is_err());
        assert!(expand_segments(&[0, 5, 1]).is_err());
        assert!(expand_segments(&[2, 1, 0, 0]).is_err());
        let p =
            Palette::of(&with_palette([6, 0, 16], &words, true), false, false).expect("segmented");
        assert_eq!(p.rgb(2), [0, 0, 0]);
        assert_eq!(p.rgb(4), [1, 1, 1]);
    }
}
