"""DICOM storage behaviour seen from outside: duplicates and DICOM-aware
chunking, measured with `fulcrum stats --json` (physical_bytes = pack files).

- identical re-send (STOW and C-STORE): success, nothing new stored (< 1 %);
- header-edited copy (PatientName) and de-identified copy (new UIDs, same
  pixels) of a 4 MiB incompressible image: only the header is new (< 2 %):
  plain content-defined chunking would re-store the first ~1 MiB chunk;
- FULCRUM_DICOM_DUPLICATES=replace (default): newest bytes win;
  reject: 0x0111 on STOW (409 / FailedSOPSequence) and on C-STORE.
"""

from __future__ import annotations

import pydicom

import dicom_gen
from dicom_helpers import DUPLICATE_REJECTED, SUCCESS, DicomWeb, jval, send_chunked, stow_ok
from dicom_part10 import dataset_bytes, split_part10


def _physical(srv) -> int:
    return srv.stats()["physical_bytes"]


def test_identical_resend_stores_nothing_new(pacs, dicom_fixtures, gen_studies):
    dw = DicomWeb(pacs)
    stowed = [f.path for f in dicom_fixtures.representative(per_ts=2)] + [x.path for x in gen_studies[:18]]
    dimse = [x.path for x in gen_studies[18:]]
    payload = sum(p.stat().st_size for p in stowed + dimse)
    stow_ok(dw, stowed)
    assert send_chunked("127.0.0.1", pacs.dicom_port, pacs.dicom_aet, dimse) == {p: SUCCESS for p in dimse}
    p1, n1 = _physical(pacs), sorted(dw.locate())
    assert len(n1) == len(stowed) + len(dimse)

    res = dw.stow([p.read_bytes() for p in stowed])
    assert res.status == 200 and not res.failed and len(res.referenced) == len(stowed), str(res)
    st = send_chunked("127.0.0.1", pacs.dicom_port, pacs.dicom_aet, dimse)
    assert set(st.values()) == {SUCCESS}, st
    p2 = _physical(pacs)
    assert p2 - p1 < 0.01 * payload, f"identical re-send grew physical bytes by {p2 - p1} (payload {payload})"
    assert sorted(dw.locate()) == n1
    assert (
        dw.instance_bytes(gen_studies[0].study_uid, gen_studies[0].series_uid, gen_studies[0].sop_uid)
        == gen_studies[0].read()
    )


def test_header_edits_store_only_the_new_header(pacs, tmp_path):
    dw = DicomWeb(pacs)
    # STOW path: original, PatientName corrected, de-identified copy.
    big = dicom_gen.big_instance(tmp_path / "big.dcm", seed=11)
    size = big.path.stat().st_size
    assert size > 4_000_000
    p0 = _physical(pacs)
    stow_ok(dw, [big.path])
    p1 = _physical(pacs)
    assert p1 - p0 > 0.9 * size, f"4 MiB of noise stored in {p1 - p0} bytes?"

    edited = dicom_gen.with_patient_name(big.path, tmp_path / "edited.dcm", "LARGE^IMAGE^CORRECTED^MR")
    stow_ok(dw, [tmp_path / "edited.dcm"])
    p2 = _physical(pacs)
    assert p2 - p1 < 0.02 * size, f"header edit stored {p2 - p1} new bytes for a {size}-byte instance"
    assert dw.instance_bytes(big.study_uid, big.series_uid, big.sop_uid) == edited
    hit = dw.qido("/instances", {"SOPInstanceUID": big.sop_uid, "includefield": "PatientName"})
    assert [jval(x, "PatientName") for x in hit] == ["LARGE^IMAGE^CORRECTED^MR"]

    ds = pydicom.dcmread(big.path)
    ds.PatientName, ds.PatientID = "ANONYMOUS", "ANON0001"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = dicom_gen.uid(12, "anon-study"), dicom_gen.uid(12, "anon-series")
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = dicom_gen.uid(12, "anon-sop")
    ds.remove_private_tags()
    ds.save_as(tmp_path / "anon.dcm", enforce_file_format=True)
    stow_ok(dw, [tmp_path / "anon.dcm"])
    p3 = _physical(pacs)
    assert p3 - p2 < 0.02 * size, f"de-identified copy stored {p3 - p2} new bytes for a {size}-byte instance"

    # DIMSE path: the same with another image over C-STORE.
    big2 = dicom_gen.big_instance(tmp_path / "big2.dcm", seed=21, patient_id="BIG0021")
    assert send_chunked("127.0.0.1", pacs.dicom_port, pacs.dicom_aet, [big2.path])[big2.path] == SUCCESS
    p4 = _physical(pacs)
    edited2 = dicom_gen.with_patient_name(big2.path, tmp_path / "edited2.dcm", "LARGE^IMAGE^SECOND^FIX")
    assert send_chunked("127.0.0.1", pacs.dicom_port, pacs.dicom_aet, [tmp_path / "edited2.dcm"]) == {
        tmp_path / "edited2.dcm": SUCCESS
    }
    p5 = _physical(pacs)
    assert p5 - p4 < 0.02 * size, f"C-STORE header edit stored {p5 - p4} new bytes"
    got = dw.instance_bytes(big2.study_uid, big2.series_uid, big2.sop_uid)
    assert got[split_part10(got).meta_end :] == dataset_bytes(edited2)
    res = pacs.verify()
    assert res.returncode == 0, res.stdout + res.stderr


