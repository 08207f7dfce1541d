//! Specific Character Set values with code extensions (PS3.5 6.1.2.5,
//! Annexes H-K): `\ISO 2022 IR 58` (Chinese), `ISO 2022 IR 13\ISO 2022
//! IR 87` (Japanese), `\ISO 2022 IR 149` (Korean) and the like, where
//! escape sequences switch character sets inside a value. dicom-rs
//! decodes text with the first value of (0008,0005) only, so such names
//! came out as mojibake, or with raw escape sequences, in the index,
//! QIDO-RS, C-FIND and DICOM JSON. Such text is decoded again here: the
//! first value's codec gives back the bytes dicom-rs read, and an ISO 2022
//! decoder walks them, switching sets at each escape sequence. Stored
//! bytes are never touched (retrieval stays byte-exact).
//!
//! Also text that is not valid in its character set (GBK bytes labelled
//! `ISO_IR 192`, a Latin-1 name in a UTF-8 file, a GB18030 value cut in
//! the middle of a character): dicom-rs writes each byte it cannot decode
//! as a backslash and three octal digits, and then splits the value at
//! that backslash, so one name became five values. Such values are put
//! back together and decoded again with U+FFFD for what is not valid, as
//! Orthanc and Python read them.
//!
//! And text of a data set without (0008,0005), which the standard reads
//! in the default repertoire (ASCII) and dicom-rs as Latin-1, in the
//! character set an archive is told its older modalities write (GB18030
//! or GBK in China, Shift_JIS in Japan; see [`set_default`]).

use dicom_core::value::{PrimitiveValue, Value};
use dicom_core::VR;
use dicom_dictionary_std::tags;
use dicom_encoding::text::{DefaultCharacterSetCodec, SpecificCharacterSet, TextCodec};
use dicom_object::InMemDicomObject;
use encoding::{all, DecoderTrap, EncoderTrap, Encoding, EncodingRef};
use std::sync::OnceLock;

/// The character set of data sets without (0008,0005), for this process.
static DEFAULT: OnceLock<EncodingRef> = OnceLock::new();

/// The single character sets a default may name, as their (0008,0005)
/// terms.
pub const DEFAULT_TERMS: &[&str] = &[
    "GB18030",
    "GBK",
    "ISO_IR 192",
    "ISO_IR 13",
    "ISO 2022 IR 149",
    "ISO_IR 100",
    "ISO_IR 101",
    "ISO_IR 109",
    "ISO_IR 110",
    "ISO_IR 144",
    "ISO_IR 127",
    "ISO_IR 126",
    "ISO_IR 138",
    "ISO_IR 148",
    "ISO_IR 203",
    "ISO_IR 166",
];

/// The encoding of a term of [`DEFAULT_TERMS`].
fn default_encoding(term: &str) -> Option<EncodingRef> {
    if !DEFAULT_TERMS.contains(&term) {
        return None;
    }
    if let Some(set) = escaping_set(term) {
        return Some(set);
    }
    match term {
        // JIS X 0201 with Shift_JIS kanji, as Japanese systems write it.
        "ISO_IR 13" => Some(all::WINDOWS_31J),
        "ISO 2022 IR 149" => Some(all::WINDOWS_949),
        t => match g1_of(&t.replace("ISO_IR", "ISO 2022 IR")) {
            Some(Set::Upper(e)) => Some(e),
            _ => None,
        },
    }
}

/// Reads text of data sets without (0008,0005) in `term` (one of
/// [`DEFAULT_TERMS`]) from now on, in this process, as Orthanc's
/// `DefaultEncoding` does: older modalities send GB18030 or Shift_JIS
/// names without saying so. Stored bytes are not changed. Fails for
/// another term, or when a default was already set.
pub fn set_default(term: &str) -> Result<(), String> {
    let e = default_encoding(term.trim()).ok_or_else(|| {
        format!(
            "{term:?} is not a character set a default can name (one of: {})",
            DEFAULT_TERMS.join(", ")
        )
    })?;
    DEFAULT
        .set(e)
        .map_err(|_| "the default character set is already set".to_string())
}

/// VRs whose text follows the Specific Character Set.
const TEXT_VRS: [VR; 7] = [VR::PN, VR::LO, VR::SH, VR::ST, VR::LT, VR::UT, VR::UC];

