//! The backup behaviour suite, on every target (fs + SQLite with a
//! directory repository; S3 + PostgreSQL with a repository on the same
//! Garage server under scripts/test.sh): backup → restore → every object
//! byte-exact; incremental runs move only what is new; a run cut off
//! before its snapshot resumes without re-sending; a wrong key and a
//! non-empty restore target are refused; forget + prune frees what no kept
//! snapshot uses; verify finds a flipped byte; a single object comes back
//! into the live platform.

#[path = "../../fulcrum-engine/tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;

use common::{noise, read_all, targets};
use fulcrum_backup::{
    forget, restore_to_dir, run, verify, BackupError, KeepPolicy, Repo, RunOptions, SnapshotView,
};
use fulcrum_engine::{BackendConfig, Engine, EngineConfig, MasterKey, PutOptions};

const T: &str = "default";

async fn put(e: &Engine, key: &str, data: &[u8]) {
    e.put_object(T, "b", key, data, PutOptions::default())
        .await
        .expect("put");
}

/// Half-compressible data: noise with repeated stretches.
fn data(n: usize, seed: u64) -> Vec<u8> {
    let mut v = noise(n, seed);
    for (i, b) in v.iter_mut().enumerate() {
        if (i / 4096) % 2 == 0 {
            *b = (i % 251) as u8;
        }
    }
    v
}

#[tokio::test]
async fn backup_restores_byte_exact_and_runs_are_incremental() {
    for t in targets().await {
        let e = t.open().await;
        let key = MasterKey::generate();
        let repo = Repo::init(&t.beside("backup"), &key)
            .await
            .expect("init repo");
        e.create_bucket(T, "b").await.expect("bucket");
        let mut objects: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        for i in 0..10u64 {
            let d = data(1024 * 1024 + i as usize * 7919, i);
            put(&e, &format!("obj/{i}"), &d).await;
            objects.insert(format!("obj/{i}"), d);
        }
        put(&e, "empty", b"").await;
        objects.insert("empty".into(), Vec::new());

        let first = run(&e, &repo, &RunOptions::default(), &mut ())
            .await
            .expect("first backup");
        assert_eq!(first.objects, 11, "{}", t.name);
        assert!(first.damaged.is_empty());
        assert!(
            first.new_bytes >= first.chunk_bytes,
            "{}: {first:?}",
            t.name
        );

        // No change: only the catalog export may move, and little of it.
        let same = run(&e, &repo, &RunOptions::default(), &mut ())
            .await
            .expect("no-change backup");
        assert!(
            same.new_bytes < first.new_bytes / 50,
            "{}: {} of {}",
            t.name,
            same.new_bytes,
            first.new_bytes
        );

        // 10 % new data moves about 10 %.
        let d = data(1024 * 1024, 99);
        put(&e, "new", &d).await;
        objects.insert("new".into(), d);
        let inc = run(&e, &repo, &RunOptions::default(), &mut ())
            .await
            .expect("incremental backup");
        let share = inc.new_bytes as f64 / first.new_bytes as f64;
        assert!(
            (0.05..0.2).contains(&share),
            "{}: incremental moved {share:.3} of the first",
            t.name
        );

        // Restore into a new dir and serve from it.
        let out = tempfile::tempdir().expect("tempdir");
        let target = out.path().join("restored");
        let report = restore_to_dir(&repo, &inc.id[..8], &target, &mut ())
            .await
            .expect("restore");
        assert!(report.missing_chunks.is_empty());
        assert_eq!(report.objects, 12);
        let restored = Engine::open(EngineConfig::local(&target))
            .await
            .expect("restored engine opens");
        for (k, v) in &objects {
            assert_eq!(
                &read_all(&restored, "b", k).await.expect("read restored"),
                v,
                "{}: {k}",
                t.name
            );
        }
        assert!(restored.verify(&mut ()).await.expect("verify").is_clean());
        restored.close().await;

        // An older snapshot restores the older state.
        let old = out.path().join("old");
        restore_to_dir(&repo, &first.id, &old, &mut ())
            .await
            .expect("restore first");
        let old_e = Engine::open(EngineConfig::local(&old))
            .await
            .expect("opens");
        assert!(
            read_all(&old_e, "b", "new").await.is_err(),
            "{}: first snapshot has no 'new'",
            t.name
        );
        old_e.close().await;

        // A non-empty target is refused and left alone.
        assert!(matches!(
            restore_to_dir(&repo, "latest", &target, &mut ()).await,
            Err(BackupError::TargetNotEmpty(_))
        ));
        // A wrong key opens nothing.
        assert!(matches!(
            Repo::open(&t.beside("backup"), &MasterKey::generate()).await,
            Err(BackupError::WrongKey)
        ));
        let r = verify(&repo, Some(e.codec()), 100.0, &mut ())
            .await
            .expect("verify repo");
        assert!(r.is_clean(), "{}: {:?}", t.name, r.problems);
        assert_eq!(r.snapshots, 3);
    }
}

