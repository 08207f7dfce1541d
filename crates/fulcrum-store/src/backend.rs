//! Where packs live: a thin, durable facade over an OpenDAL operator
//! (the local filesystem by default, any S3-compatible cluster for
//! scale-out). Writes return only once the data is durable. On a
//! filesystem, writes and ranged reads bypass OpenDAL (`local_writer`,
//! `read_local`); listing, stat and delete go through it.

use std::ops::Range;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::TryStreamExt;
use opendal::layers::RetryLayer;
use opendal::{services, ErrorKind, Operator};

use crate::bufpool::BufPool;
use crate::error::{StoreError, StoreResult};
use crate::local_writer::{self, blocking, LocalWriter};

/// Which backend to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendConfig {
    /// A directory on a local filesystem.
    Fs { root: PathBuf },
    /// A bucket on an S3-compatible server (path-style requests).
    S3 {
        bucket: String,
        endpoint: String,
        region: String,
        access_key: String,
        secret_key: String,
        root: String,
    },
}

impl BackendConfig {
    /// Parses `s3://BUCKET[/ROOT]?endpoint=URL&region=R`; the credentials
    /// come separately so they never sit in a URL that gets logged.
    pub fn parse_s3_url(url: &str, access_key: &str, secret_key: &str) -> StoreResult<Self> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| StoreError::Config(format!("{url:?} does not start with s3://")))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (bucket, root) = path.split_once('/').unwrap_or((path, ""));
        if bucket.is_empty() {
            return Err(StoreError::Config(format!("{url:?} names no bucket")));
        }
        let mut endpoint = None;
        let mut region = "us-east-1".to_string();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("endpoint", v)) => endpoint = Some(v.to_string()),
                Some(("region", v)) => region = v.to_string(),
                _ => {
                    return Err(StoreError::Config(format!(
                        "unknown S3 backend option {pair:?} (known: endpoint, region)"
                    )))
                }
            }
        }
        let endpoint = endpoint.ok_or_else(|| {
            StoreError::Config(format!("{url:?} needs ?endpoint=http(s)://HOST:PORT"))
        })?;
        Ok(BackendConfig::S3 {
            bucket: bucket.to_string(),
            endpoint,
            region,
            access_key: access_key.to_string(),
            secret_key: secret_key.to_string(),
            root: format!("/{}", root.trim_matches('/')),
        })
    }
}

/// One object found by `list`.
#[derive(Debug, Clone)]
pub struct BackendEntry {
    pub path: String,
    pub size: u64,
}

/// A storage backend: durable write, ranged read, list, delete.
#[derive(Debug, Clone)]
pub struct Backend {
    op: Operator,
    fs_root: Option<PathBuf>,
    name: String,
}

/// How long one request to an S3 backend, or one read or write of its
/// body, may go without an answer: long enough for a 32 MiB pack over a
/// slow link (1 MB/s), short of a client's patience.
const BACKEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

impl Backend {
    pub fn open(cfg: &BackendConfig) -> StoreResult<Self> {
        Self::open_with_timeout(cfg, BACKEND_TIMEOUT)
    }

