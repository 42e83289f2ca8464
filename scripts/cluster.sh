#!/usr/bin/env bash
# A real multi-node test bed on one machine (root only):
#
#   - a bridge ipynbr0 (10.231.7.1/24) in the root network namespace,
#   - a registry (Debian's docker-registry) on 10.231.7.1:5000,
#   - N nodes, each a network namespace ipynN with the address 10.231.7.(10+N), its own
#     dockerd (trusting the registry) and its own ipynbsrv_hostapi on port 8080, which
#     requires the node's token and signed requests (its key in $STATE/nN/signing_key, its
#     --state-dir $STATE/nN/hostapi-state), as a production node should.
#
#   scripts/cluster.sh up [N]     bring it up (default 2 nodes); idempotent
#   scripts/cluster.sh down       remove every trace: daemons, namespaces, veths, state
#   scripts/cluster.sh status     show what runs
#   scripts/cluster.sh env        print the facts tests need (KEY=VALUE lines)
#   scripts/cluster.sh firewall [ARGS]   run ipynbsrv_firewall ARGS in every node's namespace
#                                 (not part of `up`: the test bed runs without it by default)
#   scripts/cluster.sh swarm      make the running nodes one Docker swarm: node 1 the manager,
#                                 the others workers, each labelled org.ipynbsrv.node=nN, the
#                                 test image pushed to the registry as REGISTRY/IMAGE;
#                                 idempotent (`down` leaves the swarm before stopping engines)
#   scripts/cluster.sh unswarm    every node leaves the swarm
#
# Everything lives under $IPYNBSRV_CLUSTER_DIR (default /tmp/ipynbsrv-cluster<ID>).
# IPYNBSRV_CLUSTER_ID (a number from 0 to 9, default 0) lets several test beds coexist on one
# machine: each gets its own bridge, namespaces, subnet (10.231.<7+ID>.0/24) and state.
# IPYNBSRV_CLUSTER_DOCKERD_ARGS (default empty) adds flags to the dockerd of each node `up`
# starts (e.g. "--userland-proxy=false --icc=true"; the later of two equal flags wins).
set -euo pipefail

HERE=$(cd "$(dirname "$0")/.." && pwd)
ID=${IPYNBSRV_CLUSTER_ID:-0}
case "$ID" in [0-9]) ;; *) echo "IPYNBSRV_CLUSTER_ID must be a digit" >&2; exit 2 ;; esac
SUFFIX=$([ "$ID" = 0 ] && echo "" || echo "$ID")
STATE=${IPYNBSRV_CLUSTER_DIR:-/tmp/ipynbsrv-cluster$SUFFIX}
NET=${IPYNBSRV_CLUSTER_NET:-10.231.$((7 + ID))}
BRIDGE=ipynbr$ID
NSP=ipyn$([ "$ID" = 0 ] && echo "" || echo "${ID}x")   # namespaces: ipyn1, ipyn2 (or ipyn3x1 ...)
REGISTRY_ADDR="$NET.1:5000"
HOSTAPI_PORT=8080
IMAGE=${IPYNBSRV_TEST_IMAGE:-ipynbsrv-test/busybox:latest}
VENV_BIN=${VENV_BIN:-$HERE/.venv/bin}