#[tokio::test]
async fn a_cut_off_run_resumes_and_single_objects_come_back() {
    for t in targets().await {
        let e = t.open().await;
        let cfg = t.beside("backup");
        let key = MasterKey::generate();
        // No repository yet: opening one says so and makes no folder.
        assert!(matches!(
            Repo::open(&cfg, &key).await,
            Err(BackupError::NotARepo(_))
        ));
        if let BackendConfig::Fs { root } = &cfg {
            assert!(!root.exists(), "{}", root.display());
        }
        let (repo, created) = Repo::open_or_init(&cfg, &key).await.expect("repo");
        assert!(created);
        e.create_bucket(T, "b").await.expect("bucket");
        let keep = data(3 * 1024 * 1024, 7);
        put(&e, "keep", &keep).await;
        put(&e, "x/1", b"one").await;
        // A run whose snapshot file never arrived (the target went away
        // after the packs): the next run sends nothing of them again.
        let s = run(&e, &repo, &RunOptions::default(), &mut ())
            .await
            .expect("backup");
        repo.delete_snapshot(&s.id).await.expect("drop snapshot");
        let again = run(&e, &repo, &RunOptions::default(), &mut ())
            .await
            .expect("backup again");
        assert!(
            again.new_bytes < s.new_bytes / 20,
            "{}: resent {} of {}",
            t.name,
            again.new_bytes,
            s.new_bytes
        );

        // Lose an object in the platform; bring it back from the snapshot.
        assert!(e.delete_object(T, "b", "keep").await.expect("delete"));
        let view = SnapshotView::open(&repo, "latest")
            .await
            .expect("open snapshot");
        let objs = view.objects(T, "b", Some("keep"), "");
        assert_eq!(objs.len(), 1);
        let reader = tokio_util::io::StreamReader::new(view.read(&objs[0], e.codec().clone()));
        e.put_object(T, "b", "keep", reader, PutOptions::default())
            .await
            .expect("restore object");
        assert_eq!(
            read_all(&e, "b", "keep").await.expect("read"),
            keep,
            "{}",
            t.name
        );
        assert_eq!(view.objects(T, "b", None, "x/").len(), 1);
    }
}

#[tokio::test]
async fn forget_prunes_what_no_kept_snapshot_uses_and_verify_finds_damage() {
    let t = targets().await.remove(0); // the directory repository
    let e = t.open().await;
    let cfg = t.beside("backup");
    let repo = Repo::init(&cfg, &MasterKey::generate())
        .await
        .expect("init");
    e.create_bucket(T, "b").await.expect("bucket");
    put(&e, "gone", &noise(4 * 1024 * 1024, 1)).await;
    put(&e, "stays", &noise(1024 * 1024, 2)).await;
    run(&e, &repo, &RunOptions::default(), &mut ())
        .await
        .expect("first");
    e.delete_object(T, "b", "gone").await.expect("delete");
    let last = run(&e, &repo, &RunOptions::default(), &mut ())
        .await
        .expect("second");
    let before: u64 = repo.packs().await.expect("packs").iter().map(|p| p.2).sum();
    assert!(matches!(
        forget(&repo, &KeepPolicy::default(), true, false).await,
        Err(BackupError::Invalid(_))
    ));
    let r = forget(
        &repo,
        &KeepPolicy {
            last: 1,
            ..Default::default()
        },
        true,
        false,
    )
    .await
    .expect("forget");
    assert_eq!(r.kept, vec![last.id.clone()]);
    assert_eq!(r.removed.len(), 1);
    let after: u64 = repo.packs().await.expect("packs").iter().map(|p| p.2).sum();
    assert!(
        after < before / 2,
        "prune freed too little: {before} -> {after}"
    );
    let v = verify(&repo, None, 100.0, &mut ()).await.expect("verify");
    assert!(v.is_clean(), "{:?}", v.problems);
    let out = tempfile::tempdir().expect("tempdir");
    restore_to_dir(&repo, "latest", out.path(), &mut ())
        .await
        .expect("restore after prune");
    let r = Engine::open(EngineConfig::local(out.path()))
        .await
        .expect("opens");
    assert_eq!(
        read_all(&r, "b", "stays").await.expect("read"),
        noise(1024 * 1024, 2)
    );

    // Flip one byte inside a pack: verify names it.
    let (_, path, _) = repo.packs().await.expect("packs").remove(0);
    let BackendConfig::Fs { root } = t.beside("backup") else {
        panic!("the first target keeps its repository in a directory")
    };
    let file = root.join(&path);
    let mut bytes = std::fs::read(&file).expect("read pack");
    bytes[100] ^= 0x40;
    std::fs::write(&file, bytes).expect("write pack");
    let v = verify(&repo, None, 100.0, &mut ()).await.expect("verify");
    assert!(!v.is_clean());
    assert!(
        v.problems.iter().any(|p| p.contains("authentication")),
        "{:?}",
        v.problems
    );
}

