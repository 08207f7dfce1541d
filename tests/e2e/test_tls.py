"""HTTPS on the S3 and HTTP ports (tls_cert / tls_key, FULCRUM_TLS_CERT /
FULCRUM_TLS_KEY) and DICOM over TLS on its own port (dicom_tls_addr):
aws cli, boto3, dicomweb-client and DCMTK over TLS with
a certificate they are told to trust; URLs the server builds say https;
plain HTTP on a TLS port gets nowhere; a bad certificate or key stops the
server at start with a clear message.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import requests

from dicom_helpers import DicomWeb, StoreSCPProcess, dcmtk, describe, stow_ok
from dicom_part10 import dataset_bytes
from helpers import FulcrumServer, MiB, free_port, sha256_file, write_random_file


def _openssl(*cmd):
    res = subprocess.run(["openssl", *map(str, cmd)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]


def _issue(d: Path, ca: Path, ca_key: Path, name: str) -> tuple[Path, Path]:
    """A leaf certificate for 127.0.0.1 that the test CA signs: (cert, key)."""
    cert, key, csr, ext = d / f"{name}.pem", d / f"{name}.key", d / f"{name}.csr", d / f"{name}.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n")
    _openssl("req", *EC, "-keyout", key, "-out", csr, "-subj", f"/CN={name}")
    _openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert,
             "-days", "2", "-extfile", ext)
    return cert, key


def _certificate(d: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, with its key."""
    cert, key = d / "cert.pem", d / "key.pem"
    _openssl("req", "-x509", *EC, "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=fulcrum-e2e",
             "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost")
    return cert, key


def _ca_signed_certificate(d: Path) -> tuple[Path, Path, Path]:
    """A test CA and a leaf certificate it signed for 127.0.0.1: (cert, key, ca).
    rustls (webpki) rightly refuses a CA certificate used as a server's own."""
    ca, ca_key = d / "ca.pem", d / "ca.key"
    _openssl("req", "-x509", *EC, "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=fulcrum-e2e-ca")
    cert, key = _issue(d, ca, ca_key, "peer")
    return cert, key, ca


@pytest.fixture
def tls_server(fulcrum_factory, tmp_path):
    if not shutil.which("openssl"):
        pytest.fail("openssl is needed to make a test certificate", pytrace=False)
    cert, key = _certificate(tmp_path)
    return fulcrum_factory({"FULCRUM_TLS_CERT": str(cert), "FULCRUM_TLS_KEY": str(key)})


def test_s3_and_dicomweb_over_https(tls_server, tmp_path, gen_studies):
    srv = tls_server
    assert srv.endpoint.startswith("https://")
    # aws cli (multipart) and boto3 over TLS.
    src = tmp_path / "big.bin"
    want = write_random_file(src, 20 * MiB, seed=91)
    srv.aws("s3", "mb", "s3://tls-bucket")
    srv.aws("s3", "cp", str(src), "s3://tls-bucket/big.bin")
    out = tmp_path / "out.bin"
    srv.aws("s3", "cp", "s3://tls-bucket/big.bin", str(out))
    assert sha256_file(out) == want
    s3 = srv.client()
    s3.put_object(Bucket="tls-bucket", Key="small", Body=b"over tls")
    assert s3.get_object(Bucket="tls-bucket", Key="small")["Body"].read() == b"over tls"
    # DICOMweb: STOW, QIDO with https RetrieveURLs, WADO through dicomweb-client.
    dw = DicomWeb(srv)
    stow_ok(dw, [i.path for i in gen_studies[:4]])
    studies = dw.qido("/studies")
    urls = [s["00081190"]["Value"][0] for s in studies]
    assert urls and all(u.startswith(f"https://127.0.0.1:{srv.http_port}/dicom-web/studies/") for u in urls), urls
    from dicomweb_client.api import DICOMwebClient

    session = requests.Session()
    session.verify, session.trust_env = srv.tls_ca, False
    client = DICOMwebClient(url=dw.base, session=session)
    i = gen_studies[0]
    assert client.retrieve_instance(i.study_uid, i.series_uid, i.sop_uid).SOPInstanceUID == i.sop_uid
    assert dw.instance_bytes(i.study_uid, i.series_uid, i.sop_uid) == i.read()
    assert requests.get(srv.http_url + "/healthz", verify=srv.tls_ca, timeout=10).text.strip() == "ok"


