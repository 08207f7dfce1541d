//! C-STORE SCU: sends stored instances to another AE over one association
//! (`fulcrum dicom send`, C-MOVE), and the C-STORE sub-operation both it
//! and C-GET use. Data sets go out as stored, straight from the engine,
//! fragmented to the peer's maximum PDU. Only when the peer accepted no
//! context in the stored transfer syntax is the data set converted to a
//! native one it accepted: native (uncompressed or deflated) data sets are
//! re-encoded losslessly, RLE and JPEG frames decoded (`crate::decode`;
//! a workstation that takes only uncompressed images still gets them).

use dicom_dictionary_std::uids;
use dicom_ul::association::AsyncClientAssociation;
use dicom_ul::pdu::{PDataValueType, Pdu, PresentationContextResultReason};
use dicom_ul::ClientAssociationOptions;
use futures::future::BoxFuture;
use futures::StreamExt;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{debug, info, warn};

use super::association::{LinkError, Wire};
use super::command::{CommandSet, C_STORE_RQ, C_STORE_RSP};
use super::pdata::{self, CommandAssembler, DataSender};
use super::{status, Node, TlsClient, DEFAULT_MAX_PDU};
use crate::{Archive, DicomError, InstanceRecord};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a node may take to answer an association request.
const ASSOCIATE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a peer may take to store one instance and answer.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(300);
/// Presentation context ids are odd numbers 1..=255.
const MAX_CONTEXTS: usize = 128;

/// What a send (or the sub-operations of a retrieve) achieved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendReport {
    pub completed: usize,
    pub warning: usize,
    pub failed: usize,
    pub failed_sops: Vec<String>,
}

impl SendReport {
    /// Counts one sub-operation: the peer's (status, comment), or a local
    /// failure. Returns the status if the instance was stored, else why not.
    pub(crate) fn record(
        &mut self,
        rec: &InstanceRecord,
        r: Result<(u16, Option<String>), String>,
    ) -> Result<u16, String> {
        let out = match r {
            Ok((s, _)) if s == status::SUCCESS => {
                self.completed += 1;
                Ok(s)
            }
            Ok((s, _)) if status::is_warning(s) => {
                self.warning += 1;
                Ok(s)
            }
            Ok((s, comment)) => Err(match comment {
                Some(c) => format!("refused with status {s:#06x}: {c}"),
                None => format!("refused with status {s:#06x}"),
            }),
            Err(e) => Err(e),
        };
        if out.is_err() {
            self.failed += 1;
            self.failed_sops.push(rec.sop_uid.clone());
        }
        out
    }

    pub fn done(&self) -> usize {
        self.completed + self.warning + self.failed
    }
}

/// The context to send an instance on among accepted `(id, abstract
/// syntax, transfer syntax)`: its stored syntax, else a native one when the
/// data can be converted (any native one for native data, a little endian
/// one for decoded frames).
pub(crate) fn choose_context(
    contexts: &[(u8, String, String)],
    rec: &InstanceRecord,
) -> Option<(u8, String)> {
    let same_class = || contexts.iter().filter(|c| c.1 == rec.sop_class_uid);
    let stored = rec.transfer_syntax.as_str();
    same_class()
        .find(|c| c.2 == stored)
        .or_else(|| same_class().find(|c| crate::transcode::convertible(stored, &c.2)))
        .map(|c| (c.0, c.2.clone()))
}

/// A sub-operation that failed; `fatal` when part of it went on the wire
/// and the association cannot continue.
pub(crate) struct SubOpError {
    pub message: String,
    pub fatal: bool,
}

fn local(message: impl Into<String>) -> SubOpError {
    SubOpError {
        message: message.into(),
        fatal: false,
    }
}

fn fatal(message: impl Into<String>) -> SubOpError {
    SubOpError {
        message: message.into(),
        fatal: true,
    }
}

