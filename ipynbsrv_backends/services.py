"""The service layer: every action on nodes, containers, images and snapshots.

The admin, the users' API and the management commands all call these functions, so each
rule — placement, naming, state changes, compensation on failure — lives here once.

Two promises hold whatever fails part-way: no container runs on a node without a record,
and no record is silently dropped while its container may still exist. When a node cannot
be reached to confirm, the record is kept (status ``error``) for ``ipynbsrv_reconcile``.
"""

from __future__ import annotations

import inspect
import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.utils import timezone

from . import audit, errors, pullprogress
from .conf import app_settings
from .contract import (
    ACCESS_SECRET_ENV,
    BACKEND_STATUS_ERROR,
    BACKEND_STATUS_OK,
    ContainerRecord,
    SnapshotableContainerBackend,
    SuspendableContainerBackend,
)
from .models import Container, Image, Node, Snapshot
from .placement import get_algorithm
from .registry import get_backend
from .validation import fill_names, validate_name

logger = logging.getLogger(__name__)

__all__ = [
    "check_node_health",
    "check_nodes_health",
    "candidate_nodes",
    "create_container",
    "start_creating",
    "clone_container",
    "move_container",
    "start_container",
    "stop_container",
    "restart_container",
    "suspend_container",
    "resume_container",
    "delete_container",
    "refresh_container",
    "refresh_node",
    "create_snapshot",
    "restore_snapshot",
    "delete_snapshot",
    "commit_container",
    "delete_image",
    "reconcile",
    "ReconcileReport",
    "resume_interrupted_move",
    "user_containers",
    "usable_images",
]

S = Container.Status

#: The short database writes of a creation (the placement transaction, the record after the
#: node answered) take turns in this process. Threads then wait here and are woken as soon as
#: the turn is free; waiting in the database instead, SQLite's busy handler sleeps between
#: tries (up to 100 ms), and a spawn storm spent most of its time there (docs/benchmarks.md).
#: Other processes still take turns through the database's own locks.
_write_turn = threading.RLock()


# ---------------------------------------------------------------------------- nodes

def check_node_health(node: Node) -> int:
    """Ask the node's backend for its status (never raises) and record it."""
    now = timezone.now()
    error = ""
    resources: dict[str, Any] = node.resources or {}
    try:
        backend = get_backend(node)
        status = backend.get_status()
        describe = getattr(backend, "get_node_status", None)
        if status != BACKEND_STATUS_OK:
            error = "The backend reports that it is stopped." if status == 1 else "The backend reports an error."
        if callable(describe):
            try:
                report = describe() or {}
                if status == BACKEND_STATUS_OK:
                    resources = report
            except errors.BackendError as exc:
                if status == BACKEND_STATUS_OK:
                    logger.info("Node %s did not report its resources: %s", node.name, exc)
                else:
                    error = str(exc)  # the cause, in the backend's own words
    except errors.BackendError as exc:  # a broken configuration, say
        status, error = BACKEND_STATUS_ERROR, str(exc)
    fields = {"last_status": status, "last_checked": now, "last_error": error, "resources": resources}
    if status == BACKEND_STATUS_OK:
        fields["last_seen"] = now
    Node.objects.filter(pk=node.pk).update(**fields)
    for key, value in fields.items():
        setattr(node, key, value)
    if status != BACKEND_STATUS_OK:
        logger.warning("Node %s is not healthy: %s", node.name, error)
    return status


def check_nodes_health(nodes: Iterable[Node]) -> dict[str, int]:
    """Check several nodes at once (each check bounded by its backend's timeouts)."""
    nodes = list(nodes)
    if not nodes:
        return {}
    with ThreadPoolExecutor(max_workers=min(8, len(nodes))) as pool:
        statuses = list(pool.map(check_node_health, nodes))
    return {node.name: status for node, status in zip(nodes, statuses, strict=True)}


def _stale(node: Node) -> bool:
    ttl = timedelta(seconds=float(app_settings.HEALTH_TTL))
    return node.last_checked is None or timezone.now() - node.last_checked > ttl


def candidate_nodes(exclude: Iterable[int] = ()) -> list[Node]:
    """Enabled, not draining; health refreshed where it is older than ``HEALTH_TTL``."""
    nodes = list(Node.objects.filter(enabled=True, draining=False).exclude(pk__in=list(exclude))
                 .select_related("backend"))
    check_nodes_health([node for node in nodes if _stale(node)])
    return [node for node in nodes if node.is_healthy]


def _active_counts(node_pks: Iterable[int]) -> dict[int, int]:
    rows = (Container.objects.filter(node__in=list(node_pks), status__in=Container.ACTIVE)
            .values("node").annotate(n=Count("pk")))
    return {row["node"]: row["n"] for row in rows}


# ---------------------------------------------------------------------------- containers

def _uid(user: Any) -> int:
    return int(app_settings.UID_OFFSET) + int(user.pk)


def _mint_secret() -> str:
    """A fresh access secret for a container's notebook server (see ``ACCESS_SECRET_ENV``)."""
    return secrets.token_urlsafe(32)


def _with_secret(options: Mapping[str, Any], secret: str) -> dict[str, Any]:
    """The backend options with the access secret added to ``env`` (over anything given there).
    The secret is never part of the options the record keeps."""
    env = options.get("env")
    if env is not None and not isinstance(env, Mapping):
        return dict(options)  # the backend refuses it with a clear message
    return {**options, "env": {**(env or {}), ACCESS_SECRET_ENV: secret}}


def _apply_record(container: Container, record: Mapping[str, Any]) -> None:
    container.backend_pk = record["pk"]
    container.status = record.get("status") or S.ERROR
    container.ports = record.get("ports") or []
    container.volumes = record.get("volumes") or []
    container.status_checked_at = timezone.now()
    container.last_error = ""
    container.error_code = ""
    container.progress_detail = ""


