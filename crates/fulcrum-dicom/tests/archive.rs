//! The archive's behaviour suite, on every target (fs + SQLite; S3 +
//! PostgreSQL under scripts/test.sh): byte-exact store and read, the index
//! answering each kind of match identically, DICOM-aware dedup of an
//! edited header, the duplicate policies, refusal of truncated and
//! malformed input with nothing indexed, and deletion.

#[path = "../../fulcrum-engine/tests/common/mod.rs"]
mod common;

use common::{noise, targets};
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use fulcrum_dicom::{
    Archive, ArchiveConfig, Column, DicomError, DicomQuery, DuplicatePolicy, Level, Matcher,
    Outcome, Scope, StoreContext,
};

const T: &str = "default";

/// One generated instance's identity.
#[derive(Clone)]
struct Inst {
    patient: (&'static str, &'static str),
    study: String,
    series: String,
    sop: String,
    date: &'static str,
    modality: &'static str,
    accession: &'static str,
    number: i32,
}

/// A Part 10 file: explicit VR LE, 64×64 16-bit noise as native Pixel Data.
fn part10(i: &Inst, seed: u64) -> Vec<u8> {
    part10_of_class(i, seed, CT_IMAGE)
}

const CT_IMAGE: &str = "1.2.840.10008.5.1.4.1.1.2";

fn part10_of_class(i: &Inst, seed: u64, class: &str) -> Vec<u8> {
    part10_with(i, seed, class, &[])
}

/// A Part 10 file of `class` with `extra` text elements besides.
fn part10_with(i: &Inst, seed: u64, class: &str, extra: &[(Tag, VR, &str)]) -> Vec<u8> {
    let mut o = InMemDicomObject::new_empty();
    let mut put = |tag, vr, v: &str| o.put(DataElement::new(tag, vr, PrimitiveValue::from(v)));
    for (tag, vr, v) in extra {
        put(*tag, *vr, v);
    }
    put(tags::SOP_CLASS_UID, VR::UI, class);
    put(tags::SOP_INSTANCE_UID, VR::UI, &i.sop);
    put(tags::STUDY_DATE, VR::DA, i.date);
    put(tags::STUDY_TIME, VR::TM, "101500");
    put(tags::ACCESSION_NUMBER, VR::SH, i.accession);
    put(tags::MODALITY, VR::CS, i.modality);
    put(tags::REFERRING_PHYSICIAN_NAME, VR::PN, "House^Gregory");
    put(tags::STUDY_DESCRIPTION, VR::LO, "CHEST");
    if !i.patient.0.is_ascii() {
        put(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192");
    }
    put(tags::PATIENT_NAME, VR::PN, i.patient.0);
    put(tags::PATIENT_ID, VR::LO, i.patient.1);
    put(tags::PATIENT_BIRTH_DATE, VR::DA, "19700101");
    put(tags::PATIENT_SEX, VR::CS, "F");
    put(tags::STUDY_INSTANCE_UID, VR::UI, &i.study);
    put(tags::SERIES_INSTANCE_UID, VR::UI, &i.series);
    put(tags::STUDY_ID, VR::SH, "1");
    put(tags::SERIES_NUMBER, VR::IS, "1");
    put(tags::INSTANCE_NUMBER, VR::IS, &i.number.to_string());
    o.put(DataElement::new(
        tags::ROWS,
        VR::US,
        PrimitiveValue::from(64u16),
    ));
    o.put(DataElement::new(
        tags::COLUMNS,
        VR::US,
        PrimitiveValue::from(64u16),
    ));
    o.put(DataElement::new(
        tags::BITS_ALLOCATED,
        VR::US,
        PrimitiveValue::from(16u16),
    ));
    o.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::from(noise(64 * 64 * 2, seed)),
    ));
    let meta = FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(class)
        .media_storage_sop_instance_uid(i.sop.as_str())
        .transfer_syntax("1.2.840.10008.1.2.1");
    let file = o.with_meta(meta).expect("meta");
    let mut out = Vec::new();
    file.write_all(&mut out).expect("write");
    out
}

fn corpus() -> Vec<Inst> {
    let mut v = Vec::new();
    let patients = [("Doe^Jane", "P1"), ("DOE^JOHN", "P2"), ("Smith^Anna", "P3")];
    for (p, patient) in patients.iter().enumerate() {
        for s in 0..2 {
            let study = format!("1.2.3.{p}.{s}");
            for (r, modality) in ["CT", "SR"].iter().enumerate() {
                for n in 0..2 {
                    v.push(Inst {
                        patient: *patient,
                        study: study.clone(),
                        series: format!("{study}.{r}"),
                        sop: format!("{study}.{r}.{n}"),
                        date: if s == 0 { "20200115" } else { "20210620" },
                        modality,
                        accession: if s == 0 { "ACC-A" } else { "ACC-B" },
                        number: n + 1,
                    });
                }
            }
        }
    }
    v
}

/// An instance alone in study `uid`, series `uid.1`, as `uid.1.1`.
fn alone(uid: &str, patient: (&'static str, &'static str)) -> Inst {
    Inst {
        patient,
        study: uid.to_string(),
        series: format!("{uid}.1"),
        sop: format!("{uid}.1.1"),
        date: "20200115",
        modality: "CT",
        accession: "A",
        number: 1,
    }
}

/// An instance's record and its stored bytes, read back whole.
async fn read_back(a: &Archive, sop: &str) -> (fulcrum_dicom::InstanceRecord, bytes::Bytes) {
    let rec = a.instance(T, sop).await.expect("lookup").expect("indexed");
    let got = a
        .read_bytes(T, &rec, 0, rec.size as u64)
        .await
        .expect("read");
    (rec, got)
}

async fn store(a: &Archive, bytes: &[u8]) -> Result<Outcome, DicomError> {
    Ok(a.store_file(T, bytes, &StoreContext::default())
        .await?
        .outcome)
}

/// A query of every match (no paging).
fn all(level: Level, filters: Vec<(Column, Matcher)>) -> DicomQuery {
    DicomQuery {
        tenant: T.into(),
        level,
        filters,
        limit: None,
        offset: 0,
    }
}

