"""S3 API round trips through the real peers: the aws cli and boto3.

Objects, listing (prefix, delimiter, pagination), ranges, metadata, copy,
delete, buckets, explicit multipart and presigned URLs.
"""

from __future__ import annotations

import hashlib
import os
import time
import urllib.error
import urllib.parse
import urllib.request
import zlib

import pytest
from botocore.exceptions import ClientError

from helpers import (
    MiB,
    error_code,
    http_status,
    random_bytes,
    sha256,
    sha256_file,
    sha256_stream,
    write_random_file,
)


def _md5_etag(data: bytes) -> str:
    return '"' + hashlib.md5(data).hexdigest() + '"'


# ------------------------------------------------------------ objects


def test_aws_cli_small_object_round_trip(fulcrum, tmp_path):
    src, dst = tmp_path / "small.bin", tmp_path / "small.out"
    want = write_random_file(src, 1024, seed=1)

    fulcrum.aws("s3", "mb", "s3://cli-small")
    fulcrum.aws("s3", "cp", str(src), "s3://cli-small/dir/small.bin")
    listing = fulcrum.aws("s3", "ls", "s3://cli-small/dir/").stdout
    assert "small.bin" in listing and " 1024 " in listing, listing
    fulcrum.aws("s3", "cp", "s3://cli-small/dir/small.bin", str(dst))
    assert sha256_file(dst) == want


def test_boto3_small_object_round_trip(s3, bucket):
    data = random_bytes(1024, seed=2)
    put = s3.put_object(Bucket=bucket, Key="small", Body=data)
    assert put["ETag"] == _md5_etag(data), "single-part ETag must be the MD5 of the body"

    got = s3.get_object(Bucket=bucket, Key="small")
    assert got["Body"].read() == data
    assert got["ContentLength"] == 1024
    assert got["ETag"] == put["ETag"]


def test_boto3_100mb_single_put(s3, bucket, tmp_path):
    src = tmp_path / "100m.bin"
    want = write_random_file(src, 100 * MiB, seed=3)
    with open(src, "rb") as f:
        s3.put_object(Bucket=bucket, Key="big/100m", Body=f)

    got = s3.get_object(Bucket=bucket, Key="big/100m")
    assert got["ContentLength"] == 100 * MiB
    digest, n = sha256_stream(got["Body"])
    assert (digest, n) == (want, 100 * MiB)


def test_aws_cli_100mb_multipart_round_trip(fulcrum, tmp_path):
    # `aws s3 cp` splits anything over 8 MiB into parallel multipart uploads
    # and downloads with parallel ranged GETs.
    src, dst = tmp_path / "100m.bin", tmp_path / "100m.out"
    want = write_random_file(src, 100 * MiB, seed=4)
    fulcrum.aws("s3", "mb", "s3://cli-big")
    fulcrum.aws("s3", "cp", str(src), "s3://cli-big/100m.bin")
    fulcrum.aws("s3", "cp", "s3://cli-big/100m.bin", str(dst))
    assert dst.stat().st_size == 100 * MiB
    assert sha256_file(dst) == want


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_aws_cli_1gb_multipart_round_trip(fulcrum, tmp_path):
    src, dst = tmp_path / "1g.bin", tmp_path / "1g.out"
    want = write_random_file(src, 1024 * MiB, seed=5)
    fulcrum.aws("s3", "mb", "s3://cli-huge")
    fulcrum.aws("s3", "cp", str(src), "s3://cli-huge/1g.bin")
    src.unlink()  # keep the disk footprint down
    head = fulcrum.client().head_object(Bucket="cli-huge", Key="1g.bin")
    assert head["ContentLength"] == 1024 * MiB
    fulcrum.aws("s3", "cp", "s3://cli-huge/1g.bin", str(dst))
    got = sha256_file(dst)
    dst.unlink()
    assert got == want


# ------------------------------------------------------------ listing


def _list_all(s3, **kwargs):
    pages = []
    token = None
    while True:
        args = dict(kwargs)
        if token:
            args["ContinuationToken"] = token
        page = s3.list_objects_v2(**args)
        pages.append(page)
        if not page.get("IsTruncated"):
            return pages
        token = page["NextContinuationToken"]
        assert len(pages) < 100, "pagination does not terminate"


def test_list_objects_v2_prefix_delimiter_pagination(s3, bucket):
    page_keys = [f"page/{i:03d}" for i in range(25)]
    other = ["docs/a.txt", "docs/b/c.txt", "photos/2024/x.jpg", "photos/2025/y.jpg", "top1", "top2"]
    for key in page_keys + other:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())

    # Prefix.
    res = s3.list_objects_v2(Bucket=bucket, Prefix="page/")
    assert [o["Key"] for o in res["Contents"]] == page_keys
    assert res["KeyCount"] == 25
    assert all(o["Size"] == len(o["Key"]) for o in res["Contents"])

    # Delimiter at the root: folders become CommonPrefixes.
    res = s3.list_objects_v2(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in res.get("CommonPrefixes", [])] == ["docs/", "page/", "photos/"]
    assert [o["Key"] for o in res.get("Contents", [])] == ["top1", "top2"]

    # Delimiter below a prefix.
    res = s3.list_objects_v2(Bucket=bucket, Prefix="photos/", Delimiter="/")
    assert [p["Prefix"] for p in res.get("CommonPrefixes", [])] == ["photos/2024/", "photos/2025/"]
    assert "Contents" not in res or res["Contents"] == []
    res = s3.list_objects_v2(Bucket=bucket, Prefix="docs/", Delimiter="/")
    assert [o["Key"] for o in res["Contents"]] == ["docs/a.txt"]
    assert [p["Prefix"] for p in res["CommonPrefixes"]] == ["docs/b/"]

    # Pagination: 25 keys, 10 a page -> 10, 10, 5, in order, no repeats.
    pages = _list_all(s3, Bucket=bucket, Prefix="page/", MaxKeys=10)
    assert [len(p["Contents"]) for p in pages] == [10, 10, 5]
    assert [p["IsTruncated"] for p in pages] == [True, True, False]
    assert [o["Key"] for p in pages for o in p["Contents"]] == page_keys

    # The whole bucket, 7 a page.
    pages = _list_all(s3, Bucket=bucket, MaxKeys=7)
    assert [o["Key"] for p in pages for o in p["Contents"]] == sorted(page_keys + other)

    # StartAfter.
    res = s3.list_objects_v2(Bucket=bucket, Prefix="page/", StartAfter="page/020")
    assert [o["Key"] for o in res["Contents"]] == page_keys[21:]


def test_aws_cli_list_recursive(fulcrum, tmp_path):
    fulcrum.aws("s3", "mb", "s3://cli-list")
    src = tmp_path / "f"
    src.write_bytes(b"x" * 10)
    for key in ("a/1", "a/2", "b/3"):
        fulcrum.aws("s3", "cp", str(src), f"s3://cli-list/{key}")
    out = fulcrum.aws("s3", "ls", "s3://cli-list/").stdout
    assert "PRE a/" in out and "PRE b/" in out, out
    out = fulcrum.aws("s3", "ls", "--recursive", "s3://cli-list/").stdout
    assert [line.split()[-1] for line in out.splitlines()] == ["a/1", "a/2", "b/3"], out


# ------------------------------------------------------------ ranges, metadata


def test_range_get(s3, bucket):
    data = random_bytes(1000, seed=6)
    s3.put_object(Bucket=bucket, Key="r", Body=data)

    got = s3.get_object(Bucket=bucket, Key="r", Range="bytes=100-199")
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert got["ContentRange"] == "bytes 100-199/1000"
    assert got["Body"].read() == data[100:200]

    got = s3.get_object(Bucket=bucket, Key="r", Range="bytes=-10")
    assert got["ContentRange"] == "bytes 990-999/1000"
    assert got["Body"].read() == data[-10:]

    got = s3.get_object(Bucket=bucket, Key="r", Range="bytes=995-")
    assert got["Body"].read() == data[995:]

    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="r", Range="bytes=2000-3000")
    assert (http_status(e.value), error_code(e.value)) == (416, "InvalidRange")


def test_head_object_metadata_and_content_type(s3, bucket):
    meta = {"color": "blue", "patient-count": "42"}
    s3.put_object(Bucket=bucket, Key="m", Body=b"hello", Metadata=meta, ContentType="application/x-fulcrum-test")
    head = s3.head_object(Bucket=bucket, Key="m")
    assert head["ContentLength"] == 5
    assert head["ContentType"] == "application/x-fulcrum-test"
    assert head["Metadata"] == meta
    assert head["ETag"] == _md5_etag(b"hello")
    assert "LastModified" in head

    got = s3.get_object(Bucket=bucket, Key="m")
    assert got["Metadata"] == meta
    assert got["ContentType"] == "application/x-fulcrum-test"


def test_copy_object_keeps_or_replaces_metadata(s3, bucket):
    data = random_bytes(300_000, seed=7)
    s3.put_object(Bucket=bucket, Key="src", Body=data, Metadata={"a": "1"}, ContentType="text/x-src")
    s3.create_bucket(Bucket=bucket + "-dst")

    s3.copy_object(Bucket=bucket + "-dst", Key="copy", CopySource={"Bucket": bucket, "Key": "src"})
    got = s3.get_object(Bucket=bucket + "-dst", Key="copy")
    assert got["Body"].read() == data
    assert got["Metadata"] == {"a": "1"}
    assert got["ContentType"] == "text/x-src"

    s3.copy_object(
        Bucket=bucket,
        Key="replaced",
        CopySource={"Bucket": bucket, "Key": "src"},
        MetadataDirective="REPLACE",
        Metadata={"b": "2"},
        ContentType="text/x-new",
    )
    head = s3.head_object(Bucket=bucket, Key="replaced")
    assert head["Metadata"] == {"b": "2"}
    assert head["ContentType"] == "text/x-new"
    assert s3.get_object(Bucket=bucket, Key="replaced")["Body"].read() == data

    # The source is untouched.
    assert s3.head_object(Bucket=bucket, Key="src")["Metadata"] == {"a": "1"}


# ------------------------------------------------------------ delete, buckets


def _keys(s3, bucket):
    return [o["Key"] for p in _list_all(s3, Bucket=bucket) for o in p.get("Contents", [])]


def test_delete_object_and_multi_delete(s3, bucket):
    for key in ("k1", "k2", "k3", "k4"):
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())

    s3.delete_object(Bucket=bucket, Key="k1")
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="k1")
    assert http_status(e.value) == 404
    assert _keys(s3, bucket) == ["k2", "k3", "k4"]

    res = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "k2"}, {"Key": "k3"}, {"Key": "never-existed"}]})
    assert sorted(d["Key"] for d in res.get("Deleted", [])) == ["k2", "k3", "never-existed"]
    assert res.get("Errors", []) == []
    assert _keys(s3, bucket) == ["k4"]


def test_aws_cli_rm(fulcrum, tmp_path):
    src = tmp_path / "f"
    src.write_bytes(b"bye")
    fulcrum.aws("s3", "mb", "s3://cli-rm")
    fulcrum.aws("s3", "cp", str(src), "s3://cli-rm/x")
    fulcrum.aws("s3", "rm", "s3://cli-rm/x")
    assert fulcrum.aws("s3", "ls", "s3://cli-rm/").stdout.strip() == ""
    fulcrum.aws("s3", "rb", "s3://cli-rm")
    assert "cli-rm" not in fulcrum.aws("s3", "ls").stdout


def test_delete_bucket_must_be_empty(s3, bucket):
    s3.put_object(Bucket=bucket, Key="keep", Body=b"x")
    with pytest.raises(ClientError) as e:
        s3.delete_bucket(Bucket=bucket)
    assert (http_status(e.value), error_code(e.value)) == (409, "BucketNotEmpty")
    assert bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]

    s3.delete_object(Bucket=bucket, Key="keep")
    s3.delete_bucket(Bucket=bucket)
    assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    with pytest.raises(ClientError) as e:
        s3.head_bucket(Bucket=bucket)
    assert http_status(e.value) == 404


