//! The engine's behaviour suite: every test runs against every target
//! (filesystem + SQLite, and S3 + PostgreSQL when available).

mod common;

use std::collections::BTreeMap;

use common::{no_grace, noise, read_all, targets};
use fulcrum_catalog::{ObjectWrite, Write};
use fulcrum_engine::{
    BodyRegion, CatalogError, ChunkParams, ContentDigest, DeleteCondition, EngineError, MasterKey,
    PutOptions, StageBatch, WriteCondition,
};
use futures::StreamExt;

const T: &str = "default";

fn opts() -> PutOptions {
    PutOptions::default()
}

#[tokio::test]
async fn objects_round_trip_byte_exact_with_ranges() {
    for t in targets().await {
        let e = t.open().await;
        e.create_bucket(T, "b").await.expect("bucket");
        let compressible = b"DICOM header PatientName^Test ".repeat(700_000);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", Vec::new()),
            ("small", noise(1000, 1)),
            ("noise-9m", noise(9 * 1024 * 1024 + 5, 2)),
            ("text-20m", compressible),
        ];
        for (key, data) in &cases {
            let mut o = opts();
            o.metadata = BTreeMap::from([("patient".to_string(), "anon".to_string())]);
            o.content_type = Some("application/octet-stream".into());
            o.expected_len = Some(data.len() as u64);
            let stored = e.put_object(T, "b", key, &data[..], o).await.expect("put");
            assert_eq!(stored.size, data.len() as u64, "{}", t.name);
            let info = e.head_object(T, "b", key).await.expect("head");
            assert_eq!((info.size, &info.etag), (stored.size, &stored.etag));
            assert_eq!(
                info.metadata.get("patient").map(String::as_str),
                Some("anon")
            );
            assert_eq!(
                &read_all(&e, "b", key).await.expect("get"),
                data,
                "{} {key}",
                t.name
            );
            if data.len() > 3_000_000 {
                let info = e.head_object(T, "b", key).await.expect("head");
                let mut s = e
                    .read_object(&info, 1_000_001, 3_000_000)
                    .await
                    .expect("range");
                let mut got = Vec::new();
                while let Some(b) = s.next().await {
                    got.extend_from_slice(&b.expect("range bytes"));
                }
                assert_eq!(got, data[1_000_001..3_000_000], "{} range of {key}", t.name);
            }
        }
        let stats = e.stats().await.expect("stats");
        assert!(
            stats.compression_ratio > 1.5,
            "{}: text should compress: {stats:?}",
            t.name
        );
        let listed = e.list_objects(T, "b", "", "", 100).await.expect("list");
        assert_eq!(listed.len(), 4);
    }
}

#[tokio::test]
async fn identical_and_edited_copies_are_deduplicated() {
    for t in targets().await {
        let e = t.open().await;
        e.create_bucket(T, "b").await.expect("bucket");
        let a = noise(40 * 1024 * 1024, 3);
        e.put_object(T, "b", "a", &a[..], opts())
            .await
            .expect("put a");
        let before = e.stats().await.expect("stats").physical_bytes;
        e.put_object(T, "b", "a-again", &a[..], opts())
            .await
            .expect("put copy");
        let after_same = e.stats().await.expect("stats").physical_bytes;
        assert!(
            ((after_same - before) as f64) < before as f64 * 0.01,
            "{}: {before} -> {after_same}",
            t.name
        );
        let mut b = a.clone();
        for x in &mut b[20_000_000..20_001_024] {
            *x = x.wrapping_add(1);
        }
        e.put_object(T, "b", "a-edited", &b[..], opts())
            .await
            .expect("put edit");
        let after_edit = e.stats().await.expect("stats").physical_bytes;
        assert!(
            ((after_edit - after_same) as f64) < before as f64 * 0.05,
            "{}: {after_same} -> {after_edit}",
            t.name
        );
        assert_eq!(read_all(&e, "b", "a-edited").await.expect("get"), b);
        // A copy shares every chunk.
        e.copy_object(T, ("b", "a"), ("b", "a-copy"), None, Default::default())
            .await
            .expect("copy");
        assert_eq!(e.stats().await.expect("stats").physical_bytes, after_edit);
        assert_eq!(read_all(&e, "b", "a-copy").await.expect("get copy"), a);
    }
}

#[tokio::test]
async fn concurrent_small_writes_share_commits_and_packs() {
    for t in targets().await {
        let e = t.open().await;
        e.create_bucket(T, "b").await.expect("bucket");
        let mut tasks = Vec::new();
        for w in 0..16u64 {
            let e = e.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..25u64 {
                    let data = noise(10_000, w * 1000 + i);
                    e.put_object(
                        T,
                        "b",
                        &format!("w{w}/o{i}"),
                        &data[..],
                        PutOptions::default(),
                    )
                    .await
                    .expect("put");
                }
            }));
        }
        for task in tasks {
            task.await.expect("writer task");
        }
        let stats = e.stats().await.expect("stats");
        assert_eq!(stats.catalog.objects, 400, "{}", t.name);
        assert!(
            stats.catalog.packs < 400,
            "{}: {} packs for 400 objects: no group commit",
            t.name,
            stats.catalog.packs
        );
        for w in [0u64, 7, 15] {
            assert_eq!(
                read_all(&e, "b", &format!("w{w}/o24")).await.expect("get"),
                noise(10_000, w * 1000 + 24)
            );
        }
    }
}

