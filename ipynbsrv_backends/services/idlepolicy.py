"""The idle-culling policy (``IDLE_CULLING`` in the settings) and the one decision it makes:
leave a container, suspend it, or stop it, and why.

Pure logic: reading the setting, matching a container's image and owner's groups to a rule,
and deciding from its status, its last activity and what its notebook server said. Nothing here
asks a node or a server; :mod:`.culling` does, and acts.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

__all__ = ["Rule", "Policy", "ServerState", "Verdict", "parse_duration", "words", "load_policy",
           "current_policy", "decide", "SUSPEND", "STOP", "LEAVE"]

SUSPEND, STOP, LEAVE = "suspend", "stop", "leave"
RULE_KEYS = {"images", "groups", "suspend_after", "stop_after"}
POLICY_KEYS = {"RULES", "ACTIVITY_INTERVAL", "RESUME_ON_REQUEST", "SERVER_TIMEOUT"}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d)?\s*$")
_UNITS = {None: 1, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any, where: str) -> float | None:
    """Seconds from ``value``: ``None`` (never), a number of seconds, or "90s", "30m", "2h",
    "1d". Anything else raises ``ValueError`` naming ``where`` and what to write instead."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError(f"{where} must be more than 0 seconds (None: never), not {value!r}.")
        return float(value)
    match = _DURATION.match(value) if isinstance(value, str) else None
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f"{where} must be a duration such as 3600, \"90s\", \"30m\", \"2h\" or \"1d\" "
                         f"(None: never), not {value!r}.")
    return float(match.group(1)) * _UNITS[match.group(2)]


def words(seconds: float) -> str:
    """A duration for people, to the two largest units: "45 s", "12 min", "2 h", "1 d 3 h"."""
    seconds = int(max(seconds, 0))
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if seconds >= size or (unit == "s" and not parts):
            parts.append(f"{seconds // size} {unit}")
            seconds %= size
    return " ".join(parts[:2])


@dataclass(frozen=True)
class Rule:
    """One rule: whom it covers (images, groups; empty: everyone) and its two thresholds."""

    number: int
    images: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    suspend_after: float | None = None
    stop_after: float | None = None

    def matches(self, image_names: Iterable[str], groups: Iterable[str]) -> bool:
        names = [name for name in image_names if name]
        if self.images and not any(fnmatch.fnmatchcase(name, pattern) for name in names for pattern in self.images):
            return False
        return not self.groups or bool(set(self.groups) & set(groups))

    def describe(self) -> str:
        whom = []
        if self.images:
            whom.append("images " + ", ".join(self.images))
        if self.groups:
            whom.append("groups " + ", ".join(self.groups))
        return f"rule {self.number}" + (f" ({'; '.join(whom)})" if whom else "")


@dataclass(frozen=True)
class Policy:
    rules: tuple[Rule, ...] = ()
    activity_interval: float = 60.0
    resume_on_request: bool = True
    server_timeout: float = 5.0

    def rule_for(self, image_names: Iterable[str], groups: Iterable[str]) -> Rule | None:
        """The first rule that covers a container with these image names and owner groups."""
        names, owned = list(image_names), list(groups)
        return next((rule for rule in self.rules if rule.matches(names, owned)), None)


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) and item for item in value):
        raise ValueError(f"{where} must be a list of non-empty strings, such as [\"ipynbsrv/notebook:*\"].")
    return tuple(value)