def _refuse_closed_node(node: Node, *, allow_draining: bool = False) -> None:
    """The one rule for a new container (create, clone, move) on a node someone named, staff
    included: never on a disabled node; on a draining one only with ``allow_draining``."""
    if not node.enabled:
        raise errors.NoNodeAvailableError(
            f"The node {node.name!r} is disabled: it takes no new containers. "
            "Pick another node (or none, and placement picks), or enable this one first."
        )
    if node.draining and not allow_draining:
        raise errors.NoNodeAvailableError(
            f"The node {node.name!r} is draining: it keeps its containers but takes no new ones. "
            "Pick another node (or none, and placement picks), stop draining it, or, as staff, "
            "place it there anyway with the override (allow_draining)."
        )


def _choose_locked(candidates: Iterable[Node], *, named: Node | None, full: str,
                   allow_draining: bool = False) -> Node:
    """Inside the caller's transaction: lock the candidate nodes, and choose the one the new
    container goes to: ``named`` when one was named (its flags re-checked as they are now),
    else the placement algorithm's pick among those with room. ``full`` is the error's message
    when none has room. The one placement step of create, re-placement and move."""
    locked = list(Node.objects.select_for_update().filter(pk__in=[n.pk for n in candidates]).order_by("pk"))
    if named is not None:  # its flags as they are now, not as the caller loaded them
        for current in locked:
            _refuse_closed_node(current, allow_draining=allow_draining)
    loads = _active_counts(n.pk for n in locked)
    roomy = sorted((n for n in locked if loads.get(n.pk, 0) < n.capacity), key=lambda n: n.name)
    if not roomy:
        raise errors.NoNodeAvailableError(full)
    return roomy[0] if named is not None else get_algorithm().choose_node(roomy, loads)


def _reserve(owner: Any, name: str, *, image: Image | None, image_ref: str, clone_of: Container | None,
             node: Node | None, exclude: set[int], base_url: str, options: dict[str, Any],
             allow_draining: bool = False) -> Container:
    """Pick a node and insert the record (status ``creating``) in one locked transaction.
    A named ``node`` must be enabled and, unless ``allow_draining``, not draining."""
    if node is not None:
        candidates = [node]
        _refuse_closed_node(node, allow_draining=allow_draining)
        if _stale(node):
            check_node_health(node)
        if not node.is_healthy:
            raise errors.NoNodeAvailableError(
                f"The node {node.name!r} is not healthy: {node.last_error or 'it does not answer'}"
            )
    else:
        candidates = candidate_nodes(exclude)
    if not candidates:
        raise errors.NoNodeAvailableError(
            "No node can take a new container: every node is disabled, draining, full or not answering. "
            "Ask an administrator to check the nodes."
        )
    with _write_turn, transaction.atomic():
        chosen = _choose_locked(
            candidates, named=node, allow_draining=allow_draining,
            full="Every node that could take the container is full. Ask an administrator to add capacity.")
        limit = app_settings.MAX_CONTAINERS_PER_USER
        if limit is not None and Container.objects.filter(owner=owner).exclude(status=S.LOST).count() >= int(limit):
            raise errors.QuotaExceededError(f"{owner} already has {limit} containers, the most allowed.")
        if Container.objects.filter(owner=owner, name=name).exists():
            raise errors.ContainerAlreadyExistsError(f"{owner} already has a container named {name!r}.")
        try:
            with transaction.atomic():
                return Container.objects.create(
                    owner=owner, name=name, node=chosen, image=image, image_ref=image_ref, clone_of=clone_of,
                    status=S.CREATING, base_url=base_url, options=options,
                )
        except IntegrityError as exc:
            raise errors.ContainerAlreadyExistsError(f"{owner} already has a container named {name!r}.") from exc


def _find_on_node(backend: Any, owner: Any, name: str) -> dict[str, Any] | None:
    for record in backend.get_containers():
        if record.get("owner") == owner.get_username() and record.get("name") == name:
            return record
    return None


def _create_details(owner: Any, name: str, *, image: Any = None, clone_of: Any = None, node: Any = None,
                    allow_draining: bool = False, **kwargs: Any) -> dict[str, Any]:
    return {"target": f"{owner}/{name}", "image": getattr(image, "ref", image) or "",
            "clone_of": str(clone_of or ""), "requested_node": getattr(node, "name", ""),
            "allow_draining": bool(allow_draining)}


def _clone_details(source: Any, owner: Any, name: str, **kwargs: Any) -> dict[str, Any]:
    node = kwargs.get("node")
    return {"target": f"{owner}/{name}", "clone_of": str(source), "requested_node": getattr(node, "name", ""),
            "allow_draining": bool(kwargs.get("allow_draining"))}


def _move_details(container: Any, node: Any = None, *args: Any, allow_draining: bool = False,
                  **kwargs: Any) -> dict[str, Any]:
    """What a move's entry says before it runs (``to`` is filled in by :func:`_move_outcome`);
    takes every argument :func:`move_container` takes, however it was called."""
    return {"target": str(container), "from": container.node.name if container.node_id else "",
            "requested_node": getattr(node, "name", ""), "allow_draining": bool(allow_draining), "to": ""}


def _move_outcome(container: Any) -> dict[str, Any]:
    return {"to": container.node.name if container.node_id else ""}


@dataclass
class _Creation:
    """Everything a creation needs once its arguments are checked (see :func:`_plan_creation`)."""

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


