"""`fulcrum dicom import|export|send` on a data dir (server stopped), then
checked through the server (QIDO, WADO-RS) or a DCMTK storescp.

    fulcrum dicom import --data-dir D PATH...        recursive; lists non-DICOM; rerun skips
    fulcrum dicom export --data-dir D --study UID --out DIR   DIR/<study>/<series>/<sop>.dcm
    fulcrum dicom send   --data-dir D --study UID --to AET@HOST:PORT
    fulcrum dicom reindex --data-dir D [--study UID]          headers read again into the index
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from pathlib import Path

import pydicom

from dicom_common import dcmtk_path
from dicom_helpers import DicomWeb, StoreSCPProcess, gbk_without_charset, jval, send_chunked, sop_uid_of, stow_ok
from dicom_part10 import dataset_bytes, split_part10
from helpers import random_bytes


def _out(res) -> str:
    return res.stdout + res.stderr


def _import_tree(root: Path, gen, fixtures) -> tuple[list[Path], list[Path]]:
    """A messy directory: nested DICOM (with and without .dcm), non-DICOM files."""
    dicom = []
    for i, inst in enumerate(gen):
        dst = root / "studies" / inst.patient_id / f"{i:03d}{'.dcm' if i % 2 else ''}"
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(inst.path, dst)
        dicom.append(dst)
    for f in fixtures:
        dst = root / "fixtures" / f.rel.replace("/", "__")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f.path, dst)
        dicom.append(dst)
    other = {
        "notes.txt": b"patient list, not an image\n",
        "report.pdf": b"%PDF-1.4\n" + random_bytes(3000, seed=30),
        "deep/er/random.bin": random_bytes(10_000, seed=31),
        "empty.dcm": b"",
        "fake.dcm": b"\0" * 128 + b"DICX" + random_bytes(500, seed=32),
    }
    non = []
    for name, data in other.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        non.append(p)
    return dicom, non


def test_import_lists_non_dicom_and_rerun_skips(pacs, gen_studies, dicom_fixtures, tmp_path):
    srv = pacs
    srv.stop()
    fixtures = dicom_fixtures.representative(per_ts=2)
    dicom, non = _import_tree(tmp_path / "in", gen_studies, fixtures)
    res = srv.dicom_cli("import", tmp_path / "in")
    assert res.returncode == 0, _out(res)
    missing = [p.name for p in non if p.name not in _out(res)]
    assert not missing, f"import did not list these non-DICOM files: {missing}\n{_out(res)}"
    s1 = srv.stats()

    res = srv.dicom_cli("import", tmp_path / "in")
    assert res.returncode == 0, _out(res)
    s2 = srv.stats()
    assert s2["physical_bytes"] - s1["physical_bytes"] < 0.01 * s1["physical_bytes"], (s1, s2)
    assert s2.get("objects") == s1.get("objects"), (s1, s2)

    srv.start().wait_dicom_ready()
    dw = DicomWeb(srv)
    where = dw.locate()
    assert len(where) == len(dicom), f"{len(where)} indexed, {len(dicom)} DICOM files imported"
    wrong = []
    for p in dicom:
        data = p.read_bytes()
        sop = sop_uid_of(data)
        if dw.instance_bytes(*where[sop], sop) != data:
            wrong.append(p.name)
    assert not wrong, f"not byte-exact after import: {wrong}"


def test_import_fails_when_a_dicom_file_cannot_be_stored(pacs, gen_studies, dicom_fixtures, tmp_path):
    srv = pacs
    srv.stop()
    d = tmp_path / "in"
    d.mkdir()
    for i, inst in enumerate(gen_studies[:4]):
        shutil.copyfile(inst.path, d / f"ok{i}.dcm")
    shutil.copyfile(dicom_fixtures.by_rel("pydicom/MR_truncated.dcm").path, d / "MR_truncated.dcm")
    res = srv.dicom_cli("import", d)
    assert res.returncode != 0, _out(res)
    assert "MR_truncated.dcm" in _out(res), _out(res)
    srv.start().wait_dicom_ready()
    assert sorted(DicomWeb(srv).locate()) == sorted(x.sop_uid for x in gen_studies[:4])
    res = srv.verify()
    assert res.returncode == 0, _out(res)


def test_import_of_a_cd_skips_its_dicomdir(pacs, gen_studies, tmp_path):
    """A patient's CD as DCMTK's dcmmkdir writes it: DICOM/IMn files and the
    DICOMDIR indexing them. The instances are imported; the DICOMDIR (Media
    Storage Directory Storage, no instance) is listed as skipped, not as a
    failure, and a STOW-RS of it is refused with 0x0122 (SOP class not
    supported), storing nothing."""
    srv = pacs
    srv.stop()
    cd = tmp_path / "cd"
    (cd / "DICOM").mkdir(parents=True)
    insts = gen_studies[:4]
    for i, inst in enumerate(insts):
        shutil.copyfile(inst.path, cd / "DICOM" / f"IM{i}")
    mk = subprocess.run([dcmtk_path("dcmmkdir") or "dcmmkdir", "+r", "--invent", "-Pgp", "DICOM"],
                        cwd=cd, capture_output=True, text=True)
    assert mk.returncode == 0 and (cd / "DICOMDIR").exists(), mk.stdout + mk.stderr
    # The DICOMDIR named itself stands for its CD: nothing was imported.
    res = srv.dicom_cli("import", cd / "DICOMDIR")
    assert res.returncode == 0, _out(res)
    assert "imported 4 new" in _out(res) and "1 DICOMDIR skipped, 0 failed" in _out(res), _out(res)
    res = srv.dicom_cli("import", cd)
    assert res.returncode == 0, _out(res)
    assert "DICOMDIR, skipped" in _out(res) and "4 already stored" in _out(res), _out(res)
    srv.start().wait_dicom_ready()
    dw = DicomWeb(srv)
    assert sorted(dw.locate()) == sorted(x.sop_uid for x in insts)
    before = srv.stats()
    r = dw.stow([(cd / "DICOMDIR").read_bytes()])
    assert r.status == 409, r
    assert [reason for _, reason in r.failed] == [0x0122], r
    assert sorted(dw.locate()) == sorted(x.sop_uid for x in insts)
    assert srv.stats()["physical_bytes"] == before["physical_bytes"]



def test_import_lists_what_it_cannot_read_and_imports_the_rest(pacs, gen_studies, tmp_path):
    """Old PACS shares and copied CDs hold stale links and links back up the
    tree: one broken link, a loop, or a mistyped path among the arguments
    stopped the whole import before it stored anything. Now each is listed
    and the rest imported (exit 1, as for a file that could not be stored);
    a folder reached again through a link is walked once."""
    srv = pacs
    srv.stop()
    root = tmp_path / "share"
    insts = gen_studies[:3]
    for i, inst in enumerate(insts):
        d = root / "a" / f"p{i}"
        d.mkdir(parents=True)
        shutil.copyfile(inst.path, d / f"IM{i}.dcm")
    (root / "stale").symlink_to(tmp_path / "gone.dcm")
    (root / "a" / "p0" / "up").symlink_to(root / "a")  # a loop
    (root / "again").symlink_to(root / "a" / "p1")  # the same folder twice
    res = srv.dicom_cli("import", root, tmp_path / "mistyped")
    out = _out(res)
    assert res.returncode == 1, out
    assert f"FAILED: {root / 'stale'}: cannot read" in out and f"FAILED: {tmp_path / 'mistyped'}: cannot read" in out, out
    assert "imported 3 new" in out and "2 failed" in out, out
    srv.start().wait_dicom_ready()
    assert sorted(DicomWeb(srv).locate()) == sorted(x.sop_uid for x in insts)


def test_import_rerun_over_two_files_of_one_instance_stores_nothing_new(pacs, tmp_path):
    """pydicom's samples hold several files of one SOP Instance UID with
    different bytes: each rerun of an import replaced the stored one again
    (31 replaced every time) and kept one more version of it. The other
    file's bytes are a kept version by then: already stored."""
    from dicom_helpers import named_instance

    srv = pacs
    srv.stop()
    first = named_instance("ISO_IR 100", "Doe^Jane", "TWIN", "FIRST")
    ds = pydicom.dcmread(io.BytesIO(first))
    ds.PatientName = "Doe^Janet"  # a corrected copy under the same UIDs
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    root = tmp_path / "twins"
    root.mkdir()
    (root / "a.dcm").write_bytes(first)
    (root / "b.dcm").write_bytes(buf.getvalue())
    res = srv.dicom_cli("import", root)
    # Both files are read at once: whichever commits second replaces the
    # first (counted as new or replaced, as they raced).
    assert res.returncode == 0 and re.search(r"imported (2 new, 0|1 new, 1) replaced", res.stdout), _out(res)
    objects = srv.stats()["objects"]
    for _ in range(2):
        res = srv.dicom_cli("import", root)
        assert res.returncode == 0 and "0 new, 0 replaced, 2 already stored" in res.stdout, _out(res)
        assert srv.stats()["objects"] == objects


