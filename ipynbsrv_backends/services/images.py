"""Images: committing a container to one, removing one, and which a user may use."""

from __future__ import annotations

import logging
from typing import Any

from django.db.models import QuerySet

from .. import audit, errors
from ..models import Container, Image, Node
from ..registry import get_backend
from . import quotas
from ._base import backend_pk
from .capabilities import require

logger = logging.getLogger(__name__)


@audit.audited("image.commit", details=lambda c, name, *a, **k: {"name": name, "public": bool(k.get("public"))})
def commit_container(container: Container, name: str, *, public: bool = False, description: str = "") -> Image:
    """Commit the container's filesystem to an image its owner (or everyone, if public)
    can start containers from."""
    require(container.node, "commit")
    backend = get_backend(container.node)
    with quotas.reserved(container.owner, "commit", lambda: quotas.Need(images=1),
                         f"Committing {container} to {name!r}"):
        record = backend.create_container_image(backend_pk(container), name)
        shared = bool(record.get("registry"))  # in a registry: every node can start it
        try:
            image = Image.objects.create(
                name=f"{container.owner.get_username()}/{record.get('name') or name}", ref=record["pk"],
                owner=container.owner, public=public, description=description, source=container,
                node=None if shared else container.node, size=record.get("size"),
            )
        except Exception:
            backend.delete_container_image(record["pk"])
            raise
    logger.info("Committed %s to %s", container, image.ref)
    return image


@audit.audited("image.delete")
def delete_image(image: Image) -> None:
    """Remove a committed image from the node(s) that hold it, then its record."""
    if image.owner_id is not None or image.source_id is not None:
        nodes = [image.node] if image.node is not None else list(Node.objects.filter(enabled=True))
        for node in nodes:
            try:
                get_backend(node).delete_container_image(image.ref)
            except errors.ContainerImageNotFoundError:
                pass
    image.delete()


def usable_images(user: Any) -> QuerySet[Image]:
    """The images ``user`` may start containers from (every one for staff)."""
    return Image.objects.usable_by(user)
