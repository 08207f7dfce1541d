//! C-FIND SCP (Patient Root and Study Root): the identifier becomes the
//! same catalog query QIDO-RS runs (keys with values match, keys without
//! values are return keys), each match a Pending response carrying the
//! requested keys, in the presentation context's transfer syntax. Also the
//! identifier parsing C-MOVE and C-GET share.

use dicom_core::header::Header;
use dicom_core::value::DataSetSequence;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use fulcrum_catalog::dicom::{Column, DicomMatch, DicomQuery, Level, Matcher};
use tracing::{debug, info, warn};

use super::command::CommandSet;
use super::session::{Fatal, Session};
use super::{status, Model};
use crate::header_keys::{HeaderKey, HeaderKeys};
use crate::query::{by_tag, matcher, to_dataset};
use crate::scan::{Framing, Walker};
use crate::DicomError;

/// Matches fetched from the catalog per query (cancel is checked between
/// responses, so a huge result never sits in memory whole).
const PAGE: u32 = 500;

/// A failure status and the comment sent with it.
pub(crate) type Refusal = (u16, String);

/// What an identifier asks for.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub level: Level,
    pub level_text: String,
    pub filters: Vec<(Column, Matcher)>,
    /// The keys to return, with the VR the requester used.
    pub keys: Vec<(Tag, VR)>,
    /// The query's own character set when it names one (single-valued).
    pub charset: Option<String>,
    /// Keys the index does not hold, matched and returned from headers.
    pub header: HeaderKeys,
}

/// Keys answered by the archive itself rather than from an index or a
/// header.
const ANSWERED: [Tag; 3] = [
    tags::SPECIFIC_CHARACTER_SET,
    tags::INSTANCE_AVAILABILITY,
    tags::RETRIEVE_AE_TITLE,
];

impl Plan {
    /// Whether the identifier matches on `col` (a retrieve's unique key).
    pub(crate) fn has_filter(&self, col: Column) -> bool {
        self.filters.iter().any(|(c, _)| *c == col)
    }
}

fn refuse(s: u16, msg: impl Into<String>) -> Refusal {
    (s, msg.into())
}

/// Decodes an identifier in its presentation context's transfer syntax,
/// as every data set is parsed ([`crate::parse_dataset`]: framing walked
/// first, text in its character set, UN-coded attributes with their VR).
/// It must end between elements.
pub(crate) fn parse_identifier(bytes: &[u8], ts_uid: &str) -> Result<InMemDicomObject, Refusal> {
    let unable = |m: String| refuse(status::UNABLE_TO_PROCESS, m);
    if TransferSyntaxRegistry.get(ts_uid).is_none() {
        return Err(unable(format!("unknown transfer syntax {ts_uid}")));
    }
    let Some(framing) = Framing::of(ts_uid) else {
        return Err(unable("deflated identifiers are not supported".into()));
    };
    let mut walker = Walker::new(framing);
    walker
        .feed(bytes)
        .and_then(|()| walker.finish())
        .map_err(|e| unable(format!("malformed identifier: {e}")))?;
    crate::parse_dataset(bytes, ts_uid).map_err(|e| unable(format!("malformed identifier: {e}")))
}