#[tokio::test]
async fn scrub_finds_a_lost_pack_and_the_backup_repairs_it() {
    for t in targets().await {
        let e = t.open().await;
        let repo = Repo::init(&t.beside("backup"), &MasterKey::generate())
            .await
            .expect("init");
        e.create_bucket(T, "b").await.expect("bucket");
        let objs: Vec<Vec<u8>> = (0..3).map(|i| data(2 * 1024 * 1024, 40 + i)).collect();
        for (i, d) in objs.iter().enumerate() {
            put(&e, &format!("o{i}"), d).await;
        }
        run(&e, &repo, &RunOptions::default(), &mut ())
            .await
            .expect("backup");
        // Lose one pack.
        let packs = e.catalog().pack_usage().await.expect("packs");
        let victim = fulcrum_types::PackId::parse(&packs[0].id).expect("pack id");
        e.backend()
            .delete(&fulcrum_store::pack_path(&victim))
            .await
            .expect("delete pack");
        let found = e.scrub(None, &mut ()).await.expect("scrub");
        assert!(
            !found.is_clean() && !found.bad_chunk_ids.is_empty(),
            "{}",
            t.name
        );
        let copies = repo
            .chunk_copies(&found.bad_chunk_ids)
            .await
            .expect("copies");
        assert_eq!(copies.len(), found.bad_chunk_ids.len());
        let repaired = e.repair_chunks(copies).await.expect("repair");
        assert_eq!(repaired.len(), found.bad_chunk_ids.len());
        assert!(
            e.verify(&mut ()).await.expect("verify").is_clean(),
            "{}",
            t.name
        );
        for (i, d) in objs.iter().enumerate() {
            assert_eq!(&read_all(&e, "b", &format!("o{i}")).await.expect("read"), d);
        }
        // A copy that does not match its id is refused.
        let bogus = fulcrum_engine::ChunkCopy {
            id: found.bad_chunk_ids[0],
            stored: vec![1, 2, 3],
            flags: 0,
            raw_len: 3,
        };
        assert!(e
            .repair_chunks(vec![bogus])
            .await
            .expect("repair")
            .is_empty());
    }
}

