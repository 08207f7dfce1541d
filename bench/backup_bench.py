#!/usr/bin/env python3
"""Backups side by side: Fulcrum's `backup run/restore` against restic and
borg (Debian packages) on the same data in the same run.

Data: the benchmark CT study (500 slices of 512x512 16-bit, ~250 MB; cached
by bench/dicom_gen.py) and, for the incremental run, a second CT study of
50 slices (~10 %). Fulcrum backs up its platform after `fulcrum dicom
import` of the study (import not timed); restic and borg back up the same
files from a directory. Each round, per system, in alternating order:

  first       first backup into an empty repository
  no-change   a second backup with nothing new
  10 %        a backup after the second study arrived
  restore     restore of the latest snapshot into an empty directory

Every system encrypts (Fulcrum: its backup key; restic: its password;
borg: repokey). Medians of --runs rounds; throughput = logical bytes /
seconds; ratios are Fulcrum's speed over the peer's. Writes the backup block
of BENCHMARKS.md and bench/backup_results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import benchlib
import dicom_gen as gen

STEPS = ["first", "no-change", "10 %", "restore"]


def log(msg):
    print(f"[backup-bench] {msg}", file=sys.stderr, flush=True)


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def sh(cmd, env=None, cwd=None, quiet=True) -> float:
    """Run `cmd`; its wall time in seconds (raises on failure)."""
    t = time.perf_counter()
    res = subprocess.run(cmd, env=env, cwd=cwd, capture_output=quiet, text=True)
    dt = time.perf_counter() - t
    if res.returncode not in (0,):
        raise RuntimeError(f"{cmd[0]} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    return dt


def version(cmd) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True).stdout.strip().splitlines()[0]
    except (OSError, IndexError):
        return "?"


def link_tree(src: Path, dst: Path):
    """Hard links of every file of `src` under `dst` (same bytes, no copy)."""
    dst.mkdir(parents=True, exist_ok=True)
    for p in sorted(src.iterdir()):
        target = dst / p.name
        if not target.exists():
            os.link(p, target)


def fulcrum_round(a, work: Path, ct: Path, extra: Path) -> dict:
    data, repo, out = work / "f-data", work / "f-repo", work / "f-restore"
    env = {**os.environ, "FULCRUM_DATA_DIR": str(data), "FULCRUM_BACKUP_REPO": str(repo),
           "FULCRUM_BACKUP_KEY": secrets.token_hex(32), "FULCRUM_LOG": "warn"}
    f = a.fulcrum
    sh([f, "dicom", "import", str(ct)], env)
    r = {"first": sh([f, "backup", "run"], env), "no-change": sh([f, "backup", "run"], env)}
    sh([f, "dicom", "import", str(extra)], env)
    r["10 %"] = sh([f, "backup", "run"], env)
    r["restore"] = sh([f, "backup", "restore", "--snapshot", "latest", "--to", str(out)], env)
    r["repo_bytes"] = dir_bytes(repo)
    return r


def restic_round(a, work: Path, ct: Path, extra: Path) -> dict:
    src, repo, out = work / "r-src", work / "r-repo", work / "r-restore"
    env = {**os.environ, "RESTIC_REPOSITORY": str(repo), "RESTIC_PASSWORD": secrets.token_hex(16),
           "RESTIC_CACHE_DIR": str(work / "r-cache")}
    link_tree(ct, src / "study")
    sh(["restic", "init"], env)
    backup = ["restic", "backup", "--quiet", str(src)]
    r = {"first": sh(backup, env), "no-change": sh(backup, env)}
    link_tree(extra, src / "extra")
    r["10 %"] = sh(backup, env)
    r["restore"] = sh(["restic", "restore", "latest", "--target", str(out)], env)
    r["repo_bytes"] = dir_bytes(repo)
    return r


def borg_round(a, work: Path, ct: Path, extra: Path) -> dict:
    src, repo, out = work / "b-src", work / "b-repo", work / "b-restore"
    env = {**os.environ, "BORG_PASSPHRASE": secrets.token_hex(16), "BORG_REPO": str(repo),
           "BORG_BASE_DIR": str(work / "b-base"), "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes"}
    link_tree(ct, src / "study")
    sh(["borg", "init", "--encryption=repokey"], env)
    r = {"first": sh(["borg", "create", "::a1", str(src)], env),
         "no-change": sh(["borg", "create", "::a2", str(src)], env)}
    link_tree(extra, src / "extra")
    r["10 %"] = sh(["borg", "create", "::a3", str(src)], env)
    out.mkdir()
    r["restore"] = sh(["borg", "extract", "::a3"], env, cwd=out)
    r["repo_bytes"] = dir_bytes(repo)
    return r


ROUNDS = {"fulcrum": fulcrum_round, "restic": restic_round, "borg": borg_round}


def main():
    root = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fulcrum", default=str(root / "target/release/fulcrum"))
    ap.add_argument("--workdir", default="/var/tmp/fulcrum-backup-bench")
    ap.add_argument("--cache", default="/var/tmp/fulcrum-bench-cache")
    ap.add_argument("--out", default=str(root / "BENCHMARKS.md"))
    ap.add_argument("--results", default=str(Path(__file__).resolve().parent / "backup_results.json"))
    ap.add_argument("--systems", default="fulcrum,restic,borg")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="1 run, 100 + 10 slices")
    a = ap.parse_args()
    slices = 100 if a.quick else 500
    runs = 1 if a.quick else a.runs
    cache = Path(a.cache)
    cache.mkdir(parents=True, exist_ok=True)
    v = {"v": gen.GEN_VERSION}
    ct = gen.ensure(cache, f"ct-{slices}", {**v, "slices": slices}, lambda p: gen.ct_study(p, slices))
    extra = gen.ensure(cache, f"ct-{slices // 10}-seed3", {**v, "slices": slices // 10, "seed": 3},
                       lambda p: gen.ct_study(p, slices // 10, seed=3))
    logical = dir_bytes(ct)
    logical_extra = dir_bytes(extra)
    systems = [s for s in a.systems.split(",") if s]
    raw = {s: [] for s in systems}
    for i in range(runs):
        order = systems if i % 2 == 0 else list(reversed(systems))
        for s in order:
            work = Path(a.workdir) / f"{s}-{i}"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            log(f"round {i + 1}/{runs}: {s}")
            raw[s].append(ROUNDS[s](a, work, ct, extra))
            shutil.rmtree(work, ignore_errors=True)
            log(f"  {raw[s][-1]}")
    results = {
        "machine": benchlib.machine_description(),
        "versions": {"fulcrum": version([a.fulcrum, "--version"]), "restic": version(["restic", "version"]),
                     "borg": version(["borg", "--version"])},
        "logical_bytes": logical,
        "extra_bytes": logical_extra,
        "runs": runs,
        "raw": raw,
    }
    Path(a.results).write_text(json.dumps(results, indent=2))
    benchlib.write_section(a.out, "backup", render(results))
    log(f"wrote {a.out}")


def render(res) -> str:
    med = {s: {k: benchlib.median([r[k] for r in rounds]) for k in STEPS + ["repo_bytes"]}
           for s, rounds in res["raw"].items() if rounds}
    mb = res["logical_bytes"] / 1e6
    total_mb = (res["logical_bytes"] + res["extra_bytes"]) / 1e6
    lines = [
        "## Backups: Fulcrum vs restic and borg",
        "",
        f"Machine: {res['machine']}. Versions: " + ", ".join(f"{k} {v}" for k, v in res["versions"].items()) + ".",
        f"Data: a CT study of {mb:.0f} MB (512x512 16-bit slices), then a second study of "
        f"{res['extra_bytes'] / 1e6:.0f} MB (about 10 %). Fulcrum backs up its whole platform (catalog and "
        "packs, after `fulcrum dicom import`); restic and borg back up the same files. Everyone encrypts. "
        f"Median of {res['runs']} rounds, systems alternating; `bench/run.sh backup`.",
        "",
        "| step | " + " | ".join(med) + " |",
        "|---|" + "---:|" * len(med),
    ]
    for k in STEPS:
        basis = total_mb if k == "restore" else (res["extra_bytes"] / 1e6 if k == "10 %" else mb)
        cells = []
        for s in med:
            t = med[s][k]
            cells.append(f"{t:.2f} s" + (f" ({basis / t:.0f} MB/s)" if k in ("first", "restore") else ""))
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    lines.append("| repository size | " + " | ".join(f"{med[s]['repo_bytes'] / 1e6:.0f} MB" for s in med) + " |")
    if "fulcrum" in med:
        lines += ["", "Fulcrum's speed relative to each peer (time of the peer / time of Fulcrum; > 1: Fulcrum faster):", ""]
        targets = {"first": "≥ 2× restic", "no-change": "≥ 5× restic", "10 %": "≥ 3× restic", "restore": "≥ 1× restic"}
        lines.append("| step | " + " | ".join(s for s in med if s != "fulcrum") + " | target |")
        lines.append("|---|" + "---:|" * (len(med) - 1) + "---|")
        for k in STEPS:
            cells = [f"{med[s][k] / med['fulcrum'][k]:.2f}×" for s in med if s != "fulcrum"]
            lines.append(f"| {k} | " + " | ".join(cells) + f" | {targets[k]} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