/// Turns an identifier into a query plan.
pub(crate) fn plan(ident: &InMemDicomObject, model: Model) -> Result<Plan, Refusal> {
    let level_text = ident
        .element_opt(tags::QUERY_RETRIEVE_LEVEL)
        .ok()
        .flatten()
        .and_then(|e| {
            e.to_str()
                .ok()
                .map(|s| s.trim_matches(['\0', ' ']).to_ascii_uppercase())
        })
        .unwrap_or_default();
    let level = match level_text.as_str() {
        "PATIENT" if model == Model::PatientRoot => Level::Patient,
        "PATIENT" => {
            return Err(refuse(
                status::IDENTIFIER_DOES_NOT_MATCH,
                "the Study Root model has no PATIENT level",
            ))
        }
        "STUDY" => Level::Study,
        "SERIES" => Level::Series,
        "IMAGE" => Level::Instance,
        "" => {
            return Err(refuse(
                status::IDENTIFIER_DOES_NOT_MATCH,
                "no QueryRetrieveLevel",
            ))
        }
        other => {
            return Err(refuse(
                status::IDENTIFIER_DOES_NOT_MATCH,
                format!("unknown QueryRetrieveLevel {other:?}"),
            ))
        }
    };
    let charset = ident
        .get(tags::SPECIFIC_CHARACTER_SET)
        .and_then(|e| e.to_multi_str().ok())
        .filter(|v| v.len() == 1)
        .map(|v| v[0].trim().to_string())
        .filter(|v| !v.is_empty());
    let mut p = Plan {
        level,
        level_text,
        filters: Vec::new(),
        keys: Vec::new(),
        charset,
        header: HeaderKeys::default(),
    };
    for e in ident.iter() {
        let tag = e.tag();
        if tag == tags::QUERY_RETRIEVE_LEVEL || tag.group() <= 0x0002 {
            continue;
        }
        p.keys.push((tag, e.vr()));
        let Some(attr) = by_tag(tag) else {
            if !ANSWERED.contains(&tag) {
                let bad = |form: &str, value: &str| {
                    refuse(
                        status::IDENTIFIER_DOES_NOT_MATCH,
                        format!("{tag}={value}: {form}"),
                    )
                };
                let value = e.to_str().unwrap_or_default();
                let key = HeaderKey::new(tag, e.vr(), &value, false).map_err(|f| bad(f, &value))?;
                p.header.0.push(key);
                // Sequence matching (PS3.4 C.2.2.2.6): the item's keys
                // with values match one item of the stored sequence.
                let item = e.items().and_then(|items| items.first());
                for inner in item.into_iter().flat_map(|i| i.iter()) {
                    let value = inner.to_str().unwrap_or_default();
                    if inner.vr() == VR::SQ || value.trim_matches([' ', '\0']).is_empty() {
                        continue;
                    }
                    let key = HeaderKey::within(&[tag, inner.tag()], inner.vr(), &value, false)
                        .map_err(|f| bad(f, &value))?;
                    p.header.0.push(key);
                }
            }
            continue;
        };
        // Keys below the query level match relationally (a study with a
        // CT series for Modality=CT at STUDY level): ignored, they made
        // such a query return the whole archive.
        if e.vr() == VR::SQ {
            continue;
        }
        let Ok(value) = e.to_str() else { continue };
        let m = matcher(attr, &value, false);
        if let Err(form) = crate::query::check_values(attr, m.as_ref()) {
            return Err(refuse(
                status::IDENTIFIER_DOES_NOT_MATCH,
                format!("{}={value}: {form}", attr.keyword),
            ));
        }
        if let (Some(col), Some(m)) = (attr.column, m) {
            p.filters.push((col, m));
        }
    }
    Ok(p)
}

