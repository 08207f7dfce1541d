//! The S3-compatible API: `S3Api` implements s3s's `S3` trait on the
//! engine; s3s parses requests, checks SigV4 (header and presigned) and
//! writes responses and error XML.

mod acl;
mod attributes;
mod checksum;
mod conditions;
mod cors;
mod crc_combine;
mod digest;
mod encoding;
mod errors;
mod front;
mod headers;
mod host;
mod lifecycle;
mod lock;
mod multipart;
mod objects;
mod presign;
mod region;
mod request_id;
mod sse;
mod tagging;
mod unconfigured;
mod unsupported;

use std::sync::Arc;

use fulcrum_engine::{CatalogError, Engine, EngineError};
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;

pub use cors::{bad_preflight, CorsAsk};
pub(crate) use errors::{api_err, key_check, version_check};
pub use front::S3Front;
pub use host::Domains;
pub use request_id::{new_request_id, stamp};

/// An answer given before s3s sees the request, for requests s3s would
/// answer wrongly: a signing region that is not a region name (see
/// `region`), a presigned URL valid for longer than SigV4 allows or for
/// a negative time (see `presign`).
pub fn refuse_early<B>(req: &hyper::Request<B>) -> Option<hyper::Response<s3s::Body>> {
    if let Some(region) = region::malformed_region(req) {
        return Some(region::wrong_region_response(&region));
    }
    presign::refused_lifetime(req).map(presign::refusal_response)
}

/// Root credentials of the S3 API.
#[derive(Debug, Clone)]
pub struct S3Credentials {
    pub access_key: String,
    pub secret_key: String,
}

/// The S3 API on one engine; every request acts for one tenant.
#[derive(Clone)]
pub struct S3Api {
    pub(crate) engine: Engine,
    pub(crate) tenant: Arc<str>,
}

impl S3Api {
    pub fn new(engine: Engine, tenant: &str) -> Self {
        Self {
            engine,
            tenant: tenant.into(),
        }
    }

    /// Builds the s3s service with SigV4 authentication, behind Fulcrum's
    /// front (see `front`); `domains` are the base domains of
    /// virtual-hosted-style requests.
    pub fn into_service(self, creds: &S3Credentials, domains: Domains) -> S3Front {
        let encrypted = self.engine.config().encryption_key.is_some();
        let mut b = S3ServiceBuilder::new(self);
        b.set_access(sse::Access { encrypted });
        b.set_auth(RootAuth(SimpleAuth::from_single(
            creds.access_key.clone(),
            creds.secret_key.clone(),
        )));
        b.set_host(domains);
        S3Front::new(b.build())
    }

    /// Fails with NoSuchBucket unless the tenant has bucket `name`.
    pub(crate) async fn bucket_exists(&self, name: &str) -> s3s::S3Result<()> {
        self.engine
            .bucket(&self.tenant, name)
            .await
            .map(|_| ())
            .map_err(api_err)
    }

    /// A bucket setting (tag set, CORS rules): `None` when not set.
    pub(crate) async fn setting(&self, bucket: &str, name: &str) -> S3Result<Option<String>> {
        self.engine
            .bucket_setting(&self.tenant, bucket, name)
            .await
            .map_err(api_err)
    }

    /// Sets a bucket setting, or removes it with `None`.
    pub(crate) async fn set_setting(
        &self,
        bucket: &str,
        name: &str,
        value: Option<&str>,
    ) -> S3Result<()> {
        self.engine
            .set_bucket_setting(&self.tenant, bucket, (name, value))
            .await
            .map_err(api_err)
    }

    /// Removes a bucket setting: S3's Delete* configuration calls (s3s
    /// answers them 204).
    pub(crate) async fn clear_setting<T: Default>(
        &self,
        bucket: &str,
        name: &str,
    ) -> S3Result<S3Response<T>> {
        self.set_setting(bucket, name, None).await?;
        Ok(S3Response::new(T::default()))
    }
}

/// The root credentials; an unknown access key is `InvalidAccessKeyId`,
/// as S3 answers.
struct RootAuth(SimpleAuth);

