# shellcheck shell=bash
# Node.js for the viewer tests (tests/e2e/test_viewer.py), which play the
# OHIF viewer with the npm packages it is built on.
#
#   node_ensure ROOT   node and npm (Debian's when missing), then `npm ci` of
#                      tests/e2e/viewer (exact versions from its
#                      package-lock.json) unless node_modules is current

node_ensure() {
    local dir=$1/tests/e2e/viewer
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        apt_ensure nodejs npm
    fi
    if [[ ! -d $dir/node_modules/dicomweb-client || $dir/package-lock.json -nt $dir/node_modules/.package-lock.json ]]; then
        log "npm ci in tests/e2e/viewer (node $(node --version))"
        (cd "$dir" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error) || die "npm ci in $dir failed"
    fi
}