    /// [`Backend::open`] with another limit on one S3 request without an
    /// answer.
    pub fn open_with_timeout(
        cfg: &BackendConfig,
        timeout: std::time::Duration,
    ) -> StoreResult<Self> {
        // OpenDAL's HTTP services need a process-wide transport (reqwest);
        // installing it is idempotent.
        opendal::install_default();
        let cfg_err = |e: opendal::Error| StoreError::Config(e.to_string());
        match cfg {
            BackendConfig::Fs { root } => {
                // Temp files of writes in progress (see `local_writer`).
                std::fs::create_dir_all(root.join(".tmp"))
                    .map_err(|e| io_at(&root.to_string_lossy(), e))?;
                let root_str = root.to_string_lossy().to_string();
                let builder = services::Fs::default().root(&root_str);
                let op = Operator::new(builder).map_err(cfg_err)?;
                Ok(Self {
                    op,
                    fs_root: Some(root.clone()),
                    name: format!("fs:{root_str}"),
                })
            }
            BackendConfig::S3 {
                bucket,
                endpoint,
                region,
                access_key,
                secret_key,
                root,
            } => {
                let builder = services::S3::default()
                    .bucket(bucket)
                    .endpoint(endpoint)
                    .region(region)
                    .access_key_id(access_key)
                    .secret_access_key(secret_key)
                    .root(root)
                    .disable_config_load()
                    .disable_ec2_metadata();
                let op = Operator::new(builder)
                    .map_err(cfg_err)?
                    // A backend that stops answering (a frozen node that
                    // neither refuses nor answers) fails the attempt after
                    // BACKEND_TIMEOUT instead of holding the request for as
                    // long as it is frozen (tester: 150 s); the attempt is
                    // retried as a transient error.
                    .layer(
                        opendal::layers::TimeoutLayer::new()
                            .with_timeout(timeout)
                            .with_io_timeout(timeout),
                    )
                    // Transient S3 errors (503 SlowDown, resets) are retried
                    // with backoff from 200 ms, as the AWS SDKs do; a backend
                    // that keeps failing answers within a few seconds.
                    .layer(
                        RetryLayer::new()
                            .with_max_times(4)
                            .with_min_delay(std::time::Duration::from_millis(200))
                            .with_max_delay(std::time::Duration::from_secs(5))
                            .with_jitter(),
                    );
                Ok(Self {
                    op,
                    fs_root: None,
                    name: format!("s3:{endpoint}/{bucket}{root}"),
                })
            }
        }
    }

    /// For a local filesystem: (bytes free to this process, bytes to keep
    /// free). What is kept is 1 % of the filesystem, at least 1 MiB and at
    /// most 256 MiB: room for the catalog to commit deletes, for `gc` to
    /// run and for the server to start, so new data never fills the disk
    /// to its last byte. None for a remote backend.
    pub fn space(&self) -> Option<std::io::Result<(u64, u64)>> {
        let root = self.fs_root.as_ref()?;
        Some(
            rustix::fs::statvfs(root)
                .map(|st| {
                    let free = st.f_bavail.saturating_mul(st.f_frsize);
                    let size = st.f_blocks.saturating_mul(st.f_frsize);
                    (free, (size / 100).clamp(1 << 20, 256 << 20))
                })
                .map_err(std::io::Error::from),
        )
    }

    /// Whether this backend is a local filesystem (a durable write takes
    /// a millisecond or so, not a network round trip).
    pub fn is_local(&self) -> bool {
        self.fs_root.is_some()
    }

