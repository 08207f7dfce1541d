"""DIMSE against the real server with two independent peers: DCMTK (echoscu,
dcmsend, storescu, findscu, movescu, getscu, storescp) and pynetdicom.

Everything that goes in must come out byte-identical: for DCMTK senders the
reference is what the same command put on the wire (captured by
dicom_helpers.capture_wire), for pynetdicom's chunked send it is the file's
own bytes after the meta group. Retrieval is via WADO-RS (transfer-syntax=*),
C-MOVE to storescp/pynetdicom and C-GET.
"""

from __future__ import annotations

import io
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from pynetdicom import build_role, evt
from pynetdicom.sop_class import (
    CTImageStorage,
    MRImageStorage,
    PatientRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

import dicom_gen
import raw_dimse as raw
from dicom_helpers import (
    MOVE_DEST_UNKNOWN,
    SUCCESS,
    UNCOMPRESSED,
    WARNING_STATUSES,
    DicomWeb,
    StorageSCP,
    StoreSCPProcess,
    c_find,
    capture_wire,
    compare_with_capture,
    dcmsend,
    dcmtk,
    describe,
    ensure_storage_classes,
    ident,
    jval,
    link_files,
    named_instance,
    scu,
    send_chunked,
    sop_uid_of,
    stored_problems,
    stow_ok,
)
from dicom_part10 import dataset_bytes, split_part10

JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
RLE = "1.2.840.10008.1.2.5"
JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"


def _ok_statuses(statuses: dict) -> None:
    bad = {Path(p).name: s for p, s in statuses.items() if s != SUCCESS}
    assert not bad, f"C-STORE failed: {bad}"


# ---------------------------------------------------------------- shared archive


@dataclass
class Archive:
    srv: object
    storescp: StoreSCPProcess
    pyscp: StorageSCP
    gen: list  # dicom_gen.Instance, stored by chunked C-STORE
    extra: list  # compressed fixtures (Fixture), stored the same way

    def by_study(self, study_uid):
        return [i for i in self.gen if i.study_uid == study_uid]


@pytest.fixture(scope="module")
def archive(module_pacs_factory, tmp_path_factory, gen_studies, dicom_fixtures):
    """A server loaded over DIMSE (pynetdicom chunked: wire bytes == file bytes)
    with the generated studies plus a JPEG baseline, a JPEG 2000 and an RLE
    fixture, and two known C-MOVE destinations: MOVEDEST (DCMTK storescp +B)
    and PYDEST (pynetdicom, accepts every transfer syntax)."""
    uv = dicom_fixtures.unique_valid
    extra = [
        dicom_fixtures.first(lambda f, ts=ts: f.transfer_syntax == ts and f.size < 300_000, uv)
        for ts in (JPEG_BASELINE, J2K_LOSSLESS, RLE)
    ]
    extra = [f for f in extra if f is not None]
    classes = {f.sop_class for f in extra} | {CTImageStorage, MRImageStorage}
    storescp = StoreSCPProcess(tmp_path_factory.mktemp("movedest") / "in", ae_title="MOVEDEST")
    pyscp = StorageSCP("PYDEST", sop_classes=classes)
    try:
        srv = module_pacs_factory({"FULCRUM_DICOM_NODES": f"{storescp.node},{pyscp.node}"})
        statuses = send_chunked(
            "127.0.0.1", srv.dicom_port, srv.dicom_aet, [i.path for i in gen_studies] + [f.path for f in extra]
        )
        _ok_statuses(statuses)
        yield Archive(srv, storescp, pyscp, gen_studies, extra)
    finally:
        storescp.stop()
        pyscp.stop()


# ---------------------------------------------------------------- C-ECHO


def test_echoscu_and_pynetdicom_echo(archive):
    srv = archive.srv
    res = dcmtk("echoscu", "-v", "-aet", "TESTSCU", "-aec", srv.dicom_aet, "127.0.0.1", srv.dicom_port)
    assert res.returncode == 0, describe(res)
    ae = scu("PYSCU", [(Verification, None)])
    assoc = ae.associate("127.0.0.1", srv.dicom_port, ae_title=srv.dicom_aet)
    assert assoc.is_established
    assert assoc.send_c_echo().Status == SUCCESS
    assoc.release()


def test_dimse_and_dicomweb_requests_are_counted_in_metrics(pacs, gen_studies):
    """fulcrum_requests_total covers DIMSE and DICOMweb, not only S3, so an
    operator sees C-STORE and STOW failures on a dashboard."""
    import urllib.request

    def count(protocol, op, status):
        with urllib.request.urlopen(pacs.http_url + "/metrics", timeout=10) as r:
            text = r.read().decode()
        want = f'fulcrum_requests_total{{protocol="{protocol}",op="{op}",status="{status}"}}'
        return sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines() if l.startswith(want))

    before = [count("dimse", "C-ECHO", "0000"), count("dicomweb", "STOW", "200"), count("dicomweb", "QIDO", "200")]
    res = dcmtk("echoscu", "-aet", "TESTSCU", "-aec", pacs.dicom_aet, "127.0.0.1", pacs.dicom_port)
    assert res.returncode == 0, describe(res)
    dw = DicomWeb(pacs)
    assert dw.stow([gen_studies[0].read()]).status == 200
    dw.qido("/studies", {})
    after = [count("dimse", "C-ECHO", "0000"), count("dicomweb", "STOW", "200"), count("dicomweb", "QIDO", "200")]
    assert [a - b for a, b in zip(after, before)] == [1, 1, 1], (before, after)


# ---------------------------------------------------------------- C-STORE in


def test_dcmsend_fixtures_and_studies_byte_exact(pacs, dicom_fixtures, gen_studies, tmp_path):
    """dcmsend of every valid fixture (one per SOP UID, each in its own TS) and
    the generated studies; every stored dataset equals what dcmsend sent."""
    files = [f.path for f in dicom_fixtures.unique_valid] + [i.path for i in gen_studies]
    src = link_files(tmp_path / "in", files)
    classes = {f.sop_class for f in dicom_fixtures.unique_valid} | {CTImageStorage, MRImageStorage}

    def send(host, port, aet):
        rep = dcmsend(host, port, aet, [src])
        assert rep.total == rep.success == len(files), describe(rep.res)

    capture = capture_wire(send, classes)
    rep = dcmsend("127.0.0.1", pacs.dicom_port, pacs.dicom_aet, [src])
    assert rep.total == len(files) and rep.success == len(files), describe(rep.res) + "\n" + pacs.log_tail(30)
    dw = DicomWeb(pacs)
    where = dw.locate()
    assert len(where) == len(files), f"QIDO lists {len(where)} instances, {len(files)} sent"
    problems = compare_with_capture(dw, capture, where)
    assert not problems, "\n".join(problems[:30])
    res = pacs.verify()
    assert res.returncode == 0, res.stdout + res.stderr
    # The same files imported afterwards: an instance whose dataset DCMTK
    # sent as it is in the file is the one received (whatever file meta each
    # copy has); one DCMTK re-encoded (other syntax, group lengths dropped)
    # is other bytes, a new version.
    reencoded = 0
    for f in files:
        data = Path(f).read_bytes()
        sop = sop_uid_of(data)
        stored = dw.instance_bytes(*where[sop], sop)
        reencoded += stored[split_part10(stored).meta_end :] != data[split_part10(data).meta_end :]
    assert reencoded < len(files) // 2, reencoded
    pacs.stop()
    res = pacs.dicom_cli("import", src)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert f"0 new, {reencoded} replaced, {len(files) - reencoded} already stored" in out, out


@pytest.mark.slow
def test_dcmsend_every_layer_newest_wins(pacs, dicom_fixtures, tmp_path):
    """All 200+ valid fixtures: layer by layer (same SOP UID, other bytes/TS),
    each layer replaces the previous version and reads back byte-exact."""
    dw = DicomWeb(pacs)
    classes = {f.sop_class for f in dicom_fixtures.valid}
    for n, layer in enumerate(dicom_fixtures.layers):
        src = link_files(tmp_path / f"layer{n}", [f.path for f in layer])
        capture = capture_wire(lambda h, p, a, src=src: dcmsend(h, p, a, [src]), classes)
        rep = dcmsend("127.0.0.1", pacs.dicom_port, pacs.dicom_aet, [src])
        assert rep.success == len(layer), describe(rep.res)
        problems = compare_with_capture(dw, capture, dw.locate())
        assert not problems, f"layer {n}: " + "\n".join(problems[:20])
    assert len(dw.locate()) == len(dicom_fixtures.unique_valid)


