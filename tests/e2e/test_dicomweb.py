"""DICOMweb (PS3.18) against the real server: STOW-RS, QIDO-RS, WADO-RS
(instances, metadata, bulk data, frames, rendered), DELETE, CORS; with
dicomweb-client (a peer nobody here wrote) and raw HTTP where bytes matter.
Also: the same QIDO queries answer identically on SQLite and PostgreSQL.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from urllib.parse import urljoin

import numpy as np
import pydicom
import pytest
from PIL import Image

import dicom_gen
from dicom_common import encode_multipart
from dicom_helpers import (
    DicomWeb,
    dcmsend,
    describe,
    dumps,
    gbk_without_charset,
    named_instance,
    parse_multipart,
    jval,
    jvals,
    stow_ok,
    tag,
)
from dicom_part10 import dataset_bytes
from helpers import ACCESS_KEY

UNCOMPRESSED_LE = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"


@dataclass
class WebArchive:
    srv: object
    dw: DicomWeb
    qido_set: list  # dicom_gen.Instance stored with dicomweb-client (re-encoded by pydicom)
    raw_set: list  # dicom_gen.Instance stored with raw STOW (byte-exact)
    multiframe: object  # dicom_gen.Instance, 4 frames, raw STOW
    rgb_multiframe: object  # Fixture: uncompressed multi-frame colour image
    jpeg: object  # Fixture: baseline JPEG

    @property
    def gen(self):
        return self.qido_set + self.raw_set + [self.multiframe]


def _find_fixture(fx, pred, taken):
    for f in sorted(fx.valid, key=lambda f: (f.size, f.rel)):
        if f.sop_uid not in taken and pred(f):
            taken.add(f.sop_uid)
            return f
    pytest.fail("no fixture matches", pytrace=False)


@pytest.fixture(scope="module")
def web(module_pacs_factory, tmp_path_factory, gen_studies, dicom_fixtures) -> WebArchive:
    srv = module_pacs_factory()
    dw = DicomWeb(srv)
    root = tmp_path_factory.mktemp("web")
    qido_set = dicom_gen.generate(
        root / "qido", seed=8, patients=8, studies_per_patient=2, series_per_study=2, instances_per_series=2
    )
    client = dw.client()
    for i in range(0, len(qido_set), 16):
        client.store_instances([pydicom.dcmread(x.path) for x in qido_set[i : i + 16]])
    mf = dicom_gen.multiframe_instance(root / "mf.dcm", frames=4)
    taken: set[str] = set()
    rgb = _find_fixture(
        dicom_fixtures,
        lambda f: (
            f.transfer_syntax == "1.2.840.10008.1.2.1"
            and int(f.attrs.get("NumberOfFrames") or 1) > 1
            and f.attrs.get("SamplesPerPixel") == 3
            and f.attrs.get("BitsAllocated") == 8
            and f.attrs.get("PhotometricInterpretation") == "RGB"
        ),
        taken,
    )
    jpeg = _find_fixture(
        dicom_fixtures,
        lambda f: (
            f.transfer_syntax == JPEG_BASELINE
            and f.attrs.get("SamplesPerPixel") == 3
            and int(f.attrs.get("NumberOfFrames") or 1) == 1
            and int(f.attrs.get("Rows") or 0) >= 64
        ),
        taken,
    )
    stow_ok(dw, [x.path for x in gen_studies] + [mf.path, rgb.path, jpeg.path])
    return WebArchive(srv, dw, qido_set, gen_studies, mf, rgb, jpeg)


def _uids(items, kw):
    return sorted(jval(i, kw) for i in items)


# ---------------------------------------------------------------- STOW-RS + WADO-RS byte-exact


def test_stow_every_fixture_then_wado_returns_the_same_bytes(pacs, dicom_fixtures):
    """STOW-RS of every valid fixture (one per SOP UID, all transfer syntaxes):
    200 with a ReferencedSOPSequence item each; WADO-RS returns each file
    byte for byte; study-level retrieve returns all of a study's instances."""
    dw = DicomWeb(pacs)
    files = dicom_fixtures.unique_valid
    for i in range(0, len(files), 25):
        batch = files[i : i + 25]
        res = dw.stow([f.read() for f in batch])
        assert res.status == 200 and not res.failed, str(res)
        assert sorted(res.referenced) == sorted(f.sop_uid for f in batch), dumps(res.body)
        for f in batch:
            item = res.referenced[f.sop_uid]
            assert jval(item, "ReferencedSOPClassUID") == f.sop_class
            url = jval(item, "RetrieveURL")
            assert url is None or f.sop_uid in url, url
    wrong = [f.rel for f in files if dw.instance_bytes(f.study_uid, f.series_uid, f.sop_uid) != f.read()]
    assert not wrong, f"WADO-RS bytes differ for {wrong}"
    study = max({f.study_uid for f in files}, key=lambda s: sum(f.study_uid == s for f in files))
    want = sorted(f.read() for f in files if f.study_uid == study)
    got = sorted(c for _, c in dw.retrieve(f"/studies/{study}"))
    assert got == want
    assert pacs.verify().returncode == 0


@pytest.mark.slow
def test_stow_every_layer_newest_bytes_win(pacs, dicom_fixtures):
    dw = DicomWeb(pacs)
    for n, layer in enumerate(dicom_fixtures.layers):
        stow_ok(dw, [f.path for f in layer], batch=25)
        wrong = [f.rel for f in layer if dw.instance_bytes(f.study_uid, f.series_uid, f.sop_uid) != f.read()]
        assert not wrong, f"layer {n}: {wrong}"


def test_wado_instance_series_study_retrieve(web):
    dw, client = web.dw, web.dw.client()
    i0 = web.raw_set[0]
    assert dw.instance_bytes(i0.study_uid, i0.series_uid, i0.sop_uid) == i0.read()
    ds = client.retrieve_instance(i0.study_uid, i0.series_uid, i0.sop_uid)
    assert ds == pydicom.dcmread(i0.path) and ds.PixelData == pydicom.dcmread(i0.path).PixelData
    series = sorted(x.read() for x in web.raw_set if x.series_uid == i0.series_uid)
    assert sorted(c for _, c in dw.retrieve(f"/studies/{i0.study_uid}/series/{i0.series_uid}")) == series
    assert len(client.retrieve_series(i0.study_uid, i0.series_uid)) == len(series)
    study = [x for x in web.raw_set if x.study_uid == i0.study_uid]
    parts = dw.retrieve(f"/studies/{i0.study_uid}")
    assert sorted(c for _, c in parts) == sorted(x.read() for x in study)
    assert all(h.get("content-type", "").startswith("application/dicom") for h, _ in parts)
    assert len(client.retrieve_study(i0.study_uid)) == len(study)
    r = dw.get(
        f"/studies/{i0.study_uid}/series/{i0.series_uid}/instances/1.2.3.4.404",
        'multipart/related; type="application/dicom"',
    )
    assert r.status_code == 404


# ---------------------------------------------------------------- QIDO-RS


def test_qido_filters(web):
    client, gen = web.dw.client(), web.gen
    studies = {}
    for i in gen:
        studies.setdefault(i.study_uid, []).append(i)

    fixture_studies = {web.rgb_multiframe.study_uid, web.jpeg.study_uid}

    def want(pred):
        return sorted(s for s, insts in studies.items() if pred(insts[0], insts))

    def generated(r):
        """Study UIDs of generated studies in r; the two fixture studies may also match."""
        got = _uids(r, "StudyInstanceUID")
        assert set(got) - set(studies) <= fixture_studies, got
        return [u for u in got if u in studies]

    p = web.qido_set[5]
    r = client.search_for_studies(search_filters={"PatientID": p.patient_id})
    assert _uids(r, "StudyInstanceUID") == want(lambda i, _: i.patient_id == p.patient_id)
    for item in r:
        insts = studies[jval(item, "StudyInstanceUID")]
        assert int(jval(item, "NumberOfStudyRelatedSeries")) == len({i.series_uid for i in insts}), dumps(item)
        assert int(jval(item, "NumberOfStudyRelatedInstances")) == len(insts)
        assert sorted(jvals(item, "ModalitiesInStudy")) == sorted({i.modality for i in insts})
        assert jval(item, "PatientName") == p.patient_name and jval(item, "StudyDate") == insts[0].study_date

    r = client.search_for_studies(search_filters={"AccessionNumber": p.accession})
    assert _uids(r, "StudyInstanceUID") == [p.study_uid]

    # Multi-valued answers are one JSON value each (PS3.18 F.2.4).
    r = client.search_for_studies(fields=["SOPClassesInStudy"])
    mixed = 0
    for item in r:
        insts = studies.get(jval(item, "StudyInstanceUID"))
        if insts:
            classes = sorted({i.sop_class for i in insts})
            assert sorted(jvals(item, "SOPClassesInStudy")) == classes, dumps(item)
            mixed += len(classes) > 1
    assert mixed, "no generated study with two SOP classes"

    r = client.search_for_studies(search_filters={"StudyDate": "20200101-20201231"})
    assert generated(r) == want(lambda i, _: "20200101" <= i.study_date <= "20201231") != []
    assert all("20200101" <= jval(x, "StudyDate") <= "20201231" for x in r)
    r = client.search_for_studies(search_filters={"StudyDate": "-20191231"})
    assert generated(r) == want(lambda i, _: i.study_date <= "20191231") != []
    assert all(jval(x, "StudyDate") <= "20191231" for x in r)

    r = client.search_for_studies(search_filters={"PatientName": "DOE*"})
    names = {jval(x, "PatientName") for x in r}
    assert {"DOE^JOHN", "DOE^JONATHAN"} <= names and not {"SMITH^ROBERT^J", "BROWN^ALICE"} & names, names
    r = client.search_for_studies(search_filters={"PatientName": "D?E^JO*"})
    assert {jval(x, "PatientName") for x in r} >= {"DOE^JOHN", "DOE^JONATHAN"}

    # Fuzzy: case-insensitive, a name component suffices (PS3.18 leaves the rest to the server).
    r = client.search_for_studies(fuzzymatching=True, search_filters={"PatientName": "doe"})
    names = {jval(x, "PatientName") for x in r}
    assert {"DOE^JOHN", "Doe^Jane", "DOE^JONATHAN"} <= names and "SMITH^ROBERT^J" not in names, names
    r = client.search_for_studies(fuzzymatching=True, search_filters={"PatientName": "müller"})
    assert "Müller^Jürgen" in {jval(x, "PatientName") for x in r}

    r = client.search_for_studies(search_filters={"ModalitiesInStudy": "MR"})
    assert generated(r) == want(lambda _, insts: any(i.modality == "MR" for i in insts))
    assert all("MR" in jvals(x, "ModalitiesInStudy") for x in r)
    # A list, comma-separated as clients written for Orthanc send it.
    kinds = sorted({i.modality for i in gen})
    assert len(kinds) >= 2, kinds
    for sep in (",", "\\"):
        r = client.search_for_studies(search_filters={"ModalitiesInStudy": sep.join(kinds[:2])})
        assert generated(r) == want(lambda _, insts: any(i.modality in kinds[:2] for i in insts)), sep

    # UID list
    two = sorted(studies)[:2]
    r = client.search_for_studies(search_filters={"StudyInstanceUID": ",".join(two)})
    assert _uids(r, "StudyInstanceUID") == two

    # includefield, by keyword and by tag
    r = client.search_for_studies(search_filters={"PatientID": p.patient_id}, fields=["StudyDescription", "00100030"])
    assert all(jval(x, "StudyDescription") and jval(x, "PatientBirthDate") == p.birth_date for x in r), dumps(r)

    # limit / offset pages through everything exactly once
    everything = _uids(client.search_for_studies(get_remaining=True), "StudyInstanceUID")
    assert everything == sorted(set(studies) | fixture_studies)
    seen = []
    for off in range(0, len(everything) + 5, 5):
        page = client.search_for_studies(limit=5, offset=off)
        assert len(page) <= 5
        seen += [jval(x, "StudyInstanceUID") for x in page]
    assert sorted(seen) == everything and len(seen) == len(set(seen))