def test_creating_an_existing_bucket_changes_nothing(s3, bucket):
    # As in S3's us-east-1 (and Ceph RGW): creating a bucket one has, as it
    # is, succeeds and keeps what it holds; another Object Lock setting fails.
    s3.put_object(Bucket=bucket, Key="kept", Body=b"x")
    s3.create_bucket(Bucket=bucket)
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["kept"]
    with pytest.raises(ClientError) as e:
        s3.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    assert (http_status(e.value), error_code(e.value)) == (409, "BucketAlreadyOwnedByYou")
    with pytest.raises(ClientError) as e:
        s3.get_object_lock_configuration(Bucket=bucket)
    assert error_code(e.value) == "ObjectLockConfigurationNotFoundError"


def test_list_buckets_pages_and_prefix(s3):
    names = [f"page-{c}" for c in "dcba"] + ["other-z"]
    for n in names:
        s3.create_bucket(Bucket=n)
    got, token = [], {}
    while True:
        page = s3.list_buckets(MaxBuckets=2, Prefix="page-", **token)
        assert len(page["Buckets"]) <= 2
        got += [b["Name"] for b in page["Buckets"]]
        if "ContinuationToken" not in page:
            break
        token = {"ContinuationToken": page["ContinuationToken"]}
    assert got == ["page-a", "page-b", "page-c", "page-d"]
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == sorted(names)


# ------------------------------------------------------------ multipart


def test_list_multipart_uploads_groups_by_delimiter_and_pages(s3, bucket):
    """ListMultipartUploads as on AWS: key order, then start order;
    CommonPrefixes with a delimiter; max-uploads pages with markers."""
    ids = {}
    for key in ("scans/ct/1", "scans/ct/2", "scans/mr/1", "top", "top", "zeta"):
        ids.setdefault(key, []).append(s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"])
        time.sleep(0.002)
    r = s3.list_multipart_uploads(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in r.get("CommonPrefixes", [])] == ["scans/"]
    assert [(u["Key"], u["UploadId"]) for u in r["Uploads"]] == [("top", ids["top"][0]), ("top", ids["top"][1]), ("zeta", ids["zeta"][0])]
    r = s3.list_multipart_uploads(Bucket=bucket, Delimiter="/", Prefix="scans/")
    assert [p["Prefix"] for p in r["CommonPrefixes"]] == ["scans/ct/", "scans/mr/"] and "Uploads" not in r
    # Pages of two, whole listing.
    seen, kw = [], {}
    while True:
        page = s3.list_multipart_uploads(Bucket=bucket, MaxUploads=2, **kw)
        seen += [(u["Key"], u["UploadId"]) for u in page.get("Uploads", [])]
        assert len(page.get("Uploads", [])) <= 2
        if not page["IsTruncated"]:
            break
        kw = {"KeyMarker": page["NextKeyMarker"], "UploadIdMarker": page["NextUploadIdMarker"]}
    assert seen == [(k, i) for k in sorted(ids) for i in ids[k]]
    # Pages of one with a delimiter: the prefix once, then the rest.
    first = s3.list_multipart_uploads(Bucket=bucket, Delimiter="/", MaxUploads=1)
    assert first["IsTruncated"] and [p["Prefix"] for p in first["CommonPrefixes"]] == ["scans/"]
    rest = s3.list_multipart_uploads(Bucket=bucket, Delimiter="/", KeyMarker=first["NextKeyMarker"])
    assert "CommonPrefixes" not in rest and [u["Key"] for u in rest["Uploads"]] == ["top", "top", "zeta"]
    # A client that aborts each upload as it pages (the marker upload is
    # gone when the next page is asked for) still sees every one.
    aborted, kw = [], {}
    while True:
        page = s3.list_multipart_uploads(Bucket=bucket, MaxUploads=2, **kw)
        for u in page.get("Uploads", []):
            s3.abort_multipart_upload(Bucket=bucket, Key=u["Key"], UploadId=u["UploadId"])
            aborted.append((u["Key"], u["UploadId"]))
        if not page["IsTruncated"]:
            break
        kw = {"KeyMarker": page["NextKeyMarker"], "UploadIdMarker": page["NextUploadIdMarker"]}
    assert aborted == [(k, i) for k in sorted(ids) for i in ids[k]]
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_multipart_upload_complete(s3, bucket):
    parts_data = [random_bytes(5 * MiB + extra, seed=10 + i) for i, extra in enumerate((0, 17, 12345))]
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp", ContentType="application/x-mp")
    uid = up["UploadId"]
    listed = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert [(u["Key"], u["UploadId"]) for u in listed] == [("mp", uid)]

    etags = []
    for n, data in enumerate(parts_data, start=1):
        res = s3.upload_part(Bucket=bucket, Key="mp", UploadId=uid, PartNumber=n, Body=data)
        assert res["ETag"] == _md5_etag(data)
        etags.append(res["ETag"])

    parts = s3.list_parts(Bucket=bucket, Key="mp", UploadId=uid)["Parts"]
    assert [(p["PartNumber"], p["Size"], p["ETag"]) for p in parts] == [
        (n, len(d), e) for n, (d, e) in enumerate(zip(parts_data, etags, strict=True), start=1)
    ]
    # Not visible before completion.
    assert _keys(s3, bucket) == []

    done = s3.complete_multipart_upload(
        Bucket=bucket,
        Key="mp",
        UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, start=1)]},
    )
    # S3's multipart ETag: md5 of the concatenated part md5s, "-<parts>".
    md5s = b"".join(hashlib.md5(d).digest() for d in parts_data)
    assert done["ETag"] == f'"{hashlib.md5(md5s).hexdigest()}-3"'

    whole = b"".join(parts_data)
    whole_size = len(whole)
    got = s3.get_object(Bucket=bucket, Key="mp")
    assert got["ContentLength"] == whole_size
    assert got["ContentType"] == "application/x-mp"
    assert sha256(got["Body"].read()) == sha256(whole)
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_multipart_upload_abort(s3, bucket):
    uid = s3.create_multipart_upload(Bucket=bucket, Key="gone")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="gone", UploadId=uid, PartNumber=1, Body=random_bytes(5 * MiB, 20))
    s3.abort_multipart_upload(Bucket=bucket, Key="gone", UploadId=uid)

    assert _keys(s3, bucket) == []
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="gone")
    assert http_status(e.value) == 404
    with pytest.raises(ClientError) as e:
        s3.list_parts(Bucket=bucket, Key="gone", UploadId=uid)
    assert error_code(e.value) == "NoSuchUpload"
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_an_upload_id_sent_with_another_key_names_no_upload(s3, bucket):
    """As on AWS: every multipart call is checked against the key the upload
    was created for, so a client (or a bug) addressing another key can
    neither add to, read, abort nor complete someone else's upload."""
    s3.put_object(Bucket=bucket, Key="src", Body=b"copied part")
    uid = s3.create_multipart_upload(Bucket=bucket, Key="victim")["UploadId"]
    good = s3.upload_part(Bucket=bucket, Key="victim", UploadId=uid, PartNumber=1, Body=b"GOOD DATA")["ETag"]

    calls = {
        "UploadPart": lambda: s3.upload_part(Bucket=bucket, Key="other", UploadId=uid, PartNumber=1, Body=b"EVIL"),
        "UploadPartCopy": lambda: s3.upload_part_copy(
            Bucket=bucket, Key="other", UploadId=uid, PartNumber=1, CopySource={"Bucket": bucket, "Key": "src"}
        ),
        "ListParts": lambda: s3.list_parts(Bucket=bucket, Key="other", UploadId=uid),
        "CompleteMultipartUpload": lambda: s3.complete_multipart_upload(
            Bucket=bucket,
            Key="elsewhere",
            UploadId=uid,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": good}]},
        ),
        "AbortMultipartUpload": lambda: s3.abort_multipart_upload(Bucket=bucket, Key="other", UploadId=uid),
    }
    for name, call in calls.items():
        with pytest.raises(ClientError) as e:
            call()
        assert (error_code(e.value), http_status(e.value)) == ("NoSuchUpload", 404), name

    # The upload is untouched and still completes under its own key.
    parts = s3.list_parts(Bucket=bucket, Key="victim", UploadId=uid)["Parts"]
    assert [(p["PartNumber"], p["ETag"]) for p in parts] == [(1, good)]
    assert sorted(_keys(s3, bucket)) == ["src"]
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="victim", UploadId=uid, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": good}]}
    )
    assert done["Key"] == "victim"
    assert s3.get_object(Bucket=bucket, Key="victim")["Body"].read() == b"GOOD DATA"


# ------------------------------------------------------------ presigned URLs


def test_presigned_get(s3, bucket):
    data = random_bytes(4096, seed=30)
    s3.put_object(Bucket=bucket, Key="shared/file.bin", Body=data)
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "shared/file.bin"}, ExpiresIn=300)
    with urllib.request.urlopen(url, timeout=30) as r:
        assert r.status == 200
        assert r.read() == data

    # Tamper with the signature, then with the signed path: both must be 403.
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qs(parts.query)
    sig = query["X-Amz-Signature"][0]
    query["X-Amz-Signature"] = [sig[:-1] + ("0" if sig[-1] != "0" else "1")]
    bad_sig = parts._replace(query=urllib.parse.urlencode(query, doseq=True)).geturl()
    bad_key = url.replace("shared/file.bin", "shared/file.bix")
    for bad in (bad_sig, bad_key):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(bad, timeout=30)
        assert e.value.code == 403, bad


# ------------------------------------------------------------ conditional requests


def test_conditional_reads_answer_304_and_412(s3, bucket):
    import datetime as dt

    etag = s3.put_object(Bucket=bucket, Key="c.txt", Body=b"version one")["ETag"]
    modified = s3.head_object(Bucket=bucket, Key="c.txt")["LastModified"]
    later, earlier = modified + dt.timedelta(hours=1), modified - dt.timedelta(hours=1)
    for op in (s3.get_object, s3.head_object):
        assert op(Bucket=bucket, Key="c.txt", IfMatch=etag)["ETag"] == etag
        assert op(Bucket=bucket, Key="c.txt", IfNoneMatch='"other"')["ETag"] == etag
        assert op(Bucket=bucket, Key="c.txt", IfModifiedSince=earlier)["ETag"] == etag
        assert op(Bucket=bucket, Key="c.txt", IfUnmodifiedSince=later)["ETag"] == etag
        for kwargs, status in [
            ({"IfNoneMatch": etag}, 304),
            ({"IfModifiedSince": later}, 304),
            ({"IfMatch": '"other"'}, 412),
            ({"IfUnmodifiedSince": earlier}, 412),
        ]:
            with pytest.raises(ClientError) as e:
                op(Bucket=bucket, Key="c.txt", **kwargs)
            assert http_status(e.value) == status, (op.__name__, kwargs)
    # A copy's source conditions fail with 412 and copy nothing.
    with pytest.raises(ClientError) as e:
        s3.copy_object(
            Bucket=bucket, Key="copy.txt", CopySource={"Bucket": bucket, "Key": "c.txt"}, CopySourceIfNoneMatch=etag
        )
    assert http_status(e.value) == 412
    s3.copy_object(Bucket=bucket, Key="copy.txt", CopySource={"Bucket": bucket, "Key": "c.txt"}, CopySourceIfMatch=etag)
    assert s3.get_object(Bucket=bucket, Key="copy.txt")["Body"].read() == b"version one"


def test_conditional_writes_never_replace_what_they_must_not(s3, bucket):
    s3.put_object(Bucket=bucket, Key="w.txt", Body=b"first", IfNoneMatch="*")
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="w.txt", Body=b"second", IfNoneMatch="*")
    assert http_status(e.value) == 412 and error_code(e.value) == "PreconditionFailed"
    first = s3.get_object(Bucket=bucket, Key="w.txt")
    assert first["Body"].read() == b"first"
    # If-Match replaces only the version named.
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="w.txt", Body=b"third", IfMatch='"00000000000000000000000000000000"')
    assert http_status(e.value) == 412
    s3.put_object(Bucket=bucket, Key="w.txt", Body=b"third", IfMatch=first["ETag"])
    assert s3.get_object(Bucket=bucket, Key="w.txt")["Body"].read() == b"third"
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="absent.txt", Body=b"x", IfMatch=first["ETag"])
    assert http_status(e.value) == 404
    # CompleteMultipartUpload: refused over an existing key, the upload stays open.
    up = s3.create_multipart_upload(Bucket=bucket, Key="w.txt")["UploadId"]
    part = s3.upload_part(Bucket=bucket, Key="w.txt", UploadId=up, PartNumber=1, Body=b"multipart")
    parts = {"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]}
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="w.txt", UploadId=up, MultipartUpload=parts, IfNoneMatch="*")
    assert http_status(e.value) == 412
    assert s3.get_object(Bucket=bucket, Key="w.txt")["Body"].read() == b"third"
    assert [p["PartNumber"] for p in s3.list_parts(Bucket=bucket, Key="w.txt", UploadId=up)["Parts"]] == [1]
    s3.abort_multipart_upload(Bucket=bucket, Key="w.txt", UploadId=up)


