//! One accepted association: the PDU loop and its message state machine
//! (command, then the data set streamed to a store or collected as an
//! identifier), dispatch to the services, C-CANCEL detection while an
//! operation runs, and the explicit end (A-RELEASE-RP or A-ABORT).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

use dicom_ul::pdu::{PDataValue, PDataValueType, Pdu};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::association::{Link, LinkError};
use super::command::{self as cmd, CommandError, CommandSet};
use super::pdata::{self, CommandAssembler};
use super::store::StoreJob;
use super::{commit, find, retrieve, status, DimseConfig, Service};
use crate::Archive;

/// Largest C-FIND/MOVE/GET identifier accepted.
const MAX_IDENTIFIER: usize = 1 << 20;

pub(crate) struct Shared {
    pub archive: Archive,
    pub cfg: DimseConfig,
}

/// Why an association ends early.
#[derive(Debug)]
pub(crate) enum Fatal {
    /// We abort: protocol error, timeout, I/O failure.
    Abort(String),
    PeerAborted,
    Closed,
    /// The peer released the association (A-RELEASE-RP sent).
    Released,
}

impl From<LinkError> for Fatal {
    fn from(e: LinkError) -> Self {
        match e {
            LinkError::Closed => Fatal::Closed,
            e => Fatal::Abort(e.to_string()),
        }
    }
}

impl From<CommandError> for Fatal {
    fn from(e: CommandError) -> Self {
        Fatal::Abort(e.to_string())
    }
}

enum State {
    Idle,
    Storing(StoreJob),
    Identifier {
        pc: u8,
        ts: String,
        service: Service,
        cmd: CommandSet,
        buf: Vec<u8>,
    },
    /// A data set we do not want: read to its end, then answer `rsp`.
    Draining {
        pc: u8,
        rsp: CommandSet,
    },
}

/// How long a sender may pause before the studies its instances left are
/// refreshed (they are at the latest when the association ends).
const REFRESH_AFTER_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);

pub(crate) struct Session {
    pub link: Link,
    pub shared: Arc<Shared>,
    pub peer_ae: String,
    pub addr: SocketAddr,
    state: State,
    commands: CommandAssembler,
    /// Commands arriving while an operation runs (C-CANCEL, C-STORE-RSP).
    side: CommandAssembler,
    cancelled: Option<u16>,
    next_message_id: u16,
    /// A PDU read ahead by an operation (a storage commitment waiting to
    /// see whether the modality waits for its report), served next.
    held: Option<Pdu>,
    /// Studies instances stored here left (re-sent under new UIDs): their
    /// attributes are refreshed once, when the association ends.
    left: BTreeSet<String>,
}

impl Session {
    pub(crate) fn new(link: Link, shared: Arc<Shared>, addr: SocketAddr) -> Self {
        Self {
            peer_ae: link.peer_ae.clone(),
            link,
            shared,
            addr,
            state: State::Idle,
            commands: CommandAssembler::default(),
            side: CommandAssembler::default(),
            cancelled: None,
            next_message_id: 1,
            held: None,
            left: BTreeSet::new(),
        }
    }

    /// Refreshes the studies instances stored here left (see `left`).
    async fn refresh_left(&mut self) {
        let tenant = self.shared.cfg.tenant.clone();
        for study in std::mem::take(&mut self.left) {
            self.shared.archive.refresh_left(&tenant, &study).await;
        }
    }

    /// Keeps `pdu` to be served by the session's loop next.
    pub(crate) fn hold(&mut self, pdu: Pdu) {
        self.held = Some(pdu);
    }

