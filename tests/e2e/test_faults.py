"""Faults in the backend, injected by a proxy in front of a real Garage
(fault_proxy.py): failed writes and reads reach the client as errors, the
server stays up, nothing acknowledged is lost, damaged or partial data is
never served, and a slow backend only makes things slower."""

from __future__ import annotations

import concurrent.futures as cf

import pytest
from botocore.exceptions import ClientError

from dicom_helpers import DicomWeb
from fault_proxy import FaultProxy
from helpers import random_bytes
from test_backends import _need, _take


@pytest.fixture
def faulty(fulcrum_factory):
    env = _need("FULCRUM_TEST_S3_ENDPOINT", "FULCRUM_TEST_S3_REGION", "FULCRUM_TEST_S3_ACCESS_KEY", "FULCRUM_TEST_S3_SECRET_KEY")
    proxy = FaultProxy(env["FULCRUM_TEST_S3_ENDPOINT"]).start()
    bucket = _take("FULCRUM_E2E_S3_BUCKETS")
    srv = fulcrum_factory(
        {
            "FULCRUM_BACKEND": f"s3://{bucket}?endpoint={proxy.endpoint}&region={env['FULCRUM_TEST_S3_REGION']}",
            "FULCRUM_BACKEND_ACCESS_KEY": env["FULCRUM_TEST_S3_ACCESS_KEY"],
            "FULCRUM_BACKEND_SECRET_KEY": env["FULCRUM_TEST_S3_SECRET_KEY"],
        }
    )
    yield srv, proxy
    proxy.clear()
    proxy.stop()


def healthy(srv) -> bool:
    import urllib.request

    with urllib.request.urlopen(srv.http_url + "/healthz", timeout=10) as r:
        return r.status == 200


def test_backend_write_and_read_errors_reach_clients_and_lose_nothing(faulty, gen_studies):
    srv, proxy = faulty
    s3 = srv.client()
    s3.create_bucket(Bucket="faults")
    kept = random_bytes(700_000, seed=1)
    s3.put_object(Bucket="faults", Key="kept", Body=kept)

    # Every backend write fails: the client gets a 5xx, nothing is listed.
    proxy.set(error_rate=1.0, methods={"PUT", "POST"})
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket="faults", Key="lost", Body=random_bytes(500_000, seed=2))
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] >= 500
    r = DicomWeb(srv).stow([gen_studies[0].read()])
    assert r.status != 200 and r.failed, str(r)
    assert healthy(srv)

    # Flaky writes (some cut connections too): whatever was acknowledged is kept.
    proxy.set(error_rate=0.25, drop_rate=0.1, methods={"PUT", "POST"})
    acked, failed = {}, 0
    for i in range(30):
        body = random_bytes(200_000 + i * 5_000, seed=10 + i)
        try:
            s3.put_object(Bucket="faults", Key=f"f{i}", Body=body)
            acked[f"f{i}"] = body
        except ClientError:
            failed += 1
    assert proxy.injected > 0
    assert healthy(srv)

    # Reads fail while the backend fails: an error, never bytes.
    proxy.set(error_rate=1.0, methods={"GET"})
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket="faults", Key="kept")["Body"].read()
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] >= 500

    proxy.clear()
    assert s3.get_object(Bucket="faults", Key="kept")["Body"].read() == kept
    listed = {o["Key"] for o in s3.list_objects_v2(Bucket="faults").get("Contents", [])}
    assert "lost" not in listed
    for k, v in acked.items():
        assert s3.get_object(Bucket="faults", Key=k)["Body"].read() == v, k
    assert listed == {"kept", *acked}, (listed ^ {"kept", *acked}, failed)
    assert DicomWeb(srv).qido("/studies", {}) == []
    res = srv.verify()
    assert res.returncode == 0, res.stdout + res.stderr


def test_health_check_fails_while_the_backend_does_not_answer(faulty):
    """A load balancer must stop sending work to a node whose pack backend
    is down (it used to answer ok while every PUT failed)."""
    import urllib.error

    srv, proxy = faulty
    assert healthy(srv)
    proxy.set(error_rate=1.0, methods={"HEAD", "GET"})
    with pytest.raises(urllib.error.HTTPError) as e:
        healthy(srv)
    assert e.value.code == 503 and b"backend" in e.value.read()
    proxy.clear()
    assert healthy(srv)


def test_a_slow_backend_only_slows_things_down(faulty):
    srv, proxy = faulty
    s3 = srv.client()
    s3.create_bucket(Bucket="slow")
    proxy.set(delay=0.3)
    bodies = {f"s{i}": random_bytes(300_000, seed=40 + i) for i in range(8)}
    with cf.ThreadPoolExecutor(8) as ex:
        list(ex.map(lambda kv: s3.put_object(Bucket="slow", Key=kv[0], Body=kv[1]), bodies.items()))
        got = dict(ex.map(lambda k: (k, s3.get_object(Bucket="slow", Key=k)["Body"].read()), bodies))
    assert got == bodies
    assert proxy.injected == 0


def test_a_bucket_that_does_not_exist_is_an_unusable_backend_not_lost_packs(fulcrum_factory, tmp_path):
    """A wrong bucket name in a node's configuration: /healthz fails (a
    HEAD cannot tell a missing bucket from a missing object) and verify
    reports the packs unchecked, not every one of them damaged."""
    import json
    import subprocess
    import time
    import urllib.error
    import urllib.request

    from helpers import free_port

    env = _need("FULCRUM_TEST_S3_ENDPOINT", "FULCRUM_TEST_S3_REGION", "FULCRUM_TEST_S3_ACCESS_KEY", "FULCRUM_TEST_S3_SECRET_KEY")

    def backend(bucket):
        return {
            "FULCRUM_BACKEND": f"s3://{bucket}?endpoint={env['FULCRUM_TEST_S3_ENDPOINT']}&region={env['FULCRUM_TEST_S3_REGION']}",
            "FULCRUM_BACKEND_ACCESS_KEY": env["FULCRUM_TEST_S3_ACCESS_KEY"],
            "FULCRUM_BACKEND_SECRET_KEY": env["FULCRUM_TEST_S3_SECRET_KEY"],
        }

    srv = fulcrum_factory(backend(_take("FULCRUM_E2E_S3_BUCKETS")))
    s3 = srv.client()
    s3.create_bucket(Bucket="kept")
    s3.put_object(Bucket="kept", Key="k", Body=random_bytes(300_000, seed=5))
    assert srv.stop() == 0

    wrong = dict(srv.env(), **backend("no-such-bucket-fulcrum-e2e"))
    r = subprocess.run(
        [str(srv.binary), "verify", "--json", "--data-dir", str(srv.data_dir)],
        env=wrong, capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 1, r.stdout + r.stderr
    report = json.loads(r.stdout)
    assert report["unchecked_packs"] >= 1 and report["bad_chunks"] == 0, report
    assert "NoSuchBucket" in " ".join(report["problems"]), report

    http = free_port()
    proc = subprocess.Popen(
        [str(srv.binary), "serve", "--data-dir", str(srv.data_dir), "--http-addr", f"127.0.0.1:{http}",
         "--s3-addr", f"127.0.0.1:{free_port()}", "--dicom-addr", f"127.0.0.1:{free_port()}"],
        env=wrong, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        status, deadline = None, time.monotonic() + 20
        while status is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http}/healthz", timeout=10) as resp:
                    status = resp.status
            except urllib.error.HTTPError as e:
                status = e.code
            except OSError:
                time.sleep(0.1)
        assert status == 503
    finally:
        proc.terminate()
        proc.wait(timeout=10)
