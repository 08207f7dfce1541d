//! multipart/related (RFC 2046 §5.1, RFC 2387) in both directions: a
//! streaming reader that hands out each part's body as an `AsyncRead`
//! (parts may be gigabytes: only one chunk and a delimiter's length are
//! held), and the framing written around retrieved parts.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use memchr::memmem;
use tokio::io::{AsyncRead, ReadBuf};

use super::media::MediaType;

/// A body as a stream of chunks.
pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, io::Error>> + Send>>;

/// Most bytes of one part's header section.
const MAX_HEADERS: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the first delimiter (the preamble is skipped).
    Preamble,
    /// Just after a delimiter: `--` (close) or a header section follows.
    AfterDelimiter,
    /// Inside a part's body.
    Body,
    /// After the close delimiter.
    Done,
}

/// Why a multipart body cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum MultipartError {
    #[error("malformed multipart body: {0}")]
    Malformed(&'static str),
    #[error("the multipart body ended early: {0}")]
    Truncated(&'static str),
    #[error("reading the request body failed: {0}")]
    Io(#[from] io::Error),
}

/// The header section of one part.
#[derive(Debug, Clone, Default)]
pub struct PartHeaders {
    pub content_type: Option<String>,
}

pub struct MultipartReader {
    stream: BodyStream,
    buf: BytesMut,
    /// `CRLF--boundary`.
    delim: Vec<u8>,
    state: State,
    eof: bool,
    /// `buf[..clear]` holds no delimiter start: it can be handed out.
    clear: usize,
    finder: memmem::Finder<'static>,
}

impl MultipartReader {
    pub fn new(stream: BodyStream, boundary: &str) -> Self {
        let delim = format!("\r\n--{boundary}").into_bytes();
        // The first delimiter may open the body without a preceding CRLF.
        let mut buf = BytesMut::with_capacity(64 * 1024);
        buf.extend_from_slice(b"\r\n");
        Self {
            stream,
            finder: memmem::Finder::new(&delim).into_owned(),
            delim,
            buf,
            state: State::Preamble,
            eof: false,
            clear: 0,
        }
    }

    /// Reads one more chunk into the buffer; false at end of body.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        if self.eof {
            return Poll::Ready(Ok(false));
        }
        match ready!(self.stream.poll_next_unpin(cx)) {
            Some(Ok(chunk)) => {
                self.buf.extend_from_slice(&chunk);
                Poll::Ready(Ok(true))
            }
            Some(Err(e)) => Poll::Ready(Err(e)),
            None => {
                self.eof = true;
                Poll::Ready(Ok(false))
            }
        }
    }

    async fn fill(&mut self) -> io::Result<bool> {
        futures::future::poll_fn(|cx| self.poll_fill(cx)).await
    }

    /// Finds the next delimiter in the buffer, remembering how far the
    /// buffer is free of one.
    fn find_delimiter(&mut self) -> Option<usize> {
        let from = self.clear;
        match self.finder.find(&self.buf[from..]) {
            Some(i) => {
                self.clear = from + i;
                Some(from + i)
            }
            None => {
                self.clear = self
                    .buf
                    .len()
                    .saturating_sub(self.delim.len() - 1)
                    .max(from);
                None
            }
        }
    }

    /// Drops `n` bytes from the front of the buffer.
    fn consume(&mut self, n: usize) {
        self.buf.advance(n);
        self.clear = self.clear.saturating_sub(n);
    }

    /// Moves to the next part and returns its headers; `None` after the
    /// close delimiter. The rest of the current part, if any, is skipped.
    pub async fn next_part(&mut self) -> Result<Option<PartHeaders>, MultipartError> {
        loop {
            match self.state {
                State::Done => return Ok(None),
                State::Preamble | State::Body => {
                    if let Some(i) = self.find_delimiter() {
                        self.consume(i + self.delim.len());
                        self.state = State::AfterDelimiter;
                        continue;
                    }
                    let keep = self.clear;
                    self.consume(keep);
                    if !self.fill().await? {
                        return Err(if self.state == State::Preamble {
                            MultipartError::Malformed(
                                "no part starts with the boundary of the Content-Type",
                            )
                        } else {
                            MultipartError::Truncated("a part is not closed by its boundary")
                        });
                    }
                }
                State::AfterDelimiter => return self.read_headers().await,
            }
        }
    }

    async fn read_headers(&mut self) -> Result<Option<PartHeaders>, MultipartError> {
        // `--` closes the body; otherwise optional padding and CRLF.
        while self.buf.len() < 2 {
            if !self.fill().await? {
                return Err(MultipartError::Truncated("the body ends after a boundary"));
            }
        }
        if &self.buf[..2] == b"--" {
            self.state = State::Done;
            return Ok(None);
        }
        let end = loop {
            if let Some(i) = memmem::find(&self.buf, b"\r\n\r\n") {
                break i;
            }
            // A part without headers: the boundary line's CRLF then an empty line.
            if self.buf.len() > MAX_HEADERS {
                return Err(MultipartError::Malformed("part headers longer than 16 KiB"));
            }
            if !self.fill().await? {
                return Err(MultipartError::Truncated(
                    "the body ends inside part headers",
                ));
            }
        };
        let section = self.buf.split_to(end + 4);
        self.clear = 0;
        let text = String::from_utf8_lossy(&section);
        let mut lines = text.split("\r\n");
        let first = lines.next().unwrap_or_default();
        if !first.chars().all(|c| c == ' ' || c == '\t') {
            return Err(MultipartError::Malformed(
                "text after a boundary on its line",
            ));
        }
        let mut headers = PartHeaders::default();
        for line in lines {
            if let Some((name, value)) = line.split_once(':') {
                if name.trim().eq_ignore_ascii_case("content-type") {
                    headers.content_type = Some(value.trim().to_string());
                }
            }
        }
        self.state = State::Body;
        Ok(Some(headers))
    }

    /// The current part's body; it ends (EOF) at the next delimiter.
    pub fn body(&mut self) -> PartBody<'_> {
        PartBody { r: self }
    }

    /// Reads the current part's body into memory without copying it out
    /// of the reader's buffer (the part is split off it). `expected` bytes
    /// are made room for at once, so the buffer does not grow (and copy)
    /// by doubling. A part longer than `max` comes back as its head, the
    /// rest to be read with [`MultipartReader::body`].
    pub async fn read_part(&mut self, max: usize, expected: usize) -> io::Result<PartData> {
        if self.state != State::Body {
            return Ok(PartData::Whole(Bytes::new()));
        }
        self.buf.reserve(expected.min(max) + PART_SLACK);
        loop {
            if let Some(i) = self.find_delimiter() {
                // The delimiter stays for next_part.
                return Ok(PartData::Whole(self.take(i)));
            }
            if self.clear > max {
                let n = self.clear;
                return Ok(PartData::Head(self.take(n)));
            }
            if !self.fill().await? {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the multipart body ended inside a part",
                ));
            }
        }
    }

    /// The first `n` bytes of the buffer, split off it.
    fn take(&mut self, n: usize) -> Bytes {
        let head = self.buf.split_to(n).freeze();
        self.clear = self.clear.saturating_sub(n);
        head
    }
}

