"""The service layer: every action on nodes, containers, images and snapshots.

The admin, the users' API and the management commands all call these functions, so each
rule — placement, naming, state changes, compensation on failure — lives here once.

Two promises hold whatever fails part-way: no container runs on a node without a record,
and no record is silently dropped while its container may still exist. When a node cannot
be reached to confirm, the record is kept (status ``error``) for ``ipynbsrv_reconcile``.

The modules, by job: :mod:`.health` (asking nodes how they are), :mod:`.placing` (the one
placement step of create and move), :mod:`.create` and :mod:`.build` (creating and cloning),
:mod:`.move` and :mod:`.movestate` (moving, as typed stages), :mod:`.lifecycle` (start, stop,
delete, refresh), :mod:`.snapshots`, :mod:`.images`, :mod:`.quotas`
(limits per user and group, checked under the user's lock), :mod:`.reconcile`, :mod:`.culling`
and :mod:`.idlepolicy` (idle culling). Import from here:
``from ipynbsrv_backends import services; services.create_container(...)``.
"""

from __future__ import annotations

from ._base import mint_secret as _mint_secret
from ._base import uid as _uid
from ._base import write_turn as _write_turn
from .capabilities import unsupported_actions
from .create import clone_container, create_container, start_creating
from .create import reserve as _reserve
from .culling import cull, note_access, resume_on_request
from .health import candidate_nodes, check_node_health, check_nodes_health, set_machine_availability
from .images import commit_container, delete_image, usable_images
from .lifecycle import (
    delete_container,
    refresh_container,
    restart_container,
    resume_container,
    start_container,
    stop_container,
    suspend_container,
    user_containers,
)
from .move import finish_move as _finish_move
from .move import move_container, resume_interrupted_move
from .move import move_progress as _move_progress
from .movestate import MOVE_STALE_AFTER, MoveStage, PendingMove, move_interrupted
from .quotas import report as quota_report
from .reconcile import ReconcileReport, reconcile, refresh_node
from .snapshots import create_snapshot, delete_snapshot, restore_snapshot

__all__ = [
    "unsupported_actions",
    "set_machine_availability",
    "check_node_health",
    "check_nodes_health",
    "candidate_nodes",
    "create_container",
    "start_creating",
    "clone_container",
    "move_container",
    "start_container",
    "stop_container",
    "restart_container",
    "suspend_container",
    "resume_container",
    "delete_container",
    "refresh_container",
    "refresh_node",
    "create_snapshot",
    "restore_snapshot",
    "delete_snapshot",
    "commit_container",
    "delete_image",
    "reconcile",
    "ReconcileReport",
    "resume_interrupted_move",
    "move_interrupted",
    "MoveStage",
    "PendingMove",
    "MOVE_STALE_AFTER",
    "user_containers",
    "usable_images",
    "quota_report",
    "cull",
    "note_access",
    "resume_on_request",
]

# Looked up here at call time (see ``_base.package``): tests and the bench replace them on
# this package to hook into a creation or a move.
_HOOKS = (_reserve, _mint_secret, _move_progress, _finish_move, _uid, _write_turn)
