"""The ``Memory`` backend's constructor options, declared once (see :mod:`..options`)."""

from __future__ import annotations

import os
from typing import Any

from ... import errors
from ...validation import NAME_RE, validate_pk
from ..options import Option, Options

__all__ = ["MEMORY_OPTIONS"]


def _name(name: str, value: Any) -> str:
    if not isinstance(value, str) or not NAME_RE.fullmatch(value.lower()):
        raise errors.InvalidArgumentError(f"Invalid {name} {value!r}: use letters, digits, '-', '_' and '.'.")
    return value


def _images(name: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(i, str) for i in value):
        raise errors.InvalidArgumentError("images must be a list of image references such as 'ipynbsrv/notebook:latest'.")
    for ref in value:
        validate_pk(ref, "image")
    return tuple(value)


def _volume_roots(name: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(r, str) and r.startswith("/") for r in value):
        raise errors.InvalidArgumentError("allowed_volume_roots must be a list of absolute host paths.")
    return tuple(os.path.realpath(r) for r in value)


def _registry(name: str, value: Any) -> str | None:
    if value is not None and (not isinstance(value, str) or not value):
        raise errors.InvalidArgumentError("registry must be a name such as 'registry.local:5000', or null.")
    return value


def _port_range(name: str, value: Any) -> tuple[int, int]:
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(p, int) and 1 <= p <= 65535 for p in value) or value[0] > value[1]):
        raise errors.InvalidArgumentError("port_range must be [low, high] with 1 <= low <= high <= 65535.")
    return (value[0], value[1])


def _stop_timeout(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise errors.InvalidArgumentError("stop_timeout must be a whole number of seconds from 0 up.")
    return value


MEMORY_OPTIONS = Options(
    "Memory backend",
    Option("host", "default", "The simulated engine: backends with the same `host` share one (names and host ports "
           "are taken across it, as on one real engine).", _name),
    Option("instance", "default", "As `Docker`'s: each instance sees only its own containers, images and "
           "snapshots on the host.", _name),
    Option("name_prefix", "ipynbsrv", "Prefix of the container pks it makes (`ipynbsrv-u2501-thesis`), as "
           "`Docker`'s.", _name),
    Option("images", ("ipynbsrv/notebook:latest",), "The base images the host has (image references); "
           "containers may be created from these and from the images committed on it.", _images,
           shown_default='`["ipynbsrv/notebook:latest"]`'),
    Option("allowed_volume_roots", (), "Real host directories under which bind-mount sources may lie (resolved); "
           "the small shell reads and writes files there. Empty: only named volumes.", _volume_roots,
           shown_default="`()`"),
    Option("registry", None, "A name (such as `\"registry.local:5000\"`): snapshots travel through an in-memory "
           "registry of that name between the backends of this process that share it.", _registry),
    Option("port_range", (20000, 32767), "`[LOW, HIGH]`: where a port given as `external: None` is reserved "
           "(never bound).", _port_range),
    Option("stop_timeout", 10, "Seconds, as `Docker`'s (kept for the same configuration; stopping is "
           "immediate).", _stop_timeout),
)