/// Room past a part's expected size, so the delimiter after it is read
/// without growing the buffer.
const PART_SLACK: usize = 64 * 1024;

/// What [`MultipartReader::read_part`] read.
pub enum PartData {
    /// The whole body.
    Whole(Bytes),
    /// The first bytes of a body longer than the limit.
    Head(Bytes),
}

/// The body of the current part, read straight from the request stream.
pub struct PartBody<'a> {
    r: &'a mut MultipartReader,
}

impl AsyncRead for PartBody<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let r = &mut *self.r;
        loop {
            if r.state != State::Body || out.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            let avail = match r.find_delimiter() {
                Some(0) => {
                    // End of this part: leave the delimiter for next_part.
                    return Poll::Ready(Ok(()));
                }
                Some(i) => i,
                None => r.clear,
            };
            if avail > 0 {
                let n = avail.min(out.remaining());
                out.put_slice(&r.buf[..n]);
                r.consume(n);
                return Poll::Ready(Ok(()));
            }
            if !ready!(r.poll_fill(cx))? {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the multipart body ended inside a part",
                )));
            }
        }
    }
}

/// The boundary of a request's multipart Content-Type, if it has a usable
/// one (1-200 characters; RFC 2046 allows 70, clients send more).
pub fn boundary(ct: &MediaType) -> Option<&str> {
    ct.param("boundary")
        .filter(|b| !b.is_empty() && b.len() <= 200)
}

