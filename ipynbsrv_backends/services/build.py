"""Making a reserved container real on its node: pull its image with progress, create it,
record what the node answered; on failure, compensate so no container runs without a record
and no record is dropped while its container may exist."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from .. import errors, pullprogress
from ..conf import app_settings
from ..contract import BACKEND_STATUS_ERROR, ContainerBackend, ImagePullingContainerBackend
from ..models import Container, Image, Node
from ..registry import get_backend
from ._base import S, apply_record, find_on_node, with_env, with_secret, write_turn
from .health import candidate_nodes
from .placing import NO_NODE, placing

logger = logging.getLogger(__name__)


@dataclass
class Creation:
    """Everything a creation needs once its arguments are checked (see ``create.plan_creation``)."""

    owner: Any
    name: str
    image: Image | None
    image_ref: str
    clone_of: Container | None
    node: Node | None
    cmd: str | list[str] | None
    options: dict[str, Any]
    uid: int
    base_url: str
    volumes: list[Any]
    secret: str
    allow_draining: bool
    #: Extra environment for the container that the record does not keep (a hub's, with its API token).
    env: dict[str, str] | None = None


def note(container: Container, text: str) -> None:
    """What a creation does now, on its record (read by ``Container.progress``)."""
    container.progress_detail = text[:255]
    Container.objects.filter(pk=container.pk, status=S.CREATING).update(progress_detail=container.progress_detail)


class ProgressWriter:
    """Writes a creating record's ``progress_detail`` from a thread of its own, at most every
    ``interval`` seconds, so the pull that reports never waits for the database."""

    interval = 0.5

    def __init__(self, container: Container) -> None:
        self._pk = container.pk
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._text: str | None = None
        self._thread: threading.Thread | None = None

    def update(self, text: str) -> None:
        with self._lock:
            self._text = text[:255]
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=f"ipynbsrv-progress-{self._pk}", daemon=True)
                self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        from django.db import connection

        written: str | None = None
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                with self._lock:
                    text = self._text
                if text is not None and text != written:
                    try:
                        Container.objects.filter(pk=self._pk, status=S.CREATING).update(progress_detail=text)
                    except Exception as exc:  # noqa: BLE001 - progress is a courtesy; the creation goes on
                        logger.warning("Could not record the progress of container %s: %s", self._pk, exc)
                    written = text
                if self._stop.is_set():
                    return
                self._stop.wait(self.interval)
        finally:
            connection.close()

    def close(self) -> None:
        """Write the last text and end the thread (bounded: a stuck database is not waited for)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


def pull_first(backend: ContainerBackend, container: Container, image_ref: str) -> None:
    """Pull the image with progress where the backend can (:class:`ImagePullingContainerBackend`)
    and the node lacks it (the node's pull policy still applies); ``create_container`` then
    finds it there."""
    if not isinstance(backend, ImagePullingContainerBackend) or not image_ref \
            or backend.container_image_exists(image_ref):
        return
    label = f"pulling {image_ref} on {container.node.name}"
    writer = ProgressWriter(container)
    writer.update(label)
    last = [label]

    def report(summary: dict[str, Any]) -> None:
        last[0] = f"{label}: {pullprogress.describe(summary)}"
        writer.update(last[0])

    try:
        backend.pull_container_image(image_ref, on_progress=report, follow_pull_policy=True)
    finally:
        writer.close()
    logger.info("For %s: %s", container, last[0])


def fail(container: Container, exc: BaseException, *, keep: bool) -> None:
    """A creation failed and nothing of it runs: remove its record, or (``keep``) leave it
    with status ``error`` and the reason, for whoever follows it."""
    if not keep:
        Container.objects.filter(pk=container.pk).delete()
        return
    container.status, container.last_error = S.ERROR, str(exc)[:2000] or type(exc).__name__
    container.error_code = getattr(exc, "code", "") or "backend_error"
    container.progress_detail = ""
    Container.objects.filter(pk=container.pk).update(status=container.status, last_error=container.last_error,
                                                     error_code=container.error_code, progress_detail="",
                                                     updated_at=timezone.now())