    /// A human-readable name for logs and errors.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn err(&self, op: &'static str, path: &str, source: opendal::Error) -> StoreError {
        StoreError::Backend {
            backend: self.name.clone(),
            op,
            path: path.to_string(),
            source: Box::new(source),
        }
    }

    /// Writes a whole object (given as consecutive parts) and returns
    /// once it is durable: on S3 when the server confirmed the PUT, on a
    /// filesystem once the file was fsynced, renamed into place and its
    /// folder fsynced (see `local_writer`).
    pub async fn write(&self, path: &str, parts: Vec<Bytes>) -> StoreResult<()> {
        if let Some(root) = &self.fs_root {
            let written = local_writer::write_whole(root, root.join(path), parts).await;
            return written.map_err(|e| io_at(path, e));
        }
        self.op
            .write(path, opendal::Buffer::from(parts))
            .await
            .map(|_| ())
            .map_err(|e| self.err("write", path, e))
    }

    /// Starts a streamed write: the object appears, durable, only when the
    /// writer is closed (a temp file renamed into place, or an S3 multipart
    /// upload completed); a writer dropped unclosed leaves nothing visible.
    pub async fn writer(&self, path: &str) -> StoreResult<BackendWriter> {
        let inner = match &self.fs_root {
            Some(root) => {
                let made = LocalWriter::create(root, root.join(path)).await;
                Sink::Local(made.map_err(|e| io_at(&root.join(".tmp").to_string_lossy(), e))?)
            }
            // S3 multipart parts must be at least 5 MiB.
            None => Sink::Remote(
                self.op
                    .writer_with(path)
                    .chunk(8 * 1024 * 1024)
                    .await
                    .map_err(|e| self.err("write", path, e))?,
            ),
        };
        Ok(BackendWriter {
            inner,
            backend: self.clone(),
            path: path.to_string(),
        })
    }

    /// On a filesystem, deletes temp files of writes that never finished
    /// (a crash mid-write) older than `age`; returns how many. S3 has no
    /// such leftovers (an unfinished upload is never an object).
    pub async fn clean_stale_temp(&self, age: std::time::Duration) -> StoreResult<u64> {
        let Some(root) = &self.fs_root else {
            return Ok(0);
        };
        let dir = root.join(".tmp");
        let dir_for_err = dir.display().to_string();
        let removed = blocking(move || {
            let mut n = 0;
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
                Err(e) => return Err(e),
            };
            for entry in entries {
                let entry = entry?;
                let meta = entry.metadata()?;
                let old = meta.modified()?.elapsed().map(|e| e > age).unwrap_or(false);
                if meta.is_file() && old {
                    std::fs::remove_file(entry.path())?;
                    n += 1;
                }
            }
            Ok(n)
        })
        .await;
        removed.map_err(|e| io_at(&dir_for_err, e))
    }

    /// Reads `range` of an object.
    pub async fn read_range(&self, path: &str, range: Range<u64>) -> StoreResult<Bytes> {
        Ok(self.read_span(path, range).await?.to_bytes())
    }

    /// Reads `range` of an object, kept in the pieces the backend returned.
    pub async fn read_span(&self, path: &str, range: Range<u64>) -> StoreResult<Span> {
        if let Some(root) = &self.fs_root {
            return self.read_local(root, path, range).await;
        }
        let buf = self
            .op
            .read_with(path)
            .range(range)
            .await
            .map_err(|e| self.err("read", path, e))?;
        Ok(Span(buf))
    }

    /// On a filesystem, `range` of a file read with positioned reads into
    /// one buffer that is not zero-filled first, taken from (and given
    /// back to) [`READ_POOL`]. OpenDAL's filesystem reader zero-fills and
    /// returns 2 MiB pieces, out of which a chunk lying across two must be
    /// copied: together a fifth of the CPU of a large GET. Errors are
    /// reported as OpenDAL's would be (a missing file is NotFound).
    async fn read_local(&self, root: &Path, path: &str, range: Range<u64>) -> StoreResult<Span> {
        let file = root.join(path);
        let len = usize::try_from(range.end.saturating_sub(range.start)).unwrap_or(usize::MAX);
        let read = blocking(move || {
            let f = std::fs::File::open(&file)?;
            let mut buf = READ_POOL.take(len);
            buf.clear();
            while buf.len() < len {
                let at = range.start + buf.len() as u64;
                let spare = rustix::buffer::spare_capacity(&mut buf);
                if rustix::io::pread(&f, spare, at)? == 0 {
                    break; // end of file: the caller checks the length
                }
            }
            buf.truncate(len);
            Ok(buf)
        })
        .await;
        match read {
            Ok(buf) => Ok(Span(opendal::Buffer::from(READ_POOL.lend(buf)))),
            Err(e) => {
                let kind = match e.kind() {
                    std::io::ErrorKind::NotFound => ErrorKind::NotFound,
                    _ => ErrorKind::Unexpected,
                };
                let source = opendal::Error::new(kind, "positioned read failed").set_source(e);
                Err(self.err("read", path, source))
            }
        }
    }

    /// Reads a whole object.
    pub async fn read(&self, path: &str) -> StoreResult<Bytes> {
        let buf = self
            .op
            .read(path)
            .await
            .map_err(|e| self.err("read", path, e))?;
        Ok(buf.to_bytes())
    }

    /// Lists every object under `prefix` (recursively).
    pub async fn list(&self, prefix: &str) -> StoreResult<Vec<BackendEntry>> {
        let lister = match self.op.lister_with(prefix).recursive(true).await {
            Ok(l) => l,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.err("list", prefix, e)),
        };
        let entries: Vec<opendal::Entry> = lister
            .try_collect()
            .await
            .map_err(|e| self.err("list", prefix, e))?;
        let mut out = Vec::new();
        for e in entries {
            if e.metadata().is_dir() {
                continue;
            }
            let size = match e.metadata().content_length() {
                0 => self
                    .op
                    .stat(e.path())
                    .await
                    .map(|m| m.content_length())
                    .unwrap_or(0),
                n => n,
            };
            out.push(BackendEntry {
                path: e.path().to_string(),
                size,
            });
        }
        Ok(out)
    }

    /// Deletes an object; deleting a missing object is not an error.
    pub async fn delete(&self, path: &str) -> StoreResult<()> {
        self.op
            .delete(path)
            .await
            .map_err(|e| self.err("delete", path, e))
    }

    /// Size of an object, or `None` when it does not exist.
    pub async fn size(&self, path: &str) -> StoreResult<Option<u64>> {
        match self.op.stat(path).await {
            Ok(m) => Ok(Some(m.content_length())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err("stat", path, e)),
        }
    }

    /// Whether the backend can be used: the first entry of a listing
    /// (a HEAD alone cannot tell a missing object from a missing bucket:
    /// both are a bodiless 404; a listing's body names NoSuchBucket).
    pub async fn probe(&self) -> StoreResult<()> {
        let first = match self.op.lister_with("").limit(1).await {
            Ok(mut l) => l.try_next().await.map(|_| ()),
            Err(e) => Err(e),
        };
        match first {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(self.err("list", "", e)),
            _ => Ok(()),
        }
    }
}

