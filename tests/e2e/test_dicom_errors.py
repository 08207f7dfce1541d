"""Bad DICOM input: every broken real-world fixture and hand-made damage gets
its specific STOW-RS failure reason or DIMSE failure status, nothing of it is
indexed, the rest of the batch / association goes on, the server never
panics (the fixture teardown checks) and `fulcrum verify` stays clean.

Expected codes (PS3.18 Table 10.5.3-1 / PS3.4 B.2.3, and the contract):
not DICOM, truncated, no transfer syntax -> 0xC000; missing SOP Instance /
Study / Series UID -> 0xA900 (0xC000 tolerated); instance of another study
than the STOW URL names -> 0xA900. HTTP 409 when nothing was stored, 202 when
some were, 200 when all were; wrong Content-Type 415; broken multipart 400.
"""

from __future__ import annotations

import pydicom

import dicom_gen
from dicom_fixtures import STOW_CANNOT_UNDERSTAND as C000
from dicom_fixtures import STOW_MISSING_OR_MISMATCH as A900
from dicom_helpers import SUCCESS, WARNING_STATUSES, DicomWeb, encode_multipart, send_chunked, stow_ok
from helpers import random_bytes


def _clean(srv):
    res = srv.verify()
    assert res.returncode == 0, f"fulcrum verify after bad input:\n{res.stdout}\n{res.stderr}"


def _edited(path, tmp_path, name, fn) -> bytes:
    ds = pydicom.dcmread(path)
    fn(ds)
    out = tmp_path / f"{name}.dcm"
    ds.save_as(out, enforce_file_format=False)
    return out.read_bytes()


def _bad_instances(gen, tmp_path) -> dict[str, tuple[bytes, set]]:
    """name -> (bytes, accepted FailureReasons), all made from a valid instance."""
    src = gen[0].path
    good = src.read_bytes()

    def drop(kw):
        def f(ds):
            del ds[kw]

        return f

    def new_sop(ds):  # a fresh SOP UID, so a stored one would be visible
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = dicom_gen.uid(77, "bad", id(ds))

    out = {
        "no SOPInstanceUID": (_edited(src, tmp_path, "nosop", drop("SOPInstanceUID")), {A900, C000}),
        "no StudyInstanceUID": (
            _edited(src, tmp_path, "nostudy", lambda ds: (new_sop(ds), drop("StudyInstanceUID")(ds))),
            {A900, C000},
        ),
        "no SeriesInstanceUID": (
            _edited(src, tmp_path, "noseries", lambda ds: (new_sop(ds), drop("SeriesInstanceUID")(ds))),
            {A900, C000},
        ),
        "cut in the pixel data": (good[: len(good) - 1000], {C000}),
        "cut in the header": (good[:400], {C000}),
        "meta only": (good[: 132 + 200], {C000}),
        "random bytes": (random_bytes(20_000, seed=5), {C000}),
        "PNG": (b"\x89PNG\r\n\x1a\n" + random_bytes(3000, seed=6), {C000}),
        "empty part": (b"", {C000}),
        "DICM then garbage": (good[:128] + b"DICM" + random_bytes(4000, seed=7), {C000}),
        "JSON": (b'{"00100010": {"vr": "PN"}}', {C000}),
    }
    return out


# ---------------------------------------------------------------- STOW-RS


def test_broken_real_world_fixtures_are_refused_with_their_code(pacs, dicom_fixtures, gen_studies):
    dw = DicomWeb(pacs)
    stow_ok(dw, [x.path for x in gen_studies[:3]])
    before, logical = sorted(dw.locate()), pacs.stats()["logical_bytes"]
    problems = []
    bad = dicom_fixtures.of("broken") + dicom_fixtures.of("no_meta") + dicom_fixtures.of("non_dicom")
    assert len(bad) >= 25
    for f in bad:
        res = dw.stow([f.read()])
        codes = {c for _, c in res.failed}
        if res.status != 409 or len(res.failed) != 1 or not codes <= f.expected_stow or res.referenced:
            problems.append(
                f"{f.rel}: HTTP {res.status}, failed {[(u, hex(c or 0)) for u, c in res.failed]}, "
                f"want 409 with one of {sorted(hex(c) for c in f.expected_stow)}"
            )
    assert not problems, "\n".join(problems)
    assert sorted(dw.locate()) == before, "a refused instance was indexed"
    assert pacs.stats()["logical_bytes"] == logical
    _clean(pacs)


def test_quirky_fixtures_are_stored_exactly_or_refused_cleanly(pacs, dicom_fixtures):
    """Non-conformant but readable files (meta/dataset UID mismatch, bad UID
    syntax, VR UN everywhere, ...): stored byte-exact under the dataset's UIDs,
    or refused with 0xA900/0xC000 and not indexed. Never a 5xx."""
    dw = DicomWeb(pacs)
    problems = []
    for f in dicom_fixtures.of("quirky"):
        res = dw.stow([f.read()])
        if res.status == 200 and not res.failed:
            got = dw.instance_bytes(f.study_uid, f.series_uid, f.sop_uid)
            if got != f.read():
                problems.append(f"{f.rel}: stored, but WADO-RS returns other bytes")
        elif res.status == 409 and {c for _, c in res.failed} <= {A900, C000}:
            if f.sop_uid in dw.locate():
                problems.append(f"{f.rel}: refused but indexed")
        else:
            problems.append(f"{f.rel}: {res}")
    assert not problems, "\n".join(problems)
    _clean(pacs)


