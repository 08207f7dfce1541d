"""Bit rot: flip one byte in a pack file and make sure Fulcrum notices.

A GET must fail (error, or a body cut short) rather than return wrong bytes
with success, and `fulcrum verify` must exit non-zero naming bucket/key.
"""

from __future__ import annotations

from helpers import MiB, random_bytes, sha256


def _flip_middle_byte(path):
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.seek(size // 2)
        byte = f.read(1)
        f.seek(size // 2)
        f.write(bytes([byte[0] ^ 0x01]))


def test_flipped_byte_fails_get_and_verify(fulcrum, s3, bucket):
    size = 3 * MiB
    data = random_bytes(size, seed=60)
    s3.put_object(Bucket=bucket, Key="victim.bin", Body=data)
    assert fulcrum.verify().returncode == 0, "verify must pass before the damage"
    assert fulcrum.stop() == 0

    packs = fulcrum.pack_files()
    assert packs, f"no pack files under {fulcrum.data_dir / 'store' / 'packs'}"
    _flip_middle_byte(packs[0])

    fulcrum.start()
    s3 = fulcrum.client()
    try:
        got = s3.get_object(Bucket=bucket, Key="victim.bin")["Body"].read()
    except Exception:  # noqa: BLE001 - ClientError, IncompleteRead, reset: all fine
        got = None
    got_len = None if got is None else len(got)
    if got_len is not None:
        assert got_len < size, "GET returned a full-length body with success after corruption " + (
            "(bytes WRONG)" if sha256(got) != sha256(data) else "(bytes equal: was the damage read at all?)"
        )

    res = fulcrum.verify()
    assert res.returncode != 0, f"verify passed over a damaged pack:\n{res.stdout}\n{res.stderr}"
    assert f"{bucket}/victim.bin" in res.stdout + res.stderr, res.stdout + res.stderr


def test_damage_in_a_copy_source_is_a_server_error_not_the_clients(fulcrum, s3, bucket):
    """UploadPartCopy of a damaged object read a source stream that failed:
    that was answered 400 IncompleteBody (the client's fault, no alert).
    It is 500 InternalError, as a GET of the object is, and no part is kept."""
    import pytest
    from botocore.exceptions import ClientError

    from helpers import error_code, http_status

    data = random_bytes(3 * MiB, seed=61)
    s3.put_object(Bucket=bucket, Key="source.bin", Body=data)
    assert fulcrum.stop() == 0
    _flip_middle_byte(fulcrum.pack_files()[0])
    fulcrum.start()
    s3 = fulcrum.client()
    up = s3.create_multipart_upload(Bucket=bucket, Key="copy.bin")["UploadId"]
    with pytest.raises(ClientError) as e:
        s3.upload_part_copy(Bucket=bucket, Key="copy.bin", UploadId=up, PartNumber=1,
                            CopySource={"Bucket": bucket, "Key": "source.bin"})
    assert (http_status(e.value), error_code(e.value)) == (500, "InternalError"), e.value.response
    assert s3.list_parts(Bucket=bucket, Key="copy.bin", UploadId=up).get("Parts", []) == []
