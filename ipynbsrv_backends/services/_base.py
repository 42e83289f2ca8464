"""What every part of the service layer shares: the write turn, a container's uid and
access secret, and writing a node's record of a container onto its row."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Mapping
from typing import Any

from django.utils import timezone

from .. import errors
from ..conf import app_settings
from ..contract import ACCESS_SECRET_ENV, ContainerBackend
from ..models import Container

S = Container.Status

#: The short database writes of a creation (the placement transaction, the record after the
#: node answered) take turns in this process. Threads then wait here and are woken as soon as
#: the turn is free; waiting in the database instead, SQLite's busy handler sleeps between
#: tries (up to 100 ms), and a spawn storm spent most of its time there (docs/benchmarks.md).
#: Other processes still take turns through the database's own locks.
write_turn = threading.RLock()


def package() -> Any:
    """The ``services`` package. The few names tests and the bench replace there
    (``_reserve``, ``_mint_secret``, ``_move_progress``, ``_finish_move``) are looked up
    through it, at call time, so a replacement takes effect in every module."""
    from .. import services

    return services


def uid(user: Any) -> int:
    return int(app_settings.UID_OFFSET) + int(user.pk)


def mint_secret() -> str:
    """A fresh access secret for a container's notebook server (see ``ACCESS_SECRET_ENV``)."""
    return secrets.token_urlsafe(32)


def with_secret(options: Mapping[str, Any], secret: str) -> dict[str, Any]:
    """The backend options with the access secret added to ``env`` (over anything given there).
    The secret is never part of the options the record keeps."""
    env = options.get("env")
    if env is not None and not isinstance(env, Mapping):
        return dict(options)  # the backend refuses it with a clear message
    return {**options, "env": {**(env or {}), ACCESS_SECRET_ENV: secret}}


def with_env(options: Mapping[str, Any], env: Mapping[str, str] | None) -> dict[str, Any]:
    """The backend options with ``env`` added to their ``env`` (a hub's environment)."""
    given = options.get("env")
    if not env or (given is not None and not isinstance(given, Mapping)):
        return dict(options)
    return {**options, "env": {**(given or {}), **env}}


def hub_env(container: Container) -> dict[str, str] | None:
    """The environment a hub gave ``container`` (``None`` for a container no hub started): what a
    move gives the copy again."""
    from ..models import HubServer

    return HubServer.objects.filter(container_id=container.pk).values_list("env", flat=True).first()


def apply_record(container: Container, record: Mapping[str, Any]) -> None:
    """Write the node's record of ``container`` onto its row (not saved)."""
    container.backend_pk = record["pk"]
    container.status = record.get("status") or S.ERROR
    container.ports = record.get("ports") or []
    container.volumes = record.get("volumes") or []
    container.status_checked_at = timezone.now()
    # a backend may say why a container is not where it should be (a swarm: waiting for its node)
    container.last_error = str(record.get("detail") or "")
    container.error_code = ""
    container.progress_detail = ""


def backend_pk(container: Container) -> str:
    if not container.backend_pk:
        raise errors.IllegalContainerStateError(f"{container} has no container on its node yet.")
    return container.backend_pk


def find_on_node(backend: ContainerBackend, owner: Any, name: str) -> dict[str, Any] | None:
    """The node's record of ``owner``'s container ``name``, found by its labels."""
    for record in backend.get_containers():
        if record.get("owner") == owner.get_username() and record.get("name") == name:
            return dict(record)
    return None


def refuse_while_moving(container: Container) -> None:
    """A container being moved is left alone until the move is done: a start, a snapshot or a
    delete on its old node meanwhile would be lost or undone by the move."""
    if Container.objects.filter(pk=container.pk).moving().exists():
        raise errors.IllegalContainerStateError(
            f"{container} is being moved to another node: try again once the move is done "
            "(an interrupted move is finished or rolled back by ipynbsrv_reconcile)."
        )
