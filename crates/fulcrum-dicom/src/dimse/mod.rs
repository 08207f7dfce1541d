//! DIMSE network services on dicom-ul: the SCP behind `fulcrum serve`
//! (C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET, Storage Commitment) and the C-STORE SCU behind
//! `fulcrum dicom send` and C-MOVE. This file holds the public
//! configuration types, the SOP classes we serve and the status codes.

mod association;
pub mod command;
mod commit;
mod find;
mod pdata;
mod retrieve;
mod scu;
mod server;
mod session;
mod store;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use dicom_core::dictionary::{UidDictionary, UidType};
use dicom_dictionary_std::uids;
use dicom_dictionary_std::StandardSopClassDictionary;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

pub use association::Io;
pub use scu::{send, SendReport};
pub use server::{serve, Accept};

/// A remote DICOM application entity: `AET@HOST:PORT`, or
/// `AET@HOST:PORT/tls` for one reached over TLS (PS3.15 B.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub ae_title: String,
    /// `host:port`
    pub addr: String,
    pub tls: bool,
}

impl Node {
    /// The host part of the address (the name a TLS certificate must carry).
    pub fn host(&self) -> &str {
        let host = self
            .addr
            .rsplit_once(':')
            .map_or(self.addr.as_str(), |(h, _)| h);
        host.trim_start_matches('[').trim_end_matches(']')
    }
}

/// Trust anchors for DICOM over TLS to nodes (`dicom_tls_ca`).
#[derive(Clone)]
pub struct TlsClient(pub(crate) Arc<tokio_rustls::rustls::ClientConfig>);

impl fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TlsClient")
    }
}

impl TlsClient {
    /// Trusts `roots` (a hospital's CA certificates); with `identity` (our
    /// certificate chain and key) it authenticates itself to peers that ask
    /// (mutual TLS, IHE ATNA secure nodes). The caller reads the PEM files.
    pub fn new(
        roots: Vec<CertificateDer<'static>>,
        identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    ) -> Result<TlsClient, String> {
        let mut store = tokio_rustls::rustls::RootCertStore::empty();
        for c in roots {
            store.add(c).map_err(|e| e.to_string())?;
        }
        if store.is_empty() {
            return Err("no trusted certificate".into());
        }
        let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
        let builder = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(store);
        let cfg = match identity {
            None => builder.with_no_client_auth(),
            Some((chain, key)) => builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("our certificate and key: {e}"))?,
        };
        Ok(TlsClient(Arc::new(cfg)))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0} (expected AET@HOST:PORT, e.g. PACS@10.0.0.5:104)")]
pub struct NodeParseError(String);

impl FromStr for Node {
    type Err = NodeParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (s, tls) = match s.strip_suffix("/tls") {
            Some(rest) => (rest, true),
            None => (s, false),
        };
        let (ae, addr) = s
            .rsplit_once('@')
            .ok_or_else(|| NodeParseError(format!("{s:?} has no '@'")))?;
        let ae = ae.trim();
        if ae.is_empty() || ae.len() > 16 || ae.contains('\\') || ae.chars().any(char::is_control) {
            return Err(NodeParseError(format!(
                "{ae:?} is not an AE title (1 to 16 characters, no backslash)"
            )));
        }
        let (host, port) = addr
            .rsplit_once(':')
            .ok_or_else(|| NodeParseError(format!("{addr:?} has no ':PORT'")))?;
        if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(NodeParseError(format!("{addr:?} is not HOST:PORT")));
        }
        Ok(Node {
            ae_title: ae.to_string(),
            addr: addr.to_string(),
            tls,
        })
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.ae_title, self.addr)?;
        if self.tls {
            f.write_str("/tls")?;
        }
        Ok(())
    }
}

