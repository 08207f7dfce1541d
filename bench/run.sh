#!/usr/bin/env bash
# Side-by-side benchmarks of Fulcrum against what a hospital would run
# instead, on the same machine, same data, same run, plus the machine's own
# disk limits (dd, fsync latency). Writes BENCHMARKS.md at the repository root
# (each workload set replaces only its own section).
#
#   bench/run.sh [s3|dicom|backup|tier|cluster|load|all] [--quick] [options]
#
#   s3     (default) Fulcrum vs Garage on the S3 API (bench/s3_bench.py);
#          --quick: 1 run per workload, 1 GB instead of 5 GB.
#   dicom  Fulcrum vs Orthanc + DICOMweb plugin (Debian) on STOW-RS, C-STORE,
#          WADO-RS, QIDO-RS (1,000,000 index rows), storage and peak RSS
#          (bench/dicom_bench.py; `bench/dicom_bench.py --help` for options,
#          e.g. --systems orthanc). --quick: 1 run, smaller data.
#          FULCRUM_BENCH_BUILD=0 skips `cargo build --release -p fulcrum`.
#          Generated DICOM data is cached in $FULCRUM_BENCH_CACHE
#          (default /var/tmp/fulcrum-bench-cache).
#   backup Fulcrum's `backup run/restore` vs restic and borg (Debian) on a
#          250 MB CT study plus a 10 % increment (bench/backup_bench.py).
#          --quick: 1 run, a 50 MB study.
#   load   64 concurrent S3 clients mixing GET/PUT/LIST for 60 s against
#          one node: p50/p99 and errors (bench/load_bench.py).
#   tier   WADO-RS of a 250 MB CT study hot vs archived (bench/tier_bench.py).
#   cluster  one node vs three on one PostgreSQL + Garage: ingest MB/s and
#          where the CPU goes, with the nodes sharing the cores and with
#          each capped to --node-cores CPUs in a cgroup (root; default 0.1)
#          (bench/cluster_bench.py).
#   all    s3, dicom, backup, tier, cluster, then load (only --quick is passed on to the
#          first three).
#
# Installs what it needs like scripts/test.sh (venvs, Garage, Debian's
# orthanc, orthanc-dicomweb and dcmtk).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh
# shellcheck source=scripts/lib/python.sh
source scripts/lib/python.sh

MODE=s3
case ${1:-} in
s3 | dicom | backup | tier | cluster | load | all)
    MODE=$1
    shift
    ;;
-h | --help)
    # this file's header comment, without the '#'
    sed -n '2,/^[^#]/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
    exit 0
    ;;
esac

run_s3() {
    # shellcheck source=scripts/lib/garage.sh
    source scripts/lib/garage.sh
    venv_ensure "$ROOT"
    garage_ensure_installed
    log "cargo build --release"
    cargo build --release --bins

    local tmp
    tmp=$(mktemp -d "${TMPDIR:-/var/tmp}/fulcrum-bench.XXXXXX")
    # shellcheck disable=SC2064
    trap "set +e; garage_stop; rm -rf '$tmp'" EXIT
    garage_start "$tmp/garage"

    .venv/bin/python bench/s3_bench.py \
        --fulcrum "$ROOT/target/release/fulcrum" \
        --garage-endpoint "$FULCRUM_TEST_S3_ENDPOINT" \
        --garage-bucket "$FULCRUM_TEST_S3_BUCKET" \
        --garage-access-key "$FULCRUM_TEST_S3_ACCESS_KEY" \
        --garage-secret-key "$FULCRUM_TEST_S3_SECRET_KEY" \
        --garage-pid "$(pgrep -f "garage -c $tmp/garage" | head -1)" \
        --workdir "$tmp" --out "$ROOT/BENCHMARKS.md" "$@"
    garage_stop
    rm -rf "$tmp"
    trap - EXIT
}

# The release binary every workload drives (FULCRUM_BENCH_BUILD=0: as is).
build_release() {
    if [[ ${FULCRUM_BENCH_BUILD:-1} != 0 ]]; then
        log "cargo build --release -p fulcrum"
        cargo build --release -p fulcrum
    fi
}

