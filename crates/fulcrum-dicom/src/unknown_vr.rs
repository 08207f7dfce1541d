//! Standard attributes written with VR UN. Converters that lost the VR (a
//! dataset relayed through an implicit-VR hop by a node whose dictionary
//! lacked the tag, some PACS exports) write even well-known attributes such
//! as SOP Instance UID or Rows as UN: raw bytes. PS3.5 6.2.2 lets a reader
//! that knows the attribute read it with its real VR, as pydicom, dcm4che
//! and dcmjs do; otherwise DICOM JSON would carry a SOP Instance UID as
//! base64 `InlineBinary`, which a viewer cannot use to fetch frames, and
//! integers such as Rows would be missing from the index. Here each such
//! element is read again as it was first written, Implicit VR Little
//! Endian, where the data dictionary gives its VR (sequences included);
//! what does not parse stays UN. Stored bytes are never touched.

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
use dicom_core::header::Header;
use dicom_core::{Tag, VR};
use dicom_dictionary_std::{tags, StandardDataDictionary};
use dicom_object::mem::InMemElement;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN;

use crate::scan::{Framing, Walker};

/// Whether `tag` is a standard attribute whose VR the dictionary knows.
fn known(tag: Tag) -> bool {
    if tag.0 % 2 == 1 || tag == tags::PIXEL_DATA || tag.0 == 0xFFFE {
        return false;
    }
    StandardDataDictionary
        .by_tag(tag)
        .is_some_and(|e| !matches!(e.vr(), VirtualVr::Exact(VR::UN)))
}

/// `tag`, length and value, as Implicit VR Little Endian encodes them.
fn implicit(out: &mut Vec<u8>, tag: Tag, value: &[u8]) {
    out.extend_from_slice(&tag.0.to_le_bytes());
    out.extend_from_slice(&tag.1.to_le_bytes());
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(value);
}

/// One UN element read with its dictionary VR; `charset` is the raw value
/// of the dataset's (0008,0005), so text is decoded as the dataset says.
fn reread(e: &InMemElement, charset: Option<&[u8]>) -> Option<InMemElement> {
    let bytes = e.to_bytes().ok()?;
    read_implicit(e.tag(), bytes.len() as u32, &bytes, charset).filter(|r| r.vr() != VR::UN)
}

/// The element `tag` with the value bytes `value` (of length `len`:
/// `u32::MAX` for an undefined-length sequence with its delimiter), read
/// as Implicit VR Little Endian, its text in `charset` (the raw value of
/// the dataset's (0008,0005)). None when it does not parse.
pub(crate) fn read_implicit(
    tag: Tag,
    len: u32,
    value: &[u8],
    charset: Option<&[u8]>,
) -> Option<InMemElement> {
    let mut buf = Vec::with_capacity(value.len() + 32);
    if let Some(cs) = charset {
        implicit(&mut buf, tags::SPECIFIC_CHARACTER_SET, cs);
    }
    buf.extend_from_slice(&tag.0.to_le_bytes());
    buf.extend_from_slice(&tag.1.to_le_bytes());
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(value);
    // The framing first (as every parse here): a sequence in the value
    // nested deeper than the walker allows would overflow dicom-rs' stack.
    let mut walker = Walker::new(Framing::IMPLICIT_LE);
    walker.feed(&buf).and_then(|()| walker.finish()).ok()?;
    let obj = InMemDicomObject::read_dataset_with_ts(&buf[..], &IMPLICIT_VR_LITTLE_ENDIAN.erased())
        .ok()?;
    obj.get(tag).cloned()
}

/// The raw bytes of the dataset's Specific Character Set, padded to even length.
pub(crate) fn charset_bytes(obj: &InMemDicomObject) -> Option<Vec<u8>> {
    let e = obj.get(tags::SPECIFIC_CHARACTER_SET)?;
    let mut v = if e.vr() == VR::UN {
        e.to_bytes().ok()?.into_owned()
    } else {
        e.to_multi_str().ok()?.join("\\").into_bytes()
    };
    if v.len() % 2 == 1 {
        v.push(b' ');
    }
    Some(v)
}

/// Whether `obj` or an item of its sequences holds a UN element.
fn has_un(obj: &InMemDicomObject) -> bool {
    obj.iter()
        .any(|e| e.vr() == VR::UN || e.items().is_some_and(|items| items.iter().any(has_un)))
}

/// Reads the UN elements of known attributes in `obj` (and in its
/// sequences' items) with their dictionary VR. Only meaningful for datasets
/// in a little endian transfer syntax. Every header parse comes here: a
/// dataset without UN (nearly all) costs one read-only walk.
pub fn resolve(obj: &mut InMemDicomObject) {
    if has_un(obj) {
        resolve_in(obj);
    }
}

