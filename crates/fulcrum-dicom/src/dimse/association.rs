//! The acceptor side of an association, on dicom-ul's PDU codec: A-ASSOCIATE
//! negotiation done here rather than by `ServerAssociationOptions` so each
//! presentation context's transfer syntax is ours to choose (explicit VR
//! little endian over implicit when both are offered, which keeps C-GET
//! byte-exact for most stored data), plus the accepted association's PDU
//! I/O with its idle timeout. Also the `Wire` trait our P-DATA code sends
//! through, for this link and for dicom-ul's client association alike.

use std::future::Future;
use std::io::Cursor;
use std::pin::Pin;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use dicom_dictionary_std::uids;
use dicom_encoding::TransferSyntaxIndex;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use dicom_ul::association::{Association, AsyncAssociation, AsyncClientAssociation};
use dicom_ul::pdu::{
    AbortRQServiceProviderReason, AbortRQSource, AssociationAC, AssociationRJ, AssociationRJResult,
    AssociationRJServiceUserReason, AssociationRJSource, PresentationContextResult,
    PresentationContextResultReason, UserVariableItem, DEFAULT_MAX_PDU, MAXIMUM_PDU_SIZE,
    PDU_HEADER_SIZE,
};
use dicom_ul::{read_pdu, write_pdu, Pdu};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::warn;

use super::{is_storage, Service};
use crate::part10::{IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION};

const APPLICATION_CONTEXT: &str = "1.2.840.10008.3.1.1.1";
const READ_CHUNK: usize = 64 * 1024;
/// How long a rejected requester may take to close the connection.
const ARTIM: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub(crate) enum LinkError {
    #[error("idle timeout")]
    Timeout,
    #[error("connection closed by the peer")]
    Closed,
    #[error("association rejected: {0}")]
    Rejected(AssociationRJServiceUserReason),
    #[error("{0}")]
    Protocol(String),
    #[error("network: {0}")]
    Io(#[from] std::io::Error),
}

/// Sends PDUs to a peer with a known maximum PDU size.
pub(crate) trait Wire: Send {
    fn peer_max(&self) -> u32;
    fn send_pdu(&mut self, pdu: &Pdu) -> impl Future<Output = Result<(), LinkError>> + Send;
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Wire for AsyncClientAssociation<S> {
    fn peer_max(&self) -> u32 {
        self.peer_max_pdu_length()
    }

    async fn send_pdu(&mut self, pdu: &Pdu) -> Result<(), LinkError> {
        AsyncAssociation::send(self, pdu)
            .await
            .map_err(|e| LinkError::Protocol(e.to_string()))
    }
}

/// Who may associate and what we offer.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    pub ae_title: String,
    pub allowed: Option<Vec<String>>,
    pub max_pdu: u32,
    pub timeout: Duration,
}

/// An accepted presentation context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Context {
    pub id: u8,
    pub abstract_syntax: String,
    pub ts: String,
    /// The requester took the SCP role (storage classes, for C-GET).
    pub requester_scp: bool,
}

/// A connection associations run on: TCP, or TLS over it.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// An accepted association: its contexts and its PDU I/O.
pub(crate) struct Link {
    socket: Pin<Box<dyn Io>>,
    read_buf: BytesMut,
    write_buf: Vec<u8>,
    our_max: u32,
    peer_max: u32,
    timeout: Duration,
    pub contexts: Vec<Context>,
    pub peer_ae: String,
}

fn trim(s: &str) -> &str {
    s.trim_matches(|c: char| c == '\0' || c == ' ')
}

/// The transfer syntax we accept among those proposed: the requester's
/// first that the registry knows (deflate included where `deflate`),
/// except that explicit VR little endian wins over implicit.
pub(crate) fn choose_ts(proposed: &[String], deflate: bool) -> Option<String> {
    let usable: Vec<&str> = proposed
        .iter()
        .map(|t| trim(t))
        .filter(|t| deflate || !crate::scan::DEFLATED_TS.contains(t))
        .filter(|t| {
            TransferSyntaxRegistry
                .get(t)
                .is_some_and(|ts| !ts.is_unsupported())
        })
        .collect();
    let first = usable.first()?;
    if *first == uids::IMPLICIT_VR_LITTLE_ENDIAN
        && usable.contains(&uids::EXPLICIT_VR_LITTLE_ENDIAN)
    {
        return Some(uids::EXPLICIT_VR_LITTLE_ENDIAN.to_string());
    }
    Some(first.to_string())
}

