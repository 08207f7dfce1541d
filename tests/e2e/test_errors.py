"""Error paths: authentication, missing things, limits, hostile keys and
uploads cut off half way. Each checks the exact S3 error code a client sees.
"""

from __future__ import annotations

import os
import socket
import time
import urllib.parse

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from helpers import (
    ACCESS_KEY,
    REGION,
    SECRET_KEY,
    MiB,
    error_code,
    files_under,
    http_status,
    random_bytes,
)


def test_wrong_secret_key_is_rejected(fulcrum, s3, bucket):
    bad = fulcrum.client(secret_key=SECRET_KEY + "x")
    for call in (lambda: bad.list_buckets(), lambda: bad.put_object(Bucket=bucket, Key="k", Body=b"x")):
        with pytest.raises(ClientError) as e:
            call()
        assert (http_status(e.value), error_code(e.value)) == (403, "SignatureDoesNotMatch")
    # Nothing was written by the rejected PUT.
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_unknown_access_key_is_rejected(fulcrum):
    with pytest.raises(ClientError) as e:
        fulcrum.client(access_key="NOSUCHKEY0000000000").list_buckets()
    assert (http_status(e.value), error_code(e.value)) == (403, "InvalidAccessKeyId")


def test_no_such_bucket(s3):
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket="no-such-bucket", Key="k")
    assert (http_status(e.value), error_code(e.value)) == (404, "NoSuchBucket")
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket="no-such-bucket", Key="k", Body=b"x")
    assert error_code(e.value) == "NoSuchBucket"


def test_no_such_key(s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="missing")
    assert (http_status(e.value), error_code(e.value)) == (404, "NoSuchKey")
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="missing")
    assert http_status(e.value) == 404


def test_object_over_max_size_is_rejected(fulcrum_factory):
    srv = fulcrum_factory({"FULCRUM_MAX_OBJECT_SIZE": str(1 * MiB)})
    s3 = srv.client()
    s3.create_bucket(Bucket="limited")
    s3.put_object(Bucket="limited", Key="at-limit", Body=random_bytes(1 * MiB, 40))
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket="limited", Key="too-big", Body=random_bytes(2 * MiB, 41))
    assert error_code(e.value) == "EntityTooLarge"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="limited").get("Contents", [])]
    assert keys == ["at-limit"]


def test_key_length_limit(s3, bucket):
    ok = "k" * 1024
    s3.put_object(Bucket=bucket, Key=ok, Body=b"x")
    assert s3.get_object(Bucket=bucket, Key=ok)["Body"].read() == b"x"
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k" * 1025, Body=b"x")
    assert error_code(e.value) in ("KeyTooLongError", "InvalidArgument"), e.value.response


def test_dot_dot_keys_are_opaque(fulcrum, s3, bucket, tmp_path):
    keys = ["../../etc/passwd", "a/../../../../escape", "../outside-data-dir", "./x/./y", "a//b"]
    outside_before = files_under(tmp_path) - files_under(fulcrum.data_dir)
    passwd = os.stat("/etc/passwd")

    for i, key in enumerate(keys):
        s3.put_object(Bucket=bucket, Key=key, Body=f"body {i}".encode())
    for i, key in enumerate(keys):
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == f"body {i}".encode(), key
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert sorted(listed) == sorted(keys)

    outside_after = files_under(tmp_path) - files_under(fulcrum.data_dir)
    # Server logs grow; no other file may appear outside the data dir.
    new = {p for p in outside_after - outside_before if p != fulcrum.log_path}
    assert new == set(), f"files created outside the data dir: {new}"
    after = os.stat("/etc/passwd")
    assert (after.st_mtime_ns, after.st_size) == (passwd.st_mtime_ns, passwd.st_size)
    assert not any(p.name in ("passwd", "escape", "outside-data-dir") for p in files_under(fulcrum.data_dir))


