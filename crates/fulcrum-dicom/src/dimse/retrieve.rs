//! C-MOVE and C-GET SCP (Patient Root and Study Root): the identifier's
//! unique keys select instances through the catalog; each becomes a
//! C-STORE sub-operation, to the configured move destination over a new
//! association (C-MOVE) or back to the requester on its own association
//! through the storage contexts it took the SCP role for (C-GET). Pending
//! responses carry the sub-operation counters; C-CANCEL stops between
//! sub-operations.

use std::collections::HashSet;

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use fulcrum_catalog::dicom::{Column, DicomQuery, Level, Scope};
use tracing::{info, warn};

use super::command::{CommandSet, SubOps, C_STORE_RSP};
use super::find::{parse_identifier, plan, Plan, Refusal};
use super::scu::{choose_context, connect, reopen_if_aborted, send_store, SendReport};
use super::session::{Fatal, Session};
use super::{is_storage, status, Model};
use crate::{Archive, DicomError, InstanceRecord};

const PAGE: u32 = 1000;

/// The instances a retrieve identifier designates, in a stable order.
pub(crate) async fn resolve(
    archive: &Archive,
    tenant: &str,
    plan: &Plan,
) -> Result<Vec<InstanceRecord>, Refusal> {
    let unique = match plan.level {
        Level::Patient => Column::PatientId,
        Level::Study => Column::StudyUid,
        Level::Series => Column::SeriesUid,
        Level::Instance => Column::SopUid,
    };
    if !plan.has_filter(unique) {
        return Err((
            status::IDENTIFIER_DOES_NOT_MATCH,
            format!("a {} level retrieve needs its unique key", plan.level_text),
        ));
    }
    let level = plan.level.max(Level::Study);
    let failed = |e: DicomError| match e {
        DicomError::BadQuery(q) => (status::IDENTIFIER_DOES_NOT_MATCH, q),
        e => {
            warn!("retrieve lookup failed: {e}");
            (
                status::UNABLE_TO_PROCESS,
                "the archive could not be searched".to_string(),
            )
        }
    };
    let (mut out, mut seen, mut offset) = (Vec::new(), HashSet::new(), 0u32);
    loop {
        let q = DicomQuery {
            tenant: tenant.to_string(),
            level,
            filters: plan.filters.clone(),
            limit: Some(PAGE),
            offset,
        };
        let page = archive.query(&q).await.map_err(failed)?;
        for m in &page {
            let recs = match (level, &m.series, &m.instance) {
                (Level::Instance, _, Some(i)) => vec![i.clone()],
                (Level::Series, Some(se), _) => archive
                    .instances(
                        tenant,
                        &Scope::Series(m.study.study_uid.clone(), se.series_uid.clone()),
                    )
                    .await
                    .map_err(failed)?,
                _ => archive
                    .instances(tenant, &Scope::Study(m.study.study_uid.clone()))
                    .await
                    .map_err(failed)?,
            };
            for r in recs {
                if seen.insert(r.sop_uid.clone()) {
                    out.push(r);
                }
            }
        }
        if page.len() < PAGE as usize {
            return Ok(out);
        }
        offset += PAGE;
    }
}

/// Progress of a retrieve's sub-operations.
struct Counters {
    total: usize,
    report: SendReport,
    cancelled: bool,
    /// Why every sub-operation failed at once (the destination refused).
    /// The final response's Error Comment: why the first sub-operation
    /// failed (the peer sees why, not only how many).
    comment: Option<String>,
}

