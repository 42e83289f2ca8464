#!/usr/bin/env bash
# Build the small images the tests and the demo use, FROM scratch (no registry needed):
#   ipynbsrv-test/busybox:latest   busybox; its default command serves HTTP on 8888
# Rebuilt only when missing (or with --force).
set -euo pipefail

IMAGE=${IPYNBSRV_TEST_IMAGE:-ipynbsrv-test/busybox:latest}
log() { printf '[images] %s\n' "$*" >&2; }

if [ "${1:-}" != "--force" ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    log "$IMAGE is present"
    exit 0
fi

BUSYBOX=/bin/busybox
if ! file -L "$BUSYBOX" 2>/dev/null | grep -q 'statically linked'; then
    log "a statically linked busybox is needed: run scripts/packages.sh (apt-get install busybox-static)"
    exit 1
fi

CTX=$(mktemp -d)
trap 'rm -rf "$CTX"' EXIT
cp "$BUSYBOX" "$CTX/busybox"
cat >"$CTX/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN mkdir -p /www /tmp /data && chmod 1777 /tmp && echo "ipynbsrv test page" > /www/index.html
LABEL org.ipynbsrv.test-image="1"
EXPOSE 8888
CMD ["httpd", "-f", "-p", "8888", "-h", "/www"]
DOCKERFILE
log "building $IMAGE"
DOCKER_BUILDKIT=0 docker build -q -t "$IMAGE" "$CTX" >/dev/null
log "built $IMAGE"