/// A streamed write to one backend object (see `Backend::writer`).
pub struct BackendWriter {
    inner: Sink,
    backend: Backend,
    path: String,
}

enum Sink {
    /// A filesystem backend: our own writer, which hands data to the disk
    /// as it comes (see `local_writer`).
    Local(LocalWriter),
    Remote(opendal::Writer),
}

impl BackendWriter {
    pub async fn write(&mut self, data: Bytes) -> StoreResult<()> {
        match &mut self.inner {
            Sink::Local(w) => w.write(data).await.map_err(|e| io_at(&self.path, e)),
            Sink::Remote(w) => w
                .write(data)
                .await
                .map_err(|e| self.backend.err("write", &self.path, e)),
        }
    }

    /// Finishes the object and returns once it is durable.
    pub async fn close(self) -> StoreResult<()> {
        match self.inner {
            Sink::Local(w) => w.close().await.map_err(|e| io_at(&self.path, e)),
            Sink::Remote(mut w) => w
                .close()
                .await
                .map(|_| ())
                .map_err(|e| self.backend.err("write", &self.path, e)),
        }
    }
}

fn io_at(path: &str, source: std::io::Error) -> StoreError {
    StoreError::Io {
        path: path.to_string(),
        source,
    }
}

/// Buffers of ranged pack reads on a filesystem (up to the engine's
/// 16 MiB read groups plus a chunk), reused once every chunk read from
/// one is decoded or sent.
static READ_POOL: BufPool = BufPool::new(64 * 1024 * 1024, 20 * 1024 * 1024);

/// Bytes read from a backend, kept as the pieces it returned them in: a
/// slice within one piece is shared, not copied (a large ranged read of a
/// pack is a list of buffers).
#[derive(Debug, Clone)]
pub struct Span(opendal::Buffer);

impl Span {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `range` of the span; copied only when it crosses pieces.
    pub fn slice(&self, range: Range<usize>) -> Bytes {
        self.0.slice(range).to_bytes()
    }

