//! The STOW-RS request body: a Content-Type header (its boundary taken as
//! STOW-RS takes it) and a multipart/related body read part by part as it
//! arrives in pieces. Reading in pieces must give what reading the body
//! at once gives.
//!
//! Input: one byte choosing the piece size, the Content-Type value, `\n`,
//! the body.

#![no_main]

use std::io;

use bytes::Bytes;
use fulcrum_api::dicomweb::media::{accept_list, MediaType};
use fulcrum_api::dicomweb::multipart::{boundary, BodyStream, MultipartReader};
use libfuzzer_sys::fuzz_target;
use tokio::io::AsyncReadExt;

fuzz_target!(|data: &[u8]| {
    let Some((&size, rest)) = data.split_first() else {
        return;
    };
    let (ct, body) = match rest.iter().position(|b| *b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let Ok(ct) = std::str::from_utf8(ct) else {
        return;
    };
    let _ = accept_list(ct.split(','));
    let Some(mt) = MediaType::parse(ct) else {
        return;
    };
    let _ = mt.wanted();
    let Some(boundary) = boundary(&mt) else {
        return;
    };
    let piece = size as usize % 64 + 1;
    let skip_odd = size & 0x80 != 0;
    let whole = read_all(body, body.len().max(1), boundary, skip_odd);
    let pieces = read_all(body, piece, boundary, skip_odd);
    assert_eq!(whole, pieces, "multipart differs in pieces of {piece}");
});

/// Every part's Content-Type and body (odd parts left unread when
/// `skip_odd`), then the error that ended the body, if any.
fn read_all(
    body: &[u8],
    piece: usize,
    boundary: &str,
    skip_odd: bool,
) -> (Vec<(Option<String>, Vec<u8>)>, Option<String>) {
    let chunks: Vec<io::Result<Bytes>> = body
        .chunks(piece)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let stream: BodyStream = Box::pin(futures::stream::iter(chunks));
    let mut r = MultipartReader::new(stream, boundary);
    let mut parts = Vec::new();
    let err = futures::executor::block_on(async {
        loop {
            match r.next_part().await {
                Ok(Some(h)) => {
                    let mut b = Vec::new();
                    if !(skip_odd && parts.len() % 2 == 1) {
                        if let Err(e) = r.body().read_to_end(&mut b).await {
                            return Some(e.to_string());
                        }
                    }
                    parts.push((h.content_type, b));
                }
                Ok(None) => return None,
                Err(e) => return Some(e.to_string()),
            }
        }
    });
    (parts, err)
}
