"""Images: the ones containers start from (allowed, pulled as the pull policy says) and
the ones the backend commits (pushed to the registry when one is set, deleted there too).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from typing import Any

from ... import errors
from ...contract import ImageRecord
from ...validation import iso_utc, validate_pk
from .constants import KIND_IMAGE, L_CONTAINER, L_CREATED, L_IMAGE_NAME, L_INSTANCE, L_KIND, L_UID
from .records import image_record
from .registry_client import ProgressCallback
from .spec import image_allowed, split_ref
from .transfer import SnapshotTransfer

logger = logging.getLogger(__name__)

__all__ = ["ImageOps"]


class ImageOps(SnapshotTransfer):
    """The image methods of the ``Docker`` backend."""

    def _image_allowed(self, image: str) -> None:
        image_allowed(image, self.allowed_images)

    def pull_container_image(self, image: str, on_progress: ProgressCallback | None = None,
                             follow_pull_policy: bool = False, **kwargs: Any) -> ImageRecord:
        """Pull ``image`` now (so a first start does not wait for it) and return its record.

        Not part of the contract: the master uses it, where a backend has it, to put an
        image on every node ahead of time, and to pull a new container's image with
        progress: ``on_progress(summary)`` is called as the pull goes (see
        :mod:`ipynbsrv_backends.pullprogress`). With ``follow_pull_policy`` it pulls only as
        ``create_container`` would: with the policy ``never`` an image the engine lacks is
        ``ContainerImageNotFoundError``, and one it has is not pulled again."""
        validate_pk(image, "image")
        self._image_allowed(image)
        if on_progress is not None and not callable(on_progress):
            raise errors.InvalidArgumentError("on_progress must be a callable (it cannot travel as an option).")
        if not isinstance(follow_pull_policy, bool):
            raise errors.InvalidArgumentError("follow_pull_policy must be true or false.")
        if follow_pull_policy and self.pull_policy != "always" and self.container_image_exists(image):
            return self.get_container_image(image)
        if follow_pull_policy and self.pull_policy == "never":
            raise errors.ContainerImageNotFoundError(
                f"The image {image!r} is not on this engine (and the pull policy is 'never')."
            )
        self.pull_image(image, on_progress=on_progress)
        return self.get_container_image(image)

    def _ensure_image(self, image: str) -> None:
        present = self.container_image_exists(image)
        if self.pull_policy == "always" or (not present and self.pull_policy == "if-not-present"):
            try:
                self.pull_image(image)
                return
            except errors.ContainerImageNotFoundError:
                if not present:
                    raise
                logger.warning("Pulling %s failed; using the local copy", image)
                return
        if not present:
            raise errors.ContainerImageNotFoundError(
                f"The image {image!r} is not on this engine (and the pull policy is {self.pull_policy!r})."
            )

    def create_container_image(self, container: str, name: str, **kwargs: Any) -> ImageRecord:
        info = self._inspect_container(container)
        labels = info["Config"].get("Labels") or {}
        ref = self._image_ref(int(labels.get(L_UID) or 0), name)
        with self._name_lock:
            if self.container_image_exists(ref):
                raise errors.ContainerAlreadyExistsError(f"An image named {ref!r} already exists.")
            self._commit_clean(info["Id"], ref, info["Name"].lstrip("/"), {
                L_INSTANCE: self.instance, L_KIND: KIND_IMAGE, L_CONTAINER: info["Name"].lstrip("/"),
                L_IMAGE_NAME: name if ":" in name else f"{name}:latest",
                L_CREATED: iso_utc(dt.datetime.now(dt.UTC)),
            }, errors.ContainerNotFoundError(f"The container {container!r} vanished."))
        if self.registry:
            try:
                self.push_image(ref)
            except errors.BackendError:
                with contextlib.suppress(Exception):
                    self._api().remove_image(ref, force=True)
                raise
        logger.info("Committed container %s to image %s", container, ref)
        return self.get_container_image(ref)

    def get_container_image(self, image: str, **kwargs: Any) -> ImageRecord:
        """Any image the engine has (so a caller can check a base image before a create);
        ``managed`` tells whether this backend made it."""
        info = self._inspect_image(image, None, errors.ContainerImageNotFoundError(f"No image {image!r} on this engine."))
        tags = info.get("RepoTags") or []
        pk = image
        if image not in tags:
            repo, tag = split_ref(image)
            candidate = f"{repo}:{tag}"
            pk = candidate if candidate in tags else (tags[0] if tags else info["Id"])
        return image_record(info, pk, self.instance, self.registry)

    def get_container_images(self, **kwargs: Any) -> list[ImageRecord]:
        """The images this backend committed."""
        return [image_record({**item, "Config": {"Labels": item.get("Labels")}}, ref, self.instance, self.registry)
                for ref, item in self._list_images(KIND_IMAGE)]

    def delete_container_image(self, image: str, **kwargs: Any) -> None:
        """Remove an image this backend committed, here and in the registry; base images
        are never touched."""
        validate_pk(image, "image")
        missing = errors.ContainerImageNotFoundError(f"No image {image!r} was made by this backend.")
        local = True
        try:
            info = self._inspect_image(image, KIND_IMAGE, missing)
            if image not in (info.get("RepoTags") or []):
                raise missing
        except errors.ContainerImageNotFoundError:
            local = False
        in_registry = self._delete_from_registry(image)
        if not local and not in_registry:
            raise missing
        if local:
            with self._engine(not_found=missing):
                self._api().remove_image(image, force=True)
            self._prune_images()
        logger.info("Deleted image %s", image)
