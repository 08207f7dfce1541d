"""Side-by-side DICOM benchmark of Fulcrum and Orthanc (driven by `bench/run.sh dicom`).

    bench/run.sh dicom [--quick] [--systems fulcrum,orthanc] [...]

run.sh installs Debian's orthanc, orthanc-dicomweb and dcmtk and a venv
(bench/requirements.txt), builds `fulcrum` in release mode, and runs this
script, which:

  * generates the data once (bench/dicom_gen.py, cached across runs): a CT
    study (500 slices 512x512 16-bit), its header-edited copy, 10,000 small
    instances for STOW-RS, 1,000 more for C-STORE, a 2 GiB multi-frame
    instance;
  * starts both servers itself as normal processes on free loopback ports,
    a fresh data directory per round (Orthanc: its own temporary JSON
    configuration with the DICOMweb plugin, SQLite index, no compression,
    authentication off);
  * runs every workload on both, alternating which system goes first, 3 times
    (--quick: once, smaller data), and reports medians and Fulcrum/Orthanc
    ratios against the targets of issue 3;
  * measures peak RSS of the server process per workload (VmHWM, reset with
    /proc/PID/clear_refs before each workload), bytes on disk, and the
    machine's own limits (dd, fsync) in the same run;
  * QIDO-RS with 1,000,000 instances: the rows are inserted directly into
    Fulcrum's SQLite catalog while the server is stopped (bench/qido_index.py);
    loading Orthanc with 1,000,000 instances through its API is impractical,
    so both systems are also compared on the benchmark's own data;
  * replaces the DICOM section of BENCHMARKS.md and writes
    bench/dicom_chart.svg.

Every workload's client is the same for both systems: one HTTP/1.1 client
per connection sending prebuilt multipart/related bodies of 50 instances
(STOW-RS), DCMTK's storescu over one association (C-STORE), curl (WADO-RS),
a keep-alive Python client (QIDO-RS).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import urllib.request
from pathlib import Path

import benchlib
import dicom_gen as gen
import dicom_report
import qido_index
from benchlib import free_port, median, peak_rss_mb, reset_peak_rss

benchlib.add_e2e_path()
from dicom_common import dcmtk_path, encode_multipart  # noqa: E402 - tests/e2e/dicom_common.py

STORESCU = dcmtk_path("storescu") or "storescu"  # DCMTK's, not pynetdicom's app

MB = 1000 * 1000
MIB = 1024 * 1024
BOUNDARY = "fulcrum-bench-7d1f0c9a"
STOW_CT = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
ACCEPT_DICOM = 'multipart/related; type="application/dicom"; transfer-syntax=*'


def log(msg):
    print(f"[dicom_bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def dir_bytes(path, apparent=True):
    """Apparent size of the files under `path` (or allocated size with apparent=False)."""
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                st = os.lstat(os.path.join(root, f))
            except FileNotFoundError:
                continue
            total += st.st_size if apparent else st.st_blocks * 512
    return total


def wait_until(what, fn, timeout=30, proc=None, log_path=None):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {proc.returncode}\n{tail(log_path)}")
        try:
            if fn():
                return
        except OSError as e:
            last = e
        time.sleep(0.1)
    raise RuntimeError(f"{what}: not ready in {timeout}s ({last})\n{tail(log_path)}")


def tail(path, n=30):
    if not path:
        return ""
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def port_open(port):
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


def http_ok(url):
    with urllib.request.urlopen(url, timeout=2) as r:
        return r.status == 200


# ------------------------------------------------------------- servers

class Server:
    name = "?"
    aet = "?"

    def __init__(self, workdir):
        self.workdir, self.proc, self.n = Path(workdir), None, 0

    @property
    def pid(self):
        return self.proc.pid

    @property
    def dicomweb(self):
        return f"http://127.0.0.1:{self.http_port}/dicom-web"

    def stop(self):
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def discard(self):
        """Stop and delete this round's data directory."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class Fulcrum(Server):
    name = "Fulcrum"
    aet = "FULCRUM"

    def __init__(self, workdir, binary):
        super().__init__(workdir)
        self.binary = binary

    def start(self, data_dir=None):
        self.n += 1
        self.dir = Path(data_dir) if data_dir else self.workdir / f"fulcrum-{self.n}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.http_port, self.s3_port, self.dicom_port = free_port(), free_port(), free_port()
        self.log_path = self.workdir / f"fulcrum-{self.n}.log"
        env = dict(os.environ, FULCRUM_S3_ACCESS_KEY="benchak", FULCRUM_S3_SECRET_KEY="benchsecret",
                   FULCRUM_LOG="warn", FULCRUM_DICOM_ADDR=f"127.0.0.1:{self.dicom_port}", FULCRUM_DICOM_AET=self.aet,
                   FULCRUM_GC_EVERY_HOURS="0")  # no scheduled GC inside a timed workload
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen(
                [self.binary, "serve", "--data-dir", str(self.dir), "--http-addr", f"127.0.0.1:{self.http_port}",
                 "--s3-addr", f"127.0.0.1:{self.s3_port}"],
                env=env, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_until("fulcrum /healthz", lambda: http_ok(f"http://127.0.0.1:{self.http_port}/healthz"),
                   proc=self.proc, log_path=self.log_path)
        wait_until("fulcrum DIMSE port", lambda: port_open(self.dicom_port), proc=self.proc, log_path=self.log_path)

    def storage(self):
        out = subprocess.run([self.binary, "stats", "--json", "--data-dir", str(self.dir)],
                             capture_output=True, text=True, check=True)
        st = json.loads(out.stdout)
        return {"physical": st["physical_bytes"], "logical": st.get("logical_bytes"),
                "on_disk": dir_bytes(self.dir, apparent=False)}

    def version(self):
        return subprocess.run([self.binary, "--version"], capture_output=True, text=True).stdout.strip()


def orthanc_plugin():
    """libOrthancDicomWeb.so as installed by Debian's orthanc-dicomweb."""
    try:
        files = subprocess.run(["dpkg", "-L", "orthanc-dicomweb"], capture_output=True, text=True).stdout.split()
    except OSError:
        files = []
    for f in files + ["/usr/share/orthanc/plugins/libOrthancDicomWeb.so"]:
        if f.endswith("libOrthancDicomWeb.so") and os.path.exists(f):
            return f
    raise RuntimeError("libOrthancDicomWeb.so not found: apt-get install orthanc-dicomweb")


class Orthanc(Server):
    name = "Orthanc"
    aet = "ORTHANC"

    def __init__(self, workdir, binary="Orthanc"):
        super().__init__(workdir)
        self.binary = shutil.which(binary) or "/usr/sbin/Orthanc"
        self.plugin = orthanc_plugin()
        self.plugin_version = None

    def start(self, nodelay=False):
        self.n += 1
        self.dir = self.workdir / f"orthanc-{self.n}"
        (self.dir / "storage").mkdir(parents=True, exist_ok=True)
        (self.dir / "index").mkdir(parents=True, exist_ok=True)
        self.http_port, self.dicom_port = free_port(), free_port()
        cfg = {
            "Name": "fulcrum-bench",
            "StorageDirectory": str(self.dir / "storage"),
            "IndexDirectory": str(self.dir / "index"),
            "StorageCompression": False,
            "HttpServerEnabled": True,
            "HttpPort": self.http_port,
            "DicomServerEnabled": True,
            "DicomPort": self.dicom_port,
            "DicomAet": self.aet,
            "DicomCheckCalledAet": False,
            "DicomAlwaysAllowStore": True,
            "DicomScpTimeout": 30,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "SslEnabled": False,
            "KeepAlive": True,
            "TcpNoDelay": True,
            "HttpTimeout": 600,
            "SaveJobs": False,
            "OverwriteInstances": False,
            "LimitFindResults": 0,
            "LimitFindInstances": 0,
            "Plugins": [self.plugin],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False},
        }
        cfg_path = self.workdir / f"orthanc-{self.n}.json"
        cfg_path.write_text(json.dumps(cfg, indent=2))
        self.log_path = self.workdir / f"orthanc-{self.n}.log"
        # As Debian's service runs it: DCMTK's TCP_NODELAY unset unless asked
        # (the C-STORE workload is also run once with it set, see one_round).
        env = dict(os.environ)
        env.pop("TCP_NODELAY", None)
        if nodelay:
            env["TCP_NODELAY"] = "1"
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen([self.binary, str(cfg_path)], stdout=logf, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, cwd=self.dir, env=env)
        wait_until("orthanc /system", lambda: http_ok(f"http://127.0.0.1:{self.http_port}/system"),
                   proc=self.proc, log_path=self.log_path)
        wait_until("orthanc DICOM port", lambda: port_open(self.dicom_port), proc=self.proc, log_path=self.log_path)
        if not self.plugin_version:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/plugins/dicom-web", timeout=2) as r:
                    self.plugin_version = json.loads(r.read()).get("Version")
            except (OSError, ValueError):
                pass

    def storage(self):
        return {"physical": dir_bytes(self.dir / "storage"), "logical": None,
                "on_disk": dir_bytes(self.dir, apparent=False)}

    def version(self):
        v = subprocess.run([self.binary, "--version"], capture_output=True, text=True).stdout.splitlines()
        first = v[0].split() if v else []
        return f"Orthanc {first[-1] if first else '?'} with DICOMweb plugin {self.plugin_version or '?'} (Debian)"


