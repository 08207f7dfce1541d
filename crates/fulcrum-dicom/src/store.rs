//! Storing an instance: the header (everything before Pixel Data) is read
//! and parsed for the index, then stored with small chunks; the pixel data
//! streams through the engine with large chunks, watched by the scanner so
//! a truncated instance is refused. Byte-exact: the stored object is the
//! Part 10 file as received (or, for DIMSE, our meta + the dataset as sent).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use dicom_core::Tag;
use dicom_dictionary_std::uids;
use dicom_object::mem::InMemElement;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::{TransferSyntaxIndex, TransferSyntaxRegistry};
use fulcrum_catalog::dicom::{DicomWrite, InstanceRecord};
use fulcrum_catalog::ObjectWrite;
use fulcrum_engine::{BodyRegion, ChunkParams, ContentDigest, Layout};
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};

use crate::archive::{instance_key, Archive};
use crate::error::{DicomError, DicomResult};
use crate::index::{extract, Extracted};
use crate::kept;
use crate::part10::{build_prelude, parse_prelude, Prelude};
use crate::scan::{Framing, PixelData, Walker};

/// How a store went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// New instance stored.
    Stored,
    /// Same SOP Instance UID with an identical dataset (any file meta) was already stored: nothing new.
    AlreadyStored,
    /// Replaced an earlier, different version (kept under `versions/`).
    Replaced,
}

/// The result of one successful store.
#[derive(Debug, Clone)]
pub struct StoredInstance {
    pub study_uid: String,
    pub series_uid: String,
    pub sop_uid: String,
    pub sop_class_uid: String,
    pub transfer_syntax: String,
    pub size: u64,
    pub outcome: Outcome,
    /// The study the instance was stored in before, when it left it
    /// (re-sent under another Study or Series Instance UID): its
    /// attributes are refreshed (see [`Archive::refresh_left`]).
    pub left: Option<String>,
}

/// What the sender says about the instance beyond its bytes.
#[derive(Debug, Clone, Default)]
pub struct StoreContext {
    /// STOW-RS to `/studies/{uid}`: the instance must belong to it.
    pub study_uid: Option<String>,
    /// Instances committed together (one STOW-RS request) share packs.
    pub batch: Option<fulcrum_engine::StageBatch>,
    /// C-STORE: the command names the SOP Class and Instance, and the file
    /// meta is built from it. A dataset naming others is refused (0xA900,
    /// as DCMTK's storescp and Orthanc answer), not stored under a meta
    /// that contradicts it, with the sender believing another UID stored.
    pub named_by_command: bool,
    /// Import: an instance whose bytes are an earlier version of the one
    /// stored (kept under `versions/`) is already stored, not a newer one.
    /// A tree holding several files of one SOP Instance UID otherwise
    /// replaced the stored one again on every rerun of the import.
    pub known_versions_stored: bool,
}

/// dicom-rs reads the root elements whose dictionary VR is "US or SS"
/// (Pixel Padding Value, Smallest Image Pixel Value…) as SS whenever Pixel
/// Representation is 1, even where an explicit VR data set wrote US: the
/// VR written is the element's (PS3.5 7.1.2), and metadata showed
/// `US 63536` as `SS -2000`. Those are set back to US, their values read
/// unsigned, when the bytes hold the tag with US.
fn explicit_us(obj: &mut InMemDicomObject, bytes: &[u8], framing: Framing) {
    use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
    use dicom_core::header::Header;
    use dicom_core::{DataElement, PrimitiveValue, VR};
    let xs: Vec<Tag> = obj
        .iter()
        .filter(|e| e.vr() == VR::SS)
        .map(|e| e.tag())
        .filter(|t| {
            dicom_dictionary_std::StandardDataDictionary
                .by_tag(*t)
                .is_some_and(|d| d.vr() == VirtualVr::Xs)
        })
        .collect();
    for tag in xs {
        let half = |v: u16| match framing.big_endian {
            true => v.to_be_bytes(),
            false => v.to_le_bytes(),
        };
        let written_us = [&half(tag.0)[..], &half(tag.1), b"US"].concat();
        if !bytes.windows(6).any(|w| w == written_us) {
            continue;
        }
        let Some(PrimitiveValue::I16(values)) =
            obj.get(tag).and_then(|e| e.value().primitive().cloned())
        else {
            continue;
        };
        let unsigned = values.iter().map(|v| *v as u16).collect();
        obj.put(DataElement::new(tag, VR::US, PrimitiveValue::U16(unsigned)));
    }
}

/// A root element that is or holds an undefined-length UN sequence
/// (CP-246, PS3.5 6.2.2: a sequence relayed by a node that did not know
/// it, its items in Implicit VR Little Endian), read apart: one that is
/// such a UN (12-byte explicit header, then items and their delimiter) as
/// the sequence it is, its text in the dataset's `charset`. One that only
/// holds one deeper down is left out (None): dicom-rs would read those
/// items as explicit and fail.
fn cp246_element(element: &[u8], charset: Option<&[u8]>) -> Option<InMemElement> {
    let (head, items) = element.split_at_checked(12)?;
    if &head[4..6] != b"UN" {
        return None;
    }
    let tag = Tag(
        u16::from_le_bytes([head[0], head[1]]),
        u16::from_le_bytes([head[2], head[3]]),
    );
    crate::unknown_vr::read_implicit(tag, u32::MAX, items, charset).filter(|e| e.items().is_some())
}

/// Parses a bare dataset in a transfer syntax (deflated ones are inflated),
/// its text decoded in its character set (see [`crate::charset`]) and
/// standard attributes written as UN read with their VR (see
/// [`crate::unknown_vr`]).
pub fn parse_dataset(bytes: &[u8], ts_uid: &str) -> DicomResult<InMemDicomObject> {
    parse_dataset_within(bytes, ts_uid, MAX_INFLATED)
}

