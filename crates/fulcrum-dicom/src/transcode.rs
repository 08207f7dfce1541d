//! Instances sent in another transfer syntax than the stored one, for a
//! peer (C-MOVE/C-GET destination, `dicom send`) or a WADO-RS client that
//! does not take it: native data sets re-encoded losslessly (Implicit and
//! Explicit VR, little and big endian, deflated, GE's private syntax),
//! encapsulated frames decoded (see `decode`). In memory, up to
//! MAX_TRANSCODE bytes.

use dicom_dictionary_std::uids;
use dicom_encoding::{Endianness, TransferSyntaxIndex};
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use tracing::debug;

use crate::part10::build_prelude;
use crate::scan::GE_PRIVATE_IMPLICIT;
use crate::{Archive, DicomError, DicomResult, InstanceRecord};

/// Largest instance re-encoded in memory when the stored syntax is refused.
const MAX_TRANSCODE: i64 = 512 * 1024 * 1024;

pub(crate) fn is_native(ts: &str) -> bool {
    ts == GE_PRIVATE_IMPLICIT
        || TransferSyntaxRegistry
            .get(ts)
            .is_some_and(|t| !t.is_encapsulated_pixel_data() && !t.is_unsupported())
}

/// Little endian and not encapsulated: what decoded frames can be written in.
pub(crate) fn is_native_le(ts: &str) -> bool {
    is_native(ts)
        && TransferSyntaxRegistry
            .get(ts)
            .is_some_and(|t| t.endianness() == Endianness::Little)
}

/// Whether an instance stored in `ts` can be sent in some native syntax:
/// native data re-encoded losslessly, RLE, JPEG, JPEG-LS and JPEG 2000
/// frames decoded.
pub(crate) fn convertible_at_all(ts: &str) -> bool {
    is_native(ts) || crate::decode::decodable(ts)
}

/// Whether an instance stored in `stored` can be sent in native syntax
/// `to`: any native one for native data, a little endian one for decoded
/// frames.
pub fn convertible(stored: &str, to: &str) -> bool {
    if is_native(stored) {
        is_native(to)
    } else {
        crate::decode::decodable(stored) && is_native_le(to)
    }
}

impl Archive {
    /// The data set of `rec` re-encoded in native transfer syntax `to`
    /// (see [`convertible`]): native data re-encoded losslessly,
    /// encapsulated frames decoded (to a little endian one).
    pub async fn transcode(
        &self,
        tenant: &str,
        rec: &InstanceRecord,
        to: &str,
    ) -> Result<Vec<u8>, String> {
        if rec.size > MAX_TRANSCODE {
            return Err(format!(
                "{} bytes is too large to convert to {to}",
                rec.size
            ));
        }
        let bytes = self
            .read_bytes(
                tenant,
                rec,
                rec.dataset_offset.max(0) as u64,
                rec.size.max(0) as u64,
            )
            .await
            .map_err(|e| e.to_string())?;
        let (from, to) = (rec.transfer_syntax.clone(), to.to_string());
        debug!(sop = %rec.sop_uid, %from, %to, "re-encoding in another transfer syntax");
        tokio::task::spawn_blocking(move || {
            // GE's private syntax: an Implicit VR Little Endian data set whose
            // pixel words are big endian, swapped once read.
            let ge = from == GE_PRIVATE_IMPLICIT;
            let read_as = if ge {
                uids::IMPLICIT_VR_LITTLE_ENDIAN
            } else {
                from.as_str()
            };
            let (Some(f), Some(t)) = (
                TransferSyntaxRegistry.get(read_as),
                TransferSyntaxRegistry.get(&to),
            ) else {
                return Err(format!("cannot convert {from} to {to}"));
            };
            let mut obj =
                InMemDicomObject::read_dataset_with_ts(&bytes[..], f).map_err(|e| e.to_string())?;
            if ge {
                swap_pixel_words(&mut obj)?;
            }
            if f.is_encapsulated_pixel_data() {
                if t.is_encapsulated_pixel_data() || t.endianness() != Endianness::Little {
                    return Err(format!("cannot convert {from} to {to}"));
                }
                crate::decode::decompress(&mut obj, &from).map_err(|e| e.to_string())?;
            }
            let mut out = Vec::with_capacity(bytes.len() + 1024);
            obj.write_dataset_with_ts(&mut out, t)
                .map_err(|e| e.to_string())?;
            Ok(out)
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// `rec` as a Part 10 file in native transfer syntax `to` (a file meta
    /// group of this archive's, the data set re-encoded), for a WADO-RS
    /// client that asks for that syntax.
    pub async fn transcoded_file(
        &self,
        tenant: &str,
        rec: &InstanceRecord,
        to: &str,
    ) -> DicomResult<Vec<u8>> {
        let data = self
            .transcode(tenant, rec, to)
            .await
            .map_err(|e| DicomError::Unconvertible(format!("instance {}: {e}", rec.sop_uid)))?;
        let mut out = build_prelude(&rec.sop_class_uid, &rec.sop_uid, to, "")?;
        out.extend_from_slice(&data);
        Ok(out)
    }
}

/// Pixel Data read from big-endian 16-bit words as if little endian, put
/// right: each word's two bytes swapped.
fn swap_pixel_words(obj: &mut InMemDicomObject) -> Result<(), String> {
    use dicom_core::{DataElement, PrimitiveValue, VR};
    use dicom_dictionary_std::tags;
    let bits = obj
        .get(tags::BITS_ALLOCATED)
        .and_then(|e| e.to_int::<u16>().ok());
    let Some(e) = obj.get(tags::PIXEL_DATA) else {
        return Ok(());
    };
    if bits != Some(16) {
        return Err("GE private syntax pixel data other than 16-bit cannot be converted".into());
    }
    let mut px = e.to_bytes().map_err(|e| e.to_string())?.into_owned();
    crate::decode::swap_words(&mut px, 2);
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::U8(px.into()),
    ));
    Ok(())
}
