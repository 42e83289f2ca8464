#!/usr/bin/env bash
# Install the Debian packages the test bed uses, when they are missing:
#   busybox-static   the small test images are built FROM scratch around it
#   docker-registry  a real registry the tests push to and pull from
#   file             to tell a static busybox from a dynamic one
#   openssl, iproute2, curl, util-linux   TLS tests and the cluster test bed
#   nginx            the proxy tests start their own nginx (the system service is not started)
#   chromium, chromium-driver   the browser tests drive Debian's Chromium (no browser download)
set -euo pipefail
log() { printf '[packages] %s\n' "$*" >&2; }

need=()
[ -x /bin/busybox ] && file -L /bin/busybox 2>/dev/null | grep -q 'statically linked' || need+=(busybox-static)
command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry)
command -v file >/dev/null 2>&1 || need+=(file)
command -v openssl >/dev/null 2>&1 || need+=(openssl)       # the TLS tests make a CA
command -v ip >/dev/null 2>&1 || need+=(iproute2)            # the cluster test bed
command -v curl >/dev/null 2>&1 || need+=(curl)              # the cluster test bed's health polls
command -v nsenter >/dev/null 2>&1 || need+=(util-linux)
[ -x /usr/sbin/nginx ] || need+=(nginx)                      # the proxy tests
[ -x /usr/bin/chromium ] || need+=(chromium)                 # the browser tests
[ -x /usr/bin/chromedriver ] || need+=(chromium-driver)

if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    log "missing: ${need[*]}; install them with apt-get (as root) and try again"
    exit 1
fi
log "installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
# Packages that come with a service (nginx, docker-registry) must not start it: the tests run
# their own. Debian's way is a policy-rc.d that says no, for the duration of the install.
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
if ! apt-get install -y -qq "${need[@]}" >/dev/null 2>&1; then
    apt-get update -qq >/dev/null
    apt-get install -y -qq "${need[@]}" >/dev/null
fi
# docker-registry's package may start a system service; the tests run their own.
if command -v service >/dev/null 2>&1; then service docker-registry stop >/dev/null 2>&1 || true; fi