def _storescu_cases(dicom_fixtures, gen_studies):
    def distinct(ts, n=3):  # files of one TS with distinct SOP Instance UIDs
        out, seen = [], set()
        for f in sorted(dicom_fixtures.valid, key=lambda f: (f.size, f.rel)):
            if f.transfer_syntax == ts and f.sop_uid not in seen:
                seen.add(f.sop_uid)
                out.append(f.path)
        return out[:n]

    return {
        "default": ([], [i.path for i in gen_studies[:3]], UNCOMPRESSED),
        "implicit-only(-xi)": (["-xi"], [i.path for i in gen_studies[3:6]], UNCOMPRESSED),
        "jpeg-lossless(-xs)": (["-xs"], distinct(JPEG_LOSSLESS_SV1), UNCOMPRESSED + (JPEG_LOSSLESS_SV1,)),
        "rle(-xr)": (["-xr"], distinct(RLE), UNCOMPRESSED + (RLE,)),
    }


@pytest.mark.parametrize("case", ["default", "implicit-only(-xi)", "jpeg-lossless(-xs)", "rle(-xr)"])
def test_storescu_transfer_syntax_options(pacs, dicom_fixtures, gen_studies, case):
    """storescu with its default proposal, -xi (converts to implicit VR), -xs
    (JPEG lossless files) and -xr (RLE files): stored dataset == wire bytes."""
    opts, files, prefer = _storescu_cases(dicom_fixtures, gen_studies)[case]
    assert files, f"no fixture for {case}"
    classes = {pydicom.dcmread(f, stop_before_pixels=True).SOPClassUID for f in files}
    ensure_storage_classes(classes)

    def run(host, port, aet):
        res = dcmtk("storescu", "-v", "-aet", "TESTSCU", "-aec", aet, *opts, host, port, *files)
        ok = res.stdout.count("Received Store Response (Success)") + res.stderr.count(
            "Received Store Response (Success)"
        )
        assert res.returncode == 0 and ok == len(files), describe(res)

    capture = capture_wire(run, classes, prefer)
    run("127.0.0.1", pacs.dicom_port, pacs.dicom_aet)
    dw = DicomWeb(pacs)
    problems = compare_with_capture(dw, capture, dw.locate())
    assert not problems, "\n".join(problems)
    if opts == ["-xi"]:
        sop = next(iter(capture["1.2.840.10008.1.2"]))
        where = dw.locate()[sop]
        assert split_part10(dw.instance_bytes(*where, sop)).transfer_syntax == "1.2.840.10008.1.2"


def test_pynetdicom_chunked_send_byte_exact(pacs, dicom_fixtures):
    """Each representative fixture in its own TS (one context per SOP class/TS
    pair): the stored dataset is the file's dataset, byte for byte."""
    files = [f.path for f in dicom_fixtures.representative(per_ts=3)]
    _ok_statuses(send_chunked("127.0.0.1", pacs.dicom_port, pacs.dicom_aet, files))
    problems = stored_problems(DicomWeb(pacs), files)
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_pynetdicom_chunked_send_all_fixtures_byte_exact(pacs, dicom_fixtures):
    files = [f.path for f in dicom_fixtures.unique_valid]
    _ok_statuses(send_chunked("127.0.0.1", pacs.dicom_port, pacs.dicom_aet, files))
    problems = stored_problems(DicomWeb(pacs), files)
    assert not problems, "\n".join(problems[:30])


def test_concurrent_associations(pacs, tmp_path):
    """4 associations storing at once (10 instances each), all succeed and all
    read back byte-exact."""
    sets = [
        dicom_gen.generate(
            tmp_path / f"c{i}",
            seed=40 + i,
            patients=1,
            studies_per_patient=1,
            series_per_study=2,
            instances_per_series=5,
            patient_id_prefix=f"CC{i}",
        )
        for i in range(4)
    ]
    results: dict[int, dict] = {}

    def worker(i):
        results[i] = send_chunked(
            "127.0.0.1", pacs.dicom_port, pacs.dicom_aet, [x.path for x in sets[i]], calling=f"PYSCU{i}"
        )

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert len(results) == 4, "a sender thread did not finish"
    for i in range(4):
        _ok_statuses(results[i])
        matches, final = c_find(
            pacs, "S", ident(QueryRetrieveLevel="IMAGE", StudyInstanceUID=sets[i][0].study_uid, SOPInstanceUID="")
        )
        assert final == SUCCESS and len(matches) == 10, (i, len(matches), final)
    problems = stored_problems(DicomWeb(pacs), [x.path for s in sets for x in s])
    assert not problems, "\n".join(problems)


def test_small_pdus_both_ways(pacs, dicom_fixtures, tmp_path):
    """PDU size negotiation: a 2 MB image sent and fetched back with 4 KiB
    maximum PDUs (pynetdicom in, DCMTK getscu out) arrives unchanged."""
    big = dicom_fixtures.first(
        lambda f: f.transfer_syntax == "1.2.840.10008.1.2.1" and 1_500_000 < f.size < 3_000_000
    ) or max(dicom_fixtures.unique_valid, key=lambda f: f.size)
    st = send_chunked("127.0.0.1", pacs.dicom_port, pacs.dicom_aet, [big.path], max_pdu=4096)
    assert st == {big.path: SUCCESS}, st
    out = tmp_path / "get"
    out.mkdir()
    keys = [
        "QueryRetrieveLevel=IMAGE",
        f"StudyInstanceUID={big.study_uid}",
        f"SeriesInstanceUID={big.series_uid}",
        f"SOPInstanceUID={big.sop_uid}",
    ]
    res = _qr_scu("getscu", pacs, keys, "-S", "-pdu", "4096", "+B", "-od", out)
    assert res.returncode == 0, describe(res)
    files = list(out.iterdir())
    assert len(files) == 1, describe(res)
    assert dataset_bytes(files[0].read_bytes()) == dataset_bytes(big.read())


# ---------------------------------------------------------------- association policy


def test_calling_ae_allow_list(pacs_factory):
    srv = pacs_factory({"FULCRUM_DICOM_ALLOWED_AETS": "GOODSCU,OTHERSCU"})
    bad = scu("BADSCU", [(Verification, None)]).associate("127.0.0.1", srv.dicom_port, ae_title=srv.dicom_aet)
    assert bad.is_rejected, "association from a calling AE not on the allow-list was not rejected"
    good = scu("GOODSCU", [(Verification, None)]).associate("127.0.0.1", srv.dicom_port, ae_title=srv.dicom_aet)
    assert good.is_established
    assert good.send_c_echo().Status == SUCCESS
    good.release()
    res = dcmtk("echoscu", "-aet", "BADSCU", "-aec", srv.dicom_aet, "127.0.0.1", srv.dicom_port)
    assert res.returncode != 0, describe(res)
    res = dcmtk("echoscu", "-aet", "OTHERSCU", "-aec", srv.dicom_aet, "127.0.0.1", srv.dicom_port)
    assert res.returncode == 0, describe(res)


def test_c_store_of_non_storage_sop_class_fails_and_association_goes_on(pacs, gen_studies):
    """A C-STORE on the Verification and on a C-FIND presentation context (both
    accepted, neither a storage SOP class) gets a failure status; the same
    association then echoes and stores a real image; nothing bogus is indexed."""
    ae = scu(
        "PYSCU", [(Verification, None), (StudyRootQueryRetrieveInformationModelFind, None), (CTImageStorage, None)]
    )
    assoc = ae.associate("127.0.0.1", pacs.dicom_port, ae_title=pacs.dicom_aet)
    assert assoc.is_established
    ct = next(i for i in gen_studies if i.modality == "CT")
    bogus = []
    try:
        for n, cls in enumerate((Verification, StudyRootQueryRetrieveInformationModelFind)):
            ds = pydicom.dcmread(ct.path)
            ds.SOPClassUID = cls
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = dicom_gen.uid(99, "bogus", n)
            ds.file_meta.MediaStorageSOPClassUID = cls
            bogus.append(ds.SOPInstanceUID)
            st = assoc.send_c_store(ds)
            assert st and "Status" in st, f"no C-STORE response for SOP class {cls}"
            assert st.Status != SUCCESS and st.Status not in WARNING_STATUSES, (
                f"C-STORE with SOP class {cls} answered 0x{st.Status:04X}; expected a failure (e.g. 0x0122)"
            )
            assert assoc.is_established, "association ended after a refused C-STORE"
        assert assoc.send_c_echo().Status == SUCCESS
        assert assoc.send_c_store(pydicom.dcmread(ct.path)).Status == SUCCESS
    finally:
        if assoc.is_established:
            assoc.release()
    found = DicomWeb(pacs).locate()
    assert ct.sop_uid in found and not set(bogus) & set(found), found


