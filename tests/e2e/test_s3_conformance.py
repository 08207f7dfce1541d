"""S3 behaviour that ceph's s3-tests suite checks and that Fulcrum got wrong
when that suite was first run against it: listing edge cases, the exact
form of `encoding-type=url`, request IDs, 304 headers, presigned URL
lifetimes, deleting a bucket with an upload in progress, the DeleteObjects
key limit, Object Lock's error codes, retried completions, version IDs,
bucket CORS and `response-*` header overrides. Each test states what AWS
answers.
"""

from __future__ import annotations

import datetime
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET

import pytest
from botocore.exceptions import ClientError

from helpers import error_code, http_status


def _put(s3, bucket, keys):
    for k in keys:
        s3.put_object(Bucket=bucket, Key=k, Body=k.encode())


def _keys(page):
    return [o["Key"] for o in page.get("Contents", [])]


def _prefixes(page):
    return [p["Prefix"] for p in page.get("CommonPrefixes", [])]


def test_a_marker_that_is_a_common_prefix_is_not_listed_again(s3, bucket):
    _put(s3, bucket, ["asdf", "boo/bar", "boo/baz/xyzzy", "cquux/thud", "cquux/bla"])
    pages, marker = [], ""
    while True:
        page = s3.list_objects(Bucket=bucket, Delimiter="/", MaxKeys=1, Marker=marker)
        pages.append((_keys(page), _prefixes(page), page["IsTruncated"]))
        if not page["IsTruncated"]:
            break
        marker = page["NextMarker"]
    assert pages == [(["asdf"], [], True), ([], ["boo/"], True), ([], ["cquux/"], False)]
    # The same through version 2's continuation tokens.
    page = s3.list_objects_v2(Bucket=bucket, Delimiter="/", MaxKeys=2)
    assert (_keys(page), _prefixes(page)) == (["asdf"], ["boo/"])
    page = s3.list_objects_v2(
        Bucket=bucket, Delimiter="/", MaxKeys=2, ContinuationToken=page["NextContinuationToken"]
    )
    assert (_keys(page), _prefixes(page), page["IsTruncated"]) == ([], ["cquux/"], False)


def test_listing_echoes_and_limits_as_s3_does(s3, bucket):
    _put(s3, bucket, ["bar", "baz", "foo/x"])
    # max-keys=0: nothing, and not truncated.
    page = s3.list_objects(Bucket=bucket, MaxKeys=0)
    assert (_keys(page), page["IsTruncated"]) == ([], False)
    # An empty delimiter is no delimiter and is not echoed.
    page = s3.list_objects(Bucket=bucket, Delimiter="")
    assert "Delimiter" not in page and _keys(page) == ["bar", "baz", "foo/x"]
    # Version 1 always names the marker and every object's owner.
    page = s3.list_objects(Bucket=bucket)
    assert page["Marker"] == ""
    owner = s3.get_bucket_acl(Bucket=bucket)["Owner"]
    assert all(o["Owner"]["ID"] == owner["ID"] for o in page["Contents"]), page
    # Version 2 names owners only when asked.
    assert all("Owner" not in o for o in s3.list_objects_v2(Bucket=bucket)["Contents"])
    asked = s3.list_objects_v2(Bucket=bucket, FetchOwner=True)["Contents"]
    assert all(o["Owner"]["ID"] == owner["ID"] for o in asked)


def test_url_encoded_listings_use_aws_encoding(s3, bucket):
    # Asked for explicitly, boto3 does not decode: these are the bytes sent.
    _put(s3, bucket, ["foo+1/bar", "foo/bar/xyzzy", "quux ab/thud", "asdf+b"])
    for page in (
        s3.list_objects(Bucket=bucket, Delimiter="/", EncodingType="url"),
        s3.list_objects_v2(Bucket=bucket, Delimiter="/", EncodingType="url"),
    ):
        assert page["Delimiter"] == "/"
        assert _keys(page) == ["asdf%2Bb"]
        assert _prefixes(page) == ["foo%2B1/", "foo/", "quux%20ab/"]
    # Version 1 echoes its prefix as sent (boto3 asks for the encoding
    # itself there and would not decode it).
    s3.put_object(Bucket=bucket, Key="\nnewline", Body=b"x")
    page = s3.list_objects(Bucket=bucket, Prefix="\n")
    assert page["Prefix"] == "\n" and _keys(page) == ["\nnewline"]


