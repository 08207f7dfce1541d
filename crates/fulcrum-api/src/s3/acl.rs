//! Access control lists. Fulcrum has one owner per tenant (its S3
//! credentials) and no public or cross-account access through ACLs, so the
//! ACL of every bucket and object is the owner with FULL_CONTROL. Setting
//! that same ACL (`private`, `bucket-owner-full-control`, or a policy that
//! grants only the owner) succeeds, as tools such as s3cmd and rclone send
//! it by habit; any other grant is refused as not implemented, never
//! silently ignored. Bucket policies, CORS rules and bucket tags cannot be
//! set either, so reading them answers S3's "none configured" errors.

use s3s::dto::*;
use s3s::{s3_error, S3Error, S3ErrorCode, S3Request, S3Response, S3Result};

use super::S3Api;

/// The canned ACLs that grant nothing beyond the owner's control (the
/// bucket owner is the object owner here); an empty one is none (s3fs
/// sends `x-amz-acl:` on every write).
pub(crate) fn owner_only_canned(canned: &str) -> bool {
    matches!(
        canned.trim(),
        "" | "private" | "bucket-owner-full-control" | "bucket-owner-read"
    )
}

/// The refusal of any ACL that would grant more (a public-read canned ACL
/// or a grant header on a PUT, a copy, a new bucket or upload, or a
/// Put*Acl): stored silently private, the client would believe it public.
pub(crate) fn not_granted() -> S3Error {
    s3_error!(
        NotImplemented,
        "Fulcrum does not grant access through ACLs: buckets and objects stay private to \
         their owner (only the private ACL can be set); nothing was done"
    )
}

/// [`S3Api::check_owner_only`] of a Put*Acl input.
macro_rules! check_owner_only {
    ($api:expr, $i:expr) => {
        $api.check_owner_only(
            $i.acl.as_ref().map(|a| a.as_str()),
            $i.access_control_policy.as_ref(),
            [
                &$i.grant_full_control,
                &$i.grant_read,
                &$i.grant_read_acp,
                &$i.grant_write,
                &$i.grant_write_acp,
            ],
        )
    };
}

impl S3Api {
    pub(crate) fn owner(&self) -> Owner {
        let mut owner = Owner::default();
        owner.id = Some(self.tenant.to_string());
        owner.display_name = Some(self.tenant.to_string());
        owner
    }

    /// The one ACL there is: the owner with full control.
    fn owner_only(&self) -> (Option<Grants>, Option<Owner>) {
        let owner = self.owner();
        let grantee = Grantee {
            display_name: owner.display_name.clone(),
            email_address: None,
            id: owner.id.clone(),
            type_: Type::from_static(Type::CANONICAL_USER),
            uri: None,
        };
        let mut grant = Grant::default();
        grant.grantee = Some(grantee);
        grant.permission = Some(Permission::from_static(Permission::FULL_CONTROL));
        (Some(vec![grant]), Some(owner))
    }

    /// Refuses an ACL that would grant anything beyond the owner's control.
    fn check_owner_only(
        &self,
        canned: Option<&str>,
        policy: Option<&AccessControlPolicy>,
        grant_headers: [&Option<String>; 5],
    ) -> S3Result<()> {
        let grant_headers = grant_headers.iter().any(|g| g.is_some());
        let canned_ok = canned.is_none_or(owner_only_canned);
        let owner = self.owner().id;
        let policy_ok = policy.is_none_or(|p| {
            p.grants.iter().flatten().all(|g| {
                g.grantee.as_ref().is_some_and(|e| e.id == owner)
                    && g.permission.as_ref().map(|p| p.as_str()) == Some(Permission::FULL_CONTROL)
            })
        });
        if canned_ok && policy_ok && !grant_headers {
            return Ok(());
        }
        Err(not_granted())
    }

    pub(crate) async fn do_get_bucket_acl(
        &self,
        req: S3Request<GetBucketAclInput>,
    ) -> S3Result<S3Response<GetBucketAclOutput>> {
        self.bucket_exists(&req.input.bucket).await?;
        let (grants, owner) = self.owner_only();
        let mut out = GetBucketAclOutput::default();
        out.grants = grants;
        out.owner = owner;
        Ok(S3Response::new(out))
    }

    pub(crate) async fn do_get_object_acl(
        &self,
        req: S3Request<GetObjectAclInput>,
    ) -> S3Result<S3Response<GetObjectAclOutput>> {
        self.head(&req.input.bucket, &req.input.key).await?;
        let (grants, owner) = self.owner_only();
        let mut out = GetObjectAclOutput::default();
        out.grants = grants;
        out.owner = owner;
        Ok(S3Response::new(out))
    }

    pub(crate) async fn do_put_bucket_acl(
        &self,
        req: S3Request<PutBucketAclInput>,
    ) -> S3Result<S3Response<PutBucketAclOutput>> {
        let i = &req.input;
        self.bucket_exists(&i.bucket).await?;
        check_owner_only!(self, i)?;
        Ok(S3Response::new(PutBucketAclOutput::default()))
    }

    pub(crate) async fn do_put_object_acl(
        &self,
        req: S3Request<PutObjectAclInput>,
    ) -> S3Result<S3Response<PutObjectAclOutput>> {
        let i = &req.input;
        self.head(&i.bucket, &i.key).await?;
        check_owner_only!(self, i)?;
        Ok(S3Response::new(PutObjectAclOutput::default()))
    }

    /// Answers that the bucket has no such configuration (after checking it exists).
    pub(crate) async fn none_configured<T>(
        &self,
        bucket: &str,
        code: S3ErrorCode,
        what: &str,
    ) -> S3Result<T> {
        self.bucket_exists(bucket).await?;
        Err(S3Error::with_message(
            code,
            format!("The bucket has no {what}."),
        ))
    }
}
