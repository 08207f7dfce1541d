"""Operations: Prometheus metrics, graceful shutdown, durability across restart."""

from __future__ import annotations

import time
import urllib.request

from helpers import random_bytes


def test_metrics_after_put(fulcrum, s3, bucket):
    s3.put_object(Bucket=bucket, Key="m", Body=b"metrics")
    s3.get_object(Bucket=bucket, Key="m")["Body"].read()
    with urllib.request.urlopen(fulcrum.http_url + "/metrics", timeout=10) as r:
        assert r.status == 200
        assert r.headers.get("Content-Type", "").startswith(("text/plain", "application/openmetrics-text"))
        text = r.read().decode()
    samples = [line for line in text.splitlines() if line.startswith("fulcrum_")]
    assert samples, f"no fulcrum_ samples in /metrics:\n{text[:2000]}"
    # A sample line is `name{labels} value`; the value must parse.
    for line in samples:
        float(line.rsplit(" ", 1)[1])


def test_healthz(fulcrum):
    with urllib.request.urlopen(fulcrum.http_url + "/healthz", timeout=10) as r:
        assert (r.status, r.read().strip()) == (200, b"ok")


def test_sigterm_exits_zero_and_data_survives(fulcrum, s3, bucket):
    data = random_bytes(1_000_000, seed=70)
    s3.put_object(Bucket=bucket, Key="durable", Body=data)
    t0 = time.monotonic()
    code = fulcrum.stop(timeout=10)
    assert code == 0, f"exit code {code} after SIGTERM"
    assert time.monotonic() - t0 < 10

    fulcrum.start()
    assert fulcrum.client().get_object(Bucket=bucket, Key="durable")["Body"].read() == data
    assert fulcrum.stop(timeout=10) == 0