def test_every_response_has_a_request_id_and_errors_name_it(s3, bucket):
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "missing"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url)
    assert e.value.code == 404
    rid = e.value.headers["x-amz-request-id"]
    body = ET.fromstring(e.value.read())
    assert body.findtext("Code") == "NoSuchKey"
    assert rid and body.findtext("RequestId") == rid
    ok = s3.list_objects_v2(Bucket=bucket)["ResponseMetadata"]
    assert ok["RequestId"] and ok["HTTPHeaders"]["x-amz-request-id"] == ok["RequestId"]
    # Two requests, two IDs.
    assert s3.list_objects_v2(Bucket=bucket)["ResponseMetadata"]["RequestId"] != ok["RequestId"]


def test_not_modified_names_the_etag_and_date(s3, bucket):
    etag = s3.put_object(Bucket=bucket, Key="foo", Body=b"bar")["ETag"]
    modified = s3.head_object(Bucket=bucket, Key="foo")["LastModified"]
    for cond in ({"IfNoneMatch": etag}, {"IfModifiedSince": modified}):
        with pytest.raises(ClientError) as e:
            s3.get_object(Bucket=bucket, Key="foo", **cond)
        headers = e.value.response["ResponseMetadata"]["HTTPHeaders"]
        assert http_status(e.value) == 304
        assert headers["etag"] == etag
        assert headers["last-modified"].endswith(" GMT"), headers


def test_presigned_urls_live_at_most_seven_days(s3, bucket):
    s3.put_object(Bucket=bucket, Key="foo", Body=b"x")

    def status(expires):
        url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "foo"}, ExpiresIn=expires)
        try:
            return urllib.request.urlopen(url).status, ""
        except urllib.error.HTTPError as e:
            return e.code, ET.fromstring(e.read()).findtext("Code")

    assert status(604800) == (200, "")
    assert status(604801) == (403, "AccessDenied")
    assert status(-7) == (403, "AccessDenied")


def test_sigv2_presigned_put_with_content_type_uploads(fulcrum, bucket):
    """botocore's SigV2 signer puts a signed Content-Type (and Content-MD5)
    in the query too; such a link was 501 as an unknown subresource."""
    s3v2 = fulcrum.client(signature_version="s3")
    url = s3v2.generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": "up.dcm", "ContentType": "application/dicom"}
    )
    assert "content-type=" in url, url
    req = urllib.request.Request(url, data=b"DICM", method="PUT", headers={"Content-Type": "application/dicom"})
    assert urllib.request.urlopen(req).status == 200
    head = fulcrum.client().head_object(Bucket=bucket, Key="up.dcm")
    assert (head["ContentType"], head["ContentLength"]) == ("application/dicom", 4)


def test_sigv2_presigned_urls_live_at_most_seven_days_too(fulcrum, bucket):
    """The links `aws s3 presign` (cli v1) and boto3's SigV2 signer make:
    a ten-year link used to work."""
    s3v2 = fulcrum.client(signature_version="s3")
    fulcrum.client().put_object(Bucket=bucket, Key="foo", Body=b"x")

    def status(expires):
        url = s3v2.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "foo"}, ExpiresIn=expires)
        assert "AWSAccessKeyId=" in url and "Expires=" in url, url
        try:
            return urllib.request.urlopen(url).status
        except urllib.error.HTTPError as e:
            return e.code

    assert status(3600) == 200
    assert status(8 * 24 * 3600) == 403
    assert status(315_360_000) == 403
    # An X-Amz-Expires added by hand (not part of a SigV2 signature) does
    # not make a ten-year link pass.
    url = s3v2.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "foo"}, ExpiresIn=315_360_000)
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url + "&X-Amz-Expires=60")
    assert e.value.code == 403
    cli = fulcrum.aws("s3", "presign", f"s3://{bucket}/foo", "--expires-in", "315360000").stdout.strip()
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(cli)
    assert e.value.code == 403


def test_a_bucket_with_only_an_upload_in_progress_can_be_deleted(s3, bucket):
    up = s3.create_multipart_upload(Bucket=bucket, Key="half")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="half", UploadId=up, PartNumber=1, Body=b"p" * 1000)
    s3.delete_bucket(Bucket=bucket)
    assert bucket not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    # Created again, it has no trace of the aborted upload.
    s3.create_bucket(Bucket=bucket)
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    with pytest.raises(ClientError) as e:
        s3.list_parts(Bucket=bucket, Key="half", UploadId=up)
    assert error_code(e.value) == "NoSuchUpload"


