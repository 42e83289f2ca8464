#!/usr/bin/env bash
# Build the real notebook image (Jupyter Notebook) with no registry at all:
#
#   1. a minimal Debian root filesystem (debootstrap --variant=minbase) from the Debian mirror
#      apt already uses on this machine, with python3, python3-venv and ca-certificates;
#   2. the notebook's wheels fetched here with `pip download`, pinned to that root
#      filesystem's Python and platform (images/notebook/requirements.txt), and installed
#      inside it into the virtualenv /opt/notebook with `pip install --no-index`;
#   3. the root filesystem imported into the engine (`docker import`), then
#      images/notebook/Dockerfile adds the entrypoint, the health check and the labels.
#
#   scripts/notebook-image.sh            build $IMAGE unless this recipe's image is there
#   scripts/notebook-image.sh --force    build it again (from the cached root filesystem)
#   scripts/notebook-image.sh --check    exit 0 if this recipe's image is there, else 1
#
# The root filesystem (steps 1-2) is cached as a tar file in $IPYNBSRV_IMAGE_CACHE
# (default /var/cache/ipynbsrv/notebook-image), keyed by the Debian suite, the packages and
# requirements.txt, so a rebuild takes seconds. Remove that directory to start from nothing.
# The image is rebuilt by itself when images/notebook/ changed since it was built.
# Needs root (debootstrap, chroot, mounts) and a Docker engine (scripts/engine.sh).
set -euo pipefail

HERE=$(cd "$(dirname "$0")/.." && pwd)
RECIPE_DIR=$HERE/images/notebook
IMAGE=${IPYNBSRV_NOTEBOOK_IMAGE:-ipynbsrv/notebook:latest}
BASE_REPO=${IMAGE%:*}-rootfs
CACHE=${IPYNBSRV_IMAGE_CACHE:-/var/cache/ipynbsrv/notebook-image}
SUITE=${IPYNBSRV_NOTEBOOK_SUITE:-bookworm}
APT_PACKAGES="python3 python3-venv ca-certificates"
# Bump when the way the root filesystem is made changes, so cached ones are not reused.
ROOTFS_VERSION=1

log() { printf '[notebook-image] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

mode=build
case "${1:-}" in
    "") ;;
    --force) mode=force ;;
    --check) mode=check ;;
    *) echo "usage: $0 [--force | --check]" >&2; exit 2 ;;
esac

sha() { sha256sum | cut -c1-12; }
ARCH=$(dpkg --print-architecture 2>/dev/null || echo amd64)
ROOTFS_KEY=$( { echo "$ROOTFS_VERSION $SUITE $ARCH $APT_PACKAGES"; cat "$RECIPE_DIR/requirements.txt"; } | sha)
RECIPE_KEY=$( { echo "$ROOTFS_KEY"; cat "$RECIPE_DIR/Dockerfile" "$RECIPE_DIR/entrypoint.sh" "$RECIPE_DIR/healthcheck.py" \
    "$RECIPE_DIR/ipynbsrv_notebook_auth.py"; } | sha)
BASE_IMAGE=$BASE_REPO:$ROOTFS_KEY
ROOTFS_TAR=$CACHE/rootfs-$SUITE-$ARCH-$ROOTFS_KEY.tar

built_here() {
    [ "$(docker image inspect -f '{{index .Config.Labels "org.ipynbsrv.notebook.recipe"}}' "$IMAGE" 2>/dev/null)" = "$RECIPE_KEY" ]
}

if [ "$mode" = check ]; then
    built_here && exit 0 || exit 1
fi
timeout 20 docker info >/dev/null 2>&1 || die "no Docker engine answers: run scripts/engine.sh (as root) first"
if [ "$mode" = build ] && built_here; then
    log "$IMAGE is present"
    exit 0