# ---------------------------------------------------------------- C-FIND


def _qr_scu(tool: str, srv, keys: list[str], *opts):
    """DCMTK's findscu, movescu or getscu as TESTSCU against srv, with the
    query keys `keys` ("Keyword=value") and the tool's options `opts`."""
    k_args = [a for k in keys for a in ("-k", k)]
    return dcmtk(tool, "-v", *opts, "-aet", "TESTSCU", "-aec", srv.dicom_aet, *k_args, "127.0.0.1", srv.dicom_port)


def _findscu(srv, model: str, keys: list[str], out: Path) -> list[pydicom.Dataset]:
    out.mkdir(parents=True, exist_ok=True)
    res = _qr_scu("findscu", srv, keys, model, "-X", "-od", out)
    assert res.returncode == 0, describe(res)
    return [pydicom.dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]


def test_findscu_patient_and_study_root_every_level(archive, tmp_path):
    srv, gen = archive.srv, archive.gen
    pids = sorted({i.patient_id for i in gen})
    p0 = [i for i in gen if i.patient_id == pids[0]]
    st0 = sorted({i.study_uid for i in p0})
    s0 = [i for i in p0 if i.study_uid == st0[0]]
    se0 = sorted({i.series_uid for i in s0})
    q = iter(range(100))

    def find(model, *keys):
        return _findscu(srv, model, list(keys), tmp_path / f"q{next(q)}")

    def find_in_both_roots(level, *keys, pid_in_study_root=False):
        """(model, answer) of one query under Patient Root (with PatientID) and Study Root."""
        pid = [f"PatientID={pids[0]}"]
        for model, extra in (("-P", pid), ("-S", pid if pid_in_study_root else [])):
            yield model, find(model, f"QueryRetrieveLevel={level}", *extra, *keys)

    # PATIENT level (Patient Root), wildcard on PatientID, related counts.
    r = find(
        "-P",
        "QueryRetrieveLevel=PATIENT",
        f"PatientID={pids[0][:-1]}?",
        "PatientName",
        "NumberOfPatientRelatedStudies",
        "NumberOfPatientRelatedInstances",
    )
    assert sorted(x.PatientID for x in r) == pids
    one = next(x for x in r if x.PatientID == pids[0])
    assert str(one.PatientName) == p0[0].patient_name
    assert int(one.NumberOfPatientRelatedStudies) == len(st0)
    assert int(one.NumberOfPatientRelatedInstances) == len(p0)
    r = find("-P", "QueryRetrieveLevel=PATIENT", "PatientID", "PatientName=DOE*")
    names = {str(x.PatientName) for x in r}
    assert "DOE^JOHN" in names and not any(n.upper().startswith("SMITH") for n in names), names

    # STUDY level, Patient Root and Study Root, with counts and ModalitiesInStudy.
    study_keys = ["StudyInstanceUID", "StudyDate", "AccessionNumber", "ModalitiesInStudy"]
    study_keys += ["NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"]
    for model, r in find_in_both_roots("STUDY", *study_keys, pid_in_study_root=True):
        assert sorted(x.StudyInstanceUID for x in r) == st0, model
        for x in r:
            insts = [i for i in p0 if i.study_uid == x.StudyInstanceUID]
            assert x.AccessionNumber == insts[0].accession and x.StudyDate == insts[0].study_date
            assert int(x.NumberOfStudyRelatedSeries) == len({i.series_uid for i in insts})
            assert int(x.NumberOfStudyRelatedInstances) == len(insts)
            mods = (
                x.ModalitiesInStudy
                if isinstance(x.ModalitiesInStudy, (list, pydicom.multival.MultiValue))
                else [x.ModalitiesInStudy]
            )
            assert sorted(mods) == sorted({i.modality for i in insts})

    # Date range and exact accession (Study Root).
    in_2020 = sorted({i.study_uid for i in gen if "20200101" <= i.study_date <= "20201231"})
    assert in_2020, "generator no longer spans 2020"
    r = find("-S", "QueryRetrieveLevel=STUDY", "StudyDate=20200101-20201231", "StudyInstanceUID")
    assert sorted(x.StudyInstanceUID for x in r) == in_2020
    r = find("-S", "QueryRetrieveLevel=STUDY", f"AccessionNumber={s0[0].accession}", "StudyInstanceUID")
    assert [x.StudyInstanceUID for x in r] == [st0[0]]

    # SERIES level.
    series_keys = ["SeriesInstanceUID", "Modality", "SeriesNumber", "NumberOfSeriesRelatedInstances"]
    for model, r in find_in_both_roots("SERIES", f"StudyInstanceUID={st0[0]}", *series_keys):
        assert sorted(x.SeriesInstanceUID for x in r) == se0, model
        for x in r:
            insts = [i for i in s0 if i.series_uid == x.SeriesInstanceUID]
            assert x.Modality == insts[0].modality and int(x.SeriesNumber) == insts[0].series_number
            assert int(x.NumberOfSeriesRelatedInstances) == len(insts)
    r = find("-S", "QueryRetrieveLevel=SERIES", f"StudyInstanceUID={st0[0]}", "Modality=CT", "SeriesInstanceUID")
    assert sorted(x.SeriesInstanceUID for x in r) == sorted({i.series_uid for i in s0 if i.modality == "CT"})

    # IMAGE level.
    want = sorted(i.sop_uid for i in s0 if i.series_uid == se0[0])
    image_keys = [f"StudyInstanceUID={st0[0]}", f"SeriesInstanceUID={se0[0]}", "SOPInstanceUID", "SOPClassUID"]
    for model, r in find_in_both_roots("IMAGE", *image_keys, "InstanceNumber"):
        assert sorted(x.SOPInstanceUID for x in r) == want, model
        assert all(x.SOPClassUID in (CTImageStorage, MRImageStorage) for x in r)
    # No match is an empty answer, not an error.
    assert find("-S", "QueryRetrieveLevel=STUDY", "PatientID=NO-SUCH-PATIENT", "StudyInstanceUID") == []


def test_pynetdicom_c_find(archive):
    gen = archive.gen
    pid = gen[-1].patient_id
    matches, final = c_find(
        archive.srv,
        "P",
        ident(QueryRetrieveLevel="PATIENT", PatientID=pid, PatientName="", PatientBirthDate="", PatientSex=""),
    )
    assert final == SUCCESS and len(matches) == 1
    assert matches[0].PatientBirthDate == gen[-1].birth_date and matches[0].PatientSex == gen[-1].sex
    matches, final = c_find(
        archive.srv,
        "S",
        ident(
            QueryRetrieveLevel="STUDY",
            PatientID=pid,
            StudyInstanceUID="",
            StudyDescription="",
            ReferringPhysicianName="",
            InstanceAvailability="",
        ),
    )
    assert final == SUCCESS
    assert sorted(m.StudyInstanceUID for m in matches) == sorted({i.study_uid for i in gen if i.patient_id == pid})
    assert {m.InstanceAvailability for m in matches} == {"ONLINE"}
    # UID list matching at SERIES level.
    series = sorted({i.series_uid for i in gen})[:3]
    matches, final = c_find(
        archive.srv, "S", ident(QueryRetrieveLevel="SERIES", SeriesInstanceUID=series, StudyInstanceUID="")
    )
    assert sorted(m.SeriesInstanceUID for m in matches) == series
    # A date that is no date is the query's mistake (QIDO answers it 400):
    # 0xA900, not Success with no match.
    for bad in ("2024XX01", "20240101-2024", "2024", "20101301"):
        matches, final = c_find(archive.srv, "S", ident(QueryRetrieveLevel="STUDY", StudyDate=bad))
        assert (final, matches) == (0xA900, []), (bad, final)
    matches, final = c_find(archive.srv, "S", ident(QueryRetrieveLevel="STUDY", StudyTime="2500"))
    assert (final, matches) == (0xA900, [])
    matches, final = c_find(archive.srv, "S", ident(QueryRetrieveLevel="STUDY", StudyDate="19000101-"))
    assert final == SUCCESS and matches


