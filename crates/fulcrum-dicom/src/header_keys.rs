//! Query keys the index does not hold (Issuer of Patient ID, Institution
//! Name, Body Part Examined, Series Date, Content Date…): matched and
//! returned from the stored header of the instance that stands for each
//! match (its own at instance level; one instance of the series or study
//! above it, see `Catalog::representative_instances`; for a patient, of
//! the study its demographics are taken from). Dropping such a
//! key, as the index alone must, turned "this MRN from this issuer" into
//! every patient with the MRN, and "Institution Name AKH*" into the whole
//! archive; and returned them empty. Matching follows PS3.4 C.2.2.2 as
//! the index does: single value (person names case-insensitively),
//! wildcard, list, range, fuzzy person names; an attribute the header
//! lacks or leaves empty does not match a key with a value.

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_object::InMemDicomObject;
use fulcrum_catalog::dicom::{name_key, DicomMatch, Level, Matcher};

use crate::archive::Archive;
use crate::error::DicomResult;
use crate::query::{check_values, matcher, QueryAttr};

/// One key: its tag, the VR the requester used (or the dictionary's), and
/// its matcher when it has a value.
#[derive(Debug, Clone)]
pub struct HeaderKey {
    /// The attribute returned (a sequence, for a nested key).
    pub tag: Tag,
    /// The VR of the attribute matched.
    pub vr: VR,
    pub matcher: Option<Matcher>,
    /// For a key inside a sequence (QIDO-RS `00400275.00401001`, a C-FIND
    /// sequence item with values): the tags below `tag` down to the
    /// attribute matched, which matches when any item's does.
    pub nested: Vec<Tag>,
}

impl HeaderKey {
    /// A key with `value` (empty: returned only). Err: the value's form is
    /// wrong for its VR (a date that is no date), with what is expected.
    pub fn new(tag: Tag, vr: VR, value: &str, fuzzy: bool) -> Result<Self, &'static str> {
        let attr = QueryAttr {
            tag,
            keyword: "",
            vr,
            level: Level::Instance,
            column: None,
        };
        // Sequence matching is not performed (the key is returned).
        let m = match vr {
            VR::SQ => None,
            _ => matcher(&attr, value, fuzzy),
        };
        check_values(&attr, m.as_ref())?;
        Ok(HeaderKey {
            tag,
            vr,
            matcher: m,
            nested: Vec::new(),
        })
    }

    /// A key on attribute `path[last]` inside the sequences `path[..last]`,
    /// with the VR of that attribute; the top sequence is returned.
    pub fn within(path: &[Tag], vr: VR, value: &str, fuzzy: bool) -> Result<Self, &'static str> {
        let (&top, below) = path.split_first().ok_or("an empty attribute path")?;
        let leaf = *path.last().unwrap_or(&top);
        let mut k = HeaderKey::new(leaf, vr, value, fuzzy)?;
        k.tag = top;
        k.nested = below.to_vec();
        Ok(k)
    }

    /// Whether the header's element matches the key (always, without a
    /// value to match).
    fn matches(&self, header: &InMemDicomObject) -> bool {
        let path: Vec<Tag> = std::iter::once(self.tag)
            .chain(self.nested.iter().copied())
            .collect();
        self.matches_at(header, &path)
    }

    /// Whether the attribute at `path` below `obj` matches.
    fn matches_at(&self, obj: &InMemDicomObject, path: &[Tag]) -> bool {
        let Some(m) = &self.matcher else {
            return true;
        };
        let mut values = Vec::new();
        leaf_values(obj, path, &mut values);
        values
            .iter()
            .map(|v| v.trim_matches([' ', '\0']))
            .filter(|v| !v.is_empty())
            .any(|v| value_matches(m, self.vr, v))
    }
}

/// The values of the attribute at the end of `path` (sequences down to
/// it), in every item on the way.
fn leaf_values(obj: &InMemDicomObject, path: &[Tag], out: &mut Vec<String>) {
    let Some((&tag, below)) = path.split_first() else {
        return;
    };
    let Some(e) = obj.get(tag) else { return };
    if below.is_empty() {
        if let Ok(v) = e.to_multi_str() {
            out.extend(v.iter().cloned());
        }
    } else if let Some(items) = e.items() {
        for item in items {
            leaf_values(item, below, out);
        }
    }
}

/// Whether one value matches (see the module's doc).
pub fn value_matches(m: &Matcher, vr: VR, value: &str) -> bool {
    let pn = vr == VR::PN;
    let fold = |s: &str| if pn { name_key(s) } else { s.to_string() };
    match m {
        Matcher::Exact(v) => fold(v) == fold(value),
        Matcher::List(vs) => vs.iter().any(|v| fold(v) == fold(value)),
        Matcher::Wildcard(p) => glob(&fold(p), &fold(value)),
        Matcher::Range(lo, hi) => {
            let v: String = value.chars().filter(|c| *c != ':').collect();
            lo.as_deref().is_none_or(|lo| v.as_str() >= lo)
                && hi
                    .as_deref()
                    .is_none_or(|hi| v.as_str() <= hi || v.starts_with(hi))
        }
        Matcher::Fuzzy(q) => {
            let words: Vec<String> = name_key(value)
                .split([' ', '='])
                .map(str::to_string)
                .collect();
            name_key(q)
                .split([' ', '='])
                .filter(|w| !w.is_empty())
                .all(|w| words.iter().any(|n| n.starts_with(w)))
        }
    }
}