def test_concurrent_create_only_puts_let_exactly_one_win(s3, bucket):
    from concurrent.futures import ThreadPoolExecutor

    def put(i):
        body = f"writer {i}".encode()
        try:
            s3.put_object(Bucket=bucket, Key="race.txt", Body=body, IfNoneMatch="*")
            return body
        except ClientError as e:
            assert http_status(e) == 412, e.response
            return None

    with ThreadPoolExecutor(16) as pool:
        won = [b for b in pool.map(put, range(32)) if b is not None]
    assert len(won) == 1, won
    assert s3.get_object(Bucket=bucket, Key="race.txt")["Body"].read() == won[0]


def test_reads_during_overwrites_see_the_old_or_the_new_object_never_a_missing_key(s3, bucket):
    """S3's read-after-write consistency: while one client overwrites a key,
    GETs (whole and ranged) and copies of it see one whole version, never
    404 and never a copy with another version's size."""
    import threading
    import time

    bodies = [bytes([65 + i % 26]) * 3000 for i in range(26)]
    s3.put_object(Bucket=bucket, Key="busy", Body=bodies[0])
    stop = time.monotonic() + 4
    errors, reads = [], []

    def writer():
        i = 0
        while time.monotonic() < stop:
            i += 1
            s3.put_object(Bucket=bucket, Key="busy", Body=bodies[i % 26])

    def copier():
        i = 0
        while time.monotonic() < stop and len(errors) < 5:
            i += 1
            try:
                s3.copy_object(Bucket=bucket, Key=f"copy{i % 3}", CopySource={"Bucket": bucket, "Key": "busy"})
                got = s3.get_object(Bucket=bucket, Key=f"copy{i % 3}")["Body"].read()
                reads.append(got in bodies)
                if got not in bodies:
                    errors.append(f"copy holds mixed or wrong bytes: {got[:8]!r}… ({len(got)} bytes)")
            except ClientError as e:
                errors.append(f"copy: {http_status(e)} {error_code(e)}")

    def reader(ranged):
        while time.monotonic() < stop and len(errors) < 5:
            try:
                if ranged:
                    got = s3.get_object(Bucket=bucket, Key="busy", Range="bytes=0-3")["Body"].read()
                    ok = len(got) == 4 and got == got[:1] * 4
                else:
                    got = s3.get_object(Bucket=bucket, Key="busy")["Body"].read()
                    ok = got in bodies
                reads.append(ok)
                if not ok:
                    errors.append(f"mixed or wrong bytes: {got[:8]!r}… ({len(got)} bytes)")
            except ClientError as e:
                errors.append(f"{http_status(e)} {error_code(e)}")

    threads = [threading.Thread(target=writer), threading.Thread(target=copier)] + [
        threading.Thread(target=reader, args=(r,)) for r in (False, False, True, True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, f"{len(errors)} failed reads of {len(reads) + len(errors)}: {errors}"
    assert len(reads) > 100, len(reads)


# ------------------------------------------------------------ multipart copy


def test_aws_cli_copies_and_moves_large_objects_server_side(fulcrum, tmp_path):
    # Above its 8 MB threshold the aws cli copies with UploadPartCopy.
    src, out = tmp_path / "big.bin", tmp_path / "big.out"
    want = write_random_file(src, 20 * MiB + 11, seed=81)
    fulcrum.aws("s3", "mb", "s3://cli-copy")
    fulcrum.aws("s3", "cp", str(src), "s3://cli-copy/a/big.bin")
    fulcrum.aws("s3", "cp", "s3://cli-copy/a/big.bin", "s3://cli-copy/b/big.bin")
    fulcrum.aws("s3", "mv", "s3://cli-copy/b/big.bin", "s3://cli-copy/c/big.bin")
    listing = fulcrum.aws("s3", "ls", "s3://cli-copy", "--recursive").stdout
    assert "a/big.bin" in listing and "c/big.bin" in listing and "b/big.bin" not in listing, listing
    fulcrum.aws("s3", "cp", "s3://cli-copy/c/big.bin", str(out))
    assert sha256_file(out) == want


def test_upload_part_copy_ranges_and_errors(s3, bucket):
    data = random_bytes(12 * MiB + 5, seed=82)
    s3.put_object(Bucket=bucket, Key="src.bin", Body=data)
    s3.put_object(Bucket=bucket, Key="tail.bin", Body=b"tail")
    up = s3.create_multipart_upload(Bucket=bucket, Key="joined.bin")["UploadId"]
    src = {"Bucket": bucket, "Key": "src.bin"}
    first = s3.upload_part_copy(
        Bucket=bucket, Key="joined.bin", UploadId=up, PartNumber=1, CopySource=src, CopySourceRange="bytes=1-6291456"
    )["CopyPartResult"]
    assert first["ETag"] == _md5_etag(data[1:6291457])
    whole = s3.upload_part_copy(
        Bucket=bucket, Key="joined.bin", UploadId=up, PartNumber=2, CopySource={"Bucket": bucket, "Key": "tail.bin"}
    )["CopyPartResult"]
    for kwargs, status in [
        ({"CopySourceRange": f"bytes=0-{len(data)}"}, 416),  # past the end
        ({"CopySourceRange": "bytes=9-2"}, 400),
        ({"CopySourceRange": "0-10"}, 400),
        ({"CopySourceIfMatch": '"other"'}, 412),
        ({"CopySource": {"Bucket": bucket, "Key": "missing.bin"}}, 404),
        ({"PartNumber": 10001}, 400),
    ]:
        args = dict(Bucket=bucket, Key="joined.bin", UploadId=up, PartNumber=3, CopySource=src)
        args.update(kwargs)
        with pytest.raises(ClientError) as e:
            s3.upload_part_copy(**args)
        assert http_status(e.value) == status, (kwargs, e.value.response)
    parts = [{"PartNumber": 1, "ETag": first["ETag"]}, {"PartNumber": 2, "ETag": whole["ETag"]}]
    s3.complete_multipart_upload(Bucket=bucket, Key="joined.bin", UploadId=up, MultipartUpload={"Parts": parts})
    got = s3.get_object(Bucket=bucket, Key="joined.bin")["Body"].read()
    assert got == data[1:6291457] + b"tail"


def test_unversioned_buckets_list_each_object_as_its_null_version(s3, bucket):
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)
    keys = [f"v/{i}.txt" for i in range(5)] + ["w/x.txt"]
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    seen, kwargs = [], {}
    while True:
        page = s3.list_object_versions(Bucket=bucket, Prefix="v/", MaxKeys=2, **kwargs)
        for v in page.get("Versions", []):
            assert v["VersionId"] == "null" and v["IsLatest"] and v["Size"] == len(v["Key"]), v
            seen.append(v["Key"])
        if not page["IsTruncated"]:
            break
        kwargs = {"KeyMarker": page["NextKeyMarker"], "VersionIdMarker": page["NextVersionIdMarker"]}
    assert seen == keys[:5]
    page = s3.list_object_versions(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in page["CommonPrefixes"]] == ["v/", "w/"]


def test_acls_are_owner_only_and_unset_configurations_read_as_none(fulcrum, s3, bucket):
    s3.put_object(Bucket=bucket, Key="acl.txt", Body=b"x")
    for acl in (s3.get_bucket_acl(Bucket=bucket), s3.get_object_acl(Bucket=bucket, Key="acl.txt")):
        assert [g["Permission"] for g in acl["Grants"]] == ["FULL_CONTROL"]
        assert acl["Grants"][0]["Grantee"]["ID"] == acl["Owner"]["ID"]
    s3.put_object_acl(Bucket=bucket, Key="acl.txt", ACL="private")
    with pytest.raises(ClientError) as e:
        s3.put_object_acl(Bucket=bucket, Key="acl.txt", ACL="public-read")
    assert error_code(e.value) == "NotImplemented"
    with pytest.raises(ClientError) as e:
        s3.put_bucket_acl(Bucket=bucket, ACL="public-read-write")
    assert error_code(e.value) == "NotImplemented"
    # The same ACLs on a write were accepted and ignored: the client
    # believed the object public. They are refused, and nothing is written.
    all_users = 'uri="http://acs.amazonaws.com/groups/global/AllUsers"'
    for call in (
        lambda: s3.put_object(Bucket=bucket, Key="pub.txt", Body=b"x", ACL="public-read"),
        lambda: s3.put_object(Bucket=bucket, Key="pub.txt", Body=b"x", GrantRead=all_users),
        lambda: s3.copy_object(Bucket=bucket, Key="pub.txt", CopySource={"Bucket": bucket, "Key": "acl.txt"},
                               ACL="public-read"),
        lambda: s3.create_multipart_upload(Bucket=bucket, Key="pub.txt", ACL="public-read"),
        lambda: s3.create_bucket(Bucket=f"{bucket}-pub", ACL="public-read"),
    ):
        with pytest.raises(ClientError) as e:
            call()
        assert error_code(e.value) == "NotImplemented", e.value
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["acl.txt"]
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)
    assert f"{bucket}-pub" not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    s3.put_object(Bucket=bucket, Key="private.txt", Body=b"x", ACL="private")
    # An empty canned ACL is none (s3fs sends one on every write).
    status, text = _raw(fulcrum, "PUT", f"/{bucket}/empty-acl.txt", b"x", {"x-amz-acl": ""})
    assert status == 200, text
    for call, code in [
        (s3.get_bucket_policy, "NoSuchBucketPolicy"),
        (s3.get_bucket_cors, "NoSuchCORSConfiguration"),
        (s3.get_bucket_tagging, "NoSuchTagSet"),
    ]:
        with pytest.raises(ClientError) as e:
            call(Bucket=bucket)
        assert error_code(e.value) == code and http_status(e.value) == 404
        with pytest.raises(ClientError) as e:
            call(Bucket="no-such-bucket-here")
        assert error_code(e.value) == "NoSuchBucket"


# ------------------------------------------------------------ key names in listings

ODD_KEYS = ["a%20b", "plus+sign", "space here", "üñï/çødé", "q?x=1&y", "semi;colon", "hash#tag", "<lt>", "d%2Fe/f"]


def test_listings_return_keys_with_percent_plus_and_unicode_exactly(s3, bucket):
    # boto3 asks for encoding-type=url and decodes what it gets back.
    for k in ODD_KEYS:
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    want = sorted(ODD_KEYS)
    assert sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]) == want
    assert sorted(o["Key"] for o in s3.list_objects(Bucket=bucket)["Contents"]) == want
    assert sorted(v["Key"] for v in s3.list_object_versions(Bucket=bucket)["Versions"]) == want
    page = s3.list_objects_v2(Bucket=bucket, Delimiter="/", Prefix="")
    assert sorted(p["Prefix"] for p in page["CommonPrefixes"]) == ["d%2Fe/", "üñï/"]
    seen, marker = [], {}
    while True:
        page = s3.list_objects(Bucket=bucket, MaxKeys=4, **marker)
        seen += [o["Key"] for o in page.get("Contents", [])]
        if not page["IsTruncated"]:
            break
        marker = {"Marker": page["NextMarker"]}
    assert sorted(seen) == want
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp a+b%c")["UploadId"]
    assert [u["Key"] for u in s3.list_multipart_uploads(Bucket=bucket)["Uploads"]] == ["mp a+b%c"]
    s3.abort_multipart_upload(Bucket=bucket, Key="mp a+b%c", UploadId=up)