# ---------------------------------------------------------------- C-MOVE / C-GET


@pytest.mark.parametrize(
    "query_charset, answer_charset",
    [("GB18030", "GB18030"), ("ISO_IR 192", "ISO_IR 192"), ("ISO_IR 100", "ISO_IR 192"), (None, "ISO_IR 192")],
)
def test_c_find_answers_in_the_query_character_set_when_it_can(pacs, query_charset, answer_charset):
    # A modality asking in GB18030 may not read UTF-8: names come back in the
    # query's character set when it can say them (Latin-1 cannot say 张).
    name = "张^三"
    assert DicomWeb(pacs).stow([named_instance("GB18030", name, "CF-GB", "胸部CT 平扫")]).status == 200
    q = ident(QueryRetrieveLevel="STUDY", PatientID="CF-GB", PatientName="", StudyDescription="")
    if query_charset:
        q.SpecificCharacterSet = query_charset
    (match,), final = c_find(pacs, "S", q)
    assert final == SUCCESS
    assert match.SpecificCharacterSet == answer_charset
    assert (str(match.PatientName), match.StudyDescription) == (name, "胸部CT 平扫")


def test_movescu_to_storescp_byte_exact(archive):
    srv, dest = archive.srv, archive.storescp
    for p in dest.files():
        p.unlink()
    study = archive.gen[0].study_uid
    keys = ["QueryRetrieveLevel=STUDY", f"StudyInstanceUID={study}"]
    res = _qr_scu("movescu", srv, keys, "-S", "-aem", dest.ae_title)
    assert res.returncode == 0, describe(res)
    got = dest.datasets()
    want = {i.sop_uid: dataset_bytes(i.read()) for i in archive.by_study(study)}
    assert sorted(got) == sorted(want), describe(res)
    assert all(got[k] == want[k] for k in want), "a moved dataset differs from what was stored"


def test_movescu_to_unknown_destination_fails(archive):
    srv = archive.srv
    keys = ["QueryRetrieveLevel=STUDY", f"StudyInstanceUID={archive.gen[0].study_uid}"]
    res = _qr_scu("movescu", srv, keys, "-S", "-aem", "NOWHERE")
    out = (res.stdout + res.stderr).lower().replace(" ", "")
    assert "a801" in out or "movedestinationunknown" in out, describe(res)
    ae = scu("PYSCU", [(StudyRootQueryRetrieveInformationModelMove, None)])
    assoc = ae.associate("127.0.0.1", srv.dicom_port, ae_title=srv.dicom_aet)
    assert assoc.is_established
    statuses = [
        s.Status
        for s, _ in assoc.send_c_move(
            ident(QueryRetrieveLevel="STUDY", StudyInstanceUID=archive.gen[0].study_uid),
            "NOWHERE",
            StudyRootQueryRetrieveInformationModelMove,
        )
        if s
    ]
    assoc.release()
    assert statuses and statuses[-1] == MOVE_DEST_UNKNOWN, [hex(s) for s in statuses]


def test_c_move_to_an_unreachable_destination_lists_every_instance_as_failed(pacs_factory, gen_studies):
    """A known destination that does not answer: 0xA702 with the failed
    count, and (it was missing) the Failed SOP Instance UID List."""
    from helpers import free_port

    srv = pacs_factory({"FULCRUM_DICOM_NODES": f"DEAD@127.0.0.1:{free_port()}"})
    study = gen_studies[0].study_uid
    files = [i.path for i in gen_studies if i.study_uid == study]
    stow_ok(DicomWeb(srv), files)
    ae = scu("PYSCU", [(StudyRootQueryRetrieveInformationModelMove, None)])
    assoc = ae.associate("127.0.0.1", srv.dicom_port, ae_title=srv.dicom_aet)
    assert assoc.is_established
    answers = list(assoc.send_c_move(ident(QueryRetrieveLevel="STUDY", StudyInstanceUID=study), "DEAD",
                                     StudyRootQueryRetrieveInformationModelMove))
    assoc.release()
    status, identifier = answers[-1]
    assert status.Status == 0xA702 and status.NumberOfFailedSuboperations == len(files), status
    failed = identifier.FailedSOPInstanceUIDList
    failed = [failed] if isinstance(failed, str) else list(failed)
    assert sorted(failed) == sorted(sop_uid_of(p.read_bytes()) for p in files)
    # The comment names the node and the cause within its 64 characters.
    comment = str(status.get("ErrorComment", ""))
    assert comment.startswith("DEAD: ") and "refused" in comment.lower(), comment


def test_c_move_to_a_destination_that_never_answers_ends_within_a_minute(pacs_factory, gen_studies):
    """A tester's destination accepted TCP and never answered the
    association request: the C-MOVE sent nothing for 149 s (the read
    timeout of a store, 300 s, applied to the association request)."""
    import socket
    import time

    sink = socket.socket()
    sink.bind(("127.0.0.1", 0))
    sink.listen(16)
    srv = pacs_factory({"FULCRUM_DICOM_NODES": f"SILENT@127.0.0.1:{sink.getsockname()[1]}"})
    study = gen_studies[0].study_uid
    stow_ok(DicomWeb(srv), [gen_studies[0].path])
    ae = scu("PYSCU", [(StudyRootQueryRetrieveInformationModelMove, None)])
    ae.dimse_timeout = ae.acse_timeout = 300
    assoc = ae.associate("127.0.0.1", srv.dicom_port, ae_title=srv.dicom_aet)
    assert assoc.is_established
    started = time.monotonic()
    try:
        answers = list(assoc.send_c_move(ident(QueryRetrieveLevel="STUDY", StudyInstanceUID=study), "SILENT",
                                         StudyRootQueryRetrieveInformationModelMove))
    finally:
        assoc.release()
        sink.close()
    status, _ = answers[-1]
    assert status.Status == 0xA702 and status.NumberOfFailedSuboperations == 1, status
    assert time.monotonic() - started < 60


def test_pynetdicom_c_move_byte_exact_any_transfer_syntax(archive):
    """C-MOVE of a generated series and of the compressed fixtures' studies to
    a pynetdicom SCP accepting every TS: each arrives in its stored TS with
    its stored bytes, with the move originator set."""
    srv, dest = archive.srv, archive.pyscp
    dest.received.clear()
    series = archive.gen[5].series_uid
    want = {i.sop_uid: i.read() for i in archive.gen if i.series_uid == series}
    ids = [ident(QueryRetrieveLevel="SERIES", StudyInstanceUID=archive.gen[5].study_uid, SeriesInstanceUID=series)]
    for f in archive.extra:
        want[f.sop_uid] = f.read()
        ids.append(
            ident(
                QueryRetrieveLevel="IMAGE",
                StudyInstanceUID=f.study_uid,
                SeriesInstanceUID=f.series_uid,
                SOPInstanceUID=f.sop_uid,
            )
        )
    ae = scu("MOVER", [(StudyRootQueryRetrieveInformationModelMove, None)])
    assoc = ae.associate("127.0.0.1", srv.dicom_port, ae_title=srv.dicom_aet)
    assert assoc.is_established
    try:
        for q in ids:
            final = [
                s for s, _ in assoc.send_c_move(q, dest.ae_title, StudyRootQueryRetrieveInformationModelMove) if s
            ][-1]
            assert final.Status == SUCCESS, f"C-MOVE {q.QueryRetrieveLevel} final status 0x{final.Status:04X}"
            assert int(final.get("NumberOfFailedSuboperations", 0)) == 0
    finally:
        assoc.release()
    assert sorted(dest.received) == sorted(want)
    for sop, data in want.items():
        rec = dest.received[sop]
        assert rec.ts == split_part10(data).transfer_syntax, f"{sop}: moved as {rec.ts}"
        assert rec.data == dataset_bytes(data), f"{sop}: moved dataset differs"
        assert rec.move_originator == "MOVER"


