"""Images, snapshots and their travel between backends, for :class:`~.Memory`."""

from __future__ import annotations

import re
import secrets
import uuid
from typing import Any

from ... import errors
from ...contract import ContainerRecord, ImageRecord, SnapshotRecord
from ...validation import NAME_RE, validate_env, validate_name, validate_pk
from . import store
from .base import MemoryBase
from .store import LABEL, Container, Image, moment

TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


class MemoryImages(MemoryBase):
    """Committed images, snapshots, and export/import through an in-memory registry."""

    # ------------------------------------------------------------------ images

    def _commit(self, item: Container, ref: str, labels: dict[str, str]) -> Image:
        if ref in self.host.images:
            raise errors.ContainerAlreadyExistsError(f"An image named {ref!r} already exists.")
        image = Image(ref, {LABEL + "instance": self.instance, LABEL + "container": item.pk, **labels}, dict(item.files))
        self.host.images[ref] = image
        return image

    def create_container_image(self, container: str, name: str, **kwargs: Any) -> ImageRecord:
        with self.host.lock:
            item = self._container(container)
            repo, _colon, tag = name.partition(":") if isinstance(name, str) else ("", "", "")
            if not isinstance(name, str) or len(name) > 128 or not NAME_RE.fullmatch(repo) or (_colon and not TAG_RE.fullmatch(tag)):
                raise errors.InvalidArgumentError(
                    f"Invalid image name {str(name)[:80]!r}: use a lower-case name with an optional tag, such as "
                    "'my-stack' or 'my-stack:v2'."
                )
            tag = tag or "latest"
            base = f"{self.registry}/" if self.registry else ""
            ref = validate_pk(f"{base}{self.name_prefix}-u{item.labels[LABEL + 'uid']}/{repo}:{tag}", "image")
            image = self._commit(item, ref, {LABEL + "kind": "image", LABEL + "image-name": f"{repo}:{tag}",
                                             LABEL + "owner": item.labels[LABEL + "owner"]})
            if self.registry:
                store.registry(self.registry)[ref] = image
            return self._image_record(image)

    def get_container_image(self, image: str, **kwargs: Any) -> ImageRecord:
        validate_pk(image, "image")
        with self.host.lock:
            if image in self.host.images:
                return self._image_record(self.host.images[image])
            if image in self.base_images:
                return self._image_record(Image(image, {}, created="1970-01-01T00:00:00Z"))
        raise errors.ContainerImageNotFoundError(f"No image {image!r} on this host.")

    def get_container_images(self, **kwargs: Any) -> list[ImageRecord]:
        with self.host.lock:
            return [self._image_record(image) for image in self._listed("image")]

    def delete_container_image(self, image: str, **kwargs: Any) -> None:
        """Remove an image this backend committed (and from its registry); never a base image."""
        missing = errors.ContainerImageNotFoundError(f"No image {image!r} was made by this backend.")
        with self.host.lock:
            self._image(image, "image", missing)
            del self.host.images[image]
            if self.registry:
                store.registry(self.registry).pop(image, None)

    # ------------------------------------------------------------------ snapshots

    def container_snapshot_exists(self, snapshot: str, **kwargs: Any) -> bool:
        with self.host.lock:
            try:
                self._snapshot(snapshot)
            except errors.ContainerSnapshotNotFoundError:
                return False
        return True

    def create_container_snapshot(self, container: str, name: str, **kwargs: Any) -> SnapshotRecord:
        with self.host.lock:
            item = self._container(container)
            validate_name(name, "snapshot name")
            ref = f"{self.name_prefix}-snapshots/{item.pk}:{name}"
            if ref in self.host.images:
                raise errors.ContainerAlreadyExistsError(f"The container {item.pk!r} already has a snapshot named {name!r}.")
            return self._snapshot_record(self._commit(item, ref, {LABEL + "kind": "snapshot", LABEL + "snapshot": name}))

    def delete_container_snapshot(self, snapshot: str, **kwargs: Any) -> None:
        with self.host.lock:
            del self.host.images[self._snapshot(snapshot).ref]

    def get_container_snapshot(self, snapshot: str, **kwargs: Any) -> SnapshotRecord:
        with self.host.lock:
            return self._snapshot_record(self._snapshot(snapshot))

    def get_container_snapshots(self, **kwargs: Any) -> list[SnapshotRecord]:
        with self.host.lock:
            return [self._snapshot_record(image) for image in self._listed("snapshot")]

    def get_containers_snapshots(self, container: str, **kwargs: Any) -> list[SnapshotRecord]:
        with self.host.lock:
            pk = self._container(container).pk
            return [self._snapshot_record(image) for image in self._listed("snapshot", container=pk)]

    def restore_container_snapshot(self, container: str, snapshot: str, **kwargs: Any) -> ContainerRecord:
        """The snapshot's files back in place; pk, ports, volumes, environment and limits kept.
        Option ``env``: variables to set or replace in the kept environment."""
        replaced = validate_env(kwargs.get("env"))
        with self.host.lock:
            item = self._container(container)
            image = self._snapshot(snapshot)
            if image.labels.get(LABEL + "container") != item.pk:
                raise errors.ContainerSnapshotNotFoundError(f"{snapshot!r} is not a snapshot of the container {item.pk!r}.")
            item.files, item.id = dict(image.files), uuid.uuid4().hex
            item.env.update(replaced)
            if item.status != "stopped":
                item.status, item.started_at = "running", moment()
            return self._record(item)

    # ------------------------------------------------------------------ between backends

    def _needs_registry(self, what: str) -> str:
        if not self.registry:
            raise errors.CapabilityNotSupportedError(
                f"{what} needs a registry: set the Memory backend's registry option (the same name on both sides)."
            )
        return self.registry

    def export_container_snapshot(self, snapshot: str, **kwargs: Any) -> ImageRecord:
        """Put a copy of the snapshot into the in-memory registry, as an image."""
        with self.host.lock:
            source = self._snapshot(snapshot)
            registry = self._needs_registry("Exporting a snapshot")
            item_uid = self.host.containers[source.labels[LABEL + "container"]].labels[LABEL + "uid"]
            name = f"transfer-{source.labels[LABEL + 'snapshot']}-{secrets.token_hex(4)}"
            ref = f"{registry}/{self.name_prefix}-u{item_uid}/{name}:latest"
            item = self.host.containers[source.labels[LABEL + "container"]]
            image = Image(ref, {LABEL + "instance": self.instance, LABEL + "kind": "image", LABEL + "container": item.pk,
                                LABEL + "owner": item.labels[LABEL + "owner"], LABEL + "image-name": name},
                          dict(source.files))
            self.host.images[ref] = image
            store.registry(registry)[ref] = image
            return self._image_record(image)

    def import_container_snapshot(self, container: str, name: str, image: str, **kwargs: Any) -> SnapshotRecord:
        """Make the image a snapshot ``name`` of the container."""
        with self.host.lock:
            item = self._container(container)
            validate_name(name, "snapshot name")
            registry = self._needs_registry("Importing a snapshot")
            validate_pk(image, "image")
            if not image.startswith(registry + "/"):
                raise errors.InvalidArgumentError(f"{image!r} is not an image of the registry {registry}.")
            found = store.registry(registry).get(image) or self.host.images.get(image)
            if found is None:
                raise errors.ContainerImageNotFoundError(f"No image {image!r} in the registry {registry}.")
            ref = f"{self.name_prefix}-snapshots/{item.pk}:{name}"
            if ref in self.host.images:
                raise errors.ContainerAlreadyExistsError(f"The container {item.pk!r} already has a snapshot named {name!r}.")
            copied = Image(ref, {LABEL + "instance": self.instance, LABEL + "kind": "snapshot",
                                 LABEL + "container": item.pk, LABEL + "snapshot": name}, dict(found.files))
            self.host.images[ref] = copied
            return self._snapshot_record(copied)

