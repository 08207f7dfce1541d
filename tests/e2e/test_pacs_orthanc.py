"""Fulcrum next to a PACS: Orthanc (Debian's, with its DICOMweb plugin) is
configured as a PACS integrator would, with Fulcrum as a DICOM modality and
a DICOMweb server, and drives every exchange from its own side through its
REST API: C-ECHO, C-STORE of studies to Fulcrum, C-FIND of Fulcrum,
C-MOVE from Fulcrum back to Orthanc, STOW-RS to Fulcrum, QIDO-RS of
Fulcrum and WADO-RS retrieve from Fulcrum. Over DICOMweb files arrive byte
for byte as sent; over DIMSE, element for element (Orthanc re-encodes).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pydicom
import pytest
import requests

from dicom_helpers import DicomWeb, stop_process
from helpers import free_port

ORTHANC_AET = "ORTHANC"


def _orthanc_binary() -> str | None:
    return shutil.which("Orthanc") or next(
        (p for p in ("/usr/sbin/Orthanc", "/usr/bin/Orthanc") if os.path.exists(p)), None
    )


def _dicomweb_plugin() -> str | None:
    try:
        files = subprocess.run(["dpkg", "-L", "orthanc-dicomweb"], capture_output=True, text=True).stdout.split()
    except OSError:
        files = []
    return next((f for f in files if f.endswith("libOrthancDicomWeb.so") and os.path.exists(f)), None)


class Orthanc:
    """An Orthanc process on free ports, with its REST API."""

    def __init__(self, work: Path, fulcrum, ports: tuple[int, int]):
        binary, plugin = _orthanc_binary(), _dicomweb_plugin()
        if not binary or not plugin:
            msg = "Orthanc and its DICOMweb plugin are needed (scripts/test.sh installs orthanc, orthanc-dicomweb)"
            if os.environ.get("FULCRUM_TEST_REQUIRE_ALL"):
                pytest.fail(msg, pytrace=False)
            pytest.skip(msg)
        self.http_port, self.dicom_port = ports
        self.url = f"http://127.0.0.1:{self.http_port}"
        (work / "storage").mkdir(parents=True, exist_ok=True)
        cfg = {
            "Name": "pacs-under-test",
            "StorageDirectory": str(work / "storage"),
            "IndexDirectory": str(work),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": ORTHANC_AET,
            "DicomCheckCalledAet": False,
            "DicomAlwaysAllowStore": True,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "SaveJobs": False,
            "DicomModalities": {"fulcrum": [fulcrum.dicom_aet, "127.0.0.1", fulcrum.dicom_port]},
            "Plugins": [plugin],
            "DicomWeb": {
                "Enable": True,
                "Root": "/dicom-web/",
                "Servers": {"fulcrum": [DicomWeb(fulcrum).base + "/"]},
            },
        }
        (work / "orthanc.json").write_text(json.dumps(cfg, indent=2))
        self.log = work / "orthanc.log"
        self.proc = subprocess.Popen(
            [binary, str(work / "orthanc.json")],
            stdout=open(self.log, "wb"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=work,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(self.url + "/system", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Orthanc did not start:\n{self.log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.2)

    @property
    def node(self) -> str:
        return f"{ORTHANC_AET}@127.0.0.1:{self.dicom_port}"

    def call(self, method: str, path: str, body=None, raw: bytes | None = None):
        r = requests.request(
            method,
            self.url + path,
            data=raw if raw is not None else (json.dumps(body) if body is not None else None),
            timeout=300,
        )
        assert r.ok, f"Orthanc {method} {path} -> {r.status_code}: {r.text[:2000]}\n{self.log_tail()}"
        ct = r.headers.get("Content-Type", "")
        return r.json() if "json" in ct and r.content else r.content

    def log_tail(self) -> str:
        return "Orthanc log:\n" + self.log.read_text(errors="replace")[-4000:]

    def stop(self):
        stop_process(self.proc, 15)


@pytest.fixture
def pacs_pair(pacs_factory, tmp_path, dicom_fixtures):
    """(fulcrum, orthanc, files): Fulcrum knows Orthanc as a C-MOVE
    destination, Orthanc knows Fulcrum as a modality and a DICOMweb server
    and holds one small valid fixture per transfer syntax."""
    ports = (free_port(), free_port())
    fulcrum = pacs_factory({"FULCRUM_DICOM_NODES": f"{ORTHANC_AET}@127.0.0.1:{ports[1]}"})
    orthanc = Orthanc(tmp_path / "orthanc", fulcrum, ports)
    files = dicom_fixtures.representative(per_ts=1)
    try:
        for f in files:
            status = orthanc.call("POST", "/instances", raw=f.read())
            assert status["Status"] in ("Success", "AlreadyStored"), (f.rel, status)
        yield fulcrum, orthanc, files
    finally:
        orthanc.stop()


def _orthanc_instances(orthanc) -> dict[str, str]:
    """SOP Instance UID -> Orthanc instance ID."""
    out = {}
    for oid in orthanc.call("GET", "/instances"):
        tags = orthanc.call("GET", f"/instances/{oid}/simplified-tags")
        out[tags["SOPInstanceUID"]] = oid
    return out


def _fulcrum_files(fulcrum, files) -> dict[str, bytes]:
    dw = DicomWeb(fulcrum)
    return {f.sop_uid: dw.instance_bytes(f.study_uid, f.series_uid, f.sop_uid) for f in files}


def same_elements(a: bytes, b: bytes) -> bool:
    """Whether two Part 10 files hold the same elements with the same values.
    Orthanc sends and keeps datasets through DCMTK, which writes them anew
    (item and sequence lengths, no trailing padding, compressed Pixel Data
    of 16-bit images as OW), so what crosses a DIMSE hop from or into
    Orthanc is equal element by element, not byte by byte (Fulcrum's own
    hops are byte-exact, see test_dicom_dimse.py)."""
    da, db = (pydicom.dcmread(io.BytesIO(x)) for x in (a, b))
    for ds in (da, db):
        if (0xFFFC, 0xFFFC) in ds:
            del ds[0xFFFC, 0xFFFC]
        if "PixelData" in ds and ds.file_meta.TransferSyntaxUID.is_encapsulated:
            ds["PixelData"].VR = "OB"
    return da == db


def test_orthanc_echoes_stores_finds_and_moves_with_fulcrum(pacs_pair):
    fulcrum, orthanc, files = pacs_pair
    orthanc.call("POST", "/modalities/fulcrum/echo", {})

    # C-STORE from Orthanc: every study it holds.
    ids = list(_orthanc_instances(orthanc).values())
    res = orthanc.call("POST", "/modalities/fulcrum/store", {"Resources": ids, "Synchronous": True})
    assert res.get("FailedInstancesCount", 0) == 0 and res["InstancesCount"] == len(files), res
    got = _fulcrum_files(fulcrum, files)
    wrong = [f.rel for f in files if not same_elements(got[f.sop_uid], f.read())]
    assert not wrong, f"datasets changed on their way: {wrong}"

    # Storage commitment asked by Orthanc; the report comes on a new
    # association from Fulcrum to Orthanc (a known node).
    missing = "1.2.3.4.5.6.7.8.9"
    refs = [[f.sop_class, f.sop_uid] for f in files] + [[files[0].sop_class, missing]]
    job = orthanc.call("POST", "/modalities/fulcrum/storage-commitment", {"DicomInstances": refs, "Timeout": 30})
    deadline = time.monotonic() + 30
    while (report := orthanc.call("GET", job["Path"]))["Status"] == "Pending" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert report["Status"] == "Failure", report  # one instance is not there
    assert sorted(x["SOPInstanceUID"] for x in report["Success"]) == sorted(f.sop_uid for f in files)
    ((failed_uid, reason),) = [(x["SOPInstanceUID"], x["FailureReason"]) for x in report["Failures"]]
    assert (failed_uid, reason) == (missing, 0x0112)

    # C-FIND of Fulcrum from Orthanc.
    studies = sorted({f.study_uid for f in files})
    q = orthanc.call(
        "POST", "/modalities/fulcrum/query", {"Level": "Study", "Query": {"StudyInstanceUID": "", "PatientID": ""}}
    )
    answers = orthanc.call("GET", f"/queries/{q['ID']}/answers?expand&simplify")
    assert sorted(a["StudyInstanceUID"] for a in answers) == studies
    one = files[0]
    q = orthanc.call(
        "POST",
        "/modalities/fulcrum/query",
        {"Level": "Instance", "Query": {"StudyInstanceUID": one.study_uid, "SeriesInstanceUID": one.series_uid,
                                        "SOPInstanceUID": ""}},
    )
    answers = orthanc.call("GET", f"/queries/{q['ID']}/answers?expand&simplify")
    want = sorted(f.sop_uid for f in files if f.series_uid == one.series_uid)
    assert sorted(a["SOPInstanceUID"] for a in answers) == want

    # C-MOVE from Fulcrum to Orthanc, after Orthanc forgot everything.
    for oid in ids:
        orthanc.call("DELETE", f"/instances/{oid}")
    assert orthanc.call("GET", "/instances") == []
    res = orthanc.call(
        "POST",
        "/modalities/fulcrum/move",
        {"Level": "Study", "Resources": [{"StudyInstanceUID": s} for s in studies], "TargetAet": ORTHANC_AET,
         "Synchronous": True},
    )
    back = _orthanc_instances(orthanc)
    assert sorted(back) == sorted(f.sop_uid for f in files), (res, orthanc.log_tail())
    wrong = [f.rel for f in files if not same_elements(orthanc.call("GET", f"/instances/{back[f.sop_uid]}/file"), f.read())]
    assert not wrong, f"moved datasets differ: {wrong}"


def test_orthanc_stows_to_queries_and_retrieves_from_fulcrum_over_dicomweb(pacs_pair):
    fulcrum, orthanc, files = pacs_pair
    studies = orthanc.call("GET", "/studies")
    res = orthanc.call("POST", "/dicom-web/servers/fulcrum/stow", {"Resources": studies, "Synchronous": True})
    assert "FailedInstancesCount" not in res or res["FailedInstancesCount"] == 0, res
    dw = DicomWeb(fulcrum)
    assert all(dw.instance_bytes(f.study_uid, f.series_uid, f.sop_uid) == f.read() for f in files)

    found = orthanc.call("POST", "/dicom-web/servers/fulcrum/qido", {"Uri": "/studies"})
    # Orthanc hands the answer over in its own JSON form (Value a string).
    assert sorted(x["0020000D"]["Value"] for x in found) == sorted({f.study_uid for f in files})

    ids = orthanc.call("GET", "/instances")
    for oid in ids:
        orthanc.call("DELETE", f"/instances/{oid}")
    orthanc.call(
        "POST",
        "/dicom-web/servers/fulcrum/retrieve",
        {"Resources": [{"Study": s} for s in sorted({f.study_uid for f in files})], "Synchronous": True},
    )
    back = _orthanc_instances(orthanc)
    assert sorted(back) == sorted(f.sop_uid for f in files), orthanc.log_tail()
    wrong = [f.rel for f in files if orthanc.call("GET", f"/instances/{back[f.sop_uid]}/file") != f.read()]
    assert not wrong, f"retrieved files differ: {wrong}"
