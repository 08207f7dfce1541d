"""Scale-out: three `fulcrum serve` nodes on loopback sharing one
PostgreSQL catalog and one Garage bucket (no other shared state).

- Writes through node 1 are readable through nodes 2 and 3 at once (S3 and
  DICOMweb).
- Node 1 is killed (-9) in the middle of uploads; clients retry on node 2;
  every acknowledged object is there byte for byte on the survivors.
- `fulcrum gc` against the shared catalog (as node 3's operator would run
  it) while node 2 ingests and deletes: nothing live is collected, and
  `fulcrum verify` is clean afterwards.
- Two nodes storing one series at once keep its counts exact.
"""

from __future__ import annotations

import random
import threading
import time

import dicom_gen
from dicom_helpers import DicomWeb, jval, stow_ok
from helpers import random_bytes
from test_backends import _garage_env, _postgres_env


def cluster(fulcrum_factory, n=3):
    env = {**_postgres_env(), **_garage_env()}
    return [fulcrum_factory(env).wait_dicom_ready() for _ in range(n)]


def test_any_node_reads_what_another_wrote(fulcrum_factory, gen_studies):
    n1, n2, n3 = cluster(fulcrum_factory)
    c1, c2, c3 = n1.client(), n2.client(), n3.client()
    c1.create_bucket(Bucket="shared")
    objs = {f"k{i}": random_bytes(50_000 + i * 10_000, seed=1000 + i) for i in range(12)}
    for k, v in objs.items():
        c1.put_object(Bucket="shared", Key=k, Body=v)
        # at once, on the other nodes
        assert c2.get_object(Bucket="shared", Key=k)["Body"].read() == v
        assert c3.get_object(Bucket="shared", Key=k)["Body"].read() == v
    assert [b["Name"] for b in c3.list_buckets()["Buckets"]] == ["shared"]
    stow_ok(DicomWeb(n2), [x.path for x in gen_studies])
    w3 = DicomWeb(n3)
    for x in gen_studies[:6]:
        assert w3.instance_bytes(x.study_uid, x.series_uid, x.sop_uid) == x.read()
    c3.delete_object(Bucket="shared", Key="k0")
    assert "k0" not in [o["Key"] for o in c1.list_objects_v2(Bucket="shared")["Contents"]]


def _uploader(clients, bucket, prefix, count, acked, errors, seed):
    """Puts `count` objects, each on the first client that accepts it."""
    rng = random.Random(seed)
    for i in range(count):
        key = f"{prefix}/{i}"
        body = random_bytes(rng.randint(100_000, 1_500_000), seed=seed * 10_000 + i)
        for attempt in range(40):
            c = clients[0] if attempt == 0 else clients[-1]
            try:
                c.put_object(Bucket=bucket, Key=key, Body=body)
                acked[key] = body
                break
            except Exception as e:  # noqa: BLE001 - a dead node fails in many ways
                errors.append(repr(e)[:200])
                time.sleep(0.05)


def test_killing_a_node_mid_upload_loses_nothing_acknowledged(fulcrum_factory):
    n1, n2, n3 = cluster(fulcrum_factory)
    c1, c2 = n1.client(retries={"max_attempts": 1}), n2.client()
    c1.create_bucket(Bucket="ingest")
    acked: dict[str, bytes] = {}
    errors: list[str] = []
    threads = [
        threading.Thread(target=_uploader, args=([c1, c2], "ingest", f"t{t}", 25, acked, errors, 7 + t))
        for t in range(4)
    ]
    for th in threads:
        th.start()
    # Kill node 1 mid-upload: once some uploads were acknowledged, never
    # after all of them (however fast the machine).
    deadline = time.monotonic() + 60
    while len(acked) < 12 and time.monotonic() < deadline:
        time.sleep(0.01)
    n1.kill()
    for th in threads:
        th.join(timeout=300)
    assert len(acked) == 100, f"{100 - len(acked)} uploads never succeeded; errors: {errors[-3:]}"
    assert errors, "node 1 died but no client saw an error: the kill came too late to test anything"
    c3 = n3.client()
    for k, v in acked.items():
        assert c3.get_object(Bucket="ingest", Key=k)["Body"].read() == v, k
    res = n3.verify()
    assert res.returncode == 0, res.stdout + res.stderr


