"""Deterministic DICOM data for the imaging benchmark (bench/dicom_bench.py).

Everything is a function of its parameters (fixed seeds, UIDs built from
counters under one root), so two runs, or two machines, send the same bytes.

  ct_study      N slices of 512x512, 16-bit (12 bits stored) CT: an
                anatomy-like phantom (body outline, fat layer, lungs with
                vessels, heart, liver, kidneys, spine, ribs, table) that
                changes from slice to slice, blurred like a scanner's PSF,
                plus Gaussian noise; air outside the reconstruction circle is
                padding. Compresses like real CT, neither constant nor noise.
  edited_copy   the CT study with another PatientName/PatientID and new
                Study/Series/SOP Instance UIDs (a corrected or de-identified
                copy), pixel data byte-identical.
  small         64x64 16-bit CT/MR images, 20 per patient (2 studies x 2
                series x 5 instances), each with its own pixels.
  multiframe    one Multi-frame Grayscale Word Secondary Capture instance of
                512x512 frames, written streaming (2 GiB in the full run).

The patient/study attributes (names, IDs, accession numbers, dates) come
from the same functions as the 1,000,000 QIDO index rows (bench/qido_index.py).

    python bench/dicom_gen.py OUTDIR [--quick]     # writes the data sets once
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import struct
import sys
from io import BytesIO
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset

import benchlib

benchlib.add_e2e_path()
from dicom_common import file_meta  # noqa: E402 - tests/e2e/dicom_common.py

# pydicom's registered root + an arc for this benchmark.
ROOT_UID = "1.2.826.0.1.3680043.8.498.7707"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
MF_WORD_SC = "1.2.840.10008.5.1.4.1.1.7.3"
IMPL_UID = "1.2.826.0.1.3680043.8.498.7707.0.1"

SYLLABLES = ["KA", "MO", "RI", "TA", "NE", "LU", "SO", "BE", "DI", "GA",
             "HO", "VI", "PA", "RE", "ZU", "TO", "MI", "LA", "NO", "SE"]
GIVEN = ["ANNA", "JOHN", "MARIA", "PETER", "SOFIA", "LUCAS", "EMMA", "NOAH", "LEA", "PAUL",
         "CLARA", "FELIX", "IDA", "OSCAR", "MIA", "HUGO", "NORA", "LEON", "ELLA", "JONAS"]
MODALITIES = ["CT", "MR"]
EPOCH = dt.date(2005, 1, 1)
DAYS = 20 * 365


def uid(*parts: int) -> str:
    return ".".join([ROOT_UID, *map(str, parts)])


# ------------------------------------------------------------ attributes

def family_name(p: int) -> str:
    """8,000 six-letter family names (3 syllables), spread over patients."""
    k = (p * 2654435761) % (len(SYLLABLES) ** 3)
    n = len(SYLLABLES)
    return SYLLABLES[k // (n * n)] + SYLLABLES[(k // n) % n] + SYLLABLES[k % n]


def patient_attrs(p: int) -> dict:
    return {
        "PatientID": f"BP{p:07d}",
        "PatientName": f"{family_name(p)}^{GIVEN[(p // 7) % len(GIVEN)]}",
        "PatientBirthDate": (dt.date(1930, 1, 1) + dt.timedelta(days=(p * 7919) % (80 * 365))).strftime("%Y%m%d"),
        "PatientSex": "MF"[p % 2],
    }


def study_attrs(s: int) -> dict:
    day = EPOCH + dt.timedelta(days=(s * 104729) % DAYS)
    secs = (s * 7907) % 86400
    return {
        "StudyDate": day.strftime("%Y%m%d"),
        "StudyTime": f"{secs // 3600:02d}{secs // 60 % 60:02d}{secs % 60:02d}",
        "AccessionNumber": f"A{s:09d}",
        "StudyID": str(s % 100000),
        "StudyDescription": ["CHEST", "ABDOMEN", "HEAD", "KNEE", "SPINE"][s % 5],
        "ReferringPhysicianName": f"{family_name(s + 17)}^DR",
    }


def base_dataset(sop_class: str, sop_uid: str, study_uid: str, series_uid: str, p: int, s: int,
                 modality: str, series_no: int, inst_no: int) -> Dataset:
    ds = Dataset()
    ds.file_meta = file_meta(sop_class, sop_uid, implementation_uid=IMPL_UID, implementation_version="FULCRUMBENCH")
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.Modality = modality
    ds.Manufacturer = "FULCRUM BENCH"
    ds.InstitutionName = "BENCH HOSPITAL"
    for k, v in patient_attrs(p).items():
        setattr(ds, k, v)
    for k, v in study_attrs(s).items():
        setattr(ds, k, v)
    ds.SeriesDate = ds.StudyDate
    ds.ContentDate = ds.StudyDate
    ds.SeriesTime = ds.StudyTime
    ds.ContentTime = ds.StudyTime
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_no
    ds.SeriesDescription = f"{modality} series {series_no}"
    ds.InstanceNumber = inst_no
    ds.FrameOfReferenceUID = study_uid + ".9"
    ds.PositionReferenceIndicator = ""
    ds.PatientPosition = "HFS"
    ds.BodyPartExamined = ds.StudyDescription
    return ds


def pixel_module(ds: Dataset, rows: int, cols: int) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0


def save(ds: Dataset, path: Path) -> None:
    ds.save_as(path, enforce_file_format=True)


# ------------------------------------------------------------ CT phantom

class Phantom:
    """Anatomy-like axial slices in HU; z in [0, 1] runs neck -> pelvis."""

    def __init__(self, size: int = 512):
        self.size = size
        c = (size - 1) / 2
        y, x = np.mgrid[0:size, 0:size].astype(np.float32)
        self.x = (x - c) / (size / 2)  # -1 .. 1
        self.y = (y - c) / (size / 2)
        self.fov = self.x ** 2 + self.y ** 2 <= 0.98 ** 2
        # slow texture shared by soft tissue (a few sinusoids)
        self.texture = (np.sin(9.0 * self.x + 2.0 * self.y) + np.sin(5.0 * self.y - 3.0 * self.x + 1.0)
                        + 0.5 * np.sin(17.0 * self.x * self.y)).astype(np.float32)

    def ellipse(self, cx, cy, ax, ay, angle=0.0):
        ca, sa = np.cos(angle), np.sin(angle)
        xr = (self.x - cx) * ca + (self.y - cy) * sa
        yr = -(self.x - cx) * sa + (self.y - cy) * ca
        return (xr / ax) ** 2 + (yr / ay) ** 2 <= 1.0

    def slice_hu(self, z: float) -> np.ndarray:
        img = np.full((self.size, self.size), -1000.0, dtype=np.float32)
        # patient table
        img[(self.y > 0.72) & (self.y < 0.76) & (np.abs(self.x) < 0.85)] = 200.0
        img[(self.y > 0.76) & (self.y < 0.80) & (np.abs(self.x) < 0.80)] = -300.0
        bx = 0.62 + 0.18 * np.sin(np.pi * min(1.0, z * 1.3))  # shoulders/abdomen width
        by = 0.42 + 0.06 * np.sin(np.pi * z)
        body = self.ellipse(0, 0.1, bx, by)
        img[body] = -100.0  # subcutaneous fat
        inner = self.ellipse(0, 0.1, bx - 0.05, by - 0.045)
        img[inner] = 40.0 + 8.0 * self.texture[inner]  # muscle / soft tissue
        if z < 0.55:  # thorax: lungs with vessels, heart
            lw = 0.22 * np.sin(np.pi * min(1.0, (z + 0.1) / 0.65))
            for side in (-1, 1):
                lung = self.ellipse(side * 0.26, 0.05, max(lw, 0.01), 0.25, side * 0.15)
                img[lung] = -850.0 + 25.0 * self.texture[lung]
                for k in range(6):  # vessels
                    vx = side * (0.18 + 0.03 * k) + 0.02 * np.sin(20 * z + k)
                    vy = -0.1 + 0.05 * k
                    img[lung & self.ellipse(vx, vy, 0.012, 0.012)] = 30.0
            if z > 0.2:
                img[self.ellipse(0.06, 0.02, 0.16, 0.13, 0.4)] = 45.0 + 5.0 * np.sin(z * 30)
            for k in range(12):  # ribs around the thorax
                a = 2 * np.pi * k / 12 + 0.26
                img[self.ellipse(np.cos(a) * (bx - 0.08), 0.1 + np.sin(a) * (by - 0.065), 0.03, 0.018, a)] = 700.0
        else:  # abdomen: liver, kidneys, bowel gas
            liver = self.ellipse(-0.25, 0.0, 0.28, 0.2, 0.3)
            img[liver] = 60.0 + 4.0 * self.texture[liver]
            for side in (-1, 1):
                img[self.ellipse(side * 0.22, 0.25, 0.07, 0.1)] = 150.0  # enhanced kidneys
            for k in range(4):
                img[self.ellipse(0.2 + 0.05 * np.sin(k + 7 * z), -0.1 + 0.06 * k, 0.03, 0.025)] = -600.0
        img[self.ellipse(0.0, 0.05, 0.025, 0.025)] = 180.0  # aorta with contrast
        spine = self.ellipse(0, 0.33, 0.07, 0.07)  # vertebra: cortical ring + cancellous
        img[spine] = 700.0
        img[self.ellipse(0, 0.33, 0.05, 0.05)] = 250.0 + 40.0 * np.sin(60 * z)
        img[self.ellipse(0, 0.43, 0.025, 0.03)] = 700.0  # spinous process
        # scanner PSF: a small separable blur
        img = (img + np.roll(img, 1, 0) + np.roll(img, -1, 0)) / 3
        img = (img + np.roll(img, 1, 1) + np.roll(img, -1, 1)) / 3
        return img

    def slice_stored(self, z: float, rng: np.random.Generator, noise_hu: float = 12.0) -> np.ndarray:
        hu = self.slice_hu(z) + rng.normal(0.0, noise_hu, (self.size, self.size)).astype(np.float32)
        stored = np.clip(np.rint(hu + 1024.0), 0, 4095).astype(np.uint16)
        stored[~self.fov] = 0  # pixel padding outside the reconstruction circle
        return stored


# ------------------------------------------------------------ writers

def ct_study(out: Path, slices: int, size: int = 512, seed: int = 1) -> None:
    out.mkdir(parents=True, exist_ok=True)
    ph = Phantom(size)
    rng = np.random.default_rng(seed)
    p, s = 900001, 900001
    study_uid, series_uid = uid(1, seed), uid(1, seed, 1)
    for i in range(slices):
        sop = uid(1, seed, 1, i + 1)
        ds = base_dataset(CT_IMAGE, sop, study_uid, series_uid, p, s, "CT", 1, i + 1)
        ds.StudyDescription = "CT CHEST ABDOMEN PELVIS"
        ds.KVP = "120"
        ds.SliceThickness = "1.0"
        ds.SpacingBetweenSlices = "1.0"
        ds.ImagePositionPatient = ["-250.0", "-250.0", f"{-i * 1.0:.1f}"]
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        ds.SliceLocation = f"{-i * 1.0:.1f}"
        ds.PixelSpacing = ["0.9765625", "0.9765625"]
        ds.RescaleIntercept = "-1024"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.WindowCenter = "40"
        ds.WindowWidth = "400"
        ds.PixelPaddingValue = 0
        ds.ConvolutionKernel = "STANDARD"
        pixel_module(ds, size, size)
        ds.PixelData = ph.slice_stored(i / max(1, slices - 1), rng).tobytes()
        save(ds, out / f"ct{i + 1:04d}.dcm")


def edited_copy(src: Path, out: Path, seed: int = 2) -> None:
    """Same pixels, another patient name/ID, new UIDs (a de-identified or corrected copy)."""
    out.mkdir(parents=True, exist_ok=True)
    study_uid, series_uid = uid(2, seed), uid(2, seed, 1)
    for f in sorted(src.glob("*.dcm")):
        ds = pydicom.dcmread(f)
        n = int(ds.InstanceNumber)
        ds.PatientName = "EDITED^COPY"
        ds.PatientID = "BPEDITED1"
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = study_uid + ".9"
        ds.SOPInstanceUID = uid(2, seed, 1, n)
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        save(ds, out / f.name)


def small(out: Path, count: int, first_patient: int, tag: int, size: int = 64) -> None:
    """`count` small images: 20 per patient (2 studies x 2 series x 5)."""
    out.mkdir(parents=True, exist_ok=True)
    ph = Phantom(size)
    rng = np.random.default_rng(tag)
    for n in range(count):
        pi, rest = divmod(n, 20)
        st, rest = divmod(rest, 10)
        se, inst = divmod(rest, 5)
        p = first_patient + pi
        s = 2 * p + st
        modality = MODALITIES[(s + se) % 2]
        study_uid = uid(3, tag, s)
        series_uid = uid(3, tag, s, se + 1)
        sop = uid(3, tag, s, se + 1, inst + 1)
        ds = base_dataset(CT_IMAGE if modality == "CT" else MR_IMAGE, sop, study_uid, series_uid,
                          p, s, modality, se + 1, inst + 1)
        ds.ImagePositionPatient = ["-100.0", "-100.0", f"{-inst * 5.0:.1f}"]
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        ds.PixelSpacing = ["3.125", "3.125"]
        ds.SliceThickness = "5.0"
        if modality == "CT":
            ds.RescaleIntercept = "-1024"
            ds.RescaleSlope = "1"
        pixel_module(ds, size, size)
        ds.PixelData = ph.slice_stored(((n * 37) % 100) / 100, rng).tobytes()
        save(ds, out / f"s{n:06d}.dcm")


def multiframe(path: Path, frames: int, size: int = 512, seed: int = 4) -> None:
    """One multi-frame instance, streamed to disk frame by frame."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ds = base_dataset(MF_WORD_SC, uid(4, seed, 1, 1), uid(4, seed), uid(4, seed, 1), 900004, 900004, "OT", 1, 1)
    ds.ConversionType = "WSD"
    ds.NumberOfFrames = frames
    ds.FrameIncrementPointer = 0x00181063  # Frame Time
    ds.FrameTime = "40"
    pixel_module(ds, size, size)
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    frame_bytes = size * size * 2
    ph = Phantom(size)
    rng = np.random.default_rng(seed)
    with open(path, "wb") as f:
        f.write(buf.getvalue())
        # (7FE0,0010) OW, explicit VR little endian, 32-bit length
        f.write(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, frames * frame_bytes))
        for i in range(frames):
            f.write(ph.slice_stored((i % 200) / 199, rng).tobytes())


