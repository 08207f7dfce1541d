//! Specific Character Set values with code extensions. dicom-rs decodes
//! text with the first value of (0008,0005) only; the common Chinese,
//! Japanese and Korean form names the extension in a later value
//! (`\ISO 2022 IR 58`: ASCII, then GB2312 after an ISO 2022 escape), so
//! those names came out as Latin-1 mojibake in the index, QIDO-RS, C-FIND
//! and DICOM JSON. Such text is decoded again here: the Latin-1 characters
//! give back the bytes, the escape sequences are dropped, and the
//! extension's character set decodes the rest. Stored bytes are never
//! touched (retrieval stays byte-exact).

use dicom_core::value::{PrimitiveValue, Value};
use dicom_core::VR;
use dicom_dictionary_std::tags;
use dicom_encoding::text::{SpecificCharacterSet, TextCodec};
use dicom_object::InMemDicomObject;

/// VRs whose text follows the Specific Character Set.
const TEXT_VRS: [VR; 7] = [VR::PN, VR::LO, VR::SH, VR::ST, VR::LT, VR::UT, VR::UC];

/// The extension's character set when (0008,0005) uses code extensions
/// dicom-rs leaves unapplied (a first value of the default repertoire).
fn extension(obj: &InMemDicomObject) -> Option<SpecificCharacterSet> {
    let values = obj.get(tags::SPECIFIC_CHARACTER_SET)?.to_multi_str().ok()?;
    let first = values.first().map(|v| v.trim()).unwrap_or("");
    if !(first.is_empty() || first == "ISO 2022 IR 6") {
        return None;
    }
    values
        .iter()
        .skip(1)
        .map(|v| v.trim())
        .filter(|v| !v.is_empty() && *v != "ISO 2022 IR 6")
        .find_map(SpecificCharacterSet::from_code)
}

/// Drops ISO 2022 escape sequences: ESC, intermediate bytes 0x20-0x2F,
/// a final byte 0x30-0x7E.
fn strip_escapes(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == 0x1B {
            let mut j = i + 1;
            while j < bytes.len() && (0x20..=0x2F).contains(&bytes[j]) {
                j += 1;
            }
            if j < bytes.len() && (0x30..=0x7E).contains(&bytes[j]) {
                i = j + 1;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// One string decoded as Latin-1 by dicom-rs, decoded again with `cs`.
fn redecode(s: &str, cs: &SpecificCharacterSet) -> Option<String> {
    if s.is_ascii() && !s.contains('\u{1b}') {
        return None;
    }
    let bytes: Vec<u8> = s
        .chars()
        .map(|c| u8::try_from(u32::from(c)).ok())
        .collect::<Option<_>>()?;
    cs.decode(&strip_escapes(&bytes)).ok()
}

fn repair_with(obj: &mut InMemDicomObject, cs: &SpecificCharacterSet) {
    let mut changed = Vec::new();
    for e in obj.iter().filter(|e| TEXT_VRS.contains(&e.vr())) {
        let parts: &[String] = match e.value() {
            Value::Primitive(PrimitiveValue::Strs(parts)) => parts,
            Value::Primitive(PrimitiveValue::Str(one)) => std::slice::from_ref(one),
            _ => continue,
        };
        let fixed: Vec<Option<String>> = parts.iter().map(|p| redecode(p, cs)).collect();
        if fixed.iter().any(Option::is_some) {
            let all: Vec<String> = parts
                .iter()
                .zip(fixed)
                .map(|(p, f)| f.unwrap_or_else(|| p.clone()))
                .collect();
            changed.push((e.header().tag, e.vr(), all));
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
                match extension(item) {
                    Some(own) => repair_with(item, &own),
                    None => repair_with(item, cs),
                }
            }
        }
        obj.put(e);
    }
}

/// Decodes the text of a dataset whose character set uses code extensions.
pub fn repair(obj: &mut InMemDicomObject) {
    if let Some(cs) = extension(obj) {
        repair_with(obj, &cs);
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
        repair(&mut obj);
        let name = obj.get(tags::PATIENT_NAME).and_then(|e| e.to_str().ok());
        assert_eq!(name.as_deref(), Some("王^五"));
        let id = obj.get(tags::PATIENT_ID).and_then(|e| e.to_str().ok());
        assert_eq!(id.as_deref(), Some("CN3"));
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
        repair(&mut obj);
        let name = obj.get(tags::PATIENT_NAME).and_then(|e| e.to_str().ok());
        assert_eq!(name.as_deref(), Some("Müller^Jörg"));
    }
}