/// A graphic character set an escape sequence (or value 1 of (0008,0005))
/// designates.
#[derive(Clone, Copy)]
enum Set {
    /// ISO-IR 6 (ASCII) in G0.
    Ascii,
    /// ISO-IR 14, JIS X 0201 Romaji, in G0: read as ASCII, as pydicom does.
    JisRoman,
    /// ISO-IR 13, JIS X 0201 Katakana, in G1.
    Katakana,
    /// ISO-IR 87, JIS X 0208, two bytes in G0.
    Jis0208,
    /// ISO-IR 159, JIS X 0212, two bytes in G0.
    Jis0212,
    /// ISO-IR 149, KS X 1001, two bytes in G1.
    Ksx1001,
    /// ISO-IR 58, GB 2312, two bytes in G1.
    Gb2312,
    /// An upper half of an ISO 8859 part (or TIS 620) in G1.
    Upper(EncodingRef),
}

/// The sets in force: G0 for bytes 0x21-0x7E, G1 for 0xA1-0xFE.
#[derive(Clone, Copy)]
struct State {
    g0: Set,
    g1: Option<Set>,
}

/// The set a value of (0008,0005) puts in G1, if any.
fn g1_of(value: &str) -> Option<Set> {
    Some(match value {
        "ISO 2022 IR 13" => Set::Katakana,
        "ISO 2022 IR 58" => Set::Gb2312,
        "ISO 2022 IR 149" => Set::Ksx1001,
        "ISO 2022 IR 100" => Set::Upper(all::ISO_8859_1),
        "ISO 2022 IR 101" => Set::Upper(all::ISO_8859_2),
        "ISO 2022 IR 109" => Set::Upper(all::ISO_8859_3),
        "ISO 2022 IR 110" => Set::Upper(all::ISO_8859_4),
        "ISO 2022 IR 144" => Set::Upper(all::ISO_8859_5),
        "ISO 2022 IR 127" => Set::Upper(all::ISO_8859_6),
        "ISO 2022 IR 126" => Set::Upper(all::ISO_8859_7),
        "ISO 2022 IR 138" => Set::Upper(all::ISO_8859_8),
        // Windows-1254 and ISO 8859-9 agree on 0xA0-0xFF, all G1 holds.
        "ISO 2022 IR 148" => Set::Upper(all::WINDOWS_1254),
        "ISO 2022 IR 203" => Set::Upper(all::ISO_8859_15),
        "ISO 2022 IR 166" => Set::Upper(all::WINDOWS_874),
        _ => return None,
    })
}

/// The state text starts in, for the values of (0008,0005) in ISO 2022
/// form (an empty value 1: the default repertoire). Bytes above 0x7F
/// before any G1 designation are read in the first G1 set the values name:
/// many writers (pydicom among them, and Chinese modalities) send GB 2312
/// under `\ISO 2022 IR 58` without an escape sequence.
fn initial(values: &[&str]) -> Option<State> {
    let first = values.first().copied().unwrap_or("");
    let g0 = match first {
        "" | "ISO 2022 IR 6" => Set::Ascii,
        "ISO 2022 IR 13" => Set::JisRoman,
        v => {
            g1_of(v)?;
            Set::Ascii
        }
    };
    Some(State {
        g0,
        g1: values.iter().find_map(|v| g1_of(v)),
    })
}

/// What the escape sequence `esc` (the bytes after ESC) designates: into
/// G0 (`false`) or G1 (`true`).
fn designated(esc: &[u8]) -> Option<(bool, Set)> {
    Some(match esc {
        b"(B" => (false, Set::Ascii),
        b"(J" => (false, Set::JisRoman),
        b")I" => (true, Set::Katakana),
        b"$B" | b"$@" => (false, Set::Jis0208),
        b"$(D" => (false, Set::Jis0212),
        b"$)C" => (true, Set::Ksx1001),
        b"$)A" => (true, Set::Gb2312),
        b"-A" => (true, Set::Upper(all::ISO_8859_1)),
        b"-B" => (true, Set::Upper(all::ISO_8859_2)),
        b"-C" => (true, Set::Upper(all::ISO_8859_3)),
        b"-D" => (true, Set::Upper(all::ISO_8859_4)),
        b"-L" => (true, Set::Upper(all::ISO_8859_5)),
        b"-G" => (true, Set::Upper(all::ISO_8859_6)),
        b"-F" => (true, Set::Upper(all::ISO_8859_7)),
        b"-H" => (true, Set::Upper(all::ISO_8859_8)),
        b"-M" => (true, Set::Upper(all::WINDOWS_1254)),
        b"-T" => (true, Set::Upper(all::WINDOWS_874)),
        b"-b" => (true, Set::Upper(all::ISO_8859_15)),
        _ => return None,
    })
}

