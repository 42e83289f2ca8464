"""How far an image pull got, from the Docker engine's pull stream.

The engine answers a pull with one JSON object per event and layer: ``Pulling fs layer``,
``Waiting``, ``Downloading`` (with ``progressDetail`` ``{current, total}`` in bytes),
``Verifying Checksum``, ``Download complete``, ``Extracting`` (bytes again), ``Pull
complete``, or ``Already exists`` for a layer the engine has. :class:`PullProgress` folds
those events into a small summary (a plain dict, so it crosses the host API unchanged)::

    {"layers": 7, "layers_done": 3, "bytes_done": 120_000_000, "bytes_total": 376_000_000,
     "sizes_known": True}

``layers_done`` counts layers pulled or already there; the bytes are the download of the
layers the engine lacked (a layer's size is known once its download starts, so
``sizes_known`` is false while some are still waiting). :func:`describe` turns a summary into
the words the records show: ``3 of 7 layers, 120 of 376 MB (32 %)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["PullProgress", "describe", "valid_summary", "SUMMARY_KEYS"]

SUMMARY_KEYS = ("layers", "layers_done", "bytes_done", "bytes_total", "sizes_known")


@dataclass
class _Layer:
    current: int = 0
    total: int | None = None
    done: bool = False
    existed: bool = False


def _bytes(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


class PullProgress:
    """Feed it the engine's decoded pull events; read :meth:`summary`."""

    def __init__(self) -> None:
        self._layers: dict[str, _Layer] = {}

    def feed(self, event: Any) -> bool:
        """Take one event; True when the summary changed."""
        if not isinstance(event, Mapping):
            return False
        status, layer_id = event.get("status"), event.get("id")
        if not isinstance(status, str) or not isinstance(layer_id, str) or not layer_id:
            return False  # "Digest: ...", "Status: ...", errors: no layer
        if status.startswith("Pulling from"):
            return False  # its id is the tag
        before = self.summary()
        layer = self._layers.setdefault(layer_id, _Layer())
        detail = event.get("progressDetail")
        detail = detail if isinstance(detail, Mapping) else {}
        current, total = _bytes(detail.get("current")), _bytes(detail.get("total"))
        if status == "Already exists":
            layer.done = layer.existed = True
        elif status == "Downloading":
            if total:
                layer.total = total
            if current is not None:
                layer.current = min(current, layer.total) if layer.total else current
        elif status in ("Verifying Checksum", "Download complete", "Extracting", "Pull complete"):
            if status == "Extracting" and total and layer.total is None:
                layer.total = total
            if layer.total is not None:
                layer.current = layer.total  # downloaded: what is left is unpacking it
            if status == "Pull complete":
                layer.done = True
        return self.summary() != before

    def summary(self) -> dict[str, Any]:
        fetched = [layer for layer in self._layers.values() if not layer.existed]
        return {
            "layers": len(self._layers),
            "layers_done": sum(1 for layer in self._layers.values() if layer.done),
            "bytes_done": sum(layer.current for layer in fetched),
            "bytes_total": sum(layer.total or 0 for layer in fetched),
            "sizes_known": all(layer.total is not None or layer.done for layer in fetched),
        }


def valid_summary(value: Any) -> bool:
    """A summary as :meth:`PullProgress.summary` makes it (checked where one arrives over HTTP)."""
    if not isinstance(value, Mapping) or set(value) != set(SUMMARY_KEYS):
        return False
    counts = [value[key] for key in SUMMARY_KEYS[:4]]
    return all(_bytes(count) is not None for count in counts) and isinstance(value["sizes_known"], bool)


def _mb(count: int) -> str:
    megabytes = count / 1e6
    return f"{megabytes:.1f}" if megabytes < 10 else f"{megabytes:.0f}"


def describe(summary: Mapping[str, Any]) -> str:
    """``3 of 7 layers, 120 of 376 MB (32 %)``; while some sizes are unknown, ``120 MB of
    376 MB known so far``."""
    text = f"{summary['layers_done']} of {summary['layers']} layers"
    done, total = summary["bytes_done"], summary["bytes_total"]
    if total:
        if summary["sizes_known"]:
            text += f", {_mb(done)} of {_mb(total)} MB ({int(100 * done / total)} %)"
        else:
            text += f", {_mb(done)} MB of {_mb(total)} MB known so far"
    return text
