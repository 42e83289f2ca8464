#!/usr/bin/env bash
# Make sure a Docker engine answers, installing and starting one when we are root
# on a Debian machine that has none. Prints the DOCKER_HOST to use on its last line.
#
#   scripts/engine.sh            ensure the engine (install + start when needed)
#   scripts/engine.sh --check    only report whether an engine answers (exit 1 if not)
set -euo pipefail

STATE_DIR=${IPYNBSRV_STATE_DIR:-/tmp/ipynbsrv-backends}
LOG=$STATE_DIR/dockerd.log
mkdir -p "$STATE_DIR"

log() { printf '[engine] %s\n' "$*" >&2; }

engine_answers() {
    command -v docker >/dev/null 2>&1 || return 1
    timeout 10 docker info >/dev/null 2>&1
}

if engine_answers; then
    log "a Docker engine answers"
    exit 0
fi
if [ "${1:-}" = "--check" ]; then
    log "no Docker engine answers"
    exit 1
fi

if [ "$(id -u)" != 0 ]; then
    log "no Docker engine answers and we are not root: start one (or set DOCKER_HOST) and try again"
    exit 1
fi

if ! command -v dockerd >/dev/null 2>&1; then
    # docker.io and what it depends on, without its recommends (git, needrestart, xz-utils, ...);
    # apparmor only where the kernel enforces AppArmor (the engine needs its parser there).
    need=(docker.io)
    why="the Docker engine the containers run on"
    if [ "$(cat /sys/module/apparmor/parameters/enabled 2>/dev/null)" = Y ] && ! command -v apparmor_parser >/dev/null 2>&1; then
        need+=(apparmor)
        why="$why, and AppArmor's parser, which the engine needs on this kernel"
    fi
    log "installing ${need[*]}: $why (apt-get, --no-install-recommends; a minute the first time)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y --no-install-recommends "${need[@]}"
fi

if [ ! -S /var/run/docker.sock ] || ! engine_answers; then
    log "starting dockerd (log: $LOG)"
    setsid dockerd >"$LOG" 2>&1 < /dev/null &
fi

for _ in $(seq 1 60); do
    if engine_answers; then
        log "the Docker engine answers"
        exit 0
    fi
    sleep 1
done
log "dockerd did not answer within 60 s; its log follows"
tail -n 30 "$LOG" >&2 || true
exit 1
