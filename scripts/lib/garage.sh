# shellcheck shell=bash
# A single-node Garage (real S3 server) on loopback, used as Fulcrum's S3
# backend in tests. Sourced by scripts/test.sh after lib/common.sh.
#
#   garage_ensure_installed    find `garage`, or `cargo install garage --locked`
#   garage_start DIR           start a node in DIR, lay it out, create the
#                              `fulcrum-test` key and bucket; exports
#                              FULCRUM_TEST_S3_{ENDPOINT,BUCKET,REGION,ACCESS_KEY,SECRET_KEY}
#                              and FULCRUM_E2E_S3_BUCKETS (space-separated fresh
#                              buckets, same key, one per Python e2e server)
#   garage_stop                stop it (idempotent) and delete DIR

GARAGE_BIN=
GARAGE_DIR=
GARAGE_PID=
GARAGE_NAME=fulcrum-test
# The version the CLI calls below were written against (Garage 2.x).
GARAGE_VERSION=2.5.0

# garage_find_bin: print the path of an installed garage binary.
garage_find_bin() {
    local cand
    for cand in "$(command -v garage 2>/dev/null)" "${CARGO_HOME:-$HOME/.cargo}/bin/garage"; do
        [[ -n $cand && -x $cand ]] && { echo "$cand"; return 0; }
    done
    return 1
}

garage_ensure_installed() {
    if ! GARAGE_BIN=$(garage_find_bin); then
        log "garage not found: 'cargo install garage --version $GARAGE_VERSION --locked' (about 10 minutes, cached in ~/.cargo/bin)"
        cargo install garage --version "$GARAGE_VERSION" --locked --quiet || die "cargo install garage failed"
        GARAGE_BIN=$(garage_find_bin) || die "garage still not found after cargo install"
    fi
    log "using $("$GARAGE_BIN" --version 2>/dev/null | head -n1) at $GARAGE_BIN"
}

# _garage CMD...: the garage CLI against our node.
_garage() {
    "$GARAGE_BIN" -c "$GARAGE_DIR/garage.toml" "$@"
}

garage_start() {
    GARAGE_DIR=$1
    [[ -n $GARAGE_BIN ]] || garage_ensure_installed
    mkdir -p "$GARAGE_DIR/meta" "$GARAGE_DIR/data"
    local rpc_port s3_port admin_port secret
    rpc_port=$(free_port)
    s3_port=$(free_port)
    admin_port=$(free_port)
    secret=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
    cat >"$GARAGE_DIR/garage.toml" <<TOML
metadata_dir = "$GARAGE_DIR/meta"
data_dir = "$GARAGE_DIR/data"
db_engine = "sqlite"
replication_factor = 1

rpc_bind_addr = "127.0.0.1:$rpc_port"
rpc_public_addr = "127.0.0.1:$rpc_port"
rpc_secret = "$secret"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3_port"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$admin_port"
TOML
    chmod 600 "$GARAGE_DIR/garage.toml"

    log "starting Garage: S3 on 127.0.0.1:$s3_port, RPC on $rpc_port, admin on $admin_port"
    RUST_LOG=${GARAGE_RUST_LOG:-warn} "$GARAGE_BIN" -c "$GARAGE_DIR/garage.toml" server \
        >"$GARAGE_DIR/server.log" 2>&1 &
    GARAGE_PID=$!

    # The CLI connects over RPC; `node id` answers once the node is up.
    local deadline=$((SECONDS + 60)) node_id=
    until node_id=$(_garage node id -q 2>/dev/null) && [[ -n $node_id ]]; do
        kill -0 "$GARAGE_PID" 2>/dev/null || { cat "$GARAGE_DIR/server.log" >&2; die "garage server exited"; }
        ((SECONDS < deadline)) || { cat "$GARAGE_DIR/server.log" >&2; die "garage did not come up in 60s"; }
        sleep 0.3
    done
    node_id=${node_id%%@*}

    # `node id` can answer before the RPC listener accepts the CLI (seen on
    # a loaded machine): retry the first RPC call for a while.
    until _garage layout assign -z dc1 -c 1G "$node_id" >/dev/null 2>"$GARAGE_DIR/assign.err"; do
        kill -0 "$GARAGE_PID" 2>/dev/null || { cat "$GARAGE_DIR/server.log" >&2; die "garage server exited"; }
        ((SECONDS < deadline)) || { cat "$GARAGE_DIR/assign.err" >&2; die "garage layout assign failed"; }
        sleep 0.5
    done
    _garage layout apply --version 1 >/dev/null || die "garage layout apply failed"
    _garage key create "$GARAGE_NAME" >/dev/null || die "garage key create failed"
    local b
    FULCRUM_E2E_S3_BUCKETS=
    for b in "$GARAGE_NAME" fulcrum-e2e-{1..12}; do
        _garage bucket create "$b" >/dev/null || die "garage bucket create $b failed"
        _garage bucket allow --read --write --owner "$b" --key "$GARAGE_NAME" >/dev/null ||
            die "garage bucket allow $b failed"
        [[ $b == "$GARAGE_NAME" ]] || FULCRUM_E2E_S3_BUCKETS+="${FULCRUM_E2E_S3_BUCKETS:+ }$b"
    done

    FULCRUM_TEST_S3_ACCESS_KEY=$(_garage key info --key-id "$GARAGE_NAME") || die "garage key info --key-id failed"
    FULCRUM_TEST_S3_SECRET_KEY=$(_garage key info --secret-key "$GARAGE_NAME") || die "garage key info --secret-key failed"
    [[ $FULCRUM_TEST_S3_ACCESS_KEY =~ ^GK[0-9a-f]+$ && $FULCRUM_TEST_S3_SECRET_KEY =~ ^[0-9a-f]+$ ]] ||
        die "unexpected key id/secret from garage: '$FULCRUM_TEST_S3_ACCESS_KEY'"

    export FULCRUM_TEST_S3_ENDPOINT="http://127.0.0.1:$s3_port"
    export FULCRUM_TEST_S3_BUCKET=$GARAGE_NAME
    export FULCRUM_TEST_S3_REGION=garage
    export FULCRUM_TEST_S3_ACCESS_KEY FULCRUM_TEST_S3_SECRET_KEY
    export FULCRUM_E2E_S3_BUCKETS
    log "Garage ready: $FULCRUM_TEST_S3_ENDPOINT bucket $FULCRUM_TEST_S3_BUCKET key $FULCRUM_TEST_S3_ACCESS_KEY"
}

garage_stop() {
    if [[ -n $GARAGE_PID ]]; then
        kill "$GARAGE_PID" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$GARAGE_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$GARAGE_PID" 2>/dev/null || true
        wait "$GARAGE_PID" 2>/dev/null || true
        GARAGE_PID=
    fi
    if [[ -n $GARAGE_DIR ]]; then
        rm -rf "$GARAGE_DIR"
        GARAGE_DIR=
    fi
}
