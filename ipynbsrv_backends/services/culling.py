"""Idle culling: what each container last did, and the policy's actions on idle ones.

- :func:`note_access` records a request through the proxy (the check calls it): at most once
  per ``ACTIVITY_INTERVAL`` per container and process, one ``UPDATE`` by primary key.
- :func:`ask_server` asks a container's notebook server about itself, as the proxy reaches it
  (its node's address and published port, with the container's access secret), without
  counting as activity: ``api/status`` (its last activity), ``api/kernels`` (busy or idle) and
  ``api/terminals``.
- :func:`plan` decides for every running or suspended container (:func:`.idlepolicy.decide`);
  :func:`cull` acts on the decisions, asking a running container's server once more right
  before it suspends or stops it, so a kernel that became busy meanwhile is left alone.
- :func:`resume_on_request` is the proxy's: a container the policy suspended is resumed by
  its owner's next request.

Every action is audited (``container.idle_suspend``, ``container.idle_stop``, with the reason
and the idle time) and leaves the reason on the record (``cull_reason``), which the users' API
shows.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import requests
from django.utils import timezone

from .. import audit, errors
from ..models import Container
from ._base import S
from .capabilities import unsupported_actions
from .idlepolicy import LEAVE, STOP, SUSPEND, Policy, ServerState, Verdict, current_policy, decide, words
from .lifecycle import resume_container, stop_container, suspend_container

logger = logging.getLogger(__name__)

#: Containers whose access this process recorded, and when (monotonic seconds).
_noted: dict[int, float] = {}
_noted_lock = threading.Lock()
#: At most this many entries are kept in :data:`_noted` (then it starts afresh).
_NOTED_AT_MOST = 50000
#: One lock per container the proxy is resuming in this process (other processes: see below).
_resuming: dict[int, threading.Lock] = {}
_resuming_lock = threading.Lock()
#: Servers asked at once by one run.
ASK_WORKERS = 8


def note_access(container: Container, interval: float | None = None) -> bool:
    """Record that ``container`` was just used through the proxy, unless this process (or the
    row as read) recorded it less than ``interval`` seconds ago. True when it wrote."""
    if interval is None:
        interval = current_policy().activity_interval
    now = time.monotonic()
    with _noted_lock:
        last = _noted.get(container.pk)
        if last is not None and now - last < interval:
            return False
        if len(_noted) >= _NOTED_AT_MOST:
            _noted.clear()
        _noted[container.pk] = now
    moment = timezone.now()
    if container.last_activity and (moment - container.last_activity).total_seconds() < interval:
        return False  # another process of the master recorded it a moment ago
    Container.objects.filter(pk=container.pk).update(last_activity=moment)
    container.last_activity = moment
    return True


def _when(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def ask_server(container: Container, timeout: float = 5.0) -> ServerState:
    """What ``container``'s notebook server says about itself (never counted as activity)."""
    from ..proxy import SECRET_HEADER, upstream_of

    upstream = upstream_of(container)
    if not upstream or not container.access_secret:
        return ServerState(False, error="it has no published port or no access secret")
    base = f"http://{upstream}{container.base_url or '/'}api/"
    try:
        with requests.Session() as http:
            http.headers[SECRET_HEADER] = container.access_secret

            def get(path: str) -> Any:
                answer = http.get(base + path, params={"no_track_activity": "1"}, timeout=timeout)
                if answer.status_code == 404 and path == "terminals":
                    return []  # a server without terminals
                answer.raise_for_status()
                return answer.json()

            status, kernels, terminals = get("status"), get("kernels"), get("terminals")
    except (requests.RequestException, ValueError) as exc:
        return ServerState(False, error=f"{type(exc).__name__}: {str(exc)[:200]}")
    if not isinstance(status, dict) or not isinstance(kernels, list) or not isinstance(terminals, list):
        return ServerState(False, error="it answered something other than Jupyter's API")
    moments = [_when(status.get("last_activity"))]
    moments += [_when(k.get("last_activity")) for k in kernels if isinstance(k, dict)]
    moments += [_when(t.get("last_activity")) for t in terminals if isinstance(t, dict)]
    known = [moment for moment in moments if moment]
    busy = sum(1 for k in kernels if isinstance(k, dict) and k.get("execution_state") in ("busy", "starting"))
    return ServerState(True, max(known) if known else None, len(kernels), busy, len(terminals))


@dataclass
class Decision:
    """The policy's decision for one container, for a run's report and the command's output."""

    container: Container
    verdict: Verdict
    rule: str = ""
    server: ServerState | None = None
    done: bool = False
    error: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def action(self) -> str:
        return self.verdict.action

    def line(self, dry_run: bool = False) -> str:
        """One line for people: ``alice/nb: suspend (rule 0): suspended after 2 h idle``."""
        what = {SUSPEND: "suspend", STOP: "stop", LEAVE: "leave"}[self.action]
        if dry_run and self.action != LEAVE:
            what = "would " + what
        elif self.error:
            what = f"FAILED to {what}"
        rule = f" ({self.rule})" if self.rule else ""
        tail = f": {self.error}" if self.error else ""
        return f"{self.container} [{self.container.status}]: {what}{rule}: {self.verdict.reason}{tail}"


def _image_names(container: Container) -> list[str]:
    names = [container.image_ref]
    if container.image is not None:
        names += [container.image.name, container.image.ref]
    return [name for name in names if name]


def _candidates() -> list[Container]:
    return list(Container.objects.filter(status__in=[S.RUNNING, S.SUSPENDED], pending_move__isnull=True)
                .select_related("owner", "node", "image").prefetch_related("owner__groups")
                .order_by("owner_id", "name"))


