"""System checks for the app's settings (``manage.py check``).

The checks tagged ``ipynbsrv_backends`` read settings only. :func:`check_nodes` reads the
database and is tagged ``database``: it runs with ``manage.py check --database default``
(and before ``migrate``). Nothing here touches the network: backend configurations are
validated by their classes' own validators, which contact nothing.

Ids: ``ipynbsrv_backends.E001`` and up for errors, ``W001`` and up for warnings (listed in
``docs/settings.md``).
"""

from __future__ import annotations

import difflib
import logging
import string
from collections.abc import Mapping
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.core.exceptions import ValidationError
from django.db import DatabaseError
from django.utils.module_loading import import_string

from . import errors
from .backends.options import CONTAINER_OPTIONS
from .conf import DEFAULTS, SETTING_NAME
from .contract import ContainerBackend
from .placement import ALGORITHMS, ServerSelectionAlgorithm
from .validation import validate_volumes
from .wire.signing import valid_key

logger = logging.getLogger(__name__)

__all__ = ["TAG", "check_settings", "check_nodes"]

TAG = "ipynbsrv_backends"
OBJ = SETTING_NAME

#: Placeholders each template setting may use.
VOLUME_NAMES = {"uid": 2000, "username": "someone", "name": "notebook"}
BASE_URL_NAMES = {"uid": 2000, "username": "someone", "name": "notebook"}
#: Container options every backend understands (the contract); others are passed on.
CONTRACT_OPTIONS = CONTAINER_OPTIONS


def _id(kind: str, number: int) -> str:
    return f"{TAG}.{kind}{number:03d}"


def _error(number: int, msg: str, hint: str | None = None) -> Error:
    return Error(msg, hint=hint, obj=OBJ, id=_id("E", number))


def _warning(number: int, msg: str, hint: str | None = None) -> Warning:
    return Warning(msg, hint=hint, obj=OBJ, id=_id("W", number))


def _setting(key: str) -> str:
    return f"{SETTING_NAME}[{key!r}]"


