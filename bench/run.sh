#!/usr/bin/env bash
# Side-by-side S3 benchmark: Fulcrum (release build) and Garage on the same
# machine, same data, same run, plus the machine's own disk limits (dd,
# fsync latency). Writes BENCHMARKS.md at the repository root.
#
#   bench/run.sh [--quick]     --quick: 1 run per workload, 1 GB instead of 5 GB
#
# Installs what it needs like scripts/test.sh (venv with boto3, Garage).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
source scripts/lib/common.sh
source scripts/lib/python.sh
source scripts/lib/garage.sh

venv_ensure "$ROOT"
garage_ensure_installed
log "cargo build --release"
cargo build --release --bins

TMP=$(mktemp -d "${TMPDIR:-/var/tmp}/fulcrum-bench.XXXXXX")
cleanup() { set +e; garage_stop; rm -rf "$TMP"; }
trap cleanup EXIT
garage_start "$TMP/garage"

.venv/bin/python bench/s3_bench.py \
    --fulcrum "$ROOT/target/release/fulcrum" \
    --garage-endpoint "$FULCRUM_TEST_S3_ENDPOINT" \
    --garage-bucket "$FULCRUM_TEST_S3_BUCKET" \
    --garage-access-key "$FULCRUM_TEST_S3_ACCESS_KEY" \
    --garage-secret-key "$FULCRUM_TEST_S3_SECRET_KEY" \
    --garage-pid "$(pgrep -f "garage -c $TMP/garage" | head -1)" \
    --workdir "$TMP" --out "$ROOT/BENCHMARKS.md" "$@"
