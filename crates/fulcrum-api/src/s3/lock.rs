//! S3 Object Lock: bucket lock configuration (enabled, default
//! retention), per-object retention and legal hold, the
//! `x-amz-object-lock-*` headers of writes and reads, with the error codes
//! AWS answers. We keep no versions, so an object is one version: an
//! overwrite of a protected key is refused (AWS would add a version).

use fulcrum_engine::{BucketLock, DefaultRetention, LockMode, ObjectInfo, ObjectLock, Retention};
use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result};

use super::objects::ts_exact;
use super::{api_err, key_check, S3Api};

fn err(code: S3ErrorCode, msg: &str) -> S3Error {
    S3Error::with_message(code, msg.to_string())
}

/// The refusal of a lock request on a bucket without Object Lock.
const NO_LOCK: (S3ErrorCode, &str) = (
    S3ErrorCode::InvalidRequest,
    "Bucket is missing Object Lock Configuration",
);

fn ms(t: &Timestamp) -> i64 {
    let t = time::OffsetDateTime::from(t.clone());
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// A retention mode as S3 spells it (upper case); anything else is
/// refused with `bad` (InvalidArgument in a header, MalformedXML in a
/// request body).
fn mode_from(s: &str, bad: &S3ErrorCode) -> S3Result<LockMode> {
    match s {
        ObjectLockMode::GOVERNANCE | ObjectLockMode::COMPLIANCE => LockMode::parse(s),
        _ => None,
    }
    .ok_or_else(|| {
        err(
            bad.clone(),
            "Unknown retention mode: use GOVERNANCE or COMPLIANCE.",
        )
    })
}

fn mode_out(m: LockMode) -> &'static str {
    match m {
        LockMode::Governance => ObjectLockMode::GOVERNANCE,
        LockMode::Compliance => ObjectLockMode::COMPLIANCE,
    }
}

/// A retention from a mode and a date, both or neither; the date must be
/// in the future.
fn retention_from(
    mode: Option<&str>,
    until: Option<&Timestamp>,
    bad: &S3ErrorCode,
) -> S3Result<Option<Retention>> {
    match (mode, until) {
        (None, None) => Ok(None),
        (Some(m), Some(t)) => {
            let until_ms = ms(t);
            if until_ms <= ms(&Timestamp::from(std::time::SystemTime::now())) {
                return Err(err(
                    S3ErrorCode::InvalidArgument,
                    "The retain until date must be in the future!",
                ));
            }
            Ok(Some(Retention {
                mode: mode_from(m, bad)?,
                until_ms,
            }))
        }
        _ => Err(err(
            S3ErrorCode::InvalidArgument,
            "x-amz-object-lock-retain-until-date and x-amz-object-lock-mode must both be supplied",
        )),
    }
}

fn legal_hold_from(s: &str, bad: &S3ErrorCode) -> S3Result<bool> {
    match s {
        ObjectLockLegalHoldStatus::ON => Ok(true),
        ObjectLockLegalHoldStatus::OFF => Ok(false),
        _ => Err(err(bad.clone(), "Legal hold status must be ON or OFF.")),
    }
}

impl S3Api {
    /// The lock a write's `x-amz-object-lock-*` headers ask for; refused
    /// on a bucket without Object Lock.
    pub(crate) async fn lock_headers(
        &self,
        bucket: &str,
        mode: Option<&ObjectLockMode>,
        until: Option<&Timestamp>,
        hold: Option<&ObjectLockLegalHoldStatus>,
    ) -> S3Result<ObjectLock> {
        if mode.is_none() && until.is_none() && hold.is_none() {
            return Ok(ObjectLock::default());
        }
        let lock = ObjectLock {
            retention: retention_from(
                mode.map(|m| m.as_str()),
                until,
                &S3ErrorCode::InvalidArgument,
            )?,
            legal_hold: hold
                .map(|h| legal_hold_from(h.as_str(), &S3ErrorCode::InvalidArgument))
                .transpose()?
                == Some(true),
        };
        self.require_lock(
            bucket,
            (
                S3ErrorCode::InvalidRequest,
                "Bucket is missing ObjectLockConfiguration",
            ),
        )
        .await?;
        Ok(lock)
    }