def test_getscu_byte_exact(archive, tmp_path):
    srv = archive.srv
    i0 = archive.gen[7]
    out = tmp_path / "get"
    out.mkdir()
    keys = ["QueryRetrieveLevel=SERIES", f"StudyInstanceUID={i0.study_uid}", f"SeriesInstanceUID={i0.series_uid}"]
    res = _qr_scu("getscu", srv, keys, "-S", "+B", "-od", out)
    assert res.returncode == 0, describe(res)
    got = {}
    for p in out.iterdir():
        data = p.read_bytes()
        got[str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)] = dataset_bytes(data)
    want = {i.sop_uid: dataset_bytes(i.read()) for i in archive.gen if i.series_uid == i0.series_uid}
    assert sorted(got) == sorted(want), describe(res)
    assert all(got[k] == want[k] for k in want)


def _c_get(srv, q, classes, roles: bool, syntaxes=None, model=StudyRootQueryRetrieveInformationModelGet):
    received = {}

    def on_store(event):
        received[str(event.request.AffectedSOPInstanceUID)] = (
            str(event.context.transfer_syntax),
            event.request.DataSet.getvalue(),
        )
        return SUCCESS

    # One context per (SOP class, TS): the SCP fixes one TS per context at
    # association time, so a context per stored syntax lets it send each
    # instance unchanged.
    ae = scu("GETTER", [(model, None)])
    for c in sorted(classes):
        for ts in syntaxes or UNCOMPRESSED + (J2K_LOSSLESS, JPEG_BASELINE, RLE):
            ae.add_requested_context(c, [ts])
    ext = [build_role(c, scp_role=True) for c in sorted(classes)] if roles else []
    assoc = ae.associate(
        "127.0.0.1", srv.dicom_port, ae_title=srv.dicom_aet, ext_neg=ext, evt_handlers=[(evt.EVT_C_STORE, on_store)]
    )
    assert assoc.is_established
    try:
        responses = [s for s, _ in assoc.send_c_get(q, model) if s]
    finally:
        assoc.release()
    return received, responses[-1]


def test_pynetdicom_c_get_with_scp_role(archive):
    srv = archive.srv
    f = next(x for x in archive.extra if x.transfer_syntax == J2K_LOSSLESS) if archive.extra else None
    study = archive.gen[-1].study_uid
    want = {i.sop_uid: i.read() for i in archive.by_study(study)}
    classes = {CTImageStorage, MRImageStorage}
    received, final = _c_get(srv, ident(QueryRetrieveLevel="STUDY", StudyInstanceUID=study), classes, roles=True)
    assert final.Status == SUCCESS, f"final C-GET status 0x{final.Status:04X}"
    assert sorted(received) == sorted(want)
    for sop, data in want.items():
        assert received[sop] == (split_part10(data).transfer_syntax, dataset_bytes(data)), sop
    if f is not None:
        received, final = _c_get(
            srv,
            ident(
                QueryRetrieveLevel="IMAGE",
                StudyInstanceUID=f.study_uid,
                SeriesInstanceUID=f.series_uid,
                SOPInstanceUID=f.sop_uid,
            ),
            {f.sop_class},
            roles=True,
        )
        assert final.Status == SUCCESS and received[f.sop_uid] == (J2K_LOSSLESS, dataset_bytes(f.read()))


def test_a_retrieve_selects_by_its_unique_keys_alone(archive):
    """Viewers copy a C-FIND answer into the C-GET/C-MOVE identifier; a
    non-unique key in it (a name corrected since, a date) narrowed the
    selection to nothing, answered as a success."""
    srv = archive.srv
    study = archive.gen[-1].study_uid
    want = {i.sop_uid for i in archive.by_study(study)}
    classes = {CTImageStorage, MRImageStorage}
    stale = ident(QueryRetrieveLevel="STUDY", StudyInstanceUID=study, PatientName="STALE^NAME", StudyDate="19000101")
    received, final = _c_get(srv, stale, classes, roles=True)
    assert final.Status == SUCCESS and set(received) == want, (hex(final.Status), len(received))


def test_query_retrieve_contexts_are_not_accepted_deflated(archive, tmp_path):
    """findscu -xd proposes Deflated Explicit VR Little Endian first: it was
    accepted for C-FIND, whose identifier was then refused (0xC000). Another
    proposed syntax is taken instead."""
    srv = archive.srv
    res = dcmtk("findscu", "-xd", "-S", "-aec", srv.dicom_aet, "-k", "QueryRetrieveLevel=STUDY",
                "-k", f"StudyInstanceUID={archive.gen[-1].study_uid}", "-k", "PatientID", "127.0.0.1", srv.dicom_port)
    out = res.stdout + res.stderr
    assert res.returncode == 0 and "Find Response: 1 (Pending)" in out, out


def test_c_get_without_scp_role_sends_nothing(archive):
    """Without SCP/SCU role selection the requester cannot receive C-STOREs:
    nothing arrives and the C-GET does not report plain success."""
    study = archive.gen[0].study_uid
    received, final = _c_get(
        archive.srv,
        ident(QueryRetrieveLevel="STUDY", StudyInstanceUID=study),
        {CTImageStorage, MRImageStorage},
        roles=False,
    )
    assert not received
    failed = int(final.get("NumberOfFailedSuboperations", 0) or 0)
    assert final.Status != SUCCESS or failed > 0, f"C-GET without roles: 0x{final.Status:04X}, {failed} failed"
    # The final response says why (it said only how many failed).
    assert "no storage context" in str(final.get("ErrorComment", "")), final


def test_a_private_sop_class_is_stored_and_given_back_by_c_get(pacs, gen_studies):
    """Modalities send private SOP classes next to their images (Siemens CSA
    Non-Image here). C-STORE takes them as STOW-RS does, and C-GET, with
    the requester in the SCP role for that class, returns them unchanged."""
    private = "1.3.12.2.1107.5.9.1"
    ds = pydicom.dcmread(next(i for i in gen_studies if i.modality == "CT").path)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = private
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = dicom_gen.uid(98, "csa", 1)
    ae = scu("MODALITY", [(private, [str(ds.file_meta.TransferSyntaxUID)])])
    assoc = ae.associate("127.0.0.1", pacs.dicom_port, ae_title=pacs.dicom_aet)
    assert assoc.is_established
    try:
        accepted = [c.abstract_syntax for c in assoc.accepted_contexts]
        assert accepted == [private], accepted
        assert assoc.send_c_store(ds).Status == SUCCESS
    finally:
        assoc.release()
    q = ident(
        QueryRetrieveLevel="IMAGE",
        StudyInstanceUID=ds.StudyInstanceUID,
        SeriesInstanceUID=ds.SeriesInstanceUID,
        SOPInstanceUID=ds.SOPInstanceUID,
    )
    received, final = _c_get(pacs, q, {private}, roles=True)
    assert final.Status == SUCCESS, f"final C-GET status 0x{final.Status:04X}"
    sent = io.BytesIO()
    pydicom.dcmwrite(sent, ds, enforce_file_format=True)
    assert received == {ds.SOPInstanceUID: (str(ds.file_meta.TransferSyntaxUID), dataset_bytes(sent.getvalue()))}


def test_a_c_store_naming_another_instance_than_its_data_set_is_refused(pacs, gen_studies, tmp_path, monkeypatch):
    """pynetdicom streams a file from its path (STORE_SEND_CHUNKED_DATASET,
    for large files) with the UIDs of its file meta in the command; a file
    whose meta names another instance than its data set
    (careless editing) was acknowledged for the meta's UID and indexed under
    the data set's. It is now 0xA900, as DCMTK's storescp and Orthanc
    answer, and nothing is stored; the consistent file then stores."""
    ds = pydicom.dcmread(next(i for i in gen_studies if i.modality == "CT").path)
    own = ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = dicom_gen.uid(97, "own", 1)
    good = tmp_path / "consistent.dcm"
    pydicom.dcmwrite(good, ds, enforce_file_format=True)
    # The file meta (written first) names another UID of the same length.
    meta_uid = own[:-1] + ("2" if own[-1] == "1" else "1")
    bad = tmp_path / "meta-differs.dcm"
    bad.write_bytes(good.read_bytes().replace(own.encode(), meta_uid.encode(), 1))
    assert pydicom.dcmread(bad).file_meta.MediaStorageSOPInstanceUID == meta_uid
    import pynetdicom

    monkeypatch.setattr(pynetdicom._config, "STORE_SEND_CHUNKED_DATASET", True)
    ae = scu("MODALITY", [(str(ds.SOPClassUID), [str(ds.file_meta.TransferSyntaxUID)])])
    assoc = ae.associate("127.0.0.1", pacs.dicom_port, ae_title=pacs.dicom_aet)
    assert assoc.is_established
    try:
        st = assoc.send_c_store(str(bad))
        assert st.Status == 0xA900, f"0x{st.Status:04X}"
        assert "differs from the C-STORE request" in str(st.get("ErrorComment", "")), st
        assert assoc.send_c_store(str(good)).Status == SUCCESS
    finally:
        assoc.release()
    found = DicomWeb(pacs).client().search_for_instances(study_instance_uid=ds.StudyInstanceUID,
                                                          search_filters={"SOPInstanceUID": ds.SOPInstanceUID})
    assert len(found) == 1
    assert not DicomWeb(pacs).client().search_for_instances(search_filters={"SOPInstanceUID": meta_uid})


