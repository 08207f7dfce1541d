//! DICOM JSON (PS3.18 F.2) with BulkDataURI. dicom-json 0.10 always
//! inlines binary values and panics on some odd values, so datasets are
//! converted here element by element: large binary values and all pixel
//! data become `BulkDataURI`s, IS/DS become JSON numbers when they parse
//! (what OHIF and dcmjs expect), person names go through dicom-json.

use base64::Engine as _;
use dicom_core::header::Header;
use dicom_core::value::{PrimitiveValue, Value as DicomValue};
use dicom_core::{Tag, VR};
use dicom_json::DicomJson;
use dicom_object::mem::InMemElement;
use dicom_object::InMemDicomObject;
use serde_json::{json, Map, Value};

/// Binary values longer than this are sent as BulkDataURI in metadata.
pub const BULK_THRESHOLD: usize = 1024;

/// `GGGGEEEE`, as DICOM JSON keys and bulk data paths spell tags.
pub fn tag_key(t: Tag) -> String {
    format!("{:04X}{:04X}", t.0, t.1)
}

/// Where bulk data of a dataset can be fetched: the instance's URL.
#[derive(Clone, Copy)]
pub struct Bulk<'a> {
    pub instance_url: &'a str,
}

fn is_binary(vr: VR) -> bool {
    matches!(
        vr,
        VR::OB | VR::OD | VR::OF | VR::OL | VR::OV | VR::OW | VR::UN
    )
}

/// The value bytes of a binary element, little endian (PS3.18 octet-stream).
pub fn le_bytes(v: &PrimitiveValue) -> Vec<u8> {
    fn cat<const N: usize, T: Copy>(vals: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
        vals.iter().flat_map(|v| f(*v)).collect()
    }
    match v {
        PrimitiveValue::U8(b) => b.to_vec(),
        PrimitiveValue::U16(x) => cat(x, u16::to_le_bytes),
        PrimitiveValue::I16(x) => cat(x, i16::to_le_bytes),
        PrimitiveValue::U32(x) => cat(x, u32::to_le_bytes),
        PrimitiveValue::I32(x) => cat(x, i32::to_le_bytes),
        PrimitiveValue::U64(x) => cat(x, u64::to_le_bytes),
        PrimitiveValue::I64(x) => cat(x, i64::to_le_bytes),
        PrimitiveValue::F32(x) => cat(x, f32::to_le_bytes),
        PrimitiveValue::F64(x) => cat(x, f64::to_le_bytes),
        other => other.to_bytes().into_owned(),
    }
}

/// One element with a string value list (`null` for empty values).
pub fn strings(vr: &str, values: &[&str]) -> Value {
    let vals: Vec<Value> = values
        .iter()
        .map(|s| {
            if s.is_empty() {
                Value::Null
            } else {
                Value::String(s.to_string())
            }
        })
        .collect();
    if vals.is_empty() || vals.iter().all(Value::is_null) && vals.len() == 1 {
        json!({ "vr": vr })
    } else {
        json!({ "vr": vr, "Value": vals })
    }
}

/// An element holding a BulkDataURI.
pub fn bulk(vr: &str, uri: String) -> Value {
    json!({ "vr": vr, "BulkDataURI": uri })
}

/// A sequence element.
pub fn sequence(items: Vec<Value>) -> Value {
    if items.is_empty() {
        json!({ "vr": "SQ" })
    } else {
        json!({ "vr": "SQ", "Value": items })
    }
}

fn text_values(v: &PrimitiveValue) -> Vec<String> {
    v.to_multi_str()
        .iter()
        .map(|s| s.trim_end_matches([' ', '\0']).to_string())
        .collect()
}

/// IS/DS text as numbers where it parses, else kept as text.
fn numeric_text(vr: VR, v: &PrimitiveValue) -> Vec<Value> {
    text_values(v)
        .into_iter()
        .map(|s| {
            let t = s.trim();
            if t.is_empty() {
                return Value::Null;
            }
            // Integers stay integers ("100" is 100, not 100.0).
            let n = if let Ok(i) = t.parse::<i64>() {
                Some(Value::from(i))
            } else if vr == VR::IS {
                None
            } else {
                t.parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .and_then(|f| serde_json::Number::from_f64(f).map(Value::Number))
            };
            n.unwrap_or(Value::String(t.to_string()))
        })
        .collect()
}

fn numbers(v: &PrimitiveValue) -> Vec<Value> {
    fn all<T: Copy + Into<Value>>(x: &[T]) -> Vec<Value> {
        x.iter().map(|n| (*n).into()).collect()
    }
    let float = |f: f64| {
        serde_json::Number::from_f64(f)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(f.to_string()))
    };
    match v {
        PrimitiveValue::U8(x) => all(x),
        PrimitiveValue::U16(x) => all(x),
        PrimitiveValue::I16(x) => all(x),
        PrimitiveValue::U32(x) => all(x),
        PrimitiveValue::I32(x) => all(x),
        PrimitiveValue::U64(x) => all(x),
        PrimitiveValue::I64(x) => all(x),
        PrimitiveValue::F32(x) => x.iter().map(|f| float(f64::from(*f))).collect(),
        PrimitiveValue::F64(x) => x.iter().map(|f| float(*f)).collect(),
        other => numeric_text(VR::DS, other),
    }
}

