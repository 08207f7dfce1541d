"""DICOM peers for the e2e suite: DCMTK command lines, pynetdicom SCU/SCP
helpers, a raw DICOMweb client (byte-exact STOW/WADO, multipart), DICOM JSON
accessors.

Every DCMTK tool runs with TCP_NODELAY=1 (without it DCMTK's small PDUs meet
Nagle + delayed ACK and a 35 MB dcmsend takes 11 s instead of 0.1 s).

Byte-exact oracles:
  * STOW-RS / `dicom import`: the whole Part 10 file comes back from WADO-RS.
  * pynetdicom with STORE_SEND_CHUNKED_DATASET: the wire carries the file's
    bytes after the meta group, so the stored dataset equals them.
  * DCMTK re-encodes what it reads (group lengths, padding, BE -> LE, ...),
    and for uncompressed files lets the SCP choose among explicit LE / BE /
    implicit: `capture_wire()` replays the same DCMTK command against
    in-process pynetdicom SCPs that each prefer one of those syntaxes and
    records the raw bytes, so whichever syntax Fulcrum accepted there is a
    reference for exactly what it received.
"""

from __future__ import annotations

import email.message
import io
import json
import logging
import os
import re
import shutil
import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
import pytest
import requests
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset

from dicom_common import dcmtk_path, encode_multipart
from dicom_part10 import EXPLICIT_BE, EXPLICIT_LE, IMPLICIT_LE, dataset_bytes, split_part10
from helpers import ACCESS_KEY, SECRET_KEY, free_port

logging.getLogger("pynetdicom").setLevel(logging.WARNING)
logging.getLogger("pydicom").setLevel(logging.ERROR)

UNCOMPRESSED = (EXPLICIT_LE, IMPLICIT_LE, EXPLICIT_BE)
DICOM_ACCEPT_ANY_TS = 'multipart/related; type="application/dicom"; transfer-syntax=*'
SUCCESS, WARNING_STATUSES = 0x0000, {0x0001, 0xB000, 0xB006, 0xB007}

# DIMSE statuses the contract names
DUPLICATE_REJECTED = 0x0111  # Duplicate SOP Instance
MOVE_DEST_UNKNOWN = 0xA801


# ---------------------------------------------------------------- DCMTK


def dcmtk_env() -> dict:
    return dict(os.environ, TCP_NODELAY="1")


def dcmtk_tool(name: str) -> str:
    """DCMTK's `name` (not pynetdicom's app of the same name); fails the test if missing."""
    found = dcmtk_path(name)
    if found is None:
        pytest.fail(f"DCMTK tool {name} not found: scripts/test.sh installs Debian's dcmtk", pytrace=False)
    return found