def test_aws_cli_sync_of_odd_names_is_idempotent(fulcrum, tmp_path):
    src = tmp_path / "src"
    for k in ODD_KEYS:
        if "?" in k or "<" in k:
            continue  # not portable file names
        (src / k).parent.mkdir(parents=True, exist_ok=True)
        (src / k).write_bytes(k.encode())
        # Written before the sync, as files are: Last-Modified is in whole
        # seconds (as on AWS), so a file written in the second of its upload
        # looks newer than its object and aws cli sends it again (1 run in 3).
        past = time.time() - 5
        os.utime(src / k, (past, past))
    fulcrum.aws("s3", "mb", "s3://cli-odd-names")
    first = fulcrum.aws("s3", "sync", str(src), "s3://cli-odd-names/").stdout
    assert first.count("upload:") == 7, first
    # Listed back exactly, the second sync has nothing to send or delete.
    again = fulcrum.aws("s3", "sync", str(src), "s3://cli-odd-names/", "--delete").stdout
    assert again.strip() == "", again


# ------------------------------------------------------------ additional checksums


def test_additional_checksums_are_verified_before_anything_is_stored(fulcrum, bucket):
    import base64

    s3 = fulcrum.client(request_checksum_calculation="when_required")
    body = b"a discharge summary " * 500
    wrong = {
        "ChecksumCRC32": "AAAAAA==",
        "ChecksumSHA1": base64.b64encode(hashlib.sha1(b"other").digest()).decode(),
        "ChecksumSHA256": base64.b64encode(hashlib.sha256(b"other").digest()).decode(),
    }
    for name, value in wrong.items():
        with pytest.raises(ClientError) as e:
            s3.put_object(Bucket=bucket, Key=f"bad-{name}", Body=body, **{name: value})
        assert error_code(e.value) == "BadDigest" and http_status(e.value) == 400, name
        with pytest.raises(ClientError):
            s3.head_object(Bucket=bucket, Key=f"bad-{name}")
    # What the SDK computes itself is accepted.
    sdk = fulcrum.client()
    for alg in ("CRC32", "SHA1", "SHA256"):
        sdk.put_object(Bucket=bucket, Key=f"good-{alg}", Body=body, ChecksumAlgorithm=alg)
        assert sdk.get_object(Bucket=bucket, Key=f"good-{alg}")["Body"].read() == body
    up = sdk.create_multipart_upload(Bucket=bucket, Key="parts", ChecksumAlgorithm="SHA256")["UploadId"]
    sdk.upload_part(Bucket=bucket, Key="parts", UploadId=up, PartNumber=1, Body=body, ChecksumAlgorithm="SHA256")
    with pytest.raises(ClientError) as e:
        s3.upload_part(Bucket=bucket, Key="parts", UploadId=up, PartNumber=2, Body=body, **{"ChecksumSHA256": wrong["ChecksumSHA256"]})
    assert error_code(e.value) == "BadDigest"
    assert [p["PartNumber"] for p in sdk.list_parts(Bucket=bucket, Key="parts", UploadId=up)["Parts"]] == [1]


def test_a_checksum_in_the_aws_chunked_trailer_is_verified(fulcrum, bucket):
    """What current SDKs send over HTTPS: an aws-chunked body whose CRC32 comes after it."""
    import base64
    import zlib

    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    from helpers import ACCESS_KEY, REGION, SECRET_KEY

    data = b"trailer-checked report " * 300

    def put(key, crc):
        body = f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n" + f"x-amz-checksum-crc32:{crc}\r\n\r\n".encode()
        url = f"{fulcrum.endpoint}/{bucket}/{key}"
        req = AWSRequest(
            method="PUT",
            url=url,
            data=body,
            headers={
                "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
                "Content-Encoding": "aws-chunked",
                "x-amz-decoded-content-length": str(len(data)),
                "x-amz-trailer": "x-amz-checksum-crc32",
            },
        )
        SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", REGION).add_auth(req)
        r = urllib.request.Request(url, data=body, method="PUT", headers=dict(req.headers.items()))
        try:
            with urllib.request.urlopen(r) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    good = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    assert put("trailer-good", good)[0] == 200
    status, text = put("trailer-bad", "AAAAAA==")
    assert status == 400 and "BadDigest" in text, text
    s3 = fulcrum.client()
    assert s3.get_object(Bucket=bucket, Key="trailer-good")["Body"].read() == data
    # The trailer's sum is kept with the object, as a header's is.
    assert s3.head_object(Bucket=bucket, Key="trailer-good", ChecksumMode="ENABLED").get("ChecksumCRC32") == good
    assert "trailer-bad" not in [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def test_a_forged_chunk_signature_is_refused_as_a_bad_signature(fulcrum, bucket):
    """A signed aws-chunked body (STREAMING-AWS4-HMAC-SHA256-PAYLOAD) whose
    chunk signature is not the one its data and the seed signature give:
    403 SignatureDoesNotMatch and nothing stored (it was 400 IncompleteBody,
    as if the client had hung up); the rightly signed body is stored."""
    import hmac

    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    from helpers import ACCESS_KEY, REGION, SECRET_KEY

    data = b"signed chunk of a discharge letter " * 100

    def put(key, forge):
        url = f"{fulcrum.endpoint}/{bucket}/{key}"
        req = AWSRequest(method="PUT", url=url, data=b"", headers={
            "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
            "Content-Encoding": "aws-chunked",
            "x-amz-decoded-content-length": str(len(data)),
        })
        SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", REGION).add_auth(req)
        auth = req.headers["Authorization"]
        seed = auth.rsplit("Signature=", 1)[1]
        stamp = req.headers["X-Amz-Date"]
        scope = f"{stamp[:8]}/{REGION}/s3/aws4_request"

        def sign(key_bytes, msg):
            return hmac.new(key_bytes, msg.encode(), hashlib.sha256).digest()

        k = sign(sign(sign(sign(("AWS4" + SECRET_KEY).encode(), stamp[:8]), REGION), "s3"), "aws4_request")
        empty = hashlib.sha256(b"").hexdigest()

        def chunk_sig(prev, chunk):
            sts = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", stamp, scope, prev, empty, hashlib.sha256(chunk).hexdigest()])
            return hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()

        s1 = "0" * 64 if forge else chunk_sig(seed, data)
        s2 = chunk_sig(s1, b"")
        body = (f"{len(data):x};chunk-signature={s1}\r\n".encode() + data + b"\r\n"
                + f"0;chunk-signature={s2}\r\n\r\n".encode())
        headers = dict(req.headers.items())
        headers["Content-Length"] = str(len(body))
        r = urllib.request.Request(url, data=body, method="PUT", headers=headers)
        try:
            with urllib.request.urlopen(r) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    assert put("signed", forge=False)[0] == 200
    status, text = put("forged", forge=True)
    assert status == 403 and "SignatureDoesNotMatch" in text, (status, text)
    s3 = fulcrum.client()
    assert s3.get_object(Bucket=bucket, Key="signed")["Body"].read() == data
    assert "forged" not in [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def test_additional_checksums_are_kept_and_returned(fulcrum, bucket):
    """A checksum a client stored an object with comes back when asked for
    (x-amz-checksum-mode: ENABLED), so the SDK checks what it downloads
    end to end; a copy keeps it; a range, having no stored sum, gets none."""
    import base64

    s3 = fulcrum.client()
    body = b"a radiology report, checksummed " * 400
    sha = base64.b64encode(hashlib.sha256(body).digest()).decode()
    put = s3.put_object(Bucket=bucket, Key="summed", Body=body, ChecksumAlgorithm="SHA256")
    assert put.get("ChecksumSHA256") == sha
    head = s3.head_object(Bucket=bucket, Key="summed", ChecksumMode="ENABLED")
    assert (head.get("ChecksumSHA256"), head.get("ChecksumType")) == (sha, "FULL_OBJECT")
    assert "ChecksumSHA256" not in s3.head_object(Bucket=bucket, Key="summed")
    got = s3.get_object(Bucket=bucket, Key="summed", ChecksumMode="ENABLED")
    assert got.get("ChecksumSHA256") == sha
    assert got["Body"].read() == body  # botocore validates the body against it
    part = s3.get_object(Bucket=bucket, Key="summed", ChecksumMode="ENABLED", Range="bytes=0-99")
    assert "ChecksumSHA256" not in part and part["Body"].read() == body[:100]
    s3.copy_object(
        Bucket=bucket, Key="summed-copy", CopySource={"Bucket": bucket, "Key": "summed"},
        MetadataDirective="REPLACE", Metadata={"reviewed": "yes"},
    )
    copy = s3.head_object(Bucket=bucket, Key="summed-copy", ChecksumMode="ENABLED")
    assert (copy.get("ChecksumSHA256"), copy["Metadata"]) == (sha, {"reviewed": "yes"})
    # What botocore sends by default (CRC32 in a header over HTTP) is kept too.
    s3.put_object(Bucket=bucket, Key="default", Body=body)
    crc = s3.head_object(Bucket=bucket, Key="default", ChecksumMode="ENABLED").get("ChecksumCRC32")
    import zlib

    assert crc == base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()
    # Listings name each object's algorithms (SDKs and sync tools read them).
    listed = {o["Key"]: o for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert listed["summed"].get("ChecksumAlgorithm") == ["SHA256"], listed["summed"]
    assert listed["summed"].get("ChecksumType") == "FULL_OBJECT"
    assert listed["default"].get("ChecksumAlgorithm") == ["CRC32"]
    versions = {v["Key"]: v for v in s3.list_object_versions(Bucket=bucket)["Versions"]}
    assert versions["summed-copy"].get("ChecksumAlgorithm") == ["SHA256"]


def test_multipart_checksums_are_kept_per_part_and_combined(fulcrum, bucket):
    """Each part's sum is kept (ListParts shows it), a completion naming
    another sum for a part is refused, and the object gets S3's composite
    checksum: the algorithm over the parts' binary sums, then -N."""
    import base64

    s3 = fulcrum.client()
    bodies = [random_bytes(5 * MiB, seed=81), random_bytes(1_000_000, seed=82)]
    raw = [hashlib.sha256(b).digest() for b in bodies]
    b64 = [base64.b64encode(r).decode() for r in raw]
    up = s3.create_multipart_upload(Bucket=bucket, Key="parts", ChecksumAlgorithm="SHA256")["UploadId"]
    for n, body in enumerate(bodies, start=1):
        r = s3.upload_part(Bucket=bucket, Key="parts", UploadId=up, PartNumber=n, Body=body, ChecksumAlgorithm="SHA256")
        assert r.get("ChecksumSHA256") == b64[n - 1]
    listing = s3.list_parts(Bucket=bucket, Key="parts", UploadId=up)
    # The upload's algorithm and (S3's default for it) type.
    assert (listing.get("ChecksumAlgorithm"), listing.get("ChecksumType")) == ("SHA256", "COMPOSITE")
    listed = listing["Parts"]
    assert [p.get("ChecksumSHA256") for p in listed] == b64
    parts = [{"PartNumber": p["PartNumber"], "ETag": p["ETag"], "ChecksumSHA256": p["ChecksumSHA256"]} for p in listed]
    wrong = [dict(parts[0], ChecksumSHA256=b64[1]), parts[1]]
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="parts", UploadId=up, MultipartUpload={"Parts": wrong})
    assert error_code(e.value) == "InvalidPart"
    done = s3.complete_multipart_upload(Bucket=bucket, Key="parts", UploadId=up, MultipartUpload={"Parts": parts})
    want = want_sha = base64.b64encode(hashlib.sha256(b"".join(raw)).digest()).decode() + "-2"
    assert done.get("ChecksumSHA256") == want
    head = s3.head_object(Bucket=bucket, Key="parts", ChecksumMode="ENABLED")
    assert (head.get("ChecksumSHA256"), head.get("ChecksumType")) == (want, "COMPOSITE")
    got = s3.get_object(Bucket=bucket, Key="parts", ChecksumMode="ENABLED")
    assert got["Body"].read() == b"".join(bodies)

    # boto3's transfer manager (CRC32 by default), as `aws s3 cp` uploads.
    from boto3.s3.transfer import TransferConfig

    src = fulcrum.data_dir.parent / "big.bin"
    src.write_bytes(random_bytes(11 * MiB, seed=83))
    s3.upload_file(str(src), bucket, "managed", Config=TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB))
    head = s3.head_object(Bucket=bucket, Key="managed", ChecksumMode="ENABLED")
    data = src.read_bytes()
    crcs = b"".join(zlib.crc32(data[k : k + 5 * MiB]).to_bytes(4, "big") for k in range(0, len(data), 5 * MiB))
    want = base64.b64encode(zlib.crc32(crcs).to_bytes(4, "big")).decode() + "-3"
    assert (head.get("ChecksumCRC32"), head.get("ChecksumType")) == (want, "COMPOSITE"), head

    # The object's own sum given in the completion is checked: a wrong
    # composite is refused, the right one kept.
    up = s3.create_multipart_upload(Bucket=bucket, Key="given", ChecksumAlgorithm="SHA256")["UploadId"]
    p = [s3.upload_part(Bucket=bucket, Key="given", UploadId=up, PartNumber=n, Body=b, ChecksumAlgorithm="SHA256")
         for n, b in enumerate(bodies, start=1)]
    parts = [{"PartNumber": n, "ETag": r["ETag"], "ChecksumSHA256": r["ChecksumSHA256"]} for n, r in enumerate(p, start=1)]
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="given", UploadId=up, MultipartUpload={"Parts": parts},
                                     ChecksumSHA256=b64[0] + "-2")
    assert error_code(e.value) == "BadDigest"
    s3.complete_multipart_upload(Bucket=bucket, Key="given", UploadId=up, MultipartUpload={"Parts": parts},
                                 ChecksumSHA256=want_sha)
    # A copy answers with the sums it keeps.
    copied = s3.copy_object(Bucket=bucket, Key="given-copy", CopySource={"Bucket": bucket, "Key": "given"})
    assert copied["CopyObjectResult"].get("ChecksumSHA256") == want_sha


