#!/usr/bin/env bash
# Services the serving tests need in CI: a throwaway PostgreSQL cluster on loopback and Debian's
# chromium for the browser test. Installs them with apt when missing (needs root), starts
# PostgreSQL as the `postgres` user in a temporary directory on a fixed port, creates a database,
# and prints the URL the tests read:
#
#     eval "$(scripts/ci_services.sh)"      # exports SHOPREC_TEST_POSTGRES_URL (and _CHROMIUM)
#     scripts/ci_services.sh stop           # stops the cluster and removes its directory
#
# Progress goes to stderr; stdout carries only `export ...` lines, so `eval` is safe.
# Environment: SHOPREC_PG_PORT (default 55432), SHOPREC_PG_DIR (default /tmp/shoprec-pg-$PORT),
# SHOPREC_SKIP_APT=1 to never call apt-get.
set -euo pipefail

PORT="${SHOPREC_PG_PORT:-55432}"
DIR="${SHOPREC_PG_DIR:-/tmp/shoprec-pg-$PORT}"
DB=shoprec_test
log() { echo "ci_services: $*" >&2; }

pg_bin() {
    # Debian keeps the server binaries out of PATH, under /usr/lib/postgresql/<version>/bin.
    local found
    found="$(command -v "$1" 2>/dev/null || true)"
    if [[ -z "$found" ]]; then
        found="$(ls -d /usr/lib/postgresql/*/bin/"$1" 2>/dev/null | sort -V | tail -n 1 || true)"
    fi
    echo "$found"
}

as_postgres() {
    if [[ "$(id -u)" == "0" ]]; then
        su postgres -s /bin/bash -c "$*"
    else
        bash -c "$*"  # not root: the cluster belongs to the current user
    fi
}

if [[ "${1:-start}" == "stop" ]]; then
    PG_CTL="$(pg_bin pg_ctl)"
    if [[ -n "$PG_CTL" && -f "$DIR/data/PG_VERSION" ]]; then
        as_postgres "'$PG_CTL' -D '$DIR/data' -m fast stop" >&2 || true
    fi
    rm -rf "$DIR"
    log "stopped and removed $DIR"
    exit 0
fi

need_apt=()
[[ -z "$(pg_bin initdb)" ]] && need_apt+=(postgresql)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
if ((${#need_apt[@]})); then
    if [[ "${SHOPREC_SKIP_APT:-0}" == "1" || "$(id -u)" != "0" ]]; then
        log "missing ${need_apt[*]} and not installing (not root or SHOPREC_SKIP_APT=1);"
        log "the tests that need them will be skipped"
    else
        log "installing ${need_apt[*]} with apt-get"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2
        apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >&2
    fi
fi

if command -v chromium >/dev/null 2>&1; then
    echo "export SHOPREC_TEST_CHROMIUM=$(command -v chromium)"
fi

INITDB="$(pg_bin initdb)"
PG_CTL="$(pg_bin pg_ctl)"
if [[ -z "$INITDB" || -z "$PG_CTL" ]]; then
    log "PostgreSQL is not installed; SHOPREC_TEST_POSTGRES_URL stays unset"
    exit 0
fi

USER_NAME=postgres
[[ "$(id -u)" != "0" ]] && USER_NAME="$(id -un)"
if [[ -f "$DIR/data/postmaster.pid" ]] && as_postgres "'$PG_CTL' -D '$DIR/data' status" >/dev/null 2>&1; then
    log "PostgreSQL already running in $DIR on port $PORT"
else
    rm -rf "$DIR"
    mkdir -p "$DIR"
    [[ "$(id -u)" == "0" ]] && chown postgres:postgres "$DIR"
    # Throwaway cluster: trust auth on loopback only, no fsync (CI data need not survive a crash).
    as_postgres "'$INITDB' -D '$DIR/data' -U '$USER_NAME' --auth=trust --no-sync -E UTF8 --locale=C" >&2
    as_postgres "'$PG_CTL' -D '$DIR/data' -l '$DIR/log' -w -t 60 -o \"-p $PORT -k '$DIR' -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200\" start" >&2
fi
PSQL="$(pg_bin psql)"
if ! as_postgres "'$PSQL' -h 127.0.0.1 -p $PORT -U '$USER_NAME' -d postgres -tAc \"SELECT 1 FROM pg_database WHERE datname='$DB'\"" | grep -q 1; then
    as_postgres "'$PSQL' -h 127.0.0.1 -p $PORT -U '$USER_NAME' -d postgres -qc 'CREATE DATABASE $DB'" >&2
fi
log "PostgreSQL is up on 127.0.0.1:$PORT (cluster in $DIR)"
echo "export SHOPREC_TEST_POSTGRES_URL=postgresql+psycopg://$USER_NAME@127.0.0.1:$PORT/$DB"