def test_delete_objects_names_at_most_1000_keys(s3, bucket):
    s3.put_object(Bucket=bucket, Key="keep", Body=b"x")
    many = {"Objects": [{"Key": "keep"}] + [{"Key": f"k{i}"} for i in range(1000)]}
    with pytest.raises(ClientError) as e:
        s3.delete_objects(Bucket=bucket, Delete=many)
    assert (http_status(e.value), error_code(e.value)) == (400, "MalformedXML")
    assert s3.head_object(Bucket=bucket, Key="keep")["ContentLength"] == 1, "nothing was deleted"


def test_object_lock_requests_get_aws_error_codes(s3, bucket):
    rule = {"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}}

    def refused(call, **kw):
        with pytest.raises(ClientError) as e:
            call(**kw)
        return http_status(e.value), error_code(e.value)

    # Not created with Object Lock: it cannot be configured later.
    assert refused(s3.put_object_lock_configuration, Bucket=bucket, ObjectLockConfiguration=rule) == (409, "InvalidBucketState")
    s3.create_bucket(Bucket="locked-codes", ObjectLockEnabledForBucket=True)
    bad_days = {"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 0}}}
    assert refused(s3.put_object_lock_configuration, Bucket="locked-codes", ObjectLockConfiguration=bad_days) == (400, "InvalidRetentionPeriod")
    bad_mode = {"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "abc", "Days": 1}}}
    assert refused(s3.put_object_lock_configuration, Bucket="locked-codes", ObjectLockConfiguration=bad_mode) == (400, "MalformedXML")
    s3.put_object(Bucket="locked-codes", Key="k", Body=b"x")
    until = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
    assert refused(s3.put_object_retention, Bucket="locked-codes", Key="k", Retention={"Mode": "governance", "RetainUntilDate": until}) == (400, "MalformedXML")
    assert refused(s3.put_object_legal_hold, Bucket="locked-codes", Key="k", LegalHold={"Status": "abc"}) == (400, "MalformedXML")
    # Nothing of that took: the object is unprotected and deletable.
    assert "ObjectLockMode" not in s3.head_object(Bucket="locked-codes", Key="k")
    s3.put_object_lock_configuration(Bucket="locked-codes", ObjectLockConfiguration=rule)


def test_a_retried_completion_gets_the_object_the_upload_made(s3, bucket):
    up = s3.create_multipart_upload(Bucket=bucket, Key="mp", Metadata={"ward": "icu"})["UploadId"]
    part = s3.upload_part(Bucket=bucket, Key="mp", UploadId=up, PartNumber=1, Body=b"x" * 1000)
    parts = {"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]}
    first = s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up, MultipartUpload=parts)
    # The first answer lost, the client (an SDK's retry) sends it again.
    again = s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up, MultipartUpload=parts)
    assert again["ETag"] == first["ETag"]
    # A "retry" naming other parts is no retry: the upload is gone.
    other = {"Parts": [{"ETag": '"' + "0" * 32 + '"', "PartNumber": 1}]}
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up, MultipartUpload=other)
    assert error_code(e.value) == "NoSuchUpload"
    # The upload's own mark is not user metadata.
    assert s3.head_object(Bucket=bucket, Key="mp")["Metadata"] == {"ward": "icu"}
    # A copy was made by no upload; once replaced, the key is not the upload's.
    s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "mp"})
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="copy", UploadId=up, MultipartUpload=parts)
    assert error_code(e.value) == "NoSuchUpload"
    s3.put_object(Bucket=bucket, Key="mp", Body=b"replaced")
    with pytest.raises(ClientError) as e:
        s3.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=up, MultipartUpload=parts)
    assert error_code(e.value) == "NoSuchUpload"