async fn uids(a: &Archive, level: Level, filters: Vec<(Column, Matcher)>) -> Vec<String> {
    let q = all(level, filters);
    let mut out: Vec<String> = a
        .query(&q)
        .await
        .expect("query")
        .into_iter()
        .map(|m| match level {
            Level::Patient => m.study.patient_id.unwrap_or_default(),
            Level::Study => m.study.study_uid,
            Level::Series => m.series.map(|s| s.series_uid).unwrap_or_default(),
            Level::Instance => m.instance.map(|i| i.sop_uid).unwrap_or_default(),
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn store_index_query_and_delete() {
    for t in targets().await {
        let a = Archive::new(t.open().await, ArchiveConfig::default());
        let corpus = corpus();
        for (n, i) in corpus.iter().enumerate() {
            let f = part10(i, n as u64);
            assert_eq!(store(&a, &f).await.expect("store"), Outcome::Stored);
            // Byte-exact read back.
            let (rec, got) = read_back(&a, &i.sop).await;
            assert_eq!(&got[..], &f[..], "{}", t.name);
            assert_eq!(rec.pixel_len, Some(64 * 64 * 2));
            let px = rec.pixel_offset.expect("native pixel offset") as usize;
            assert_eq!(&f[px..px + 16], &noise(64 * 64 * 2, n as u64)[..16]);
        }
        let ex = |v: &str| Matcher::Exact(v.into());
        // Every matching kind, at each level.
        assert_eq!(uids(&a, Level::Study, vec![]).await.len(), 6);
        assert_eq!(
            uids(&a, Level::Study, vec![(Column::PatientId, ex("P2"))]).await,
            ["1.2.3.1.0", "1.2.3.1.1"]
        );
        assert_eq!(
            uids(
                &a,
                Level::Study,
                vec![(Column::PatientName, Matcher::Wildcard("doe*".into()))]
            )
            .await
            .len(),
            4,
            "{}: wildcard names are case-insensitive",
            t.name
        );
        assert_eq!(
            uids(
                &a,
                Level::Study,
                vec![(Column::PatientName, Matcher::Fuzzy("jan".into()))]
            )
            .await,
            ["1.2.3.0.0", "1.2.3.0.1"]
        );
        assert_eq!(
            uids(
                &a,
                Level::Study,
                vec![(Column::PatientName, ex("doe^john"))]
            )
            .await
            .len(),
            2
        );
        assert_eq!(
            uids(
                &a,
                Level::Study,
                vec![(
                    Column::StudyDate,
                    Matcher::Range(Some("20210101".into()), None)
                )]
            )
            .await
            .len(),
            3
        );
        assert_eq!(
            uids(
                &a,
                Level::Study,
                vec![(
                    Column::StudyTime,
                    Matcher::Range(Some("1000".into()), Some("1015".into()))
                )]
            )
            .await
            .len(),
            6,
            "an upper time bound admits its own seconds"
        );
        assert_eq!(
            uids(
                &a,
                Level::Study,
                vec![
                    (Column::AccessionNumber, ex("ACC-A")),
                    (Column::ModalitiesInStudy, ex("SR"))
                ]
            )
            .await
            .len(),
            3
        );
        assert_eq!(
            uids(
                &a,
                Level::Study,
                vec![(
                    Column::StudyUid,
                    Matcher::List(vec!["1.2.3.0.0".into(), "1.2.3.2.1".into()])
                )]
            )
            .await,
            ["1.2.3.0.0", "1.2.3.2.1"]
        );
        assert_eq!(
            uids(
                &a,
                Level::Series,
                vec![
                    (Column::StudyUid, ex("1.2.3.0.0")),
                    (Column::Modality, ex("CT"))
                ]
            )
            .await,
            ["1.2.3.0.0.0"]
        );
        assert_eq!(
            uids(
                &a,
                Level::Instance,
                vec![
                    (Column::SeriesUid, ex("1.2.3.0.0.0")),
                    (Column::InstanceNumber, ex("2"))
                ]
            )
            .await,
            ["1.2.3.0.0.0.1"]
        );
        assert_eq!(uids(&a, Level::Patient, vec![]).await, ["P1", "P2", "P3"]);
        // Counts and modalities.
        let q = DicomQuery {
            tenant: T.into(),
            level: Level::Study,
            filters: vec![(Column::StudyUid, ex("1.2.3.0.0"))],
            limit: None,
            offset: 0,
        };
        let m = &a.query(&q).await.expect("query")[0];
        assert_eq!((m.series_count, m.instances), (Some(2), Some(4)));
        assert_eq!(m.modalities, ["CT", "SR"]);
        let counts = |level, filters: Vec<(Column, Matcher)>| {
            let q = all(level, filters);
            let a = &a;
            async move {
                let m = a.query(&q).await.expect("query").remove(0);
                (m.studies, m.series_count, m.instances, m.modalities)
            }
        };
        assert_eq!(
            counts(Level::Patient, vec![(Column::PatientId, ex("P1"))]).await,
            (Some(2), Some(4), Some(8), vec!["CT".into(), "SR".into()])
        );
        assert_eq!(
            counts(Level::Series, vec![(Column::SeriesUid, ex("1.2.3.0.0.1"))]).await,
            (None, None, Some(2), vec![])
        );
        // Paging is stable.
        let page = |offset| DicomQuery {
            tenant: T.into(),
            level: Level::Instance,
            filters: vec![],
            limit: Some(5),
            offset,
        };
        let mut seen = Vec::new();
        for off in [0, 5, 10, 15, 20] {
            for m in a.query(&page(off)).await.expect("page") {
                seen.push(m.instance.expect("instance").sop_uid);
            }
        }
        // Every instance exactly once across the pages (dedup() alone only
        // drops neighbours and would miss a repeat on another page).
        assert_eq!(seen.len(), 24, "{}", t.name);
        let distinct: std::collections::HashSet<&String> = seen.iter().collect();
        assert_eq!(
            distinct.len(),
            24,
            "{}: a page repeated an instance",
            t.name
        );
        // Delete a series, then the rest of its study.
        let n = a
            .delete(
                T,
                &Scope::Series("1.2.3.0.0".into(), "1.2.3.0.0.1".into()),
                false,
            )
            .await
            .expect("delete series");
        assert_eq!(n, 2);
        let study = |uid: &str| vec![(Column::StudyUid, ex(uid))];
        assert_eq!(
            counts(Level::Study, study("1.2.3.0.0")).await,
            (None, Some(1), Some(2), vec!["CT".into()])
        );
        // An instance re-sent under another study moves, and both studies' counts follow.
        let moved = Inst {
            study: "1.2.3.1.1".into(),
            series: "1.2.3.1.1.0".into(),
            sop: "1.2.3.1.0.0.0".into(),
            ..corpus[0].clone()
        };
        store(&a, &part10(&moved, 99)).await.expect("re-send");
        assert_eq!(counts(Level::Study, study("1.2.3.1.0")).await.2, Some(3));
        assert_eq!(counts(Level::Study, study("1.2.3.1.1")).await.2, Some(5));
        assert_eq!(
            a.delete(T, &Scope::Study("1.2.3.0.0".into()), false)
                .await
                .expect("delete"),
            2
        );
        assert_eq!(uids(&a, Level::Study, vec![]).await.len(), 5);
        assert!(a
            .instance(T, "1.2.3.0.0.0.0")
            .await
            .expect("lookup")
            .is_none());
        a.engine().close().await;
    }
}

#[tokio::test]
async fn duplicates_and_edited_headers() {
    for t in targets().await {
        let a = Archive::new(t.open().await, ArchiveConfig::default());
        let i = corpus().remove(0);
        // A large instance: its pixel data must be stored once only.
        let mut big = i.clone();
        big.sop = "9.9.9".into();
        let mut f = part10(&big, 7);
        let px_noise = noise(8 * 1024 * 1024, 11);
        // Swap in an 8 MiB pixel value by rebuilding with a larger image.
        f.truncate(f.len() - 64 * 64 * 2 - 12);
        let mut hdr = f.clone();
        hdr.extend_from_slice(&[0xE0, 0x7F, 0x10, 0x00, b'O', b'W', 0, 0]);
        hdr.extend_from_slice(&(px_noise.len() as u32).to_le_bytes());
        hdr.extend_from_slice(&px_noise);
        assert_eq!(store(&a, &hdr).await.expect("store"), Outcome::Stored);
        let before = a.engine().stats().await.expect("stats").physical_bytes;
        assert_eq!(
            store(&a, &hdr).await.expect("again"),
            Outcome::AlreadyStored
        );
        // Same instance, patient name corrected: only a new header is stored.
        let at = hdr
            .windows(8)
            .position(|w| w == b"Doe^Jane")
            .expect("name in header");
        let mut ed = hdr.clone();
        ed[at..at + 8].copy_from_slice(b"Doe^Joan");
        assert_ne!(ed, hdr);
        assert_eq!(store(&a, &ed).await.expect("edited"), Outcome::Replaced);
        let after = a.engine().stats().await.expect("stats").physical_bytes;
        assert!(
            ((after - before) as f64) < 0.02 * hdr.len() as f64,
            "{}: edited header added {} bytes",
            t.name,
            after - before
        );
        let (_, got) = read_back(&a, "9.9.9").await;
        assert_eq!(got, ed, "the newest version is served");
        // The previous version is kept.
        let kept = a
            .engine()
            .list_objects(T, fulcrum_dicom::DICOM_BUCKET, "versions/9.9.9/", "", 10)
            .await
            .expect("list");
        assert_eq!(kept.len(), 1, "{}", t.name);
        // Reject policy refuses different bytes, accepts identical ones.
        let strict = Archive::new(
            a.engine().clone(),
            ArchiveConfig {
                duplicates: DuplicatePolicy::Reject,
                ..ArchiveConfig::default()
            },
        );
        assert_eq!(
            store(&strict, &ed).await.expect("same"),
            Outcome::AlreadyStored
        );
        let err = store(&strict, &hdr).await.expect_err("different bytes");
        assert!(matches!(err, DicomError::Duplicate(_)), "{err}");
        assert_eq!(err.status(), 0x0111);
        // The same dataset under another file meta (received over DIMSE,
        // from two senders) is the instance already stored, under either
        // policy; the file first stored stays as it was.
        let (rec, _) = read_back(&a, "9.9.9").await;
        let dimse = |archive: &Archive, ae: &'static str, file: Vec<u8>| {
            let archive = archive.clone();
            let (ts, at) = (rec.transfer_syntax.clone(), rec.dataset_offset as usize);
            async move {
                let dataset = std::io::Cursor::new(file[at..].to_vec());
                archive
                    .store_dataset(T, CT_IMAGE, "9.9.9", &ts, ae, dataset)
                    .await
                    .map(|s| s.outcome)
            }
        };
        for (archive, ae) in [(&strict, "CT1"), (&a, "PACS2")] {
            assert_eq!(
                dimse(archive, ae, ed.clone()).await.expect("same dataset"),
                Outcome::AlreadyStored,
                "{}: from {ae}",
                t.name
            );
        }
        assert_eq!(read_back(&a, "9.9.9").await.1, ed);
        let err = dimse(&strict, "CT1", hdr.clone())
            .await
            .expect_err("other dataset");
        assert!(matches!(err, DicomError::Duplicate(_)), "{err}");
        // Received over DIMSE first, then imported from its file.
        assert_eq!(
            dimse(&a, "CT1", hdr.clone()).await.expect("replace"),
            Outcome::Replaced
        );
        assert_ne!(
            read_back(&a, "9.9.9").await.1,
            hdr,
            "stored with its own meta"
        );
        assert_eq!(
            store(&a, &hdr).await.expect("import"),
            Outcome::AlreadyStored
        );
        a.engine().close().await;
    }
}

#[tokio::test]
async fn a_c_store_whose_command_names_another_instance_is_refused() {
    // The file meta of a DIMSE instance is built from the C-STORE command;
    // a data set naming another instance or class was stored under it,
    // indexed by its own UID, and acknowledged: the sender then asked for
    // storage commitment of a UID the archive did not hold.
    for t in targets().await {
        let a = Archive::new(t.open().await, ArchiveConfig::default());
        let i = corpus().remove(0);
        let file = part10(&i, 3);
        let at = fulcrum_dicom::inspect_file(&file, ArchiveConfig::default().header_cap)
            .expect("inspect")
            .prelude
            .len;
        let send = |class: &str, sop: &str| {
            let (a, dataset) = (a.clone(), file[at..].to_vec());
            let (class, sop) = (class.to_string(), sop.to_string());
            async move {
                let dataset = std::io::Cursor::new(dataset);
                a.store_dataset(T, &class, &sop, "1.2.840.10008.1.2.1", "CT1", dataset)
                    .await
            }
        };
        const MR_IMAGE: &str = "1.2.840.10008.5.1.4.1.1.4";
        for (class, sop) in [(CT_IMAGE, "9.8.7"), (MR_IMAGE, i.sop.as_str())] {
            let err = send(class, sop).await.expect_err("mismatch");
            assert!(matches!(err, DicomError::Mismatch(_)), "{}: {err}", t.name);
            assert_eq!(err.status(), 0xA900);
        }
        assert!(a.instance(T, &i.sop).await.expect("lookup").is_none());
        assert!(a.instance(T, "9.8.7").await.expect("lookup").is_none());
        let stored = send(CT_IMAGE, &i.sop).await.expect("matching");
        assert_eq!(stored.outcome, Outcome::Stored);
        a.engine().close().await;
    }
}

/// The archive of target `t` reading at most `cap` header bytes ahead.
async fn capped(t: &common::Target, cap: usize) -> Archive {
    Archive::new(
        t.open().await,
        ArchiveConfig {
            header_cap: cap,
            ..ArchiveConfig::default()
        },
    )
}

/// `file` (from `part10`) with `extra` (elements of group 0009) inserted
/// where they sort: after the group 0008 elements, before PatientName.
fn with_group_9(file: &[u8], extra: &[u8]) -> Vec<u8> {
    let at = file
        .windows(4)
        .position(|w| w == [0x10, 0x00, 0x10, 0x00])
        .expect("PatientName");
    [&file[..at], extra, &file[at..]].concat()
}

/// An explicit VR LE element of group 0009 with a 4-byte length.
fn private_ob(element: u16, value: &[u8]) -> Vec<u8> {
    let mut v = vec![0x09, 0x00];
    v.extend_from_slice(&element.to_le_bytes());
    v.extend_from_slice(b"OB\0\0");
    v.extend_from_slice(&(value.len() as u32).to_le_bytes());
    v.extend_from_slice(value);
    v
}

/// `file` without its Study Instance UID element.
fn without_study_uid(file: &[u8]) -> Vec<u8> {
    let at = file
        .windows(6)
        .position(|w| w == [0x20, 0x00, 0x0D, 0x00, b'U', b'I'])
        .expect("Study Instance UID");
    let len = u16::from_le_bytes([file[at + 6], file[at + 7]]) as usize;
    [&file[..at], &file[at + 8 + len..]].concat()
}

#[tokio::test]
async fn index_attributes_behind_an_element_larger_than_the_cap_are_found() {
    // A 6 KiB private value in group 0009, before PatientName and Study
    // Instance UID, with a 4 KiB cap: the header is cut before it. The
    // instance was refused (first as having no Study Instance UID, then
    // as HeaderTooLarge); the small elements past the cut are now kept as
    // the rest streams, and the index is read from them.
    for t in targets().await {
        let cap = 4096;
        let a = capped(&t, cap).await;
        let i = corpus().remove(0);
        let mut big = private_ob(0x0010, b"TEST");
        big.extend_from_slice(&private_ob(0x1000, &noise(6 * 1024, 9)));
        let file = with_group_9(&part10(&i, 4), &big);
        for piece in [1000, 65536] {
            let src = Pieces { data: &file, piece };
            let o = a.store_file(T, src, &StoreContext::default()).await;
            let want = match piece {
                1000 => Outcome::Stored,
                _ => Outcome::AlreadyStored,
            };
            assert_eq!(o.expect("stored").outcome, want, "{}", t.name);
        }
        let (rec, got) = read_back(&a, &i.sop).await;
        assert_eq!(got, file);
        assert_eq!(
            (rec.study_uid.as_str(), rec.num_rows),
            (i.study.as_str(), Some(64))
        );
        let by_name = vec![(Column::PatientName, Matcher::Wildcard("doe^j*".into()))];
        assert!(
            uids(&a, Level::Instance, by_name).await.contains(&i.sop),
            "{}",
            t.name
        );
        let by_id = vec![(Column::PatientId, Matcher::Exact(i.patient.1.into()))];
        assert_eq!(uids(&a, Level::Study, by_id).await, vec![i.study.clone()]);

        // Absent, not hidden: what it is, 0xA900.
        let mut other = corpus().remove(1);
        other.sop = "1.2.3.9.9.9".into();
        let absent = with_group_9(&without_study_uid(&part10(&other, 5)), &big);
        let err = store(&a, &absent).await.expect_err("refused");
        assert!(
            matches!(err, DicomError::MissingAttribute(_)),
            "{}: {err}",
            t.name
        );
        assert_eq!(err.status(), 0xA900);

        // Small elements past the cut beyond what is kept (the cap): the
        // attribute may lie past them, 0xA700 says so.
        let mut many = big.clone();
        for k in 0..100u16 {
            many.extend_from_slice(&private_ob(0x2000 + k, &[b'x'; 100]));
        }
        let hidden = with_group_9(&part10(&other, 6), &many);
        let err = store(&a, &hidden).await.expect_err("refused");
        assert!(
            matches!(err, DicomError::HeaderTooLarge { .. }),
            "{}: {err}",
            t.name
        );
        assert_eq!(err.status(), 0xA700);
        assert!(a.instance(T, &other.sop).await.expect("lookup").is_none());
        // Under the default cap it stores.
        let roomy = Archive::new(a.engine().clone(), ArchiveConfig::default());
        assert_eq!(
            store(&roomy, &hidden).await.expect("stored"),
            Outcome::Stored
        );
        a.engine().close().await;
    }
}

/// Hands out `data` at most `piece` bytes per read, as a network peer does.
struct Pieces<'a> {
    data: &'a [u8],
    piece: usize,
}

impl tokio::io::AsyncRead for Pieces<'_> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let n = self.piece.min(self.data.len()).min(buf.remaining());
        let (head, rest) = self.data.split_at(n);
        buf.put_slice(head);
        self.data = rest;
        std::task::Poll::Ready(Ok(()))
    }
}

