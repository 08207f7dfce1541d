"""Helpers for Fulcrum's end-to-end suite.

`FulcrumServer` starts the real `fulcrum serve` binary on free loopback ports
(HTTP, S3 and, through FULCRUM_DICOM_ADDR, DIMSE) and drives it: boto3
clients, the aws cli, and the `stats`/`verify`/`gc`/`dicom ...` subcommands
on its data dir. The data helpers make reproducible pseudo-random
bytes and hash them, so every comparison is by SHA-256 of real content.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import boto3
from botocore.config import Config

# Root credentials every test server is started with (shaped like Garage's
# keys, so the suite can also be pointed at a Garage-backed stand-in).
ACCESS_KEY = "GK0123456789abcdef01234567"
SECRET_KEY = "0123456789abcdef" * 4
REGION = "us-east-1"

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_SECS = 20
MiB = 1024 * 1024


_port_rng = random.Random()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now, chosen below the
    kernel's ephemeral range (32768-60999 on Linux): a port the kernel hands
    out is also what the suite's many outgoing connections get, and one of
    them can take it before the server binds it."""
    for _ in range(100):
        port = _port_rng.randrange(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fulcrum_bin() -> Path:
    """The binary under test: $FULCRUM_BIN, else target/release, else target/debug."""
    env = os.environ.get("FULCRUM_BIN")
    if env:
        return Path(env).resolve()
    for profile in ("release", "debug"):
        cand = REPO_ROOT / "target" / profile / "fulcrum"
        if cand.exists():
            return cand
    return REPO_ROOT / "target" / "debug" / "fulcrum"


def aws_cli() -> str:
    """The aws cli installed next to this Python (the venv), else on PATH."""
    cand = Path(sys.executable).parent / "aws"
    if cand.exists():
        return str(cand)
    found = shutil.which("aws")
    if not found:
        raise RuntimeError("aws cli not found; run scripts/test.sh to create .venv")
    return found


# ---------------------------------------------------------------- data


def random_bytes(size: int, seed: int) -> bytes:
    """`size` reproducible pseudo-random (incompressible) bytes."""
    return random.Random(seed).randbytes(size)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_random_file(path: Path, size: int, seed: int) -> str:
    """Write `size` reproducible random bytes to `path`; return their SHA-256."""
    rng = random.Random(seed)
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            block = rng.randbytes(min(left, 8 * MiB))
            f.write(block)
            digest.update(block)
            left -= len(block)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(8 * MiB), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_stream(body) -> tuple[str, int]:
    """Hash a botocore StreamingBody (or any .read()-able) to the end."""
    digest = hashlib.sha256()
    n = 0
    for block in iter(lambda: body.read(8 * MiB), b""):
        digest.update(block)
        n += len(block)
    return digest.hexdigest(), n


def error_code(exc) -> str:
    """The S3 error code of a botocore ClientError."""
    return exc.response.get("Error", {}).get("Code", "")


def http_status(exc) -> int:
    return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)


def list_keys(s3, bucket: str) -> list[str]:
    """Every key in `bucket` (ListObjectsV2, following continuation tokens)."""
    keys, token = [], None
    while True:
        kw = {"Bucket": bucket, **({"ContinuationToken": token} if token else {})}
        page = s3.list_objects_v2(**kw)
        keys += [o["Key"] for o in page.get("Contents", [])]
        if not page.get("IsTruncated"):
            return keys
        token = page["NextContinuationToken"]


def files_under(root: Path) -> set[Path]:
    """Every regular file below `root` (for before/after comparisons)."""
    return {p for p in root.rglob("*") if p.is_file()}


# ---------------------------------------------------------------- server


