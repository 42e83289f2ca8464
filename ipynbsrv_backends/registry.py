"""The backend registry: which backend classes a node may use, and one backend instance per
node.

Only classes named in the ``IPYNBSRV_BACKENDS['BACKEND_CLASSES']`` allow-list are ever
imported; what an admin types into a form is looked up there, never imported as a dotted
path. A node's configuration is validated by its backend class (the same validator for the
admin form, the API and the checks). Instances are cached per node and rebuilt when the
node's effective configuration changes.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import threading
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.utils.module_loading import import_string

from . import errors
from .conf import app_settings
from .contract import ContainerBackend

if TYPE_CHECKING:
    from .models import Node

logger = logging.getLogger(__name__)

MASK = "********"
_SECRET_WORDS = ("token", "password", "secret", "key", "credential")

_cache: dict[int, tuple[str, ContainerBackend]] = {}
_cache_lock = threading.Lock()


def allowed_backends() -> dict[str, str]:
    classes = app_settings.BACKEND_CLASSES
    if not isinstance(classes, dict):
        raise errors.InvalidArgumentError("IPYNBSRV_BACKENDS['BACKEND_CLASSES'] must map short names to dotted paths.")
    return dict(classes)


def backend_choices() -> list[tuple[str, str]]:
    return [(name, name) for name in allowed_backends()]


def backend_class(kind: str) -> type[ContainerBackend]:
    """The class for a short name from the allow-list."""
    classes = allowed_backends()
    if kind not in classes:
        allowed = ", ".join(sorted(classes)) or "none"
        raise errors.InvalidArgumentError(
            f"Unknown backend class {kind!r}: pick one of {allowed} (IPYNBSRV_BACKENDS['BACKEND_CLASSES'])."
        )
    try:
        cls = import_string(classes[kind])
    except ImportError as exc:
        raise errors.InvalidArgumentError(f"The backend class {kind!r} ({classes[kind]}) cannot be imported: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, ContainerBackend)):
        raise errors.InvalidArgumentError(f"{classes[kind]} is not a ContainerBackend.")
    return cls


def secret_keys(kind: str, config: dict[str, Any] | None = None) -> set[str]:
    """The configuration keys whose values are never shown."""
    try:
        declared = set(getattr(backend_class(kind), "SECRET_OPTIONS", ()))
    except errors.BackendError:
        declared = set()
    guessed = {key for key in (config or {}) if any(word in key.lower() for word in _SECRET_WORDS)}
    return declared | guessed


def mask_config(kind: str, config: dict[str, Any] | None) -> dict[str, Any]:
    """The configuration with every secret value replaced by a mask."""
    config = dict(config or {})
    for key in secret_keys(kind, config):
        if config.get(key):
            config[key] = MASK
    return config


def unmask_config(kind: str, new: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
    """Put the stored secret back where a form sent the mask unchanged."""
    old = old or {}
    result = dict(new)
    for key, value in new.items():
        if value == MASK and key in old:
            result[key] = old[key]
    return result


def validate_backend_config(kind: str, config: Any, field: str | None = None) -> dict[str, Any]:
    """Check ``config`` with the backend class's own validator.

    Raises Django's ``ValidationError`` (on ``field`` when given) so forms show it; the
    message says which option is wrong.
    """

    def fail(message: str) -> ValidationError:
        return ValidationError({field: message} if field else message)

    if not isinstance(config, dict):
        raise fail("The configuration must be a JSON object of constructor arguments.")
    try:
        cls = backend_class(kind)
        validator = getattr(cls, "validate_options", None)
        if validator is not None:
            return validator(**config)
        signature = inspect.signature(cls)
        signature.bind(**config)
        return config
    except errors.BackendError as exc:
        raise fail(str(exc)) from exc
    except TypeError as exc:
        raise fail(f"Invalid {kind} configuration: {exc}") from exc


def _fingerprint(kind: str, config: dict[str, Any]) -> str:
    text = json.dumps([kind, config], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def get_backend(node: Node) -> ContainerBackend:
    """The node's backend instance: built once, rebuilt when its configuration changes."""
    kind = node.backend.kind
    config = node.effective_config()
    fingerprint = _fingerprint(kind, config)
    with _cache_lock:
        cached = _cache.get(node.pk)
        if cached is not None and cached[0] == fingerprint:
            return cached[1]
    cls = backend_class(kind)
    try:
        instance = cls(**config)
    except errors.BackendError:
        raise
    except TypeError as exc:
        raise errors.InvalidArgumentError(f"The node {node.name!r} has an invalid {kind} configuration: {exc}") from exc
    with _cache_lock:
        replaced = _cache.get(node.pk)
        _cache[node.pk] = (fingerprint, instance)
    if replaced is not None:
        _close(replaced[1])
    logger.info("Backend for node %s: %r", node.name, instance)
    return instance


def _close(instance: ContainerBackend) -> None:
    """Release a dropped instance's connections (HttpRemote pools them)."""
    close = getattr(instance, "close", None)
    if callable(close):
        try:
            close()
        except Exception:  # noqa: BLE001 - closing is best effort; never fail the caller
            logger.debug("Closing %r failed", instance, exc_info=True)


def forget_backend(node_pk: int | None = None) -> None:
    """Drop the cached instance of one node (or all), closing its connections."""
    with _cache_lock:
        if node_pk is None:
            dropped = [instance for _, instance in _cache.values()]
            _cache.clear()
        else:
            entry = _cache.pop(node_pk, None)
            dropped = [entry[1]] if entry else []
    for instance in dropped:
        _close(instance)
