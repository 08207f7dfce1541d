//! Retention and WORM behaviour on every target (fs + SQLite; S3 +
//! PostgreSQL under scripts/test.sh): deletes and overwrites refused under
//! retention or legal hold, governance bypass, compliance never shortened,
//! bucket default retention, configured policies with a metadata anchor,
//! and GC keeping every chunk of a protected object.

mod common;

use std::collections::BTreeMap;

use common::{no_grace, noise, read_all, targets};
use fulcrum_engine::{
    BucketLock, CatalogError, DefaultRetention, Engine, EngineError, LockMode, ObjectLock,
    PutOptions, Retention, RetentionRule,
};

const T: &str = "default";
const DAY: i64 = 86_400_000;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn retained(mode: LockMode, days: i64) -> ObjectLock {
    ObjectLock {
        retention: Some(Retention {
            mode,
            until_ms: now() + days * DAY,
        }),
        legal_hold: false,
    }
}

async fn put(
    e: &Engine,
    bucket: &str,
    key: &str,
    data: &[u8],
    lock: ObjectLock,
) -> Result<(), EngineError> {
    let opts = PutOptions {
        lock,
        ..Default::default()
    };
    e.put_object(T, bucket, key, data, opts).await.map(|_| ())
}

fn is_locked(r: Result<impl std::fmt::Debug, EngineError>) -> String {
    match r {
        Err(EngineError::Catalog(CatalogError::ObjectLocked { reason, .. })) => reason,
        other => panic!("expected ObjectLocked, got {other:?}"),
    }
}

#[tokio::test]
async fn governance_and_compliance_refuse_deletes() {
    for t in targets().await {
        let e = t.open().await;
        e.create_bucket(T, "b").await.expect("bucket");
        put(
            &e,
            "b",
            "gov",
            b"governed",
            retained(LockMode::Governance, 1),
        )
        .await
        .expect("put gov");
        put(
            &e,
            "b",
            "comp",
            b"complied",
            retained(LockMode::Compliance, 1),
        )
        .await
        .expect("put comp");

        let why = is_locked(e.delete_object(T, "b", "gov").await);
        assert!(
            why.contains("GOVERNANCE retention until"),
            "{}: {why}",
            t.name
        );
        let why = is_locked(e.delete_object_with(T, "b", "comp", true).await);
        assert!(
            why.contains("COMPLIANCE retention until"),
            "{}: {why}",
            t.name
        );
        // Compliance is never shortened or removed, even with the bypass;
        // extending it is allowed.
        is_locked(e.set_object_retention(T, "b", "comp", None, true).await);
        let later = retained(LockMode::Compliance, 2).retention;
        e.set_object_retention(T, "b", "comp", later, false)
            .await
            .expect("extend compliance");
        is_locked(
            e.set_object_retention(
                T,
                "b",
                "comp",
                retained(LockMode::Compliance, 1).retention,
                true,
            )
            .await,
        );
        assert_eq!(
            e.head_object(T, "b", "comp")
                .await
                .expect("head")
                .lock
                .retention,
            later
        );
        // Governance: shortening needs the bypass; a bypassing delete works.
        is_locked(e.set_object_retention(T, "b", "gov", None, false).await);
        assert!(e
            .delete_object_with(T, "b", "gov", true)
            .await
            .expect("bypass delete"));
        assert!(e.head_object(T, "b", "gov").await.is_err(), "{}", t.name);
        assert_eq!(
            read_all(&e, "b", "comp").await.expect("still there"),
            b"complied"
        );
        // A bucket holding a retained object cannot be deleted.
        assert!(e.delete_bucket(T, "b").await.is_err(), "{}", t.name);
        e.close().await;
    }
}

#[tokio::test]
async fn legal_hold_blocks_until_released() {
    for t in targets().await {
        let e = t.open().await;
        e.create_bucket(T, "b").await.expect("bucket");
        put(&e, "b", "k", b"held", ObjectLock::default())
            .await
            .expect("put");
        e.set_legal_hold(T, "b", "k", true).await.expect("hold");
        let why = is_locked(e.delete_object_with(T, "b", "k", true).await);
        assert!(why.contains("legal hold"), "{why}");
        e.set_legal_hold(T, "b", "k", false).await.expect("release");
        assert!(e
            .delete_object(T, "b", "k")
            .await
            .expect("delete after release"));
        e.close().await;
    }
}