/// A fresh boundary for a response.
pub fn new_boundary() -> String {
    format!("fulcrum-{:032x}", rand::random::<u128>())
}

/// The `Content-Type` of a multipart/related response.
pub fn content_type(boundary: &str, part_type: &str) -> String {
    format!("multipart/related; type=\"{part_type}\"; boundary={boundary}")
}

/// The delimiter and headers that open a part.
pub fn part_head(boundary: &str, first: bool, content_type: &str, location: Option<&str>) -> Bytes {
    let mut s = String::with_capacity(128);
    if !first {
        s.push_str("\r\n");
    }
    s.push_str("--");
    s.push_str(boundary);
    s.push_str("\r\nContent-Type: ");
    s.push_str(content_type);
    if let Some(l) = location {
        s.push_str("\r\nContent-Location: ");
        s.push_str(l);
    }
    s.push_str("\r\n\r\n");
    Bytes::from(s)
}

/// The close delimiter.
pub fn closing(boundary: &str, any_part: bool) -> Bytes {
    let lead = if any_part { "\r\n" } else { "" };
    Bytes::from(format!("{lead}--{boundary}--\r\n"))
}

/// A part's body in a response.
pub type OutBody = futures::stream::BoxStream<'static, io::Result<Bytes>>;

/// One part of a response: its Content-Type, Content-Location and body.
pub struct OutPart {
    pub content_type: String,
    pub location: Option<String>,
    pub body: OutBody,
}