#[async_trait::async_trait]
impl s3s::auth::S3Auth for RootAuth {
    async fn get_secret_key(&self, access_key: &str) -> s3s::S3Result<s3s::auth::SecretKey> {
        self.0.lookup(access_key).cloned().ok_or_else(|| {
            s3s::S3Error::with_message(
                s3s::S3ErrorCode::InvalidAccessKeyId,
                "The AWS access key Id you provided does not exist in our records.",
            )
        })
    }
}

/// Bucket names as S3 allows them (3-63 of a-z, 0-9, '.', '-').
fn bucket_check(name: &str) -> s3s::S3Result<()> {
    let ok = (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(s3s::S3Error::with_message(
            s3s::S3ErrorCode::InvalidBucketName,
            "Bucket names are 3-63 characters of a-z, 0-9, '.' and '-', starting and ending with a letter or digit.",
        ))
    }
}

fn common_prefixes(prefixes: Vec<String>) -> CommonPrefixList {
    prefixes
        .into_iter()
        .map(|p| {
            let mut cp = CommonPrefix::default();
            cp.prefix = Some(p);
            cp
        })
        .collect()
}

/// Continuation tokens are hex so any key survives XML and URLs.
fn encode_token(s: &str) -> String {
    hex::encode(s.as_bytes())
}

fn decode_token(s: &str) -> s3s::S3Result<String> {
    hex::decode(s)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            s3s::S3Error::with_message(
                s3s::S3ErrorCode::InvalidArgument,
                "The continuation token is not valid.",
            )
        })
}

use s3s::dto::*;
use s3s::{S3Request, S3Response, S3Result};