/// [`parse_dataset`] of a deflated data set that may inflate to at most
/// `max_inflated` bytes (a request's data set: a storage commitment
/// request inflated from 900 kB to 900 MB).
pub fn parse_dataset_within(
    bytes: &[u8],
    ts_uid: &str,
    max_inflated: u64,
) -> DicomResult<InMemDicomObject> {
    if ts_uid == uids::DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN {
        // Inflated here and walked like any Explicit VR Little Endian data
        // set: dicom-rs would inflate it itself and recurse into its
        // sequences unbounded (2,000 levels in 250 bytes overflowed the
        // stack and aborted the server).
        let inflated = crate::decode::inflate_at_most(bytes, max_inflated)
            .map_err(|e| DicomError::Malformed(format!("cannot inflate the dataset: {e}")))?;
        if inflated.len() as u64 > max_inflated {
            return Err(DicomError::TooLarge(max_inflated));
        }
        return parse_dataset(&inflated, uids::EXPLICIT_VR_LITTLE_ENDIAN);
    }
    // GE's private syntax frames its data set as Implicit VR Little
    // Endian; other syntaxes the registry lacks are taken as explicit.
    let framed_as = match ts_uid {
        crate::scan::GE_PRIVATE_IMPLICIT => uids::IMPLICIT_VR_LITTLE_ENDIAN,
        _ => uids::EXPLICIT_VR_LITTLE_ENDIAN,
    };
    let ts = TransferSyntaxRegistry
        .get(ts_uid)
        .or_else(|| TransferSyntaxRegistry.get(framed_as))
        .ok_or_else(|| DicomError::Malformed(format!("unknown transfer syntax {ts_uid}")))?;
    let malformed =
        |e: &dyn std::fmt::Display| DicomError::Malformed(format!("cannot parse the dataset: {e}"));
    // The framing first, whoever calls: dicom-rs allocates what a length
    // claims and recurses into every nested sequence, which the walker
    // bounds. It also finds the CP-246 elements dicom-rs cannot read in
    // place (Explicit VR Little Endian only; deflated data sets are walked
    // inflated at ingest).
    let framing = Framing::of(ts_uid);
    let opaque = match framing {
        Some(framing) => {
            let mut walker = Walker::new(framing);
            walker.feed(bytes).map_err(|e| malformed(&e))?;
            match framing == Framing::EXPLICIT_LE {
                true => walker.opaque_elements(),
                false => Vec::new(),
            }
        }
        None => Vec::new(),
    };
    let read = |b: &[u8]| InMemDicomObject::read_dataset_with_ts(b, ts).map_err(|e| malformed(&e));
    let mut obj = match opaque.is_empty() {
        true => read(bytes)?,
        false => {
            let opaque: Vec<_> = opaque
                .into_iter()
                .map(|r| r.start as usize..r.end as usize)
                .collect();
            let mut rest = Vec::with_capacity(bytes.len());
            let mut at = 0;
            for r in &opaque {
                rest.extend_from_slice(&bytes[at..r.start]);
                at = r.end;
            }
            rest.extend_from_slice(&bytes[at..]);
            let mut obj = read(&rest)?;
            let charset = crate::unknown_vr::charset_bytes(&obj);
            for r in opaque {
                if let Some(e) = cp246_element(&bytes[r], charset.as_deref()) {
                    obj.put(e);
                }
            }
            obj
        }
    };
    if let Some(framing) = framing.filter(|f| f.explicit) {
        explicit_us(&mut obj, bytes, framing);
    }
    if ts.endianness() == dicom_encoding::Endianness::Little {
        crate::unknown_vr::resolve(&mut obj);
    }
    crate::charset::repair(&mut obj, bytes);
    Ok(obj)
}

/// Reads into `buf` until it holds at least `want` bytes or the source ends;
/// returns false at end of stream.
async fn fill<R: AsyncRead + Unpin>(
    src: &mut R,
    buf: &mut BytesMut,
    want: usize,
) -> io::Result<bool> {
    while buf.len() < want {
        buf.reserve(READ_SIZE);
        if src.read_buf(buf).await? == 0 {
            return Ok(false);
        }
    }
    Ok(true)
}

const READ_SIZE: usize = 64 * 1024;

/// Largest deflated instance accepted (it is held in memory to index it).
const MAX_DEFLATED: usize = 512 * 1024 * 1024;

/// Largest dataset a deflated instance may inflate to (it is inflated
/// whole to check it is complete): a small upload claiming far more is a
/// deflate bomb, refused before it costs minutes of CPU.
const MAX_INFLATED: u64 = 4 * 1024 * 1024 * 1024;

/// Feeds what an inner reader yields to the scanner.
struct Watched<'w, R> {
    inner: R,
    walker: &'w mut Walker,
    /// The walker keeping elements past a header cut at the cap.
    tail: &'w mut Option<Walker>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Watched<'_, R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let new = &buf.filled()[before..];
                match this.walker.feed(new) {
                    Ok(()) => {
                        kept::feed(this.tail, new);
                        Poll::Ready(Ok(()))
                    }
                    Err(e) => Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e))),
                }
            }
            other => other,
        }
    }
}

fn io_err(e: io::Error) -> DicomError {
    if e.kind() == io::ErrorKind::InvalidData {
        DicomError::Malformed(e.to_string())
    } else {
        DicomError::Truncated(format!("the upload ended early: {e}"))
    }
}

impl Archive {
    /// Stores a Part 10 file read from `src` (STOW-RS, import, S3);
    /// returns once it is durable and indexed.
    pub async fn store_file<R: AsyncRead + Unpin + Send>(
        &self,
        tenant: &str,
        src: R,
        ctx: &StoreContext,
    ) -> DicomResult<StoredInstance> {
        self.stage_file(tenant, src, ctx).await?.commit().await
    }

    /// Reads, checks and stores a Part 10 file without making it visible:
    /// the caller commits it (many at once share a commit), or drops it.
    pub async fn stage_file<R: AsyncRead + Unpin + Send>(
        &self,
        tenant: &str,
        mut src: R,
        ctx: &StoreContext,
    ) -> DicomResult<PendingInstance> {
        let mut buf = BytesMut::with_capacity(READ_SIZE);
        let prelude = loop {
            let want = buf.len() + 1;
            let more = fill(&mut src, &mut buf, want).await.map_err(io_err)?;
            if let Some(p) = parse_prelude(&buf, !more)? {
                break p;
            }
            if !more {
                return Err(DicomError::NotDicom("the file is too short".into()));
            }
        };
        if prelude.sop_class_uid.as_deref() == Some(uids::MEDIA_STORAGE_DIRECTORY_STORAGE) {
            return Err(DicomError::MediaDirectory);
        }
        let head = buf.split_to(prelude.len).freeze();
        self.store_parts(tenant, head, prelude, buf, src, ctx).await
    }

