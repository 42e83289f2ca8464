"""The audit log: who did what, through which door, to what, and how it ended.

Entry points say only *who* and *how*, all in one way: :func:`entry_point` wraps every view
of the admin (``AuditedAdminMixin.urls``), every view of the users' API
(``UserAPIView.as_view``) and every management command's ``execute`` (``AuditedCommand``),
so nothing they do runs outside the context; ``tests/unit/test_audit_walk.py`` walks every URL
and command to show it. The service layer records *what* (:func:`audited` on each action,
or :func:`record` for the few actions outside it). Nested actions (a move that creates, a
clone that creates) record once, for the outermost call.

Details never hold secrets: keys that look like tokens, keys or passwords are dropped.
"""

from __future__ import annotations

import contextvars
import functools
import getpass
import inspect
import json
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

VIA_ADMIN, VIA_API, VIA_COMMAND, VIA_SYSTEM = "admin", "api", "command", "system"

_SECRET_KEY = re.compile(r"token|secret|password|passwd|key|credential|auth|cert|signature", re.I)
_MAX_TEXT = 2000


@dataclass(frozen=True)
class _Context:
    actor: Any  # a user, a callable returning one (resolved late: DRF authenticates lazily), or None
    via: str
    source: str = ""  # e.g. the command's name
    run_by: str = ""  # a command: the operating-system account that ran it


_context: contextvars.ContextVar[_Context | None] = contextvars.ContextVar("ipynbsrv_audit", default=None)
_depth: contextvars.ContextVar[int] = contextvars.ContextVar("ipynbsrv_audit_depth", default=0)


@contextmanager
def acting(actor: Any, via: str, source: str = "", run_by: str = "") -> Iterator[None]:
    """Everything the services do inside is recorded as done by ``actor`` through ``via``
    (for a command: ``source`` its name, ``run_by`` the account that ran it)."""
    token = _context.set(_Context(actor, via, source, run_by))
    try:
        yield
    finally:
        _context.reset(token)


def current() -> _Context | None:
    """The context in force here (``None``: outside every entry point, recorded as ``system``)."""
    return _context.get()


def _account() -> str:
    """The operating-system account running this process ("" when it has no name)."""
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no name for this uid (containers): the entry says nothing
        return ""


def entry_point(via: str) -> Callable[[F], F]:
    """The one way an entry point sets the context: ``func`` runs inside it.

    For a view (``via`` admin or api: ``func(request, ...)``) the actor is the request's user,
    read when an entry is written (DRF authenticates lazily); for a command (``via`` command:
    ``func(command, ...)``, its ``execute``) there is no user, ``source`` is the command's name
    and ``run_by`` the operating-system account. The wrapper is marked ``audit_via``."""

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def wrapper(first: Any, *args: Any, **kwargs: Any) -> Any:
            if via == VIA_COMMAND:
                scope = acting(None, via, source=type(first).__module__.rsplit(".", 1)[-1], run_by=_account())
            else:
                scope = acting(lambda: getattr(first, "user", None), via)
            with scope:
                return func(first, *args, **kwargs)

        wrapper.audit_via = via  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


def _actor() -> tuple[Any, str, dict[str, str]]:
    ctx = _context.get()
    if ctx is None:
        return None, VIA_SYSTEM, {}
    actor = ctx.actor() if callable(ctx.actor) else ctx.actor
    if actor is not None and not getattr(actor, "is_authenticated", False):
        actor = None
    return actor, ctx.via, {key: value for key, value in (("source", ctx.source), ("run_by", ctx.run_by)) if value}