/// The response identifier for one match; `header` stands for it (see
/// `header_keys`).
pub(crate) fn response(
    m: &DicomMatch,
    plan: &Plan,
    our_ae: &str,
    header: Option<&InMemDicomObject>,
) -> InMemDicomObject {
    let known: Vec<Tag> = plan
        .keys
        .iter()
        .filter(|(t, _)| by_tag(*t).is_some())
        .map(|(t, _)| *t)
        .collect();
    let mut obj = to_dataset(m, &known);
    let mut charset_asked = false;
    plan.header.fill(header, &mut obj);
    for (tag, vr) in &plan.keys {
        if by_tag(*tag).is_some() || !ANSWERED.contains(tag) {
            continue;
        }
        let value = match *tag {
            tags::SPECIFIC_CHARACTER_SET => {
                charset_asked = true;
                continue;
            }
            tags::INSTANCE_AVAILABILITY => PrimitiveValue::from("ONLINE"),
            _ => PrimitiveValue::Empty,
        };
        if *vr == VR::SQ {
            obj.put(DataElement::new(
                *tag,
                VR::SQ,
                DataSetSequence::<InMemDicomObject>::empty(),
            ));
        } else {
            obj.put(DataElement::new(*tag, *vr, value));
        }
    }
    obj.put(DataElement::new(
        tags::RETRIEVE_AE_TITLE,
        VR::AE,
        PrimitiveValue::from(our_ae),
    ));
    obj.put(DataElement::new(
        tags::QUERY_RETRIEVE_LEVEL,
        VR::CS,
        PrimitiveValue::from(plan.level_text.as_str()),
    ));
    let non_ascii = obj
        .iter()
        .any(|e| e.to_str().map(|s| !s.is_ascii()).unwrap_or(false));
    if non_ascii {
        // In the query's character set when it can say every value (a
        // modality asking in GB18030 may not read UTF-8), else UTF-8.
        let cs = plan
            .charset
            .as_deref()
            .filter(|cs| encodes_all(&obj, cs))
            .unwrap_or("ISO_IR 192");
        obj.put(DataElement::new(
            tags::SPECIFIC_CHARACTER_SET,
            VR::CS,
            PrimitiveValue::from(cs),
        ));
    } else if charset_asked {
        obj.put(DataElement::new(
            tags::SPECIFIC_CHARACTER_SET,
            VR::CS,
            PrimitiveValue::Empty,
        ));
    }
    obj
}

/// Whether character set `cs` (a single (0008,0005) value dicom-rs
/// writes) can encode every text value of `obj`.
fn encodes_all(obj: &InMemDicomObject, cs: &str) -> bool {
    use dicom_encoding::text::{SpecificCharacterSet, TextCodec};
    let Some(codec) = SpecificCharacterSet::from_code(cs) else {
        return false;
    };
    obj.iter()
        .filter(|e| !matches!(e.vr(), VR::SQ | VR::UI | VR::CS | VR::DA | VR::TM | VR::AE))
        .filter_map(|e| e.to_str().ok())
        .all(|s| s.is_ascii() || codec.encode(&s).is_ok())
}