#[tokio::test]
async fn overwrites_are_refused_unless_identical_and_gc_keeps_retained_chunks() {
    for t in targets().await {
        let e = t.open().await;
        e.create_bucket(T, "b").await.expect("bucket");
        let data = noise(3 * 1024 * 1024, 7);
        put(&e, "b", "k", &data, retained(LockMode::Compliance, 1))
            .await
            .expect("put");
        // A different body would destroy the retained bytes: refused, by
        // PUT, copy and multipart completion alike.
        is_locked(put(&e, "b", "k", b"other", ObjectLock::default()).await);
        put(&e, "b", "src", b"other", ObjectLock::default())
            .await
            .expect("src");
        is_locked(
            e.copy_object(T, ("b", "src"), ("b", "k"), None, ObjectLock::default())
                .await,
        );
        let id = e
            .create_upload(T, "b", "k", None, BTreeMap::new(), ObjectLock::default())
            .await
            .expect("create upload");
        let etag = e
            .upload_part(T, ("b", "k"), &id, 1, &b"x"[..], PutOptions::default())
            .await
            .expect("part");
        is_locked(e.complete_upload(T, ("b", "k"), &id, &[(1, etag)]).await);
        // The same bytes again (new metadata) keep the protection.
        let before = e.head_object(T, "b", "k").await.expect("head").lock;
        let mut opts = PutOptions::default();
        opts.metadata.insert("note".into(), "re-sent".into());
        e.put_object(T, "b", "k", &data[..], opts)
            .await
            .expect("identical re-put");
        let after = e.head_object(T, "b", "k").await.expect("head");
        assert_eq!(after.lock, before, "{}", t.name);
        assert_eq!(
            after.metadata.get("note").map(String::as_str),
            Some("re-sent")
        );
        // GC collects only unreferenced chunks: the retained object stays whole.
        e.gc(&no_grace()).await.expect("gc");
        assert_eq!(
            read_all(&e, "b", "k").await.expect("read after gc"),
            data,
            "{}",
            t.name
        );
        e.close().await;
    }
}

#[tokio::test]
async fn bucket_default_retention_applies_to_new_objects() {
    for t in targets().await {
        let e = t.open().await;
        e.create_bucket(T, "b").await.expect("bucket");
        let lock = BucketLock {
            enabled: true,
            default: Some(DefaultRetention {
                mode: LockMode::Governance,
                days: 3,
                years: 0,
            }),
        };
        e.set_bucket_lock(T, "b", &lock).await.expect("lock config");
        assert_eq!(e.bucket_lock(T, "b").await.expect("get config"), lock);
        let t0 = now();
        put(&e, "b", "k", b"x", ObjectLock::default())
            .await
            .expect("put");
        let r = e
            .head_object(T, "b", "k")
            .await
            .expect("head")
            .lock
            .retention
            .expect("default applied");
        assert_eq!(r.mode, LockMode::Governance);
        assert!(
            (r.until_ms - (t0 + 3 * DAY)).abs() < 60_000,
            "{}: {r:?}",
            t.name
        );
        // An explicit retention wins over the default.
        put(&e, "b", "c", b"y", retained(LockMode::Compliance, 10))
            .await
            .expect("put explicit");
        let r = e
            .head_object(T, "b", "c")
            .await
            .expect("head")
            .lock
            .retention
            .expect("explicit");
        assert_eq!(r.mode, LockMode::Compliance);
        e.close().await;
    }
}

#[tokio::test]
async fn configured_policy_anchors_on_metadata_and_only_extends() {
    let rule: RetentionRule = toml::from_str::<BTreeMap<String, Vec<RetentionRule>>>(
        "[[retention]]\nbucket = \"outpatient\"\nmode = \"compliance\"\nyears = 15\nanchor = \"meta:last-visit\"",
    )
    .expect("rule")
    .remove("retention")
    .and_then(|mut v| v.pop())
    .expect("one rule");
    for t in targets().await {
        let mut cfg = t.cfg.clone();
        cfg.retention = vec![rule.clone()];
        let e = Engine::open(cfg).await.expect("engine");
        e.create_bucket(T, "outpatient").await.expect("bucket");
        let visit = |d: &str| PutOptions {
            metadata: BTreeMap::from([("last-visit".to_string(), d.to_string())]),
            ..Default::default()
        };
        e.put_object(T, "outpatient", "p1", &b"record"[..], visit("2020-01-15"))
            .await
            .expect("put");
        let until = |e: Engine| async move {
            let r = e
                .head_object(T, "outpatient", "p1")
                .await
                .expect("head")
                .lock
                .retention;
            r.map(|r| (r.mode, fulcrum_engine::retention::iso_ms(r.until_ms)))
        };
        assert_eq!(
            until(e.clone()).await,
            Some((LockMode::Compliance, "2035-01-15T00:00:00Z".to_string())),
            "{}",
            t.name
        );
        is_locked(e.delete_object_with(T, "outpatient", "p1", true).await);
        // A later visit (same record, new date) extends; an older date
        // never shortens.
        e.put_object(T, "outpatient", "p1", &b"record"[..], visit("2021-06-01"))
            .await
            .expect("newer visit");
        e.put_object(T, "outpatient", "p1", &b"record"[..], visit("2019-01-01"))
            .await
            .expect("older visit");
        assert_eq!(
            until(e.clone()).await,
            Some((LockMode::Compliance, "2036-06-01T00:00:00Z".to_string())),
            "{}",
            t.name
        );
        // Other buckets are not covered.
        e.create_bucket(T, "scratch").await.expect("bucket");
        e.put_object(T, "scratch", "p1", &b"x"[..], visit("2021-06-01"))
            .await
            .expect("put");
        assert!(e.delete_object(T, "scratch", "p1").await.expect("delete"));
        e.close().await;
    }
}
