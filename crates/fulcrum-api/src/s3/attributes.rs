//! GetObjectAttributes: what HEAD tells about an object, as one XML
//! answer with only the attributes asked for (`x-amz-object-attributes`):
//! ETag, Checksum, ObjectParts (a multipart object's part numbers and
//! sizes, paged), ObjectSize, StorageClass.

use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result};

use super::checksum;
use super::objects::{etag, storage_class, ts};
use super::{version_check, S3Api};

/// Parts listed per answer unless `x-amz-max-parts` says fewer.
const MAX_PARTS: i32 = 1000;

impl S3Api {
    pub(crate) async fn do_get_object_attributes(
        &self,
        req: S3Request<GetObjectAttributesInput>,
    ) -> S3Result<S3Response<GetObjectAttributesOutput>> {
        let i = &req.input;
        version_check(i.version_id.as_deref())?;
        let known = [
            ObjectAttributes::CHECKSUM,
            ObjectAttributes::ETAG,
            ObjectAttributes::OBJECT_PARTS,
            ObjectAttributes::OBJECT_SIZE,
            ObjectAttributes::STORAGE_CLASS,
        ];
        // One header value, comma-separated (as the SDKs send it), or
        // several.
        let asked: Vec<&str> = i
            .object_attributes
            .iter()
            .flat_map(|a| a.as_str().split(','))
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .collect();
        if asked.is_empty() {
            return Err(s3_error!(
                InvalidArgument,
                "Minimum of 1 object attribute must be specified (x-amz-object-attributes)"
            ));
        }
        if let Some(bad) = asked.iter().find(|a| !known.contains(a)) {
            return Err(s3_error!(
                InvalidArgument,
                "Invalid attribute name specified: {bad}"
            ));
        }
        let wants = |a: &str| asked.contains(&a);
        let info = self.head(&i.bucket, &i.key).await?;
        let mut out = GetObjectAttributesOutput::default();
        out.last_modified = Some(ts(info.created_at_ms));
        if wants(ObjectAttributes::ETAG) {
            out.e_tag = Some(etag(&info.etag));
        }
        if wants(ObjectAttributes::OBJECT_SIZE) {
            out.object_size = Some(info.size as i64);
        }
        if wants(ObjectAttributes::STORAGE_CLASS) {
            out.storage_class = Some(
                storage_class(&info)
                    .unwrap_or_else(|| StorageClass::from_static(StorageClass::STANDARD)),
            );
        }
        if wants(ObjectAttributes::CHECKSUM) {
            let mut sums = checksum::of_metadata(&info.metadata);
            sums.checksum_type = checksum::checksum_type(&sums);
            out.checksum = sums.checksum_type.is_some().then_some(sums);
        }
        if wants(ObjectAttributes::OBJECT_PARTS) {
            out.object_parts = parts(&info.metadata, i.max_parts, i.part_number_marker)?;
        }
        let mut res = S3Response::new(out);
        res.extensions.insert(super::front::UnquotedETag);
        Ok(res)
    }
}

/// The parts of a multipart object after `marker`, at most `max` (None:
/// not a multipart object).
fn parts(
    metadata: &std::collections::BTreeMap<String, String>,
    max: Option<i32>,
    marker: Option<i32>,
) -> S3Result<Option<GetObjectAttributesParts>> {
    // As ListParts: at most 1000, at least one.
    let max = max.unwrap_or(MAX_PARTS);
    if max < 0 {
        return Err(s3_error!(
            InvalidArgument,
            "x-amz-max-parts must be a positive integer"
        ));
    }
    let max = max.clamp(1, MAX_PARTS);
    let after = u32::try_from(marker.unwrap_or(0)).map_err(|_| {
        s3_error!(
            InvalidArgument,
            "x-amz-part-number-marker must be a part number"
        )
    })?;
    let Some((_, count)) = fulcrum_engine::part_range(metadata, 1) else {
        return Ok(None);
    };
    let listed: Vec<ObjectPart> = (after.saturating_add(1)..=count)
        .take(max as usize)
        .filter_map(|n| {
            let (range, _) = fulcrum_engine::part_range(metadata, n)?;
            let range = range?;
            let mut p = ObjectPart::default();
            p.part_number = Some(n as i32);
            p.size = Some((range.end - range.start) as i64);
            Some(p)
        })
        .collect();
    let last = listed.last().and_then(|p| p.part_number);
    let truncated = last.is_some_and(|n| (n as u32) < count);
    let mut out = GetObjectAttributesParts::default();
    out.total_parts_count = Some(count as i32);
    out.max_parts = Some(max);
    out.part_number_marker = marker;
    out.is_truncated = Some(truncated);
    out.next_part_number_marker = last;
    out.parts = Some(listed);
    Ok(Some(out))
}