def dcmtk(*args, timeout: float = 300, cwd=None) -> subprocess.CompletedProcess:
    """Run a DCMTK tool (never raises on exit code; fails the test if missing)."""
    exe = dcmtk_tool(str(args[0]))
    return subprocess.run(
        [exe, *map(str, args[1:])], env=dcmtk_env(), cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def describe(res: subprocess.CompletedProcess, tail: int = 4000) -> str:
    return f"$ {' '.join(res.args)}\nexit {res.returncode}\n{res.stdout[-tail:]}\n{res.stderr[-tail:]}"


@dataclass
class SendReport:
    total: int
    success: int
    res: subprocess.CompletedProcess


def dcmsend(host: str, port: int, called: str, paths, calling="TESTSCU", extra=()) -> SendReport:
    """`dcmsend -aet TESTSCU -aec CALLED +sd +r -dn -nh ... HOST PORT PATH...`.

    dcmsend exits 0 even when stores fail, so its status summary is parsed.
    """
    res = dcmtk("dcmsend", "-v", "-aet", calling, "-aec", called, "+sd", "+r", "-dn", "-nh", *extra, host, port, *paths)
    out = res.stdout + res.stderr
    total = re.search(r"Number of SOP instances\s*:\s*(\d+)", out)
    ok = re.search(r"with status SUCCESS\s*:\s*(\d+)", out)
    return SendReport(int(total.group(1)) if total else 0, int(ok.group(1)) if ok else 0, res)


def link_files(dest: Path, paths) -> Path:
    """dest/NNNN_<name> symlinks to `paths` (a directory to scan, unique names)."""
    dest.mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(paths):
        (dest / f"{i:04d}_{Path(p).name}").symlink_to(Path(p).resolve())
    return dest


class StoreSCPProcess:
    """DCMTK `storescp +B -od OUT` on a free port (a C-MOVE / send destination).

    Accepts every transfer syntax DCMTK knows (+xa; `uncompressed_only`:
    storescp's default, Explicit and Implicit VR only) and unknown SOP
    classes (-pm); +B writes each dataset exactly as received after a
    fresh meta.
    """

    def __init__(self, out: Path, ae_title="STORESCP", extra=(), uncompressed_only=False):
        self.out, self.ae_title, self.port = Path(out), ae_title, free_port()
        self.out.mkdir(parents=True, exist_ok=True)
        self.log = self.out.parent / f"{self.out.name}-storescp.log"
        self.proc = subprocess.Popen(
            [dcmtk_tool("storescp"), "-v", *([] if uncompressed_only else ["+xa"]), "-pm", "+B", "-od", str(self.out),
             "-aet", ae_title, *extra, str(self.port)],
            env=dcmtk_env(),
            stdout=open(self.log, "wb"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        wait_port(self.port, self.proc)

    @property
    def node(self) -> str:
        return f"{self.ae_title}@127.0.0.1:{self.port}"

    def files(self) -> list[Path]:
        return sorted(p for p in self.out.rglob("*") if p.is_file())

    def datasets(self) -> dict[str, bytes]:
        """SOP Instance UID -> dataset bytes of every received file."""
        return {sop_uid_of(p.read_bytes()): dataset_bytes(p.read_bytes()) for p in self.files()}

    def stop(self):
        stop_process(self.proc)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def stop_process(proc: subprocess.Popen, timeout: float = 10) -> None:
    """SIGTERM a peer process, SIGKILL it if it does not go within `timeout`."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_port(port: int, proc=None, timeout: float = 15):
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"peer on port {port} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def sop_uid_of(data: bytes) -> str:
    """SOP Instance UID of a Part 10 file (from the dataset, not the meta)."""
    import io

    from pydicom import dcmread

    ds = dcmread(io.BytesIO(data), stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
    return str(ds.SOPInstanceUID)


# ---------------------------------------------------------------- pynetdicom


def ensure_storage_classes(uids) -> None:
    """Register SOP classes pynetdicom does not know (retired, private) as storage."""
    from pynetdicom.service_class import ServiceClass, StorageServiceClass
    from pynetdicom.sop_class import register_uid, uid_to_service_class

    for u in sorted(set(map(str, uids))):
        if uid_to_service_class(u) is ServiceClass:
            kw = "E2EStorage" + re.sub(r"\W", "_", u)
            register_uid(u, kw, StorageServiceClass)


def _all_ts():
    from pynetdicom import ALL_TRANSFER_SYNTAXES

    return list(ALL_TRANSFER_SYNTAXES) + ["1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202"]


@dataclass
class Received:
    ts: str
    sop_class: str
    data: bytes  # raw dataset bytes as received on the wire
    calling_aet: str
    move_originator: str | None = None


class StorageSCP:
    """An in-process pynetdicom Storage SCP that keeps the raw bytes it receives.

    ts_first: transfer syntaxes it prefers, in order (pynetdicom, as acceptor,
    takes the first of its own list that the requestor proposed); every other
    syntax follows. Registers `sop_classes` it does not know as storage.
    """

    def __init__(self, ae_title="PYSCP", ts_first=(), sop_classes=(), status: int = SUCCESS):
        from pynetdicom import AE, AllStoragePresentationContexts, evt

        ensure_storage_classes(sop_classes)
        self.ae_title, self.status = ae_title, status
        self.received: dict[str, Received] = {}
        self.lock = threading.Lock()
        ae = AE(ae_title=ae_title)
        ae.maximum_pdu_size = 0
        ae.require_called_aet = False
        order = list(ts_first) + [t for t in _all_ts() if t not in ts_first]
        classes = {cx.abstract_syntax for cx in AllStoragePresentationContexts} | set(map(str, sop_classes))
        for c in sorted(classes):
            ae.add_supported_context(c, order, scu_role=False, scp_role=True)
        self.port = free_port()
        self.server = ae.start_server(
            ("127.0.0.1", self.port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._on_store)]
        )

    @property
    def node(self) -> str:
        return f"{self.ae_title}@127.0.0.1:{self.port}"

    def _on_store(self, event):
        req = event.request
        rec = Received(
            ts=str(event.context.transfer_syntax),
            sop_class=str(req.AffectedSOPClassUID),
            data=req.DataSet.getvalue(),
            calling_aet=str(event.assoc.requestor.ae_title).strip(),
            move_originator=(str(req.MoveOriginatorApplicationEntityTitle).strip() or None)
            if req.MoveOriginatorApplicationEntityTitle
            else None,
        )
        with self.lock:
            self.received[str(req.AffectedSOPInstanceUID)] = rec
        return self.status

    def stop(self):
        self.server.shutdown()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def capture_wire(send, sop_classes, prefer=UNCOMPRESSED) -> dict[str, dict[str, Received]]:
    """Run send(host, port, called_aet) against one capture SCP per syntax in
    `prefer`, each preferring that syntax. -> {ts: {sop_uid: Received}}: for
    whatever syntax the SCU proposed and Fulcrum accepted, the exact bytes."""
    out: dict[str, dict[str, Received]] = {}
    for ts in prefer:
        with StorageSCP("CAPTURE", ts_first=[ts], sop_classes=sop_classes) as scp:
            send("127.0.0.1", scp.port, "CAPTURE")
            for sop, rec in scp.received.items():
                out.setdefault(rec.ts, {}).setdefault(sop, rec)
    return out


def meta_of(path: Path) -> tuple[str, str, str]:
    """(MediaStorageSOPClassUID, MediaStorageSOPInstanceUID, TransferSyntaxUID) of a file."""
    with open(path, "rb") as f:
        p10 = split_part10(f.read(65536))  # the meta group is always near the start
    return p10.meta_str(0x00020002), p10.meta_str(0x00020003), p10.transfer_syntax


_chunked_lock = threading.Lock()
_chunked_users = 0  # send_chunked() calls running now
_chunked_saved = False  # the switch as it was before the first of them


@contextmanager
def _chunked_datasets():
    """pynetdicom's STORE_SEND_CHUNKED_DATASET, on while any send_chunked() runs.

    It is one process-wide switch: a sender that restored it on return would
    turn it off under another thread still sending (which would then send
    pydicom's re-encoding instead of the file's bytes)."""
    global _chunked_users, _chunked_saved
    from pynetdicom import _config

    with _chunked_lock:
        if _chunked_users == 0:
            _chunked_saved = _config.STORE_SEND_CHUNKED_DATASET
            _config.STORE_SEND_CHUNKED_DATASET = True
        _chunked_users += 1
    try:
        yield
    finally:
        with _chunked_lock:
            _chunked_users -= 1
            if _chunked_users == 0:
                _config.STORE_SEND_CHUNKED_DATASET = _chunked_saved


def send_chunked(
    host: str, port: int, called: str, paths, calling="PYSCU", max_contexts=100, max_pdu: int = 0
) -> dict[Path, int | str]:
    """C-STORE each file with pynetdicom's STORE_SEND_CHUNKED_DATASET: the
    file's own bytes after the meta group go on the wire unchanged, in its own
    transfer syntax (one presentation context per (SOP class, TS) pair, as
    many associations as needed). -> {path: DIMSE status or an error string}."""
    from pynetdicom import AE

    paths = [Path(p) for p in paths]
    metas = {p: meta_of(p) for p in paths}
    ensure_storage_classes(m[0] for m in metas.values())
    batches, cur, pairs = [], [], set()
    for p in paths:
        pair = (metas[p][0], metas[p][2])
        if pair not in pairs and len(pairs) >= max_contexts:
            batches.append((cur, pairs))
            cur, pairs = [], set()
        pairs.add(pair)
        cur.append(p)
    if cur:
        batches.append((cur, pairs))
    out: dict[Path, int | str] = {}
    with _chunked_datasets():
        for files, pairs in batches:
            ae = AE(ae_title=calling)
            ae.maximum_pdu_size = max_pdu  # what we receive; the peer's limit bounds what we send
            for sop_class, ts in sorted(pairs):
                ae.add_requested_context(sop_class, [ts])
            assoc = ae.associate(host, port, ae_title=called)
            if not assoc.is_established:
                for p in files:
                    out[p] = "association not established"
                continue
            lost = False  # a store without a response: the association is gone (or going)
            try:
                for p in files:
                    try:
                        st = assoc.send_c_store(p)
                        out[p] = int(st.Status) if st and "Status" in st else "no response"
                    except Exception as e:  # noqa: BLE001 - reported per file
                        out[p] = f"{type(e).__name__}: {e}"
                    # Stop at the first lost store: when the peer died, is_established
                    # can lag behind, and the next store would wait out dimse_timeout.
                    lost = not isinstance(out[p], int)
                    if lost or not assoc.is_established:
                        break
            finally:
                if assoc.is_established:
                    assoc.abort() if lost else assoc.release()
            for p in files:
                out.setdefault(p, "association ended")
    return out


def scu(calling="PYSCU", contexts=(), roles=()):
    """A pynetdicom AE with requested contexts [(abstract, [ts...])]."""
    from pynetdicom import AE

    ae = AE(ae_title=calling)
    ae.maximum_pdu_size = 0
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
    for abstract, ts in contexts:
        ae.add_requested_context(abstract, ts or None) if ts else ae.add_requested_context(abstract)
    return ae


def ident(**kw) -> Dataset:
    """A query identifier: ident(QueryRetrieveLevel="STUDY", PatientID="X", StudyInstanceUID="")."""
    ds = Dataset()
    for k, v in kw.items():
        setattr(ds, k, v)
    return ds


def c_find(server, model: str, identifier: Dataset, calling="PYSCU") -> tuple[list[Dataset], int]:
    """C-FIND with pynetdicom; model 'P' (Patient Root) or 'S' (Study Root).
    -> (matches, final status)."""
    from pynetdicom.sop_class import (
        PatientRootQueryRetrieveInformationModelFind as PFind,
        StudyRootQueryRetrieveInformationModelFind as SFind,
    )

    cx = PFind if model == "P" else SFind
    ae = scu(calling, [(cx, None)])
    assoc = ae.associate("127.0.0.1", server.dicom_port, ae_title=server.dicom_aet)
    assert assoc.is_established, "C-FIND association refused"
    matches, final = [], None
    try:
        for status, ds in assoc.send_c_find(identifier, cx):
            assert status, "no C-FIND response (timeout or abort)"
            if status.Status in (0xFF00, 0xFF01):
                matches.append(ds)
            else:
                final = int(status.Status)
    finally:
        assoc.release()
    return matches, final


# ---------------------------------------------------------------- DICOMweb

_TAG_CACHE: dict[str, str] = {}


def tag(keyword: str) -> str:
    """'PatientID' -> '00100020' (DICOM JSON key)."""
    if keyword not in _TAG_CACHE:
        t = tag_for_keyword(keyword)
        if t is None:
            raise KeyError(keyword)
        _TAG_CACHE[keyword] = f"{t:08X}"
    return _TAG_CACHE[keyword]


def jvals(item: dict, keyword: str) -> list:
    """All values of an attribute in a DICOM JSON object (PN -> Alphabetic)."""
    el = item.get(tag(keyword)) or item.get(keyword) or {}
    vals = el.get("Value", [])
    return [v.get("Alphabetic", "") if isinstance(v, dict) and el.get("vr") == "PN" else v for v in vals]


def jval(item: dict, keyword: str, default=None):
    vals = jvals(item, keyword)
    return vals[0] if vals else default


def content_type_param(ct: str, name: str) -> str | None:
    m = email.message.Message()
    m["content-type"] = ct
    v = m.get_param(name)
    return str(v) if v is not None else None


def parse_multipart(body: bytes, content_type: str) -> list[tuple[dict, bytes]]:
    """Split a multipart body -> [(lower-cased headers, content)]."""
    boundary = content_type_param(content_type, "boundary")
    assert boundary, f"no boundary in Content-Type {content_type!r}"
    delim = b"--" + boundary.encode()
    pos = body.find(delim)
    assert pos >= 0, "multipart body without its boundary"
    parts = []
    while True:
        pos += len(delim)
        if body[pos : pos + 2] == b"--":
            return parts
        assert body[pos : pos + 2] == b"\r\n", f"bad multipart framing at {pos}"
        pos += 2
        end = body.find(b"\r\n" + delim, pos)
        assert end >= 0, "multipart part without a closing boundary"
        part = body[pos:end]
        if part.startswith(b"\r\n"):
            head, content = b"", part[2:]
        else:
            head, sep, content = part.partition(b"\r\n\r\n")
            assert sep, "multipart part without a header/body separator"
        headers = {}
        for line in head.decode("latin-1").split("\r\n"):
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        parts.append((headers, content))
        pos = end + 2


@dataclass
class StowResult:
    status: int
    body: dict = field(default_factory=dict)
    text: str = ""

    @property
    def referenced(self) -> dict[str, dict]:
        return {jval(i, "ReferencedSOPInstanceUID"): i for i in jvals(self.body, "ReferencedSOPSequence")}

    @property
    def failed(self) -> list[tuple[str | None, int | None]]:
        return [
            (jval(i, "ReferencedSOPInstanceUID"), jval(i, "FailureReason"))
            for i in jvals(self.body, "FailedSOPSequence")
        ]

    def __str__(self):
        return f"HTTP {self.status}: {self.text[:2000]}"


class DicomWeb:
    """Raw DICOMweb calls on a FulcrumServer (requests; no re-encoding)."""

    def __init__(self, server, timeout: float = 120):
        self.server = server
        self.s = requests.Session()
        if getattr(server, "tls_ca", None):
            self.s.verify = server.tls_ca
            self.s.trust_env = False  # REQUESTS_CA_BUNDLE would override verify
        self.timeout = timeout

    @property
    def base(self) -> str:
        return self.server.dicomweb_url  # follows restarts (new port)

    def client(self):
        """A dicomweb-client DICOMwebClient for this server."""
        from dicomweb_client.api import DICOMwebClient

        return DICOMwebClient(url=self.base)

    def stow(self, parts: list[bytes], study: str | None = None, content_type=None, body=None) -> StowResult:
        url = self.base + "/studies" + (f"/{study}" if study else "")
        if body is None:
            body, ct = encode_multipart(parts)
        else:
            ct = None
        r = self.s.post(
            url,
            data=body,
            headers={"Content-Type": content_type or ct, "Accept": "application/dicom+json"},
            timeout=self.timeout,
        )
        try:
            js = r.json() if r.content else {}
        except ValueError:
            js = {}
        return StowResult(r.status_code, js if isinstance(js, dict) else {}, r.text)

    def stow_files(self, paths, study=None, batch: int = 50) -> list[StowResult]:
        paths = list(paths)
        return [
            self.stow([Path(p).read_bytes() for p in paths[i : i + batch]], study) for i in range(0, len(paths), batch)
        ]

    def qido(self, path: str, params=None, expect=200) -> list[dict]:
        r = self.s.get(
            self.base + path, params=params, headers={"Accept": "application/dicom+json"}, timeout=self.timeout
        )
        if r.status_code == 204 and expect == 200:
            return []
        assert r.status_code == expect, f"GET {r.url} -> {r.status_code}: {r.text[:1000]}"
        return r.json() if r.content else []

    def qido_all(self, path: str, params=None, page: int = 200) -> list[dict]:
        """Every match, paging with limit/offset."""
        out, offset = [], 0
        while True:
            got = self.qido(path, dict(params or {}, limit=page, offset=offset))
            out += got
            if len(got) < page:
                return out
            offset += page

    def get(self, path: str, accept: str | None = None, **kw) -> requests.Response:
        headers = {"Accept": accept} if accept else {}
        return self.s.get(self.base + path, headers=headers, timeout=self.timeout, **kw)

    def retrieve(self, path: str, accept: str = DICOM_ACCEPT_ANY_TS) -> list[tuple[dict, bytes]]:
        r = self.get(path, accept)
        assert r.status_code == 200, f"GET {r.url} -> {r.status_code}: {r.text[:1000]}"
        ct = r.headers.get("Content-Type", "")
        assert ct.startswith("multipart/related"), f"GET {r.url}: Content-Type {ct!r}"
        return parse_multipart(r.content, ct)

    def instance_bytes(self, study: str, series: str, sop: str) -> bytes:
        parts = self.retrieve(f"/studies/{study}/series/{series}/instances/{sop}")
        assert len(parts) == 1, f"instance retrieve returned {len(parts)} parts"
        return parts[0][1]

    def metadata(self, path: str) -> list[dict]:
        r = self.get(path + "/metadata", "application/dicom+json")
        assert r.status_code == 200, f"GET {r.url} -> {r.status_code}: {r.text[:1000]}"
        return r.json()

    def delete(self, path: str, auth=True) -> requests.Response:
        a = (ACCESS_KEY, SECRET_KEY) if auth is True else (auth or None)
        return self.s.delete(self.base + path, auth=a, timeout=self.timeout)

    def locate(self) -> dict[str, tuple[str, str]]:
        """SOP Instance UID -> (study, series) for everything QIDO lists."""
        out = {}
        for item in self.qido_all("/instances", {"includefield": "0020000D,0020000E"}):
            out[jval(item, "SOPInstanceUID")] = (jval(item, "StudyInstanceUID"), jval(item, "SeriesInstanceUID"))
        return out


def stored_problems(dw: DicomWeb, files, *, whole_file: bool = False, where: dict | None = None) -> list[str]:
    """WADO-RS each file's instance from `dw` and compare it with the file.

    whole_file: the whole Part 10 file must come back (STOW-RS, `dicom
    import`); else the dataset after the meta group, in the file's transfer
    syntax (pynetdicom's chunked C-STORE). `where`: sop -> (study, series),
    default dw.locate(). -> list of problems naming the file (empty: all equal)."""
    where = dw.locate() if where is None else where
    problems = []
    for path in map(Path, files):
        data = path.read_bytes()
        sop = sop_uid_of(data)
        if sop not in where:
            problems.append(f"{path}: {sop} not found by QIDO")
            continue
        try:
            got = dw.instance_bytes(*where[sop], sop)
        except AssertionError as e:  # a failed retrieve is one problem among many
            problems.append(f"{path}: {sop} listed by QIDO, WADO-RS retrieve failed: {str(e)[:300]}")
            continue
        if whole_file:
            if got != data:
                problems.append(f"{path}: {sop} retrieved {len(got)} bytes, not the {len(data)}-byte file sent")
            continue
        p10, g10 = split_part10(data), split_part10(got)
        if g10.transfer_syntax != p10.transfer_syntax:
            problems.append(f"{path}: {sop} stored as {g10.transfer_syntax}, sent as {p10.transfer_syntax}")
        elif got[g10.meta_end :] != data[p10.meta_end :]:
            problems.append(
                f"{path}: {sop} dataset bytes differ ({len(got) - g10.meta_end} stored,"
                f" {len(data) - p10.meta_end} sent)"
            )
    return problems


def stow_ok(dw: DicomWeb, paths, study=None, batch: int = 50) -> None:
    """STOW files and assert every instance was stored (HTTP 200, no failures)."""
    for res in dw.stow_files(paths, study, batch):
        assert res.status == 200 and not res.failed, str(res)


def dumps(obj) -> str:
    return json.dumps(obj, indent=1, sort_keys=True)[:3000]


def compare_with_capture(dw: "DicomWeb", capture: dict[str, dict[str, Received]], where: dict) -> list[str]:
    """For each SOP UID captured, WADO-RS retrieve it from Fulcrum and compare
    the dataset bytes with the capture made in the syntax Fulcrum stored.
    `where`: sop -> (study, series). -> list of problems (empty: all equal)."""
    problems = []
    sops = {sop for per_ts in capture.values() for sop in per_ts}
    for sop in sorted(sops):
        if sop not in where:
            problems.append(f"{sop}: not found by QIDO")
            continue
        data = dw.instance_bytes(*where[sop], sop)
        p10 = split_part10(data)
        ref = capture.get(p10.transfer_syntax, {}).get(sop)
        if ref is None:
            problems.append(f"{sop}: stored in {p10.transfer_syntax}, which the sender never used for it")
        elif data[p10.meta_end :] != ref.data:
            problems.append(
                f"{sop}: dataset differs from the wire bytes ({len(data) - p10.meta_end} vs {len(ref.data)} bytes,"
                f" TS {p10.transfer_syntax})"
            )
    return problems


def named_instance(charset, name: str, pid: str, description: str) -> bytes:
    """A small Part 10 instance whose patient name and study description are
    written in `charset` (a (0008,0005) value or list of values)."""
    from pydicom.uid import generate_uid

    from dicom_common import file_meta

    ds = Dataset()
    ds.SpecificCharacterSet = charset
    ds.PatientName, ds.PatientID, ds.StudyDescription = name, pid, description
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.SOPClassUID, ds.Modality = "1.2.840.10008.5.1.4.1.1.7", "OT"
    ds.file_meta = file_meta(ds.SOPClassUID, ds.SOPInstanceUID)
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()


def gbk_without_charset(name: str, description: str, study_uid: str | None = None) -> bytes:
    """An instance as older Chinese modalities write it: its patient name and
    study description in GBK, and no Specific Character Set (0008,0005)."""
    gbk_name, gbk_desc = name.encode("gbk"), description.encode("gbk")
    # ASCII stand-ins of the same lengths, replaced in the encoded bytes.
    ph_name, ph_desc = b"N" * len(gbk_name), b"D" * len(gbk_desc)
    ds = pydicom.dcmread(io.BytesIO(named_instance("ISO_IR 192", ph_name.decode(), "NO-CS", ph_desc.decode())))
    del ds.SpecificCharacterSet
    if study_uid:
        ds.StudyInstanceUID = study_uid
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    data = buf.getvalue()
    assert data.count(ph_name) == 1 and (not gbk_desc or data.count(ph_desc) == 1)
    data = data.replace(ph_name, gbk_name)
    return data.replace(ph_desc, gbk_desc) if gbk_desc else data
