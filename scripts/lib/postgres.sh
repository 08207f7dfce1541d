# shellcheck shell=bash
# A throwaway PostgreSQL server for the tests: initdb into a temp dir, run it
# as a non-root OS user on a free loopback port, create database
# `fulcrum_test` with a trusted superuser role `fulcrum`. Sourced by
# scripts/test.sh after lib/common.sh.
#
#   pg_ensure_installed        install the Debian server package if needed
#   pg_start DIR               start; exports FULCRUM_TEST_PG_URL (Rust tests)
#                              and FULCRUM_E2E_PG_URLS (space-separated fresh
#                              databases, one per Python e2e server)
#   pg_stop                    stop it (idempotent) and delete DIR

PG_ROLE=fulcrum
PG_DB=fulcrum_test
PG_BIN=
PG_DIR=
PG_PORT=
PG_OS_USER=

# pg_find_bin: print the newest /usr/lib/postgresql/*/bin that has initdb.
pg_find_bin() {
    local dir
    dir=$(printf "%s\n" /usr/lib/postgresql/*/bin | sort -V | tail -n1)
    [[ -n $dir && -x $dir/initdb ]] && echo "$dir"
}

pg_ensure_installed() {
    if ! pg_find_bin >/dev/null; then
        apt_ensure postgresql
    fi
    PG_BIN=$(pg_find_bin) || die "PostgreSQL server binaries not found under /usr/lib/postgresql"
}

# _pg_as_user CMD...: run CMD as the PostgreSQL OS user (postgres refuses root).
_pg_as_user() {
    if [[ $(id -u) == 0 ]]; then
        runuser -u "$PG_OS_USER" -- "$@"
    else
        "$@"
    fi
}

pg_start() {
    PG_DIR=$1
    [[ -n $PG_BIN ]] || pg_ensure_installed
    if [[ $(id -u) == 0 ]]; then
        # The Debian package creates `postgres`; make a system user otherwise.
        PG_OS_USER=postgres
        if ! id "$PG_OS_USER" >/dev/null 2>&1; then
            PG_OS_USER=fulcrum-pg
            id "$PG_OS_USER" >/dev/null 2>&1 ||
                useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_OS_USER"
        fi
    else
        PG_OS_USER=$(id -un)
    fi
    mkdir -p "$PG_DIR/sock"
    chown -R "$PG_OS_USER" "$PG_DIR"
    PG_PORT=$(free_port)

    log "starting PostgreSQL ($PG_BIN) on 127.0.0.1:$PG_PORT as OS user $PG_OS_USER"
    _pg_as_user "$PG_BIN/initdb" -D "$PG_DIR/data" -U "$PG_ROLE" -A trust \
        -E UTF8 --locale=C --no-sync >"$PG_DIR/initdb.log" 2>&1 ||
        { cat "$PG_DIR/initdb.log" >&2; die "initdb failed"; }
    # Durability is pointless for a throwaway cluster; speed matters.
    local opts="-p $PG_PORT -k $PG_DIR/sock -c listen_addresses=127.0.0.1"
    opts+=" -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
    _pg_as_user "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
        -o "$opts" start >/dev/null ||
        { cat "$PG_DIR/server.log" >&2; die "pg_ctl start failed"; }
    local db
    local db base="postgres://$PG_ROLE@127.0.0.1:$PG_PORT"
    FULCRUM_E2E_PG_URLS=
    for db in "$PG_DB" fulcrum_e2e_{1..12}; do
        "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_ROLE" "$db" ||
            die "createdb $db failed"
        [[ $db == "$PG_DB" ]] || FULCRUM_E2E_PG_URLS+="${FULCRUM_E2E_PG_URLS:+ }$base/$db"
    done
    export FULCRUM_TEST_PG_URL="$base/$PG_DB" FULCRUM_E2E_PG_URLS
    log "PostgreSQL ready: $FULCRUM_TEST_PG_URL"
}

pg_stop() {
    [[ -n $PG_DIR ]] || return 0
    if [[ -f $PG_DIR/data/postmaster.pid ]]; then
        _pg_as_user "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -m immediate -w -t 20 stop >/dev/null 2>&1 ||
            log "warning: pg_ctl stop failed (see $PG_DIR/server.log)"
    fi
    rm -rf "$PG_DIR"
    PG_DIR=
}
