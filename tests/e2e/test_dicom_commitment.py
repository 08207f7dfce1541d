"""Storage Commitment Push Model (PS3.4 annex J) with pynetdicom as the
modality: it asks (N-ACTION) whether the archive took responsibility for
the instances it sent, and gets the answer (N-EVENT-REPORT) either on the
same association, when it waits there, or on a new association to its own
SCP after it released, the way most modalities work. Orthanc as a second
peer: test_pacs_orthanc.py.
"""

from __future__ import annotations

import threading

from pydicom.dataset import Dataset
from pydicom.uid import UID, generate_uid
from pynetdicom import AE, evt
from pynetdicom.sop_class import StorageCommitmentPushModel, Verification

import dicom_gen
import raw_dimse as raw
from dicom_helpers import DicomWeb, stow_ok
from helpers import free_port

COMMITMENT_INSTANCE = UID("1.2.840.10008.1.20.1.1")
NO_SUCH_OBJECT_INSTANCE = 0x0112


def _request(instances, missing: str) -> Dataset:
    ds = Dataset()
    ds.TransactionUID = generate_uid()
    refs = []
    for i in instances:
        item = Dataset()
        item.ReferencedSOPClassUID = i.sop_class
        item.ReferencedSOPInstanceUID = i.sop_uid
        refs.append(item)
    item = Dataset()
    item.ReferencedSOPClassUID = instances[0].sop_class
    item.ReferencedSOPInstanceUID = missing
    refs.append(item)
    ds.ReferencedSOPSequence = refs
    return ds


class Reports:
    """Collects N-EVENT-REPORT requests received by a handler."""

    def __init__(self):
        self.got: list[tuple[int, Dataset]] = []
        self.on_own_association = None  # whether the archive opened the one the report came on
        self.arrived = threading.Event()

    def handler(self, event):
        self.got.append((event.request.EventTypeID, event.event_information))
        self.on_own_association = event.assoc.is_acceptor
        self.arrived.set()
        return 0x0000, None


def _check(reports: Reports, request: Dataset, instances, missing: str):
    assert reports.arrived.wait(20), "no N-EVENT-REPORT arrived"
    ((event_type, info),) = reports.got
    assert event_type == 2  # some instances failed
    assert info.TransactionUID == request.TransactionUID
    assert sorted(x.ReferencedSOPInstanceUID for x in info.ReferencedSOPSequence) == sorted(i.sop_uid for i in instances)
    (failed,) = info.FailedSOPSequence
    assert failed.ReferencedSOPInstanceUID == missing and failed.FailureReason == NO_SUCH_OBJECT_INSTANCE


def _stored(pacs, tmp_path, n=3):
    instances = dicom_gen.generate(tmp_path / "gen", seed=31, patients=1, studies_per_patient=1,
                                   series_per_study=1, instances_per_series=n)
    stow_ok(DicomWeb(pacs), [i.path for i in instances])
    return instances


def test_commitment_report_on_the_same_association(pacs, tmp_path):
    instances = _stored(pacs, tmp_path)
    missing = generate_uid()
    request = _request(instances, missing)
    reports = Reports()
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(StorageCommitmentPushModel)
    assoc = ae.associate("127.0.0.1", pacs.dicom_port, ae_title=pacs.dicom_aet,
                         evt_handlers=[(evt.EVT_N_EVENT_REPORT, reports.handler)])
    assert assoc.is_established
    try:
        status, _ = assoc.send_n_action(request, 1, StorageCommitmentPushModel, COMMITMENT_INSTANCE)
        assert status.Status == 0x0000, status
        _check(reports, request, instances, missing)
        assert reports.on_own_association is False
    finally:
        assoc.release()


def test_commitment_report_on_a_new_association_after_release(pacs_factory, tmp_path):
    reports = Reports()
    port = free_port()
    modality = AE(ae_title="MODALITY")
    modality.add_supported_context(StorageCommitmentPushModel, scu_role=False, scp_role=True)
    modality.add_requested_context(StorageCommitmentPushModel)
    server = modality.start_server(("127.0.0.1", port), block=False,
                                   evt_handlers=[(evt.EVT_N_EVENT_REPORT, reports.handler)])
    try:
        pacs = pacs_factory({"FULCRUM_DICOM_NODES": f"MODALITY@127.0.0.1:{port}"})
        instances = _stored(pacs, tmp_path)
        missing = generate_uid()
        request = _request(instances, missing)
        assoc = modality.associate("127.0.0.1", pacs.dicom_port, ae_title=pacs.dicom_aet)
        assert assoc.is_established
        status, _ = assoc.send_n_action(request, 1, StorageCommitmentPushModel, COMMITMENT_INSTANCE)
        assoc.release()
        assert status.Status == 0x0000, status
        _check(reports, request, instances, missing)
        assert reports.on_own_association is True
    finally:
        server.shutdown()


