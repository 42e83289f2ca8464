"""Nodes: ask each node's backend how it is, and which nodes may take a new container."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from django.utils import timezone

from .. import audit, errors
from ..conf import app_settings
from ..contract import (
    BACKEND_STATUS_ERROR,
    BACKEND_STATUS_OK,
    MachineAvailabilityContainerBackend,
    NodeStatusContainerBackend,
)
from ..models import Node
from ..registry import get_backend

logger = logging.getLogger(__name__)


def check_node_health(node: Node) -> int:
    """Ask the node's backend for its status (never raises) and record it; a backend that
    reports its node's resources (:class:`NodeStatusContainerBackend`) records those too."""
    now = timezone.now()
    error = ""
    resources: dict[str, Any] = node.resources or {}
    try:
        backend = get_backend(node)
        status = backend.get_status()
        if status != BACKEND_STATUS_OK:
            error = "The backend reports that it is stopped." if status == 1 else "The backend reports an error."
        if isinstance(backend, NodeStatusContainerBackend):
            try:
                report = backend.get_node_status() or {}
                if status == BACKEND_STATUS_OK:
                    resources = report
            except errors.BackendError as exc:
                if status == BACKEND_STATUS_OK:
                    logger.info("Node %s did not report its resources: %s", node.name, exc)
                else:
                    error = str(exc)  # the cause, in the backend's own words
    except errors.BackendError as exc:  # a broken configuration, say
        status, error = BACKEND_STATUS_ERROR, str(exc)
    fields = {"last_status": status, "last_checked": now, "last_error": error, "resources": resources}
    if status == BACKEND_STATUS_OK:
        fields["last_seen"] = now
    Node.objects.filter(pk=node.pk).update(**fields)
    for key, value in fields.items():
        setattr(node, key, value)
    if status != BACKEND_STATUS_OK:
        logger.warning("Node %s is not healthy: %s", node.name, error)
    return status


def check_nodes_health(nodes: Iterable[Node]) -> dict[str, int]:
    """Check several nodes at once (each check bounded by its backend's timeouts)."""
    nodes = list(nodes)
    if not nodes:
        return {}
    with ThreadPoolExecutor(max_workers=min(8, len(nodes))) as pool:
        statuses = list(pool.map(check_node_health, nodes))
    return {node.name: status for node, status in zip(nodes, statuses, strict=True)}


def stale(node: Node) -> bool:
    """Whether the node's recorded health is older than ``HEALTH_TTL``."""
    ttl = timedelta(seconds=float(app_settings.HEALTH_TTL))
    return node.last_checked is None or timezone.now() - node.last_checked > ttl


def candidate_nodes(exclude: Iterable[int] = ()) -> list[Node]:
    """Enabled, not draining; health refreshed where it is older than ``HEALTH_TTL``."""
    nodes = list(Node.objects.open().exclude(pk__in=list(exclude)).select_related("backend"))
    check_nodes_health([node for node in nodes if stale(node)])
    return [node for node in nodes if node.is_healthy]


@audit.audited("node.set_machine_availability",
               details=lambda node, machine, availability: {"machine": machine, "availability": availability})
def set_machine_availability(node: Node, machine: str, availability: str) -> None:
    """Drain (or pause, or make active again) one machine of a node that stands for many (a
    swarm), then check the node's health so its record shows the change."""
    backend = get_backend(node)
    if not isinstance(backend, MachineAvailabilityContainerBackend):
        raise errors.CapabilityNotSupportedError(f"{node} is one machine: drain the node itself instead.")
    backend.set_machine_availability(machine, availability)
    check_node_health(node)