#[tokio::test]
async fn mid_sized_writes_are_persisted_together_before_their_commit() {
    // 300 KiB bodies: too small to stream packs of their own, large enough
    // to be written by the persister when their ingest ends.
    for t in targets().await {
        let e = t.open().await;
        e.create_bucket(T, "b").await.expect("bucket");
        let mut tasks = Vec::new();
        for w in 0..8u64 {
            let e = e.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..4u64 {
                    let data = noise(300 * 1024, w * 100 + i);
                    let key = format!("m{w}/{i}");
                    e.put_object(T, "b", &key, &data[..], PutOptions::default())
                        .await
                        .expect("put");
                }
            }));
        }
        for task in tasks {
            task.await.expect("writer task");
        }
        let stats = e.stats().await.expect("stats");
        assert_eq!(stats.catalog.objects, 32, "{}", t.name);
        assert!(
            stats.catalog.packs < 32,
            "{}: {} packs for 32 concurrent writes",
            t.name,
            stats.catalog.packs
        );
        for (w, i) in [(0u64, 0u64), (3, 2), (7, 3)] {
            assert_eq!(
                read_all(&e, "b", &format!("m{w}/{i}")).await.expect("get"),
                noise(300 * 1024, w * 100 + i)
            );
        }
        assert!(e.verify(&mut ()).await.expect("verify").is_clean());
    }
}

#[tokio::test]
async fn bodies_staged_in_one_batch_share_a_pack_and_read_back_exact() {
    // 300 KiB incompressible bodies: tails big enough for the batch's pack.
    // The last one is staged but never committed: its chunks are garbage.
    for t in targets().await {
        let e = t.open().await;
        e.create_bucket(T, "b").await.expect("bucket");
        let bucket = e.bucket(T, "b").await.expect("bucket row");
        let batch = StageBatch::default();
        let bodies: Vec<Vec<u8>> = (0..6).map(|i| noise(300 * 1024, 900 + i)).collect();
        let mut staged = Vec::new();
        for body in &bodies {
            let region = BodyRegion::new(&body[..], ChunkParams::BULK);
            let s = e
                .stage(vec![region], ContentDigest::Md5, Some(&batch))
                .await
                .expect("stage");
            staged.push(s);
        }
        staged.pop();
        let commits = staged.into_iter().enumerate().map(|(i, s)| {
            let w = ObjectWrite {
                bucket_id: bucket.id,
                key: format!("k{i}"),
                size: s.size() as i64,
                etag: s.etag(),
                content_type: None,
                metadata: "{}".into(),
                chunks: Vec::new(),
                completes_upload: None,
                lock: Default::default(),
                condition: None,
            };
            e.commit_staged(s, Write::Object(w))
        });
        for r in futures::future::join_all(commits).await {
            r.expect("commit");
        }
        let stats = e.stats().await.expect("stats");
        assert_eq!(stats.catalog.objects, 5, "{}", t.name);
        assert_eq!(stats.catalog.packs, 1, "{}: one shared pack", t.name);
        for round in ["before gc", "after gc"] {
            for (i, body) in bodies.iter().take(5).enumerate() {
                let got = read_all(&e, "b", &format!("k{i}")).await.expect("get");
                assert!(&got == body, "{}: k{i} {round}", t.name);
            }
            e.gc(&no_grace()).await.expect("gc");
        }
        assert!(e.verify(&mut ()).await.expect("verify").is_clean());
    }
}

#[tokio::test]
async fn multipart_uploads_join_parts_and_abort_cleanly() {
    for t in targets().await {
        let e = t.open().await;
        e.create_bucket(T, "b").await.expect("bucket");
        let p1 = noise(5 * 1024 * 1024, 10);
        let p2 = noise(1234, 11);
        let id = e
            .create_upload(T, "b", "mp", None, BTreeMap::new(), Default::default())
            .await
            .expect("create");
        let e1 = e
            .upload_part(T, ("b", "mp"), &id, 1, &p1[..], opts())
            .await
            .expect("part 1");
        let e2 = e
            .upload_part(T, ("b", "mp"), &id, 2, &p2[..], opts())
            .await
            .expect("part 2");
        let (_, parts) = e.list_parts(T, ("b", "mp"), &id).await.expect("list parts");
        assert_eq!(parts.len(), 2);
        // The ID with another key names no upload: nothing acts on this one.
        let none = |r: Result<(), EngineError>| {
            matches!(r, Err(EngineError::Catalog(CatalogError::NoSuchUpload(_))))
        };
        let other = ("b", "other");
        let part = e.upload_part(T, other, &id, 1, &b"x"[..], opts()).await;
        assert!(none(part.map(|_| ())));
        assert!(none(e.list_parts(T, other, &id).await.map(|_| ())));
        let done = e.complete_upload(T, other, &id, &[(1, e1.clone())]).await;
        assert!(none(done.map(|_| ())));
        assert!(none(e.abort_upload(T, other, &id).await));
        let (_, parts) = e.list_parts(T, ("b", "mp"), &id).await.expect("list parts");
        assert_eq!(
            parts.iter().map(|p| p.size).collect::<Vec<_>>(),
            [5 * 1024 * 1024, 1234]
        );
        // Out of order and wrong ETags are rejected.
        assert!(e
            .complete_upload(T, ("b", "mp"), &id, &[(2, e2.clone()), (1, e1.clone())])
            .await
            .is_err());
        assert!(e
            .complete_upload(T, ("b", "mp"), &id, &[(1, "00".into()), (2, e2.clone())])
            .await
            .is_err());
        let parts = [(1, e1), (2, e2)];
        let info = e
            .complete_upload(T, ("b", "mp"), &id, &parts)
            .await
            .expect("complete");
        assert!(info.etag.ends_with("-2"));
        assert_eq!(
            read_all(&e, "b", "mp").await.expect("get"),
            [p1, p2].concat()
        );
        // A retried completion finds the object the upload made, until
        // something else replaces it.
        let retried = e.complete_upload(T, ("b", "mp"), &id, &parts).await;
        assert!(
            matches!(
                retried,
                Err(EngineError::Catalog(CatalogError::NoSuchUpload(_)))
            ),
            "{}: the upload is gone once completed",
            t.name
        );
        let again = e
            .completed_by(T, "b", "mp", &id)
            .await
            .expect("completed by")
            .expect("the upload made the object");
        assert_eq!(again.etag, info.etag);
        assert!(e
            .completed_by(T, "b", "mp", "another-upload")
            .await
            .expect("completed by")
            .is_none());
        e.put_object(T, "b", "mp", &b"replaced"[..], opts())
            .await
            .expect("overwrite");
        assert!(e
            .completed_by(T, "b", "mp", &id)
            .await
            .expect("completed by")
            .is_none());
        assert!(e.list_uploads(T, "b").await.expect("uploads").is_empty());
        // Abort leaves nothing behind after GC.
        let id = e
            .create_upload(T, "b", "gone", None, BTreeMap::new(), Default::default())
            .await
            .expect("create");
        e.upload_part(T, ("b", "gone"), &id, 1, &noise(100_000, 12)[..], opts())
            .await
            .expect("part");
        e.abort_upload(T, ("b", "gone"), &id).await.expect("abort");
        let chunks_before = e.stats().await.expect("stats").catalog.chunks;
        e.gc(&no_grace()).await.expect("gc");
        assert!(
            e.stats().await.expect("stats").catalog.chunks < chunks_before,
            "{}",
            t.name
        );
    }
}

