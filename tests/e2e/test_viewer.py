"""A browser viewer's view of the archive: what the OHIF viewer (v3, lazy
study loading, frames rendered in the browser) asks a DICOMweb server, played
by tests/e2e/viewer/ohif_client.js with the npm packages OHIF is built on
(dicomweb-client, dcmjs) and cornerstone's frame request and multipart
parsing, against every real-world fixture; frames and bulk data must come
back as pydicom reads them from the sent files. And WADO-URI, as
cornerstone's `wadouri:` loader fetches and parses it (dicom-parser,
viewer/wadouri_client.js), and as EMR links ask for rendered images.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
import requests
from PIL import Image
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


def node_script(script: str, *args: str):
    res = subprocess.run(
        [_node(), str(VIEWER_DIR / script), *args], capture_output=True, text=True, timeout=600
    )
    assert res.returncode == 0, f"{script} exited {res.returncode}: {res.stderr[-3000:]}"
    return json.loads(res.stdout)


def ohif(srv, name_fragment: str = "") -> dict:
    return node_script("ohif_client.js", DicomWeb(srv).base, name_fragment)


def wado_uri(srv, f, **params) -> str:
    """The WADO-URI URL of fixture `f` with extra parameters."""
    query = {"requestType": "WADO", "studyUID": f.study_uid, "seriesUID": f.series_uid, "objectUID": f.sop_uid}
    return requests.Request("GET", DicomWeb(srv).base + "/wado", params={**query, **params}).prepare().url


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
    elif ts == BIG_ENDIAN and ds["PixelData"].VR == "OW":
        # 8-bit samples in OW words: each word's two bytes swapped on disk
        # (PS3.5 8.1.1; pydicom's pixel_array reads them so).
        raw = np.frombuffer(raw[: len(raw) // 2 * 2], dtype=">u2").astype("<u2").tobytes()
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


# ---------------------------------------------------------------- WADO-URI


def test_wadouri_loader_gets_every_file_byte_exact(viewer_archive):
    srv, files = viewer_archive
    got = node_script("wadouri_client.js", *[wado_uri(srv, f, contentType="application/dicom") for f in files])
    wrong, frames = [], 0
    for f, e in zip(files, got, strict=True):
        if (e["status"], e["type"], e["sha256"]) != (200, "application/dicom", sha(f.read())):
            wrong.append(f"{f.rel}: {e['status']} {e['type']} (same bytes: {e['sha256'] == sha(f.read())})")
            continue
        if "error" in e or (e["sop"], e["transferSyntax"]) != (f.sop_uid, f.transfer_syntax):
            wrong.append(f"{f.rel}: dicom-parser read {e}")
            continue
        ds = pydicom.dcmread(f.path)
        want = expected_frames(ds) if "PixelData" in ds and "Rows" in ds else None
        if "frame1" in e and want and f.transfer_syntax != BIG_ENDIAN:
            frames += 1
            if e["frame1"] != want[0][1]:
                wrong.append(f"{f.rel}: the loader's frame differs")
    assert not wrong, "\n".join(wrong)
    assert frames >= 40, f"only {frames} frames compared"


def _pick(files, pred):
    return next(f for f in sorted(files, key=lambda f: f.size) if pred(pydicom.dcmread(f.path)))


def test_wadouri_renders_images_and_refuses_what_it_cannot_honour(viewer_archive):
    srv, files = viewer_archive
    ct = _pick(
        files,
        lambda ds: ds.file_meta.TransferSyntaxUID == EXPLICIT_LE
        and ds.get("PhotometricInterpretation") == "MONOCHROME2"
        and int(ds.get("NumberOfFrames") or 1) == 1
        and int(ds.get("Rows") or 0) >= 64,
    )
    ds = pydicom.dcmread(ct.path)

    # An image by default: a JPEG of it, full size.
    r = requests.get(wado_uri(srv, ct), timeout=60)
    assert r.status_code == 200 and r.headers["Content-Type"] == "image/jpeg", r.text[:300]
    assert Image.open(io.BytesIO(r.content)).size == (ds.Columns, ds.Rows)
    # PNG, scaled to a height, aspect kept.
    r = requests.get(wado_uri(srv, ct, contentType="image/png", rows=32), timeout=60)
    assert r.headers["Content-Type"] == "image/png"
    img = Image.open(io.BytesIO(r.content))
    assert img.size == (round(ds.Columns * 32 / ds.Rows), 32)
    # Another window gives another image.
    narrow, wide = (
        requests.get(wado_uri(srv, ct, contentType="image/png", windowCenter=c, windowWidth=w), timeout=60).content
        for c, w in ((0, 1), (1000, 8000))
    )
    assert narrow != wide

    # Multi-frame: frameNumber picks the frame; one past the end is 400.
    mf = _pick(
        files,
        lambda d: d.file_meta.TransferSyntaxUID == EXPLICIT_LE
        and int(d.get("NumberOfFrames") or 1) > 1
        and d.get("SamplesPerPixel") == 1
        and int(d.get("BitsAllocated") or 0) in (8, 16),
    )
    n = int(pydicom.dcmread(mf.path, stop_before_pixels=True).NumberOfFrames)
    first, second = (
        requests.get(wado_uri(srv, mf, contentType="image/png", frameNumber=k), timeout=60) for k in (1, 2)
    )
    assert first.status_code == second.status_code == 200 and first.content != second.content
    assert requests.get(wado_uri(srv, mf, frameNumber=n + 1), timeout=60).status_code == 404  # no such frame

    # Not an image: the object itself by default.
    sr = _pick(files, lambda d: "PixelData" not in d and "Rows" not in d)
    r = requests.get(wado_uri(srv, sr), timeout=60)
    assert (r.status_code, r.headers["Content-Type"], r.content) == (200, "application/dicom", sr.read())

    assert requests.get(wado_uri(srv, ct, contentType="application/dicom", transferSyntax="*"), timeout=60).content == ct.read()
    for params, status in (
        ({"contentType": "application/dicom", "transferSyntax": "1.2.840.10008.1.2.4.50"}, 406),
        ({"contentType": "text/html"}, 406),
        ({"anonymize": "yes"}, 400),
        ({"region": "0,0,0.5,0.5"}, 400),
        ({"requestType": "WADOX"}, 400),
        ({"objectUID": "1.2.3.4.5.6.7"}, 404),
        ({"objectUID": ""}, 400),
        ({"windowCenter": "40"}, 400),
    ):
        r = requests.get(wado_uri(srv, ct, **params), timeout=60)
        assert r.status_code == status, (params, r.status_code, r.text[:300])
        assert r.json()["message"], r.text
