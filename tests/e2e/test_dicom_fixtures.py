"""The DICOM test data itself, before any server is involved: the fetched
fixtures still classify as KNOWN says, the generator is deterministic and
writes valid files, the Part 10 walker and multipart codec round-trip."""

from __future__ import annotations

import pydicom
import pytest

import dicom_gen
from dicom_fixtures import KNOWN
from dicom_helpers import encode_multipart, parse_multipart
from dicom_part10 import Part10Error, check_structure, dataset_bytes, split_part10


def test_fixture_classification_matches_known_list(dicom_fixtures):
    assert not dicom_fixtures.disagreements(), "\n".join(dicom_fixtures.disagreements())
    kinds = {k: len(dicom_fixtures.of(k)) for k in ("valid", "quirky", "broken", "no_meta", "dicomdir", "non_dicom")}
    assert kinds["valid"] >= 190, kinds
    assert sum(kinds.values()) == len(dicom_fixtures.all)
    # Every transfer syntax family the issue names is represented in layer 0.
    ts = {f.transfer_syntax for f in dicom_fixtures.unique_valid}
    for want in (
        "1.2.840.10008.1.2",
        "1.2.840.10008.1.2.1",
        "1.2.840.10008.1.2.2",
        "1.2.840.10008.1.2.1.99",
        "1.2.840.10008.1.2.4.50",
        "1.2.840.10008.1.2.4.70",
        "1.2.840.10008.1.2.4.80",
        "1.2.840.10008.1.2.4.90",
        "1.2.840.10008.1.2.5",
    ):
        assert want in ts, f"no valid fixture in {want}"
    # Layers partition the valid files with unique SOP UIDs each.
    seen = []
    for layer in dicom_fixtures.layers:
        assert len({f.sop_uid for f in layer}) == len(layer)
        seen += layer
    assert sorted(f.rel for f in seen) == sorted(f.rel for f in dicom_fixtures.valid)


def test_known_broken_files_really_fail_the_walker(dicom_fixtures):
    cut = [rel for rel, k in KNOWN.items() if k.kind == "broken" and ("truncated" in rel or "too_short" in rel)]
    assert len(cut) == 3, cut
    for rel in cut:
        with pytest.raises(Part10Error):
            check_structure(dicom_fixtures.by_rel(rel).read())


def test_generator_is_deterministic_and_valid(tmp_path):
    a = dicom_gen.generate(
        tmp_path / "a", seed=3, patients=2, studies_per_patient=1, series_per_study=2, instances_per_series=2
    )
    b = dicom_gen.generate(
        tmp_path / "b", seed=3, patients=2, studies_per_patient=1, series_per_study=2, instances_per_series=2
    )
    assert len(a) == 8
    assert [x.read() for x in a] == [y.read() for y in b]
    c = dicom_gen.generate(
        tmp_path / "c", seed=4, patients=1, studies_per_patient=1, series_per_study=1, instances_per_series=1
    )
    assert c[0].sop_uid != a[0].sop_uid
    for inst in a:
        data = inst.read()
        p10, _ = check_structure(data)
        assert p10.transfer_syntax == "1.2.840.10008.1.2.1"
        ds = pydicom.dcmread(inst.path)
        assert ds.SOPInstanceUID == inst.sop_uid and ds.StudyInstanceUID == inst.study_uid
        assert ds.PatientID == inst.patient_id and ds.Modality == inst.modality
        px = ds.pixel_array
        assert px.shape == (inst.rows, inst.columns) and len(set(px.ravel().tolist())) > 100
    assert {i.modality for i in a} == {"CT", "MR"}
    mf = dicom_gen.multiframe_instance(tmp_path / "mf.dcm", frames=3)
    assert pydicom.dcmread(mf.path).pixel_array.shape == (3, mf.rows, mf.columns)
    big = dicom_gen.big_instance(tmp_path / "big.dcm", rows=256, columns=256)
    edited = dicom_gen.with_patient_name(big.path, tmp_path / "big2.dcm", "EDITED^NAME")
    assert pydicom.dcmread(tmp_path / "big2.dcm").PatientName == "EDITED^NAME"
    assert edited[-256 * 256 * 2 :] == big.read()[-256 * 256 * 2 :]


def test_part10_split_and_multipart_round_trip(gen_studies):
    data = gen_studies[0].read()
    p10 = split_part10(data)
    assert data[p10.meta_end : p10.meta_end + 4] == b"\x08\x00\x05\x00"  # (0008,0005) first
    assert dataset_bytes(data) == data[p10.meta_end :]
    parts = [x.read() for x in gen_studies[:3]] + [b"", b"--not a boundary\r\n"]
    body, ct = encode_multipart(parts)
    assert [c for _, c in parse_multipart(body, ct)] == parts
    with pytest.raises(Part10Error):
        check_structure(data[:-10])
