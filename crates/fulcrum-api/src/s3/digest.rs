//! The digests a request announces for its whole body, checked for every
//! operation at one place: `Content-MD5` and a signed
//! `x-amz-content-sha256`. The body is hashed as s3s and the handlers read
//! it; when its last byte arrives and a digest does not match, the read
//! fails instead of delivering it, so no operation acts on a body other
//! than the one the client sent (a DeleteObjects whose body changed on the
//! way deletes nothing). The [`Mismatch`] it records tells the front (see
//! `front`) what to answer.
//!
//! Bodies in `aws-chunked` framing are left to s3s, which checks each
//! chunk's signature, and to PutObject/UploadPart, which check the MD5 of
//! the decoded body. So are PUT bodies over [`WATCHED_MAX`] (object data:
//! the XML bodies this is for are small; POST bodies are checked whatever
//! their size): PutObject and UploadPart compute the
//! body's MD5 for its ETag anyway and refuse a wrong Content-MD5, and s3s
//! checks the signed SHA-256; hashing object data twice more would cost
//! about 0.2 s of CPU per 100 MB (MD5 runs at ~750 MB/s here).

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use base64::Engine as _;
use bytes::Bytes;
use futures::Stream;
use s3s::crypto::{Checksum, Md5, Sha256};
use s3s::stream::{ByteStream, DynByteStream, RemainingLength};

/// The largest body checked here (see the module doc).
const WATCHED_MAX: u64 = 1 << 20;

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Mismatch {
    /// `Content-MD5` is not the base64 of 16 bytes.
    InvalidMd5,
    /// The body's MD5 is not the announced one.
    Md5,
    /// The body's SHA-256 is not the signed one: (announced, computed), hex.
    Sha256 { announced: String, computed: String },
}

/// The error a refused body's read ends with (what s3s or the handler
/// sees; the client gets the [`Mismatch`] instead).
#[derive(Debug, thiserror::Error)]
#[error("the request body does not match its announced digest")]
struct Refused;

/// What the reader found, read by the front once s3s has answered.
#[derive(Clone, Default)]
pub(crate) struct Verdict(Arc<OnceLock<Mismatch>>);

impl Verdict {
    pub(crate) fn mismatch(&self) -> Option<&Mismatch> {
        self.0.get()
    }
}

/// The announced digests of a request with headers `h`; `None` when
/// there is nothing to check.
struct Expected {
    md5: Option<Result<[u8; 16], ()>>,
    sha256: Option<[u8; 32]>,
}

fn expected(h: &hyper::HeaderMap) -> Option<Expected> {
    let text = |name: &str| h.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let chunked = text("content-encoding").is_some_and(|v| v.contains("aws-chunked"))
        || text("x-amz-content-sha256").is_some_and(|v| v.starts_with("STREAMING-"));
    if chunked {
        return None;
    }
    let md5 = text("content-md5").map(|m| {
        base64::engine::general_purpose::STANDARD
            .decode(m)
            .ok()
            .and_then(|raw| <[u8; 16]>::try_from(raw.as_slice()).ok())
            .ok_or(())
    });
    let sha256 = text("x-amz-content-sha256")
        .and_then(|v| hex::decode(v).ok())
        .and_then(|raw| <[u8; 32]>::try_from(raw.as_slice()).ok());
    (md5.is_some() || sha256.is_some()).then_some(Expected { md5, sha256 })
}

/// `req` with its body checked against the digests its headers announce,
/// and the verdict to read once it has been answered.
pub(crate) fn watch(req: hyper::Request<s3s::Body>) -> (hyper::Request<s3s::Body>, Verdict) {
    let verdict = Verdict::default();
    let Some(exp) = expected(req.headers()) else {
        return (req, verdict);
    };
    let (parts, body) = req.into_parts();
    if body.remaining_length().exact() == Some(0) && exp.md5.is_none() {
        return (hyper::Request::from_parts(parts, body), verdict);
    }
    let left: Option<u64> = parts
        .headers
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    // POST bodies are never object data (DeleteObjects,
    // CompleteMultipartUpload…): checked whatever their size.
    if parts.method != hyper::Method::POST && left.is_none_or(|n| n > WATCHED_MAX) {
        return (hyper::Request::from_parts(parts, body), verdict);
    }
    let watched = Watched {
        inner: body,
        md5: exp.md5.map(|m| (Md5::new(), m)),
        sha256: exp.sha256.map(|s| (Sha256::new(), s)),
        left,
        verdict: verdict.clone(),
        done: false,
    };
    let body = s3s::Body::from(Box::pin(watched) as DynByteStream);
    (hyper::Request::from_parts(parts, body), verdict)
}