#[tokio::test]
async fn gc_aborts_uploads_abandoned_for_a_week() {
    for t in targets().await {
        let e = t.open().await;
        e.create_bucket(T, "b").await.expect("bucket");
        let mut ids = Vec::new();
        for (key, seed) in [("abandoned", 14), ("recent", 15)] {
            let id = e
                .create_upload(T, "b", key, None, BTreeMap::new(), Default::default())
                .await
                .expect("create");
            e.upload_part(T, ("b", key), &id, 1, &noise(100_000, seed)[..], opts())
                .await
                .expect("part");
            ids.push(id);
        }
        // The first began eight days ago (a client killed mid-upload).
        let mut c = t.catalog_sql().await;
        sqlx::query("UPDATE uploads SET created_at = created_at - $1 WHERE id = $2")
            .bind(8 * 24 * 3600 * 1000_i64)
            .bind(&ids[0])
            .execute(&mut c)
            .await
            .expect("backdate");
        let chunks_before = e.stats().await.expect("stats").catalog.chunks;
        let r = e.gc(&no_grace()).await.expect("gc");
        assert_eq!(r.aborted_uploads, 1, "{}", t.name);
        let left: Vec<String> = e
            .list_uploads(T, "b")
            .await
            .expect("uploads")
            .into_iter()
            .map(|u| u.key)
            .collect();
        assert_eq!(left, ["recent"], "{}", t.name);
        assert!(e.stats().await.expect("stats").catalog.chunks < chunks_before);
        e.complete_upload(
            T,
            ("b", "recent"),
            &ids[1],
            &[(
                1,
                e.list_parts(T, ("b", "recent"), &ids[1])
                    .await
                    .expect("parts")
                    .1[0]
                    .etag
                    .clone(),
            )],
        )
        .await
        .expect("the recent upload completes");
    }
}

#[tokio::test]
async fn gc_frees_deleted_data_and_keeps_live_data() {
    for t in targets().await {
        let e = t.open().await;
        e.create_bucket(T, "b").await.expect("bucket");
        let keep = noise(3 * 1024 * 1024, 20);
        for i in 0..4 {
            e.put_object(
                T,
                "b",
                &format!("gone{i}"),
                &noise(3 * 1024 * 1024, 30 + i)[..],
                opts(),
            )
            .await
            .expect("put");
        }
        e.put_object(T, "b", "keep", &keep[..], opts())
            .await
            .expect("put keep");
        let before = e.stats().await.expect("stats");
        for i in 0..4 {
            assert!(e
                .delete_object(T, "b", &format!("gone{i}"))
                .await
                .expect("delete"));
        }
        let report = e.gc(&no_grace()).await.expect("gc");
        assert!(report.deleted_chunks > 0, "{}: {report:?}", t.name);
        assert!(
            report.retired_packs >= 4 && report.deleted_packs >= 4,
            "{}: {report:?}",
            t.name
        );
        let after = e.stats().await.expect("stats");
        assert!(
            after.physical_bytes < before.physical_bytes / 3,
            "{}: {} -> {}",
            t.name,
            before.physical_bytes,
            after.physical_bytes
        );
        assert_eq!(read_all(&e, "b", "keep").await.expect("get keep"), keep);
        assert!(e.verify(&mut ()).await.expect("verify").is_clean());
        // A second pass finds nothing more to do and keeps everything live.
        e.gc(&no_grace()).await.expect("gc again");
        assert_eq!(read_all(&e, "b", "keep").await.expect("get keep"), keep);
    }
}

#[tokio::test]
async fn an_overwrite_replaces_the_chunk_list_and_gc_frees_the_old_version() {
    for t in targets().await {
        let e = t.open().await;
        e.create_bucket(T, "b").await.expect("bucket");
        let (old, new) = (noise(3 * 1024 * 1024, 40), noise(3 * 1024 * 1024, 41));
        e.put_object(T, "b", "x", &old[..], opts())
            .await
            .expect("put");
        e.put_object(T, "b", "x", &new[..], opts())
            .await
            .expect("overwrite");
        assert_eq!(read_all(&e, "b", "x").await.expect("get"), new);
        let report = e.gc(&no_grace()).await.expect("gc");
        assert!(report.deleted_chunks > 0, "{}: {report:?}", t.name);
        let after = e.stats().await.expect("stats");
        assert!(
            after.physical_bytes < (new.len() as i64) * 5 / 4,
            "{}: the replaced version still takes space: {} bytes",
            t.name,
            after.physical_bytes
        );
        assert_eq!(read_all(&e, "b", "x").await.expect("get"), new);
        assert!(e.verify(&mut ()).await.expect("verify").is_clean());
    }
}