def _judge(container: Container, policy: Policy, now: datetime) -> Decision:
    groups = [group.name for group in container.owner.groups.all()]
    rule = policy.rule_for(_image_names(container), groups)
    described = rule.describe() if rule else ""
    limits = [limit for limit in (rule.suspend_after, rule.stop_after) if limit] if rule else []
    if container.status == S.RUNNING and limits and container.last_activity is not None:
        since = (now - container.last_activity).total_seconds()
        if since < min(limits):  # used lately (a visit, a start): idle by no measure, nothing to ask
            return Decision(container, Verdict(LEAVE, f"last used {words(since)} ago", since), described)
    server = ask_server(container, policy.server_timeout) if container.status == S.RUNNING and limits else None
    last = container.last_activity or container.updated_at
    verdict = decide(container.status, last, now, rule, server)
    if verdict.action == SUSPEND:
        cannot = unsupported_actions(container.node).get("suspend")
        if cannot:  # e.g. a swarm node: left running until the rule's stop_after, if it has one
            verdict = Verdict(LEAVE, f"{verdict.reason}, but its node cannot suspend ({cannot})",
                              verdict.idle_seconds, verdict.details)
    return Decision(container, verdict, described, server)


def plan(policy: Policy | None = None, now: datetime | None = None) -> list[Decision]:
    """The policy's decision for every running or suspended container not being moved."""
    policy = policy or current_policy()
    now = now or timezone.now()
    containers = _candidates()
    if not containers:
        return []
    with ThreadPoolExecutor(max_workers=min(ASK_WORKERS, len(containers)), thread_name_prefix="ipynbsrv-cull") as pool:
        return list(pool.map(lambda c: _judge(c, policy, now), containers))


def _details(container: Container, decision: Decision) -> dict[str, Any]:
    server = decision.server
    return {"reason": decision.verdict.reason, "idle_seconds": int(decision.verdict.idle_seconds or 0),
            "rule": decision.rule, "server": server.summary() if server else ""}


def _mark(container: Container, reason: str) -> None:
    moment = timezone.now()
    Container.objects.filter(pk=container.pk).update(cull_reason=reason[:255], culled_at=moment)
    container.cull_reason, container.culled_at = reason[:255], moment


@audit.audited("container.idle_suspend", details=_details)
def idle_suspend(container: Container, decision: Decision) -> Container:
    """Suspend an idle container for the policy, with the reason on its record."""
    container = suspend_container(container)
    _mark(container, decision.verdict.reason)
    return container


@audit.audited("container.idle_stop", details=_details)
def idle_stop(container: Container, decision: Decision) -> Container:
    """Stop an idle container for the policy, with the reason on its record."""
    container = stop_container(container)
    _mark(container, decision.verdict.reason)
    return container


def _still_due(decision: Decision, policy: Policy) -> Decision:
    """The decision taken again right before acting, from a fresh row and a fresh answer of
    the server (a kernel may have become busy, its owner may be back)."""
    fresh = Container.objects.select_related("owner", "node", "image").filter(pk=decision.container.pk).first()
    if fresh is None or fresh.status != decision.container.status or fresh.pending_move:
        return Decision(decision.container, Verdict(LEAVE, "it changed since the policy looked at it"))
    return _judge(fresh, policy, timezone.now())


def cull(dry_run: bool = False, policy: Policy | None = None,
         stopping: Callable[[], bool] = lambda: False) -> list[Decision]:
    """Decide for every container and, unless ``dry_run``, suspend or stop the idle ones.
    One failure does not stop the run: it is on its decision (``error``) and in the audit log.
    Once ``stopping()`` is true, the containers not acted on yet are left (and said so)."""
    policy = policy or current_policy()
    decisions = plan(policy)
    if dry_run:
        return decisions
    for n, decision in enumerate(decisions):
        if decision.action == LEAVE:
            continue
        if stopping():
            decisions[n] = Decision(decision.container, Verdict(LEAVE, "not this round: the command is stopping"))
            continue
        decision = decisions[n] = _still_due(decision, policy)
        if decision.action == LEAVE:
            continue
        act = idle_suspend if decision.action == SUSPEND else idle_stop
        try:
            decision.container = act(decision.container, decision)
            decision.done = True
        except errors.BackendError as exc:
            decision.error = f"{type(exc).__name__}: {exc}"
            logger.warning("Idle culling could not %s %s: %s", decision.action, decision.container, exc)
    return decisions


def _lock_for(pk: int) -> threading.Lock:
    with _resuming_lock:
        return _resuming.setdefault(pk, threading.Lock())


def resume_on_request(container: Container, user: Any) -> Container:
    """Resume ``container``, which the policy suspended, for its owner's request through the
    proxy; the container as it is now (still suspended when it could not be resumed).

    Requests that arrive together in one process wait for the first one's resume; another
    process that finds it running already just goes on."""
    with _lock_for(container.pk):
        fresh = Container.objects.select_related("owner", "node").filter(pk=container.pk).first()
        if fresh is None or fresh.status != S.SUSPENDED or not fresh.cull_reason:
            return fresh or container
        began, why = time.monotonic(), fresh.cull_reason
        try:
            with audit.acting(user, audit.VIA_SYSTEM, source="proxy"):
                fresh = resume_container(fresh)
        except errors.BackendError as exc:
            # another process of the master may have resumed it a moment before: as it is now
            again = Container.objects.select_related("owner", "node").filter(pk=container.pk).first()
            if again is not None and again.status == S.RUNNING:
                return again
            logger.warning("Could not resume %s for %s's request: %s", fresh, user, exc)
            return fresh
        logger.info("Resumed %s for %s's request in %.2f s (it was %s)", fresh, user, time.monotonic() - began, why)
        return fresh
