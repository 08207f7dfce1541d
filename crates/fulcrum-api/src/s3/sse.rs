//! Server-side encryption requests. Fulcrum encrypts at rest with one
//! server key or not at all, so of S3's three kinds only SSE-S3
//! (`x-amz-server-side-encryption: AES256`) can be honoured, and only by a
//! server that encrypts at rest; it then says so on every object answer.
//! Customer keys (SSE-C) and KMS keys are refused before anything is read
//! or stored: accepting them silently would store data in a way the client
//! did not ask for.

use hyper::HeaderMap;
use s3s::access::{S3Access, S3AccessContext};
use s3s::dto::ServerSideEncryption;
use s3s::{S3Error, S3ErrorCode, S3Result};

use super::S3Api;

const SSE: &str = "x-amz-server-side-encryption";
const SSE_C: [&str; 2] = [
    "x-amz-server-side-encryption-customer-",
    "x-amz-copy-source-server-side-encryption-customer-",
];
const SSE_KMS: [&str; 2] = [
    "x-amz-server-side-encryption-aws-kms-key-id",
    "x-amz-server-side-encryption-context",
];

/// How to turn encryption at rest on (one message for every refusal).
const HOW_TO_ENCRYPT: &str = "Fulcrum encrypts at rest with its own key when started with FULCRUM_ENCRYPTION_KEY (64 hex digits) or FULCRUM_ENCRYPTION_KEY_FILE on a new data directory; objects are then stored encrypted whatever the request says.";

fn not_implemented(msg: String) -> S3Error {
    S3Error::with_message(S3ErrorCode::NotImplemented, msg)
}

/// Why a request's encryption headers cannot be honoured by a server that
/// encrypts at rest (`encrypted`) or not; `None` when they can.
pub(crate) fn refusal(headers: &HeaderMap, encrypted: bool) -> Option<S3Error> {
    if headers
        .keys()
        .any(|k| SSE_C.iter().any(|p| k.as_str().starts_with(p)))
    {
        return Some(not_implemented(format!(
            "Server-side encryption with customer-provided keys (SSE-C) is not supported: Fulcrum cannot encrypt with a key it does not keep; nothing was stored or read. Send the request without the x-amz-server-side-encryption-customer-* headers. {HOW_TO_ENCRYPT}"
        )));
    }
    let kms = SSE_KMS.iter().any(|h| headers.contains_key(*h));
    let asked = headers.get(SSE).map(|v| v.to_str().unwrap_or("").trim());
    match asked {
        _ if kms => {}
        None => return None,
        Some("AES256") if encrypted => return None,
        Some("AES256") => {
            return Some(not_implemented(format!(
                "Server-side encryption (x-amz-server-side-encryption: AES256) was requested, but this server does not encrypt data at rest; nothing was stored. {HOW_TO_ENCRYPT}"
            )))
        }
        Some(_) => {}
    }
    Some(not_implemented(format!(
        "Server-side encryption with KMS keys (aws:kms, aws:kms:dsse) is not supported; nothing was stored. Send x-amz-server-side-encryption: AES256 or no encryption header. {HOW_TO_ENCRYPT}"
    )))
}

/// s3s's access hook, called for every request after its signature is
/// checked and before its body is read: signed requests only (what s3s
/// checks by default), and no encryption Fulcrum cannot honour.
pub(crate) struct Access {
    pub encrypted: bool,
}

#[async_trait::async_trait]
impl S3Access for Access {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        if cx.credentials().is_none() {
            return Err(S3Error::with_message(
                S3ErrorCode::AccessDenied,
                "Signature is required",
            ));
        }
        let refused = refusal(cx.headers(), self.encrypted).or_else(|| {
            super::unsupported::refusal(cx.s3_op().name(), cx.method(), cx.uri(), cx.headers())
        });
        match refused {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl S3Api {
    /// What object answers say of their encryption: AES256 when this
    /// server encrypts at rest (every object is), nothing otherwise.
    pub(crate) fn sse(&self) -> Option<ServerSideEncryption> {
        self.engine
            .config()
            .encryption_key
            .is_some()
            .then(|| ServerSideEncryption::from_static(ServerSideEncryption::AES256))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    hyper::header::HeaderName::from_static(k),
                    v.parse().expect("value"),
                )
            })
            .collect()
    }

    fn refused(pairs: &[(&'static str, &'static str)], encrypted: bool) -> Option<String> {
        refusal(&headers(pairs), encrypted).map(|e| e.message().unwrap_or_default().to_string())
    }

    #[test]
    fn only_sse_s3_on_an_encrypting_server_is_accepted() {
        assert!(refused(&[], false).is_none());
        assert!(refused(&[(SSE, "AES256")], true).is_none());
        let off = refused(&[(SSE, "AES256")], false).expect("refused");
        assert!(off.contains("does not encrypt") && off.contains("FULCRUM_ENCRYPTION_KEY"));
        for kms in [
            &[(SSE, "aws:kms")][..],
            &[(SSE, "aws:kms:dsse")],
            &[(SSE, "AES256"), (SSE_KMS[0], "arn:aws:kms:key")],
        ] {
            assert!(refused(kms, true).expect("refused").contains("KMS"));
        }
        for ssec in [
            "x-amz-server-side-encryption-customer-algorithm",
            "x-amz-server-side-encryption-customer-key",
            "x-amz-copy-source-server-side-encryption-customer-key-md5",
        ] {
            assert!(refused(&[(ssec, "x")], true)
                .expect("refused")
                .contains("SSE-C"));
        }
    }
}
