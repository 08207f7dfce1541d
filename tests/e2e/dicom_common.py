"""DICOM building blocks shared by the e2e suite and the imaging benchmark.

Only the standard library and pydicom (no pytest, no test servers), so that
bench/dicom_gen.py and bench/dicom_bench.py can import this file too: they
add tests/e2e to the end of sys.path (`E2E_DIR` there), their own modules
keep precedence.

    file_meta(...)          Part 10 file meta group, Explicit VR Little Endian
    encode_multipart(...)   a multipart/related body (STOW-RS request)
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from pathlib import Path

from pydicom.dataset import FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian


def file_meta(
    sop_class: str,
    sop_uid: str,
    *,
    implementation_uid: str = PYDICOM_IMPLEMENTATION_UID,
    implementation_version: str = "FULCRUM_E2E",
) -> FileMetaDataset:
    """The file meta group of an Explicit VR Little Endian Part 10 file."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = implementation_uid
    meta.ImplementationVersionName = implementation_version
    return meta


def encode_multipart(parts: list[bytes], content_type="application/dicom", boundary=None) -> tuple[bytes, str]:
    """-> (body, Content-Type header) of a multipart/related request."""
    boundary = boundary or f"fulcrum-e2e-{uuid.uuid4().hex}"
    chunks = []
    for p in parts:
        chunks.append(f"--{boundary}\r\nContent-Type: {content_type}\r\n\r\n".encode())
        chunks.append(p)
        chunks.append(b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f'multipart/related; type="{content_type}"; boundary={boundary}'


def dcmtk_path(name: str) -> str | None:
    """DCMTK's `name` on PATH, skipping this Python's venv: pynetdicom
    installs Python apps of the same names (storescu, findscu, getscu,
    movescu, echoscu) into a venv's bin, which an activated venv puts first."""
    venv_bin = Path(sys.executable).parent.resolve()
    dirs = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d and Path(d).resolve() != venv_bin]
    return shutil.which(name, path=os.pathsep.join(dirs))