    /// Refuses with `code` and `msg` unless the bucket has Object Lock.
    async fn require_lock(
        &self,
        bucket: &str,
        (code, msg): (S3ErrorCode, &str),
    ) -> S3Result<BucketLock> {
        let lock = self
            .engine
            .bucket_lock(&self.tenant, bucket)
            .await
            .map_err(api_err)?;
        if !lock.enabled {
            return Err(err(code, msg));
        }
        Ok(lock)
    }

    pub(crate) async fn do_put_object_lock_configuration(
        &self,
        req: S3Request<PutObjectLockConfigurationInput>,
    ) -> S3Result<S3Response<PutObjectLockConfigurationOutput>> {
        let i = req.input;
        // Object Lock is chosen when a bucket is created (buckets keep no
        // versions, so it cannot be turned on later, as AWS refuses it on
        // an unversioned bucket).
        self.require_lock(
            &i.bucket,
            (
                S3ErrorCode::InvalidBucketState,
                "Object Lock can only be configured on a bucket created with it (x-amz-bucket-object-lock-enabled: true).",
            ),
        )
        .await?;
        let cfg = i.object_lock_configuration.unwrap_or_default();
        if cfg.object_lock_enabled.as_ref().map(|e| e.as_str()) != Some(ObjectLockEnabled::ENABLED)
        {
            return Err(err(
                S3ErrorCode::MalformedXML,
                "ObjectLockEnabled must be Enabled (Object Lock cannot be disabled).",
            ));
        }
        let default = match cfg.rule.and_then(|r| r.default_retention) {
            None => None,
            Some(d) => {
                let mode = d.mode.as_ref().map(|m| m.as_str()).ok_or_else(|| {
                    err(S3ErrorCode::MalformedXML, "DefaultRetention needs a Mode.")
                })?;
                let (days, years) = match (d.days, d.years) {
                    (Some(n), None) => (n, 0),
                    (None, Some(n)) => (0, n),
                    _ => {
                        return Err(err(
                            S3ErrorCode::MalformedXML,
                            "DefaultRetention needs exactly one of Days or Years.",
                        ))
                    }
                };
                if days < 0 || years < 0 || days + years == 0 {
                    let mut e = err(
                        S3ErrorCode::Custom("InvalidRetentionPeriod".into()),
                        "Default retention period must be a positive integer value.",
                    );
                    e.set_status_code(hyper::StatusCode::BAD_REQUEST);
                    return Err(e);
                }
                Some(DefaultRetention {
                    mode: mode_from(mode, &S3ErrorCode::MalformedXML)?,
                    days: days.into(),
                    years: years.into(),
                })
            }
        };
        self.engine
            .set_bucket_lock(
                &self.tenant,
                &i.bucket,
                &BucketLock {
                    enabled: true,
                    default,
                },
            )
            .await
            .map_err(api_err)?;
        Ok(S3Response::new(PutObjectLockConfigurationOutput::default()))
    }

    pub(crate) async fn do_get_object_lock_configuration(
        &self,
        req: S3Request<GetObjectLockConfigurationInput>,
    ) -> S3Result<S3Response<GetObjectLockConfigurationOutput>> {
        let lock = self
            .engine
            .bucket_lock(&self.tenant, &req.input.bucket)
            .await
            .map_err(api_err)?;
        if !lock.enabled {
            return Err(err(
                S3ErrorCode::ObjectLockConfigurationNotFoundError,
                "Object Lock configuration does not exist for this bucket",
            ));
        }
        let mut cfg = ObjectLockConfiguration::default();
        cfg.object_lock_enabled = Some(ObjectLockEnabled::from_static(ObjectLockEnabled::ENABLED));
        cfg.rule = lock.default.map(|d| {
            let mut dr = s3s::dto::DefaultRetention::default();
            dr.mode = Some(ObjectLockRetentionMode::from_static(mode_out(d.mode)));
            dr.days = (d.days > 0).then_some(d.days as i32);
            dr.years = (d.years > 0).then_some(d.years as i32);
            let mut rule = ObjectLockRule::default();
            rule.default_retention = Some(dr);
            rule
        });
        let mut out = GetObjectLockConfigurationOutput::default();
        out.object_lock_configuration = Some(cfg);
        Ok(S3Response::new(out))
    }

