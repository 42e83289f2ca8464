"""Events: every node's engine events keep the records fresh, without polling each container.

:class:`NodeFollower` follows one node's stream (``EventSourceContainerBackend``) in a thread
of its own: each event is written to its container's row (:func:`apply_event`) and kept as a
:class:`~ipynbsrv_backends.models.ContainerEvent` for the owner's live stream. A stream ends
by itself after ``stream_seconds`` and the next one starts from the last event's cursor; a
stream that breaks is reconnected after a bounded, growing pause, and once it is up again the
node is reconciled (what happened while no stream was open is read from the node), which is
logged and audited. ``ipynbsrv_events`` runs one follower per node until SIGTERM.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import logging
import threading
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django.db import close_old_connections, connection, transaction
from django.db.models import Q
from django.utils import timezone

from .. import audit, errors
from ..conf import app_settings
from ..contract import EventSourceContainerBackend
from ..models import Container, ContainerEvent, Node
from ..registry import get_backend
from ._base import S
from .reconcile import ReconcileReport, reconcile

logger = logging.getLogger(__name__)

__all__ = ["apply_event", "prune_events", "NodeFollower", "reconnect_delay"]

#: The shortest time between the starts of two streams of one node that end by themselves.
_MIN_STREAM_INTERVAL = 1.0
#: The statuses an event may change: a row being created keeps its own until the create ends.
_FRESHENED = (S.RUNNING, S.STOPPED, S.SUSPENDED, S.ERROR)


def _moment(text: Any) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return timezone.now()


def apply_event(node: Node, record: Mapping[str, Any]) -> ContainerEvent | None:
    """Write one event of ``node`` onto its container's row (its status, when the event tells it
    and nothing newer was learnt since; its last event in words) and keep it for the owner's
    stream. ``None`` for a container that has no record here."""
    row = (Container.objects.filter(node=node, backend_pk=record.get("container") or "")
           .only("pk", "owner_id").first())
    if row is None:
        return None
    when = _moment(record.get("time"))
    message = str(record.get("message") or record.get("action") or "")[:255]
    status = record.get("status")
    exit_code = record.get("exit_code")
    with transaction.atomic():  # the record and the kept event are seen together
        Container.objects.filter(pk=row.pk).update(last_event=message, last_event_at=when)
        if status in (S.RUNNING, S.STOPPED, S.SUSPENDED):
            Container.objects.filter(
                Q(status_checked_at__isnull=True) | Q(status_checked_at__lte=when),
                pk=row.pk, status__in=_FRESHENED, pending_move__isnull=True,
            ).update(status=status, status_checked_at=when, updated_at=timezone.now())
        return ContainerEvent.objects.create(
            container_id=row.pk, owner_id=row.owner_id, node=node.name, action=str(record.get("action"))[:16],
            status=status or "", message=message, exit_code=exit_code if isinstance(exit_code, int) else None,
            when=when,
        )


def prune_events(days: float | None = None) -> int:
    """Remove the kept events older than ``days`` (the ``EVENTS_KEEP_DAYS`` setting)."""
    keep = float(app_settings.EVENTS_KEEP_DAYS if days is None else days)
    deleted, _ = ContainerEvent.objects.filter(received_at__lt=timezone.now() - timedelta(days=keep)).delete()
    return deleted


def reconnect_delay(failures: int, first: float, most: float) -> float:
    """The pause before reconnecting after ``failures`` broken streams in a row: doubling from
    ``first``, never more than ``most``."""
    return float(min(most, first * 2 ** max(0, min(failures - 1, 30))))


class NodeFollower(threading.Thread):
    """Follows one node's event stream until :attr:`stop` is set (see the module)."""

    def __init__(self, node: Node, *, stream_seconds: float = 300.0, heartbeat: float = 10.0,
                 first_backoff: float = 1.0, max_backoff: float = 30.0, stop: threading.Event | None = None) -> None:
        super().__init__(name=f"events-{node.name}", daemon=True)
        self.node_pk, self.node_name = node.pk, node.name
        self.stream_seconds, self.heartbeat = stream_seconds, heartbeat
        self.first_backoff, self.max_backoff = first_backoff, max_backoff
        self.stop = stop or threading.Event()
        self.cursor: str | None = None
        self.failures = 0  # broken streams in a row (0 once a stream is up again)
        self.broken = 0  # broken streams in all
        self.reconciled = 0  # how many times the node was reconciled (for the tests and the log)
        self.received = 0
        self.unsupported = False  # the node's backend has no event stream
        # What it audits is its starter's (ipynbsrv_events: via command, its name as source).
        self._context = contextvars.copy_context()

    def run(self) -> None:
        try:
            self._context.run(self._follow)
        finally:
            connection.close()

    def _follow(self) -> None:
        reconcile_next = True  # on the first connection too: what happened before it started
        while not self.stop.is_set():
            close_old_connections()
            node = Node.objects.filter(pk=self.node_pk, enabled=True).select_related("backend").first()
            if node is None:
                logger.info("Node %s is gone or disabled: no longer following its events", self.node_name)
                return
            try:
                backend = get_backend(node)
                if not isinstance(backend, EventSourceContainerBackend):
                    logger.warning("Node %s: its backend (%s) has no event stream; its records are kept fresh "
                                   "by ipynbsrv_reconcile only", node.name, type(backend).__name__)
                    self.unsupported = True
                    return
                opened = time.monotonic()
                reconcile_next = self._stream(node, backend, reconcile_next)
                # a stream that ended at once (a node misbehaving): never more than one a second
                self.stop.wait(max(0.0, opened + _MIN_STREAM_INTERVAL - time.monotonic()))
            except errors.CapabilityNotSupportedError as exc:  # the far side's backend has none
                logger.warning("Node %s has no event stream (%s); its records are kept fresh by "
                               "ipynbsrv_reconcile only", node.name, exc)
                self.unsupported = True
                return
            except Exception as exc:  # noqa: BLE001 - the follower outlives any one failure
                self.failures += 1
                self.broken += 1
                reconcile_next = True
                delay = reconnect_delay(self.failures, self.first_backoff, self.max_backoff)
                if isinstance(exc, errors.BackendError):
                    logger.warning("Node %s: its event stream broke (%s: %s); reconnecting in %.1f s",
                                   node.name, type(exc).__name__, exc, delay)
                else:
                    logger.exception("Node %s: following its events failed unexpectedly; again in %.1f s",
                                     node.name, delay)
                self.stop.wait(delay)

    def _stream(self, node: Node, backend: EventSourceContainerBackend, reconcile_next: bool) -> bool:
        """One stream, to its end (or until stopped); whether the next must reconcile first."""
        stream = backend.get_container_events(since=self.cursor, timeout=self.stream_seconds,
                                              heartbeat=self.heartbeat)
        try:
            for item in stream:
                if reconcile_next:  # the stream is up: read what happened while it was not
                    self._reconcile(node)
                    reconcile_next = False
                if isinstance(item, str):  # a heartbeat: nothing happened up to it
                    self.cursor = item
                else:
                    apply_event(node, item)
                    self.cursor = item["cursor"]
                    self.received += 1
                if self.stop.is_set():
                    break
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        return reconcile_next

    def _reconcile(self, node: Node) -> ReconcileReport:
        broken = self.failures
        report = reconcile(node)
        self.failures = 0
        self.reconciled += 1
        what = "reconnected after a broken stream" if broken else "connected"
        level = logging.WARNING if broken else logging.INFO
        logger.log(level, "Node %s: event stream %s; reconciled the node: %d record(s) updated, %d missing, "
                   "%d without a record%s", node.name, what, report.updated, len(report.missing),
                   len(report.orphans), "" if report.reachable else f" (unreachable: {report.error})")
        if broken:
            audit.record("events.reconnected", node, details={
                "broken_streams": broken, "updated": report.updated, "missing": report.missing,
                "orphans": report.orphans})
        return report

