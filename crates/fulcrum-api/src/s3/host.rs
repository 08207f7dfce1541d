//! Addressing styles: path-style always (`http://host:9000/bucket/key`),
//! and virtual-hosted style (`http://bucket.domain:9000/key`) under the
//! configured base domains (`localhost` by default, so SDKs that pick
//! virtual hosts for `http://localhost:9000` work out of the box).

use s3s::host::{S3Host, VirtualHost};
use s3s::S3Result;

#[derive(Debug, Clone)]
pub struct Domains(Vec<String>);

impl Domains {
    pub fn new(domains: Vec<String>) -> Self {
        Self(
            domains
                .into_iter()
                .map(|d| d.trim().trim_start_matches('.').to_ascii_lowercase())
                .filter(|d| !d.is_empty())
                .collect(),
        )
    }

    /// The bucket a request addresses: from a virtual host under one of
    /// the domains, else the first segment of a path-style URL.
    pub fn bucket_of<B>(&self, req: &hyper::Request<B>) -> Option<String> {
        let host = req
            .headers()
            .get(hyper::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or(req.uri().host());
        if let Some(b) = host
            .and_then(|h| self.parse_host_header(h).ok())
            .and_then(|v| v.bucket().map(str::to_string))
        {
            return Some(b);
        }
        let first = req.uri().path().trim_start_matches('/').split('/').next()?;
        (!first.is_empty()).then(|| first.to_string())
    }
}

impl S3Host for Domains {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<VirtualHost<'a>> {
        if host.starts_with('[') {
            return Ok(VirtualHost::new(host)); // an IPv6 literal is never a bucket
        }
        let name = host.split(':').next().unwrap_or(host);
        for domain in &self.0 {
            if let Some(bucket) = name
                .strip_suffix(domain.as_str())
                .and_then(|b| b.strip_suffix('.'))
            {
                if !bucket.is_empty() {
                    return Ok(
                        VirtualHost::new(domain.as_str()).with_bucket(bucket.to_ascii_lowercase())
                    );
                }
            }
        }
        Ok(VirtualHost::new(host))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket_of(d: &Domains, host: &str) -> Option<String> {
        d.parse_host_header(host)
            .expect("parses")
            .bucket()
            .map(str::to_string)
    }

    #[test]
    fn virtual_hosts_under_known_domains_and_path_style_elsewhere() {
        let d = Domains::new(vec!["localhost".into(), "s3.example.org".into()]);
        assert_eq!(
            bucket_of(&d, "scans.localhost:9000").as_deref(),
            Some("scans")
        );
        assert_eq!(bucket_of(&d, "a.b.s3.example.org").as_deref(), Some("a.b"));
        assert_eq!(bucket_of(&d, "localhost:9000"), None);
        assert_eq!(bucket_of(&d, "127.0.0.1:9000"), None);
        assert_eq!(bucket_of(&d, "[::1]:9000"), None);
    }
}
