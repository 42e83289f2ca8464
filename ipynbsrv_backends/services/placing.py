"""The one placement step of create, re-placement and move: which nodes may take a new
container, and, in one locked transaction that takes the write turn, which of them does."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from django.db import transaction

from .. import errors
from ..models import Container, Node
from ..placement import get_algorithm
from ._base import write_turn
from .health import candidate_nodes, check_node_health, stale

#: When placement finds no open, healthy node for a new container.
NO_NODE = ("No node can take a new container: every node is disabled, draining, full or not answering. "
           "Ask an administrator to check the nodes.")


def refuse_closed_node(node: Node, *, allow_draining: bool = False) -> None:
    """The one rule for a new container (create, clone, move) on a node someone named, staff
    included: never on a disabled node; on a draining one only with ``allow_draining``."""
    if not node.enabled:
        raise errors.NoNodeAvailableError(
            f"The node {node.name!r} is disabled: it takes no new containers. "
            "Pick another node (or none, and placement picks), or enable this one first."
        )
    if node.draining and not allow_draining:
        raise errors.NoNodeAvailableError(
            f"The node {node.name!r} is draining: it keeps its containers but takes no new ones. "
            "Pick another node (or none, and placement picks), stop draining it, or, as staff, "
            "place it there anyway with the override (allow_draining)."
        )


def candidates_for(named: Node | None, *, exclude: Iterable[int] = (), allow_draining: bool = False,
                   moving: Any = None) -> list[Node]:
    """The nodes a new container may go to: ``named`` alone when one was named (open and
    healthy, or a clear error), else every open, healthy node not in ``exclude``. ``moving``
    is the container a move places (its health is then asked afresh and the errors name it)."""
    if named is None:
        found = candidate_nodes(exclude)
        if not found:
            raise errors.NoNodeAvailableError(NO_NODE if moving is None else f"No other node can take {moving} now.")
        return found
    refuse_closed_node(named, allow_draining=allow_draining)
    if moving is not None or stale(named):
        check_node_health(named)
    if not named.is_healthy:
        reason = named.last_error or "it does not answer"
        raise errors.NoNodeAvailableError(f"The node {named.name!r} is not healthy: {reason}" if moving is None
                                          else f"The node {named.name} cannot take {moving} now: {reason}")
    return [named]


def _choose_locked(candidates: Iterable[Node], *, named: Node | None, full: str,
                   allow_draining: bool = False) -> Node:
    """Inside the caller's transaction: lock the candidate nodes, and choose the one the new
    container goes to: ``named`` when one was named (its flags re-checked as they are now),
    else the placement algorithm's pick among those with room. ``full`` is the error's message
    when none has room."""
    locked = list(Node.objects.select_for_update().filter(pk__in=[n.pk for n in candidates]).order_by("pk"))
    if named is not None:  # its flags as they are now, not as the caller loaded them
        for current in locked:
            refuse_closed_node(current, allow_draining=allow_draining)
    loads = Container.objects.load_by_node(n.pk for n in locked)
    roomy = sorted((n for n in locked if loads.get(n.pk, 0) < n.capacity), key=lambda n: n.name)
    if not roomy:
        raise errors.NoNodeAvailableError(full)
    return roomy[0] if named is not None else get_algorithm().choose_node(roomy, loads)


@contextmanager
def placing(candidates: Iterable[Node], *, named: Node | None, full: str,
            allow_draining: bool = False) -> Iterator[Node]:
    """Take the write turn, open a transaction, lock the candidates and yield the chosen node;
    what the caller writes inside (a new record, a record's new node) commits with the choice."""
    with write_turn, transaction.atomic():
        yield _choose_locked(candidates, named=named, full=full, allow_draining=allow_draining)


def choose(candidates: Iterable[Node], *, named: Node | None, full: str, allow_draining: bool = False) -> Node:
    """:func:`placing` with nothing to write inside: the node a move goes to."""
    with placing(candidates, named=named, full=full, allow_draining=allow_draining) as chosen:
        return chosen