struct Watched {
    inner: s3s::Body,
    md5: Option<(Md5, Result<[u8; 16], ()>)>,
    sha256: Option<(Sha256, [u8; 32])>,
    /// Bytes still to come, when Content-Length says.
    left: Option<u64>,
    verdict: Verdict,
    done: bool,
}

impl Watched {
    /// Compares the digests of the whole body; records a mismatch.
    fn finish(&mut self) -> Result<(), Mismatch> {
        self.done = true;
        if let Some((h, want)) = self.sha256.take() {
            let got = h.finalize();
            if got != want {
                return Err(Mismatch::Sha256 {
                    announced: hex::encode(want),
                    computed: hex::encode(got),
                });
            }
        }
        match self.md5.take() {
            Some((_, Err(()))) => Err(Mismatch::InvalidMd5),
            Some((h, Ok(want))) => (h.finalize() == want).then_some(()).ok_or(Mismatch::Md5),
            None => Ok(()),
        }
    }

    fn refuse(&mut self, m: Mismatch) -> Poll<Option<Result<Bytes, s3s::StdError>>> {
        let _ = self.verdict.0.set(m);
        Poll::Ready(Some(Err(Box::new(Refused))))
    }
}

impl Stream for Watched {
    type Item = Result<Bytes, s3s::StdError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Pin::new(&mut this.inner).poll_next(cx);
        }
        match std::task::ready!(Pin::new(&mut this.inner).poll_next(cx)) {
            Some(Ok(data)) => {
                if let Some((h, _)) = &mut this.md5 {
                    h.update(&data);
                }
                if let Some((h, _)) = &mut this.sha256 {
                    h.update(&data);
                }
                if let Some(left) = &mut this.left {
                    *left = left.saturating_sub(data.len() as u64);
                    // The last byte: checked before anyone gets it.
                    if *left == 0 {
                        if let Err(m) = this.finish() {
                            return this.refuse(m);
                        }
                    }
                }
                Poll::Ready(Some(Ok(data)))
            }
            None => match this.finish() {
                Err(m) => this.refuse(m),
                Ok(()) => Poll::Ready(None),
            },
            other => Poll::Ready(other),
        }
    }
}

impl ByteStream for Watched {
    fn remaining_length(&self) -> RemainingLength {
        self.inner.remaining_length()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn md5_b64(b: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(Md5::checksum(b))
    }

    async fn read(
        headers: &[(&str, String)],
        body: &'static [u8],
    ) -> (Result<Vec<u8>, ()>, Verdict) {
        let mut b = hyper::Request::builder().method("POST").uri("/b?delete");
        for (k, v) in headers {
            b = b.header(*k, v);
        }
        let req = b
            .header("content-length", body.len())
            .body(s3s::Body::from(Bytes::from_static(body)))
            .expect("request");
        let (req, verdict) = watch(req);
        let mut stream = req.into_body();
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(c) => out.extend_from_slice(&c),
                Err(_) => return (Err(()), verdict),
            }
        }
        (Ok(out), verdict)
    }

    #[tokio::test]
    async fn a_body_is_delivered_only_when_its_digests_match() {
        let body: &[u8] = b"<Delete><Object><Key>a</Key></Object></Delete>";
        let sha = hex::encode(Sha256::checksum(body));
        let (got, v) = read(&[("content-md5", md5_b64(body))], body).await;
        assert_eq!((got, v.mismatch()), (Ok(body.to_vec()), None));
        let (got, v) = read(&[("x-amz-content-sha256", sha.clone())], body).await;
        assert_eq!((got, v.mismatch()), (Ok(body.to_vec()), None));

        let (got, v) = read(&[("content-md5", md5_b64(b"other"))], body).await;
        assert_eq!((got, v.mismatch()), (Err(()), Some(&Mismatch::Md5)));
        let (got, v) = read(&[("content-md5", "not base64".into())], body).await;
        assert_eq!((got, v.mismatch()), (Err(()), Some(&Mismatch::InvalidMd5)));
        let wrong = hex::encode(Sha256::checksum(b"other"));
        let (got, v) = read(&[("x-amz-content-sha256", wrong.clone())], body).await;
        assert_eq!(got, Err(()));
        assert_eq!(
            v.mismatch(),
            Some(&Mismatch::Sha256 {
                announced: wrong,
                computed: sha
            })
        );
        // Unsigned and framed bodies are not this module's to check.
        let (got, v) = read(&[("x-amz-content-sha256", "UNSIGNED-PAYLOAD".into())], body).await;
        assert_eq!((got, v.mismatch()), (Ok(body.to_vec()), None));
        let framed = [
            (
                "x-amz-content-sha256",
                "STREAMING-UNSIGNED-PAYLOAD-TRAILER".into(),
            ),
            ("content-md5", md5_b64(b"decoded")),
        ];
        assert!(read(&framed, body).await.1.mismatch().is_none());
    }
}