#[tokio::test]
async fn a_header_longer_than_the_cap_is_cut_in_one_place_however_it_arrives() {
    // 200 private elements of 100 bytes before Pixel Data, past a 4 KiB
    // cap: the header used to be cut at the latest element boundary read
    // so far, which depended on how much each read brought, and so did
    // the dataset's identity: a re-send became a new version.
    for t in targets().await {
        let cap = 4096;
        let a = capped(&t, cap).await;
        let i = corpus().remove(0);
        let file = part10(&i, 5);
        let pixel_at = file.len() - 64 * 64 * 2 - 12;
        let mut long = file[..pixel_at].to_vec();
        long.extend_from_slice(&[0x29, 0x00, 0x10, 0x00, b'L', b'O', 12, 0]);
        long.extend_from_slice(b"FULCRUM TEST");
        for k in 0..200u16 {
            let el = 0x1000 + k;
            long.extend_from_slice(&[0x29, 0x00, el as u8, (el >> 8) as u8, b'U', b'T', 0, 0]);
            long.extend_from_slice(&100u32.to_le_bytes());
            long.extend_from_slice(&[b'a' + (k % 26) as u8; 100]);
        }
        long.extend_from_slice(&file[pixel_at..]);
        assert!(long.len() > 4 * cap);
        let mut outcomes = Vec::new();
        for piece in [1000, 777, 4096, 65536] {
            let src = Pieces { data: &long, piece };
            let o = a.store_file(T, src, &StoreContext::default()).await;
            outcomes.push(o.expect("stored").outcome);
        }
        assert_eq!(
            outcomes,
            [
                Outcome::Stored,
                Outcome::AlreadyStored,
                Outcome::AlreadyStored,
                Outcome::AlreadyStored
            ],
            "{}",
            t.name
        );
        let (rec, got) = read_back(&a, &i.sop).await;
        assert_eq!(got, long);
        assert!(
            rec.header_len < (cap + 1024) as i64,
            "{}: header region {}",
            t.name,
            rec.header_len
        );
        a.engine().close().await;
    }
}

