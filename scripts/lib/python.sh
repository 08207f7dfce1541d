# shellcheck shell=bash
# The Python venv at .venv with the e2e suite's requirements (or another venv
# from another requirements file). Reinstalls only when the requirements file
# (or the interpreter) changed, tracked by a stamp file inside the venv.
# Sourced by scripts/test.sh and bench/run.sh after lib/common.sh.
#
#   venv_ensure ROOT           create/update ROOT/.venv from
#                              ROOT/tests/e2e/requirements.txt
#   venv_ensure ROOT VENV REQ  create/update VENV from REQ (bench/run.sh:
#                              bench/.venv from bench/requirements.txt)

venv_ensure() {
    local root=$1
    local venv=${2:-$root/.venv} req=${3:-$root/tests/e2e/requirements.txt}
    local stamp=$venv/.fulcrum-requirements.sha256

    command -v python3 >/dev/null || apt_ensure python3
    # Debian's python3 needs python3-venv for ensurepip; other pythons bring it.
    if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
        apt_ensure python3-venv
    fi

    local want
    want=$(printf '%s\n%s\n' "$(sha256_of "$req")" "$(python3 -c 'import sys; print(sys.version)')" | sha256sum | cut -d' ' -f1)
    if [[ -x $venv/bin/python && -f $stamp && $(cat "$stamp") == "$want" ]]; then
        log "Python venv up to date ($venv)"
        return 0
    fi
    log "creating Python venv at $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" ||
        die "pip install -r $req failed"
    echo "$want" >"$stamp"
}
