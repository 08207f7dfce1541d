//! Media types: parsing `Content-Type` and `Accept` (RFC 9110 with quoted
//! parameters), and choosing what to send for an `Accept` list, including
//! the `multipart/related; type=…; transfer-syntax=…` form of PS3.18 8.7.

/// One media type with its parameters (names lower-cased, values unquoted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaType {
    /// `type/subtype`, lower-cased.
    pub essence: String,
    pub params: Vec<(String, String)>,
}

impl MediaType {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Parses one media type; `None` when it has no `type/subtype`.
    pub fn parse(s: &str) -> Option<MediaType> {
        let mut pieces = split_quoted(s, ';').into_iter();
        let essence = pieces.next()?.trim().to_ascii_lowercase();
        let (ty, sub) = essence.split_once('/')?;
        if ty.is_empty() || sub.is_empty() || essence.contains(char::is_whitespace) {
            return None;
        }
        let params = pieces
            .filter_map(|p| {
                let (n, v) = p.split_once('=')?;
                Some((n.trim().to_ascii_lowercase(), unquote(v.trim())))
            })
            .collect();
        Some(MediaType { essence, params })
    }

    /// For an `Accept` entry: the media type of the parts it asks for
    /// (`type=` of a multipart/related, else the entry itself) and the
    /// transfer syntax it asks for, if any.
    pub fn wanted(&self) -> (String, Option<&str>) {
        let ts = self.param("transfer-syntax");
        if self.essence == "multipart/related" {
            let inner = self
                .param("type")
                .map(|t| t.trim().to_ascii_lowercase())
                .unwrap_or_else(|| "*/*".into());
            (inner, ts)
        } else {
            (self.essence.clone(), ts)
        }
    }
}

/// Splits on `sep` outside double quotes.
fn split_quoted(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            out.push(&s[start..i]);
            start = i + c.len_utf8();
        }
    }
    out.push(&s[start..]);
    out
}

fn unquote(v: &str) -> String {
    match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) => {
            let mut out = String::with_capacity(inner.len());
            let mut esc = false;
            for c in inner.chars() {
                if esc || c != '\\' {
                    out.push(c);
                    esc = false;
                } else {
                    esc = true;
                }
            }
            out
        }
        None => v.to_string(),
    }
}

/// The entries of one or more `Accept` header values, with `q=0` dropped;
/// an absent or empty header means `*/*`.
pub fn accept_list<'a>(values: impl Iterator<Item = &'a str>) -> Vec<MediaType> {
    let listed: Vec<MediaType> = values
        .flat_map(|v| split_quoted(v, ','))
        .filter_map(MediaType::parse)
        .collect();
    if listed.is_empty() {
        return vec![MediaType {
            essence: "*/*".into(),
            params: Vec::new(),
        }];
    }
    // RFC 9110 12.4.2 and 12.5.1: q=0 is "not acceptable", and the client
    // prefers higher weights; equal weights keep the order given. Every
    // type refused leaves nothing acceptable (406), not the default.
    let weight = |m: &MediaType| {
        m.param("q")
            .map_or(Some(1.0), |q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0)
    };
    let mut out: Vec<(f32, MediaType)> = listed
        .into_iter()
        .map(|m| (weight(&m), m))
        .filter(|(q, _)| *q > 0.0)
        .collect();
    out.sort_by(|a, b| b.0.total_cmp(&a.0));
    out.into_iter().map(|(_, m)| m).collect()
}

/// Whether a wanted media range (`*/*`, `image/*`, `image/jpeg`) covers
/// `offered`; `aliases` are other names of the offered type.
pub fn range_covers(range: &str, offered: &str, aliases: &[&str]) -> bool {
    if range == "*/*" || range == "*" || range == offered || aliases.contains(&range) {
        return true;
    }
    match (range.strip_suffix("/*"), offered.split_once('/')) {
        (Some(top), Some((otop, _))) => top == otop,
        _ => false,
    }
}

/// How datasets (search results, metadata, STOW-RS answers) are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatasetFormat {
    /// `application/dicom+json` (PS3.18 F.2), the default.
    Json,
    /// `application/dicom+xml` (PS3.19 A.1): one document per part of a
    /// multipart/related answer, or one document for a STOW-RS answer.
    Xml,
}

