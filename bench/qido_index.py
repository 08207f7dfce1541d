"""Generated DICOM index rows for the QIDO-RS benchmark (bench/dicom_bench.py).

Loading 1,000,000 instances through STOW-RS would take longer than the rest of
the benchmark together, so the rows are written straight into the SQLite
catalog (`<data dir>/catalog.db`, tables `dicom_studies`, `dicom_series`,
`dicom_instances` of crates/fulcrum-catalog/migrations/sqlite/0002_dicom.sql
and the stored counts of 0006_dicom_counts.sql) **while the server is
stopped**, in the form the server itself writes them (tenant `default`,
upper-cased `*_key` name columns, `instances/<SOP UID>` object keys, each
study's and series' counts and comma-separated modality and SOP class sets). The objects those keys name are not stored: the benchmark only
queries the index (QIDO-RS), it never retrieves these instances. No ANALYZE
or extra index is added.

Shape: 10 instances per study (2 series x 5), 2 studies per patient, the
patient/study attributes from bench/dicom_gen.py (8,000 family names, study
dates over 20 years, unique accession numbers).

    python bench/qido_index.py CATALOG_DB [--instances 1000000]
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import time

import dicom_gen as gen

TENANT = "default"
PER_STUDY = 10  # 2 series x 5 instances


def name_key(name: str) -> str:
    """crates/fulcrum-catalog/src/dicom/mod.rs name_key: upper case, ^ as space, words joined by one space."""
    return " ".join(w for w in name.upper().replace("^", " ").split(" ") if w)


def populate(db_path: str, instances: int) -> dict:
    """Insert `instances` instance rows (+ their series and studies); return counts."""
    studies = instances // PER_STUDY
    patients = max(1, studies // 2)
    now = int(time.time() * 1000)
    con = sqlite3.connect(db_path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    cur = con.cursor()
    cur.execute("BEGIN")
    st_rows, se_rows, in_rows = [], [], []

    def flush():
        cur.executemany("INSERT INTO dicom_studies (tenant, study_uid, patient_id, patient_name, patient_name_key, "
                        "patient_name_ideo_key, patient_name_phon_key, patient_birth_date, patient_sex, study_date, study_time, accession_number, "
                        "referring_physician, referring_physician_key, study_description, study_id, updated_at, "
                        "num_series, num_instances, modalities, sop_classes) "
                        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", st_rows)
        cur.executemany("INSERT INTO dicom_series (tenant, series_uid, study_uid, modality, series_number, "
                        "series_description, updated_at, num_instances, sop_classes) "
                        "VALUES (?,?,?,?,?,?,?,?,?)", se_rows)
        cur.executemany("INSERT INTO dicom_instances (tenant, sop_uid, series_uid, study_uid, sop_class_uid, "
                        "instance_number, transfer_syntax, object_key, size, etag, dataset_offset, header_len, "
                        "pixel_offset, pixel_len, pixel_vr, fragments, num_frames, num_rows, num_columns, created_at) "
                        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", in_rows)
        st_rows.clear(), se_rows.clear(), in_rows.clear()

    for s in range(studies):
        p = (s * 7919) % patients  # a patient's studies are spread over the years
        pa, sa = gen.patient_attrs(p), gen.study_attrs(s)
        study_uid = gen.uid(5, s)
        st_rows.append((TENANT, study_uid, pa["PatientID"], pa["PatientName"], name_key(pa["PatientName"]), "", "",
                        pa["PatientBirthDate"], pa["PatientSex"], sa["StudyDate"], sa["StudyTime"],
                        sa["AccessionNumber"], sa["ReferringPhysicianName"], name_key(sa["ReferringPhysicianName"]),
                        sa["StudyDescription"], sa["StudyID"], now, 2, PER_STUDY,
                        ",".join(gen.MODALITIES[:2]), f"{gen.CT_IMAGE},{gen.MR_IMAGE}"))
        for se in range(2):
            modality = gen.MODALITIES[(s + se) % 2]
            sop_class = gen.CT_IMAGE if modality == "CT" else gen.MR_IMAGE
            series_uid = gen.uid(5, s, se + 1)
            se_rows.append((TENANT, series_uid, study_uid, modality, se + 1, f"{modality} series {se + 1}", now,
                            PER_STUDY // 2, sop_class))
            for i in range(PER_STUDY // 2):
                sop = gen.uid(5, s, se + 1, i + 1)
                etag = f"{random.Random(s * 10 + se * 5 + i).getrandbits(128):032x}"
                in_rows.append((TENANT, sop, series_uid, study_uid, sop_class, i + 1, "1.2.840.10008.1.2.1",
                                f"instances/{sop}", 9500, etag, 340, 1300, 1312, 8192, "OW", None, None, 64, 64, now))
        if len(in_rows) >= 50_000:
            flush()
    flush()
    con.commit()
    con.close()
    return {"instances": studies * PER_STUDY, "series": studies * 2, "studies": studies, "patients": patients}


def queries(instances: int, n: int, seed: int = 5) -> dict:
    """`n` QIDO-RS study queries of each kind whose values exist in the rows above."""
    studies = instances // PER_STUDY
    patients = max(1, studies // 2)
    return query_values([(s * 7919) % patients for s in range(studies)], list(range(studies)), n, seed)


def query_values(patient_of_study: list[int], study_numbers: list[int], n: int, seed: int) -> dict:
    """Query strings for studies numbered `study_numbers` whose patients are `patient_of_study`."""
    rng = random.Random(seed)
    picks = [rng.randrange(len(study_numbers)) for _ in range(n)]
    out = {"PatientID": [], "AccessionNumber": [], "StudyDate range (7 days)": [], "PatientName wildcard": []}
    for k in picks:
        s, p = study_numbers[k], patient_of_study[k]
        pa, sa = gen.patient_attrs(p), gen.study_attrs(s)
        d0 = sa["StudyDate"]
        d1 = (gen.dt.datetime.strptime(d0, "%Y%m%d") + gen.dt.timedelta(days=6)).strftime("%Y%m%d")
        out["PatientID"].append(f"PatientID={pa['PatientID']}")
        out["AccessionNumber"].append(f"AccessionNumber={sa['AccessionNumber']}")
        out["StudyDate range (7 days)"].append(f"StudyDate={d0}-{d1}")
        out["PatientName wildcard"].append(f"PatientName={gen.family_name(p)}*")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("catalog_db")
    ap.add_argument("--instances", type=int, default=1_000_000)
    a = ap.parse_args()
    t = time.perf_counter()
    print(populate(a.catalog_db, a.instances), f"{time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    main()
