"""The ``DockerSwarm`` backend's constructor options, declared once (see :mod:`..options`).

The options it shares with ``Docker`` are the same declarations (one check, one help text);
the swarm's own say where a task may run and how long a start may take.
"""

from __future__ import annotations

import posixpath
import re
from typing import Any

from ... import errors
from ..docker.options import DOCKER_OPTIONS
from ..options import Option, Options, boolean, positive_seconds

__all__ = ["SWARM_OPTIONS", "SHARED_WITH_DOCKER"]

#: The options that mean exactly what they mean for ``Docker``.
SHARED_WITH_DOCKER = (
    "base_url", "registry", "allowed_volume_roots", "instance", "name_prefix", "version", "timeout",
    "max_pool_size", "tls_ca_cert", "tls_client_cert", "tls_client_key", "tls_verify", "port_range",
    "stop_timeout", "default_mem_limit", "default_cpu_limit", "default_pids_limit", "allowed_images", "use_init",
)

#: A placement constraint as Swarm writes them: ``node.labels.notebooks==yes``, ``node.role!=manager``.
_CONSTRAINT_RE = re.compile(r"^[A-Za-z0-9_.-]+\s*(==|!=)\s*[A-Za-z0-9_.:/-]+\Z", re.ASCII)


def _constraints(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)) \
            or not all(isinstance(c, str) and _CONSTRAINT_RE.fullmatch(c) for c in value):
        raise errors.InvalidArgumentError(
            f"Invalid {name} {value!r}: use a list of Swarm placement constraints such as "
            "['node.labels.notebooks==yes', 'node.role!=manager']."
        )
    return tuple(value)


def _node_roots(name: str, value: Any) -> tuple[str, ...]:
    """Absolute directories on the nodes, normalised but not resolved (they are not paths of
    the machine running the backend)."""
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise errors.InvalidArgumentError("allowed_volume_roots must be a list of absolute directories of the nodes.")
    roots = []
    for root in value:
        if not isinstance(root, str) or not root.startswith("/") or "\x00" in root:
            raise errors.InvalidArgumentError(f"Invalid allowed volume root {root!r}: use an absolute path.")
        normal = posixpath.normpath(root)
        if normal == "/":
            raise errors.InvalidArgumentError("'/' cannot be an allowed volume root: that allows the whole node.")
        roots.append(normal)
    return tuple(roots)


SWARM_OPTIONS = Options(
    "DockerSwarm backend",
    *(DOCKER_OPTIONS[name] for name in SHARED_WITH_DOCKER[:2]),
    Option("allowed_volume_roots", (), "Directories under which bind-mount sources may lie, on every node. The "
           "manager cannot resolve paths on a node, so a source is checked as written (no `..`); use roots users "
           "cannot plant symlinks in, or only named volumes. Empty: no host directories at all.",
           _node_roots, shown_default="`()`"),
    *(DOCKER_OPTIONS[name] for name in SHARED_WITH_DOCKER[3:]),
    Option("shared_storage", False, "The volumes live on storage every node mounts (an NFS-backed volume driver "
           "or bind mounts of one network file system): Swarm may run a container on any node, and moves it when "
           "its node fails. `False`: after its first placement a container is pinned to that node (a placement "
           "constraint), because its named volume lives there.", boolean),
    Option("constraints", (), "Placement constraints every container's service gets (`node.labels.notebooks==yes`).",
           _constraints, shown_default="`()`"),
    Option("start_timeout", 120, "Seconds `create_container` and `start_container` wait for the task to run "
           "(a node pulls the image first).", positive_seconds),
    together=(("tls_client_cert", "tls_client_key"),),
)
