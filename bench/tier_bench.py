#!/usr/bin/env python3
"""Archive tier read benchmark: WADO-RS retrieve of a ~250 MB CT study
(500 slices of 512x512x16 bit) while it is hot, then again after a DICOM
lifecycle rule moved it to the archive tier (zstd level 19 on a separate
directory), on one Fulcrum server. Prints both medians and the ratio
archived/hot (the target: an archived read takes at most 2x a hot read),
the time of the tier move, and the storage of each tier.

Standalone: `.venv/bin/python bench/tier_bench.py [--fulcrum BIN]`
(needs the bench venv's numpy and pydicom; the CT study is generated once
into --cache, shared with bench/dicom_bench.py).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pydicom

import dicom_bench as db
import dicom_gen as gen
from benchlib import median

MB = 1000 * 1000


def tier_apply(binary, data_dir, env, *args):
    out = subprocess.run([binary, "tier", "apply", "--data-dir", str(data_dir), "--json", *args],
                         capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"fulcrum tier apply {args}: exit {out.returncode}: {out.stderr}")
    return json.loads(out.stdout)


def reads(srv, study_uid, runs):
    """One warm-up retrieve, then `runs` timed ones; (bytes, [seconds])."""
    size, _ = db.wado_study(srv, study_uid)
    times = []
    for _ in range(runs):
        n, t = db.wado_study(srv, study_uid)
        if n != size:
            raise RuntimeError(f"retrieve returned {n} bytes, expected {size}")
        times.append(t)
    return size, times


def main():
    root = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fulcrum", default=str(root / "target/release/fulcrum"))
    ap.add_argument("--workdir", default="/var/tmp/fulcrum-tier-bench")
    ap.add_argument("--cache", default="/var/tmp/fulcrum-bench-cache")
    ap.add_argument("--ct-slices", type=int, default=500)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--archive-zstd-level", type=int, default=19)
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--out", help="write the archive block of this BENCHMARKS.md")
    a = ap.parse_args()

    ct = gen.ensure(Path(a.cache), f"ct-{a.ct_slices}", {"v": gen.GEN_VERSION, "slices": a.ct_slices},
                    lambda p: gen.ct_study(p, a.ct_slices))
    files = sorted(ct.glob("*.dcm"))
    study_uid = pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID
    work = Path(a.workdir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    cfg = work / "fulcrum.toml"
    cfg.write_text(
        f'archive_backend = "fs://{work / "archive"}"\narchive_zstd_level = {a.archive_zstd_level}\n'
        'lifecycle_interval = "off"\n[[lifecycle]]\nid = "bench-ct"\nmodality = "CT"\nstudy_older_than_days = 0\n')
    os.environ["FULCRUM_CONFIG"] = str(cfg)
    env = dict(os.environ, FULCRUM_LOG="warn")
    srv = db.Fulcrum(work, a.fulcrum)
    srv.start(work / "data")
    try:
        secs, stored, failed, err = db.stow(srv, db.stow_bodies(files, 50), 2)
        if err or failed or stored != len(files):
            raise RuntimeError(f"STOW-RS: {stored} stored, {failed} failed: {err}")
        size, hot = reads(srv, study_uid, a.runs)
        t = time.perf_counter()
        moved = tier_apply(a.fulcrum, srv.dir, env)
        move_secs = time.perf_counter() - t
        if moved["archived_objects"] != len(files):
            raise RuntimeError(f"tier apply archived {moved['archived_objects']} of {len(files)} instances")
        size2, cold = reads(srv, study_uid, a.runs)
        if size2 != size:
            raise RuntimeError("the archived study reads back with another size")
        st = json.loads(subprocess.run([a.fulcrum, "stats", "--json", "--data-dir", str(srv.dir)], env=env,
                                       capture_output=True, text=True, check=True).stdout)
    finally:
        srv.stop()
    ratio = median(cold) / median(hot)
    res = {
        "study_bytes": size,
        "instances": len(files),
        "hot_read_s": median(hot),
        "archived_read_s": median(cold),
        "ratio": ratio,
        "hot_MBps": size / MB / median(hot),
        "archived_MBps": size / MB / median(cold),
        "tier_move_s": move_secs,
        "archive_zstd_level": a.archive_zstd_level,
        "tiers": st["tiers"],
        "binary": a.fulcrum,
    }
    print(json.dumps(res, indent=2))
    print(f"WADO-RS study of {size / MB:.0f} MB: hot {median(hot):.3f}s ({res['hot_MBps']:.0f} MB/s), "
          f"archived {median(cold):.3f}s ({res['archived_MBps']:.0f} MB/s): ratio {ratio:.2f}x "
          f"({'target met' if ratio <= 2.0 else 'target missed'}: archived <= 2x hot); "
          f"tier move {move_secs:.1f}s at zstd {a.archive_zstd_level}")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))
    if a.out:
        import benchlib

        tiers = ", ".join(f"{t['tier']} {t['pack_bytes'] / MB:.0f} MB" for t in st["tiers"])
        benchlib.write_section(a.out, "tier", "\n".join([
            "## Archive tier: reading an archived study",
            "",
            f"Machine: {benchlib.machine_description()}. A {size / MB:.0f} MB CT study ({len(files)} instances) "
            f"stored by STOW-RS, retrieved by WADO-RS (median of {a.runs}) while hot (zstd 1), then again after "
            f"a DICOM lifecycle rule moved it to the archive tier (a separate directory, zstd "
            f"{a.archive_zstd_level}). `bench/run.sh tier`.",
            "",
            "| | read | MB/s |",
            "|---|---:|---:|",
            f"| hot | {median(hot):.3f} s | {res['hot_MBps']:.0f} |",
            f"| archived | {median(cold):.3f} s | {res['archived_MBps']:.0f} |",
            "",
            f"Archived / hot: **{ratio:.2f}×** (target ≤ 2×). Tier move: {move_secs:.1f} s. Storage after the "
            f"move: {tiers}.",
        ]))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