    /// Stores a dataset written without preamble and file meta group, read
    /// whole (files of older archives, see
    /// [`crate::part10::bare_dataset_syntax`]): its SOP Class and Instance
    /// UIDs are read from it and a meta group is written for it, as for a
    /// C-STORE. `source_ae` is named in that meta. The study the instance
    /// left (`left`) is the caller's to refresh.
    pub async fn store_bare_dataset(
        &self,
        tenant: &str,
        dataset: Bytes,
        source_ae: &str,
        ctx: &StoreContext,
    ) -> DicomResult<StoredInstance> {
        let ts = crate::part10::bare_dataset_syntax(&dataset).ok_or_else(|| {
            DicomError::NotDicom("neither a Part 10 file nor a bare dataset".into())
        })?;
        // Walked whole first: bytes that merely open like a dataset (a
        // text file starting 08 00) must not reach the parser, which
        // allocates what a length claims.
        let not_dataset = |e: &dyn std::fmt::Display| {
            DicomError::NotDicom(format!("no file meta group, and not a dataset: {e}"))
        };
        let d = dataset.clone();
        let ex = tokio::task::spawn_blocking(move || {
            let framing = Framing::of(ts).ok_or_else(|| not_dataset(&ts))?;
            let mut walker = Walker::new(framing);
            walker
                .feed(&d)
                .and_then(|()| walker.finish())
                .map_err(|e| not_dataset(&e))?;
            parse_header(&d, ts).map_err(|e| not_dataset(&e))
        })
        .await
        .map_err(|e| DicomError::Malformed(e.to_string()))??;
        let class = ex
            .sop_class_uid
            .clone()
            .ok_or(DicomError::MissingAttribute("SOP Class UID (0008,0016)"))?;
        let ctx = StoreContext {
            named_by_command: true,
            ..ctx.clone()
        };
        let src = std::io::Cursor::new(dataset);
        self.stage_dataset(
            tenant,
            (&class, &ex.attrs.sop_uid, ts),
            source_ae,
            src,
            &ctx,
        )
        .await?
        .commit_only()
        .await
    }

    /// Stores a dataset received without a file meta group (DIMSE): a meta
    /// is written from what the command said. The study the instance left
    /// (`left`) is the caller's to refresh: an association re-sending a
    /// study under new UIDs refreshes it once, at its end.
    #[allow(clippy::too_many_arguments)]
    pub async fn store_dataset<R: AsyncRead + Unpin + Send>(
        &self,
        tenant: &str,
        sop_class_uid: &str,
        sop_instance_uid: &str,
        transfer_syntax: &str,
        calling_ae: &str,
        src: R,
    ) -> DicomResult<StoredInstance> {
        let ctx = StoreContext {
            named_by_command: true,
            ..StoreContext::default()
        };
        let ids = (sop_class_uid, sop_instance_uid, transfer_syntax);
        self.stage_dataset(tenant, ids, calling_ae, src, &ctx)
            .await?
            .commit_only()
            .await
    }

    /// Stages a dataset under a meta group written for it from `(SOP
    /// Class UID, SOP Instance UID, transfer syntax)`.
    async fn stage_dataset<R: AsyncRead + Unpin + Send>(
        &self,
        tenant: &str,
        (sop_class_uid, sop_instance_uid, transfer_syntax): (&str, &str, &str),
        source_ae: &str,
        src: R,
        ctx: &StoreContext,
    ) -> DicomResult<PendingInstance> {
        let pre = build_prelude(sop_class_uid, sop_instance_uid, transfer_syntax, source_ae)?;
        let prelude = Prelude {
            len: pre.len(),
            transfer_syntax: transfer_syntax.to_string(),
            sop_class_uid: Some(sop_class_uid.to_string()),
            sop_instance_uid: Some(sop_instance_uid.to_string()),
        };
        self.store_parts(tenant, pre.into(), prelude, BytesMut::new(), src, ctx)
            .await
    }

