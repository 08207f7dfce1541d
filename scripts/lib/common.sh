# shellcheck shell=bash
# Shared helpers for scripts/test.sh: logging, free ports, apt installs,
# waiting for a condition. Sourced, never executed.

# log MSG...: one timestamped progress line on stderr.
log() {
    printf '[test.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2
}

# die MSG...: log and exit non-zero.
die() {
    log "ERROR: $*"
    exit 1
}

# free_port: print a TCP port on 127.0.0.1 that is free right now.
# The kernel picks it; a tiny race with other binders remains, as everywhere.
free_port() {
    python3 - <<'PY'
import socket
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])
PY
}

# wait_until TIMEOUT_SECS DESCRIPTION CMD...: rerun CMD every 0.2 s until it
# succeeds; die after TIMEOUT_SECS.
wait_until() {
    local timeout=$1 what=$2
    shift 2
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            die "timed out after ${timeout}s waiting for ${what}"
        fi
        sleep 0.2
    done
}

# apt_ensure PKG...: install the Debian packages that are not installed yet.
# Runs `apt-get update` only when something is missing.
_APT_UPDATED=
apt_ensure() {
    local missing=() pkg
    for pkg in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$'; then
            missing+=("$pkg")
        fi
    done
    ((${#missing[@]} == 0)) && return 0
    command -v apt-get >/dev/null || die "missing packages ${missing[*]} and no apt-get to install them"
    local sudo=()
    if [[ $(id -u) != 0 ]]; then
        command -v sudo >/dev/null || die "missing packages ${missing[*]}; run as root or install them"
        sudo=(sudo)
    fi
    log "installing Debian packages: ${missing[*]}"
    if [[ -z $_APT_UPDATED ]]; then
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        _APT_UPDATED=1
    fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# sha256_of FILE...: one hash over the contents of all FILEs (for stamps).
sha256_of() {
    cat "$@" | sha256sum | cut -d' ' -f1
}
