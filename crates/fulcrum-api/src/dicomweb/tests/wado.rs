//! WADO-RS: byte-exact retrieve, metadata with BulkDataURIs, bulk data and
//! frames.

use axum::http::StatusCode;

use super::*;

const DICOM_ANY: &str = "multipart/related; type=\"application/dicom\"; transfer-syntax=*";

#[tokio::test]
async fn retrieve_is_byte_exact_at_every_level() {
    let e = env().await;
    let a = instance(&Spec::new("1.2.826.0.1.99.1.1.1"));
    let b = instance(&Spec::new("1.2.826.0.1.99.1.1.2"));
    assert_eq!(stow(&e.app, &[&a, &b]).await.0, StatusCode::OK);

    let uri = format!("{UID_PATH}/1.2.826.0.1.99.1.1.2");
    for accept in [
        None,
        Some(DICOM_ANY),
        Some("multipart/related; type=\"application/dicom\""),
    ] {
        let (status, ct, body) = call(&e.app, get(&uri, accept)).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            ct.starts_with("multipart/related; type=\"application/dicom\""),
            "{ct}"
        );
        let got = parts(&ct, &body);
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0].0,
            "application/dicom; transfer-syntax=1.2.840.10008.1.2.1"
        );
        assert!(got[0].1 == b, "byte-exact");
    }
    let (status, ct, body) = call(&e.app, get("/studies/1.2.826.0.1.99.1", Some(DICOM_ANY))).await;
    assert_eq!(status, StatusCode::OK);
    let got = parts(&ct, &body);
    assert_eq!(got.len(), 2);
    assert!(got.iter().any(|p| p.1 == a) && got.iter().any(|p| p.1 == b));
    // A body well past axum's default limits, cut by the multipart reader
    // and the chunker at arbitrary places.
    let mut big = Spec::new("1.2.826.0.1.99.1.1.3");
    (big.rows, big.cols, big.frames) = (1024, 1024, 3);
    let big_file = instance(&big);
    assert_eq!(stow(&e.app, &[&big_file]).await.0, StatusCode::OK);
    let (status, ct, body) = call(&e.app, get(&format!("{UID_PATH}/{}", big.sop), None)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        parts(&ct, &body)[0].1 == big_file,
        "large instance byte-exact"
    );
    let (_, ct, body) = call(
        &e.app,
        get(&format!("{UID_PATH}/{}/frames/3", big.sop), None),
    )
    .await;
    assert!(parts(&ct, &body)[0].1 == frame_pixels(&big, 2));
    let series = "/studies/1.2.826.0.1.99.1/series/1.2.826.0.1.99.1.1";
    let (status, ct, body) = call(&e.app, get(series, None)).await;
    assert_eq!((status, parts(&ct, &body).len()), (StatusCode::OK, 3));

    // Another transfer syntax than the stored one: no transcoding.
    let jpeg =
        "multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.4.50";
    assert_eq!(
        call(&e.app, get(&uri, Some(jpeg))).await.0,
        StatusCode::NOT_ACCEPTABLE
    );
    // Unknown UIDs.
    for uri in [
        "/studies/7.7.7".to_string(),
        "/studies/7.7.7/metadata".to_string(),
        format!("{UID_PATH}/7.7.7"),
        format!("{UID_PATH}/7.7.7/frames/1"),
    ] {
        let (status, ct, _) = call(&e.app, get(&uri, None)).await;
        assert_eq!(
            (status, ct.as_str()),
            (StatusCode::NOT_FOUND, "application/json"),
            "{uri}"
        );
    }
}