    /// `head` = preamble + meta as stored, `buf` = dataset bytes already
    /// read, `src` = the rest.
    async fn store_parts<R: AsyncRead + Unpin + Send>(
        &self,
        tenant: &str,
        head: Bytes,
        prelude: Prelude,
        mut buf: BytesMut,
        mut src: R,
        ctx: &StoreContext,
    ) -> DicomResult<PendingInstance> {
        let ts = prelude.transfer_syntax.clone();
        let bucket_id = self.bucket_id(tenant).await?;
        let Some(framing) = Framing::of(&ts) else {
            return self
                .store_deflated(tenant, bucket_id, head, prelude, buf, src, ctx)
                .await;
        };
        // Read the header: up to Pixel Data, the end, or the cap.
        let mut walker = Walker::new(framing).with_cut_limit(self.cfg.header_cap as u64);
        walker
            .feed(&buf)
            .map_err(|e| DicomError::Malformed(e.to_string()))?;
        let mut eof = false;
        while walker.pixel().is_none() && buf.len() < self.cfg.header_cap {
            let before = buf.len();
            if !fill(&mut src, &mut buf, before + 1).await.map_err(io_err)? {
                eof = true;
                break;
            }
            walker
                .feed(&buf[before..])
                .map_err(|e| DicomError::Malformed(e.to_string()))?;
        }
        let (split, parse_end) = header_bounds(&walker, buf.len(), eof)?;
        let header = buf.split_to(split).freeze();
        // A header cut at the cap may lack index attributes that lie past
        // the cut, behind an element that large: the small elements there
        // are kept as the rest streams, and the index is parsed after it.
        let cap = self.cfg.header_cap;
        let cut = cut_at_cap(&walker, eof);
        let mut tail = match cut && parse_end == split {
            true => kept::past_the_cut(framing, cap, &buf),
            false => None,
        };
        let early = match cut {
            true => None,
            false => {
                let ex = index_header(header.slice(..parse_end), ts.clone()).await?;
                check(&ex, &prelude, ctx)?;
                Some(ex)
            }
        };
        // Store: meta + header with small chunks, pixel data with large ones.
        let head_len = head.len() + header.len();
        // The dataset's identity, whatever file meta it came with: its
        // header's bytes, then its pixel data's chunks.
        let header_id = blake3::hash(&header);
        let mut regions: Vec<BodyRegion<'_>> = vec![BodyRegion::new(
            std::io::Cursor::new([head, header.clone()].concat()),
            ChunkParams::SMALL,
        )];
        // Byte planes only where the bulk region starts with Pixel Data.
        let at_split = walker.pixel().filter(|p| p.elem_offset as usize == split);
        let layout = sample_layout(
            at_split,
            early.as_ref().and_then(|e| e.attrs.bits_allocated),
        );
        let rest = std::io::Cursor::new(buf.freeze());
        let watched = Watched {
            inner: src,
            walker: &mut walker,
            tail: &mut tail,
        };
        regions.push(
            BodyRegion::new(
                tokio::io::AsyncReadExt::chain(rest, watched),
                ChunkParams::BULK,
            )
            .with_layout(layout),
        );
        let staged = self
            .engine
            .stage(regions, ContentDigest::ChunkList, ctx.batch.as_ref())
            .await
            .map_err(|e| match e {
                fulcrum_engine::EngineError::Store(fulcrum_store::StoreError::Source(io)) => {
                    io_err(io)
                }
                e => e.into(),
            })?;
        walker
            .finish()
            .map_err(|e| DicomError::Truncated(e.to_string()))?;
        let ex = match early {
            Some(ex) => ex,
            None => {
                let (bytes, unseen) = kept::index_bytes(&header, parse_end, cut, tail.as_mut());
                let ex = index_header(bytes.into(), ts.clone())
                    .await
                    .map_err(|e| past_the_cap(e, unseen, cap))?;
                check(&ex, &prelude, ctx)?;
                ex
            }
        };
        let existing = self.instance(tenant, &ex.attrs.sop_uid).await?;
        let dataset_offset = prelude.len as i64;
        let abs = |o: u64| o as i64 + dataset_offset;
        let pixel = walker.pixel();
        let encapsulated = pixel.filter(|p| p.len.is_none());
        let fragments = encapsulated.map(|p| {
            let list: Vec<(i64, u32)> = p.fragments.iter().map(|(o, l)| (abs(*o), *l)).collect();
            serde_json::to_string(&list).unwrap_or_default()
        });
        let frame_starts = encapsulated.map(|p| {
            p.frame_starts
                .iter()
                .map(|s| if *s { '1' } else { '0' })
                .collect()
        });
        let rec = InstanceRecord {
            dataset_digest: staged.digest_from(head_len as u64, header_id.as_bytes()),
            pixel_offset: pixel.map(|p| abs(p.value_offset)),
            pixel_len: pixel.and_then(|p| p.len).map(|l| l as i64),
            pixel_vr: pixel
                .and_then(|p| p.vr)
                .map(|v| String::from_utf8_lossy(&v).into_owned()),
            pixel_element: pixel.map(|p| i64::from(p.element)),
            fragments,
            frame_starts,
            header_len: head_len as i64,
            dataset_offset,
            ..Default::default()
        };
        Ok(PendingInstance {
            archive: self.clone(),
            tenant: tenant.to_string(),
            bucket_id,
            staged,
            ex,
            prelude,
            rec,
            existing,
            known_versions_stored: ctx.known_versions_stored,
        })
    }

    /// Deflated datasets have no element framing in their raw bytes: the
    /// whole instance is read, inflated to index it, and stored as one region.
    #[allow(clippy::too_many_arguments)]
    async fn store_deflated<R: AsyncRead + Unpin + Send>(
        &self,
        tenant: &str,
        bucket_id: i64,
        head: Bytes,
        prelude: Prelude,
        mut buf: BytesMut,
        mut src: R,
        ctx: &StoreContext,
    ) -> DicomResult<PendingInstance> {
        loop {
            if buf.len() > MAX_DEFLATED {
                return Err(DicomError::TooLarge(MAX_DEFLATED as u64));
            }
            let before = buf.len();
            if !fill(&mut src, &mut buf, before + 1).await.map_err(io_err)? {
                break;
            }
        }
        let dataset = buf.freeze();
        // Indexed, checked whole, and its identity taken (whatever file
        // meta it came with: its bytes, held here) off the async workers.
        let (d, cap) = (dataset.clone(), self.cfg.header_cap);
        let (ex, digest) = tokio::task::spawn_blocking(move || {
            index_deflated(&d, cap).map(|ex| (ex, dataset_digest(&d)))
        })
        .await
        .map_err(|e| DicomError::Malformed(e.to_string()))??;
        check(&ex, &prelude, ctx)?;
        let existing = self.instance(tenant, &ex.attrs.sop_uid).await?;
        // One region, chunked as before the digest was kept, so an
        // instance stored then is still recognised by its bytes.
        let all = [head, dataset].concat();
        let total = all.len() as i64;
        let regions: Vec<BodyRegion<'_>> = vec![BodyRegion::new(
            std::io::Cursor::new(all),
            ChunkParams::BULK,
        )];
        let staged = self
            .engine
            .stage(regions, ContentDigest::ChunkList, ctx.batch.as_ref())
            .await?;
        let rec = InstanceRecord {
            dataset_digest: Some(digest),
            dataset_offset: prelude.len as i64,
            header_len: total,
            ..Default::default()
        };
        Ok(PendingInstance {
            archive: self.clone(),
            tenant: tenant.to_string(),
            bucket_id,
            staged,
            ex,
            prelude,
            rec,
            existing,
            known_versions_stored: ctx.known_versions_stored,
        })
    }
}

/// An instance read and stored but not yet visible.
pub struct PendingInstance {
    archive: Archive,
    tenant: String,
    bucket_id: i64,
    staged: fulcrum_engine::Staged,
    ex: Extracted,
    prelude: Prelude,
    rec: InstanceRecord,
    existing: Option<InstanceRecord>,
    /// See [`StoreContext::known_versions_stored`].
    known_versions_stored: bool,
}

impl PendingInstance {
    /// Bytes of the instance.
    pub fn size(&self) -> u64 {
        self.staged.size()
    }

    pub fn sop_uid(&self) -> &str {
        &self.ex.attrs.sop_uid
    }

    /// The archive and tenant to refresh a study this instance may leave
    /// with (see [`Self::commit_only`]).
    pub fn refresher(&self) -> (Archive, String) {
        (self.archive.clone(), self.tenant.clone())
    }

    pub fn sop_class_uid(&self) -> &str {
        self.ex
            .sop_class_uid
            .as_deref()
            .or(self.prelude.sop_class_uid.as_deref())
            .unwrap_or_default()
    }

    /// Makes a staged instance visible with its index rows, or recognises
    /// an identical copy already stored; refreshes the study it left, if
    /// any.
    pub async fn commit(self) -> DicomResult<StoredInstance> {
        let (archive, tenant) = self.refresher();
        let stored = self.commit_only().await?;
        if let Some(study) = &stored.left {
            archive.refresh_left(&tenant, study).await;
        }
        Ok(stored)
    }

