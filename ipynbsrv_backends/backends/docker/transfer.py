"""Snapshots between nodes: commits that leave no access secret behind, relabelling an
image through a never-started helper container, and the export (push) and import (pull)
of a snapshot through the registry every node can reach.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import uuid
from collections.abc import Mapping
from typing import Any

from ... import errors
from ...contract import ACCESS_SECRET_ENV, SECRET_ENV, ImageRecord, SnapshotRecord
from ...validation import NAME_RE, iso_utc, validate_name, validate_pk
from .constants import (
    KIND_IMAGE,
    KIND_SNAPSHOT,
    KIND_TRANSFER,
    L_CONTAINER,
    L_CREATED,
    L_IMAGE_NAME,
    L_INSTANCE,
    L_KIND,
    L_SNAPSHOT,
    L_UID,
)
from .registry_client import RegistryClient
from .spec import image_ref, snapshot_ref, split_ref

logger = logging.getLogger(__name__)

__all__ = ["SnapshotTransfer"]


class SnapshotTransfer(RegistryClient):
    """Clean commits and the snapshot moves of the ``Docker`` backend."""

    def _image_ref(self, uid: int, name: str) -> str:
        """The reference of an image this backend commits (see :func:`.spec.image_ref`)."""
        return image_ref(self.registry, self.name_prefix, uid, name)

    def _commit_clean(self, container_id: str, target: str, container_pk: str, labels: Mapping[str, str],
                      missing: errors.BackendError) -> None:
        """Commit the container to the image ``target`` with ``labels``, leaving no access
        secret (:data:`~ipynbsrv_backends.contract.ACCESS_SECRET_ENV`) in the image, nor a hub's
        API token (:data:`~ipynbsrv_backends.contract.SECRET_ENV`).

        A commit copies the container's environment into the image twice: into the image's
        configuration, where a blank value overrides it, and into its record of the container it
        came from (``ContainerConfig``), which nothing overrides. So the container is committed
        to an untagged intermediate image with the secret blanked, and that is committed again
        through a never-started helper (:meth:`_commit_relabelled`) whose configuration carries
        no secret. The intermediate shares its layers with ``target`` and stays as its untagged
        parent; it goes when ``target`` does (pruned with the dangling images)."""
        with self._engine(not_found=missing):
            # a hub's API token too, where the container has one (SECRET_ENV); not added where absent
            env = self._api().inspect_container(container_id)["Config"].get("Env") or []
            held = sorted({item.split("=", 1)[0] for item in env} & set(SECRET_ENV))
            first = self._api().commit(container_id, conf={
                "Env": [f"{ACCESS_SECRET_ENV}=", *(f"{name}=" for name in held)],
                "Labels": {L_INSTANCE: self.instance, L_KIND: KIND_TRANSFER, L_CONTAINER: container_pk},
            })
        try:
            self._commit_relabelled(first["Id"], target, container_pk, labels, missing)
        except Exception:
            with contextlib.suppress(Exception):
                self._api().remove_image(first["Id"], force=True)
            raise

    def _commit_relabelled(self, source: str, target: str, container_pk: str, labels: Mapping[str, str],
                           missing: errors.BackendError) -> None:
        """Make the image ``target``: the filesystem and config of the image ``source`` with
        ``labels`` on top (the engine merges them with those ``source`` has).

        The engine relabels only by a commit, so a helper container is made from ``source``
        (never started; labelled with this backend's instance and :data:`KIND_TRANSFER`, so a
        crash leaves nothing unmanaged and it is never a user's container), committed, and
        always removed."""
        repo, tag = split_ref(target)
        helper: str | None = None
        try:
            with self._engine(not_found=missing):
                created = self._api().create_container(
                    source, name=f"{self.name_prefix}-transfer-{uuid.uuid4().hex[:16]}",
                    labels={L_INSTANCE: self.instance, L_KIND: KIND_TRANSFER, L_CONTAINER: container_pk},
                )
                helper = created["Id"]
                self._api().commit(helper, repository=repo, tag=tag, conf={"Labels": dict(labels)})
        finally:
            if helper is not None:
                try:
                    with self._engine():
                        self._api().remove_container(helper, force=True, v=True)
                except errors.BackendError as exc:
                    logger.error("Could not remove the transfer helper container %s: %s", helper, exc)

    def _needs_registry(self, what: str) -> str:
        if not self.registry:
            raise errors.CapabilityNotSupportedError(
                f"{what} needs the backend's `registry` option: snapshots travel between nodes through a "
                "registry every node can reach."
            )
        return self.registry

    def export_container_snapshot(self, snapshot: str, **kwargs: Any) -> ImageRecord:
        """Push a copy of the snapshot to the registry, as an image of this backend, so another
        node can :meth:`import_container_snapshot` it; returns that image's record.

        Not part of the contract: the master uses it to move a container's snapshots with it.
        The image is managed like one from :meth:`create_container_image` (its pk is a new,
        unique reference under the registry); :meth:`delete_container_image` removes it here
        and from the registry once the move is done."""
        validate_pk(snapshot, "snapshot")
        self._needs_registry("Exporting a snapshot")
        info = self._inspect_snapshot(snapshot)
        labels = (info.get("Config") or {}).get("Labels") or {}
        container_pk = labels.get(L_CONTAINER, "")
        uid_label = labels.get(L_UID) or "0"  # the snapshot carries its container's labels
        uid = int(uid_label) if uid_label.isdigit() and len(uid_label) < 11 else 0
        snapshot_name = split_ref(snapshot)[1]  # the tag of a snapshot's pk is its name
        if not (len(snapshot_name) <= 63 and NAME_RE.fullmatch(snapshot_name)):
            snapshot_name = "snapshot"
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S%f")
        name = f"transfer-{snapshot_name}-{stamp}-{uuid.uuid4().hex[:6]}"
        ref = self._image_ref(uid, name)
        with self._name_lock:
            if self.container_image_exists(ref):
                raise errors.ContainerAlreadyExistsError(f"An image named {ref!r} already exists.")
            self._commit_relabelled(snapshot, ref, container_pk, {
                L_INSTANCE: self.instance, L_KIND: KIND_IMAGE, L_CONTAINER: container_pk,
                L_IMAGE_NAME: f"{name}:latest", L_CREATED: iso_utc(dt.datetime.now(dt.UTC)),
            }, errors.ContainerSnapshotNotFoundError(f"The snapshot {snapshot!r} vanished."))
        try:
            self.push_image(ref)
        except Exception:
            with contextlib.suppress(Exception):
                self._api().remove_image(ref, force=True)
            raise
        logger.info("Exported snapshot %s as %s", snapshot, ref)
        return self.get_container_image(ref)

    def import_container_snapshot(self, container: str, name: str, image: str, **kwargs: Any) -> SnapshotRecord:
        """Make the image ``image`` (what :meth:`export_container_snapshot` pushed, on this
        node or another) the snapshot ``name`` of ``container``; returns the snapshot's record.

        Not part of the contract. The image is pulled from the registry when the engine lacks
        it, and that pulled tag is removed again here (the registry keeps it: deleting it there
        is the caller's). The snapshot is like one :meth:`create_container_snapshot` takes."""
        validate_name(name, "snapshot name")
        validate_pk(image, "image")
        registry = self._needs_registry("Importing a snapshot")
        if not image.startswith(registry + "/"):
            raise errors.InvalidArgumentError(
                f"The image {image[:200]!r} is not in this backend's registry ({registry}): import what "
                "export_container_snapshot pushed there."
            )
        info = self._inspect_container(container)
        pk = info["Name"].lstrip("/")
        ref = snapshot_ref(self.name_prefix, pk, name)
        taken = errors.ContainerAlreadyExistsError(f"The container {pk!r} already has a snapshot named {name!r}.")
        if self.container_image_exists(ref):
            raise taken  # before any pull
        pulled = False
        if not self.container_image_exists(image):
            self.pull_image(image)
            pulled = True
        try:
            with self._name_lock:
                if self.container_image_exists(ref):
                    raise taken
                self._commit_relabelled(image, ref, pk, {
                    L_INSTANCE: self.instance, L_KIND: KIND_SNAPSHOT, L_CONTAINER: pk, L_SNAPSHOT: name,
                    L_IMAGE_NAME: "",
                }, errors.ContainerImageNotFoundError(f"The image {image!r} vanished."))
        finally:
            if pulled:
                # Only the tag goes: the snapshot keeps the layers it shares with it.
                try:
                    with self._engine(not_found=errors.ContainerImageNotFoundError()):
                        self._api().remove_image(image)
                except errors.NotFoundError:
                    pass
                except errors.BackendError as exc:
                    logger.warning("Could not remove the pulled transfer image %s: %s", image, exc)
        logger.info("Imported %s as snapshot %s of container %s", image, name, pk)
        return self.get_container_snapshot(ref)
