//! The DIMSE services end to end over real sockets: `serve` on an engine in
//! a temporary directory, driven by a dicom-ul client (echo, store, find,
//! move to a second in-process SCP, get with role selection, bad input,
//! AE vetting, an association dropped mid-data set).

use std::time::Duration;

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use dicom_ul::association::AsyncClientAssociation;
use dicom_ul::pdu::{PDataValue, PDataValueType, Pdu, PresentationContextResultReason};
use dicom_ul::ClientAssociationOptions;
use fulcrum_dicom::dimse::command::{self as cmd, CommandSet};
use fulcrum_dicom::dimse::{self, DimseConfig, Node};
use fulcrum_dicom::{Archive, ArchiveConfig};
use fulcrum_engine::{Engine, EngineConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const T: &str = "default";
const CT: &str = uids::CT_IMAGE_STORAGE;
const EXPLICIT: &str = uids::EXPLICIT_VR_LITTLE_ENDIAN;
const IMPLICIT: &str = uids::IMPLICIT_VR_LITTLE_ENDIAN;
const FIND: &str = uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_FIND;
const MOVE: &str = uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_MOVE;
const GET: &str = uids::STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_GET;
const STUDY: &str = "1.2.826.0.1.3680043.10.1470.99.1";
const SERIES: &str = "1.2.826.0.1.3680043.10.1470.99.1.1";

struct Server {
    archive: Archive,
    addr: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start(ae: &str, nodes: Vec<Node>, allowed: Option<Vec<String>>) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = EngineConfig::local(dir.path());
        let engine = Engine::open(cfg).await.expect("engine opens");
        let archive = Archive::new(engine, ArchiveConfig::default());
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let cfg = DimseConfig {
            ae_title: ae.into(),
            nodes,
            allowed_aets: allowed,
            idle_timeout: Duration::from_secs(20),
            ..DimseConfig::default()
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(dimse::serve(listener, archive.clone(), cfg, async {
            let _ = stopped.await;
        }));
        Server {
            archive,
            addr,
            stop: Some(stop),
            task,
            _dir: dir,
        }
    }

    async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let r = tokio::time::timeout(Duration::from_secs(15), &mut self.task).await;
        assert!(matches!(r, Ok(Ok(Ok(())))), "serve ends cleanly: {r:?}");
    }
}

/// A small CT instance's data set in `ts`.
fn instance(sop: &str, number: i32, ts: &str) -> Vec<u8> {
    let el = |t, vr, v: PrimitiveValue| DataElement::new(t, vr, v);
    let obj = InMemDicomObject::from_element_iter([
        el(tags::SOP_CLASS_UID, VR::UI, CT.into()),
        el(tags::SOP_INSTANCE_UID, VR::UI, sop.into()),
        el(tags::STUDY_DATE, VR::DA, "20240102".into()),
        el(tags::MODALITY, VR::CS, "CT".into()),
        el(tags::PATIENT_NAME, VR::PN, "Doe^Jane".into()),
        el(tags::PATIENT_ID, VR::LO, "P-1".into()),
        el(tags::STUDY_INSTANCE_UID, VR::UI, STUDY.into()),
        el(tags::SERIES_INSTANCE_UID, VR::UI, SERIES.into()),
        el(tags::SERIES_NUMBER, VR::IS, "1".into()),
        el(tags::INSTANCE_NUMBER, VR::IS, number.to_string().into()),
        el(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(1_u16)),
        el(
            tags::PHOTOMETRIC_INTERPRETATION,
            VR::CS,
            "MONOCHROME2".into(),
        ),
        el(tags::ROWS, VR::US, PrimitiveValue::from(2_u16)),
        el(tags::COLUMNS, VR::US, PrimitiveValue::from(2_u16)),
        el(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(16_u16)),
        el(tags::BITS_STORED, VR::US, PrimitiveValue::from(12_u16)),
        el(tags::HIGH_BIT, VR::US, PrimitiveValue::from(11_u16)),
        el(
            tags::PIXEL_REPRESENTATION,
            VR::US,
            PrimitiveValue::from(0_u16),
        ),
        el(
            tags::PIXEL_DATA,
            VR::OW,
            PrimitiveValue::U16(vec![1, 2, 3, number as u16].into()),
        ),
    ]);
    let mut out = Vec::new();
    let ts = TransferSyntaxRegistry.get(ts).expect("known syntax");
    obj.write_dataset_with_ts(&mut out, ts).expect("encodes");
    out
}