fn resolve_in(obj: &mut InMemDicomObject) {
    // The character set first: the others are decoded with it.
    if obj
        .get(tags::SPECIFIC_CHARACTER_SET)
        .is_some_and(|e| e.vr() == VR::UN)
    {
        if let Some(e) = obj
            .get(tags::SPECIFIC_CHARACTER_SET)
            .and_then(|e| reread(e, None))
        {
            obj.put(e);
        }
    }
    let charset = charset_bytes(obj);
    let fixed: Vec<InMemElement> = obj
        .iter()
        .filter(|e| e.vr() == VR::UN && known(e.tag()))
        .filter_map(|e| reread(e, charset.as_deref()))
        .collect();
    for e in fixed {
        obj.put(e);
    }
    let seqs: Vec<Tag> = obj
        .iter()
        .filter(|e| e.items().is_some_and(|items| items.iter().any(has_un)))
        .map(|e| e.tag())
        .collect();
    for tag in seqs {
        let Some(mut e) = obj.take(tag) else { continue };
        if let Some(items) = e.items_mut() {
            for item in items.iter_mut().filter(|i| has_un(i)) {
                resolve_in(item);
            }
        }
        obj.put(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::value::PrimitiveValue;
    use dicom_core::DataElement;

    fn el(obj: &InMemDicomObject, tag: Tag) -> &InMemElement {
        obj.get(tag).expect("the element is there")
    }

    fn un(tag: Tag, bytes: &[u8]) -> InMemElement {
        DataElement::new(tag, VR::UN, PrimitiveValue::U8(bytes.into()))
    }

    #[test]
    fn known_attributes_get_their_vr_back() {
        let mut obj = InMemDicomObject::new_empty();
        obj.put(un(tags::SOP_INSTANCE_UID, b"1.2.3.4\0"));
        obj.put(un(tags::ROWS, &512u16.to_le_bytes()));
        obj.put(un(tags::PIXEL_SPACING, b"0.5\\0.5 "));
        obj.put(un(Tag(0x0009, 0x1010), b"private"));
        resolve(&mut obj);
        let sop = el(&obj, tags::SOP_INSTANCE_UID);
        assert_eq!(sop.vr(), VR::UI);
        assert_eq!(
            sop.to_str().expect("text").trim_end_matches('\0'),
            "1.2.3.4"
        );
        let rows = el(&obj, tags::ROWS);
        assert_eq!(
            (rows.vr(), rows.to_int::<u16>().expect("an integer")),
            (VR::US, 512)
        );
        let spacing = el(&obj, tags::PIXEL_SPACING);
        assert_eq!(spacing.vr(), VR::DS);
        assert_eq!(spacing.to_multi_float64().expect("numbers"), vec![0.5, 0.5]);
        // Private attributes have no dictionary VR: they stay UN.
        assert_eq!(el(&obj, Tag(0x0009, 0x1010)).vr(), VR::UN);
    }

    #[test]
    fn sequences_and_text_in_the_dataset_character_set() {
        // One item holding (0008,0100) CodeValue "T-D1100", implicit VR LE.
        let mut item = Vec::new();
        implicit(&mut item, tags::CODE_VALUE, b"T-D1100 ");
        let mut seq = Vec::new();
        seq.extend_from_slice(&0xFFFEu16.to_le_bytes());
        seq.extend_from_slice(&0xE000u16.to_le_bytes());
        seq.extend_from_slice(&(item.len() as u32).to_le_bytes());
        seq.extend_from_slice(&item);
        let mut obj = InMemDicomObject::new_empty();
        obj.put(un(tags::SPECIFIC_CHARACTER_SET, b"ISO_IR 100"));
        obj.put(un(tags::ANATOMIC_REGION_SEQUENCE, &seq));
        obj.put(un(tags::PATIENT_NAME, b"M\xfcller^J\xf6rg"));
        resolve(&mut obj);
        let name = el(&obj, tags::PATIENT_NAME);
        assert_eq!(name.vr(), VR::PN);
        assert_eq!(name.to_str().expect("text"), "Müller^Jörg");
        let s = el(&obj, tags::ANATOMIC_REGION_SEQUENCE);
        let items = s.items().expect("a sequence");
        assert_eq!(items.len(), 1);
        let code = el(&items[0], tags::CODE_VALUE);
        assert_eq!(code.to_str().expect("text").trim(), "T-D1100");
    }

    #[test]
    fn what_does_not_parse_stays_un() {
        let mut obj = InMemDicomObject::new_empty();
        // A "sequence" that is not made of items.
        obj.put(un(tags::ANATOMIC_REGION_SEQUENCE, b"garbage!"));
        resolve(&mut obj);
        assert_eq!(el(&obj, tags::ANATOMIC_REGION_SEQUENCE).vr(), VR::UN);
    }
}