# ------------------------------------------------------------- DICOMweb clients

def stow_bodies(files, batch):
    files = sorted(files)
    out = []
    for i in range(0, len(files), batch):
        out.append(encode_multipart([Path(f).read_bytes() for f in files[i:i + batch]], boundary=BOUNDARY)[0])
    return out


def parse_stow(status, data):
    """(stored, failed, error text or None) of one STOW-RS response."""
    stored = failed = 0
    try:
        j = json.loads(data) if data else {}
        if isinstance(j, list):
            j = j[0] if j else {}
        stored = len(j.get("00081199", {}).get("Value", []))
        failed = len(j.get("00081198", {}).get("Value", []))
    except (ValueError, AttributeError):
        pass
    err = None
    if status not in (200, 202) or failed:
        err = f"HTTP {status}: {data[:400].decode(errors='replace')}"
    return stored, failed, err


def stow(server, bodies, clients):
    """POST the bodies from `clients` threads (keep-alive); (seconds, stored, failed, first error)."""
    host_port = ("127.0.0.1", server.http_port)
    path = "/dicom-web/studies"
    results = []
    lock = threading.Lock()

    def worker(mine):
        conn = http.client.HTTPConnection(*host_port, timeout=900)
        for body in mine:
            try:
                conn.request("POST", path, body=body, headers={
                    "Content-Type": STOW_CT, "Accept": "application/dicom+json", "Content-Length": str(len(body))})
                r = conn.getresponse()
                res = parse_stow(r.status, r.read())
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                conn = http.client.HTTPConnection(*host_port, timeout=900)
                res = (0, 0, f"{type(e).__name__}: {e}")
            with lock:
                results.append(res)
        conn.close()

    threads = [threading.Thread(target=worker, args=(bodies[i::clients],)) for i in range(clients)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    dt = time.perf_counter() - t
    errs = [e for _, _, e in results if e]
    return dt, sum(s for s, _, _ in results), sum(f for _, f, _ in results), (errs[0] if errs else None)


def stow_file(server, path):
    """One STOW-RS request with one (large) instance streamed from disk; (seconds, stored, failed, error)."""
    size = os.path.getsize(path)
    head = f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
    foot = f"\r\n--{BOUNDARY}--\r\n".encode()
    conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=3600)
    t = time.perf_counter()
    try:
        conn.putrequest("POST", "/dicom-web/studies")
        conn.putheader("Content-Type", STOW_CT)
        conn.putheader("Accept", "application/dicom+json")
        conn.putheader("Content-Length", str(len(head) + size + len(foot)))
        conn.endheaders()
        conn.send(head)
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(4 * MIB), b""):
                conn.send(block)
        conn.send(foot)
        r = conn.getresponse()
        stored, failed, err = parse_stow(r.status, r.read())
    except (OSError, http.client.HTTPException) as e:
        stored, failed, err = 0, 0, f"{type(e).__name__}: {e}"
    finally:
        conn.close()
    return time.perf_counter() - t, stored, failed, err