/// `file` (from `part10`) with its 64x64 pixel value replaced by `px`.
fn with_pixels(mut file: Vec<u8>, px: &[u8]) -> Vec<u8> {
    file.truncate(file.len() - 64 * 64 * 2 - 12);
    file.extend_from_slice(&[0xE0, 0x7F, 0x10, 0x00, b'O', b'W', 0, 0]);
    file.extend_from_slice(&(px.len() as u32).to_le_bytes());
    file.extend_from_slice(px);
    file
}

#[tokio::test]
async fn native_16_bit_pixels_are_compressed_as_byte_planes_and_read_back_exact() {
    // Three CT-like 512x512 slices of 16-bit samples: padding outside the
    // reconstruction circle, tissue and lung values with noise inside
    // (1.5 MiB: several chunks, cut at odd offsets too).
    let mut seed = 1u64;
    let px: Vec<u8> = (0..3 * 512 * 512usize)
        .flat_map(|i| {
            let (x, y) = ((i % 512) as i64 - 256, ((i / 512) % 512) as i64 - 256);
            let r2 = x * x + y * y;
            let v: i64 = if r2 > 240 * 240 {
                -2000
            } else {
                let mut noise = 0i64;
                for _ in 0..3 {
                    seed = seed
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    noise += ((seed >> 33) % 17) as i64 - 8;
                }
                let base = match r2 {
                    _ if r2 < 100 * 100 && x < 0 => -800,
                    _ if r2 < 200 * 200 => 40,
                    _ => -90,
                };
                1024 + base + noise
            };
            (v as i16).to_le_bytes()
        })
        .collect();
    // What the same bytes take when compressed as plain bytes at the level
    // the engine uses for pixel data.
    let codec = fulcrum_store::Codec::new(None, fulcrum_engine::DEFAULT_PIXEL_ZSTD_LEVEL);
    let plain: usize = fulcrum_store::ChunkParams::BULK
        .split(&px)
        .iter()
        .scan(0, |at, n| {
            let c = &px[*at..*at + n];
            *at += n;
            Some(
                codec
                    .encode(codec.id_of(c), bytes::Bytes::copy_from_slice(c))
                    .data
                    .len(),
            )
        })
        .sum();
    for t in targets().await {
        let a = Archive::new(t.open().await, ArchiveConfig::default());
        let mut i = corpus().remove(0);
        i.sop = "7.7.7".into();
        let file = with_pixels(part10(&i, 1), &px);
        let before = a.engine().stats().await.expect("stats").physical_bytes;
        assert_eq!(store(&a, &file).await.expect("store"), Outcome::Stored);
        let stored = a.engine().stats().await.expect("stats").physical_bytes - before;
        assert!(
            (stored as f64) < 0.9 * plain as f64,
            "{}: pixel data took {stored} bytes, as plain bytes {plain}",
            t.name
        );
        let (rec, got) = read_back(&a, "7.7.7").await;
        assert!(got == file, "{}: not byte-exact", t.name);
        // A range starting at an odd byte inside the pixel data.
        let got = a
            .read_bytes(T, &rec, 300_001, 1_377_778)
            .await
            .expect("range");
        assert!(got[..] == file[300_001..1_377_778], "{}", t.name);
        a.engine().close().await;
    }
}

#[tokio::test]
async fn bad_input_is_refused_and_nothing_indexed() {
    for t in targets().await {
        let a = Archive::new(t.open().await, ArchiveConfig::default());
        let i = corpus().remove(0);
        let f = part10(&i, 1);
        let cases: Vec<(&str, Vec<u8>, u16)> = vec![
            (
                "not dicom",
                b"hello world, this is not DICOM at all".repeat(10),
                0xC000,
            ),
            (
                "truncated in pixel data",
                f[..f.len() - 100].to_vec(),
                0xC000,
            ),
            ("truncated in header", f[..300].to_vec(), 0xC000),
            ("empty", Vec::new(), 0xC000),
        ];
        for (name, bytes, status) in cases {
            let err = store(&a, &bytes).await.expect_err(name);
            assert_eq!(err.status(), status, "{}: {name}: {err}", t.name);
        }
        // Missing Study Instance UID.
        let mut o = dicom_object::OpenFileOptions::new()
            .from_reader(&f[..])
            .expect("parse");
        o.remove_element(tags::STUDY_INSTANCE_UID);
        let mut no_study = Vec::new();
        o.write_all(&mut no_study).expect("write");
        let err = store(&a, &no_study).await.expect_err("no study uid");
        assert_eq!(err.status(), 0xA900, "{err}");
        // A DICOMDIR (Media Storage Directory Storage) indexes a medium; it
        // is no instance.
        let dir = InMemDicomObject::from_element_iter([DataElement::new(
            tags::FILE_SET_ID,
            VR::CS,
            PrimitiveValue::from("CD1"),
        )])
        .with_meta(
            FileMetaTableBuilder::new()
                .media_storage_sop_class_uid("1.2.840.10008.1.3.10")
                .media_storage_sop_instance_uid("1.2.3.4")
                .transfer_syntax("1.2.840.10008.1.2.1"),
        )
        .expect("meta");
        let mut dicomdir = Vec::new();
        dir.write_all(&mut dicomdir).expect("write");
        let err = store(&a, &dicomdir).await.expect_err("dicomdir");
        assert!(matches!(err, DicomError::MediaDirectory), "{err}");
        assert_eq!(err.status(), 0x0122, "{err}");
        assert!(
            uids(&a, Level::Instance, vec![]).await.is_empty(),
            "{}",
            t.name
        );
        a.engine().close().await;
    }
}

