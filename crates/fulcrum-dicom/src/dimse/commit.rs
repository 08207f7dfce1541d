//! Storage Commitment Push Model (PS3.4 annex J) as SCP: a modality asks
//! (N-ACTION, a Transaction UID and the instances it sent) whether the
//! archive has taken over responsibility for them, and deletes its local
//! copies once the answer (N-EVENT-REPORT) says so. An instance is
//! committed when it is in the catalog: a store is acknowledged only once
//! durable, so that is the archive's promise. The report goes on the same
//! association when the modality waits for it there, otherwise (it
//! released the association, as Orthanc and most modalities do) on a new
//! association to the modality as a known node, with the SCP role
//! negotiated, retried a few times.

use std::time::Duration;

use dicom_core::value::{DataSetSequence, PrimitiveValue};
use dicom_core::{DataElement, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use dicom_ul::association::AsyncClientAssociation;
use dicom_ul::pdu::{PDataValueType, Pdu, PresentationContextResultReason};
use dicom_ul::ClientAssociationOptions;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{info, warn};

use super::command::{self as cmd, CommandSet};
use super::pdata::{self, CommandAssembler};
use super::scu::{associate, Established};
use super::session::{Fatal, Session};
use super::{status, Node, TlsClient};
use crate::Archive;

/// The well-known SOP Instance of the Storage Commitment Push Model.
pub(crate) const COMMITMENT_INSTANCE: &str = "1.2.840.10008.1.20.1.1";

/// How long the modality may stay silent after the N-ACTION-RSP before the
/// report is sent on the same association (it is then taken to wait there).
const SAME_ASSOCIATION_WAIT: Duration = Duration::from_millis(1500);

/// Largest data set a deflated request may inflate to: 100,000 references
/// take about 12 MB.
const MAX_REQUEST_INFLATED: u64 = 64 * 1024 * 1024;
/// How long a peer may take to answer an N-EVENT-REPORT.
const REPORT_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts at delivering a report on a new association, and the pause between.
const DELIVERY_ATTEMPTS: u32 = 4;
const DELIVERY_PAUSE: Duration = Duration::from_secs(3);

/// Reports being delivered on new associations at once (see `deliver_later`).
static DELIVERIES: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);

/// Failure reasons of the report (PS3.4 J.3.2.1.1).
const NO_SUCH_OBJECT_INSTANCE: u16 = 0x0112;
const CLASS_INSTANCE_CONFLICT: u16 = 0x0119;
const PROCESSING_FAILURE: u16 = 0x0110;

/// N-ACTION-RSP statuses (PS3.7 C).
const MISSING_ATTRIBUTE: u16 = 0x0120;
const MISSING_ATTRIBUTE_VALUE: u16 = 0x0121;
const NO_SUCH_ACTION: u16 = 0x0123;
const INVALID_ARGUMENT: u16 = 0x0115;
const INVALID_OBJECT_INSTANCE: u16 = 0x0117;

/// What the N-EVENT-REPORT says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Report {
    pub transaction_uid: String,
    /// (SOP class, SOP instance) committed.
    pub committed: Vec<(String, String)>,
    /// (SOP class, SOP instance, failure reason).
    pub failed: Vec<(String, String, u16)>,
}

impl Report {
    fn event_type(&self) -> u16 {
        if self.failed.is_empty() {
            1
        } else {
            2
        }
    }

    fn dataset(&self, retrieve_ae: &str) -> InMemDicomObject {
        let ui = |t, v: &str| DataElement::new(t, VR::UI, PrimitiveValue::from(v));
        let mut obj = InMemDicomObject::new_empty();
        obj.put(ui(tags::TRANSACTION_UID, &self.transaction_uid));
        obj.put(DataElement::new(
            tags::RETRIEVE_AE_TITLE,
            VR::AE,
            PrimitiveValue::from(retrieve_ae),
        ));
        let item = |class: &str, sop: &str| {
            let mut it = InMemDicomObject::new_empty();
            it.put(ui(tags::REFERENCED_SOP_CLASS_UID, class));
            it.put(ui(tags::REFERENCED_SOP_INSTANCE_UID, sop));
            it
        };
        if !self.committed.is_empty() {
            let items: Vec<_> = self.committed.iter().map(|(c, s)| item(c, s)).collect();
            obj.put(DataElement::new(
                tags::REFERENCED_SOP_SEQUENCE,
                VR::SQ,
                DataSetSequence::from(items),
            ));
        }
        if !self.failed.is_empty() {
            let items: Vec<_> = self
                .failed
                .iter()
                .map(|(c, s, why)| {
                    let mut it = item(c, s);
                    it.put(DataElement::new(
                        tags::FAILURE_REASON,
                        VR::US,
                        PrimitiveValue::from(*why),
                    ));
                    it
                })
                .collect();
            obj.put(DataElement::new(
                tags::FAILED_SOP_SEQUENCE,
                VR::SQ,
                DataSetSequence::from(items),
            ));
        }
        obj
    }