    pub(crate) async fn run(mut self, stop: CancellationToken) {
        let end = loop {
            // Studies instances left are refreshed once the sender pauses
            // (a modality may hold its association open for long).
            let pending = !self.left.is_empty();
            let pdu = match self.held.take() {
                Some(pdu) => Ok(pdu),
                None => tokio::select! {
                    biased;
                    _ = stop.cancelled() => break Fatal::Abort("the server is shutting down".into()),
                    _ = tokio::time::sleep(REFRESH_AFTER_PAUSE), if pending => Err(None),
                    r = self.link.receive() => r.map_err(Some),
                },
            };
            let pdu = match pdu {
                Err(None) => {
                    self.refresh_left().await;
                    continue;
                }
                Err(Some(e)) => Err(e),
                Ok(pdu) => Ok(pdu),
            };
            let handled = match pdu {
                Ok(pdu) => self.handle_pdu(pdu).await,
                Err(e) => Err(e.into()),
            };
            if let Err(e) = handled {
                break e;
            }
        };
        // An instance cut off mid-transfer is not stored: said, so a
        // missing instance can be traced to the connection that lost it.
        if let (Fatal::Closed | Fatal::PeerAborted | Fatal::Abort(_), State::Storing(job)) =
            (&end, &self.state)
        {
            info!(
                peer = %self.peer_ae,
                addr = %self.addr,
                sop = %job.sop_uid(),
                bytes = job.received(),
                "C-STORE cut off mid-transfer: the instance was discarded, nothing of it stored"
            );
        }
        self.refresh_left().await;
        match end {
            Fatal::Released => {
                info!(peer = %self.peer_ae, addr = %self.addr, "association released")
            }
            Fatal::PeerAborted => {
                info!(peer = %self.peer_ae, addr = %self.addr, "association aborted by the peer")
            }
            Fatal::Closed => {
                info!(peer = %self.peer_ae, addr = %self.addr, "connection closed without release")
            }
            Fatal::Abort(reason) => {
                warn!(peer = %self.peer_ae, addr = %self.addr, "aborting the association: {reason}");
                self.link.abort().await;
            }
        }
    }

    /// One PDU of the association's normal flow; a release ends it with
    /// `Fatal::Released` once answered.
    pub(crate) async fn handle_pdu(&mut self, pdu: Pdu) -> Result<(), Fatal> {
        match pdu {
            Pdu::PData { data } => self.on_pdvs(data).await,
            Pdu::ReleaseRQ => {
                if !matches!(self.state, State::Idle) {
                    warn!(peer = %self.peer_ae, addr = %self.addr, "release requested in the middle of a message");
                }
                // Before the release is confirmed: a sender querying right
                // after finds the studies it corrected right.
                self.refresh_left().await;
                if let Err(e) = self.link.release_reply().await {
                    debug!(peer = %self.peer_ae, "release reply not sent: {e}");
                }
                Err(Fatal::Released)
            }
            Pdu::AbortRQ { .. } => Err(Fatal::PeerAborted),
            other => Err(Fatal::Abort(format!(
                "unexpected {}",
                other.short_description()
            ))),
        }
    }

    async fn on_pdvs(&mut self, data: Vec<PDataValue>) -> Result<(), Fatal> {
        for pdv in data {
            match pdv.value_type {
                PDataValueType::Command => {
                    if !matches!(self.state, State::Idle) {
                        return Err(Fatal::Abort(
                            "a command arrived in the middle of a data set".into(),
                        ));
                    }
                    let pc = pdv.presentation_context_id;
                    if let Some(c) = self.commands.feed(pdv)? {
                        self.on_command(pc, c).await?;
                    }
                }
                PDataValueType::Data => self.on_data(pdv).await?,
            }
        }
        Ok(())
    }