#[tokio::test]
async fn retention_refuses_deletes_and_survives_replacement() {
    let rule: fulcrum_engine::RetentionRule = toml::from_str::<
        std::collections::BTreeMap<String, Vec<fulcrum_engine::RetentionRule>>,
    >(
        "[[retention]]\ndicom_tenant = \"*\"\nmode = \"governance\"\nyears = 30\nanchor = \"study-date\"",
    )
    .expect("rule")
    .remove("retention")
    .and_then(|mut v| v.pop())
    .expect("one rule");
    for t in targets().await {
        let mut cfg = t.cfg.clone();
        cfg.retention = vec![rule.clone()];
        let engine = fulcrum_engine::Engine::open(cfg).await.expect("engine");
        let a = Archive::new(engine, ArchiveConfig::default());
        let i = corpus().remove(0); // Study Date 2020-01-15
        store(&a, &part10(&i, 1)).await.expect("store");
        let key = fulcrum_dicom::instance_key(&i.sop);
        let obj = a
            .engine()
            .head_object(T, fulcrum_dicom::DICOM_BUCKET, &key)
            .await
            .expect("head");
        let until = obj.lock.retention.expect("policy retention").until_ms;
        assert_eq!(
            fulcrum_engine::retention::iso_ms(until),
            "2050-01-15T00:00:00Z",
            "{}",
            t.name
        );
        let study = Scope::Study(i.study.clone());
        let err = a.delete(T, &study, false).await.expect_err("retained");
        assert!(
            err.to_string()
                .contains("GOVERNANCE retention until 2050-01-15"),
            "{err}"
        );
        // A legal hold on the stored instance travels with it when a new
        // version replaces it (the old bytes are kept under versions/).
        a.engine()
            .set_legal_hold(T, fulcrum_dicom::DICOM_BUCKET, &key, true)
            .await
            .expect("hold");
        assert_eq!(
            store(&a, &part10(&i, 2)).await.expect("replace"),
            Outcome::Replaced
        );
        let err = a
            .delete(T, &study, true)
            .await
            .expect_err("old version held");
        assert!(err.to_string().contains("legal hold"), "{}: {err}", t.name);
        assert_eq!(uids(&a, Level::Instance, vec![]).await, vec![i.sop.clone()]);
        // Governance is lifted by the bypass once the hold is released.
        let versions = a
            .engine()
            .list_objects(T, fulcrum_dicom::DICOM_BUCKET, "versions/", "", 10)
            .await
            .expect("versions");
        assert_eq!(versions.len(), 1, "{}", t.name);
        a.engine()
            .set_legal_hold(T, fulcrum_dicom::DICOM_BUCKET, &versions[0].key, false)
            .await
            .expect("release");
        assert_eq!(a.delete(T, &study, true).await.expect("bypass delete"), 1);
        a.engine().close().await;
    }
}

#[tokio::test]
async fn a_ct_rule_archives_old_ct_studies_and_retrieves_stay_byte_exact() {
    // Days since 2020-06-01: the corpus's 2020 studies are older, the
    // 2021 ones younger, whatever day the test runs.
    let today = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        / 86_400;
    let days = (today - 18_414) as u32;
    for t in targets().await {
        let a = Archive::new(t.open_tiered(false).await, ArchiveConfig::default());
        let corpus = corpus();
        let files: Vec<Vec<u8>> = corpus
            .iter()
            .enumerate()
            .map(|(n, i)| part10(i, n as u64))
            .collect();
        for f in &files {
            assert_eq!(store(&a, f).await.expect("store"), Outcome::Stored);
        }
        let rule = |modality: &str| fulcrum_engine::LifecycleRule {
            modality: Some(modality.into()),
            study_older_than_days: Some(days),
            ..fulcrum_engine::LifecycleRule::for_bucket(T, "")
        };
        let mut ct = rule("ct");
        ct.bucket = None;
        let mut mr = rule("MR");
        mr.bucket = None;
        ct.validate().expect("valid rule");
        let e = a.engine();
        let plan = e.tier_apply(&[mr], true, &mut ()).await.expect("plan");
        assert_eq!(plan.objects, 0, "{}: no MR study", t.name);
        let old: Vec<usize> = (0..corpus.len())
            .filter(|&n| corpus[n].date.starts_with("2020"))
            .collect();
        let done = e.tier_apply(&[ct], false, &mut ()).await.expect("apply");
        assert_eq!(
            done.archived_objects,
            old.len() as u64,
            "{}: {done:?}",
            t.name
        );
        for (n, i) in corpus.iter().enumerate() {
            let rec = a
                .instance(T, &i.sop)
                .await
                .expect("lookup")
                .expect("indexed");
            let info = e
                .head_object(T, fulcrum_dicom::DICOM_BUCKET, &rec.object_key)
                .await
                .expect("head");
            assert_eq!(info.archived, old.contains(&n), "{} {}", t.name, i.sop);
            let got = a
                .read_bytes(T, &rec, 0, rec.size as u64)
                .await
                .expect("read");
            assert_eq!(&got[..], &files[n][..], "{} {}", t.name, i.sop);
        }
        assert!(e.metrics().archive_recalls.get() >= old.len() as u64);
        assert!(e.verify(&mut ()).await.expect("verify").is_clean());
        a.engine().close().await;
    }
}

