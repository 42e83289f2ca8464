"""What the ``DockerSwarm`` backend asks a swarm for, and the records it makes of the answers.

Pure functions, no engine: the service spec of a user's container (its labels and environment
are the ``Docker`` backend's own builders, so the two backends write the same things), the
records of services, tasks and nodes, and the swarm's node list summed up for health and
capacity. Unit-tested in ``tests/unit/test_swarm_spec.py``.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterable, Mapping
from typing import Any

from ... import errors
from ...contract import ContainerRecord, PortRecord, VolumeRecord
from ..docker.constants import KIND_CONTAINER, L_INSTANCE, L_KIND, L_OWNER, L_PORTS
from ..docker.records import container_record

__all__ = [
    "NODE_LABEL",
    "PIN_PREFIX",
    "service_spec",
    "mounts",
    "endpoint_ports",
    "resources",
    "pinned_node",
    "with_pin",
    "replicas",
    "running_task",
    "node_address",
    "node_name",
    "service_record",
    "kept_ports",
    "node_summary",
    "check_bind_sources",
]

#: The node label the test bed (and an operator) may give each node to tell them apart: the
#: namespaced nodes of one machine share a hostname.
NODE_LABEL = "org.ipynbsrv.node"
#: The placement constraint that pins a service to the node holding its volume.
PIN_PREFIX = "node.id=="
#: Task states in which the task's container is being made or runs.
_ACTIVE = ("new", "pending", "assigned", "accepted", "preparing", "ready", "starting", "running")


def check_bind_sources(volumes: list[VolumeRecord], roots: tuple[str, ...]) -> list[VolumeRecord]:
    """The volume records with bind sources normalised; a source outside ``roots`` (checked
    as written: the nodes' paths cannot be resolved from here) is refused."""
    checked: list[VolumeRecord] = []
    for volume in volumes:
        source = volume["source"]
        if source.startswith("/"):
            normal = posixpath.normpath(source)
            if ".." in source.split("/") or not any(normal == r or normal.startswith(r + "/") for r in roots):
                allowed = ", ".join(roots) or "none: use a named volume"
                raise errors.InvalidArgumentError(
                    f"The bind mount source {source!r} is not under an allowed volume root of the nodes "
                    f"(allowed: {allowed})."
                )
            source = normal
        checked.append({"source": source, "target": volume["target"], "mode": volume.get("mode", "rw")})
    return checked


def mounts(volumes: list[VolumeRecord], instance: str, username: str) -> list[dict[str, Any]]:
    """The service's mounts: a named volume is made on the node by the engine there, with the
    labels a ``Docker`` volume gets; a source with ``/`` is a bind mount of the node."""
    result: list[dict[str, Any]] = []
    for volume in volumes:
        mount: dict[str, Any] = {"Target": volume["target"], "Source": volume["source"],
                                 "ReadOnly": volume.get("mode", "rw") == "ro"}
        if volume["source"].startswith("/"):
            mount["Type"] = "bind"
        else:
            mount["Type"] = "volume"
            mount["VolumeOptions"] = {"Labels": {L_INSTANCE: instance, L_OWNER: username, L_KIND: "volume"}}
        result.append(mount)
    return result


def endpoint_ports(ports: list[PortRecord]) -> list[dict[str, Any]]:
    """Host-mode published ports (each on the node running the task: the routing mesh is not
    used); every external port is fixed by then."""
    return [{"Protocol": "tcp", "TargetPort": p["internal"], "PublishedPort": p["external"], "PublishMode": "host"}
            for p in ports]


def resources(limits: Mapping[str, Any]) -> dict[str, Any]:
    """The task's limits, in the swarm API's words."""
    found: dict[str, Any] = {}
    if limits.get("mem_limit"):
        found["MemoryBytes"] = int(limits["mem_limit"])
    if limits.get("cpu_limit"):
        found["NanoCPUs"] = int(limits["cpu_limit"] * 1e9)
    if limits.get("pids_limit"):
        found["Pids"] = int(limits["pids_limit"])
    return {"Limits": found} if found else {}


def service_spec(*, name: str, image: str, argv: list[str] | None, environment: Mapping[str, str],
                 labels: Mapping[str, str], ports: list[PortRecord], volumes: list[VolumeRecord],
                 limits: Mapping[str, Any], constraints: Iterable[str], stop_timeout: int, use_init: bool,
                 instance: str, username: str) -> dict[str, Any]:
    """The keyword arguments of docker-py's ``create_service`` for one user's container: one
    replica, labelled like a ``Docker`` container (the task's container too), a graceful
    stop, restarted by Swarm only when it fails."""
    container: dict[str, Any] = {
        "Image": image,
        "Env": [f"{key}={value}" for key, value in environment.items()],
        "Labels": dict(labels),
        "Mounts": mounts(volumes, instance, username),
        "StopGracePeriod": int(stop_timeout * 1e9),
    }
    if argv is not None:
        container["Args"] = list(argv)  # like ``docker run IMAGE ARGS``: the image's entrypoint stays
    if use_init:
        container["Init"] = True
    task = {
        "ContainerSpec": container,
        "Resources": resources(limits),
        "RestartPolicy": {"Condition": "on-failure", "Delay": 1_000_000_000, "MaxAttempts": 0},
        "Placement": {"Constraints": list(constraints)},
    }
    return {
        "task_template": task,
        "name": name,
        "labels": dict(labels),
        "mode": {"Replicated": {"Replicas": 1}},
        "endpoint_spec": {"Mode": "vip", "Ports": endpoint_ports(ports)},
    }


def pinned_node(service: Mapping[str, Any]) -> str | None:
    """The node id a service is pinned to, if it is."""
    placement = ((service.get("Spec") or {}).get("TaskTemplate") or {}).get("Placement") or {}
    for constraint in placement.get("Constraints") or []:
        if constraint.replace(" ", "").startswith(PIN_PREFIX):
            return constraint.replace(" ", "")[len(PIN_PREFIX):]
    return None


def with_pin(task_template: Mapping[str, Any], node_id: str) -> dict[str, Any]:
    """The task template with its placement pinned to ``node_id`` (an earlier pin replaced)."""
    placement = dict(task_template.get("Placement") or {})
    kept = [c for c in placement.get("Constraints") or [] if not c.replace(" ", "").startswith(PIN_PREFIX)]
    placement["Constraints"] = [*kept, PIN_PREFIX + node_id]
    return {**task_template, "Placement": placement}


def replicas(service: Mapping[str, Any]) -> int:
    return int((((service.get("Spec") or {}).get("Mode") or {}).get("Replicated") or {}).get("Replicas") or 0)


def running_task(tasks: Iterable[Mapping[str, Any]], service_id: str) -> Mapping[str, Any] | None:
    """The service's task that should run, the newest first: running, else being made."""
    mine = [t for t in tasks if t.get("ServiceID") == service_id and t.get("DesiredState") == "running"]
    mine.sort(key=lambda t: (t.get("Status") or {}).get("Timestamp") or "", reverse=True)
    for task in mine:
        if (task.get("Status") or {}).get("State") == "running":
            return task
    return next((t for t in mine if (t.get("Status") or {}).get("State") in _ACTIVE), None)


def node_address(node: Mapping[str, Any] | None) -> str | None:
    """A node's own address (a manager may report 0.0.0.0 there: then its manager address)."""
    if not node:
        return None
    address = (node.get("Status") or {}).get("Addr") or ""
    if address in ("", "0.0.0.0"):
        address = ((node.get("ManagerStatus") or {}).get("Addr") or "").rsplit(":", 1)[0]
    return address or None


def node_name(node: Mapping[str, Any] | None) -> str | None:
    """A node's label ``org.ipynbsrv.node`` if it has one, else its hostname."""
    if not node:
        return None
    labels = (node.get("Spec") or {}).get("Labels") or {}
    return labels.get(NODE_LABEL) or (node.get("Description") or {}).get("Hostname")


def service_record(service: Mapping[str, Any], tasks: Iterable[Mapping[str, Any]],
                   nodes: Mapping[str, Mapping[str, Any]]) -> ContainerRecord:
    """A container's record from its service, the swarm's tasks and nodes (by id). The ports
    carry the address of the node the task runs on (or is pinned to), so the proxy reaches
    it; ``node`` names that node and ``state`` says what the task is doing."""
    spec = service.get("Spec") or {}
    labels = spec.get("Labels") or {}
    task = running_task(tasks, service.get("ID", ""))
    task_state = (task.get("Status") or {}).get("State") if task else None
    running = replicas(service) > 0 and task_state == "running"
    node_id = (task.get("NodeID") if task else None) or pinned_node(service)
    node = nodes.get(node_id or "")
    record = container_record(spec.get("Name", ""), "running" if running else "exited", labels, {})
    address = node_address(node)
    if address:
        record["ports"] = [{**port, "address": address} for port in record["ports"]]
    state = _state(service, task, node)
    extra: dict[str, Any] = {"node": node_name(node), "node_id": node_id, "state": state,
                             # what the master shows beside the status when it is not what was asked for
                             "detail": None if state in ("running", "stopped", "exited") else f"Swarm: {state}"}
    return {**record, **extra}  # type: ignore[typeddict-item]


def _state(service: Mapping[str, Any], task: Mapping[str, Any] | None, node: Mapping[str, Any] | None) -> str:
    """What the service is doing, in words an operator reads."""
    if replicas(service) == 0:
        return "stopped"
    if node is not None and (node.get("Status") or {}).get("State") != "ready":
        return f"waiting for its node {node_name(node)} ({(node.get('Status') or {}).get('State', 'unknown')})"
    if task is None:  # its task finished (exited, or failed more than Swarm retries)
        return "exited"
    status = task.get("Status") or {}
    detail = status.get("Err") or ""
    return f"{status.get('State', 'unknown')}{': ' + detail if detail else ''}"


def kept_ports(services: Iterable[Mapping[str, Any]]) -> dict[int, str]:
    """Host ports the swarm's services keep (published, or in an ipynbsrv service's labels),
    by the service's name."""
    kept: dict[int, str] = {}
    for service in services:
        spec = service.get("Spec") or {}
        for port in (spec.get("EndpointSpec") or {}).get("Ports") or []:
            if port.get("PublishedPort"):
                kept[int(port["PublishedPort"])] = spec.get("Name", "")
        try:
            specs = json.loads((spec.get("Labels") or {}).get(L_PORTS) or "[]")
        except ValueError:
            continue
        for item in specs if isinstance(specs, list) else []:
            if isinstance(item, dict) and isinstance(item.get("external"), int):
                kept[item["external"]] = spec.get("Name", "")
    return kept


def node_summary(nodes: Iterable[Mapping[str, Any]], services: Iterable[Mapping[str, Any]],
                 tasks: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The swarm's machines (ready/down/drain), its capacity (ready, active nodes only) and this
    backend's container counts, in the shape of a node's status answer plus ``nodes``."""
    rows = []
    cpus = memory = 0
    for node in nodes:
        state = (node.get("Status") or {}).get("State", "unknown")
        availability = (node.get("Spec") or {}).get("Availability", "active")
        resources_ = (node.get("Description") or {}).get("Resources") or {}
        if state == "ready" and availability == "active":
            cpus += int(resources_.get("NanoCPUs") or 0) // 1_000_000_000
            memory += int(resources_.get("MemoryBytes") or 0)
        rows.append({"id": node.get("ID"), "name": node_name(node), "address": node_address(node), "state": state,
                     "availability": availability, "manager": bool(node.get("ManagerStatus"))})
    ours = [s for s in services if ((s.get("Spec") or {}).get("Labels") or {}).get(L_KIND) == KIND_CONTAINER]
    task_list = list(tasks)
    running = sum(1 for s in ours if replicas(s) > 0 and (t := running_task(task_list, s.get("ID", ""))) is not None
                  and (t.get("Status") or {}).get("State") == "running")
    return {
        "nodes": sorted(rows, key=lambda row: (row["name"] or "", row["id"] or "")),
        "resources": {"cpu_count": cpus, "memory_total": memory,
                      "containers": {"running": running, "total": len(ours)}},
    }