    async fn on_command(&mut self, pc: u8, mut c: CommandSet) -> Result<(), Fatal> {
        let Some((abstract_syntax, ts)) = self
            .link
            .context(pc)
            .map(|c| (c.abstract_syntax.clone(), c.ts.clone()))
        else {
            return Err(Fatal::Abort(format!(
                "presentation context {pc} was not accepted"
            )));
        };
        if c.sop_class.is_empty() {
            c.sop_class = abstract_syntax.clone();
        }
        let service = Service::of(&abstract_syntax);
        debug!(peer = %self.peer_ae, field = format_args!("{:#06x}", c.field), id = c.message_id, ?service, "command");
        match (c.field, service) {
            (cmd::C_ECHO_RQ, _) => self.answer(pc, &c, c.response(status::SUCCESS)).await,
            (cmd::C_CANCEL_RQ, _) => Ok(()),
            (cmd::C_STORE_RQ, Service::Storage) => {
                if !c.has_dataset {
                    let rsp = c
                        .response(status::CANNOT_UNDERSTAND)
                        .with_comment("C-STORE without a data set");
                    return self.respond(pc, &rsp, None).await;
                }
                if c.sop_instance.is_empty() {
                    let rsp = c
                        .response(status::CANNOT_UNDERSTAND)
                        .with_comment("no Affected SOP Instance UID");
                    return self.answer(pc, &c, rsp).await;
                }
                let trim = |u: &str| u.trim_end_matches(['\0', ' ']).to_string();
                if trim(&c.sop_class) != trim(&abstract_syntax) {
                    // An MR sent on the context negotiated for CT: the SOP
                    // class was never agreed (it was stored).
                    let rsp = c
                        .response(status::SOP_CLASS_NOT_SUPPORTED)
                        .with_comment(format!(
                            "Affected SOP Class {} was not negotiated on presentation context {pc} ({abstract_syntax})",
                            c.sop_class
                        ));
                    return self.answer(pc, &c, rsp).await;
                }
                let (archive, cfg) = (self.shared.archive.clone(), &self.shared.cfg);
                let job = StoreJob::start(archive, &cfg.tenant, pc, c, &ts, &self.peer_ae);
                self.state = State::Storing(job);
                Ok(())
            }
            (cmd::C_FIND_RQ, Service::Find(_))
            | (cmd::C_MOVE_RQ, Service::Move(_))
            | (cmd::C_GET_RQ, Service::Get(_))
            | (cmd::N_ACTION_RQ, Service::Commitment) => {
                if !c.has_dataset {
                    let rsp = c
                        .response(status::IDENTIFIER_DOES_NOT_MATCH)
                        .with_comment("the request has no identifier");
                    return self.respond(pc, &rsp, None).await;
                }
                self.state = State::Identifier {
                    pc,
                    ts,
                    service,
                    cmd: c,
                    buf: Vec::new(),
                };
                Ok(())
            }
            (cmd::C_STORE_RQ | cmd::C_FIND_RQ | cmd::C_MOVE_RQ | cmd::C_GET_RQ, _) => {
                let rsp = c
                    .response(status::SOP_CLASS_NOT_SUPPORTED)
                    .with_comment(format!(
                        "SOP class {abstract_syntax} is not supported for this operation"
                    ));
                self.answer(pc, &c, rsp).await
            }
            (field, _) if c.is_response() => {
                warn!(peer = %self.peer_ae, "unexpected response {field:#06x} ignored");
                Ok(())
            }
            _ => {
                let rsp = c.response(status::UNRECOGNIZED_OPERATION);
                self.answer(pc, &c, rsp).await
            }
        }
    }

    /// Answers now, or after the data set the request announced.
    async fn answer(&mut self, pc: u8, rq: &CommandSet, rsp: CommandSet) -> Result<(), Fatal> {
        if rq.has_dataset {
            self.state = State::Draining { pc, rsp };
            Ok(())
        } else {
            self.respond(pc, &rsp, None).await
        }
    }