def scrub(value: Any) -> Any:
    """``value`` without anything stored under a secret-looking key."""
    if isinstance(value, dict):
        return {str(k): ("***" if _SECRET_KEY.search(str(k)) else scrub(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return str(value)[:_MAX_TEXT]


def describe(obj: Any) -> dict[str, str]:
    """Target type, id, text and node of a model instance (or a plain value)."""
    from .models import Container, Image, Node, Snapshot

    if obj is None:
        return {}
    if isinstance(obj, Container):
        return {"target_type": "container", "target_id": str(obj.pk or ""), "target": str(obj),
                "node": getattr(obj.node, "name", "")}
    if isinstance(obj, Snapshot):
        return {"target_type": "snapshot", "target_id": str(obj.pk or ""), "target": str(obj),
                "node": obj.container.node.name if obj.container_id else ""}
    if isinstance(obj, Image):
        return {"target_type": "image", "target_id": str(obj.pk or ""), "target": obj.ref or obj.name,
                "node": getattr(obj.node, "name", "")}
    if isinstance(obj, Node):
        return {"target_type": "node", "target_id": str(obj.pk or ""), "target": obj.name, "node": obj.name}
    return {"target_type": type(obj).__name__.lower(), "target": str(obj)[:512]}


def record(action: str, subject: Any = None, /, *, error: BaseException | str | None = None,
           details: dict[str, Any] | None = None, **fields: str) -> Any:
    """Append one entry; never raises (a failing audit write is logged, not fatal)."""
    from .models import AuditEntry

    actor, via, origin = _actor()
    info = {**describe(subject), **fields}
    extra = dict(details or {})
    for key, value in origin.items():
        extra.setdefault(key, value)
    try:
        message = "" if error is None else \
            f"{type(error).__name__ if not isinstance(error, str) else 'Error'}: {error}"[:_MAX_TEXT]
        extra = scrub(extra)
        _log(actor, via, action, info, message, extra)
        return AuditEntry.objects.create(
            actor=actor, actor_name=actor.get_username() if actor is not None else "", via=via, action=action,
            target_type=info.get("target_type", "")[:32], target_id=info.get("target_id", "")[:64],
            target=info.get("target", "")[:512], node=info.get("node", "")[:100],
            result=AuditEntry.Result.OK if error is None else AuditEntry.Result.ERROR,
            message=message, details=extra,
        )
    except Exception:  # the action itself happened; losing its entry must not undo it
        logger.exception("Could not record the audit entry for %s on %s", action, info.get("target"))
        return None


def _log(actor: Any, via: str, action: str, info: dict[str, str], message: str, details: dict[str, Any]) -> None:
    """The same entry (``message`` empty when it went well, ``details`` already scrubbed) as
    one line on this module's logger (``ipynbsrv_backends.audit``), so it can go to syslog or
    the journal too, and outlives a database transaction that is rolled back around the action."""
    try:
        name = actor.get_username() if actor is not None else "-"
        target = info.get("target_type", "")
        if info.get("target_id"):
            target += f":{info['target_id']}"
        logger.log(
            logging.INFO if not message else logging.WARNING,
            "audit: %s by %s via %s on %s %r node=%s: %s details=%s",
            action, name, via, target or "-", info.get("target", "")[:200], info.get("node") or "-",
            f"error {message}" if message else "ok",
            json.dumps(details, sort_keys=True, default=str)[:_MAX_TEXT],
        )
    except Exception:  # noqa: BLE001 - a log line must never stop the action
        logger.debug("could not log the audit entry for %s", action, exc_info=True)


def audited(action: str, *, target: Callable[..., Any] | None = None,
            details: Callable[..., dict[str, Any]] | None = None, from_result: bool = False,
            outcome: Callable[[Any], dict[str, Any]] | None = None) -> Callable[[F], F]:
    """Record every outermost call of the decorated service: its target (``target(*args,
    **kwargs)``, default the first argument), details and result. With ``from_result`` (or
    no target) a successful call describes what it returned (a new container, where a move
    ended); a failed one falls back on ``details["target"]``. ``outcome(result)`` adds to
    the details of a successful call (e.g. the node a move went to)."""

    def decorate(func: F) -> F:
        signature = inspect.signature(func)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            depth = _depth.get()
            token = _depth.set(depth + 1)
            try:
                try:
                    bound = signature.bind(*args, **kwargs)  # keyword calls look like positional ones
                    pargs, pkwargs = bound.args, bound.kwargs
                    subject = target(*pargs, **pkwargs) if target else (pargs[0] if pargs else None)
                    before = describe(subject)  # before the call: a delete leaves no pk behind
                    extra = details(*pargs, **pkwargs) if details else {}
                except Exception:  # describing the call must never stop the action
                    logger.exception("Could not describe %s for the audit log", action)
                    subject, before, extra = None, {}, {}
                try:
                    result = func(*args, **kwargs)
                except Exception as exc:
                    if depth == 0:
                        fallback = {"target_type": "container", "target": str(extra.get("target", ""))}
                        record(action, None, error=exc, details=extra, **(before or fallback))
                    raise
                if depth == 0:
                    after = describe(result) if (subject is None or from_result) and result is not None else before
                    if outcome is not None:
                        try:
                            extra = {**extra, **outcome(result)}
                        except Exception:  # describing the result must never undo the action
                            logger.exception("Could not describe the outcome of %s for the audit log", action)
                    record(action, None, details=extra, **after)
                return result
            finally:
                _depth.reset(token)

        return wrapper  # type: ignore[return-value]

    return decorate
