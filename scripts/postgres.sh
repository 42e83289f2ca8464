#!/usr/bin/env bash
# A private PostgreSQL cluster for the tests (root only): Debian's postgresql, installed
# when missing; its own data directory under /tmp; a free port on 127.0.0.1; initdb and
# pg_ctl run as the postgres user; trust authentication on 127.0.0.1 only.
#
#   scripts/postgres.sh start   start it (idempotent); prints TESTPROJECT_PG_PORT=<port>
#   scripts/postgres.sh stop    stop it and remove its directory
#   scripts/postgres.sh env     print TESTPROJECT_PG_PORT=<port> of the running cluster
#
# IPYNBSRV_CLUSTER_ID (a digit, default 0) keeps several runs on one machine apart, as for
# scripts/cluster.sh.
set -euo pipefail

ID=${IPYNBSRV_CLUSTER_ID:-0}
case "$ID" in [0-9]) ;; *) echo "IPYNBSRV_CLUSTER_ID must be a digit" >&2; exit 2 ;; esac
STATE=${IPYNBSRV_PG_DIR:-/tmp/ipynbsrv-pg$ID}
DATA=$STATE/data

log() { printf '[postgres] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

bindir() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    [ -n "$dir" ] && [ -x "$dir/pg_ctl" ] && echo "$dir"
}

as_postgres() { runuser -u postgres -- "$@"; }

install() {
    bindir >/dev/null && return 0
    [ "$(id -u)" = 0 ] || die "PostgreSQL is missing; install Debian's postgresql as root"
    log "installing Debian's postgresql"
    apt-get update -qq >/dev/null
    # the packaged cluster is not started: this script runs its own
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
    bindir >/dev/null || die "postgresql installed, but no pg_ctl under /usr/lib/postgresql"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

running() { [ -f "$STATE/port" ] && as_postgres "$(bindir)/pg_ctl" -D "$DATA" status >/dev/null 2>&1; }

start() {
    [ "$(id -u)" = 0 ] || die "the test PostgreSQL needs root (it runs as the postgres user)"
    install
    local bin port
    bin=$(bindir)
    if running; then
        echo "TESTPROJECT_PG_PORT=$(cat "$STATE/port")"
        return 0
    fi
    rm -rf "$STATE"
    mkdir -p "$STATE"
    chown postgres: "$STATE"
    chmod 700 "$STATE"
    as_postgres "$bin/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$STATE/initdb.log" 2>&1 \
        || { cat "$STATE/initdb.log" >&2; die "initdb failed"; }
    port=$(free_port)
    as_postgres "$bin/pg_ctl" -D "$DATA" -l "$STATE/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $STATE -c fsync=off -c max_connections=100" start >/dev/null \
        || { tail -30 "$STATE/server.log" >&2; die "PostgreSQL did not start"; }
    echo "$port" > "$STATE/port"
    log "PostgreSQL on 127.0.0.1:$port (data in $DATA)"
    echo "TESTPROJECT_PG_PORT=$port"
}

stop() {
    if [ -d "$DATA" ] && bindir >/dev/null; then
        as_postgres "$(bindir)/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null 2>&1 || true
    fi
    rm -rf "$STATE"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    env) running && echo "TESTPROJECT_PG_PORT=$(cat "$STATE/port")" ;;
    *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
