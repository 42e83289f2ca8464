#!/usr/bin/env bash
# Install the Debian packages a make target needs, when they are missing, and say which and why:
#
#   scripts/packages.sh demo   what `make demo` needs (the stand-in image, the proxy):
#     busybox-static   the small stand-in image is built FROM scratch around it
#     file             to tell a static busybox from a dynamic one
#     nginx            the demo serves the master behind nginx and the proxy check, as a site
#                      does (its own nginx; the system service is not started)
#     libnginx-mod-http-lua   nginx's Lua module: docs/proxy-nginx.conf's keep-alive pool to
#                      the containers (its balancer names each request's peer)
#   scripts/packages.sh test   the above, and what only the tests need (`make test`, cluster, bench):
#     docker-registry  a real registry the tests push to and pull from
#     openssl, iproute2, curl, util-linux   TLS tests and the cluster test bed
#     chromium, chromium-driver, fonts-liberation   the browser tests drive Debian's Chromium
#                      (no browser download; the font is the one its recommends would bring)
#     nodejs, npm      configurable-http-proxy, JupyterHub's proxy (scripts/chp.sh installs it
#                      with npm): the hub tests and the bench
#
# Always with --no-install-recommends (nothing but what is listed and its dependencies), and
# apt's own output is shown.
set -euo pipefail
log() { printf '[packages] %s\n' "$*" >&2; }

purpose=${1:-test}
case "$purpose" in
    demo) why="what the demo needs: its stand-in image, and nginx in front of the master" ;;
    test) why="what the tests need (the registry, TLS, the cluster test bed, nginx, the browser tests, JupyterHub's proxy)" ;;
    *) log "usage: $0 demo|test"; exit 2 ;;
esac

need=()
[ -x /bin/busybox ] && file -L /bin/busybox 2>/dev/null | grep -q 'statically linked' || need+=(busybox-static)
command -v file >/dev/null 2>&1 || need+=(file)
[ -x /usr/sbin/nginx ] || need+=(nginx)                          # the demo's and the proxy tests' proxy
[ -f /usr/lib/nginx/modules/ngx_http_lua_module.so ] || need+=(libnginx-mod-http-lua)  # its keep-alive pool
if [ "$purpose" = test ]; then
    command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry)
    command -v openssl >/dev/null 2>&1 || need+=(openssl)       # the TLS tests make a CA
    command -v ip >/dev/null 2>&1 || need+=(iproute2)            # the cluster test bed
    command -v curl >/dev/null 2>&1 || need+=(curl)              # the cluster test bed's health polls
    command -v nsenter >/dev/null 2>&1 || need+=(util-linux)
    [ -x /usr/bin/chromium ] || need+=(chromium)                 # the browser tests
    [ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
    dpkg -s fonts-liberation >/dev/null 2>&1 || need+=(fonts-liberation)
    command -v node >/dev/null 2>&1 || need+=(nodejs)            # configurable-http-proxy (scripts/chp.sh)
    command -v npm >/dev/null 2>&1 || need+=(npm)
fi

if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    log "missing ($why): ${need[*]}"
    log "install them as root: apt-get install --no-install-recommends ${need[*]}"
    exit 1
fi
log "installing ${need[*]}: $why (apt-get, --no-install-recommends)"
export DEBIAN_FRONTEND=noninteractive
# Packages that come with a service (nginx, docker-registry) must not start it: the tests run
# their own. Debian's way is a policy-rc.d that says no, for the duration of the install.
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
# Refresh the package lists only when apt cannot find the packages with the ones it has.
if ! apt-get install -s -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1; then
    log "refreshing apt's package lists"
    apt-get update -q
fi
apt-get install -y -q --no-install-recommends "${need[@]}"
# docker-registry's package may start a system service; the tests run their own.
if [ "$purpose" = test ] && command -v service >/dev/null 2>&1; then
    service docker-registry stop >/dev/null 2>&1 || true
fi
log "installed ${need[*]}"