def _plan_creation(owner: Any, name: str, *, image: Image | str | None, clone_of: Container | None,
                   node: Node | None, cmd: str | list[str] | None, options: dict[str, Any] | None,
                   allow_draining: bool) -> _Creation:
    """Check a creation's arguments and work out its names, options and access secret."""
    name = validate_name(name)
    if (image is None) == (clone_of is None):
        raise errors.InvalidArgumentError("Give exactly one of image and clone_of.")
    image_obj = image if isinstance(image, Image) else None
    image_ref = image.ref if isinstance(image, Image) else (image or "")
    if clone_of is not None:
        node = clone_of.node  # a clone starts from its source's filesystem, on its node
        image_obj, image_ref = clone_of.image, clone_of.image_ref
        if not clone_of.backend_pk:
            raise errors.IllegalContainerStateError(f"{clone_of} has not been created yet.")
    elif image_obj is not None and image_obj.node_id is not None:
        node = node or image_obj.node
        if node is None or node.pk != image_obj.node_id:
            raise errors.InvalidArgumentError(f"The image {image_obj} exists only on the node {image_obj.node}.")
    merged_options = {**(app_settings.CONTAINER_OPTIONS or {}), **(options or {})}
    uid = _uid(owner)
    names = {"uid": uid, "username": owner.get_username(), "name": name}
    # Names become path segments only when safe as such: a user "." or ".." is refused here
    # rather than given the homes root (see validation.fill_names).
    base_url = fill_names(app_settings.CONTAINER_BASE_URL, names)
    volumes = fill_names(app_settings.CONTAINER_VOLUMES or [], names)
    return _Creation(owner=owner, name=name, image=image_obj, image_ref=image_ref, clone_of=clone_of, node=node,
                     cmd=cmd, options=merged_options, uid=uid, base_url=base_url, volumes=volumes,
                     secret=_mint_secret(), allow_draining=allow_draining)


def _reserve_for(plan: _Creation) -> Container:
    return _reserve(plan.owner, plan.name, image=plan.image, image_ref=plan.image_ref, clone_of=plan.clone_of,
                    node=plan.node, exclude=set(), base_url=plan.base_url, options=plan.options,
                    allow_draining=plan.allow_draining)


@audit.audited("container.create", target=lambda *a, **k: None, details=_create_details)
def create_container(
    owner: Any,
    name: str,
    *,
    image: Image | str | None = None,
    clone_of: Container | None = None,
    node: Node | None = None,
    cmd: str | list[str] | None = None,
    options: dict[str, Any] | None = None,
    allow_draining: bool = False,
) -> Container:
    """Create and start a container for ``owner``: place it, create it through the node's
    backend, and record it. Placement skips nodes that turn out to be unreachable. A node
    that is named (or implied: a clone's source, an image's only node) must be enabled and,
    unless ``allow_draining``, not draining. While it runs, the record (status ``creating``)
    says how far it got (``Container.progress``: the image's layers and bytes while the node
    pulls it, then ``starting on NODE``)."""
    if clone_of is not None and node is not None and node.pk != clone_of.node_id:
        return _clone_across(clone_of, owner, validate_name(name), node, cmd=cmd, options=options,
                             allow_draining=allow_draining)
    plan = _plan_creation(owner, name, image=image, clone_of=clone_of, node=node, cmd=cmd, options=options,
                          allow_draining=allow_draining)
    return _build(plan, _reserve_for(plan), keep_failed=False)


def start_creating(owner: Any, name: str, *, submit: Callable[[Callable[[], None]], Any],
                   image: Image | str | None = None, clone_of: Container | None = None, node: Node | None = None,
                   allow_draining: bool = False) -> Container:
    """Place and record a new container now, and create it on its node through ``submit``
    (which runs the function it is given later, in a worker thread: see
    :mod:`ipynbsrv_backends.background`).

    What :func:`create_container` refuses before anything is recorded (bad input, no node,
    the quota, a name taken) is raised here, at once. The returned record has status
    ``creating``; ``progress`` follows the work. A failure later keeps the record, with
    status ``error``, ``last_error`` the message and ``error_code`` the error's code, where
    :func:`create_container` would have removed it (so whoever polls it can read why); the
    node is left as that function leaves it. The audit log gets one entry
    (``container.create``, or ``container.clone`` for a clone) when the creation has ended,
    or at once when it was refused."""
    action = "container.clone" if clone_of is not None else "container.create"
    extra = (_clone_details(clone_of, owner, name, allow_draining=allow_draining) if clone_of is not None
             else _create_details(owner, name, image=image, node=node, allow_draining=allow_draining))
    try:
        plan = _plan_creation(owner, name, image=image, clone_of=clone_of, node=node, cmd=None, options=None,
                              allow_draining=allow_draining)
        container = _reserve_for(plan)
    except Exception as exc:
        audit.record(action, None, error=exc, details=extra, target_type="container",
                     target=str(extra.get("target", "")))
        raise
    container.progress_detail = f"waiting to be created on {container.node.name}"
    Container.objects.filter(pk=container.pk).update(progress_detail=container.progress_detail)
    # The worker gets a copy of its own: the record returned here is answered meanwhile.
    work = Container.objects.select_related("node__backend", "owner").get(pk=container.pk)

    def run() -> None:
        try:
            result = _build(plan, work, keep_failed=True)
        except Exception as exc:  # recorded on the container and in the audit log
            audit.record(action, None, error=exc, details=extra, **audit.describe(work))
            if not isinstance(exc, errors.BackendError):
                logger.exception("Creating %s failed", work)
            return
        audit.record(action, None, details=extra, **audit.describe(result))

    submit(run)
    return container


def _note(container: Container, text: str) -> None:
    """What a creation does now, on its record (read by ``Container.progress``)."""
    container.progress_detail = text[:255]
    Container.objects.filter(pk=container.pk, status=S.CREATING).update(progress_detail=container.progress_detail)


class _ProgressWriter:
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


