"""Quotas per user, with per-group and per-user overrides of a default (the ``QUOTAS`` setting):
how many containers, the memory and CPUs of running containers, snapshots, committed images, and
the space of their named volumes where nodes measure it.

Every check runs in a transaction that first locks the user's row (``SELECT ... FOR UPDATE``;
on SQLite, which has no row locks, a write that takes the database's write lock), so two
operations of one user take turns and cannot both pass. What the check admits is written in
the same transaction: a creation's record, or a :class:`~ipynbsrv_backends.models.QuotaReservation`
for an operation whose record comes later (a snapshot, a commit, a start), dropped when it ends.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.db import connection, models, transaction
from django.utils import timezone

from .. import errors
from ..conf import app_settings
from ..models import Container, Image, Node, QuotaReservation, Snapshot
from ._base import S, write_turn

#: The limits a quota may set, in the order they are checked and shown.
KEYS = ("containers", "memory", "cpus", "snapshots", "images", "volume_space")
#: The limits given in bytes (a number, or a string such as "4g").
BYTES = ("memory", "volume_space")
#: The statuses whose containers hold their memory (a suspended one keeps it, frozen) and CPUs.
HOLD_MEMORY = (S.CREATING, S.RUNNING, S.SUSPENDED)
HOLD_CPUS = (S.CREATING, S.RUNNING)
#: A reservation older than this was left by a process that died: it no longer counts.
RESERVATION_TTL = datetime.timedelta(hours=1)
#: Which limits each guarded action may need.
ACTION_KEYS = {"start": ("memory", "cpus"), "restart": ("memory", "cpus"), "resume": ("cpus",),
               "restore": ("cpus",), "snapshot": ("snapshots",), "commit": ("images",)}
#: What a creation may pass. ``volume_space`` is checked there only: a user over it must still
#: be able to start a container of theirs to delete files.
CREATE_KEYS = ("containers", "memory", "cpus", "volume_space")

_MEM = re.compile(r"(\d+(?:\.\d+)?)\s*([bkmgt]?)i?b?", re.IGNORECASE)
_SCALE = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


@dataclass
class Need:
    """What an operation adds to its user's usage."""

    containers: int = 0
    memory: int = 0
    cpus: float = 0.0
    snapshots: int = 0
    images: int = 0


# ---------------------------------------------------------------------------- the settings

def parse_limit(key: str, value: Any) -> int | float | None:
    """One limit of the ``QUOTAS`` setting, checked: a whole number from 0 (``memory`` also
    ``"4g"``, ``cpus`` also a fraction), or ``None`` for none."""
    if value is None:
        return None
    if key not in KEYS:
        raise ValueError(f"unknown quota {key!r} (use {', '.join(KEYS)})")
    if key in BYTES and isinstance(value, str) and (match := _MEM.fullmatch(value.strip())):
        return int(float(match.group(1)) * _SCALE[match.group(2).lower()])
    if key == "cpus" and isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    shape = "a number of bytes or a string such as '4g'" if key in BYTES else "a whole number from 0"
    raise ValueError(f"quota {key!r} must be None or {shape}, not {value!r}")


def parse_limits(value: Any, where: str) -> dict[str, int | float | None]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{where} must be a dict of limits, not {type(value).__name__}")
    return {key: parse_limit(key, limit) for key, limit in value.items()}


def config_problems(config: Any) -> list[str]:
    """What is wrong with a ``QUOTAS`` setting (empty: nothing), for the system check."""
    if not isinstance(config, Mapping):
        return [f"QUOTAS must be a dict, not {type(config).__name__}"]
    problems = [f"unknown key {key!r} (use default, groups, users)" for key in config
                if key not in ("default", "groups", "users")]
    try:
        parse_limits(config.get("default") or {}, "QUOTAS['default']")
        for part in ("groups", "users"):
            named = config.get(part) or {}
            if not isinstance(named, Mapping):
                raise ValueError(f"QUOTAS[{part!r}] must be a dict of names to limits")
            for name, limits in named.items():
                parse_limits(limits, f"QUOTAS[{part!r}][{name!r}]")
    except ValueError as exc:
        problems.append(str(exc))
    return problems


def _more(a: int | float | None, b: int | float | None) -> int | float | None:
    """The more generous of two limits (``None``, no limit, beats any number)."""
    return None if a is None or b is None else max(a, b)


def limits_for(user: Any) -> dict[str, int | float | None]:
    """``user``'s limits: the default, then their groups' (the most generous of them, key by
    key), then their own entry under ``users``. ``containers`` starts from MAX_CONTAINERS_PER_USER."""
    config = app_settings.QUOTAS or {}
    limits: dict[str, int | float | None] = dict.fromkeys(KEYS)
    limits["containers"] = app_settings.MAX_CONTAINERS_PER_USER
    limits.update(parse_limits(config.get("default") or {}, "QUOTAS['default']"))
    groups = config.get("groups") or {}
    if groups:
        merged: dict[str, int | float | None] = {}
        member_of = getattr(user, "groups", None)  # a user model without groups belongs to none
        names = set(member_of.values_list("name", flat=True)) if member_of is not None else set()
        for name in sorted(names & set(groups)):
            for key, limit in parse_limits(groups[name], f"QUOTAS['groups'][{name!r}]").items():
                merged[key] = _more(merged[key], limit) if key in merged else limit
        limits.update(merged)
    own = (config.get("users") or {}).get(user.get_username())
    if own is not None:
        limits.update(parse_limits(own, f"QUOTAS['users'][{user.get_username()!r}]"))
    return limits