def test_get_object_attributes_answers_what_was_asked(fulcrum, bucket):
    """GetObjectAttributes (was 501): only the attributes named in
    x-amz-object-attributes; a multipart object's parts, paged."""
    import json

    s3 = fulcrum.client()
    body = random_bytes(1000, seed=90)
    put = s3.put_object(Bucket=bucket, Key="one", Body=body, ChecksumAlgorithm="SHA256")
    a = s3.get_object_attributes(Bucket=bucket, Key="one",
                                 ObjectAttributes=["ETag", "Checksum", "ObjectSize", "StorageClass", "ObjectParts"])
    assert a["ETag"] == put["ETag"].strip('"')  # unquoted here, as AWS sends it
    assert (a["ObjectSize"], a["StorageClass"]) == (1000, "STANDARD")
    assert a["Checksum"]["ChecksumSHA256"] == put["ChecksumSHA256"]
    assert a["Checksum"]["ChecksumType"] == "FULL_OBJECT"
    assert "ObjectParts" not in a and a["LastModified"]
    only = s3.get_object_attributes(Bucket=bucket, Key="one", ObjectAttributes=["ObjectSize"])
    assert only["ObjectSize"] == 1000 and not {"ETag", "Checksum", "StorageClass"} & set(only)

    sizes = [5 * MiB, 5 * MiB, 1000]
    up = s3.create_multipart_upload(Bucket=bucket, Key="parts")["UploadId"]
    parts = [{"PartNumber": n, "ETag": s3.upload_part(Bucket=bucket, Key="parts", UploadId=up, PartNumber=n,
                                                      Body=random_bytes(size, seed=90 + n))["ETag"]}
             for n, size in enumerate(sizes, start=1)]
    done = s3.complete_multipart_upload(Bucket=bucket, Key="parts", UploadId=up, MultipartUpload={"Parts": parts})
    first = s3.get_object_attributes(Bucket=bucket, Key="parts", ObjectAttributes=["ObjectParts", "ETag"], MaxParts=2)
    op = first["ObjectParts"]
    assert (op["TotalPartsCount"], op["IsTruncated"], op["NextPartNumberMarker"]) == (3, True, 2), op
    assert [(p["PartNumber"], p["Size"]) for p in op["Parts"]] == [(1, 5 * MiB), (2, 5 * MiB)]
    assert first["ETag"] == done["ETag"].strip('"')
    rest = s3.get_object_attributes(Bucket=bucket, Key="parts", ObjectAttributes=["ObjectParts"],
                                    MaxParts=2, PartNumberMarker=2)["ObjectParts"]
    assert [(p["PartNumber"], p["Size"]) for p in rest["Parts"]] == [(3, 1000)] and not rest["IsTruncated"]

    # The aws cli, as an operator checks an upload.
    out = json.loads(fulcrum.aws("s3api", "get-object-attributes", "--bucket", bucket, "--key", "parts",
                                 "--object-attributes", "ObjectSize", "ObjectParts").stdout)
    assert out["ObjectSize"] == sum(sizes) and out["ObjectParts"]["TotalPartsCount"] == 3

    for key, attrs, code in (("missing", ["ETag"], "NoSuchKey"), ("one", ["Colour"], "InvalidArgument")):
        with pytest.raises(ClientError) as e:
            s3.get_object_attributes(Bucket=bucket, Key=key, ObjectAttributes=attrs)
        assert error_code(e.value) == code, (key, attrs)


def test_full_object_crc_of_a_multipart_upload(fulcrum, bucket):
    """ChecksumType FULL_OBJECT: the object's CRC32 is that of its whole
    body, combined from the parts' CRCs and sizes, checked against the one
    the completion gives (a wrong one is refused), returned without -N."""
    import base64

    s3 = fulcrum.client()
    bodies = [random_bytes(5 * MiB, seed=91), random_bytes(5 * MiB + 3, seed=92), random_bytes(777, seed=93)]
    whole = base64.b64encode(zlib.crc32(b"".join(bodies)).to_bytes(4, "big")).decode()
    up = s3.create_multipart_upload(Bucket=bucket, Key="full", ChecksumAlgorithm="CRC32", ChecksumType="FULL_OBJECT")
    assert (up.get("ChecksumAlgorithm"), up.get("ChecksumType")) == ("CRC32", "FULL_OBJECT")
    uid = up["UploadId"]
    parts = []
    for n, body in enumerate(bodies, start=1):
        r = s3.upload_part(Bucket=bucket, Key="full", UploadId=uid, PartNumber=n, Body=body, ChecksumAlgorithm="CRC32")
        parts.append({"PartNumber": n, "ETag": r["ETag"], "ChecksumCRC32": r["ChecksumCRC32"]})
    listing = s3.list_parts(Bucket=bucket, Key="full", UploadId=uid)
    assert (listing.get("ChecksumAlgorithm"), listing.get("ChecksumType")) == ("CRC32", "FULL_OBJECT")
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="full", UploadId=uid, MultipartUpload={"Parts": parts},
                                     ChecksumCRC32="AAAAAA==", ChecksumType="FULL_OBJECT")
    assert error_code(e.value) == "BadDigest"
    done = s3.complete_multipart_upload(Bucket=bucket, Key="full", UploadId=uid, MultipartUpload={"Parts": parts},
                                        ChecksumCRC32=whole, ChecksumType="FULL_OBJECT")
    assert done.get("ChecksumCRC32") == whole
    head = s3.head_object(Bucket=bucket, Key="full", ChecksumMode="ENABLED")
    assert (head.get("ChecksumCRC32"), head.get("ChecksumType")) == (whole, "FULL_OBJECT")
    got = s3.get_object(Bucket=bucket, Key="full", ChecksumMode="ENABLED")
    assert got["Body"].read() == b"".join(bodies)  # botocore checks the full-object CRC32

    # A part uploaded without a sum, named with its right one at completion:
    # accepted (nothing kept to compare), no object sum.
    uid = s3.create_multipart_upload(Bucket=bucket, Key="bare")["UploadId"]
    plain = fulcrum.client(request_checksum_calculation="when_required")
    r = plain.upload_part(Bucket=bucket, Key="bare", UploadId=uid, PartNumber=1, Body=bodies[2])
    crc = base64.b64encode(zlib.crc32(bodies[2]).to_bytes(4, "big")).decode()
    plain.complete_multipart_upload(Bucket=bucket, Key="bare", UploadId=uid,
                                    MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": r["ETag"], "ChecksumCRC32": crc}]})
    assert "ChecksumCRC32" not in s3.head_object(Bucket=bucket, Key="bare", ChecksumMode="ENABLED")

    # The type said at creation holds for a completion that does not repeat
    # it (it was composite then, CRC32 "…-3").
    uid = s3.create_multipart_upload(Bucket=bucket, Key="said", ChecksumAlgorithm="CRC32",
                                     ChecksumType="FULL_OBJECT")["UploadId"]
    parts = []
    for n, body in enumerate(bodies, start=1):
        r = s3.upload_part(Bucket=bucket, Key="said", UploadId=uid, PartNumber=n, Body=body, ChecksumAlgorithm="CRC32")
        parts.append({"PartNumber": n, "ETag": r["ETag"], "ChecksumCRC32": r["ChecksumCRC32"]})
    done = s3.complete_multipart_upload(Bucket=bucket, Key="said", UploadId=uid, MultipartUpload={"Parts": parts})
    assert (done.get("ChecksumCRC32"), done.get("ChecksumType")) == (whole, "FULL_OBJECT"), done
    # FULL_OBJECT is for CRCs only, COMPOSITE not for CRC64NVME (as S3 refuses them).
    for alg, kind in (("SHA256", "FULL_OBJECT"), ("SHA1", "FULL_OBJECT"), ("CRC64NVME", "COMPOSITE")):
        with pytest.raises(ClientError) as e:
            s3.create_multipart_upload(Bucket=bucket, Key="no", ChecksumAlgorithm=alg, ChecksumType=kind)
        assert error_code(e.value) == "InvalidRequest", (alg, kind)


def test_standard_object_headers_are_kept_and_returned(s3, bucket):
    import datetime as dt

    expires = dt.datetime(2027, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    headers = dict(
        CacheControl="max-age=600",
        ContentDisposition='attachment; filename="discharge-summary.pdf"',
        ContentEncoding="gzip",
        ContentLanguage="zh-CN",
        Expires=expires,
    )
    s3.put_object(Bucket=bucket, Key="h.pdf", Body=b"%PDF", ContentType="application/pdf", Metadata={"ward": "7"}, **headers)

    def check(key, want_meta):
        for r in (s3.head_object(Bucket=bucket, Key=key), s3.get_object(Bucket=bucket, Key=key)):
            for name, value in headers.items():
                assert r.get(name) == value, (key, name, r.get(name))
            assert r["Metadata"] == want_meta, r["Metadata"]
            assert r["ContentType"] == "application/pdf"

    check("h.pdf", {"ward": "7"})
    s3.copy_object(Bucket=bucket, Key="copy.pdf", CopySource={"Bucket": bucket, "Key": "h.pdf"})
    check("copy.pdf", {"ward": "7"})
    s3.copy_object(
        Bucket=bucket,
        Key="replaced.pdf",
        CopySource={"Bucket": bucket, "Key": "h.pdf"},
        MetadataDirective="REPLACE",
        ContentType="application/pdf",
        Metadata={"ward": "9"},
    )
    r = s3.head_object(Bucket=bucket, Key="replaced.pdf")
    assert r["Metadata"] == {"ward": "9"} and "ContentDisposition" not in r and "CacheControl" not in r
    up = s3.create_multipart_upload(
        Bucket=bucket, Key="mp.pdf", ContentType="application/pdf", Metadata={"ward": "7"}, **headers
    )["UploadId"]
    part = s3.upload_part(Bucket=bucket, Key="mp.pdf", UploadId=up, PartNumber=1, Body=b"%PDF")
    s3.complete_multipart_upload(
        Bucket=bucket, Key="mp.pdf", UploadId=up, MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]}
    )
    check("mp.pdf", {"ward": "7"})
    # A presigned link may override what is stored.
    url = s3.generate_presigned_url(
        "get_object",
        Params={"Bucket": bucket, "Key": "h.pdf", "ResponseContentDisposition": "inline"},
        ExpiresIn=60,
    )
    with urllib.request.urlopen(url) as resp:
        assert resp.headers["Content-Disposition"] == "inline"
        assert resp.read() == b"%PDF"


# ------------------------------------------------------------ object tagging