/// The first dataset form an `Accept` list allows: JSON (also as
/// `application/json` or a wildcard) or XML, which is multipart/related
/// unless `single_xml` (a STOW-RS answer is one document).
pub fn dataset_format(list: &[MediaType], single_xml: bool) -> Option<DatasetFormat> {
    list.iter().find_map(|m| {
        let (range, _) = m.wanted();
        if range == "application/dicom+xml" {
            (m.essence == "multipart/related" || single_xml).then_some(DatasetFormat::Xml)
        } else {
            range_covers(&range, "application/dicom+json", &["application/json"])
                .then_some(DatasetFormat::Json)
        }
    })
}

/// Whether an `Accept` list allows parts of `offered` type encoded in
/// `ts`. A missing transfer-syntax parameter is taken as "as stored":
/// PS3.18 would default to Explicit VR Little Endian, but this archive
/// does not transcode and clients (dicomweb-client, OHIF) omit it.
pub fn accepts(list: &[MediaType], offered: &str, aliases: &[&str], ts: &str) -> bool {
    list.iter().any(|m| {
        let (range, want_ts) = m.wanted();
        range_covers(&range, offered, aliases)
            && want_ts.map(|t| t == "*" || t == ts).unwrap_or(true)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_quoted_parameters() {
        let m =
            MediaType::parse(r#"Multipart/Related; type="application/dicom"; boundary="a;b,c""#)
                .expect("parses");
        assert_eq!(m.essence, "multipart/related");
        assert_eq!(m.param("type"), Some("application/dicom"));
        assert_eq!(m.param("boundary"), Some("a;b,c"));
        assert_eq!(MediaType::parse("nonsense"), None);
        assert_eq!(MediaType::parse(""), None);
    }

    #[test]
    fn dataset_forms() {
        let f = |a: &str, single| dataset_format(&accept_list([a].into_iter()), single);
        assert_eq!(f("", false), Some(DatasetFormat::Json));
        assert_eq!(f("application/json", false), Some(DatasetFormat::Json));
        assert_eq!(
            f(r#"multipart/related; type="application/dicom+xml""#, false),
            Some(DatasetFormat::Xml)
        );
        assert_eq!(f("application/dicom+xml", false), None);
        assert_eq!(f("application/dicom+xml", true), Some(DatasetFormat::Xml));
        assert_eq!(
            f("application/dicom+xml, application/dicom+json", false),
            Some(DatasetFormat::Json)
        );
        assert_eq!(f("image/png", false), None);
    }

    #[test]
    fn negotiates_transfer_syntax() {
        let ele = "1.2.840.10008.1.2.1";
        let list = accept_list(
            [r#"multipart/related; type="application/dicom"; transfer-syntax=*"#].into_iter(),
        );
        assert!(accepts(
            &list,
            "application/dicom",
            &[],
            "1.2.840.10008.1.2.4.50"
        ));
        let list = accept_list(
            [r#"multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1"#]
                .into_iter(),
        );
        assert!(accepts(&list, "application/dicom", &[], ele));
        assert!(!accepts(
            &list,
            "application/dicom",
            &[],
            "1.2.840.10008.1.2.4.50"
        ));
        let list = accept_list(std::iter::empty());
        assert!(accepts(&list, "image/jpeg", &[], ele));
        let list = accept_list(["multipart/related; type=image/*, text/html;q=0"].into_iter());
        assert!(accepts(&list, "image/jpeg", &[], ele));
        assert!(!accepts(&list, "application/octet-stream", &[], ele));
        assert!(!accepts(&list, "text/html", &[], ele));
    }

    #[test]
    fn weights_order_the_list_and_zero_refuses() {
        let essences = |a: &str| -> Vec<String> {
            accept_list([a].into_iter())
                .into_iter()
                .map(|m| m.essence)
                .collect()
        };
        assert_eq!(
            essences("image/jpeg;q=0.1, image/png;q=0.9"),
            ["image/png", "image/jpeg"]
        );
        assert_eq!(
            essences("image/jpeg;q=0.5, image/png, */*;q=0.8"),
            ["image/png", "*/*", "image/jpeg"]
        );
        // Equal weights keep the client's order.
        assert_eq!(
            essences("image/png, image/jpeg"),
            ["image/png", "image/jpeg"]
        );
        assert_eq!(
            essences("application/dicom;q=0.0, image/png"),
            ["image/png"]
        );
        // Nothing acceptable is not the default (*/*).
        assert!(essences("application/dicom;q=0").is_empty());
        assert_eq!(essences(""), ["*/*"]);
    }
}