def test_gc_on_one_node_while_another_ingests_deletes_nothing_live(fulcrum_factory):
    n1, n2, n3 = cluster(fulcrum_factory)
    n1.stop()  # two nodes are enough here: 2 ingests, 3 collects
    c2 = n2.client()
    c2.create_bucket(Bucket="churn")
    live: dict[str, bytes] = {}
    stop = threading.Event()
    failures: list[str] = []

    def ingest():
        rng = random.Random(3)
        i = 0
        while not stop.is_set():
            key = f"o{i}"
            # Many share chunks (dedup): the same body under several keys.
            body = random_bytes(rng.randint(200_000, 900_000), seed=i % 7)
            try:
                c2.put_object(Bucket="churn", Key=key, Body=body)
                live[key] = body
                if i % 3 == 0 and i:
                    gone = f"o{i - 1}"
                    c2.delete_object(Bucket="churn", Key=gone)
                    live.pop(gone, None)
            except Exception as e:  # noqa: BLE001
                failures.append(repr(e)[:200])
            i += 1

    th = threading.Thread(target=ingest)
    th.start()
    try:
        for _ in range(3):
            res = n3.cli("gc", "--grace-secs", "0")
            assert res.returncode == 0, res.stdout + res.stderr
    finally:
        stop.set()
        th.join(timeout=120)
    assert not failures, failures[:3]
    assert len(live) > 10
    n3.cli("gc", "--grace-secs", "0")
    c3 = n3.client()
    for k, v in live.items():
        assert c3.get_object(Bucket="churn", Key=k)["Body"].read() == v, k
    res = n3.verify()
    assert res.returncode == 0, res.stdout + res.stderr


def test_counts_stay_exact_when_nodes_store_one_series_at_once(fulcrum_factory, tmp_path):
    """Two nodes take the instances of one series at the same time, one
    STOW-RS request per instance from three clients each (commits of
    several instances of the series on each node, racing the other node's
    on the same study row), then all of it again: every node reports
    exactly the instances stored, at the study and the series level."""
    nodes = cluster(fulcrum_factory, n=2)
    files = dicom_gen.generate(
        tmp_path / "one",
        seed=77,
        patients=1,
        studies_per_patient=1,
        series_per_study=1,
        instances_per_series=60,
    )
    study = files[0].study_uid
    errors: list[str] = []

    def worker(i):
        dw = DicomWeb(nodes[i % 2])
        for x in files[i::6]:
            res = dw.stow([x.read()])
            if res.status != 200 or res.failed:
                errors.append(str(res))

    for _ in range(2):
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        assert not errors, errors[:3]
        for n in nodes:
            dw = DicomWeb(n)
            [s] = dw.qido("/studies", {"StudyInstanceUID": study, "includefield": "00201206,00201208"})
            assert (jval(s, "NumberOfStudyRelatedSeries"), jval(s, "NumberOfStudyRelatedInstances")) == (1, 60)
            [r] = dw.qido(f"/studies/{study}/series", {"includefield": "00201209"})
            assert jval(r, "NumberOfSeriesRelatedInstances") == 60


def test_nodes_without_configured_keys_share_the_platforms_credentials(fulcrum_factory):
    """Nodes set up as docs/scale-out.md says, with no S3 keys in their
    configuration, answer to the same root credentials: the first node's,
    kept in the catalog (each used to generate its own, so a client was
    refused by every node but one)."""
    import tomllib

    env = {**_postgres_env(), **_garage_env(), "FULCRUM_S3_ACCESS_KEY": "", "FULCRUM_S3_SECRET_KEY": ""}
    n1, n2 = fulcrum_factory(env), fulcrum_factory(env)
    keys = [tomllib.loads((n.data_dir / "s3-credentials.toml").read_text()) for n in (n1, n2)]
    assert keys[0] == keys[1], keys
    c1 = n1.client(access_key=keys[0]["access_key"], secret_key=keys[0]["secret_key"])
    c2 = n2.client(access_key=keys[0]["access_key"], secret_key=keys[0]["secret_key"])
    c1.create_bucket(Bucket="one-platform")
    c2.put_object(Bucket="one-platform", Key="k", Body=b"same keys")
    assert c1.get_object(Bucket="one-platform", Key="k")["Body"].read() == b"same keys"

    # A node whose file holds other keys (generated by an older version)
    # starts, and takes the platform's.
    n2.stop()
    own = n2.data_dir / "s3-credentials.toml"
    own.write_text('access_key = "FCOLDNODEKEY"\nsecret_key = "old-secret"\n')
    n2.start()
    assert tomllib.loads(own.read_text()) == keys[0]
    c2 = n2.client(access_key=keys[0]["access_key"], secret_key=keys[0]["secret_key"])
    assert c2.get_object(Bucket="one-platform", Key="k")["Body"].read() == b"same keys"


def test_nodes_with_settings_that_must_match_warn(fulcrum_factory):
    """Nodes given different duplicate policies (or default character
    sets) answered one re-send 409 on one node and 200 on another without
    a word (tester). Each node records them with its heartbeat and warns of
    a live node that differs; the first to start learns of it too."""
    env = {**_postgres_env(), **_garage_env()}
    n1 = fulcrum_factory(dict(env, FULCRUM_DICOM_DUPLICATES="reject"))
    n2 = fulcrum_factory(dict(env, FULCRUM_DICOM_DEFAULT_CHARSET="GB18030"))
    deadline = time.time() + 60
    want = ("setting=\"dicom_duplicates\"", "setting=\"dicom_default_charset\"")
    while time.time() < deadline:
        logs = [n.log_tail(400) for n in (n1, n2)]
        if all(all(w in log for w in want) for log in logs):
            break
        time.sleep(1)
    for n, log in zip((n1, n2), logs):
        assert all(w in log for w in want), f"node {n.data_dir}: {log}"