def test_object_tags_set_read_counted_and_copied(fulcrum, s3, bucket):
    s3.put_object(Bucket=bucket, Key="scan", Body=b"x" * 100, Tagging="dept=radiology&phi=yes")
    head = s3.head_object(Bucket=bucket, Key="scan")
    assert head["ResponseMetadata"]["HTTPHeaders"]["x-amz-tagging-count"] == "2"
    assert "Metadata" not in head or head["Metadata"] == {}, "tags are not user metadata"
    assert s3.get_object(Bucket=bucket, Key="scan")["TagCount"] == 2
    tags = s3.get_object_tagging(Bucket=bucket, Key="scan")["TagSet"]
    assert tags == [{"Key": "dept", "Value": "radiology"}, {"Key": "phi", "Value": "yes"}]
    # Replaced by the aws cli, in place: same ETag and Last-Modified.
    fulcrum.aws(
        "s3api", "put-object-tagging", "--bucket", bucket, "--key", "scan",
        "--tagging", '{"TagSet": [{"Key": "study", "Value": "1.2.3 & more"}]}',
    )
    out = fulcrum.aws("s3api", "get-object-tagging", "--bucket", bucket, "--key", "scan").stdout
    assert '"study"' in out and "1.2.3 & more" in out and "radiology" not in out, out
    again = s3.head_object(Bucket=bucket, Key="scan")
    assert (again["ETag"], again["LastModified"]) == (head["ETag"], head["LastModified"])
    # A copy keeps them, or takes new ones with the REPLACE directive.
    s3.copy_object(Bucket=bucket, Key="kept", CopySource={"Bucket": bucket, "Key": "scan"})
    assert s3.get_object_tagging(Bucket=bucket, Key="kept")["TagSet"] == [{"Key": "study", "Value": "1.2.3 & more"}]
    s3.copy_object(
        Bucket=bucket, Key="retagged", CopySource={"Bucket": bucket, "Key": "scan"},
        TaggingDirective="REPLACE", Tagging="a=1",
    )
    assert s3.get_object_tagging(Bucket=bucket, Key="retagged")["TagSet"] == [{"Key": "a", "Value": "1"}]
    # A multipart upload takes them at creation.
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp", Tagging="k=v")["UploadId"]
    part = s3.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=1, Body=b"p")
    s3.complete_multipart_upload(
        Bucket=bucket, Key="mp", UploadId=up,
        MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]},
    )
    assert s3.get_object_tagging(Bucket=bucket, Key="mp")["TagSet"] == [{"Key": "k", "Value": "v"}]
    # Deleted: no tags, no count.
    assert s3.delete_object_tagging(Bucket=bucket, Key="scan")["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert s3.get_object_tagging(Bucket=bucket, Key="scan")["TagSet"] == []
    assert "x-amz-tagging-count" not in s3.head_object(Bucket=bucket, Key="scan")["ResponseMetadata"]["HTTPHeaders"]


def test_tags_beyond_s3s_limits_are_refused_and_change_nothing(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"x", Tagging="keep=1")
    too_many = {"TagSet": [{"Key": f"k{i}", "Value": "v"} for i in range(11)]}
    long_key = {"TagSet": [{"Key": "k" * 129, "Value": "v"}]}
    long_value = {"TagSet": [{"Key": "k", "Value": "v" * 257}]}
    for tagging in (too_many, long_key, long_value):
        with pytest.raises(ClientError) as e:
            s3.put_object_tagging(Bucket=bucket, Key="k", Tagging=tagging)
        assert (http_status(e.value), error_code(e.value)) == (400, "InvalidTag")
    assert s3.get_object_tagging(Bucket=bucket, Key="k")["TagSet"] == [{"Key": "keep", "Value": "1"}]
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="new", Body=b"x", Tagging="&".join(f"k{i}=v" for i in range(11)))
    assert error_code(e.value) == "InvalidTag"
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="new")
    assert http_status(e.value) == 404
    with pytest.raises(ClientError) as e:
        s3.put_object_tagging(Bucket=bucket, Key="missing", Tagging={"TagSet": []})
    assert error_code(e.value) == "NoSuchKey"


def test_bucket_tags_set_read_and_deleted(fulcrum, s3, bucket):
    with pytest.raises(ClientError) as e:
        s3.get_bucket_tagging(Bucket=bucket)
    assert (http_status(e.value), error_code(e.value)) == (404, "NoSuchTagSet")
    tags = [{"Key": f"k{i:02d}", "Value": f"v{i}"} for i in range(50)]
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": tags})
    assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"] == tags
    fulcrum.aws("s3api", "put-bucket-tagging", "--bucket", bucket, "--tagging", "TagSet=[{Key=site,Value=county-7}]")
    out = fulcrum.aws("s3api", "get-bucket-tagging", "--bucket", bucket).stdout
    assert "county-7" in out and "k00" not in out, out
    with pytest.raises(ClientError) as e:
        s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": f"k{i}", "Value": "v"} for i in range(51)]})
    assert error_code(e.value) == "InvalidTag"
    assert s3.get_bucket_tagging(Bucket=bucket)["TagSet"] == [{"Key": "site", "Value": "county-7"}]
    s3.delete_bucket_tagging(Bucket=bucket)
    with pytest.raises(ClientError) as e:
        s3.get_bucket_tagging(Bucket=bucket)
    assert error_code(e.value) == "NoSuchTagSet"
    # Gone with the bucket: a new bucket of the same name has none.
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": "a", "Value": "b"}]})
    s3.delete_bucket(Bucket=bucket)
    s3.create_bucket(Bucket=bucket)
    with pytest.raises(ClientError) as e:
        s3.get_bucket_tagging(Bucket=bucket)
    assert error_code(e.value) == "NoSuchTagSet"


# ------------------------------------------------------------ one part of a multipart object


def test_get_and_head_of_one_part(s3, bucket):
    # SDK transfer managers download a multipart object part by part.
    sizes = [5 * MiB, 5 * MiB, 1 * MiB + 7]
    data = [random_bytes(n, seed=40 + i) for i, n in enumerate(sizes)]
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    parts = [
        {"ETag": s3.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=i + 1, Body=d)["ETag"], "PartNumber": i + 1}
        for i, d in enumerate(data)
    ]
    etag = s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up, MultipartUpload={"Parts": parts})["ETag"]
    start = 0
    for n, d in enumerate(data, start=1):
        head = s3.head_object(Bucket=bucket, Key="mp", PartNumber=n)
        assert (head["PartsCount"], head["ContentLength"], head["ETag"]) == (3, len(d), etag)
        got = s3.get_object(Bucket=bucket, Key="mp", PartNumber=n)
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert got["ContentRange"] == f"bytes {start}-{start + len(d) - 1}/{sum(sizes)}"
        assert (got["PartsCount"], got["ETag"]) == (3, etag)
        assert got["Body"].read() == d
        start += len(d)
    for call in (s3.get_object, s3.head_object):
        with pytest.raises(ClientError) as e:
            call(Bucket=bucket, Key="mp", PartNumber=4)
        assert http_status(e.value) == 416
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="mp", PartNumber=1, Range="bytes=0-9")
    assert http_status(e.value) == 400
    # An object of one PUT is its own part 1.
    s3.put_object(Bucket=bucket, Key="single", Body=b"body")
    got = s3.get_object(Bucket=bucket, Key="single", PartNumber=1)
    assert got["Body"].read() == b"body" and "PartsCount" not in got
    # As AWS answers it: 206 with the Content-Range part-wise downloaders read the size from.
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206 and got["ContentRange"] == "bytes 0-3/4"
    with pytest.raises(ClientError) as e:
        s3.get_object(Bucket=bucket, Key="single", PartNumber=2)
    assert http_status(e.value) == 416
    # The part sizes are not user metadata.
    assert s3.head_object(Bucket=bucket, Key="mp").get("Metadata", {}) == {}


# ------------------------------------------------------------ server-side encryption


def _refused(call, code="NotImplemented", status=501) -> str:
    with pytest.raises(ClientError) as e:
        call()
    assert http_status(e.value) == status, e.value.response
    if code is not None:
        assert error_code(e.value) == code, e.value.response
    return e.value.response.get("Error", {}).get("Message", "")


def test_server_side_encryption_fulcrum_cannot_honour_is_refused_and_stores_nothing(s3, bucket):
    """SSE-C and SSE-KMS are never honoured, SSE-S3 only by a server that
    encrypts at rest: each is refused with a message, never silently ignored."""
    import os

    ssec = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": os.urandom(32)}
    s3.put_object(Bucket=bucket, Key="plain", Body=b"Jane Doe")
    head = s3.head_object(Bucket=bucket, Key="plain")
    assert "ServerSideEncryption" not in head, "a server without encryption at rest must not claim it"

    msg = _refused(lambda: s3.put_object(Bucket=bucket, Key="ssec", Body=b"Jane Doe", **ssec))
    assert "SSE-C" in msg, msg
    _refused(lambda: s3.get_object(Bucket=bucket, Key="plain", **ssec))
    _refused(lambda: s3.head_object(Bucket=bucket, Key="plain", **ssec), code=None)
    _refused(lambda: s3.create_multipart_upload(Bucket=bucket, Key="ssec-mp", **ssec))
    _refused(
        lambda: s3.copy_object(
            Bucket=bucket,
            Key="ssec-copy",
            CopySource={"Bucket": bucket, "Key": "plain"},
            CopySourceSSECustomerAlgorithm="AES256",
            CopySourceSSECustomerKey=os.urandom(32),
        )
    )
    uid = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    _refused(lambda: s3.upload_part(Bucket=bucket, Key="mp", UploadId=uid, PartNumber=1, Body=b"x", **ssec))
    assert s3.list_parts(Bucket=bucket, Key="mp", UploadId=uid).get("Parts", []) == []

    msg = _refused(lambda: s3.put_object(Bucket=bucket, Key="kms", Body=b"x", ServerSideEncryption="aws:kms"))
    assert "KMS" in msg, msg
    msg = _refused(lambda: s3.put_object(Bucket=bucket, Key="sse-s3", Body=b"x", ServerSideEncryption="AES256"))
    assert "does not encrypt data at rest" in msg and "FULCRUM_ENCRYPTION_KEY" in msg, msg
    _refused(
        lambda: s3.copy_object(
            Bucket=bucket, Key="sse-copy", CopySource={"Bucket": bucket, "Key": "plain"}, ServerSideEncryption="AES256"
        )
    )
    assert sorted(_keys(s3, bucket)) == ["plain"]