/// Decodes the bytes of one value (one of a multi-valued element's parts)
/// written with ISO 2022 code extensions, starting in `start`. Designations
/// last to the end of the value: PS3.5 6.1.2.5.3 has writers return to
/// the initial sets before each delimiter, but many designate a G1 set
/// once for the whole value (pydicom does), and G1 bytes are unambiguous.
fn decode_iso2022(bytes: &[u8], start: State) -> Vec<String> {
    let mut values = Vec::new();
    let mut out = String::with_capacity(bytes.len());
    let mut st = start;
    let two = |set: Set, pair: &[u8]| -> Option<String> {
        let (enc, raw): (EncodingRef, Vec<u8>) = match set {
            Set::Jis0208 => (all::EUC_JP, pair.iter().map(|b| b | 0x80).collect()),
            Set::Jis0212 => (
                all::EUC_JP,
                std::iter::once(0x8F)
                    .chain(pair.iter().map(|b| b | 0x80))
                    .collect(),
            ),
            Set::Ksx1001 => (all::WINDOWS_949, pair.to_vec()),
            Set::Gb2312 => (all::GBK, pair.to_vec()),
            _ => return None,
        };
        enc.decode(&raw, DecoderTrap::Replace).ok()
    };
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == 0x1B {
            let mut j = i + 1;
            while j < bytes.len() && (0x20..=0x2F).contains(&bytes[j]) {
                j += 1;
            }
            if j < bytes.len() && (0x30..=0x7E).contains(&bytes[j]) {
                match designated(&bytes[i + 1..=j]) {
                    Some((false, set)) => st.g0 = set,
                    Some((true, set)) => st.g1 = Some(set),
                    None => {}
                }
                i = j + 1;
                continue;
            }
        }
        let g0_two = matches!(st.g0, Set::Jis0208 | Set::Jis0212);
        if b < 0x80 {
            if g0_two && (0x21..=0x7E).contains(&b) && i + 1 < bytes.len() {
                out.push_str(&two(st.g0, &bytes[i..i + 2]).unwrap_or_default());
                i += 2;
                continue;
            }
            if b == b'\\' {
                // A value delimiter (never inside a two-byte character:
                // JIS X 0208 uses 0x5C as a second byte). Each value
                // starts over in the initial sets.
                values.push(std::mem::take(&mut out));
                st = start;
            } else {
                out.push(b as char);
            }
            i += 1;
            continue;
        }
        match st.g1 {
            Some(Set::Katakana) if (0xA1..=0xDF).contains(&b) => {
                out.extend(char::from_u32(0xFF61 + u32::from(b - 0xA1)));
                i += 1;
            }
            Some(set @ (Set::Ksx1001 | Set::Gb2312)) if i + 1 < bytes.len() => {
                out.push_str(&two(set, &bytes[i..i + 2]).unwrap_or_default());
                i += 2;
            }
            Some(Set::Upper(enc)) => {
                out.push_str(&enc.decode(&[b], DecoderTrap::Replace).unwrap_or_default());
                i += 1;
            }
            _ => {
                out.push(char::REPLACEMENT_CHARACTER);
                i += 1;
            }
        }
    }
    values.push(out);
    values
}

/// Single character sets of PS3.3 C.12.1.1.2 that dicom-rs 0.10 does not
/// know (it warns and reads their text as Latin-1): Latin alphabet No. 5
/// (Turkish, `İ` and `ş` came out as `Ý` and `þ`) and No. 9. Their upper
/// half is read again as an ISO 2022 G1 set.
fn unknown_to_dicom_rs(value: &str) -> Option<Set> {
    match value {
        "ISO_IR 148" => g1_of("ISO 2022 IR 148"),
        "ISO_IR 203" => g1_of("ISO 2022 IR 203"),
        _ => None,
    }
}

/// How the text of a dataset is to be decoded again. None when dicom-rs
/// decodes it alone: a single character set whose every byte sequence is
/// text (ASCII, the ISO 8859 parts, ...).
enum Extensions<'a> {
    /// Code extensions: the codec dicom-rs read the text with, and the ISO
    /// 2022 state values start in.
    Iso2022 {
        read_with: Box<dyn TextCodec>,
        start: State,
    },
    /// A character set some byte sequences are not valid in (UTF-8,
    /// GB18030, GBK), and the raw dataset, to tell dicom-rs's escapes from
    /// text that really holds a backslash and three digits (which of
    /// those the raw dataset holds, found once, when first needed).
    Escaped {
        set: EncodingRef,
        raw: &'a [u8],
        literal: std::cell::OnceCell<u128>,
    },
    /// No (0008,0005), and a default character set: dicom-rs read the
    /// text as Latin-1, every byte one character.
    Default { set: EncodingRef },
}