    /// [`Self::commit`] leaving the study the instance left (`left`) to the
    /// caller: a batch refreshes each such study once, after all of it.
    pub async fn commit_only(self) -> DicomResult<StoredInstance> {
        let PendingInstance {
            archive,
            tenant,
            bucket_id,
            staged,
            ex,
            prelude,
            mut rec,
            existing,
            known_versions_stored,
        } = self;
        let etag = staged.etag();
        let size = staged.size();
        let sop_class_uid = ex
            .sop_class_uid
            .clone()
            .or(prelude.sop_class_uid.clone())
            .ok_or(DicomError::MissingAttribute("SOP Class UID (0008,0016)"))?;
        let done = |outcome| StoredInstance {
            study_uid: ex.study.study_uid.clone(),
            series_uid: ex.series.series_uid.clone(),
            sop_uid: ex.attrs.sop_uid.clone(),
            sop_class_uid: sop_class_uid.clone(),
            transfer_syntax: prelude.transfer_syntax.clone(),
            size,
            outcome,
            left: None,
        };
        rec.transfer_syntax = prelude.transfer_syntax.clone();
        let outcome = match &existing {
            Some(e)
                if e.etag == etag
                    || fulcrum_catalog::dicom::same_dataset(
                        (e.dataset_digest.as_deref(), &e.transfer_syntax),
                        &rec,
                    ) =>
            {
                return Ok(done(Outcome::AlreadyStored))
            }
            Some(_)
                if known_versions_stored
                    && archive
                        .engine
                        .catalog()
                        .dicom_version_kept(bucket_id, &ex.attrs.sop_uid, &etag)
                        .await? =>
            {
                return Ok(done(Outcome::AlreadyStored))
            }
            Some(_) => Outcome::Replaced,
            None => Outcome::Stored,
        };
        let key = instance_key(&ex.attrs.sop_uid);
        rec.sop_uid = ex.attrs.sop_uid.clone();
        rec.series_uid = ex.series.series_uid.clone();
        rec.study_uid = ex.study.study_uid.clone();
        rec.sop_class_uid = sop_class_uid.clone();
        rec.instance_number = ex.attrs.instance_number;
        rec.object_key = key.clone();
        rec.size = size as i64;
        rec.etag = etag.clone();
        rec.num_frames = ex.attrs.num_frames;
        rec.num_rows = ex.attrs.num_rows;
        rec.num_columns = ex.attrs.num_columns;
        rec.bits_allocated = ex.attrs.bits_allocated;
        rec.timezone_offset = ex.attrs.timezone_offset.clone();
        let write = DicomWrite {
            tenant: tenant.clone(),
            object: ObjectWrite {
                bucket_id,
                key,
                size: size as i64,
                etag,
                content_type: Some("application/dicom".into()),
                metadata: "{}".into(),
                chunks: Vec::new(),
                completes_upload: None,
                // The engine adds the configured policies' retention
                // (anchored on the Study Date) when it commits.
                lock: Default::default(),
                condition: None,
            },
            study: ex.study.clone(),
            series: ex.series.clone(),
            instance: rec,
            policy: archive.cfg.duplicates,
        };
        archive
            .engine
            .commit_staged(staged, fulcrum_catalog::Write::Dicom(Box::new(write)))
            .await?;
        // The instance left its study or series (re-sent under corrected
        // UIDs): the attributes it gave them go with it.
        let left = existing
            .filter(|e| e.study_uid != ex.study.study_uid || e.series_uid != ex.series.series_uid)
            .map(|e| e.study_uid);
        Ok(StoredInstance {
            left,
            ..done(outcome)
        })
    }
}

/// A digest of dataset bytes held whole (a deflated dataset): BLAKE3,
/// truncated to 16 bytes as the chunk-list digests are.
fn dataset_digest(dataset: &[u8]) -> String {
    hex::encode(&blake3::hash(dataset).as_bytes()[..16])
}

/// Where the header ends once the scanner has seen the first `buf_len`
/// bytes of the dataset (`eof`: all of it): the split between header and
/// pixel data, and the end of what the index parser reads. A dataset that
/// is all here and ends inside an element is refused before it is parsed.
fn header_bounds(walker: &Walker, buf_len: usize, eof: bool) -> DicomResult<(usize, usize)> {
    if eof && walker.pixel().is_none() {
        walker
            .finish()
            .map_err(|e| DicomError::Truncated(e.to_string()))?;
    }
    // Pixel Data past the cap (a first read may bring more than it) does
    // not move the cut: the same dataset is cut in one place, however its
    // bytes arrived.
    let split = match walker.pixel_before_limit() {
        Some(p) => p.elem_offset as usize,
        None if eof => buf_len,
        None => walker.cut_before_limit() as usize,
    };
    let parse_end = split.min(walker.data_end() as usize);
    Ok((split, parse_end))
}

/// What [`inspect_file`] read from a Part 10 file.
#[derive(Debug, Clone)]
pub struct Inspected {
    pub prelude: Prelude,
    pub extracted: Extracted,
    /// Root-level Pixel Data (`None` for deflated datasets, which are not scanned).
    pub pixel: Option<crate::scan::PixelData>,
}

