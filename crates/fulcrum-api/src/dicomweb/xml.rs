//! The DICOM Native Model in XML (PS3.19 A.1), the
//! `application/dicom+xml` form PS3.18 requires beside JSON for search
//! results, metadata and STOW-RS answers. Written from the DICOM JSON
//! (PS3.18 F.2) of the same dataset, which carries everything the XML
//! needs: VRs, values, person name groups, sequences, bulk data URIs and
//! inline binaries.

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
use dicom_core::Tag;
use dicom_dictionary_std::StandardDataDictionary;
use serde_json::{Map, Value};

use super::json::parse_tag;

/// Person name components, in the order `^` separates them.
const NAME_PARTS: [&str; 5] = [
    "FamilyName",
    "GivenName",
    "MiddleName",
    "NamePrefix",
    "NameSuffix",
];

/// Escapes text for element content and attribute values; characters XML
/// 1.0 cannot carry at all (most C0 controls) are dropped.
fn escape(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn person_name(out: &mut String, n: usize, v: &Value) {
    out.push_str(&format!("<PersonName number=\"{n}\">"));
    if let Value::Object(groups) = v {
        for group in ["Alphabetic", "Ideographic", "Phonetic"] {
            let Some(name) = groups.get(group).and_then(Value::as_str) else {
                continue;
            };
            out.push_str(&format!("<{group}>"));
            for (part, value) in NAME_PARTS.iter().zip(name.split('^')) {
                if !value.is_empty() {
                    out.push_str(&format!("<{part}>"));
                    escape(out, value);
                    out.push_str(&format!("</{part}>"));
                }
            }
            out.push_str(&format!("</{group}>"));
        }
    }
    out.push_str("</PersonName>");
}

fn attributes(out: &mut String, ds: &Map<String, Value>) {
    let mut keys: Vec<(&String, Option<Tag>)> = ds.keys().map(|k| (k, parse_tag(k))).collect();
    keys.sort_by_key(|(k, t)| (*t, *k));
    for (key, tag) in keys {
        let el = &ds[key];
        let vr = el.get("vr").and_then(Value::as_str).unwrap_or("UN");
        out.push_str(&format!("<DicomAttribute tag=\"{key}\" vr=\"{vr}\""));
        if let Some(e) = tag.and_then(|t| StandardDataDictionary.by_tag(t)) {
            out.push_str(&format!(" keyword=\"{}\"", e.alias()));
        }
        out.push('>');
        if let Some(uri) = el.get("BulkDataURI").and_then(Value::as_str) {
            out.push_str("<BulkData uri=\"");
            escape(out, uri);
            out.push_str("\"/>");
        } else if let Some(b64) = el.get("InlineBinary").and_then(Value::as_str) {
            out.push_str("<InlineBinary>");
            escape(out, b64);
            out.push_str("</InlineBinary>");
        } else if let Some(values) = el.get("Value").and_then(Value::as_array) {
            for (i, v) in values.iter().enumerate() {
                let n = i + 1;
                match (vr, v) {
                    ("SQ", Value::Object(item)) => {
                        out.push_str(&format!("<Item number=\"{n}\">"));
                        attributes(out, item);
                        out.push_str("</Item>");
                    }
                    ("PN", _) => person_name(out, n, v),
                    _ => match text(v) {
                        Some(t) => {
                            out.push_str(&format!("<Value number=\"{n}\">"));
                            escape(out, &t);
                            out.push_str("</Value>");
                        }
                        None => out.push_str(&format!("<Value number=\"{n}\"/>")),
                    },
                }
            }
        }
        out.push_str("</DicomAttribute>");
    }
}

/// One dataset (a DICOM JSON object) as a NativeDicomModel document.
pub fn document(ds: &Value) -> String {
    let mut out = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<NativeDicomModel xml:space=\"preserve\">",
    );
    if let Value::Object(map) = ds {
        attributes(&mut out, map);
    }
    out.push_str("</NativeDicomModel>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn native_model_of_every_kind_of_element() {
        let ds = json!({
            "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^John^^Dr", "Ideographic": "张^三"}]},
            "00080060": {"vr": "CS", "Value": ["CT"]},
            "00280030": {"vr": "DS", "Value": [0.5, 0.5]},
            "00200013": {"vr": "IS", "Value": [null, 3]},
            "00081030": {"vr": "LO", "Value": ["a < b & \"c\""]},
            "7FE00010": {"vr": "OW", "BulkDataURI": "http://h/x?a=1&b=2"},
            "00091010": {"vr": "OB", "InlineBinary": "AQI="},
            "00081199": {"vr": "SQ", "Value": [{"00081155": {"vr": "UI", "Value": ["1.2.3"]}}]},
            "00100020": {"vr": "LO"}
        });
        let x = document(&ds);
        assert!(x.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<NativeDicomModel"));
        for want in [
            "<DicomAttribute tag=\"00100010\" vr=\"PN\" keyword=\"PatientName\"><PersonName number=\"1\"><Alphabetic><FamilyName>Doe</FamilyName><GivenName>John</GivenName><NamePrefix>Dr</NamePrefix></Alphabetic><Ideographic><FamilyName>张</FamilyName><GivenName>三</GivenName></Ideographic></PersonName></DicomAttribute>",
            "<Value number=\"1\">0.5</Value><Value number=\"2\">0.5</Value>",
            "<Value number=\"1\"/><Value number=\"2\">3</Value>",
            "<Value number=\"1\">a &lt; b &amp; &quot;c&quot;</Value>",
            "<BulkData uri=\"http://h/x?a=1&amp;b=2\"/>",
            "<DicomAttribute tag=\"00091010\" vr=\"OB\"><InlineBinary>AQI=</InlineBinary></DicomAttribute>",
            "<Item number=\"1\"><DicomAttribute tag=\"00081155\" vr=\"UI\" keyword=\"ReferencedSOPInstanceUID\"><Value number=\"1\">1.2.3</Value></DicomAttribute></Item>",
            "<DicomAttribute tag=\"00100020\" vr=\"LO\" keyword=\"PatientID\"></DicomAttribute>",
        ] {
            assert!(x.contains(want), "{want}\nnot in\n{x}");
        }
        // Attributes in tag order.
        let at = |t: &str| x.find(&format!("tag=\"{t}\"")).expect("present");
        assert!(at("00080060") < at("00081030") && at("00100010") < at("7FE00010"));
    }
}