fn identifier(level: &str, keys: &[(dicom_core::Tag, VR, &str)]) -> Vec<u8> {
    let mut o = InMemDicomObject::new_empty();
    o.put(DataElement::new(
        tags::QUERY_RETRIEVE_LEVEL,
        VR::CS,
        PrimitiveValue::from(level),
    ));
    for (t, vr, v) in keys {
        o.put(DataElement::new(*t, *vr, PrimitiveValue::from(*v)));
    }
    let mut out = Vec::new();
    let ts = TransferSyntaxRegistry.get(EXPLICIT).expect("explicit LE");
    o.write_dataset_with_ts(&mut out, ts).expect("encodes");
    out
}

type Assoc = AsyncClientAssociation<TcpStream>;

async fn connect(
    calling: &str,
    called: &str,
    addr: &str,
    contexts: &[(&str, &[&str])],
    scp_roles: &[&str],
) -> Result<Assoc, dicom_ul::association::Error> {
    let mut o = ClientAssociationOptions::new()
        .calling_ae_title(calling.to_string())
        .called_ae_title(called.to_string())
        .read_timeout(Duration::from_secs(20));
    for (a, ts) in contexts {
        o = o.with_presentation_context(a.to_string(), ts.iter().map(|s| s.to_string()).collect());
    }
    for a in scp_roles {
        o = o.with_role_selection(a.to_string(), false, true);
    }
    o.establish_async(addr).await
}

fn pc(a: &Assoc, abstract_syntax: &str, ts: &str) -> u8 {
    a.presentation_contexts()
        .iter()
        .find(|c| {
            c.abstract_syntax == abstract_syntax
                && c.transfer_syntax == ts
                && c.reason == PresentationContextResultReason::Acceptance
        })
        .map(|c| c.id)
        .expect("context accepted")
}

fn pdv(pc: u8, kind: PDataValueType, last: bool, data: Vec<u8>) -> PDataValue {
    PDataValue {
        presentation_context_id: pc,
        value_type: kind,
        is_last: last,
        data,
    }
}

async fn send(a: &mut Assoc, pc: u8, c: &CommandSet, data: Option<Vec<u8>>) {
    let mut pdvs = vec![pdv(
        pc,
        PDataValueType::Command,
        true,
        c.encode().expect("encodes"),
    )];
    if let Some(d) = data {
        pdvs.push(pdv(pc, PDataValueType::Data, true, d));
    }
    a.send(&Pdu::PData { data: pdvs }).await.expect("sent");
}

/// Receives one whole message (command and data set).
async fn recv(a: &mut Assoc) -> (CommandSet, Option<Vec<u8>>) {
    let (mut c, mut d) = (Vec::new(), Vec::new());
    let mut command: Option<CommandSet> = None;
    loop {
        let Pdu::PData { data } = a.receive().await.expect("a PDU") else {
            panic!("expected P-DATA");
        };
        for v in data {
            match v.value_type {
                PDataValueType::Command => {
                    c.extend_from_slice(&v.data);
                    if v.is_last {
                        command = Some(CommandSet::decode(&c).expect("decodes"));
                    }
                }
                PDataValueType::Data => {
                    d.extend_from_slice(&v.data);
                    if v.is_last {
                        return (command.expect("command first"), Some(d));
                    }
                }
            }
        }
        if let Some(cmd) = &command {
            if !cmd.has_dataset {
                return (cmd.clone(), None);
            }
        }
    }
}

fn rq(field: u16, id: u16, class: &str) -> CommandSet {
    CommandSet {
        field,
        message_id: id,
        sop_class: class.into(),
        has_dataset: field != cmd::C_ECHO_RQ,
        ..Default::default()
    }
}

fn store_rq(id: u16, sop: &str) -> CommandSet {
    CommandSet {
        sop_instance: sop.into(),
        ..rq(cmd::C_STORE_RQ, id, CT)
    }
}

