"""The contract's records, built from the engine's JSON: pure functions, no engine needed.

A container's record comes from its labels (what it was created with) and the host ports
the engine bound (what it runs with); images and snapshots from their labels and sizes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ...contract import ContainerRecord, ContainerStatus, ImageRecord, PortRecord, SnapshotRecord, VolumeRecord
from ...validation import parse_engine_time
from .constants import (
    KIND_IMAGE,
    L_CLONE_OF,
    L_CONTAINER,
    L_CREATED,
    L_IMAGE,
    L_IMAGE_NAME,
    L_INSTANCE,
    L_KIND,
    L_NAME,
    L_OWNER,
    L_PORTS,
    L_SNAPSHOT,
    L_UID,
    L_VOLUMES,
)

__all__ = [
    "Bound",
    "status_of",
    "is_ours",
    "container_record",
    "record_from_list",
    "record_from_inspect",
    "image_record",
    "snapshot_record",
]

#: The host ports the engine bound, per container port: ``{internal: [(host_ip, host_port)]}``.
Bound = Mapping[int, list[tuple[str, int]]]


def status_of(state: str) -> ContainerStatus:
    """The contract's status for the engine's ``State``."""
    if state == "paused":
        return "suspended"
    if state in ("running", "restarting"):
        return "running"
    return "stopped"


def is_ours(labels: Mapping[str, str] | None, instance: str, kind: str) -> bool:
    """Whether the labels name this backend instance and this kind of object."""
    labels = labels or {}
    return labels.get(L_INSTANCE) == instance and labels.get(L_KIND) == kind


def _port_records(specs: list[Any], bound: Bound) -> list[PortRecord]:
    ports: list[PortRecord] = []
    for spec in specs:
        external = spec.get("external")
        bindings = bound.get(int(spec["internal"]), [])
        if bindings:
            matching = [port for ip, port in bindings if ip == spec["address"]]
            external = (matching or [bindings[0][1]])[0]
        ports.append({"address": spec["address"], "external": external, "internal": int(spec["internal"])})
    return ports


def container_record(name: str, state: str, labels: Mapping[str, str], bound: Bound) -> ContainerRecord:
    """A container's record from its engine name, state, labels and bound host ports."""
    try:
        port_specs = json.loads(labels.get(L_PORTS) or "[]")
        volume_specs: list[VolumeRecord] = json.loads(labels.get(L_VOLUMES) or "[]")
    except ValueError:
        port_specs, volume_specs = [], []
    return {
        "pk": name,
        "name": labels.get(L_NAME, ""),
        "status": status_of(state),
        "image": labels.get(L_IMAGE, ""),
        "owner": labels.get(L_OWNER, ""),
        "uid": int(labels.get(L_UID) or 0),
        "created": labels.get(L_CREATED, ""),
        "ports": _port_records(port_specs, bound),
        "volumes": volume_specs,
        "clone_of": labels.get(L_CLONE_OF) or None,
    }


def record_from_list(item: Mapping[str, Any]) -> ContainerRecord:
    """A record from one item of the engine's container list."""
    bound: dict[int, list[tuple[str, int]]] = {}
    for port in item.get("Ports") or []:
        if port.get("PublicPort"):
            bound.setdefault(int(port["PrivatePort"]), []).append((port.get("IP", ""), int(port["PublicPort"])))
    name = (item.get("Names") or ["/"])[0].lstrip("/")
    return container_record(name, item.get("State", ""), item.get("Labels") or {}, bound)


def record_from_inspect(info: Mapping[str, Any]) -> ContainerRecord:
    """A record from the engine's inspection of one container."""
    bound: dict[int, list[tuple[str, int]]] = {}
    for key, bindings in ((info.get("NetworkSettings") or {}).get("Ports") or {}).items():
        internal = int(key.split("/")[0])
        for binding in bindings or []:
            if binding.get("HostPort"):
                bound.setdefault(internal, []).append((binding.get("HostIp", ""), int(binding["HostPort"])))
    state = (info.get("State") or {}).get("Status", "")
    return container_record(info["Name"].lstrip("/"), state, info["Config"].get("Labels") or {}, bound)


def _labels(info: Mapping[str, Any]) -> Mapping[str, str]:
    return (info.get("Config") or {}).get("Labels") or info.get("Labels") or {}


def image_record(info: Mapping[str, Any], pk: str, instance: str, registry: str | None) -> ImageRecord:
    """An image's record; ``managed`` tells whether the backend ``instance`` committed it."""
    labels = _labels(info)
    managed = is_ours(labels, instance, KIND_IMAGE)
    return {
        "pk": pk,
        "name": (labels.get(L_IMAGE_NAME) or pk) if managed else pk,
        "created": parse_engine_time(info.get("Created")),
        "size": int(info.get("Size") or 0),
        "owner": labels.get(L_OWNER) if managed else None,
        "container": labels.get(L_CONTAINER) if managed else None,
        "managed": managed,
        # the registry every node can pull this image from, if it is kept in one
        "registry": registry if registry and pk.startswith(registry + "/") else None,
    }


def snapshot_record(info: Mapping[str, Any], pk: str) -> SnapshotRecord:
    """A snapshot's record."""
    labels = _labels(info)
    return {
        "pk": pk,
        "name": labels.get(L_SNAPSHOT, ""),
        "container": labels.get(L_CONTAINER, ""),
        "created": parse_engine_time(info.get("Created")),
        "size": int(info.get("Size") or 0),
    }