def replace(container: Container, excluded: set[int]) -> None:
    """Move a reservation whose node could not be reached to another node (placement again)."""
    candidates = candidate_nodes(excluded)
    with placing(candidates, named=None, full=NO_NODE) as chosen:
        Container.objects.filter(pk=container.pk).update(node=chosen)
        container.node = chosen


def _create_on_node(plan: Creation, container: Container) -> tuple[ContainerBackend, dict[str, Any]]:
    """Create the reserved container on its current node; returns the backend and its record."""
    target = container.node
    ports: list[Any] = [{"address": target.address, "external": None, "internal": int(p)}
                        for p in app_settings.CONTAINER_PORTS or []]
    backend = get_backend(target)
    if plan.clone_of is None:
        pull_first(backend, container, plan.image_ref)
    note(container, f"starting on {target.name}")
    record = backend.create_container(
        plan.owner.get_username(), plan.uid, plan.name, ports, plan.volumes, cmd=plan.cmd, base_url=plan.base_url,
        image=plan.image_ref if plan.clone_of is None else None,
        clone_of=plan.clone_of.backend_pk if plan.clone_of is not None else None,
        **with_secret(with_env(plan.options, plan.env), plan.secret),
    )
    return backend, dict(record)


def _create_somewhere(plan: Creation, container: Container, *,
                      keep_failed: bool) -> tuple[ContainerBackend, dict[str, Any]]:
    """Create the container on its node, placing it again while nodes turn out unreachable
    (unless one was named); on failure compensate (see :func:`fail`) and raise."""
    excluded: set[int] = set()
    while True:
        target = container.node
        try:
            return _create_on_node(plan, container)
        except errors.BackendUnavailableError as exc:
            # Nothing reached the node: place the reservation elsewhere.
            Node.objects.filter(pk=target.pk).update(last_status=BACKEND_STATUS_ERROR, last_error=str(exc),
                                                     last_checked=timezone.now())
            logger.warning("Node %s is unreachable (%s); placing %s/%s elsewhere", target.name, exc,
                           plan.owner, plan.name)
            if plan.node is not None:
                fail(container, exc, keep=keep_failed)
                raise
            excluded.add(target.pk)
            try:
                replace(container, excluded)
            except Exception as again:
                fail(container, again, keep=keep_failed)
                raise
        except errors.BackendTimeoutError as exc:
            settle_after_timeout(container, plan.owner, plan.name, exc, keep=keep_failed)
            raise
        except Exception as exc:
            fail(container, exc, keep=keep_failed)  # the backend removed whatever it had started
            raise


def build(plan: Creation, container: Container, *, keep_failed: bool) -> Container:
    """Create the reserved ``container`` on its node and record it; on failure compensate
    (see :func:`fail`). Used by ``create_container`` and ``start_creating``."""
    backend, record = _create_somewhere(plan, container, keep_failed=keep_failed)
    try:
        apply_record(container, record)
        container.access_secret = plan.secret
        with write_turn:
            container.save()
    except Exception as exc:
        logger.exception("Recording %s failed; removing it from %s", record.get("pk"), container.node.name)
        try:
            backend.delete_container(record["pk"])
        finally:
            fail(container, exc, keep=keep_failed)
        raise
    logger.info("Created %s on %s (%s)", container, container.node.name, container.backend_pk)
    return container


def settle_after_timeout(container: Container, owner: Any, name: str, exc: Exception, *,
                         keep: bool = False) -> None:
    """The node did not answer in time: find out whether the container exists after all."""
    try:
        backend = get_backend(container.node)
        record = find_on_node(backend, owner, name)
    except errors.BackendError:
        container.status, container.last_error = S.ERROR, f"Creation timed out and the node cannot confirm: {exc}"
        container.error_code = errors.BackendTimeoutError.code if keep else ""
        container.progress_detail = ""
        container.save(update_fields=["status", "last_error", "error_code", "progress_detail", "updated_at"])
        return
    if record is None:
        fail(container, exc, keep=keep)
        return
    try:
        backend.delete_container(record["pk"])
        fail(container, exc, keep=keep)
    except errors.BackendError as inner:
        apply_record(container, record)
        container.status, container.last_error = S.ERROR, f"Creation timed out; clean-up failed: {inner}"
        container.error_code = errors.BackendTimeoutError.code if keep else ""
        container.save()
