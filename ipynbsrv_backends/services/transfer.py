"""Carrying a container's filesystem to another node through the registry (a clone across
nodes, a move): a short-lived image, and its removal everywhere afterwards."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.utils import timezone

from .. import errors
from ..models import Container, Node
from ..registry import get_backend
from ._base import backend_pk

logger = logging.getLogger(__name__)


def transfer_image(container: Container, purpose: str) -> str:
    """Commit ``container`` to a short-lived image in the registry; returns its ref."""
    stamp = timezone.now().strftime("%Y%m%d%H%M%S%f")
    record = get_backend(container.node).create_container_image(
        backend_pk(container), f"{purpose}-{container.name}-{stamp}"[:120])
    return record["pk"]


def drop_transfer_image(ref: str, nodes: Iterable[Node]) -> None:
    """Untag the short-lived image on each node and delete it from the registry. A
    container started from it keeps its layers; they go with the container."""
    for node in nodes:
        try:
            get_backend(node).delete_container_image(ref)
        except errors.ContainerImageNotFoundError:
            pass
        except errors.BackendError as exc:
            logger.warning("Could not delete the transfer image %s on %s: %s", ref, node.name, exc)


def pull_hint(exc: errors.BackendError, node: Node) -> errors.BackendError:
    """``exc``, said plainly when the node could not get a transfer image."""
    if isinstance(exc, errors.ContainerImageNotFoundError):
        return errors.ContainerImageNotFoundError(
            f"{exc} The node {node.name} could not get the image: both nodes need the same registry "
            "(the Docker backend's registry option) for containers to cross nodes."
        )
    return exc