impl Link {
    /// Reads the A-ASSOCIATE-RQ and accepts or rejects it.
    pub(crate) async fn accept(
        socket: Pin<Box<dyn Io>>,
        policy: &Policy,
    ) -> Result<Link, LinkError> {
        let mut link = Link {
            socket,
            read_buf: BytesMut::with_capacity(READ_CHUNK),
            write_buf: Vec::new(),
            our_max: policy.max_pdu,
            peer_max: DEFAULT_MAX_PDU,
            timeout: policy.timeout,
            contexts: Vec::new(),
            peer_ae: String::new(),
        };
        let rq = match link.receive().await? {
            Pdu::AssociationRQ(rq) => rq,
            other => {
                let what = other.short_description().to_string();
                link.abort().await;
                return Err(LinkError::Protocol(format!(
                    "expected A-ASSOCIATE-RQ, got {what}"
                )));
            }
        };
        let (calling, called) = (
            trim(&rq.calling_ae_title).to_string(),
            trim(&rq.called_ae_title).to_string(),
        );
        link.peer_ae = calling.clone();
        let refusal = if rq.protocol_version & 1 == 0 {
            Some(AssociationRJServiceUserReason::NoReasonGiven)
        } else if trim(&rq.application_context_name) != APPLICATION_CONTEXT {
            Some(AssociationRJServiceUserReason::ApplicationContextNameNotSupported)
        } else if rq.presentation_contexts.is_empty() {
            // PS3.8 9.3.2: one or more presentation contexts; with none
            // the association could carry nothing, yet was accepted.
            warn!(calling = %calling, "association rejected: no presentation context proposed");
            Some(AssociationRJServiceUserReason::NoReasonGiven)
        } else if called != trim(&policy.ae_title) {
            warn!(calling = %calling, called = %called, "association rejected: called AE title is not {:?}", policy.ae_title);
            Some(AssociationRJServiceUserReason::CalledAETitleNotRecognized)
        } else if policy
            .allowed
            .as_ref()
            .is_some_and(|l| !l.iter().any(|a| trim(a) == calling))
        {
            warn!(calling = %calling, "association rejected: calling AE title is not on the allow-list");
            Some(AssociationRJServiceUserReason::CallingAETitleNotRecognized)
        } else {
            None
        };
        if let Some(reason) = refusal {
            let rj = Pdu::AssociationRJ(AssociationRJ {
                result: AssociationRJResult::Permanent,
                source: AssociationRJSource::ServiceUser(reason.clone()),
            });
            let _ = link.send_pdu(&rj).await;
            let _ = link.socket.shutdown().await;
            // PS3.8 Sta13: the requester closes the connection once it has
            // read the rejection (ARTIM bounds the wait). Closing first
            // races with its read, and it may see an abort instead.
            let mut sink = [0u8; 512];
            let _ = tokio::time::timeout(ARTIM, async {
                while matches!(link.socket.read(&mut sink).await, Ok(n) if n > 0) {}
            })
            .await;
            return Err(LinkError::Rejected(reason));
        }
        let mut reply_vars = vec![
            UserVariableItem::MaxLength(policy.max_pdu),
            UserVariableItem::ImplementationClassUID(IMPLEMENTATION_CLASS_UID.to_string()),
            UserVariableItem::ImplementationVersionName(IMPLEMENTATION_VERSION.to_string()),
        ];
        let mut scp_role: Vec<String> = Vec::new();
        for v in &rq.user_variables {
            match v {
                UserVariableItem::MaxLength(n) => {
                    link.peer_max = if *n == 0 {
                        MAXIMUM_PDU_SIZE
                    } else {
                        (*n).min(MAXIMUM_PDU_SIZE)
                    };
                }
                UserVariableItem::ScuScpRoleSelectionSubItem(uid, roles) if is_storage(uid) => {
                    if roles.scp {
                        scp_role.push(trim(uid).to_string());
                    }
                    reply_vars.push(UserVariableItem::ScuScpRoleSelectionSubItem(
                        uid.clone(),
                        *roles,
                    ));
                }
                _ => {}
            }
        }
        let mut results = Vec::with_capacity(rq.presentation_contexts.len());
        for pc in &rq.presentation_contexts {
            let abstract_syntax = trim(&pc.abstract_syntax).to_string();
            let service = Service::of(&abstract_syntax);
            // Query and retrieve identifiers are parsed as they come: a
            // deflated one cannot be, so deflate is not accepted there
            // (stored instances and commitment requests are inflated).
            let deflate = !matches!(
                service,
                Service::Find(_) | Service::Move(_) | Service::Get(_)
            );
            // Context IDs are odd and unique (PS3.8 9.3.2.2): with two
            // contexts named 1, a C-STORE on "1" met the Verification one.
            let misnumbered = pc.id % 2 == 0
                || results
                    .iter()
                    .any(|r: &PresentationContextResult| r.id == pc.id);
            let (reason, ts) = if misnumbered {
                (PresentationContextResultReason::NoReason, None)
            } else if service == Service::Unsupported {
                (
                    PresentationContextResultReason::AbstractSyntaxNotSupported,
                    None,
                )
            } else {
                match choose_ts(&pc.transfer_syntaxes, deflate) {
                    Some(ts) => (PresentationContextResultReason::Acceptance, Some(ts)),
                    None => (
                        PresentationContextResultReason::TransferSyntaxesNotSupported,
                        None,
                    ),
                }
            };
            if let Some(ts) = &ts {
                link.contexts.push(Context {
                    id: pc.id,
                    requester_scp: scp_role.contains(&abstract_syntax),
                    abstract_syntax,
                    ts: ts.clone(),
                });
            }
            results.push(PresentationContextResult {
                id: pc.id,
                reason,
                transfer_syntax: ts.unwrap_or_else(|| uids::IMPLICIT_VR_LITTLE_ENDIAN.to_string()),
            });
        }
        let ac = Pdu::AssociationAC(AssociationAC {
            protocol_version: 1,
            calling_ae_title: rq.calling_ae_title.clone(),
            called_ae_title: rq.called_ae_title.clone(),
            application_context_name: APPLICATION_CONTEXT.to_string(),
            presentation_contexts: results,
            user_variables: reply_vars,
        });
        link.send_pdu(&ac).await?;
        Ok(link)
    }