def _pull_first(backend: Any, container: Container, image_ref: str) -> None:
    """Pull the image with progress where the backend can and the node lacks it (the node's
    pull policy still applies); ``create_container`` then finds it there."""
    puller: Any = getattr(backend, "pull_container_image", None)
    try:
        reports = callable(puller) and "on_progress" in inspect.signature(puller).parameters
    except (TypeError, ValueError):
        reports = False
    if not reports or not image_ref or backend.container_image_exists(image_ref):
        return
    label = f"pulling {image_ref} on {container.node.name}"
    writer = _ProgressWriter(container)
    writer.update(label)
    last = [label]

    def report(summary: dict[str, Any]) -> None:
        last[0] = f"{label}: {pullprogress.describe(summary)}"
        writer.update(last[0])

    try:
        puller(image_ref, on_progress=report, follow_pull_policy=True)
    finally:
        writer.close()
    logger.info("For %s: %s", container, last[0])


def _fail(container: Container, exc: BaseException, *, keep: bool) -> None:
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


def _replace(container: Container, excluded: set[int]) -> None:
    """Move a reservation whose node could not be reached to another node (placement again)."""
    candidates = candidate_nodes(excluded)
    with _write_turn, transaction.atomic():
        chosen = _choose_locked(
            candidates, named=None,
            full="No node can take a new container: every node is disabled, draining, full or not answering. "
                 "Ask an administrator to check the nodes.")
        Container.objects.filter(pk=container.pk).update(node=chosen)
        container.node = chosen


def _build(plan: _Creation, container: Container, *, keep_failed: bool) -> Container:
    """Create the reserved ``container`` on its node and record it; on failure compensate
    (see :func:`_fail`). Used by :func:`create_container` and :func:`start_creating`."""
    owner, name = plan.owner, plan.name
    excluded: set[int] = set()
    while True:
        target = container.node
        ports: list[Any] = [{"address": target.address, "external": None, "internal": int(p)}
                            for p in app_settings.CONTAINER_PORTS or []]
        try:
            backend = get_backend(target)
            if plan.clone_of is None:
                _pull_first(backend, container, plan.image_ref)
            _note(container, f"starting on {target.name}")
            record = backend.create_container(
                owner.get_username(), plan.uid, name, ports, plan.volumes, cmd=plan.cmd, base_url=plan.base_url,
                image=plan.image_ref if plan.clone_of is None else None,
                clone_of=plan.clone_of.backend_pk if plan.clone_of is not None else None,
                **_with_secret(plan.options, plan.secret),
            )
        except errors.BackendUnavailableError as exc:
            # Nothing reached the node: place the reservation elsewhere.
            Node.objects.filter(pk=target.pk).update(last_status=BACKEND_STATUS_ERROR, last_error=str(exc),
                                                     last_checked=timezone.now())
            logger.warning("Node %s is unreachable (%s); placing %s/%s elsewhere", target.name, exc, owner, name)
            if plan.node is not None:
                _fail(container, exc, keep=keep_failed)
                raise
            excluded.add(target.pk)
            try:
                _replace(container, excluded)
            except Exception as again:
                _fail(container, again, keep=keep_failed)
                raise
            continue
        except errors.BackendTimeoutError as exc:
            _settle_after_timeout(container, owner, name, exc, keep=keep_failed)
            raise
        except Exception as exc:
            _fail(container, exc, keep=keep_failed)  # the backend removed whatever it had started
            raise
        break
    try:
        _apply_record(container, record)
        container.access_secret = plan.secret
        with _write_turn:
            container.save()
    except Exception as exc:
        logger.exception("Recording %s failed; removing it from %s", record.get("pk"), target.name)
        try:
            backend.delete_container(record["pk"])
        finally:
            _fail(container, exc, keep=keep_failed)
        raise
    logger.info("Created %s on %s (%s)", container, target.name, container.backend_pk)
    return container


def _settle_after_timeout(container: Container, owner: Any, name: str, exc: Exception, *,
                          keep: bool = False) -> None:
    """The node did not answer in time: find out whether the container exists after all."""
    try:
        backend = get_backend(container.node)
        record = _find_on_node(backend, owner, name)
    except errors.BackendError:
        container.status, container.last_error = S.ERROR, f"Creation timed out and the node cannot confirm: {exc}"
        container.error_code = errors.BackendTimeoutError.code if keep else ""
        container.progress_detail = ""
        container.save(update_fields=["status", "last_error", "error_code", "progress_detail", "updated_at"])
        return
    if record is None:
        _fail(container, exc, keep=keep)
        return
    try:
        backend.delete_container(record["pk"])
        _fail(container, exc, keep=keep)
    except errors.BackendError as inner:
        _apply_record(container, record)
        container.status, container.last_error = S.ERROR, f"Creation timed out; clean-up failed: {inner}"
        container.error_code = errors.BackendTimeoutError.code if keep else ""
        container.save()


@audit.audited("container.clone", target=lambda *a, **k: None, details=_clone_details)
def clone_container(source: Container, owner: Any, name: str, **kwargs: Any) -> Container:
    """A new container for ``owner`` from the current filesystem of ``source``; with
    ``node=`` on another node (through the registry)."""
    return create_container(owner, name, clone_of=source, **kwargs)


def _transfer_image(container: Container, purpose: str) -> str:
    """Commit ``container`` to a short-lived image in the registry; returns its ref."""
    stamp = timezone.now().strftime("%Y%m%d%H%M%S%f")
    record = get_backend(container.node).create_container_image(
        _backend_pk(container), f"{purpose}-{container.name}-{stamp}"[:120])
    return record["pk"]


def _drop_transfer_image(ref: str, nodes: Iterable[Node]) -> None:
    """Untag the short-lived image on each node and delete it from the registry. A
    container started from it keeps its layers; they go with the container."""
    for node in nodes:
        try:
            get_backend(node).delete_container_image(ref)
        except errors.ContainerImageNotFoundError:
            pass
        except errors.BackendError as exc:
            logger.warning("Could not delete the transfer image %s on %s: %s", ref, node.name, exc)