def test_reject_policy_refuses_changed_duplicates(pacs_factory, gen_studies, tmp_path):
    srv = pacs_factory({"FULCRUM_DICOM_DUPLICATES": "reject"})
    dw = DicomWeb(srv)
    a, b, c = gen_studies[0], gen_studies[1], gen_studies[2]
    stow_ok(dw, [a.path])
    res = dw.stow([a.read()])
    assert res.status == 200 and not res.failed, f"identical duplicate must succeed: {res}"

    a2 = dicom_gen.with_patient_name(a.path, tmp_path / "a2.dcm", "CHANGED^NAME")
    res = dw.stow([a2])
    assert res.status == 409 and res.failed == [(a.sop_uid, DUPLICATE_REJECTED)], str(res)
    res = dw.stow([c.read(), a2])
    assert res.status == 202 and list(res.referenced) == [c.sop_uid], str(res)
    assert res.failed == [(a.sop_uid, DUPLICATE_REJECTED)]
    assert dw.instance_bytes(a.study_uid, a.series_uid, a.sop_uid) == a.read(), "rejected bytes replaced the original"

    # C-STORE: identical -> success, changed -> 0x0111.
    assert send_chunked("127.0.0.1", srv.dicom_port, srv.dicom_aet, [b.path]) == {b.path: SUCCESS}
    assert send_chunked("127.0.0.1", srv.dicom_port, srv.dicom_aet, [b.path]) == {b.path: SUCCESS}
    b2 = tmp_path / "b2.dcm"
    dicom_gen.with_patient_name(b.path, b2, "CHANGED^AGAIN")
    assert send_chunked("127.0.0.1", srv.dicom_port, srv.dicom_aet, [b2]) == {b2: DUPLICATE_REJECTED}
    got = dw.instance_bytes(b.study_uid, b.series_uid, b.sop_uid)
    assert got[split_part10(got).meta_end :] == dataset_bytes(b.read())


def test_replace_policy_newest_bytes_win_across_restart(pacs, gen_studies, tmp_path):
    dw = DicomWeb(pacs)
    a = gen_studies[4]
    stow_ok(dw, [a.path])
    a2 = dicom_gen.with_patient_name(a.path, tmp_path / "a2.dcm", "NEWEST^WINS")
    res = dw.stow([a2])
    assert res.status == 200 and not res.failed and list(res.referenced) == [a.sop_uid], str(res)
    pacs.restart().wait_dicom_ready()
    dw = DicomWeb(pacs)
    assert dw.instance_bytes(a.study_uid, a.series_uid, a.sop_uid) == a2
    assert [
        jval(x, "PatientName")
        for x in dw.qido("/instances", {"SOPInstanceUID": a.sop_uid, "includefield": "PatientName"})
    ] == ["NEWEST^WINS"]
    assert len(dw.locate()) == 1
