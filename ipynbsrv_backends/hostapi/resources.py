"""What a node has to offer, for placement: CPUs, memory and load (Linux ``/proc``)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TypedDict

logger = logging.getLogger(__name__)

__all__ = ["NodeResources", "cpu_count", "memory_info", "load_average", "node_resources"]

MEMINFO = Path("/proc/meminfo")


class NodeResources(TypedDict):
    cpu_count: int
    load_average: list[float] | None
    memory_total: int | None
    memory_available: int | None


def cpu_count() -> int:
    """The CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def memory_info(path: Path = MEMINFO) -> tuple[int | None, int | None]:
    """``(total, available)`` memory in bytes from ``/proc/meminfo``; ``None`` when unknown."""
    values: dict[str, int] = {}
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        logger.debug("Cannot read %s: %s", path, exc)
        return None, None
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if key in ("MemTotal", "MemAvailable") and parts and parts[0].isdigit():
            unit = parts[1].lower() if len(parts) > 1 else ""
            values[key] = int(parts[0]) * (1024 if unit == "kb" else 1)
    return values.get("MemTotal"), values.get("MemAvailable")


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages, ``None`` where the system has none."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def node_resources() -> NodeResources:
    total, available = memory_info()
    return {
        "cpu_count": cpu_count(),
        "load_average": load_average(),
        "memory_total": total,
        "memory_available": available,
    }
