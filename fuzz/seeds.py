"""Writes the seed corpora of the fuzz targets under fuzz/corpus/<target>/.

    python fuzz/seeds.py        (needs pydicom and numpy, as tests/e2e does)

Tiny real inputs: a generated CT instance (tests/e2e/dicom_gen.py, 8x8
pixels) in each framing the ingest path knows (explicit/implicit VR little
endian, big endian, deflated, encapsulated), a truncated one, DIMSE command
sets and a C-FIND identifier; STOW-RS bodies; the S3 XML bodies our server
parses; the shipped default config; a catalog dump and pack tails.
Deterministic: the same bytes on every run.
"""

from __future__ import annotations

import io
import struct
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

import pydicom  # noqa: E402
from pydicom.dataset import Dataset  # noqa: E402
from pydicom.encaps import encapsulate  # noqa: E402
from pydicom.filewriter import dcmwrite, write_dataset  # noqa: E402
from pydicom.uid import (  # noqa: E402
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
)

import dicom_gen  # noqa: E402

CORPUS = ROOT / "fuzz" / "corpus"


def put(target: str, name: str, data: bytes):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def tiny_instance() -> Path:
    tmp = Path(tempfile.mkdtemp())
    inst = dicom_gen.generate(tmp, patients=1, studies_per_patient=1, series_per_study=1,
                              instances_per_series=1, rows=8, columns=8)[0]
    return inst.path


def saved(ds, ts) -> bytes:
    ds = ds.copy()
    ds.file_meta.TransferSyntaxUID = ts
    out = io.BytesIO()
    if ts == ExplicitVRBigEndian:
        # pydicom converts to big endian only when forced (pixel bytes stay as they are).
        ds.preamble = b"\0" * 128
        dcmwrite(out, ds, implicit_vr=False, little_endian=False,
                 force_encoding=True)
    else:
        ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def bare(**attrs) -> bytes:
    """A dataset of `attrs` without file meta, implicit VR little endian (DIMSE)."""
    ds = Dataset()
    for k, v in attrs.items():
        setattr(ds, k, v)
    buf = pydicom.filebase.DicomBytesIO()
    buf.is_little_endian = True
    buf.is_implicit_VR = True
    write_dataset(buf, ds)
    return buf.getvalue()


def dicom_seeds() -> bytes:
    path = tiny_instance()
    explicit = path.read_bytes()
    put("dicom_ingest", "ct_explicit_le.dcm", explicit)
    ds = pydicom.dcmread(path)
    put("dicom_ingest", "ct_implicit_le.dcm", saved(ds, ImplicitVRLittleEndian))
    put("dicom_ingest", "ct_big_endian.dcm", saved(ds, ExplicitVRBigEndian))
    put("dicom_ingest", "ct_deflated.dcm", saved(ds, DeflatedExplicitVRLittleEndian))
    enc = ds.copy()
    enc.PixelData = encapsulate([b"\xff\xd8fake-jpeg-frame\xff\xd9"], has_bot=True)
    enc["PixelData"].VR = "OB"
    enc["PixelData"].is_undefined_length = True
    put("dicom_ingest", "ct_encapsulated.dcm", saved(enc, JPEGBaseline8Bit))
    put("dicom_ingest", "ct_truncated.dcm", explicit[:-17])
    # DIMSE: a C-ECHO-RQ as DCMTK sends it, a C-FIND-RQ and its identifier.
    put("dicom_ingest", "c_echo_rq.bin", bare(
        AffectedSOPClassUID="1.2.840.10008.1.1", CommandField=0x0030, MessageID=1,
        CommandDataSetType=0x0101))
    put("dicom_ingest", "c_find_rq.bin", bare(
        AffectedSOPClassUID="1.2.840.10008.5.1.4.1.2.2.1", CommandField=0x0020, MessageID=7,
        Priority=0, CommandDataSetType=0x0000))
    put("dicom_ingest", "c_find_identifier.bin", bare(
        QueryRetrieveLevel="STUDY", PatientName="DOE*", StudyDate="20240101-20241231",
        StudyInstanceUID="", ModalitiesInStudy="CT\\MR"))
    return explicit


def multipart_seeds(instance: bytes):
    ct = b'multipart/related; type="application/dicom"; boundary=XyZ\n'
    body = (b"--XyZ\r\nContent-Type: application/dicom\r\n\r\n" + instance +
            b"\r\n--XyZ\r\nContent-Type: application/dicom\r\n\r\n" + instance[:300] + b"\r\n--XyZ--\r\n")
    put("multipart", "two_parts", b"\x07" + ct + body)
    put("multipart", "preamble_epilogue", b"\x83" + b'multipart/related; boundary="a b"\n' +
        b"preamble\r\n--a b  \r\n\r\none\r\n--a\r\n--a b\r\nContent-Type: text/plain\r\n\r\ntwo\r\n--a b--\r\nepilogue")
    put("multipart", "empty", b"\x01" + ct + b"--XyZ--")


