"""Validation of the input every backend shares: names, ports, volumes, commands, times.

Each function returns the normalised value or raises
:class:`~ipynbsrv_backends.errors.InvalidArgumentError` with a message that says what was
wrong and what to do. Pure functions: nothing here touches the engine or the network.
"""

from __future__ import annotations

import datetime as dt
import decimal
import ipaddress
import os
import re
import shlex
import string
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from .contract import PortRecord, VolumeRecord
from .errors import InvalidArgumentError

__all__ = [
    "NAME_RE",
    "validate_name",
    "validate_username",
    "validate_path_name",
    "fill_names",
    "validate_uid",
    "validate_ports",
    "validate_volumes",
    "validate_cmd",
    "validate_env",
    "validate_mem_limit",
    "validate_cpu_limit",
    "validate_pids_limit",
    "MAX_MEMORY",
    "MAX_PIDS",
    "validate_pk",
    "validate_opaque_pk",
    "parse_since",
    "validate_tail",
    "iso_utc",
    "parse_engine_time",
    "CreateArguments",
    "validate_create_arguments",
]

#: Container, image and snapshot names: lower-case letters and digits, with single
#: ``-``, ``_`` or ``.`` between them. They end up in engine names and image references.
#: Every pattern here ends in ``\Z`` (``$`` would also match before a trailing newline) and
#: is used with ``fullmatch``, so the whole string is checked.
NAME_RE = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*\Z")
NAME_MAX = 63
USERNAME_RE = re.compile(r"^[\w.@+-]+\Z")
#: A user or container name the master places into a host path or a URL (the
#: ``{username}`` and ``{name}`` of ``CONTAINER_VOLUMES`` and ``CONTAINER_BASE_URL``): the
#: characters Django's username validator allows, but not starting with ``.`` (so never
#: ``.``, ``..``, or a hidden directory such as ``.zfs`` or ``.snapshot`` next to the others).
PATH_NAME_RE = re.compile(r"^[\w@+-][\w.@+-]*\Z")
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
VOLUME_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")
MEM_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*([bkmg]?)b?\Z", re.IGNORECASE | re.ASCII)
MIN_MEMORY = 6 * 1024 * 1024  # the engine refuses less than 6 MiB
#: The engine keeps a memory limit in a signed 64-bit number of bytes.
MAX_MEMORY = 2**63 - 1
#: The kernel's most processes a cgroup may be limited to (``PID_MAX_LIMIT``, 2**22): a
#: larger ``pids_limit`` is stored by the engine but makes every start fail.
MAX_PIDS = 4_194_304
MIN_CPUS = 0.01
#: Far beyond any host, and well within what the engine's ``NanoCpus`` (int64) can carry.
MAX_CPUS = 1024
MAX_PK = 512

# The grammar of an image reference, as the engine parses one:
# ``[DOMAIN[:PORT]/]PATH[/PATH...][:TAG][@ALGORITHM:HEX]``. Path components are lower-case
# letters and digits joined by ``.``, ``_``, ``__`` or dashes; no component is empty, ``.``
# or ``..``, so a pk can never walk to another object of the engine's API.
_ALNUM = r"[a-z0-9]+"
_PATH_COMPONENT = rf"{_ALNUM}(?:(?:[._]|__|-+){_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9A-Fa-f:]+\])(?::[0-9]{{1,5}})?"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9A-Fa-f]{32,128}"
REFERENCE_RE = re.compile(
    rf"(?P<name>(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)(?::{_TAG})?(?:@{_DIGEST})?",
    re.ASCII,
)
#: An image's id as the engine gives it.
IMAGE_ID_RE = re.compile(r"sha256:[0-9a-f]{64}", re.ASCII)
#: A container's engine name (what this package's container pks are) or id.
CONTAINER_PK_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,254}", re.ASCII)
REFERENCE_NAME_MAX = 255


def validate_name(value: Any, what: str = "name") -> str:
    if not isinstance(value, str) or not value:
        raise InvalidArgumentError(f"The {what} must be a non-empty string.")
    if len(value) > NAME_MAX or not NAME_RE.fullmatch(value):
        raise InvalidArgumentError(
            f"Invalid {what} {value[:80]!r}: use 1 to {NAME_MAX} lower-case letters and digits, "
            "optionally separated by single '-', '_' or '.' (for example 'my-notebook')."
        )
    return value