/// Sends one C-STORE-RQ and its data set on context `pc` (syntax `ts`).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn send_store<A>(
    assoc: &mut A,
    archive: &Archive,
    tenant: &str,
    rec: &InstanceRecord,
    pc: u8,
    ts: &str,
    msg_id: u16,
    originator: Option<(&str, u16)>,
) -> Result<(), SubOpError>
where
    A: Wire,
{
    let (start, end) = (rec.dataset_offset.max(0) as u64, rec.size.max(0) as u64);
    let mut stream = None;
    let mut recoded = None;
    if ts == rec.transfer_syntax {
        stream = Some(
            archive
                .read(tenant, rec, start, end)
                .await
                .map_err(|e| local(e.to_string()))?,
        );
    } else {
        recoded = Some(archive.transcode(tenant, rec, ts).await.map_err(local)?);
    }
    let cmd = CommandSet {
        field: C_STORE_RQ,
        message_id: msg_id,
        sop_class: rec.sop_class_uid.clone(),
        sop_instance: rec.sop_uid.clone(),
        has_dataset: true,
        move_originator: originator.map(|(ae, id)| (ae.to_string(), id)),
        ..Default::default()
    }
    .encode()
    .map_err(|e| local(e.to_string()))?;
    let wire = |e: LinkError| fatal(format!("sending failed: {e}"));
    pdata::send_message(assoc, pc, &cmd, None)
        .await
        .map_err(wire)?;
    let mut out = DataSender::for_data(assoc, pc);
    if let Some(mut s) = stream {
        while let Some(chunk) = s.next().await {
            let chunk = chunk
                .map_err(|e| fatal(format!("reading instance {} failed: {e}", rec.sop_uid)))?;
            out.push(assoc, &chunk).await.map_err(wire)?;
        }
        // A deflated data set of odd length (stored as received) goes out
        // with the pad byte PS3.5 A.5 asks for: DCMTK aborts on an odd PDV.
        if crate::scan::DEFLATED_TS.contains(&ts) && (end - start) % 2 == 1 {
            out.push(assoc, &[0]).await.map_err(wire)?;
        }
    } else if let Some(bytes) = recoded {
        out.push(assoc, &bytes).await.map_err(wire)?;
    }
    out.finish(assoc).await.map_err(wire)
}

/// An association to a storage SCP, plain or over TLS (a node named
/// `AET@HOST:PORT/tls`): a [`Scu`] on either stream.
pub(crate) type StoreScu = Box<dyn Sender>;

/// What a C-STORE SCU does, whatever its stream: send one instance (the
/// peer's status and comment, or why it could not be sent), release.
pub(crate) trait Sender: Send {
    fn store<'a>(
        &'a mut self,
        archive: &'a Archive,
        tenant: &'a str,
        rec: &'a InstanceRecord,
        originator: Option<(&'a str, u16)>,
    ) -> BoxFuture<'a, Result<(u16, Option<String>), String>>;
    fn release(self: Box<Self>) -> BoxFuture<'static, ()>;
    /// Whether the association was aborted (a sub-operation failed on the
    /// wire, or the peer aborted).
    fn aborted(&self) -> bool;
}

/// How many times one transfer opens a new association after one was
/// aborted.
const MAX_REOPEN: u32 = 3;

/// After a sub-operation aborted the association (a peer that refuses one
/// instance by aborting, a dropped connection), opens a new one for the
/// instances still to send, `rest`: otherwise every one of them failed
/// too. At most [`MAX_REOPEN`] times per transfer (`reopened` counts).
pub(crate) async fn reopen_if_aborted(
    scu: &mut StoreScu,
    reopened: &mut u32,
    calling_ae: &str,
    dest: &Node,
    rest: &[InstanceRecord],
    tls: Option<&TlsClient>,
) {
    if !scu.aborted() || rest.is_empty() || *reopened >= MAX_REOPEN {
        return;
    }
    *reopened += 1;
    match connect(calling_ae, dest, rest, tls).await {
        Ok(fresh) => {
            info!(dest = %dest, "a new association for the {} instances still to send", rest.len());
            *scu = fresh;
        }
        Err(e) => warn!(dest = %dest, "cannot associate again: {e}"),
    }
}