def test_plain_http_and_untrusted_clients_get_nowhere(tls_server):
    srv = tls_server
    # Plain HTTP to a TLS port: no HTTP answer.
    with socket.create_connection(("127.0.0.1", srv.http_port), timeout=10) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(10)
        try:
            reply = s.recv(100)
        except (ConnectionResetError, TimeoutError):
            reply = b""
    assert not reply.startswith(b"HTTP/"), reply
    # A client that does not trust the certificate refuses it.
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(srv.http_url + "/healthz", timeout=10)
    # And the server is still fine.
    assert requests.get(srv.http_url + "/healthz", verify=srv.tls_ca, timeout=10).ok


def test_bad_certificate_or_key_stops_the_server_with_a_clear_message(binary, tmp_path):
    cert, key = _certificate(tmp_path)
    (tmp_path / "other").mkdir()
    other_cert, _ = _certificate(tmp_path / "other")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a pem file\n")
    cases = [
        ({"FULCRUM_TLS_CERT": str(cert)}, "both a certificate and a key"),
        ({"FULCRUM_TLS_CERT": str(tmp_path / "missing.pem"), "FULCRUM_TLS_KEY": str(key)}, "missing.pem"),
        ({"FULCRUM_TLS_CERT": str(garbage), "FULCRUM_TLS_KEY": str(key)}, "garbage.pem"),
        ({"FULCRUM_TLS_CERT": str(cert), "FULCRUM_TLS_KEY": str(garbage)}, "garbage.pem"),
        ({"FULCRUM_TLS_CERT": str(other_cert), "FULCRUM_TLS_KEY": str(key)}, "do not go together"),
    ]
    for n, (env, says) in enumerate(cases):
        srv = FulcrumServer(binary, tmp_path / f"data{n}", tmp_path / f"server{n}", env)
        with pytest.raises(RuntimeError) as e:
            srv.start()
        assert "exited with" in str(e.value) and says in srv.log_path.read_text(), (env, srv.log_tail())


def test_dicom_over_tls_with_dcmtk(fulcrum_factory, tmp_path, gen_studies):
    # DIMSE over TLS (PS3.15 B.1) on its own port, with the same certificate:
    # DCMTK's echoscu, storescu and findscu as anonymous TLS clients that
    # trust it; plain DICOM on that port gets nowhere.
    cert, key = _certificate(tmp_path)
    port = free_port()
    srv = fulcrum_factory({"FULCRUM_TLS_CERT": str(cert), "FULCRUM_TLS_KEY": str(key),
                           "FULCRUM_DICOM_TLS_ADDR": f"127.0.0.1:{port}"})
    tls = ["+tla", "+cf", str(cert)]
    res = dcmtk("echoscu", "-aec", srv.dicom_aet, *tls, "127.0.0.1", port)
    assert res.returncode == 0, describe(res)
    i = gen_studies[0]
    res = dcmtk("storescu", "-aec", srv.dicom_aet, *tls, "127.0.0.1", port, i.path)
    assert res.returncode == 0, describe(res)
    assert dataset_bytes(DicomWeb(srv).instance_bytes(i.study_uid, i.series_uid, i.sop_uid)) == dataset_bytes(i.read())
    res = dcmtk("findscu", "-S", "-aec", srv.dicom_aet, *tls, "-k", "QueryRetrieveLevel=STUDY",
                "-k", f"StudyInstanceUID={i.study_uid}", "-k", "PatientID", "127.0.0.1", port)
    assert res.returncode == 0 and i.patient_id in res.stdout + res.stderr, describe(res)
    res = dcmtk("echoscu", "-aec", srv.dicom_aet, "127.0.0.1", port)
    assert res.returncode != 0, describe(res)
    # Without a certificate there is no DICOM TLS port.
    bare = FulcrumServer(srv.binary, tmp_path / "bare", tmp_path / "bare-server",
                         {"FULCRUM_DICOM_TLS_ADDR": f"127.0.0.1:{free_port()}"})
    with pytest.raises(RuntimeError):
        bare.start()
    assert "needs tls_cert and tls_key" in bare.log_path.read_text()


