"""The registry: pulls and pushes through the engine (with credentials only for the
configured registry), and deletes through the registry's own HTTP API.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import requests
import requests.exceptions

from ... import errors
from ...pullprogress import PullProgress
from .constants import PROGRESS_INTERVAL
from .engine import DockerEngine
from .spec import split_ref

logger = logging.getLogger(__name__)

__all__ = ["RegistryClient", "ProgressCallback", "MANIFEST_TYPES"]

#: What ``pull_container_image(on_progress=...)`` calls with a pull's summary.
ProgressCallback = Callable[[dict[str, Any]], None]
#: The manifest types a registry may keep an image under (asked for to learn its digest).
MANIFEST_TYPES = ", ".join([
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
])


class _Progress:
    """Hands a pull's summary to ``on_progress`` as it changes: at most every
    ``PROGRESS_INTERVAL`` seconds, at once when a layer is done, and once more at the end.
    A callback that fails is logged and dropped; the pull goes on."""

    def __init__(self, on_progress: ProgressCallback) -> None:
        self.on_progress: ProgressCallback | None = on_progress
        self.tracker = PullProgress()
        self.sent: dict[str, Any] | None = None
        self.last = 0.0

    def feed(self, chunk: Any) -> None:
        if not self.tracker.feed(chunk):
            return
        summary = self.tracker.summary()
        layer_done = self.sent is None or summary["layers_done"] != self.sent["layers_done"]
        if layer_done or time.monotonic() - self.last >= PROGRESS_INTERVAL:
            self.report(summary)

    def finish(self) -> None:
        summary = self.tracker.summary()
        if summary != self.sent and summary["layers"]:
            self.report(summary)

    def report(self, summary: dict[str, Any]) -> None:
        if self.on_progress is None:
            return
        self.sent, self.last = summary, time.monotonic()
        try:
            self.on_progress(dict(summary))
        except Exception:  # a broken observer must not break the pull
            logger.exception("The pull progress callback failed; the pull goes on without it")
            self.on_progress = None


class RegistryClient(DockerEngine):
    """Pulls, pushes and registry deletes of the ``Docker`` backend."""

    def _registry_base(self) -> str | None:
        if not self.registry:
            return None
        return self.registry.split("/", 1)[0]

    def _auth_config_for(self, image: str) -> dict[str, str] | None:
        """The registry credentials, only when ``image`` lives in the configured registry.

        The registry of a reference is its first path component when that contains ``.`` or
        ``:`` or is ``localhost`` (Docker's rule; otherwise it is Docker Hub), compared with
        the configured registry's host exactly: credentials never go to a registry a caller
        names."""
        if not self.registry_username or not self.registry:
            return None
        first, slash, _rest = image.partition("/")
        if not slash or not ("." in first or ":" in first or first == "localhost"):
            return None
        if first != self._registry_base():
            return None
        return {"username": self.registry_username, "password": self.registry_password or ""}

    def _stream_errors(self, stream: Any, on_progress: ProgressCallback | None = None) -> str | None:
        """Read a pull or push stream to its end; the first error's message, if any. With
        ``on_progress``, a pull's summary (:mod:`...pullprogress`) is handed to it as it
        changes (see :class:`_Progress`)."""
        progress = _Progress(on_progress) if on_progress is not None else None
        for chunk in stream:
            if isinstance(chunk, dict) and (chunk.get("error") or chunk.get("errorDetail")):
                return str(chunk.get("error") or chunk["errorDetail"].get("message"))
            if progress is not None:
                progress.feed(chunk)
        if progress is not None:
            progress.finish()
        return None

    def pull_image(self, image: str, on_progress: ProgressCallback | None = None) -> None:
        """Pull ``image`` (from the registry it names)."""
        repo, tag = split_ref(image)
        missing = errors.ContainerImageNotFoundError(f"The image {image!r} could not be pulled.")
        with self._engine(not_found=missing):
            failure = self._stream_errors(self._api().pull(repo, tag=tag or None, stream=True, decode=True,
                                                           auth_config=self._auth_config_for(image)), on_progress)
        if failure:
            raise errors.ContainerImageNotFoundError(f"The image {image!r} could not be pulled: {failure}")

    def push_image(self, image: str) -> None:
        """Push ``image`` to the registry it names."""
        repo, tag = split_ref(image)
        with self._engine(not_found=errors.ContainerImageNotFoundError(f"No image {image!r} to push.")):
            failure = self._stream_errors(self._api().push(repo, tag=tag, stream=True, decode=True,
                                                           auth_config=self._auth_config_for(image)))
        if failure:
            raise errors.ContainerBackendError(f"Pushing {image!r} to the registry {self.registry} failed: {failure}")

    def _delete_from_registry(self, image: str) -> bool:
        """Delete ``image`` (one of ours under the registry) from the registry's storage.

        Returns whether the registry had it. Only images named under this backend's
        registry and name prefix are ever deleted there."""
        host = self._registry_base()
        if not host or not image.startswith(f"{self.registry}/{self.name_prefix}-u"):
            return False
        repo, tag = split_ref(image)
        name = repo[len(host) + 1:]
        session = requests.Session()
        session.verify = self.registry_ca_cert or True
        last_error: Exception | None = None
        schemes = ["https", "http"] if self.registry_insecure else ["https"]
        for scheme in schemes:
            try:
                return self._delete_manifest(session, f"{scheme}://{host}/v2/{name}/manifests", tag, image)
            except (requests.exceptions.SSLError, requests.exceptions.ConnectionError) as exc:
                last_error = exc
                continue
            except requests.exceptions.RequestException as exc:
                raise errors.ContainerBackendError(f"Deleting {image!r} from the registry {host} failed: {exc}") from exc
            finally:
                session.close()
        raise errors.BackendUnavailableError(
            f"Cannot reach the registry {host} to delete {image!r}: {last_error}"
        ) from last_error

    def _delete_manifest(self, session: requests.Session, base: str, tag: str, image: str) -> bool:
        """Look up the digest of ``base/tag`` and delete that manifest; whether it was there."""
        host = self._registry_base()
        auth = (self.registry_username, self.registry_password or "") if self.registry_username else None
        head = session.head(f"{base}/{tag}", headers={"Accept": MANIFEST_TYPES}, auth=auth, timeout=self.timeout)
        if head.status_code == 404:
            return False
        head.raise_for_status()
        digest = head.headers.get("Docker-Content-Digest")
        if not digest:
            raise errors.ContainerBackendError(f"The registry {host} gave no digest for {image!r}.")
        gone = session.delete(f"{base}/{digest}", auth=auth, timeout=self.timeout)
        if gone.status_code == 405:
            raise errors.ContainerBackendError(
                f"The registry {host} does not allow deletes: enable storage.delete in its configuration."
            )
        if gone.status_code not in (200, 202, 404):
            gone.raise_for_status()
        return gone.status_code != 404