def test_qido_series_and_instances(web):
    dw, client = web.dw, web.dw.client()
    i0 = web.qido_set[9]
    st = [i for i in web.gen if i.study_uid == i0.study_uid]
    r = client.search_for_series(i0.study_uid)
    assert _uids(r, "SeriesInstanceUID") == sorted({i.series_uid for i in st})
    for item in r:
        s = [i for i in st if i.series_uid == jval(item, "SeriesInstanceUID")]
        assert jval(item, "Modality") == s[0].modality and int(jval(item, "SeriesNumber")) == s[0].series_number
        assert int(jval(item, "NumberOfSeriesRelatedInstances")) == len(s)
    r = client.search_for_series(search_filters={"Modality": "CT", "PatientID": i0.patient_id})
    assert _uids(r, "SeriesInstanceUID") == sorted(
        {i.series_uid for i in web.gen if i.modality == "CT" and i.patient_id == i0.patient_id}
    )
    r = client.search_for_instances(i0.study_uid, i0.series_uid)
    assert _uids(r, "SOPInstanceUID") == sorted(i.sop_uid for i in st if i.series_uid == i0.series_uid)
    assert all(jval(x, "SOPClassUID") == i0.sop_class for x in r)
    r = dw.qido(f"/studies/{i0.study_uid}/instances")
    assert _uids(r, "SOPInstanceUID") == sorted(i.sop_uid for i in st)
    two = sorted(i.sop_uid for i in st)[:2]
    r = dw.qido("/instances", {"SOPInstanceUID": ",".join(two)})
    assert _uids(r, "SOPInstanceUID") == two
    r = dw.qido("/instances", {"00200013": "2", "PatientID": i0.patient_id})  # InstanceNumber by tag
    assert _uids(r, "SOPInstanceUID") == sorted(
        i.sop_uid for i in web.gen if i.patient_id == i0.patient_id and i.instance_number == 2
    )
    assert dw.qido("/studies", {"PatientID": "NO-SUCH-PATIENT"}) == []
    # All Series carry the study's attributes, All Instances the study's and
    # the series', a Study's Instances the series' (PS3.18 10.6.3.3.2-3):
    # they had only their own level's.
    in_series = [i for i in st if i.series_uid == i0.series_uid]
    (item,) = dw.qido("/series", {"SeriesInstanceUID": i0.series_uid})
    assert (jval(item, "PatientID"), jval(item, "PatientName"), jval(item, "StudyDate"), jval(item, "AccessionNumber")) \
        == (i0.patient_id, i0.patient_name, i0.study_date, i0.accession), item
    assert int(jval(item, "NumberOfStudyRelatedInstances")) == len(st)
    assert int(jval(item, "NumberOfStudyRelatedSeries")) == len({i.series_uid for i in st})
    assert jvals(item, "ModalitiesInStudy") == sorted({i.modality for i in st})
    (item,) = dw.qido("/instances", {"SOPInstanceUID": i0.sop_uid})
    assert (jval(item, "PatientID"), jval(item, "StudyID"), jval(item, "Modality"), int(jval(item, "SeriesNumber"))) \
        == (i0.patient_id, i0.study_id, i0.modality, i0.series_number), item
    assert int(jval(item, "NumberOfStudyRelatedInstances")) == len(st)
    assert int(jval(item, "NumberOfSeriesRelatedInstances")) == len(in_series)
    assert jval(item, "BitsAllocated") == pydicom.dcmread(i0.path, stop_before_pixels=True).BitsAllocated
    (item,) = [x for x in dw.qido(f"/studies/{i0.study_uid}/instances") if jval(x, "SOPInstanceUID") == i0.sop_uid]
    assert (jval(item, "Modality"), int(jval(item, "NumberOfSeriesRelatedInstances"))) == (i0.modality, len(in_series))
    # Asked for, a study's counts come at series level too.
    (item,) = dw.qido(f"/studies/{i0.study_uid}/series", {"SeriesInstanceUID": i0.series_uid,
                                                          "includefield": "NumberOfStudyRelatedInstances"})
    assert int(jval(item, "NumberOfStudyRelatedInstances")) == len(st)


# ---------------------------------------------------------------- metadata, bulk data, frames


def test_metadata_and_bulkdata(web):
    dw, client = web.dw, web.dw.client()
    i0 = web.raw_set[1]
    md = client.retrieve_instance_metadata(i0.study_uid, i0.series_uid, i0.sop_uid)
    assert jval(md, "PatientID") == i0.patient_id and jval(md, "SOPInstanceUID") == i0.sop_uid
    assert jval(md, "Rows") == i0.rows and jval(md, "Modality") == i0.modality
    assert md[tag("PatientName")]["vr"] == "PN"
    pix = md.get("7FE00010")
    assert pix and "BulkDataURI" in pix and "InlineBinary" not in pix, dumps(pix)
    uri = urljoin(dw.base + "/", pix["BulkDataURI"])
    want = pydicom.dcmread(i0.path).PixelData
    data = client.retrieve_bulkdata(uri)
    assert b"".join(data) == want
    # Series and study metadata: one object per instance.
    assert len(dw.metadata(f"/studies/{i0.study_uid}/series/{i0.series_uid}")) == sum(
        x.series_uid == i0.series_uid for x in web.raw_set
    )
    st = dw.metadata(f"/studies/{i0.study_uid}")
    assert sorted(jval(x, "SOPInstanceUID") for x in st) == sorted(
        x.sop_uid for x in web.raw_set if x.study_uid == i0.study_uid
    )


def test_frames_of_uncompressed_multiframe_images(web):
    client = web.dw.client()
    mf = web.multiframe
    frames = client.retrieve_instance_frames(
        mf.study_uid, mf.series_uid, mf.sop_uid, [1, 3], media_types=("application/octet-stream",)
    )
    arr = pydicom.dcmread(mf.path).pixel_array
    assert frames == [arr[0].astype("<u2").tobytes(), arr[2].astype("<u2").tobytes()]
    f = web.rgb_multiframe
    ds = pydicom.dcmread(f.path)
    n = int(ds.NumberOfFrames)
    frames = client.retrieve_instance_frames(
        f.study_uid, f.series_uid, f.sop_uid, list(range(1, n + 1)), media_types=("application/octet-stream",)
    )
    arr = ds.pixel_array  # RGB, 8 bit, colour-by-pixel: decoded bytes == native frame bytes
    assert ds.get("PlanarConfiguration", 0) == 0
    assert frames == [np.ascontiguousarray(arr[k]).tobytes() for k in range(n)]
    size = ds.Rows * ds.Columns * 3
    assert frames == [ds.PixelData[k * size : (k + 1) * size] for k in range(n)]
    r = web.dw.get(
        f"/studies/{f.study_uid}/series/{f.series_uid}/instances/{f.sop_uid}/frames/{n + 1}",
        'multipart/related; type="application/octet-stream"',
    )
    assert r.status_code in (400, 404), r.status_code


@pytest.mark.parametrize("accept,fmt", [("image/jpeg", "JPEG"), ("image/png", "PNG")])
def test_rendered_and_thumbnail(web, accept, fmt):
    dw = web.dw
    cases = [
        (web.jpeg.study_uid, web.jpeg.series_uid, web.jpeg.sop_uid, web.jpeg.attrs["Columns"], web.jpeg.attrs["Rows"]),
        (
            web.raw_set[0].study_uid,
            web.raw_set[0].series_uid,
            web.raw_set[0].sop_uid,
            web.raw_set[0].columns,
            web.raw_set[0].rows,
        ),
    ]
    for st, se, sop, cols, rows in cases:
        base = f"/studies/{st}/series/{se}/instances/{sop}"
        r = dw.get(base + "/rendered", accept)
        assert r.status_code == 200, (base, r.status_code, r.text[:300])
        assert r.headers["Content-Type"].startswith(accept)
        img = Image.open(io.BytesIO(r.content))
        img.load()
        assert img.format == fmt and img.size == (cols, rows), (img.format, img.size)
        assert len(np.unique(np.asarray(img.convert("L")))) > 8, "rendered image is (nearly) uniform"
        r = dw.get(base + "/thumbnail", accept)
        assert r.status_code == 200
        Image.open(io.BytesIO(r.content)).load()
    mf = web.multiframe
    r = dw.get(f"/studies/{mf.study_uid}/series/{mf.series_uid}/instances/{mf.sop_uid}/frames/2/rendered", accept)
    assert r.status_code == 200
    assert Image.open(io.BytesIO(r.content)).size == (mf.columns, mf.rows)
    # Rendered Series and Study (404 before): the representative image at
    # full size, here the middle frame of the series' one instance.
    for path in (f"/studies/{mf.study_uid}/series/{mf.series_uid}/rendered", f"/studies/{mf.study_uid}/rendered"):
        whole = dw.get(path, accept)
        assert whole.status_code == 200, (path, whole.status_code, whole.text[:300])
        assert whole.headers["Content-Type"].startswith(accept)
        assert whole.content == r.content, path
    r = dw.get(f"/studies/{mf.study_uid}/series/{mf.series_uid}/rendered?viewport=24,16", accept)
    assert Image.open(io.BytesIO(r.content)).size == (24, 16)
    # A series of three images: the middle one by InstanceNumber.
    first = web.raw_set[0]
    series = sorted((x for x in web.raw_set if x.series_uid == first.series_uid), key=lambda x: x.instance_number)
    assert len(series) == 3
    mid = series[1]
    base = f"/studies/{mid.study_uid}/series/{mid.series_uid}"
    want = dw.get(f"{base}/instances/{mid.sop_uid}/rendered", accept).content
    assert dw.get(f"{base}/rendered", accept).content == want
    assert all(dw.get(f"{base}/instances/{x.sop_uid}/rendered", accept).content != want for x in (series[0], series[2]))
    assert dw.get(f"/studies/{mf.study_uid}/series/1.2.3.404/rendered", accept).status_code == 404


# ---------------------------------------------------------------- DELETE, CORS


def test_delete_requires_auth_and_removes(pacs, gen_studies):
    dw = DicomWeb(pacs)
    stow_ok(dw, [x.path for x in gen_studies])
    st = gen_studies[0].study_uid
    insts = [x for x in gen_studies if x.study_uid == st]
    se = insts[0].series_uid
    victim = insts[0]
    path = f"/studies/{st}/series/{se}/instances/{victim.sop_uid}"
    r = dw.delete(path, auth=False)
    assert r.status_code == 401, r.status_code
    assert dw.delete(path, auth=(ACCESS_KEY, "wrong-secret")).status_code == 401
    assert dw.delete(path, auth=("nobody", "x")).status_code == 401
    assert victim.sop_uid in dw.locate(), "an unauthenticated DELETE removed the instance"
    r = dw.delete(path)
    assert r.status_code in (200, 202, 204), (r.status_code, r.text[:300])
    assert victim.sop_uid not in dw.locate()
    assert dw.get(path, 'multipart/related; type="application/dicom"').status_code == 404
    # Series, then study.
    assert dw.delete(f"/studies/{st}/series/{se}", auth=False).status_code == 401
    assert dw.delete(f"/studies/{st}/series/{se}").status_code in (200, 202, 204)
    assert dw.qido(f"/studies/{st}/series", {"SeriesInstanceUID": se}) == []
    assert dw.delete(f"/studies/{st}", auth=False).status_code == 401
    assert dw.delete(f"/studies/{st}").status_code in (200, 202, 204)
    assert dw.qido("/studies", {"StudyInstanceUID": st}) == []
    left = dw.locate()
    assert sorted(left) == sorted(x.sop_uid for x in gen_studies if x.study_uid != st)
    # The others are intact, and so is the store.
    x = next(x for x in gen_studies if x.study_uid != st)
    assert dw.instance_bytes(x.study_uid, x.series_uid, x.sop_uid) == x.read()
    res = pacs.verify()
    assert res.returncode == 0, res.stdout + res.stderr