/// Associates with `dest`, proposing one context per (SOP class, stored
/// transfer syntax) and an uncompressed fallback per class; over TLS when
/// the node says so (`tls` holds the trust anchors).
pub(crate) async fn connect(
    calling_ae: &str,
    dest: &Node,
    instances: &[InstanceRecord],
    tls: Option<&TlsClient>,
) -> Result<StoreScu, DicomError> {
    let fallback = vec![
        uids::EXPLICIT_VR_LITTLE_ENDIAN.to_string(),
        uids::IMPLICIT_VR_LITTLE_ENDIAN.to_string(),
    ];
    let stored = instances
        .iter()
        .map(|r| (r.sop_class_uid.clone(), vec![r.transfer_syntax.clone()]));
    let native = instances
        .iter()
        .filter(|r| crate::transcode::convertible_at_all(&r.transfer_syntax))
        .map(|r| (r.sop_class_uid.clone(), fallback.clone()));
    let mut proposals: Vec<(String, Vec<String>)> = Vec::new();
    for p in stored.chain(native) {
        if !proposals.contains(&p) {
            proposals.push(p);
        }
    }
    if proposals.len() > MAX_CONTEXTS {
        warn!(dest = %dest, "{} presentation contexts needed, {MAX_CONTEXTS} proposed", proposals.len());
        proposals.truncate(MAX_CONTEXTS);
    }
    let mut opts = ClientAssociationOptions::new()
        .calling_ae_title(calling_ae.to_string())
        .called_ae_title(dest.ae_title.clone())
        .max_pdu_length(DEFAULT_MAX_PDU)
        .connection_timeout(CONNECT_TIMEOUT)
        .read_timeout(RESPONSE_TIMEOUT)
        .write_timeout(RESPONSE_TIMEOUT);
    for (class, ts) in proposals {
        opts = opts.with_presentation_context(class, ts);
    }
    Ok(match associate(opts, dest, tls).await? {
        Established::Plain(a) => Box::new(Scu::new(*a, dest)),
        Established::Tls(a) => Box::new(Scu::new(*a, dest)),
    })
}

/// An association we opened: over plain TCP, or TLS for a `/tls` node
/// (boxed: a TLS association is over a kilobyte).
pub(crate) enum Established {
    Plain(Box<AsyncClientAssociation<tokio::net::TcpStream>>),
    Tls(Box<AsyncClientAssociation<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>>),
}

/// Opens the association `opts` describe with `dest` (TLS for a `/tls`
/// node, trusting `tls`), with TCP_NODELAY: every outgoing association
/// (C-STORE SCU, storage commitment reports) goes through here.
pub(crate) async fn associate(
    opts: ClientAssociationOptions<'_>,
    dest: &Node,
    tls: Option<&TlsClient>,
) -> Result<Established, DicomError> {
    let refused = |e: dicom_ul::association::Error| {
        // The causes too: "could not connect" alone hides a TLS failure.
        let mut msg = e.to_string();
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            msg.push_str(&format!(": {c}"));
            cause = c.source();
        }
        DicomError::Network(format!("cannot associate with {dest}: {msg}"))
    };
    let nodelay = |s: &tokio::net::TcpStream| {
        if let Err(e) = s.set_nodelay(true) {
            debug!("TCP_NODELAY not set: {e}");
        }
    };
    // The answer to the association request, however long reads may take
    // later: a node that accepts TCP and never answers held a C-MOVE for
    // minutes (the read timeout is a store's).
    let silent = || {
        DicomError::Network(format!(
            "cannot associate with {dest}: no answer to the association request in {} s",
            ASSOCIATE_TIMEOUT.as_secs()
        ))
    };
    if !dest.tls {
        let mut assoc =
            tokio::time::timeout(ASSOCIATE_TIMEOUT, opts.establish_async(dest.addr.as_str()))
                .await
                .map_err(|_| silent())?
                .map_err(refused)?;
        nodelay(assoc.inner_stream());
        return Ok(Established::Plain(Box::new(assoc)));
    }
    let Some(tls) = tls else {
        return Err(DicomError::Network(format!(
            "{dest} is a TLS node but no trust anchors are configured (dicom_tls_ca)"
        )));
    };
    let establish = opts
        .tls_config(tls.0.clone())
        .server_name(dest.host())
        .establish_tls_async(dest.addr.as_str());
    let mut assoc = tokio::time::timeout(ASSOCIATE_TIMEOUT, establish)
        .await
        .map_err(|_| silent())?
        .map_err(refused)?;
    nodelay(assoc.inner_stream().get_ref().0);
    Ok(Established::Tls(Box::new(assoc)))
}

/// One association, on a stream `S`.
pub(crate) struct Scu<S> {
    assoc: Option<AsyncClientAssociation<S>>,
    contexts: Vec<(u8, String, String)>,
    next_id: u16,
    dest: Node,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Sender for Scu<S> {
    fn store<'a>(
        &'a mut self,
        archive: &'a Archive,
        tenant: &'a str,
        rec: &'a InstanceRecord,
        originator: Option<(&'a str, u16)>,
    ) -> BoxFuture<'a, Result<(u16, Option<String>), String>> {
        Box::pin(self.store_one(archive, tenant, rec, originator))
    }