    /// The accepted context `id`.
    pub(crate) fn context(&self, id: u8) -> Option<&Context> {
        self.contexts.iter().find(|c| c.id == id)
    }

    /// The next PDU. Cancel-safe: a partial PDU stays in the buffer.
    pub(crate) async fn receive(&mut self) -> Result<Pdu, LinkError> {
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, self.read_next()).await {
            Ok(r) => r,
            Err(_) => Err(LinkError::Timeout),
        }
    }

    async fn read_next(&mut self) -> Result<Pdu, LinkError> {
        loop {
            let mut cur = Cursor::new(&self.read_buf[..]);
            match read_pdu(&mut cur, self.our_max, true) {
                Ok(Some(pdu)) => {
                    let used = cur.position() as usize;
                    self.read_buf.advance(used);
                    return Ok(pdu);
                }
                Ok(None) => {}
                Err(e) => return Err(LinkError::Protocol(e.to_string())),
            }
            self.read_buf.reserve(READ_CHUNK);
            if self.socket.read_buf(&mut self.read_buf).await? == 0 {
                return Err(LinkError::Closed);
            }
        }
    }

    /// Sends A-ABORT and closes the connection.
    pub(crate) async fn abort(&mut self) {
        let pdu = Pdu::AbortRQ {
            source: AbortRQSource::ServiceProvider(
                AbortRQServiceProviderReason::ReasonNotSpecified,
            ),
        };
        let _ = self.send_pdu(&pdu).await;
        let _ = self.socket.shutdown().await;
    }

    /// Answers A-RELEASE-RQ and closes the connection.
    pub(crate) async fn release_reply(&mut self) -> Result<(), LinkError> {
        self.send_pdu(&Pdu::ReleaseRP).await?;
        let _ = self.socket.shutdown().await;
        Ok(())
    }
}

impl Wire for Link {
    fn peer_max(&self) -> u32 {
        self.peer_max
    }

    async fn send_pdu(&mut self, pdu: &Pdu) -> Result<(), LinkError> {
        self.write_buf.clear();
        write_pdu(&mut self.write_buf, pdu).map_err(|e| LinkError::Protocol(e.to_string()))?;
        if matches!(pdu, Pdu::PData { .. })
            && self.write_buf.len() > (self.peer_max + PDU_HEADER_SIZE) as usize
        {
            return Err(LinkError::Protocol(format!(
                "a {} byte PDU exceeds the peer's maximum of {}",
                self.write_buf.len(),
                self.peer_max
            )));
        }
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, self.socket.write_all(&self.write_buf)).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(LinkError::Timeout),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn explicit_little_endian_wins_over_implicit() {
        let (imp, exp) = (
            uids::IMPLICIT_VR_LITTLE_ENDIAN,
            uids::EXPLICIT_VR_LITTLE_ENDIAN,
        );
        assert_eq!(choose_ts(&v(&[imp, exp]), true).as_deref(), Some(exp));
        assert_eq!(choose_ts(&v(&[imp]), true).as_deref(), Some(imp));
        let deflated = "1.2.840.10008.1.2.1.99";
        assert_eq!(
            choose_ts(&v(&[deflated, exp]), true).as_deref(),
            Some(deflated)
        );
        assert_eq!(choose_ts(&v(&[deflated, exp]), false).as_deref(), Some(exp));
        assert_eq!(choose_ts(&v(&[deflated]), false), None);
        assert_eq!(
            choose_ts(&v(&["1.2.840.10008.1.2.4.90", exp]), true).as_deref(),
            Some("1.2.840.10008.1.2.4.90")
        );
        assert_eq!(
            choose_ts(&v(&["1.2.3.4", "1.2.840.10008.1.2.2\0"]), true).as_deref(),
            Some("1.2.840.10008.1.2.2")
        );
        assert_eq!(choose_ts(&v(&["1.2.3.4"]), true), None);
        assert_eq!(choose_ts(&[], true), None);
    }
}