def test_c_move_and_send_to_a_tls_node(pacs_factory, tmp_path, gen_studies):
    # A partner PACS reached over TLS (AET@HOST:PORT/tls): DCMTK's storescp
    # with its own certificate, trusted through dicom_tls_ca; C-MOVE and
    # `fulcrum dicom send` deliver byte-exact datasets over it.
    cert, key, ca = _ca_signed_certificate(tmp_path)
    dest = StoreSCPProcess(tmp_path / "tlsdest", ae_title="TLSDEST", extra=("+tls", str(key), str(cert), "-ic"))
    try:
        srv = pacs_factory({"FULCRUM_DICOM_NODES": dest.node + "/tls", "FULCRUM_DICOM_TLS_CA": str(ca)})
        study = gen_studies[0].study_uid
        instances = [i for i in gen_studies if i.study_uid == study]
        stow_ok(DicomWeb(srv), [i.path for i in instances])
        res = dcmtk("movescu", "-S", "-aec", srv.dicom_aet, "-aem", dest.ae_title, "-k", "QueryRetrieveLevel=STUDY",
                    "-k", f"StudyInstanceUID={study}", "127.0.0.1", srv.dicom_port)
        assert res.returncode == 0, describe(res)
        want = {i.sop_uid: dataset_bytes(i.read()) for i in instances}
        assert dest.datasets() == want
        for p in dest.files():
            p.unlink()
        res = srv.dicom_cli("send", "--study", study, "--to", dest.node + "/tls")
        assert res.returncode == 0, res.stdout + res.stderr
        assert dest.datasets() == want
        # Plain DICOM to the TLS peer fails, and a TLS node without trust anchors is refused at start.
        res = srv.dicom_cli("send", "--study", study, "--to", dest.node)
        assert res.returncode != 0
        bad = FulcrumServer(srv.binary, tmp_path / "bad", tmp_path / "bad-server",
                            {"FULCRUM_DICOM_NODES": dest.node + "/tls"})
        with pytest.raises(RuntimeError):
            bad.start()
        assert "set dicom_tls_ca" in bad.log_path.read_text()
    finally:
        dest.stop()


def test_mutual_tls_between_secure_nodes(fulcrum_factory, tmp_path, gen_studies):
    # IHE ATNA secure nodes authenticate each other: with dicom_tls_client_ca
    # the DICOM TLS port takes only peers whose certificate the CA signed,
    # and Fulcrum shows its own certificate to peers that require one.
    peer_cert, peer_key, ca = _ca_signed_certificate(tmp_path)
    own_cert, own_key = _issue(tmp_path, ca, tmp_path / "ca.key", "fulcrum")
    port = free_port()
    dest = StoreSCPProcess(tmp_path / "strict", ae_title="STRICT", extra=("+tls", str(peer_key), str(peer_cert),
                                                                           "+cf", str(ca), "-rc"))
    try:
        srv = fulcrum_factory({
            "FULCRUM_TLS_CERT": str(own_cert), "FULCRUM_TLS_KEY": str(own_key),
            "FULCRUM_DICOM_TLS_ADDR": f"127.0.0.1:{port}", "FULCRUM_DICOM_TLS_CLIENT_CA": str(ca),
            "FULCRUM_DICOM_TLS_CA": str(ca), "FULCRUM_DICOM_NODES": dest.node + "/tls", "E2E_TLS_TRUST": str(ca),
        })
        srv.wait_dicom_ready()
        signed = ["+tls", str(peer_key), str(peer_cert), "+cf", str(ca)]
        res = dcmtk("echoscu", "-aec", srv.dicom_aet, *signed, "127.0.0.1", port)
        assert res.returncode == 0, describe(res)
        res = dcmtk("echoscu", "-aec", srv.dicom_aet, "+tla", "+cf", str(ca), "127.0.0.1", port)
        assert res.returncode != 0, "an anonymous TLS client was let in"
        # Outgoing: storescp requires a client certificate (-rc) and gets Fulcrum's.
        i = gen_studies[0]
        stow_ok(DicomWeb(srv), [i.path])
        res = srv.dicom_cli("send", "--study", i.study_uid, "--to", dest.node + "/tls")
        assert res.returncode == 0, res.stdout + res.stderr
        assert i.sop_uid in dest.datasets()
    finally:
        dest.stop()
