//! Rendered images and thumbnails, JPEG baseline frames, DELETE with
//! administrator credentials, and CORS.

use axum::http::{header, Method, StatusCode};
use base64::Engine as _;

use super::*;

fn decode_jpeg(b: &[u8]) -> (u16, u16, Vec<u8>) {
    let mut d = jpeg_decoder::Decoder::new(std::io::Cursor::new(b));
    let px = d.decode().expect("a JPEG");
    let info = d.info().expect("info");
    (info.width, info.height, px)
}

#[tokio::test]
async fn renders_native_frames_and_thumbnails() {
    let e = env().await;
    let mut s = Spec::new("1.2.826.0.1.99.1.1.1");
    (s.rows, s.cols, s.frames) = (200, 300, 2);
    assert_eq!(stow(&e.app, &[&instance(&s)]).await.0, StatusCode::OK);
    let inst = format!("{UID_PATH}/{}", s.sop);

    let (status, ct, body) = call(&e.app, get(&format!("{inst}/rendered"), None)).await;
    assert_eq!((status, ct.as_str()), (StatusCode::OK, "image/jpeg"));
    assert_eq!(decode_jpeg(&body).0, 300);
    let (status, ct, body) = call(
        &e.app,
        get(&format!("{inst}/frames/2/rendered"), Some("image/png")),
    )
    .await;
    assert_eq!((status, ct.as_str()), (StatusCode::OK, "image/png"));
    assert!(body.starts_with(b"\x89PNG\r\n\x1a\n"));
    let (status, _, body) = call(
        &e.app,
        get(&format!("{inst}/rendered?viewport=60,60&window=0,50"), None),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(decode_jpeg(&body).0, 60);

    for uri in [
        format!("{inst}/thumbnail"),
        "/studies/1.2.826.0.1.99.1/series/1.2.826.0.1.99.1.1/thumbnail".to_string(),
        "/studies/1.2.826.0.1.99.1/thumbnail".to_string(),
    ] {
        let (status, ct, body) = call(&e.app, get(&uri, None)).await;
        assert_eq!(
            (status, ct.as_str()),
            (StatusCode::OK, "image/jpeg"),
            "{uri}"
        );
        let (w, h, _) = decode_jpeg(&body);
        assert_eq!((w, h), (128, 85), "{uri}");
    }
    let (status, _, _) = call(&e.app, get(&format!("{inst}/rendered"), Some("image/gif"))).await;
    assert_eq!(status, StatusCode::NOT_ACCEPTABLE);
    let (status, _, _) = call(&e.app, get(&format!("{inst}/frames/3/rendered"), None)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn jpeg_baseline_frames_and_rendering() {
    let e = env().await;
    let (w, h) = (64u16, 48u16);
    let gray: Vec<u8> = (0..w as usize * h as usize)
        .map(|i| (i % 251) as u8)
        .collect();
    let mut jpg = Vec::new();
    jpeg_encoder::Encoder::new(&mut jpg, 90)
        .encode(&gray, w, h, jpeg_encoder::ColorType::Luma)
        .expect("encodes");
    let s = Spec::new("1.2.826.0.1.99.1.1.7");
    let file = jpeg_instance(&s, &jpg, w, h);
    assert_eq!(stow(&e.app, &[&file]).await.0, StatusCode::OK);
    let inst = format!("{UID_PATH}/{}", s.sop);
    let mut padded = jpg.clone();
    if padded.len() % 2 == 1 {
        padded.push(0);
    }

    let (status, ct, body) = call(&e.app, get(&format!("{inst}/frames/1"), None)).await;
    assert_eq!(status, StatusCode::OK);
    let got = parts(&ct, &body);
    assert_eq!(
        got[0].0,
        "image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.50"
    );
    assert_eq!(got[0].1, padded);
    // Compressed frames as octet-stream when the client takes any syntax (OHIF).
    let octet = "multipart/related; type=application/octet-stream; transfer-syntax=*";
    let (status, ct, body) = call(&e.app, get(&format!("{inst}/frames/1"), Some(octet))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(parts(&ct, &body)[0].1, padded);
    // Uncompressed frames asked for: the grayscale JPEG is decoded for them.
    let native_only = "multipart/related; type=\"application/octet-stream\"";
    let (status, ct, body) =
        call(&e.app, get(&format!("{inst}/frames/1"), Some(native_only))).await;
    assert_eq!(status, StatusCode::OK);
    let got = parts(&ct, &body);
    assert_eq!(
        got[0].0,
        "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"
    );
    assert_eq!(got[0].1, decode_jpeg(&jpg).2);

    // Rendered: the stored JPEG itself; PNG and thumbnails are decoded.
    let (status, _, body) = call(&e.app, get(&format!("{inst}/rendered"), None)).await;
    assert_eq!((status, body), (StatusCode::OK, padded.clone()));
    let (status, ct, _) = call(&e.app, get(&format!("{inst}/rendered"), Some("image/png"))).await;
    assert_eq!((status, ct.as_str()), (StatusCode::OK, "image/png"));
    let (status, _, body) = call(
        &e.app,
        get(&format!("{inst}/thumbnail?viewport=32,32"), None),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(decode_jpeg(&body).0, 32);

    let (_, _, body) = call(&e.app, get(&format!("{inst}/metadata"), None)).await;
    assert_eq!(json(&body)[0]["7FE00010"]["vr"], "OB");
}

fn delete(uri: &str, auth: Option<(&str, &str)>) -> Request<Body> {
    let mut b = Request::delete(uri);
    if let Some((u, p)) = auth {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
        b = b.header(header::AUTHORIZATION, format!("Basic {token}"));
    }
    b.body(Body::empty()).expect("request")
}

#[tokio::test]
async fn delete_needs_the_administrator() {
    let e = env().await;
    let a = instance(&Spec::new("1.2.826.0.1.99.1.1.1"));
    let b = instance(&Spec::new("1.2.826.0.1.99.1.1.2"));
    assert_eq!(stow(&e.app, &[&a, &b]).await.0, StatusCode::OK);
    let one = format!("{UID_PATH}/1.2.826.0.1.99.1.1.1");
    for auth in [None, Some(("admin", "wrong")), Some(("other", "s3cret"))] {
        let res = e
            .app
            .clone()
            .oneshot(delete(&one, auth))
            .await
            .expect("answers");
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
        assert!(res.headers().get(header::WWW_AUTHENTICATE).is_some());
    }
    let ok = Some(("admin", "s3cret"));
    assert_eq!(
        call(&e.app, delete(&one, ok)).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        call(&e.app, delete(&one, ok)).await.0,
        StatusCode::NOT_FOUND
    );
    let (_, _, body) = call(&e.app, get("/instances", None)).await;
    assert_eq!(json(&body).as_array().map(Vec::len), Some(1));
    let study = "/studies/1.2.826.0.1.99.1";
    assert_eq!(
        call(&e.app, delete(study, ok)).await.0,
        StatusCode::NO_CONTENT
    );
    let (_, _, body) = call(&e.app, get("/studies", None)).await;
    assert_eq!(json(&body), serde_json::json!([]));
    assert_eq!(
        call(&e.app, get(study, None)).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn cors_for_browser_viewers() {
    let e = env().await;
    let pre = Request::builder()
        .method(Method::OPTIONS)
        .uri("/studies")
        .header(header::ORIGIN, "http://viewer.example")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
        .header(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            "authorization, accept",
        )
        .body(Body::empty())
        .expect("request");
    let res = e.app.clone().oneshot(pre).await.expect("answers");
    assert!(res.status().is_success());
    let h = res.headers();
    assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    assert!(h[header::ACCESS_CONTROL_ALLOW_METHODS]
        .to_str()
        .expect("ascii")
        .contains("DELETE"));
    assert!(h[header::ACCESS_CONTROL_ALLOW_HEADERS]
        .to_str()
        .expect("ascii")
        .contains("authorization"));
    let res = e
        .app
        .clone()
        .oneshot(get("/studies", None))
        .await
        .expect("answers");
    assert_eq!(res.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    assert!(res.headers()[header::ACCESS_CONTROL_EXPOSE_HEADERS]
        .to_str()
        .expect("ascii")
        .contains("Location"));
    let res = e
        .app
        .clone()
        .oneshot(get("/nowhere", None))
        .await
        .expect("answers");
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(res.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
}
