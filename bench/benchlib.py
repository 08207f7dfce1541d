"""Shared pieces of the benchmark drivers (stdlib only): the machine's own
limits, peak RSS of a server process, BENCHMARKS.md sections, and the path to
the e2e suite's pytest-free DICOM helpers (tests/e2e/dicom_common.py).

BENCHMARKS.md is written by several drivers; each owns one section:
bench/s3_bench.py the top of the file, bench/dicom_bench.py and
bench/backup_bench.py a marked block each (SECTIONS), which every writer
keeps in place.
"""

from __future__ import annotations

import os
import platform
import re
import statistics
import subprocess
import sys
import time

# name -> (begin marker, end marker), in the order the blocks are written.
SECTIONS = {
    "dicom": (
        "<!-- BEGIN dicom section: written by bench/run.sh dicom (bench/dicom_bench.py) -->",
        "<!-- END dicom section -->",
    ),
    "backup": (
        "<!-- BEGIN backup section: written by bench/run.sh backup (bench/backup_bench.py) -->",
        "<!-- END backup section -->",
    ),
    "cluster": (
        "<!-- BEGIN cluster section: written by bench/run.sh cluster (bench/cluster_bench.py) -->",
        "<!-- END cluster section -->",
    ),
    "tier": (
        "<!-- BEGIN tier section: written by bench/tier_bench.py --out -->",
        "<!-- END tier section -->",
    ),
    "load": (
        "<!-- BEGIN load section: written by bench/run.sh load (bench/load_bench.py) -->",
        "<!-- END load section -->",
    ),
}
E2E_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "tests", "e2e")


def add_e2e_path():
    """Make tests/e2e importable (for dicom_common, shared with the e2e suite).
    Appended, so bench/'s own modules win where names clash (dicom_gen)."""
    if E2E_DIR not in sys.path:
        sys.path.append(E2E_DIR)


def free_port():
    """A TCP port free on loopback now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def s3_client(endpoint, access_key, secret_key, region="us-east-1", **config):
    """A boto3 S3 client (path-style, no retries: every failure counts)."""
    import boto3
    from botocore.config import Config

    cfg = {"s3": {"addressing_style": "path"}, "retries": {"max_attempts": 1}, **config}
    return boto3.session.Session().client(
        "s3", endpoint_url=endpoint, region_name=region, aws_access_key_id=access_key,
        aws_secret_access_key=secret_key, config=Config(**cfg))


def start_fulcrum(binary, data_dir, env, log_path, timeout=20, cpu_cap=None):
    """`fulcrum serve` on fresh loopback ports, ready (/healthz answers);
    returns (process, S3 endpoint). With `cpu_cap` (a CpuCap) the server
    runs inside that CPU limit from its first instruction."""
    import urllib.request

    s3, http, dicom = free_port(), free_port(), free_port()
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [binary, "serve", "--data-dir", str(data_dir), "--s3-addr", f"127.0.0.1:{s3}",
         "--http-addr", f"127.0.0.1:{http}"],
        # No scheduled GC inside a timed workload (a daily job by default).
        env={**env, "FULCRUM_DICOM_ADDR": f"127.0.0.1:{dicom}", "FULCRUM_GC_EVERY_HOURS": "0"},
        stdout=log, stderr=subprocess.STDOUT,
        preexec_fn=cpu_cap.join if cpu_cap else None)
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{http}/healthz", timeout=1)
            return proc, f"http://127.0.0.1:{s3}"
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"fulcrum serve did not come up (see {log_path})") from None
            time.sleep(0.1)


class CpuCap:
    """A cgroup that limits its processes to `cores` CPUs' worth of time (CFS
    quota), to stand in for a machine of that size: on the 2-core benchmark
    machine, nodes capped this way behave like small separate machines
    while the shared services keep the rest. cgroup v2 (cpu.max) or v1
    (cpu.cfs_quota_us); needs root. `CpuCap.available()` says whether it can
    work here."""

    V2 = "/sys/fs/cgroup"
    V1 = "/sys/fs/cgroup/cpu"
    PERIOD_US = 10_000

    def __init__(self, name, cores):
        quota = max(1000, int(cores * self.PERIOD_US))
        if self._v2():
            self.path = os.path.join(self.V2, name)
            os.makedirs(self.path, exist_ok=True)
            with open(os.path.join(self.path, "cpu.max"), "w") as f:
                f.write(f"{quota} {self.PERIOD_US}")
        else:
            self.path = os.path.join(self.V1, name)
            os.makedirs(self.path, exist_ok=True)
            with open(os.path.join(self.path, "cpu.cfs_period_us"), "w") as f:
                f.write(str(self.PERIOD_US))
            with open(os.path.join(self.path, "cpu.cfs_quota_us"), "w") as f:
                f.write(str(quota))
        self.cores = cores

    @classmethod
    def _v2(cls):
        try:
            with open(os.path.join(cls.V2, "cgroup.subtree_control")) as f:
                return "cpu" in f.read().split()
        except OSError:
            return False

    @classmethod
    def available(cls):
        """None when capping works here, else why not."""
        if os.geteuid() != 0:
            return "needs root (cgroup writes)"
        if cls._v2() or os.path.exists(os.path.join(cls.V1, "cpu.cfs_quota_us")):
            return None
        return "no cgroup CPU controller (v2 cpu.max or v1 cpu.cfs_quota_us)"

    def join(self):
        """Moves the calling process into the cgroup (a Popen preexec_fn)."""
        with open(os.path.join(self.path, "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))

    def throttled_seconds(self):
        """Time the cgroup's processes waited for quota so far."""
        with open(os.path.join(self.path, "cpu.stat")) as f:
            for line in f:
                k, v = line.split()
                if k == "throttled_usec":
                    return int(v) / 1e6
                if k == "throttled_time":
                    return int(v) / 1e9
        return 0.0

    def remove(self):
        try:
            os.rmdir(self.path)
        except OSError:
            pass