def test_sse_s3_is_accepted_and_reported_by_a_server_that_encrypts_at_rest(fulcrum_factory):
    srv = fulcrum_factory({"FULCRUM_ENCRYPTION_KEY": "5a" * 32})
    s3 = srv.client()
    s3.create_bucket(Bucket="enc")
    put = s3.put_object(Bucket="enc", Key="sse", Body=b"Jane Doe", ServerSideEncryption="AES256")
    assert put["ServerSideEncryption"] == "AES256"
    # Everything such a server stores is encrypted, asked for or not.
    assert s3.put_object(Bucket="enc", Key="plain", Body=b"x")["ServerSideEncryption"] == "AES256"
    assert s3.head_object(Bucket="enc", Key="sse")["ServerSideEncryption"] == "AES256"
    got = s3.get_object(Bucket="enc", Key="sse")
    assert got["ServerSideEncryption"] == "AES256" and got["Body"].read() == b"Jane Doe"
    srv.aws("s3", "cp", "s3://enc/sse", "s3://enc/sse-copy", "--sse", "AES256")
    assert s3.head_object(Bucket="enc", Key="sse-copy")["ServerSideEncryption"] == "AES256"
    # Keys Fulcrum does not keep are still refused.
    _refused(lambda: s3.put_object(Bucket="enc", Key="kms", Body=b"x", ServerSideEncryption="aws:kms"))
    _refused(
        lambda: s3.put_object(
            Bucket="enc", Key="ssec", Body=b"x", SSECustomerAlgorithm="AES256", SSECustomerKey=b"k" * 32
        )
    )
    assert sorted(_keys(s3, "enc")) == ["plain", "sse", "sse-copy"]
    # The bucket's default encryption says what every object gets.
    (rule,) = s3.get_bucket_encryption(Bucket="enc")["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256", rule


# ------------------------------------------------------------ body digests and error messages


def _raw(fulcrum, method, path, body=b"", headers=None, payload_hash=None):
    """A SigV4-signed request sent as is: its body need not be the one its
    headers describe (what a proxy or a flipped bit makes of a request)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    from helpers import ACCESS_KEY, REGION, SECRET_KEY

    headers = dict(headers or {})
    headers["x-amz-content-sha256"] = payload_hash or hashlib.sha256(body).hexdigest()
    url = f"{fulcrum.endpoint}{path}"
    req = AWSRequest(method=method, url=url, data=body, headers=headers)
    SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", REGION).add_auth(req)
    r = urllib.request.Request(url, data=body or None, method=method, headers=dict(req.headers.items()))
    try:
        with urllib.request.urlopen(r) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _b64md5(data: bytes) -> str:
    import base64

    return base64.b64encode(hashlib.md5(data).digest()).decode()


def test_content_md5_is_checked_on_every_request_body(fulcrum, s3, bucket):
    """With UNSIGNED-PAYLOAD (what SDKs send over HTTPS) Content-MD5 is the
    body's only guard: a body that does not match it must change nothing."""
    for key in ("keep-me-1", "keep-me-2"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"record")
    unsigned = "UNSIGNED-PAYLOAD"
    sent = b"<Delete><Object><Key>keep-me-1</Key></Object></Delete>"
    arrived = b"<Delete><Object><Key>keep-me-2</Key></Object></Delete>"
    tags = b"<Tagging><TagSet><Tag><Key>a</Key><Value>1</Value></Tag></TagSet></Tagging>"
    cors = (
        b"<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin>"
        b"<AllowedMethod>GET</AllowedMethod></CORSRule></CORSConfiguration>"
    )
    uid = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="mp", UploadId=uid, PartNumber=1, Body=b"part")["ETag"]
    complete = (
        f"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{etag}</ETag></Part>"
        "</CompleteMultipartUpload>"
    ).encode()
    wrong = {"Content-MD5": _b64md5(b"another body")}
    cases = {
        "DeleteObjects": ("POST", f"/{bucket}?delete", arrived, {"Content-MD5": _b64md5(sent)}),
        "PutObjectTagging": ("PUT", f"/{bucket}/keep-me-1?tagging", tags, wrong),
        "PutBucketTagging": ("PUT", f"/{bucket}?tagging", tags, wrong),
        "PutBucketCors": ("PUT", f"/{bucket}?cors", cors, wrong),
        "CompleteMultipartUpload": ("POST", f"/{bucket}/mp?uploadId={uid}", complete, wrong),
        "PutObject": ("PUT", f"/{bucket}/new", b"data", wrong),
    }
    for name, (method, path, body, headers) in cases.items():
        status, text = _raw(fulcrum, method, path, body, headers, payload_hash=unsigned)
        assert status == 400 and "<Code>BadDigest</Code>" in text and "<Message>" in text, (name, status, text)
    status, text = _raw(fulcrum, "PUT", f"/{bucket}?tagging", tags, {"Content-MD5": "nope"}, payload_hash=unsigned)
    assert status == 400 and "<Code>InvalidDigest</Code>" in text, text

    # Nothing changed.
    assert sorted(_keys(s3, bucket)) == ["keep-me-1", "keep-me-2"]
    assert s3.get_object_tagging(Bucket=bucket, Key="keep-me-1")["TagSet"] == []
    for call in (lambda: s3.get_bucket_tagging(Bucket=bucket), lambda: s3.get_bucket_cors(Bucket=bucket)):
        with pytest.raises(ClientError) as e:
            call()
        assert http_status(e.value) == 404
    assert [p["PartNumber"] for p in s3.list_parts(Bucket=bucket, Key="mp", UploadId=uid)["Parts"]] == [1]

    # The matching digest is accepted, and what SDKs send still works.
    status, text = _raw(fulcrum, "POST", f"/{bucket}?delete", arrived, {"Content-MD5": _b64md5(arrived)}, unsigned)
    assert status == 200, text
    s3.put_object_tagging(Bucket=bucket, Key="keep-me-1", Tagging={"TagSet": [{"Key": "a", "Value": "1"}]})
    s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "keep-me-1"}]})
    assert _keys(s3, bucket) == []


def test_a_body_that_does_not_match_its_signed_sha256_is_a_client_error(fulcrum, s3, bucket):
    """AWS answers 400 XAmzContentSHA256Mismatch, which SDKs do not retry
    (a 500 they retry, an IncompleteBody misleads)."""
    s3.put_object(Bucket=bucket, Key="keep", Body=b"r")
    tags = b"<Tagging><TagSet><Tag><Key>a</Key><Value>1</Value></Tag></TagSet></Tagging>"
    cases = {
        "DeleteObjects": ("POST", f"/{bucket}?delete", b"<Delete><Object><Key>keep</Key></Object></Delete>"),
        "PutObjectTagging": ("PUT", f"/{bucket}/keep?tagging", tags),
        "PutObject": ("PUT", f"/{bucket}/new", b"arrived"),
        "UploadPart": ("PUT", f"/{bucket}/mp?partNumber=1&uploadId=", b"a part"),
    }
    uid = s3.create_multipart_upload(Bucket=bucket, Key="mp")["UploadId"]
    for name, (method, path, body) in cases.items():
        path = path + uid if path.endswith("uploadId=") else path
        signed_for = hashlib.sha256(body + b"!").hexdigest()
        status, text = _raw(fulcrum, method, path, body, payload_hash=signed_for)
        assert status == 400 and "<Code>XAmzContentSHA256Mismatch</Code>" in text, (name, status, text)
        assert "<Message>" in text, text
    assert _keys(s3, bucket) == ["keep"]
    assert s3.get_object_tagging(Bucket=bucket, Key="keep")["TagSet"] == []
    assert s3.list_parts(Bucket=bucket, Key="mp", UploadId=uid).get("Parts", []) == []


def test_errors_s3s_answers_say_what_went_wrong(fulcrum, s3, bucket):
    """The aws cli prints an error's <Message>, or "Unknown" without one."""
    bad_secret = fulcrum.client(secret_key="not-the-secret-key")
    with pytest.raises(ClientError) as e:
        bad_secret.list_buckets()
    assert error_code(e.value) == "SignatureDoesNotMatch"
    assert "signature" in e.value.response["Error"]["Message"], e.value.response

    res = fulcrum.aws("s3api", "list-objects-v2", "--bucket", "Bad_Bucket", check=False)
    assert res.returncode != 0 and "InvalidBucketName" in res.stderr, res.stderr
    assert "Unknown" not in res.stderr and "bucket" in res.stderr.split("InvalidBucketName")[1], res.stderr

    status, text = _raw(fulcrum, "PUT", f"/{bucket}?tagging", b"<Tagging><TagSet><Tag>")
    assert status == 400 and "<Code>MalformedXML</Code>" in text, text
    assert "<Message>The XML you provided" in text, text


def test_oversized_metadata_bad_directives_and_negative_max_keys_are_refused(s3, bucket):
    """As AWS: user metadata over 2 KB is 400 MetadataTooLarge (it was stored,
    and came back as 60 KB of headers that proxies refuse); an unknown
    metadata directive and a negative max-keys are 400 InvalidArgument."""
    big = {"note": "x" * 3000}
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="meta", Body=b"x", Metadata=big)
    assert (http_status(e.value), error_code(e.value)) == (400, "MetadataTooLarge")
    with pytest.raises(ClientError) as e:
        s3.create_multipart_upload(Bucket=bucket, Key="meta", Metadata=big)
    assert error_code(e.value) == "MetadataTooLarge"
    s3.put_object(Bucket=bucket, Key="meta", Body=b"x", Metadata={"note": "y" * 2000})
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "meta"},
                       MetadataDirective="BOGUS")
    assert (http_status(e.value), error_code(e.value)) == (400, "InvalidArgument")
    with pytest.raises(ClientError) as e:
        s3.list_objects_v2(Bucket=bucket, MaxKeys=-1)
    assert (http_status(e.value), error_code(e.value)) == (400, "InvalidArgument")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["meta"]


def test_a_carriage_return_in_a_key_survives_a_listing_without_url_encoding(fulcrum, s3, bucket):
    """XML parsers read a raw CR as a line feed, so a key holding one was
    listed under a name that is no object's to the SDKs that do not ask for
    encoding-type=url (AWS C++, JavaScript v3, Rust); AWS sends it as &#13;.
    An object's own bytes are never rewritten."""
    import xml.etree.ElementTree as ET

    key = "scan\r01\r\nend"
    s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    doc = b"<report>\r\nline\r\n</report>"
    s3.put_object(Bucket=bucket, Key="doc.xml", Body=doc, ContentType="application/xml")
    for query in ("list-type=2", "max-keys=100", "versions"):
        status, text = _raw(fulcrum, "GET", f"/{bucket}?{query}")
        assert status == 200 and "\r" not in text, (query, text)
        keys = [e.text for e in ET.fromstring(text).iter() if e.tag.split("}")[-1] == "Key"]
        assert key in keys, (query, keys)
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"x"
    assert s3.get_object(Bucket=bucket, Key="doc.xml")["Body"].read() == doc