#[tokio::test]
async fn gc_never_collects_chunks_an_inflight_write_relies_on() {
    use tokio::io::AsyncWriteExt;
    for t in targets().await {
        let e = t.open().await;
        e.create_bucket(T, "b").await.expect("bucket");
        let a = noise(12 * 1024 * 1024, 40);
        e.put_object(T, "b", "a", &a[..], opts())
            .await
            .expect("put a");
        // B starts with A's bytes: its chunks dedup against A's.
        let (mut w, r) = tokio::io::duplex(1 << 20);
        let writer = {
            let e = e.clone();
            tokio::spawn(async move { e.put_object(T, "b", "b", r, PutOptions::default()).await })
        };
        w.write_all(&a).await.expect("feed");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        // A is deleted and GC runs while B is still in flight.
        e.delete_object(T, "b", "a").await.expect("delete a");
        e.gc(&no_grace()).await.expect("gc during write");
        let tail = noise(100_000, 41);
        w.write_all(&tail).await.expect("feed tail");
        drop(w);
        writer.await.expect("task").expect("put b succeeds");
        assert_eq!(
            read_all(&e, "b", "b").await.expect("get b"),
            [a, tail].concat(),
            "{}",
            t.name
        );
        e.gc(&no_grace()).await.expect("gc after");
        assert!(
            e.verify(&mut ()).await.expect("verify").is_clean(),
            "{}",
            t.name
        );
        assert!(read_all(&e, "b", "b").await.is_ok());
    }
}

#[tokio::test]
async fn truncated_and_oversized_bodies_leave_nothing() {
    for t in targets().await {
        let mut cfg = t.cfg.clone();
        cfg.max_object_size = 2 * 1024 * 1024;
        let e = fulcrum_engine::Engine::open(cfg).await.expect("open");
        e.create_bucket(T, "b").await.expect("bucket");
        let data = noise(1024 * 1024, 50);
        let mut o = opts();
        o.expected_len = Some(2 * 1024 * 1024);
        let err = e
            .put_object(T, "b", "short", &data[..], o)
            .await
            .expect_err("short body");
        assert!(matches!(err, EngineError::IncompleteBody { .. }), "{err}");
        let big = noise(3 * 1024 * 1024, 51);
        let err = e
            .put_object(T, "b", "big", &big[..], opts())
            .await
            .expect_err("too large");
        assert!(matches!(err, EngineError::TooLarge { .. }), "{err}");
        let mut o = opts();
        o.content_md5 = Some([0; 16]);
        let err = e
            .put_object(T, "b", "md5", &data[..1000], o)
            .await
            .expect_err("bad md5");
        assert!(matches!(err, EngineError::BadDigest), "{err}");
        assert!(e
            .list_objects(T, "b", "", "", 10)
            .await
            .expect("list")
            .is_empty());
        e.gc(&no_grace()).await.expect("gc");
        let s = e.stats().await.expect("stats");
        assert_eq!((s.catalog.chunks, s.physical_bytes), (0, 0), "{}", t.name);
    }
}

/// A new user's walkthrough: with --max-object-size 6 MB, aws cli's
/// multipart upload of 20 MB was stored.
#[tokio::test]
async fn parts_within_the_limit_cannot_join_into_an_object_over_it() {
    for t in targets().await {
        let mut cfg = t.cfg.clone();
        cfg.max_object_size = 8 * 1024 * 1024;
        let e = fulcrum_engine::Engine::open(cfg).await.expect("open");
        e.create_bucket(T, "b").await.expect("bucket");
        let data = noise(5 * 1024 * 1024, 52);
        let id = e
            .create_upload(T, "b", "mp", None, BTreeMap::new(), Default::default())
            .await
            .expect("create");
        let mut parts = Vec::new();
        for n in 1..=2 {
            let part = e
                .upload_part(T, ("b", "mp"), &id, n, &data[..], opts())
                .await;
            parts.push((n, part.expect("part within the limit")));
        }
        let err = e
            .complete_upload(T, ("b", "mp"), &id, &parts)
            .await
            .expect_err("object over the limit");
        assert!(matches!(err, EngineError::TooLarge { .. }), "{err}");
        assert!(e.head_object(T, "b", "mp").await.is_err(), "{}", t.name);
        let done = e
            .complete_upload(T, ("b", "mp"), &id, &parts[..1])
            .await
            .expect("the upload stays open; one part is within the limit");
        assert_eq!(done.size, 5 * 1024 * 1024);
    }
}

#[tokio::test]
async fn verify_names_objects_whose_chunks_point_at_no_pack() {
    for t in targets().await {
        let e = t.open().await;
        e.create_bucket(T, "b").await.expect("bucket");
        e.put_object(T, "b", "lost", &noise(300_000, 62)[..], opts())
            .await
            .expect("put");
        e.put_object(T, "b", "kept", &noise(10_000, 63)[..], opts())
            .await
            .expect("put");
        assert!(e.verify(&mut ()).await.expect("verify").is_clean());
        // As a restore leaves a chunk it could not bring back.
        let info = e.head_object(T, "b", "lost").await.expect("head");
        let chunks = e.catalog().object_chunks(info.id).await.expect("chunks");
        let mut c = t.catalog_sql().await;
        sqlx::query("UPDATE chunks SET pack_id = 'missing' WHERE id = $1")
            .bind(chunks[0].id.0.to_vec())
            .execute(&mut c)
            .await
            .expect("point a chunk at no pack");
        let report = e.verify(&mut ()).await.expect("verify");
        assert!(!report.is_clean(), "{}", t.name);
        assert_eq!(report.damaged_objects, ["b/lost"], "{}", t.name);
    }
}