fn primitive(vr: VR, v: &PrimitiveValue, e: &InMemElement, uri: Option<String>) -> Value {
    let vr_s = vr.to_string();
    if matches!(v, PrimitiveValue::Empty) {
        return json!({ "vr": vr_s });
    }
    let values: Vec<Value> = match vr {
        _ if is_binary(vr) => {
            let bytes = le_bytes(v);
            return match uri {
                Some(uri) if bytes.len() > BULK_THRESHOLD => bulk(vr_s, uri),
                _ => json!({
                    "vr": vr_s,
                    "InlineBinary": base64::engine::general_purpose::STANDARD.encode(bytes),
                }),
            };
        }
        // dicom-json writes a value of only spaces as an empty object; it
        // is an empty value (null, PS3.18 F.2.5), as QIDO-RS answers it.
        VR::PN => serde_json::to_value(DicomJson::from(e))
            .ok()
            .and_then(|mut pn| pn.get_mut("Value").map(Value::take))
            .and_then(|names| match names {
                Value::Array(names) => Some(names),
                _ => None,
            })
            .unwrap_or_default()
            .into_iter()
            .map(|n| match n {
                Value::Object(o) if o.is_empty() => Value::Null,
                n => n,
            })
            .collect(),
        VR::IS | VR::DS => numeric_text(vr, v),
        VR::FL | VR::FD | VR::SL | VR::SS | VR::SV | VR::UL | VR::US | VR::UV => numbers(v),
        VR::AT => match v {
            PrimitiveValue::Tags(t) => t.iter().map(|t| Value::String(tag_key(*t))).collect(),
            other => text_values(other).into_iter().map(Value::String).collect(),
        },
        _ => text_values(v)
            .into_iter()
            .map(|s| {
                if s.is_empty() {
                    Value::Null
                } else {
                    Value::String(s)
                }
            })
            .collect(),
    };
    if values.iter().all(Value::is_null) && values.len() <= 1 {
        json!({ "vr": vr_s })
    } else {
        json!({ "vr": vr_s, "Value": values })
    }
}

fn element(e: &InMemElement, bulk_ctx: Option<Bulk<'_>>, path: &str) -> Value {
    let vr = e.vr();
    let uri = |p: &str| bulk_ctx.map(|b| format!("{}/bulkdata/{p}", b.instance_url));
    match e.value() {
        DicomValue::Sequence(seq) => sequence(
            seq.items()
                .iter()
                .enumerate()
                .map(|(i, item)| dataset_at(item, bulk_ctx, &format!("{path}/{i}"), Vec::new()))
                .collect(),
        ),
        DicomValue::PixelSequence(_) => match uri(path) {
            Some(u) => bulk("OB", u),
            None => json!({ "vr": "OB" }),
        },
        // A Private Creator is LO (PS3.5 7.8.1) even when a system that
        // did not know it passed it on as UN: its name, not bytes.
        DicomValue::Primitive(v) if vr == VR::UN && is_private_creator(e.tag()) => {
            let name = String::from_utf8_lossy(&le_bytes(v)).into_owned();
            strings("LO", &[name.trim_end_matches([' ', '\0']).trim_start()])
        }
        DicomValue::Primitive(v) => primitive(vr, v, e, uri(path)),
    }
}

/// (gggg,0010-00FF) of an odd group: a Private Creator Data Element.
fn is_private_creator(t: Tag) -> bool {
    t.0 % 2 == 1 && (0x0010..=0x00FF).contains(&t.1)
}

fn dataset_at(
    obj: &InMemDicomObject,
    bulk_ctx: Option<Bulk<'_>>,
    prefix: &str,
    extra: Vec<(Tag, Value)>,
) -> Value {
    let mut entries: Vec<(Tag, Value)> = obj
        .into_iter()
        .filter(|e| e.tag().0 != 0x0002 || !prefix.is_empty())
        // Group lengths (gggg,0000, retired) describe an encoding, which
        // JSON and XML are not.
        .filter(|e| e.tag().1 != 0x0000)
        .map(|e| {
            let key = tag_key(e.tag());
            let path = if prefix.is_empty() {
                key
            } else {
                format!("{prefix}/{key}")
            };
            (e.tag(), element(e, bulk_ctx, &path))
        })
        .collect();
    for (t, v) in extra {
        entries.retain(|(k, _)| *k != t);
        entries.push((t, v));
    }
    entries.sort_by_key(|(t, _)| *t);
    let mut map = Map::with_capacity(entries.len());
    for (t, v) in entries {
        map.insert(tag_key(t), v);
    }
    Value::Object(map)
}

/// A dataset as a DICOM JSON object; `extra` elements are added (or
/// replace the dataset's own), `bulk` turns large binaries into URIs.
pub fn dataset(
    obj: &InMemDicomObject,
    bulk_ctx: Option<Bulk<'_>>,
    extra: Vec<(Tag, Value)>,
) -> Value {
    dataset_at(obj, bulk_ctx, "", extra)
}

