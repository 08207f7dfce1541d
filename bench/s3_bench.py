"""Side-by-side S3 benchmark of Fulcrum and Garage (driven by bench/run.sh).

Every workload runs on both systems in the same run, alternating, and the
medians and Fulcrum/Garage ratios go to BENCHMARKS.md together with the
machine's own limits (dd sequential write/read, fsync latency).
"""

import argparse
import json
import multiprocessing as mp
import os
import platform
import signal
import statistics
import subprocess
import time
import http.client
from urllib.parse import urlsplit

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from benchlib import dd_rates, fsync_latency_ms, peak_rss_mb, start_fulcrum, write_keeping_sections

MB = 1000 * 1000
MIB = 1024 * 1024


def client(endpoint, ak, sk, region):
    return boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=ak, aws_secret_access_key=sk,
        region_name=region, config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


class Fulcrum:
    name = "Fulcrum"

    def __init__(self, binary, workdir):
        self.binary, self.workdir, self.proc, self.n = binary, workdir, None, 0

    def start(self):
        self.n += 1
        self.data = os.path.join(self.workdir, f"fulcrum-{self.n}")
        # benchlib picks free ports for every listener and waits for /healthz
        env = dict(os.environ, FULCRUM_S3_ACCESS_KEY="benchak", FULCRUM_S3_SECRET_KEY="benchsecret", FULCRUM_LOG="warn")
        self.proc, self.endpoint = start_fulcrum(self.binary, self.data, env, os.path.join(self.workdir, f"fulcrum-{self.n}.log"))
        self.bucket = "bench"
        self.s3 = client(self.endpoint, "benchak", "benchsecret", "us-east-1")
        self.s3.create_bucket(Bucket=self.bucket)
        self.creds = ("benchak", "benchsecret", "us-east-1")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)

    def pid(self):
        return self.proc.pid

    def disk_bytes(self):
        out = subprocess.run([self.binary, "stats", "--json", "--data-dir", self.data], capture_output=True, text=True, check=True)
        return json.loads(out.stdout)


class Garage:
    name = "Garage"

    def __init__(self, endpoint, bucket, ak, sk, pid):
        self.endpoint, self.bucket, self.creds, self._pid = endpoint, bucket, (ak, sk, "garage"), pid
        self.s3 = client(endpoint, ak, sk, "garage")

    def start(self):
        pass

    def stop(self):
        pass

    def pid(self):
        return self._pid


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def median(xs):
    return statistics.median(xs)


# ------------------------------------------------------------- workloads

def curl(args):
    subprocess.run(["curl", "-sS", "--fail", "-o", "/dev/null", *args], check=True)


def put_large(sys_, path, size, key):
    """One PUT of a file with curl on a presigned URL (a C client, so the
    Python client's own hashing does not cap the rate)."""
    url = sys_.s3.generate_presigned_url("put_object", Params={"Bucket": sys_.bucket, "Key": key}, ExpiresIn=3600)
    return size / timed(lambda: curl(["-T", path, url])) / MB


def get_large(sys_, size, key):
    url = sys_.s3.generate_presigned_url("get_object", Params={"Bucket": sys_.bucket, "Key": key}, ExpiresIn=3600)
    return size / timed(lambda: curl([url])) / MB


