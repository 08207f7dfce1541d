"""Backups through the real binary: `fulcrum backup run` beside a serving
node, incremental runs, `backup restore --to` a new data dir that `fulcrum
serve` starts on with every S3 object and DICOM instance byte-exact, single
objects and studies restored into the live platform, `backup verify` and
`backup forget`, and the refusals (wrong key, non-empty target, unreachable
repository)."""

from __future__ import annotations

import json
import secrets
import subprocess
import time

import pytest

from dicom_helpers import DicomWeb, stow_ok
from helpers import ACCESS_KEY, SECRET_KEY, FulcrumServer, free_port, random_bytes


def backup(srv: FulcrumServer, repo, key: str, *args, timeout=600) -> subprocess.CompletedProcess:
    """`fulcrum backup <args>` on the server's data dir and `repo`."""
    env = srv.env()
    env["FULCRUM_BACKUP_KEY"] = key
    return subprocess.run(
        [str(srv.binary), "backup", "--data-dir", str(srv.data_dir), "--repo", str(repo), *map(str, args)],
        env=env,
        cwd=srv.cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ok(res: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert res.returncode == 0, f"exit {res.returncode}\nstdout: {res.stdout}\nstderr: {res.stderr}"
    return res


def run_json(srv, repo, key) -> dict:
    return json.loads(ok(backup(srv, repo, key, "run", "--json")).stdout)


@pytest.fixture
def key() -> str:
    return secrets.token_hex(32)


def test_backup_restore_serve_byte_exact_and_incremental(fulcrum_factory, tmp_path, key, gen_studies):
    srv = fulcrum_factory().wait_dicom_ready()
    s3 = srv.client()
    s3.create_bucket(Bucket="records")
    objects = {f"patient/{i}.pdf": random_bytes(400_000 + i * 1000, seed=300 + i) for i in range(20)}
    for k, v in objects.items():
        s3.put_object(Bucket="records", Key=k, Body=v, ContentType="application/pdf", Metadata={"ward": "3"})
    dw = DicomWeb(srv)
    stow_ok(dw, [x.path for x in gen_studies])
    repo = tmp_path / "repo"
    # The server of this harness takes its S3 keys from the environment;
    # one that generated them keeps this file, which backups carry along.
    creds = srv.data_dir / "s3-credentials.toml"
    if not creds.exists():
        creds.write_text('access_key = "%s"\nsecret_key = "%s"\n' % (ACCESS_KEY, SECRET_KEY))
        creds.chmod(0o644)

    # The first run creates the repository; the server keeps serving.
    first = run_json(srv, repo, key)
    assert first["objects"] == len(objects) + len(gen_studies)
    assert first["damaged"] == []
    listed = json.loads(ok(backup(srv, repo, key, "list", "--json")).stdout)
    assert [s["id"] for s in listed] == [first["id"]]

    # No change: almost nothing moves. 10 % new data: about 10 % moves.
    same = run_json(srv, repo, key)
    assert same["new_bytes"] < first["new_bytes"] * 0.02, (same["new_bytes"], first["new_bytes"])
    extra = random_bytes(first["logical_bytes"] // 10, seed=399)
    s3.put_object(Bucket="records", Key="extra.bin", Body=extra)
    objects["extra.bin"] = extra
    inc = run_json(srv, repo, key)
    share = inc["new_bytes"] / first["new_bytes"]
    assert 0.05 < share < 0.2, f"a 10 % change moved {share:.1%} of the first backup"
    text = ok(backup(srv, repo, key, "list")).stdout
    assert "3 snapshots" in text, text

    assert "repository is clean" in ok(backup(srv, repo, key, "verify")).stdout
    assert ok(backup(srv, repo, key, "verify", "--sample", "50")).returncode == 0
    # A small sample of a small repository still re-reads a pack (it used
    # to draw each pack with that chance, often none).
    for _ in range(5):
        out = json.loads(ok(backup(srv, repo, key, "verify", "--sample", "1", "--json")).stdout)
        assert out["packs_checked"] >= 1, out

    # Restore into a new dir and serve from it.
    target = tmp_path / "restored"
    res = ok(backup(srv, repo, key, "restore", "--snapshot", inc["id"][:8], "--to", target))
    assert "restored snapshot" in res.stdout
    # The restored dir holds the S3 secrets: its owner's alone.
    assert target.stat().st_mode & 0o777 == 0o700
    assert (target / "s3-credentials.toml").stat().st_mode & 0o777 == 0o600
    restored = fulcrum_factory()  # a second server ...
    restored.stop()
    restored.data_dir = target  # ... moved onto the restored data dir
    restored.start().wait_dicom_ready()
    r3 = restored.client()
    for k, v in objects.items():
        got = r3.get_object(Bucket="records", Key=k)
        assert got["Body"].read() == v, k
    head = r3.head_object(Bucket="records", Key="patient/0.pdf")
    assert head["ContentType"] == "application/pdf" and head["Metadata"] == {"ward": "3"}
    rdw = DicomWeb(restored)
    for x in gen_studies:
        assert rdw.instance_bytes(x.study_uid, x.series_uid, x.sop_uid) == x.read(), x.sop_uid
    assert len(rdw.qido("/studies", {})) == len({x.study_uid for x in gen_studies})
    assert restored.verify().returncode == 0

    # A non-empty target is refused and left as it was.
    again = backup(srv, repo, key, "restore", "--snapshot", "latest", "--to", target)
    assert again.returncode != 0 and "not empty" in again.stderr, again.stderr


def test_wrong_key_unreachable_repo_and_damage_are_refused(fulcrum, s3, bucket, tmp_path, key):
    s3.put_object(Bucket=bucket, Key="k", Body=random_bytes(300_000, seed=5))
    repo = tmp_path / "repo"
    ok(backup(fulcrum, repo, key, "run"))
    wrong = backup(fulcrum, repo, secrets.token_hex(32), "list")
    assert wrong.returncode != 0 and "key does not open" in wrong.stderr, wrong.stderr
    missing = subprocess.run(
        [str(fulcrum.binary), "backup", "--data-dir", str(fulcrum.data_dir), "--repo", str(repo), "run"],
        env={k: v for k, v in fulcrum.env().items() if not k.startswith("FULCRUM_BACKUP_KEY")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode != 0 and "FULCRUM_BACKUP_KEY" in missing.stderr, missing.stderr

    # An S3 repository nobody answers for: a clean failure, no snapshot.
    dead = f"s3://nowhere/repo?endpoint=http://127.0.0.1:{free_port()}"
    env_res = subprocess.run(
        [str(fulcrum.binary), "backup", "--data-dir", str(fulcrum.data_dir), "--repo", dead, "run"],
        env={**fulcrum.env(), "FULCRUM_BACKUP_KEY": key, "FULCRUM_BACKUP_ACCESS_KEY": "a", "FULCRUM_BACKUP_SECRET_KEY": "b"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert env_res.returncode != 0 and "panicked" not in env_res.stderr, env_res.stderr

    # Damage in the repository is found and named.
    packs = sorted((repo / "packs").rglob("*"), key=lambda p: p.stat().st_size if p.is_file() else 0)
    victim = packs[-1]
    data = bytearray(victim.read_bytes())
    data[len(data) // 3] ^= 0xFF
    victim.write_bytes(bytes(data))
    res = backup(fulcrum, repo, key, "verify")
    assert res.returncode == 1 and "problem:" in res.stdout, res.stdout + res.stderr


def test_single_objects_and_studies_come_back_into_the_live_platform(pacs, tmp_path, key, gen_studies):
    s3 = pacs.client()
    s3.create_bucket(Bucket="docs")
    keep = random_bytes(2_000_000, seed=77)
    s3.put_object(Bucket="docs", Key="a/report.pdf", Body=keep, Metadata={"author": "dr-li"})
    s3.put_object(Bucket="docs", Key="a/other.txt", Body=b"other")
    s3.put_object(Bucket="docs", Key="b/skip.txt", Body=b"skip")
    dw = DicomWeb(pacs)
    stow_ok(dw, [x.path for x in gen_studies])
    repo = tmp_path / "repo"
    ok(backup(pacs, repo, key, "run"))

    # Accidents: an object deleted, another overwritten, a study deleted.
    s3.delete_object(Bucket="docs", Key="a/report.pdf")
    s3.put_object(Bucket="docs", Key="a/other.txt", Body=b"clobbered")
    st = gen_studies[0].study_uid
    assert dw.delete(f"/studies/{st}").status_code in (200, 202, 204)
    assert dw.qido("/studies", {"StudyInstanceUID": st}) == []

    ok(backup(pacs, repo, key, "restore", "--snapshot", "latest", "--bucket", "docs", "--key", "a/report.pdf"))
    got = s3.get_object(Bucket="docs", Key="a/report.pdf")
    assert got["Body"].read() == keep and got["Metadata"] == {"author": "dr-li"}
    ok(backup(pacs, repo, key, "restore", "--snapshot", "latest", "--bucket", "docs", "--prefix", "a/"))
    assert s3.get_object(Bucket="docs", Key="a/other.txt")["Body"].read() == b"other"
    assert s3.get_object(Bucket="docs", Key="b/skip.txt")["Body"].read() == b"skip"

    res = ok(backup(pacs, repo, key, "restore", "--snapshot", "latest", "--study", st))
    insts = [x for x in gen_studies if x.study_uid == st]
    assert f"restored {len(insts)} objects" in res.stdout, res.stdout
    assert len(dw.qido("/studies", {"StudyInstanceUID": st})) == 1
    for x in insts:
        assert dw.instance_bytes(x.study_uid, x.series_uid, x.sop_uid) == x.read()
    nothing = backup(pacs, repo, key, "restore", "--snapshot", "latest", "--study", "1.2.3.4.5")
    assert nothing.returncode != 0 and "no study" in nothing.stderr


def test_forget_keeps_by_policy_and_prunes(fulcrum, s3, bucket, tmp_path, key):
    repo = tmp_path / "repo"
    ids = []
    # Each snapshot holds one generation; only the last survives forget.
    for i in range(3):
        if i:
            s3.delete_object(Bucket=bucket, Key=f"gen{i - 1}")
        s3.put_object(Bucket=bucket, Key=f"gen{i}", Body=random_bytes(1_500_000, seed=900 + i))
        ids.append(run_json(fulcrum, repo, key)["id"])

    def repo_bytes():
        return sum(p.stat().st_size for p in (repo / "packs").rglob("*") if p.is_file())

    before = repo_bytes()
    refused = backup(fulcrum, repo, key, "forget")
    assert refused.returncode != 0 and "keep policy" in refused.stderr
    dry = ok(backup(fulcrum, repo, key, "forget", "--keep-last", "1", "--dry-run", "--json"))
    assert len(json.loads(dry.stdout)["removed"]) == 2
    assert repo_bytes() == before
    res = json.loads(ok(backup(fulcrum, repo, key, "forget", "--keep-last", "1", "--json")).stdout)
    assert res["kept"] == [ids[-1]] and sorted(res["removed"]) == sorted(ids[:-1])
    assert repo_bytes() < before * 0.6, (repo_bytes(), before)
    assert "repository is clean" in ok(backup(fulcrum, repo, key, "verify")).stdout
    listed = json.loads(ok(backup(fulcrum, repo, key, "list", "--json")).stdout)
    assert [s["id"] for s in listed] == [ids[-1]]


def test_scrub_repairs_a_flipped_and_a_deleted_pack_from_the_backup(fulcrum, s3, bucket, tmp_path, key):
    objects = {f"o{i}": random_bytes(3_000_000, seed=500 + i) for i in range(4)}
    for k, v in objects.items():
        s3.put_object(Bucket=bucket, Key=k, Body=v)
    repo = tmp_path / "repo"
    ok(backup(fulcrum, repo, key, "run"))
    packs = fulcrum.pack_files()
    assert len(packs) >= 2, packs
    flipped, deleted = packs[0], packs[1]
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0x5A
    flipped.write_bytes(bytes(data))
    deleted.unlink()
    assert fulcrum.verify().returncode == 1

    # Without a repository, scrub names what it cannot mend.
    bare = fulcrum.cli("scrub")
    assert bare.returncode == 1 and "unrepaired:" in bare.stdout, bare.stdout + bare.stderr

    env_res = subprocess.run(
        [str(fulcrum.binary), "scrub", "--data-dir", str(fulcrum.data_dir), "--json"],
        env={**fulcrum.env(), "FULCRUM_BACKUP_REPO": str(repo), "FULCRUM_BACKUP_KEY": key},
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = json.loads(ok(env_res).stdout)
    assert out["bad_chunks"] >= 2 and out["repaired_chunks"] == out["bad_chunks"], out
    assert out["unrepaired_objects"] == []
    assert fulcrum.verify().returncode == 0
    for k, v in objects.items():
        assert s3.get_object(Bucket=bucket, Key=k)["Body"].read() == v, k


def test_the_server_backs_up_and_scrubs_on_schedule_and_forgets_by_policy(fulcrum_factory, tmp_path, key):
    repo = tmp_path / "repo"
    cfg = tmp_path / "fulcrum.toml"
    cfg.write_text(f'[backup]\nrepo = "{repo}"\nevery_hours = 0.0005\nkeep_last = 2\n')
    srv = fulcrum_factory(
        {
            "FULCRUM_CONFIG": str(cfg),
            "FULCRUM_BACKUP_KEY": key,
            "FULCRUM_SCRUB_EVERY_HOURS": "0.0005",
        }
    )
    s3 = srv.client()
    s3.create_bucket(Bucket="sched")
    s3.put_object(Bucket="sched", Key="a", Body=random_bytes(200_000, seed=61))

    def snapshots():
        res = backup(srv, repo, key, "list", "--json")
        return json.loads(res.stdout) if res.returncode == 0 else []

    def log():
        return srv.log_path.read_text(errors="replace")

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (log().count("saved:") < 3 or "scrub:" not in log()):
        time.sleep(0.5)
    # Three periodic runs at least, a scrub, and the keep policy after each
    # run: never more than 2 snapshots kept.
    assert log().count("saved:") >= 3 and "scrub:" in log(), log()[-3000:]
    snaps = snapshots()
    assert len(snaps) == 2, (len(snaps), log()[-3000:])
    assert "forgot 1 snapshots" in log(), log()[-3000:]
    assert all(s["objects"] == 1 for s in snaps)
    # The scheduled runs' outcomes are on /metrics.
    from test_ops import _job_samples

    jobs = _job_samples(srv)
    assert jobs[("last_run_ok", "backup")] == 1 and jobs[("last_run_ok", "scrub")] == 1, jobs
