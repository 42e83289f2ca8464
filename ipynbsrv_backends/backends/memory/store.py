"""What the in-memory backends keep: simulated hosts (engines) and registries."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ...contract import PortRecord, VolumeRecord
from ...validation import iso_utc

LABEL = "org.ipynbsrv."
#: The size an image or snapshot reports besides its files (a base image's whole size).
BASE_SIZE = 1_000_000


def now() -> str:
    return iso_utc(dt.datetime.now(dt.UTC))


def moment() -> str:
    """Now, to the microsecond (when a container last started)."""
    return dt.datetime.now(dt.UTC).isoformat()


@dataclass
class Container:
    """One container on a simulated host (``labels`` as the engine would keep them)."""

    pk: str
    labels: dict[str, str]
    image: str
    env: dict[str, str]
    ports: list[PortRecord]
    volumes: list[VolumeRecord]
    limits: dict[str, Any]
    cmd: list[str] | None = None
    files: dict[str, str] = field(default_factory=dict)
    status: str = "running"
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started_at: str = field(default_factory=moment)
    exit_code: int = 0
    logs: list[tuple[dt.datetime, str]] = field(default_factory=list)


@dataclass
class Image:
    """An image, snapshot or base image: a copy of a container's files."""

    ref: str
    labels: dict[str, str]
    files: dict[str, str] = field(default_factory=dict)
    created: str = field(default_factory=now)

    @property
    def size(self) -> int:
        return BASE_SIZE + sum(len(text) for text in self.files.values())


@dataclass
class Volume:
    name: str
    labels: dict[str, str]
    files: dict[str, str] = field(default_factory=dict)


@dataclass
class Host:
    """What one simulated engine keeps; every access holds ``lock``."""

    lock: threading.RLock = field(default_factory=threading.RLock)
    containers: dict[str, Container] = field(default_factory=dict)
    images: dict[str, Image] = field(default_factory=dict)
    volumes: dict[str, Volume] = field(default_factory=dict)
    #: The engine's recent events (``EventRecord``s, the newest last; as many as an engine keeps).
    events: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=256))
    #: Notified (holding ``lock``) when an event is added.
    changed: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.changed = threading.Condition(self.lock)


_HOSTS: dict[str, Host] = {}
_REGISTRIES: dict[str, dict[str, Image]] = {}
_GLOBAL = threading.Lock()

def host(name: str) -> Host:
    """The simulated host ``name``, made on first use."""
    with _GLOBAL:
        return _HOSTS.setdefault(name, Host())


def registry(name: str) -> dict[str, Image]:
    """The in-memory registry ``name``: image reference -> image."""
    with _GLOBAL:
        return _REGISTRIES.setdefault(name, {})


def reset(name: str | None = None) -> None:
    """Empty the host ``name`` (every host, and every registry, when ``None``)."""
    with _GLOBAL:
        hosts = [_HOSTS[name]] if name in _HOSTS else [] if name else list(_HOSTS.values())
        if name is None:
            _REGISTRIES.clear()
    for item in hosts:
        with item.lock:
            item.containers.clear()
            item.images.clear()
            item.volumes.clear()
            item.events.clear()
