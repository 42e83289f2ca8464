"""The written-down state of a move (``Container.pending_move``): its stages as a type, read
back as a :class:`PendingMove`, and whether the process that was moving is gone."""

from __future__ import annotations

import enum
import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from ..models import Container

#: A move whose process runs on another machine is taken for dead after this long without progress.
MOVE_STALE_AFTER = timedelta(minutes=15)


class MoveStage(enum.StrEnum):
    """How far a move got; each is written down before the next step starts, so a master
    that dies part-way leaves enough behind for ``ipynbsrv_reconcile``."""

    #: The old copy is stopped; the image and the new copy are being made (roll back).
    COPYING = "copying"
    #: The new copy exists on the target; snapshots are following it (roll back).
    CREATED = "created"
    #: The record names the new copy; the old one is being removed (finish).
    SWITCHED = "switched"


@dataclass(frozen=True)
class PendingMove:
    """``Container.pending_move`` read back, with its defaults."""

    stage: MoveStage | None = None
    source: int | None = None
    target: int | None = None
    old_pk: str = ""
    state: str = ""  # the container's status before the move, to bring it back to
    ref: str | None = None
    new_pk: str | None = None
    snapshots: int = 0
    snapshots_done: int = 0
    snapshot_refs: list[str] = field(default_factory=list)
    abandoned: bool = False  # the moving process gave up and left it to reconcile
    process: str = ""  # host:pid of the moving process
    at: str = ""  # when it last wrote down progress (ISO 8601)

    @classmethod
    def of(cls, container: Container) -> PendingMove:
        move: dict[str, Any] = dict(container.pending_move or {})
        try:
            stage = MoveStage(str(move["stage"])) if move.get("stage") else None
        except ValueError:
            stage = None
        return cls(stage=stage, source=move.get("source"), target=move.get("target"),
                   old_pk=str(move.get("old_pk") or ""), state=str(move.get("state") or ""), ref=move.get("ref"),
                   new_pk=move.get("new_pk"), snapshots=int(move.get("snapshots") or 0),
                   snapshots_done=int(move.get("snapshots_done") or 0),
                   snapshot_refs=list(move.get("snapshot_refs") or []), abandoned=bool(move.get("abandoned")),
                   process=str(move.get("process", "")), at=str(move.get("at") or ""))

    @property
    def transfer_refs(self) -> list[str]:
        """The short-lived images the move pushed (its container's, then its snapshots')."""
        return [ref for ref in [self.ref, *self.snapshot_refs] if ref]

    def involves(self, node_pk: int) -> bool:
        return node_pk in (self.source, self.target)


def _process_gone(host: str, pid: str) -> bool | None:
    """Whether the process ``pid`` on this host is gone (``None``: it runs elsewhere)."""
    if host != socket.gethostname() or not pid.isdigit():
        return None
    if int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:  # a killed process its parent has not reaped yet is dead too
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def move_interrupted(container: Container) -> bool:
    """True when the process that was moving ``container`` is gone."""
    move = PendingMove.of(container)
    if move.abandoned:
        return True
    host, _, pid = move.process.rpartition(":")
    gone = _process_gone(host, pid)
    if gone is not None:
        return gone
    try:
        at = datetime.fromisoformat(move.at)
    except ValueError:
        return True
    return timezone.now() - at > MOVE_STALE_AFTER
