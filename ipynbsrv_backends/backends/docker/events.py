"""The engine's events about the containers this backend instance manages
(:class:`~ipynbsrv_backends.contract.EventSourceContainerBackend`).

The engine filters by this instance's labels, so another instance's (or nobody's) containers
never reach the stream. A stream is a series of short engine requests, each bounded by the
engine itself (``until`` one heartbeat ahead) and started from the last event's time
(``since``, the cursor): the engine keeps its recent events, so nothing is lost between two
requests, and a silent window is a heartbeat.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterator, Mapping
from typing import Any

from ... import errors
from ...contract import EventRecord, EventSourceContainerBackend
from ...events import event_message, validate_stream
from .constants import KIND_CONTAINER, L_NAME, L_OWNER
from .engine import DockerEngine

logger = logging.getLogger(__name__)

__all__ = ["EngineEvents", "event_record", "ENGINE_ACTIONS"]

#: The engine's actions a stream passes on, and the contract's name of each (the engine's
#: ``health_status: healthy`` is ``health``).
ENGINE_ACTIONS = {"start": "start", "die": "die", "oom": "oom", "pause": "pause", "unpause": "unpause",
                  "health_status": "health", "destroy": "destroy"}
#: How far before a silent window's end its heartbeat's cursor is.
_MARGIN_NS = 1_000_000_000
_STATUS_AFTER = {"start": "running", "die": "stopped", "pause": "suspended", "unpause": "running"}


def _ns_text(ns: int) -> str:
    """Nanoseconds since the epoch as the engine reads a time: ``seconds.nanoseconds``."""
    return f"{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}"


def event_record(raw: Mapping[str, Any], mem_limit: int | None = None) -> EventRecord | None:
    """The contract's record of one engine event (``None`` for an action a stream does not
    pass on, or an event that names no container)."""
    action_text = str(raw.get("Action") or raw.get("status") or "")
    engine_action, _, detail = action_text.partition(":")
    action = ENGINE_ACTIONS.get(engine_action.strip())
    actor = raw.get("Actor") or {}
    attributes = actor.get("Attributes") or {}
    pk = attributes.get("name")
    ns = raw.get("timeNano")
    if action is None or not pk or not isinstance(ns, int):
        return None
    exit_code: int | None = None
    if action == "die":
        try:
            exit_code = int(attributes.get("exitCode", ""))
        except (TypeError, ValueError):
            exit_code = None
    health = detail.strip() or None if action == "health" else None
    record: EventRecord = {
        "cursor": str(ns),
        "time": dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).isoformat().replace("+00:00", "Z"),
        "container": pk,
        "owner": attributes.get(L_OWNER, ""),
        "name": attributes.get(L_NAME, ""),
        "action": action,  # type: ignore[typeddict-item]  # one of ENGINE_ACTIONS' values
        "status": _STATUS_AFTER.get(action),  # type: ignore[typeddict-item]
        "message": event_message(action, exit_code=exit_code, health=health, mem_limit=mem_limit),
    }
    if action == "die":
        record["exit_code"] = exit_code
    if action == "health":
        record["health"] = health
    if action == "oom":
        record["mem_limit"] = mem_limit
    return record


class EngineEvents(DockerEngine, EventSourceContainerBackend):
    """``get_container_events`` of the ``Docker`` backend."""

    def get_container_events(self, since: str | None = None, timeout: float = 60.0, heartbeat: float = 15.0,
                             **kwargs: Any) -> Iterator[EventRecord | str]:
        cursor, seconds, beat = validate_stream(since, timeout, heartbeat)
        return self._events(cursor if cursor is not None else time.time_ns(), seconds, beat)

    def _events(self, cursor: int, seconds: float, beat: float) -> Iterator[EventRecord | str]:
        deadline = time.monotonic() + seconds
        filters = {"type": ["container"], **self._labels_filter(KIND_CONTAINER),
                   "event": sorted(ENGINE_ACTIONS)}
        while (remaining := deadline - time.monotonic()) > 0:
            until = time.time_ns() + int(min(beat, remaining) * 1e9)
            passed = False
            with self._engine():
                stream = self._api().events(since=_ns_text(cursor), until=_ns_text(until), filters=filters,
                                            decode=True)
                try:
                    for raw in stream:
                        ns = raw.get("timeNano") if isinstance(raw, dict) else None
                        if not isinstance(ns, int) or ns <= cursor:
                            continue
                        cursor = ns
                        record = event_record(raw, self._oom_limit(raw))
                        if record is not None:
                            passed = True
                            yield record
                finally:
                    stream.close()
            if not passed:
                # Nothing up to the window's end, less a margin for an event the engine stamped
                # just before it but had not sent yet (the next window asks for it again).
                cursor = max(cursor, until - _MARGIN_NS)
                yield str(cursor)

    def _oom_limit(self, raw: Mapping[str, Any]) -> int | None:
        """The memory limit of the container an ``oom`` event is about (``None`` otherwise, or
        when it has gone)."""
        if raw.get("Action") != "oom":
            return None
        try:
            with self._engine(not_found=errors.ContainerNotFoundError()):
                info = self._api().inspect_container((raw.get("Actor") or {}).get("ID") or "")
        except errors.BackendError as exc:
            logger.info("No memory limit for an OOM event: %s", exc)
            return None
        return (info.get("HostConfig") or {}).get("Memory") or None