def wado_study(server, study_uid):
    """curl GET of the whole study as multipart/related; (bytes, seconds)."""
    url = f"{server.dicomweb}/studies/{study_uid}"
    out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download} %{time_total}",
                          "-H", f"Accept: {ACCEPT_DICOM}", url], capture_output=True, text=True)
    parts = out.stdout.split()
    if out.returncode != 0 or len(parts) != 3 or parts[0] != "200":
        raise RuntimeError(f"GET {url}: curl exit {out.returncode}, {out.stdout} {out.stderr.strip()}")
    return int(parts[1]), float(parts[2])


class Qido:
    def __init__(self, server):
        self.conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=60)

    def fetch(self, path):
        """The response body, read to its last byte (not parsed)."""
        self.conn.request("GET", "/dicom-web" + path, headers={"Accept": "application/dicom+json"})
        r = self.conn.getresponse()
        data = r.read()
        if r.status == 204:
            return b""
        if r.status != 200:
            raise RuntimeError(f"GET /dicom-web{path}: HTTP {r.status} {data[:300].decode(errors='replace')}")
        return data

    def get(self, path):
        data = self.fetch(path)
        return json.loads(data) if data else []

    def close(self):
        self.conn.close()


def qido_latencies(server, queries, warmup=20):
    """{kind: (p50 ms, p99 ms, mean results)} over the given study-level queries."""
    q = Qido(server)
    out = {}
    try:
        for kind, qs in queries.items():
            for s in qs[:warmup]:
                q.get("/studies?" + s)
            lat, hits = [], []
            for s in qs:
                # Timed to the response's last byte; parsing it (and the
                # Python garbage collection that parsing triggers) is the
                # client's own cost, left out for both systems.
                t = time.perf_counter()
                data = q.fetch("/studies?" + s)
                lat.append((time.perf_counter() - t) * 1000)
                hits.append(len(json.loads(data)) if data else 0)
            lat.sort()
            out[kind] = (percentile(lat, 50), percentile(lat, 99), sum(hits) / len(hits), len(lat))
    finally:
        q.close()
    return out