/// The checks and parsing an upload goes through before anything is
/// stored, on a whole Part 10 file in memory and without an archive: the
/// prelude, the element scanner up to Pixel Data (or `header_cap` bytes),
/// the index attributes of the header, then the scanner over the rest
/// (truncation). It follows [`Archive::stage_file`] step by step with the
/// same functions; the `dicom_ingest` fuzz target drives it.
pub fn inspect_file(file: &[u8], header_cap: usize) -> DicomResult<Inspected> {
    let prelude = parse_prelude(file, true)?
        .ok_or_else(|| DicomError::NotDicom("the file is too short".into()))?;
    let dataset = &file[prelude.len..];
    let ts = prelude.transfer_syntax.clone();
    let Some(framing) = Framing::of(&ts) else {
        if dataset.len() > MAX_DEFLATED {
            return Err(DicomError::TooLarge(MAX_DEFLATED as u64));
        }
        let extracted = index_deflated(dataset, header_cap)?;
        check(&extracted, &prelude, &StoreContext::default())?;
        return Ok(Inspected {
            prelude,
            extracted,
            pixel: None,
        });
    };
    let malformed = |e: crate::scan::ScanError| DicomError::Malformed(e.to_string());
    // The header is read as it arrives: in pieces, until Pixel Data or the cap.
    let mut walker = Walker::new(framing).with_cut_limit(header_cap as u64);
    let mut read = 0;
    let mut eof = false;
    while walker.pixel().is_none() && read < header_cap {
        if read == dataset.len() {
            eof = true;
            break;
        }
        let n = (dataset.len() - read).min(READ_SIZE);
        walker.feed(&dataset[read..read + n]).map_err(malformed)?;
        read += n;
    }
    let (split, parse_end) = header_bounds(&walker, read, eof)?;
    let cut = cut_at_cap(&walker, eof);
    let mut tail = match cut && parse_end == split {
        true => kept::past_the_cut(framing, header_cap, &dataset[split..read]),
        false => None,
    };
    let ctx = StoreContext::default();
    let early = match cut {
        true => None,
        false => {
            let ex = parse_header(&dataset[..parse_end], &ts)?;
            check(&ex, &prelude, &ctx)?;
            Some(ex)
        }
    };
    walker.feed(&dataset[read..]).map_err(malformed)?;
    kept::feed(&mut tail, &dataset[read..]);
    walker
        .finish()
        .map_err(|e| DicomError::Truncated(e.to_string()))?;
    let extracted = match early {
        Some(ex) => ex,
        None => {
            let (bytes, unseen) = kept::index_bytes(dataset, parse_end, cut, tail.as_mut());
            let ex = parse_header(&bytes, &ts).map_err(|e| past_the_cap(e, unseen, header_cap))?;
            check(&ex, &prelude, &ctx)?;
            ex
        }
    };
    Ok(Inspected {
        prelude,
        extracted,
        pixel: walker.pixel().cloned(),
    })
}

/// The index attributes of a deflated dataset. It is inflated here, as
/// far as its header goes (at most `cap` bytes, cut at the last element
/// boundary), and the scanner checks the element framing before dicom-rs
/// parses it: dicom-rs allocates whatever length an element claims.
fn index_deflated(deflated: &[u8], cap: usize) -> DicomResult<Extracted> {
    use flate2::{Decompress, FlushDecompress, Status};
    let malformed = |e: crate::scan::ScanError| DicomError::Malformed(e.to_string());
    let bad = |e: flate2::DecompressError| {
        DicomError::Malformed(format!("cannot inflate the dataset: {e}"))
    };
    let mut z = Decompress::new(false);
    // The header is read as for any syntax (up to Pixel Data or the cap);
    // the whole stream is inflated and walked too: a truncated one (its
    // end never comes) or one whose dataset is cut short is refused, as a
    // truncated native file is.
    let framing = Framing::EXPLICIT_LE;
    let mut walker = Walker::new(framing).with_cut_limit(cap as u64);
    let mut whole = Walker::new(framing);
    let mut header = Vec::new();
    // Past a header cut at the cap, small elements are kept for the index.
    let mut tail: Option<Walker> = None;
    let mut piece = vec![0u8; READ_SIZE];
    loop {
        let at = z.total_in() as usize;
        let before = z.total_out();
        let status = z
            .decompress(&deflated[at..], &mut piece, FlushDecompress::None)
            .map_err(bad)?;
        let out = &piece[..(z.total_out() - before) as usize];
        if walker.pixel().is_none() && header.len() < cap {
            walker.feed(out).map_err(malformed)?;
            header.extend_from_slice(out);
            if header.len() >= cap && walker.pixel_before_limit().is_none() {
                let from = walker.cut_before_limit() as usize;
                tail = kept::past_the_cut(framing, cap, &header[from..]);
            }
        } else {
            kept::feed(&mut tail, out);
        }
        whole.feed(out).map_err(malformed)?;
        if z.total_out() > MAX_INFLATED {
            return Err(DicomError::TooLarge(MAX_INFLATED));
        }
        if status == Status::StreamEnd {
            break;
        }
        if out.is_empty() && z.total_in() as usize == at {
            return Err(DicomError::Truncated(
                "the deflate stream ends early (the dataset is cut short)".into(),
            ));
        }
    }
    whole
        .finish()
        .map_err(|e| DicomError::Truncated(e.to_string()))?;
    let eof = walker.pixel().is_none() && header.len() < cap;
    let (split, parse_end) = header_bounds(&walker, header.len(), eof)?;
    let cut = cut_at_cap(&walker, eof);
    if !cut {
        return parse_header(&header[..parse_end], uids::EXPLICIT_VR_LITTLE_ENDIAN);
    }
    if parse_end < split {
        tail = None;
    }
    let (bytes, unseen) = kept::index_bytes(&header, parse_end, cut, tail.as_mut());
    parse_header(&bytes, uids::EXPLICIT_VR_LITTLE_ENDIAN).map_err(|e| past_the_cap(e, unseen, cap))
}

/// Whether the header was cut at the cap: neither the end nor Pixel Data
/// came before it.
fn cut_at_cap(walker: &Walker, eof: bool) -> bool {
    !eof && walker.pixel_before_limit().is_none()
}

/// An attribute the index needs, missing from what was parsed while
/// elements past it were not looked at (`unseen`, see
/// [`kept::index_bytes`]): it may lie there. Said so (0xA700), rather
/// than that the instance has none (0xA900), which it may well have.
fn past_the_cap(e: DicomError, unseen: bool, cap: usize) -> DicomError {
    match e {
        DicomError::MissingAttribute(what) if unseen => DicomError::HeaderTooLarge {
            what,
            cap: cap as u64,
        },
        e => e,
    }
}

/// Parses a header and extracts its index attributes.
fn parse_header(header: &[u8], ts: &str) -> DicomResult<Extracted> {
    parse_dataset(header, ts).and_then(|o| extract(&o))
}

/// Headers up to this size are parsed on the calling task: a thread
/// hand-off costs more than parsing a few KiB.
const INLINE_PARSE: usize = 64 * 1024;

/// Parses a header and extracts its index attributes.
async fn index_header(header: Bytes, ts: String) -> DicomResult<Extracted> {
    let small = header.len() <= INLINE_PARSE;
    let parse = move || parse_header(&header, &ts);
    if small {
        return parse();
    }
    tokio::task::spawn_blocking(parse)
        .await
        .map_err(|e| DicomError::Malformed(e.to_string()))?
}