def test_hand_made_bad_instances_each_and_in_a_mixed_batch(pacs, gen_studies, tmp_path):
    dw = DicomWeb(pacs)
    bad = _bad_instances(gen_studies, tmp_path)
    problems = []
    for name, (data, codes) in bad.items():
        res = dw.stow([data])
        got = {c for _, c in res.failed}
        if res.status != 409 or len(res.failed) != 1 or not got <= codes:
            problems.append(f"{name}: {res.status} {[(u, hex(c or 0)) for u, c in res.failed]}")
    assert not problems, "\n".join(problems)
    assert dw.locate() == {}, "a refused instance was indexed"

    good = gen_studies[3:6]
    parts = [good[0].read(), *[d for d, _ in bad.values()], good[1].read(), good[2].read()]
    res = dw.stow(parts)
    assert res.status == 202, str(res)
    assert sorted(res.referenced) == sorted(x.sop_uid for x in good)
    assert len(res.failed) == len(bad)
    assert sorted(dw.locate()) == sorted(x.sop_uid for x in good)
    # All good -> 200, all bad -> 409.
    assert dw.stow([x.read() for x in gen_studies[6:8]]).status == 200
    assert dw.stow([bad["random bytes"][0], bad["cut in the header"][0]]).status == 409
    _clean(pacs)


def test_stow_to_a_study_url_refuses_other_studies(pacs, gen_studies):
    dw = DicomWeb(pacs)
    a = gen_studies[0]
    other = next(x for x in gen_studies if x.study_uid != a.study_uid)
    res = dw.stow([a.read(), other.read()], study=a.study_uid)
    assert res.status == 202, str(res)
    assert list(res.referenced) == [a.sop_uid]
    assert res.failed and res.failed[0][1] == A900, res.failed
    assert sorted(dw.locate()) == [a.sop_uid]


def test_wrong_content_type_is_415(pacs, gen_studies):
    dw = DicomWeb(pacs)
    data = gen_studies[0].read()
    for ct in ("application/json", "text/plain", "image/png"):
        res = dw.stow([], content_type=ct, body=data)
        assert res.status == 415, f"Content-Type {ct}: {res}"
    body, _ = encode_multipart([data], content_type="text/plain")
    res = dw.stow([], content_type='multipart/related; type="text/plain"; boundary=x', body=body)
    assert res.status in (400, 415), str(res)
    assert dw.locate() == {}


def test_malformed_multipart_is_400(pacs, gen_studies):
    dw = DicomWeb(pacs)
    data = gen_studies[0].read()
    body, ct = encode_multipart([data], boundary="BOUNDARY")
    cases = {
        "no boundary parameter": ('multipart/related; type="application/dicom"', body),
        "boundary not in body": ('multipart/related; type="application/dicom"; boundary=OTHER', body),
        "no closing delimiter": (ct, body[: body.rfind(b"--BOUNDARY--")]),
        "no header/body separator": (ct, b"--BOUNDARY\r\nContent-Type: application/dicom\r\n" + data[:50]),
        "garbage": (ct, random_bytes(5000, seed=9)),
    }
    problems = [
        f"{name}: {res}" for name, (c, b) in cases.items() if (res := dw.stow([], content_type=c, body=b)).status != 400
    ]
    assert not problems, "\n".join(problems)
    assert dw.locate() == {}
    _clean(pacs)


# ---------------------------------------------------------------- DIMSE


def test_dimse_bad_datasets_fail_and_the_association_goes_on(pacs, dicom_fixtures, gen_studies, tmp_path):
    """In one association: good, truncated fixture, dataset without SOP
    Instance UID, dataset without Study UID, good: the bad ones get a failure
    status, the good ones success, only they are indexed."""
    trunc = dicom_fixtures.by_rel("pydicom/MR_truncated.dcm").path
    src = gen_studies[0].path

    def save(name, fn):
        ds = pydicom.dcmread(src)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = dicom_gen.uid(78, name)
        fn(ds)
        p = tmp_path / f"{name}.dcm"
        ds.save_as(p, enforce_file_format=False)
        return p

    no_sop = save("nosop", lambda ds: ds.__delitem__("SOPInstanceUID"))  # meta still names the instance
    no_study = save("nostudy", lambda ds: ds.__delitem__("StudyInstanceUID"))
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(gen_studies[1].read()[:-777])
    good = [gen_studies[2].path, gen_studies[3].path]
    order = [good[0], trunc, no_sop, no_study, cut, good[1]]
    st = send_chunked("127.0.0.1", pacs.dicom_port, pacs.dicom_aet, order)
    assert st[good[0]] == SUCCESS and st[good[1]] == SUCCESS, st
    for p in (trunc, no_sop, no_study, cut):
        s = st[p]
        assert isinstance(s, int) and s != SUCCESS and s not in WARNING_STATUSES, f"{p.name}: {s!r}"
    assert sorted(DicomWeb(pacs).locate()) == sorted(x.sop_uid for x in gen_studies[2:4])
    _clean(pacs)