# ------------------------------------------------------------ cache

def ensure(cache: Path, name: str, params: dict, build) -> Path:
    """`cache/name`, built by `build(path)` unless a build with the same params finished."""
    out = cache / name
    stamp = cache / f"{name}.done.json"
    want = json.dumps(params, sort_keys=True)
    if stamp.exists() and stamp.read_text() == want and out.exists():
        return out
    if out.is_dir():
        shutil.rmtree(out)
    elif out.exists():
        out.unlink()
    stamp.unlink(missing_ok=True)
    print(f"generating {name} {params} ...", flush=True)
    build(out)
    stamp.write_text(want)
    return out


GEN_VERSION = 1


def datasets(cache: Path, ct_slices: int, small_count: int, cstore_count: int, mf_frames: int) -> dict:
    cache.mkdir(parents=True, exist_ok=True)
    v = {"v": GEN_VERSION}
    ct = ensure(cache, f"ct-{ct_slices}", {**v, "slices": ct_slices}, lambda p: ct_study(p, ct_slices))
    return {
        "ct": ct,
        "ct_edited": ensure(cache, f"ct-{ct_slices}-edited", {**v, "slices": ct_slices},
                            lambda p: edited_copy(ct, p)),
        "small": ensure(cache, f"small-{small_count}", {**v, "n": small_count},
                        lambda p: small(p, small_count, first_patient=0, tag=10)),
        "cstore": ensure(cache, f"cstore-{cstore_count}", {**v, "n": cstore_count},
                         lambda p: small(p, cstore_count, first_patient=500000, tag=11)),
        "multiframe": ensure(cache, f"multiframe-{mf_frames}.dcm", {**v, "frames": mf_frames},
                             lambda p: multiframe(p, mf_frames)),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    if a.quick:
        d = datasets(a.out, 100, 1000, 200, 400)
    else:
        d = datasets(a.out, 500, 10000, 1000, 4096)
    for k, p in d.items():
        size = p.stat().st_size if p.is_file() else sum(f.stat().st_size for f in p.iterdir())
        print(f"{k}: {p} ({size / 1e6:,.1f} MB)")


if __name__ == "__main__":
    sys.exit(main())