def record(n, size):
    """A distinct, compressible 10 KB-ish JSON record."""
    line = f'{{"patient":"P{n:08d}","modality":"CT","series":{n % 97},"note":"follow-up in 6 months"}}\n'.encode()
    return (line * (size // len(line) + 1))[:size]


def _put_worker(args):
    urls, size, worker = args
    conns = {}
    errors = 0
    for j, url in enumerate(urls):
        body = record(worker * 1_000_000 + j, size)
        u = urlsplit(url)
        c = conns.get(u.netloc) or http.client.HTTPConnection(u.netloc, timeout=30)
        conns[u.netloc] = c
        c.request("PUT", u.path + "?" + u.query, body=body, headers={"Content-Length": str(len(body))})
        r = c.getresponse()
        r.read()
        if r.status != 200:
            errors += 1
    return errors


def small_puts(sys_, count, size, clients, tag):
    """`count` PUTs of `size` bytes from `clients` processes (presigned URLs)."""
    urls = [sys_.s3.generate_presigned_url("put_object", Params={"Bucket": sys_.bucket, "Key": f"{tag}/small/{i:06d}"}, ExpiresIn=3600)
            for i in range(count)]
    shards = [(urls[i::clients], size, i) for i in range(clients)]
    with mp.Pool(clients) as pool:
        t = time.perf_counter()
        errors = sum(pool.map(_put_worker, shards))
        dt = time.perf_counter() - t
    return count / dt, errors


class Stream:
    """A file-like body of `size` pseudo-random bytes generated on the fly."""

    def __init__(self, size):
        self.left = size
        self.block = os.urandom(8 * MIB)
        self.n = 0

    def read(self, n=-1):
        n = self.left if n < 0 else min(n, self.left)
        out = bytearray()
        while len(out) < n:
            self.n += 1
            start = (self.n * 7919) % (len(self.block) - 1)
            take = min(n - len(out), len(self.block) - start)
            out += self.block[start:start + take]
        self.left -= len(out)
        return bytes(out)


def huge_put(sys_, size, tag):
    cfg = TransferConfig(multipart_threshold=8 * MIB, multipart_chunksize=8 * MIB, max_concurrency=10)
    t = time.perf_counter()
    sys_.s3.upload_fileobj(Stream(size), sys_.bucket, f"{tag}/huge", Config=cfg)
    return size / (time.perf_counter() - t) / MB


# ------------------------------------------------------------- report

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fulcrum", required=True)
    ap.add_argument("--garage-endpoint", required=True)
    ap.add_argument("--garage-bucket", required=True)
    ap.add_argument("--garage-access-key", required=True)
    ap.add_argument("--garage-secret-key", required=True)
    ap.add_argument("--garage-pid", type=int, required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    runs = 1 if a.quick else 3
    huge = (1 if a.quick else 5) * 1000 * MB

    fulcrum = Fulcrum(a.fulcrum, a.workdir)
    garage = Garage(a.garage_endpoint, a.garage_bucket, a.garage_access_key, a.garage_secret_key, a.garage_pid)
    systems = [fulcrum, garage]
    res = {s.name: {} for s in systems}

    print("machine limits (dd, fsync)...", flush=True)
    dd = [dd_rates(a.workdir) for _ in range(3)]
    dd_w, dd_r = median([w for w, _ in dd]), median([r for _, r in dd])
    fsync_ms = fsync_latency_ms(a.workdir)

    fulcrum.start()
    blob = os.path.join(a.workdir, "large.bin")
    for rnd in range(runs):  # alternate systems, one round at a time
        with open(blob, "wb") as fh:  # fresh random data each round: no dedup
            fh.write(os.urandom(100 * MB))
        for s in systems:
            key = f"r{rnd}/large"
            print(f"{s.name}: round {rnd + 1}/{runs}", flush=True)
            res[s.name].setdefault("put100", []).append(put_large(s, blob, 100 * MB, key))
            res[s.name].setdefault("get100", []).append(get_large(s, 100 * MB, key))
            rate, errors = small_puts(s, 10_000, 10_000, 8, f"r{rnd}")
            res[s.name].setdefault("small", []).append(rate)
            res[s.name].setdefault("small_errors", []).append(errors)
    fulcrum_stats = fulcrum.disk_bytes()
    fulcrum.stop()

    # Peak RSS during a huge streamed upload: Fulcrum on a fresh process.
    fulcrum.start()
    for s in systems:
        print(f"{s.name}: {huge // MB} MB streamed multipart upload", flush=True)
        res[s.name]["huge"] = huge_put(s, huge, "huge")
        res[s.name]["huge_rss"] = peak_rss_mb(s.pid())
    fulcrum.stop()

    # The disk again after the workloads: on virtual disks the rate moves a lot.
    dd += [dd_rates(a.workdir) for _ in range(2)]
    dd_w, dd_r = median([w for w, _ in dd]), median([r for _, r in dd])
    dd_range = (min(w for w, _ in dd), max(w for w, _ in dd))
    write_report(a.out, res, runs, huge, (dd_w, dd_range), dd_r, fsync_ms, fulcrum_stats, a)


def write_report(path, res, runs, huge, dd_write, dd_r, fsync_ms, stats, a):
    f, g = res["Fulcrum"], res["Garage"]
    dd_w, (dd_lo, dd_hi) = dd_write

    def row(label, key, unit, limit=None):
        fv, gv = median(f[key]), median(g[key])
        lim = f" | {fv / limit * 100:.0f} %" if limit else " | "
        return f"| {label} | {fv:,.1f} {unit} | {gv:,.1f} {unit} | {fv / gv:.2f}×{lim} |"

    version = subprocess.run([a.fulcrum, "--version"], capture_output=True, text=True).stdout.strip()
    garage_v = subprocess.run(["garage", "--version"], capture_output=True, text=True).stdout.strip() or "garage"
    lines = [
        "# Benchmarks",
        "",
        "Written by `bench/run.sh` (do not edit by hand). Fulcrum and Garage run on the",
        "same machine, in the same run, on the same data; each workload alternates",
        f"between them, {runs} time(s); the tables show medians. Clients: curl on",
        "presigned URLs for 100 MB objects, 8 processes sending presigned PUTs for",
        "small objects, boto3 (8 MiB parts, 10 at once) for the streamed upload.",
        "Fulcrum: release build, embedded defaults",
        "(local filesystem + SQLite), every write fsynced before it is acknowledged.",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Linux {platform.release()}; "
        f"{version}; {garage_v.splitlines()[0] if garage_v else 'garage'}.",
        "",
        "## Machine limits (same run)",
        "",
        f"- sequential write, `dd bs=1M count=1024 conv=fdatasync`: **{dd_w:,.0f} MB/s** "
        f"(median of 5, 3 before and 2 after the workloads; range {dd_lo:,.0f}–{dd_hi:,.0f} MB/s)",
        f"- sequential read, `dd bs=1M iflag=direct`: **{dd_r:,.0f} MB/s** (median of 5)",
        f"- fsync of a 4 KiB append: median **{fsync_ms:.2f} ms**",
        "",
        "## Results",
        "",
        "| workload | Fulcrum | Garage | Fulcrum / Garage | Fulcrum vs disk |",
        "| --- | --- | --- | --- | --- |",
        row("PUT 100 MB object (random data)", "put100", "MB/s", dd_w),
        row("GET 100 MB object", "get100", "MB/s", dd_r),
        row("10,000 × 10 KB PUTs, 8 clients", "small", "objects/s"),
        f"| {huge // MB:,} MB streamed multipart upload (8 MiB parts × 10) | {f['huge']:,.1f} MB/s | {g['huge']:,.1f} MB/s | {f['huge'] / g['huge']:.2f}× | |",
        f"| peak RSS of the server | {f['huge_rss']:,.0f} MB (fresh process, during the upload) | {g['huge_rss']:,.0f} MB (whole run) | | |",
        "",
        f"Errors in the small-object runs: Fulcrum {sum(f['small_errors'])}, Garage {sum(g['small_errors'])}.",
        "",
        "## Fulcrum storage on the bench data (before the huge upload)",
        "",
        f"- logical bytes {stats['logical_bytes']:,}, physical bytes {stats['physical_bytes']:,}",
        f"- dedup ratio {stats['dedup_ratio']:.2f}, compression ratio {stats['compression_ratio']:.2f} "
        "(the 100 MB objects are random and incompressible; the small ones are distinct JSON records "
        "that compress, and the same records are sent again in every round)",
        "",
    ]
    write_keeping_sections(path, "\n".join(lines))  # the DICOM section (bench/dicom_bench.py) stays
    print("\n".join(lines))


if __name__ == "__main__":
    main()
