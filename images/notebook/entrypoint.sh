#!/bin/bash
# The notebook image's entrypoint. It starts as root (the image's default user), then:
#   1. makes the user $OWNER (uid $OWNER_UID, else 1000; never 0) and its home directory,
#   2. hands the work directory /data to that user (a fresh volume belongs to root; a clone
#      or a restore may bring files of another uid),
#   3. drops root with setpriv (no setuid binary is involved, so this works under the
#      engine's no-new-privileges) and runs Jupyter Notebook as that user, on 0.0.0.0:8888,
#      under $BASE_URL, with /data as its root directory.
# Jupyter answers only requests that carry the container's access secret
# ($IPYNBSRV_ACCESS_SECRET, minted by the master) in the X-Ipynbsrv-Access header, which the
# master's proxy adds after checking that the signed-in user owns the container
# (ipynbsrv_notebook_auth.py). Without a secret the server does not start.
#
# Hub mode: when a JupyterHub spawned the container ($JUPYTERHUB_API_TOKEN is set, with the
# rest of the hub's environment: JUPYTERHUB_SERVICE_PREFIX, JUPYTERHUB_API_URL, ...), it runs
# jupyterhub-singleuser instead, the same way (same user, same drop of root, /data, port
# 8888): the hub's sign-in guards it (OAuth with the hub; the hub's environment decides the
# base URL), and the master's access secret, if any, is not used and not passed on.
#
# Arguments: options starting with "-" are added to the notebook command line; anything else
# is run instead of Jupyter, as the user.
set -euo pipefail

say() { printf '[ipynbsrv-notebook] %s\n' "$*" >&2; }
die() { say "$*"; exit 64; }

[ "$(id -u)" = 0 ] || die "must start as root (it creates \$OWNER and then drops to it)"
hub=
[ -z "${JUPYTERHUB_API_TOKEN:-}" ] || hub=1
# A hub names its user; the master (or the spawner) may also set OWNER.
[ -z "$hub" ] || OWNER=${OWNER:-${JUPYTERHUB_USER:-}}
[ -n "${OWNER:-}" ] || die "OWNER is not set: the container backend sets it to the user's name (a hub: JUPYTERHUB_USER)"

# A Unix name for OWNER: Django allows upper case, '@' and '+', useradd does not.
name=$(printf '%s' "$OWNER" | tr 'A-Z' 'a-z' | tr -c 'a-z0-9_.-' '_' | cut -c1-32)
case "$name" in [a-z_]*) ;; *) name="u$name" ;; esac
name=${name:0:32}
[ "$name" = "$OWNER" ] || say "the user $OWNER is called $name inside the container"

uid=${OWNER_UID:-1000}
case "$uid" in ''|*[!0-9]*) die "OWNER_UID must be a number, not '$uid'" ;; esac
[ "$uid" -gt 0 ] || die "OWNER_UID must not be 0: the notebook never runs as root"
gid=$uid
home=/home/$name

# The user (idempotent: a restored, moved or restarted container already has it).
if ! getent group "$name" >/dev/null; then
    groupadd --non-unique --gid "$gid" "$name"
elif [ "$(getent group "$name" | cut -d: -f3)" != "$gid" ]; then
    groupmod --non-unique --gid "$gid" "$name"
fi
if ! getent passwd "$name" >/dev/null; then
    useradd --non-unique --uid "$uid" --gid "$gid" --no-create-home --home-dir "$home" \
        --shell /bin/bash "$name"
elif [ "$(id -u "$name")" != "$uid" ]; then
    usermod --non-unique --uid "$uid" --gid "$gid" "$name"
fi
mkdir -p "$home" /data
[ "$(stat -c %u "$home")" = "$uid" ] || chown -R "$uid:$gid" "$home"
# Only when the top of /data is not the user's: a large volume is not walked at every start.
[ "$(stat -c %u /data)" = "$uid" ] || chown -R "$uid:$gid" /data

export HOME=$home USER=$name LOGNAME=$name SHELL=/bin/bash
export JUPYTER_RUNTIME_DIR=$home/.local/share/jupyter/runtime
cd /data

base_url=${BASE_URL:-/}
case "$base_url" in /*) ;; *) base_url="/$base_url" ;; esac
case "$base_url" in */) ;; *) base_url="$base_url/" ;; esac

drop=(setpriv --reuid="$uid" --regid="$gid" --init-groups --inh-caps=-all --bounding-set=-all)

if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
    exec "${drop[@]}" "$@"
fi

if [ -n "$hub" ]; then
    # The hub's sign-in guards this server; the master's secret is not needed and no kernel
    # or terminal gets it. --ip/--port pin what the hub's JUPYTERHUB_SERVICE_URL may say:
    # the engine publishes 8888 and the proxy routes to the published port.
    unset IPYNBSRV_ACCESS_SECRET BASE_URL
    say "serving jupyterhub-singleuser as $name (uid $uid) for the hub under ${JUPYTERHUB_SERVICE_PREFIX:-/} on port 8888, work in /data"
    exec "${drop[@]}" jupyterhub-singleuser \
        --ip=0.0.0.0 \
        --port=8888 \
        --ServerApp.port_retries=0 \
        --ServerApp.root_dir=/data \
        --ServerApp.terminals_enabled=True \
        "$@"
fi

secret=${IPYNBSRV_ACCESS_SECRET:-}
[ ${#secret} -ge 16 ] \
    || die "IPYNBSRV_ACCESS_SECRET is not set: the master sets it for every container; without it this server would answer anyone who reaches its port"
unset secret

say "serving Jupyter Notebook as $name (uid $uid) under $base_url on port 8888, work in /data"
exec "${drop[@]}" jupyter notebook \
    --no-browser \
    --ip=0.0.0.0 \
    --port=8888 \
    --ServerApp.port_retries=0 \
    --ServerApp.base_url="$base_url" \
    --ServerApp.root_dir=/data \
    --ServerApp.allow_remote_access=True \
    --ServerApp.trust_xheaders=True \
    --ServerApp.identity_provider_class=ipynbsrv_notebook_auth.ProxyIdentityProvider \
    --ServerApp.allow_unauthenticated_access=False \
    --IdentityProvider.token= \
    --ServerApp.terminals_enabled=True \
    "$@"