    /// The report's data set in transfer syntax `ts`.
    fn encode(&self, retrieve_ae: &str, ts: &str) -> Result<Vec<u8>, String> {
        let ts = TransferSyntaxRegistry
            .get(ts)
            .ok_or_else(|| format!("unknown transfer syntax {ts}"))?;
        let mut out = Vec::new();
        self.dataset(retrieve_ae)
            .write_dataset_with_ts(&mut out, ts)
            .map_err(|e| e.to_string())?;
        Ok(out)
    }
}

/// (SOP class, SOP instance) pairs a request names.
type References = Vec<(String, String)>;

/// The request's Transaction UID and references, or the N-ACTION-RSP status why not.
fn parse_request(data: &[u8], ts: &str) -> Result<(String, References), (u16, String)> {
    let obj = crate::parse_dataset_within(data, ts, MAX_REQUEST_INFLATED).map_err(|e| {
        (
            status::UNABLE_TO_PROCESS,
            format!("unreadable request: {e}"),
        )
    })?;
    let text = |o: &InMemDicomObject, t| {
        o.get(t)
            .and_then(|e| e.to_str().ok())
            .map(|s| s.trim_matches(['\0', ' ']).to_string())
            .filter(|s| !s.is_empty())
    };
    let transaction = text(&obj, tags::TRANSACTION_UID)
        .ok_or((MISSING_ATTRIBUTE, "no Transaction UID".to_string()))?;
    let items = obj
        .get(tags::REFERENCED_SOP_SEQUENCE)
        .and_then(|e| e.items())
        .ok_or((MISSING_ATTRIBUTE, "no Referenced SOP Sequence".to_string()))?;
    if items.is_empty() {
        return Err((
            MISSING_ATTRIBUTE_VALUE,
            "the Referenced SOP Sequence names no instance".to_string(),
        ));
    }
    let refs = items
        .iter()
        .map(|it| {
            match (
                text(it, tags::REFERENCED_SOP_CLASS_UID),
                text(it, tags::REFERENCED_SOP_INSTANCE_UID),
            ) {
                (Some(c), Some(s)) => Ok((c, s)),
                _ => Err((
                    INVALID_ARGUMENT,
                    "a reference lacks its SOP class or instance".to_string(),
                )),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((transaction, refs))
}

/// Checks each referenced instance against the catalog.
pub(crate) async fn check(
    archive: &Archive,
    tenant: &str,
    transaction_uid: String,
    refs: References,
) -> Report {
    let mut report = Report {
        transaction_uid,
        committed: Vec::new(),
        failed: Vec::new(),
    };
    for (class, sop) in refs {
        match archive.instance(tenant, &sop).await {
            Ok(Some(rec)) if rec.sop_class_uid == class => report.committed.push((class, sop)),
            Ok(Some(_)) => report.failed.push((class, sop, CLASS_INSTANCE_CONFLICT)),
            Ok(None) => report.failed.push((class, sop, NO_SUCH_OBJECT_INSTANCE)),
            Err(e) => {
                warn!(%sop, error = %e, "storage commitment: catalog lookup failed");
                report.failed.push((class, sop, PROCESSING_FAILURE));
            }
        }
    }
    report
}

/// Serves one N-ACTION-RQ whose data set is `data`.
pub(crate) async fn run(
    s: &mut Session,
    pc: u8,
    ts: &str,
    rq: &CommandSet,
    data: &[u8],
) -> Result<(), Fatal> {
    let mut rsp = rq.response(status::SUCCESS);
    rsp.sop_instance = COMMITMENT_INSTANCE.to_string();
    if rq.action_type != Some(1) {
        let rsp = rsp_with(
            rsp,
            NO_SUCH_ACTION,
            "only Action Type ID 1 (request commitment)",
        );
        return s.respond(pc, &rsp, None).await;
    }
    if rq.sop_instance != COMMITMENT_INSTANCE {
        let why = format!(
            "the Requested SOP Instance of storage commitment is {COMMITMENT_INSTANCE}, not {}",
            rq.sop_instance
        );
        return s
            .respond(pc, &rsp_with(rsp, INVALID_OBJECT_INSTANCE, why), None)
            .await;
    }
    let (transaction, refs) = match parse_request(data, ts) {
        Ok(r) => r,
        Err((code, why)) => return s.respond(pc, &rsp_with(rsp, code, why), None).await,
    };
    let n = refs.len();
    let report = check(&s.shared.archive, &s.shared.cfg.tenant, transaction, refs).await;
    info!(peer = %s.peer_ae, transaction = %report.transaction_uid, requested = n,
          committed = report.committed.len(), failed = report.failed.len(), "storage commitment");
    s.respond(pc, &rsp, None).await?;

    // The report: here if the modality waits for it, else on a new association.
    match tokio::time::timeout(SAME_ASSOCIATION_WAIT, s.link.receive()).await {
        Err(_) => match report_here(s, pc, ts, &report).await {
            Ok(()) => Ok(()),
            Err(e) => {
                deliver_later(s, report);
                Err(e)
            }
        },
        Ok(Ok(pdu)) => {
            deliver_later(s, report);
            // The PDU may carry the next request: the session's loop serves
            // it (served here, one level deeper each time, 172 requests in
            // a row overflowed the stack).
            s.hold(pdu);
            Ok(())
        }
        Ok(Err(e)) => {
            deliver_later(s, report);
            Err(e.into())
        }
    }
}

fn rsp_with(mut rsp: CommandSet, code: u16, why: impl Into<String>) -> CommandSet {
    rsp.status = code;
    rsp.with_comment(why)
}

/// Sends the report on the association the request came on and waits for its answer.
async fn report_here(s: &mut Session, pc: u8, ts: &str, report: &Report) -> Result<(), Fatal> {
    let data = report
        .encode(&s.shared.cfg.ae_title, ts)
        .map_err(Fatal::Abort)?;
    let id = s.message_id();
    let rq = event_report(id, report);
    s.respond(pc, &rq, Some(&data)).await?;
    let rsp = tokio::time::timeout(
        REPORT_TIMEOUT,
        s.await_response(cmd::N_EVENT_REPORT_RSP, id, 0),
    )
    .await
    .map_err(|_| Fatal::Abort("no N-EVENT-REPORT response".into()))??;
    info!(peer = %s.peer_ae, transaction = %report.transaction_uid, status = format_args!("{:#06x}", rsp.status),
          "storage commitment report delivered on the request's association");
    Ok(())
}

fn event_report(id: u16, report: &Report) -> CommandSet {
    CommandSet {
        field: cmd::N_EVENT_REPORT_RQ,
        message_id: id,
        sop_class: uids::STORAGE_COMMITMENT_PUSH_MODEL.to_string(),
        sop_instance: COMMITMENT_INSTANCE.to_string(),
        has_dataset: true,
        event_type: Some(report.event_type()),
        ..Default::default()
    }
}

/// Delivers the report on a new association, in the background.
fn deliver_later(s: &Session, report: Report) {
    let our_ae = s.shared.cfg.ae_title.clone();
    let tls = s.shared.cfg.tls_client.clone();
    let Some(node) = s
        .shared
        .cfg
        .nodes
        .iter()
        .find(|n| n.ae_title == s.peer_ae)
        .cloned()
    else {
        warn!(peer = %s.peer_ae, transaction = %report.transaction_uid,
              "storage commitment report not delivered: the modality left the association and is not a known node (FULCRUM_DICOM_NODES)");
        return;
    };
    tokio::spawn(async move {
        // A few deliveries at a time per process, whoever asked: 300
        // requests in 0.3 s opened 300 associations to the node at once.
        let _turn = DELIVERIES.acquire().await;
        for attempt in 1..=DELIVERY_ATTEMPTS {
            match send_report(&our_ae, &node, tls.as_ref(), &report).await {
                Ok(status) => {
                    info!(dest = %node, transaction = %report.transaction_uid, status = format_args!("{status:#06x}"),
                          "storage commitment report delivered");
                    return;
                }
                Err(e) => {
                    warn!(dest = %node, attempt, transaction = %report.transaction_uid, "storage commitment report not delivered: {e}");
                    tokio::time::sleep(DELIVERY_PAUSE).await;
                }
            }
        }
    });
}

/// One N-EVENT-REPORT on a new association to `dest`, in the SCP role
/// (over TLS for a `/tls` node, trusting `tls`).
pub(crate) async fn send_report(
    our_ae: &str,
    dest: &Node,
    tls: Option<&TlsClient>,
    report: &Report,
) -> Result<u16, String> {
    let class = uids::STORAGE_COMMITMENT_PUSH_MODEL;
    let opts = ClientAssociationOptions::new()
        .calling_ae_title(our_ae.to_string())
        .called_ae_title(dest.ae_title.clone())
        .with_presentation_context(
            class,
            vec![
                uids::EXPLICIT_VR_LITTLE_ENDIAN,
                uids::IMPLICIT_VR_LITTLE_ENDIAN,
            ],
        )
        .with_role_selection(class, false, true)
        .connection_timeout(REPORT_TIMEOUT)
        .read_timeout(REPORT_TIMEOUT)
        .write_timeout(REPORT_TIMEOUT);
    match associate(opts, dest, tls)
        .await
        .map_err(|e| e.to_string())?
    {
        Established::Plain(a) => exchange(*a, our_ae, report).await,
        Established::Tls(a) => exchange(*a, our_ae, report).await,
    }
}

/// Sends the report on an established association and takes the answer.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin + Send>(
    mut assoc: AsyncClientAssociation<S>,
    our_ae: &str,
    report: &Report,
) -> Result<u16, String> {
    let Some((pc, ts)) = assoc
        .presentation_contexts()
        .iter()
        .find(|c| c.reason == PresentationContextResultReason::Acceptance)
        .map(|c| (c.id, c.transfer_syntax.clone()))
    else {
        let _ = assoc.abort().await;
        return Err("the Storage Commitment Push Model was not accepted".into());
    };
    let result = async {
        let data = report.encode(our_ae, &ts)?;
        let rq = event_report(1, report)
            .encode()
            .map_err(|e| e.to_string())?;
        pdata::send_message(&mut assoc, pc, &rq, Some(&data))
            .await
            .map_err(|e| e.to_string())?;
        let mut asm = CommandAssembler::default();
        loop {
            let data = match assoc.receive().await.map_err(|e| e.to_string())? {
                Pdu::PData { data } => data,
                other => return Err(format!("unexpected {}", other.short_description())),
            };
            for pdv in data
                .into_iter()
                .filter(|p| p.value_type == PDataValueType::Command)
            {
                if let Some(c) = asm.feed(pdv).map_err(|e| e.to_string())? {
                    if c.field == cmd::N_EVENT_REPORT_RSP && c.responding_to == 1 {
                        return Ok(c.status);
                    }
                }
            }
        }
    }
    .await;
    match result {
        Ok(status) => {
            let _ = assoc.release().await;
            Ok(status)
        }
        Err(e) => {
            let _ = assoc.abort().await;
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_data_set_round_trips() {
        let report = Report {
            transaction_uid: "1.2.3".into(),
            committed: vec![("1.2.840.10008.5.1.4.1.1.2".into(), "1.2.3.4".into())],
            failed: vec![(
                "1.2.840.10008.5.1.4.1.1.2".into(),
                "1.2.3.5".into(),
                NO_SUCH_OBJECT_INSTANCE,
            )],
        };
        assert_eq!(report.event_type(), 2);
        let bytes = report
            .encode("FULCRUM", uids::IMPLICIT_VR_LITTLE_ENDIAN)
            .expect("encodes");
        let obj = crate::parse_dataset(&bytes, uids::IMPLICIT_VR_LITTLE_ENDIAN).expect("parses");
        let failed = obj
            .get(tags::FAILED_SOP_SEQUENCE)
            .and_then(|e| e.items())
            .expect("failed items");
        assert_eq!(failed.len(), 1);
        let reason = failed[0]
            .get(tags::FAILURE_REASON)
            .and_then(|e| e.to_int::<u16>().ok());
        assert_eq!(reason, Some(NO_SUCH_OBJECT_INSTANCE));
    }

    #[test]
    fn requests_without_transaction_or_references_are_refused() {
        let report = Report {
            transaction_uid: "1.2.3".into(),
            committed: vec![("1.2".into(), "1.2.3.4".into())],
            failed: Vec::new(),
        };
        let ok = report
            .encode("FULCRUM", uids::EXPLICIT_VR_LITTLE_ENDIAN)
            .expect("encodes");
        let (tx, refs) = parse_request(&ok, uids::EXPLICIT_VR_LITTLE_ENDIAN).expect("valid");
        assert_eq!((tx.as_str(), refs.len()), ("1.2.3", 1));
        let mut empty = InMemDicomObject::new_empty();
        empty.put(DataElement::new(
            tags::TRANSACTION_UID,
            VR::UI,
            PrimitiveValue::from("1.2"),
        ));
        let mut bytes = Vec::new();
        empty
            .write_dataset_with_ts(
                &mut bytes,
                &dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN.erased(),
            )
            .expect("writes");
        let err =
            parse_request(&bytes, uids::EXPLICIT_VR_LITTLE_ENDIAN).expect_err("no references");
        assert_eq!(err.0, MISSING_ATTRIBUTE);
    }
}