#[tokio::test]
async fn an_encrypted_platform_restores_with_its_key_and_verifies_with_it() {
    let t = targets().await.remove(0);
    let platform_key = MasterKey::generate();
    let e = t
        .open_with_key(Some(platform_key.clone()))
        .await
        .expect("encrypted engine");
    e.create_bucket(T, "b").await.expect("bucket");
    let d = data(2 * 1024 * 1024, 5);
    put(&e, "x", &d).await;
    let repo = Repo::init(&t.beside("backup"), &MasterKey::generate())
        .await
        .expect("init");
    run(&e, &repo, &RunOptions::default(), &mut ())
        .await
        .expect("backup");
    // The platform key re-hashes the platform-encrypted chunks too.
    let v = verify(&repo, Some(e.codec()), 100.0, &mut ())
        .await
        .expect("verify");
    assert!(v.is_clean(), "{:?}", v.problems);
    let out = tempfile::tempdir().expect("tempdir");
    restore_to_dir(&repo, "latest", out.path(), &mut ())
        .await
        .expect("restore");
    // Without the platform key the restored data dir is refused; with it,
    // every byte is back.
    assert!(Engine::open(EngineConfig::local(out.path())).await.is_err());
    let mut cfg = EngineConfig::local(out.path());
    cfg.encryption_key = Some(platform_key);
    let r = Engine::open(cfg).await.expect("opens with the key");
    assert_eq!(read_all(&r, "b", "x").await.expect("read"), d);
    // A wrong platform key cannot vouch for those chunks: verify says so.
    let wrong = fulcrum_store::Codec::new(Some(&MasterKey::generate()), 1);
    assert!(!verify(&repo, Some(&wrong), 100.0, &mut ())
        .await
        .expect("verify")
        .is_clean());
}

#[tokio::test]
async fn a_damaged_blob_costs_its_objects_not_the_whole_restore() {
    let t = targets().await.remove(0); // the directory repository
    let e = t.open().await;
    let repo = Repo::init(&t.beside("backup"), &MasterKey::generate())
        .await
        .expect("init");
    e.create_bucket(T, "b").await.expect("bucket");
    put(&e, "hit", &noise(3 * 1024 * 1024, 7)).await;
    put(&e, "spared", &noise(200_000, 8)).await;
    run(&e, &repo, &RunOptions::default(), &mut ())
        .await
        .expect("run");
    // Flip a byte inside the blob of one chunk of "hit".
    let info = e.head_object(T, "b", "hit").await.expect("head");
    let chunk = e.catalog().object_chunks(info.id).await.expect("chunks")[0].id;
    let loc = repo.load_index().await.expect("index")[&chunk].clone();
    let (_, path, _) = repo
        .packs()
        .await
        .expect("packs")
        .into_iter()
        .find(|(id, _, _)| *id == loc.pack)
        .expect("the blob's pack");
    let BackendConfig::Fs { root } = t.beside("backup") else {
        panic!("the first target keeps its repository in a directory")
    };
    let file = root.join(&path);
    let mut bytes = std::fs::read(&file).expect("read pack");
    bytes[(loc.offset + loc.len as u64 / 2) as usize] ^= 0x40;
    std::fs::write(&file, bytes).expect("write pack");

    let out = tempfile::tempdir().expect("tempdir");
    let r = restore_to_dir(&repo, "latest", out.path(), &mut ())
        .await
        .expect("a damaged blob does not stop the restore");
    assert_eq!(r.missing_chunks, [chunk.to_hex()]);
    assert_eq!(r.damaged_blobs.len(), 1, "{:?}", r.damaged_blobs);
    let restored = Engine::open(EngineConfig::local(out.path()))
        .await
        .expect("opens");
    assert_eq!(
        read_all(&restored, "b", "spared").await.expect("read"),
        noise(200_000, 8)
    );
    assert!(read_all(&restored, "b", "hit").await.is_err());
    let v = restored.verify(&mut ()).await.expect("verify");
    assert_eq!(v.damaged_objects, ["b/hit"]);

    // verify marks the copy, names the snapshot it costs, and the next run
    // stores the chunk again: every snapshot restores whole.
    let v = verify(&repo, None, 100.0, &mut ()).await.expect("verify");
    assert_eq!(v.marked_damaged, 1, "{:?}", v.problems);
    assert!(
        v.problems.iter().any(|p| p.contains("chunks are missing")),
        "{:?}",
        v.problems
    );
    let first = repo.snapshots().await.expect("snapshots")[0].id.clone();
    run(&e, &repo, &RunOptions::default(), &mut ())
        .await
        .expect("run again");
    for snap in ["latest", first.as_str()] {
        let out = tempfile::tempdir().expect("tempdir");
        let r = restore_to_dir(&repo, snap, out.path(), &mut ())
            .await
            .expect("restore");
        assert!(r.missing_chunks.is_empty(), "{snap}: {r:?}");
        let restored = Engine::open(EngineConfig::local(out.path()))
            .await
            .expect("opens");
        assert_eq!(
            read_all(&restored, "b", "hit").await.expect("read"),
            noise(3 * 1024 * 1024, 7),
            "{snap}"
        );
    }
}