#[tokio::test]
async fn a_request_larger_than_one_commit_reads_back_byte_exact() {
    // 150 instances (more than one commit's worth, so the request's parts
    // go to several stage batches and their shared packs): half of them
    // with incompressible pixel data large enough for the batch's pack,
    // half small enough to ride with the commit; and a part that is not
    // DICOM in the middle, whose data is never committed.
    let e = env().await;
    let files: Vec<(Spec, Vec<u8>)> = (0..150u16)
        .map(|i| {
            let mut s = Spec::new(Box::leak(format!("1.2.826.0.1.99.1.1.{}", 1000 + i).into()));
            let f = if i % 2 == 0 {
                (s.rows, s.cols) = (200 + i % 7, 256);
                noisy_instance(&s, i as u64)
            } else {
                (s.rows, s.cols) = (16 + i % 50, 40 + i / 50);
                instance(&s)
            };
            (s, f)
        })
        .collect();
    let mut body: Vec<&[u8]> = files.iter().map(|(_, f)| f.as_slice()).collect();
    body.insert(
        70,
        b"not a DICOM file at all, but long enough to be read as a part",
    );
    let (status, res) = stow(&e.app, &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{res}");
    assert_eq!(res["00081199"]["Value"].as_array().map(Vec::len), Some(150));
    assert_eq!(res["00081198"]["Value"].as_array().map(Vec::len), Some(1));
    let check = |e: &Env| {
        let (app, files) = (e.app.clone(), &files);
        async move {
            let (status, ct, got) = call(&app, get("/studies/1.2.826.0.1.99.1", None)).await;
            assert_eq!(status, StatusCode::OK);
            let got = parts(&ct, &got);
            assert_eq!(got.len(), files.len());
            for (s, f) in files {
                assert!(got.iter().any(|p| &p.1 == f), "{} byte-exact", s.sop);
            }
        }
    };
    check(&e).await;
    let gc = fulcrum_engine::GcOptions {
        grace: std::time::Duration::ZERO,
        ..Default::default()
    };
    e.engine.gc(&gc).await.expect("gc");
    check(&e).await;
    assert!(e.engine.verify(&mut ()).await.expect("verify").is_clean());
}

#[tokio::test]
async fn metadata_points_at_bulk_data() {
    let e = env().await;
    let s = Spec::new("1.2.826.0.1.99.1.1.1");
    assert_eq!(stow(&e.app, &[&instance(&s)]).await.0, StatusCode::OK);
    let inst = format!("{UID_PATH}/{}", s.sop);
    for uri in [
        format!("{inst}/metadata"),
        "/studies/1.2.826.0.1.99.1/metadata".to_string(),
        "/studies/1.2.826.0.1.99.1/series/1.2.826.0.1.99.1.1/metadata".to_string(),
    ] {
        let (status, ct, body) = call(&e.app, get(&uri, Some("application/dicom+json"))).await;
        assert_eq!(
            (status, ct.as_str()),
            (StatusCode::OK, "application/dicom+json"),
            "{uri}"
        );
        let md = json(&body);
        assert_eq!(md.as_array().map(Vec::len), Some(1));
        let m = &md[0];
        assert_eq!(m["00100020"]["Value"][0], "P1");
        assert_eq!(m["00280010"]["Value"][0], 4);
        assert_eq!(m["00281050"]["Value"][0], 100, "DS as a number");
        assert_eq!(m["00083002"]["Value"][0], "1.2.840.10008.1.2.1");
        assert_eq!(m["7FE00010"]["vr"], "OW");
        assert_eq!(
            m["7FE00010"]["BulkDataURI"],
            format!("http://pacs.example:8080{inst}/bulkdata/7FE00010")
        );
        assert!(
            m["00091010"]["BulkDataURI"].is_string(),
            "large private binary is bulk"
        );
    }
    // The bulk data behind the URIs.
    let (status, ct, body) = call(&e.app, get(&format!("{inst}/bulkdata/7FE00010"), None)).await;
    assert_eq!(status, StatusCode::OK);
    let got = parts(&ct, &body);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1, frame_pixels(&s, 0));
    let (status, ct, body) = call(&e.app, get(&format!("{inst}/bulkdata/00091010"), None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(parts(&ct, &body)[0].1, vec![7u8; 3000]);
    // A client that takes only a single part gets the bare value.
    let single = Some("application/octet-stream");
    let (status, ct, body) = call(&e.app, get(&format!("{inst}/bulkdata/7FE00010"), single)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(ct.starts_with("application/octet-stream"), "{ct}");
    assert_eq!(body.to_vec(), frame_pixels(&s, 0));
    let (status, ct, body) = call(&e.app, get(&format!("{inst}/bulkdata/00091010"), single)).await;
    assert_eq!(
        (status, ct.as_str()),
        (StatusCode::OK, "application/octet-stream")
    );
    assert_eq!(body.to_vec(), vec![7u8; 3000]);
    let (status, _, _) = call(&e.app, get(&format!("{inst}/bulkdata/00091011"), None)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn metadata_reads_the_header_and_not_the_pixel_data() {
    let e = env().await;
    let mut s = Spec::new("1.2.826.0.1.99.1.1.7");
    (s.rows, s.cols) = (512, 512);
    assert_eq!(
        stow(&e.app, &[&noisy_instance(&s, 3)]).await.0,
        StatusCode::OK
    );
    let decoded = || e.engine.metrics().chunk_bytes_read.get();
    let inst = format!("{UID_PATH}/{}", s.sop);
    let before = decoded();
    let (status, _, body) = call(&e.app, get(&format!("{inst}/metadata"), None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&body)[0]["7FE00010"]["vr"], "OW");
    let header_only = decoded() - before;
    assert!(
        header_only < 64 * 1024,
        "metadata decoded {header_only} bytes of chunks (the pixel data alone is 512 KiB)"
    );
    let (status, _, _) = call(&e.app, get(&format!("{inst}/bulkdata/7FE00010"), None)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        decoded() - before >= 512 * 512 * 2,
        "the pixel data is read when asked for"
    );
}

#[tokio::test]
async fn metadata_of_more_instances_than_one_read_batch_lists_each_once() {
    let e = env().await;
    let n = super::super::wado::METADATA_BATCH * 2 + 3;
    let files: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let sop: &'static str = Box::leak(format!("1.2.826.0.1.99.1.1.{}", 100 + i).into());
            instance(&Spec::new(sop))
        })
        .collect();
    let refs: Vec<&[u8]> = files.iter().map(Vec::as_slice).collect();
    assert_eq!(stow(&e.app, &refs).await.0, StatusCode::OK);
    let (status, _, body) = call(&e.app, get("/studies/1.2.826.0.1.99.1/metadata", None)).await;
    assert_eq!(status, StatusCode::OK);
    let mut got: Vec<String> = json(&body)
        .as_array()
        .expect("array")
        .iter()
        .map(|m| {
            m["00080018"]["Value"][0]
                .as_str()
                .expect("SOP UID")
                .to_string()
        })
        .collect();
    got.sort();
    let mut want: Vec<String> = (0..n)
        .map(|i| format!("1.2.826.0.1.99.1.1.{}", 100 + i))
        .collect();
    want.sort();
    assert_eq!(got, want);
}

#[tokio::test]
async fn float_pixel_data_in_implicit_vr_is_bulk_data_under_its_own_tag() {
    let e = env().await;
    let s = Spec::new("1.2.826.0.1.99.1.1.8");
    let mut o = base_object(&s);
    o.put(DataElement::new(
        tags::BITS_ALLOCATED,
        VR::US,
        PrimitiveValue::from(32_u16),
    ));
    let floats: Vec<f32> = (0..12).map(|i| i as f32 * 0.5 - 1.0).collect();
    o.put(DataElement::new(
        tags::FLOAT_PIXEL_DATA,
        VR::OF,
        PrimitiveValue::F32(floats.clone().into()),
    ));
    let file = write(o, "1.2.840.10008.1.2");
    assert_eq!(stow(&e.app, &[&file]).await.0, StatusCode::OK);
    let inst = format!("{UID_PATH}/{}", s.sop);
    let (status, _, body) = call(&e.app, get(&format!("{inst}/metadata"), None)).await;
    assert_eq!(status, StatusCode::OK);
    let m = &json(&body)[0];
    assert_eq!(m["7FE00008"]["vr"], "OF");
    assert_eq!(
        m["7FE00008"]["BulkDataURI"],
        format!("http://pacs.example:8080{inst}/bulkdata/7FE00008")
    );
    assert!(m.get("7FE00010").is_none(), "{m}");
    let (status, ct, body) = call(&e.app, get(&format!("{inst}/bulkdata/7FE00008"), None)).await;
    assert_eq!(status, StatusCode::OK);
    let want: Vec<u8> = floats.iter().flat_map(|f| f.to_le_bytes()).collect();
    assert_eq!(parts(&ct, &body)[0].1, want);
}

#[tokio::test]
async fn frames_of_a_native_multiframe_instance() {
    let e = env().await;
    let mut s = Spec::new("1.2.826.0.1.99.1.1.5");
    s.frames = 2;
    assert_eq!(stow(&e.app, &[&instance(&s)]).await.0, StatusCode::OK);
    let inst = format!("{UID_PATH}/{}", s.sop);
    let octet = "multipart/related; type=\"application/octet-stream\"; transfer-syntax=*";
    for accept in [
        None,
        Some(octet),
        Some("multipart/related; type=\"application/octet-stream\""),
    ] {
        let (status, ct, body) = call(&e.app, get(&format!("{inst}/frames/2"), accept)).await;
        assert_eq!(status, StatusCode::OK);
        let got = parts(&ct, &body);
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0].0,
            "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"
        );
        assert_eq!(got[0].1, frame_pixels(&s, 1));
    }
    let (status, ct, body) = call(&e.app, get(&format!("{inst}/frames/2,1"), None)).await;
    assert_eq!(status, StatusCode::OK);
    let got = parts(&ct, &body);
    assert_eq!(
        (got[0].1.clone(), got[1].1.clone()),
        (frame_pixels(&s, 1), frame_pixels(&s, 0))
    );
    for bad in ["0", "1,x", "-1"] {
        let (status, _, _) = call(&e.app, get(&format!("{inst}/frames/{bad}"), None)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "frames/{bad}");
    }
    // A frame past the last one: not there.
    let (status, _, _) = call(&e.app, get(&format!("{inst}/frames/3"), None)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let jpeg = "multipart/related; type=\"image/jpeg\"";
    let (status, _, _) = call(&e.app, get(&format!("{inst}/frames/1"), Some(jpeg))).await;
    assert_eq!(status, StatusCode::NOT_ACCEPTABLE);
}

#[tokio::test]
async fn single_part_answers_and_the_accept_query_parameter() {
    let e = env().await;
    let s = Spec::new("1.2.826.0.1.99.1.1.1");
    let file = instance(&s);
    assert_eq!(stow(&e.app, &[&file]).await.0, StatusCode::OK);
    let uri = format!("{UID_PATH}/{}", s.sop);

    // One instance, one frame: single-part when only that is asked for.
    let (status, ct, body) = call(&e.app, get(&uri, Some("application/dicom"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ct, "application/dicom; transfer-syntax=1.2.840.10008.1.2.1");
    assert!(
        body == file,
        "the instance byte-exact, not in a multipart body"
    );
    let frame = format!("{uri}/frames/1");
    let (status, ct, body) = call(&e.app, get(&frame, Some("application/octet-stream"))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(ct.starts_with("application/octet-stream"), "{ct}");
    assert_eq!(body, frame_pixels(&s, 0));
    // A study stays multipart/related whatever is asked.
    let (_, ct, _) = call(
        &e.app,
        get("/studies/1.2.826.0.1.99.1", Some("application/dicom")),
    )
    .await;
    assert!(ct.starts_with("multipart/related"), "{ct}");

    // ?accept= takes the place of the Accept header (PS3.18 8.3.3.1).
    let jpeg =
        "multipart/related; type=\"application/dicom\"; transfer-syntax=1.2.840.10008.1.2.4.50";
    let q: String = form_urlencoded::byte_serialize(jpeg.as_bytes()).collect();
    let (status, _, _) = call(&e.app, get(&format!("{uri}?accept={q}"), Some(DICOM_ANY))).await;
    assert_eq!(
        status,
        StatusCode::NOT_ACCEPTABLE,
        "the parameter, not the header"
    );
    let (status, ct, body) = call(
        &e.app,
        get(&format!("{frame}?accept=application/octet-stream"), None),
    )
    .await;
    assert_eq!((status, body), (StatusCode::OK, frame_pixels(&s, 0)));
    assert!(ct.starts_with("application/octet-stream"), "{ct}");
}

#[tokio::test]
async fn an_encapsulated_document_is_sent_as_its_own_media_type() {
    let e = env().await;
    let pdf = b"%PDF-1.4\n% a report\n%%EOF\n".repeat(100);
    let mut o = InMemDicomObject::new_empty();
    let mut put = |t, vr, v: &str| o.put(DataElement::new(t, vr, PrimitiveValue::from(v)));
    put(tags::SOP_CLASS_UID, VR::UI, "1.2.840.10008.5.1.4.1.1.104.1");
    put(tags::SOP_INSTANCE_UID, VR::UI, "1.2.826.0.1.99.2.1.1");
    put(tags::STUDY_INSTANCE_UID, VR::UI, "1.2.826.0.1.99.2");
    put(tags::SERIES_INSTANCE_UID, VR::UI, "1.2.826.0.1.99.2.1");
    put(tags::PATIENT_ID, VR::LO, "P2");
    put(tags::MODALITY, VR::CS, "DOC");
    put(
        tags::MIME_TYPE_OF_ENCAPSULATED_DOCUMENT,
        VR::LO,
        "application/pdf",
    );
    o.put(DataElement::new(
        tags::ENCAPSULATED_DOCUMENT,
        VR::OB,
        PrimitiveValue::U8(pdf.clone().into()),
    ));
    let file = write(o, "1.2.840.10008.1.2.1");
    assert_eq!(stow(&e.app, &[&file]).await.0, StatusCode::OK);
    let bulk = "/studies/1.2.826.0.1.99.2/series/1.2.826.0.1.99.2.1/instances/1.2.826.0.1.99.2.1.1/bulkdata/00420011";
    let (status, ct, body) =
        call(&e.app, get(&format!("{bulk}?accept=application/pdf"), None)).await;
    assert_eq!((status, ct.as_str()), (StatusCode::OK, "application/pdf"));
    assert!(body == pdf, "the document as it is");
    let (status, ct, body) = call(
        &e.app,
        get(
            bulk,
            Some("multipart/related; type=\"application/octet-stream\""),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(parts(&ct, &body)[0].1 == pdf);
    assert_eq!(
        call(&e.app, get(bulk, Some("text/html"))).await.0,
        StatusCode::NOT_ACCEPTABLE
    );
}