def test_version_ids_other_than_null_name_nothing(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"current")
    # A delete of an "old version" must never delete the object.
    for call, kw in (
        (s3.delete_object, {}),
        (s3.get_object, {}),
        (s3.head_object, {}),
    ):
        with pytest.raises(ClientError) as e:
            call(Bucket=bucket, Key="k", VersionId="3HL4kqtJlcpXroDTDmJ", **kw)
        assert http_status(e.value) == 400
    with pytest.raises(ClientError) as e:
        s3.copy_object(Bucket=bucket, Key="c", CopySource={"Bucket": bucket, "Key": "k", "VersionId": "old"})
    assert error_code(e.value) == "InvalidArgument"
    out = s3.delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": "k", "VersionId": "old"}, {"Key": "gone", "VersionId": "null"}]}
    )
    assert [(x["Key"], x["VersionId"], x["Code"]) for x in out["Errors"]] == [("k", "old", "InvalidArgument")]
    assert [(x["Key"], x["VersionId"]) for x in out["Deleted"]] == [("gone", "null")]
    assert s3.get_object(Bucket=bucket, Key="k", VersionId="null")["Body"].read() == b"current"
    s3.delete_object(Bucket=bucket, Key="k", VersionId="null")
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_bucket_cors_lets_allowed_origins_call_from_a_browser(s3, bucket):
    import requests

    with pytest.raises(ClientError) as e:
        s3.get_bucket_cors(Bucket=bucket)
    assert (http_status(e.value), error_code(e.value)) == (404, "NoSuchCORSConfiguration")
    rules = [
        {"AllowedMethods": ["GET", "HEAD"], "AllowedOrigins": ["https://*.hospital.example"],
         "AllowedHeaders": ["range", "x-amz-*"], "ExposeHeaders": ["ETag"], "MaxAgeSeconds": 600},
        {"AllowedMethods": ["PUT"], "AllowedOrigins": ["*"]},
    ]
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": rules})
    got = s3.get_bucket_cors(Bucket=bucket)["CORSRules"]
    assert [(r["AllowedMethods"], r["AllowedOrigins"]) for r in got] == [(r["AllowedMethods"], r["AllowedOrigins"]) for r in rules]
    s3.put_object(Bucket=bucket, Key="scan.dcm", Body=b"pixels")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "scan.dcm"})
    origin = "https://viewer.hospital.example"
    # Preflight: allowed, with the rule's headers; refused for others.
    pre = requests.options(url, headers={"Origin": origin, "Access-Control-Request-Method": "GET",
                                         "Access-Control-Request-Headers": "Range, X-Amz-Meta-Ward"})
    assert pre.status_code == 200, pre.text
    assert pre.headers["access-control-allow-origin"] == origin
    assert pre.headers["access-control-allow-headers"] == "range, x-amz-meta-ward"
    assert pre.headers["access-control-max-age"] == "600"
    for headers in (
        {"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        {"Origin": origin, "Access-Control-Request-Method": "DELETE"},
        {"Origin": origin, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"},
    ):
        assert requests.options(url, headers=headers).status_code == 403, headers
    assert requests.options(url).status_code == 400, "a preflight without Origin"
    # The actual request: CORS headers for an allowed origin only, errors included.
    r = requests.get(url, headers={"Origin": origin})
    assert r.content == b"pixels" and r.headers["access-control-allow-origin"] == origin
    assert r.headers["access-control-expose-headers"] == "ETag"
    assert "access-control-allow-origin" not in requests.get(url, headers={"Origin": "https://evil.example"}).headers
    missing = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "missing"})
    r = requests.get(missing, headers={"Origin": origin})
    assert r.status_code == 404 and r.headers["access-control-allow-origin"] == origin
    put = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "upload"})
    r = requests.put(put, data=b"from a browser", headers={"Origin": "https://anywhere.example"})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"
    # Refused configurations change nothing; deleted, nothing is allowed.
    with pytest.raises(ClientError) as e:
        s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [{"AllowedMethods": ["PATCH"], "AllowedOrigins": ["*"]}]})
    assert http_status(e.value) == 400
    assert len(s3.get_bucket_cors(Bucket=bucket)["CORSRules"]) == 2
    s3.delete_bucket_cors(Bucket=bucket)
    assert requests.options(url, headers={"Origin": origin, "Access-Control-Request-Method": "GET"}).status_code == 403


def test_response_header_overrides_on_presigned_links(s3, bucket):
    import requests

    s3.put_object(Bucket=bucket, Key="report-7f3a", Body=b"%PDF-1.4 report", ContentType="application/octet-stream",
                  CacheControl="no-cache")
    params = {
        "Bucket": bucket, "Key": "report-7f3a",
        "ResponseContentDisposition": 'attachment; filename="discharge summary.pdf"',
        "ResponseContentType": "application/pdf",
        "ResponseCacheControl": "private, max-age=60",
    }
    r = requests.get(s3.generate_presigned_url("get_object", Params=params))
    assert r.status_code == 200 and r.content == b"%PDF-1.4 report"
    assert r.headers["content-disposition"] == 'attachment; filename="discharge summary.pdf"'
    assert r.headers["content-type"] == "application/pdf"
    assert r.headers["cache-control"] == "private, max-age=60"
    # This answer only: the stored headers are unchanged.
    head = s3.head_object(Bucket=bucket, Key="report-7f3a")
    assert (head["ContentType"], head["CacheControl"]) == ("application/octet-stream", "no-cache")
    assert "ContentDisposition" not in head
    assert s3.head_object(Bucket=bucket, Key="report-7f3a", ResponseContentType="text/plain")["ContentType"] == "text/plain"