def _pull_hint(exc: errors.BackendError, node: Node) -> errors.BackendError:
    if isinstance(exc, errors.ContainerImageNotFoundError):
        return errors.ContainerImageNotFoundError(
            f"{exc} The node {node.name} could not get the image: both nodes need the same registry "
            "(the Docker backend's registry option) for containers to cross nodes."
        )
    return exc


def _clone_across(source: Container, owner: Any, name: str, node: Node, **kwargs: Any) -> Container:
    ref = _transfer_image(source, "clone")
    try:
        clone = create_container(owner, name, image=ref, node=node, **kwargs)
    except errors.BackendError as exc:
        _drop_transfer_image(ref, [source.node, node])
        raise _pull_hint(exc, node) from exc
    clone.clone_of, clone.image, clone.image_ref = source, source.image, source.image_ref
    clone.save(update_fields=["clone_of", "image", "image_ref", "updated_at"])
    _drop_transfer_image(ref, [node, source.node])
    return clone


@audit.audited("container.move", from_result=True, details=_move_details, outcome=_move_outcome)
def move_container(container: Container, node: Node | None = None,
                   on_progress: Callable[[str], None] | None = None, *, allow_draining: bool = False) -> Container:
    """Move ``container`` to another node (``node``, or one placement picks).

    ``on_progress`` is called with a short sentence as each step starts (the commands
    print them); the admin and the API read the step from ``Container.progress``.

    The container is stopped, committed and pushed to the registry, recreated on the
    target with the same name, base URL, environment and limits; its snapshots follow it
    through the registry, one by one, and it is brought back to the state it had. Only then
    is the old one removed and the record switched over. If anything fails before that, the
    copies on the target are removed and the old container is started again as it was.

    Named volumes live on their node: a container with one is refused rather than moved
    without its data. A named ``node`` must be enabled and, unless ``allow_draining``, not
    draining (placement never picks a draining one).
    """
    source = container.node
    pk = _backend_pk(container)
    named = [v["source"] for v in container.volumes or [] if "/" not in v.get("source", "/")]
    if named:
        raise errors.InvalidArgumentError(
            f"{container} keeps data in the named volume(s) {', '.join(named)}, which stay on {source.name}: "
            "moving it would leave that data behind. Use bind mounts on shared storage for containers that move."
        )
    snapshots = list(container.snapshots.order_by("created_at", "pk"))
    if node is not None and node.pk == source.pk:
        raise errors.InvalidArgumentError(f"{container} is already on {source.name}.")
    if node is None:
        candidates = candidate_nodes(exclude=[source.pk])
    else:
        _refuse_closed_node(node, allow_draining=allow_draining)
        check_node_health(node)
        if not node.is_healthy:
            raise errors.NoNodeAvailableError(
                f"The node {node.name} cannot take {container} now: {node.last_error or 'it does not answer'}")
        candidates = [node]
    if not candidates:
        raise errors.NoNodeAvailableError(f"No other node can take {container} now.")
    with transaction.atomic():
        target = _choose_locked(candidates, named=node, allow_draining=allow_draining,
                                full=f"Every node that could take {container} is full.")

    def step(text: str) -> None:
        if on_progress is not None:
            on_progress(text)

    old_backend = get_backend(source)
    new_backend = get_backend(target)
    # Not part of the contract: Docker (and HttpRemote in front of it) carry snapshots through the registry.
    export_snapshot: Any = getattr(old_backend, "export_container_snapshot", None)
    import_snapshot: Any = getattr(new_backend, "import_container_snapshot", None)
    if snapshots:
        for method, where in ((export_snapshot, source), (import_snapshot, target)):
            if not callable(method):
                raise errors.CapabilityNotSupportedError(
                    f"{container} has {len(snapshots)} snapshot(s), and the backend of {where.name} cannot carry "
                    "snapshots between nodes: delete them first, or move it between nodes whose backends can."
                )
    state = old_backend.get_container(pk)["status"]
    step(f"stopping it on {source.name}")
    # Each step is written down before the next, so a master that dies part-way leaves
    # enough behind for ipynbsrv_reconcile to finish the move or roll it back.
    _move_progress(container, {"stage": "copying", "source": source.pk, "target": target.pk, "old_pk": pk,
                               "state": state, "ref": None, "new_pk": None})
    try:
        old_backend.stop_container(pk)
    except Exception:
        _move_progress(container, None)
        raise
    ref: str | None = None
    record: ContainerRecord | None = None
    snapshot_refs: list[str] = []
    moved_snapshots: dict[int, str] = {}
    try:
        step("committing it and pushing the image to the registry")
        ref = _transfer_image(container, "move")
        _move_progress(container, {"ref": ref})
        step(f"creating it on {target.name} (which pulls the image)")
        ports: list[Any] = [{"address": target.address, "external": None, "internal": p["internal"]}
                 for p in container.ports or []]
        owner = container.owner
        secret = _mint_secret()  # the new copy answers only with a secret of its own
        try:
            record = new_backend.create_container(
                owner.get_username(), _uid(owner), container.name, ports, container.volumes or [],
                base_url=container.base_url, image=ref, **_with_secret(container.options or {}, secret),
            )
        except errors.BackendError as exc:
            raise _pull_hint(exc, target) from exc
        _move_progress(container, {"stage": "created", "new_pk": record["pk"], "snapshots": len(snapshots),
                                   "snapshots_done": 0})
        for number, snapshot in enumerate(snapshots, 1):
            step(f"copying snapshot {snapshot.name} ({number} of {len(snapshots)}) through the registry")
            exported = export_snapshot(snapshot.backend_pk)
            snapshot_refs.append(exported["pk"])
            _move_progress(container, {"snapshot_refs": list(snapshot_refs)})
            try:
                imported = import_snapshot(record["pk"], snapshot.name, exported["pk"])
            except errors.BackendError as exc:
                raise _pull_hint(exc, target) from exc
            moved_snapshots[snapshot.pk] = imported["pk"]
            _move_progress(container, {"snapshots_done": number})
        if state == S.STOPPED:
            new_backend.stop_container(record["pk"])
        elif state == S.SUSPENDED and isinstance(new_backend, SuspendableContainerBackend):
            new_backend.suspend_container(record["pk"])
        record = new_backend.get_container(record["pk"])
        with transaction.atomic():
            container.node = target
            container.access_secret = secret
            _apply_record(container, record)
            container.pending_move = {**(container.pending_move or {}), "stage": "switched"}
            container.save()
            for snapshot_pk, backend_pk in moved_snapshots.items():
                Snapshot.objects.filter(pk=snapshot_pk).update(backend_pk=backend_pk)
        step(f"removing the old copy from {source.name}")
    except Exception:
        logger.exception("Moving %s from %s to %s failed; putting it back", container, source.name, target.name)
        if record is not None:
            try:
                new_backend.delete_container(record["pk"])
            except errors.BackendError as exc:
                logger.error("Could not remove the half-moved copy of %s on %s: %s", container, target.name, exc)
        for transfer in ([ref] if ref is not None else []) + snapshot_refs:
            _drop_transfer_image(transfer, [target, source])
        try:
            if state in (S.RUNNING, S.SUSPENDED):
                old_backend.start_container(pk)
                if state == S.SUSPENDED and isinstance(old_backend, SuspendableContainerBackend):
                    old_backend.suspend_container(pk)
        except Exception:
            # the old copy could not be put back: leave the move for reconcile to roll back
            _move_progress(container, {"abandoned": True})
            raise
        _move_progress(container, None)
        raise
    _finish_move(container, old_backend, pk, ([ref] if ref else []) + snapshot_refs, [target, source])
    logger.info("Moved %s from %s to %s%s", container, source.name, target.name,
                f" with {len(snapshots)} snapshot(s)" if snapshots else "")
    return container


