#!/usr/bin/env bash
# Install JupyterHub's configurable-http-proxy (Node.js) for the access-path benchmark
# (bench/access.py) and the hub tests and bench (tests/support/hub.py, bench/hub.py), under a
# cache directory, from the npm registry with npm itself:
#
#   scripts/chp.sh     install it unless it is there; prints where its command is
#
# Where: $IPYNBSRV_CHP_DIR (default /var/cache/ipynbsrv/chp; bench/access.py reads the same). Needs node and npm (Debian:
# apt-get install --no-install-recommends nodejs npm). Nothing is installed globally.
set -euo pipefail
DIR=${IPYNBSRV_CHP_DIR:-/var/cache/ipynbsrv/chp}
VERSION=${IPYNBSRV_CHP_VERSION:-4}
log() { printf '[chp] %s\n' "$*" >&2; }
BIN=$DIR/node_modules/.bin/configurable-http-proxy
if [ ! -x "$BIN" ]; then
    command -v npm >/dev/null 2>&1 || { log "npm is needed: apt-get install --no-install-recommends nodejs npm"; exit 1; }
    log "installing configurable-http-proxy@$VERSION into $DIR (npm; JupyterHub's proxy for the hub tests and the bench)"
    mkdir -p "$DIR"
    timeout 600 npm install --no-audit --no-fund --prefix "$DIR" "configurable-http-proxy@$VERSION" >&2
fi
echo "$BIN"
