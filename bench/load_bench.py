#!/usr/bin/env python3
"""Load: 64 concurrent S3 clients mixing reads and writes against one
Fulcrum node for 60 s (boto3, 4 processes x 16 threads so Python itself is
not the limit). Each client loops: 70 % GET of a random preloaded or
written object (checked byte for byte), 25 % PUT of 16 KiB-1 MiB, 5 %
LIST. Reports throughput, p50/p99 latency per operation and the error count
(zero expected) in the load block of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import benchlib

ACCESS, SECRET = "loadbenchaccess", "loadbenchsecret0123456789"


def body(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def client(endpoint):
    return benchlib.s3_client(endpoint, ACCESS, SECRET, max_pool_connections=32)


def worker(proc_id, threads, endpoint, seconds, preload, out_q):
    c = client(endpoint)
    lat = {"get": [], "put": [], "list": []}
    errors = []
    lock = threading.Lock()
    known = dict(preload)  # key -> (seed, size)
    deadline = time.monotonic() + seconds

    def loop(t):
        rng = random.Random(proc_id * 1000 + t)
        n = 0
        while time.monotonic() < deadline:
            r = rng.random()
            try:
                t0 = time.perf_counter()
                if r < 0.70:
                    with lock:
                        key, (seed, size) = rng.choice(list(known.items()))
                    data = c.get_object(Bucket="load", Key=key)["Body"].read()
                    op = "get"
                    if hashlib.sha256(data).digest() != hashlib.sha256(body(seed, size)).digest():
                        errors.append(f"GET {key}: wrong bytes")
                elif r < 0.95:
                    size = rng.randint(16 * 1024, 1024 * 1024)
                    seed = rng.randrange(1 << 30)
                    key = f"w{proc_id}-{t}-{n}"
                    c.put_object(Bucket="load", Key=key, Body=body(seed, size))
                    with lock:
                        known[key] = (seed, size)
                    op = "put"
                else:
                    c.list_objects_v2(Bucket="load", Prefix=f"w{proc_id}-{t}-", MaxKeys=100)
                    op = "list"
                lat[op].append(time.perf_counter() - t0)
            except Exception as e:  # noqa: BLE001 - every failure counts
                errors.append(repr(e)[:200])
            n += 1

    ths = [threading.Thread(target=loop, args=(t,)) for t in range(threads)]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    out_q.put({"lat": lat, "errors": errors})


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


def main():
    root = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fulcrum", default=str(root / "target/release/fulcrum"))
    ap.add_argument("--workdir", default="/var/tmp/fulcrum-load-bench")
    ap.add_argument("--out", default=str(root / "BENCHMARKS.md"))
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--procs", type=int, default=4)
    a = ap.parse_args()
    work = Path(a.workdir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = {**os.environ, "FULCRUM_S3_ACCESS_KEY": ACCESS, "FULCRUM_S3_SECRET_KEY": SECRET, "FULCRUM_LOG": "warn"}
    srv, endpoint = benchlib.start_fulcrum(a.fulcrum, work / "data", env, work / "fulcrum.log")
    try:
        c = client(endpoint)
        c.create_bucket(Bucket="load")
        preload = {}
        for i in range(200):
            size = random.Random(i).randint(16 * 1024, 1024 * 1024)
            c.put_object(Bucket="load", Key=f"pre{i}", Body=body(i, size))
            preload[f"pre{i}"] = (i, size)
        benchlib.reset_peak_rss(srv.pid)
        q = mp.Queue()
        per = a.clients // a.procs
        procs = [mp.Process(target=worker, args=(p, per, endpoint, a.seconds, preload, q)) for p in range(a.procs)]
        t0 = time.monotonic()
        for p in procs:
            p.start()
        results = [q.get() for _ in procs]
        for p in procs:
            p.join()
        wall = time.monotonic() - t0
        rss = benchlib.peak_rss_mb(srv.pid)
        verify_ok = None
    finally:
        srv.send_signal(signal.SIGTERM)
        srv.wait(timeout=30)
    verify_ok = subprocess.run([a.fulcrum, "verify", "--data-dir", str(work / "data")], env=env,
                               capture_output=True).returncode == 0
    lat = {k: sum((r["lat"][k] for r in results), []) for k in ("get", "put", "list")}
    errors = sum((r["errors"] for r in results), [])
    res = {"machine": benchlib.machine_description(), "clients": per * a.procs, "seconds": round(wall, 1),
           "ops": {k: len(v) for k, v in lat.items()},
           "p50_ms": {k: round(pct(v, 50) * 1000, 1) for k, v in lat.items()},
           "p99_ms": {k: round(pct(v, 99) * 1000, 1) for k, v in lat.items()},
           "errors": len(errors), "error_samples": errors[:5], "peak_rss_mb": rss, "verify_clean": verify_ok}
    (Path(__file__).resolve().parent / "load_results.json").write_text(json.dumps(res, indent=2))
    total = sum(res["ops"].values())
    lines = [
        "## Load: 64 concurrent S3 clients, mixed reads and writes",
        "",
        f"Machine: {res['machine']}. One Fulcrum node (embedded: local disk + SQLite), release build; "
        f"{res['clients']} boto3 clients (4 processes) for {res['seconds']} s: 70 % GET (checked byte for byte), "
        "25 % PUT of 16 KiB-1 MiB, 5 % LIST, over 200 preloaded objects plus everything written; the clients run on the same 2 cores as the server. "
        "`bench/run.sh load`.",
        "",
        "| operation | count | per second | p50 | p99 |",
        "|---|---:|---:|---:|---:|",
    ]
    for k in ("get", "put", "list"):
        lines.append(f"| {k.upper()} | {res['ops'][k]} | {res['ops'][k] / wall:.0f} | {res['p50_ms'][k]} ms | {res['p99_ms'][k]} ms |")
    lines += ["", f"Total {total} requests ({total / wall:.0f}/s); errors: **{res['errors']}**; "
              f"peak RSS {rss:.0f} MB; `fulcrum verify` afterwards: {'clean' if verify_ok else 'DAMAGE'}."]
    if errors:
        lines.append("Error samples: " + "; ".join(f"`{e}`" for e in errors[:3]))
    benchlib.write_section(a.out, "load", "\n".join(lines))
    print("\n".join(lines))
    return 0 if not errors and verify_ok else 1


if __name__ == "__main__":
    sys.exit(main())