fn sat(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

impl Counters {
    fn new(total: usize) -> Self {
        Self {
            total,
            report: SendReport::default(),
            cancelled: false,
            comment: None,
        }
    }

    fn remaining(&self) -> usize {
        self.total.saturating_sub(self.report.done())
    }

    fn sub_ops(&self, with_remaining: bool) -> SubOps {
        SubOps {
            remaining: with_remaining.then(|| sat(self.remaining())),
            completed: sat(self.report.completed),
            failed: sat(self.report.failed),
            warning: sat(self.report.warning),
        }
    }

    fn pending(&self, rq: &CommandSet) -> CommandSet {
        let mut r = rq.response(status::PENDING);
        r.sub_ops = Some(self.sub_ops(true));
        r
    }

    /// The final response, with FailedSOPInstanceUIDList when some failed.
    async fn finish(
        self,
        s: &mut Session,
        pc: u8,
        ts: &str,
        rq: &CommandSet,
        what: &str,
    ) -> Result<(), Fatal> {
        let r = &self.report;
        let st = if self.cancelled {
            status::CANCELLED
        } else if r.failed == 0 && r.warning == 0 {
            status::SUCCESS
        } else if r.completed == 0 && r.warning == 0 {
            status::SUBOPERATIONS_FAILED
        } else {
            status::SUBOPERATIONS_WARNING
        };
        info!(peer = %s.peer_ae, completed = r.completed, warning = r.warning, failed = r.failed,
            cancelled = self.cancelled, "{what} finished");
        let mut rsp = rq.response(st);
        if let Some(c) = &self.comment {
            rsp = rsp.with_comment(c.clone());
        }
        rsp.sub_ops = Some(self.sub_ops(self.cancelled));
        let mut data = Vec::new();
        if !r.failed_sops.is_empty() {
            let mut ident = InMemDicomObject::new_empty();
            ident.put(DataElement::new(
                tags::FAILED_SOP_INSTANCE_UID_LIST,
                VR::UI,
                PrimitiveValue::Strs(r.failed_sops.iter().cloned().collect()),
            ));
            let encoded = TransferSyntaxRegistry
                .get(ts)
                .map(|t| ident.write_dataset_with_ts(&mut data, t).is_ok())
                .unwrap_or(false);
            rsp.has_dataset = encoded;
        }
        let data = rsp.has_dataset.then_some(&data[..]);
        s.respond(pc, &rsp, data).await
    }
}

/// The identifier's unique keys (and its level and character set): a
/// retrieve selects by them alone (PS3.4 C.4.2.2.1, C.4.3.2.1). Other keys
/// a viewer copies from a C-FIND answer (a name corrected since) must not
/// narrow what is sent to nothing, answered as a success. The Issuer of
/// Patient ID is kept with the Patient ID: together they are the patient
/// a C-FIND answered (two sites' MRN1234 are two patients).
fn unique_keys(ident: InMemDicomObject) -> InMemDicomObject {
    use dicom_core::header::Header as _;
    use dicom_dictionary_std::tags;
    const KEEP: [dicom_core::Tag; 7] = [
        tags::QUERY_RETRIEVE_LEVEL,
        tags::SPECIFIC_CHARACTER_SET,
        tags::PATIENT_ID,
        tags::ISSUER_OF_PATIENT_ID,
        tags::STUDY_INSTANCE_UID,
        tags::SERIES_INSTANCE_UID,
        tags::SOP_INSTANCE_UID,
    ];
    InMemDicomObject::from_element_iter(ident.into_iter().filter(|e| KEEP.contains(&e.tag())))
}

/// Parses the identifier and finds the instances, or answers the refusal.
async fn load(
    s: &mut Session,
    pc: u8,
    ts: &str,
    model: Model,
    rq: &CommandSet,
    identifier: &[u8],
) -> Result<Option<Vec<InstanceRecord>>, Fatal> {
    let plan = match parse_identifier(identifier, ts).and_then(|o| plan(&unique_keys(o), model)) {
        Ok(p) => p,
        Err((st, msg)) => {
            s.respond(pc, &rq.response(st).with_comment(msg), None)
                .await?;
            return Ok(None);
        }
    };
    let (archive, tenant) = (s.shared.archive.clone(), s.shared.cfg.tenant.clone());
    match resolve(&archive, &tenant, &plan).await {
        Ok(recs) => Ok(Some(recs)),
        Err((st, msg)) => {
            s.respond(pc, &rq.response(st).with_comment(msg), None)
                .await?;
            Ok(None)
        }
    }
}

pub(crate) async fn run_move(
    s: &mut Session,
    pc: u8,
    ts: &str,
    model: Model,
    rq: &CommandSet,
    identifier: &[u8],
) -> Result<(), Fatal> {
    let dest_ae = rq.move_destination.trim();
    let Some(dest) = s
        .shared
        .cfg
        .nodes
        .iter()
        .find(|n| n.ae_title == dest_ae)
        .cloned()
    else {
        warn!(peer = %s.peer_ae, "C-MOVE to unknown destination {dest_ae:?}");
        let rsp = rq
            .response(status::MOVE_DESTINATION_UNKNOWN)
            .with_comment(format!("unknown move destination {dest_ae:?}"));
        return s.respond(pc, &rsp, None).await;
    };
    let Some(recs) = load(s, pc, ts, model, rq, identifier).await? else {
        return Ok(());
    };
    let mut c = Counters::new(recs.len());
    if recs.is_empty() {
        return c.finish(s, pc, ts, rq, "C-MOVE").await;
    }
    let (archive, tenant, our_ae) = (
        s.shared.archive.clone(),
        s.shared.cfg.tenant.clone(),
        s.shared.cfg.ae_title.clone(),
    );
    let tls = s.shared.cfg.tls_client.clone();
    let mut scu = match connect(&our_ae, &dest, &recs, tls.as_ref()).await {
        Ok(scu) => scu,
        Err(e) => {
            warn!(peer = %s.peer_ae, "C-MOVE: {e}");
            // Each instance failed, and the final response lists them
            // (PS3.4 C.4.2.1.3.1), as when sub-operations ran and failed.
            // The comment holds 64 characters: the node and the last
            // cause ("no presentation contexts accepted", "connection
            // refused"), the whole chain is in the log.
            let text = e.to_string();
            let cause = text.rsplit(": ").next().unwrap_or("cannot associate");
            let why = format!("{}: {cause}", dest.ae_title);
            for rec in &recs {
                let _ = c.report.record(rec, Err(why.clone()));
            }
            c.comment = Some(why);
            return c.finish(s, pc, ts, rq, "C-MOVE").await;
        }
    };
    let originator = s.peer_ae.clone();
    let mut reopened = 0;
    for (i, rec) in recs.iter().enumerate() {
        if s.cancel_requested(rq.message_id).await? {
            c.cancelled = true;
            break;
        }
        let r = scu
            .store(&archive, &tenant, rec, Some((&originator, rq.message_id)))
            .await;
        if let Err(e) = c.report.record(rec, r) {
            warn!(sop = %rec.sop_uid, dest = %dest, "C-MOVE sub-operation failed: {e}");
            c.comment.get_or_insert(e);
        }
        let rest = &recs[i + 1..];
        reopen_if_aborted(&mut scu, &mut reopened, &our_ae, &dest, rest, tls.as_ref()).await;
        if c.remaining() > 0 {
            s.respond(pc, &c.pending(rq), None).await?;
        }
    }
    scu.release().await;
    c.finish(s, pc, ts, rq, "C-MOVE").await
}

/// Why no C-GET storage context can carry `rec`: the requester took the
/// SCP role for its SOP class in none, or only in syntaxes it cannot be
/// sent in (a compressed one it is not stored in, or big endian for
/// decoded frames); it said "no storage context" for both.
fn no_context(contexts: &[(u8, String, String)], rec: &InstanceRecord) -> String {
    let offered: Vec<&str> = contexts
        .iter()
        .filter(|c| c.1 == rec.sop_class_uid)
        .map(|c| c.2.as_str())
        .collect();
    if offered.is_empty() {
        return format!(
            "no storage context with the SCP role for {}",
            rec.sop_class_uid
        );
    }
    // Short: an Error Comment holds 64 characters.
    format!(
        "takes only {}; stored {}",
        offered.join(","),
        rec.transfer_syntax
    )
}

pub(crate) async fn run_get(
    s: &mut Session,
    pc: u8,
    ts: &str,
    model: Model,
    rq: &CommandSet,
    identifier: &[u8],
) -> Result<(), Fatal> {
    let Some(recs) = load(s, pc, ts, model, rq, identifier).await? else {
        return Ok(());
    };
    // Storage contexts on which the requester accepted to be the SCP.
    let contexts: Vec<(u8, String, String)> = s
        .link
        .contexts
        .iter()
        .filter(|c| c.requester_scp && is_storage(&c.abstract_syntax))
        .map(|c| (c.id, c.abstract_syntax.clone(), c.ts.clone()))
        .collect();
    let (archive, tenant) = (s.shared.archive.clone(), s.shared.cfg.tenant.clone());
    let mut c = Counters::new(recs.len());
    for rec in &recs {
        if s.cancel_requested(rq.message_id).await? {
            c.cancelled = true;
            break;
        }
        let r = match choose_context(&contexts, rec) {
            None => Err(no_context(&contexts, rec)),
            Some((spc, sts)) => {
                let id = s.message_id();
                match send_store(&mut s.link, &archive, &tenant, rec, spc, &sts, id, None).await {
                    Err(e) if e.fatal => return Err(Fatal::Abort(e.message)),
                    Err(e) => Err(e.message),
                    Ok(()) => {
                        let rsp = s.await_response(C_STORE_RSP, id, rq.message_id).await?;
                        Ok((rsp.status, rsp.error_comment))
                    }
                }
            }
        };
        if let Err(e) = c.report.record(rec, r) {
            warn!(sop = %rec.sop_uid, peer = %s.peer_ae, "C-GET sub-operation failed: {e}");
            c.comment.get_or_insert(e);
        }
        if c.remaining() > 0 {
            s.respond(pc, &c.pending(rq), None).await?;
        }
    }
    c.finish(s, pc, ts, rq, "C-GET").await
}
