//! Bucket settings Fulcrum never holds (replication, website, logging,
//! notifications, ownership controls, public access blocks, requester
//! pays, transfer acceleration): reading one answers as AWS does for a
//! bucket without it, a "not found" error of its own or an empty
//! configuration, instead of 501. SDKs and tools (minio-py, terraform,
//! rclone's bucket checks) read these and treat 501 as a failure. Writing
//! one stays 501 (s3s's default): nothing would act on it.

use s3s::dto::*;
use s3s::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result};

use super::S3Api;

impl S3Api {
    /// `Ok(output)` for an existing bucket (an empty configuration).
    async fn empty<T>(&self, bucket: &str, output: T) -> S3Result<S3Response<T>> {
        self.bucket_exists(bucket).await?;
        Ok(S3Response::new(output))
    }

    /// The "not found" answer AWS gives for a setting the bucket lacks,
    /// with its status (404) where s3s knows the code under another one
    /// or not at all.
    async fn missing<T>(&self, bucket: &str, code: &'static str, what: &str) -> S3Result<T> {
        let code = S3ErrorCode::from_bytes(code.as_bytes())
            .unwrap_or_else(|| S3ErrorCode::Custom(code.into()));
        let found = code.clone();
        self.none_configured(bucket, code, what)
            .await
            .map_err(|mut e: S3Error| {
                if *e.code() == found {
                    e.set_status_code(hyper::StatusCode::NOT_FOUND);
                }
                e
            })
    }

    pub(crate) async fn do_get_bucket_replication(
        &self,
        req: S3Request<GetBucketReplicationInput>,
    ) -> S3Result<S3Response<GetBucketReplicationOutput>> {
        let code = "ReplicationConfigurationNotFoundError";
        self.missing(&req.input.bucket, code, "replication configuration")
            .await
    }

    pub(crate) async fn do_get_bucket_website(
        &self,
        req: S3Request<GetBucketWebsiteInput>,
    ) -> S3Result<S3Response<GetBucketWebsiteOutput>> {
        let code = "NoSuchWebsiteConfiguration";
        self.missing(&req.input.bucket, code, "website configuration")
            .await
    }

    pub(crate) async fn do_get_bucket_ownership_controls(
        &self,
        req: S3Request<GetBucketOwnershipControlsInput>,
    ) -> S3Result<S3Response<GetBucketOwnershipControlsOutput>> {
        let code = "OwnershipControlsNotFoundError";
        self.missing(&req.input.bucket, code, "ownership controls")
            .await
    }

    pub(crate) async fn do_get_public_access_block(
        &self,
        req: S3Request<GetPublicAccessBlockInput>,
    ) -> S3Result<S3Response<GetPublicAccessBlockOutput>> {
        let code = "NoSuchPublicAccessBlockConfiguration";
        self.missing(&req.input.bucket, code, "public access block configuration")
            .await
    }

    pub(crate) async fn do_get_bucket_policy_status(
        &self,
        req: S3Request<GetBucketPolicyStatusInput>,
    ) -> S3Result<S3Response<GetBucketPolicyStatusOutput>> {
        self.missing(&req.input.bucket, "NoSuchBucketPolicy", "bucket policy")
            .await
    }

    /// With encryption at rest every object is encrypted (SSE-S3, as
    /// object answers say); without it the bucket has no configuration.
    pub(crate) async fn do_get_bucket_encryption(
        &self,
        req: S3Request<GetBucketEncryptionInput>,
    ) -> S3Result<S3Response<GetBucketEncryptionOutput>> {
        let Some(sse) = self.sse() else {
            let code = "ServerSideEncryptionConfigurationNotFoundError";
            return self
                .missing(
                    &req.input.bucket,
                    code,
                    "server-side encryption configuration",
                )
                .await;
        };
        let rule = ServerSideEncryptionRule {
            apply_server_side_encryption_by_default: Some(ServerSideEncryptionByDefault {
                kms_master_key_id: None,
                sse_algorithm: sse,
            }),
            bucket_key_enabled: Some(false),
        };
        let out = GetBucketEncryptionOutput {
            server_side_encryption_configuration: Some(ServerSideEncryptionConfiguration {
                rules: vec![rule],
            }),
        };
        self.empty(&req.input.bucket, out).await
    }

    pub(crate) async fn do_get_bucket_notification_configuration(
        &self,
        req: S3Request<GetBucketNotificationConfigurationInput>,
    ) -> S3Result<S3Response<GetBucketNotificationConfigurationOutput>> {
        self.empty(&req.input.bucket, Default::default()).await
    }

    pub(crate) async fn do_get_bucket_logging(
        &self,
        req: S3Request<GetBucketLoggingInput>,
    ) -> S3Result<S3Response<GetBucketLoggingOutput>> {
        self.empty(&req.input.bucket, Default::default()).await
    }

    pub(crate) async fn do_get_bucket_accelerate_configuration(
        &self,
        req: S3Request<GetBucketAccelerateConfigurationInput>,
    ) -> S3Result<S3Response<GetBucketAccelerateConfigurationOutput>> {
        self.empty(&req.input.bucket, Default::default()).await
    }

    pub(crate) async fn do_get_bucket_request_payment(
        &self,
        req: S3Request<GetBucketRequestPaymentInput>,
    ) -> S3Result<S3Response<GetBucketRequestPaymentOutput>> {
        let out = GetBucketRequestPaymentOutput {
            payer: Some(Payer::from_static(Payer::BUCKET_OWNER)),
        };
        self.empty(&req.input.bucket, out).await
    }
}