def percentile(sorted_xs, p):
    if not sorted_xs:
        return float("nan")
    k = (len(sorted_xs) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (k - lo)


def count_instances(server, study_uids):
    q = Qido(server)
    try:
        return sum(len(q.get(f"/studies/{u}/instances")) for u in study_uids)
    finally:
        q.close()


def cstore(server, directory):
    """storescu of every file in `directory` over one association; (seconds, failures text or None)."""
    cmd = [STORESCU, "-aet", "BENCHSCU", "-aec", server.aet, "127.0.0.1", str(server.dicom_port),
           "+sd", str(directory)]
    env = dict(os.environ, TCP_NODELAY="1")
    t = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    dt = time.perf_counter() - t
    problems = [l for l in (out.stdout + out.stderr).splitlines() if l.startswith(("E:", "F:"))]
    err = None
    if out.returncode != 0 or problems:
        err = f"storescu exit {out.returncode}: " + " | ".join(problems[:3])
    return dt, err


# ------------------------------------------------------------- the run

class Results:
    """res[system][metric] -> list of values (one per round); errors[system][metric] -> first error."""

    def __init__(self, names):
        self.v = {n: {} for n in names}
        self.err = {n: {} for n in names}

    def add(self, sysname, key, value):
        self.v[sysname].setdefault(key, []).append(value)

    def fail(self, sysname, key, msg):
        self.err[sysname].setdefault(key, msg)
        log(f"{sysname} {key} FAILED: {msg}")

    def med(self, sysname, key):
        xs = self.v.get(sysname, {}).get(key)
        return median(xs) if xs else None


def measured(res, srv, key, fn):
    """Run one workload with the server's peak RSS reset before it; record `key_rss`."""
    reset_peak_rss(srv.pid)
    try:
        out = fn()
    except Exception as e:  # noqa: BLE001 - a failing workload is reported, the run goes on
        res.fail(srv.name, key, f"{type(e).__name__}: {e}")
        traceback.print_exc()
        return None
    res.add(srv.name, f"{key}_rss", peak_rss_mb(srv.pid))
    return out


def stow_workload(res, srv, key, bodies, clients, amount, want=None, log_fmt=None):
    """STOW-RS of `bodies` from `clients` clients, recorded as `key`: `amount`
    (MB or instances) per second. A failure unless `want` instances were stored
    (want=None: unless an error); log_fmt formats the rate for the log."""
    out = measured(res, srv, key, lambda: stow(srv, bodies, clients))
    if out:
        dt, stored, failed, err = out
        if err or (want is not None and stored != want):
            res.fail(srv.name, key, err or f"{stored}/{want} stored")
        res.add(srv.name, key, amount / dt)
        if log_fmt:
            log(f"{srv.name}: {log_fmt.format(amount / dt)} ({stored} stored, {failed} failed)")


def cstore_workload(res, srv, key, d, cstore_studies, label):
    """C-STORE of d["cstore"] over one association, recorded as `key` (instances/s);
    every instance must then be found by QIDO-RS in `cstore_studies`."""
    out = measured(res, srv, key, lambda: cstore(srv, d["cstore"]))
    if out:
        dt, err = out
        got = count_instances(srv, cstore_studies)
        if err or got != d["cstore_n"]:
            res.fail(srv.name, key, (err or "") + f" ({got}/{d['cstore_n']} instances found by QIDO-RS)")
        res.add(srv.name, key, d["cstore_n"] / dt)
        log(f"{label}: C-STORE {d['cstore_n'] / dt:,.1f} instances/s ({got} found)")


def one_round(srv, d, bodies, res, a, qido_queries, cstore_studies):
    name = srv.name
    srv.start()
    ct_bytes = d["ct_bytes"]
    try:
        # 1. STOW-RS of the CT study into an empty archive
        stow_workload(res, srv, "stow_ct", bodies["ct"], 1, ct_bytes / MB, d["ct_n"], "STOW CT {:,.1f} MB/s")
        st1 = srv.storage()
        res.add(name, "physical_pct", st1["physical"] / ct_bytes * 100)
        res.add(name, "on_disk_ct", st1["on_disk"])
        # 2. WADO-RS of the CT study
        out = measured(res, srv, "wado", lambda: wado_study(srv, d["ct_study"]))
        if out:
            n, dt = out
            if n < ct_bytes:
                res.fail(name, "wado", f"retrieved {n:,} bytes < study {ct_bytes:,}")
            res.add(name, "wado", n / dt / MB)
            log(f"{name}: WADO CT {n / dt / MB:,.1f} MB/s ({n:,} bytes)")
        # 2b. the study read again, as a viewer reopening it: the 3rd and
        # 4th retrieve (Fulcrum keeps a chunk the second time it decodes
        # it; Orthanc reads its files from the page cache every time).
        out = measured(res, srv, "wado_again", lambda: [wado_study(srv, d["ct_study"]) for _ in range(3)])
        if out:
            rates = [n / dt / MB for n, dt in out[1:]]
            res.add(name, "wado_again", sum(rates) / len(rates))
            log(f"{name}: WADO CT again " + ", ".join(f"{r:,.0f}" for r in rates) + " MB/s (3rd, 4th)")
        # 3. the same study again
        stow_workload(res, srv, "stow_ct_again", bodies["ct"], 1, ct_bytes / MB)
        st2 = srv.storage()
        res.add(name, "second_pct", (st2["physical"] - st1["physical"]) / ct_bytes * 100)
        # 4. header-edited copy
        stow_workload(res, srv, "stow_edited", bodies["ct_edited"], 1, ct_bytes / MB, d["ct_n"])
        st3 = srv.storage()
        res.add(name, "edited_pct", (st3["physical"] - st2["physical"]) / ct_bytes * 100)
        log(f"{name}: storage {st1['physical'] / ct_bytes * 100:.1f} % of the study; "
            f"second STOW +{(st2['physical'] - st1['physical']) / ct_bytes * 100:.2f} %, "
            f"edited copy +{(st3['physical'] - st2['physical']) / ct_bytes * 100:.2f} %")
        # 5. many small instances, several clients
        stow_workload(res, srv, "stow_small", bodies["small"], a.clients, d["small_n"], d["small_n"],
                      "STOW small {:,.0f} instances/s")
        # 6. C-STORE over one association
        cstore_workload(res, srv, "cstore", d, cstore_studies, name)
        # 7. QIDO-RS on what is loaded now
        out = measured(res, srv, "qido_small", lambda: qido_latencies(srv, qido_queries))
        if out:
            for kind, (p50, p99, hits, n) in out.items():
                res.add(name, f"qido_small:{kind}:p50", p50)
                res.add(name, f"qido_small:{kind}:p99", p99)
                res.add(name, f"qido_small:{kind}:hits", hits)
            log(f"{name}: QIDO " + ", ".join(f"{k} p99 {v[1]:.1f} ms" for k, v in out.items()))
        st = srv.storage()
        res.add(name, "on_disk_all", st["on_disk"])
    finally:
        srv.discard()
    if name == "Orthanc":
        # Orthanc's DIMSE side is DCMTK, which sets TCP_NODELAY only when the
        # variable is in its environment (Debian's service does not set it):
        # C-STORE once more against an Orthanc started with it.
        srv.start(nodelay=True)
        try:
            cstore_workload(res, srv, "cstore_nodelay", d, cstore_studies, f"{name} (TCP_NODELAY=1)")
        finally:
            srv.discard()


def multiframe_round(srv, path, res):
    srv.start()
    try:
        size = os.path.getsize(path)
        out = measured(res, srv, "multiframe", lambda: stow_file(srv, path))
        if out:
            dt, stored, failed, err = out
            if err or stored != 1:
                res.fail(srv.name, "multiframe", err or f"{stored}/1 stored")
            res.add(srv.name, "multiframe", size / dt / MB)
            log(f"{srv.name}: multi-frame {size / MB:,.0f} MB in {dt:.1f} s, peak RSS "
                f"{res.v[srv.name].get('multiframe_rss', [float('nan')])[-1]:,.0f} MB")
    finally:
        srv.discard()


def qido_million(fulcrum, a, res):
    """Fulcrum with `a.qido_rows` generated instances in its catalog."""
    data = fulcrum.workdir / "fulcrum-qido"
    fulcrum.start(data)  # creates the catalog and its tables
    fulcrum.stop()
    t = time.perf_counter()
    counts = qido_index.populate(str(data / "catalog.db"), a.qido_rows)
    log(f"Fulcrum: inserted {counts} into the catalog in {time.perf_counter() - t:.0f} s")
    fulcrum.start(data)
    try:
        queries = qido_index.queries(a.qido_rows, a.queries)
        out = measured(res, fulcrum, "qido_1m", lambda: qido_latencies(fulcrum, queries))
        if out:
            for kind, (p50, p99, hits, n) in out.items():
                res.add("Fulcrum", f"qido_1m:{kind}:p50", p50)
                res.add("Fulcrum", f"qido_1m:{kind}:p99", p99)
                res.add("Fulcrum", f"qido_1m:{kind}:hits", hits)
            log(f"Fulcrum: QIDO ({a.qido_rows:,} instances) " + ", ".join(f"{k} p50 {v[0]:.1f} / p99 {v[1]:.1f} ms ({v[2]:.0f} hits)"
                                                 for k, v in out.items()))
        res.qido_counts = counts
        res.qido_db_bytes = dir_bytes(data)
    finally:
        fulcrum.discard()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fulcrum", default=str(Path(__file__).resolve().parents[1] / "target/release/fulcrum"))
    ap.add_argument("--workdir", default="/var/tmp/fulcrum-dicom-bench", help="server data dirs (deleted by run.sh)")
    ap.add_argument("--cache", default="/var/tmp/fulcrum-bench-cache", help="generated data, kept across runs")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "BENCHMARKS.md"))
    ap.add_argument("--chart", default=str(Path(__file__).resolve().parent / "dicom_chart.svg"))
    ap.add_argument("--results", default=str(Path(__file__).resolve().parent / "dicom_results.json"),
                    help="raw per-round values of the last run")
    ap.add_argument("--render", metavar="RESULTS_JSON", help="only rewrite the section and chart from saved results")
    ap.add_argument("--quick", action="store_true", help="1 run, smaller data")
    ap.add_argument("--systems", default="fulcrum,orthanc", help="comma-separated subset of fulcrum,orthanc")
    ap.add_argument("--runs", type=int)
    ap.add_argument("--ct-slices", type=int)
    ap.add_argument("--small", type=int, help="instances for the small STOW-RS workload")
    ap.add_argument("--cstore", type=int, help="instances for C-STORE")
    ap.add_argument("--multiframe-mib", type=int, help="size of the multi-frame instance")
    ap.add_argument("--qido-rows", type=int, help="instances in Fulcrum's index for QIDO-RS")
    ap.add_argument("--queries", type=int, default=200, help="QIDO-RS queries of each kind")
    ap.add_argument("--batch", type=int, default=50, help="instances per STOW-RS request")
    ap.add_argument("--clients", type=int, default=4, help="concurrent STOW-RS clients for small instances")
    ap.add_argument("--no-orthanc-multiframe", action="store_true", help="skip Orthanc for the multi-frame STOW")
    a = ap.parse_args()
    if a.render:
        a.results = a.render
        return publish(json.loads(Path(a.render).read_text()), a)
    q = a.quick
    a.runs = a.runs or (1 if q else 3)
    a.ct_slices = a.ct_slices or (100 if q else 500)
    a.small = a.small or (1000 if q else 10_000)
    a.cstore = a.cstore or (200 if q else 1000)
    a.multiframe_mib = a.multiframe_mib or (200 if q else 2048)
    a.qido_rows = a.qido_rows or (100_000 if q else 1_000_000)
    for n in (a.small, a.cstore):
        if n % 20:
            ap.error("--small and --cstore must be multiples of 20 (20 instances per patient)")
    names = [s.strip().lower() for s in a.systems.split(",") if s.strip()]
    workdir = Path(a.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ["TCP_NODELAY"] = "1"  # DCMTK clients (storescu); Orthanc gets it only where said

    systems = []
    if "fulcrum" in names:
        if not os.access(a.fulcrum, os.X_OK):
            sys.exit(f"{a.fulcrum} not found: cargo build --release -p fulcrum")
        systems.append(Fulcrum(workdir, a.fulcrum))
    if "orthanc" in names:
        systems.append(Orthanc(workdir))
    if not systems:
        sys.exit("--systems: nothing to run")
    res = Results([s.name for s in systems])
    res.qido_counts, res.qido_db_bytes = None, None

    log("machine limits (dd, fsync)...")
    dd = [benchlib.dd_rates(str(workdir)) for _ in range(3)]
    fsync_ms = benchlib.fsync_latency_ms(str(workdir))

    frame = 512 * 512 * 2
    frames = max(1, a.multiframe_mib * MIB // frame)
    paths = gen.datasets(Path(a.cache), a.ct_slices, a.small, a.cstore, frames)
    ct_files = sorted(paths["ct"].glob("*.dcm"))
    d = {
        "ct_n": len(ct_files),
        "ct_bytes": sum(f.stat().st_size for f in ct_files),
        "ct_study": gen.uid(1, 1),
        "small_n": a.small,
        "small_bytes": sum(f.stat().st_size for f in paths["small"].glob("*.dcm")),
        "cstore": paths["cstore"],
        "cstore_n": a.cstore,
        "multiframe": paths["multiframe"],
        "multiframe_bytes": paths["multiframe"].stat().st_size,
    }
    log(f"building STOW-RS bodies ({a.batch} instances per request)...")
    bodies = {
        "ct": stow_bodies(ct_files, a.batch),
        "ct_edited": stow_bodies(list(paths["ct_edited"].glob("*.dcm")), a.batch),
        "small": stow_bodies(list(paths["small"].glob("*.dcm")), a.batch),
    }
    # QIDO-RS on the benchmark's own data: values of the small instances' studies
    small_patients = [p for p in range(a.small // 20) for _ in range(2)]
    small_studies = [2 * p + st for p in range(a.small // 20) for st in range(2)]
    qido_small = qido_index.query_values(small_patients, small_studies, a.queries, seed=6)
    cstore_studies = [gen.uid(3, 11, 2 * p + st) for p in range(500000, 500000 + a.cstore // 20) for st in range(2)]

    for rnd in range(a.runs):
        order = systems if rnd % 2 == 0 else systems[::-1]
        for srv in order:
            log(f"{srv.name}: round {rnd + 1}/{a.runs}")
            try:
                one_round(srv, d, bodies, res, a, qido_small, cstore_studies)
            except Exception as e:  # noqa: BLE001 - e.g. the server did not start
                res.fail(srv.name, "round", f"{type(e).__name__}: {e}")
                traceback.print_exc()
                srv.stop()
    del bodies

    for srv in systems:
        if srv.name == "Orthanc" and a.no_orthanc_multiframe:
            continue
        log(f"{srv.name}: STOW-RS of the {d['multiframe_bytes'] / MB:,.0f} MB multi-frame instance")
        try:
            multiframe_round(srv, d["multiframe"], res)
        except Exception as e:  # noqa: BLE001
            res.fail(srv.name, "multiframe", f"{type(e).__name__}: {e}")
            srv.stop()

    fulcrum = next((s for s in systems if s.name == "Fulcrum"), None)
    if fulcrum:
        log(f"Fulcrum: QIDO-RS with {a.qido_rows:,} instances in the catalog")
        try:
            qido_million(fulcrum, a, res)
        except Exception as e:  # noqa: BLE001
            res.fail("Fulcrum", "qido_1m", f"{type(e).__name__}: {e}")
            traceback.print_exc()
            fulcrum.stop()

    dd += [benchlib.dd_rates(str(workdir)) for _ in range(2)]
    versions = {}
    for s in systems:
        versions[s.name] = s.version()
    m = re.search(r"v(\d+\.\d+\.\d+)", subprocess.run([STORESCU, "--version"], capture_output=True, text=True).stdout)
    versions["dcmtk"] = f"DCMTK {m.group(1) if m else '?'} (storescu, Debian)"
    raw = {"values": res.v, "errors": res.err, "qido_counts": res.qido_counts, "qido_db_bytes": res.qido_db_bytes,
           "data": {k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()}, "args": vars(a),
           "dd": dd, "fsync_ms": fsync_ms, "versions": versions, "systems": [s.name for s in systems]}
    Path(a.results).write_text(json.dumps(raw, indent=1) + "\n")
    publish(raw, a)


def publish(raw, a):
    """BENCHMARKS.md section and chart from the raw results (also `--render FILE`)."""
    res = Results(raw["systems"])
    res.v, res.err = raw["values"], raw["errors"]
    res.qido_counts, res.qido_db_bytes = raw["qido_counts"], raw["qido_db_bytes"]
    ra = argparse.Namespace(**raw["args"])
    section = dicom_report.render(res, raw["data"], ra, raw["dd"], raw["fsync_ms"], raw["versions"], raw["systems"])
    benchlib.write_section(a.out, "dicom", section)
    Path(a.chart).write_text(dicom_report.chart(res, ra))
    print(section)
    log(f"wrote {a.out}, {a.chart} and {a.results}")


if __name__ == "__main__":
    main()