/// Runs a C-FIND: Pending per match, then Success (or Cancel, or a failure).
pub(crate) async fn run(
    s: &mut Session,
    pc: u8,
    ts_uid: &str,
    model: Model,
    rq: &CommandSet,
    identifier: &[u8],
) -> Result<(), Fatal> {
    let parsed = parse_identifier(identifier, ts_uid).and_then(|o| plan(&o, model));
    let (plan, ts) = match (parsed, TransferSyntaxRegistry.get(ts_uid)) {
        (Ok(p), Some(ts)) => (p, ts),
        (Err((st, msg)), _) => {
            debug!(peer = %s.peer_ae, "C-FIND refused: {msg}");
            return s
                .respond(pc, &rq.response(st).with_comment(msg), None)
                .await;
        }
        (Ok(_), None) => {
            return s
                .respond(pc, &rq.response(status::UNABLE_TO_PROCESS), None)
                .await
        }
    };
    let tenant = s.shared.cfg.tenant.clone();
    let ae = s.shared.cfg.ae_title.clone();
    let (mut offset, mut sent) = (0u32, 0usize);
    loop {
        let q = DicomQuery {
            tenant: tenant.clone(),
            level: plan.level,
            filters: plan.filters.clone(),
            limit: Some(PAGE),
            offset,
        };
        let page = match s.shared.archive.query(&q).await {
            Ok(p) => p,
            Err(e) => {
                warn!(peer = %s.peer_ae, "C-FIND failed: {e}");
                let st = match e {
                    DicomError::BadQuery(_) => status::IDENTIFIER_DOES_NOT_MATCH,
                    _ => status::UNABLE_TO_PROCESS,
                };
                let rsp = rq
                    .response(st)
                    .with_comment(super::store::client_comment(&e));
                return s.respond(pc, &rsp, None).await;
            }
        };
        let full = page.len() == PAGE as usize;
        let page = match s
            .shared
            .archive
            .with_headers(&tenant, plan.level, page, &plan.header)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                warn!(peer = %s.peer_ae, "C-FIND failed reading headers: {e}");
                let rsp = rq
                    .response(status::UNABLE_TO_PROCESS)
                    .with_comment(super::store::client_comment(&e));
                return s.respond(pc, &rsp, None).await;
            }
        };
        for (m, header) in &page {
            if s.cancel_requested(rq.message_id).await? {
                info!(peer = %s.peer_ae, matches = sent, "C-FIND cancelled");
                return s.respond(pc, &rq.response(status::CANCELLED), None).await;
            }
            let mut buf = Vec::with_capacity(512);
            let rsp_ds = response(m, &plan, &ae, header.as_ref());
            if let Err(e) = rsp_ds.write_dataset_with_ts(&mut buf, ts) {
                warn!(peer = %s.peer_ae, "cannot encode a C-FIND match: {e}");
                let rsp = rq
                    .response(status::UNABLE_TO_PROCESS)
                    .with_comment("a match could not be encoded");
                return s.respond(pc, &rsp, None).await;
            }
            let mut rsp = rq.response(status::PENDING);
            rsp.has_dataset = true;
            s.respond(pc, &rsp, Some(&buf)).await?;
            sent += 1;
        }
        if !full {
            break;
        }
        offset += PAGE;
    }
    info!(peer = %s.peer_ae, level = %plan.level_text, matches = sent, "C-FIND");
    s.respond(pc, &rq.response(status::SUCCESS), None).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use fulcrum_catalog::dicom::StudyRecord;

    fn ident(level: &str, extra: Vec<DataElement<InMemDicomObject>>) -> InMemDicomObject {
        let mut o = InMemDicomObject::new_empty();
        o.put(DataElement::new(
            tags::QUERY_RETRIEVE_LEVEL,
            VR::CS,
            PrimitiveValue::from(level),
        ));
        for e in extra {
            o.put(e);
        }
        o
    }

    #[test]
    fn keys_with_values_match_and_all_keys_return() {
        let o = ident(
            "STUDY",
            vec![
                DataElement::new(tags::PATIENT_NAME, VR::PN, PrimitiveValue::from("DOE*")),
                DataElement::new(tags::STUDY_INSTANCE_UID, VR::UI, PrimitiveValue::Empty),
                DataElement::new(tags::MODALITY, VR::CS, PrimitiveValue::from("CT")),
                DataElement::new(tags::SPECIFIC_CHARACTER_SET, VR::CS, PrimitiveValue::Empty),
                DataElement::new(Tag(0x0009, 0x1010), VR::LO, PrimitiveValue::Empty),
            ],
        );
        let p = plan(&o, Model::StudyRoot).expect("plan");
        assert_eq!(p.level, Level::Study);
        // Modality is a series key: matched relationally at STUDY level.
        assert_eq!(
            p.filters,
            vec![
                (Column::Modality, Matcher::Exact("CT".into())),
                (Column::PatientName, Matcher::Wildcard("DOE*".into()))
            ]
        );
        assert_eq!(p.keys.len(), 5);
        let m = DicomMatch {
            study: StudyRecord {
                study_uid: "1.2.3".into(),
                patient_name: Some("Doe^Jöhn".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let r = response(&m, &p, "FULCRUM", None);
        let text = |t| {
            r.element(t)
                .ok()
                .and_then(|e| e.to_str().ok())
                .map(|s| s.to_string())
        };
        assert_eq!(text(tags::STUDY_INSTANCE_UID).as_deref(), Some("1.2.3"));
        assert_eq!(text(tags::QUERY_RETRIEVE_LEVEL).as_deref(), Some("STUDY"));
        assert_eq!(text(tags::RETRIEVE_AE_TITLE).as_deref(), Some("FULCRUM"));
        assert_eq!(
            text(tags::SPECIFIC_CHARACTER_SET).as_deref(),
            Some("ISO_IR 192")
        );
        assert_eq!(text(tags::MODALITY).as_deref(), Some(""));
        assert!(r.element(Tag(0x0009, 0x1010)).is_ok());
        let mut buf = Vec::new();
        let ts = TransferSyntaxRegistry
            .get("1.2.840.10008.1.2")
            .expect("implicit LE");
        r.write_dataset_with_ts(&mut buf, ts).expect("encodes");
    }

    #[test]
    fn answers_come_in_the_query_character_set_when_it_can_say_them() {
        let query = |cs: &str| {
            ident(
                "STUDY",
                vec![
                    DataElement::new(
                        tags::SPECIFIC_CHARACTER_SET,
                        VR::CS,
                        PrimitiveValue::from(cs),
                    ),
                    DataElement::new(tags::PATIENT_NAME, VR::PN, PrimitiveValue::Empty),
                ],
            )
        };
        let m = DicomMatch {
            study: StudyRecord {
                study_uid: "1.2.3".into(),
                patient_name: Some("张^三".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let ts = TransferSyntaxRegistry
            .get("1.2.840.10008.1.2.1")
            .expect("explicit LE");
        let answer = |cs: &str| {
            let r = response(
                &m,
                &plan(&query(cs), Model::StudyRoot).expect("plan"),
                "FULCRUM",
                None,
            );
            let named = r
                .element(tags::SPECIFIC_CHARACTER_SET)
                .ok()
                .and_then(|e| e.to_str().ok().map(|s| s.to_string()));
            (r, named)
        };
        let (r, cs) = answer("GB18030");
        assert_eq!(cs.as_deref(), Some("GB18030"));
        let mut buf = Vec::new();
        r.write_dataset_with_ts(&mut buf, ts).expect("encodes");
        // 张 in GB18030 is D5 C5.
        assert!(
            buf.windows(2).any(|w| w == [0xD5, 0xC5]),
            "not written in GB18030"
        );
        // Latin-1 cannot say it: UTF-8 then.
        assert_eq!(answer("ISO_IR 100").1.as_deref(), Some("ISO_IR 192"));
    }

    #[test]
    fn levels_follow_the_model() {
        assert!(plan(&ident("PATIENT", vec![]), Model::PatientRoot).is_ok());
        assert_eq!(
            plan(&ident("PATIENT", vec![]), Model::StudyRoot)
                .map_err(|e| e.0)
                .err(),
            Some(status::IDENTIFIER_DOES_NOT_MATCH)
        );
        assert!(plan(&ident("BOGUS", vec![]), Model::StudyRoot).is_err());
        assert!(plan(&InMemDicomObject::new_empty(), Model::StudyRoot).is_err());
        assert_eq!(
            plan(&ident("IMAGE", vec![]), Model::StudyRoot)
                .map(|p| p.level)
                .ok(),
            Some(Level::Instance)
        );
    }

    #[test]
    fn bad_identifiers_are_refused() {
        assert!(parse_identifier(
            &[0x08, 0x00, 0x52, 0x00, 0xFF, 0xFF, 0xFF, 0x7F],
            "1.2.840.10008.1.2"
        )
        .is_err());
        assert!(parse_identifier(b"garbage", "1.2.840.10008.1.2.1").is_err());
        assert!(parse_identifier(&[], "1.2.840.10008.1.2.1.99").is_err());
        assert!(parse_identifier(&[], "1.2.3.4").is_err());
        assert!(parse_identifier(&[], "1.2.840.10008.1.2").is_ok());
    }
}