def test_an_aws_chunked_body_cut_off_under_http_chunking_is_an_incomplete_body(fulcrum, bucket):
    """What the AWS SDK for JavaScript v3 sends for a stream (aws-chunked
    inside HTTP chunked transfer), cut off by the client: 400 IncompleteBody
    and nothing stored; it was 500 and logged as a storage failure, which
    operators alert on."""
    import socket

    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    from helpers import ACCESS_KEY, REGION, SECRET_KEY

    n = 1_000_000
    url = f"{fulcrum.endpoint}/{bucket}/cut"
    host, port = urllib.parse.urlsplit(fulcrum.endpoint).netloc.rsplit(":", 1)
    req = AWSRequest(method="PUT", url=url, headers={
        "Host": f"{host}:{port}",
        "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        "Content-Encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(n),
        "x-amz-trailer": "x-amz-checksum-crc32",
        "Transfer-Encoding": "chunked",
    })
    SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", REGION).add_auth(req)
    inner = b"%x\r\n" % n + b"Q" * 300_000  # the aws-chunked chunk, cut short
    wire = b"%x\r\n" % len(inner) + inner + b"\r\n"  # a whole HTTP chunk, then nothing
    head = f"PUT /{bucket}/cut HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in req.headers.items()) + "\r\n"
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(head.encode() + wire)
        s.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400") and b"<Code>IncompleteBody</Code>" in answer, answer[:600]
    s3 = fulcrum.client()
    assert "cut" not in [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    metrics = urllib.request.urlopen(f"{fulcrum.http_url}/metrics").read().decode()
    assert 'status="500"' not in metrics, [line for line in metrics.splitlines() if 'status="500"' in line]


def test_head_answers_a_range_as_get_does_and_empty_objects_have_no_range(s3, bucket):
    """HEAD with Range: 206 and the range's length (it was 200 with the
    whole length); any range of an empty object is 416 (a suffix range was
    206 "bytes 0-0/0"); a type-less object is binary/octet-stream; an
    unknown storage class is refused, S3's own are accepted."""
    s3.put_object(Bucket=bucket, Key="ten", Body=b"0123456789")
    h = s3.head_object(Bucket=bucket, Key="ten", Range="bytes=2-5")
    assert h["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert h["ContentLength"] == 4 and h["ContentRange"] == "bytes 2-5/10"
    assert s3.get_object(Bucket=bucket, Key="ten", Range="bytes=-3")["Body"].read() == b"789"
    with pytest.raises(ClientError) as e:
        s3.head_object(Bucket=bucket, Key="ten", Range="bytes=10-")
    assert http_status(e.value) == 416
    s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    for r in ("bytes=-1", "bytes=0-0", "bytes=0-"):
        with pytest.raises(ClientError) as e:
            s3.get_object(Bucket=bucket, Key="empty", Range=r)
        assert error_code(e.value) == "InvalidRange", r
    assert s3.get_object(Bucket=bucket, Key="empty")["Body"].read() == b""
    assert s3.head_object(Bucket=bucket, Key="ten")["ContentType"] == "binary/octet-stream"
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="odd", Body=b"x", StorageClass="BOGUS")
    assert error_code(e.value) == "InvalidStorageClass" and http_status(e.value) == 400
    with pytest.raises(ClientError) as e:
        s3.create_multipart_upload(Bucket=bucket, Key="odd", StorageClass="BOGUS")
    assert error_code(e.value) == "InvalidStorageClass"
    s3.put_object(Bucket=bucket, Key="ia", Body=b"x", StorageClass="STANDARD_IA")
    assert "odd" not in [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]


def test_operations_fulcrum_does_not_implement_change_nothing(fulcrum, s3, bucket):
    """An operation newer than s3s (RenameObject, UpdateObjectEncryption,
    object annotations) or an unknown subresource word was handled as the
    plain PUT or DELETE: the object was overwritten with the request's XML,
    truncated, or deleted. Appends (x-amz-write-offset-bytes) replaced the
    object with the appended bytes; a SHA-512 or xxHash checksum was stored
    unchecked. Each is now refused and changes nothing."""
    original = bytes(range(256)) * 4
    s3.put_object(Bucket=bucket, Key="k", Body=original)
    xml = b"<ObjectEncryption><SSES3/></ObjectEncryption>"
    cases = [
        ("PUT", f"/{bucket}/k?encryption", xml, {}, 501),
        ("PUT", f"/{bucket}/renamed?renameObject", b"", {"x-amz-rename-source": f"/{bucket}/k"}, 501),
        ("PUT", f"/{bucket}/k?annotation", b"<Annotation/>", {}, 501),
        ("PUT", f"/{bucket}/k?torrent", b"x", {}, 501),
        ("DELETE", f"/{bucket}/k?annotation", b"", {}, 501),
        ("DELETE", f"/{bucket}/k?fooBar", b"", {}, 501),
        # With a value too, on writes.
        ("PUT", f"/{bucket}/k?renameObject=1", xml, {}, 501),
        ("DELETE", f"/{bucket}/k?encryption=1", b"", {}, 501),
        ("GET", f"/{bucket}/k?abac", b"", {}, 501),
        ("PUT", f"/{bucket}/k", b"appended", {"x-amz-write-offset-bytes": str(len(original))}, 501),
        ("PUT", f"/{bucket}/k", b"other", {"x-amz-checksum-sha512": "A" * 88}, 400),
        ("PUT", f"/{bucket}/k", b"other", {"x-amz-checksum-xxhash64": "AAAAAAAAAAA="}, 400),
    ]
    for method, path, body, headers, want in cases:
        status, text = _raw(fulcrum, method, path, body, headers)
        assert status == want, (method, path, headers, status, text)
        assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == original, (method, path)
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["k"]
    # A bucket call s3s does not know, on an empty bucket: not a DeleteBucket.
    s3.create_bucket(Bucket=f"{bucket}-empty")
    status, _ = _raw(fulcrum, "DELETE", f"/{bucket}-empty?metadataConfiguration")
    assert status == 501
    s3.head_bucket(Bucket=f"{bucket}-empty")
    # boto3's own append call is refused the same way.
    with pytest.raises(ClientError) as e:
        s3.put_object(Bucket=bucket, Key="k", Body=b"more", WriteOffsetBytes=len(original))
    assert http_status(e.value) == 501 and error_code(e.value) == "NotImplemented"
    assert s3.head_object(Bucket=bucket, Key="k")["ContentLength"] == len(original)


def test_conditional_deletes_and_copies_change_nothing_when_the_condition_fails(fulcrum, s3, bucket):
    """AWS checks If-Match (and x-amz-if-match-size / -last-modified-time)
    on DeleteObject and each DeleteObjects entry's ETag and Size, and
    If-Match / If-None-Match: * on a copy's destination. Fulcrum ignored
    them: the object was deleted or overwritten anyway."""
    put = s3.put_object(Bucket=bucket, Key="k", Body=b"data")
    wrong = '"00000000000000000000000000000000"'
    with pytest.raises(ClientError) as e:
        s3.delete_object(Bucket=bucket, Key="k", IfMatch=wrong)
    assert http_status(e.value) == 412 and error_code(e.value) == "PreconditionFailed"
    status, _ = _raw(fulcrum, "DELETE", f"/{bucket}/k", headers={"x-amz-if-match-size": "5"})
    assert status == 412
    with pytest.raises(ClientError) as e:
        s3.delete_object(Bucket=bucket, Key="missing", IfMatch="*")
    assert http_status(e.value) == 404 and error_code(e.value) == "NoSuchKey"
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"data"
    s3.delete_object(Bucket=bucket, Key="k", IfMatch=put["ETag"])
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)

    etags = {k: s3.put_object(Bucket=bucket, Key=k, Body=k.encode())["ETag"] for k in ("a", "b", "c")}
    r = s3.delete_objects(Bucket=bucket, Delete={"Objects": [
        {"Key": "a", "ETag": wrong}, {"Key": "b", "ETag": etags["b"]}, {"Key": "c", "Size": 99}]})
    assert [d["Key"] for d in r.get("Deleted", [])] == ["b"]
    assert sorted((x["Key"], x["Code"]) for x in r["Errors"]) == [("a", "PreconditionFailed"), ("c", "PreconditionFailed")]
    assert sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]) == ["a", "c"]

    src = {"Bucket": bucket, "Key": "a"}
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="c", CopySource=src, IfNoneMatch="*")
    assert http_status(e.value) == 412
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="c", CopySource=src, IfMatch=wrong)
    assert http_status(e.value) == 412
    assert s3.get_object(Bucket=bucket, Key="c")["Body"].read() == b"c"
    s3.copy_object(Bucket=bucket, Key="c", CopySource=src, IfMatch=etags["c"])
    s3.copy_object(Bucket=bucket, Key="new", CopySource=src, IfNoneMatch="*")
    assert s3.get_object(Bucket=bucket, Key="c")["Body"].read() == b"a"
    assert s3.get_object(Bucket=bucket, Key="new")["Body"].read() == b"a"
    # A copy onto itself that changes only the storage class is allowed (rclone settier).
    s3.copy_object(Bucket=bucket, Key="a", CopySource=src, StorageClass="STANDARD")


def test_listings_and_reads_give_one_last_modified_and_head_bucket_names_the_region(s3, bucket):
    """Listings said LastModified with milliseconds while GET and HEAD say
    whole seconds (as HTTP dates do): `aws s3 sync --exact-timestamps`
    then found every file changed, on every run. AWS lists whole seconds.
    HeadBucket now names the region (x-amz-bucket-region), as AWS does."""
    for k in ("a", "b"):
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())
    for o in s3.list_objects_v2(Bucket=bucket)["Contents"]:
        head = s3.head_object(Bucket=bucket, Key=o["Key"])
        assert o["LastModified"] == head["LastModified"], (o, head["LastModified"])
        assert o["LastModified"].microsecond == 0
    listed = s3.list_objects(Bucket=bucket)["Contents"]
    assert all(o["LastModified"].microsecond == 0 for o in listed)
    h = s3.head_bucket(Bucket=bucket)
    assert h["ResponseMetadata"]["HTTPHeaders"]["x-amz-bucket-region"] == "us-east-1"


def test_racing_complete_and_abort_of_one_upload_do_not_both_succeed(fulcrum, s3, bucket):
    """A Complete and an Abort of the same upload sent together both
    answered success (13-18 of 20 tries for a tester), and the object
    existed: the client that aborted believed it gone. One wins; the other
    gets NoSuchUpload, and the object exists exactly when Complete won."""
    import threading

    part = random_bytes(5 * MiB, 77)
    clients = (fulcrum.client(), fulcrum.client())
    for t in range(10):
        key = f"race-{t}"
        up = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=up, PartNumber=1, Body=part)["ETag"]
        out = {}

        def complete():
            try:
                clients[0].complete_multipart_upload(Bucket=bucket, Key=key, UploadId=up,
                                                     MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]})
                out["complete"] = "ok"
            except ClientError as e:
                out["complete"] = error_code(e)

        def abort():
            try:
                clients[1].abort_multipart_upload(Bucket=bucket, Key=key, UploadId=up)
                out["abort"] = "ok"
            except ClientError as e:
                out["abort"] = error_code(e)

        threads = [threading.Thread(target=complete), threading.Thread(target=abort)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert sorted(out.values()) == ["NoSuchUpload", "ok"], (t, out)
        listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=key).get("Contents", [])]
        assert listed == ([key] if out["complete"] == "ok" else []), (t, out, listed)


def test_a_completion_declaring_another_size_is_refused(s3, bucket):
    """x-amz-mp-object-size (MpuObjectSize) was ignored: a 3-byte object was
    made although 999 bytes were declared. AWS answers 400 and completes
    nothing; the upload stays, and completes with the right size."""
    up = s3.create_multipart_upload(Bucket=bucket, Key="sized")["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="sized", UploadId=up, PartNumber=1, Body=b"abc")["ETag"]
    parts = {"Parts": [{"PartNumber": 1, "ETag": etag}]}
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="sized", UploadId=up, MultipartUpload=parts,
                                     MpuObjectSize=999)
    assert http_status(e.value) == 400 and error_code(e.value) == "InvalidRequest"
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)
    s3.complete_multipart_upload(Bucket=bucket, Key="sized", UploadId=up, MultipartUpload=parts, MpuObjectSize=3)
    assert s3.get_object(Bucket=bucket, Key="sized")["Body"].read() == b"abc"


def test_deleting_configurations_fulcrum_never_holds_succeeds_and_bad_encodings_are_refused(s3, bucket):
    """DeleteBucketPolicy, DeletePublicAccessBlock and DeleteBucketEncryption
    answered 501; AWS answers 204 for a bucket without one, and `terraform
    destroy` calls them. An unknown encoding-type was accepted (AWS: 400)."""
    for call in (s3.delete_bucket_policy, s3.delete_public_access_block, s3.delete_bucket_encryption):
        assert call(Bucket=bucket)["ResponseMetadata"]["HTTPStatusCode"] == 204
        with pytest.raises(ClientError) as e:
            call(Bucket=f"{bucket}-missing")
        assert error_code(e.value) == "NoSuchBucket"
    s3.head_bucket(Bucket=bucket)
    for call in (s3.list_objects_v2, s3.list_objects, s3.list_multipart_uploads):
        with pytest.raises(ClientError) as e:
            call(Bucket=bucket, EncodingType="bogus")
        assert http_status(e.value) == 400 and error_code(e.value) == "InvalidArgument", call
    assert s3.list_objects_v2(Bucket=bucket, EncodingType="url")["KeyCount"] == 0


def test_reading_configurations_fulcrum_never_holds_answers_as_for_a_bucket_without_them(s3, bucket):
    """A tester with minio-py: get_bucket_replication, _notification and
    _encryption raised on 501 where AWS answers "not found" or an empty
    configuration."""
    for call, code in [
        (s3.get_bucket_replication, "ReplicationConfigurationNotFoundError"),
        (s3.get_bucket_website, "NoSuchWebsiteConfiguration"),
        (s3.get_bucket_ownership_controls, "OwnershipControlsNotFoundError"),
        (s3.get_public_access_block, "NoSuchPublicAccessBlockConfiguration"),
        (s3.get_bucket_policy_status, "NoSuchBucketPolicy"),
        (s3.get_bucket_encryption, "ServerSideEncryptionConfigurationNotFoundError"),
    ]:
        with pytest.raises(ClientError) as e:
            call(Bucket=bucket)
        assert (error_code(e.value), http_status(e.value)) == (code, 404), call
    empty = {
        s3.get_bucket_notification_configuration: ["TopicConfigurations", "QueueConfigurations"],
        s3.get_bucket_logging: ["LoggingEnabled"],
        s3.get_bucket_accelerate_configuration: ["Status"],
    }
    for call, absent in empty.items():
        got = call(Bucket=bucket)
        assert got["ResponseMetadata"]["HTTPStatusCode"] == 200 and not any(k in got for k in absent), got
    assert s3.get_bucket_request_payment(Bucket=bucket)["Payer"] == "BucketOwner"
    for call in (s3.get_bucket_replication, s3.get_bucket_logging, s3.get_bucket_request_payment):
        with pytest.raises(ClientError) as e:
            call(Bucket=f"{bucket}-missing")
        assert error_code(e.value) == "NoSuchBucket", call
    # Writing one still does nothing and says so.
    with pytest.raises(ClientError) as e:
        s3.put_bucket_request_payment(Bucket=bucket, RequestPaymentConfiguration={"Payer": "Requester"})
    assert error_code(e.value) == "NotImplemented"