    /// All of it in one buffer.
    pub fn to_bytes(&self) -> Bytes {
        self.0.to_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_s3_backend_that_never_answers_fails_in_bounded_time() {
        // A frozen S3 node: connections are accepted and never answered.
        // Requests hung for as long as it stayed frozen.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((c, _)) = listener.accept().await {
                open.push(c);
            }
        });
        let cfg = BackendConfig::S3 {
            bucket: "b".into(),
            endpoint: format!("http://{addr}"),
            region: "us-east-1".into(),
            access_key: "a".into(),
            secret_key: "s".into(),
            root: "/".into(),
        };
        let b =
            Backend::open_with_timeout(&cfg, std::time::Duration::from_millis(300)).expect("open");
        let started = std::time::Instant::now();
        let r = tokio::time::timeout(std::time::Duration::from_secs(60), b.size("x")).await;
        assert!(matches!(r, Ok(Err(_))), "{r:?}");
        // Five attempts of 0.3 s and the backoff between them.
        assert!(started.elapsed() < std::time::Duration::from_secs(30));
        held.abort();
    }

    #[test]
    fn s3_urls_parse() {
        let c = BackendConfig::parse_s3_url(
            "s3://data/fulcrum?endpoint=http://127.0.0.1:3900&region=garage",
            "ak",
            "sk",
        )
        .expect("valid url");
        assert_eq!(
            c,
            BackendConfig::S3 {
                bucket: "data".into(),
                endpoint: "http://127.0.0.1:3900".into(),
                region: "garage".into(),
                access_key: "ak".into(),
                secret_key: "sk".into(),
                root: "/fulcrum".into(),
            }
        );
        assert!(BackendConfig::parse_s3_url("s3://b", "a", "s").is_err());
        assert!(BackendConfig::parse_s3_url("http://b", "a", "s").is_err());
        assert!(BackendConfig::parse_s3_url("s3://b?endpoint=x&color=red", "a", "s").is_err());
    }

    fn temp_files(root: &Path) -> usize {
        std::fs::read_dir(root.join(".tmp"))
            .expect("temp dir")
            .count()
    }

    #[tokio::test]
    async fn files_appear_whole_once_durable_and_failed_writes_leave_nothing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().to_path_buf();
        let backend = Backend::open(&BackendConfig::Fs { root: root.clone() }).expect("open");
        // Pieces past several background syncs, and an uneven last one.
        let data: Vec<u8> = (0..5 * crate::local_writer::KICK as usize + 12_345)
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        let mut w = backend.writer("packs/ab/one").await.expect("writer");
        for piece in data.chunks(300_000) {
            w.write(Bytes::copy_from_slice(piece)).await.expect("write");
            assert_eq!(backend.size("packs/ab/one").await.expect("size"), None);
        }
        w.close().await.expect("close");
        let back = backend.read("packs/ab/one").await.expect("read");
        assert!(back == data, "read back differs");
        assert_eq!(temp_files(&root), 0);

        // Dropped unclosed: no object and no temp file left behind.
        let mut w = backend.writer("packs/ab/two").await.expect("writer");
        w.write(Bytes::from_static(b"half")).await.expect("write");
        assert_eq!(temp_files(&root), 1);
        drop(w);
        assert_eq!(backend.size("packs/ab/two").await.expect("size"), None);
        assert_eq!(temp_files(&root), 0);

        // Written whole: the same, and a failed write leaves no temp file.
        let parts = vec![Bytes::from_static(b"one "), Bytes::from_static(b"two")];
        backend
            .write("packs/cd/whole", parts.clone())
            .await
            .expect("write");
        assert_eq!(
            &backend.read("packs/cd/whole").await.expect("read")[..],
            b"one two"
        );
        std::fs::write(root.join("packs/file"), b"not a folder").expect("blocker");
        let failed = backend.write("packs/file/x", parts).await;
        assert!(matches!(failed, Err(StoreError::Io { .. })), "{failed:?}");
        assert_eq!(temp_files(&root), 0);
    }
}