#[async_trait::async_trait]
impl s3s::S3 for S3Api {
    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        bucket_check(&req.input.bucket)?;
        let want_lock = req.input.object_lock_enabled_for_bucket == Some(true);
        match self
            .engine
            .create_bucket(&self.tenant, &req.input.bucket)
            .await
        {
            Ok(_) => {}
            // Creating a bucket one already has, as it is, succeeds and
            // changes nothing, as in S3's us-east-1 (the region Fulcrum
            // reports); asking for another Object Lock setting does not.
            Err(e @ EngineError::Catalog(CatalogError::BucketExists(_))) => {
                let lock = self
                    .engine
                    .bucket_lock(&self.tenant, &req.input.bucket)
                    .await
                    .map_err(api_err)?;
                if lock.enabled != want_lock {
                    return Err(api_err(e));
                }
                let mut out = CreateBucketOutput::default();
                out.location = Some(format!("/{}", req.input.bucket));
                return Ok(S3Response::new(out));
            }
            Err(e) => return Err(api_err(e)),
        }
        if want_lock {
            let lock = fulcrum_engine::BucketLock {
                enabled: true,
                default: None,
            };
            self.engine
                .set_bucket_lock(&self.tenant, &req.input.bucket, &lock)
                .await
                .map_err(api_err)?;
        }
        let mut out = CreateBucketOutput::default();
        out.location = Some(format!("/{}", req.input.bucket));
        Ok(S3Response::new(out))
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        self.engine
            .delete_bucket(&self.tenant, &req.input.bucket)
            .await
            .map_err(api_err)?;
        Ok(S3Response::new(DeleteBucketOutput::default()))
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.bucket_exists(&req.input.bucket).await?;
        // The region, as AWS names it (x-amz-bucket-region): tools that
        // find a bucket's region (the Go SDK's GetBucketRegion) read it.
        let mut out = HeadBucketOutput::default();
        out.bucket_region = Some(region::REGION.to_string());
        Ok(S3Response::new(out))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.bucket_exists(&req.input.bucket).await?;
        Ok(S3Response::new(GetBucketLocationOutput::default()))
    }

    /// Versioning is never enabled: an overwrite replaces the object (locked
    /// objects refuse it), so the answer is the unversioned state.
    async fn get_bucket_versioning(
        &self,
        req: S3Request<GetBucketVersioningInput>,
    ) -> S3Result<S3Response<GetBucketVersioningOutput>> {
        self.bucket_exists(&req.input.bucket).await?;
        Ok(S3Response::new(GetBucketVersioningOutput::default()))
    }

    async fn get_bucket_acl(
        &self,
        req: S3Request<GetBucketAclInput>,
    ) -> S3Result<S3Response<GetBucketAclOutput>> {
        self.do_get_bucket_acl(req).await
    }

    async fn put_bucket_acl(
        &self,
        req: S3Request<PutBucketAclInput>,
    ) -> S3Result<S3Response<PutBucketAclOutput>> {
        self.do_put_bucket_acl(req).await
    }

    /// Deleting a configuration Fulcrum never holds (a policy, a public
    /// access block, an encryption configuration) succeeds and changes
    /// nothing, as AWS answers it for a bucket without one: `terraform
    /// destroy` and cleanup scripts call these.
    async fn delete_bucket_policy(
        &self,
        req: S3Request<DeleteBucketPolicyInput>,
    ) -> S3Result<S3Response<DeleteBucketPolicyOutput>> {
        self.bucket_exists(&req.input.bucket).await?;
        Ok(S3Response::new(DeleteBucketPolicyOutput::default()))
    }

    async fn delete_public_access_block(
        &self,
        req: S3Request<DeletePublicAccessBlockInput>,
    ) -> S3Result<S3Response<DeletePublicAccessBlockOutput>> {
        self.bucket_exists(&req.input.bucket).await?;
        Ok(S3Response::new(DeletePublicAccessBlockOutput::default()))
    }

    async fn delete_bucket_encryption(
        &self,
        req: S3Request<DeleteBucketEncryptionInput>,
    ) -> S3Result<S3Response<DeleteBucketEncryptionOutput>> {
        self.bucket_exists(&req.input.bucket).await?;
        Ok(S3Response::new(DeleteBucketEncryptionOutput::default()))
    }

    async fn get_bucket_policy(
        &self,
        req: S3Request<GetBucketPolicyInput>,
    ) -> S3Result<S3Response<GetBucketPolicyOutput>> {
        let code = s3s::S3ErrorCode::NoSuchBucketPolicy;
        self.none_configured(&req.input.bucket, code, "bucket policy")
            .await
    }

    // Settings Fulcrum never holds: see unconfigured.rs.

    async fn get_bucket_replication(
        &self,
        req: S3Request<GetBucketReplicationInput>,
    ) -> S3Result<S3Response<GetBucketReplicationOutput>> {
        self.do_get_bucket_replication(req).await
    }

    async fn get_bucket_website(
        &self,
        req: S3Request<GetBucketWebsiteInput>,
    ) -> S3Result<S3Response<GetBucketWebsiteOutput>> {
        self.do_get_bucket_website(req).await
    }

    async fn get_bucket_ownership_controls(
        &self,
        req: S3Request<GetBucketOwnershipControlsInput>,
    ) -> S3Result<S3Response<GetBucketOwnershipControlsOutput>> {
        self.do_get_bucket_ownership_controls(req).await
    }

    async fn get_public_access_block(
        &self,
        req: S3Request<GetPublicAccessBlockInput>,
    ) -> S3Result<S3Response<GetPublicAccessBlockOutput>> {
        self.do_get_public_access_block(req).await
    }

    async fn get_bucket_policy_status(
        &self,
        req: S3Request<GetBucketPolicyStatusInput>,
    ) -> S3Result<S3Response<GetBucketPolicyStatusOutput>> {
        self.do_get_bucket_policy_status(req).await
    }

    async fn get_bucket_encryption(
        &self,
        req: S3Request<GetBucketEncryptionInput>,
    ) -> S3Result<S3Response<GetBucketEncryptionOutput>> {
        self.do_get_bucket_encryption(req).await
    }

    async fn get_bucket_notification_configuration(
        &self,
        req: S3Request<GetBucketNotificationConfigurationInput>,
    ) -> S3Result<S3Response<GetBucketNotificationConfigurationOutput>> {
        self.do_get_bucket_notification_configuration(req).await
    }

    async fn get_bucket_logging(
        &self,
        req: S3Request<GetBucketLoggingInput>,
    ) -> S3Result<S3Response<GetBucketLoggingOutput>> {
        self.do_get_bucket_logging(req).await
    }

    async fn get_bucket_accelerate_configuration(
        &self,
        req: S3Request<GetBucketAccelerateConfigurationInput>,
    ) -> S3Result<S3Response<GetBucketAccelerateConfigurationOutput>> {
        self.do_get_bucket_accelerate_configuration(req).await
    }

    async fn get_bucket_request_payment(
        &self,
        req: S3Request<GetBucketRequestPaymentInput>,
    ) -> S3Result<S3Response<GetBucketRequestPaymentOutput>> {
        self.do_get_bucket_request_payment(req).await
    }

    async fn get_bucket_cors(
        &self,
        req: S3Request<GetBucketCorsInput>,
    ) -> S3Result<S3Response<GetBucketCorsOutput>> {
        self.do_get_bucket_cors(req).await
    }

    async fn put_bucket_cors(
        &self,
        req: S3Request<PutBucketCorsInput>,
    ) -> S3Result<S3Response<PutBucketCorsOutput>> {
        self.do_put_bucket_cors(req).await
    }

    async fn delete_bucket_cors(
        &self,
        req: S3Request<DeleteBucketCorsInput>,
    ) -> S3Result<S3Response<DeleteBucketCorsOutput>> {
        self.do_delete_bucket_cors(req).await
    }

    async fn get_bucket_tagging(
        &self,
        req: S3Request<GetBucketTaggingInput>,
    ) -> S3Result<S3Response<GetBucketTaggingOutput>> {
        self.do_get_bucket_tagging(req).await
    }

    async fn put_bucket_tagging(
        &self,
        req: S3Request<PutBucketTaggingInput>,
    ) -> S3Result<S3Response<PutBucketTaggingOutput>> {
        self.do_put_bucket_tagging(req).await
    }

    async fn delete_bucket_tagging(
        &self,
        req: S3Request<DeleteBucketTaggingInput>,
    ) -> S3Result<S3Response<DeleteBucketTaggingOutput>> {
        self.do_delete_bucket_tagging(req).await
    }

    async fn get_object_acl(
        &self,
        req: S3Request<GetObjectAclInput>,
    ) -> S3Result<S3Response<GetObjectAclOutput>> {
        self.do_get_object_acl(req).await
    }

    async fn put_object_acl(
        &self,
        req: S3Request<PutObjectAclInput>,
    ) -> S3Result<S3Response<PutObjectAclOutput>> {
        self.do_put_object_acl(req).await
    }

    /// Buckets in name order; with `max-buckets` a page at a time
    /// (continuation token: the last name sent) and with `prefix` only
    /// the names that start with it, as S3's paginated ListBuckets.
    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let i = req.input;
        let after = i
            .continuation_token
            .as_deref()
            .map(decode_token)
            .transpose()?;
        let prefix = i.prefix.clone().unwrap_or_default();
        let max = match i.max_buckets {
            Some(n) if !(1..=10_000).contains(&n) => {
                return Err(s3s::s3_error!(
                    InvalidArgument,
                    "max-buckets must be from 1 to 10000"
                ))
            }
            Some(n) => n as usize,
            None => usize::MAX,
        };
        let mut names = self
            .engine
            .list_buckets(&self.tenant)
            .await
            .map_err(api_err)?;
        names.sort_by(|a, b| a.name.cmp(&b.name));
        let mut page: Vec<_> = names
            .into_iter()
            // Names starting with a dot belong to platform services (the
            // DICOM archive's `.dicom`); S3 bucket names never start with one.
            .filter(|b| !b.name.starts_with('.') && b.name.starts_with(&prefix))
            .filter(|b| after.as_deref().is_none_or(|a| b.name.as_str() > a))
            .take(max.saturating_add(1))
            .collect();
        let more = page.len() > max;
        page.truncate(max);
        let mut out = ListBucketsOutput::default();
        out.continuation_token = more
            .then(|| page.last().map(|b| encode_token(&b.name)))
            .flatten();
        out.buckets = Some(
            page.into_iter()
                .map(|b| {
                    let mut out = Bucket::default();
                    out.name = Some(b.name);
                    out.creation_date = Some(objects::ts(b.created_at));
                    out
                })
                .collect(),
        );
        out.prefix = i.prefix;
        out.owner = Some(self.owner());
        Ok(S3Response::new(out))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let i = req.input;
        let start = match &i.continuation_token {
            Some(t) => decode_token(t)?,
            None => i.start_after.clone().unwrap_or_default(),
        };
        let mut l = self
            .listing(
                &i.bucket,
                (i.prefix, i.delimiter),
                &start,
                i.max_keys,
                i.encoding_type.as_ref(),
            )
            .await?;
        if i.fetch_owner == Some(true) {
            l.page.owned_by(&self.owner());
        }
        let mut out = ListObjectsV2Output::default();
        out.key_count = Some((l.page.contents.len() + l.page.prefixes.len()) as i32);
        out.is_truncated = Some(l.page.next.is_some());
        out.next_continuation_token = l.page.next.as_deref().map(encode_token);
        out.common_prefixes = Some(common_prefixes(l.page.prefixes));
        out.contents = Some(l.page.contents);
        out.name = Some(i.bucket);
        out.prefix = Some(l.prefix);
        out.delimiter = l.delimiter;
        out.max_keys = Some(l.max_keys);
        out.continuation_token = i.continuation_token;
        out.start_after = l.enc.opt(i.start_after);
        out.encoding_type = i.encoding_type;
        Ok(S3Response::new(out))
    }

    /// Buckets are unversioned: every object is its only version, with
    /// the version ID `null`, as S3 lists a bucket that never had
    /// versioning (rclone and backup tools ask before they delete).
    async fn list_object_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        let i = req.input;
        let marker = i.key_marker.clone().unwrap_or_default();
        let l = self
            .listing(
                &i.bucket,
                (i.prefix, i.delimiter),
                &marker,
                i.max_keys,
                i.encoding_type.as_ref(),
            )
            .await?;
        let owner = self.owner();
        let versions = l
            .page
            .contents
            .into_iter()
            .map(|o| {
                let mut v = ObjectVersion::default();
                v.storage_class = o
                    .storage_class
                    .map(|c| ObjectVersionStorageClass::from(c.as_str().to_string()));
                v.key = o.key;
                v.e_tag = o.e_tag;
                v.checksum_algorithm = o.checksum_algorithm;
                v.checksum_type = o.checksum_type;
                v.size = o.size;
                v.last_modified = o.last_modified;
                v.is_latest = Some(true);
                v.version_id = Some("null".into());
                v.owner = Some(owner.clone());
                v
            })
            .collect();
        let mut out = ListObjectVersionsOutput::default();
        out.is_truncated = Some(l.page.next.is_some());
        out.next_version_id_marker = l.next_marker.as_ref().map(|_| "null".to_string());
        out.next_key_marker = l.next_marker;
        out.common_prefixes = Some(common_prefixes(l.page.prefixes));
        out.versions = Some(versions);
        out.name = Some(i.bucket);
        out.prefix = Some(l.prefix);
        out.delimiter = l.delimiter;
        out.max_keys = Some(l.max_keys);
        out.key_marker = l.enc.opt(i.key_marker);
        out.version_id_marker = i.version_id_marker;
        out.encoding_type = i.encoding_type;
        Ok(S3Response::new(out))
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let i = req.input;
        let marker = i.marker.clone().unwrap_or_default();
        // Version 1 echoes its prefix as sent, encoded or not (AWS does;
        // boto3 decodes only the delimiter and markers of a v1 answer).
        let raw_prefix = i.prefix.clone().unwrap_or_default();
        let mut l = self
            .listing(
                &i.bucket,
                (i.prefix, i.delimiter),
                &marker,
                i.max_keys,
                i.encoding_type.as_ref(),
            )
            .await?;
        l.page.owned_by(&self.owner());
        let mut out = ListObjectsOutput::default();
        out.is_truncated = Some(l.page.next.is_some());
        out.next_marker = l.next_marker;
        out.common_prefixes = Some(common_prefixes(l.page.prefixes));
        out.contents = Some(l.page.contents);
        out.name = Some(i.bucket);
        out.prefix = Some(raw_prefix);
        // Echoed even when empty, as S3 does (clients read it).
        out.marker = Some(l.enc.name(i.marker.unwrap_or_default()));
        out.delimiter = l.delimiter;
        out.max_keys = Some(l.max_keys);
        out.encoding_type = i.encoding_type;
        Ok(S3Response::new(out))
    }

    async fn put_object_tagging(
        &self,
        req: S3Request<PutObjectTaggingInput>,
    ) -> S3Result<S3Response<PutObjectTaggingOutput>> {
        self.do_put_object_tagging(req).await
    }

    async fn get_object_tagging(
        &self,
        req: S3Request<GetObjectTaggingInput>,
    ) -> S3Result<S3Response<GetObjectTaggingOutput>> {
        self.do_get_object_tagging(req).await
    }

    async fn delete_object_tagging(
        &self,
        req: S3Request<DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
        self.do_delete_object_tagging(req).await
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        errors::storage_class_check(req.input.storage_class.as_ref())?;
        self.do_put_object(req).await
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        self.do_get_object(req).await
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        self.do_head_object(req).await
    }

    async fn get_object_attributes(
        &self,
        req: S3Request<GetObjectAttributesInput>,
    ) -> S3Result<S3Response<GetObjectAttributesOutput>> {
        self.do_get_object_attributes(req).await
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        self.do_delete_object(req).await
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        self.do_delete_objects(req).await
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        errors::storage_class_check(req.input.storage_class.as_ref())?;
        self.do_copy_object(req).await
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        errors::storage_class_check(req.input.storage_class.as_ref())?;
        self.do_create_multipart_upload(req).await
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        self.do_upload_part(req).await
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        self.do_upload_part_copy(req).await
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        self.do_list_parts(req).await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        self.do_complete_multipart_upload(req).await
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        self.do_abort_multipart_upload(req).await
    }

    async fn put_object_lock_configuration(
        &self,
        req: S3Request<PutObjectLockConfigurationInput>,
    ) -> S3Result<S3Response<PutObjectLockConfigurationOutput>> {
        self.do_put_object_lock_configuration(req).await
    }

    async fn get_object_lock_configuration(
        &self,
        req: S3Request<GetObjectLockConfigurationInput>,
    ) -> S3Result<S3Response<GetObjectLockConfigurationOutput>> {
        self.do_get_object_lock_configuration(req).await
    }

    async fn put_object_retention(
        &self,
        req: S3Request<PutObjectRetentionInput>,
    ) -> S3Result<S3Response<PutObjectRetentionOutput>> {
        self.do_put_object_retention(req).await
    }

    async fn get_object_retention(
        &self,
        req: S3Request<GetObjectRetentionInput>,
    ) -> S3Result<S3Response<GetObjectRetentionOutput>> {
        self.do_get_object_retention(req).await
    }

    async fn put_object_legal_hold(
        &self,
        req: S3Request<PutObjectLegalHoldInput>,
    ) -> S3Result<S3Response<PutObjectLegalHoldOutput>> {
        self.do_put_object_legal_hold(req).await
    }

    async fn get_object_legal_hold(
        &self,
        req: S3Request<GetObjectLegalHoldInput>,
    ) -> S3Result<S3Response<GetObjectLegalHoldOutput>> {
        self.do_get_object_legal_hold(req).await
    }

    async fn put_bucket_lifecycle_configuration(
        &self,
        req: S3Request<PutBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<PutBucketLifecycleConfigurationOutput>> {
        self.do_put_bucket_lifecycle(req).await
    }

    async fn get_bucket_lifecycle_configuration(
        &self,
        req: S3Request<GetBucketLifecycleConfigurationInput>,
    ) -> S3Result<S3Response<GetBucketLifecycleConfigurationOutput>> {
        self.do_get_bucket_lifecycle(req).await
    }

    async fn delete_bucket_lifecycle(
        &self,
        req: S3Request<DeleteBucketLifecycleInput>,
    ) -> S3Result<S3Response<DeleteBucketLifecycleOutput>> {
        self.do_delete_bucket_lifecycle(req).await
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        self.do_list_multipart_uploads(req).await
    }
}