/// Damages the stored bytes of `key`'s first chunk (bucket "b") through
/// the backend itself.
async fn flip_a_byte_of_first_chunk(t: &common::Target, e: &fulcrum_engine::Engine, key: &str) {
    let backend = fulcrum_store::Backend::open(&t.cfg.backend).expect("backend");
    let info = e.head_object(T, "b", key).await.expect("head");
    let chunks = e.catalog().object_chunks(info.id).await.expect("chunks");
    let pack = fulcrum_types::PackId::parse(&chunks[0].pack_id).expect("pack id");
    let path = fulcrum_store::pack_path(&pack);
    let mut bytes = backend.read(&path).await.expect("read pack").to_vec();
    let at = chunks[0].offset as usize + chunks[0].stored_len as usize / 2;
    bytes[at] ^= 0x01;
    backend.delete(&path).await.expect("delete");
    backend
        .write(&path, vec![bytes.into()])
        .await
        .expect("rewrite");
}

#[tokio::test]
async fn chunks_read_again_come_from_the_read_cache_and_are_never_stale() {
    for t in targets().await {
        let e = t.open().await;
        e.create_bucket(T, "b").await.expect("bucket");
        let data = noise(3 * 1024 * 1024, 70);
        e.put_object(T, "b", "study", &data[..], opts())
            .await
            .expect("put");
        let hits = || e.metrics().read_cache_hits.get();
        // Writes do not fill it, nor does a first read: the chunks are
        // kept the second time they are decoded.
        for _ in 0..2 {
            assert_eq!(read_all(&e, "b", "study").await.expect("read"), data);
        }
        assert_eq!(hits(), 0, "{}", t.name);
        let chunks = e
            .catalog()
            .object_chunks(e.head_object(T, "b", "study").await.expect("head").id)
            .await
            .expect("chunks")
            .len() as u64;
        assert_eq!(read_all(&e, "b", "study").await.expect("read"), data);
        assert_eq!(hits(), chunks, "{}: every chunk from the cache", t.name);
        // A range inside cached chunks.
        let info = e.head_object(T, "b", "study").await.expect("head");
        let mut s = e
            .read_object(&info, 1_000_000, 1_000_100)
            .await
            .expect("range");
        let mut part = Vec::new();
        while let Some(b) = s.next().await {
            part.extend_from_slice(&b.expect("piece"));
        }
        assert_eq!(part, data[1_000_000..1_000_100], "{}", t.name);
        // Cached plaintext was verified when decoded: damage to the pack
        // since does not reach readers, but verify, which reads packs,
        // still finds it.
        flip_a_byte_of_first_chunk(&t, &e, "study").await;
        assert_eq!(read_all(&e, "b", "study").await.expect("read"), data);
        let report = e.verify(&mut ()).await.expect("verify");
        assert_eq!(
            report.damaged_objects,
            vec!["b/study".to_string()],
            "{}",
            t.name
        );
        // An overwrite is read as itself, never as the cached old content.
        let other = noise(3 * 1024 * 1024, 71);
        e.put_object(T, "b", "study", &other[..], opts())
            .await
            .expect("overwrite");
        assert_eq!(
            read_all(&e, "b", "study").await.expect("read"),
            other,
            "{}",
            t.name
        );
        // With the cache off, every read decodes from the packs.
        let mut cfg = t.cfg.clone();
        cfg.read_cache_bytes = 0;
        drop(e);
        let cold = fulcrum_engine::Engine::open(cfg).await.expect("open");
        assert_eq!(read_all(&cold, "b", "study").await.expect("read"), other);
        assert_eq!(cold.metrics().read_cache_hits.get(), 0);
        assert!(cold.read_cache_usage().is_none());
    }
}

#[tokio::test]
async fn a_flipped_byte_is_never_served_and_verify_names_the_object() {
    for t in targets().await {
        let e = t.open().await;
        e.create_bucket(T, "b").await.expect("bucket");
        let data = noise(2 * 1024 * 1024, 60);
        e.put_object(T, "b", "victim", &data[..], opts())
            .await
            .expect("put");
        e.put_object(T, "b", "bystander", &noise(10_000, 61)[..], opts())
            .await
            .expect("put");
        flip_a_byte_of_first_chunk(&t, &e, "victim").await;
        let err = read_all(&e, "b", "victim")
            .await
            .expect_err("damaged read fails");
        assert!(matches!(err, EngineError::Corrupt(_)), "{}: {err}", t.name);
        let report = e.verify(&mut ()).await.expect("verify");
        assert!(!report.is_clean());
        assert_eq!(
            report.damaged_objects,
            vec!["b/victim".to_string()],
            "{}",
            t.name
        );
    }
}

#[tokio::test]
async fn encryption_hides_data_and_a_wrong_or_missing_key_is_refused() {
    for t in targets().await {
        let key = MasterKey::generate();
        let e = t
            .open_with_key(Some(key.clone()))
            .await
            .expect("open encrypted");
        e.create_bucket(T, "b").await.expect("bucket");
        // Incompressible bytes with a marker inside: stored unencrypted, the
        // marker would sit verbatim in a pack (zstd would not hide it).
        const MARKER: &[u8] = b"PatientName=DOE^JANE";
        let mut secret = noise(100_000, 90);
        for at in [0, 50_000, 99_000] {
            secret[at..at + MARKER.len()].copy_from_slice(MARKER);
        }
        e.put_object(T, "b", "s", &secret[..], opts())
            .await
            .expect("put");
        assert_eq!(read_all(&e, "b", "s").await.expect("get"), secret);
        let backend = fulcrum_store::Backend::open(&t.cfg.backend).expect("backend");
        let packs = backend.list("packs/").await.expect("list");
        assert!(!packs.is_empty(), "{}: no pack written", t.name);
        for entry in packs {
            let bytes = backend.read(&entry.path).await.expect("read");
            assert!(
                !bytes.windows(MARKER.len()).any(|w| w == MARKER),
                "plaintext in {}",
                entry.path
            );
        }
        e.close().await;
        let wrong = t.open_with_key(Some(MasterKey::generate())).await;
        assert!(
            matches!(wrong, Err(EngineError::KeyMismatch(_))),
            "{}",
            t.name
        );
        let none = t.open_with_key(None).await;
        assert!(
            matches!(none, Err(EngineError::KeyMismatch(_))),
            "{}",
            t.name
        );
        let again = t
            .open_with_key(Some(key))
            .await
            .expect("reopen with the key");
        assert_eq!(read_all(&again, "b", "s").await.expect("get"), secret);
    }
}

