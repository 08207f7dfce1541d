//! The S3 bucket lifecycle API on the archive tier: Put/Get/Delete
//! BucketLifecycleConfiguration with Transition rules (Days; StorageClass
//! GLACIER, GLACIER_IR or DEEP_ARCHIVE, all meaning Fulcrum's archive
//! tier; Filter Prefix) and AbortIncompleteMultipartUpload (applied by
//! GC). Parts Fulcrum does not implement (Expiration,
//! Date, tags, sizes, noncurrent versions) are refused with
//! NotImplemented rather than stored and ignored.

use fulcrum_engine::LifecycleRule;
use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result};

use super::{api_err, S3Api};

/// Storage classes a Transition may name: every one is the archive tier,
/// readable at once.
const ARCHIVE_CLASSES: [&str; 3] = [
    TransitionStorageClass::GLACIER,
    TransitionStorageClass::GLACIER_IR,
    TransitionStorageClass::DEEP_ARCHIVE,
];

fn not_implemented(what: &str) -> S3Error {
    S3Error::with_message(
        S3ErrorCode::NotImplemented,
        format!("{what} is not supported in lifecycle rules: Fulcrum implements Transition rules (Days, StorageClass GLACIER, GLACIER_IR or DEEP_ARCHIVE, Filter Prefix) to its archive tier."),
    )
}

fn invalid(msg: impl Into<String>) -> S3Error {
    S3Error::with_message(S3ErrorCode::InvalidArgument, msg.into())
}

/// One S3 rule as an engine rule on `bucket`.
fn from_s3(tenant: &str, bucket: &str, r: LifecycleRule_) -> S3Result<LifecycleRule> {
    if r.expiration.is_some() {
        return Err(not_implemented("Expiration"));
    }
    if r.noncurrent_version_expiration.is_some() || r.noncurrent_version_transitions.is_some() {
        return Err(not_implemented("NoncurrentVersion actions"));
    }
    let abort_days = match r.abort_incomplete_multipart_upload {
        Some(a) => {
            let days = a.days_after_initiation.ok_or_else(|| {
                invalid("AbortIncompleteMultipartUpload needs DaysAfterInitiation.")
            })?;
            Some(
                u32::try_from(days)
                    .ok()
                    .filter(|d| *d > 0)
                    .ok_or_else(|| invalid("DaysAfterInitiation must be a positive integer."))?,
            )
        }
        None => None,
    };
    let mut prefix = r.prefix.unwrap_or_default();
    if let Some(f) = r.filter {
        if f.and.is_some() || f.tag.is_some() {
            return Err(not_implemented("A Filter with And or Tag"));
        }
        if f.object_size_greater_than.is_some() || f.object_size_less_than.is_some() {
            return Err(not_implemented("A Filter on object size"));
        }
        if let Some(p) = f.prefix {
            prefix = p;
        }
    }
    if r.id.as_ref().is_some_and(|id| id.len() > 255) {
        return Err(invalid("A rule ID is at most 255 characters."));
    }
    let mut rule = LifecycleRule::for_bucket(tenant, bucket);
    rule.id = r.id;
    rule.prefix = prefix;
    rule.enabled = r.status.as_str() == ExpirationStatus::ENABLED;
    rule.abort_uploads_days = abort_days;
    let mut transitions = r.transitions.unwrap_or_default();
    let t = match (transitions.pop(), transitions.is_empty()) {
        (Some(t), true) => t,
        (None, _) if abort_days.is_some() => return Ok(rule),
        (None, _) => {
            return Err(invalid(
                "A lifecycle rule needs one Transition or AbortIncompleteMultipartUpload.",
            ))
        }
        (Some(_), false) => {
            return Err(not_implemented(
                "More than one Transition per rule (Fulcrum has one archive tier)",
            ))
        }
    };
    if t.date.is_some() {
        return Err(not_implemented("Transition Date"));
    }
    let days = t.days.ok_or_else(|| invalid("A Transition needs Days."))?;
    let days = u32::try_from(days).map_err(|_| invalid("Transition Days must not be negative."))?;
    let class = t
        .storage_class
        .map(|c| c.as_str().to_string())
        .unwrap_or_else(|| TransitionStorageClass::GLACIER_IR.to_string());
    if !ARCHIVE_CLASSES.contains(&class.as_str()) {
        return Err(S3Error::with_message(
            S3ErrorCode::InvalidStorageClass,
            format!("Transition StorageClass {class:?} is not supported: use GLACIER, GLACIER_IR or DEEP_ARCHIVE (Fulcrum's archive tier)."),
        ));
    }
    rule.older_than_days = Some(days);
    rule.storage_class = Some(class);
    Ok(rule)
}

type LifecycleRule_ = s3s::dto::LifecycleRule;

/// An engine rule as S3 shows it.
fn to_s3(r: LifecycleRule) -> LifecycleRule_ {
    let transition = r.older_than_days.map(|d| Transition {
        date: None,
        days: Some(d as i32),
        storage_class: Some(TransitionStorageClass::from(
            r.storage_class
                .clone()
                .unwrap_or_else(|| TransitionStorageClass::GLACIER_IR.to_string()),
        )),
    });
    LifecycleRule_ {
        abort_incomplete_multipart_upload: r.abort_uploads_days.map(|d| {
            AbortIncompleteMultipartUpload {
                days_after_initiation: Some(d as i32),
            }
        }),
        expiration: None,
        filter: Some(LifecycleRuleFilter {
            prefix: Some(r.prefix),
            ..Default::default()
        }),
        id: r.id,
        noncurrent_version_expiration: None,
        noncurrent_version_transitions: None,
        prefix: None,
        status: ExpirationStatus::from_static(if r.enabled {
            ExpirationStatus::ENABLED
        } else {
            ExpirationStatus::DISABLED
        }),
        transitions: transition.map(|t| vec![t]),
    }
}