/// `*` any run of characters, `?` exactly one.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(c) if *c == '?' || *c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// The keys of one query the index does not hold.
#[derive(Debug, Clone, Default)]
pub struct HeaderKeys(pub Vec<HeaderKey>);

impl HeaderKeys {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether any key has a value to match.
    pub fn filter(&self) -> bool {
        self.0.iter().any(|k| k.matcher.is_some())
    }

    /// Whether `header` matches every key with a value. Keys inside one
    /// sequence match one of its items together (PS3.4 C.2.2.2.6: a
    /// query item's keys describe one item), not each any item.
    pub fn matches(&self, header: &InMemDicomObject) -> bool {
        let mut within: std::collections::BTreeMap<Tag, Vec<&HeaderKey>> = Default::default();
        for k in &self.0 {
            if k.nested.is_empty() || k.matcher.is_none() {
                if !k.matches(header) {
                    return false;
                }
            } else {
                within.entry(k.tag).or_default().push(k);
            }
        }
        within.into_iter().all(|(seq, keys)| {
            let items = header.get(seq).and_then(|e| e.items());
            items.is_some_and(|items| {
                items
                    .iter()
                    .any(|item| keys.iter().all(|k| k.matches_at(item, &k.nested)))
            })
        })
    }

    /// The keys' elements from `header` (as stored there), an empty one
    /// where it lacks them.
    pub fn fill(&self, header: Option<&InMemDicomObject>, out: &mut InMemDicomObject) {
        for k in &self.0 {
            match header.and_then(|h| h.get(k.tag)) {
                Some(e) => {
                    out.put(e.clone());
                }
                None if k.vr == VR::SQ || !k.nested.is_empty() => {
                    out.put(DataElement::new(
                        k.tag,
                        VR::SQ,
                        dicom_core::value::DataSetSequence::<InMemDicomObject>::empty(),
                    ));
                }
                None => {
                    out.put(DataElement::new(k.tag, k.vr, PrimitiveValue::Empty));
                }
            }
        }
    }
}