/// Settings of the DIMSE SCP.
#[derive(Debug, Clone)]
pub struct DimseConfig {
    /// Our AE title; associations calling another title are rejected.
    pub ae_title: String,
    /// The tenant C-STORE stores into and C-FIND/MOVE/GET read from.
    pub tenant: String,
    /// Known C-MOVE destinations.
    pub nodes: Vec<Node>,
    /// Trust anchors for nodes reached over TLS.
    pub tls_client: Option<TlsClient>,
    /// Calling AE titles allowed to associate; `None` admits any.
    pub allowed_aets: Option<Vec<String>>,
    /// Largest PDU we accept (advertised in the association).
    pub max_pdu: u32,
    /// How long an association may stay silent between PDUs.
    pub idle_timeout: Duration,
}

impl Default for DimseConfig {
    fn default() -> Self {
        Self {
            ae_title: "FULCRUM".into(),
            tenant: fulcrum_types::DEFAULT_TENANT.into(),
            nodes: Vec::new(),
            tls_client: None,
            allowed_aets: None,
            max_pdu: DEFAULT_MAX_PDU,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// 256 KiB minus the PDU header.
pub const DEFAULT_MAX_PDU: u32 = 262_138;

/// DIMSE status codes beyond the storage ones in [`crate::status`]
/// (PS3.4 annexes B and C, PS3.7 annex C).
pub mod status {
    pub use crate::error::status::*;
    pub const PENDING: u16 = 0xFF00;
    pub const PENDING_WARNING: u16 = 0xFF01;
    pub const CANCELLED: u16 = 0xFE00;
    pub const UNRECOGNIZED_OPERATION: u16 = 0x0211;
    pub const MOVE_DESTINATION_UNKNOWN: u16 = 0xA801;
    pub const SUBOPERATIONS_FAILED: u16 = 0xA702;
    pub const SUBOPERATIONS_WARNING: u16 = 0xB000;
    pub const IDENTIFIER_DOES_NOT_MATCH: u16 = 0xA900;
    pub const UNABLE_TO_PROCESS: u16 = 0xC000;

    /// Success or a warning: the operation was carried out.
    pub fn is_ok(s: u16) -> bool {
        s == SUCCESS || is_warning(s)
    }

    /// PS3.7 C.1: 0001, 0107, 0116 and Bxxx are warnings.
    pub fn is_warning(s: u16) -> bool {
        matches!(s, 0x0001 | 0x0107 | 0x0116 | 0xB000..=0xBFFF)
    }
}

/// The query/retrieve information model a Q/R SOP class belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Model {
    PatientRoot,
    StudyRoot,
}

/// What a negotiated abstract syntax lets the peer ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    Verification,
    Storage,
    Find(Model),
    Move(Model),
    Get(Model),
    /// Storage Commitment Push Model (N-ACTION, N-EVENT-REPORT).
    Commitment,
    Unsupported,
}

impl Service {
    pub(crate) fn of(abstract_syntax: &str) -> Service {
        use Model::*;
        match abstract_syntax {
            uids::VERIFICATION => Service::Verification,
            uids::PATIENT_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_FIND => Service::Find(PatientRoot),
            uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_FIND => Service::Find(StudyRoot),
            uids::PATIENT_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_MOVE => Service::Move(PatientRoot),
            uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_MOVE => Service::Move(StudyRoot),
            uids::PATIENT_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_GET => Service::Get(PatientRoot),
            uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_GET => Service::Get(StudyRoot),
            uids::STORAGE_COMMITMENT_PUSH_MODEL => Service::Commitment,
            uid if is_storage(uid) => Service::Storage,
            _ => Service::Unsupported,
        }
    }
}

/// Whether a SOP class is a storage SOP class: every standard SOP class
/// named "… Storage" (not Storage Commitment, not DICOMDIR), any UID
/// under the storage root 1.2.840.10008.5.1.4.1.1 (classes newer than
/// the dictionary), and any private SOP class (a UID outside the DICOM
/// root 1.2.840.10008): modalities send theirs (Siemens CSA Non-Image,
/// Philips private data) next to their images, STOW-RS stores them, and
/// C-GET and C-MOVE must be able to give them back.
pub fn is_storage(uid: &str) -> bool {
    let uid = uid.trim_end_matches(['\0', ' ']);
    match StandardSopClassDictionary.by_uid(uid) {
        Some(e) => {
            e.r#type == UidType::SopClass
                && e.name.contains("Storage")
                && !e.name.starts_with("Storage ")
                && uid != uids::MEDIA_STORAGE_DIRECTORY_STORAGE
        }
        None => {
            uid.starts_with("1.2.840.10008.5.1.4.1.1.")
                || (!uid.starts_with("1.2.840.10008.") && is_uid(uid))
        }
    }
}

/// A UID as PS3.5 9.1 has it: at most 64 characters, digit components
/// separated by dots.
fn is_uid(s: &str) -> bool {
    s.len() <= 64
        && s.split('.')
            .all(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_digit()))
}