def test_server_survives_garbage_on_the_dimse_port(pacs, gen_studies):
    """Random bytes, a truncated A-ASSOCIATE-RQ and an idle connection do not
    take the SCP down: a real association works afterwards."""
    import socket

    for payload in (random_bytes(5000, seed=10), b"\x01\x00\x00\x00\x10\x00", b""):
        with socket.create_connection(("127.0.0.1", pacs.dicom_port), timeout=5) as s:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            try:
                s.recv(1024)
            except OSError:
                pass
    st = send_chunked("127.0.0.1", pacs.dicom_port, pacs.dicom_aet, [gen_studies[0].path])
    assert st[gen_studies[0].path] == SUCCESS
    assert list(DicomWeb(pacs).locate()) == [gen_studies[0].sop_uid]


def test_idle_connections_past_the_limit_are_closed_and_http_lives_on(pacs, gen_studies):
    """A tester held 20,000 idle connections on the DIMSE port: the process
    ran out of descriptors and /healthz stopped answering. Past 512 at
    once, new ones are closed; when they go, associations work again."""
    import socket
    import time
    import urllib.request

    held = []
    try:
        for _ in range(530):
            held.append(socket.create_connection(("127.0.0.1", pacs.dicom_port), timeout=30))
        closed = 0
        for s in held[512:]:
            s.settimeout(30)
            try:
                closed += s.recv(1) == b""
            except ConnectionResetError:
                closed += 1
        assert closed >= 10, closed
        with urllib.request.urlopen(pacs.http_url + "/healthz", timeout=10) as r:
            assert r.status == 200
    finally:
        for s in held:
            s.close()
    # The server sees the closed connections go, then serves again.
    for _ in range(50):
        st = send_chunked("127.0.0.1", pacs.dicom_port, pacs.dicom_aet, [gen_studies[0].path])
        if st.get(gen_studies[0].path) == SUCCESS:
            break
        time.sleep(0.2)
    assert st[gen_studies[0].path] == SUCCESS


def _nested_sr(tmp_path, levels: int, name: str):
    """A Comprehensive SR whose Content Sequence nests `levels` deep
    (undefined lengths), written by hand: pydicom, like DCMTK, recurses."""
    import io
    import struct

    from pydicom.dataset import Dataset

    import dicom_common

    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.33"
    ds.SOPInstanceUID = dicom_gen.uid(79, name)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = dicom_gen.uid(79, name, 1), dicom_gen.uid(79, name, 2)
    ds.PatientID, ds.Modality = "NESTED", "SR"
    ds.file_meta = dicom_common.file_meta(ds.SOPClassUID, ds.SOPInstanceUID)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    sq = struct.pack("<HH2sHI", 0x0040, 0xA730, b"SQ", 0, 0xFFFFFFFF)
    item, item_end, sq_end = (struct.pack("<HHI", 0xFFFE, e, n) for e, n in
                              ((0xE000, 0xFFFFFFFF), (0xE00D, 0), (0xE0DD, 0)))
    path = tmp_path / f"{name}.dcm"
    path.write_bytes(out.getvalue() + (sq + item) * levels + (item_end + sq_end) * levels)
    return ds, path


def test_sequences_nested_too_deep_are_refused_and_the_server_lives(pacs, tmp_path):
    # A data set nesting sequences 100,000 deep (Orthanc's test file of
    # 2026-05-06 does) overflowed the server's stack: the process aborted
    # after ~100 s, over STOW-RS and C-STORE alike. Now it is 0xC000 at
    # once; 128 levels are kept, and their metadata served.
    dw = DicomWeb(pacs)
    ok, ok_path = _nested_sr(tmp_path, 128, "deep-ok")
    stow_ok(dw, [ok_path])
    meta = dw.client().retrieve_instance_metadata(ok.StudyInstanceUID, ok.SeriesInstanceUID, ok.SOPInstanceUID)
    depth, node = 0, meta
    while "0040A730" in node and node["0040A730"].get("Value"):
        depth, node = depth + 1, node["0040A730"]["Value"][0]
    assert depth == 128, depth
    _, deep_path = _nested_sr(tmp_path, 100_000, "deep-bad")
    res = dw.stow([deep_path.read_bytes()])
    assert res.status == 409 and [c for _, c in res.failed] == [C000], str(res)
    st = send_chunked("127.0.0.1", pacs.dicom_port, pacs.dicom_aet, [deep_path])
    assert st[deep_path] not in (SUCCESS, *WARNING_STATUSES), st
    assert dw.s.get(f"{pacs.http_url}/healthz", timeout=10).status_code == 200
    assert sorted(dw.locate()) == [ok.SOPInstanceUID]
    _clean(pacs)