log() { printf '[cluster] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

node_ip() { echo "$NET.$((10 + $1))"; }
node_dir() { echo "$STATE/n$1"; }
node_sock() { echo "$(node_dir "$1")/docker.sock"; }
node_state() { echo "$(node_dir "$1")/hostapi-state"; }   # the host API's --state-dir

# wait_until SECONDS DESCRIPTION COMMAND...: poll COMMAND until it succeeds, bounded in time.
wait_until() {
    local seconds=$1 what=$2; shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        if [ $SECONDS -ge $deadline ]; then
            log "timed out after ${seconds}s waiting for $what"
            return 1
        fi
        sleep 0.2
    done
}

# alive, and not a zombie nobody reaped yet (a killed daemon's parent may be a lax init)
pid_alive() {
    [ -f "$1" ] || return 1
    local pid
    pid=$(cat "$1")
    kill -0 "$pid" 2>/dev/null || return 1
    [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]
}

stop_pidfile() {
    local pidfile=$1 what=$2 seconds=${3:-30}
    if pid_alive "$pidfile"; then
        local pid
        pid=$(cat "$pidfile")
        kill -TERM "$pid" 2>/dev/null || true
        local deadline=$((SECONDS + seconds))
        while kill -0 "$pid" 2>/dev/null; do
            if [ $SECONDS -ge $deadline ]; then
                log "$what did not stop in ${seconds}s; killing it"
                kill -KILL "$pid" 2>/dev/null || true
                break
            fi
            sleep 0.2
        done
    fi
    rm -f "$pidfile"
}

registry_up() { curl -fsS "http://$REGISTRY_ADDR/v2/" >/dev/null; }
engine_up() { docker -H "unix://$(node_sock "$1")" info >/dev/null; }
# the running host API was started with its state directory (so with the signing key)
hostapi_signed() {
    tr '\0' ' ' < "/proc/$(cat "$(node_dir "$1")/hostapi.pid")/cmdline" 2>/dev/null | grep -q -- "--state-dir"
}
hostapi_up() { curl -fsS "http://$(node_ip "$1"):$HOSTAPI_PORT/health/" >/dev/null; }

up() {
    local count=${1:-2}
    [ "$(id -u)" = 0 ] || die "the cluster needs root (network namespaces and daemons)"
    command -v dockerd >/dev/null || die "dockerd is missing: run scripts/engine.sh first"
    command -v docker-registry >/dev/null || die "docker-registry is missing: run scripts/packages.sh first"
    [ -x "$VENV_BIN/ipynbsrv_hostapi" ] || die "ipynbsrv_hostapi is missing: run make venv first"
    docker image inspect "$IMAGE" >/dev/null 2>&1 || die "the image $IMAGE is missing: run scripts/images.sh first"
    mkdir -p "$STATE"
    chmod 700 "$STATE"
    echo "$count" > "$STATE/nodes"

    # the bridge joining the nodes and the root namespace
    if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
        ip link add "$BRIDGE" type bridge
        ip addr add "$NET.1/24" dev "$BRIDGE"
    fi
    ip link set "$BRIDGE" up
    # the host engine's firewall drops forwarded traffic; let the test bed's own through
    iptables -C DOCKER-USER -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT 2>/dev/null \
        || iptables -I DOCKER-USER -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT 2>/dev/null || true

    # the registry every node pulls from and pushes to
    if ! pid_alive "$STATE/registry.pid"; then
        mkdir -p "$STATE/registry"
        cat > "$STATE/registry.yml" <<EOF
version: 0.1
log: {level: warn}
storage: {filesystem: {rootdirectory: $STATE/registry}, delete: {enabled: true}}
http: {addr: $REGISTRY_ADDR}
EOF
        setsid docker-registry serve "$STATE/registry.yml" >"$STATE/registry.log" 2>&1 < /dev/null &
        echo $! > "$STATE/registry.pid"
    fi
    wait_until 30 "the registry" registry_up || { tail -20 "$STATE/registry.log" >&2; exit 1; }

    local i
    for i in $(seq 1 "$count"); do
        up_node "$i"
    done
    log "cluster up: registry $REGISTRY_ADDR; nodes $(for i in $(seq 1 "$count"); do printf '%s ' "$(node_ip "$i")"; done)"
}

up_node() {
    local i=$1 ns="$NSP$1" dir ip
    dir=$(node_dir "$i")
    ip=$(node_ip "$i")
    mkdir -p "$dir"

    # the namespace and its veth into the bridge
    if ! ip netns list | grep -qw "$ns"; then
        ip netns add "$ns"
    fi
    if ! ip link show "veth-$ns" >/dev/null 2>&1; then
        ip link add "veth-$ns" type veth peer name eth0 netns "$ns"
        ip link set "veth-$ns" master "$BRIDGE"
        ip netns exec "$ns" ip addr add "$ip/24" dev eth0
    fi
    ip link set "veth-$ns" up
    ip netns exec "$ns" ip link set lo up
    ip netns exec "$ns" ip link set eth0 up

    # the node's own engine (nsenter, not `ip netns exec`: dockerd needs the host's mounts)
    if ! pid_alive "$dir/docker.pid"; then
        rm -f "$dir/docker.pid"
        # a killed engine's containerd may linger as a zombie: dockerd would wait for it
        pid_alive "$dir/exec/containerd/containerd.pid" || rm -f "$dir/exec/containerd/containerd.pid"
        setsid nsenter --net="/run/netns/$ns" dockerd \
            --data-root "$dir/data" --exec-root "$dir/exec" --pidfile "$dir/docker.pid" \
            -H "unix://$(node_sock "$i")" --insecure-registry "$REGISTRY_ADDR" \
            --icc=false --bip "172.30.$i.1/24" ${IPYNBSRV_CLUSTER_DOCKERD_ARGS:-} \
            >"$dir/dockerd.log" 2>&1 < /dev/null &
    fi
    wait_until 60 "the engine of node $i" engine_up "$i" || { tail -30 "$dir/dockerd.log" >&2; exit 1; }

    # the base image, straight from the host's engine
    if ! docker -H "unix://$(node_sock "$i")" image inspect "$IMAGE" >/dev/null 2>&1; then
        docker save "$IMAGE" | docker -H "unix://$(node_sock "$i")" load >/dev/null
    fi

    # the node's host API, on its own address, with its own token and signing key (both
    # kept for later restarts, never printed) and its state directory (the nonces its
    # workers have seen, and a key the master rotated in, which outlives a restart)
    if [ ! -f "$dir/token" ]; then
        (umask 077; head -c 32 /dev/urandom | base64 | tr -d '/+=\n' > "$dir/token")
    fi
    if [ ! -f "$dir/signing_key" ]; then
        (umask 077; head -c 48 /dev/urandom | base64 | tr -d '/+=\n' > "$dir/signing_key")
    fi
    # a host API an older cluster.sh started without a signing key: restart it signed
    if pid_alive "$dir/hostapi.pid" && ! hostapi_signed "$i"; then
        log "restarting the host API of node $i with its signing key"
        stop_pidfile "$dir/hostapi.pid" "the host API of node $i" 40
    fi
    if ! pid_alive "$dir/hostapi.pid"; then
        local args
        # $STATE/shared stands in for storage every node mounts at the same path (NFS, say)
        mkdir -p "$STATE/shared"
        args=$(printf '{"base_url": "unix://%s", "registry": "%s", "registry_insecure": true, "instance": "cluster", "stop_timeout": 3, "allowed_volume_roots": ["%s"]}' \
            "$(node_sock "$i")" "$REGISTRY_ADDR" "$STATE/shared")
        IPYNBSRV_HOSTAPI_TOKEN=$(cat "$dir/token") IPYNBSRV_HOSTAPI_SIGNING_KEY=$(cat "$dir/signing_key") \
            setsid nsenter --net="/run/netns/$ns" \
            "$VENV_BIN/ipynbsrv_hostapi" --listen "$ip" --port "$HOSTAPI_PORT" \
            --container-backend-args "$args" --workers 2 --threads 8 --state-dir "$(node_state "$i")" \
            >"$dir/hostapi.log" 2>&1 < /dev/null &
        echo $! > "$dir/hostapi.pid"
    fi
    wait_until 60 "the host API of node $i" hostapi_up "$i" || { tail -30 "$dir/hostapi.log" >&2; exit 1; }
}

# the node's engine is in a swarm (any state but inactive)
in_swarm() {
    [ "$(docker -H "unix://$(node_sock "$1")" info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null)" = active ]
}
swarm_ready() {   # every node of the test bed is Ready in the manager's node list
    local ready
    ready=$(docker -H "unix://$(node_sock 1)" node ls --format '{{.Status}}' 2>/dev/null | grep -c '^Ready$' || true)
    [ "$ready" -ge "$1" ]
}

swarm() {
    [ "$(id -u)" = 0 ] || die "the swarm needs root"
    local count=0 i manager
    [ -f "$STATE/nodes" ] && count=$(cat "$STATE/nodes")
    [ "$count" -gt 0 ] || die "no node runs: scripts/cluster.sh up first"
    manager="unix://$(node_sock 1)"
    if ! in_swarm 1; then
        docker -H "$manager" swarm init --advertise-addr "$(node_ip 1)" --listen-addr "$(node_ip 1):2377" >/dev/null
    fi
    local token
    token=$(docker -H "$manager" swarm join-token -q worker)
    for i in $(seq 2 "$count"); do
        if ! in_swarm "$i"; then
            docker -H "unix://$(node_sock "$i")" swarm join --token "$token" \
                --advertise-addr "$(node_ip "$i")" "$(node_ip 1):2377" >/dev/null
        fi
    done
    wait_until 60 "every node Ready in the swarm" swarm_ready "$count" \
        || { docker -H "$manager" node ls >&2; exit 1; }
    # the namespaces share the host's hostname: label each node with its test bed name
    for i in $(seq 1 "$count"); do
        local id
        id=$(docker -H "unix://$(node_sock "$i")" info --format '{{.Swarm.NodeID}}')
        docker -H "$manager" node update --label-add "org.ipynbsrv.node=n$i" "$id" >/dev/null
    done
    # every machine pulls a service's image by name: the test image goes to the registry
    docker -H "$manager" tag "$IMAGE" "$REGISTRY_ADDR/$IMAGE"
    docker -H "$manager" push "$REGISTRY_ADDR/$IMAGE" >/dev/null
    echo swarm > "$STATE/swarm"
    log "swarm up: manager $(node_ip 1), $count node(s); image $REGISTRY_ADDR/$IMAGE"
}

unswarm() {
    local count=0 i
    [ -f "$STATE/nodes" ] && count=$(cat "$STATE/nodes")
    # workers first, then the manager (the last manager must force its leave)
    for i in $(seq "$count" -1 1); do
        if in_swarm "$i"; then
            timeout 60 docker -H "unix://$(node_sock "$i")" swarm leave --force >/dev/null 2>&1 || true
        fi
    done
    rm -f "$STATE/swarm"
}

down() {
    [ "$(id -u)" = 0 ] || die "the cluster needs root"
    local count=0 i
    [ -f "$STATE/nodes" ] && count=$(cat "$STATE/nodes")
    stop_pidfile "$STATE/master.pid" "the master" 15
    [ -f "$STATE/swarm" ] && unswarm
    # every namespace we may have made, even if the state file is gone
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$NSP[0-9]+\$" || true); do
        i=${ns#"$NSP"}
        [ "$i" -gt "$count" ] && count=$i
    done
    for i in $(seq 1 "$count"); do
        local dir
        dir=$(node_dir "$i")
        stop_pidfile "$dir/hostapi.pid" "the host API of node $i" 40
        stop_pidfile "$dir/docker.pid" "the engine of node $i" 60
        ip netns delete "$NSP$i" 2>/dev/null || true
        ip link delete "veth-$NSP$i" 2>/dev/null || true
    done
    stop_pidfile "$STATE/registry.pid" "the registry" 15
    iptables -D DOCKER-USER -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT 2>/dev/null || true
    ip link delete "$BRIDGE" 2>/dev/null || true
    # mounts a killed engine may have left behind, then the state itself
    if [ -d "$STATE" ]; then
        { grep -o " $STATE[^ ]*" /proc/mounts || true; } | sort -r | while read -r mount; do umount -l "$mount" 2>/dev/null || true; done
        rm -rf "$STATE"
    fi
    log "cluster down"
}

status() {
    local count=0 i
    [ -f "$STATE/nodes" ] && count=$(cat "$STATE/nodes")
    if pid_alive "$STATE/registry.pid"; then echo "registry  $REGISTRY_ADDR  up"; else echo "registry  down"; fi
    for i in $(seq 1 "$count"); do
        local dir engine api
        dir=$(node_dir "$i")
        engine=down; api=down
        engine_up "$i" 2>/dev/null && engine=up
        hostapi_up "$i" 2>/dev/null && api=up
        echo "node n$i  $(node_ip "$i")  engine $engine  host API $api"
    done
    if pid_alive "$STATE/master.pid"; then echo "master    $(cat "$STATE/master.url" 2>/dev/null)  up"; fi
    if [ -f "$STATE/swarm" ]; then echo "swarm     manager $(node_ip 1)  $(in_swarm 1 && echo active || echo inactive)"; fi
}

env_facts() {
    local count=0 i
    [ -f "$STATE/nodes" ] && count=$(cat "$STATE/nodes")
    echo "CLUSTER_DIR=$STATE"
    echo "CLUSTER_ID=$ID"
    echo "CLUSTER_NAMESPACE_PREFIX=$NSP"
    echo "CLUSTER_BRIDGE=$BRIDGE"
    echo "CLUSTER_SHARED=$STATE/shared"
    echo "CLUSTER_REGISTRY=$REGISTRY_ADDR"
    echo "CLUSTER_NODES=$count"
    if [ -f "$STATE/swarm" ]; then
        echo "CLUSTER_SWARM_MANAGER=unix://$(node_sock 1)"
        echo "CLUSTER_SWARM_IMAGE=$REGISTRY_ADDR/$IMAGE"
    fi
    for i in $(seq 1 "$count"); do
        echo "CLUSTER_NODE_${i}_ADDRESS=$(node_ip "$i")"
        echo "CLUSTER_NODE_${i}_URL=http://$(node_ip "$i"):$HOSTAPI_PORT"
        echo "CLUSTER_NODE_${i}_SOCKET=$(node_sock "$i")"
        echo "CLUSTER_NODE_${i}_STATE_DIR=$(node_state "$i")"
    done
}

firewall() {
    [ "$(id -u)" = 0 ] || die "the firewall needs root"
    [ -x "$VENV_BIN/ipynbsrv_firewall" ] || die "ipynbsrv_firewall is missing: run make venv first"
    local count=0 i
    [ -f "$STATE/nodes" ] && count=$(cat "$STATE/nodes")
    [ "$count" -gt 0 ] || die "no node runs: scripts/cluster.sh up first"
    for i in $(seq 1 "$count"); do
        log "node $i: ipynbsrv_firewall $*"
        nsenter --net="/run/netns/$NSP$i" "$VENV_BIN/ipynbsrv_firewall" "$@"
    done
}

case "${1:-}" in
    up) up "${2:-2}" ;;
    down) down ;;
    status) status ;;
    env) env_facts ;;
    firewall) shift; firewall "$@" ;;
    swarm) swarm ;;
    unswarm) unswarm ;;
    *) echo "usage: $0 up [N] | down | status | env | firewall [ARGS] | swarm | unswarm" >&2; exit 2 ;;
esac
