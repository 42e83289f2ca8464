"""A container's life on its node: start, stop, restart, suspend, resume, delete, and
reading its state back into the record."""

from __future__ import annotations

import logging
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from .. import audit, errors
from ..contract import SuspendableContainerBackend
from ..models import Container
from ..registry import get_backend
from . import proxykeep, quotas
from ._base import S, apply_record, backend_pk, refuse_while_moving
from .capabilities import require

logger = logging.getLogger(__name__)


def refresh_container(container: Container) -> Container:
    """Read the container's state from its node into the record."""
    backend = get_backend(container.node)
    try:
        record = backend.get_container(backend_pk(container))
    except errors.ContainerNotFoundError:
        container.status = S.LOST
        container.last_error = "The node no longer has this container."
        container.status_checked_at = timezone.now()
        container.save(update_fields=["status", "last_error", "status_checked_at", "updated_at"])
        raise
    apply_record(container, record)
    container.save()
    return container


def _act(container: Container, action: str, capability: type | None = None) -> Container:
    refuse_while_moving(container)
    if capability is not None:
        require(container.node, action.split("_")[0])
    backend = get_backend(container.node)
    if capability is not None and not isinstance(backend, capability):
        raise errors.CapabilityNotSupportedError(
            f"The backend of {container.node} cannot {action.split('_')[0]} containers."
        )
    try:
        getattr(backend, action)(backend_pk(container))
    except errors.ContainerNotFoundError:
        refresh_container(container)  # marks it lost and raises
        raise
    logger.info("%s %s", action, container)
    # Whatever the idle policy did before no longer holds (it notes its own actions after
    # this); a container someone starts or resumes counts as just used.
    container.cull_reason, container.culled_at = "", None
    if action in ("start_container", "restart_container", "resume_container"):
        container.last_activity = timezone.now()
    return refresh_container(container)


DOING = {"start": "Starting", "restart": "Restarting", "resume": "Resuming"}


def _within_quota(container: Container, action: str, capability: type | None = None) -> Container:
    """``_act`` for an action that may make the container hold memory or CPUs again: checked
    against its owner's quota (what it needs worked out under the owner's lock) and held until
    its record says how it ended."""
    step = action.split("_")[0]
    with quotas.reserved(container.owner, step, lambda: quotas.start_need(container, step),
                         f"{DOING[step]} {container}"):
        return _act(container, action, capability)


@audit.audited("container.start")
def start_container(container: Container) -> Container:
    return _within_quota(container, "start_container")


@audit.audited("container.stop")
def stop_container(container: Container) -> Container:
    return _act(container, "stop_container")


@audit.audited("container.restart")
def restart_container(container: Container) -> Container:
    return _within_quota(container, "restart_container")


@audit.audited("container.suspend")
def suspend_container(container: Container) -> Container:
    refuse_while_moving(container)
    require(container.node, "suspend")
    # Not before nginx has let go of every answer it kept with the container's address: a
    # request on one would wait on the paused server (services/proxykeep.py).
    with proxykeep.draining(container):
        return _act(container, "suspend_container", SuspendableContainerBackend)


@audit.audited("container.resume")
def resume_container(container: Container) -> Container:
    return _within_quota(container, "resume_container", SuspendableContainerBackend)


@audit.audited("container.delete")
def delete_container(container: Container) -> None:
    """Remove the container from its node, then its record. If the node cannot be reached
    the record stays: nothing is forgotten while it may still run."""
    refuse_while_moving(container)
    if container.backend_pk:
        backend = get_backend(container.node)
        try:
            backend.delete_container(container.backend_pk)
        except errors.ContainerNotFoundError:
            logger.info("%s was already gone from %s", container, container.node)
    container.delete()
    logger.info("Deleted %s", container)


def user_containers(user: Any) -> QuerySet[Container]:
    """The containers ``user`` may see: their own, or all for staff."""
    return Container.objects.select_related("node", "owner", "image").visible_to(user)