def _signed_put(endpoint: str, bucket: str, key: str, body: bytes) -> tuple[str, dict]:
    """SigV4-sign a PUT of `body` (payload hash included); return path and headers."""
    url = f"{endpoint}/{bucket}/{urllib.parse.quote(key)}"
    req = AWSRequest(method="PUT", url=url, data=body, headers={"Content-Length": str(len(body))})
    S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", REGION).add_auth(req)
    return urllib.parse.urlsplit(url).path, dict(req.headers.items())


def _raw_put(endpoint: str, path: str, headers: dict, send: bytes, read_response: bool) -> bytes:
    """Send a PUT by hand on a socket: headers, then `send` bytes of body."""
    host = urllib.parse.urlsplit(endpoint).netloc
    hostname, port = host.rsplit(":", 1)
    head = f"PUT {path} HTTP/1.1\r\nHost: {host}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items() if k.lower() != "host")
    head += "Connection: close\r\n\r\n"
    with socket.create_connection((hostname, int(port)), timeout=30) as sock:
        sock.sendall(head.encode() + send)
        if not read_response:
            return b""  # closing now cuts the upload off
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
        return out


def test_upload_cut_off_mid_body_leaves_nothing(fulcrum, s3, bucket):
    s3.put_object(Bucket=bucket, Key="baseline", Body=random_bytes(512 * 1024, 50))
    before = fulcrum.stats()

    # Control: the same hand-made request with the whole body succeeds, so a
    # rejection below is about the cut, not about our signing.
    body = random_bytes(1 * MiB, 51)
    path, headers = _signed_put(fulcrum.endpoint, bucket, "complete", body)
    reply = _raw_put(fulcrum.endpoint, path, headers, body, read_response=True)
    assert reply.startswith(b"HTTP/1.1 200"), reply[:500]
    assert s3.get_object(Bucket=bucket, Key="complete")["Body"].read() == body
    s3.delete_object(Bucket=bucket, Key="complete")

    # Content-Length says 1 MiB; send 100 KiB and hang up.
    body = random_bytes(1 * MiB, 52)
    path, headers = _signed_put(fulcrum.endpoint, bucket, "partial", body)
    _raw_put(fulcrum.endpoint, path, headers, body[: 100 * 1024], read_response=False)
    time.sleep(1.0)  # let the server notice the hang-up

    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert keys == ["baseline"]
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="partial")
    assert http_status(e.value) == 404

    fulcrum.gc()
    after = fulcrum.stats()
    assert after["chunks"] <= before["chunks"], (before, after)
    assert after["objects"] == before["objects"] == 1
    assert s3.get_object(Bucket=bucket, Key="baseline")["Body"].read() == random_bytes(512 * 1024, 50)


def test_backend_io_error_is_a_clean_5xx_and_the_server_recovers(fulcrum, s3, bucket):
    """A write the backend cannot take (its temp dir replaced by a file)
    gets a 500 with a clear code; the server stays up and serves again once
    the backend is repaired; nothing half-written is listed."""
    s3.put_object(Bucket=bucket, Key="before", Body=b"kept")
    tmp_dir = fulcrum.data_dir / "store" / ".tmp"
    for f in tmp_dir.iterdir():
        f.unlink()
    tmp_dir.rmdir()
    tmp_dir.write_bytes(b"not a directory")
    try:
        with pytest.raises(ClientError) as e:
            s3.put_object(Bucket=bucket, Key="during", Body=random_bytes(3 * MiB, 7))
        assert http_status(e.value) == 500
        assert error_code(e.value) == "InternalError"
        assert "storage backend" in e.value.response["Error"]["Message"]
        # Reads of what is stored still work while writes fail.
        assert s3.get_object(Bucket=bucket, Key="before")["Body"].read() == b"kept"
    finally:
        tmp_dir.unlink()
        tmp_dir.mkdir()
    s3.put_object(Bucket=bucket, Key="after", Body=b"again")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys == ["after", "before"]
