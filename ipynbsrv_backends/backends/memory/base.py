"""The lookups and records every part of :class:`~.Memory` uses."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import ClassVar

from ... import errors
from ...contract import ContainerRecord, ImageRecord, SnapshotRecord
from ...validation import validate_name, validate_pk, validate_uid
from ..options import CONTAINER_OPTIONS, PRIVILEGED_OPTIONS, MethodOptions
from .store import LABEL, Container, Host, Image


class MemoryBase(MethodOptions):
    """State and lookups of a :class:`~.Memory` (set by its constructor)."""

    #: The options each method accepts (the contract's, as ``Docker``'s); every other takes none.
    METHOD_OPTIONS: ClassVar[dict[str, tuple[str, ...]]] = {
        "create_container": tuple(CONTAINER_OPTIONS),
        "restore_container_snapshot": ("env",),
    }
    FORBIDDEN_OPTIONS = PRIVILEGED_OPTIONS

    host: Host
    instance: str
    name_prefix: str
    base_images: tuple[str, ...]
    registry: str | None

    def _ours(self, labels: Mapping[str, str], kind: str) -> bool:
        return labels.get(LABEL + "instance") == self.instance and labels.get(LABEL + "kind") == kind

    def _container(self, container: str) -> Container:
        validate_pk(container)
        found = self.host.containers.get(container)
        if found is None or not self._ours(found.labels, "container"):
            raise errors.ContainerNotFoundError(f"No container {container!r} is managed by this backend.")
        return found

    def _image(self, image: str, kind: str, missing: errors.BackendError) -> Image:
        validate_pk(image, "snapshot" if kind == "snapshot" else "image")
        found = self.host.images.get(image)
        if found is None or not self._ours(found.labels, kind):
            raise missing
        return found

    def _snapshot(self, snapshot: str) -> Image:
        return self._image(snapshot, "snapshot",
                           errors.ContainerSnapshotNotFoundError(f"No snapshot {snapshot!r} is kept by this backend."))

    def _listed(self, kind: str, **labels: str) -> list[Image]:
        found = [i for i in self.host.images.values() if self._ours(i.labels, kind)
                 and all(i.labels.get(LABEL + key) == value for key, value in labels.items())]
        return sorted(found, key=lambda image: (image.created, image.ref))

    def engine_name(self, uid: int, name: str) -> str:
        """The pk of a user's container, as Docker names it."""
        return f"{self.name_prefix}-u{validate_uid(uid)}-{validate_name(name)}"

    # ------------------------------------------------------------------ records

    def _record(self, item: Container) -> ContainerRecord:
        labels = item.labels
        return {
            "pk": item.pk, "name": labels[LABEL + "name"], "status": item.status,  # type: ignore[typeddict-item]
            "image": item.image, "owner": labels[LABEL + "owner"], "uid": int(labels[LABEL + "uid"]),
            "created": labels[LABEL + "created"], "ports": copy.deepcopy(item.ports),
            "volumes": copy.deepcopy(item.volumes), "clone_of": labels.get(LABEL + "clone-of") or None,
        }

    def _image_record(self, image: Image) -> ImageRecord:
        managed = self._ours(image.labels, "image")
        return {
            "pk": image.ref, "name": image.labels.get(LABEL + "image-name", image.ref) if managed else image.ref,
            "created": image.created, "size": image.size,
            "owner": image.labels.get(LABEL + "owner") if managed else None,
            "container": image.labels.get(LABEL + "container") if managed else None, "managed": managed,
            "registry": self.registry if self.registry and image.ref.startswith(self.registry + "/") else None,
        }

    def _snapshot_record(self, image: Image) -> SnapshotRecord:
        return {
            "pk": image.ref, "name": image.labels[LABEL + "snapshot"], "container": image.labels[LABEL + "container"],
            "created": image.created, "size": image.size,
        }