DECODABLE = {
    "1.2.840.10008.1.2.5": "lossless",  # RLE
    "1.2.840.10008.1.2.4.50": "lossy",  # JPEG baseline
    "1.2.840.10008.1.2.4.51": "lossy",  # JPEG extended
    "1.2.840.10008.1.2.4.57": "lossless",  # JPEG lossless
    "1.2.840.10008.1.2.4.70": "lossless",  # JPEG lossless SV1
    "1.2.840.10008.1.2.4.90": "lossless",  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91": "lossy",  # JPEG 2000
    "1.2.840.10008.1.2.4.80": "lossless",  # JPEG-LS lossless (gray)
}


def _pydicom_decodes(path) -> bool:
    try:
        pydicom.dcmread(path).pixel_array
    except RuntimeError:
        return False
    return True


def test_c_move_decodes_rle_jpeg_and_jpeg2000_for_a_peer_that_takes_only_uncompressed(pacs_factory, tmp_path,
                                                                                      dicom_fixtures):
    # A workstation that accepts no compressed transfer syntax (storescp's
    # default) used to get a failed sub-operation for each RLE, JPEG,
    # JPEG 2000 or JPEG-LS instance; now their frames are decoded and sent
    # uncompressed.
    dest = StoreSCPProcess(tmp_path / "plain", ae_title="PLAIN", uncompressed_only=True)
    try:
        srv = pacs_factory({"FULCRUM_DICOM_NODES": dest.node})
        files = [f for f in dicom_fixtures.unique_valid if f.transfer_syntax in DECODABLE]
        assert {f.transfer_syntax for f in files} >= set(DECODABLE) - {"1.2.840.10008.1.2.4.57"}, "fixtures lost"
        dw = DicomWeb(srv)
        for f in files:
            assert dw.stow([f.read()]).status == 200, f.rel
        outcome = {}
        for f in files:
            keys = ["QueryRetrieveLevel=IMAGE", f"StudyInstanceUID={f.study_uid}", f"SeriesInstanceUID={f.series_uid}",
                    f"SOPInstanceUID={f.sop_uid}"]
            res = _qr_scu("movescu", srv, keys, "-S", "-aem", dest.ae_title)
            outcome[f.rel] = res.returncode
        got = {pydicom.dcmread(p).SOPInstanceUID: p for p in dest.files()}
        wrong = []
        for f in files:
            if f.sop_uid not in got:
                # 12-bit lossy JPEG (extended, process 4) is beyond the pure-Rust decoder: a failed sub-operation.
                ok = f.transfer_syntax == "1.2.840.10008.1.2.4.51" and pydicom.dcmread(f.path).BitsStored > 8
                if not ok and _pydicom_decodes(f.path):  # what nobody decodes may fail
                    wrong.append(f"{f.rel}: not received ({outcome[f.rel]})")
                continue
            mine, theirs = pydicom.dcmread(got[f.sop_uid]), pydicom.dcmread(f.path)
            if mine.file_meta.TransferSyntaxUID.is_compressed:
                wrong.append(f"{f.rel}: sent compressed")
                continue
            if not _pydicom_decodes(f.path):
                continue  # nothing to compare with
            a, b = mine.pixel_array.astype(int), theirs.pixel_array.astype(int)
            if a.shape != b.shape:
                wrong.append(f"{f.rel}: shape {a.shape} != {b.shape}")
                continue
            # Lossless codecs decode exactly; two JPEG decoders may round a
            # lossy one (its inverse DCT, chroma upsampling) a little differently.
            lossless = DECODABLE[f.transfer_syntax] == "lossless"
            d = abs(a - b)
            if d.size and (d.max() > 0 if lossless else d.max() > 8 or d.mean() > 0.5):
                wrong.append(f"{f.rel}: pixels differ by up to {abs(a - b).max()}, {abs(a - b).mean():.3f} on average")
        assert not wrong, "\n".join(wrong)
    finally:
        dest.stop()


def _odd_deflated_study(count: int) -> tuple[str, list[bytes]]:
    """A study of `count` small Secondary Capture files; the first is Deflated
    Explicit VR Little Endian with an odd-length deflated data set (as DCMTK's
    dcmodify writes some: stored byte-exact, without the pad byte)."""
    import zlib

    from pydicom.dataset import Dataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset, write_file_meta_info
    from pydicom.uid import generate_uid

    import dicom_common

    study, series = generate_uid(), generate_uid()
    files = []
    for n in range(count):
        for pad in range(64):
            ds = Dataset()
            ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.7", generate_uid()
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
            ds.PatientID, ds.Modality, ds.InstanceNumber = "ODD-DEFLATE", "OT", n + 1
            ds.StudyDescription = "x" * (2 * pad)
            ds.Rows = ds.Columns = 16
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
            ds.PixelData = bytes((n * 37 + k * k) % 251 for k in range(256))
            meta = dicom_common.file_meta(ds.SOPClassUID, ds.SOPInstanceUID)
            raw = DicomBytesIO()
            raw.is_little_endian, raw.is_implicit_VR = True, False
            write_dataset(raw, ds)
            body = raw.getvalue()
            if n == 0:
                z = zlib.compressobj(9, zlib.DEFLATED, -15)
                body = z.compress(body) + z.flush()
                if len(body) % 2 == 0:
                    continue
                meta.TransferSyntaxUID = "1.2.840.10008.1.2.1.99"
            out = DicomBytesIO()
            out.write(b"\0" * 128 + b"DICM")
            write_file_meta_info(out, meta, enforce_standard=True)
            files.append(out.getvalue() + body)
            break
    assert len(files) == count
    return study, files