#[tokio::test]
async fn buckets_are_created_listed_and_deleted_only_when_empty() {
    for t in targets().await {
        let e = t.open().await;
        e.create_bucket(T, "one").await.expect("create");
        assert!(e.create_bucket(T, "one").await.is_err());
        e.put_object(T, "one", "k", &b"x"[..], opts())
            .await
            .expect("put");
        assert!(e.delete_bucket(T, "one").await.is_err());
        e.delete_object(T, "one", "k").await.expect("delete");
        e.delete_bucket(T, "one")
            .await
            .expect("delete empty bucket");
        assert!(e.list_buckets(T).await.expect("list").is_empty());
        // A multipart upload in progress does not keep a bucket (as in S3):
        // it is aborted with the bucket and its part becomes garbage.
        e.create_bucket(T, "two").await.expect("create");
        let id = e
            .create_upload(T, "two", "mp", None, BTreeMap::new(), Default::default())
            .await
            .expect("create upload");
        e.upload_part(T, ("two", "mp"), &id, 1, &noise(100_000, 21)[..], opts())
            .await
            .expect("part");
        let chunks_before = e.stats().await.expect("stats").catalog.chunks;
        e.delete_bucket(T, "two")
            .await
            .expect("delete a bucket with an upload in progress");
        assert!(e.list_buckets(T).await.expect("list").is_empty());
        e.gc(&no_grace()).await.expect("gc");
        assert!(
            e.stats().await.expect("stats").catalog.chunks < chunks_before,
            "{}: the aborted part's chunks are collected",
            t.name
        );
        e.create_bucket(T, "two").await.expect("create again");
        assert!(e.list_uploads(T, "two").await.expect("uploads").is_empty());
        let err = e
            .put_object(T, "nope", "k", &b"x"[..], opts())
            .await
            .expect_err("no bucket");
        assert!(err.to_string().contains("does not exist"), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_overwrites_of_one_key_leave_one_whole_object() {
    for t in targets().await {
        let e = t.open().await;
        e.create_bucket(T, "b").await.expect("bucket");
        let bodies: Vec<Vec<u8>> = (0..24)
            .map(|i| noise(5_000 + i * 100, 70 + i as u64))
            .collect();
        let mut tasks = Vec::new();
        for body in bodies.clone() {
            let e = e.clone();
            tasks.push(tokio::spawn(async move {
                e.put_object(T, "b", "same", &body[..], PutOptions::default())
                    .await
                    .expect("put");
            }));
        }
        for task in tasks {
            task.await.expect("writer");
        }
        let got = read_all(&e, "b", "same").await.expect("get");
        assert!(
            bodies.contains(&got),
            "{}: the object is not one of the bodies written",
            t.name
        );
        assert_eq!(
            e.list_objects(T, "b", "", "", 10)
                .await
                .expect("list")
                .len(),
            1
        );
        assert_eq!(
            e.stats().await.expect("stats").catalog.objects,
            1,
            "{}",
            t.name
        );
        assert!(e.verify(&mut ()).await.expect("verify").is_clean());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_replaced_between_lookup_and_read_is_read_whole_as_the_new_one() {
    for t in targets().await {
        let e = t.open().await;
        e.create_bucket(T, "b").await.expect("bucket");
        let (old, new) = (noise(300_000, 80), noise(200_000, 81));
        e.put_object(T, "b", "k", &old[..], opts())
            .await
            .expect("put old");
        // The version looked up first is replaced before it is read, as a
        // concurrent overwrite does between a GET's lookup and its read.
        let mut shown = Vec::new();
        let (info, (), mut s) = e
            .open_object(
                (T, "b", "k"),
                |e| e,
                |info| {
                    shown.push(info.size);
                    if shown.len() == 1 {
                        tokio::task::block_in_place(|| {
                            tokio::runtime::Handle::current().block_on(e.put_object(
                                T,
                                "b",
                                "k",
                                &new[..],
                                opts(),
                            ))
                        })?;
                    }
                    Ok(((), 0..info.size))
                },
            )
            .await
            .expect("an object replaced while read is no missing key");
        let mut got = Vec::new();
        while let Some(b) = s.next().await {
            got.extend_from_slice(&b.expect("bytes"));
        }
        assert_eq!(shown, [old.len() as u64, new.len() as u64], "{}", t.name);
        assert_eq!(info.size, new.len() as u64);
        assert!(got == new, "{}: not the new object", t.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_only_writes_of_one_key_let_exactly_one_win() {
    for t in targets().await {
        let e = t.open().await;
        e.create_bucket(T, "b").await.expect("bucket");
        // Writers racing for a free key, mixed with unconditional writes to
        // other keys so that they share group commits.
        let mut tasks = Vec::new();
        for i in 0..24u64 {
            let e = e.clone();
            tasks.push(tokio::spawn(async move {
                let body = noise(3_000 + i as usize, 90 + i);
                let mut o = PutOptions::default();
                let key = if i % 3 == 0 {
                    format!("other-{i}")
                } else {
                    o.condition = Some(WriteCondition::Absent);
                    "once".to_string()
                };
                let res = e.put_object(T, "b", &key, &body[..], o).await;
                (key, body, res)
            }));
        }
        let mut winners = Vec::new();
        for task in tasks {
            let (key, body, res) = task.await.expect("writer");
            match res {
                Ok(_) if key == "once" => winners.push(body),
                Ok(_) => {}
                Err(EngineError::Catalog(CatalogError::ConditionFailed { missing, .. })) => {
                    assert!(key == "once" && !missing, "{}", t.name)
                }
                Err(e) => panic!("{}: {key}: {e}", t.name),
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "{}: exactly one create-only write wins",
            t.name
        );
        assert_eq!(read_all(&e, "b", "once").await.expect("get"), winners[0]);
        // If-Match: only the version named is replaced.
        let etag = e.head_object(T, "b", "once").await.expect("head").etag;
        let o = PutOptions {
            condition: Some(WriteCondition::Present(Some("0".repeat(32)))),
            ..Default::default()
        };
        assert!(e.put_object(T, "b", "once", &b"x"[..], o).await.is_err());
        let o = PutOptions {
            condition: Some(WriteCondition::Present(Some(etag))),
            ..Default::default()
        };
        e.put_object(T, "b", "once", &b"new"[..], o)
            .await
            .expect("if-match put");
        assert_eq!(read_all(&e, "b", "once").await.expect("get"), b"new");
        let o = PutOptions {
            condition: Some(WriteCondition::Present(None)),
            ..Default::default()
        };
        match e.put_object(T, "b", "missing", &b"x"[..], o).await {
            Err(EngineError::Catalog(CatalogError::ConditionFailed { missing, .. })) => {
                assert!(missing)
            }
            other => panic!("{}: {other:?}", t.name),
        }
        // Conditional deletes: ETag, size and time must all match.
        let info = e.head_object(T, "b", "once").await.expect("head");
        let secs = info.created_at_ms.div_euclid(1000);
        for wrong in [
            DeleteCondition {
                etag: Some("0".repeat(32)),
                ..Default::default()
            },
            DeleteCondition {
                size: Some(4),
                ..Default::default()
            },
            DeleteCondition {
                modified_secs: Some(secs - 1),
                ..Default::default()
            },
        ] {
            let r = e
                .delete_object_if(T, "b", "once", false, Some(&wrong))
                .await;
            assert!(
                matches!(
                    r,
                    Err(EngineError::Catalog(CatalogError::ConditionFailed {
                        missing: false,
                        ..
                    }))
                ),
                "{}: {wrong:?}: {r:?}",
                t.name
            );
        }
        let absent = e
            .delete_object_if(T, "b", "missing", false, Some(&DeleteCondition::default()))
            .await;
        assert!(
            matches!(
                absent,
                Err(EngineError::Catalog(CatalogError::ConditionFailed {
                    missing: true,
                    ..
                }))
            ),
            "{}",
            t.name
        );
        let right = DeleteCondition {
            etag: Some(info.etag.clone()),
            size: Some(3),
            modified_secs: Some(secs),
        };
        assert!(e
            .delete_object_if(T, "b", "once", false, Some(&right))
            .await
            .expect("conditional delete"));
        assert!(e.head_object(T, "b", "once").await.is_err());
        assert!(e.verify(&mut ()).await.expect("verify").is_clean());
    }
}

#[tokio::test]
async fn maintenance_runs_on_one_node_at_a_time() {
    for t in targets().await {
        // Two engines on one catalog and backend stand for two nodes.
        let a = t.open().await;
        let b = t.open().await;
        let held = a
            .lease(fulcrum_engine::MAINTENANCE_LEASE)
            .await
            .expect("first node takes the lease");
        assert!(
            matches!(b.gc(&no_grace()).await, Err(EngineError::Busy(_))),
            "{}: GC ran beside a lease holder",
            t.name
        );
        assert!(matches!(
            b.lease(fulcrum_engine::MAINTENANCE_LEASE).await,
            Err(EngineError::Busy(_))
        ));
        held.release().await;
        b.gc(&no_grace())
            .await
            .expect("GC runs once the lease is free");
        // GC gave the lease back: the first node can take it again.
        a.lease(fulcrum_engine::MAINTENANCE_LEASE)
            .await
            .expect("lease free after GC")
            .release()
            .await;
    }
}

#[tokio::test]
async fn metadata_entries_change_in_place() {
    for t in targets().await {
        let e = t.open().await;
        e.create_bucket(T, "b").await.expect("bucket");
        let mut o = opts();
        o.metadata.insert("ward".into(), "icu".into());
        e.put_object(T, "b", "k", &b"content"[..], o)
            .await
            .expect("put");
        let before = e.head_object(T, "b", "k").await.expect("head");
        e.set_object_meta(T, "b", "k", (":tagging", Some("a=1")))
            .await
            .expect("set");
        let after = e.head_object(T, "b", "k").await.expect("head");
        assert_eq!(
            after.metadata.get(":tagging").map(String::as_str),
            Some("a=1")
        );
        assert_eq!(after.metadata.get("ward").map(String::as_str), Some("icu"));
        assert_eq!(
            (after.etag.as_str(), after.created_at_ms),
            (before.etag.as_str(), before.created_at_ms),
            "{}",
            t.name
        );
        e.set_object_meta(T, "b", "k", (":tagging", None))
            .await
            .expect("remove");
        assert_eq!(
            e.head_object(T, "b", "k").await.expect("head").metadata,
            before.metadata
        );
        assert_eq!(read_all(&e, "b", "k").await.expect("get"), b"content");
        assert!(e
            .set_object_meta(T, "b", "missing", (":tagging", Some("a=1")))
            .await
            .is_err());
    }
}

#[tokio::test]
async fn bucket_settings_are_set_replaced_removed_and_go_with_the_bucket() {
    for t in targets().await {
        let e = t.open().await;
        e.create_bucket(T, "b").await.expect("bucket");
        let get = |name: &'static str| {
            let e = e.clone();
            async move { e.bucket_setting(T, "b", name).await.expect("read") }
        };
        assert_eq!(get("tagging").await, None, "{}", t.name);
        e.set_bucket_setting(T, "b", ("tagging", Some("a=1")))
            .await
            .expect("set");
        e.set_bucket_setting(T, "b", ("tagging", Some("a=2")))
            .await
            .expect("replace");
        e.set_bucket_setting(T, "b", ("cors", Some("[]")))
            .await
            .expect("another");
        assert_eq!(get("tagging").await.as_deref(), Some("a=2"), "{}", t.name);
        e.set_bucket_setting(T, "b", ("tagging", None))
            .await
            .expect("remove");
        assert_eq!(get("tagging").await, None);
        assert_eq!(get("cors").await.as_deref(), Some("[]"));
        e.delete_bucket(T, "b").await.expect("delete");
        e.create_bucket(T, "b").await.expect("again");
        assert_eq!(
            get("cors").await,
            None,
            "{}: removed with the bucket",
            t.name
        );
        assert!(e.bucket_setting(T, "nope", "cors").await.is_err());
    }
}

#[tokio::test]
async fn a_small_write_whose_pack_cannot_be_written_leaves_nothing() {
    // A commit's statements run while its pack is being written; when the
    // write fails they must be rolled back. On a filesystem, a file put in
    // place of the temp folder makes creating the pack fail.
    let t = targets().await.into_iter().next().expect("fs target");
    let fulcrum_engine::BackendConfig::Fs { root } = t.cfg.backend.clone() else {
        panic!("the first target is a filesystem");
    };
    let e = t.open().await;
    e.create_bucket(T, "b").await.expect("bucket");
    e.put_object(T, "b", "before", &noise(10_000, 1)[..], opts())
        .await
        .expect("put");
    let tmp = root.join(".tmp");
    std::fs::remove_dir_all(&tmp).expect("remove temp folder");
    std::fs::write(&tmp, b"not a folder").expect("block temp folder");
    let err = e
        .put_object(T, "b", "lost", &noise(10_000, 2)[..], opts())
        .await
        .expect_err("the pack cannot be written");
    assert!(matches!(err, EngineError::PackWrite(_)), "{err}");
    let keys: Vec<String> = e
        .list_objects(T, "b", "", "", 10)
        .await
        .expect("list")
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(keys, ["before"]);
    let s = e.stats().await.expect("stats");
    assert_eq!((s.catalog.packs, s.catalog.chunks), (1, 1));
    std::fs::remove_file(&tmp).expect("unblock");
    std::fs::create_dir(&tmp).expect("temp folder");
    e.put_object(T, "b", "lost", &noise(10_000, 2)[..], opts())
        .await
        .expect("put once the folder is back");
    assert_eq!(
        read_all(&e, "b", "lost").await.expect("get"),
        noise(10_000, 2)
    );
}

#[tokio::test]
async fn a_pack_store_and_a_catalog_of_different_platforms_are_refused() {
    // A node given the cluster's catalog and another bucket (or the
    // reverse) acknowledged writes nobody else could read, and its GC
    // would have deleted the other platform's packs as unreferenced.
    for t in targets().await {
        let e = t.open().await;
        e.create_bucket(T, "b").await.expect("bucket");
        let data = noise(300_000, 7);
        e.put_object(T, "b", "k", &data[..], opts())
            .await
            .expect("put");
        drop(e);
        let wrong = |e: Result<fulcrum_engine::Stored, EngineError>| match e {
            Err(EngineError::WrongStore(m)) => m,
            other => panic!("{}: not refused: {other:?}", t.name),
        };
        // The platform's store with a new catalog.
        let mut cfg = t.cfg.clone();
        cfg.catalog_url = t.other_catalog("other").await;
        let other = fulcrum_engine::Engine::open(cfg).await.expect("opens");
        other.create_bucket(T, "b").await.expect("bucket");
        let m = wrong(other.put_object(T, "b", "x", &b"x"[..], opts()).await);
        assert!(m.contains("this catalog is new"), "{}: {m}", t.name);
        assert!(
            matches!(other.gc(&no_grace()).await, Err(EngineError::WrongStore(_))),
            "{}",
            t.name
        );
        // The platform's catalog with an empty store.
        let mut cfg = t.cfg.clone();
        cfg.backend = t.beside("elsewhere");
        let elsewhere = fulcrum_engine::Engine::open(cfg).await.expect("opens");
        let m = wrong(elsewhere.put_object(T, "b", "y", &b"y"[..], opts()).await);
        assert!(m.contains("does not hold"), "{}: {m}", t.name);
        // The platform itself, also as it was before the marker existed
        // (neither side names the platform): it writes and reads on.
        let mut c = t.catalog_sql().await;
        sqlx::query("DELETE FROM meta WHERE key = 'platform_id'")
            .execute(&mut c)
            .await
            .expect("older catalog");
        drop(c);
        fulcrum_store::Backend::open(&t.cfg.backend)
            .expect("store")
            .delete("fulcrum-platform")
            .await
            .expect("older store");
        let e = t.open().await;
        e.put_object(T, "b", "k2", &data[..], opts())
            .await
            .expect("put after the upgrade");
        assert_eq!(
            read_all(&e, "b", "k").await.expect("get"),
            data,
            "{}",
            t.name
        );
        e.gc(&no_grace()).await.expect("gc");
        // And another platform's catalog is still refused.
        let mut cfg = t.cfg.clone();
        cfg.catalog_url = t.other_catalog("third").await;
        let third = fulcrum_engine::Engine::open(cfg).await.expect("opens");
        third.create_bucket(T, "b").await.expect("bucket");
        wrong(third.put_object(T, "b", "z", &b"z"[..], opts()).await);
    }
}