impl S3Api {
    pub(crate) async fn do_put_bucket_lifecycle(
        &self,
        req: S3Request<PutBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<PutBucketLifecycleConfigurationOutput>> {
        let i = req.input;
        let cfg = i.lifecycle_configuration.ok_or_else(|| {
            S3Error::with_message(
                S3ErrorCode::MalformedXML,
                "The request needs a LifecycleConfiguration.",
            )
        })?;
        if cfg.rules.is_empty() {
            return Err(S3Error::with_message(
                S3ErrorCode::MalformedXML,
                "A LifecycleConfiguration needs at least one Rule.",
            ));
        }
        let rules = cfg
            .rules
            .into_iter()
            .map(|r| from_s3(&self.tenant, &i.bucket, r))
            .collect::<S3Result<Vec<_>>>()?;
        self.engine
            .put_bucket_lifecycle(&self.tenant, &i.bucket, &rules)
            .await
            .map_err(api_err)?;
        Ok(S3Response::new(
            PutBucketLifecycleConfigurationOutput::default(),
        ))
    }

    pub(crate) async fn do_get_bucket_lifecycle(
        &self,
        req: S3Request<GetBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<GetBucketLifecycleConfigurationOutput>> {
        let rules = self
            .engine
            .bucket_lifecycle(&self.tenant, &req.input.bucket)
            .await
            .map_err(api_err)?;
        if rules.is_empty() {
            return Err(S3Error::with_message(
                S3ErrorCode::NoSuchLifecycleConfiguration,
                "The lifecycle configuration does not exist.",
            ));
        }
        let mut out = GetBucketLifecycleConfigurationOutput::default();
        out.rules = Some(rules.into_iter().map(to_s3).collect());
        Ok(S3Response::new(out))
    }

    pub(crate) async fn do_delete_bucket_lifecycle(
        &self,
        req: S3Request<DeleteBucketLifecycleInput>,
    ) -> S3Result<S3Response<DeleteBucketLifecycleOutput>> {
        self.engine
            .put_bucket_lifecycle(&self.tenant, &req.input.bucket, &[])
            .await
            .map_err(api_err)?;
        Ok(S3Response::new(DeleteBucketLifecycleOutput::default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3_rule(class: &str, days: i32) -> LifecycleRule_ {
        let mut r = to_s3(LifecycleRule::for_bucket("t", "b"));
        r.transitions = Some(vec![Transition {
            date: None,
            days: Some(days),
            storage_class: Some(TransitionStorageClass::from(class.to_string())),
        }]);
        r
    }

    #[test]
    fn transitions_map_to_archive_rules_and_back() {
        let mut r = s3_rule("DEEP_ARCHIVE", 30);
        r.filter = Some(LifecycleRuleFilter {
            prefix: Some("logs/".into()),
            ..Default::default()
        });
        r.id = Some("cold".into());
        let rule = from_s3("t", "b", r).expect("supported");
        assert_eq!(rule.older_than_days, Some(30));
        assert_eq!(rule.prefix, "logs/");
        rule.validate().expect("valid");
        let back = to_s3(rule);
        assert_eq!(back.id.as_deref(), Some("cold"));
        let t = &back.transitions.expect("transition")[0];
        assert_eq!(
            t.storage_class.as_ref().map(|c| c.as_str()),
            Some("DEEP_ARCHIVE")
        );
    }

    #[test]
    fn abort_incomplete_uploads_alone_or_with_a_transition() {
        let abort = |days| AbortIncompleteMultipartUpload {
            days_after_initiation: Some(days),
        };
        let mut r = s3_rule("GLACIER", 30);
        r.transitions = None;
        r.abort_incomplete_multipart_upload = Some(abort(7));
        let rule = from_s3("t", "b", r.clone()).expect("an abort rule alone");
        assert_eq!(
            (rule.abort_uploads_days, rule.older_than_days),
            (Some(7), None)
        );
        rule.validate().expect("valid");
        let back = to_s3(rule);
        assert!(back.transitions.is_none());
        assert_eq!(
            back.abort_incomplete_multipart_upload
                .and_then(|a| a.days_after_initiation),
            Some(7)
        );
        r.abort_incomplete_multipart_upload = Some(abort(0));
        assert!(from_s3("t", "b", r.clone()).is_err());
        r.abort_incomplete_multipart_upload = None;
        assert!(from_s3("t", "b", r).is_err(), "neither action");
        let mut both = s3_rule("GLACIER", 30);
        both.abort_incomplete_multipart_upload = Some(abort(3));
        let rule = from_s3("t", "b", both).expect("both");
        assert_eq!(
            (rule.abort_uploads_days, rule.older_than_days),
            (Some(3), Some(30))
        );
    }

    #[test]
    fn unsupported_parts_are_refused() {
        assert!(from_s3("t", "b", s3_rule("STANDARD_IA", 30)).is_err());
        assert!(from_s3("t", "b", s3_rule("GLACIER", -1)).is_err());
        let mut r = s3_rule("GLACIER", 30);
        r.expiration = Some(LifecycleExpiration {
            days: Some(400),
            ..Default::default()
        });
        let e = from_s3("t", "b", r).expect_err("expiration");
        assert_eq!(*e.code(), S3ErrorCode::NotImplemented);
    }
}