/// Checks that what the dataset says agrees with its meta and the request.
fn check(ex: &Extracted, prelude: &Prelude, ctx: &StoreContext) -> DicomResult<()> {
    if ctx.named_by_command {
        let differs = |named: &Option<String>, found: Option<&str>| {
            named.as_deref().zip(found).is_some_and(|(n, f)| n != f)
        };
        if differs(&prelude.sop_instance_uid, Some(&ex.attrs.sop_uid))
            || differs(&prelude.sop_class_uid, ex.sop_class_uid.as_deref())
        {
            return Err(DicomError::Mismatch(format!(
                // The phrase first: an Error Comment keeps 64 characters.
                "data set differs from the C-STORE request: SOP Instance {} of class {}, the request names {} of class {}",
                ex.attrs.sop_uid,
                ex.sop_class_uid.as_deref().unwrap_or("(none)"),
                prelude.sop_instance_uid.as_deref().unwrap_or("(none)"),
                prelude.sop_class_uid.as_deref().unwrap_or("(none)"),
            )));
        }
    }
    if let Some(meta_uid) = &prelude.sop_instance_uid {
        if meta_uid != &ex.attrs.sop_uid {
            // Common after careless editing or de-identification; the
            // dataset's own UID identifies the instance.
            tracing::warn!(
                dataset = %ex.attrs.sop_uid,
                meta = %meta_uid,
                "SOP Instance UID of the dataset differs from the file meta or command; indexing the dataset's"
            );
        }
    }
    if let Some(study) = &ctx.study_uid {
        if study != &ex.study.study_uid {
            return Err(DicomError::Mismatch(format!(
                "instance belongs to study {}, not to {study}",
                ex.study.study_uid
            )));
        }
    }
    Ok(())
}

