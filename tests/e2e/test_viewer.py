"""A browser viewer's view of the archive: what the OHIF viewer (v3, lazy
study loading, frames rendered in the browser) asks a DICOMweb server, played
by tests/e2e/viewer/ohif_client.js with the npm packages OHIF is built on
(dicomweb-client, dcmjs) and cornerstone's frame request and multipart
parsing, against every real-world fixture; frames and bulk data must come
back as pydicom reads them from the sent files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.encaps import generate_frames

from dicom_helpers import DicomWeb, stow_ok

VIEWER_DIR = Path(__file__).resolve().parent / "viewer"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
BIG_ENDIAN = "1.2.840.10008.1.2.2"


def _node() -> str:
    node = shutil.which("node")
    if not node or not (VIEWER_DIR / "node_modules" / "dicomweb-client").is_dir():
        msg = "node and tests/e2e/viewer/node_modules are needed (scripts/test.sh installs them)"
        if os.environ.get("FULCRUM_TEST_REQUIRE_ALL"):
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    return node


def ohif(srv, name_fragment: str = "") -> dict:
    res = subprocess.run(
        [_node(), str(VIEWER_DIR / "ohif_client.js"), DicomWeb(srv).base, name_fragment],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, f"ohif_client.js exited {res.returncode}: {res.stderr[-3000:]}"
    return json.loads(res.stdout)


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def expected_frames(ds) -> list[tuple[str, str]] | None:
    """(transfer syntax, sha256) of each frame as a viewer must receive it:
    compressed frames as stored, native ones little endian; None when the
    frames cannot be cut from the file byte-wise (1-bit pixels)."""
    ts = ds.file_meta.TransferSyntaxUID
    n = int(ds.get("NumberOfFrames") or 1)
    if ts.is_encapsulated:
        return [(ts, sha(f)) for f in generate_frames(ds.PixelData, number_of_frames=n)]
    bits = int(ds.BitsAllocated)
    if bits % 8:
        return None
    size = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1)) * bits // 8
    raw = ds.PixelData
    if ts == BIG_ENDIAN and bits > 8:
        raw = np.frombuffer(raw[: size * n], dtype=f">u{bits // 8}").astype(f"<u{bits // 8}").tobytes()
    return [(EXPLICIT_LE, sha(raw[k * size : (k + 1) * size])) for k in range(n)]


def value_at(ds, path: str):
    """The element at a bulk data path (`54000100/0/54001010`)."""
    parts = path.split("/")
    for i in range(0, len(parts) - 1, 2):
        ds = ds[int(parts[i], 16)].value[int(parts[i + 1])]
    return ds[int(parts[-1], 16)]


@pytest.fixture(scope="module")
def viewer_archive(module_pacs_factory, dicom_fixtures):
    _node()
    srv = module_pacs_factory()
    files = dicom_fixtures.unique_valid
    stow_ok(DicomWeb(srv), [f.path for f in files], batch=25)
    return srv, files


def test_ohif_lists_loads_and_shows_every_instance(viewer_archive):
    srv, files = viewer_archive
    report = ohif(srv)
    assert not report["problems"], "\n".join(report["problems"][:30])

    seen = {
        inst["sop"]: (st["uid"], se["uid"], inst)
        for st in report["studies"]
        for se in st["series"]
        for inst in se["instances"]
    }
    # Paged worklist, series of each study, metadata of each series: everything.
    assert sorted(seen) == sorted(f.sop_uid for f in files)

    wrong, checked = [], 0
    for f in files:
        study, series, inst = seen[f.sop_uid]
        assert (study, series) == (f.study_uid, f.series_uid), f.rel
        ds = pydicom.dcmread(f.path)
        if "PixelData" in ds and "Rows" in ds:
            want = expected_frames(ds)
            got = [(fr["ts"], fr["sha256"]) for fr in inst["frames"]]
            if want is None:
                if len(got) != int(ds.get("NumberOfFrames") or 1):
                    wrong.append(f"{f.rel}: {len(got)} frames")
            elif got != want:
                wrong.append(f"{f.rel}: frames {[g[0] for g in got]} differ from {[w[0] for w in want]}")
            checked += 1
        if ds.file_meta.TransferSyntaxUID != BIG_ENDIAN:
            for path, digest in inst["bulk"].items():
                value = value_at(ds, path).value
                if isinstance(value, bytes) and sha(value) != digest:
                    wrong.append(f"{f.rel}: bulk data {path} differs")
    assert not wrong, "\n".join(wrong)
    assert checked >= 60, f"only {checked} images checked: the fixture set lost its images?"


def test_ohif_patient_name_search(viewer_archive):
    srv, files = viewer_archive
    named = sorted({str(pydicom.dcmread(f.path, stop_before_pixels=True).get("PatientName") or "") for f in files})
    name = next(n for n in named if len(n) >= 6 and n.isascii())
    fragment = name[1:5].lower()
    report = ohif(srv, fragment)
    assert not report["problems"], report["problems"]
    studies = {st["uid"] for st in report["studies"]}
    want = {
        f.study_uid
        for f in files
        if fragment in str(pydicom.dcmread(f.path, stop_before_pixels=True).get("PatientName") or "").lower()
    }
    assert want and studies == want


def test_a_search_of_only_wildcards_matches_absent_names_too(viewer_archive):
    # "*" matches any value, a zero-length one included (PS3.4 C.2.2.2.4):
    # a `*…*` search with nothing between lists nameless studies too.
    srv, files = viewer_archive
    dw = DicomWeb(srv)
    every = sorted(x["0020000D"]["Value"][0] for x in dw.qido("/studies", {"limit": "1000"}))
    assert len(every) == len({f.study_uid for f in files})
    for value in ("*", "**"):
        got = sorted(x["0020000D"]["Value"][0] for x in dw.qido("/studies", {"PatientName": value, "limit": "1000"}))
        assert got == every, value


def test_ohif_shows_instances_whose_attributes_were_written_as_un(pacs, dicom_fixtures):
    # A real file whose standard attributes (SOP Instance UID, Rows, ...)
    # were written with VR UN: DICOM JSON must give them their VR, or the
    # viewer has no SOP Instance UID to ask frames of.
    f = dicom_fixtures.by_rel("pydicom/rtdose_rle.dcm")
    stow_ok(DicomWeb(pacs), [f.path])
    (item,) = DicomWeb(pacs).qido(f"/studies/{f.study_uid}/series/{f.series_uid}/metadata")
    assert item["00080018"] == {"vr": "UI", "Value": [f.sop_uid]}, item["00080018"]
    assert item["00280010"]["vr"] == "US" and item["00280010"]["Value"] == [int(f.attrs["Rows"])]
    report = ohif(pacs)
    assert not report["problems"], report["problems"]
    ((inst,),) = [se["instances"] for st in report["studies"] for se in st["series"]]
    assert inst["sop"] == f.sop_uid
    assert [(fr["ts"], fr["sha256"]) for fr in inst["frames"]] == expected_frames(pydicom.dcmread(f.path))
