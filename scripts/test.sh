#!/usr/bin/env bash
# Run every Fulcrum test on this machine, installing what is missing.
#
#   scripts/test.sh [--quick] [--rust-only | --e2e-only] [-- PYTEST_ARGS...]
#
#   --quick      skip the slow e2e cases (@pytest.mark.slow: 1 GB transfers,
#                every DICOM fixture in every layer)
#   --rust-only  run only `cargo nextest` (still with PostgreSQL and Garage)
#   --e2e-only   run only the Python end-to-end suite (tests/e2e)
#   -- ARGS      passed to pytest (e.g. -- -k dedup -x)
#
# Environment: FULCRUM_E2E_PROFILE=debug|release picks the binary the e2e
# suite drives (default debug: it moves 1 GB in about a minute, and reusing
# the test build saves a release build);
# FULCRUM_BIN=PATH makes it drive that binary instead, without building.
#
# Steps: apt packages (PostgreSQL, DCMTK, rclone) -> .venv with tests/e2e/requirements.txt
# -> DICOM fixture files (pip download of pinned wheels into
# tests/fixtures/.cache, once) -> garage (cargo install, cached in ~/.cargo/bin)
# -> throwaway PostgreSQL and Garage on loopback -> cargo nextest with
# FULCRUM_TEST_* set -> the e2e suite against the real binary. Everything
# started here is stopped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh
# shellcheck source=scripts/lib/python.sh
source scripts/lib/python.sh
# shellcheck source=scripts/lib/postgres.sh
source scripts/lib/postgres.sh
# shellcheck source=scripts/lib/garage.sh
source scripts/lib/garage.sh
# shellcheck source=scripts/lib/dicom.sh
source scripts/lib/dicom.sh
# shellcheck source=scripts/lib/node.sh
source scripts/lib/node.sh

QUICK=0 RUN_RUST=1 RUN_E2E=1
PYTEST_ARGS=()
while (($#)); do
    case $1 in
        --quick) QUICK=1 ;;
        --rust-only) RUN_E2E=0 ;;
        --e2e-only) RUN_RUST=0 ;;
        --) shift; PYTEST_ARGS=("$@"); break ;;
        -h | --help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument: $1 (see --help)" ;;
    esac
    shift
done
E2E_PROFILE=${FULCRUM_E2E_PROFILE:-debug}
[[ $E2E_PROFILE == release || $E2E_PROFILE == debug ]] || die "FULCRUM_E2E_PROFILE must be release or debug"

START=$SECONDS
declare -A RESULT=() # step -> PASS/FAIL
STEPS=()
record() { STEPS+=("$1"); RESULT[$1]=$2; }

# ---------------------------------------------------------------- cleanup

TMP=
cleanup() {
    local code=$?
    set +e
    # Fulcrum servers the e2e suite left behind (it records their pids).
    if [[ -n $TMP && -d $TMP/pids ]]; then
        local f pid
        for f in "$TMP"/pids/fulcrum-*.pid; do
            [[ -f $f ]] || continue
            pid=$(cat "$f")
            kill -9 "$pid" 2>/dev/null && log "killed leftover fulcrum server $pid"
        done
    fi
    garage_stop
    pg_stop
    [[ -n $TMP ]] && rm -rf "$TMP"
    exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- setup

log "setting up (repo $ROOT)"
pg_ensure_installed
dicom_ensure_installed
apt_ensure rclone restic # S3 clients nobody here wrote (s3cmd comes from PyPI)
# A PACS next to Fulcrum (test_pacs_orthanc.py starts its own on free ports;
# the service Debian's package may start is never used).
apt_ensure orthanc orthanc-dicomweb
venv_ensure "$ROOT"
node_ensure "$ROOT"
dicom_fixtures_fetch "$ROOT"
garage_ensure_installed
if ! command -v cargo-nextest >/dev/null; then
    log "cargo-nextest not found: cargo install cargo-nextest --locked"
    cargo install cargo-nextest --locked --quiet || die "cargo install cargo-nextest failed"
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/fulcrum-test.XXXXXX")
chmod 755 "$TMP" # the PostgreSQL OS user must reach $TMP/pg
mkdir -p "$TMP/pids"
# The e2e suite needs a few GB at its peak (a 1 GB upload, its copy, the
# server's packs); say how much there is, so a full disk is not a mystery.
avail_kb=$(df -Pk "$TMP" | awk 'NR == 2 { print $4 }')
log "free space under $TMP: $((avail_kb / 1024 / 1024)) GB"
((avail_kb < 6 * 1024 * 1024)) && log "WARNING: less than 6 GB free; the large-object tests may fail with 507 (disk full)"
pg_start "$TMP/pg"
garage_start "$TMP/garage"
export FULCRUM_TEST_REQUIRE_ALL=1

# ---------------------------------------------------------------- Rust

if ((RUN_RUST)); then
    log "cargo build + cargo nextest run --workspace"
    if cargo build --workspace --all-targets; then
        if cargo nextest run --workspace --no-fail-fast --no-tests=warn; then
            record rust-tests PASS
        else
            record rust-tests FAIL
        fi
    else
        record rust-build FAIL
    fi
fi

# ---------------------------------------------------------------- e2e

if ((RUN_E2E)); then
    e2e_bin=${FULCRUM_BIN:-}
    if [[ -z $e2e_bin ]]; then
        profile_flag=()
        [[ $E2E_PROFILE == release ]] && profile_flag=(--release)
        log "cargo build ${profile_flag[*]} --workspace --bins for the e2e suite"
        if cargo build "${profile_flag[@]}" --workspace --bins; then
            # Honours CARGO_TARGET_DIR and build.target-dir.
            target_dir=$(cargo metadata --format-version 1 --no-deps |
                python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
            e2e_bin=$target_dir/$E2E_PROFILE/fulcrum
        fi
    fi
    if [[ -n $e2e_bin ]]; then
        marker=()
        ((QUICK)) && marker=(-m "not slow")
        log "pytest tests/e2e against $e2e_bin ${marker[*]} ${PYTEST_ARGS[*]}"
        if FULCRUM_BIN=$e2e_bin FULCRUM_E2E_PID_DIR="$TMP/pids" \
            FULCRUM_E2E_DICOM_CACHE="$FULCRUM_E2E_DICOM_CACHE" TCP_NODELAY=1 \
            .venv/bin/pytest tests/e2e -v -p no:cacheprovider --basetemp="$TMP/e2e" \
            "${marker[@]}" "${PYTEST_ARGS[@]}"; then
            record e2e PASS
        else
            record e2e FAIL
        fi
    else
        record e2e-build FAIL
    fi
fi

# ---------------------------------------------------------------- summary

failed=0 summary=""
for step in "${STEPS[@]}"; do
    summary+=" $step=${RESULT[$step]}"
    [[ ${RESULT[$step]} == FAIL ]] && failed=1
done
elapsed=$((SECONDS - START))
if ((failed)); then
    echo "test.sh: FAILED:$summary ($((elapsed / 60))m$((elapsed % 60))s)"
    exit 1
fi
echo "test.sh: all OK:$summary ($((elapsed / 60))m$((elapsed % 60))s)"