def _move_progress(container: Container, changes: dict[str, Any] | None) -> None:
    """Write down how far the move of ``container`` got (``None``: no move in progress),
    and which process is moving it."""
    if changes is not None:
        changes = {**changes, "process": f"{socket.gethostname()}:{os.getpid()}", "at": timezone.now().isoformat()}
    container.pending_move = None if changes is None else {**(container.pending_move or {}), **changes}
    Container.objects.filter(pk=container.pk).update(pending_move=container.pending_move, updated_at=timezone.now())


def _finish_move(container: Container, old_backend: Any, old_pk: str, refs: list[str], nodes: list[Node]) -> None:
    try:
        old_backend.delete_container(old_pk)
    except errors.ContainerNotFoundError:
        pass
    except errors.BackendError as exc:
        logger.error("%s now runs on %s, but its old copy (%s) could not be removed (%s): "
                     "ipynbsrv_reconcile will try again", container, container.node, old_pk, exc)
        _move_progress(container, {"abandoned": True})  # the progress stays: reconcile finishes the job
        return
    for ref in refs:
        _drop_transfer_image(ref, nodes)
    _move_progress(container, None)


#: A move whose process runs on another machine is taken for dead after this long without progress.
MOVE_STALE_AFTER = timedelta(minutes=15)


def move_interrupted(container: Container) -> bool:
    """True when the process that was moving ``container`` is gone."""
    move = container.pending_move or {}
    if move.get("abandoned"):  # the moving process gave up and left it to reconcile
        return True
    host, _, pid = str(move.get("process", "")).rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        if int(pid) == os.getpid():
            return False
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        try:  # a killed process its parent has not reaped yet is dead too
            return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"
        except (OSError, IndexError):
            return False
    try:
        at = datetime.fromisoformat(move["at"])
    except (KeyError, TypeError, ValueError):
        return True
    return timezone.now() - at > MOVE_STALE_AFTER


def resume_interrupted_move(container: Container) -> str:
    """Finish (the record already points at the new copy) or roll back (it does not) a move
    the master did not live to complete. Returns what was done; raises
    :class:`errors.BackendError` when a node involved cannot be reached (the progress stays)."""
    move = container.pending_move or {}
    source = Node.objects.filter(pk=move.get("source")).first()  # type: ignore[misc]  # None finds none
    target = Node.objects.filter(pk=move.get("target")).first()  # type: ignore[misc]
    if source is None or target is None:
        _move_progress(container, None)
        return "forgotten (a node of the move no longer exists)"
    old_backend, new_backend = get_backend(source), get_backend(target)
    refs = [ref for ref in [move.get("ref"), *(move.get("snapshot_refs") or [])] if ref]
    if move.get("stage") == "switched":
        _finish_move(container, old_backend, move["old_pk"], refs, [target, source])
        if container.pending_move:
            raise errors.BackendUnavailableError(f"The old copy of {container} on {source.name} is still there.")
        return f"finished: now on {target.name}"
    # Not switched: the record still names the old copy. Remove any new copy (its imported
    # snapshots go with it), put the old back.
    copy = _find_on_node(new_backend, container.owner, container.name)
    if copy is not None:
        new_backend.delete_container(copy["pk"])
    for ref in refs:
        _drop_transfer_image(ref, [target, source])
    if move.get("state") in (S.RUNNING, S.SUSPENDED):
        current = old_backend.get_container(move["old_pk"])
        if current["status"] == S.STOPPED:
            old_backend.start_container(move["old_pk"])
        if move.get("state") == S.SUSPENDED and isinstance(old_backend, SuspendableContainerBackend):
            old_backend.suspend_container(move["old_pk"])
    _move_progress(container, None)
    refresh_container(container)
    return f"rolled back: stays on {source.name}"