/// How the region from Pixel Data on is laid out, as a compression hint:
/// native samples of 16 or 32 bits are compressed as byte planes (their
/// slowly varying high bytes apart from their noisy low bytes), which
/// shrinks CT/MR pixel data further at about twice zstd's speed.
/// Encapsulated (already compressed) and 8-bit pixel data stay as bytes.
fn sample_layout(pixel: Option<&PixelData>, bits_allocated: Option<i64>) -> Layout {
    match pixel {
        Some(p) if p.len.is_some() => match (p.element, bits_allocated) {
            // Float / Double Float Pixel Data: 32- and 64-bit values.
            (0x0008 | 0x0009, _) => Layout::Samples4,
            (_, Some(16)) => Layout::Samples2,
            (_, Some(32)) => Layout::Samples4,
            _ => Layout::Bytes,
        },
        _ => Layout::Bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::ArchiveConfig;
    use crate::scan::tests::le_elem;

    /// A Source Image Sequence relayed as an undefined-length UN (CP-246:
    /// its item in Implicit VR Little Endian) before the Study Instance
    /// UID. The parse stopped at the UN, so the instance was refused as
    /// having no Study Instance UID (0xA900); now the sequence is read as
    /// one and everything after it too.
    #[test]
    fn an_undefined_length_un_sequence_is_read_in_place() {
        let explicit = |tag: (u16, u16), vr: &[u8; 2], v: &[u8]| le_elem(tag.0, tag.1, vr, v);
        let implicit = |tag: (u16, u16), v: &[u8]| {
            let mut e = [tag.0.to_le_bytes(), tag.1.to_le_bytes()].concat();
            e.extend_from_slice(&(v.len() as u32).to_le_bytes());
            e.extend_from_slice(v);
            e
        };
        // (tag) UN, undefined length, one item of `inner`, the delimiter.
        let cp246 = |tag: [u8; 4], inner: &[u8]| {
            let mut e = tag.to_vec();
            e.extend_from_slice(b"UN\0\0");
            e.extend_from_slice(&u32::MAX.to_le_bytes());
            e.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0]);
            e.extend_from_slice(&(inner.len() as u32).to_le_bytes());
            e.extend_from_slice(inner);
            e.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
            e
        };
        let mut ds = explicit((0x0008, 0x0005), b"CS", b"ISO_IR 192");
        ds.extend(explicit((0x0008, 0x0018), b"UI", b"1.2.3.4\0"));
        let mut inner = implicit((0x0008, 0x0104), "é ".as_bytes());
        inner.extend(implicit((0x0008, 0x1155), b"1.2.3.9\0"));
        ds.extend(cp246([0x08, 0x00, 0x12, 0x21], &inner));
        ds.extend(explicit((0x0020, 0x000D), b"UI", b"1.2.3.5\0"));
        let obj = parse_dataset(&ds, "1.2.840.10008.1.2.1").expect("parses");
        let text = |o: &InMemDicomObject, t| {
            o.get(t)
                .and_then(|e| e.to_str().ok())
                .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
        };
        assert_eq!(text(&obj, Tag(0x0020, 0x000D)).as_deref(), Some("1.2.3.5"));
        let seq = obj.get(Tag(0x0008, 0x2112)).expect("the sequence");
        let items = seq.items().expect("read as a sequence");
        assert_eq!(
            text(&items[0], Tag(0x0008, 0x1155)).as_deref(),
            Some("1.2.3.9")
        );
        // Its text in the data set's character set (UTF-8), not Latin-1.
        assert_eq!(text(&items[0], Tag(0x0008, 0x0104)).as_deref(), Some("é"));
        // Deeper down, inside an explicit sequence's item: that root
        // element is left out, the rest read (it was refused as malformed).
        let mut ds = explicit((0x0008, 0x0018), b"UI", b"1.2.3.4\0");
        let mut item = explicit((0x0009, 0x0010), b"LO", b"ACME");
        item.extend(cp246(
            [0x09, 0x00, 0x10, 0x10],
            &implicit((0x0008, 0x1155), b"1.2.3.9\0"),
        ));
        ds.extend_from_slice(&[0x40, 0x00, 0x75, 0x02]);
        ds.extend_from_slice(b"SQ\0\0");
        ds.extend_from_slice(&u32::MAX.to_le_bytes());
        ds.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0]);
        ds.extend_from_slice(&(item.len() as u32).to_le_bytes());
        ds.extend(item);
        ds.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        ds.extend(explicit((0x0020, 0x000D), b"UI", b"1.2.3.5\0"));
        let obj = parse_dataset(&ds, "1.2.840.10008.1.2.1").expect("parses");
        assert_eq!(text(&obj, Tag(0x0020, 0x000D)).as_deref(), Some("1.2.3.5"));
        assert!(obj.get(Tag(0x0040, 0x0275)).is_none());
    }

    /// An explicit US on a "US or SS" attribute of a signed image stays
    /// US (dicom-rs made it SS: 63536 became -2000); an SS stays SS.
    #[test]
    fn an_explicit_us_is_kept_on_a_signed_image() {
        let ds = [
            le_elem(0x0028, 0x0103, b"US", &1u16.to_le_bytes()),
            le_elem(0x0028, 0x0106, b"SS", &(-5i16).to_le_bytes()),
            le_elem(0x0028, 0x0120, b"US", &63536u16.to_le_bytes()),
        ]
        .concat();
        let obj = parse_dataset(&ds, "1.2.840.10008.1.2.1").expect("parses");
        let padding = obj.get(Tag(0x0028, 0x0120)).expect("padding");
        assert_eq!(padding.vr(), dicom_core::VR::US);
        assert_eq!(padding.to_int::<i64>().ok(), Some(63536));
        let smallest = obj.get(Tag(0x0028, 0x0106)).expect("smallest");
        assert_eq!(smallest.vr(), dicom_core::VR::SS);
        assert_eq!(smallest.to_int::<i64>().ok(), Some(-5));
    }

    /// Every parse walks the framing first, so a data set that never went
    /// through ingest (a Storage Commitment request, an identifier) cannot
    /// nest deeper than the walker allows: 100,000 levels overflowed the
    /// stack.
    #[test]
    fn parsing_refuses_sequences_nested_too_deep() {
        let level = [
            &[0x08, 0x00, 0x99, 0x11][..],
            b"SQ\0\0",
            &u32::MAX.to_le_bytes(),
            &[0xFE, 0xFF, 0x00, 0xE0],
            &u32::MAX.to_le_bytes(),
        ]
        .concat();
        let close = [
            [0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0],
            [0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0],
        ]
        .concat();
        let nested = |n: usize| [level.repeat(n), close.repeat(n)].concat();
        assert!(parse_dataset(&nested(100), "1.2.840.10008.1.2.1").is_ok());
        let e = parse_dataset(&nested(100_000), "1.2.840.10008.1.2.1").expect_err("too deep");
        assert!(e.to_string().contains("nested more than 128"), "{e}");
        // Deflated too (a storage commitment request aborted the server),
        // and what a deflated data set may inflate to is bounded.
        let deflate = |b: &[u8]| {
            use std::io::Write;
            let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
            z.write_all(b).expect("deflate");
            z.finish().expect("deflate")
        };
        let deflated = "1.2.840.10008.1.2.1.99";
        assert!(parse_dataset(&deflate(&nested(100)), deflated).is_ok());
        let e = parse_dataset(&deflate(&nested(100_000)), deflated).expect_err("too deep");
        assert!(e.to_string().contains("nested more than 128"), "{e}");
        let e = parse_dataset_within(&deflate(&nested(100)), deflated, 100).expect_err("too big");
        assert!(matches!(e, DicomError::TooLarge(100)), "{e}");
    }

    /// Found by the `dicom_ingest` fuzz target: a 920-byte deflated
    /// instance whose inflated header has an element claiming 3.6 GB made
    /// dicom-rs allocate it. The scanner now checks the inflated header's
    /// framing first.
    #[test]
    fn fuzz_deflated_element_length_is_checked_before_parsing() {
        let file = include_bytes!("../tests/fuzz/deflated_element_claims_3gib.dcm");
        let err = inspect_file(file, ArchiveConfig::default().header_cap)
            .expect_err("malformed, not an allocation");
        assert!(
            matches!(err, DicomError::Malformed(_) | DicomError::Truncated(_)),
            "{err}"
        );
    }

    /// A deflated instance: explicit VR LE identifiers and `pixels` bytes
    /// of OW Pixel Data, cut to `keep` bytes before deflating, then the
    /// deflated stream cut to `keep_deflated` bytes.
    fn deflated_file(pixels: usize, keep: usize, keep_deflated: usize) -> Vec<u8> {
        use std::io::Write;
        let mut ds = Vec::new();
        let mut put = |tag: (u16, u16), vr: &[u8; 2], v: &[u8]| {
            ds.extend_from_slice(&tag.0.to_le_bytes());
            ds.extend_from_slice(&tag.1.to_le_bytes());
            ds.extend_from_slice(vr);
            if vr == b"OW" {
                ds.extend_from_slice(&[0, 0]);
                ds.extend_from_slice(&(v.len() as u32).to_le_bytes());
            } else {
                ds.extend_from_slice(&(v.len() as u16).to_le_bytes());
            }
            ds.extend_from_slice(v);
        };
        put((0x0008, 0x0016), b"UI", b"1.2.840.10008.5.1.4.1.1.7\0");
        put((0x0008, 0x0018), b"UI", b"1.2.3.4\0");
        put((0x0020, 0x000D), b"UI", b"1.2.3\0");
        put((0x0020, 0x000E), b"UI", b"1.2.3.1\0");
        let px: Vec<u8> = (0..pixels).map(|i| (i * 7 % 251) as u8).collect();
        put((0x7FE0, 0x0010), b"OW", &px);
        ds.truncate(keep);
        let mut z = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        z.write_all(&ds).expect("deflate");
        let mut deflated = z.finish().expect("deflate");
        deflated.truncate(keep_deflated);
        let mut file = crate::part10::build_prelude(
            "1.2.840.10008.5.1.4.1.1.7",
            "1.2.3.4",
            "1.2.840.10008.1.2.1.99",
            "",
        )
        .expect("meta");
        file.extend_from_slice(&deflated);
        file
    }

    #[test]
    fn a_deflated_instance_cut_short_is_refused() {
        let cap = ArchiveConfig::default().header_cap;
        let whole = deflated_file(300_000, usize::MAX, usize::MAX);
        let ex = inspect_file(&whole, cap).expect("whole").extracted;
        assert_eq!(ex.attrs.sop_uid, "1.2.3.4");
        // The deflate stream cut (its end never comes), anywhere past the
        // header: a truncated upload.
        let full = whole.len() - deflated_file(0, 0, 0).len();
        for cut in [full / 2, full - 10, full - 1] {
            let file = deflated_file(300_000, usize::MAX, cut);
            let err = inspect_file(&file, cap).expect_err("cut stream");
            assert!(
                matches!(err, DicomError::Truncated(_)),
                "cut at {cut}: {err}"
            );
        }
        // A whole stream of a dataset cut inside its Pixel Data.
        let file = deflated_file(300_000, 200_000, usize::MAX);
        let err = inspect_file(&file, cap).expect_err("cut dataset");
        assert!(matches!(err, DicomError::Truncated(_)), "{err}");
    }
}