def test_cors_preflight_and_headers(web):
    dw = web.dw
    origin = "http://viewer.example"
    r = dw.s.options(
        dw.base + "/studies",
        headers={"Origin": origin, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "accept"},
    )
    assert r.status_code in (200, 204), r.status_code
    assert r.headers.get("Access-Control-Allow-Origin") in ("*", origin), dict(r.headers)
    methods = r.headers.get("Access-Control-Allow-Methods", "")
    assert "GET" in methods.upper() or methods == "*", dict(r.headers)
    r = dw.s.options(
        dw.base + "/studies",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert r.status_code in (200, 204) and r.headers.get("Access-Control-Allow-Origin") in ("*", origin)
    r = dw.s.get(dw.base + "/studies", headers={"Origin": origin, "Accept": "application/dicom+json"})
    assert r.status_code == 200 and r.headers.get("Access-Control-Allow-Origin") in ("*", origin), dict(r.headers)
    i0 = web.raw_set[0]
    r = dw.s.get(
        dw.base + f"/studies/{i0.study_uid}/series/{i0.series_uid}/instances/{i0.sop_uid}/metadata",
        headers={"Origin": origin},
    )
    assert r.status_code == 200 and r.headers.get("Access-Control-Allow-Origin") in ("*", origin)
    # A cross-origin-isolated viewer (OHIF with COOP/COEP) embeds rendered
    # documents and videos in <object>/<video>, which load only with CORP.
    assert r.headers.get("Cross-Origin-Resource-Policy") == "cross-origin", dict(r.headers)


# ---------------------------------------------------------------- SQLite vs PostgreSQL

QUERIES = [
    ("/studies", {}),
    ("/studies", {"PatientID": "FUL080003"}),
    ("/studies", {"PatientID": "FUL08000?"}),
    ("/studies", {"PatientName": "DOE*"}),
    ("/studies", {"PatientName": "*^J*"}),
    ("/studies", {"PatientName": "doe", "fuzzymatching": "true"}),
    ("/studies", {"PatientName": "müller*", "fuzzymatching": "true"}),
    ("/studies", {"PatientName": "Müller^Jürgen"}),
    ("/studies", {"StudyDate": "20200101-20211231"}),
    ("/studies", {"StudyDate": "20210101-"}),
    ("/studies", {"StudyDate": "-20191231"}),
    ("/studies", {"StudyDate": "20200101-20211231", "ModalitiesInStudy": "CT"}),
    ("/studies", {"AccessionNumber": "ACC0800301"}),
    ("/studies", {"AccessionNumber": "ACC08*"}),
    ("/studies", {"ModalitiesInStudy": "MR"}),
    ("/studies", {"StudyDescription": "CT*"}),
    ("/studies", {"ReferringPhysicianName": "HOUSE*"}),
    ("/studies", {"PatientSex": "F"}),
    ("/studies", {"PatientBirthDate": "19400101-19700101"}),
    ("/studies", {"includefield": "StudyDescription,00100030", "limit": "5", "offset": "3"}),
    ("/studies", {"limit": "4", "offset": "0"}),
    ("/series", {"Modality": "CT"}),
    ("/series", {"Modality": "MR", "PatientID": "FUL080001"}),
    ("/series", {"SeriesDescription": "CT *"}),
    ("/instances", {"InstanceNumber": "1", "Modality": "MR"}),
    ("/instances", {"PatientName": "O'BRIEN^MARY"}),
    ("/instances", {"SOPClassUID": "1.2.840.10008.5.1.4.1.1.2", "limit": "7"}),
]


def _normalise(items: list[dict]) -> list[str]:
    """Order-independent and host-independent form of a QIDO answer."""
    out = []
    for item in items:
        item = {k: v for k, v in item.items() if k != "00081190"}  # RetrieveURL names host:port
        out.append(dumps(item))
    return sorted(out)


def test_qido_same_answers_on_sqlite_and_postgresql(pacs_factory, tmp_path, dicom_fixtures):
    from test_backends import _postgres_env

    files = [
        x.path
        for x in dicom_gen.generate(
            tmp_path / "g", seed=8, patients=8, studies_per_patient=2, series_per_study=2, instances_per_series=2
        )
    ]
    files += [f.path for f in dicom_fixtures.representative(per_ts=1)]
    sqlite = pacs_factory()
    pg = pacs_factory(_postgres_env())
    answers = []
    for srv in (sqlite, pg):
        dw = DicomWeb(srv)
        stow_ok(dw, files, batch=40)
        answers.append([_normalise(dw.qido(path, params)) for path, params in QUERIES])
        dw.s.close()
    nonempty = 0
    for (path, params), a, b in zip(QUERIES, *answers):
        assert a == b, f"QIDO {path} {params}: SQLite and PostgreSQL differ\nsqlite: {a[:3]}\npostgres: {b[:3]}"
        nonempty += bool(a)
    assert nonempty >= len(QUERIES) - 2, "most queries should match something"
    # Paging without an explicit order must still be the same partition on both.
    for srv in (sqlite, pg):
        dw = DicomWeb(srv)
        assert len(dw.qido_all("/instances", page=9)) == len(files)


@pytest.mark.parametrize("catalog", ["sqlite", "postgresql"])
def test_an_instance_without_patient_attributes_does_not_erase_its_studys(pacs_factory, tmp_path, catalog):
    """Real studies mix instances whose patient module is filled in with ones
    where it is empty (a DWI series exported without it): the study keeps the
    values it has, whether the empty instance comes in a later request or
    later in the same one, and is still found by them at every level."""
    from test_backends import _postgres_env

    insts = dicom_gen.generate(
        tmp_path / "g", seed=21, patients=1, studies_per_patient=1, series_per_study=2, instances_per_series=2
    )
    first = insts[0]
    files = []
    for i, inst in enumerate(insts):
        if i % 2 == 0:
            files.append(inst.path)
            continue
        ds = pydicom.dcmread(inst.path)
        ds.PatientID = ""
        ds.PatientName = ""
        ds.AccessionNumber = ""
        del ds.StudyDescription
        ds.SeriesDescription = ""
        blank = tmp_path / "blank" / f"{i}.dcm"
        dicom_gen._write(ds, blank)
        files.append(blank)
    srv = pacs_factory(_postgres_env() if catalog == "postgresql" else None)
    dw = DicomWeb(srv)
    # Series 1: filled, then blank in a request of its own; series 2: both in one request.
    stow_ok(dw, files[:1], batch=1)
    stow_ok(dw, files[1:2], batch=1)
    stow_ok(dw, files[2:], batch=2)
    studies = dw.qido("/studies", {"PatientID": first.patient_id, "includefield": "all"})
    assert len(studies) == 1, dumps(studies)
    st = studies[0]
    assert jval(st, "PatientName") == first.patient_name
    assert jval(st, "AccessionNumber") == first.accession
    assert jval(st, "StudyDescription") == first.study_description
    assert int(jval(st, "NumberOfStudyRelatedInstances")) == 4
    assert len(dw.qido("/instances", {"PatientID": first.patient_id})) == 4
    series = dw.qido(f"/studies/{first.study_uid}/series", {"includefield": "all"})
    assert sorted(jval(x, "SeriesDescription") for x in series) == sorted({x.series_description for x in insts})
    # A new value still replaces the old one (a corrected name).
    ds = pydicom.dcmread(insts[0].path)
    ds.PatientName = "CORRECTED^NAME"
    dicom_gen._write(ds, tmp_path / "fixed.dcm")
    stow_ok(dw, [tmp_path / "fixed.dcm"], batch=1)
    st = dw.qido("/studies", {"StudyInstanceUID": first.study_uid})[0]
    assert jval(st, "PatientName") == "CORRECTED^NAME"
    dw.s.close()


def test_zero_padding_after_the_dataset_is_accepted_and_kept(pacs, tmp_path):
    """Some writers pad a file with zero bytes after its last element (DCMTK
    and pydicom read such files): it is stored byte for byte, indexed, and
    served back as sent; anything but zeros after the padding is refused."""
    inst = dicom_gen.generate(tmp_path / "g", seed=22, patients=1, studies_per_patient=1,
                              series_per_study=1, instances_per_series=2)
    padded = inst[0].path.read_bytes() + bytes(5000)
    dw = DicomWeb(pacs)
    res = dw.stow([padded])
    assert res.status == 200 and not res.failed, str(res)
    got = dw.instance_bytes(inst[0].study_uid, inst[0].series_uid, inst[0].sop_uid)
    assert got == padded
    assert len(dw.qido("/instances", {"SOPInstanceUID": inst[0].sop_uid})) == 1
    junk = inst[1].path.read_bytes() + bytes(64) + b"\x08\x00\x10\x00" + bytes(4)
    res = dw.stow([junk])
    assert res.status == 409 and len(res.failed) == 1, str(res)
    assert dw.qido("/instances", {"SOPInstanceUID": inst[1].sop_uid}) == []
    dw.s.close()



def test_the_64_bit_integer_vrs_are_stored_and_returned(pacs, tmp_path):
    """SV and UV elements (Selector SV/UV Value, explicit VR, the long
    header PS3.5 7.1.2 gives them) were refused as malformed (0xC000)."""
    inst = dicom_gen.generate(tmp_path / "g", seed=23, patients=1, studies_per_patient=1,
                              series_per_study=1, instances_per_series=1)[0]
    ds = pydicom.dcmread(inst.path)
    ds.add_new(0x00720082, "SV", -(2**40))
    ds.add_new(0x00720083, "UV", 2**63 + 5)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    sent = buf.getvalue()
    assert pydicom.dcmread(io.BytesIO(sent)).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    dw = DicomWeb(pacs)
    res = dw.stow([sent])
    assert res.status == 200 and not res.failed, str(res)
    assert dw.instance_bytes(inst.study_uid, inst.series_uid, inst.sop_uid) == sent
    (meta,) = dw.get(
        f"/studies/{inst.study_uid}/series/{inst.series_uid}/instances/{inst.sop_uid}/metadata",
        accept="application/dicom+json",
    ).json()
    assert meta["00720082"] == {"vr": "SV", "Value": [-(2**40)]}
    assert meta["00720083"]["vr"] == "UV" and int(meta["00720083"]["Value"][0]) == 2**63 + 5



@pytest.mark.parametrize("name", ["MR_small_bigendian.dcm", "MR_small_implicit.dcm", "MR_small_RLE.dcm",
                                  "MR_small_jpeg_ls_lossless.dcm", "JPEG2000.dcm"])
def test_an_instance_asked_for_in_explicit_vr_little_endian_is_converted(pacs, name):
    """PS3.18 8.7.3.5: every origin server converts to Explicit VR Little
    Endian when asked; instances stored otherwise were refused with 406
    (research tester: 26 of 255 studies), even Implicit VR and big endian
    ones that need no pixel decoding."""
    from pydicom.data import get_testdata_file

    sent = open(get_testdata_file(name), "rb").read()
    orig = pydicom.dcmread(io.BytesIO(sent))
    dw = DicomWeb(pacs)
    res = dw.stow([sent])
    assert res.status == 200 and not res.failed, str(res)
    url = f"/studies/{orig.StudyInstanceUID}/series/{orig.SeriesInstanceUID}/instances/{orig.SOPInstanceUID}"
    r = dw.get(url, accept='multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1')
    assert r.status_code == 200, r.text[:300]
    ((head, part),) = parse_multipart(r.content, r.headers["Content-Type"])
    assert "transfer-syntax=1.2.840.10008.1.2.1" in head["content-type"], head
    got = pydicom.dcmread(io.BytesIO(part))
    assert got.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert got.SOPInstanceUID == orig.SOPInstanceUID and got.PatientName == orig.PatientName
    assert np.array_equal(got.pixel_array, orig.pixel_array), name
    # As stored when the client takes any syntax; 406 for one it cannot be made into.
    r = dw.get(url, accept='multipart/related; type="application/dicom"; transfer-syntax=*')
    assert [p for _, p in parse_multipart(r.content, r.headers["Content-Type"])] == [sent]
    # The client's preference holds over a lower-weight fallback to any
    # syntax (the fallback took over; re-tester).
    prefer = ('multipart/related; type="application/dicom"; transfer-syntax=*;q=0.5, '
              'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1')
    ((head, part),) = parse_multipart(*(lambda r: (r.content, r.headers["Content-Type"]))(dw.get(url, accept=prefer)))
    assert "transfer-syntax=1.2.840.10008.1.2.1" in head["content-type"], head
    assert pydicom.dcmread(io.BytesIO(part)).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    r = dw.get(url, accept='multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50')
    assert r.status_code == (200 if orig.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50" else 406)


# ---------------------------------------------------------------- DICOM XML


XML_PARTS = 'multipart/related; type="application/dicom+xml"'
PN_PARTS = ("FamilyName", "GivenName", "MiddleName", "NamePrefix", "NameSuffix")


def _xml_as_json(node) -> dict:
    """A NativeDicomModel (or Item) element read back into DICOM JSON form."""
    out = {}
    for a in node.findall("DicomAttribute"):
        el = {"vr": a.get("vr")}
        bulk, inline = a.find("BulkData"), a.find("InlineBinary")
        if bulk is not None:
            el["BulkDataURI"] = bulk.get("uri")
        elif inline is not None:
            el["InlineBinary"] = inline.text
        elif a.get("vr") == "SQ":
            items = sorted(a.findall("Item"), key=lambda i: int(i.get("number")))
            if items:
                el["Value"] = [_xml_as_json(i) for i in items]
        elif a.get("vr") == "PN":
            names = []
            for pn in sorted(a.findall("PersonName"), key=lambda p: int(p.get("number"))):
                groups = {}
                for g in pn:
                    comps = [(g.findtext(c) or "") for c in PN_PARTS]
                    groups[g.tag] = "^".join(comps).rstrip("^")
                names.append(groups)
            if names:
                el["Value"] = names
        else:
            vals = sorted(a.findall("Value"), key=lambda v: int(v.get("number")))
            if vals:
                el["Value"] = [v.text for v in vals]
        out[a.get("tag")] = el
    return out


def _comparable(ds: dict) -> dict:
    """DICOM JSON with numbers as text and PN groups without trailing '^'."""
    out = {}
    for t, el in ds.items():
        el = dict(el)
        if "Value" in el:
            if el["vr"] == "SQ":
                el["Value"] = [_comparable(i) for i in el["Value"]]
            elif el["vr"] == "PN":
                el["Value"] = [{g: n.rstrip("^") for g, n in v.items()} for v in el["Value"]]
            else:
                el["Value"] = [None if v is None else str(v) for v in el["Value"]]
        out[t] = el
    return out


def _xml_parts(r) -> list[dict]:
    import xml.etree.ElementTree as ET

    assert r.status_code == 200, r.text[:500]
    assert r.headers["Content-Type"].startswith(XML_PARTS), r.headers["Content-Type"]
    docs = []
    for headers, body in parse_multipart(r.content, r.headers["Content-Type"]):
        assert headers["content-type"].startswith("application/dicom+xml")
        root = ET.fromstring(body)
        assert root.tag == "NativeDicomModel"
        docs.append(_xml_as_json(root))
    return docs


def test_search_results_metadata_and_stow_answers_in_dicom_xml(web):
    # PS3.18 requires multipart/related; type="application/dicom+xml" beside
    # JSON: the same datasets, in the Native DICOM Model of PS3.19.
    dw, i0 = web.dw, web.raw_set[1]
    want = dw.qido("/studies", {"limit": "1000"})
    got = _xml_parts(dw.get("/studies?limit=1000", XML_PARTS))
    assert [_comparable(x) for x in want] == got
    series = f"/studies/{i0.study_uid}/series/{i0.series_uid}"
    want = dw.metadata(series)
    got = _xml_parts(dw.get(series + "/metadata", XML_PARTS))
    assert sorted(map(dumps, (_comparable(x) for x in want))) == sorted(map(dumps, got))
    assert all("BulkDataURI" in x["7FE00010"] for x in got)
    # STOW-RS answers in one document.
    import xml.etree.ElementTree as ET

    body, ct = encode_multipart([i0.read()])
    r = dw.s.post(dw.base + "/studies", data=body, headers={"Content-Type": ct, "Accept": "application/dicom+xml"},
                  timeout=60)
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/dicom+xml", r.text[:300]
    answer = _xml_as_json(ET.fromstring(r.content))
    (ref,) = answer["00081199"]["Value"]
    assert ref["00081155"]["Value"] == [i0.sop_uid]
    # Only XML as a single part is not a form metadata comes in.
    assert dw.get(series + "/metadata", "application/dicom+xml").status_code == 406


# ---------------------------------------------------------------- character sets


@pytest.mark.parametrize(
    "charset, name, description",
    [
        ("GB18030", "张^三", "胸部CT 平扫"),
        ("ISO_IR 192", "李^四", "胸部CT 平扫"),
        (["", "ISO 2022 IR 58"], "王^五", "胸部CT 平扫"),  # code extension: dicom-rs alone read it as Latin-1
        # PS3.5 Annex H: JIS X 0208 in G0 (7-bit bytes between escapes),
        # after ASCII or after JIS X 0201 (half-width katakana in G1).
        (["", "ISO 2022 IR 87"], "Yamada^Tarou=山田^太郎=やまだ^たろう", "頭部MRI"),
        (["ISO 2022 IR 13", "ISO 2022 IR 87"], "ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう", "頭部 MRI ｹﾝｻ"),
        (["", "ISO 2022 IR 149"], "Hong^Gildong=洪^吉洞=홍^길동", "흉부 CT"),  # Annex I
        ("ISO_IR 100", "Müller^Jörg", "Thorax-CT nativ"),
    ],
)
def test_names_in_their_character_sets_are_indexed_and_returned(pacs, charset, name, description):
    def person_name(item):
        """All component groups of the PatientName of a DICOM JSON object."""
        (pn,) = item["00100010"]["Value"]
        groups = [pn.get(g, "") for g in ("Alphabetic", "Ideographic", "Phonetic")]
        return "=".join(groups).rstrip("=")

    dw = DicomWeb(pacs)
    pid = "CS-" + "".join(c for c in str(charset) if c.isalnum())
    res = dw.stow([named_instance(charset, name, pid, description)])
    assert res.status == 200, res.text
    for params in ({"PatientID": pid}, {"PatientName": name.split("^")[0] + "*"}):
        found = dw.qido("/studies", dict(params, includefield="StudyDescription"))
        assert [person_name(s) for s in found] == [name], (params, found)
        assert jval(found[0], "StudyDescription") == description
    study = jval(found[0], "StudyInstanceUID")
    meta = dw.qido(f"/studies/{study}/metadata")
    assert person_name(meta[0]) == name


def test_names_without_a_character_set_are_read_in_the_configured_default(pacs_factory):
    # Older Chinese modalities send GBK names without (0008,0005): the
    # standard reads them as ASCII, and they came out as Latin-1 mojibake
    # (ÕÅ^Èý) that no search for 张 could find. An archive told its
    # default (as Orthanc's DefaultEncoding) reads them in it.
    data = gbk_without_charset("张^三", "胸部")
    plain, chinese = pacs_factory(), pacs_factory({"FULCRUM_DICOM_DEFAULT_CHARSET": "GB18030"})
    for srv in (plain, chinese):
        assert DicomWeb(srv).stow([data]).status == 200
    dw = DicomWeb(chinese)
    (found,) = dw.qido("/studies", {"PatientName": "张*", "includefield": "StudyDescription"})
    assert found["00100010"]["Value"] == [{"Alphabetic": "张^三"}] and jval(found, "StudyDescription") == "胸部"
    meta = dw.qido(f"/studies/{jval(found, 'StudyInstanceUID')}/metadata")
    assert meta[0]["00100010"]["Value"] == [{"Alphabetic": "张^三"}]
    # Without the setting: the standard's reading, and no match.
    assert DicomWeb(plain).qido("/studies", {"PatientName": "张*"}) == []


def test_ges_private_implicit_syntax_is_stored_and_its_frames_sent_little_endian(pacs, tmp_path):
    # GE's private 1.2.840.113619.5.2 (older GE scanners and workstations,
    # found on CDs of old studies): an Implicit VR Little Endian data set
    # with big-endian pixel words. Taken for explicit VR, it was refused
    # as malformed (0xC000), so such studies could not be migrated.
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid

    import dicom_common

    px = (np.arange(24 * 32, dtype=np.uint16).reshape(24, 32) * 5)
    ds = Dataset()
    ds.SOPClassUID, ds.Modality = "1.2.840.10008.5.1.4.1.1.2", "CT"
    ds.SOPInstanceUID, ds.SeriesInstanceUID, ds.StudyInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.PatientID, ds.PatientName = "GE-PRIVATE", "Genesis^Old"
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 24, 32, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = px.astype(">u2").tobytes()
    ds.file_meta = dicom_common.file_meta(ds.SOPClassUID, ds.SOPInstanceUID)
    ds.file_meta.TransferSyntaxUID = "1.2.840.113619.5.2"
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, implicit_vr=True, little_endian=True, enforce_file_format=True)
    data = buf.getvalue()
    dw = DicomWeb(pacs)
    res = dw.stow([data])
    assert res.status == 200, res.text
    base = _instance_path(ds)
    r = dw.get(base, 'multipart/related; type="application/dicom"; transfer-syntax=*')
    ((_, stored),) = parse_multipart(r.content, r.headers["content-type"])
    assert stored == data
    (frame,) = dw.client().retrieve_instance_frames(ds.StudyInstanceUID, ds.SeriesInstanceUID,
                                                     ds.SOPInstanceUID, [1], media_types=("application/octet-stream",))
    assert frame == px.astype("<u2").tobytes()
    (found,) = dw.qido("/studies", {"PatientID": "GE-PRIVATE"})
    assert found["00100010"]["Value"] == [{"Alphabetic": "Genesis^Old"}]
    # A DIMSE peer (DCMTK getscu: uncompressed syntaxes only, none knows
    # GE's) gets it re-encoded with its pixel words in order.
    from dicom_helpers import dcmtk

    out = tmp_path / "got"
    out.mkdir()
    res = dcmtk("getscu", "-S", "-aec", pacs.dicom_aet, "-k", "QueryRetrieveLevel=STUDY",
                "-k", f"StudyInstanceUID={ds.StudyInstanceUID}", "-od", str(out), "127.0.0.1", str(pacs.dicom_port))
    (path,) = list(out.iterdir())
    got = pydicom.dcmread(path)
    assert got.file_meta.TransferSyntaxUID != "1.2.840.113619.5.2", res.stderr
    assert np.array_equal(got.pixel_array, px), res.stderr


def test_a_video_is_retrieved_as_its_stream(pacs):
    # An H.264 video (endoscopy, surgery, ultrasound clips) is one stream
    # over its fragments, not one codestream per frame: its BulkDataURI and
    # /frames were 501 ("cannot locate this frame") and /rendered 406, so a
    # browser viewer could not play it. Now each gives the stream, read
    # from storage as it is sent.
    for size in (10_000, 3_000_000):  # small, and large enough to be stored apart from its header
        _check_video(pacs, b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * (size // 256))


def _check_video(pacs, stream):
    from pydicom.encaps import encapsulate
    from pydicom.uid import generate_uid

    fragments = encapsulate([stream], fragments_per_frame=3, has_bot=True)
    data = _image("VIDEO-1", 48, 64, 8, fragments, study=generate_uid(), samples=3, photometric="YBR_PARTIAL_420",
                  frames=50, ts="1.2.840.10008.1.2.4.102", vr="OB", sop_class="1.2.840.10008.5.1.4.1.1.77.1.4.1")
    dw = DicomWeb(pacs)
    assert dw.stow([data]).status == 200
    ds = pydicom.dcmread(io.BytesIO(data))
    base = _instance_path(ds)
    meta = dw.qido(f"{base}/metadata")
    uri = meta[0]["7FE00010"]["BulkDataURI"]
    for accept in ("video/mp4", 'multipart/related; type="video/mp4"', "*/*"):
        r = dw.s.get(uri, headers={"Accept": accept}, timeout=dw.timeout)
        assert r.status_code == 200, (accept, r.status_code, r.text[:200])
        if r.headers["content-type"].startswith("multipart/related"):
            ((head, body),) = parse_multipart(r.content, r.headers["content-type"])
            assert head["content-type"].startswith("video/mp4"), head
        else:
            assert r.headers["content-type"].startswith("video/mp4"), r.headers
            body = r.content
        assert body.rstrip(b"\0") == stream.rstrip(b"\0"), accept
    r = dw.get(f"{base}/frames/1,2", 'multipart/related; type="video/mp4"')
    assert r.status_code == 200, r.text[:200]
    ((head, body),) = parse_multipart(r.content, r.headers["content-type"])
    assert body.rstrip(b"\0") == stream.rstrip(b"\0")
    r = dw.get(f"{base}/rendered", "video/mp4")
    assert r.status_code == 200 and r.headers["content-type"] == "video/mp4", (r.status_code, r.text[:200])
    assert r.content.rstrip(b"\0") == stream.rstrip(b"\0")
    # A browser's <video> seeks with Range requests (206); without them
    # OHIF could neither step through a clip nor jump in a long one.
    assert r.headers.get("accept-ranges") == "bytes"
    total = len(r.content)
    for rng, want in ((f"bytes=100-{total - 2}", r.content[100:total - 1]), ("bytes=-7", r.content[-7:]),
                      ("bytes=5-", r.content[5:])):
        got = dw.s.get(dw.base + f"{base}/rendered", headers={"Accept": "video/mp4", "Range": rng}, timeout=dw.timeout)
        assert got.status_code == 206 and got.content == want, (rng, got.status_code, len(got.content))
        start = total - 7 if rng == "bytes=-7" else int(rng[6:].split("-")[0])
        assert got.headers["content-range"] == f"bytes {start}-{start + len(want) - 1}/{total}", got.headers
    got = dw.s.get(dw.base + f"{base}/rendered", headers={"Accept": "video/mp4", "Range": f"bytes={total}-"},
                   timeout=dw.timeout)
    assert got.status_code == 416
    # A still image of it cannot be made here: a clear 406 that says where the video is.
    for path in (f"{base}/rendered", f"{base}/thumbnail"):
        r = dw.get(path, "image/jpeg")
        assert r.status_code == 406 and "video" in r.text, (path, r.text)


def test_a_name_with_bytes_invalid_in_its_character_set_stays_one_name(pacs):
    # GBK bytes labelled UTF-8 (common from Chinese modalities): each bad
    # byte came back as `\315`-style text and split the name there, so
    # QIDO-RS and metadata answered five PatientName values for one.
    dw = DicomWeb(pacs)
    data = named_instance("ISO_IR 192", "AB^CD", "BAD-UTF8", "CT")
    assert data.count(b"AB^CD") == 1
    data = data.replace(b"AB^CD", "王^五".encode("gbk"))
    assert dw.stow([data]).status == 200
    (found,) = dw.qido("/studies", {"PatientID": "BAD-UTF8"})
    (name,) = found["00100010"]["Value"]
    assert "^" in name["Alphabetic"] and "\ufffd" in name["Alphabetic"], name
    meta = dw.qido(f"/studies/{jval(found, 'StudyInstanceUID')}/metadata")
    assert meta[0]["00100010"]["Value"] == [name]
    # The instance itself is kept as sent.
    r = dw.get(f"/studies/{jval(found, 'StudyInstanceUID')}", 'multipart/related; type="application/dicom"')
    assert "王^五".encode("gbk") in r.content


def _image(patient: str, rows: int, cols: int, bits: int, pixel_data: bytes, *, study=None, samples=1,
           photometric="MONOCHROME2", frames=None, ts=None, vr=None,
           sop_class="1.2.840.10008.5.1.4.1.1.7", number=None, extra=None) -> bytes:
    """A Part 10 image instance (Secondary Capture unless told) as pydicom
    writes it: Explicit VR Little Endian unless `ts`."""
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid

    import dicom_common

    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.StudyInstanceUID = study or generate_uid()
    ds.PatientID, ds.PatientName, ds.Modality = patient, f"{patient}^Test", "OT"
    ds.Rows, ds.Columns = rows, cols
    if number is not None:
        ds.InstanceNumber = number
    for keyword, value in (extra or {}).items():
        setattr(ds, keyword, value)
    if frames:
        ds.NumberOfFrames = frames
    ds.SamplesPerPixel, ds.PhotometricInterpretation = samples, photometric
    if samples == 3:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits, bits - 1, 0
    ds.PixelData = pixel_data
    if vr:
        ds["PixelData"].VR = vr
    ds.file_meta = dicom_common.file_meta(ds.SOPClassUID, ds.SOPInstanceUID)
    if ts:
        ds.file_meta.TransferSyntaxUID = ts
    out = io.BytesIO()
    # pydicom 3.0 knows Deflated Image Frame Compression and JPEG XL only
    # once pynetdicom's import has registered them: without this the tests
    # using them failed when run alone.
    import pynetdicom  # noqa: F401

    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _jpeg_instance(pixels: np.ndarray, photometric: str, study: str) -> bytes:
    """A Secondary Capture instance whose one frame is a baseline JPEG made
    by Pillow (libjpeg), not by the archive's decoder."""
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
    return _image("JPEG-1", *pixels.shape[:2], 8, encapsulate([buf.getvalue()]), study=study,
                  samples=1 if pixels.ndim == 2 else 3, photometric=photometric, ts=JPEGBaseline8Bit, vr="OB")


def test_a_ycbcr_jpeg_labelled_rgb_renders_in_its_colours(pacs):
    # GDCM writes YCbCr 4:2:2 JPEG under Photometric Interpretation RGB; the
    # rendered PNG showed the raw Y, Cb, Cr values as red, green and blue
    # (while the stored JPEG, sent as is for image/jpeg, looked right).
    from pydicom.uid import generate_uid

    bars = np.zeros((48, 96, 3), np.uint8)
    bars[:, :32, 0] = bars[:, 32:64, 1] = bars[:, 64:, 2] = 220
    dw = DicomWeb(pacs)
    for photometric in ("RGB", "YBR_FULL_422"):
        data = _jpeg_instance(bars, photometric, generate_uid())
        assert dw.stow([data]).status == 200
        ds = pydicom.dcmread(io.BytesIO(data))
        r = dw.get(f"{_instance_path(ds)}/rendered", "image/png")
        assert r.status_code == 200, r.text[:300]
        got = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB")).astype(int)
        assert np.abs(got - bars.astype(int)).mean() < 8, (photometric, got[24, [16, 48, 80]])


def test_grayscale_jpeg_frames_are_decoded_when_uncompressed_ones_are_asked_for(pacs):
    # Uncompressed frames asked for (application/octet-stream, whose default
    # transfer syntax is Explicit VR Little Endian) used to get 406 from a
    # JPEG-compressed instance.
    from pydicom.uid import generate_uid

    dw = DicomWeb(pacs)
    study = generate_uid()
    yy, xx = np.mgrid[0:64, 0:96]
    gray = ((xx * 2 + yy) % 256).astype(np.uint8)
    color = np.stack([gray, 255 - gray, gray // 2], axis=-1)
    parts = [_jpeg_instance(gray, "MONOCHROME2", study), _jpeg_instance(color, "YBR_FULL_422", study)]
    assert dw.stow(parts).status == 200
    client = dw.client()
    series = client.search_for_series(study)
    by_photometric = {}
    for s in series:
        inst = client.search_for_instances(study, jval(s, "SeriesInstanceUID"))[0]
        meta = client.retrieve_instance_metadata(study, jval(s, "SeriesInstanceUID"), jval(inst, "SOPInstanceUID"))
        by_photometric[jval(meta, "PhotometricInterpretation")] = (jval(s, "SeriesInstanceUID"), jval(inst, "SOPInstanceUID"))
    se, sop = by_photometric["MONOCHROME2"]
    (frame,) = client.retrieve_instance_frames(study, se, sop, [1], media_types=("application/octet-stream",))
    got = np.frombuffer(frame, dtype=np.uint8).reshape(gray.shape)
    expected = np.asarray(Image.open(io.BytesIO(pydicom.encaps.generate_frames(
        pydicom.dcmread(io.BytesIO(parts[0])).PixelData, number_of_frames=1).__next__())))
    # Two JPEG decoders (jpeg-decoder here, libjpeg in Pillow) may round the
    # inverse DCT differently by a unit.
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 2
    # The stored JPEG is still there as is for who asks for it.
    (stored,) = client.retrieve_instance_frames(study, se, sop, [1], media_types=("image/jpeg",))
    assert stored.startswith(b"\xff\xd8")
    # Colour is not decoded (its header would misdescribe RGB): a clear 406.
    se, sop = by_photometric["YBR_FULL_422"]
    r = dw.get(f"/studies/{study}/series/{se}/instances/{sop}/frames/1",
               'multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.1')
    assert r.status_code == 406 and "transcode" in r.text


def test_8_bit_frames_stored_big_endian_in_ow_words_come_back_in_pixel_order(pacs, tmp_path):
    # DCMTK's dcmconv +tb keeps 8-bit Pixel Data as OW: 16-bit words of two
    # samples, each word's bytes swapped on disk (PS3.5 8.1.1). Frames came
    # back with every pair of pixels swapped. 5x7 frames: frame 2 starts
    # inside a word.
    from dicom_helpers import dcmtk, describe

    pixels = bytes(range(1, 106))
    le = _image("BE-8", 5, 7, 8, pixels, frames=3, vr="OW", sop_class="1.2.840.10008.5.1.4.1.1.7.2")
    (tmp_path / "le.dcm").write_bytes(le)
    ds = pydicom.dcmread(io.BytesIO(le))
    res = dcmtk("dcmconv", "+tb", tmp_path / "le.dcm", tmp_path / "be.dcm")
    assert res.returncode == 0, describe(res)
    data = (tmp_path / "be.dcm").read_bytes()
    be = pydicom.dcmread(io.BytesIO(data))
    assert be.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.2" and be["PixelData"].VR == "OW"
    assert be.PixelData != ds.PixelData, "the words are swapped on disk"
    dw = DicomWeb(pacs)
    assert dw.stow([data]).status == 200
    frames = dw.client().retrieve_instance_frames(
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, [1, 2, 3],
        media_types=("application/octet-stream",),
    )
    assert frames == [be.pixel_array[k].tobytes() for k in range(3)]
    assert b"".join(frames) == pixels


def test_frames_of_a_binary_segmentation_not_ending_on_a_byte(pacs):
    # 1-bit frames of 7x9 pixels (63 bits) follow one another without
    # padding; each used to be 501. A frame comes back starting a byte.
    from pydicom.pixels import pack_bits

    rng = np.random.default_rng(7)
    masks = rng.integers(0, 2, size=(4, 7, 9), dtype=np.uint8)
    data = _image("SEG-1", 7, 9, 1, pack_bits(masks.ravel()), frames=4, vr="OB",
                  sop_class="1.2.840.10008.5.1.4.1.1.66.4")
    ds = pydicom.dcmread(io.BytesIO(data))
    dw = DicomWeb(pacs)
    assert dw.stow([data]).status == 200
    frames = dw.client().retrieve_instance_frames(
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, [1, 2, 3, 4],
        media_types=("application/octet-stream",),
    )
    assert frames == [pack_bits(m.ravel()) for m in masks]


@pytest.mark.parametrize("ts", [None, "1.2.840.10008.1.2.1.99"], ids=["explicit", "deflated"])
def test_a_frame_past_the_end_of_short_pixel_data_is_named_missing(pacs, ts):
    # Stored as sent, with Pixel Data for two of its three frames: the third
    # was "frame 3 does not exist: the instance has 3 frame(s)" (deflated
    # data sets, parsed whole, said so until later).
    data = _image("SHORT-1", 4, 4, 8, bytes(32), frames=3, sop_class="1.2.840.10008.5.1.4.1.1.7.2", ts=ts)
    ds = pydicom.dcmread(io.BytesIO(data))
    assert ds.file_meta.TransferSyntaxUID == (ts or "1.2.840.10008.1.2.1")
    dw = DicomWeb(pacs)
    assert dw.stow([data]).status == 200
    base = f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}/frames"
    accept = 'multipart/related; type="application/octet-stream"'
    assert dw.get(f"{base}/2", accept).status_code == 200
    r = dw.get(f"{base}/3", accept)
    assert r.status_code == 404 and "holds 32 bytes" in r.text and "need 48" in r.text, r.text
    # Past the header's frames too (both 404, with their own reasons).
    r = dw.get(f"{base}/4", accept)
    assert r.status_code == 404 and "has 3 frame(s)" in r.text, r.text


def test_an_instance_resent_into_a_corrected_study_leaves_no_empty_study(pacs):
    """The only instance of a study re-sent with a corrected Study Instance
    UID: the old study and its series were still listed, with no instance
    to retrieve, and still counted among the patient's studies."""
    from pydicom.uid import generate_uid

    old, new = generate_uid(), generate_uid()
    first = _image("MOVE-1", 4, 4, 8, bytes(16), study=old)
    ds = pydicom.dcmread(io.BytesIO(first))
    ds.StudyInstanceUID = new
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    dw = DicomWeb(pacs)
    assert dw.stow([first]).status == 200
    assert dw.stow([out.getvalue()]).status == 200
    client = dw.client()
    studies = client.search_for_studies(search_filters={"PatientID": "MOVE-1"})
    assert _uids(studies, "StudyInstanceUID") == [new]
    assert int(jval(studies[0], "NumberOfStudyRelatedInstances")) == 1
    assert client.search_for_series(search_filters={"StudyInstanceUID": old}) == []
    series = client.search_for_series(new)
    assert [jval(x, "SeriesInstanceUID") for x in series] == [ds.SeriesInstanceUID]


def test_instance_results_carry_bits_allocated_timezone_offset_and_availability(pacs):
    # PS3.18 Table 10.6.3-5: both "shall be present if known"; neither was
    # held by the index.
    from pydicom.uid import generate_uid

    dw = DicomWeb(pacs)
    study = generate_uid()
    assert dw.stow([_image("TZ-1", 4, 4, 16, bytes(32), study=study,
                           extra={"TimezoneOffsetFromUTC": "+0800"})]).status == 200
    (item,) = dw.qido(f"/studies/{study}/instances")
    assert (jval(item, "BitsAllocated"), jval(item, "TimezoneOffsetFromUTC")) == (16, "+0800"), item
    (item,) = dw.qido("/instances", {"StudyInstanceUID": study, "includefield": "TimezoneOffsetFromUTC"})
    assert jval(item, "TimezoneOffsetFromUTC") == "+0800"
    # Instance Availability, "shall be present if known" for studies and
    # instances (Tables 10.6.3-3 and -5): every instance is ONLINE.
    (st,) = dw.qido("/studies", {"StudyInstanceUID": study})
    assert (jval(st, "InstanceAvailability"), jval(item, "InstanceAvailability")) == ("ONLINE", "ONLINE")
    (se,) = dw.qido(f"/studies/{study}/series", {"includefield": "InstanceAvailability"})
    assert jval(se, "InstanceAvailability") == "ONLINE"


def test_study_time_ranges_match_times_not_text(pacs):
    """A lower bound written with a fraction (10:15:00.000) sorted, as text,
    after the stored 101500 and 1015 that it equals: they were missed."""
    from pydicom.uid import generate_uid

    times = {"101500": generate_uid(), "1015": generate_uid(), "101459": generate_uid(), "235959": generate_uid()}
    dw = DicomWeb(pacs)
    parts = [_image("TM-1", 4, 4, 8, bytes(16), study=uid, extra={"StudyTime": t, "StudyDate": "20240105"})
             for t, uid in times.items()]
    assert dw.stow(parts).status == 200

    def found(rng):
        r = dw.client().search_for_studies(search_filters={"StudyDate": "20240105", "StudyTime": rng})
        return sorted(t for t, uid in times.items() if uid in _uids(r, "StudyInstanceUID"))

    assert found("101500.000-101600") == ["1015", "101500"]
    assert found("101500.000000-101500.999999") == ["1015", "101500"]
    assert found("-101459.999") == ["101459"]
    assert found("235900.000-") == ["235959"]
    assert found("10:15-10:16") == ["1015", "101500"]
    # A time or date that is none is the query's mistake: 400, as a
    # malformed date already was (these were 200 with no match).
    for bad in ("StudyTime=25", "StudyTime=ab", "StudyTime=1060", "StudyTime=101500.1234567",
                "StudyTime=0900-2400", "StudyDate=20101301", "StudyDate=20230229", "StudyDate=20240431"):
        r = dw.get(f"/studies?{bad}", "application/dicom+json")
        assert r.status_code == 400 and ("a time is" in r.text or "a date is" in r.text), (bad, r.status_code, r.text)
    for good in ("StudyDate=20240229", "StudyTime=235960", "StudyTime=10"):
        assert dw.get(f"/studies?{good}", "application/dicom+json").status_code == 200, good


def test_a_study_is_rendered_by_an_image_this_archive_can_render(pacs):
    # The middle instance was taken whatever its codec: a study whose middle
    # image is in a syntax not decoded here (JPEG XL) was 406 although its
    # other images render.
    from pydicom.encaps import encapsulate
    from pydicom.uid import generate_uid

    study = generate_uid()
    jxl = [_image("REP-1", 8, 8, 8, encapsulate([b"\xff\x0a" + bytes(64)]), study=study,
                  ts="1.2.840.10008.1.2.4.110", vr="OB", number=n) for n in (1, 2, 3)]
    native = _image("REP-1", 8, 8, 8, bytes(range(64)), study=study, number=4)
    dw = DicomWeb(pacs)
    assert dw.stow(jxl + [native]).status == 200
    r = dw.get(f"/studies/{study}/rendered", "image/png")
    assert r.status_code == 200, r.text[:200]
    ds = pydicom.dcmread(io.BytesIO(native))
    want = dw.get(f"/studies/{study}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}/rendered", "image/png")
    assert r.content == want.content


def test_rendered_viewport_regions_and_window_functions(pacs):
    # viewport=vw,vh,sx,sy,sw,sh and window=c,w,function (PS3.18 8.3.5.1)
    # were cut to their first two numbers: every crop was the whole image.
    yy, xx = np.mgrid[0:24, 0:32]
    data = _image("VP-1", 24, 32, 16, (xx * 40 + yy * 3).astype("<u2").tobytes())
    ds = pydicom.dcmread(io.BytesIO(data))
    dw = DicomWeb(pacs)
    assert dw.stow([data]).status == 200
    base = f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}/rendered"

    def png(query):
        r = dw.get(f"{base}?{query}", "image/png")
        assert r.status_code == 200, (query, r.status_code, r.text[:200])
        return np.asarray(Image.open(io.BytesIO(r.content)))

    win = "window=640,1280"
    full = png(f"viewport=32,24&{win}")
    assert full.shape == (24, 32)
    assert (png(f"viewport=8,6,4,2,8,6&{win}") == full[2:8, 4:12]).all()
    # A negative width runs left from sx and mirrors.
    assert (png(f"viewport=8,6,12,2,-8,6&{win}") == full[2:8, 4:12][:, ::-1]).all()
    # Left-out values: from the origin, to the image's end.
    assert (png(f"viewport=16,24,16,,,&{win}") == full[:, 16:]).all()
    # A region zoomed into a larger viewport, pixels repeated.
    assert (png(f"viewport=16,12,0,0,8,6&{win}") == full[0:6, 0:8].repeat(2, 0).repeat(2, 1)).all()
    sig = png(f"viewport=32,24&{win},sigmoid")
    assert sig.shape == full.shape and (sig != full).any()
    assert abs(int(sig[12, 16]) - int(full[12, 16])) <= 2  # the same at the center
    for bad in ("viewport=8,6,0,0,8", "viewport=8,6,40,0,8,6", f"{win},cubic", "window=640,0"):
        assert dw.get(f"{base}?{bad}", "image/png").status_code == 400, bad


def _encapsulated_instance(ts: str, fragments: list[bytes], rows: int, cols: int, bits: int, study: str) -> bytes:
    """A multi-frame instance of `ts`, one fragment per frame, as pydicom writes it."""
    from pydicom.encaps import encapsulate

    return _image("ENC-1", rows, cols, bits, encapsulate(fragments), study=study, frames=len(fragments),
                  ts=ts, vr="OB", sop_class="1.2.840.10008.5.1.4.1.1.7.2")


def test_deflated_image_frames_are_stored_and_inflated_and_jpeg_xl_is_labelled(pacs):
    # Deflated Image Frame Compression deflates each frame, not the dataset:
    # it was refused as a dataset that would not inflate (0xC000).
    import zlib

    from pydicom.uid import generate_uid

    dw = DicomWeb(pacs)
    study = generate_uid()
    frames = [bytes((k * 31 + i) % 251 for i in range(48 * 40)) for k in range(3)]

    def raw_deflate(b):
        z = zlib.compressobj(6, zlib.DEFLATED, -15)
        return z.compress(b) + z.flush()

    deflated = _encapsulated_instance("1.2.840.10008.1.2.8.1", [raw_deflate(f) for f in frames], 48, 40, 8, study)
    # Stored JPEG XL frames are never decoded here: their bytes only need a label.
    jxl = _encapsulated_instance("1.2.840.10008.1.2.4.110", [b"\xff\x0a" + bytes(64)] * 2, 8, 8, 8, study)
    assert dw.stow([deflated, jxl]).status == 200
    assert dw.stow([deflated]).status == 200  # already stored
    where = {}
    for data in (deflated, jxl):
        ds = pydicom.dcmread(io.BytesIO(data))
        where[ds.file_meta.TransferSyntaxUID] = (ds.SeriesInstanceUID, ds.SOPInstanceUID)
        assert dw.instance_bytes(study, ds.SeriesInstanceUID, ds.SOPInstanceUID) == data

    se, sop = where["1.2.840.10008.1.2.8.1"]
    path = f"/studies/{study}/series/{se}/instances/{sop}/frames/1,3"
    got = dw.client().retrieve_instance_frames(study, se, sop, [1, 3], media_types=("application/octet-stream",))
    assert got == [frames[0], frames[2]]
    # As stored, for who takes that syntax.
    r = dw.get(path, 'multipart/related; type="application/octet-stream"; transfer-syntax=*')
    assert r.status_code == 200, r.text
    parts = parse_multipart(r.content, r.headers["content-type"])
    assert [p for _, p in parts] == [raw_deflate(frames[0]), raw_deflate(frames[2])]
    assert all("transfer-syntax=1.2.840.10008.1.2.8.1" in h["content-type"] for h, _ in parts), parts[0][0]

    se, sop = where["1.2.840.10008.1.2.4.110"]
    path = f"/studies/{study}/series/{se}/instances/{sop}/frames/1"
    r = dw.get(path, 'multipart/related; type="image/jxl"')
    assert r.status_code == 200, r.text[:300]
    ((head, body),) = parse_multipart(r.content, r.headers["content-type"])
    assert head["content-type"].startswith("image/jxl") and body == b"\xff\x0a" + bytes(64), head
    # A plain octet-stream asks for uncompressed frames, which JPEG XL cannot give here.
    for accept in ("application/octet-stream", 'multipart/related; type="application/octet-stream"'):
        r = dw.get(path, accept)
        assert r.status_code == 406, (accept, r.status_code)


def test_frames_split_over_several_fragments_without_an_offset_table_are_found(pacs):
    # PS3.5 A.4 lets a frame span several fragments with an empty Basic
    # Offset Table; frames then begin where a codestream does. /frames was
    # 501 for them. pydicom finds the same frames another way (by end
    # markers), which is what the answers are compared with.
    from pydicom.encaps import encapsulate, generate_frames
    from pydicom.uid import JPEG2000Lossless, JPEGBaseline8Bit, generate_uid

    dw = DicomWeb(pacs)
    study = generate_uid()
    yy, xx = np.mgrid[0:64, 0:80]
    images = [((xx * (k + 1) + yy * 3) % 256).astype(np.uint8) for k in range(3)]

    def encoded(img, fmt, **kw):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format=fmt, **kw)
        return buf.getvalue()

    kinds = {JPEG2000Lossless: ([encoded(i, "JPEG2000", no_jp2=True) for i in images], "image/jp2"),
             JPEGBaseline8Bit: ([encoded(i, "JPEG", quality=90) for i in images], "image/jpeg")}
    parts = {ts: _image("FRAG-1", 64, 80, 8, encapsulate(frames, fragments_per_frame=3, has_bot=False),
                        study=study, frames=3, ts=ts, vr="OB", sop_class="1.2.840.10008.5.1.4.1.1.7.2")
             for ts, (frames, _) in kinds.items()}
    assert dw.stow(list(parts.values())).status == 200
    client = dw.client()
    for ts, data in parts.items():
        ds = pydicom.dcmread(io.BytesIO(data))
        assert len(list(pydicom.encaps.generate_fragments(ds.PixelData))) == 1 + 9  # empty BOT, 3 per frame
        expected = list(generate_frames(ds.PixelData, number_of_frames=3))
        assert [f.rstrip(b"\0") for f in expected] == [f.rstrip(b"\0") for f in kinds[ts][0]]
        got = client.retrieve_instance_frames(study, ds.SeriesInstanceUID, ds.SOPInstanceUID, [3, 1, 2],
                                              media_types=(kinds[ts][1],))
        assert got == [expected[2], expected[0], expected[1]], ts
    # Past the last frame: not there (404); frame 0: no frame number (400).
    ds = pydicom.dcmread(io.BytesIO(parts[JPEGBaseline8Bit]))
    base = f"/studies/{study}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}/frames"
    assert dw.get(f"{base}/4", "image/jpeg").status_code == 404
    assert dw.get(f"{base}/1,4", "image/jpeg").status_code == 404
    assert dw.get(f"{base}/0", "image/jpeg").status_code == 400
    # The JPEG's second frame renders as that frame.
    r = dw.get(f"/studies/{study}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}/frames/2/rendered",
               "image/png")
    assert r.status_code == 200, r.text[:300]
    rendered = np.asarray(Image.open(io.BytesIO(r.content)))
    assert np.abs(rendered.astype(int) - images[1].astype(int)).mean() < 4
    # Flags that disagree with the stored bytes (a row an older node
    # replaced, keeping the newer column) give an error, never a wrong
    # frame: here frames 1 and 2 would be cut one fragment off.
    import sqlite3

    con = sqlite3.connect(pacs.data_dir / "catalog.db", timeout=30)
    with con:
        (flags,) = con.execute("SELECT frame_starts FROM dicom_instances WHERE sop_uid = ?",
                               (ds.SOPInstanceUID,)).fetchone()
        assert flags == "0" + "100" * 3, flags
        con.execute("UPDATE dicom_instances SET frame_starts = ? WHERE sop_uid = ?",
                    ("0" + "100010100", ds.SOPInstanceUID))
    con.close()
    assert dw.get(f"{base}/1", "image/jpeg").status_code == 500
    assert dw.get(f"{base}/2", "image/jpeg").status_code == 500
    r = dw.get(f"{base}/3", "image/jpeg")
    assert r.status_code == 200, r.text[:300]
    assert r.content.rstrip(b"\0") == kinds[JPEGBaseline8Bit][0][2].rstrip(b"\0")


def test_metadata_holds_every_attribute_of_a_header_longer_than_the_ingest_cap(pacs):
    # An SR whose Content Sequence is 20 MB: the archive reads 16 MiB of a
    # header ahead and stores the rest with the bulk data. /metadata parsed
    # only what was read ahead, and answered 200 without the sequence.
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid

    dw = DicomWeb(pacs)
    study = generate_uid()
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR
    ds.SOPInstanceUID, ds.SeriesInstanceUID, ds.StudyInstanceUID = generate_uid(), generate_uid(), study
    ds.PatientID, ds.PatientName, ds.Modality = "SR-BIG", "Long^Report", "SR"
    items = []
    for k in range(10_000):
        item = Dataset()
        item.RelationshipType, item.ValueType = "CONTAINS", "TEXT"
        item.TextValue = f"{k:05d} " + "x" * 2000
        items.append(item)
    ds.ContentSequence = items
    ds.CompletionFlag = "COMPLETE"  # (0040,A491): after the sequence
    import dicom_common

    ds.file_meta = dicom_common.file_meta(ds.SOPClassUID, ds.SOPInstanceUID)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    assert len(out.getvalue()) > 17 * 1024 * 1024  # past the 16 MiB cap
    assert dw.stow([out.getvalue()]).status == 200
    meta = dw.client().retrieve_instance_metadata(study, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    content = meta.get("0040A730", {}).get("Value", [])
    assert len(content) == 10_000, len(content)
    assert content[-1]["0040A160"]["Value"][0].startswith("09999 ")
    assert meta["0040A491"]["Value"] == ["COMPLETE"]
    # The whole instance is still the file as sent.
    assert dw.instance_bytes(study, ds.SeriesInstanceUID, ds.SOPInstanceUID) == out.getvalue()


def _encapsulated_pdf(pdf: bytes, patient: str, stated_length: bool = True, **extra) -> tuple:
    """(data set, Part 10 bytes) of an Encapsulated PDF holding `pdf`, with
    its Encapsulated Document Length unless told otherwise."""
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid

    import dicom_common

    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.104.1"  # Encapsulated PDF
    ds.SOPInstanceUID, ds.SeriesInstanceUID, ds.StudyInstanceUID = generate_uid(), generate_uid(), generate_uid()
    ds.PatientID, ds.Modality = patient, "DOC"
    for keyword, value in extra.items():
        setattr(ds, keyword, value)
    ds.EncapsulatedDocument = pdf
    if stated_length:
        ds.EncapsulatedDocumentLength = len(pdf)
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.file_meta = dicom_common.file_meta(ds.SOPClassUID, ds.SOPInstanceUID)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return ds, out.getvalue()


def _instance_path(ds) -> str:
    return f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"


def test_metadata_of_a_document_longer_than_32_mib_names_it_as_bulk_data(pacs):
    # A 40 MB Encapsulated PDF: /metadata read at most 32 MiB of a data set
    # and stopped at the ingest cut, before the document: neither it nor
    # the MIME type after it were listed, and its bulk data was 404. The
    # elements past the cut are now walked: small ones parsed, large ones
    # named by a BulkDataURI and sent from where they are stored.
    dw = DicomWeb(pacs)
    pdf = b"%PDF-1.4\n" + bytes(range(256)) * (40 * 4096) + b"\n%%EOF\n\n"  # odd: stored padded
    ds, data = _encapsulated_pdf(pdf, "PDF-BIG", PatientName="Long^Document", DocumentTitle="Scanned referral")
    assert len(data) > 40 * 1024 * 1024
    assert dw.stow([data]).status == 200
    meta = dw.client().retrieve_instance_metadata(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    assert meta["00420012"]["Value"] == ["application/pdf"], meta.get("00420012")
    assert meta["00420010"]["Value"] == ["Scanned referral"]
    uri = meta["00420011"]["BulkDataURI"]
    assert meta["00420011"]["vr"] == "OB"
    r = dw.s.get(uri, headers={"Accept": "application/pdf"}, timeout=dw.timeout)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/pdf"), r.text[:300]
    assert r.content == pdf, (len(r.content), len(pdf))  # as made: without the pad byte
    assert dw.client().retrieve_bulkdata(uri) == [pdf + b"\0"]  # the value


def test_an_instance_whose_uids_lie_behind_an_element_larger_than_the_cap_is_stored(pacs, tmp_path):
    # An 18 MiB private value in group 0009, before the patient and study
    # attributes: the archive reads 16 MiB of a header ahead, and refused
    # the instance (0xA900, later 0xA700). The small elements past the cut
    # are now kept as the rest streams, and the index is read from them.
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid
    import dicom_common

    dw = DicomWeb(pacs)
    files = []
    for n in range(2):
        ds = Dataset()
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture
        ds.SOPInstanceUID, ds.SeriesInstanceUID, ds.StudyInstanceUID = generate_uid(), generate_uid(), generate_uid()
        ds.add_new(0x00090010, "LO", "FULCRUM TEST")
        ds.add_new(0x00091000, "OB", bytes(range(256)) * (18 * 4096))
        ds.PatientID, ds.PatientName, ds.Modality = f"BEHIND-{n}", "Behind^Big", "OT"
        ds.Rows, ds.Columns, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 8, 8, 7
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PixelRepresentation = 1, "MONOCHROME2", 0
        ds.PixelData = bytes(range(64))
        ds.file_meta = dicom_common.file_meta(ds.SOPClassUID, ds.SOPInstanceUID)
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
        path = tmp_path / f"behind{n}.dcm"
        path.write_bytes(out.getvalue())
        files.append((ds, path))
    (stowed, stowed_path), (sent, sent_path) = files
    res = dw.stow([stowed_path.read_bytes()])
    assert res.status == 200 and not res.failed, str(res)
    rep = dcmsend("127.0.0.1", pacs.dicom_port, pacs.dicom_aet, [sent_path])
    assert (rep.total, rep.success) == (1, 1), describe(rep.res)
    for ds, path in files:
        found = dw.qido("/studies", {"PatientID": ds.PatientID})
        assert [jval(m, "StudyInstanceUID") for m in found] == [ds.StudyInstanceUID]
        assert jval(found[0], "PatientName") == "Behind^Big"
        got = dw.instance_bytes(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
        # STOW keeps the file; C-STORE the data set (under a meta of ours).
        assert dataset_bytes(got) == dataset_bytes(path.read_bytes())
        assert ds is sent or got == path.read_bytes()


RLE = "1.2.840.10008.1.2.5"


def test_rle_frames_are_decoded_for_uncompressed_requests_and_rendered(pacs, dicom_fixtures):
    # RLE Lossless frames asked for uncompressed (and rendered images of
    # them) used to get 406; now each frame equals pydicom's decoding of the
    # sent file, for 8, 16 and 32 bits, gray, RGB and palette colour.
    dw = DicomWeb(pacs)
    client = dw.client()
    files = [f for f in dicom_fixtures.valid if f.transfer_syntax == RLE]
    files += [dicom_fixtures.by_rel("pydicom/rtdose_rle.dcm")]  # 32-bit, multi-frame, UN-coded header
    assert {32, 16, 8} <= {pydicom.dcmread(f.path, stop_before_pixels=True).BitsAllocated for f in files}
    for f in files:  # one at a time: some share a SOP Instance UID (newest wins)
        stow_ok(dw, [f.path])
        ds = pydicom.dcmread(f.path)
        arr = ds.pixel_array
        n = int(ds.get("NumberOfFrames") or 1)
        want = [np.ascontiguousarray(arr[k] if n > 1 else arr) for k in range(n)]
        want = [w.astype(w.dtype.newbyteorder("<")).tobytes() for w in want]
        got = client.retrieve_instance_frames(
            f.study_uid, f.series_uid, f.sop_uid, list(range(1, n + 1)), media_types=("application/octet-stream",)
        )
        assert got == want, f.rel
        # The Pixel Data's BulkDataURI asked for uncompressed gets the same
        # decoded frames (406 before: only /frames decoded).
        meta = client.retrieve_instance_metadata(f.study_uid, f.series_uid, f.sop_uid)
        uri = meta["7FE00010"]["BulkDataURI"]
        assert client.retrieve_bulkdata(uri, media_types=("application/octet-stream",)) == want, f.rel
        # Asked for single-part, the decoded frames are one value (they were
        # sent as multipart, a type not asked for).
        r = dw.s.get(uri, headers={"Accept": "application/octet-stream"}, timeout=dw.timeout)
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/octet-stream"), f.rel
        assert r.content == b"".join(want), f.rel
        if ds.PhotometricInterpretation == "MONOCHROME2" or ds.PhotometricInterpretation == "RGB" and ds.BitsAllocated <= 16:
            r = dw.get(f"/studies/{f.study_uid}/series/{f.series_uid}/instances/{f.sop_uid}/frames/{n}/rendered",
                       "image/png")
            assert r.status_code == 200, (f.rel, r.text[:300])
            assert Image.open(io.BytesIO(r.content)).size == (ds.Columns, ds.Rows)
    # The stored RLE is still there as is for who asks for it.
    f = files[0]
    (stored,) = client.retrieve_instance_frames(f.study_uid, f.series_uid, f.sop_uid, [1],
                                                media_types=(("image/x-dicom-rle", RLE),))
    assert stored == next(pydicom.encaps.generate_frames(pydicom.dcmread(f.path).PixelData, number_of_frames=1))


J2K = ("1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91")
JLS = ("1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81")


def _decoded_like_pydicom(pacs, files, colour=True) -> set:
    """Stores each of `files`, then checks its last frame asked for
    uncompressed against pydicom's decoding, its rendered frame and its
    thumbnails; (transfer syntax, samples per pixel) of those checked. With
    `colour` False, a colour file must be refused (406) instead."""
    dw = DicomWeb(pacs)
    client = dw.client()
    checked = set()
    for f in files:  # one at a time: some share a SOP Instance UID (newest wins)
        stow_ok(dw, [f.path])
        ds = pydicom.dcmread(f.path)
        try:
            arr = ds.pixel_array
        except RuntimeError:
            continue  # nothing to compare with: Pillow cannot read it either
        n = int(ds.get("NumberOfFrames") or 1)
        base = f"/studies/{f.study_uid}/series/{f.series_uid}/instances/{f.sop_uid}"
        if ds.SamplesPerPixel == 3 and not colour:
            r = dw.get(f"{base}/frames/{n}/rendered", "image/png")
            assert r.status_code == 406 and "colour" in r.text, (f.rel, r.status_code, r.text[:300])
            continue
        if ds.SamplesPerPixel == 1:
            got = client.retrieve_instance_frames(
                f.study_uid, f.series_uid, f.sop_uid, [n], media_types=("application/octet-stream",)
            )[0]
            dtype = {(8, 0): "<u1", (16, 0): "<u2", (16, 1): "<i2"}[(ds.BitsAllocated, ds.PixelRepresentation)]
            want = np.asarray(arr[n - 1] if n > 1 else arr).astype(int)
            assert np.array_equal(np.frombuffer(got, dtype=dtype).reshape(want.shape).astype(int), want), f.rel
        r = dw.get(f"{base}/frames/{n}/rendered", "image/png")
        assert r.status_code == 200, (f.rel, r.text[:300])
        img = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB")).astype(int)
        assert img.shape[:2] == (ds.Rows, ds.Columns), f.rel
        if ds.SamplesPerPixel == 3:
            want = np.asarray(arr[n - 1] if n > 1 else arr)
            if ds.PhotometricInterpretation.startswith("YBR_FULL"):
                want = pydicom.pixels.convert_color_space(want, ds.PhotometricInterpretation, "RGB")
            assert np.abs(img - want.astype(int)).mean() < 3, f.rel
        else:
            assert img.std() > 0, f.rel  # an image, not a blank
        r = dw.get(f"{base}/thumbnail", "image/jpeg")
        assert r.status_code == 200 and r.content.startswith(b"\xff\xd8"), (f.rel, r.status_code)
        # A frame's own thumbnail (PS3.18 10.4.1.1.5) was 404.
        r = dw.get(f"{base}/frames/{n}/thumbnail", "image/jpeg")
        assert r.status_code == 200 and r.content.startswith(b"\xff\xd8"), (f.rel, r.status_code)
        assert max(Image.open(io.BytesIO(r.content)).size) <= 128
        checked.add((f.transfer_syntax, int(ds.SamplesPerPixel)))
    return checked


def test_jpeg2000_frames_are_decoded_for_uncompressed_requests_and_rendered(pacs, dicom_fixtures):
    # JPEG 2000 frames asked for uncompressed, and rendered images and
    # thumbnails of them, were 406 ("retrieve the frames instead"): a
    # viewer without its own JPEG 2000 codec, or a work list showing
    # thumbnails, had nothing to show. Now grayscale frames equal pydicom's
    # decoding (OpenJPEG through Pillow) of the sent file, and the rendered
    # image, gray or colour, looks like it.
    dw = DicomWeb(pacs)
    files = [f for f in dicom_fixtures.valid if f.transfer_syntax in J2K]
    checked = _decoded_like_pydicom(pacs, files)
    assert checked >= {(J2K[0], 1), (J2K[1], 1), (J2K[0], 3)}, checked
    # A frame whose codestream claims another size than the header is an
    # error, not a decoded image of the wrong size.
    from pydicom.encaps import encapsulate
    from pydicom.uid import generate_uid

    img = Image.fromarray(np.arange(64 * 80, dtype=np.uint16).reshape(64, 80) % 4096)
    buf = io.BytesIO()
    img.save(buf, format="JPEG2000", no_jp2=True, irreversible=False)
    lying = _image("J2K-SIZE", 32, 80, 16, encapsulate([buf.getvalue()]), study=generate_uid(),
                   ts=J2K[0], vr="OB")
    assert dw.stow([lying]).status == 200
    ds = pydicom.dcmread(io.BytesIO(lying))
    r = dw.get(f"{_instance_path(ds)}/frames/1", "application/octet-stream")
    assert r.status_code == 500 and "80x64" in r.text and "80x32" in r.text, (r.status_code, r.text)



def test_jpeg_ls_gray_frames_are_decoded_like_pydicom_and_rendered(pacs, dicom_fixtures, tmp_path):
    # JPEG-LS (the lossless compression many archives use for CT and MR)
    # was 406 for frames asked for uncompressed, rendered images and
    # thumbnails, and a failed sub-operation for a C-MOVE peer without it.
    # Gray frames, lossless and near-lossless, 8 and 16 bits, signed too,
    # now equal pydicom's decoding (libjpeg); colour JPEG-LS is refused
    # with a reason.
    import dataclasses

    from pydicom.uid import generate_uid

    files = [f for f in dicom_fixtures.valid if f.transfer_syntax in JLS]
    # pydicom's near-lossless samples lack Study and Series Instance UIDs:
    # copies that have them.
    for f in dicom_fixtures.all:
        if f.kind == "broken" and f.transfer_syntax in JLS:
            ds = pydicom.dcmread(f.path)
            ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
            path = tmp_path / f.path.name
            ds.save_as(path, enforce_file_format=True)
            files.append(dataclasses.replace(f, path=path, kind="valid", study_uid=ds.StudyInstanceUID,
                                             series_uid=ds.SeriesInstanceUID))
    checked = _decoded_like_pydicom(pacs, files, colour=False)
    assert checked >= {(JLS[0], 1), (JLS[1], 1)}, checked
    signed = [f for f in files if pydicom.dcmread(f.path, stop_before_pixels=True).PixelRepresentation == 1]
    assert signed, [f.rel for f in files]

def test_palette_colour_images_render_through_their_tables(pacs, dicom_fixtures):
    # PALETTE COLOR images (ultrasound, secondary capture) were 406: now
    # each frame renders as pydicom maps it through the red, green and blue
    # tables: plain or segmented, 8 or 16 bits, little or big endian, RLE.
    from pydicom.pixels import apply_color_lut

    dw = DicomWeb(pacs)
    files = [f for f in dicom_fixtures.valid
             if pydicom.dcmread(f.path, stop_before_pixels=True).get("PhotometricInterpretation") == "PALETTE COLOR"]
    rels = {f.rel for f in files}
    assert {"pydicom-data/gdcm-US-ALOKA-16.dcm", "pydicom-data/OBXXXX1A_rle_2frame.dcm",
            "pydicom-data/OBXXXX1A_expb.dcm"} <= rels, rels
    for f in files:  # one at a time: some share a SOP Instance UID (newest wins)
        stow_ok(dw, [f.path])
        ds = pydicom.dcmread(f.path)
        if ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.2":
            # pydicom 3.0 reads whole tables' words little endian whatever
            # the data set's byte order (segmented ones it reads right):
            # give it them so.
            for name in [f"{c}PaletteColorLookupTableData" for c in ("Red", "Green", "Blue")]:
                if name in ds:
                    ds[name].value = np.frombuffer(ds[name].value, ">u2").astype("<u2").tobytes()
        rgb = apply_color_lut(ds.pixel_array, ds)
        if rgb.dtype == np.uint16:
            rgb = rgb >> 8
        n = int(ds.get("NumberOfFrames") or 1)
        for k in range(1, n + 1):
            r = dw.get(f"/studies/{f.study_uid}/series/{f.series_uid}/instances/{f.sop_uid}/frames/{k}/rendered",
                       "image/png")
            assert r.status_code == 200, (f.rel, r.text[:300])
            got = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB")).astype(int)
            want = (rgb[k - 1] if n > 1 else rgb).astype(int)
            assert got.shape == want.shape and np.abs(got - want).max() <= 1, f.rel


def test_enhanced_images_render_with_their_functional_group_window(pacs, dicom_fixtures):
    # An Enhanced CT gives its rescale (intercept -1024) and window (49/102)
    # only in the Shared Functional Groups: the rendering ignored them and
    # stretched min..max, and a window asked for in HU missed by 1,024.
    f = dicom_fixtures.by_rel("pydicom-data/eCT_Supplemental.dcm")
    dw = DicomWeb(pacs)
    stow_ok(dw, [f.path])
    ds = pydicom.dcmread(f.path)
    shared = ds.SharedFunctionalGroupsSequence[0]
    voi = shared.FrameVOILUTSequence[0]
    icpt = float(shared.PixelValueTransformationSequence[0].RescaleIntercept)
    base = f"/studies/{f.study_uid}/series/{f.series_uid}/instances/{f.sop_uid}/frames/2/rendered"

    def linear(c, w):  # PS3.3 C.11.2.1.2.1
        x = ds.pixel_array[1].astype(float) + icpt
        y = ((x - (c - 0.5)) / (w - 1) + 0.5) * 255
        return np.clip(np.where(x <= c - 0.5 - (w - 1) / 2, 0, np.where(x > c - 0.5 + (w - 1) / 2, 255, y)), 0, 255)

    for query, (c, w) in (("", (float(voi.WindowCenter), float(voi.WindowWidth))), ("?window=-600,1500", (-600, 1500))):
        r = dw.get(base + query, "image/png")
        assert r.status_code == 200, r.text[:300]
        got = np.asarray(Image.open(io.BytesIO(r.content))).astype(float)
        assert np.abs(got - linear(c, w)).max() <= 1, (query, np.abs(got - linear(c, w)).max())


@pytest.mark.parametrize("ts", [None, "1.2.840.10008.1.2.1.99"], ids=["explicit", "deflated"])
def test_float_pixel_data_renders_by_its_values(pacs, ts):
    # A Parametric Map's Float Pixel Data (7FE0,0008) was rendered as if the
    # float bit patterns were integers: 0.25 came out at grey 250. Deflated,
    # its frames were 404 and its rendering 406 ("no pixel data").
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid

    import dicom_common

    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.30", generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID, ds.Modality = "FLOAT-1", "OT"
    ds.Rows = ds.Columns = 16
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.BitsAllocated, ds.NumberOfFrames = 1, "MONOCHROME2", 32, 1
    ramp = np.linspace(0.0, 1.0, 256, dtype=np.float32).reshape(16, 16)
    ds.FloatPixelData = ramp.tobytes()
    ds.file_meta = dicom_common.file_meta(ds.SOPClassUID, ds.SOPInstanceUID)
    if ts:
        ds.file_meta.TransferSyntaxUID = ts
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    assert pydicom.dcmread(io.BytesIO(out.getvalue())).file_meta.TransferSyntaxUID == (ts or "1.2.840.10008.1.2.1")
    dw = DicomWeb(pacs)
    assert dw.stow([out.getvalue()]).status == 200
    base = _instance_path(ds)
    r = dw.get(f"{base}/rendered", "image/png")
    assert r.status_code == 200, r.text[:300]
    got = np.asarray(Image.open(io.BytesIO(r.content))).astype(float)
    assert np.abs(got - ramp * 255).max() <= 1, np.abs(got - ramp * 255).max()
    r = dw.get(f"{base}/frames/1", "application/octet-stream")
    assert r.status_code == 200 and r.content == ramp.tobytes(), (r.status_code, r.text[:200])


def test_an_encapsulated_pdf_is_sent_as_made_by_bulk_data_and_wado_uri(pacs):
    # A 193-byte PDF is stored with a pad byte (an even value length). Its
    # bulk data asked for as application/pdf came with the pad (PS3.3
    # C.24.2.1: Encapsulated Document Length is the length before it), and
    # WADO-URI contentType=application/pdf was 406.
    pdf = b"%PDF-1.4\n" + b"x" * 177 + b"%%EOF\n\n"
    assert len(pdf) == 193
    ds, data = _encapsulated_pdf(pdf, "PDF-ODD")
    dw = DicomWeb(pacs)
    assert dw.stow([data]).status == 200
    base = _instance_path(ds)
    r = dw.get(f"{base}/bulkdata/00420011", "application/pdf")
    assert r.status_code == 200 and r.content == pdf, (r.status_code, len(r.content))
    # As bulk data (octet-stream) it is the value, pad included.
    r = dw.get(f"{base}/bulkdata/00420011", "application/octet-stream")
    assert r.status_code == 200 and r.content == pdf + b"\0", len(r.content)
    ids = {"requestType": "WADO", "studyUID": ds.StudyInstanceUID, "seriesUID": ds.SeriesInstanceUID,
           "objectUID": ds.SOPInstanceUID}
    r = dw.s.get(dw.base + "/wado", params={**ids, "contentType": "application/pdf"}, timeout=dw.timeout)
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf" and r.content == pdf
    r = dw.s.get(dw.base + "/wado", params={**ids, "contentType": "text/xml"}, timeout=dw.timeout)
    assert r.status_code == 406
    r = dw.s.get(dw.base + "/wado", params=ids, timeout=dw.timeout)
    assert r.status_code == 200 and r.headers["content-type"] == "application/dicom"
    # Its rendered form is the document (PS3.18 8.3.5.1.3); it was 406
    # ("rendered images are sent as image/jpeg or image/png").
    for accept in ("application/pdf", "*/*"):
        r = dw.get(f"{base}/rendered", accept)
        assert r.status_code == 200 and r.headers["content-type"] == "application/pdf" and r.content == pdf, accept
        # Saved under its UID, not as "rendered" (as OHIF titled it).
        want = f'inline; filename="{ds.SOPInstanceUID}.pdf"'
        assert r.headers.get("content-disposition") == want, r.headers
    assert dw.get(f"{base}/rendered", "image/jpeg").status_code == 406
    # Without Encapsulated Document Length (older objects omit it), the
    # trailing NUL of a PDF is the pad too.
    ds, data = _encapsulated_pdf(pdf, "PDF-ODD", stated_length=False)
    assert dw.stow([data]).status == 200
    r = dw.get(f"{_instance_path(ds)}/bulkdata/00420011", "application/pdf")
    assert r.status_code == 200 and r.content == pdf, (r.status_code, len(r.content))


def test_matching_qido_does_not_perform_is_named_in_the_words_of_ps3_18(pacs):
    # emptyvaluematching got the generic "not supported for matching" warning,
    # even =false; PS3.18 8.3.4.5 words the warning for it when it is asked for.
    dw = DicomWeb(pacs)
    r = dw.s.get(dw.base + "/studies", params={"emptyvaluematching": "true"}, timeout=dw.timeout)
    assert r.status_code == 200, r.text
    assert "The emptyvaluematching parameter is not supported. Empty Value Matching has not been performed." in \
        r.headers.get("Warning", ""), r.headers
    for params in ({"emptyvaluematching": "false"}, {"multiplevaluematching": "false"}):
        r = dw.s.get(dw.base + "/studies", params=params, timeout=dw.timeout)
        assert r.status_code == 200 and "Warning" not in r.headers, (params, r.headers)
    r = dw.s.get(dw.base + "/studies", params={"multiplevaluematching": "true"}, timeout=dw.timeout)
    assert "Multiple Value Matching has not been performed." in r.headers.get("Warning", "")
    r = dw.s.get(dw.base + "/studies", params={"emptyvaluematching": "maybe"}, timeout=dw.timeout)
    assert r.status_code == 400


def test_frames_of_an_image_with_no_rows_say_so(pacs):
    # Rows = 0: frames, rendered and thumbnail said "bits not byte-aligned".
    data = _image("ROWS-0", 0, 4, 8, bytes(16))
    ds = pydicom.dcmread(io.BytesIO(data))
    dw = DicomWeb(pacs)
    assert dw.stow([data]).status == 200
    base = _instance_path(ds)
    r = dw.get(f"{base}/frames/1", 'multipart/related; type="application/octet-stream"')
    assert r.status_code == 501 and "Rows, Columns or Samples per Pixel" in r.text, r.text


def test_a_study_forgets_what_an_instance_gave_it_when_the_instance_leaves(pacs):
    # A study's patient attributes are its latest instance's. When that
    # instance left (re-sent under a corrected Study Instance UID, or
    # deleted), the study kept them: a misfiled image corrected, and the
    # patient's remaining images still listed under the other patient,
    # not found by their own Patient ID (day-2 tester, against Orthanc).
    from pydicom.uid import generate_uid

    study, series = generate_uid(), generate_uid()

    def instance(name, pid, sop, st=study, se=series):
        ds = pydicom.dcmread(io.BytesIO(named_instance("ISO_IR 100", name, pid, "CHEST")))
        ds.StudyInstanceUID, ds.SeriesInstanceUID = st, se
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        return buf.getvalue()

    sops = [generate_uid() for _ in range(3)]
    dw = DicomWeb(pacs)
    assert dw.stow([instance("ALPHA^ONE", "A1", s) for s in sops]).status == 200
    # The third one misfiled under patient B2 (the latest instance: the study follows it) ...
    assert dw.stow([instance("BETA^TWO", "B2", sops[2])]).status == 200
    assert [jval(s, "PatientID") for s in dw.qido("/studies", {"StudyInstanceUID": study})] == ["B2"]
    # ... then corrected into a study of its own.
    other = generate_uid()
    assert dw.stow([instance("BETA^TWO", "B2", sops[2], other, generate_uid())]).status == 200
    (found,) = dw.qido("/studies", {"PatientID": "A1", "includefield": "PatientName"})
    assert jval(found, "StudyInstanceUID") == study and jval(found, "NumberOfStudyRelatedInstances") == 2
    assert found["00100010"]["Value"] == [{"Alphabetic": "ALPHA^ONE"}]
    assert [jval(s, "StudyInstanceUID") for s in dw.qido("/studies", {"PatientID": "B2"})] == [other]
    # A wrongly edited re-send, undone by deleting it.
    assert dw.stow([instance("HOLD^CHANGE", "A1", sops[1])]).status == 200
    assert dw.qido("/studies", {"PatientName": "HOLD*"}) != []
    assert dw.delete(f"/studies/{study}/series/{series}/instances/{sops[1]}").status_code == 204
    assert dw.qido("/studies", {"PatientName": "HOLD*"}) == []
    (found,) = dw.qido("/studies", {"PatientName": "ALPHA*"})
    assert jval(found, "NumberOfStudyRelatedInstances") == 1
