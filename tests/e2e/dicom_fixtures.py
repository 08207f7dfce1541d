"""Real-world DICOM fixtures: the test files bundled in the pydicom,
pydicom-data and pynetdicom wheels, fetched once and classified at run time.

    python tests/e2e/dicom_fixtures.py [--cache DIR] [--list] [--fetch-only]

fetches (if needed) and prints the classification. The wheels are pinned by
hash in tests/fixtures/dicom-wheels.txt and downloaded with `pip download
--no-deps --require-hashes` (nothing is installed); their DICOM files are
extracted to CACHE/files/{pydicom,pydicom-data,pynetdicom}/... . CACHE is
$FULCRUM_E2E_DICOM_CACHE, else tests/fixtures/.cache/dicom (gitignored). No
DICOM file is ever committed.

Classification (computed with pydicom plus the strict walker in
dicom_part10.py; every file that is not `valid` must be listed in KNOWN below
with its expected outcome, and test_dicom_fixtures.py checks that the computed
class still agrees with the list):

  valid      storable Part 10 instance: DICM, meta with TS/SOP class/SOP
             instance, SOPClassUID, SOPInstanceUID, StudyInstanceUID,
             SeriesInstanceUID, valid UID syntax, meta UIDs == dataset UIDs,
             every length fits, parses with pydicom without a warning
  quirky     storable by the contract's definition but not conformant (meta /
             dataset UID mismatch, malformed UID or value, implicit body under
             an explicit TS, no MediaStorageSOPClassUID): a server may store
             it byte-exact or refuse it with a standard code, never crash
  broken     must be refused: truncated, missing UIDs or transfer syntax
  no_meta    a bare dataset without preamble/DICM: not a Part 10 file, so
             STOW must refuse it (0xC000)
  dicomdir   Media Storage Directory: not an instance, skipped
  non_dicom  README, JSON, ICC profile, dumps, gzip: for `dicom import`
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import warnings
import zipfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from dicom_part10 import check_structure

REPO_ROOT = Path(__file__).resolve().parents[2]
WHEELS_REQ = REPO_ROOT / "tests" / "fixtures" / "dicom-wheels.txt"
DEFAULT_CACHE = REPO_ROOT / "tests" / "fixtures" / ".cache" / "dicom"

# wheel member prefix -> source name (the folder under CACHE/files)
SOURCES = {
    "pydicom/data/test_files/": "pydicom",
    "data_store/data/": "pydicom-data",
    "pynetdicom/tests/dicom_files/": "pynetdicom",
}

DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
STOW_CANNOT_UNDERSTAND = 0xC000
STOW_MISSING_OR_MISMATCH = 0xA900

# STOW-RS outcomes accepted for each non-valid class (FailureReason codes; the
# string "stored" means a 200 with the instance retrievable byte-exact).
C000 = frozenset({STOW_CANNOT_UNDERSTAND})
UID_MISSING = frozenset({STOW_MISSING_OR_MISMATCH, STOW_CANNOT_UNDERSTAND})
LENIENT = frozenset({"stored", STOW_MISSING_OR_MISMATCH, STOW_CANNOT_UNDERSTAND})


@dataclass(frozen=True)
class Known:
    kind: str  # quirky | broken | no_meta | dicomdir | non_dicom
    stow: frozenset  # accepted STOW outcomes (empty: not sent)
    why: str


def _k(kind, stow, why):
    return Known(kind, frozenset(stow), why)


# Every fixture that is not `valid`, by "source/relative path". Expected STOW
# outcomes follow PS3.18 Table 10.5.3-1 / the contract: not DICOM, truncated,
# no transfer syntax -> 0xC000; no SOP Instance / Study / Series UID -> 0xA900
# (0xC000 tolerated: the standard leaves the split to the server).
KNOWN: dict[str, Known] = {
    # -- truncated / structurally broken
    "pydicom/MR_truncated.dcm": _k("broken", C000, "Pixel Data declares 8192 bytes, 8130 present"),
    "pydicom/rtplan_truncated.dcm": _k("broken", C000, "cut inside a sequence"),
    "pydicom-data/emri_small_jpeg_2k_lossless_too_short.dcm": _k(
        "broken", C000, "encapsulated Pixel Data cut: no sequence delimiter"
    ),
    # -- Part 10 header present, required UIDs / TS missing
    "pydicom/meta_missing_tsyntax.dcm": _k("broken", C000, "file meta has no Transfer Syntax UID"),
    "pydicom/JPEGLSNearLossless_08.dcm": _k("broken", UID_MISSING, "no Study/Series Instance UID"),
    "pydicom/JPEGLSNearLossless_16.dcm": _k("broken", UID_MISSING, "no Study/Series Instance UID"),
    "pydicom/SC_rgb_jls_lossy_line.dcm": _k("broken", UID_MISSING, "no Study/Series Instance UID"),
    "pydicom/SC_rgb_jls_lossy_sample.dcm": _k("broken", UID_MISSING, "no Study/Series Instance UID"),
    "pydicom/UN_sequence.dcm": _k("broken", UID_MISSING, "no SOP Class/Instance UID"),
    "pydicom/empty_charset_LEI.dcm": _k("broken", UID_MISSING, "two elements, no UIDs"),
    "pydicom/nested_priv_SQ.dcm": _k("broken", UID_MISSING, "private sequence only, no UIDs"),
    "pydicom/priv_SQ.dcm": _k("broken", UID_MISSING, "private sequence only, no UIDs"),
    "pydicom/no_meta_group_length.dcm": _k("broken", UID_MISSING, "no (0002,0000); dataset has no UIDs"),
    # -- storable by the contract's definition, but not conformant
    "pydicom/badVR.dcm": _k("quirky", LENIENT, "IS value '1A'; meta SOP Instance UID differs from dataset"),
    "pydicom/rtdose.dcm": _k("quirky", LENIENT, "UID component with a leading zero; meta/dataset UID mismatch"),
    "pydicom/rtdose_1frame.dcm": _k("quirky", LENIENT, "UID component with a leading zero; meta/dataset mismatch"),
    "pydicom/rtdose_expb.dcm": _k("quirky", LENIENT, "UID component with a leading zero; meta/dataset mismatch"),
    "pydicom/rtdose_expb_1frame.dcm": _k("quirky", LENIENT, "UID with a leading zero; meta/dataset mismatch"),
    "pydicom/rtdose_rle.dcm": _k("quirky", LENIENT, "UID component with a leading zero"),
    "pydicom/rtdose_rle_1frame.dcm": _k("quirky", LENIENT, "UID component with a leading zero"),
    "pydicom/rtplan.dcm": _k("quirky", LENIENT, "meta SOP Instance UID differs from the dataset's"),
    "pydicom/SC_rgb_jpeg.dcm": _k("quirky", LENIENT, "implicit VR body under an explicit VR transfer syntax"),
    "pydicom-data/bad_sequence.dcm": _k("quirky", LENIENT, "SOP/Study UIDs are hex strings; meta mismatch"),
    "pynetdicom/CTImageStorage_bad_meta.dcm": _k("quirky", LENIENT, "meta has no MediaStorageSOPClassUID"),
    "pynetdicom/RTImageStorage.dcm": _k("quirky", LENIENT, "UID with a leading zero; meta/dataset mismatch"),
    "pydicom-data/explicit_VR-UN.dcm": _k(
        "quirky", LENIENT, "every element has VR UN (legal; DCMTK's dcmsend sends SOP class '31' for it)"
    ),
    # -- bare datasets (no preamble, no DICM)
    "pydicom/no_meta.dcm": _k("non_dicom", C000, "no file meta and a stray leading byte: unreadable"),
    "pydicom/ExplVR_BigEndNoMeta.dcm": _k("no_meta", C000, "explicit VR BE dataset without file meta"),
    "pydicom/ExplVR_LitEndNoMeta.dcm": _k("no_meta", C000, "explicit VR LE dataset without file meta"),
    "pydicom/rtstruct.dcm": _k("no_meta", C000, "dataset without file meta"),
    "pydicom-data/OT-PAL-8-face.dcm": _k("no_meta", C000, "dataset without file meta"),
    # -- media directories
    **{
        f"pydicom/dicomdirtests/{n}": _k("dicomdir", (), "DICOMDIR")
        for n in (
            "DICOMDIR",
            "DICOMDIR-bigEnd",
            "DICOMDIR-empty.dcm",
            "DICOMDIR-implicit",
            "DICOMDIR-nooffset",
            "DICOMDIR-nopatient",
            "DICOMDIR-reordered",
            "TINY_ALPHA/DICOMDIR",
        )
    },
    # -- not DICOM at all
    **{
        f"pydicom/{n}": _k("non_dicom", C000, "not DICOM")
        for n in (
            "README.txt",
            "crayons.icc",
            "rtplan.dump",
            "rtstruct.dump",
            "test1.json",
            "test_PN.json",
            "zipMR.gz",
            "dicomdirtests/README.txt",
            "dicomdirtests/TINY_ALPHA/README",
        )
    },
}

UNCOMPRESSED_TS = {
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.2",
}
DEFLATED_TS = "1.2.840.10008.1.2.1.99"
JPEG_BASELINE_TS = "1.2.840.10008.1.2.4.50"


@dataclass
class Fixture:
    path: Path
    rel: str  # "source/relative/path"
    size: int
    kind: str = "valid"
    why: str = ""
    transfer_syntax: str | None = None
    sop_class: str | None = None
    sop_uid: str | None = None
    study_uid: str | None = None
    series_uid: str | None = None
    attrs: dict = field(default_factory=dict)  # a few attributes for QIDO/frames tests

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def expected_stow(self) -> frozenset:
        k = KNOWN.get(self.rel)
        return k.stow if k else frozenset({"stored"})

    def read(self) -> bytes:
        return self.path.read_bytes()


# ---------------------------------------------------------------- fetching


def cache_dir() -> Path:
    return Path(os.environ.get("FULCRUM_E2E_DICOM_CACHE") or DEFAULT_CACHE)


def _stamp_want() -> str:
    return hashlib.sha256(WHEELS_REQ.read_bytes()).hexdigest()


def ensure(cache: Path | None = None, python: str | None = None) -> Path:
    """Download the pinned wheels and extract their DICOM files, once.

    Returns CACHE/files. A stamp (hash of dicom-wheels.txt) makes reruns free.
    """
    cache = Path(cache or cache_dir())
    files = cache / "files"
    stamp = cache / ".stamp"
    want = _stamp_want()
    if stamp.exists() and stamp.read_text().strip() == want and files.is_dir():
        return files
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    cmd = [
        python or sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--disable-pip-version-check",
        "--no-deps",
        "--require-hashes",
        "--only-binary=:all:",
        "-r",
        str(WHEELS_REQ),
        "-d",
        str(wheels),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    tmp = cache / "files.tmp"
    if tmp.exists():
        _rmtree(tmp)
    n = 0
    for whl in sorted(wheels.glob("*.whl")):
        with zipfile.ZipFile(whl) as z:
            for member in z.namelist():
                for prefix, source in SOURCES.items():
                    if member.startswith(prefix) and not member.endswith("/"):
                        rel = member[len(prefix) :]
                        if rel.endswith(".py") or "/__pycache__/" in member:
                            continue
                        out = tmp / source / rel
                        out.parent.mkdir(parents=True, exist_ok=True)
                        out.write_bytes(z.read(member))
                        n += 1
    if n == 0:
        raise RuntimeError(f"no DICOM fixtures found in the wheels under {wheels}")
    if files.exists():
        _rmtree(files)
    tmp.rename(files)
    stamp.write_text(want + "\n")
    return files


def _rmtree(p: Path):
    import shutil

    shutil.rmtree(p)


# ---------------------------------------------------------------- classification


def _uid_ok(uid) -> bool:
    from pydicom.uid import UID

    return bool(uid) and UID(str(uid)).is_valid


def classify_file(path: Path, rel: str) -> Fixture:
    """Compute the class of one file (ignores KNOWN)."""
    import pydicom

    data = path.read_bytes()
    fx = Fixture(path=path, rel=rel, size=len(data))
    if data[128:132] != b"DICM":
        # A bare dataset starts with a group-0008 element (little or big endian).
        ok = data[:2] in (b"\x08\x00", b"\x00\x08")
        if not ok:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ds = pydicom.dcmread(path, force=True)
                    ok = "SOPInstanceUID" in ds and "SOPClassUID" in ds
            except Exception:
                ok = False
        fx.kind, fx.why = ("no_meta", "dataset without file meta") if ok else ("non_dicom", "not DICOM")
        return fx
    problems = []
    try:
        p10, _ = check_structure(data)
        fx.transfer_syntax = p10.transfer_syntax
        meta_class, meta_sop = p10.meta_str(0x00020002), p10.meta_str(0x00020003)
    except Exception as e:  # Part10Error, or struct errors on garbage
        problems.append(f"structure: {e}")
        meta_class = meta_sop = None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = pydicom.dcmread(path)
            un = [
                kw
                for kw in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
                if kw in ds and ds.get_item(kw).VR == "UN"
            ]
            for _ in ds.iterall():
                pass
        problems += [f"pydicom: {w.message}" for w in caught]
        if un:
            problems.append(f"identifying attributes encoded with VR UN: {', '.join(un)}")
    except Exception as e:
        problems.append(f"pydicom: {type(e).__name__}: {e}")
        ds = None
    if ds is not None:
        fx.transfer_syntax = fx.transfer_syntax or str(ds.file_meta.get("TransferSyntaxUID") or "") or None
        fx.sop_class = str(ds.get("SOPClassUID", "")) or None
        fx.sop_uid = str(ds.get("SOPInstanceUID", "")) or None
        fx.study_uid = str(ds.get("StudyInstanceUID", "")) or None
        fx.series_uid = str(ds.get("SeriesInstanceUID", "")) or None
        for kw in (
            "PatientID",
            "PatientName",
            "Modality",
            "Rows",
            "Columns",
            "NumberOfFrames",
            "BitsAllocated",
            "SamplesPerPixel",
            "PhotometricInterpretation",
            "PixelRepresentation",
        ):
            if kw in ds:
                v = ds[kw].value
                fx.attrs[kw] = str(v) if kw in ("PatientName",) else v
        fx.attrs["HasPixelData"] = "PixelData" in ds
    if meta_class == DICOMDIR_SOP_CLASS or (ds is not None and "DirectoryRecordSequence" in ds):
        fx.kind, fx.why = "dicomdir", "DICOMDIR"
        return fx
    missing = [
        n
        for n, v in (
            ("TransferSyntaxUID", fx.transfer_syntax),
            ("SOPClassUID", fx.sop_class),
            ("SOPInstanceUID", fx.sop_uid),
            ("StudyInstanceUID", fx.study_uid),
            ("SeriesInstanceUID", fx.series_uid),
        )
        if not v
    ]
    structural = [p for p in problems if p.startswith("structure") or "End of file" in p]
    if structural and not any("bad VR" in p for p in structural):
        fx.kind, fx.why = "broken", structural[0]
        return fx
    if missing:
        fx.kind, fx.why = "broken", "missing " + ", ".join(missing)
        return fx
    quirks = list(problems)
    if not meta_class:
        quirks.append("meta has no MediaStorageSOPClassUID")
    if meta_sop != fx.sop_uid or (meta_class and meta_class != fx.sop_class):
        quirks.append("meta SOP UIDs differ from the dataset's")
    for n, v in (
        ("SOPClassUID", fx.sop_class),
        ("SOPInstanceUID", fx.sop_uid),
        ("StudyInstanceUID", fx.study_uid),
        ("SeriesInstanceUID", fx.series_uid),
    ):
        if not _uid_ok(v):
            quirks.append(f"{n} is not a valid UID")
    if quirks:
        fx.kind, fx.why = "quirky", "; ".join(quirks)
    return fx


@dataclass
class Fixtures:
    root: Path
    all: list[Fixture]

    def of(self, kind: str) -> list[Fixture]:
        return [f for f in self.all if f.kind == kind]

    def by_rel(self, rel: str) -> Fixture:
        for f in self.all:
            if f.rel == rel:
                return f
        raise KeyError(rel)

    @cached_property
    def valid(self) -> list[Fixture]:
        return self.of("valid")

    @cached_property
    def layers(self) -> list[list[Fixture]]:
        """The valid files split into sets with unique SOP Instance UIDs (the
        same image often ships in several transfer syntaxes under one UID).

        Layer 0 holds one file per UID, picking the rarest transfer syntax of
        each group so that every encoding is represented; layer k holds the
        (k+1)-th file of each group. Store a layer, compare byte-exact, store
        the next (replace policy: newest bytes win), compare again.
        """
        ts_count = Counter(f.transfer_syntax for f in self.valid)
        groups: dict[str, list[Fixture]] = defaultdict(list)
        for f in self.valid:
            groups[f.sop_uid].append(f)
        out: list[list[Fixture]] = []
        for g in groups.values():
            g.sort(key=lambda f: (ts_count[f.transfer_syntax], f.rel))
            for i, f in enumerate(g):
                if i == len(out):
                    out.append([])
                out[i].append(f)
        return [sorted(layer, key=lambda f: f.rel) for layer in out]

    @property
    def unique_valid(self) -> list[Fixture]:
        """Layer 0: one valid file per SOP Instance UID, every transfer syntax."""
        return self.layers[0]

    @cached_property
    def duplicate_sop_groups(self) -> list[list[Fixture]]:
        """Valid files sharing one SOP Instance UID with different bytes."""
        groups: dict[str, list[Fixture]] = defaultdict(list)
        for f in self.valid:
            groups[f.sop_uid].append(f)
        return [sorted(g, key=lambda f: f.rel) for g in groups.values() if len(g) > 1]

    def representative(self, per_ts: int = 2, max_size: int = 600_000) -> list[Fixture]:
        """A small subset of unique_valid: the `per_ts` smallest files of each
        transfer syntax (under max_size when possible) - every encoding, few bytes."""
        by_ts: dict[str, list[Fixture]] = defaultdict(list)
        for f in self.unique_valid:
            by_ts[f.transfer_syntax].append(f)
        out = []
        for ts in sorted(by_ts):
            files = sorted(by_ts[ts], key=lambda f: (f.size, f.rel))
            small = [f for f in files if f.size <= max_size] or files
            out += small[:per_ts]
        return sorted(out, key=lambda f: f.rel)

    def first(self, pred, pool=None) -> Fixture | None:
        for f in sorted(pool if pool is not None else self.unique_valid, key=lambda f: (f.size, f.rel)):
            if pred(f):
                return f
        return None

    def disagreements(self) -> list[str]:
        """Files whose computed class differs from KNOWN (or unlisted non-valid)."""
        out = []
        for f in self.all:
            want = KNOWN.get(f.rel)
            if want is None and f.kind != "valid":
                out.append(f"{f.rel}: computed {f.kind} ({f.why}) but not listed in KNOWN")
            elif want is not None and want.kind != f.kind:
                out.append(f"{f.rel}: KNOWN says {want.kind} ({want.why}), computed {f.kind} ({f.why})")
        listed = {f.rel for f in self.all}
        out += [f"{rel}: listed in KNOWN but missing from the wheels" for rel in KNOWN if rel not in listed]
        return out


def load(files_root: Path | None = None) -> Fixtures:
    import logging

    logging.getLogger("pydicom").setLevel(logging.CRITICAL)  # warnings are recorded, not printed
    root = Path(files_root or ensure())
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for p in sorted(root.rglob("*")):
            if p.is_file():
                out.append(classify_file(p, p.relative_to(root).as_posix()))
    return Fixtures(root, out)


TS_NAMES = {
    "1.2.840.10008.1.2": "Implicit VR LE",
    "1.2.840.10008.1.2.1": "Explicit VR LE",
    "1.2.840.10008.1.2.1.99": "Deflated Explicit VR LE",
    "1.2.840.10008.1.2.2": "Explicit VR BE",
    "1.2.840.10008.1.2.4.50": "JPEG Baseline",
    "1.2.840.10008.1.2.4.51": "JPEG Extended",
    "1.2.840.10008.1.2.4.57": "JPEG Lossless P14",
    "1.2.840.10008.1.2.4.70": "JPEG Lossless SV1",
    "1.2.840.10008.1.2.4.80": "JPEG-LS Lossless",
    "1.2.840.10008.1.2.4.81": "JPEG-LS Near-lossless",
    "1.2.840.10008.1.2.4.90": "JPEG 2000 Lossless",
    "1.2.840.10008.1.2.4.91": "JPEG 2000",
    "1.2.840.10008.1.2.5": "RLE Lossless",
}


def summary(fx: Fixtures) -> str:
    lines = [f"DICOM fixtures under {fx.root}: {len(fx.all)} files"]
    for kind, n in sorted(Counter(f.kind for f in fx.all).items()):
        lines.append(f"  {kind:10} {n}")
    uv = fx.unique_valid
    lines.append(
        f"  valid: {len(fx.valid)} files, {sum(f.size for f in fx.valid) / 1e6:.1f} MB; "
        f"{len(fx.duplicate_sop_groups)} SOP Instance UIDs shared by several files"
    )
    lines.append(
        f"  layers with unique UIDs: {[len(layer) for layer in fx.layers]}; "
        f"layer 0: {len(uv)} files, {sum(f.size for f in uv) / 1e6:.1f} MB"
    )
    lines.append("  valid per transfer syntax (all / layer 0):")
    all_ts, uniq_ts = Counter(f.transfer_syntax for f in fx.valid), Counter(f.transfer_syntax for f in uv)
    for ts, n in sorted(all_ts.items(), key=lambda kv: -kv[1]):
        lines.append(f"    {TS_NAMES.get(ts, ts):26} {n:4} / {uniq_ts.get(ts, 0)}")
    bad = fx.disagreements()
    lines.append(f"  disagreements with KNOWN: {len(bad)}")
    lines += [f"    {b}" for b in bad]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--cache", type=Path, help="cache dir (default $FULCRUM_E2E_DICOM_CACHE or tests/fixtures/.cache/dicom)"
    )
    ap.add_argument("--list", action="store_true", help="print every file with its class")
    ap.add_argument("--fetch-only", action="store_true", help="download and extract, then print one line")
    args = ap.parse_args(argv)
    root = ensure(args.cache)
    if args.fetch_only:
        print(f"{sum(1 for p in root.rglob('*') if p.is_file())} fixture files under {root}")
        return 0
    fx = load(root)
    if args.list:
        for f in fx.all:
            print(
                f"{f.kind:9} {TS_NAMES.get(f.transfer_syntax, f.transfer_syntax or '-'):24} {f.size:9} {f.rel}"
                + (f"  [{f.why}]" if f.why else "")
            )
    print(summary(fx))
    return 1 if fx.disagreements() else 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    sys.exit(main())