def test_serve_on_a_taken_port_fails_before_touching_the_data_dir(tmp_path):
    """A node that cannot listen says so and leaves no empty data
    directory, catalog or generated credentials behind."""
    import socket
    import subprocess

    from helpers import free_port, fulcrum_bin

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    data = tmp_path / "never-created"
    try:
        r = subprocess.run(
            [
                str(fulcrum_bin()),
                "serve",
                "--data-dir",
                str(data),
                "--http-addr",
                f"127.0.0.1:{free_port()}",
                "--s3-addr",
                f"127.0.0.1:{taken.getsockname()[1]}",
                "--dicom-addr",
                f"127.0.0.1:{free_port()}",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        taken.close()
    assert r.returncode != 0
    assert "binding S3 address" in r.stderr, r.stderr
    assert not data.exists(), sorted(p.name for p in data.rglob("*"))


def _job_samples(srv) -> dict:
    """{(metric, task): value} of the fulcrum_maintenance_* samples on /metrics,
    metric without its prefix (last_run_ok, ...)."""
    import re

    with urllib.request.urlopen(srv.http_url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for m in re.finditer(r'^fulcrum_maintenance_(\w+)\{task="(\w+)"\} (\S+)$', text, re.M):
        out[(m.group(1), m.group(2))] = float(m.group(3))
    return out


def test_maintenance_outcomes_are_on_the_metrics_page(fulcrum, s3, bucket):
    """Runs of verify, gc and scrub from the command line (as cron runs
    them) show on the server's /metrics: when each last ran and succeeded,
    and what a failed one left, so a dashboard can alert on them."""
    from test_corruption import _flip_middle_byte

    s3.put_object(Bucket=bucket, Key="kept", Body=random_bytes(2_000_000, seed=71))
    assert _job_samples(fulcrum) == {}
    t0 = time.time()
    assert fulcrum.verify().returncode == 0
    fulcrum.gc()
    jobs = _job_samples(fulcrum)
    for job in ("verify", "gc"):
        assert jobs[("last_run_ok", job)] == 1 and jobs[("last_run_problems", job)] == 0
        assert t0 - 1 <= jobs[("last_success_timestamp_seconds", job)] <= time.time() + 1
    assert ("last_run_ok", "scrub") not in jobs and ("last_run_ok", "backup") not in jobs

    _flip_middle_byte(fulcrum.pack_files()[0])
    res = fulcrum.cli("scrub", "--no-repair")
    assert res.returncode == 1, res.stdout + res.stderr
    jobs = _job_samples(fulcrum)
    assert jobs[("last_run_ok", "scrub")] == 0 and jobs[("last_run_problems", "scrub")] >= 1
    assert ("last_success_timestamp_seconds", "scrub") not in jobs
    assert fulcrum.verify().returncode == 1
    jobs = _job_samples(fulcrum)
    assert jobs[("last_run_ok", "verify")] == 0
    # The last success is kept across the failed run.
    assert t0 - 1 <= jobs[("last_success_timestamp_seconds", "verify")] <= time.time()


def test_the_server_collects_garbage_on_schedule(fulcrum_factory):
    """Space of deleted data is reclaimed without an operator's cron job
    (gc_every_hours, daily by default); each run shows on /metrics."""
    srv = fulcrum_factory({"FULCRUM_GC_EVERY_HOURS": "0.0005"})
    s3 = srv.client()
    s3.create_bucket(Bucket="gcb")
    s3.put_object(Bucket="gcb", Key="gone", Body=random_bytes(2_000_000, seed=72))
    s3.put_object(Bucket="gcb", Key="kept", Body=random_bytes(1_000_000, seed=73))
    s3.delete_object(Bucket="gcb", Key="gone")

    def log():
        return srv.log_path.read_text(errors="replace")

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(
        "gc:" in line and " 0 chunks deleted" not in line for line in log().splitlines()
    ):
        time.sleep(0.5)
    runs = [line for line in log().splitlines() if "gc:" in line]
    assert any(" 0 chunks deleted" not in line for line in runs), log()[-3000:]
    assert _job_samples(srv)[("last_run_ok", "gc")] == 1
    assert s3.get_object(Bucket="gcb", Key="kept")["Body"].read() == random_bytes(1_000_000, seed=73)


def test_a_new_data_dir_is_private_and_output_to_a_closed_pipe_is_no_panic(tmp_path):
    """A new user's walkthrough: the catalog (holding the S3 secret) was
    readable by every user, a mistyped --data-dir of `dicom import` made a
    new archive silently, and `fulcrum stats | head -1` panicked."""
    import subprocess

    from helpers import fulcrum_bin

    data = tmp_path / "new" / "data"
    (tmp_path / "empty").mkdir()
    r = subprocess.run(
        [str(fulcrum_bin()), "dicom", "import", "--data-dir", str(data), str(tmp_path / "empty")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert f"creating a new archive in {data}" in r.stderr, r.stderr
    assert data.stat().st_mode & 0o777 == 0o700
    # A reader that closes the pipe at once: the command ends quietly.
    for _ in range(3):
        p = subprocess.Popen(
            [str(fulcrum_bin()), "stats", "--data-dir", str(data)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        p.stdout.close()
        err = p.stderr.read().decode()
        code = p.wait(timeout=30)
        assert code in (0, 141), (code, err)
        assert "panicked" not in err, err


def test_setting_values_that_do_not_parse_stop_the_start(tmp_path):
    """A typo in a schedule or level must not leave the default quietly."""
    import os
    import subprocess

    from helpers import free_port, fulcrum_bin

    for name, value in [("FULCRUM_GC_EVERY_HOURS", "off"), ("FULCRUM_ZSTD_LEVEL", "99"),
                        ("FULCRUM_DICOM_DEFAULT_CHARSET", "GB2312")]:
        r = subprocess.run(
            [
                str(fulcrum_bin()),
                "serve",
                "--data-dir",
                str(tmp_path / "d"),
                "--http-addr",
                f"127.0.0.1:{free_port()}",
                "--s3-addr",
                f"127.0.0.1:{free_port()}",
                "--dicom-addr",
                f"127.0.0.1:{free_port()}",
            ],
            env={**os.environ, name: value},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert r.returncode == 2 and name in r.stderr, (name, r.returncode, r.stderr)


def test_connections_that_send_no_request_are_closed(fulcrum_factory):
    """A socket that never finishes its request header (slowloris), or a
    kept-alive connection left idle, held a descriptor for as long as its
    peer wished, on both ports: 200 of them took 200 of the server's file
    descriptors. They are now closed after the header timeout."""
    import socket
    import time

    srv = fulcrum_factory({"FULCRUM_HTTP_HEADER_TIMEOUT_SECS": "2"})

    def opened(port, first: bytes):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(first)
        return s

    def closed_by_server(s) -> bool:
        try:
            while True:
                data = s.recv(65536)
                if not data:
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    half = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
    whole = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    socks = [opened(srv.http_port, half), opened(srv.s3_port, half), opened(srv.http_port, whole)]
    started = time.monotonic()
    assert all(closed_by_server(s) for s in socks)
    assert time.monotonic() - started < 9
    # Requests on fresh connections are served as before.
    s = opened(srv.http_port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert s.recv(100).startswith(b"HTTP/1.1 200")
    for s in socks:
        s.close()
