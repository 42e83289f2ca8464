"""Engine events in the contract's terms: the bounds of an event stream, its cursor, and the
words a user reads ("ran out of memory: 2 GiB limit").

Shared by every backend that claims
:class:`~ipynbsrv_backends.contract.EventSourceContainerBackend` (they check a stream's
arguments the same way) and by the master (which shows the words). Standard library only.
"""

from __future__ import annotations

from typing import Any

from . import errors
from .contract import EVENT_ACTIONS

__all__ = [
    "MAX_STREAM_SECONDS",
    "MIN_HEARTBEAT",
    "MAX_HEARTBEAT",
    "validate_stream",
    "validate_cursor",
    "memory_words",
    "event_message",
]

#: The longest one stream may last (a consumer opens the next one from the last cursor).
MAX_STREAM_SECONDS = 3600.0
#: The bounds of the heartbeat: how long a stream may stay silent.
MIN_HEARTBEAT = 0.5
MAX_HEARTBEAT = 120.0
#: A cursor is the engine's time of an event in nanoseconds since the epoch, as digits.
_CURSOR_DIGITS = 25


def validate_cursor(since: Any) -> int | None:
    """The cursor ``since`` as nanoseconds (``None``: from now); ``InvalidArgumentError`` when it
    is not one a stream gave."""
    if since is None or since == "":
        return None
    if isinstance(since, bool) or not isinstance(since, (str, int)) or not str(since).isdigit() \
            or len(str(since)) > _CURSOR_DIGITS:
        raise errors.InvalidArgumentError(
            "since must be the cursor of an event an earlier stream gave (digits), or empty for 'from now'."
        )
    return int(since)


def _seconds(value: Any, name: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise errors.InvalidArgumentError(f"{name} must be a number of seconds from {low:g} to {high:g}.")
    return float(value)


def validate_stream(since: Any, timeout: Any, heartbeat: Any) -> tuple[int | None, float, float]:
    """``(since in ns or None, timeout, heartbeat)`` of a stream, checked: ``timeout`` (how long
    the stream lasts) from 1 s to :data:`MAX_STREAM_SECONDS`, ``heartbeat`` (the longest silence)
    from :data:`MIN_HEARTBEAT` to :data:`MAX_HEARTBEAT` and not longer than the stream."""
    cursor = validate_cursor(since)
    seconds = _seconds(timeout, "timeout", 1.0, MAX_STREAM_SECONDS)
    beat = _seconds(heartbeat, "heartbeat", MIN_HEARTBEAT, min(MAX_HEARTBEAT, seconds))
    return cursor, seconds, beat


def memory_words(limit: int | None) -> str:
    """A memory size as people say it: ``2 GiB``, ``512 MiB``, ``1.5 GiB``."""
    if not limit or limit <= 0:
        return "no"
    value = float(limit)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            text = f"{value:.1f}".rstrip("0").rstrip(".")
            return f"{text} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def event_message(action: str, *, exit_code: int | None = None, health: str | None = None,
                  mem_limit: int | None = None, oom_killed: bool = False) -> str:
    """What happened, in words a container's owner reads."""
    if action not in EVENT_ACTIONS:
        raise ValueError(f"unknown event action {action!r}")
    if action == "oom":
        return f"ran out of memory: {memory_words(mem_limit)} limit"
    if action == "die":
        code = "an unknown code" if exit_code is None else f"code {exit_code}"
        return f"stopped (exit {code}{', killed for using too much memory' if oom_killed else ''})"
    if action == "health":
        return f"health check: {health or 'unknown'}"
    return {"start": "started", "pause": "suspended", "unpause": "resumed", "destroy": "removed"}[action]