class FulcrumServer:
    """One `fulcrum serve` process on a data dir; restartable on the same dir."""

    def __init__(self, binary: Path, data_dir: Path, work_dir: Path, extra_env=None):
        self.binary = binary
        self.data_dir = data_dir
        self.work_dir = work_dir  # logs, aws config, the server's cwd
        self.extra_env = dict(extra_env or {})
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.http_port = self.s3_port = 0
        self.dicom_port = 0  # DIMSE SCP (FULCRUM_DICOM_ADDR), a fresh free port per start
        self.log_path = work_dir / "fulcrum.log"
        self.cwd = work_dir / "cwd"
        self.cwd.mkdir(parents=True, exist_ok=True)
        data_dir.mkdir(parents=True, exist_ok=True)

    # -- lifecycle

    @property
    def tls_ca(self) -> str | None:
        """With FULCRUM_TLS_CERT: the file clients trust (E2E_TLS_TRUST, a
        test CA, else the certificate itself when self-signed)."""
        return self.extra_env.get("E2E_TLS_TRUST") or self.extra_env.get("FULCRUM_TLS_CERT")

    @property
    def scheme(self) -> str:
        return "https" if self.tls_ca else "http"

    @property
    def endpoint(self) -> str:
        """S3 endpoint URL."""
        return f"{self.scheme}://127.0.0.1:{self.s3_port}"

    @property
    def http_url(self) -> str:
        """Admin HTTP base URL (/healthz, /metrics)."""
        return f"{self.scheme}://127.0.0.1:{self.http_port}"

    @property
    def dicom_aet(self) -> str:
        """The server's DIMSE AE title (FULCRUM unless a test set FULCRUM_DICOM_AET)."""
        return self.extra_env.get("FULCRUM_DICOM_AET", "FULCRUM")

    @property
    def dicomweb_url(self) -> str:
        """DICOMweb root (STOW/QIDO/WADO-RS) on the admin HTTP port."""
        return self.http_url + "/dicom-web"

    def env(self) -> dict:
        env = dict(os.environ)
        env.update(
            FULCRUM_S3_ACCESS_KEY=ACCESS_KEY,
            FULCRUM_S3_SECRET_KEY=SECRET_KEY,
            RUST_LOG=os.environ.get("FULCRUM_E2E_RUST_LOG", "info"),
            RUST_BACKTRACE="1",
            # The daily GC could run in a long test module and take work a
            # test does itself (`fulcrum gc`); tests that want it say so.
            FULCRUM_GC_EVERY_HOURS="0",
        )
        if self.dicom_port:
            # An environment variable, not --dicom-addr: binaries without DICOM ignore it.
            env["FULCRUM_DICOM_ADDR"] = f"127.0.0.1:{self.dicom_port}"
        env.update(self.extra_env)
        return env

    def start(self, extra_env=None) -> "FulcrumServer":
        """Start on fresh ports and wait for /healthz (20 s)."""
        assert self.proc is None, "server already running"
        if extra_env is not None:
            self.extra_env.update(extra_env)
        for attempt in range(3):
            try:
                return self._start_once()
            except RuntimeError:
                # A port taken between choosing and binding it: new ports.
                if attempt == 2 or "Address already in use" not in self._last_start_log():
                    raise
                self._forget_pid()
        raise AssertionError("unreachable")

    def _last_start_log(self) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text.rsplit("===== start #", 1)[-1]

    def _start_once(self) -> "FulcrumServer":
        self.proc = None
        self.http_port, self.s3_port, self.dicom_port = free_port(), free_port(), free_port()
        self.starts += 1
        log = open(self.log_path, "ab")
        log.write(f"\n===== start #{self.starts} =====\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            [
                str(self.binary),
                "serve",
                "--data-dir",
                str(self.data_dir),
                "--http-addr",
                f"127.0.0.1:{self.http_port}",
                "--s3-addr",
                f"127.0.0.1:{self.s3_port}",
            ],
            env=self.env(),
            cwd=self.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        self._record_pid()
        self._wait_ready()
        return self

    def _wait_ready(self):
        deadline = time.monotonic() + READY_TIMEOUT_SECS
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"fulcrum serve exited with {self.proc.returncode} before it was ready\n" + self.log_tail()
                )
            try:
                ctx = ssl.create_default_context(cafile=self.tls_ca) if self.tls_ca else None
                with urllib.request.urlopen(self.http_url + "/healthz", timeout=2, context=ctx) as r:
                    body = r.read().decode(errors="replace").strip()
                    if r.status == 200 and body == "ok":
                        return
                    last = f"HTTP {r.status} {body!r}"
            except OSError as e:
                last = repr(e)
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"fulcrum serve not ready within {READY_TIMEOUT_SECS}s (last: {last})\n" + self.log_tail())

    def stop(self, timeout: float = 10) -> int:
        """SIGTERM and wait; returns the exit code (kills after `timeout`)."""
        if self.proc is None:
            return 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
            self._forget_pid()
            raise RuntimeError(f"fulcrum serve ignored SIGTERM for {timeout}s; killed") from None
        self.proc = None
        self._forget_pid()
        return code

    def kill(self):
        """SIGKILL (a crash) and reap."""
        if self.proc is None:
            return
        self.proc.kill()
        self.proc.wait()
        self.proc = None
        self._forget_pid()

    def restart(self, extra_env=None) -> "FulcrumServer":
        self.stop()
        return self.start(extra_env)

    def wait_dicom_ready(self, timeout: float = READY_TIMEOUT_SECS):
        """Wait until the DIMSE port accepts TCP connections (after start())."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError("fulcrum serve is not running\n" + self.log_tail())
            try:
                with socket.create_connection(("127.0.0.1", self.dicom_port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(
            f"DIMSE port 127.0.0.1:{self.dicom_port} (FULCRUM_DICOM_ADDR) not listening within {timeout}s\n"
            + self.log_tail()
        )

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no server log)"
        return f"--- last {lines} lines of {self.log_path} ---\n" + "\n".join(text[-lines:])

    # scripts/test.sh kills leftover servers by these pid files if the suite dies.
    def _record_pid(self):
        d = os.environ.get("FULCRUM_E2E_PID_DIR")
        self._pid_file = Path(d) / f"fulcrum-{self.proc.pid}.pid" if d else None
        if self._pid_file:
            self._pid_file.write_text(str(self.proc.pid))

    def _forget_pid(self):
        if getattr(self, "_pid_file", None):
            self._pid_file.unlink(missing_ok=True)
            self._pid_file = None

    # -- clients

    def client(self, access_key=ACCESS_KEY, secret_key=SECRET_KEY, **config):
        """A boto3 S3 client for this server (path-style, us-east-1)."""
        cfg = dict(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1, "mode": "standard"},
            connect_timeout=10,
            read_timeout=120,
            signature_version="s3v4",  # presigned URLs too (boto3 defaults those to SigV2)
        )
        cfg.update(config)
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            verify=self.tls_ca or True,
            region_name=REGION,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            config=Config(**cfg),
        )

    def aws(self, *args, check=True, timeout=1800) -> subprocess.CompletedProcess:
        """Run `aws <args> --endpoint-url <endpoint>` with the root credentials."""
        cfg = self.work_dir / "aws-config"
        if not cfg.exists():
            cfg.write_text("[default]\ns3 =\n    addressing_style = path\n")
        env = dict(os.environ)
        env.update(
            AWS_ACCESS_KEY_ID=ACCESS_KEY,
            AWS_SECRET_ACCESS_KEY=SECRET_KEY,
            AWS_DEFAULT_REGION=REGION,
            AWS_CONFIG_FILE=str(cfg),
            AWS_SHARED_CREDENTIALS_FILE=str(self.work_dir / "no-credentials"),
            AWS_EC2_METADATA_DISABLED="true",
            AWS_MAX_ATTEMPTS="1",
        )
        cmd = [aws_cli(), *args, "--endpoint-url", self.endpoint]
        if self.tls_ca:
            cmd += ["--ca-bundle", self.tls_ca]
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        if check and res.returncode != 0:
            raise AssertionError(
                f"{' '.join(cmd)} exited {res.returncode}\nstdout: {res.stdout}\nstderr: {res.stderr}\n"
                + self.log_tail(30)
            )
        return res

    # -- offline subcommands on the data dir

    def cli(self, *args, timeout=600) -> subprocess.CompletedProcess:
        """Run `fulcrum <subcommand> --data-dir DIR <rest>`; never raises on exit code."""
        sub, *rest = args
        return subprocess.run(
            [str(self.binary), sub, "--data-dir", str(self.data_dir), *rest],
            env=self.env(),
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def dicom_cli(self, sub: str, *rest, timeout=600) -> subprocess.CompletedProcess:
        """Run `fulcrum dicom <sub> --data-dir DIR <rest>`; never raises on exit code."""
        return subprocess.run(
            [str(self.binary), "dicom", sub, "--data-dir", str(self.data_dir), *map(str, rest)],
            env=self.env(),
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def stats(self) -> dict:
        """`fulcrum stats --json` as a dict."""
        res = self.cli("stats", "--json")
        assert res.returncode == 0, f"fulcrum stats failed ({res.returncode}): {res.stderr}"
        try:
            return json.loads(res.stdout)
        except json.JSONDecodeError as e:
            raise AssertionError(f"fulcrum stats --json printed non-JSON ({e}): {res.stdout!r}") from e

    def verify(self) -> subprocess.CompletedProcess:
        return self.cli("verify")

    def gc(self) -> subprocess.CompletedProcess:
        res = self.cli("gc", "--grace-secs", "0")
        assert res.returncode == 0, f"fulcrum gc failed ({res.returncode}):\n{res.stdout}\n{res.stderr}"
        return res

    def pack_files(self) -> list[Path]:
        """Regular files under DIR/store/packs, largest first."""
        root = self.data_dir / "store" / "packs"
        files = [p for p in root.rglob("*") if p.is_file()] if root.exists() else []
        return sorted(files, key=lambda p: p.stat().st_size, reverse=True)