/// The single character sets where dicom-rs escapes undecodable bytes.
fn escaping_set(value: &str) -> Option<EncodingRef> {
    match value {
        "ISO_IR 192" => Some(all::UTF_8),
        "GB18030" => Some(all::GB18030),
        "GBK" => Some(all::GBK),
        _ => None,
    }
}

fn extensions<'a>(
    obj: &InMemDicomObject,
    raw: &'a [u8],
    default: Option<EncodingRef>,
) -> Option<Extensions<'a>> {
    let Some(element) = obj.get(tags::SPECIFIC_CHARACTER_SET) else {
        return default.map(|set| Extensions::Default { set });
    };
    let values = element.to_multi_str().ok()?;
    let values: Vec<&str> = values.iter().map(|v| v.trim()).collect();
    if let [single] = values[..] {
        if let Some(set) = unknown_to_dicom_rs(single) {
            return Some(Extensions::Iso2022 {
                read_with: Box::new(DefaultCharacterSetCodec),
                start: State {
                    g0: Set::Ascii,
                    g1: Some(set),
                },
            });
        }
        // A term dicom-rs does not know but in letter case (`gb18030`,
        // as some writers send it): it read the text as Latin-1, as
        // without a term, and it is decoded again in the set named.
        if SpecificCharacterSet::from_code(single).is_none() {
            if let Some(set) = default_encoding(&single.to_ascii_uppercase()) {
                return Some(Extensions::Default { set });
            }
        }
        if let Some(set) = escaping_set(single) {
            return Some(Extensions::Escaped {
                set,
                raw,
                literal: std::cell::OnceCell::new(),
            });
        }
    }
    if values.len() < 2 && !values.first().is_some_and(|v| v.starts_with("ISO 2022")) {
        return None;
    }
    let first = values.first().copied().unwrap_or("");
    let start = initial(&values)?;
    let read_with: Box<dyn TextCodec> = match SpecificCharacterSet::from_code(first) {
        Some(cs) if !first.is_empty() => Box::new(cs),
        _ => Box::new(DefaultCharacterSetCodec),
    };
    Some(Extensions::Iso2022 { read_with, start })
}

/// The byte dicom-rs's escape at `b[i..]` stands for: a backslash and
/// three octal digits from 200 to 377 (bytes 0x80-0xFF, the only ones a
/// decoder can refuse).
fn escape_in(b: &[u8], i: usize) -> Option<u8> {
    let d = b.get(i..i + 4)?;
    let ok = d[0] == b'\\'
        && matches!(d[1], b'2' | b'3')
        && d[2..].iter().all(|c| (b'0'..=b'7').contains(c));
    ok.then(|| (d[1] - b'0') << 6 | (d[2] - b'0') << 3 | (d[3] - b'0'))
}

/// Which escape texts (bit k: the escape of byte 0x80 + k) `raw` holds
/// as text: one pass over the dataset.
fn literal_escapes(raw: &[u8]) -> u128 {
    (0..raw.len())
        .filter(|&i| raw[i] == b'\\')
        .filter_map(|i| escape_in(raw, i))
        .fold(0, |m, byte| m | 1 << (byte - 0x80))
}

/// The bytes dicom-rs read for `joined`, its text with each escape of an
/// undecodable byte turned back into that byte, unless the raw dataset
/// holds that text itself (`literal`, see [`literal_escapes`]). None when
/// there is no such escape.
fn unescaped(joined: &str, set: EncodingRef, literal: impl Fn() -> u128) -> Option<Vec<u8>> {
    let b = joined.as_bytes();
    if !(0..b.len()).any(|i| escape_in(b, i).is_some()) {
        return None;
    }
    let literal = literal();
    let escape_at = |i: usize| escape_in(b, i).filter(|byte| literal & 1 << (byte - 0x80) == 0);
    if !(0..b.len()).any(|i| escape_at(i).is_some()) {
        return None;
    }
    let mut out = Vec::with_capacity(b.len());
    let (mut i, mut text) = (0, 0);
    while i < b.len() {
        if let Some(byte) = escape_at(i) {
            out.extend(set.encode(&joined[text..i], EncoderTrap::Replace).ok()?);
            out.push(byte);
            i += 4;
            text = i;
        } else {
            i += 1;
        }
    }
    out.extend(set.encode(&joined[text..], EncoderTrap::Replace).ok()?);
    Some(out)
}