/// Every study's and series' counts as QIDO-RS reads them.
async fn all_counts(
    a: &Archive,
) -> Vec<(String, Option<i64>, Option<i64>, Vec<String>, Vec<String>)> {
    let mut out = Vec::new();
    for level in [Level::Study, Level::Series] {
        for m in a.query(&all(level, vec![])).await.expect("query") {
            let uid = match &m.series {
                Some(r) => r.series_uid.clone(),
                None => m.study.study_uid.clone(),
            };
            out.push((
                uid,
                m.series_count,
                m.instances,
                m.modalities,
                m.sop_classes,
            ));
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn counts_kept_commit_by_commit_match_a_recount() {
    for t in targets().await {
        let e = t.open().await;
        let a = Archive::new(e.clone(), ArchiveConfig::default());
        let inst = |study: &str, series: &str, sop: &str, modality| Inst {
            patient: ("Doe^Jane", "P1"),
            study: study.into(),
            series: series.into(),
            sop: sop.into(),
            date: "20200115",
            modality,
            accession: "ACC",
            number: 1,
        };
        // One instance per commit, as DIMSE C-STORE sends them.
        for n in 0..5 {
            let i = inst("9.1", "9.1.1", &format!("9.1.1.{n}"), "CT");
            store(&a, &part10(&i, n)).await.expect("store");
        }
        // A second series of another SOP class.
        let sc = "1.2.840.10008.5.1.4.1.1.7";
        for n in 0..2 {
            let i = inst("9.1", "9.1.2", &format!("9.1.2.{n}"), "OT");
            store(&a, &part10_of_class(&i, 10 + n, sc))
                .await
                .expect("store");
        }
        let counts = all_counts(&a).await;
        assert!(
            counts.contains(&(
                "9.1".into(),
                Some(2),
                Some(7),
                vec!["CT".into(), "OT".into()],
                vec![CT_IMAGE.into(), sc.into()]
            )),
            "{counts:?}"
        );
        assert!(
            counts.contains(&("9.1.1".into(), None, Some(5), vec![], vec![CT_IMAGE.into()])),
            "{counts:?}"
        );
        // The same bytes again, then new bytes of a stored instance
        // (kept as the newest), one under another study, and a series
        // sent again under another study.
        let same = inst("9.1", "9.1.1", "9.1.1.0", "CT");
        store(&a, &part10(&same, 0)).await.expect("identical");
        store(&a, &part10(&same, 99)).await.expect("replaced");
        let moved = inst("9.2", "9.2.1", "9.1.1.1", "CT");
        store(&a, &part10(&moved, 1)).await.expect("moved instance");
        let series_moved = inst("9.3", "9.1.2", "9.1.2.9", "OT");
        store(&a, &part10_of_class(&series_moved, 20, sc))
            .await
            .expect("moved series");
        // One series sent under two studies, committed together.
        let ctx = StoreContext::default();
        let one = part10(&inst("9.4", "9.4.1", "9.4.1.0", "CT"), 30);
        let two = part10(&inst("9.5", "9.4.1", "9.4.1.1", "CT"), 31);
        let (one, two) = futures::join!(
            a.stage_file(T, &one[..], &ctx),
            a.stage_file(T, &two[..], &ctx)
        );
        let (one, two) = futures::join!(one.expect("stage").commit(), two.expect("stage").commit());
        one.expect("commit");
        two.expect("commit");
        let kept = all_counts(&a).await;
        e.catalog().recount_dicom().await.expect("recount");
        assert_eq!(kept, all_counts(&a).await, "{}", t.name);
        assert!(
            kept.contains(&("9.1.1".into(), None, Some(4), vec![], vec![CT_IMAGE.into()])),
            "{kept:?}"
        );
    }
}

#[tokio::test]
async fn person_names_match_by_any_component_group() {
    for t in targets().await {
        let names = [
            ("Wang^XiaoDong=王^小东", "P1"),
            ("Yamada^Tarou=山田^太郎=やまだ^たろう", "P2"),
            ("Wang^XiaoDongfang", "P3"),
            ("张^三", "P4"),
            // An empty phonetic group, as pydicom's chrX1 sample writes it.
            ("Li^Hua=李^华=", "P5"),
            // Empty trailing components in the alphabetic group.
            ("Kim^Minsu^^=김^민수", "P6"),
            // Words separated by the ideographic space (U+3000).
            ("Sato^Ichiro=佐藤　一郎=さとう　いちろう", "P7"),
            // Full-width Latin and half-width katakana.
            ("ｌｉｕ^Ｌｅｉ=刘^磊=ﾘｳ^ﾚｲ", "P8"),
            // Pinyin in the phonetic group, hanzi in the first two.
            ("王^小明=王^小明=WANG^XIAOMING", "P9"),
            ("张^三==ZHANG^SAN", "P10"),
            // Transliterated names, their parts separated by middle dots.
            ("Maimaiti^Aili=买买提·艾力", "P11"),
            ("Smith^John=ｼﾞｮﾝ･ｽﾐｽ", "P12"),
        ];
        {
            let a = Archive::new(t.open().await, ArchiveConfig::default());
            for (n, patient) in names.into_iter().enumerate() {
                let i = alone(&format!("7.{n}"), patient);
                store(&a, &part10(&i, n as u64)).await.expect("store");
            }
        }
        // Rows written before the group keys existed get them when the
        // catalog opens.
        let mut c = t.catalog_sql().await;
        sqlx::query(
            "UPDATE dicom_studies SET patient_name_ideo_key = NULL, patient_name_phon_key = NULL",
        )
        .execute(&mut c)
        .await
        .expect("older rows");
        // And rows keyed before each component group was keyed on its own.
        for sql in [
            "UPDATE dicom_studies SET patient_name_key = 'KIM MINSU =김 민수' WHERE study_uid = '7.5'",
            // Keyed before the ideographic space separated words.
            "UPDATE dicom_studies SET patient_name_key = \
             'SATO ICHIRO=佐藤\u{3000}一郎=さとう\u{3000}いちろう' WHERE study_uid = '7.6'",
            // Keyed before the compatibility form.
            "UPDATE dicom_studies SET patient_name_key = 'ＬＩＵ ＬＥＩ=刘 磊=ﾘｳ ﾚｲ' \
             WHERE study_uid = '7.7'",
            // Keyed before middle dots separated words.
            "UPDATE dicom_studies SET patient_name_key = 'MAIMAITI AILI=买买提·艾力' \
             WHERE study_uid = '7.10'",
            "DELETE FROM meta WHERE key = 'name_keys_v4'",
        ] {
            sqlx::query(sql).execute(&mut c).await.expect("older keys");
        }
        drop(c);
        let a = Archive::new(t.open().await, ArchiveConfig::default());
        let ex = |v: &str| Matcher::Exact(v.into());
        let wild = |v: &str| Matcher::Wildcard(v.into());
        let fuzzy = |v: &str| Matcher::Fuzzy(v.into());
        for (m, want) in [
            (ex("Wang^XiaoDong"), vec!["7.0"]),
            (ex("王^小东"), vec!["7.0"]),
            (wild("王*"), vec!["7.0", "7.8"]),
            (wild("山田*"), vec!["7.1"]),
            (ex("やまだ^たろう"), vec!["7.1"]),
            (wild("*たろう"), vec!["7.1"]),
            (wild("wang*"), vec!["7.0", "7.2", "7.8"]),
            (wild("*XiaoDong"), vec!["7.0"]),
            (ex("Wang^XiaoDong=王^小东"), vec!["7.0"]),
            (ex("Wang^XiaoDong=王^小东="), vec!["7.0"]),
            (ex("Li^Hua=李^华"), vec!["7.4"]),
            (ex("Li^Hua=李^华="), vec!["7.4"]),
            (ex("Li^Hua=李^华=x"), vec![]),
            (ex("张^三"), vec!["7.3", "7.9"]),
            (ex("Kim^Minsu=김^민수"), vec!["7.5"]),
            (ex("kim^minsu^^^=김^민수^^="), vec!["7.5"]),
            (ex("Kim^Minsu"), vec!["7.5"]),
            (wild("Kim^Min*"), vec!["7.5"]),
            (wild("wang^*"), vec!["7.0", "7.2", "7.8"]),
            (ex("WANG^XIAOMING"), vec!["7.8"]),
            (ex("zhang^san"), vec!["7.9"]),
            (wild("ZHANG*"), vec!["7.9"]),
            (ex("王^小明"), vec!["7.8"]),
            (ex("小东"), vec![]),
            (ex("Wang"), vec![]),
            // Fuzzy: a word starts a name part in any group (the family
            // names of the ideographic and phonetic groups follow '=').
            (fuzzy("山田"), vec!["7.1"]),
            (fuzzy("山"), vec!["7.1"]),
            (fuzzy("やまだ"), vec!["7.1"]),
            (fuzzy("王"), vec!["7.0", "7.8"]),
            (fuzzy("김"), vec!["7.5"]),
            (fuzzy("太郎"), vec!["7.1"]),
            (fuzzy("tarou yamada"), vec!["7.1"]),
            (fuzzy("田"), vec![]),
            (fuzzy("一郎"), vec!["7.6"]),
            (fuzzy("いちろう"), vec!["7.6"]),
            (ex("佐藤^一郎"), vec!["7.6"]),
            (wild("佐藤 一*"), vec!["7.6"]),
            (ex("Liu^Lei"), vec!["7.7"]),
            (wild("LIU*"), vec!["7.7"]),
            (ex("ＬＩＵ^ＬＥＩ"), vec!["7.7"]),
            (ex("刘^磊"), vec!["7.7"]),
            (fuzzy("リウ"), vec!["7.7"]),
            (ex("liu^lei=刘^磊=リウ^レイ"), vec!["7.7"]),
            (fuzzy("艾力"), vec!["7.10"]),
            (ex("买买提·艾力"), vec!["7.10"]),
            (ex("买买提^艾力"), vec!["7.10"]),
            (wild("买买提*"), vec!["7.10"]),
            (fuzzy("スミス"), vec!["7.11"]),
            (ex("ジョン・スミス"), vec!["7.11"]),
        ] {
            let got = uids(&a, Level::Study, vec![(Column::PatientName, m.clone())]).await;
            assert_eq!(got, want, "{}: {m:?}", t.name);
        }
    }
}

#[tokio::test]
async fn reindex_rewrites_what_the_headers_give_and_only_that() {
    for t in targets().await {
        let a = Archive::new(t.open().await, ArchiveConfig::default());
        let insts: Vec<Inst> = corpus().into_iter().take(8).collect();
        for (n, i) in insts.iter().enumerate() {
            store(&a, &part10(i, n as u64)).await.expect("store");
        }
        let study = insts[0].study.clone();
        let (ct_series, sop) = (insts[0].series.clone(), insts[0].sop.clone());
        // Rows as ingest wrote them are what the headers give: nothing to do.
        let out = a.reindex_study(T, &study).await.expect("reindex");
        assert_eq!(out, fulcrum_dicom::ReindexOutcome::default(), "{}", t.name);
        // Rows an older version (or another character set) got wrong.
        let mut c = t.catalog_sql().await;
        for sql in [
            format!(
                "UPDATE dicom_studies SET patient_name = 'X', patient_name_key = 'X', \
                 accession_number = 'WRONG', study_description = NULL WHERE study_uid = '{study}'"
            ),
            format!("UPDATE dicom_series SET modality = 'MR' WHERE series_uid = '{ct_series}'"),
            format!("UPDATE dicom_studies SET modalities = 'MR,SR' WHERE study_uid = '{study}'"),
            format!(
                "UPDATE dicom_instances SET bits_allocated = NULL, instance_number = 9 \
                 WHERE sop_uid = '{sop}'"
            ),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut c)
                .await
                .expect("older rows");
        }
        drop(c);
        let found = |col, m: &str| {
            let a = a.clone();
            let m = Matcher::Exact(m.into());
            async move { uids(&a, Level::Study, vec![(col, m)]).await }
        };
        assert!(!found(Column::AccessionNumber, "ACC-A")
            .await
            .contains(&study));
        assert!(!found(Column::ModalitiesInStudy, "CT")
            .await
            .contains(&study));
        let out = a.reindex_study(T, &study).await.expect("reindex");
        assert!(out.study && !out.raced, "{}: {out:?}", t.name);
        assert_eq!((out.series, out.instances), (1, 1), "{}", t.name);
        assert!(found(Column::AccessionNumber, "ACC-A")
            .await
            .contains(&study));
        assert!(found(Column::PatientName, "doe^jane")
            .await
            .contains(&study));
        assert!(found(Column::ModalitiesInStudy, "CT")
            .await
            .contains(&study));
        let rec = a.instance(T, &sop).await.expect("lookup").expect("indexed");
        assert_eq!(
            (rec.instance_number, rec.bits_allocated),
            (Some(1), Some(16))
        );
        let m = a
            .query(&all(
                Level::Study,
                vec![(Column::StudyUid, Matcher::Exact(study.clone()))],
            ))
            .await
            .expect("query");
        assert_eq!(m[0].study.study_description.as_deref(), Some("CHEST"));
        // And again: nothing left to change.
        let out = a.reindex_study(T, &study).await.expect("reindex");
        assert_eq!(out, fulcrum_dicom::ReindexOutcome::default(), "{}", t.name);
    }
}

#[tokio::test]
async fn a_patient_is_answered_with_the_attributes_of_one_of_its_studies() {
    // Three studies of one Patient ID under three names (a name changed, a
    // birth date corrected): the patient level took the largest of each
    // attribute, a record no instance holds.
    for t in targets().await {
        let a = Archive::new(t.open().await, ArchiveConfig::default());
        let names = ["Gamma^C", "Alpha^A", "Beta^B"];
        for (n, name) in names.into_iter().enumerate() {
            let i = alone(&format!("8.{n}"), (name, "MIX1"));
            store(&a, &part10(&i, n as u64)).await.expect("store");
        }
        let mut c = t.catalog_sql().await;
        for (n, (born, sex)) in [("19500505", "O"), ("19990101", "M"), ("19000101", "F")]
            .into_iter()
            .enumerate()
        {
            let sql = format!(
                "UPDATE dicom_studies SET patient_birth_date = '{born}', patient_sex = '{sex}', \
                 updated_at = {} WHERE study_uid = '8.{n}'",
                1000 + n
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut c)
                .await
                .expect("study row");
        }
        drop(c);
        let name = t.name.clone();
        let patient = |filters: Vec<(Column, Matcher)>| {
            let (a, name) = (a.clone(), name.clone());
            async move {
                let mut m = a.query(&all(Level::Patient, filters)).await.expect("query");
                assert_eq!(m.len(), 1, "{name}");
                let m = m.remove(0);
                let s = m.study;
                (
                    s.patient_name.unwrap_or_default(),
                    s.patient_birth_date.unwrap_or_default(),
                    s.patient_sex.unwrap_or_default(),
                    m.studies,
                )
            }
        };
        let id = (Column::PatientId, Matcher::Exact("MIX1".into()));
        // The last written study's.
        assert_eq!(
            patient(vec![id.clone()]).await,
            ("Beta^B".into(), "19000101".into(), "F".into(), Some(3)),
            "{}",
            t.name
        );
        // Of those that match, the last written; the patient's counts are
        // of all its studies still.
        let alpha = (Column::PatientName, Matcher::Wildcard("Alpha*".into()));
        assert_eq!(
            patient(vec![id, alpha]).await,
            ("Alpha^A".into(), "19990101".into(), "M".into(), Some(3)),
            "{}",
            t.name
        );
    }
}

#[tokio::test]
async fn a_patient_is_its_id_within_its_issuer() {
    // One MRN at two sites of a consortium (and once without an issuer)
    // is three patients; PATIENT level grouped by Patient ID alone made
    // them one, with one site's name and both sites' studies.
    for t in targets().await {
        let a = Archive::new(t.open().await, ArchiveConfig::default());
        let issuer = |v| [(tags::ISSUER_OF_PATIENT_ID, VR::LO, v)];
        for (n, name, site) in [
            (0, "Smith^John", Some("SITE_A")),
            (1, "Jones^Mary", Some("SITE_B")),
            (2, "Smith^John", Some("SITE_A")),
            (3, "No^Issuer", None),
        ] {
            let i = alone(&format!("9.{n}"), (name, "MRN1234"));
            let extra: &[_] = match site {
                Some(site) => &issuer(site),
                None => &[],
            };
            store(&a, &part10_with(&i, n, CT_IMAGE, extra))
                .await
                .expect("store");
        }
        let patients = |filters: Vec<(Column, Matcher)>, limit: Option<u32>, offset: u32| {
            let a = a.clone();
            async move {
                let q = DicomQuery {
                    limit,
                    offset,
                    ..all(Level::Patient, filters)
                };
                a.query(&q)
                    .await
                    .expect("query")
                    .into_iter()
                    .map(|m| {
                        (
                            m.study.issuer_of_patient_id.unwrap_or_default(),
                            m.study.patient_name.unwrap_or_default(),
                            m.studies.unwrap_or_default(),
                        )
                    })
                    .collect::<Vec<_>>()
            }
        };
        let ex = |v: &str| Matcher::Exact(v.into());
        let id = (Column::PatientId, ex("MRN1234"));
        let three = vec![
            (String::new(), "No^Issuer".to_string(), 1),
            ("SITE_A".into(), "Smith^John".into(), 2),
            ("SITE_B".into(), "Jones^Mary".into(), 1),
        ];
        assert_eq!(
            patients(vec![id.clone()], None, 0).await,
            three,
            "{}",
            t.name
        );
        // Pages count patients, in the same order on both databases.
        assert_eq!(
            patients(vec![id.clone()], Some(1), 1).await,
            three[1..2],
            "{}",
            t.name
        );
        // A patient none of whose studies match is not answered, nor counted
        // by a page.
        let jones = (Column::PatientName, Matcher::Wildcard("Jones*".into()));
        assert_eq!(
            patients(vec![id.clone(), jones], Some(1), 0).await,
            three[2..],
            "{}",
            t.name
        );
        let site_a = (Column::IssuerOfPatientId, ex("SITE_A"));
        assert_eq!(
            patients(vec![id.clone(), site_a.clone()], None, 0).await,
            three[1..2],
            "{}",
            t.name
        );
        assert_eq!(
            uids(&a, Level::Study, vec![id.clone(), site_a.clone()]).await,
            ["9.0", "9.2"],
            "{}",
            t.name
        );
        // Rows written before the issuer was kept get it from their
        // headers, once, when a node upgrades the index.
        let mut c = t.catalog_sql().await;
        for sql in [
            "UPDATE dicom_studies SET issuer_of_patient_id = NULL",
            "DELETE FROM meta WHERE key = 'patient_issuer_v1'",
        ] {
            sqlx::query(sql).execute(&mut c).await.expect("older rows");
        }
        drop(c);
        let a = Archive::new(t.open().await, ArchiveConfig::default());
        assert_eq!(
            uids(&a, Level::Study, vec![site_a.clone()]).await,
            Vec::<String>::new()
        );
        assert_eq!(a.upgrade_index().await.expect("upgrade"), 4, "{}", t.name);
        assert_eq!(
            uids(&a, Level::Study, vec![id, site_a.clone()]).await,
            ["9.0", "9.2"],
            "{}",
            t.name
        );
        assert_eq!(a.upgrade_index().await.expect("again"), 0, "{}", t.name);
    }
}

#[tokio::test]
async fn keys_the_index_does_not_hold_are_read_from_a_header_of_each_match() {
    use fulcrum_dicom::header_keys::{HeaderKey, HeaderKeys};
    for t in targets().await {
        let a = Archive::new(t.open().await, ArchiveConfig::default());
        for (n, i) in corpus().iter().enumerate() {
            store(&a, &part10(i, n as u64)).await.expect("store");
        }
        // Any tag works alike; Modality is one every instance holds.
        let key = |v: &str| HeaderKey::new(tags::MODALITY, VR::CS, v, false).expect("key");
        for (level, want) in [
            (Level::Study, 6),
            (Level::Series, 12),
            (Level::Instance, 24),
        ] {
            let page = a.query(&all(level, vec![])).await.expect("query");
            let every = a
                .with_headers(T, level, page.clone(), &HeaderKeys(vec![key("")]))
                .await
                .expect("headers");
            assert_eq!(every.len(), want, "{} {level:?}", t.name);
            assert!(
                every.iter().all(|(_, h)| h.is_some()),
                "{} {level:?}",
                t.name
            );
            let sr = a
                .with_headers(T, level, page, &HeaderKeys(vec![key("S?")]))
                .await
                .expect("headers");
            let got: Vec<_> = sr
                .iter()
                .map(|(m, h)| {
                    let h = h.as_ref().expect("header");
                    (
                        m.study.study_uid.clone(),
                        h.get(tags::MODALITY)
                            .map(|e| e.to_str().unwrap_or_default().to_string()),
                    )
                })
                .collect();
            assert!(
                got.iter().all(|(_, m)| m.as_deref() == Some("SR")),
                "{}: {got:?}",
                t.name
            );
            // A study stands for itself by one of its instances (CT or SR);
            // series and instances keep exactly the SR ones.
            if level != Level::Study {
                assert_eq!(got.len(), want / 2, "{} {level:?}", t.name);
            }
        }
        // A study or series stands by its last written instance, whose
        // attributes its row holds (the second of each series, the SR
        // series' of each study).
        let second = HeaderKey::new(tags::INSTANCE_NUMBER, VR::IS, "2", false).expect("key");
        for (level, want) in [(Level::Study, 6), (Level::Series, 12)] {
            let page = a.query(&all(level, vec![])).await.expect("query");
            let got = a
                .with_headers(T, level, page, &HeaderKeys(vec![second.clone()]))
                .await
                .expect("headers");
            assert_eq!(got.len(), want, "{} {level:?}", t.name);
        }
    }
}

#[tokio::test]
async fn keys_below_the_query_level_match_relationally() {
    // C-FIND at STUDY level with Modality=MR, or SERIES level with an
    // Instance Number, ignored the key and answered every study.
    for t in targets().await {
        let a = Archive::new(t.open().await, ArchiveConfig::default());
        for (n, i) in corpus().iter().enumerate() {
            store(&a, &part10(i, n as u64)).await.expect("store");
        }
        let ex = |v: &str| Matcher::Exact(v.into());
        let count = |level, filters| {
            let a = a.clone();
            async move { uids(&a, level, filters).await.len() }
        };
        assert_eq!(
            count(Level::Study, vec![(Column::Modality, ex("SR"))]).await,
            6,
            "{}",
            t.name
        );
        assert_eq!(
            count(Level::Study, vec![(Column::Modality, ex("MR"))]).await,
            0,
            "{}",
            t.name
        );
        assert_eq!(
            count(Level::Patient, vec![(Column::Modality, ex("MR"))]).await,
            0,
            "{}",
            t.name
        );
        let two = vec![
            (Column::InstanceNumber, ex("2")),
            (Column::Modality, ex("CT")),
        ];
        assert_eq!(count(Level::Series, two).await, 6, "{}", t.name);
        let three = vec![(Column::InstanceNumber, ex("3"))];
        assert_eq!(count(Level::Series, three).await, 0, "{}", t.name);
        let class = vec![
            (Column::SopClassUid, ex(CT_IMAGE)),
            (Column::PatientId, ex("P1")),
        ];
        assert_eq!(count(Level::Study, class).await, 2, "{}", t.name);
        let dated = vec![(Column::StudyDate, ex("20200115"))];
        let p = a.query(&all(Level::Patient, dated)).await.expect("query");
        // Each patient has one study that day, and two studies.
        assert_eq!(p.len(), 3, "{}", t.name);
        assert!(p.iter().all(|m| m.studies == Some(2)), "{}: {p:?}", t.name);
    }
}

#[tokio::test]
async fn two_versions_of_one_instance_committed_at_once_are_both_kept() {
    // Two different files of one new SOP Instance UID committed together
    // (two senders, an import's parallel files): the group commit kept
    // only the later object; the earlier was acknowledged, then neither
    // served nor kept as a version.
    for t in targets().await {
        let a = Archive::new(t.open().await, ArchiveConfig::default());
        for round in 0..4 {
            let i = |name| alone(&format!("9.{round}"), (name, "TWICE"));
            let (x, y) = (part10(&i("Doe^A"), 1), part10(&i("Doe^B"), 1));
            let ctx = StoreContext::default();
            let (px, py) = (
                a.stage_file(T, &x[..], &ctx).await.expect("stage"),
                a.stage_file(T, &y[..], &ctx).await.expect("stage"),
            );
            let (rx, ry) = futures::join!(px.commit(), py.commit());
            rx.expect("commit");
            ry.expect("commit");
            let scope = Scope::Instance(i("x").study, i("x").series, i("x").sop);
            // The instance and the other one kept as its earlier version.
            let held = a.hold(T, &scope, true).await.expect("hold");
            assert_eq!(held, 2, "{} round {round}", t.name);
        }
    }
}