def _backend_pk(container: Container) -> str:
    if not container.backend_pk:
        raise errors.IllegalContainerStateError(f"{container} has no container on its node yet.")
    return container.backend_pk


def refresh_container(container: Container) -> Container:
    """Read the container's state from its node into the record."""
    backend = get_backend(container.node)
    try:
        record = backend.get_container(_backend_pk(container))
    except errors.ContainerNotFoundError:
        container.status = S.LOST
        container.last_error = "The node no longer has this container."
        container.status_checked_at = timezone.now()
        container.save(update_fields=["status", "last_error", "status_checked_at", "updated_at"])
        raise
    _apply_record(container, record)
    container.save()
    return container


def _refuse_while_moving(container: Container) -> None:
    """A container being moved is left alone until the move is done: a start, a snapshot or a
    delete on its old node meanwhile would be lost or undone by the move."""
    if Container.objects.filter(pk=container.pk, pending_move__isnull=False).exists():
        raise errors.IllegalContainerStateError(
            f"{container} is being moved to another node: try again once the move is done "
            "(an interrupted move is finished or rolled back by ipynbsrv_reconcile)."
        )


def _act(container: Container, action: str, capability: type | None = None) -> Container:
    _refuse_while_moving(container)
    backend = get_backend(container.node)
    if capability is not None and not isinstance(backend, capability):
        raise errors.CapabilityNotSupportedError(
            f"The backend of {container.node} cannot {action.split('_')[0]} containers."
        )
    try:
        getattr(backend, action)(_backend_pk(container))
    except errors.ContainerNotFoundError:
        refresh_container(container)  # marks it lost and raises
        raise
    logger.info("%s %s", action, container)
    return refresh_container(container)


@audit.audited("container.start")
def start_container(container: Container) -> Container:
    return _act(container, "start_container")


@audit.audited("container.stop")
def stop_container(container: Container) -> Container:
    return _act(container, "stop_container")


@audit.audited("container.restart")
def restart_container(container: Container) -> Container:
    return _act(container, "restart_container")


@audit.audited("container.suspend")
def suspend_container(container: Container) -> Container:
    return _act(container, "suspend_container", SuspendableContainerBackend)


@audit.audited("container.resume")
def resume_container(container: Container) -> Container:
    return _act(container, "resume_container", SuspendableContainerBackend)


@audit.audited("container.delete")
def delete_container(container: Container) -> None:
    """Remove the container from its node, then its record. If the node cannot be reached
    the record stays: nothing is forgotten while it may still run."""
    _refuse_while_moving(container)
    if container.backend_pk:
        backend = get_backend(container.node)
        try:
            backend.delete_container(container.backend_pk)
        except errors.ContainerNotFoundError:
            logger.info("%s was already gone from %s", container, container.node)
    container.delete()
    logger.info("Deleted %s", container)


def refresh_node(node: Node) -> int:
    """Update the status of every record on ``node`` from one listing. Returns how many
    records changed."""
    records = {r["pk"]: r for r in get_backend(node).get_containers()}
    changed = 0
    for container in Container.objects.filter(node=node).exclude(status=S.CREATING):
        record = records.get(container.backend_pk)
        if record is None:
            if container.status != S.LOST and container.backend_pk:
                container.status, container.last_error = S.LOST, "The node no longer has this container."
                container.save(update_fields=["status", "last_error", "updated_at"])
                changed += 1
            continue
        if container.status != record["status"] or container.ports != record["ports"]:
            _apply_record(container, record)
            container.save()
            changed += 1
    return changed


# ---------------------------------------------------------------------------- snapshots

def _snapshot_backend(container: Container) -> SnapshotableContainerBackend:
    backend = get_backend(container.node)
    if not isinstance(backend, SnapshotableContainerBackend):
        raise errors.CapabilityNotSupportedError(f"The backend of {container.node} cannot take snapshots.")
    return backend


@audit.audited("snapshot.create", details=lambda c, name, *a, **k: {"name": name})
def create_snapshot(container: Container, name: str, description: str = "") -> Snapshot:
    name = validate_name(name, "snapshot name")
    _refuse_while_moving(container)
    if Snapshot.objects.filter(container=container, name=name).exists():
        raise errors.ContainerAlreadyExistsError(f"{container} already has a snapshot named {name!r}.")
    backend = _snapshot_backend(container)
    record = backend.create_container_snapshot(_backend_pk(container), name)
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
    _refuse_while_moving(container)
    backend = _snapshot_backend(container)
    secret = _mint_secret()  # the restored container gets a secret of its own
    record = backend.restore_container_snapshot(_backend_pk(container), snapshot.backend_pk,
                                                env={ACCESS_SECRET_ENV: secret})
    _apply_record(container, record)
    container.access_secret = secret
    container.save()
    logger.info("Restored %s from %s", container, snapshot)
    return container


@audit.audited("snapshot.delete")
def delete_snapshot(snapshot: Snapshot) -> None:
    _refuse_while_moving(snapshot.container)
    backend = _snapshot_backend(snapshot.container)
    try:
        backend.delete_container_snapshot(snapshot.backend_pk)
    except errors.ContainerSnapshotNotFoundError:
        logger.info("%s was already gone", snapshot)
    snapshot.delete()


# ---------------------------------------------------------------------------- images

@audit.audited("image.commit", details=lambda c, name, *a, **k: {"name": name, "public": bool(k.get("public"))})
def commit_container(container: Container, name: str, *, public: bool = False, description: str = "") -> Image:
    """Commit the container's filesystem to an image its owner (or everyone, if public)
    can start containers from."""
    backend = get_backend(container.node)
    record = backend.create_container_image(_backend_pk(container), name)
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


