//! The Part 10 file prelude (preamble, `DICM`, file meta group): reading
//! it from the first bytes of an upload, and writing one for datasets that
//! arrive without it (DIMSE). Stored objects are always Part 10 files.

use dicom_object::FileMetaTableBuilder;

use crate::error::{DicomError, DicomResult};

/// Our implementation identity, written in metas we create.
pub const IMPLEMENTATION_CLASS_UID: &str = "1.2.826.0.1.3680043.10.1470.1";
pub const IMPLEMENTATION_VERSION: &str = "FULCRUM_01";

/// Largest meta group accepted. Most are a few hundred bytes, but Private
/// Information (0002,0102) may carry more: a 70 KiB one was refused as
/// malformed under the former 64 KiB bound. The meta is held in memory
/// while the data set streams.
const MAX_META: usize = 1024 * 1024;

/// What the file meta group says, and where the dataset starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prelude {
    /// Bytes of preamble + `DICM` + meta group: the dataset starts here.
    pub len: usize,
    pub transfer_syntax: String,
    pub sop_class_uid: Option<String>,
    pub sop_instance_uid: Option<String>,
}

fn text(v: &[u8]) -> String {
    String::from_utf8_lossy(v)
        .trim_end_matches(['\0', ' '])
        .trim_start()
        .to_string()
}

/// Parses the prelude at the start of `buf`; `Ok(None)` means more bytes
/// are needed. The meta group is read element by element (explicit VR LE),
/// so a missing (0002,0000) group length does not matter.
pub fn parse_prelude(buf: &[u8], at_eof: bool) -> DicomResult<Option<Prelude>> {
    let start = if buf.len() >= 132 && &buf[128..132] == b"DICM" {
        132
    } else if buf.len() >= 4 && &buf[0..4] == b"DICM" {
        4
    } else if buf.len() < 132 && !at_eof {
        return Ok(None);
    } else {
        return Err(DicomError::NotDicom(
            "no DICM marker at byte 128: not a DICOM Part 10 file".into(),
        ));
    };
    let mut pos = start;
    let mut p = Prelude {
        len: 0,
        transfer_syntax: String::new(),
        sop_class_uid: None,
        sop_instance_uid: None,
    };
    loop {
        if pos > MAX_META {
            return Err(DicomError::Malformed("file meta group too long".into()));
        }
        if buf.len() < pos + 8 {
            if at_eof {
                // A file that is only a meta group has an empty dataset.
                if buf.len() == pos {
                    break;
                }
                return Err(DicomError::Malformed(
                    "file ends inside the meta group".into(),
                ));
            }
            return Ok(None);
        }
        let group = u16::from_le_bytes([buf[pos], buf[pos + 1]]);
        if group != 0x0002 {
            break;
        }
        let element = u16::from_le_bytes([buf[pos + 2], buf[pos + 3]]);
        let vr = &buf[pos + 4..pos + 6];
        let (hdr, len) = if matches!(vr, b"OB" | b"UN" | b"SQ" | b"UT" | b"OW") {
            if buf.len() < pos + 12 {
                return if at_eof {
                    Err(DicomError::Malformed(
                        "file ends inside the meta group".into(),
                    ))
                } else {
                    Ok(None)
                };
            }
            let l = u32::from_le_bytes([buf[pos + 8], buf[pos + 9], buf[pos + 10], buf[pos + 11]]);
            (12, l as usize)
        } else {
            (8, u16::from_le_bytes([buf[pos + 6], buf[pos + 7]]) as usize)
        };
        if len == 0xFFFF_FFFF || len > MAX_META {
            return Err(DicomError::Malformed("bad length in the meta group".into()));
        }
        let end = pos + hdr + len;
        if buf.len() < end {
            return if at_eof {
                Err(DicomError::Malformed(
                    "file ends inside the meta group".into(),
                ))
            } else {
                Ok(None)
            };
        }
        let value = &buf[pos + hdr..end];
        match element {
            0x0002 => p.sop_class_uid = Some(text(value)).filter(|s| !s.is_empty()),
            0x0003 => p.sop_instance_uid = Some(text(value)).filter(|s| !s.is_empty()),
            0x0010 => p.transfer_syntax = text(value),
            _ => {}
        }
        pos = end;
    }
    if p.transfer_syntax.is_empty() {
        return Err(DicomError::Malformed(
            "the file meta group has no Transfer Syntax UID (0002,0010)".into(),
        ));
    }
    p.len = pos;
    Ok(Some(p))
}