    /// An object's stored protection; a bucket without Object Lock whose
    /// object has none is InvalidRequest, as in S3 (objects a configured
    /// retention policy protects answer whatever their bucket).
    async fn object_lock(&self, bucket: &str, key: &str) -> S3Result<ObjectLock> {
        key_check(key)?;
        let info = self
            .engine
            .head_object(&self.tenant, bucket, key)
            .await
            .map_err(api_err)?;
        if info.lock.is_empty() {
            self.require_lock(bucket, NO_LOCK).await?;
        }
        Ok(info.lock)
    }

    pub(crate) async fn do_put_object_retention(
        &self,
        req: S3Request<PutObjectRetentionInput>,
    ) -> S3Result<S3Response<PutObjectRetentionOutput>> {
        let i = req.input;
        key_check(&i.key)?;
        self.require_lock(&i.bucket, NO_LOCK).await?;
        let r = i.retention.unwrap_or_default();
        let retention = retention_from(
            r.mode.as_ref().map(|m| m.as_str()),
            r.retain_until_date.as_ref(),
            &S3ErrorCode::MalformedXML,
        )?;
        self.engine
            .set_object_retention(
                &self.tenant,
                &i.bucket,
                &i.key,
                retention,
                i.bypass_governance_retention.unwrap_or(false),
            )
            .await
            .map_err(api_err)?;
        Ok(S3Response::new(PutObjectRetentionOutput::default()))
    }

    pub(crate) async fn do_get_object_retention(
        &self,
        req: S3Request<GetObjectRetentionInput>,
    ) -> S3Result<S3Response<GetObjectRetentionOutput>> {
        let lock = self.object_lock(&req.input.bucket, &req.input.key).await?;
        let Some(r) = lock.retention else {
            return Err(err(
                S3ErrorCode::NoSuchObjectLockConfiguration,
                "The specified object does not have a ObjectLock configuration",
            ));
        };
        let mut ret = ObjectLockRetention::default();
        ret.mode = Some(ObjectLockRetentionMode::from_static(mode_out(r.mode)));
        ret.retain_until_date = Some(ts_exact(r.until_ms));
        let mut out = GetObjectRetentionOutput::default();
        out.retention = Some(ret);
        Ok(S3Response::new(out))
    }

    pub(crate) async fn do_put_object_legal_hold(
        &self,
        req: S3Request<PutObjectLegalHoldInput>,
    ) -> S3Result<S3Response<PutObjectLegalHoldOutput>> {
        let i = req.input;
        key_check(&i.key)?;
        self.require_lock(&i.bucket, NO_LOCK).await?;
        let status = i
            .legal_hold
            .and_then(|h| h.status)
            .ok_or_else(|| err(S3ErrorCode::MalformedXML, "LegalHold needs a Status."))?;
        self.engine
            .set_legal_hold(
                &self.tenant,
                &i.bucket,
                &i.key,
                legal_hold_from(status.as_str(), &S3ErrorCode::MalformedXML)?,
            )
            .await
            .map_err(api_err)?;
        Ok(S3Response::new(PutObjectLegalHoldOutput::default()))
    }

    pub(crate) async fn do_get_object_legal_hold(
        &self,
        req: S3Request<GetObjectLegalHoldInput>,
    ) -> S3Result<S3Response<GetObjectLegalHoldOutput>> {
        let lock = self.object_lock(&req.input.bucket, &req.input.key).await?;
        let mut hold = ObjectLockLegalHold::default();
        hold.status = Some(ObjectLockLegalHoldStatus::from_static(if lock.legal_hold {
            ObjectLockLegalHoldStatus::ON
        } else {
            ObjectLockLegalHoldStatus::OFF
        }));
        let mut out = GetObjectLegalHoldOutput::default();
        out.legal_hold = Some(hold);
        Ok(S3Response::new(out))
    }
}

/// The `x-amz-object-lock-*` response headers of HEAD and GET.
pub(crate) struct LockOut {
    pub mode: Option<ObjectLockMode>,
    pub until: Option<Timestamp>,
    pub hold: Option<ObjectLockLegalHoldStatus>,
}

pub(crate) fn lock_out(info: &ObjectInfo) -> LockOut {
    let r = info.lock.retention;
    LockOut {
        mode: r.map(|r| ObjectLockMode::from_static(mode_out(r.mode))),
        until: r.map(|r| ts_exact(r.until_ms)),
        hold: info
            .lock
            .legal_hold
            .then(|| ObjectLockLegalHoldStatus::from_static(ObjectLockLegalHoldStatus::ON)),
    }
}