# ---------------------------------------------------------------------------- usage

def memory_of(options: Mapping[str, Any] | None) -> int | None:
    """A container's ``mem_limit`` in bytes (None: it has none)."""
    value = (options or {}).get("mem_limit")
    try:
        return parse_limit("memory", value)  # type: ignore[return-value]  # memory parses to int
    except ValueError:
        return None


def cpus_of(options: Mapping[str, Any] | None) -> float | None:
    value = (options or {}).get("cpu_limit")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def measured_volumes() -> dict[str, int] | None:
    """Bytes of named volumes per username, summed over every node that measures them (a
    ``Docker`` backend with ``volume_usage_every``), as each last reported in its health check;
    ``None`` when no node measures them."""
    total: dict[str, int] = {}
    known = False
    for report in Node.objects.values_list("resources", flat=True):  # the node's status answer
        resources = report.get("resources") if isinstance(report, dict) else None
        measured = resources.get("volume_usage") if isinstance(resources, dict) else None
        if isinstance(measured, dict):
            known = True
            for username, size in measured.items():
                if isinstance(size, int) and size > 0:
                    total[username] = total.get(username, 0) + size
    return total if known else None


def volume_space_of(user: Any, measured: dict[str, int] | None | bool = True) -> int | None:
    """The bytes of ``user``'s named volumes (``None``: no node measures them); ``measured``:
    what :func:`measured_volumes` answered, when the caller asked it already."""
    volumes = measured_volumes() if measured is True else measured
    return None if not isinstance(volumes, dict) else volumes.get(user.get_username(), 0)


def usage_of(user: Any, measured: dict[str, int] | None | bool = True) -> dict[str, Any]:
    """What ``user`` uses now: their records, plus what operations under way hold, plus the
    volume space the nodes last measured (``None``: no node measures it; ``measured=False``:
    not asked)."""
    usage: dict[str, Any] = {"containers": 0, "memory": 0, "cpus": 0.0, "snapshots": 0, "images": 0}
    for status, options in Container.objects.filter(owner_id=user.pk).active().values_list("status", "options"):
        usage["containers"] += 1
        if status in HOLD_MEMORY:
            usage["memory"] += memory_of(options) or 0
        if status in HOLD_CPUS:
            usage["cpus"] += cpus_of(options) or 0.0
    usage["snapshots"] = Snapshot.objects.filter(container__owner_id=user.pk).count()
    usage["images"] = Image.objects.filter(owner_id=user.pk).count()
    live = QuotaReservation.objects.filter(user_id=user.pk, created_at__gt=timezone.now() - RESERVATION_TTL)
    held = live.aggregate(memory=models.Sum("memory"), cpus=models.Sum("cpus"),
                          snapshots=models.Sum("snapshots"), images=models.Sum("images"))
    for key, value in held.items():
        usage[key] += value or 0
    usage["cpus"] = round(usage["cpus"], 3)
    usage["volume_space"] = volume_space_of(user, measured) if measured is not False else None
    return usage


def report(user: Any, measured: dict[str, int] | None | bool = True) -> dict[str, Any]:
    """``user``'s limits and usage, for the users' API and the admin."""
    return {"limits": limits_for(user), "usage": usage_of(user, measured)}


# ---------------------------------------------------------------------------- the checks

def amount(key: str, value: int | float) -> str:
    if key in BYTES:
        for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
            if value >= scale:
                return f"{value / scale:.3g} {unit}"
        return f"{int(value)} bytes"
    if key == "cpus":
        return f"{value:g} CPU" + ("" if value == 1 else "s")
    noun = {"containers": "container", "snapshots": "snapshot", "images": "committed image"}[key]
    return f"{int(value)} {noun}" + ("" if value == 1 else "s")


HOW = {"containers": "delete one of your containers", "memory": "stop or delete a running or suspended container",
       "cpus": "stop or suspend a running container", "snapshots": "delete one of your snapshots",
       "images": "delete one of your committed images",
       "volume_space": "delete files in your containers' volumes (a deleted container's named volume stays: "
                       "an administrator removes those)"}


