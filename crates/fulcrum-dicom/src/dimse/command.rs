//! DIMSE command sets (group 0000, always Implicit VR Little Endian): one
//! struct for requests and responses of the C-services, decoded from and
//! encoded to the bytes of a Command PDV (PS3.7 section 9 and annex E).

use dicom_core::header::HasLength;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN;

pub const C_STORE_RQ: u16 = 0x0001;
pub const C_STORE_RSP: u16 = 0x8001;
pub const C_GET_RQ: u16 = 0x0010;
pub const C_GET_RSP: u16 = 0x8010;
pub const C_FIND_RQ: u16 = 0x0020;
pub const C_FIND_RSP: u16 = 0x8020;
pub const C_MOVE_RQ: u16 = 0x0021;
pub const C_MOVE_RSP: u16 = 0x8021;
pub const C_ECHO_RQ: u16 = 0x0030;
pub const C_ECHO_RSP: u16 = 0x8030;
pub const C_CANCEL_RQ: u16 = 0x0FFF;
pub const N_EVENT_REPORT_RQ: u16 = 0x0100;
pub const N_EVENT_REPORT_RSP: u16 = 0x8100;
pub const N_ACTION_RQ: u16 = 0x0130;
pub const N_ACTION_RSP: u16 = 0x8130;

/// CommandDataSetType value meaning "no data set follows".
pub const NO_DATASET: u16 = 0x0101;

/// Largest command set accepted (real ones are under 1 KiB).
pub const MAX_COMMAND_LEN: usize = 64 * 1024;

/// Sub-operation counters of C-MOVE / C-GET responses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SubOps {
    pub remaining: Option<u16>,
    pub completed: u16,
    pub failed: u16,
    pub warning: u16,
}

/// A command set. Fields a message type does not use stay empty or zero.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandSet {
    /// (0000,0100): `C_STORE_RQ`, `C_FIND_RSP`, …
    pub field: u16,
    /// (0000,0110) for requests.
    pub message_id: u16,
    /// (0000,0120) for responses and C-CANCEL.
    pub responding_to: u16,
    /// Affected (or requested) SOP Class UID.
    pub sop_class: String,
    /// Affected SOP Instance UID (C-STORE).
    pub sop_instance: String,
    pub priority: u16,
    /// Whether a data set (identifier) follows the command.
    pub has_dataset: bool,
    /// (0000,0900) for responses.
    pub status: u16,
    /// (0000,0600) for C-MOVE-RQ.
    pub move_destination: String,
    /// (0000,1030)/(0000,1031) on C-STORE sub-operations of a C-MOVE.
    pub move_originator: Option<(String, u16)>,
    pub sub_ops: Option<SubOps>,
    /// (0000,0902), at most 64 characters.
    pub error_comment: Option<String>,
    /// (0000,1008) Action Type ID of N-ACTION.
    pub action_type: Option<u16>,
    /// (0000,1002) Event Type ID of N-EVENT-REPORT.
    pub event_type: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("the command set cannot be parsed: {0}")]
    Malformed(String),
    #[error("the command set has no {0}")]
    Missing(&'static str),
    #[error("the command set cannot be encoded: {0}")]
    Encode(String),
}

impl CommandSet {
    /// Whether this is a response (the high bit of the command field).
    pub fn is_response(&self) -> bool {
        self.field & 0x8000 != 0
    }

    /// A response to this request with a status (no data set, no counters).
    pub fn response(&self, status: u16) -> CommandSet {
        CommandSet {
            field: self.field | 0x8000,
            responding_to: self.message_id,
            sop_class: self.sop_class.clone(),
            sop_instance: if matches!(self.field, C_STORE_RQ | N_ACTION_RQ | N_EVENT_REPORT_RQ) {
                self.sop_instance.clone()
            } else {
                String::new()
            },
            status,
            action_type: self.action_type,
            event_type: self.event_type,
            ..Default::default()
        }
    }

    /// Adds an error comment, cut to the 64 characters LO allows.
    pub fn with_comment(mut self, comment: impl Into<String>) -> Self {
        let c: String = comment
            .into()
            .chars()
            .filter(|c| *c != '\\')
            .take(64)
            .collect();
        self.error_comment = Some(c);
        self
    }

