"""Deterministic synthetic DICOM studies for the e2e suite (pydicom + numpy).

    python tests/e2e/dicom_gen.py OUT_DIR [--seed 7] [--patients 3] [--studies 2]
                                          [--series 2] [--instances 4] [--size 64]

`generate()` writes N patients x studies x series x instances of small CT and
MR images as Part 10 files (Explicit VR Little Endian) and returns one
`Instance` record per file with the attributes tests query on. Same seed,
same arguments -> the same bytes (UIDs are derived from the seed, not random).
Pixel data is a phantom (ellipses, gradient, seeded noise) so it is neither
constant nor trivially compressible. `big_instance()` makes one large
uncompressed image (noise: incompressible) for dedup tests and
`multiframe_instance()` a multi-frame secondary-capture image for WADO frames.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    CTImageStorage,
    MRImageStorage,
    MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    generate_uid,
)

from dicom_common import file_meta

UID_PREFIX = "1.2.826.0.1.3680043.8.498."  # pydicom's documented example root
SOP_CLASS = {"CT": CTImageStorage, "MR": MRImageStorage}

# Family^Given names; one with non-ASCII letters (UTF-8, ISO_IR 192) to check
# that both catalogs index and match text the same way.
DEFAULT_NAMES = [
    "DOE^JOHN",
    "Doe^Jane",
    "SMITH^ROBERT^J",
    "Müller^Jürgen",
    "O'BRIEN^MARY",
    "NGUYEN^VAN",
    "DOE^JONATHAN",
    "BROWN^ALICE",
]
STUDY_DESCRIPTIONS = ["CT CHEST W/O CONTRAST", "MR BRAIN", "CT ABDOMEN", "MR KNEE LEFT", "CT HEAD"]
BODY_PARTS = {"CT": ["CHEST", "ABDOMEN", "HEAD"], "MR": ["BRAIN", "KNEE", "SPINE"]}


@dataclass
class Instance:
    path: Path
    patient_id: str
    patient_name: str
    birth_date: str
    sex: str
    study_uid: str
    study_date: str
    study_time: str
    accession: str
    study_id: str
    study_description: str
    referring: str
    series_uid: str
    series_number: int
    series_description: str
    modality: str
    sop_uid: str
    sop_class: str
    instance_number: int
    rows: int
    columns: int
    frames: int = 1
    extra: dict = field(default_factory=dict)

    def read(self) -> bytes:
        return self.path.read_bytes()


def uid(seed: int, *parts) -> str:
    """A deterministic UID under UID_PREFIX for (seed, parts)."""
    return generate_uid(prefix=UID_PREFIX, entropy_srcs=[f"fulcrum-e2e:{seed}", *map(str, parts)])


def phantom(rows: int, cols: int, rng: np.random.Generator, slice_pos: float, signed: bool) -> np.ndarray:
    """A body-like 16-bit image: nested ellipses, a gradient, seeded noise."""
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float64)
    cy, cx = rows / 2, cols / 2
    r = ((x - cx) / (0.45 * cols)) ** 2 + ((y - cy) / (0.38 * rows)) ** 2
    img = np.where(r < 1, 1000.0, 0.0)  # body
    r2 = ((x - cx * (0.7 + 0.1 * np.sin(slice_pos))) / (0.08 * cols)) ** 2 + ((y - cy) / (0.1 * rows)) ** 2
    img += np.where(r2 < 1, 600.0, 0.0)  # organ, moves with the slice
    img += 200.0 * x / cols + 50.0 * np.cos(y / 7.0 + slice_pos)
    img += rng.normal(0, 25, size=(rows, cols))
    if signed:
        return np.clip(img - 1024, -1024, 3071).astype(np.int16)
    return np.clip(img, 0, 4095).astype(np.uint16)


# Data element keyword -> the Instance field it is copied from, by module.
_FROM_INSTANCE = {
    # patient
    "PatientName": "patient_name", "PatientID": "patient_id", "PatientBirthDate": "birth_date", "PatientSex": "sex",
    # study
    "StudyInstanceUID": "study_uid", "StudyID": "study_id", "AccessionNumber": "accession",
    "StudyDate": "study_date", "StudyTime": "study_time", "StudyDescription": "study_description",
    "ReferringPhysicianName": "referring",
    # series
    "SeriesInstanceUID": "series_uid", "SeriesNumber": "series_number", "SeriesDate": "study_date",
    "Modality": "modality", "SeriesDescription": "series_description",
    # image
    "SOPClassUID": "sop_class", "SOPInstanceUID": "sop_uid", "InstanceNumber": "instance_number",
    "ContentDate": "study_date", "ContentTime": "study_time",
}


def _image_dataset(inst: Instance, pixels: np.ndarray, seed: int, slice_pos: float) -> Dataset:
    ds = Dataset()
    ds.file_meta = file_meta(inst.sop_class, inst.sop_uid)
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    for keyword, attr in _FROM_INSTANCE.items():
        setattr(ds, keyword, getattr(inst, attr))
    ds.Manufacturer = "FULCRUM E2E"
    ds.InstitutionName = "Fulcrum General Hospital"
    ds.BodyPartExamined = inst.extra.get("body_part", "")
    ds.FrameOfReferenceUID = uid(seed, "for", inst.series_uid)
    ds.ImagePositionPatient = [-125.0, -125.0, round(slice_pos * 5.0, 2)]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SliceThickness = 5.0
    ds.SliceLocation = round(slice_pos * 5.0, 2)
    ds.PixelSpacing = [0.5, 0.5]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.BitsAllocated = 16
    ds.BitsStored = 16 if pixels.dtype == np.uint16 and inst.extra.get("noise") else 12
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if pixels.dtype == np.int16 else 0
    if inst.modality == "CT":
        ds.RescaleIntercept = 0
        ds.RescaleSlope = 1
        ds.RescaleType = "HU"
        ds.KVP = 120
        ds.WindowCenter, ds.WindowWidth = 40, 400
    else:
        ds.MagneticFieldStrength = 1.5
        ds.EchoTime = 12.0
        ds.RepetitionTime = 500.0
        ds.WindowCenter, ds.WindowWidth = 1200, 2400
    # A nested sequence and a private block, as real modalities write them.
    ref = Dataset()
    ref.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.3"  # Modality Performed Procedure Step
    ref.ReferencedSOPInstanceUID = uid(seed, "pps", inst.study_uid)
    ds.ReferencedPerformedProcedureStepSequence = Sequence([ref])
    block = ds.private_block(0x0029, "FULCRUM E2E", create=True)
    block.add_new(0x10, "LO", f"seed={seed}")
    block.add_new(0x11, "OB", bytes(range(16)))
    ds.PixelData = pixels.tobytes()
    return ds


def _write(ds: Dataset, path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def generate(
    out_dir: Path,
    *,
    seed: int = 7,
    patients: int = 3,
    studies_per_patient: int = 2,
    series_per_study: int = 2,
    instances_per_series: int = 3,
    rows: int = 64,
    columns: int = 64,
    modalities: tuple[str, ...] = ("CT", "MR"),
    names: list[str] | None = None,
    first_date: dt.date = dt.date(2019, 3, 14),
    days_between_studies: int = 211,
    patient_id_prefix: str = "FUL",
    accession_prefix: str = "ACC",
) -> list[Instance]:
    """Write the studies under out_dir/<PatientID>/<study n>/<series n>/<inst n>.dcm.

    Patient p gets names[p % len(names)], PatientID f"{prefix}{seed:02d}{p:04d}";
    study s of patient p has StudyDate first_date + (p * studies + s) *
    days_between_studies (so dates span several years), accession
    f"{accession_prefix}{seed:02d}{p:03d}{s:02d}", and series of
    modalities[(s + k) % len(modalities)] for series k (so ModalitiesInStudy
    holds one or two values).
    """
    names = names or DEFAULT_NAMES
    out_dir = Path(out_dir)
    rng = np.random.default_rng(seed)
    out: list[Instance] = []
    for p in range(patients):
        pid = f"{patient_id_prefix}{seed:02d}{p:04d}"
        name = names[p % len(names)]
        birth = (dt.date(1940, 1, 1) + dt.timedelta(days=int(rng.integers(0, 365 * 60)))).strftime("%Y%m%d")
        sex = "FM"[p % 2] if p % 5 != 4 else "O"
        for s in range(studies_per_patient):
            study_uid = uid(seed, "study", p, s)
            date = first_date + dt.timedelta(days=(p * studies_per_patient + s) * days_between_studies)
            time_ = f"{(8 + p + s) % 24:02d}{(7 * s) % 60:02d}{(13 * p) % 60:02d}.{p}{s}0000"
            desc = STUDY_DESCRIPTIONS[(p + s) % len(STUDY_DESCRIPTIONS)]
            for k in range(series_per_study):
                series_uid = uid(seed, "series", p, s, k)
                modality = modalities[(s + k) % len(modalities)]
                body = BODY_PARTS.get(modality, ["WHOLEBODY"])[(p + k) % 3]
                for i in range(instances_per_series):
                    sop_uid = uid(seed, "sop", p, s, k, i)
                    inst = Instance(
                        path=out_dir / pid / f"st{s}" / f"se{k}" / f"im{i:04d}.dcm",
                        patient_id=pid,
                        patient_name=name,
                        birth_date=birth,
                        sex=sex,
                        study_uid=study_uid,
                        study_date=date.strftime("%Y%m%d"),
                        study_time=time_,
                        accession=f"{accession_prefix}{seed:02d}{p:03d}{s:02d}",
                        study_id=f"{s + 1}",
                        study_description=desc,
                        referring=["WELBY^MARCUS", "HOUSE^GREGORY", "QUINN^MICHAELA"][(p + s) % 3],
                        series_uid=series_uid,
                        series_number=k + 1,
                        series_description=f"{modality} {body} {k + 1}",
                        modality=modality,
                        sop_uid=sop_uid,
                        sop_class=SOP_CLASS[modality],
                        instance_number=i + 1,
                        rows=rows,
                        columns=columns,
                        extra={"body_part": body},
                    )
                    pixels = phantom(rows, columns, rng, slice_pos=i * 0.3 + k, signed=modality == "CT")
                    _write(_image_dataset(inst, pixels, seed, i * 0.3 + k), inst.path)
                    out.append(inst)
    return out


def _single(path: Path, seed: int, tag: str, modality: str, **kw) -> Instance:
    return Instance(
        path=Path(path),
        patient_id=kw.get("patient_id", f"BIG{seed:04d}"),
        patient_name=kw.get("patient_name", "LARGE^IMAGE"),
        birth_date="19700101",
        sex="O",
        study_uid=uid(seed, tag, "study"),
        study_date=kw.get("study_date", "20240102"),
        study_time="101500",
        accession=f"{tag.upper()[:6]}{seed:04d}",
        study_id="1",
        study_description=f"{tag} study",
        referring="",
        series_uid=uid(seed, tag, "series"),
        series_number=1,
        series_description=f"{tag} series",
        modality=modality,
        sop_uid=uid(seed, tag, "sop"),
        sop_class=SOP_CLASS.get(modality, MultiFrameGrayscaleWordSecondaryCaptureImageStorage),
        instance_number=1,
        rows=kw["rows"],
        columns=kw["columns"],
        frames=kw.get("frames", 1),
        extra={"noise": kw.get("noise", False)},
    )


def big_instance(path: Path, *, seed: int = 11, rows: int = 2048, columns: int = 1024, **kw) -> Instance:
    """One large uncompressed MR image (rows*columns*2 bytes of seeded noise:
    incompressible, so stored size ~ file size)."""
    inst = _single(path, seed, "big", "MR", rows=rows, columns=columns, noise=True, **kw)
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 65536, size=(rows, columns), dtype=np.uint16)
    _write(_image_dataset(inst, pixels, seed, 0.0), inst.path)
    return inst


def with_patient_name(src: Path, dst: Path, name: str) -> bytes:
    """Copy a Part 10 file with PatientName changed (header edit, same pixels)."""
    from pydicom import dcmread

    ds = dcmread(src)
    ds.PatientName = name
    _write(ds, dst)
    return dst.read_bytes()


def multiframe_instance(path: Path, *, seed: int = 13, frames: int = 4, rows: int = 32, columns: int = 48) -> Instance:
    """A Multi-frame Grayscale Word Secondary Capture image, Explicit VR LE,
    each frame a different phantom slice."""
    inst = _single(path, seed, "multiframe", "OT", rows=rows, columns=columns, frames=frames)
    rng = np.random.default_rng(seed)
    pixels = np.stack([phantom(rows, columns, rng, f * 0.5, signed=False) for f in range(frames)])
    ds = _image_dataset(inst, pixels, seed, 0.0)
    ds.Modality = "OT"
    ds.NumberOfFrames = frames
    ds.FrameIncrementPointer = 0x00181063  # FrameTime
    ds.FrameTime = 100.0
    ds.ConversionType = "WSD"
    ds.BitsStored, ds.HighBit = 12, 11
    for kw in ("RescaleType", "KVP", "RescaleIntercept", "RescaleSlope"):
        if kw in ds:
            del ds[kw]
    _write(ds, inst.path)
    return inst


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--patients", type=int, default=3)
    ap.add_argument("--studies", type=int, default=2)
    ap.add_argument("--series", type=int, default=2)
    ap.add_argument("--instances", type=int, default=3)
    ap.add_argument("--size", type=int, default=64, help="rows = columns")
    a = ap.parse_args(argv)
    insts = generate(
        a.out,
        seed=a.seed,
        patients=a.patients,
        studies_per_patient=a.studies,
        series_per_study=a.series,
        instances_per_series=a.instances,
        rows=a.size,
        columns=a.size,
    )
    print(f"wrote {len(insts)} instances in {len({i.study_uid for i in insts})} studies under {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