def median(xs):
    return statistics.median(xs)


# ------------------------------------------------------------- machine

def dd_rates(workdir):
    """Sequential write (1 GiB, fdatasync) and direct read rates in MB/s."""
    path = os.path.join(workdir, "dd.bin")
    w = subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=1M", "count=1024", "conv=fdatasync"], capture_output=True, text=True)
    r = subprocess.run(["dd", f"if={path}", "of=/dev/null", "bs=1M", "iflag=direct"], capture_output=True, text=True)
    os.unlink(path)

    def rate(out):
        m = re.search(r"([\d.]+) s, ([\d.]+) ([kMG]B)/s", out)
        if not m:
            return float("nan")
        return float(m.group(2)) * {"kB": 0.001, "MB": 1, "GB": 1000}[m.group(3)]
    return rate(w.stderr), rate(r.stderr)


def fsync_latency_ms(workdir):
    """Median fsync latency of a 4 KiB append (200 samples)."""
    path = os.path.join(workdir, "fsync.bin")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    lat = []
    for _ in range(200):
        os.write(fd, b"x" * 4096)
        t = time.perf_counter()
        os.fsync(fd)
        lat.append((time.perf_counter() - t) * 1000)
    os.close(fd)
    os.unlink(path)
    return median(lat)


def machine_description():
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gb = float("nan")
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_gb = int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return (f"{platform.machine()}{' ' + cpu if cpu else ''}, {os.cpu_count()} cores, "
            f"{mem_gb:.0f} GiB RAM, Linux {platform.release()}")


# ------------------------------------------------------------- processes

def peak_rss_mb(pid):
    """VmHWM of a process (its peak resident set since start or the last reset)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak_rss(pid):
    """Reset VmHWM to the current RSS (Linux >= 4.0, `echo 5 > clear_refs`). False if not allowed."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# ------------------------------------------------------------- BENCHMARKS.md

def split_section(text, name):
    """(text without block `name`, the block including its markers or '')."""
    begin, end = SECTIONS[name]
    b, e = text.find(begin), text.find(end)
    if b < 0 or e < b:
        return text, ""
    e += len(end)
    return text[:b].rstrip("\n") + "\n" + text[e:].lstrip("\n"), text[b:e]


def read_or_empty(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def write_keeping_sections(path, text):
    """Write `text` as the file, keeping every marked block of the current file at its end."""
    current = read_or_empty(path)
    out = text.rstrip("\n") + "\n"
    for name in SECTIONS:
        _, block = split_section(current, name)
        if block:
            out += "\n" + block + "\n"
    with open(path, "w") as f:
        f.write(out)


def write_section(path, name, body):
    """Replace block `name` of `path` with `body`, keeping the other blocks in order."""
    current = read_or_empty(path)
    rest = current
    blocks = {}
    for n in SECTIONS:
        rest, blocks[n] = split_section(rest, n)
    begin, end = SECTIONS[name]
    blocks[name] = begin + "\n" + body.rstrip("\n") + "\n" + end
    if not rest.strip():
        rest = "# Benchmarks\n"
    out = rest.rstrip("\n") + "\n"
    for n in SECTIONS:
        if blocks[n]:
            out += "\n" + blocks[n] + "\n"
    with open(path, "w") as f:
        f.write(out)
