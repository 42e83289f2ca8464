"""The master in the Django admin: nodes, backends, containers, images and snapshots.

Every action goes through :mod:`ipynbsrv_backends.services`. Actions on several objects
work object by object: a :class:`~ipynbsrv_backends.errors.BackendError` is reported for the
object it happened to, with its reason, and the others go on; the successes are counted.
No backend failure turns into a server error.

The model admins live in the modules of this package (:mod:`.mixins`, :mod:`.nodes`,
:mod:`.containers`, :mod:`.records`); importing it registers them. Every public name is
importable from here, as it was from the single module this package replaced.
"""

from __future__ import annotations

from .containers import LIFECYCLE, ContainerAdmin, SnapshotInline, Step, snapshot_name
from .hubs import HubCredentialAdmin
from .mixins import AuditedAdminMixin, ServiceDeleteMixin, run_each
from .nodes import BackendAdmin, NodeAdmin
from .records import AuditEntryAdmin, ImageAdmin, SnapshotAdmin

__all__ = [
    "AuditEntryAdmin",
    "AuditedAdminMixin",
    "BackendAdmin",
    "ContainerAdmin",
    "HubCredentialAdmin",
    "ImageAdmin",
    "LIFECYCLE",
    "NodeAdmin",
    "ServiceDeleteMixin",
    "SnapshotAdmin",
    "SnapshotInline",
    "Step",
    "run_each",
    "snapshot_name",
]