S3 = {
    0: b'<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Part><ETag>"a54357aff0632cce46d942af68356b38"</ETag><PartNumber>1</PartNumber></Part><Part><ETag>"0c78aef83f66abc1fa1e8477f296d394"</ETag><PartNumber>2</PartNumber><ChecksumCRC32>AAAAAA==</ChecksumCRC32></Part></CompleteMultipartUpload>',
    1: b'<?xml version="1.0" encoding="UTF-8"?>\n<Delete><Quiet>true</Quiet><Object><Key>a/b.dcm</Key></Object><Object><Key>x&amp;y</Key><VersionId>v1</VersionId></Object></Delete>',
    2: b'<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><LocationConstraint>eu-west-1</LocationConstraint></CreateBucketConfiguration>',
    3: b'<LifecycleConfiguration><Rule><ID>archive</ID><Filter><And><Prefix>scans/</Prefix><Tag><Key>k</Key><Value>v</Value></Tag></And></Filter><Status>Enabled</Status><Transition><Days>30</Days><StorageClass>GLACIER</StorageClass></Transition><Expiration><Date>2030-01-01T00:00:00.000Z</Date></Expiration></Rule></LifecycleConfiguration>',
    4: b'<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention><Mode>COMPLIANCE</Mode><Years>10</Years></DefaultRetention></Rule></ObjectLockConfiguration>',
    5: b'<Tagging><TagSet><Tag><Key>patient</Key><Value>7</Value></Tag></TagSet></Tagging>',
    6: b'<VersioningConfiguration><Status>Enabled</Status><MfaDelete>Disabled</MfaDelete></VersioningConfiguration>',
    7: b'<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod><MaxAgeSeconds>3000</MaxAgeSeconds></CORSRule></CORSConfiguration>',
    8: b'<Retention><Mode>GOVERNANCE</Mode><RetainUntilDate>2030-01-01T00:00:00Z</RetainUntilDate></Retention>',
    9: b"scans.s3.example.org:9000",
}


def s3_seeds():
    names = ["complete_multipart", "delete_objects", "create_bucket", "lifecycle", "object_lock",
             "tagging", "versioning", "cors", "retention", "host"]
    for k, body in S3.items():
        put("s3_xml", names[k], bytes([k]) + body)


def config_seeds():
    text = (ROOT / "crates" / "fulcrum" / "src" / "config.rs").read_text()
    start = text.index('DEFAULT_TOML: &str = r#"') + len('DEFAULT_TOML: &str = r#"')
    default = text[start:text.index('"#;', start)]
    put("config", "default.toml", default.encode())
    put("config", "cluster.toml", b'''data_dir = "/srv/fulcrum"
backend = "s3://fulcrum-packs/prod?endpoint=http://garage:3900&region=garage"
catalog_url = "postgres://fulcrum@db:5432/fulcrum"
s3_domains = ["s3.example.org", ".localhost"]
dicom_nodes = ["PACS@10.0.0.5:104"]
dicom_allowed_aets = ["CT01"]
dicom_duplicates = "reject"
scrub_every_hours = 168.5
[backup]
repo = "s3://offsite/fulcrum?endpoint=https://s3.example"
every_hours = 24
keep_daily = 7
''')


def dump_seeds():
    def text(s: bytes) -> bytes:
        return struct.pack("<I", len(s)) + s
    dump = b"FCDUMP01" + b"T" + text(b"buckets") + struct.pack("<I", 3) + text(b"id") + text(b"name") + text(b"size")
    dump += b"R" + b"\x01" + struct.pack("<q", 1) + b"\x03" + text(b"scans") + b"\x02" + struct.pack("<d", 1.5)
    dump += b"R" + b"\x00" + b"\x04" + text(b"\x00\x01") + b"\x00"
    dump += b"E"
    put("catalog_dump", "dump", dump)
    # A hot pack: one 5-byte chunk, its trailer entry, count, magic.
    entry = bytes(range(32)) + struct.pack("<QIIB", 0, 5, 5, 0)
    put("catalog_dump", "hot_pack", b"hello" + entry + struct.pack("<I", 1) + b"FCPACK01")
    # A backup pack tail around a plaintext index entry.
    idx = bytes(range(32)) + bytes([0, 0]) + struct.pack("<IQI", 5, 0, 5)
    put("catalog_dump", "backup_pack", b"hello" + idx + struct.pack("<I", len(idx)) + b"FCBKPK01")


if __name__ == "__main__":
    inst = dicom_seeds()
    multipart_seeds(inst)
    s3_seeds()
    config_seeds()
    dump_seeds()
    for d in sorted(CORPUS.iterdir()):
        files = list(d.iterdir())
        print(f"{d.name}: {len(files)} seeds, {sum(f.stat().st_size for f in files)} bytes")