/// An element's values as dicom-rs decoded them, decoded again. They are
/// joined again first: dicom-rs split them at every 0x5C byte, also the
/// second bytes of JIS X 0208 characters (ぼ, ボ, many kanji), which split
/// a name in two, and at its own escapes of undecodable bytes.
fn redecode(parts: &[String], ext: &Extensions, multi: bool) -> Option<Vec<String>> {
    // One value without a backslash (most text, on every ingest of a UTF-8
    // data set): dicom-rs split nothing and escaped nothing, so there is
    // nothing to join; the other forms still redecode what is not plain
    // ASCII (ISO 2022 escapes are ASCII bytes too).
    if let [one] = parts {
        let plain = one.is_ascii() && !one.contains('\u{1b}');
        if !one.contains('\\') && (plain || matches!(ext, Extensions::Escaped { .. })) {
            return None;
        }
    }
    let joined = parts.join("\\");
    match ext {
        Extensions::Iso2022 { read_with, start } => {
            if joined.is_ascii() && !joined.contains('\u{1b}') {
                return None;
            }
            let bytes = read_with.encode(&joined).ok()?;
            Some(decode_iso2022(&bytes, *start))
        }
        Extensions::Escaped { set, raw, literal } => {
            let bytes = unescaped(&joined, *set, || {
                *literal.get_or_init(|| literal_escapes(raw))
            })?;
            Some(decoded(&bytes, *set, multi))
        }
        Extensions::Default { set } => {
            if joined.is_ascii() {
                return None;
            }
            let bytes = all::ISO_8859_1.encode(&joined, EncoderTrap::Strict).ok()?;
            Some(decoded(&bytes, *set, multi))
        }
    }
}

/// `bytes` decoded in `set` (U+FFFD for what is not valid), split into
/// values at backslashes when `multi`.
fn decoded(bytes: &[u8], set: EncodingRef, multi: bool) -> Vec<String> {
    let text = set
        .decode(bytes, DecoderTrap::Replace)
        .unwrap_or_else(|e| e.into_owned());
    match multi {
        true => text.split('\\').map(str::to_string).collect(),
        false => vec![text],
    }
}

fn repair_with(obj: &mut InMemDicomObject, ext: &Extensions, raw: &[u8]) {
    let mut changed = Vec::new();
    for e in obj.iter().filter(|e| TEXT_VRS.contains(&e.vr())) {
        let parts: &[String] = match e.value() {
            Value::Primitive(PrimitiveValue::Strs(parts)) => parts,
            Value::Primitive(PrimitiveValue::Str(one)) => std::slice::from_ref(one),
            _ => continue,
        };
        let multi = !matches!(e.vr(), VR::ST | VR::LT | VR::UT);
        if let Some(values) = redecode(parts, ext, multi) {
            changed.push((e.header().tag, e.vr(), values));
        }
    }
    for (tag, vr, parts) in changed {
        obj.put(dicom_core::DataElement::new(
            tag,
            vr,
            PrimitiveValue::Strs(parts.into()),
        ));
    }
    let seqs: Vec<dicom_core::Tag> = obj
        .iter()
        .filter(|e| matches!(e.value(), Value::Sequence(_)))
        .map(|e| e.header().tag)
        .collect();
    for tag in seqs {
        let Some(mut e) = obj.take(tag) else { continue };
        if let Some(items) = e.items_mut() {
            for item in items.iter_mut() {
                // An item may name its own character set.
                // An item without one keeps its parent's (no default).
                match extensions(item, raw, None) {
                    Some(own) => repair_with(item, &own, raw),
                    None => repair_with(item, ext, raw),
                }
            }
        }
        obj.put(e);
    }
}

/// Decodes again the text of a dataset whose character set uses code
/// extensions or held bytes dicom-rs could not decode; `raw` is the
/// dataset as parsed.
pub fn repair(obj: &mut InMemDicomObject, raw: &[u8]) {
    repair_defaulting(obj, raw, DEFAULT.get().copied());
}