def test_bad_commitment_requests_get_their_status(pacs):
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(StorageCommitmentPushModel)
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", pacs.dicom_port, ae_title=pacs.dicom_aet)
    assert assoc.is_established
    try:
        no_refs = Dataset()
        no_refs.TransactionUID = generate_uid()
        status, _ = assoc.send_n_action(no_refs, 1, StorageCommitmentPushModel, COMMITMENT_INSTANCE)
        assert status.Status == 0x0120  # missing attribute
        status, _ = assoc.send_n_action(no_refs, 7, StorageCommitmentPushModel, COMMITMENT_INSTANCE)
        assert status.Status == 0x0123  # no such action
        # A tester's finds: both were Success.
        no_refs.ReferencedSOPSequence = []
        status, _ = assoc.send_n_action(no_refs, 1, StorageCommitmentPushModel, COMMITMENT_INSTANCE)
        assert status.Status == 0x0121  # missing attribute value
        status, _ = assoc.send_n_action(no_refs, 1, StorageCommitmentPushModel, UID("1.2.3"))
        assert status.Status == 0x0117  # invalid object instance
        # The association goes on.
        assert assoc.send_c_echo().Status == 0x0000
    finally:
        assoc.release()


def _echo(pacs) -> int:
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(Verification)
    assoc = ae.associate("127.0.0.1", pacs.dicom_port, ae_title=pacs.dicom_aet)
    assert assoc.is_established
    try:
        return assoc.send_c_echo().Status
    finally:
        assoc.release()


def _answer(s) -> dict:
    """The next N-ACTION-RSP, answering the reports that come before it."""
    while True:
        c = raw.read_command(s)
        if c[0x0100] != 0x0100:
            return c
        s.sendall(raw.pdata([(13, 3, raw.n_event_report_rsp(c))]))


def test_commitment_requests_back_to_back_are_all_answered(pacs):
    """A modality that sends each N-ACTION with its data set in one P-DATA
    PDU as soon as the last was answered: each one was served a level
    deeper, and the 172nd overflowed the stack and aborted the server."""
    s = raw.associate(pacs.dicom_port, [(1, raw.VERIFY, [raw.IMPLICIT]), (13, raw.COMMIT, [raw.EXPLICIT])])
    ref = [("1.2.840.10008.5.1.4.1.1.2", "1.2.3.4.404")]
    for i in range(1, 301):
        s.sendall(raw.pdata([(13, 3, raw.n_action(i)), (13, 2, raw.commit_request(f"1.2.3.4.{i}", ref))]))
        c = _answer(s)
        assert (c[0x0100], c[0x0120], c[0x0900]) == (0x8130, i, 0), (i, c)
    raw.release(s)
    assert _echo(pacs) == 0x0000


def test_deflated_commitment_requests_are_bounded_in_depth_and_size(pacs):
    """250 bytes of deflated request nesting 2,000 levels deep overflowed the
    stack and aborted the server; 900 kB inflating to 900 MB was read."""
    ctx = [(1, raw.VERIFY, [raw.IMPLICIT]), (13, raw.COMMIT, [raw.DEFLATED])]
    tx = raw.explicit((0x0008, 0x1195), b"UI", b"1.2.3.4.5")
    bomb = tx + raw.explicit((0x0008, 0x0100), b"SH", b"XX") + b"\0" * (80 << 20)
    for data in (raw.nested(2000), bomb):
        s = raw.associate(pacs.dicom_port, ctx)
        s.sendall(raw.pdata([(13, 3, raw.n_action(1))]))
        packed = raw.deflate(data)
        for at in range(0, len(packed), 16000):
            last = 2 if at + 16000 >= len(packed) else 0
            s.sendall(raw.pdata([(13, last, packed[at : at + 16000])]))
        c = _answer(s)
        assert c[0x0100] == 0x8130 and c[0x0900] == 0xC000, c  # unable to process
        raw.release(s)
    assert _echo(pacs) == 0x0000


def test_reports_to_a_node_that_never_answers_go_a_few_at_a_time(pacs_factory):
    """A tester's 300 requests in 0.3 s, their modality a node that accepts
    TCP and says nothing: 300 associations were opened to it at once."""
    import socket
    import time

    sink = socket.socket()
    sink.bind(("127.0.0.1", 0))
    sink.listen(512)
    sink.settimeout(0.2)
    pacs = pacs_factory({"FULCRUM_DICOM_NODES": f"RAWSCU@127.0.0.1:{sink.getsockname()[1]}"})
    s = raw.associate(pacs.dicom_port, [(13, raw.COMMIT, [raw.EXPLICIT])])
    ref = [("1.2.840.10008.5.1.4.1.1.2", "1.2.3.4.404")]
    held = []
    try:
        for i in range(1, 41):
            s.sendall(raw.pdata([(13, 3, raw.n_action(i)), (13, 2, raw.commit_request(f"1.2.3.9.{i}", ref))]))
            assert _answer(s)[0x0900] == 0
        raw.release(s)  # the last report goes to the node too
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                held.append(sink.accept()[0])
            except TimeoutError:
                pass
        assert 1 <= len(held) <= 4, len(held)
    finally:
        for c in held:
            c.close()
        sink.close()
