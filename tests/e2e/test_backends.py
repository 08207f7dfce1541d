"""The same S3 behaviour with Fulcrum on its other catalog and backend:
PostgreSQL (FULCRUM_CATALOG_URL) and Garage as S3 backend (FULCRUM_BACKEND).

scripts/test.sh starts both and exports FULCRUM_E2E_PG_URLS (fresh databases)
and FULCRUM_E2E_S3_BUCKETS (fresh Garage buckets) plus FULCRUM_TEST_S3_*; each
server here takes an unused database / bucket. Without them these tests skip,
unless FULCRUM_TEST_REQUIRE_ALL=1 makes a missing peer a failure.
"""

from __future__ import annotations

import os

import pytest

from helpers import MiB, random_bytes, sha256, sha256_stream

_used: set[str] = set()


def _need(*names: str) -> dict:
    missing = [n for n in names if not os.environ.get(n)]
    if missing:
        msg = f"needs {', '.join(missing)} (scripts/test.sh sets them)"
        if os.environ.get("FULCRUM_TEST_REQUIRE_ALL") == "1":
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    return {n: os.environ[n] for n in names}


def _take(pool_var: str) -> str:
    """An item of the space-separated pool in $pool_var no test has used yet."""
    for item in _need(pool_var)[pool_var].split():
        if item not in _used:
            _used.add(item)
            return item
    pytest.fail(f"{pool_var} is used up; add more in scripts/lib", pytrace=False)


def _postgres_env() -> dict:
    return {"FULCRUM_CATALOG_URL": _take("FULCRUM_E2E_PG_URLS")}


def _garage_env() -> dict:
    env = _need(
        "FULCRUM_TEST_S3_ENDPOINT",
        "FULCRUM_TEST_S3_REGION",
        "FULCRUM_TEST_S3_ACCESS_KEY",
        "FULCRUM_TEST_S3_SECRET_KEY",
    )
    bucket = _take("FULCRUM_E2E_S3_BUCKETS")
    return {
        "FULCRUM_BACKEND": (
            f"s3://{bucket}?endpoint={env['FULCRUM_TEST_S3_ENDPOINT']}&region={env['FULCRUM_TEST_S3_REGION']}"
        ),
        "FULCRUM_BACKEND_ACCESS_KEY": env["FULCRUM_TEST_S3_ACCESS_KEY"],
        "FULCRUM_BACKEND_SECRET_KEY": env["FULCRUM_TEST_S3_SECRET_KEY"],
    }


@pytest.mark.parametrize("combo", ["postgres-catalog", "garage-backend", "postgres-and-garage"])
def test_round_trip_restart_gc(fulcrum_factory, combo):
    env = {}
    if "postgres" in combo:
        env.update(_postgres_env())
    if "garage" in combo:
        env.update(_garage_env())
    srv = fulcrum_factory(env)
    s3 = srv.client()
    bucket = f"b-{combo}"
    s3.create_bucket(Bucket=bucket)

    size = 12 * MiB
    big = random_bytes(size, seed=80)
    s3.put_object(Bucket=bucket, Key="big", Body=big)
    s3.put_object(Bucket=bucket, Key="dup", Body=big)
    s3.put_object(Bucket=bucket, Key="small", Body=b"hello", Metadata={"k": "v"})
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["big", "dup", "small"]
    stats = srv.stats()
    assert stats["logical_bytes"] == 2 * size + 5
    assert stats["dedup_ratio"] > 1.8, stats

    # Everything survives a restart.
    srv.restart()
    s3 = srv.client()
    assert sha256_stream(s3.get_object(Bucket=bucket, Key="dup")["Body"]) == (sha256(big), size)
    assert s3.head_object(Bucket=bucket, Key="small")["Metadata"] == {"k": "v"}

    # Deleting both copies and collecting frees the chunks.
    before = srv.stats()
    s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "big"}, {"Key": "dup"}]})
    srv.gc()
    after = srv.stats()
    assert after["objects"] == 1 and after["chunks"] < before["chunks"], (before, after)
    assert s3.get_object(Bucket=bucket, Key="small")["Body"].read() == b"hello"
    res = srv.verify()
    assert res.returncode == 0, res.stdout + res.stderr