fi
if [ "$mode" = build ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    log "$IMAGE was built from another recipe (images/notebook/ changed): building it again"
fi
[ "$(id -u)" = 0 ] || die "building $IMAGE needs root (debootstrap, chroot and mounts)"

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
if ! flock -n 9; then
    log "another build is running; waiting for it"
    flock 9
    if [ "$mode" = build ] && built_here; then
        log "$IMAGE is present"
        exit 0
    fi
fi

# ---------------------------------------------------------------- the Debian mirror

# The mirror apt uses here for $SUITE (apt itself reads sources.list and sources.list.d/),
# else the first Debian archive found in those files.
debian_mirror() {
    local site
    site=$(apt-get indextargets --format '$(SITE) $(RELEASE) $(COMPONENT)' 'Identifier: Packages' 2>/dev/null \
        | awk -v suite="$SUITE" '$2 == suite && $3 == "main" { print $1; exit }')
    if [ -z "$site" ]; then
        site=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
            | awk '/^deb /{ for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }
                   /^URIs:/{ print $2; exit }' | grep -v security | head -1 || true)
    fi
    [ -n "$site" ] || return 1
    echo "${site%/}"
}

# ---------------------------------------------------------------- the root filesystem

ROOTFS=$CACHE/work/rootfs
mounted=()

unmount_all() {
    local i
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
        umount "${mounted[$i]}" 2>/dev/null || umount -l "${mounted[$i]}" 2>/dev/null || true
    done
    mounted=()
}

# Remove the work tree, but never while anything is mounted below it (a bound /dev!).
remove_work() {
    unmount_all
    if grep -q " $CACHE/work" /proc/mounts; then
        log "something is still mounted under $CACHE/work; not removing it"
        return 1
    fi
    rm -rf "$CACHE/work"
}

on_exit() {
    local code=$?
    remove_work || true
    [ $code = 0 ] || log "the build failed (exit $code)"
}
trap on_exit EXIT

in_root() {
    chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
        DEBIAN_FRONTEND=noninteractive "$@"
}

pip_on_host() {
    if [ -x "$HERE/.venv/bin/python" ] && "$HERE/.venv/bin/python" -m pip --version >/dev/null 2>&1; then
        "$HERE/.venv/bin/python" -m pip "$@"
    elif python3 -m pip --version >/dev/null 2>&1; then
        python3 -m pip "$@"
    else  # a fresh Debian has no pip outside a virtualenv: make one for fetching
        [ -x "$CACHE/pip/bin/pip" ] || python3 -m venv "$CACHE/pip" \
            || die "pip is needed to fetch the wheels: apt-get install python3-venv (or python3-pip)"
        "$CACHE/pip/bin/python" -m pip "$@"
    fi
}

make_rootfs() {
    command -v debootstrap >/dev/null 2>&1 || {
        log "installing debootstrap: it makes the image's Debian root filesystem (apt-get, --no-install-recommends)"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y -q --no-install-recommends debootstrap \
            || { apt-get update -q && apt-get install -y -q --no-install-recommends debootstrap; } \
            || die "could not install debootstrap with apt-get"
    }
    local mirror
    mirror=$(debian_mirror) || die "no Debian mirror for $SUITE in /etc/apt/sources.list{,.d/}"
    remove_work
    mkdir -p "$ROOTFS" "$CACHE/debs"

    log "debootstrap $SUITE from $mirror (about a minute)"
    debootstrap --variant=minbase --arch="$ARCH" --cache-dir="$CACHE/debs" "$SUITE" "$ROOTFS" "$mirror" \
        >"$CACHE/debootstrap.log" 2>&1 \
        || { tail -20 "$CACHE/debootstrap.log" >&2; die "debootstrap failed (log: $CACHE/debootstrap.log)"; }

    mount -t proc proc "$ROOTFS/proc" || die "could not mount /proc inside"
    mounted+=("$ROOTFS/proc")
    mount --bind /dev "$ROOTFS/dev" || die "could not bind /dev inside"
    mounted+=("$ROOTFS/dev")
    cp -L /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
    printf '#!/bin/sh\nexit 101\n' > "$ROOTFS/usr/sbin/policy-rc.d"
    chmod 0755 "$ROOTFS/usr/sbin/policy-rc.d"

    log "installing $APT_PACKAGES inside"
    in_root apt-get update -qq >/dev/null
    # shellcheck disable=SC2086
    in_root apt-get install -y -qq --no-install-recommends $APT_PACKAGES >/dev/null \
        || die "apt-get install $APT_PACKAGES failed inside the root filesystem"

    local version tag machine wheels
    version=$(in_root python3 -c 'import platform; print(platform.python_version())')
    tag=$(in_root python3 -c 'import sys; print("cp%d%d" % sys.version_info[:2])')
    machine=$(in_root python3 -c 'import platform; print(platform.machine())')
    wheels=$CACHE/wheels/$tag-$machine
    mkdir -p "$wheels"
    log "fetching the wheels for Python $version ($machine) into $wheels"
    pip_on_host download --quiet --disable-pip-version-check --only-binary=:all: \
        --python-version "$version" --implementation cp \
        --platform "manylinux2014_$machine" --platform "manylinux_2_17_$machine" \
        --platform "manylinux_2_28_$machine" --platform "manylinux_2_34_$machine" \
        --platform "manylinux1_$machine" --platform "manylinux2010_$machine" --platform any \
        -d "$wheels" -r "$RECIPE_DIR/requirements.txt" >"$CACHE/pip-download.log" 2>&1 \
        || { tail -20 "$CACHE/pip-download.log" >&2
             die "pip download failed: the wheels of $RECIPE_DIR/requirements.txt could not be fetched"; }

    log "installing Jupyter Notebook into /opt/notebook inside (no index, a clean environment)"
    mkdir -p "$ROOTFS/tmp/wheels"
    cp "$wheels"/*.whl "$RECIPE_DIR/requirements.txt" "$ROOTFS/tmp/wheels/"
    in_root python3 -m venv /opt/notebook
    in_root /opt/notebook/bin/pip install --quiet --no-index --no-cache-dir --disable-pip-version-check \
        --find-links /tmp/wheels -r /tmp/wheels/requirements.txt \
        || die "pip install inside the root filesystem failed"
    in_root /opt/notebook/bin/jupyter notebook --version >/dev/null || die "jupyter does not run inside"
    in_root /opt/notebook/bin/jupyterhub-singleuser --version >/dev/null \
        || die "jupyterhub-singleuser (the image's hub mode) does not run inside"

    # Leave nothing of the build behind: caches, lists, docs, the wheels, this machine's DNS.
    in_root apt-get clean
    rm -rf "$ROOTFS"/tmp/* "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin \
        "$ROOTFS"/usr/share/doc/* "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* \
        "$ROOTFS"/root/.cache "$ROOTFS"/var/log/*.log "$ROOTFS"/var/cache/debconf/*-old \
        "$ROOTFS/usr/sbin/policy-rc.d"
    : > "$ROOTFS/etc/resolv.conf"
    unmount_all

    log "packing the root filesystem into $ROOTFS_TAR"
    tar --numeric-owner -C "$ROOTFS" -cf "$ROOTFS_TAR.partial" .
    mv "$ROOTFS_TAR.partial" "$ROOTFS_TAR"
    remove_work
    # Older root filesystems (another suite, other requirements) are of no more use.
    find "$CACHE" -maxdepth 1 -name 'rootfs-*.tar' ! -name "$(basename "$ROOTFS_TAR")" -delete
}

started=$SECONDS
log "building $IMAGE (a couple of minutes the first time; cache: $CACHE)"
if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    [ -f "$ROOTFS_TAR" ] || make_rootfs
    log "importing the root filesystem as $BASE_IMAGE"
    docker import -m "ipynbsrv notebook root filesystem ($SUITE, $ROOTFS_KEY)" "$ROOTFS_TAR" "$BASE_IMAGE" >/dev/null
fi

log "adding the entrypoint and the health check (images/notebook/Dockerfile)"
previous=$(docker image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)
DOCKER_BUILDKIT=0 docker build --build-arg "BASE=$BASE_IMAGE" \
    --label "org.ipynbsrv.notebook.recipe=$RECIPE_KEY" -t "$IMAGE" "$RECIPE_DIR" >"$CACHE/docker-build.log" 2>&1 \
    || { tail -20 "$CACHE/docker-build.log" >&2; die "docker build of $RECIPE_DIR failed"; }

# The image this one replaces (unless a container still uses it), and root filesystems of
# older recipes, are no longer needed.
if [ -n "$previous" ] && [ "$previous" != "$(docker image inspect -f '{{.Id}}' "$IMAGE")" ]; then
    docker image rm "$previous" >/dev/null 2>&1 || true
fi
for old in $(docker image ls --format '{{.Repository}}:{{.Tag}}' "$BASE_REPO" 2>/dev/null); do
    [ "$old" = "$BASE_IMAGE" ] || docker image rm "$old" >/dev/null 2>&1 || true
done
log "built $IMAGE in $((SECONDS - started)) s"
