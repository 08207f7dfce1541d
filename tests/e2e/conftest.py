"""Fixtures for Fulcrum's end-to-end suite.

`fulcrum` is a running server on a fresh data dir; `fulcrum_factory(extra_env)`
starts more (e.g. with FULCRUM_MAX_OBJECT_SIZE). Every server is stopped at
teardown (a non-zero exit or a panic in its log fails the test); when a test
fails, the tail of its server log is printed so the report shows what Fulcrum
said.

DICOM (test_dicom*.py): `pacs_factory(extra_env)` / `pacs` also wait for the
DIMSE port; `module_pacs_factory` shares servers across one module's tests
(read-only tests on a loaded archive); `dicom_fixtures` is the classified set
of real-world files (dicom_fixtures.py), `gen_studies` a generated set.
"""

from __future__ import annotations

import itertools
import shutil

import pytest

from helpers import FulcrumServer, fulcrum_bin

_bucket_ids = itertools.count()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Remember each phase's report on the item, for the teardown below."""
    rep = yield
    setattr(item, "rep_" + rep.when, rep)
    return rep


@pytest.fixture(scope="session")
def binary():
    path = fulcrum_bin()
    if not path.exists():
        pytest.fail(f"fulcrum binary not found at {path}; build it or set FULCRUM_BIN", pytrace=False)
    return path


def _stop_all(servers: list[FulcrumServer], failed: bool):
    """Stop every server even if one misbehaves; then report the first problem."""
    problems = []
    for srv in servers:
        try:
            code = srv.stop()
            if code not in (0, None):
                problems.append(f"fulcrum serve exited with {code} on SIGTERM")
        except RuntimeError as e:
            problems.append(str(e))
        log = srv.log_path.read_text(errors="replace") if srv.log_path.exists() else ""
        if "panicked at" in log:
            problems.append(f"fulcrum serve panicked (see {srv.log_path})")
        if failed or problems:
            print(srv.log_tail())
    if problems:
        pytest.fail("; ".join(problems), pytrace=False)


@pytest.fixture
def fulcrum_factory(binary, tmp_path, request):
    """start(extra_env=None) -> a started FulcrumServer with its own data dir."""
    servers: list[FulcrumServer] = []

    def start(extra_env=None) -> FulcrumServer:
        n = len(servers)
        srv = FulcrumServer(binary, tmp_path / f"data{n}", tmp_path / f"server{n}", extra_env)
        servers.append(srv)
        return srv.start()

    yield start

    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    _stop_all(servers, failed)
    if not failed:
        # pytest keeps every tmp_path until the session ends; a passed test's
        # data dirs (up to gigabytes) only fill the disk for the tests after it.
        for srv in servers:
            shutil.rmtree(srv.data_dir, ignore_errors=True)


@pytest.fixture
def fulcrum(fulcrum_factory) -> FulcrumServer:
    """A running server with a fresh data dir."""
    return fulcrum_factory()


@pytest.fixture
def s3(fulcrum):
    """A boto3 client for `fulcrum`."""
    return fulcrum.client()


@pytest.fixture
def bucket(s3) -> str:
    """A freshly created, empty bucket on `fulcrum`."""
    name = f"e2e-bucket-{next(_bucket_ids)}"
    s3.create_bucket(Bucket=name)
    return name


# ---------------------------------------------------------------- DICOM


@pytest.fixture
def pacs_factory(fulcrum_factory):
    """start(extra_env=None) -> a started server whose DIMSE port is listening."""

    def start(extra_env=None) -> FulcrumServer:
        return fulcrum_factory(extra_env).wait_dicom_ready()

    return start


@pytest.fixture
def pacs(pacs_factory) -> FulcrumServer:
    """A running server (HTTP, S3, DIMSE) with a fresh data dir."""
    return pacs_factory()


@pytest.fixture(scope="module")
def module_pacs_factory(binary, tmp_path_factory, request):
    """Like pacs_factory, but the servers live for the whole module (load once,
    query from many tests). Logs are printed at teardown if any test failed."""
    servers: list[FulcrumServer] = []
    root = tmp_path_factory.mktemp(request.module.__name__)
    failed_before = request.session.testsfailed

    def start(extra_env=None) -> FulcrumServer:
        n = len(servers)
        srv = FulcrumServer(binary, root / f"data{n}", root / f"server{n}", extra_env)
        servers.append(srv)
        return srv.start().wait_dicom_ready()

    yield start
    failed = request.session.testsfailed > failed_before
    _stop_all(servers, failed)
    if not failed:
        for srv in servers:
            shutil.rmtree(srv.data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def dicom_fixtures():
    """The classified real-world DICOM files (fetched once into the cache)."""
    import dicom_fixtures as dfx

    try:
        root = dfx.ensure()
    except Exception as e:  # noqa: BLE001
        pytest.fail(f"cannot fetch the DICOM fixtures (scripts/test.sh does it): {e}", pytrace=False)
    return dfx.load(root)


@pytest.fixture(scope="session")
def gen_studies(tmp_path_factory):
    """36 generated instances: 3 patients x 2 studies x 2 series x 3 images (seed 7)."""
    import dicom_gen

    return dicom_gen.generate(tmp_path_factory.mktemp("gen-studies"), seed=7)