/// [`repair`], with `default` for a data set without (0008,0005).
fn repair_defaulting(obj: &mut InMemDicomObject, raw: &[u8], default: Option<EncodingRef>) {
    if let Some(ext) = extensions(obj, raw, default) {
        repair_with(obj, &ext, raw);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::DataElement;

    #[test]
    fn gb2312_after_an_iso_2022_escape_is_decoded() {
        // 王^五 in GB2312 with ESC $ ) A, as ISO 2022 IR 58 writes it,
        // read by dicom-rs as Latin-1.
        let raw: &[u8] = b"\x1b$)A\xcd\xf5^\x1b$)A\xce\xe5";
        let latin1: String = raw.iter().map(|&b| b as char).collect();
        let mut obj = InMemDicomObject::new_empty();
        obj.put(DataElement::new(
            tags::SPECIFIC_CHARACTER_SET,
            VR::CS,
            PrimitiveValue::Strs(vec![String::new(), "ISO 2022 IR 58".into()].into()),
        ));
        obj.put(DataElement::new(
            tags::PATIENT_NAME,
            VR::PN,
            PrimitiveValue::from(latin1),
        ));
        obj.put(DataElement::new(
            tags::PATIENT_ID,
            VR::LO,
            PrimitiveValue::from("CN3"),
        ));
        repair(&mut obj, &[]);
        let name = obj.get(tags::PATIENT_NAME).and_then(|e| e.to_str().ok());
        assert_eq!(name.as_deref(), Some("王^五"));
        let id = obj.get(tags::PATIENT_ID).and_then(|e| e.to_str().ok());
        assert_eq!(id.as_deref(), Some("CN3"));
    }

    /// A text element: (group, element), VR, raw value bytes.
    type Raw<'a> = ((u16, u16), &'a [u8; 2], &'a [u8]);

    /// An explicit VR little endian dataset of (0008,0005) and the
    /// elements `text`, parsed by dicom-rs.
    fn parsed(charset: &[u8], text: &[Raw]) -> InMemDicomObject {
        parsed_raw(charset, text).0
    }

    /// [`parsed`], and the dataset's bytes.
    fn parsed_raw(charset: &[u8], text: &[Raw]) -> (InMemDicomObject, Vec<u8>) {
        parsed_with(Some(charset), text)
    }

    /// A data set of (0008,0005), when given, and `text`, parsed, and its bytes.
    fn parsed_with(charset: Option<&[u8]>, text: &[Raw]) -> (InMemDicomObject, Vec<u8>) {
        let mut bytes = Vec::new();
        let mut put = |(group, elem): (u16, u16), vr: &[u8; 2], value: &[u8]| {
            let mut v = value.to_vec();
            if v.len() % 2 == 1 {
                v.push(b' ');
            }
            bytes.extend_from_slice(&group.to_le_bytes());
            bytes.extend_from_slice(&elem.to_le_bytes());
            bytes.extend_from_slice(vr);
            bytes.extend_from_slice(&(v.len() as u16).to_le_bytes());
            bytes.extend_from_slice(&v);
        };
        if let Some(charset) = charset {
            put((0x0008, 0x0005), b"CS", charset);
        }
        for (tag, vr, value) in text {
            put(*tag, vr, value);
        }
        let ts = dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN.erased();
        let obj = InMemDicomObject::read_dataset_with_ts(&bytes[..], &ts).expect("dataset parses");
        (obj, bytes)
    }

    fn values(obj: &InMemDicomObject, tag: dicom_core::Tag) -> Vec<String> {
        obj.get(tag)
            .and_then(|e| e.to_multi_str().ok())
            .map(|v| v.to_vec())
            .unwrap_or_default()
    }

    #[test]
    fn bytes_invalid_in_their_character_set_leave_one_value() {
        // GBK 王^五 labelled UTF-8, Latin-1 labelled UTF-8, a GB18030
        // value cut after a lead byte: dicom-rs made `\315`-style values.
        let (mut obj, raw) = parsed_raw(
            b"ISO_IR 192",
            &[
                ((0x0010, 0x0010), b"PN", b"\xcd\xf5^\xce\xe5"),
                ((0x0010, 0x1001), b"PN", b"M\xfcller^J\xf6rg"),
                ((0x0008, 0x1030), b"LO", "胸部".as_bytes()),
            ],
        );
        assert!(
            values(&obj, tags::PATIENT_NAME).len() > 1,
            "dicom-rs splits it"
        );
        repair(&mut obj, &raw);
        let name = values(&obj, tags::PATIENT_NAME);
        assert_eq!(name.len(), 1, "{name:?}");
        assert!(
            name[0].contains('^') && name[0].contains('\u{FFFD}'),
            "{name:?}"
        );
        assert_eq!(
            values(&obj, tags::OTHER_PATIENT_NAMES),
            ["M\u{FFFD}ller^J\u{FFFD}rg"]
        );
        assert_eq!(values(&obj, tags::STUDY_DESCRIPTION), ["胸部"]);
        let (mut obj, raw) = parsed_raw(b"GB18030", &[((0x0010, 0x0010), b"PN", b"\xcd\xf5^\xce")]);
        repair(&mut obj, &raw);
        let name = values(&obj, tags::PATIENT_NAME);
        assert!(name.len() == 1 && name[0].starts_with("王^"), "{name:?}");
    }

    #[test]
    fn a_data_set_without_a_character_set_is_read_in_the_default() {
        // GBK 张^三 and a description, no (0008,0005): dicom-rs read Latin-1.
        let (description, name) = ("胸部\\CT".encode_gbk(), "张^三".encode_gbk());
        let elements: [Raw; 2] = [
            ((0x0008, 0x1030), b"LO", &description),
            ((0x0010, 0x0010), b"PN", &name),
        ];
        let read = || parsed_with(None, &elements);
        let (mut obj, bytes) = read();
        repair_defaulting(&mut obj, &bytes, None);
        assert_ne!(
            text(&obj, tags::PATIENT_NAME),
            "张^三",
            "no default: as dicom-rs read it"
        );
        let (mut obj, bytes) = read();
        repair_defaulting(&mut obj, &bytes, default_encoding("GB18030"));
        assert_eq!(text(&obj, tags::PATIENT_NAME), "张^三");
        assert_eq!(values(&obj, tags::STUDY_DESCRIPTION), ["胸部", "CT"]);
        assert!(
            default_encoding("ISO_IR 13").is_some() && default_encoding("ISO_IR 144").is_some()
        );
        assert!(
            default_encoding("KOI8-R").is_none() && default_encoding("ISO 2022 IR 58").is_none()
        );
    }

    /// GBK bytes of `self`.
    trait Gbk {
        fn encode_gbk(&self) -> Vec<u8>;
    }

    impl Gbk for str {
        fn encode_gbk(&self) -> Vec<u8> {
            all::GBK.encode(self, EncoderTrap::Strict).expect("GBK")
        }
    }

    #[test]
    fn a_long_text_full_of_invalid_bytes_is_one_value() {
        // 30,000 Latin-1 ü in a UTF-8 report: each its own escape.
        let text: Vec<u8> = b"x\xfc".repeat(30_000);
        let (mut obj, raw) = parsed_raw(b"ISO_IR 192", &[((0x4008, 0x010B), b"ST", &text)]);
        repair(&mut obj, &raw);
        let got = values(&obj, dicom_core::Tag(0x4008, 0x010B));
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].matches('\u{FFFD}').count(), 30_000);
    }

    #[test]
    fn a_character_set_term_in_lower_case_is_still_read() {
        let mut obj = parsed(
            b"gb18030",
            &[((0x0010, 0x0010), b"PN", &"张^三".encode_gbk())],
        );
        repair(&mut obj, &[]);
        assert_eq!(text(&obj, tags::PATIENT_NAME), "张^三");
    }

    #[test]
    fn a_backslash_and_digits_really_sent_are_kept() {
        // Two values, the second "315": text, not an escape.
        let (mut obj, raw) = parsed_raw(
            b"ISO_IR 192",
            &[
                ((0x0008, 0x1080), b"LO", b"A\\315"),
                ((0x0010, 0x0010), b"PN", b"\xff"),
            ],
        );
        repair(&mut obj, &raw);
        assert_eq!(
            values(&obj, tags::ADMITTING_DIAGNOSES_DESCRIPTION),
            ["A", "315"]
        );
        assert_eq!(values(&obj, tags::PATIENT_NAME), ["\u{FFFD}"]);
    }

    fn text(obj: &InMemDicomObject, tag: dicom_core::Tag) -> String {
        obj.get(tag)
            .and_then(|e| e.to_str().ok())
            .map(|s| s.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn japanese_names_of_ps3_5_annex_h_are_decoded() {
        // H.3.1: JIS X 0208 after ESC $ B, back to ASCII with ESC ( B.
        let mut obj = parsed(
            b"\\ISO 2022 IR 87",
            &[
                (
                    (0x0010, 0x0010),
                    b"PN",
                    b"Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B=\x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B",
                ),
                ((0x0008, 0x1030), b"LO", b"\x1b$BF,It\x1b(BMRI"),
            ],
        );
        repair(&mut obj, &[]);
        assert_eq!(
            text(&obj, tags::PATIENT_NAME),
            "Yamada^Tarou=山田^太郎=やまだ^たろう"
        );
        assert_eq!(text(&obj, tags::STUDY_DESCRIPTION), "頭部MRI");
        // H.3.2: half-width katakana of ISO 2022 IR 13 in G1, JIS X 0201
        // Romaji back with ESC ( J.
        let mut obj = parsed(
            b"ISO 2022 IR 13\\ISO 2022 IR 87",
            &[(
                (0x0010, 0x0010),
                b"PN",
                b"\xd4\xcf\xc0\xde^\xc0\xdb\xb3=\x1b$B;3ED\x1b(J^\x1b$BB@O:\x1b(J=\x1b$B$d$^$@\x1b(J^\x1b$B$?$m$&\x1b(J",
            )],
        );
        repair(&mut obj, &[]);
        assert_eq!(
            text(&obj, tags::PATIENT_NAME),
            "ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう"
        );
    }

    #[test]
    fn a_0x5c_inside_a_two_byte_character_does_not_split_the_value() {
        // ボ is JIS X 0208 0x255C: its second byte is a backslash, where
        // dicom-rs cut the value.
        let mut obj = parsed(
            b"\\ISO 2022 IR 87",
            &[
                (
                    (0x0010, 0x0010),
                    b"PN",
                    b"Bo^Tarou=\x1b$B%\\\x1b(B^\x1b$BB@O:\x1b(B",
                ),
                ((0x0008, 0x1030), b"LO", b"\x1b$B%\\\x1b(B\\MRI"),
            ],
        );
        repair(&mut obj, &[]);
        assert_eq!(text(&obj, tags::PATIENT_NAME), "Bo^Tarou=ボ^太郎");
        let values = obj
            .get(tags::STUDY_DESCRIPTION)
            .and_then(|e| e.to_multi_str().ok())
            .map(|v| v.to_vec());
        assert_eq!(values, Some(vec!["ボ".to_string(), "MRI".to_string()]));
    }

    #[test]
    fn korean_and_latin_extensions_are_decoded() {
        let hong = "Hong^Gildong=洪^吉洞=홍^길동";
        let cases: [(&[u8], Raw, &str); 6] = [
            // PS3.5 I.2: KS X 1001 in G1 after ESC $ ) C, each component.
            (
                b"\\ISO 2022 IR 149",
                (
                    (0x0010, 0x0010),
                    b"PN",
                    b"Hong^Gildong=\x1b$)C\xfb\xf3^\x1b$)C\xd1\xce\xd4\xd7=\x1b$)C\xc8\xab^\x1b$)C\xb1\xe6\xb5\xbf",
                ),
                hong,
            ),
            // As pydicom writes it: KS X 1001 designated once for the value.
            (
                b"\\ISO 2022 IR 149",
                (
                    (0x0010, 0x0010),
                    b"PN",
                    b"\x1b$)CHong^Gildong=\xfb\xf3^\xd1\xce\xd4\xd7=\xc8\xab^\xb1\xe6\xb5\xbf",
                ),
                hong,
            ),
            // Latin-1 in G1 from value 1, Greek switched in by ESC - F.
            (
                b"ISO 2022 IR 100\\ISO 2022 IR 126",
                ((0x0010, 0x0010), b"PN", b"M\xfcller^\x1b-F\xe1\xe2\xe3"),
                "Müller^αβγ",
            ),
            // Latin alphabet No. 5 (Turkish) and No. 9, which dicom-rs
            // reads as Latin-1: İ came out as Ý, € as ¤.
            (
                b"ISO_IR 148",
                ((0x0010, 0x0010), b"PN", b"Test-\xe9\xfc\xe4\xf6\xf2\xdd^\xfe"),
                "Test-éüäöòİ^ş",
            ),
            // Latin-9 switched in by its escape, ESC - b.
            (
                b"ISO 2022 IR 100\\ISO 2022 IR 203",
                ((0x0008, 0x1030), b"LO", b"\xe9 \x1b-b\xa4"),
                "é €",
            ),
            (
                b"ISO_IR 203",
                ((0x0008, 0x1030), b"LO", b"\xa4 5"),
                "€ 5",
            ),
        ];
        for (charset, raw, want) in cases {
            let mut obj = parsed(charset, &[raw]);
            repair(&mut obj, &[]);
            assert_eq!(text(&obj, dicom_core::Tag(raw.0 .0, raw.0 .1)), want);
        }
    }

    #[test]
    fn single_valued_character_sets_are_left_to_dicom_rs() {
        let mut obj = InMemDicomObject::new_empty();
        obj.put(DataElement::new(
            tags::SPECIFIC_CHARACTER_SET,
            VR::CS,
            PrimitiveValue::from("ISO_IR 100"),
        ));
        obj.put(DataElement::new(
            tags::PATIENT_NAME,
            VR::PN,
            PrimitiveValue::from("Müller^Jörg"),
        ));
        repair(&mut obj, &[]);
        let name = obj.get(tags::PATIENT_NAME).and_then(|e| e.to_str().ok());
        assert_eq!(name.as_deref(), Some("Müller^Jörg"));
    }
}