    fn release(self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(self.release_now())
    }

    fn aborted(&self) -> bool {
        self.assoc.is_none()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Scu<S> {
    fn new(assoc: AsyncClientAssociation<S>, dest: &Node) -> Self {
        let contexts = assoc
            .presentation_contexts()
            .iter()
            .filter(|c| c.reason == PresentationContextResultReason::Acceptance)
            .map(|c| (c.id, c.abstract_syntax.clone(), c.transfer_syntax.clone()))
            .collect();
        Self {
            assoc: Some(assoc),
            contexts,
            next_id: 1,
            dest: dest.clone(),
        }
    }

    async fn store_one(
        &mut self,
        archive: &Archive,
        tenant: &str,
        rec: &InstanceRecord,
        originator: Option<(&str, u16)>,
    ) -> Result<(u16, Option<String>), String> {
        let Some((pc, ts)) = choose_context(&self.contexts, rec) else {
            return Err(format!(
                "{} accepted no presentation context for SOP class {} in {}",
                self.dest, rec.sop_class_uid, rec.transfer_syntax
            ));
        };
        let Some(assoc) = self.assoc.as_mut() else {
            return Err(format!("the association with {} was aborted", self.dest));
        };
        let id = self.next_id;
        self.next_id = self.next_id.checked_add(1).unwrap_or(1);
        let sent = send_store(assoc, archive, tenant, rec, pc, &ts, id, originator).await;
        let r = match sent {
            Ok(()) => await_store_rsp(assoc, id).await,
            Err(e) => Err(e),
        };
        match r {
            Ok(rsp) => Ok((rsp.status, rsp.error_comment)),
            Err(e) if e.fatal => {
                warn!(dest = %self.dest, "aborting the association: {}", e.message);
                if let Some(a) = self.assoc.take() {
                    let _ = a.abort().await;
                }
                Err(e.message)
            }
            Err(e) => Err(e.message),
        }
    }

    async fn release_now(mut self) {
        if let Some(a) = self.assoc.take() {
            if let Err(e) = a.release().await {
                debug!(dest = %self.dest, "release failed: {e}");
            }
        }
    }
}

async fn await_store_rsp<S: AsyncRead + AsyncWrite + Unpin + Send>(
    assoc: &mut AsyncClientAssociation<S>,
    id: u16,
) -> Result<CommandSet, SubOpError> {
    let mut asm = CommandAssembler::default();
    loop {
        let pdu = assoc
            .receive()
            .await
            .map_err(|e| fatal(format!("no C-STORE response: {e}")))?;
        let data = match pdu {
            Pdu::PData { data } => data,
            Pdu::AbortRQ { .. } => return Err(fatal("the peer aborted the association")),
            other => return Err(fatal(format!("unexpected {}", other.short_description()))),
        };
        for pdv in data {
            if pdv.value_type != PDataValueType::Command {
                continue;
            }
            let c = asm.feed(pdv).map_err(|e| fatal(e.to_string()))?;
            if let Some(c) = c.filter(|c| c.field == C_STORE_RSP && c.responding_to == id) {
                return Ok(c);
            }
        }
    }
}

/// Sends instances to `dest` over one association (C-STORE SCU). The data
/// sets go out byte for byte as stored (dataset part, after the file meta).
/// `progress` gets, per instance, the peer's status when it was stored
/// (success or a warning), or why it was not (local error or failure status).
pub async fn send(
    archive: &Archive,
    tenant: &str,
    instances: &[InstanceRecord],
    calling_ae: &str,
    dest: &Node,
    tls: Option<&TlsClient>,
    mut progress: impl FnMut(&InstanceRecord, Result<u16, String>),
) -> Result<SendReport, DicomError> {
    let mut report = SendReport::default();
    if instances.is_empty() {
        return Ok(report);
    }
    let mut scu = connect(calling_ae, dest, instances, tls).await?;
    let mut reopened = 0;
    for (i, rec) in instances.iter().enumerate() {
        let r = scu.store(archive, tenant, rec, None).await;
        let r = report.record(rec, r);
        progress(rec, r);
        let rest = &instances[i + 1..];
        reopen_if_aborted(&mut scu, &mut reopened, calling_ae, dest, rest, tls).await;
    }
    scu.release().await;
    info!(dest = %dest, completed = report.completed, warning = report.warning, failed = report.failed, "C-STORE send finished");
    Ok(report)
}
