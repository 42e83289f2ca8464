"""Snapshots of a container's filesystem, on backends that keep them."""

from __future__ import annotations

import logging

from .. import audit, errors
from ..contract import ACCESS_SECRET_ENV, SnapshotableContainerBackend
from ..models import Container, Snapshot
from ..registry import get_backend
from ..validation import validate_name
from . import quotas
from ._base import apply_record, backend_pk, package, refuse_while_moving
from .capabilities import require

logger = logging.getLogger(__name__)


def _snapshot_backend(container: Container, action: str = "snapshot") -> SnapshotableContainerBackend:
    require(container.node, action)
    backend = get_backend(container.node)
    if not isinstance(backend, SnapshotableContainerBackend):
        raise errors.CapabilityNotSupportedError(f"The backend of {container.node} cannot take snapshots.")
    return backend


@audit.audited("snapshot.create", details=lambda c, name, *a, **k: {"name": name})
def create_snapshot(container: Container, name: str, description: str = "") -> Snapshot:
    name = validate_name(name, "snapshot name")
    refuse_while_moving(container)
    if Snapshot.objects.filter(container=container, name=name).exists():
        raise errors.ContainerAlreadyExistsError(f"{container} already has a snapshot named {name!r}.")
    backend = _snapshot_backend(container)
    with quotas.reserved(container.owner, "snapshot", lambda: quotas.Need(snapshots=1),
                         f"Taking the snapshot {name!r} of {container}"):
        record = backend.create_container_snapshot(backend_pk(container), name)
        try:
            snapshot = Snapshot.objects.create(container=container, name=name, backend_pk=record["pk"],
                                               description=description)
        except Exception:
            backend.delete_container_snapshot(record["pk"])
            raise
    logger.info("Snapshot %s taken", snapshot)
    return snapshot


@audit.audited("snapshot.restore", details=lambda c, snap, *a, **k: {"snapshot": str(snap)})
def restore_snapshot(container: Container, snapshot: Snapshot) -> Container:
    if snapshot.container_id != container.pk:
        raise errors.ContainerSnapshotNotFoundError(f"{snapshot} is not a snapshot of {container}.")
    refuse_while_moving(container)
    backend = _snapshot_backend(container, "restore")
    secret = package()._mint_secret()  # the restored container gets a secret of its own
    with quotas.reserved(container.owner, "restore", lambda: quotas.start_need(container, "restore"),
                         f"Restoring {container} (a suspended container comes back running)"):
        record = backend.restore_container_snapshot(backend_pk(container), snapshot.backend_pk,
                                                    env={ACCESS_SECRET_ENV: secret})
        apply_record(container, record)
        container.access_secret = secret
        container.save()
    logger.info("Restored %s from %s", container, snapshot)
    return container


@audit.audited("snapshot.delete")
def delete_snapshot(snapshot: Snapshot) -> None:
    refuse_while_moving(snapshot.container)
    backend = _snapshot_backend(snapshot.container)
    try:
        backend.delete_container_snapshot(snapshot.backend_pk)
    except errors.ContainerSnapshotNotFoundError:
        logger.info("%s was already gone", snapshot)
    snapshot.delete()
