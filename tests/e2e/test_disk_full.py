"""A full disk: the data dir on a small tmpfs. Writes fail with a clear
error on every protocol (S3 507 StorageFull, STOW-RS 507 with failure
reason 0xA700, DIMSE C-STORE status 0xA700), nothing half-written becomes
visible, the server stays up, and it takes writes again by itself once
space frees. Needs root for the mount (scripts/test.sh runs as root in CI);
elsewhere the test is skipped with the reason."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from botocore.exceptions import ClientError

from dicom_helpers import DicomWeb, scu
from helpers import random_bytes

SIZE_MB = 48


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE_MB}m", "tmpfs", str(mnt)], capture_output=True, text=True
    )
    if res.returncode != 0:
        pytest.skip(f"cannot mount a size-limited tmpfs here (needs root): {res.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(mnt, leave_bytes: int):
    """A filler file that leaves about `leave_bytes` free."""
    free = shutil.disk_usage(mnt).free
    with open(mnt / "filler", "wb") as f:
        f.write(b"\0" * max(0, free - leave_bytes))
        f.flush()


def c_store_statuses(srv, instances) -> list[int]:
    """C-STORE each instance with pynetdicom; the status of each."""
    import pydicom

    datasets = [pydicom.dcmread(x.path) for x in instances]
    ae = scu(contexts=sorted({(ds.SOPClassUID, (ds.file_meta.TransferSyntaxUID,)) for ds in datasets}))
    assoc = ae.associate("127.0.0.1", srv.dicom_port, ae_title=srv.dicom_aet)
    assert assoc.is_established
    try:
        return [int(assoc.send_c_store(ds).Status) for ds in datasets]
    finally:
        assoc.release()


def test_full_disk_refuses_writes_cleanly_and_recovers(fulcrum_factory, small_disk, gen_studies):
    srv = fulcrum_factory()
    srv.stop()
    srv.data_dir = small_disk / "data"
    srv.start().wait_dicom_ready()
    s3 = srv.client()
    s3.create_bucket(Bucket="ward")
    before = random_bytes(1_000_000, seed=1)
    s3.put_object(Bucket="ward", Key="before", Body=before)

    fill(small_disk, 2_000_000)
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket="ward", Key="big", Body=random_bytes(8_000_000, seed=2))
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 507, e.value.response
    assert e.value.response["Error"]["Code"] == "StorageFull"
    assert "full" in e.value.response["Error"]["Message"]

    big = [x for x in gen_studies][:4]
    dw = DicomWeb(srv)
    fill_more = small_disk / "filler2"
    fill_more.write_bytes(b"\0" * max(0, shutil.disk_usage(small_disk).free - 4096))
    r = dw.stow([x.read() for x in big])
    assert r.status == 507, str(r)
    assert {reason for _, reason in r.failed} == {0xA700}, r.failed
    assert c_store_statuses(srv, big) == [0xA700] * len(big)

    # Nothing half-written became visible; the server is up.
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="ward").get("Contents", [])]
    assert keys == ["before"]
    assert dw.qido("/studies", {}) == []
    assert s3.get_object(Bucket="ward", Key="before")["Body"].read() == before

    # Space frees: writes work again without a restart.
    (small_disk / "filler").unlink()
    fill_more.unlink()
    data = random_bytes(8_000_000, seed=3)
    s3.put_object(Bucket="ward", Key="after", Body=data)
    assert s3.get_object(Bucket="ward", Key="after")["Body"].read() == data
    r = dw.stow([x.read() for x in big])
    assert r.status == 200, (r.status, r.text[:500])
    srv.stop()
    res = srv.verify()
    assert res.returncode == 0, res.stdout + res.stderr


def test_new_data_stops_short_of_the_last_bytes_and_deletes_still_work(fulcrum_factory, small_disk):
    """Writes stop while the disk still has room (1 % of it, at least 1 MiB)
    for the catalog: deletes, verify and a restart still work. Small writes
    used to be taken until the disk was at 100 %, after which even deletes,
    `fulcrum verify` and `fulcrum serve` failed."""
    srv = fulcrum_factory()
    srv.stop()
    srv.data_dir = small_disk / "data"
    srv.start()
    s3 = srv.client()
    s3.create_bucket(Bucket="ward")
    s3.put_object(Bucket="ward", Key="before", Body=random_bytes(1_000_000, seed=5))
    fill(small_disk, 6_000_000)
    refused = 0
    for i in range(40):
        try:
            s3.put_object(Bucket="ward", Key=f"small{i}", Body=random_bytes(300_000, seed=100 + i))
        except ClientError as e:
            assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 507, e.response
            refused += 1
            if refused == 3:
                break
    assert refused == 3, "writes were never refused"
    free = shutil.disk_usage(small_disk).free
    assert free > 900_000, f"only {free} bytes left on the data disk"
    s3.delete_object(Bucket="ward", Key="before")
    assert "before" not in [o["Key"] for o in s3.list_objects_v2(Bucket="ward").get("Contents", [])]
    srv.stop()
    res = srv.verify()
    assert res.returncode == 0, res.stdout + res.stderr
    srv.start()
    got = srv.client().get_object(Bucket="ward", Key="small0")["Body"].read()
    assert got == random_bytes(300_000, seed=100)
