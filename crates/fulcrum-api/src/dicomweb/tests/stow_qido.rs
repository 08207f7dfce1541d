//! STOW-RS (batches, bad input, status codes) and QIDO-RS.

use axum::http::StatusCode;

use super::*;

#[tokio::test]
async fn stow_stores_and_qido_finds_by_patient_id() {
    let e = env().await;
    let a = instance(&Spec::new("1.2.826.0.1.99.1.1.1"));
    let mut s2 = Spec::new("1.2.826.0.1.99.1.1.2");
    s2.frames = 2;
    let b = instance(&s2);
    let (status, res) = stow(&e.app, &[&a, &b]).await;
    assert_eq!(status, StatusCode::OK, "{res}");
    let refs = res["00081199"]["Value"]
        .as_array()
        .expect("ReferencedSOPSequence");
    assert_eq!(refs.len(), 2);
    assert_eq!(refs[0]["00081150"]["Value"][0], CT);
    assert_eq!(refs[0]["00081155"]["Value"][0], "1.2.826.0.1.99.1.1.1");
    assert_eq!(
        refs[0]["00081190"]["Value"][0],
        format!("http://pacs.example:8080{UID_PATH}/1.2.826.0.1.99.1.1.1")
    );
    assert_eq!(
        res["00081190"]["Value"][0],
        "http://pacs.example:8080/studies/1.2.826.0.1.99.1"
    );
    assert!(res.get("00081198").is_none());

    let (status, ct, body) = call(&e.app, get("/studies?PatientID=P1", None)).await;
    assert_eq!(
        (status, ct.as_str()),
        (StatusCode::OK, "application/dicom+json")
    );
    let found = json(&body);
    assert_eq!(found.as_array().map(Vec::len), Some(1));
    let study = &found[0];
    assert_eq!(study["0020000D"]["Value"][0], "1.2.826.0.1.99.1");
    assert_eq!(study["00100010"]["Value"][0]["Alphabetic"], "Doe^Jane");
    assert_eq!(
        study["00201208"]["Value"][0], 2,
        "NumberOfStudyRelatedInstances"
    );
    assert_eq!(
        study["00081190"]["Value"][0],
        "http://pacs.example:8080/studies/1.2.826.0.1.99.1"
    );

    // Nothing matches: 200 and an empty array.
    let (status, _, body) = call(&e.app, get("/studies?PatientID=nobody", None)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&body), serde_json::json!([]));

    // Every level, nested and not.
    for (uri, n) in [
        ("/studies/1.2.826.0.1.99.1/series", 1),
        ("/series?Modality=CT", 1),
        ("/studies/1.2.826.0.1.99.1/instances", 2),
        (
            "/studies/1.2.826.0.1.99.1/series/1.2.826.0.1.99.1.1/instances",
            2,
        ),
        ("/instances?SOPInstanceUID=1.2.826.0.1.99.1.1.2", 1),
        ("/instances?limit=1&offset=1", 1),
        ("/studies?PatientName=doe&fuzzymatching=true", 1),
        ("/studies?StudyDate=20240101-20240201&includefield=all", 1),
    ] {
        let (status, _, body) = call(&e.app, get(uri, Some("application/dicom+json"))).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        assert_eq!(json(&body).as_array().map(Vec::len), Some(n), "{uri}");
    }
    let (_, _, body) = call(
        &e.app,
        get("/instances?SOPInstanceUID=1.2.826.0.1.99.1.1.2", None),
    )
    .await;
    let inst = &json(&body)[0];
    assert_eq!(inst["00280008"]["Value"][0], 2, "NumberOfFrames");
    assert_eq!(
        inst["00081190"]["Value"][0],
        format!("http://pacs.example:8080{UID_PATH}/1.2.826.0.1.99.1.1.2")
    );

    for uri in [
        "/studies?limit=x",
        "/series?includefield=Nope",
        "/studies?StudyDate=bad",
        "/studies?StudyDate=2020-01-01",
        "/studies?StudyDate=20200101-2021",
    ] {
        let (status, ct, body) = call(&e.app, get(uri, None)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(ct, "application/json");
        assert!(json(&body)["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    // A series attribute matches studies relationally (it was a 400).
    for (modality, n) in [("CT", 1), ("MR", 0)] {
        let (status, _, body) =
            call(&e.app, get(&format!("/studies?Modality={modality}"), None)).await;
        assert_eq!(status, StatusCode::OK, "{modality}");
        assert_eq!(json(&body).as_array().map(Vec::len), Some(n), "{modality}");
    }
    let (status, _, _) = call(&e.app, get("/studies", Some("application/dicom+xml"))).await;
    assert_eq!(status, StatusCode::NOT_ACCEPTABLE);
}

#[tokio::test]
async fn mixed_batch_is_202_and_names_the_failures() {
    let e = env().await;
    let good = instance(&Spec::new("1.2.826.0.1.99.1.1.10"));
    let (status, res) = stow(&e.app, &[b"this is not DICOM", &good]).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{res}");
    assert_eq!(res["00081199"]["Value"].as_array().map(Vec::len), Some(1));
    let failed = &res["00081198"]["Value"][0];
    assert_eq!(failed["00081197"]["Value"][0], 0xC000);

    // A truncated instance fails but names itself from its file meta.
    let mut cut = instance(&Spec::new("1.2.826.0.1.99.1.1.11"));
    cut.truncate(cut.len() - 10);
    let (status, res) = stow(&e.app, &[&cut]).await;
    assert_eq!(status, StatusCode::CONFLICT, "{res}");
    let failed = &res["00081198"]["Value"][0];
    assert_eq!(failed["00081155"]["Value"][0], "1.2.826.0.1.99.1.1.11");
    assert_eq!(failed["00081197"]["Value"][0], 0xC000);
    // Nothing of it was indexed.
    let (_, _, body) = call(
        &e.app,
        get("/instances?SOPInstanceUID=1.2.826.0.1.99.1.1.11", None),
    )
    .await;
    assert_eq!(json(&body), serde_json::json!([]));

    // STOW into another study: the instance does not belong there.
    let other = instance(&Spec::new("1.2.826.0.1.99.1.1.12"));
    let (status, _, body) = call(
        &e.app,
        post("/studies/9.9.9", &stow_type(), multipart(&[&other])),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        json(&body)["00081198"]["Value"][0]["00081197"]["Value"][0],
        0xA900
    );

    // A bare application/dicom body is one instance.
    let (status, _, body) =
        call(&e.app, post("/studies", "application/dicom", other.clone())).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    // The same bytes again: stored already, still a success.
    let (status, _) = stow(&e.app, &[&other]).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn bad_requests_get_400_and_415() {
    let e = env().await;
    let one = instance(&Spec::new("1.2.826.0.1.99.1.1.20"));
    let cases: Vec<(&str, String, Vec<u8>, StatusCode)> = vec![
        (
            "no boundary in body",
            stow_type(),
            b"garbage without delimiters".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "empty body",
            stow_type(),
            Vec::new(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "no boundary parameter",
            "multipart/related; type=\"application/dicom\"".into(),
            multipart(&[&one]),
            StatusCode::BAD_REQUEST,
        ),
        (
            "wrong type",
            "text/plain".into(),
            one.clone(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "metadata STOW",
            format!("multipart/related; type=\"application/dicom+json\"; boundary={BOUNDARY}"),
            multipart(&[&one]),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "no content type",
            String::new(),
            one.clone(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
    ];
    for (what, ct, body, want) in cases {
        let mut req = post("/studies", &ct, body);
        if ct.is_empty() {
            req.headers_mut().remove(header::CONTENT_TYPE);
        }
        let (status, ct, body) = call(&e.app, req).await;
        assert_eq!(status, want, "{what}: {}", String::from_utf8_lossy(&body));
        assert_eq!(ct, "application/json", "{what}");
    }
    // Nothing was stored by any of them.
    let (_, _, body) = call(&e.app, get("/instances", None)).await;
    assert_eq!(json(&body), serde_json::json!([]));
}