def test_c_move_pads_an_odd_deflated_data_set_and_reassociates_after_an_abort(pacs_factory, tmp_path):
    # 1. An odd-length deflated data set went out without the pad byte
    #    PS3.5 A.5 asks for; storescp +xa aborted ("Odd Fragment Length").
    # 2. After that abort every other sub-operation failed on the dead
    #    association; a new one is now opened for the instances still to go.
    from pynetdicom import AE, AllStoragePresentationContexts

    study, files = _odd_deflated_study(4)
    dest = StoreSCPProcess(tmp_path / "in", ae_title="DEFLDEST")
    # A peer that aborts when it gets the second instance (PYDEST keeps the rest).
    refused = sop_uid_of(files[1])
    got: dict[str, bytes] = {}

    def on_store(event):
        if str(event.request.AffectedSOPInstanceUID) == refused:
            event.assoc.abort()
            return 0xA700
        got[str(event.request.AffectedSOPInstanceUID)] = event.request.DataSet.getvalue()
        return SUCCESS

    ae = AE(ae_title="ABORTER")
    ae.maximum_pdu_size = 0
    for cx in AllStoragePresentationContexts:
        ae.add_supported_context(cx.abstract_syntax, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
    from helpers import free_port

    port = free_port()
    aborter = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    try:
        srv = pacs_factory({"FULCRUM_DICOM_NODES": f"{dest.node},ABORTER@127.0.0.1:{port}"})
        assert DicomWeb(srv).stow(files).status == 200
        for to in ("DEFLDEST", "ABORTER"):
            qr = scu("PYSCU", [(StudyRootQueryRetrieveInformationModelMove, None)])
            assoc = qr.associate("127.0.0.1", srv.dicom_port, ae_title=srv.dicom_aet)
            assert assoc.is_established
            answers = list(assoc.send_c_move(ident(QueryRetrieveLevel="STUDY", StudyInstanceUID=study), to,
                                             StudyRootQueryRetrieveInformationModelMove))
            assoc.release()
            final = answers[-1][0]
            failed = final.get("NumberOfFailedSuboperations", 0)
            assert (final.NumberOfCompletedSuboperations, failed) == ((4, 0) if to == "DEFLDEST" else (3, 1)), (to, final)
        received = dest.datasets()
        assert len(received) == 4, dest.log.read_text()[-2000:]
        for data in files:
            ds = dataset_bytes(data)
            want = ds + b"\0" if len(ds) % 2 else ds
            assert received[sop_uid_of(data)] == want
        # The deflated one was converted for ABORTER (which takes no deflate).
        assert sorted(got) == sorted(sop_uid_of(f) for f in files if sop_uid_of(f) != refused)
    finally:
        aborter.shutdown()
        dest.stop()


def test_a_c_store_of_a_sop_class_not_negotiated_on_its_context_is_refused(pacs):
    """A tester's find: an MR instance sent on the context negotiated for CT
    was stored with Success; PS3.7 answers 0x0122 (SOP class not supported)."""
    ct, mr = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4"
    sop = "1.2.826.0.1.3680043.8.498.4242"
    s = raw.associate(pacs.dicom_port, [(3, ct, [raw.EXPLICIT])])
    rq = raw.command({0x0002: mr, 0x0100: 0x0001, 0x0110: 1, 0x0700: 0, 0x0800: 0, 0x1000: sop})
    data = raw.explicit((0x0008, 0x0016), b"UI", mr.encode()) + raw.explicit((0x0008, 0x0018), b"UI", sop.encode())
    s.sendall(raw.pdata([(3, 3, rq), (3, 2, data)]))
    c = raw.read_command(s)
    assert (c[0x0100], c[0x0900]) == (0x8001, 0x0122), c
    raw.release(s)
    assert DicomWeb(pacs).qido("/instances", {"SOPInstanceUID": sop}) == []


def test_even_and_repeated_presentation_context_ids_are_not_accepted(pacs):
    """PS3.8: context IDs are odd and unique. A tester's two contexts named
    1 (Verification, CT) were both accepted, and a C-STORE on 1 met the
    Verification context (0x0122)."""
    ct = "1.2.840.10008.5.1.4.1.1.2"
    s, results = raw.associate_answered(
        pacs.dicom_port,
        [(1, raw.VERIFY, [raw.IMPLICIT]), (1, ct, [raw.EXPLICIT]), (4, ct, [raw.EXPLICIT]), (5, ct, [raw.EXPLICIT])],
    )
    raw.release(s)
    assert results == [(1, 0), (1, 2), (4, 2), (5, 0)], results


def _site_instance(pid, issuer, institution, body_part, series_date, name):
    """A small CT instance from one site of a consortium."""
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid

    import dicom_common

    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.2", generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID, ds.IssuerOfPatientID, ds.PatientName = pid, issuer, name
    ds.InstitutionName, ds.BodyPartExamined, ds.SeriesDate = institution, body_part, series_date
    ds.Modality, ds.StudyDate = "CT", series_date
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = bytes(64)
    step = Dataset()
    step.ScheduledProcedureStepID, step.RequestedProcedureID = f"SPS-{issuer}", "RP1"
    ds.RequestAttributesSequence = [step]
    ds.file_meta = dicom_common.file_meta(ds.SOPClassUID, ds.SOPInstanceUID)
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return ds, buf.getvalue()


def test_keys_the_index_does_not_hold_are_matched_and_returned_from_headers(pacs, tmp_path):
    # One MRN at two sites of the consortium: "this MRN from this issuer"
    # (IssuerOfPatientID) returned both patients, InstitutionName=AKH*
    # the whole archive, and such keys came back empty, over C-FIND and
    # QIDO-RS alike (tester, against Orthanc). They are matched and
    # returned from the stored headers now.
    a, da = _site_instance("MRN1234", "SITE_A", "AKH Wien", "HEAD", "20200115", "Smith^John")
    b, db = _site_instance("MRN1234", "SITE_B", "Klinikum Graz", "CHEST", "20210620", "Jones^Mary")
    dw = DicomWeb(pacs)
    assert dw.stow([da, db]).status == 200
    q = iter(range(100))

    def find(level, *keys):
        return _findscu(pacs, "-S", [f"QueryRetrieveLevel={level}", *keys], tmp_path / f"q{next(q)}")

    (only,) = find("STUDY", "PatientID=MRN1234", "IssuerOfPatientID=SITE_A", "PatientName", "InstitutionName",
                   "StudyInstanceUID")
    assert (only.StudyInstanceUID, str(only.PatientName)) == (a.StudyInstanceUID, "Smith^John")
    assert (only.IssuerOfPatientID, only.InstitutionName) == ("SITE_A", "AKH Wien")
    (akh,) = find("STUDY", "InstitutionName=AKH*", "StudyInstanceUID")
    assert akh.StudyInstanceUID == a.StudyInstanceUID
    assert find("STUDY", "IssuerOfPatientID=NOPE", "StudyInstanceUID") == []
    (graz,) = find("SERIES", "SeriesDate=20210101-", "BodyPartExamined", "SeriesInstanceUID")
    assert (graz.SeriesInstanceUID, graz.BodyPartExamined) == (b.SeriesInstanceUID, "CHEST")
    both = find("SERIES", "PatientID=MRN1234", "BodyPartExamined", "SeriesInstanceUID")
    assert sorted(x.BodyPartExamined for x in both) == ["CHEST", "HEAD"]
    (img,) = find("IMAGE", f"StudyInstanceUID={b.StudyInstanceUID}", "BodyPartExamined=CH*", "SOPInstanceUID")
    assert img.SOPInstanceUID == b.SOPInstanceUID
    # A key inside a sequence matches any item; the sequence is returned.
    (seq,) = find("STUDY", "RequestAttributesSequence[0].ScheduledProcedureStepID=SPS-SITE_B", "StudyInstanceUID")
    assert seq.StudyInstanceUID == b.StudyInstanceUID
    assert seq.RequestAttributesSequence[0].RequestedProcedureID == "RP1"
    # Keys below the query level match relationally (they were dropped).
    assert find("STUDY", "Modality=MR", "StudyInstanceUID") == []
    assert len(find("STUDY", "Modality=CT", "StudyInstanceUID")) == 2
    assert find("SERIES", "SOPClassUID=1.2.3", "SeriesInstanceUID") == []
    # A patient is its Patient ID within its issuer: the two sites' MRN1234
    # are two patients (they were one, with one site's name and both
    # sites' studies).
    patient = lambda *keys: _findscu(pacs, "-P", ["QueryRetrieveLevel=PATIENT", *keys], tmp_path / f"q{next(q)}")
    two = patient("PatientID=MRN1234", "NumberOfPatientRelatedStudies", "IssuerOfPatientID", "PatientName",
                  "InstitutionName")
    assert sorted((x.IssuerOfPatientID, str(x.PatientName), int(x.NumberOfPatientRelatedStudies), x.InstitutionName)
                  for x in two) == [("SITE_A", "Smith^John", 1, "AKH Wien"), ("SITE_B", "Jones^Mary", 1, "Klinikum Graz")]
    (p,) = patient("PatientID=MRN1234", "StudyDate=20200115", "IssuerOfPatientID", "PatientName")
    assert (str(p.PatientName), p.IssuerOfPatientID) == ("Smith^John", "SITE_A")
    assert patient("PatientID=MRN1234", "StudyDate=20200115", "IssuerOfPatientID=SITE_B") == []
    (p,) = patient("PatientID=MRN1234", "IssuerOfPatientID=SITE_B", "PatientName")
    assert str(p.PatientName) == "Jones^Mary"
    # A patient-level retrieve of the answer (ID and issuer) takes that
    # patient's studies; by Patient ID alone, both (its unique key).
    for issuer, want in (("SITE_B", {b.SOPInstanceUID}), (None, {a.SOPInstanceUID, b.SOPInstanceUID})):
        rq = ident(QueryRetrieveLevel="PATIENT", PatientID="MRN1234")
        if issuer:
            rq.IssuerOfPatientID = issuer
        received, final = _c_get(pacs, rq, {a.SOPClassUID}, roles=True, model=PatientRootQueryRetrieveInformationModelGet)
        assert final.Status == SUCCESS and set(received) == want, (issuer, hex(final.Status), len(received))
    # QIDO-RS: the same keys, matched and returned; paging applies to what matches.
    (found,) = dw.qido("/studies", {"PatientID": "MRN1234", "IssuerOfPatientID": "SITE_B",
                                    "includefield": "InstitutionName"})
    assert jval(found, "StudyInstanceUID") == b.StudyInstanceUID
    assert jval(found, "InstitutionName") == "Klinikum Graz" and jval(found, "IssuerOfPatientID") == "SITE_B"
    (head,) = dw.qido("/series", {"BodyPartExamined": "HEAD"})
    assert jval(head, "SeriesInstanceUID") == a.SeriesInstanceUID and jval(head, "BodyPartExamined") == "HEAD"
    assert dw.qido("/studies", {"InstitutionName": "*", "limit": "1", "offset": "1"}) != []
    assert dw.qido("/studies", {"InstitutionName": "*", "offset": "2"}) == []
    # SOPClassesInStudy matches the studies holding such an instance (it was ignored).
    assert len(dw.qido("/studies", {"PatientID": "MRN1234", "SOPClassesInStudy": a.SOPClassUID})) == 2
    assert dw.qido("/studies", {"PatientID": "MRN1234", "SOPClassesInStudy": "1.2.840.10008.5.1.4.1.1.4"}) == []
    for key in ("00400275.00400009", "RequestAttributesSequence.ScheduledProcedureStepID"):
        (nested,) = dw.qido("/studies", {key: "SPS-SITE_A", "includefield": "00400275.00401001"})
        assert jval(nested, "StudyInstanceUID") == a.StudyInstanceUID, key
        assert nested["00400275"]["Value"][0]["00400009"]["Value"] == ["SPS-SITE_A"], nested
    r = dw.get("/studies?SeriesDate=2020", "application/dicom+json")
    assert r.status_code == 400 and "a date is" in r.text, (r.status_code, r.text)


def test_an_association_proposing_no_presentation_context_is_rejected(pacs):
    # PS3.8 9.3.2: an A-ASSOCIATE-RQ holds one or more presentation
    # contexts. One with none was accepted, an association that could
    # carry nothing; it is rejected (permanent, no reason given).
    s, kind, body = raw.request(pacs.dicom_port, [])
    try:
        assert kind == 3, f"PDU type {kind:#x}"
        assert body[1:4] == bytes([1, 1, 1]), body  # permanent, service user, no reason given
    finally:
        s.close()
    # One context is enough.
    s = raw.associate(pacs.dicom_port, [(1, "1.2.840.10008.1.1", ["1.2.840.10008.1.2"])])
    raw.release(s)


def test_a_c_store_cut_off_mid_transfer_is_logged_as_discarded(pacs):
    # A modality whose connection drops mid-instance: the log said only
    # "connection closed without release", so a missing instance could not
    # be traced. It names the instance and says it was discarded.
    ct = "1.2.840.10008.5.1.4.1.1.2"
    sop = "1.2.826.0.1.3680043.8.498.4343"
    s = raw.associate(pacs.dicom_port, [(3, ct, [raw.EXPLICIT])])
    rq = raw.command({0x0002: ct, 0x0100: 0x0001, 0x0110: 1, 0x0700: 0, 0x0800: 0, 0x1000: sop})
    first = raw.explicit((0x0008, 0x0016), b"UI", ct.encode()) + raw.explicit((0x0008, 0x0018), b"UI", sop.encode())
    s.sendall(raw.pdata([(3, 3, rq), (3, 0, first)]))  # not the last fragment
    time.sleep(0.3)
    s.close()
    deadline = time.time() + 10
    while "discarded" not in pacs.log_tail(20) and time.time() < deadline:
        time.sleep(0.1)
    tail = pacs.log_tail(20)
    assert "C-STORE cut off mid-transfer: the instance was discarded" in tail and sop in tail, tail
    assert DicomWeb(pacs).qido("/instances", {"SOPInstanceUID": sop}) == []


def test_a_study_re_sent_by_c_store_under_new_uids_leaves_its_old_one_right(pacs, tmp_path):
    # Over DIMSE, the study an instance left is refreshed once the
    # association ends (refreshing it per instance made a 500-slice study
    # re-sent under a new Study Instance UID take 11 times as long).
    from pydicom.uid import generate_uid

    study, series, other = generate_uid(), generate_uid(), generate_uid()

    def write(path, name, pid, sop, st, se):
        ds = pydicom.dcmread(io.BytesIO(named_instance("ISO_IR 100", name, pid, "CHEST")))
        ds.StudyInstanceUID, ds.SeriesInstanceUID = st, se
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)

    sops = [generate_uid() for _ in range(3)]
    for n, sop in enumerate(sops):
        write(tmp_path / "a" / f"{n}.dcm", "ALPHA^ONE", "A1", sop, study, series)
    write(tmp_path / "b" / "2.dcm", "BETA^TWO", "B2", sops[2], study, series)
    write(tmp_path / "c" / "2.dcm", "BETA^TWO", "B2", sops[2], other, generate_uid())
    dw = DicomWeb(pacs)
    for d in ("a", "b", "c"):
        report = dcmsend("127.0.0.1", pacs.dicom_port, pacs.dicom_aet, [tmp_path / d])
        assert report.success == report.total > 0, describe(report.res)
    (found,) = dw.qido("/studies", {"PatientID": "A1", "includefield": "PatientName"})
    assert jval(found, "StudyInstanceUID") == study and jval(found, "NumberOfStudyRelatedInstances") == 2
    assert found["00100010"]["Value"] == [{"Alphabetic": "ALPHA^ONE"}]
    assert [jval(s, "StudyInstanceUID") for s in dw.qido("/studies", {"PatientID": "B2"})] == [other]