    async fn on_data(&mut self, pdv: PDataValue) -> Result<(), Fatal> {
        let pc = pdv.presentation_context_id;
        let last = pdv.is_last;
        match &mut self.state {
            State::Idle => {
                warn!(peer = %self.peer_ae, "data set fragment without a command: ignored");
                return Ok(());
            }
            State::Storing(job) => {
                if job.pc != pc {
                    return Err(Fatal::Abort(
                        "data set on another presentation context".into(),
                    ));
                }
                job.push(pdv.data, last).await;
            }
            State::Identifier {
                pc: want, cmd, buf, ..
            } => {
                if *want != pc {
                    return Err(Fatal::Abort(
                        "identifier on another presentation context".into(),
                    ));
                }
                if buf.len() + pdv.data.len() > MAX_IDENTIFIER {
                    let rsp = cmd
                        .response(status::UNABLE_TO_PROCESS)
                        .with_comment("identifier too large");
                    self.state = State::Draining { pc, rsp };
                } else {
                    buf.extend_from_slice(&pdv.data);
                }
            }
            State::Draining { pc: want, .. } => {
                if *want != pc {
                    return Err(Fatal::Abort(
                        "data set on another presentation context".into(),
                    ));
                }
            }
        }
        if !last {
            return Ok(());
        }
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Idle => Ok(()),
            State::Storing(job) => {
                let pc = job.pc;
                let rsp = job.finish(&mut self.left).await;
                self.respond(pc, &rsp, None).await
            }
            State::Draining { pc, rsp } => self.respond(pc, &rsp, None).await,
            State::Identifier {
                pc,
                ts,
                service,
                cmd,
                buf,
            } => {
                self.cancelled = None;
                match service {
                    Service::Find(model) => find::run(self, pc, &ts, model, &cmd, &buf).await,
                    Service::Move(model) => {
                        retrieve::run_move(self, pc, &ts, model, &cmd, &buf).await
                    }
                    Service::Get(model) => {
                        retrieve::run_get(self, pc, &ts, model, &cmd, &buf).await
                    }
                    Service::Commitment => commit::run(self, pc, &ts, &cmd, &buf).await,
                    _ => Ok(()),
                }
            }
        }
    }

    /// Sends a response (with an optional small data set).
    pub(crate) async fn respond(
        &mut self,
        pc: u8,
        rsp: &CommandSet,
        data: Option<&[u8]>,
    ) -> Result<(), Fatal> {
        let bytes = rsp.encode()?;
        pdata::send_message(&mut self.link, pc, &bytes, data).await?;
        // Each operation once, by its final status (fulcrum_requests_total
        // {protocol="dimse"}): pending answers of C-FIND, C-MOVE and C-GET
        // are not counted.
        let op = match rsp.field {
            cmd::C_ECHO_RSP => "C-ECHO",
            cmd::C_STORE_RSP => "C-STORE",
            cmd::C_FIND_RSP => "C-FIND",
            cmd::C_MOVE_RSP => "C-MOVE",
            cmd::C_GET_RSP => "C-GET",
            cmd::N_ACTION_RSP => "N-ACTION",
            _ => "",
        };
        if !op.is_empty() && !matches!(rsp.status, 0xFF00 | 0xFF01) {
            self.shared.archive.engine().metrics().request(
                "dimse",
                op,
                &format!("{:04X}", rsp.status),
            );
        }
        Ok(())
    }

    /// A fresh message id for a request we send (C-GET sub-operations).
    pub(crate) fn message_id(&mut self) -> u16 {
        let id = self.next_message_id;
        self.next_message_id = self.next_message_id.checked_add(1).unwrap_or(1);
        id
    }

    /// Whether the peer has cancelled operation `msg_id`, looking at what
    /// has arrived without waiting for more.
    pub(crate) async fn cancel_requested(&mut self, msg_id: u16) -> Result<bool, Fatal> {
        loop {
            if self.cancelled == Some(msg_id) {
                return Ok(true);
            }
            // `receive` is cancel-safe: a partial PDU stays in its buffer.
            let pdu = tokio::select! {
                biased;
                r = self.link.receive() => r?,
                _ = std::future::ready(()) => return Ok(false),
            };
            if let Some(rsp) = self.during_operation(pdu, msg_id)? {
                return Err(Fatal::Abort(format!(
                    "unexpected response {:#06x} during an operation",
                    rsp.field
                )));
            }
        }
    }

    /// Waits for the response `field` to our request `id`, sent while
    /// operation `op_id` of the peer runs (0: none).
    pub(crate) async fn await_response(
        &mut self,
        field: u16,
        id: u16,
        op_id: u16,
    ) -> Result<CommandSet, Fatal> {
        loop {
            let pdu = self.link.receive().await?;
            if let Some(rsp) = self.during_operation(pdu, op_id)? {
                if rsp.field == field && rsp.responding_to == id {
                    return Ok(rsp);
                }
                warn!(peer = %self.peer_ae, "unexpected response {:#06x} to {} ignored", rsp.field, rsp.responding_to);
            }
        }
    }

    /// Handles a PDU arriving while operation `msg_id` runs: notes a
    /// C-CANCEL, returns a response; anything else ends the association.
    fn during_operation(&mut self, pdu: Pdu, msg_id: u16) -> Result<Option<CommandSet>, Fatal> {
        let data = match pdu {
            Pdu::PData { data } => data,
            Pdu::AbortRQ { .. } => return Err(Fatal::PeerAborted),
            other => {
                return Err(Fatal::Abort(format!(
                    "unexpected {} during an operation",
                    other.short_description()
                )))
            }
        };
        let mut response = None;
        for pdv in data {
            if pdv.value_type == PDataValueType::Data {
                return Err(Fatal::Abort(
                    "unexpected data set during an operation".into(),
                ));
            }
            let Some(c) = self.side.feed(pdv)? else {
                continue;
            };
            match c.field {
                cmd::C_CANCEL_RQ => {
                    if c.responding_to == msg_id {
                        info!(peer = %self.peer_ae, id = msg_id, "C-CANCEL received");
                        self.cancelled = Some(msg_id);
                    }
                }
                _ if c.is_response() => response = Some(c),
                f => {
                    return Err(Fatal::Abort(format!(
                        "request {f:#06x} while another is in progress (asynchronous operations were not negotiated)"
                    )))
                }
            }
        }
        Ok(response)
    }
}