def _rule(number: int, raw: Any, where: str) -> Rule:
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where} must be a dict such as {{\"suspend_after\": \"2h\", \"stop_after\": \"1d\"}}.")
    unknown = sorted(str(key) for key in raw if key not in RULE_KEYS)
    if unknown:
        raise ValueError(f"{where} has unknown keys {', '.join(unknown)} (known: {', '.join(sorted(RULE_KEYS))}).")
    suspend = parse_duration(raw.get("suspend_after"), f"{where}['suspend_after']")
    stop = parse_duration(raw.get("stop_after"), f"{where}['stop_after']")
    if suspend is not None and stop is not None and stop <= suspend:
        raise ValueError(f"{where}: stop_after ({words(stop)}) must be longer than suspend_after ({words(suspend)}): "
                         "a container is suspended first, then stopped.")
    return Rule(number, _strings(raw.get("images"), f"{where}['images']"),
                _strings(raw.get("groups"), f"{where}['groups']"), suspend, stop)


def load_policy(raw: Any, where: str = "IDLE_CULLING") -> Policy:
    """The policy from the setting's value (missing keys take their defaults); ``ValueError``
    with what is wrong and how to write it."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where} must be a dict with RULES, ACTIVITY_INTERVAL, RESUME_ON_REQUEST, SERVER_TIMEOUT.")
    unknown = sorted(str(key) for key in raw if key not in POLICY_KEYS)
    if unknown:
        raise ValueError(f"{where} has unknown keys {', '.join(unknown)} (known: {', '.join(sorted(POLICY_KEYS))}).")
    rules = raw.get("RULES", [])
    rules = [] if rules is None else rules
    if not isinstance(rules, (list, tuple)):
        raise ValueError(f"{where}['RULES'] must be a list of rules (dicts); the first that matches applies.")
    interval = parse_duration(raw.get("ACTIVITY_INTERVAL", 60), f"{where}['ACTIVITY_INTERVAL']")
    timeout = parse_duration(raw.get("SERVER_TIMEOUT", 5), f"{where}['SERVER_TIMEOUT']")
    resume = raw.get("RESUME_ON_REQUEST", True)
    if not isinstance(resume, bool):
        raise ValueError(f"{where}['RESUME_ON_REQUEST'] must be True or False, not {resume!r}.")
    return Policy(tuple(_rule(n, rule, f"{where}['RULES'][{n}]") for n, rule in enumerate(rules)),
                  interval or 60.0, resume, timeout or 5.0)


def current_policy() -> Policy:
    """The policy of the running site (the ``IDLE_CULLING`` key of ``IPYNBSRV_BACKENDS``)."""
    from ..conf import app_settings

    return load_policy(app_settings.IDLE_CULLING, "IPYNBSRV_BACKENDS['IDLE_CULLING']")


@dataclass
class ServerState:
    """What a container's notebook server said about itself (``reachable`` False: nothing)."""

    reachable: bool
    last_activity: datetime | None = None
    kernels: int = 0
    busy_kernels: int = 0
    terminals: int = 0
    error: str = ""

    def summary(self) -> str:
        if not self.reachable:
            return f"its notebook server did not answer ({self.error})"
        return f"{self.kernels} kernel(s), {self.busy_kernels} busy, {self.terminals} terminal(s)"


@dataclass
class Verdict:
    action: str
    reason: str
    idle_seconds: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


def decide(status: str, last_activity: datetime | None, now: datetime, rule: Rule | None,
           server: ServerState | None) -> Verdict:
    """What the policy does with a container: ``status`` (``running`` or ``suspended``), the
    latest activity the master recorded, and for a running one what its server said."""
    if rule is None:
        return Verdict(LEAVE, "no rule of the idle policy covers it")
    if rule.suspend_after is None and rule.stop_after is None:
        return Verdict(LEAVE, "its rule never culls it")
    if status == "running":
        if server is None or not server.reachable:
            return Verdict(LEAVE, (server.summary() if server else "its notebook server was not asked")
                           + ": left alone, since whether a kernel is busy is unknown")
        if server.busy_kernels:
            return Verdict(LEAVE, f"a kernel is busy ({server.summary()})")
    moments = [moment for moment in (last_activity, server.last_activity if server else None) if moment]
    if not moments:
        return Verdict(LEAVE, "no activity is known yet")
    idle = (now - max(moments)).total_seconds()
    if rule.stop_after is not None and idle >= rule.stop_after:
        return Verdict(STOP, f"stopped after {words(idle)} idle", idle)
    if status == "running" and rule.suspend_after is not None and idle >= rule.suspend_after:
        return Verdict(SUSPEND, f"suspended after {words(idle)} idle", idle)
    nxt = [(limit, what) for limit, what in ((rule.suspend_after, "suspended"), (rule.stop_after, "stopped"))
           if limit is not None and (status == "running" or what == "stopped") and limit > idle]
    later = f"; {nxt[0][1]} once idle for {words(nxt[0][0])}" if nxt else ""
    return Verdict(LEAVE, f"idle for {words(idle)}{later}", idle)
