"""How much each owner's named volumes hold on this engine, measured now and then.

The engine answers volume sizes only by walking every volume's files (``system df``), which can
take seconds on a busy node: so the ``Docker`` backend measures in a background thread, at most
every ``volume_usage_every`` seconds, and its node's status reports the last measurement
(``resources.volume_usage``: owner -> bytes; absent until the first one is done). Off unless that
option is set. Only this backend's volumes (its ``instance`` label) count, by their owner label.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from .constants import L_INSTANCE, L_OWNER

logger = logging.getLogger(__name__)

__all__ = ["VolumeUsage", "usage_by_owner"]


def usage_by_owner(df: dict[str, Any], instance: str) -> dict[str, int]:
    """The bytes of ``instance``'s volumes per owner label, from the engine's ``system df``
    answer (a volume the engine could not size, ``-1``, counts nothing)."""
    found: dict[str, int] = {}
    for volume in df.get("Volumes") or []:
        labels = volume.get("Labels") or {}
        owner = labels.get(L_OWNER)
        if labels.get(L_INSTANCE) != instance or not owner:
            continue
        size = (volume.get("UsageData") or {}).get("Size")
        if isinstance(size, int) and size > 0:
            found[owner] = found.get(owner, 0) + size
    return found


class VolumeUsage:
    """The last measurement and the thread that takes the next one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._usage: dict[str, int] | None = None
        self._measured_at = 0.0
        self._running = False

    def current(self, backend: Any) -> dict[str, int] | None:
        """The last measurement (``None``: none yet, or off); starts the next one in the
        background when the last is older than ``backend.volume_usage_every``."""
        every = backend.volume_usage_every
        if every is None:
            return None
        with self._lock:
            if not self._running and time.monotonic() - self._measured_at >= every:
                self._running = True
                threading.Thread(target=self._measure, args=(backend,), name="volume-usage", daemon=True).start()
            return dict(self._usage) if self._usage is not None else None

    def _measure(self, backend: Any) -> None:
        usage = None
        try:
            with backend._engine():
                api = backend._api()
                df = api._result(api._get(api._url("/system/df"), params={"type": "volume"}), True)
            usage = usage_by_owner(df, backend.instance)
        except Exception as exc:  # noqa: BLE001 - the status goes on with the last measurement
            logger.warning("Measuring the volumes of %s failed: %s", backend, exc)
        with self._lock:
            if usage is not None:
                self._usage = usage
            self._measured_at = time.monotonic()
            self._running = False