def check(user: Any, need: Need, doing: str, *, space: bool = False) -> None:
    """Raise :class:`~ipynbsrv_backends.errors.QuotaExceededError` if ``need`` on top of what
    ``user`` uses passes one of their limits: it names the limit, the usage and by how much.
    With ``space`` (a creation), also if their volumes already hold more than their
    ``volume_space``, as the nodes last measured it."""
    limits = limits_for(user)
    wanted = {key: value for key, value in asdict(need).items() if value and limits[key] is not None}
    space_limit = limits["volume_space"] if space else None
    if not wanted and space_limit is None:
        return
    usage = usage_of(user, measured=space_limit is not None)
    held = usage["volume_space"]
    if space_limit is not None and held is not None and held > space_limit:
        raise errors.QuotaExceededError(
            f"{doing} is refused: {user.get_username()}'s volumes hold {amount('volume_space', held)} "
            f"(as their nodes last measured), {amount('volume_space', held - space_limit)} over the volume_space "
            f"quota of {amount('volume_space', space_limit)}. To go on, {HOW['volume_space']}, or ask an "
            "administrator for a larger quota."
        )
    for key in KEYS:
        if key not in wanted:
            continue
        limit, used, more = limits[key], usage[key], wanted[key]
        assert limit is not None
        if used + more > limit + 1e-9:
            raise errors.QuotaExceededError(
                f"{doing} would pass {user.get_username()}'s {key} quota of {amount(key, limit)}: "
                f"{amount(key, used)} in use and {amount(key, more)} more needed, "
                f"{amount(key, used + more - limit)} over. To go on, {HOW[key]}, or ask an administrator "
                "for a larger quota."
            )


def refuse_unlimited(user: Any, container_name: str, options: Mapping[str, Any] | None, keys: tuple[str, ...]) -> None:
    """A container without a ``mem_limit`` (``cpu_limit``) cannot be counted against a memory
    (CPU) quota: refused, with what an administrator must set."""
    limits = limits_for(user)
    for key, of, option in (("memory", memory_of, "mem_limit"), ("cpus", cpus_of, "cpu_limit")):
        limit = limits[key]
        if key in keys and limit is not None and of(options) is None:
            raise errors.QuotaExceededError(
                f"{container_name} has no {option}, so it cannot be counted against {user.get_username()}'s "
                f"{key} quota of {amount(key, limit)}: an administrator must give it one "
                f"(CONTAINER_OPTIONS['{option}'] for new containers)."
            )


def lock(user: Any) -> None:
    """Inside a transaction: take the user's lock until it ends (the row, ``FOR UPDATE``; on a
    database without row locks, its write lock, through an update that changes nothing)."""
    if connection.features.has_select_for_update:
        list(get_user_model().objects.select_for_update().filter(pk=user.pk).values_list("pk"))
    else:
        QuotaReservation.objects.filter(pk=-1).update(action="")


def guards(user: Any, keys: tuple[str, ...]) -> bool:
    """Whether any of ``keys`` is limited for ``user`` (else no check, no lock)."""
    limits = limits_for(user)
    return any(limits[key] is not None for key in keys)


@contextmanager
def reserved(user: Any, action: str, need: Callable[[], Need], doing: str) -> Iterator[None]:
    """Check ``need()`` (worked out under the user's lock) against ``user``'s quota and hold it
    while the block runs: the block writes the operation's record, then the hold is dropped."""
    if not guards(user, ACTION_KEYS[action]):
        yield
        return
    with write_turn, transaction.atomic():
        lock(user)
        # Holds left by processes that died: they count no more; drop them now.
        QuotaReservation.objects.filter(user_id=user.pk, created_at__lte=timezone.now() - RESERVATION_TTL).delete()
        wanted = need()
        check(user, wanted, doing)
        held = {key: value for key, value in asdict(wanted).items() if key != "containers"}
        row = QuotaReservation.objects.create(user_id=user.pk, action=action, **held) if any(held.values()) else None
    try:
        yield
    finally:
        if row is not None:
            QuotaReservation.objects.filter(pk=row.pk).delete()


def start_need(container: Container, action: str) -> Need:
    """What starting (``start``, ``restart``), resuming or restoring ``container`` adds, from its
    status as the database has it now: memory unless it holds it already, CPUs unless it runs."""
    status = Container.objects.filter(pk=container.pk).values_list("status", flat=True).first()
    keys = tuple(key for key, holding in (("memory", HOLD_MEMORY), ("cpus", HOLD_CPUS))
                 if key in ACTION_KEYS[action] and status not in holding)
    if action == "restore" and status != S.SUSPENDED:
        keys = ()  # a restore keeps a stopped container stopped; a suspended one comes back running
    refuse_unlimited(container.owner, str(container), container.options, keys)
    memory = (memory_of(container.options) or 0) if "memory" in keys else 0
    cpus = (cpus_of(container.options) or 0.0) if "cpus" in keys else 0.0
    return Need(memory=memory, cpus=cpus)


def creation_need(owner: Any, name: str, options: Mapping[str, Any] | None) -> Need:
    refuse_unlimited(owner, f"{owner}/{name}", options, ("memory", "cpus"))
    return Need(containers=1, memory=memory_of(options) or 0, cpus=cpus_of(options) or 0.0)