def validate_username(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidArgumentError("The username must be a non-empty string.")
    if len(value) > 150 or not USERNAME_RE.fullmatch(value):
        raise InvalidArgumentError(
            f"Invalid username {value[:80]!r}: use at most 150 letters, digits and @/./+/-/_ "
            "(what Django allows)."
        )
    return value


def validate_path_name(value: str, what: str = "username", placeholder: str = "username") -> str:
    """``value`` when it is safe as one path segment, else :class:`InvalidArgumentError`.

    Used as is, a safe name is its own directory: two different names never give the
    same path, and none gives the directory above (``.``/``..``) or a hidden one.
    """
    if len(value) > 150 or not PATH_NAME_RE.match(value):
        raise InvalidArgumentError(
            f"The {what} {value[:80]!r} cannot be used in a host path or URL "
            f"(CONTAINER_VOLUMES or CONTAINER_BASE_URL place {{{placeholder}}} there): it must be 1 to 150 "
            "letters, digits and @/./+/-/_, not starting with '.'. Ask an administrator to rename it, "
            "or to use {uid} instead in those settings."
        )
    return value


_PLACED = {"username": "username", "name": "container name"}


def fill_names(template: Any, names: Mapping[str, Any]) -> Any:
    """``template`` (a string, or lists and dicts of them) with ``{placeholder}`` fields
    filled from ``names``. Every string name a template uses must pass
    :func:`validate_path_name`: the master's templates build host paths and URLs."""
    if isinstance(template, str):
        for _text, field, _spec, _conversion in string.Formatter().parse(template):
            if field is None:
                continue
            key = re.split(r"[.\[]", field, maxsplit=1)[0]
            value = names.get(key)
            if isinstance(value, str):
                validate_path_name(value, _PLACED.get(key, f"value of {{{key}}}"), key)
        return template.format(**names)
    if isinstance(template, (list, tuple)):
        return [fill_names(item, names) for item in template]
    if isinstance(template, Mapping):
        return {key: fill_names(value, names) for key, value in template.items()}
    return template


def validate_uid(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**31:
        raise InvalidArgumentError(f"Invalid uid {value!r}: it must be a whole number from 0 to 2147483647.")
    return value


def validate_opaque_pk(value: Any, what: str = "container") -> str:
    """The shape every backend's pk has (for a client such as ``HttpRemote``, to which pks
    are opaque): a non-empty string of at most :data:`MAX_PK` characters without NUL or line
    breaks. The backend that owns the pk checks its grammar (:func:`validate_pk`)."""
    if not isinstance(value, str) or not value or len(value) > MAX_PK or any(c in value for c in "\x00\n\r"):
        shown = repr(value[:80]) if isinstance(value, str) else type(value).__name__
        raise InvalidArgumentError(
            f"Invalid {what} pk {shown}: a valid one is a non-empty string of at most {MAX_PK} characters "
            "without NUL or line breaks; pass the pk the backend returned."
        )
    return value


def validate_pk(value: Any, what: str = "container") -> str:
    """A pk as the engine's grammar allows it, before it goes into an engine URL.

    A container pk is an engine name or id (letters, digits, ``_``, ``.``, ``-``; no ``/``);
    an image or snapshot pk is an image reference or an image id (``sha256:`` and 64 hex
    digits). Anything else (``..`` or empty segments, other characters, over-long values) is
    refused with a message that says what a valid one looks like."""
    validate_opaque_pk(value, what)  # first, so every backend words these refusals alike
    if what == "container":
        ok = isinstance(value, str) and CONTAINER_PK_RE.fullmatch(value) is not None
        shape = ("a container's engine name or id: 1 to 255 letters, digits, '_', '.' and '-', "
                 "starting with a letter or digit, such as 'ipynbsrv-u1000-notebook'")
    else:
        ok = False
        if isinstance(value, str) and len(value) <= MAX_PK:
            if IMAGE_ID_RE.fullmatch(value):
                ok = True
            elif (match := REFERENCE_RE.fullmatch(value)) is not None:
                ok = len(match.group("name")) <= REFERENCE_NAME_MAX
        shape = ("an image reference such as 'registry.example:5000/team/image:tag' (lower-case path "
                 "components of letters and digits joined by '.', '_', '__' or '-', separated by single "
                 "'/', with an optional ':tag' and '@sha256:<hex digest>') or an image id "
                 "'sha256:<64 hex digits>'")
    if not ok:
        shown = repr(value[:80]) if isinstance(value, str) else type(value).__name__
        raise InvalidArgumentError(
            f"Invalid {what} pk {shown}: a valid one is {shape}; pass the pk the backend returned."
        )
    return value


def _port_number(value: Any, what: str, *, allow_none: bool) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        extra = " or null for a free port" if allow_none else ""
        raise InvalidArgumentError(f"Invalid {what} port {value!r}: use a number from 1 to 65535{extra}.")
    return value


def validate_ports(ports: Any) -> list[PortRecord]:
    if ports is None:
        return []
    if not isinstance(ports, (list, tuple)):
        raise InvalidArgumentError("ports must be a list of {address, external, internal} records.")
    result: list[PortRecord] = []
    seen: set[int] = set()
    for port in ports:
        if not isinstance(port, Mapping):
            raise InvalidArgumentError(f"Invalid port record {port!r}: expected {{address, external, internal}}.")
        unknown = set(port) - {"address", "external", "internal"}
        if unknown:
            raise InvalidArgumentError(f"Unknown keys in a port record: {', '.join(sorted(unknown))}.")
        address = port.get("address")
        try:
            address = str(ipaddress.ip_address(address if address is not None else ""))
        except ValueError:
            raise InvalidArgumentError(
                f"Invalid port address {address!r}: use an IP address such as 127.0.0.1 or the node's internal address."
            ) from None
        internal = _port_number(port.get("internal"), "internal", allow_none=False)
        assert internal is not None
        external = _port_number(port.get("external"), "external", allow_none=True)
        if internal in seen:
            raise InvalidArgumentError(f"The internal port {internal} is listed twice.")
        seen.add(internal)
        result.append({"address": address, "external": external, "internal": internal})
    return result


def validate_volumes(volumes: Any) -> list[VolumeRecord]:
    """Check the shape of volume records; where a bind mount may point is the backend's call."""
    if volumes is None:
        return []
    if not isinstance(volumes, (list, tuple)):
        raise InvalidArgumentError("volumes must be a list of {source, target, mode} records.")
    result: list[VolumeRecord] = []
    targets: set[str] = set()
    for volume in volumes:
        if not isinstance(volume, Mapping):
            raise InvalidArgumentError(f"Invalid volume record {volume!r}: expected {{source, target, mode}}.")
        unknown = set(volume) - {"source", "target", "mode"}
        if unknown:
            raise InvalidArgumentError(f"Unknown keys in a volume record: {', '.join(sorted(unknown))}.")
        source, target, mode = volume.get("source"), volume.get("target"), volume.get("mode", "rw")
        if mode not in ("rw", "ro"):
            raise InvalidArgumentError(f"Invalid volume mode {mode!r}: use 'rw' or 'ro'.")
        if not isinstance(source, str) or not source or "\x00" in source or ":" in source:
            raise InvalidArgumentError(
                f"Invalid volume source {source!r}: an absolute host path or a volume name, without ':'."
            )
        if "/" not in source and not VOLUME_NAME_RE.fullmatch(source):
            raise InvalidArgumentError(
                f"Invalid volume name {source[:80]!r}: use letters, digits, '_', '.' and '-', starting with a letter or digit."
            )
        if "/" in source and not source.startswith("/"):
            raise InvalidArgumentError(
                f"Invalid volume source {source[:80]!r}: a host path must be absolute; a named volume has no '/'."
            )
        if (
            not isinstance(target, str)
            or not target.startswith("/")
            or target == "/"
            or ":" in target
            or "\x00" in target
            or ".." in target.split("/")
        ):
            raise InvalidArgumentError(
                f"Invalid volume target {str(target)[:80]!r}: use an absolute path inside the container "
                "other than '/', without '..' or ':'."
            )
        target = "/" + "/".join(p for p in target.split("/") if p and p != ".")
        if target in targets:
            raise InvalidArgumentError(f"Two volumes are mounted at {target}.")
        targets.add(target)
        result.append({"source": source, "target": target, "mode": mode})
    return result


def under_roots(real: str, roots: Sequence[str]) -> bool:
    """Whether the resolved path ``real`` is one of ``roots`` (resolved) or lies under one."""
    return any(real == root or real.startswith(root.rstrip("/") + "/") for root in roots)


def resolve_bind_source(source: str, roots: Sequence[str]) -> str:
    """The host path a bind mount's ``source`` resolves to (symlinks followed), if it lies
    under one of the allowed ``roots`` and exists as a directory or file; else
    ``InvalidArgumentError`` saying why. Every backend that mounts host paths checks them so."""
    if not roots:
        raise InvalidArgumentError(
            f"Host directory {source!r} cannot be mounted: this backend allows no bind mounts "
            "(set allowed_volume_roots, or use a named volume)."
        )
    try:
        real = os.path.realpath(source)
    except OSError as exc:  # e.g. /proc/1/root: a link this process may not even read
        raise InvalidArgumentError(f"Host path {source[:200]!r} cannot be mounted: {exc.strerror or exc}.") from exc
    if not under_roots(real, roots):
        raise InvalidArgumentError(
            f"Host path {source!r} (resolved to {real!r}) is outside the allowed volume roots ({', '.join(roots)})."
        )
    if not os.path.isdir(real) and not os.path.isfile(real):
        raise InvalidArgumentError(
            f"Host path {source!r} does not exist: create it first (the engine would create it as root)."
        )
    return real


def validate_cmd(cmd: Any, *, allow_none: bool = True) -> list[str] | None:
    """An argv list, or a string split as a shell would split it (no shell runs)."""
    if cmd is None and allow_none:
        return None
    if isinstance(cmd, str):
        try:
            argv = shlex.split(cmd)
        except ValueError as exc:
            raise InvalidArgumentError(f"Cannot split the command {cmd[:80]!r}: {exc}.") from None
    elif isinstance(cmd, (list, tuple)) and all(isinstance(part, str) for part in cmd):
        argv = list(cmd)
    else:
        raise InvalidArgumentError("The command must be a list of strings or a string.")
    if not argv or any("\x00" in part for part in argv):
        raise InvalidArgumentError("The command is empty or contains a NUL character.")
    return argv


def validate_env(env: Any, reserved: tuple[str, ...] = ("OWNER", "OWNER_UID", "BASE_URL")) -> dict[str, str]:
    if env is None:
        return {}
    if not isinstance(env, Mapping):
        raise InvalidArgumentError("env must be a mapping of variable names to values.")
    result: dict[str, str] = {}
    for key, value in env.items():
        if not isinstance(key, str) or not ENV_KEY_RE.fullmatch(key):
            raise InvalidArgumentError(f"Invalid environment variable name {str(key)[:80]!r}.")
        if key in reserved:
            raise InvalidArgumentError(f"{key} is set by the backend and cannot be given in env.")
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise InvalidArgumentError(f"The value of {key} must be a string or a number.")
        value = str(value)
        if "\x00" in value:
            raise InvalidArgumentError(f"The value of {key} contains a NUL character.")
        result[key] = value
    return result


def _shown(value: Any) -> str:
    """A number or string for a message, short (``str`` of a huge int may even raise)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"(a {value.bit_length()}-bit number)"
    return repr(value)[:80]


def validate_mem_limit(value: Any) -> int | None:
    """Bytes, or a string such as ``512m`` or ``2g``; ``None`` for no limit. From 6 MiB (the
    engine's minimum) to :data:`MAX_MEMORY` bytes (the engine's int64)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise InvalidArgumentError("mem_limit must be a number of bytes or a string such as '512m'.")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and len(value) <= 64 and (match := MEM_RE.fullmatch(value.strip())):
        scale = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[match.group(2).lower()]
        # Exact arithmetic: a float would turn a long number into inf (and a 500).
        number = int(decimal.Decimal(match.group(1)) * scale)
    else:
        raise InvalidArgumentError(f"Invalid mem_limit {_shown(value)}: use bytes or a string such as '512m' or '2g'.")
    if number < MIN_MEMORY:
        raise InvalidArgumentError(f"mem_limit {_shown(value)} is below the engine's minimum of 6 MiB.")
    if number > MAX_MEMORY:
        raise InvalidArgumentError(
            f"mem_limit {_shown(value)} is more than the engine can hold: at most {MAX_MEMORY} bytes (2**63 - 1)."
        )
    return number


def validate_cpu_limit(value: Any) -> float | None:
    """CPUs as a number (``0.5`` is half a CPU), from 0.01 to 1024; ``None`` for no limit."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not MIN_CPUS <= value <= MAX_CPUS:
        raise InvalidArgumentError(
            f"Invalid cpu_limit {_shown(value)}: use a number of CPUs from {MIN_CPUS} to {MAX_CPUS}, such as 0.5 or 2."
        )
    return float(value)


def validate_pids_limit(value: Any) -> int | None:
    """The most processes, from 1 to :data:`MAX_PIDS`; ``None`` for no limit."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PIDS:
        raise InvalidArgumentError(
            f"Invalid pids_limit {_shown(value)}: use a whole number of processes from 1 to {MAX_PIDS} "
            "(the kernel's most)."
        )
    return value


def validate_tail(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidArgumentError(f"Invalid tail {value!r}: use a whole number of lines from 0 up.")
    return value


def parse_since(value: Any) -> dt.datetime | None:
    """A datetime, an ISO 8601 string or a Unix time; naive times are taken as UTC."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        moment = dt.datetime.fromtimestamp(value, dt.UTC)
    elif isinstance(value, str):
        try:
            moment = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise InvalidArgumentError(
                f"Invalid since {value[:80]!r}: use an ISO 8601 time such as 2026-01-31T12:00:00Z or a Unix time."
            ) from None
    else:
        raise InvalidArgumentError("since must be a datetime, an ISO 8601 string or a Unix time.")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment


def iso_utc(moment: dt.datetime) -> str:
    """``2026-11-27T16:40:00Z``."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_FRACTION = re.compile(r"\.(\d+)")


def parse_engine_time(value: Any) -> str:
    """The engine's times (RFC 3339 with nanoseconds, or a Unix time) as :func:`iso_utc`."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return iso_utc(dt.datetime.fromtimestamp(value, dt.UTC))
    if isinstance(value, str) and value:
        text = _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), value.strip())
        try:
            return iso_utc(dt.datetime.fromisoformat(text.replace("Z", "+00:00")))
        except ValueError:
            pass
    return ""


class CreateArguments(NamedTuple):
    """The checked arguments of ``create_container`` every backend checks alike."""

    username: str
    ports: list[PortRecord]
    volumes: list[VolumeRecord]
    argv: list[str] | None
    env: dict[str, str]


def validate_create_arguments(username: Any, ports: Any, volumes: Any, cmd: Any, base_url: Any, image: Any,
                              clone_of: Any, env: Any) -> CreateArguments:
    """Check what ``create_container`` is given, before a backend looks at anything: the
    owner, the port and volume records, the command, ``base_url``, exactly one of ``image``
    and ``clone_of`` (an image reference when given) and the ``env`` option."""
    checked = CreateArguments(validate_username(username), validate_ports(ports), validate_volumes(volumes),
                              validate_cmd(cmd), {})
    if base_url is not None and (not isinstance(base_url, str) or "\x00" in base_url or len(base_url) > 2048):
        raise InvalidArgumentError("base_url must be a string such as '/user/alice/notebook/'.")
    if (image is None) == (clone_of is None):
        raise InvalidArgumentError("Give exactly one of image and clone_of.")
    if image is not None:
        validate_pk(image, "image")
    return checked._replace(env=validate_env(env))