/// The transfer syntax of a dataset written without preamble and file
/// meta group (files of older file-based archives; DCMTK reads them),
/// from its first element: one of group 0008, as every stored dataset
/// opens (SOP Class UID is there), in Implicit or Explicit VR Little
/// Endian or Explicit VR Big Endian. `None`: not such a dataset.
pub fn bare_dataset_syntax(head: &[u8]) -> Option<&'static str> {
    const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
    const EXPLICIT_LE: &str = "1.2.840.10008.1.2.1";
    const EXPLICIT_BE: &str = "1.2.840.10008.1.2.2";
    let h = head.get(..8)?;
    let explicit = dicom_core::VR::from_binary([h[4], h[5]]).is_some();
    match (h[0], h[1]) {
        (0x08, 0x00) if explicit => Some(EXPLICIT_LE),
        (0x08, 0x00) => Some(IMPLICIT_LE),
        (0x00, 0x08) if explicit => Some(EXPLICIT_BE),
        _ => None,
    }
}

/// A prelude for a dataset received without one (DIMSE C-STORE).
pub fn build_prelude(
    sop_class_uid: &str,
    sop_instance_uid: &str,
    transfer_syntax: &str,
    source_ae: &str,
) -> DicomResult<Vec<u8>> {
    let mut b = FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(sop_class_uid)
        .media_storage_sop_instance_uid(sop_instance_uid)
        .transfer_syntax(transfer_syntax)
        .implementation_class_uid(IMPLEMENTATION_CLASS_UID)
        .implementation_version_name(IMPLEMENTATION_VERSION);
    if !source_ae.is_empty() {
        b = b.source_application_entity_title(source_ae);
    }
    let meta = b
        .build()
        .map_err(|e| DicomError::Malformed(format!("cannot build a file meta group: {e}")))?;
    let mut out = vec![0u8; 128];
    out.extend_from_slice(b"DICM");
    meta.write(&mut out)
        .map_err(|e| DicomError::Malformed(format!("cannot write a file meta group: {e}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_dataset_is_told_by_its_first_element() {
        let implicit = [0x08, 0, 0x05, 0, 10, 0, 0, 0];
        let explicit = [0x08, 0, 0x16, 0, b'U', b'I', 26, 0];
        let big = [0, 0x08, 0, 0x16, b'U', b'I', 0, 26];
        assert_eq!(bare_dataset_syntax(&implicit), Some("1.2.840.10008.1.2"));
        assert_eq!(bare_dataset_syntax(&explicit), Some("1.2.840.10008.1.2.1"));
        assert_eq!(bare_dataset_syntax(&big), Some("1.2.840.10008.1.2.2"));
        assert_eq!(bare_dataset_syntax(b"%PDF-1.4 x"), None);
        assert_eq!(
            bare_dataset_syntax(&[0x10, 0, 0x10, 0, b'P', b'N', 4, 0]),
            None
        );
        assert_eq!(bare_dataset_syntax(&[0x08, 0]), None);
    }

    #[test]
    fn built_prelude_parses_back() {
        let pre = build_prelude(
            "1.2.840.10008.5.1.4.1.1.2",
            "1.2.3.4",
            "1.2.840.10008.1.2",
            "SCU",
        )
        .expect("build");
        let p = parse_prelude(&pre, true).expect("parse").expect("complete");
        assert_eq!(p.len, pre.len());
        assert_eq!(p.transfer_syntax, "1.2.840.10008.1.2");
        assert_eq!(p.sop_instance_uid.as_deref(), Some("1.2.3.4"));
        // Incomplete input asks for more.
        assert_eq!(parse_prelude(&pre[..140], false).expect("partial"), None);
    }

    #[test]
    fn a_meta_group_with_large_private_information_parses() {
        // A 70 KiB Private Information (0002,0102) was 'bad length in the
        // meta group' under the former 64 KiB bound.
        let mut pre = build_prelude(
            "1.2.840.10008.5.1.4.1.1.7",
            "1.2.3.4",
            "1.2.840.10008.1.2.1",
            "SCU",
        )
        .expect("build");
        let value = vec![7u8; 70 * 1024];
        let mut private = vec![0x02, 0x00, 0x02, 0x01, b'O', b'B', 0, 0];
        private.extend_from_slice(&(value.len() as u32).to_le_bytes());
        private.extend_from_slice(&value);
        // (0002,0000) counts the group's bytes after its own element.
        let group = u32::from_le_bytes([pre[140], pre[141], pre[142], pre[143]]);
        pre[140..144].copy_from_slice(&(group + private.len() as u32).to_le_bytes());
        pre.extend_from_slice(&private);
        let p = parse_prelude(&pre, true).expect("parse").expect("complete");
        assert_eq!(p.len, pre.len());
        assert_eq!(p.sop_instance_uid.as_deref(), Some("1.2.3.4"));
    }

    #[test]
    fn not_dicom_is_refused() {
        let junk = vec![b'x'; 300];
        assert!(matches!(
            parse_prelude(&junk, false),
            Err(DicomError::NotDicom(_))
        ));
    }
}