# ---------------------------------------------------------------------------- reconcile

@dataclass
class ReconcileReport:
    """What ``reconcile`` found and did on one node."""

    node: str
    reachable: bool = True
    error: str = ""
    missing: list[str] = field(default_factory=list)  # records whose container is gone
    orphans: list[str] = field(default_factory=list)  # containers without a record
    updated: int = 0
    marked_lost: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    moves: list[str] = field(default_factory=list)  # interrupted moves finished or rolled back
    problems: list[str] = field(default_factory=list)

    @property
    def drift(self) -> bool:
        return bool(self.missing or self.orphans or not self.reachable)


def reconcile(node: Node, *, mark_lost: bool = False, adopt: bool = False, remove: bool = False) -> ReconcileReport:
    """Compare the records of ``node`` with what it really runs.

    Reports drift; on request marks records whose container is gone as ``lost``, adopts
    labelled containers that have no record (when their owner is a known user), or removes
    them. ``adopt`` and ``remove`` are exclusive.
    """
    if adopt and remove:
        raise errors.InvalidArgumentError("Choose adopt or remove for containers without a record, not both.")
    report = _reconcile(node, mark_lost=mark_lost, adopt=adopt, remove=remove)
    if report.drift or report.moves or report.updated or report.problems:
        audit.record(
            "reconcile.drift", node, error=None if report.reachable else report.error,
            details={"missing": report.missing, "orphans": report.orphans, "updated": report.updated,
                     "marked_lost": report.marked_lost, "adopted": report.adopted, "removed": report.removed,
                     "moves": report.moves, "problems": report.problems},
        )
    return report


def _reconcile(node: Node, *, mark_lost: bool, adopt: bool, remove: bool) -> ReconcileReport:
    report = ReconcileReport(node=node.name)
    in_flight: set[tuple[str, str]] = set()  # moves still running elsewhere: their new copy is no orphan
    moving = Container.objects.filter(pending_move__isnull=False).select_related("owner", "node")
    for container in moving:
        move = container.pending_move or {}
        if node.pk not in (move.get("source"), move.get("target"), container.node_id):
            continue
        if not move_interrupted(container):
            in_flight.add((container.owner.get_username(), container.name))
            continue
        try:
            report.moves.append(f"{container}: {resume_interrupted_move(container)}")
        except errors.BackendError as exc:
            in_flight.add((container.owner.get_username(), container.name))
            report.problems.append(f"{container}: an interrupted move cannot be resolved yet: {exc}")
    try:
        backend = get_backend(node)
        records = {r["pk"]: r for r in backend.get_containers()}
    except errors.BackendError as exc:
        report.reachable, report.error = False, str(exc)
        return report
    # records whose creation the node never confirmed (it timed out): find their container by name
    by_name = {(r.get("owner"), r.get("name")): r for r in records.values()}
    for container in Container.objects.filter(node=node, backend_pk="", status=S.ERROR).select_related("owner"):
        record = by_name.get((container.owner.get_username(), container.name))
        if record is not None:
            _apply_record(container, record)
            container.save()
            report.updated += 1
            continue
        report.missing.append(str(container))
        if mark_lost:
            container.status, container.last_error = S.LOST, "The node never confirmed this container."
            container.save(update_fields=["status", "last_error", "updated_at"])
            report.marked_lost.append(str(container))
    known = {c.backend_pk: c for c in Container.objects.filter(node=node).exclude(backend_pk="")}
    for pk, container in known.items():
        record = records.get(pk)
        if record is None:
            if container.status != S.LOST:
                report.missing.append(str(container))
                if mark_lost:
                    container.status, container.last_error = S.LOST, "The node no longer has this container."
                    container.save(update_fields=["status", "last_error", "updated_at"])
                    report.marked_lost.append(str(container))
            continue
        if container.status != record["status"] or container.ports != record["ports"]:
            _apply_record(container, record)
            container.save()
            report.updated += 1
    User = get_user_model()
    for pk, record in records.items():
        if pk in known or (record.get("owner"), record.get("name")) in in_flight:
            continue
        report.orphans.append(pk)
        if remove:
            try:
                backend.delete_container(pk)
                report.removed.append(pk)
            except errors.BackendError as exc:
                report.problems.append(f"{pk}: {exc}")
        elif adopt:
            owner = User.objects.filter(**{User.USERNAME_FIELD: record.get("owner")}).first()
            if owner is None:
                report.problems.append(f"{pk}: no user named {record.get('owner')!r} to adopt it")
                continue
            if Container.objects.filter(owner=owner, name=record.get("name")).exists():
                report.problems.append(f"{pk}: {owner} already has a record named {record.get('name')!r}")
                continue
            container = Container(owner=owner, name=record.get("name") or pk, node=node,
                                  image_ref=record.get("image") or "")
            container.image = Image.objects.filter(ref=container.image_ref).first()
            _apply_record(container, record)
            container.save()
            report.adopted.append(pk)
    # records still "creating" long after any creation could take are errors
    stale = timezone.now() - timedelta(minutes=30)
    for container in Container.objects.filter(node=node, status=S.CREATING, created_at__lt=stale):
        report.problems.append(f"{container}: still 'creating' after 30 minutes")
    return report


def user_containers(user: Any) -> Any:
    """The containers ``user`` may see: their own, or all for staff."""
    queryset = Container.objects.select_related("node", "owner", "image")
    return queryset if user.is_staff else queryset.filter(owner=user)


def usable_images(user: Any) -> Any:
    queryset = Image.objects.all()
    if user.is_staff:
        return queryset
    return queryset.filter(Q(public=True) | Q(owner__isnull=True) | Q(owner=user))