def test_import_stores_datasets_written_without_a_file_meta_group(pacs, dicom_fixtures, tmp_path):
    """Older file-based archives hold datasets without preamble and file
    meta (DCMTK reads them; pydicom's rtstruct.dcm, *NoMeta.dcm): import
    listed them as not DICOM, so a migration left them behind. They are
    stored as a C-STORE's dataset is, under a meta written for them: the
    dataset retrieved is the file's bytes, in the syntax it was written in."""
    import warnings

    srv = pacs
    bare = dicom_fixtures.of("no_meta")
    assert len(bare) >= 4, [f.rel for f in bare]

    def read(f):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pydicom.dcmread(f.path, force=True)

    # pydicom's little and big endian samples share their UIDs: imported
    # in turn, each checked while it is the stored one.
    rounds, seen = [[], []], set()
    for f in bare:
        sop = read(f).SOPInstanceUID
        rounds[sop in seen].append(f)
        seen.add(sop)
    dw = DicomWeb(srv)
    syntaxes = set()
    for n, files in enumerate(rounds):
        root = tmp_path / f"old-archive-{n}"
        root.mkdir()
        for f in files:
            shutil.copyfile(f.path, root / f.path.name)
        (root / "notes.txt").write_bytes(b"\x08\x00 not a dataset either")
        res = srv.dicom_cli("import", root)
        out = _out(res)
        assert res.returncode == 0 and f"{len(files)} " in out and "1 not DICOM, 0 failed" in out, out
        for f in files:
            ds = read(f)
            r = dw.get(f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}",
                       'multipart/related; type="application/dicom"; transfer-syntax=*')
            assert r.status_code == 200, (f.rel, r.status_code, r.text[:200])
            stored = r.content[r.content.index(b"\r\n\r\n") + 4:r.content.rindex(b"\r\n--")]
            p10 = split_part10(stored)
            assert stored[p10.meta_end:] == f.read(), f.rel
            syntaxes.add(p10.transfer_syntax)
    assert syntaxes == {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"}, syntaxes

def test_export_writes_each_instance_byte_exact(pacs, gen_studies, tmp_path):
    """STOW-stored instances come back as the same files; DIMSE-stored ones
    with the same dataset after a file meta group."""
    dw = DicomWeb(pacs)
    study = gen_studies[0].study_uid
    stowed = [x for x in gen_studies if x.study_uid == study]
    other = next(x.study_uid for x in gen_studies if x.study_uid != study)
    dimse = [x for x in gen_studies if x.study_uid == other]
    stow_ok(dw, [x.path for x in stowed])
    assert set(send_chunked("127.0.0.1", pacs.dicom_port, pacs.dicom_aet, [x.path for x in dimse]).values()) == {0}
    pacs.stop()

    out = tmp_path / "out"
    res = pacs.dicom_cli("export", "--study", study, "--out", out)
    assert res.returncode == 0, _out(res)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == sorted(f"{x.study_uid}/{x.series_uid}/{x.sop_uid}.dcm" for x in stowed)
    for x in stowed:
        assert (out / x.study_uid / x.series_uid / f"{x.sop_uid}.dcm").read_bytes() == x.read()

    res = pacs.dicom_cli("export", "--study", other, "--out", out)
    assert res.returncode == 0, _out(res)
    for x in dimse:
        data = (out / x.study_uid / x.series_uid / f"{x.sop_uid}.dcm").read_bytes()
        p10 = split_part10(data)
        assert p10.transfer_syntax == "1.2.840.10008.1.2.1"
        assert data[p10.meta_end :] == dataset_bytes(x.read())
        assert p10.meta_str(0x00020003) == x.sop_uid

    res = pacs.dicom_cli("export", "--study", "1.2.3.4.5.404", "--out", tmp_path / "none")
    assert res.returncode != 0, "export of an unknown study must fail"


def test_send_forwards_a_study_to_a_storescp(pacs, gen_studies, dicom_fixtures, tmp_path):
    dw = DicomWeb(pacs)
    study = gen_studies[-1].study_uid
    insts = [x for x in gen_studies if x.study_uid == study]
    stow_ok(dw, [x.path for x in gen_studies])
    jpeg = dicom_fixtures.first(lambda f: f.transfer_syntax == "1.2.840.10008.1.2.4.50")
    stow_ok(dw, [jpeg.path])
    pacs.stop()
    with StoreSCPProcess(tmp_path / "partner", ae_title="PARTNER") as scp:
        res = pacs.dicom_cli("send", "--study", study, "--to", scp.node)
        assert res.returncode == 0, _out(res)
        got = scp.datasets()
        assert sorted(got) == sorted(x.sop_uid for x in insts)
        assert all(got[x.sop_uid] == dataset_bytes(x.read()) for x in insts)
        for p in scp.files():
            p.unlink()
        res = pacs.dicom_cli("send", "--study", jpeg.study_uid, "--to", scp.node)
        assert res.returncode == 0, _out(res)
        got = scp.datasets()
        assert got.get(jpeg.sop_uid) == dataset_bytes(jpeg.read()), "JPEG study not forwarded byte-exact"
    res = pacs.dicom_cli("send", "--study", study, "--to", "NOBODY@127.0.0.1:9")
    assert res.returncode != 0, "send to a closed port must fail"


def test_send_names_each_failed_instance_when_not_on_a_terminal(pacs, dicom_fixtures, tmp_path):
    """From cron or a pipe, `dicom send` says which instance failed and why
    (the line went through the progress bar, hidden off a terminal)."""
    import pydicom

    f = dicom_fixtures.first(
        lambda x: x.transfer_syntax == "1.2.840.10008.1.2.4.51"
        and pydicom.dcmread(x.path, stop_before_pixels=True).BitsStored > 8
    )
    stow_ok(DicomWeb(pacs), [f.path])
    pacs.stop()
    with StoreSCPProcess(tmp_path / "plain", ae_title="PLAIN", uncompressed_only=True) as scp:
        res = pacs.dicom_cli("send", "--study", f.study_uid, "--to", scp.node)
    assert res.returncode == 1, _out(res)
    assert f"FAILED: {f.sop_uid}: " in res.stdout, _out(res)


def test_reindex_reads_stored_names_in_a_default_charset_set_later(pacs):
    # GBK names stored without (0008,0005) before dicom_default_charset
    # was set: the index held them as the standard's default reads them,
    # and no search for the Chinese name found them. `dicom reindex` reads
    # the headers again and rewrites what differs, while the server runs.
    from pydicom.uid import generate_uid

    srv = pacs
    study = generate_uid()
    first = gbk_without_charset("张^三", "胸部", study)
    later = gbk_without_charset("张^三丰", "", study)  # the latest instance's name wins; no description: kept
    ascii_study = gbk_without_charset("DOE^JOHN", "CHEST")
    dw = DicomWeb(srv)
    for data in (first, later, ascii_study):
        assert dw.stow([data]).status == 200
    assert dw.qido("/studies", {"PatientName": "张*"}) == []
    srv.extra_env["FULCRUM_DICOM_DEFAULT_CHARSET"] = "GB18030"
    res = srv.dicom_cli("reindex")
    assert res.returncode == 0, _out(res)
    assert "re-indexed 2 studies" in res.stdout and "1 study rows" in res.stdout, _out(res)
    # Nothing left to change: a second run writes nothing.
    res = srv.dicom_cli("reindex")
    assert res.returncode == 0 and "0 study rows, 0 series rows and 0 instance rows changed" in res.stdout, _out(res)
    (found,) = dw.qido("/studies", {"PatientName": "张*", "includefield": "StudyDescription"})
    assert found["00100010"]["Value"] == [{"Alphabetic": "张^三丰"}], found
    assert jval(found, "StudyDescription") == "胸部" and jval(found, "StudyInstanceUID") == study
    assert jval(found, "NumberOfStudyRelatedInstances") == 2
    (plain,) = dw.qido("/studies", {"PatientName": "DOE*", "includefield": "StudyDescription"})
    assert jval(plain, "StudyDescription") == "CHEST"
    res = srv.dicom_cli("reindex", "--study", "1.2.3.404")
    assert res.returncode != 0 and "not in the archive" in _out(res), _out(res)