impl Archive {
    /// The headers standing for a page of matches at `level` (see the
    /// module's doc), those whose header fails `keys` left out; a match
    /// without a readable header is kept only when nothing is matched.
    /// A patient stands by an instance of the study its name and birth
    /// date are taken from.
    pub async fn with_headers(
        &self,
        tenant: &str,
        level: Level,
        page: Vec<DicomMatch>,
        keys: &HeaderKeys,
    ) -> DicomResult<Vec<(DicomMatch, Option<InMemDicomObject>)>> {
        if keys.is_empty() {
            return Ok(page.into_iter().map(|m| (m, None)).collect());
        }
        let recs: Vec<Option<fulcrum_catalog::dicom::InstanceRecord>> = match level {
            Level::Instance => page.iter().map(|m| m.instance.clone()).collect(),
            Level::Patient | Level::Study | Level::Series => {
                let uid = |m: &DicomMatch| match level {
                    Level::Patient => m.patient_study.clone().unwrap_or_default(),
                    Level::Study => m.study.study_uid.clone(),
                    _ => m
                        .series
                        .as_ref()
                        .map(|s| s.series_uid.clone())
                        .unwrap_or_default(),
                };
                let uids: Vec<String> = page.iter().map(uid).collect();
                // A patient stands by the study its attributes are from.
                let by = level.max(Level::Study);
                let mut found = self
                    .engine()
                    .catalog()
                    .representative_instances(tenant, by, &uids)
                    .await?;
                page.iter().map(|m| found.remove(&uid(m))).collect()
            }
        };
        let present: Vec<&fulcrum_catalog::dicom::InstanceRecord> = recs.iter().flatten().collect();
        let parsed = self.headers(tenant, &present).await?;
        let mut parsed = parsed.into_iter();
        let filter = keys.filter();
        Ok(page
            .into_iter()
            .zip(recs)
            .filter_map(|(m, rec)| {
                let header = rec.and_then(|_| parsed.next().and_then(Result::ok));
                match &header {
                    Some(h) if !keys.matches(h) => None,
                    None if filter => None,
                    _ => Some((m, header)),
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_match_as_the_index_matches_them() {
        let ex = |v: &str| Matcher::Exact(v.into());
        let wild = |v: &str| Matcher::Wildcard(v.into());
        let range = |lo: &str, hi: &str| {
            let s = |x: &str| (!x.is_empty()).then(|| x.to_string());
            Matcher::Range(s(lo), s(hi))
        };
        assert!(value_matches(&ex("SITE_A"), VR::LO, "SITE_A"));
        assert!(!value_matches(&ex("SITE_A"), VR::LO, "site_a"));
        assert!(value_matches(&ex("doe^john"), VR::PN, "DOE^JOHN"));
        assert!(value_matches(&wild("AKH*"), VR::LO, "AKH Wien"));
        assert!(value_matches(&wild("A?H*n"), VR::LO, "AKH Wien"));
        assert!(!value_matches(&wild("AKH"), VR::LO, "AKH Wien"));
        assert!(value_matches(&wild("*"), VR::LO, "x"));
        assert!(!value_matches(&wild("*x*y"), VR::LO, "axbx"));
        assert!(value_matches(
            &Matcher::List(vec!["HEAD".into(), "CHEST".into()]),
            VR::CS,
            "CHEST"
        ));
        assert!(value_matches(
            &range("20200101", "20201231"),
            VR::DA,
            "20200615"
        ));
        assert!(!value_matches(&range("20200101", ""), VR::DA, "20191231"));
        assert!(value_matches(&range("", "10"), VR::TM, "10:30:00"));
        assert!(!value_matches(&range("", "10"), VR::TM, "1101"));
        assert!(value_matches(
            &Matcher::Fuzzy("jo do".into()),
            VR::PN,
            "Doe^John"
        ));
    }

    #[test]
    fn a_header_without_the_attribute_matches_only_a_return_key() {
        let mut h = InMemDicomObject::new_empty();
        let issuer = Tag(0x0010, 0x0021);
        h.put(DataElement::new(
            issuer,
            VR::LO,
            PrimitiveValue::from("SITE_A"),
        ));
        let key = |v: &str| HeaderKey::new(issuer, VR::LO, v, false).expect("key");
        assert!(HeaderKeys(vec![key("SITE_A")]).matches(&h));
        assert!(!HeaderKeys(vec![key("SITE_B")]).matches(&h));
        assert!(HeaderKeys(vec![key("")]).matches(&h));
        let other = HeaderKey::new(Tag(0x0008, 0x0080), VR::LO, "AKH*", false).expect("key");
        assert!(!HeaderKeys(vec![other.clone()]).matches(&h));
        let mut out = InMemDicomObject::new_empty();
        HeaderKeys(vec![key(""), other]).fill(Some(&h), &mut out);
        assert_eq!(
            out.get(issuer).and_then(|e| e.to_str().ok()).as_deref(),
            Some("SITE_A")
        );
        assert!(out.get(Tag(0x0008, 0x0080)).is_some_and(|e| e
            .value()
            .primitive()
            .is_some_and(|p| p.calculate_byte_len() == 0)));
        assert!(HeaderKey::new(Tag(0x0008, 0x0021), VR::DA, "2020", false).is_err());
    }

    #[test]
    fn a_key_inside_a_sequence_matches_when_any_item_does() {
        use dicom_core::value::DataSetSequence;
        let (seq, code) = (Tag(0x0040, 0x0275), Tag(0x0040, 0x1001));
        let item = |v: &str| {
            let mut i = InMemDicomObject::new_empty();
            i.put(DataElement::new(code, VR::SH, PrimitiveValue::from(v)));
            i
        };
        let mut h = InMemDicomObject::new_empty();
        h.put(DataElement::new(
            seq,
            VR::SQ,
            DataSetSequence::from(vec![item("RP1"), item("RP5")]),
        ));
        let key = |v: &str| HeaderKey::within(&[seq, code], VR::SH, v, false).expect("key");
        assert!(HeaderKeys(vec![key("RP5")]).matches(&h));
        assert!(HeaderKeys(vec![key("RP*")]).matches(&h));
        assert!(!HeaderKeys(vec![key("RP9")]).matches(&h));
        // Two keys of one sequence match one item together.
        let other = Tag(0x0008, 0x0050);
        let mut two = h.clone();
        let mut a = item("RPA");
        a.put(DataElement::new(other, VR::SH, PrimitiveValue::from("X1")));
        let mut b = item("RPB");
        b.put(DataElement::new(other, VR::SH, PrimitiveValue::from("X2")));
        two.put(DataElement::new(
            seq,
            VR::SQ,
            DataSetSequence::from(vec![a, b]),
        ));
        let acc = |v: &str| HeaderKey::within(&[seq, other], VR::SH, v, false).expect("key");
        assert!(HeaderKeys(vec![key("RPB"), acc("X2")]).matches(&two));
        assert!(!HeaderKeys(vec![key("RPB"), acc("X1")]).matches(&two));
        let mut out = InMemDicomObject::new_empty();
        HeaderKeys(vec![key("RP5")]).fill(Some(&h), &mut out);
        assert_eq!(
            out.get(seq).and_then(|e| e.items()).map(|i| i.len()),
            Some(2)
        );
    }
}
