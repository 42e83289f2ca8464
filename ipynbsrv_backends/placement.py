"""Placement: which node gets a new container (the ``ServerSelectionAlgorithm``).

An algorithm only chooses among the candidates it is given. The service layer decides who
is a candidate — enabled, not draining, healthy and with room — and calls the algorithm
inside the transaction that holds the nodes' rows locked, so concurrent placements never
overfill a node and the round-robin position is shared by every process.
"""

from __future__ import annotations

import abc
import random
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from django.utils.module_loading import import_string

from . import errors
from .conf import app_settings

if TYPE_CHECKING:
    from .models import Node

__all__ = [
    "ServerSelectionAlgorithm",
    "RoundRobin",
    "Random",
    "LeastLoaded",
    "ALGORITHMS",
    "get_algorithm",
]


class ServerSelectionAlgorithm(abc.ABC):
    """Choose one node out of ``candidates`` (never empty; ordered by name).

    ``loads`` maps each candidate's pk to the number of containers it holds now.
    """

    @abc.abstractmethod
    def choose_node(self, candidates: Sequence[Node], loads: Mapping[int, int]) -> Node: ...


class RoundRobin(ServerSelectionAlgorithm):
    """Each node in turn. The position is a database row, so it holds across processes and
    restarts; the caller's transaction keeps it consistent."""

    key = "round-robin"

    def choose_node(self, candidates: Sequence[Node], loads: Mapping[int, int]) -> Node:
        from .models import PlacementState

        state, _ = PlacementState.objects.select_for_update().get_or_create(key=self.key)
        ordered = sorted(candidates, key=lambda node: node.pk)
        chosen = ordered[0]
        if state.last_node_id is not None:
            chosen = next((node for node in ordered if node.pk > state.last_node_id), ordered[0])
        state.last_node = chosen
        state.save(update_fields=["last_node", "updated_at"])
        return chosen


class Random(ServerSelectionAlgorithm):
    """Any node, at random."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.SystemRandom()

    def choose_node(self, candidates: Sequence[Node], loads: Mapping[int, int]) -> Node:
        return self._rng.choice(list(candidates))


class LeastLoaded(ServerSelectionAlgorithm):
    """The node with the smallest share of its capacity in use; ties go to the node with
    more room, then by name, so a burst of creations spreads evenly."""

    def choose_node(self, candidates: Sequence[Node], loads: Mapping[int, int]) -> Node:
        def key(node: Node) -> tuple[float, int, str]:
            used = loads.get(node.pk, 0)
            return (used / node.capacity, -(node.capacity - used), node.name)

        return min(candidates, key=key)


ALGORITHMS: dict[str, type[ServerSelectionAlgorithm]] = {
    "round-robin": RoundRobin,
    "random": Random,
    "least-loaded": LeastLoaded,
}


def get_algorithm() -> ServerSelectionAlgorithm:
    """The algorithm named in ``IPYNBSRV_BACKENDS['SERVER_SELECTION_ALGORITHM']``."""
    name = app_settings.SERVER_SELECTION_ALGORITHM
    if isinstance(name, str) and name in ALGORITHMS:
        return ALGORITHMS[name]()
    try:
        cls = import_string(name)
    except (ImportError, TypeError) as exc:
        raise errors.InvalidArgumentError(
            f"Unknown SERVER_SELECTION_ALGORITHM {name!r}: use one of {', '.join(ALGORITHMS)} or a dotted path."
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, ServerSelectionAlgorithm)):
        raise errors.InvalidArgumentError(f"{name} is not a ServerSelectionAlgorithm.")
    return cls()
