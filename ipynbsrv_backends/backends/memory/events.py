"""The in-memory backend's engine events (``EventSourceContainerBackend``): each lifecycle
change of a container is kept on its simulated host, as an engine keeps its recent events, and
streamed to whoever follows them; :meth:`MemoryEvents.simulate_oom` stands for a process
killed by the memory limit."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

from ...contract import EventRecord, EventSourceContainerBackend
from ...events import event_message, validate_stream
from .base import MemoryBase
from .store import LABEL, Container

__all__ = ["MemoryEvents"]

_STATUS_AFTER = {"start": "running", "die": "stopped", "pause": "suspended", "unpause": "running"}


class MemoryEvents(MemoryBase, EventSourceContainerBackend):
    """Events kept on the simulated host (``host.events``)."""

    def _emit(self, item: Container, action: str, **extra: Any) -> None:
        """Keep one event of ``item`` (the caller holds ``host.lock``)."""
        events = self.host.events
        ns = max(time.time_ns(), int(events[-1]["cursor"]) + 1 if events else 0)
        record = {
            "cursor": str(ns), "time": dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).isoformat().replace("+00:00", "Z"),
            "container": item.pk, "owner": item.labels.get(LABEL + "owner", ""),
            "name": item.labels.get(LABEL + "name", ""), "action": action, "status": _STATUS_AFTER.get(action),
            "message": event_message(action, **extra), "instance": item.labels.get(LABEL + "instance"), **extra,
        }
        events.append(record)
        self.host.changed.notify_all()

    def simulate_oom(self, container: str) -> None:
        """A process in the container was killed by its memory limit (it keeps running)."""
        with self.host.lock:
            item = self._container(container)
            self._emit(item, "oom", mem_limit=item.limits.get("mem_limit"))

    def get_container_events(self, since: str | None = None, timeout: float = 60.0, heartbeat: float = 15.0,
                             **kwargs: Any) -> Iterator[EventRecord | str]:
        cursor, seconds, beat = validate_stream(since, timeout, heartbeat)
        return self._events(time.time_ns() if cursor is None else cursor, seconds, beat)

    def _events(self, cursor: int, seconds: float, beat: float) -> Iterator[EventRecord | str]:
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            with self.host.lock:
                new = [e for e in self.host.events if int(e["cursor"]) > cursor and e["instance"] == self.instance]
                if not new:
                    self.host.changed.wait(min(beat, remaining))
                    new = [e for e in self.host.events
                           if int(e["cursor"]) > cursor and e["instance"] == self.instance]
                if not new:  # still holding the lock: an event after this is stamped later
                    newest = int(self.host.events[-1]["cursor"]) if self.host.events else 0
                    cursor = max(cursor, newest, time.time_ns() - 1)
            if not new:
                yield str(cursor)
            for event in new:
                cursor = int(event["cursor"])
                yield {key: value for key, value in event.items() if key != "instance"}  # type: ignore[misc]