/// Decodes a C-FIND, C-MOVE or C-GET identifier as the SCP does and
/// plans its query, without a catalog: the query level, or the failure
/// status and comment the SCP would answer with. The `dicom_ingest` fuzz
/// target drives the identifier parsing through it.
pub fn plan_identifier(
    identifier: &[u8],
    ts_uid: &str,
    patient_root: bool,
) -> Result<fulcrum_catalog::dicom::Level, (u16, String)> {
    let model = if patient_root {
        Model::PatientRoot
    } else {
        Model::StudyRoot
    };
    find::parse_identifier(identifier, ts_uid)
        .and_then(|o| find::plan(&o, model))
        .map(|p| p.level)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_parse() {
        let n: Node = "PACS@10.0.0.5:104".parse().expect("valid");
        assert_eq!(n.ae_title, "PACS");
        assert_eq!(n.addr, "10.0.0.5:104");
        assert_eq!(n.to_string(), "PACS@10.0.0.5:104");
        let v6: Node = "A@[::1]:11112".parse().expect("ipv6");
        assert_eq!(
            (v6.addr.as_str(), v6.host(), v6.tls),
            ("[::1]:11112", "::1", false)
        );
        let tls: Node = "PARTNER@pacs.example:2762/tls".parse().expect("tls");
        assert_eq!((tls.host(), tls.tls), ("pacs.example", true));
        assert_eq!(tls.to_string(), "PARTNER@pacs.example:2762/tls");
        for bad in [
            "",
            "PACS",
            "@h:1",
            "PACS@host",
            "PACS@:104",
            "PACS@h:0",
            "PACS@h:x",
            "THIS-TITLE-IS-TOO-LONG@h:1",
        ] {
            assert!(bad.parse::<Node>().is_err(), "{bad}");
        }
    }

    #[test]
    fn storage_classes_are_recognised() {
        assert!(is_storage(uids::CT_IMAGE_STORAGE));
        assert!(is_storage(uids::ENHANCED_SR_STORAGE));
        assert!(is_storage(
            uids::DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION
        ));
        assert!(is_storage(uids::RT_BEAMS_DELIVERY_INSTRUCTION_STORAGE));
        assert!(is_storage("1.2.840.10008.5.1.4.1.1.9999.1"));
        assert!(!is_storage(uids::VERIFICATION));
        assert!(!is_storage(uids::STORAGE_COMMITMENT_PUSH_MODEL));
        assert!(!is_storage(uids::MEDIA_STORAGE_DIRECTORY_STORAGE));
        assert!(!is_storage(
            uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_FIND
        ));
        assert!(!is_storage("1.2.840.10008.5.1.4.1.1.200.4"));
        // Private SOP classes (Siemens CSA Non-Image) are stored like others.
        assert!(is_storage("1.3.12.2.1107.5.9.1"));
        assert!(!is_storage("") && !is_storage("not a uid") && !is_storage("1..2"));
        // Other standard services are not.
        assert!(!is_storage("1.2.840.10008.3.1.2.3.3"));
    }
}