/// The value bytes a bulk data path (`00420011`, `00540016/0/00181072`)
/// names in a parsed header, little endian.
pub fn find_bulk(obj: &InMemDicomObject, path: &str) -> Option<Vec<u8>> {
    let mut segs = path.trim_matches('/').split('/');
    let mut cur = obj;
    loop {
        let tag = parse_tag(segs.next()?)?;
        let e = cur.get(tag)?;
        match segs.next() {
            None => {
                return match e.value() {
                    DicomValue::Primitive(v) => Some(le_bytes(v)),
                    DicomValue::PixelSequence(p) => Some(p.fragments().concat()),
                    DicomValue::Sequence(_) => None,
                }
            }
            Some(idx) => {
                let i: usize = idx.parse().ok()?;
                cur = e.value().items()?.get(i)?;
            }
        }
    }
}

/// `GGGGEEEE` (hex) as a tag.
pub fn parse_tag(s: &str) -> Option<Tag> {
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let g = u16::from_str_radix(&s[..4], 16).ok()?;
    let e = u16::from_str_radix(&s[4..], 16).ok()?;
    Some(Tag(g, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::{dicom_value, DataElement};
    use dicom_dictionary_std::tags;

    #[test]
    fn converts_values_and_bulk() {
        let mut obj = InMemDicomObject::new_empty();
        obj.put(DataElement::new(
            tags::PATIENT_NAME,
            VR::PN,
            PrimitiveValue::from("Doe^John"),
        ));
        obj.put(DataElement::new(
            tags::INSTANCE_NUMBER,
            VR::IS,
            PrimitiveValue::from(" 7 "),
        ));
        obj.put(DataElement::new(
            tags::REFERRING_PHYSICIAN_NAME,
            VR::PN,
            PrimitiveValue::from("              "),
        ));
        obj.put(DataElement::new(
            tags::PERFORMING_PHYSICIAN_NAME,
            VR::PN,
            dicom_value!(Strs, ["Roe^Jane", "  "]),
        ));
        obj.put(DataElement::new(
            tags::PIXEL_SPACING,
            VR::DS,
            dicom_value!(Strs, ["0.5", "0.25"]),
        ));
        obj.put(DataElement::new(
            tags::IMAGE_TYPE,
            VR::CS,
            dicom_value!(Strs, ["ORIGINAL", ""]),
        ));
        obj.put(DataElement::new(
            tags::ROWS,
            VR::US,
            PrimitiveValue::from(2_u16),
        ));
        obj.put(DataElement::new(
            Tag(0x0009, 0x1010),
            VR::OB,
            PrimitiveValue::U8(vec![1; 2000].into()),
        ));
        obj.put(DataElement::new(
            Tag(0x0009, 0x1011),
            VR::OW,
            PrimitiveValue::U16(vec![0x0102].into()),
        ));
        // A Private Creator passed on as UN, and a group length.
        obj.put(DataElement::new(
            Tag(0x0009, 0x0010),
            VR::UN,
            PrimitiveValue::U8(b"ACME 1.0 ".to_vec().into()),
        ));
        obj.put(DataElement::new(
            Tag(0x0009, 0x0000),
            VR::UL,
            PrimitiveValue::from(2020_u32),
        ));
        let b = Bulk {
            instance_url: "http://h/dicom-web/studies/1/series/2/instances/3",
        };
        let extra = vec![(tags::PIXEL_DATA, bulk("OW", "u".into()))];
        let v = dataset(&obj, Some(b), extra);
        assert_eq!(v["00090010"], json!({"vr": "LO", "Value": ["ACME 1.0"]}));
        assert!(v.get("00090000").is_none());
        assert_eq!(v["00100010"]["Value"][0]["Alphabetic"], "Doe^John");
        assert_eq!(v["00080090"], json!({"vr": "PN"}), "spaces only: empty");
        assert_eq!(
            v["00081050"]["Value"],
            json!([{"Alphabetic": "Roe^Jane"}, null])
        );
        assert_eq!(v["00200013"]["Value"][0], 7);
        assert_eq!(v["00280030"]["Value"], json!([0.5, 0.25]));
        assert_eq!(v["00080008"]["Value"], json!(["ORIGINAL", null]));
        assert_eq!(v["00280010"]["Value"], json!([2]));
        assert_eq!(
            v["00091010"]["BulkDataURI"],
            "http://h/dicom-web/studies/1/series/2/instances/3/bulkdata/00091010"
        );
        assert_eq!(v["00091011"]["InlineBinary"], "AgE=");
        let keys: Vec<&String> = v.as_object().expect("object").keys().collect();
        assert_eq!(keys.last().map(|s| s.as_str()), Some("7FE00010"));
        assert_eq!(find_bulk(&obj, "00091011"), Some(vec![2, 1]));
        assert_eq!(find_bulk(&obj, "00091011/0/00100010"), None);
        assert_eq!(find_bulk(&obj, "zz"), None);
    }
}