# Runs bench/DRIVER with the release binary, a scratch --workdir (removed
# afterwards) and --out BENCHMARKS.md:  run_driver NAME PYTHON DRIVER [args]
run_driver() {
    local name=$1 py=$2 driver=$3
    shift 3
    build_release
    local tmp
    tmp=$(mktemp -d "${TMPDIR:-/var/tmp}/fulcrum-$name-bench.XXXXXX")
    # shellcheck disable=SC2064
    trap "rm -rf '$tmp'" EXIT
    "$py" "bench/$driver" --fulcrum "$ROOT/target/release/fulcrum" \
        --workdir "$tmp" --out "$ROOT/BENCHMARKS.md" "$@"
    rm -rf "$tmp"
    trap - EXIT
}

# Generated data shared by the DICOM, backup and tier benchmarks.
CACHE=${FULCRUM_BENCH_CACHE:-/var/tmp/fulcrum-bench-cache}

run_dicom() {
    # Debian's orthanc package may start its own service on install; the
    # benchmark never uses it (it starts Orthanc itself on free ports).
    apt_ensure orthanc orthanc-dicomweb dcmtk curl
    # its own venv: a benchmark never rebuilds the .venv a running suite uses
    venv_ensure "$ROOT" "$ROOT/bench/.venv" "$ROOT/bench/requirements.txt"
    export TCP_NODELAY=1 # DCMTK: without it small PDUs meet Nagle + delayed ACK
    run_driver dicom bench/.venv/bin/python dicom_bench.py --cache "$CACHE" "$@"
}

run_backup() {
    apt_ensure restic borgbackup
    venv_ensure "$ROOT" "$ROOT/bench/.venv" "$ROOT/bench/requirements.txt"
    run_driver backup bench/.venv/bin/python backup_bench.py --cache "$CACHE" "$@"
}

run_tier() {
    venv_ensure "$ROOT" "$ROOT/bench/.venv" "$ROOT/bench/requirements.txt"
    run_driver tier bench/.venv/bin/python tier_bench.py --cache "$CACHE" "$@"
}

run_load() {
    venv_ensure "$ROOT"
    run_driver load .venv/bin/python load_bench.py "$@"
}

run_cluster() {
    # shellcheck source=scripts/lib/postgres.sh
    source scripts/lib/postgres.sh
    # shellcheck source=scripts/lib/garage.sh
    source scripts/lib/garage.sh
    venv_ensure "$ROOT"
    garage_ensure_installed
    build_release
    local tmp
    tmp=$(mktemp -d "${TMPDIR:-/var/tmp}/fulcrum-cluster-bench.XXXXXX")
    chmod 755 "$tmp"
    # shellcheck disable=SC2064
    trap "set +e; garage_stop; pg_stop; rm -rf '$tmp'" EXIT
    pg_start "$tmp/pg"
    garage_start "$tmp/garage"
    .venv/bin/python bench/cluster_bench.py --fulcrum "$ROOT/target/release/fulcrum" \
        --workdir "$tmp/nodes" --pg-urls "$FULCRUM_E2E_PG_URLS" --buckets "$FULCRUM_E2E_S3_BUCKETS" \
        --garage-endpoint "$FULCRUM_TEST_S3_ENDPOINT" \
        --garage-access-key "$FULCRUM_TEST_S3_ACCESS_KEY" --garage-secret-key "$FULCRUM_TEST_S3_SECRET_KEY" \
        --out "$ROOT/BENCHMARKS.md" "$@"
    garage_stop
    pg_stop
    rm -rf "$tmp"
    trap - EXIT
}

case $MODE in
s3) run_s3 "$@" ;;
cluster) run_cluster "$@" ;;
load) run_load "$@" ;;
dicom) run_dicom "$@" ;;
backup) run_backup "$@" ;;
tier) run_tier "$@" ;;
all)
    quick=()
    for a in "$@"; do [[ $a == --quick ]] && quick=(--quick); done
    run_s3 "${quick[@]}"
    run_dicom "${quick[@]}"
    run_backup "${quick[@]}"
    run_tier
    run_cluster
    run_load
    ;;
esac
