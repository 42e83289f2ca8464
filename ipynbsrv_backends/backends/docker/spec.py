"""The create spec: what the engine is asked to make, built without an engine.

Labels, environment, bind mounts, port bindings, limits and the host configuration of a
container are pure functions of the validated call and the backend's options, so each is
unit-tested without a Docker engine (``tests/unit/test_docker_spec.py``).
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Mapping
from typing import Any

from ... import errors
from ...contract import PortRecord, VolumeRecord
from ...validation import validate_name, validate_uid
from ..options import CONTAINER_OPTIONS
from .constants import (
    CONTAINER_LABELS,
    IMAGE_NAME_RE,
    KIND_CONTAINER,
    L_CREATED,
    L_INSTANCE,
    L_KIND,
    L_NAME,
    L_OWNER,
    L_PORTS,
    L_UID,
    L_VOLUMES,
)

__all__ = [
    "Bindings",
    "split_ref",
    "engine_name",
    "image_allowed",
    "with_env",
    "image_ref",
    "snapshot_ref",
    "container_labels",
    "container_environment",
    "binds",
    "fix_ports",
    "port_bindings",
    "limits",
    "limits_of",
    "host_config",
]

#: Port bindings: ``{internal: (host_address, host_port or None)}``.
Bindings = Mapping[int, tuple[str, int | None]]


def split_ref(ref: str) -> tuple[str, str]:
    """``host:5000/a/b:tag`` -> (``host:5000/a/b``, ``tag``); a missing tag is ``latest``."""
    if "@" in ref:
        return ref, ""
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1:]
    return ref, "latest"


def with_env(environment: list[str], replaced: Mapping[str, str]) -> list[str]:
    """``KEY=VALUE`` lines with the keys of ``replaced`` set to its values (added if new)."""
    kept = [line for line in environment if line.split("=", 1)[0] not in replaced]
    return kept + [f"{key}={value}" for key, value in replaced.items()]


def engine_name(name_prefix: str, uid: int, name: str) -> str:
    """The engine name (and pk) of a user's container: ``<prefix>-u<uid>-<name>``."""
    return f"{name_prefix}-u{validate_uid(uid)}-{validate_name(name)}"


def image_allowed(image: str, patterns: tuple[str, ...]) -> None:
    """Refuse an image that matches none of ``patterns`` (glob patterns; none: any image)."""
    if patterns and not any(fnmatch.fnmatchcase(image, p) for p in patterns):
        raise errors.InvalidArgumentError(
            f"The image {image!r} is not allowed on this backend (allowed: {', '.join(patterns)})."
        )


def image_ref(registry: str | None, name_prefix: str, uid: int, name: str) -> str:
    """The reference of the image ``name`` (``NAME[:TAG]``) a user ``uid`` commits."""
    match = IMAGE_NAME_RE.fullmatch(name) if isinstance(name, str) and len(name) <= 128 else None
    if not match:
        raise errors.InvalidArgumentError(
            f"Invalid image name {str(name)[:80]!r}: use a lower-case name with an optional tag, such as 'my-stack' or 'my-stack:v2'."
        )
    base = f"{registry}/" if registry else ""
    return f"{base}{name_prefix}-u{uid}/{match.group('name')}:{match.group('tag') or 'latest'}"


def snapshot_ref(name_prefix: str, container_pk: str, name: str) -> str:
    """The reference of the snapshot ``name`` of a container."""
    validate_name(name, "snapshot name")
    return f"{name_prefix}-snapshots/{container_pk}:{name}"


def container_labels(instance: str, username: str, uid: int, name: str, ports: list[PortRecord],
                     volumes: list[VolumeRecord], created: str) -> dict[str, str]:
    """Every label of a new container (those it does not use are blank, so none is
    inherited from the image); ``L_IMAGE`` and ``L_CLONE_OF`` are the caller's to fill."""
    labels = {key: "" for key in CONTAINER_LABELS}
    labels.update({
        L_INSTANCE: instance, L_KIND: KIND_CONTAINER, L_OWNER: username, L_UID: str(uid),
        L_NAME: name, L_CREATED: created, L_PORTS: json.dumps(ports), L_VOLUMES: json.dumps(volumes),
    })
    return labels


def container_environment(env: Mapping[str, str], username: str, uid: int, base_url: str | None) -> dict[str, str]:
    """The caller's variables plus the ones the backend always sets (they win)."""
    return {**env, "OWNER": username, "OWNER_UID": str(uid), "BASE_URL": base_url if base_url is not None else "/"}


def binds(volumes: list[VolumeRecord]) -> list[str]:
    """The engine's ``SOURCE:TARGET:MODE`` lines."""
    return [f"{v['source']}:{v['target']}:{v.get('mode', 'rw')}" for v in volumes]


def fix_ports(ports: list[PortRecord], chosen: Mapping[int, int]) -> list[PortRecord]:
    """The port records with the host ports ``chosen`` (by container port) filled in."""
    return [{"address": p["address"], "external": chosen.get(p["internal"], p["external"]), "internal": p["internal"]}
            for p in ports]


def port_bindings(ports: list[PortRecord]) -> dict[int, tuple[str, int | None]]:
    return {p["internal"]: (p["address"], p["external"]) for p in ports}


def limits(options: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The memory, CPU and process limits of a create: the call's, else the backend's."""
    keys = ("mem_limit", "cpu_limit", "pids_limit")
    return {key: CONTAINER_OPTIONS[key](options[key]) if key in options else defaults.get(key) for key in keys}


def limits_of(host: Mapping[str, Any]) -> dict[str, Any]:
    """The limits an existing container runs with, from its ``HostConfig``."""
    return {
        "mem_limit": host.get("Memory") or None,
        "cpu_limit": (host.get("NanoCpus") or 0) / 1e9 or None,
        "pids_limit": host.get("PidsLimit") or None,
    }


def host_config(bindings: Bindings, bind_lines: list[str], limits: Mapping[str, Any], *,
                no_new_privileges: bool, use_init: bool) -> dict[str, Any]:
    """The keyword arguments of docker-py's ``create_host_config`` for a container."""
    kwargs: dict[str, Any] = {
        "port_bindings": {internal: (address, external) if external else (address,)
                          for internal, (address, external) in bindings.items()},
        "binds": bind_lines,
    }
    if limits.get("mem_limit"):
        kwargs["mem_limit"] = limits["mem_limit"]
    if limits.get("cpu_limit"):
        kwargs["nano_cpus"] = int(limits["cpu_limit"] * 1e9)
    if limits.get("pids_limit"):
        kwargs["pids_limit"] = limits["pids_limit"]
    if no_new_privileges:
        kwargs["security_opt"] = ["no-new-privileges"]
    if use_init:
        kwargs["init"] = True
    return kwargs
