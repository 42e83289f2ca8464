"""The one local backend a host API process serves.

Built lazily, once per process, from ``IPYNBSRV_BACKENDS["HOSTAPI_BACKEND"]`` and
``["HOSTAPI_BACKEND_OPTIONS"]``. The cache is keyed by the process id, so a worker forked
from a process that already built one builds its own (a Docker client's connections must
not be shared across a fork), and by the configuration, so ``override_settings`` in tests
gets a fresh instance.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from ..conf import SETTING_NAME, app_settings
from ..contract import ContainerBackend
from ..errors import BackendError, BackendUnavailableError, InvalidArgumentError

logger = logging.getLogger(__name__)

__all__ = ["get_backend", "build_backend", "load_backend_class", "reset_backend", "describe_backend"]

_lock = threading.Lock()
_cache: dict[str, Any] = {"key": None, "backend": None}


def load_backend_class(dotted_path: str) -> type[ContainerBackend]:
    """Import the backend class named by ``dotted_path``; ``ImproperlyConfigured`` if it is
    not importable or not a :class:`ContainerBackend`."""
    if not isinstance(dotted_path, str) or "." not in dotted_path:
        raise ImproperlyConfigured(
            f"{SETTING_NAME}['HOSTAPI_BACKEND'] must be the dotted path of a backend class, "
            f"not {dotted_path!r}."
        )
    try:
        cls = import_string(dotted_path)
    except ImportError as exc:
        raise ImproperlyConfigured(
            f"{SETTING_NAME}['HOSTAPI_BACKEND'] = {dotted_path!r} cannot be imported: {exc}"
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, ContainerBackend)):
        raise ImproperlyConfigured(
            f"{SETTING_NAME}['HOSTAPI_BACKEND'] = {dotted_path!r} is not a ContainerBackend subclass."
        )
    return cls


def build_backend(dotted_path: str, options: dict[str, Any]) -> ContainerBackend:
    """A new backend instance (never cached).

    Raises ``ImproperlyConfigured`` when the class or its options are wrong, and lets a
    :class:`BackendError` of the constructor (e.g. the engine is down) through.
    """
    cls = load_backend_class(dotted_path)
    if not isinstance(options, dict):
        raise ImproperlyConfigured(
            f"{SETTING_NAME}['HOSTAPI_BACKEND_OPTIONS'] must be a dict of keyword arguments, "
            f"not {type(options).__name__}."
        )
    try:
        return cls(**options)
    except (TypeError, ValueError, InvalidArgumentError) as exc:
        raise ImproperlyConfigured(f"{dotted_path} rejected its options: {exc}") from exc


def describe_backend() -> str:
    """The configured backend's dotted path (for messages; never the options, which may
    hold secrets)."""
    return str(app_settings.HOSTAPI_BACKEND)


def get_backend() -> ContainerBackend:
    """This process's backend, built on first use.

    A configuration error is logged and raised as :class:`BackendError` (the request gets a
    500 with a message pointing at the node's log); a constructor that cannot reach the
    engine raises :class:`BackendUnavailableError`, and the next request tries again.
    """
    dotted = app_settings.HOSTAPI_BACKEND
    options = app_settings.HOSTAPI_BACKEND_OPTIONS
    key = f"{os.getpid()}|{dotted}|{json.dumps(options, sort_keys=True, default=repr)}"
    backend = _cache["backend"]
    if _cache["key"] == key and backend is not None:
        return backend
    with _lock:
        if _cache["key"] == key and _cache["backend"] is not None:
            return _cache["backend"]
        try:
            backend = build_backend(dotted, options)
        except ImproperlyConfigured as exc:
            logger.error("The host API backend is misconfigured: %s", exc)
            raise BackendError(
                "The node's host API backend is misconfigured; see the node's log."
            ) from exc
        except BackendError as exc:
            logger.warning("Could not build the host API backend %s: %s", dotted, exc)
            if isinstance(exc, BackendUnavailableError):
                raise
            raise BackendUnavailableError(f"The node's backend could not be started: {exc}") from exc
        _cache["key"] = key
        _cache["backend"] = backend
        logger.info("Host API backend %s ready in process %s", dotted, os.getpid())
        return backend


def reset_backend() -> None:
    """Forget the cached backend (tests, settings changes)."""
    with _lock:
        _cache["key"] = None
        _cache["backend"] = None