def test_c_get_without_a_context_for_an_instance_says_what_the_requester_took(pacs, dicom_fixtures):
    # A JPEG instance asked for by a requester that takes only Explicit VR
    # Big Endian (decoded frames are written little endian): the reason was
    # "no storage context with the SCP role", as if it had none at all.
    f = next(x for x in dicom_fixtures.unique_valid if x.transfer_syntax == JPEG_BASELINE)
    assert DicomWeb(pacs).stow([f.read()]).status == 200
    q = ident(QueryRetrieveLevel="IMAGE", StudyInstanceUID=f.study_uid, SeriesInstanceUID=f.series_uid,
              SOPInstanceUID=f.sop_uid)
    received, final = _c_get(pacs, q, {f.sop_class}, roles=True, syntaxes=("1.2.840.10008.1.2.2",))
    assert not received and int(final.NumberOfFailedSuboperations) == 1, final
    assert str(final.ErrorComment) == f"takes only 1.2.840.10008.1.2.2; stored {JPEG_BASELINE}", final


def test_a_study_an_instance_left_is_right_while_its_sender_holds_the_association(pacs):
    # Refreshed at the association's end only, a study kept the name of an
    # instance moved out of it for as long as the sender held the
    # association open (re-tester); it is refreshed once the sender pauses.
    from pydicom.uid import generate_uid

    study, series = generate_uid(), generate_uid()

    def make(name, sop, st, se):
        ds = pydicom.dcmread(io.BytesIO(named_instance("ISO_IR 100", name, "HOLDOPEN", "CHEST")))
        ds.StudyInstanceUID, ds.SeriesInstanceUID = st, se
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop
        return ds

    keep, last = generate_uid(), generate_uid()
    dw = DicomWeb(pacs)
    assert dw.stow([dataset_bytes_of(make("KEEP^AB", keep, study, series)),
                    dataset_bytes_of(make("LAST^AB", last, study, series))]).status == 200
    ae = scu(contexts=[(CTImageStorage, None)])
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.7")
    assoc = ae.associate("127.0.0.1", pacs.dicom_port, ae_title=pacs.dicom_aet)
    assert assoc.is_established
    try:
        moved = make("LAST^AB", last, generate_uid(), generate_uid())
        assert assoc.send_c_store(moved).Status == SUCCESS
        deadline = time.time() + 10
        names = []
        while time.time() < deadline:
            (found,) = dw.qido("/studies", {"StudyInstanceUID": study, "includefield": "PatientName"})
            names = found["00100010"]["Value"]
            if names == [{"Alphabetic": "KEEP^AB"}]:
                break
            time.sleep(0.2)
        assert names == [{"Alphabetic": "KEEP^AB"}], names
        assert assoc.is_established  # still open
    finally:
        assoc.release()


def dataset_bytes_of(ds) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()