    /// Decodes a command set from Command PDV bytes.
    pub fn decode(bytes: &[u8]) -> Result<CommandSet, CommandError> {
        if bytes.len() > MAX_COMMAND_LEN {
            return Err(CommandError::Malformed(format!(
                "{} bytes is too long",
                bytes.len()
            )));
        }
        check_framing(bytes)?;
        let obj =
            InMemDicomObject::read_dataset_with_ts(bytes, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
                .map_err(|e| CommandError::Malformed(e.to_string()))?;
        let field = u16_of(&obj, tags::COMMAND_FIELD)?
            .ok_or(CommandError::Missing("CommandField (0000,0100)"))?;
        let data_type = u16_of(&obj, tags::COMMAND_DATA_SET_TYPE)?.unwrap_or(NO_DATASET);
        let counts = [
            tags::NUMBER_OF_REMAINING_SUBOPERATIONS,
            tags::NUMBER_OF_COMPLETED_SUBOPERATIONS,
            tags::NUMBER_OF_FAILED_SUBOPERATIONS,
            tags::NUMBER_OF_WARNING_SUBOPERATIONS,
        ]
        .map(|t| u16_of(&obj, t));
        let [remaining, completed, failed, warning] = counts;
        let (remaining, completed, failed, warning) = (remaining?, completed?, failed?, warning?);
        let sub_ops =
            (remaining.is_some() || completed.is_some() || failed.is_some() || warning.is_some())
                .then(|| SubOps {
                    remaining,
                    completed: completed.unwrap_or(0),
                    failed: failed.unwrap_or(0),
                    warning: warning.unwrap_or(0),
                });
        let originator = str_of(&obj, tags::MOVE_ORIGINATOR_APPLICATION_ENTITY_TITLE);
        let originator_id = u16_of(&obj, tags::MOVE_ORIGINATOR_MESSAGE_ID)?;
        Ok(CommandSet {
            field,
            message_id: u16_of(&obj, tags::MESSAGE_ID)?.unwrap_or(0),
            responding_to: u16_of(&obj, tags::MESSAGE_ID_BEING_RESPONDED_TO)?.unwrap_or(0),
            sop_class: str_of(&obj, tags::AFFECTED_SOP_CLASS_UID)
                .or_else(|| str_of(&obj, tags::REQUESTED_SOP_CLASS_UID))
                .unwrap_or_default(),
            sop_instance: str_of(&obj, tags::AFFECTED_SOP_INSTANCE_UID)
                .or_else(|| str_of(&obj, tags::REQUESTED_SOP_INSTANCE_UID))
                .unwrap_or_default(),
            priority: u16_of(&obj, tags::PRIORITY)?.unwrap_or(0),
            has_dataset: data_type != NO_DATASET,
            status: u16_of(&obj, tags::STATUS)?.unwrap_or(0),
            move_destination: str_of(&obj, tags::MOVE_DESTINATION).unwrap_or_default(),
            move_originator: match (originator, originator_id) {
                (Some(ae), Some(id)) => Some((ae, id)),
                (Some(ae), None) => Some((ae, 0)),
                _ => None,
            },
            sub_ops,
            error_comment: str_of(&obj, tags::ERROR_COMMENT),
            action_type: u16_of(&obj, tags::ACTION_TYPE_ID)?,
            event_type: u16_of(&obj, tags::EVENT_TYPE_ID)?,
        })
    }

    /// Encodes the command set (CommandGroupLength included).
    pub fn encode(&self) -> Result<Vec<u8>, CommandError> {
        let mut el = Vec::with_capacity(12);
        let uid = |tag, v: &str| DataElement::new(tag, VR::UI, PrimitiveValue::from(v));
        let us = |tag, v: u16| DataElement::new(tag, VR::US, PrimitiveValue::from(v));
        if !self.sop_class.is_empty() {
            el.push(uid(tags::AFFECTED_SOP_CLASS_UID, &self.sop_class));
        }
        el.push(us(tags::COMMAND_FIELD, self.field));
        if self.is_response() || self.field == C_CANCEL_RQ {
            el.push(us(tags::MESSAGE_ID_BEING_RESPONDED_TO, self.responding_to));
        } else {
            el.push(us(tags::MESSAGE_ID, self.message_id));
        }
        if !self.move_destination.is_empty() {
            el.push(DataElement::new(
                tags::MOVE_DESTINATION,
                VR::AE,
                PrimitiveValue::from(self.move_destination.as_str()),
            ));
        }
        if matches!(self.field, C_STORE_RQ | C_FIND_RQ | C_MOVE_RQ | C_GET_RQ) {
            el.push(us(tags::PRIORITY, self.priority));
        }
        el.push(us(
            tags::COMMAND_DATA_SET_TYPE,
            if self.has_dataset { 0x0000 } else { NO_DATASET },
        ));
        if self.is_response() {
            el.push(us(tags::STATUS, self.status));
        }
        if let Some(c) = &self.error_comment {
            el.push(DataElement::new(
                tags::ERROR_COMMENT,
                VR::LO,
                PrimitiveValue::from(c.as_str()),
            ));
        }
        if !self.sop_instance.is_empty() {
            el.push(uid(tags::AFFECTED_SOP_INSTANCE_UID, &self.sop_instance));
        }
        if let Some(n) = self.sub_ops {
            if let Some(r) = n.remaining {
                el.push(us(tags::NUMBER_OF_REMAINING_SUBOPERATIONS, r));
            }
            el.push(us(tags::NUMBER_OF_COMPLETED_SUBOPERATIONS, n.completed));
            el.push(us(tags::NUMBER_OF_FAILED_SUBOPERATIONS, n.failed));
            el.push(us(tags::NUMBER_OF_WARNING_SUBOPERATIONS, n.warning));
        }
        if let Some(t) = self.event_type {
            el.push(us(tags::EVENT_TYPE_ID, t));
        }
        if let Some(t) = self.action_type {
            el.push(us(tags::ACTION_TYPE_ID, t));
        }
        if let Some((ae, id)) = &self.move_originator {
            el.push(DataElement::new(
                tags::MOVE_ORIGINATOR_APPLICATION_ENTITY_TITLE,
                VR::AE,
                PrimitiveValue::from(ae.as_str()),
            ));
            el.push(us(tags::MOVE_ORIGINATOR_MESSAGE_ID, *id));
        }
        let obj = InMemDicomObject::command_from_element_iter(el);
        let mut out = Vec::with_capacity(160);
        obj.write_dataset_with_ts(&mut out, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
            .map_err(|e| CommandError::Encode(e.to_string()))?;
        Ok(out)
    }
}

/// Walks the element headers first: a command set is flat, and every
/// value must lie within the bytes (the parser would otherwise allocate
/// whatever length a header claims).
fn check_framing(mut bytes: &[u8]) -> Result<(), CommandError> {
    while !bytes.is_empty() {
        let Some((hdr, rest)) = bytes.split_first_chunk::<8>() else {
            return Err(CommandError::Malformed("truncated element header".into()));
        };
        let len = u32::from_le_bytes([hdr[4], hdr[5], hdr[6], hdr[7]]) as usize;
        if len > rest.len() {
            return Err(CommandError::Malformed(format!(
                "element ({:02X}{:02X},{:02X}{:02X}) claims {len} bytes, {} remain",
                hdr[1],
                hdr[0],
                hdr[3],
                hdr[2],
                rest.len()
            )));
        }
        bytes = &rest[len..];
    }
    Ok(())
}

fn u16_of(obj: &InMemDicomObject, tag: Tag) -> Result<Option<u16>, CommandError> {
    // `get`, not `element_opt`: dicom-rs builds an error for a missing
    // element, with a backtrace when RUST_BACKTRACE is set (a tenth of a
    // millisecond per absent optional field of every command).
    match obj.get(tag) {
        Some(e) if e.value().is_empty() => Ok(None),
        Some(e) => e
            .to_int::<u16>()
            .map(Some)
            .map_err(|err| CommandError::Malformed(format!("{tag}: {err}"))),
        None => Ok(None),
    }
}

fn str_of(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let e = obj.get(tag)?;
    let s = e.to_str().ok()?;
    let s = s.trim_matches(|c: char| c == '\0' || c == ' ');
    (!s.is_empty()).then(|| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A C-ECHO-RQ as DCMTK's echoscu sends it (message id 1).
    const DCMTK_ECHO_RQ: &[u8] = &[
        0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x38, 0x00, 0x00,
        0x00, // group length 56
        0x00, 0x00, 0x02, 0x00, 0x12, 0x00, 0x00, 0x00, b'1', b'.', b'2', b'.', b'8', b'4', b'0',
        b'.', b'1', b'0', b'0', b'0', b'8', b'.', b'1', b'.', b'1',
        0x00, // affected SOP class
        0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x30, 0x00, // command field
        0x00, 0x00, 0x10, 0x01, 0x02, 0x00, 0x00, 0x00, 0x01, 0x00, // message id
        0x00, 0x00, 0x00, 0x08, 0x02, 0x00, 0x00, 0x00, 0x01, 0x01, // no data set
    ];

    #[test]
    fn decodes_a_dcmtk_echo_and_answers_it() {
        let rq = CommandSet::decode(DCMTK_ECHO_RQ).expect("decodes");
        assert_eq!(rq.field, C_ECHO_RQ);
        assert_eq!(rq.message_id, 1);
        assert_eq!(rq.sop_class, "1.2.840.10008.1.1");
        assert!(!rq.has_dataset);
        let rsp = rq.response(0);
        assert_eq!((rsp.field, rsp.responding_to), (C_ECHO_RSP, 1));
        let bytes = rsp.encode().expect("encodes");
        // Group length is right: 12 bytes of its own element + the rest.
        let len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
        assert_eq!(len + 12, bytes.len());
        assert_eq!(CommandSet::decode(&bytes).expect("round trip"), rsp);
    }

    #[test]
    fn requests_and_responses_round_trip() {
        let cases = [
            CommandSet {
                field: C_STORE_RQ,
                message_id: 7,
                sop_class: "1.2.840.10008.5.1.4.1.1.2".into(),
                sop_instance: "1.2.3.4.5".into(),
                has_dataset: true,
                move_originator: Some(("MOVER".into(), 3)),
                ..Default::default()
            },
            CommandSet {
                field: C_MOVE_RQ,
                message_id: 9,
                sop_class: "1.2.840.10008.5.1.4.1.2.2.2".into(),
                priority: 1,
                has_dataset: true,
                move_destination: "DEST".into(),
                ..Default::default()
            },
            CommandSet {
                field: C_CANCEL_RQ,
                responding_to: 9,
                ..Default::default()
            },
            CommandSet {
                field: C_GET_RSP,
                responding_to: 4,
                sop_class: "1.2.840.10008.5.1.4.1.2.2.3".into(),
                status: 0xB000,
                has_dataset: true,
                sub_ops: Some(SubOps {
                    remaining: None,
                    completed: 2,
                    failed: 1,
                    warning: 0,
                }),
                error_comment: Some("one failed".into()),
                ..Default::default()
            },
        ];
        for c in cases {
            let bytes = c.encode().expect("encodes");
            assert_eq!(CommandSet::decode(&bytes).expect("decodes"), c);
        }
    }

    #[test]
    fn bad_bytes_are_errors_not_panics() {
        assert!(CommandSet::decode(&[]).is_err());
        assert!(CommandSet::decode(&[0xFF; 7]).is_err());
        assert!(CommandSet::decode(&DCMTK_ECHO_RQ[..30]).is_err());
        // A command without CommandField.
        assert_eq!(
            CommandSet::decode(&DCMTK_ECHO_RQ[12..38]),
            Err(CommandError::Missing("CommandField (0000,0100)"))
        );
        let mut x = 0x1234_5678_u32;
        for n in 0..200 {
            let junk: Vec<u8> = (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let _ = CommandSet::decode(&junk);
        }
    }

    #[test]
    fn comments_fit_lo() {
        let c = CommandSet::default().with_comment("x\\y".repeat(50));
        assert_eq!(c.error_comment.map(|s| s.len()), Some(64));
    }
}