fn text(ds: &[u8], tag: dicom_core::Tag) -> String {
    let ts = TransferSyntaxRegistry.get(EXPLICIT).expect("explicit LE");
    let o = InMemDicomObject::read_dataset_with_ts(ds, ts).expect("identifier parses");
    o.element(tag)
        .ok()
        .and_then(|e| e.to_str().ok())
        .map(|s| s.to_string())
        .unwrap_or_default()
}

async fn stored(archive: &Archive, sop: &str) -> Option<Vec<u8>> {
    let rec = archive.instance(T, sop).await.expect("lookup")?;
    let b = archive
        .read_bytes(T, &rec, rec.dataset_offset as u64, rec.size as u64)
        .await
        .expect("read");
    Some(b.to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_find_move_get_over_real_associations() {
    let dest = Server::start("DEST", vec![], None).await;
    let node: Node = format!("DEST@{}", dest.addr).parse().expect("node");
    let srv = Server::start("FULCRUM", vec![node], None).await;
    let mut a = connect(
        "TESTSCU",
        "FULCRUM",
        &srv.addr,
        &[
            (uids::VERIFICATION, &[IMPLICIT]),
            (CT, &[EXPLICIT]),
            (CT, &[IMPLICIT]),
            (uids::MODALITY_WORKLIST_INFORMATION_MODEL_FIND, &[EXPLICIT]),
            (FIND, &[EXPLICIT]),
            (MOVE, &[EXPLICIT]),
        ],
        &[],
    )
    .await
    .expect("association accepted");
    let (echo, ct_e, ct_i) = (
        pc(&a, uids::VERIFICATION, IMPLICIT),
        pc(&a, CT, EXPLICIT),
        pc(&a, CT, IMPLICIT),
    );

    // C-ECHO answers the request's message id.
    send(
        &mut a,
        echo,
        &rq(cmd::C_ECHO_RQ, 11, uids::VERIFICATION),
        None,
    )
    .await;
    let (rsp, _) = recv(&mut a).await;
    assert_eq!(
        (rsp.field, rsp.responding_to, rsp.status),
        (cmd::C_ECHO_RSP, 11, 0)
    );

    // C-STORE in two syntaxes, byte-exact.
    let (sop1, sop2) = (
        "1.2.826.0.1.3680043.10.1470.99.1.1.1",
        "1.2.826.0.1.3680043.10.1470.99.1.1.2",
    );
    let (ds1, ds2) = (instance(sop1, 1, EXPLICIT), instance(sop2, 2, IMPLICIT));
    send(&mut a, ct_e, &store_rq(1, sop1), Some(ds1.clone())).await;
    let (rsp, _) = recv(&mut a).await;
    assert_eq!(
        (
            rsp.field,
            rsp.responding_to,
            rsp.status,
            rsp.sop_instance.as_str()
        ),
        (cmd::C_STORE_RSP, 1, 0, sop1)
    );
    send(&mut a, ct_i, &store_rq(2, sop2), Some(ds2.clone())).await;
    assert_eq!(recv(&mut a).await.0.status, 0);
    assert_eq!(stored(&srv.archive, sop1).await, Some(ds1.clone()));
    assert_eq!(stored(&srv.archive, sop2).await, Some(ds2.clone()));

    // Bad input: a non-storage class, then a malformed data set; the
    // association goes on.
    let accepted = |a: &Assoc, s: &str| {
        a.presentation_contexts().iter().any(|c| {
            c.abstract_syntax == s && c.reason == PresentationContextResultReason::Acceptance
        })
    };
    assert!(
        !accepted(&a, uids::MODALITY_WORKLIST_INFORMATION_MODEL_FIND),
        "a SOP class we do not serve"
    );
    send(&mut a, echo, &store_rq(3, "1.2.3.4"), Some(ds1.clone())).await;
    assert_eq!(recv(&mut a).await.0.status, 0x0122);
    send(
        &mut a,
        ct_e,
        &store_rq(4, "1.2.3.5"),
        Some(b"definitely not DICOM".to_vec()),
    )
    .await;
    let rsp = recv(&mut a).await.0;
    assert!(
        rsp.status >= 0xA000,
        "failure status, got {:#06x}",
        rsp.status
    );
    assert!(srv
        .archive
        .instance(T, "1.2.3.5")
        .await
        .expect("lookup")
        .is_none());

    // C-FIND: keys with values match, empty keys come back.
    let find = pc(&a, FIND, EXPLICIT);
    let ident = identifier(
        "STUDY",
        &[
            (tags::PATIENT_NAME, VR::PN, "DOE*"),
            (tags::STUDY_INSTANCE_UID, VR::UI, ""),
            (tags::ACCESSION_NUMBER, VR::SH, ""),
        ],
    );
    send(&mut a, find, &rq(cmd::C_FIND_RQ, 5, FIND), Some(ident)).await;
    let (rsp, ds) = recv(&mut a).await;
    assert_eq!(rsp.status, 0xFF00);
    let ds = ds.expect("identifier");
    assert_eq!(text(&ds, tags::STUDY_INSTANCE_UID), STUDY);
    assert_eq!(text(&ds, tags::RETRIEVE_AE_TITLE), "FULCRUM");
    assert_eq!(text(&ds, tags::QUERY_RETRIEVE_LEVEL), "STUDY");
    assert_eq!(recv(&mut a).await.0.status, 0);
    let ident = identifier(
        "IMAGE",
        &[
            (tags::STUDY_INSTANCE_UID, VR::UI, STUDY),
            (tags::SOP_INSTANCE_UID, VR::UI, ""),
        ],
    );
    send(&mut a, find, &rq(cmd::C_FIND_RQ, 6, FIND), Some(ident)).await;
    let mut sops = Vec::new();
    loop {
        let (rsp, ds) = recv(&mut a).await;
        if rsp.status != 0xFF00 {
            assert_eq!(rsp.status, 0);
            break;
        }
        sops.push(text(&ds.expect("identifier"), tags::SOP_INSTANCE_UID));
    }
    assert_eq!(sops, vec![sop1, sop2]);
    send(
        &mut a,
        find,
        &rq(cmd::C_FIND_RQ, 7, FIND),
        Some(identifier("PATIENT", &[])),
    )
    .await;
    assert_eq!(recv(&mut a).await.0.status, 0xA900);

    // C-MOVE to the known destination; an unknown one is refused.
    let mv = pc(&a, MOVE, EXPLICIT);
    let ident = identifier("STUDY", &[(tags::STUDY_INSTANCE_UID, VR::UI, STUDY)]);
    let mut c = rq(cmd::C_MOVE_RQ, 8, MOVE);
    c.move_destination = "NOWHERE".into();
    send(&mut a, mv, &c, Some(ident.clone())).await;
    assert_eq!(recv(&mut a).await.0.status, 0xA801);
    c.move_destination = "DEST".into();
    send(&mut a, mv, &c, Some(ident)).await;
    let last = loop {
        let (rsp, _) = recv(&mut a).await;
        if rsp.status != 0xFF00 {
            break rsp;
        }
    };
    assert_eq!(last.status, 0, "{last:?}");
    assert_eq!(last.sub_ops.map(|s| (s.completed, s.failed)), Some((2, 0)));
    assert_eq!(stored(&dest.archive, sop1).await, Some(ds1.clone()));
    assert_eq!(stored(&dest.archive, sop2).await, Some(ds2.clone()));
    a.release().await.expect("released");

    // C-GET with the SCP role for CT, explicit LE only: the implicit LE
    // instance has to be re-encoded (same content).
    let mut g = connect(
        "TESTSCU",
        "FULCRUM",
        &srv.addr,
        &[(GET, &[EXPLICIT]), (CT, &[EXPLICIT])],
        &[CT],
    )
    .await
    .expect("association accepted");
    let (get, ct) = (pc(&g, GET, EXPLICIT), pc(&g, CT, EXPLICIT));
    let ident = identifier(
        "SERIES",
        &[
            (tags::STUDY_INSTANCE_UID, VR::UI, STUDY),
            (tags::SERIES_INSTANCE_UID, VR::UI, SERIES),
        ],
    );
    send(&mut g, get, &rq(cmd::C_GET_RQ, 9, GET), Some(ident)).await;
    let mut got = Vec::new();
    let last = loop {
        let (c, ds) = recv(&mut g).await;
        match c.field {
            cmd::C_STORE_RQ => {
                got.push((c.sop_instance.clone(), ds.expect("data set")));
                let mut r = c.response(0);
                r.sop_class = CT.into();
                send(&mut g, ct, &r, None).await;
            }
            cmd::C_GET_RSP if c.status == 0xFF00 => {}
            _ => break c,
        }
    };
    assert_eq!((last.field, last.status), (cmd::C_GET_RSP, 0), "{last:?}");
    assert_eq!(last.sub_ops.map(|s| (s.completed, s.failed)), Some((2, 0)));
    assert_eq!(got.len(), 2);
    assert_eq!(got[0], (sop1.to_string(), ds1));
    let parse = |b: &[u8], ts| {
        InMemDicomObject::read_dataset_with_ts(b, TransferSyntaxRegistry.get(ts).expect("ts"))
            .expect("parses")
    };
    assert_eq!(got[1].0, sop2);
    assert_eq!(parse(&got[1].1, EXPLICIT), parse(&ds2, IMPLICIT));
    g.release().await.expect("released");

    srv.shutdown().await;
    dest.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn associations_are_vetted_and_half_sent_instances_never_stored() {
    let srv = Server::start("FULCRUM", vec![], Some(vec!["GOOD".into()])).await;
    let ctx: &[(&str, &[&str])] = &[(CT, &[EXPLICIT])];
    assert!(
        connect("BAD", "FULCRUM", &srv.addr, ctx, &[])
            .await
            .is_err(),
        "calling AE not allowed"
    );
    assert!(
        connect("GOOD", "OTHER", &srv.addr, ctx, &[]).await.is_err(),
        "called AE is not ours"
    );

    let sop = "1.2.826.0.1.3680043.10.1470.99.2";
    let ds = instance(sop, 1, EXPLICIT);
    let mut a = connect("GOOD", "FULCRUM", &srv.addr, ctx, &[])
        .await
        .expect("allowed");
    let p = pc(&a, CT, EXPLICIT);
    let pdvs = vec![
        pdv(
            p,
            PDataValueType::Command,
            true,
            store_rq(1, sop).encode().expect("encodes"),
        ),
        pdv(p, PDataValueType::Data, false, ds[..ds.len() / 2].to_vec()),
    ];
    a.send(&Pdu::PData { data: pdvs }).await.expect("sent");
    a.abort().await.expect("aborted");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(srv
        .archive
        .instance(T, sop)
        .await
        .expect("lookup")
        .is_none());

    // The same instance in full, over a new association, is stored.
    let mut a = connect("GOOD", "FULCRUM", &srv.addr, ctx, &[])
        .await
        .expect("allowed");
    let p = pc(&a, CT, EXPLICIT);
    send(&mut a, p, &store_rq(1, sop), Some(ds.clone())).await;
    assert_eq!(recv(&mut a).await.0.status, 0);
    a.release().await.expect("released");
    assert_eq!(stored(&srv.archive, sop).await, Some(ds));

    // `send` as the CLI uses it, back into the same archive's twin.
    let twin = Server::start("TWIN", vec![], None).await;
    let rec = srv
        .archive
        .instance(T, sop)
        .await
        .expect("lookup")
        .expect("stored");
    let node: Node = format!("TWIN@{}", twin.addr).parse().expect("node");
    let mut seen = Vec::new();
    let report = dimse::send(&srv.archive, T, &[rec], "FULCRUM", &node, None, |r, s| {
        seen.push((r.sop_uid.clone(), s))
    })
    .await
    .expect("sent");
    assert_eq!((report.completed, report.failed), (1, 0));
    assert_eq!(seen, vec![(sop.to_string(), Ok(0))]);
    assert_eq!(
        stored(&twin.archive, sop).await,
        stored(&srv.archive, sop).await
    );

    twin.shutdown().await;
    srv.shutdown().await;
}