/// A streamed multipart/related response body: parts are produced (and
/// their bytes read) only as the client takes them. Errors end the body
/// early; the client sees a missing close delimiter.
pub fn response_body(
    boundary: String,
    parts: futures::stream::BoxStream<'static, io::Result<OutPart>>,
) -> axum::body::Body {
    use futures::stream;
    let b = boundary.clone();
    let framed = parts
        .enumerate()
        .map(move |(i, p)| match p {
            Ok(p) => {
                let head = part_head(&b, i == 0, &p.content_type, p.location.as_deref());
                stream::once(async move { Ok(head) }).chain(p.body).boxed()
            }
            Err(e) => stream::once(async move { Err(e) }).boxed(),
        })
        .flatten()
        .chain(stream::once(async move { Ok(closing(&boundary, true)) }));
    axum::body::Body::from_stream(framed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn chunked(data: &[u8], size: usize) -> BodyStream {
        let chunks: Vec<Result<Bytes, io::Error>> = data
            .chunks(size.max(1))
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        Box::pin(futures::stream::iter(chunks))
    }

    async fn parts(data: &[u8], size: usize) -> Result<Vec<(Option<String>, Vec<u8>)>, String> {
        let mut r = MultipartReader::new(chunked(data, size), "XyZ");
        let mut out = Vec::new();
        while let Some(h) = r.next_part().await.map_err(|e| e.to_string())? {
            let mut body = Vec::new();
            r.body()
                .read_to_end(&mut body)
                .await
                .map_err(|e| e.to_string())?;
            out.push((h.content_type, body));
        }
        Ok(out)
    }

    #[tokio::test]
    async fn reads_parts_in_any_chunking() {
        let body = b"preamble\r\n--XyZ  \r\nContent-Type: application/dicom\r\n\r\none\r\n--X\r\n--XyZ\r\n\r\n\r\ntwo\r\n\r\n--XyZ--\r\nepilogue";
        for size in [1, 2, 3, 7, 16, 1000] {
            let got = parts(body, size).await.expect("parses");
            assert_eq!(got.len(), 2, "chunk size {size}");
            assert_eq!(got[0].0.as_deref(), Some("application/dicom"));
            assert_eq!(got[0].1, b"one\r\n--X");
            assert_eq!(got[1].0, None);
            assert_eq!(got[1].1, b"\r\ntwo\r\n");
        }
        let no_preamble = b"--XyZ\r\nContent-Type: a/b\r\n\r\nx\r\n--XyZ--";
        assert_eq!(parts(no_preamble, 4).await.expect("parses")[0].1, b"x");
    }

    #[tokio::test]
    async fn rejects_broken_bodies() {
        assert!(parts(b"no boundary here", 3).await.is_err());
        assert!(parts(b"--XyZ\r\n\r\nunterminated part", 3).await.is_err());
        assert!(parts(b"--XyZ\r\nContent-Type: a", 3).await.is_err());
        assert!(parts(b"--XyZjunk\r\n\r\nx\r\n--XyZ--", 3).await.is_err());
        assert!(parts(b"", 3).await.is_err());
    }

    #[tokio::test]
    async fn parts_read_whole_match_streamed_ones_and_long_ones_come_as_head() {
        let body = b"preamble\r\n--XyZ  \r\nContent-Type: application/dicom\r\n\r\none\r\n--X\r\n--XyZ\r\n\r\n\r\ntwo\r\n\r\n--XyZ\r\n\r\n\r\n--XyZ--\r\nepilogue";
        for size in [1, 2, 3, 7, 16, 1000] {
            let mut r = MultipartReader::new(chunked(body, size), "XyZ");
            let mut got = Vec::new();
            while r.next_part().await.expect("parses").is_some() {
                match r.read_part(100, 0).await.expect("reads") {
                    PartData::Whole(b) => got.push(b),
                    PartData::Head(_) => panic!("short parts come whole"),
                }
            }
            let expected: [&[u8]; 3] = [b"one\r\n--X", b"\r\ntwo\r\n", b""];
            assert_eq!(got, expected, "chunk size {size}");
        }
        // Longer than the limit: a head past it, then the rest streams.
        let long: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let mut body = b"--XyZ\r\n\r\n".to_vec();
        body.extend_from_slice(&long);
        body.extend_from_slice(b"\r\n--XyZ\r\n\r\nlast\r\n--XyZ--");
        let mut r = MultipartReader::new(chunked(&body, 700), "XyZ");
        assert!(r.next_part().await.expect("first").is_some());
        let PartData::Head(head) = r.read_part(1000, 1000).await.expect("reads") else {
            panic!("a long part comes as its head");
        };
        assert!(head.len() > 1000 && long.starts_with(&head));
        let mut rest = Vec::new();
        r.body().read_to_end(&mut rest).await.expect("rest");
        assert_eq!([&head[..], &rest[..]].concat(), long);
        assert!(r.next_part().await.expect("second").is_some());
        assert!(matches!(r.read_part(1000, 0).await, Ok(PartData::Whole(b)) if b == b"last"[..]));
        assert!(r.next_part().await.expect("end").is_none());
        // Truncated inside a part.
        let mut r = MultipartReader::new(chunked(b"--XyZ\r\n\r\nunterminated", 4), "XyZ");
        assert!(r.next_part().await.expect("first").is_some());
        assert!(r.read_part(1000, 0).await.is_err());
    }

    #[tokio::test]
    async fn skips_unread_bodies() {
        let body = b"--XyZ\r\n\r\naaaaaaaaaa\r\n--XyZ\r\n\r\nb\r\n--XyZ--";
        let mut r = MultipartReader::new(chunked(body, 3), "XyZ");
        assert!(r.next_part().await.expect("first").is_some());
        assert!(r.next_part().await.expect("second").is_some());
        let mut b = Vec::new();
        r.body().read_to_end(&mut b).await.expect("read");
        assert_eq!(b, b"b");
        assert!(r.next_part().await.expect("end").is_none());
    }
}
