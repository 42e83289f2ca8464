"""Which container actions a node's backend cannot do, and why, without asking the node.

A backend that lacks a capability sub-contract (``SuspendableContainerBackend``,
``SnapshotableContainerBackend``) cannot suspend, resume, snapshot or restore; a backend may
also name more actions it refuses, with the reason, in the contract's class attribute ``UNSUPPORTED``
(``DockerSwarm`` does: exec, commit, clone, move). The admin hides those actions and the
users' API answers them with ``501 not_supported`` and the reason, before any node is asked.
"""

from __future__ import annotations

from typing import Any

from .. import errors
from ..contract import SnapshotableContainerBackend, SuspendableContainerBackend
from ..registry import backend_class

__all__ = ["ACTIONS", "unsupported_actions", "require"]

#: Every action that needs more than the base contract: the sub-contract it needs (or None
#: when only a backend's own ``UNSUPPORTED`` can rule it out), and the key of its reason.
ACTIONS: dict[str, tuple[type | None, str]] = {
    "suspend": (SuspendableContainerBackend, "suspend"),
    "resume": (SuspendableContainerBackend, "suspend"),
    "snapshot": (SnapshotableContainerBackend, "snapshot"),
    "restore": (SnapshotableContainerBackend, "snapshot"),
    "clone": (None, "clone"),
    "commit": (None, "commit"),
    "move": (None, "move"),
    "exec": (None, "exec"),
}


def unsupported_actions(node: Any) -> dict[str, str]:
    """``{action: reason}`` for every action of :data:`ACTIONS` the node's backend class
    cannot do (from the class alone: no instance is built, nothing is contacted)."""
    try:
        cls = backend_class(node.backend.kind)
    except errors.BackendError:
        return {}
    reasons = cls.UNSUPPORTED
    refused = {}
    for action, (contract, key) in ACTIONS.items():
        lacking = contract is not None and not issubclass(cls, contract)
        if lacking or key in reasons:
            refused[action] = reasons.get(key) or f"The {node.backend.kind} backend does not offer it."
    return refused


def require(node: Any, action: str) -> None:
    """Raise ``CapabilityNotSupportedError`` (501) saying why when the node's backend cannot
    do ``action``."""
    reason = unsupported_actions(node).get(action)
    if reason is not None:
        raise errors.CapabilityNotSupportedError(f"{node} cannot {action} containers: {reason}")