@register(TAG)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Every key of ``IPYNBSRV_BACKENDS``, and the apps the package needs."""
    messages: list[CheckMessage] = []
    if not apps.is_installed("rest_framework"):
        messages.append(_error(
            12, "'rest_framework' is not in INSTALLED_APPS.",
            hint="ipynbsrv_backends' API and host API are Django REST framework views; add 'rest_framework'.",
        ))
    user = getattr(settings, SETTING_NAME, {})
    if user is None:
        user = {}
    if not isinstance(user, Mapping):
        messages.append(_error(1, f"{SETTING_NAME} must be a dict, not {type(user).__name__}."))
        return messages
    for key in user:
        if key not in DEFAULTS:
            close = difflib.get_close_matches(str(key), list(DEFAULTS), n=1)
            hint = f"Did you mean {close[0]!r}?" if close else f"Known keys: {', '.join(sorted(DEFAULTS))}."
            messages.append(_error(2, f"Unknown key {key!r} in {SETTING_NAME}.", hint=hint))
    value = {**DEFAULTS, **user}
    messages += _check_backend_classes(value["BACKEND_CLASSES"])
    messages += _check_algorithm(value["SERVER_SELECTION_ALGORITHM"])
    messages += _check_numbers(value)
    messages += _check_ports(value["CONTAINER_PORTS"])
    messages += _check_volumes(value["CONTAINER_VOLUMES"])
    messages += _check_options(value["CONTAINER_OPTIONS"])
    messages += _check_base_url(value["CONTAINER_BASE_URL"])
    messages += _check_hostapi(value)
    messages += _check_proxy(value)
    messages += _check_quotas(value)
    messages += _check_idle_culling(value["IDLE_CULLING"])
    return messages


def _check_quotas(value: Mapping[str, Any]) -> list[CheckMessage]:
    from .services.quotas import config_problems

    config = value["QUOTAS"]
    problems = config_problems(config)
    options = value["CONTAINER_OPTIONS"] if isinstance(value["CONTAINER_OPTIONS"], Mapping) else {}
    if not problems:
        limited = [config.get("default") or {}, *(config.get("groups") or {}).values(),
                   *(config.get("users") or {}).values()]
        for key, option in (("memory", "mem_limit"), ("cpus", "cpu_limit")):
            if any(limits.get(key) is not None for limits in limited) and options.get(option) is None:
                problems.append(f"a {key} quota is set but CONTAINER_OPTIONS has no {option!r}: containers "
                                f"without one cannot be counted and would be refused")
    return [_error(17, f"{_setting('QUOTAS')}: {problem}.",
                   hint="See docs/operations.md, \"Quotas\".") for problem in problems]


def _check_backend_classes(classes: Any) -> list[CheckMessage]:
    key = _setting("BACKEND_CLASSES")
    if not isinstance(classes, Mapping) or not all(
        isinstance(name, str) and isinstance(path, str) for name, path in classes.items()
    ):
        return [_error(3, f"{key} must map short names to dotted paths, such as "
                          "{'Docker': 'ipynbsrv_backends.backends.Docker'}.")]
    messages: list[CheckMessage] = []
    for name, path in classes.items():
        problem = _not_a_subclass(path, ContainerBackend)
        if problem:
            messages.append(_error(4, f"{key}[{name!r}]: {problem}",
                                   hint="Name a ContainerBackend subclass by its dotted path."))
    return messages


def _not_a_subclass(path: str, base: type) -> str | None:
    """Why ``path`` is not an importable subclass of ``base`` (``None`` when it is)."""
    try:
        cls = import_string(path)
    except ImportError as exc:
        return f"{path!r} cannot be imported ({exc})."
    if not (isinstance(cls, type) and issubclass(cls, base)):
        return f"{path!r} is not a {base.__name__} subclass."
    return None


def _check_algorithm(name: Any) -> list[CheckMessage]:
    if isinstance(name, str) and name in ALGORITHMS:
        return []
    problem = _not_a_subclass(name, ServerSelectionAlgorithm) if isinstance(name, str) and "." in name \
        else f"{name!r} is not a known algorithm."
    if problem is None:
        return []
    return [_error(5, f"{_setting('SERVER_SELECTION_ALGORITHM')}: {problem}",
                   hint=f"Use one of {', '.join(ALGORITHMS)} or the dotted path of a ServerSelectionAlgorithm.")]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_numbers(value: Mapping[str, Any]) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    ttl = value["HEALTH_TTL"]
    if not _is_number(ttl) or ttl < 0:
        messages.append(_error(6, f"{_setting('HEALTH_TTL')} must be a number of seconds from 0 up, not {ttl!r}."))
    offset = value["UID_OFFSET"]
    if not isinstance(offset, int) or isinstance(offset, bool) or not 0 <= offset < 2**31:
        messages.append(_error(6, f"{_setting('UID_OFFSET')} must be a whole number from 0 up, not {offset!r}."))
    limit = value["MAX_CONTAINERS_PER_USER"]
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        messages.append(_error(6, f"{_setting('MAX_CONTAINERS_PER_USER')} must be None (no limit) or a whole "
                                  f"number from 1 up, not {limit!r}."))
    workers = value["CREATE_WORKERS"]
    if not isinstance(workers, int) or isinstance(workers, bool) or not 1 <= workers <= 64:
        messages.append(_error(6, f"{_setting('CREATE_WORKERS')} must be a whole number from 1 to 64, "
                                  f"not {workers!r}."))
    return messages


def _check_ports(ports: Any) -> list[CheckMessage]:
    key = _setting("CONTAINER_PORTS")
    if not isinstance(ports, (list, tuple)):
        return [_error(7, f"{key} must be a list of port numbers, such as [8888].")]
    for port in ports:
        if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
            return [_error(7, f"{key}: {port!r} is not a port number from 1 to 65535.")]
    if len(set(ports)) != len(ports):
        return [_error(7, f"{key} lists a port twice.")]
    return []


def _placeholders(template: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(template) if field is not None}


def _fill(template: Any, names: Mapping[str, Any]) -> Any:
    if isinstance(template, str):
        return template.format(**names)
    if isinstance(template, (list, tuple)):
        return [_fill(item, names) for item in template]
    if isinstance(template, Mapping):
        return {key: _fill(item, names) for key, item in template.items()}
    return template


def _check_volumes(volumes: Any) -> list[CheckMessage]:
    key = _setting("CONTAINER_VOLUMES")
    try:
        validate_volumes(_fill(volumes, VOLUME_NAMES))
    except (KeyError, IndexError, ValueError) as exc:
        return [_error(8, f"{key} uses an unknown placeholder ({exc}).",
                       hint="Templates may use {uid}, {username} and {name}.")]
    except errors.InvalidArgumentError as exc:
        return [_error(8, f"{key}: {exc}", hint="Each volume is {'source': ..., 'target': ..., 'mode': 'rw'|'ro'}.")]
    return []


def _check_options(options: Any) -> list[CheckMessage]:
    key = _setting("CONTAINER_OPTIONS")
    if not isinstance(options, Mapping):
        return [_error(9, f"{key} must be a dict of options, such as {{'mem_limit': '1g'}}.")]
    messages: list[CheckMessage] = []
    for name, option in options.items():
        validator = CONTRACT_OPTIONS.get(name)
        if validator is None:
            messages.append(_warning(2, f"{key}: {name!r} is not an option every backend understands.",
                                     hint=f"Backends must understand {', '.join(CONTRACT_OPTIONS)}; a backend "
                                          "that does not know this one refuses to create containers."))
            continue
        try:
            validator(option)
        except errors.InvalidArgumentError as exc:
            messages.append(_error(9, f"{key}: {exc}"))
    return messages


def _check_base_url(template: Any) -> list[CheckMessage]:
    key = _setting("CONTAINER_BASE_URL")
    if not isinstance(template, str) or not template.startswith("/"):
        return [_error(10, f"{key} must be a path starting with '/', such as '/notebooks/{{username}}/{{name}}/'.")]
    try:
        unknown = _placeholders(template) - set(BASE_URL_NAMES)
        template.format(**BASE_URL_NAMES)
    except (ValueError, KeyError, IndexError) as exc:
        return [_error(10, f"{key} is not a valid template ({exc}).")]
    if unknown:
        return [_error(10, f"{key} uses unknown placeholder(s) {', '.join(sorted(unknown))}.",
                       hint="Templates may use {uid}, {username} and {name}.")]
    return []



def _check_hostapi(value: Mapping[str, Any]) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    path = value["HOSTAPI_BACKEND"]
    problem = _not_a_subclass(path, ContainerBackend) if isinstance(path, str) else f"{path!r} is not a dotted path."
    if problem:
        messages.append(_error(11, f"{_setting('HOSTAPI_BACKEND')}: {problem}"))
    if not isinstance(value["HOSTAPI_BACKEND_OPTIONS"], Mapping):
        messages.append(_error(11, f"{_setting('HOSTAPI_BACKEND_OPTIONS')} must be a dict of constructor arguments."))
    elif not problem:
        messages += _check_backend_options(path, value["HOSTAPI_BACKEND_OPTIONS"])
    token = value["HOSTAPI_TOKEN"]
    if token is not None and not isinstance(token, str):
        messages.append(_error(11, f"{_setting('HOSTAPI_TOKEN')} must be a string or None."))
    key = value["HOSTAPI_SIGNING_KEY"]
    if key is not None and (not isinstance(key, str) or (key and not valid_key(key))):
        # Never echo the value: it is a secret.
        messages.append(_error(14, f"{_setting('HOSTAPI_SIGNING_KEY')} must be None, empty, or 32 to 256 "
                                   "printable characters without spaces."))
    state_dir = value["HOSTAPI_STATE_DIR"]
    if state_dir is not None and not isinstance(state_dir, str):
        messages.append(_error(14, f"{_setting('HOSTAPI_STATE_DIR')} must be a directory path or None."))
    for name, low, high in (("HOSTAPI_SIGNATURE_WINDOW", 1, 3600), ("HOSTAPI_KEY_GRACE", 0, 86400),
                            ("EVENTS_KEEP_DAYS", 1, 3650), ("EVENTS_STREAM_SECONDS", 10, 3600),
                            ("EVENTS_HEARTBEAT", 1, 120)):
        number = value[name]
        if isinstance(number, bool) or not isinstance(number, int) or not low <= number <= high:
            messages.append(_error(14, f"{_setting(name)} must be a whole number of seconds from {low} to {high}, "
                                       f"not {number!r}."))
    if value["HOSTAPI_INSECURE_NO_TOKEN"]:
        messages.append(_warning(
            1, f"{_setting('HOSTAPI_INSECURE_NO_TOKEN')} is on: the host API serves anyone who can reach it.",
            hint="Use it for local development only; set HOSTAPI_TOKEN (or IPYNBSRV_HOSTAPI_TOKEN) on real nodes.",
        ))
    return messages


def _check_backend_options(path: str, options: Mapping[str, Any]) -> list[CheckMessage]:
    """The node's backend options, checked by the class's own declaration (which contacts
    nothing and never echoes a secret)."""
    cls = import_string(path)
    validator = getattr(cls, "validate_options", None)
    if validator is None:
        return []
    try:
        validator(**options)
    except errors.InvalidArgumentError as exc:
        table = getattr(cls, "OPTION_TABLE", None)
        return [_error(11, f"{_setting('HOSTAPI_BACKEND_OPTIONS')}: {exc}",
                       hint=table.help_text() if table is not None else None)]
    except TypeError as exc:  # keys that are not names
        return [_error(11, f"{_setting('HOSTAPI_BACKEND_OPTIONS')} must map option names to values ({exc}).")]
    return []


def _check_proxy(value: Mapping[str, Any]) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    if not isinstance(value["PROXY_STAFF_ACCESS"], bool):
        messages.append(_error(13, f"{_setting('PROXY_STAFF_ACCESS')} must be True or False."))
    port = value["PROXY_PORT"]
    if port is not None and (not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535):
        messages.append(_error(13, f"{_setting('PROXY_PORT')} must be None or a port number, not {port!r}."))
    elif port is not None and isinstance(ports := value["CONTAINER_PORTS"], (list, tuple)) and port not in ports:
        messages.append(_error(13, f"{_setting('PROXY_PORT')} is {port}, not one of {_setting('CONTAINER_PORTS')}.",
                               hint="The proxy can only reach a port the containers publish."))
    return messages


def _check_idle_culling(raw: Any) -> list[CheckMessage]:
    from .services.idlepolicy import load_policy

    try:
        load_policy(raw, _setting("IDLE_CULLING"))
    except ValueError as exc:
        return [_error(30, str(exc), hint="See docs/operations.md, \"Idle culling\", for a settings.py example.")]
    return []


@register(Tags.database)
def check_nodes(app_configs: Any = None, databases: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Every node's backend class is still allowed and its configuration still validates
    (the allow-list or a backend may have changed since the node was saved)."""
    if not databases:
        return []
    from .models import Node
    from .registry import allowed_backends, validate_backend_config

    messages: list[CheckMessage] = []
    try:
        allowed = allowed_backends()
    except errors.BackendError:
        return []  # reported by check_settings (E003)
    for alias in databases:
        try:
            nodes = list(Node.objects.using(alias).select_related("backend"))
        except DatabaseError:
            continue  # not migrated yet (this check runs before migrate)
        for node in nodes:
            kind = node.backend.kind
            if kind not in allowed:
                messages.append(Error(
                    f"Node {node.name!r} uses the backend class {kind!r}, which is not in "
                    f"{_setting('BACKEND_CLASSES')}.",
                    hint=f"Add it back to the allow-list or move the node to another backend "
                         f"(allowed: {', '.join(sorted(allowed)) or 'none'}).",
                    obj=node, id=_id("E", 20),
                ))
                continue
            try:
                validate_backend_config(kind, node.effective_config())
            except ValidationError as exc:
                messages.append(Error(
                    f"Node {node.name!r} has an invalid {kind} configuration: {' '.join(exc.messages)}",
                    hint="Fix the backend's configuration or the node's overrides in the admin.",
                    obj=node, id=_id("E", 21),
                ))
    return messages
