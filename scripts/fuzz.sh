#!/usr/bin/env bash
# Fuzz every parser of outside input with cargo-fuzz (libFuzzer), each
# target for a bounded time: the long form of the reliability suite's fuzzing.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
#   SECONDS   per target (default 60); e.g. `scripts/fuzz.sh 600` for the long run
#   TARGET    dicom_ingest multipart s3_xml config catalog_dump (default: all)
#
# Installs cargo-fuzz when missing (needs the nightly toolchain: `cargo
# +nightly`). Targets live in fuzz/ (its own workspace, outside the stable
# build). Seeds are fuzz/corpus/<target>/ (committed); what a run learns
# goes to fuzz/target/corpus/<target>/ (kept between runs, not committed);
# crashes go to fuzz/artifacts/<target>/. Every crash must become a fix
# and a regression test in the crate that owns the code.
#
# Environment: FUZZ_RSS_MB (memory limit per target, default 2048),
# FUZZ_TIMEOUT (seconds one input may take, default 10).
# Exits 1 if any target crashed (panic, sanitizer report, OOM, timeout).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT/fuzz"

log() {
    printf '[fuzz.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2
}

SECS=${1:-60}
shift || true
if ! [[ $SECS =~ ^[0-9]+$ ]]; then
    echo "usage: scripts/fuzz.sh [SECONDS] [TARGET...]" >&2
    exit 2
fi

if ! cargo +nightly --version >/dev/null 2>&1; then
    log "ERROR: the nightly toolchain is needed (rustup toolchain install nightly)"
    exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    log "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

if (($# > 0)); then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

log "building ${#targets[@]} target(s)"
cargo +nightly fuzz build

mkdir -p target/logs
failed=()
summary=()
for t in "${targets[@]}"; do
    work="target/corpus/$t"
    mkdir -p "$work" "corpus/$t"
    args=(-max_total_time="$SECS" -rss_limit_mb="${FUZZ_RSS_MB:-2048}"
        -timeout="${FUZZ_TIMEOUT:-10}" -print_final_stats=1)
    [[ -f dict/$t.dict ]] && args+=(-dict="dict/$t.dict")
    logf="target/logs/$t.log"
    log "$t: ${SECS}s (log: fuzz/$logf)"
    if cargo +nightly fuzz run "$t" "$work" "corpus/$t" -- "${args[@]}" >"$logf" 2>&1; then
        status=ok
    else
        status=CRASH
        failed+=("$t")
        grep -E 'panicked at|ERROR: (AddressSanitizer|libFuzzer)|SUMMARY:|Test unit written to' "$logf" |
            head -n 8 >&2 || true
    fi
    execs=$(grep -oP 'stat::number_of_executed_units:\s*\K[0-9]+' "$logf" | tail -n 1 || true)
    rate=$(grep -oP 'stat::average_exec_per_sec:\s*\K[0-9]+' "$logf" | tail -n 1 || true)
    corpus=$(find "$work" -type f | wc -l)
    summary+=("$(printf '%-14s %-6s %10s execs %7s exec/s %6s corpus files' \
        "$t" "$status" "${execs:-?}" "${rate:-?}" "$corpus")")
done

printf '%s\n' "${summary[@]}"
if ((${#failed[@]} > 0)); then
    log "crashed: ${failed[*]} (inputs in fuzz/artifacts/<target>/; reproduce with cargo +nightly fuzz run TARGET FILE)"
    exit 1
fi
log "no crashes in ${#targets[@]} target(s), ${SECS}s each"
