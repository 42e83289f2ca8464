"""Rotating a node's request-signing key from the master, without downtime.

:func:`rotate_signing_key` is what the admin action and ``manage.py ipynbsrv_rotate_key``
call. The order of its steps is what keeps every request working (docs/security.md):

1. the node is given a *next* key, in a request signed with the current one; from then on
   it accepts both;
2. the node's stored configuration (``Node.backend_config["signing_key"]``) is updated and
   the cached backend instance dropped, so new requests are signed with the next key;
3. the node is told, in a request signed with the next key, to make it current; the old
   key is still accepted for ``grace`` seconds (other master processes, requests in flight).

If the master stops between two steps, both keys stay valid on the node and running the
rotation again finishes it.
"""

from __future__ import annotations

import logging

from django.db import transaction

from . import audit, errors, registry
from .contract import KeyRotatingContainerBackend
from .models import Node
from .wire.signing import new_key

logger = logging.getLogger(__name__)

__all__ = ["rotate_signing_key"]


def rotate_signing_key(node: Node, grace: int | None = None) -> None:
    """Give ``node`` a new signing key and switch the master to it (see the module); the
    audit log records the rotation (never the key) and any failure."""
    try:
        _rotate(node, grace)
    except errors.BackendError as exc:
        audit.record("node.rotate_signing_key", node, error=exc)
        raise
    audit.record("node.rotate_signing_key", node, details={"grace": grace})


def _rotate(node: Node, grace: int | None) -> None:
    backend = registry.get_backend(node)
    if not isinstance(backend, KeyRotatingContainerBackend):
        raise errors.CapabilityNotSupportedError(
            f"The node {node.name!r} is not reached through a backend that signs its requests (such as "
            "HttpRemote): it has no signing key to rotate."
        )
    if not node.effective_config().get("signing_key"):
        raise errors.InvalidArgumentError(
            f"The node {node.name!r} has no signing_key in its configuration: start its host API with "
            "IPYNBSRV_HOSTAPI_SIGNING_KEY and set the same key in the node's backend configuration first."
        )
    if grace is not None and not 0 <= grace <= 86400:
        raise errors.InvalidArgumentError(f"Invalid grace {grace!r}: use 0 to 86400 seconds.")
    key = new_key()
    backend.install_next_signing_key(key)
    with transaction.atomic():
        locked = Node.objects.select_for_update().get(pk=node.pk)
        locked.backend_config = {**(locked.backend_config or {}), "signing_key": key}
        locked.save(update_fields=["backend_config", "updated_at"])
    node.backend_config = locked.backend_config
    registry.forget_backend(node.pk)
    rotated = registry.get_backend(node)
    if not isinstance(rotated, KeyRotatingContainerBackend):  # the node's backend changed kind meanwhile
        raise errors.CapabilityNotSupportedError(
            f"The node {node.name!r} is no longer reached through a backend that signs its requests.")
    rotated.promote_signing_key(grace)
    logger.info("The signing key of node %s was rotated.", node.name)
