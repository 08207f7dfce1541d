# shellcheck shell=bash
# DICOM peers and data for the e2e suite. Sourced by scripts/test.sh after
# lib/common.sh and lib/python.sh.
#
#   dicom_ensure_installed     Debian's dcmtk (echoscu, storescu, dcmsend,
#                              findscu, movescu, getscu, storescp, dcmdump)
#   dicom_fixtures_fetch ROOT  download the pinned pydicom / pydicom-data /
#                              pynetdicom wheels (tests/fixtures/dicom-wheels.txt,
#                              hash-checked, nothing installed) and extract their
#                              DICOM test files into ROOT/tests/fixtures/.cache/dicom
#                              (gitignored; a stamp makes reruns free); exports
#                              FULCRUM_E2E_DICOM_CACHE
#
# pydicom and pynetdicom themselves, and dicomweb-client, come with the venv
# (tests/e2e/requirements.txt). DCMTK tools are run with TCP_NODELAY=1 (see
# tests/e2e/dicom_helpers.py): exported here for anyone running them by hand.

DICOM_TOOLS=(echoscu storescu dcmsend findscu movescu getscu storescp dcmdump)

dicom_ensure_installed() {
    local t missing=0
    for t in "${DICOM_TOOLS[@]}"; do
        command -v "$t" >/dev/null || missing=1
    done
    ((missing)) && apt_ensure dcmtk
    for t in "${DICOM_TOOLS[@]}"; do
        command -v "$t" >/dev/null || die "$t not found after installing dcmtk"
    done
    log "using DCMTK $(dcmsend --version 2>/dev/null | head -n1 | awk '{print $3}')"
    export TCP_NODELAY=1
}

dicom_fixtures_fetch() {
    local root=$1
    export FULCRUM_E2E_DICOM_CACHE=${FULCRUM_E2E_DICOM_CACHE:-$root/tests/fixtures/.cache/dicom}
    log "DICOM fixtures: $FULCRUM_E2E_DICOM_CACHE (pip download of tests/fixtures/dicom-wheels.txt, once)"
    "$root/.venv/bin/python" "$root/tests/e2e/dicom_fixtures.py" --fetch-only ||
        die "fetching the DICOM fixtures failed"
}
