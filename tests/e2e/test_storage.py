"""Storage behaviour seen from outside: dedup, stats and garbage collection.

Sizes come from `fulcrum stats --json`; physical_bytes is the size of all
pack files, so it is also checked against the files on disk.
"""

from __future__ import annotations

import os
import time

from helpers import MiB, random_bytes, sha256, sha256_stream

SIZE = 100 * MiB


def _physical_on_disk(fulcrum) -> int:
    return sum(p.stat().st_size for p in fulcrum.pack_files())


def test_dedup_identical_and_nearly_identical_objects(fulcrum, s3, bucket):
    a = random_bytes(SIZE, seed=100)
    p0 = fulcrum.stats()["physical_bytes"]

    s3.put_object(Bucket=bucket, Key="a", Body=a)
    s1 = fulcrum.stats()
    p1 = s1["physical_bytes"]
    # Random data does not compress: storing A must cost about |A|.
    assert p1 - p0 >= 0.95 * SIZE, f"physical grew only {p1 - p0} bytes for {SIZE} random bytes"
    assert p1 == _physical_on_disk(fulcrum), "physical_bytes must equal the pack files' size"
    assert s1["logical_bytes"] == SIZE
    assert s1["objects"] == 1

    # Same bytes, second key: almost free.
    s3.put_object(Bucket=bucket, Key="b", Body=a)
    s2 = fulcrum.stats()
    p2 = s2["physical_bytes"]
    assert p2 - p1 < 0.01 * SIZE, f"identical copy grew physical by {p2 - p1} bytes"
    assert s2["logical_bytes"] == 2 * SIZE
    assert s2["objects"] == 2
    assert s2["dedup_ratio"] > 1.9, s2

    # 1 KiB changed in the middle: content-defined chunking keeps the rest.
    mid = SIZE // 2
    c = a[:mid] + random_bytes(1024, seed=101) + a[mid + 1024 :]
    s3.put_object(Bucket=bucket, Key="c", Body=c)
    p3 = fulcrum.stats()["physical_bytes"]
    assert p3 - p2 < 0.05 * SIZE, f"1 KiB edit grew physical by {p3 - p2} bytes"

    # And every object still reads back exactly.
    for key, data in (("a", a), ("b", a), ("c", c)):
        assert sha256_stream(s3.get_object(Bucket=bucket, Key=key)["Body"]) == (sha256(data), SIZE), key


def test_stats_and_gc_after_delete(fulcrum, s3, bucket):
    keep = random_bytes(2 * MiB, seed=110)
    drop = [random_bytes(3 * MiB, seed=111 + i) for i in range(3)]
    keep_size, drop_size = 2 * MiB, 3 * 3 * MiB
    s3.put_object(Bucket=bucket, Key="keep", Body=keep)
    for i, data in enumerate(drop):
        s3.put_object(Bucket=bucket, Key=f"drop{i}", Body=data)

    before = fulcrum.stats()
    assert before["objects"] == 4
    assert before["logical_bytes"] == keep_size + drop_size
    assert before["physical_bytes"] >= 0.95 * before["logical_bytes"]
    assert before["chunks"] > 0 and before["packs"] > 0

    for i in range(len(drop)):
        s3.delete_object(Bucket=bucket, Key=f"drop{i}")
    fulcrum.gc()

    after = fulcrum.stats()
    assert after["objects"] == 1
    assert after["logical_bytes"] == keep_size
    assert after["chunks"] < before["chunks"], (before, after)
    # Packs shared with `keep` may survive whole; nothing may grow.
    assert after["physical_bytes"] <= before["physical_bytes"], (before, after)
    assert after["physical_bytes"] == _physical_on_disk(fulcrum)
    # The survivor is intact, through the server and through verify.
    assert sha256(s3.get_object(Bucket=bucket, Key="keep")["Body"].read()) == sha256(keep)
    res = fulcrum.verify()
    assert res.returncode == 0, res.stdout + res.stderr

    # Nothing referenced any more: everything must go.
    s3.delete_object(Bucket=bucket, Key="keep")
    fulcrum.gc()
    empty = fulcrum.stats()
    assert (empty["objects"], empty["chunks"], empty["packs"]) == (0, 0, 0), empty
    assert empty["physical_bytes"] == 0 == _physical_on_disk(fulcrum), empty


def test_gc_removes_stale_temp_files_of_interrupted_writes(fulcrum):
    """A pack write cut off by a crash leaves a temp file; gc removes it
    once it is old, and leaves a fresh one (a write may be in flight)."""
    tmp = fulcrum.data_dir / "store" / ".tmp"
    stale, fresh = tmp / "interrupted-old", tmp / "in-flight"
    stale.write_bytes(b"x" * 1000)
    fresh.write_bytes(b"y" * 1000)
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    assert fulcrum.gc().returncode == 0
    assert not stale.exists()
    assert fresh.exists()
