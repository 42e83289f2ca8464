"""Reconcile: compare a node's records with what it really runs, report the drift and, on
request, repair it. However many containers a node has, it costs the same few queries: the
rows are read in one go each, and every repair is written in bulk."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.utils import timezone

from .. import audit, errors
from ..contract import ContainerBackend
from ..models import Container, Image, Node
from ..registry import get_backend
from ._base import S, apply_record
from .move import resume_interrupted_move
from .movestate import PendingMove, move_interrupted

#: What the node's record changes on a row (see :func:`~._base.apply_record`); the fields it
#: sets to the same value on every row are written apart, in one plain update.
_VARYING_FIELDS = ["backend_pk", "status", "ports", "volumes"]


@dataclass
class ReconcileReport:
    """What ``reconcile`` found and did on one node."""

    node: str
    reachable: bool = True
    error: str = ""
    missing: list[str] = field(default_factory=list)  # records whose container is gone
    orphans: list[str] = field(default_factory=list)  # containers without a record
    updated: int = 0
    marked_lost: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    moves: list[str] = field(default_factory=list)  # interrupted moves finished or rolled back
    problems: list[str] = field(default_factory=list)

    @property
    def drift(self) -> bool:
        return bool(self.missing or self.orphans or not self.reachable)


def reconcile(node: Node, *, mark_lost: bool = False, adopt: bool = False, remove: bool = False) -> ReconcileReport:
    """Compare the records of ``node`` with what it really runs.

    Reports drift; on request marks records whose container is gone as ``lost``, adopts
    labelled containers that have no record (when their owner is a known user), or removes
    them. ``adopt`` and ``remove`` are exclusive.
    """
    if adopt and remove:
        raise errors.InvalidArgumentError("Choose adopt or remove for containers without a record, not both.")
    report = _reconcile(node, mark_lost=mark_lost, adopt=adopt, remove=remove)
    if report.drift or report.moves or report.updated or report.problems:
        audit.record(
            "reconcile.drift", node, error=None if report.reachable else report.error,
            details={"missing": report.missing, "orphans": report.orphans, "updated": report.updated,
                     "marked_lost": report.marked_lost, "adopted": report.adopted, "removed": report.removed,
                     "moves": report.moves, "problems": report.problems},
        )
    return report


def _reconcile(node: Node, *, mark_lost: bool, adopt: bool, remove: bool) -> ReconcileReport:
    report = ReconcileReport(node=node.name)
    in_flight = _resolve_moves(node, report)
    try:
        backend = get_backend(node)
        records = {r["pk"]: dict(r) for r in backend.get_containers()}
    except errors.BackendError as exc:
        report.reachable, report.error = False, str(exc)
        return report
    rows = list(Container.objects.filter(node=node).select_related("owner"))
    unconfirmed = [c for c in rows if not c.backend_pk and c.status == S.ERROR]
    known = {c.backend_pk: c for c in rows if c.backend_pk}
    changed, lost = _match_unconfirmed(unconfirmed, records, report)
    more_changed, more_lost = _match_known(known, records, report)
    known.update((c.backend_pk, c) for c in changed)  # found by name: theirs now, no orphans
    _write(changed + more_changed, (lost + more_lost) if mark_lost else [], report)
    orphans = {pk: r for pk, r in records.items()
               if pk not in known and (r.get("owner"), r.get("name")) not in in_flight}
    report.orphans.extend(orphans)
    if remove:
        _remove(backend, orphans, report)
    elif adopt:
        _adopt(node, orphans, report)
    # records still "creating" long after any creation could take are errors
    stale = timezone.now() - timedelta(minutes=30)
    report.problems.extend(f"{c}: still 'creating' after 30 minutes" for c in rows
                           if c.status == S.CREATING and c.created_at < stale)
    return report


def refresh_node(node: Node) -> int:
    """Update the status of every record on ``node`` from one listing (records whose
    container is gone are marked ``lost``), in a few queries. Returns how many changed."""
    records = {r["pk"]: dict(r) for r in get_backend(node).get_containers()}
    rows = Container.objects.filter(node=node).exclude(status=S.CREATING).exclude(backend_pk="")
    report = ReconcileReport(node=node.name)
    changed, lost = _match_known({c.backend_pk: c for c in rows.select_related("owner")}, records, report)
    _write(changed, lost, report)
    return len(changed) + len(lost)


def _resolve_moves(node: Node, report: ReconcileReport) -> set[tuple[str, str]]:
    """Finish or roll back the interrupted moves that involve ``node``; returns (owner, name)
    of the moves still running elsewhere, whose new copy is no orphan."""
    in_flight: set[tuple[str, str]] = set()
    for container in Container.objects.moving().select_related("owner", "node"):
        if not PendingMove.of(container).involves(node.pk) and container.node_id != node.pk:
            continue
        if not move_interrupted(container):
            in_flight.add((container.owner.get_username(), container.name))
            continue
        try:
            report.moves.append(f"{container}: {resume_interrupted_move(container)}")
        except errors.BackendError as exc:
            in_flight.add((container.owner.get_username(), container.name))
            report.problems.append(f"{container}: an interrupted move cannot be resolved yet: {exc}")
    return in_flight


def _match_unconfirmed(rows: list[Container], records: dict[str, dict[str, Any]],
                       report: ReconcileReport) -> tuple[list[Container], list[tuple[Container, str]]]:
    """Records whose creation the node never confirmed (it timed out): find their container by
    name. Returns the rows to update and the ones to mark lost (with why)."""
    by_name = {(r.get("owner"), r.get("name")): r for r in records.values()}
    changed, lost = [], []
    for container in rows:
        record = by_name.get((container.owner.get_username(), container.name))
        if record is not None:
            apply_record(container, record)
            changed.append(container)
            continue
        report.missing.append(str(container))
        lost.append((container, "The node never confirmed this container."))
    return changed, lost


def _match_known(known: dict[str, Container], records: dict[str, dict[str, Any]],
                 report: ReconcileReport) -> tuple[list[Container], list[tuple[Container, str]]]:
    changed, lost = [], []
    for pk, container in known.items():
        record = records.get(pk)
        if record is None:
            if container.status != S.LOST:
                report.missing.append(str(container))
                lost.append((container, "The node no longer has this container."))
            continue
        if container.status != record["status"] or container.ports != record["ports"]:
            apply_record(container, record)
            changed.append(container)
    return changed, lost


def _write(changed: list[Container], lost: list[tuple[Container, str]], report: ReconcileReport) -> None:
    """Save the updated rows (one bulk update, one plain update) and mark the lost ones (one
    update per reason). Django splits a bulk update into batches only where the database
    limits a query's parameters (SQLite: about 160 rows a batch)."""
    now = timezone.now()
    if changed:
        Container.objects.bulk_update(changed, _VARYING_FIELDS)
        Container.objects.filter(pk__in=[c.pk for c in changed]).update(
            status_checked_at=now, last_error="", error_code="", progress_detail="", updated_at=now)
        for container in changed:
            container.status_checked_at = container.updated_at = now
        report.updated += len(changed)
    for reason in sorted({why for _, why in lost}):
        group = [c for c, why in lost if why == reason]
        Container.objects.filter(pk__in=[c.pk for c in group]).update(status=S.LOST, last_error=reason,
                                                                      updated_at=now)
        for container in group:
            container.status, container.last_error = S.LOST, reason
            report.marked_lost.append(str(container))


def _remove(backend: ContainerBackend, orphans: dict[str, dict[str, Any]], report: ReconcileReport) -> None:
    for pk in orphans:
        try:
            backend.delete_container(pk)
            report.removed.append(pk)
        except errors.BackendError as exc:
            report.problems.append(f"{pk}: {exc}")


def _adopt(node: Node, orphans: dict[str, dict[str, Any]], report: ReconcileReport) -> None:
    """Give each orphan whose owner is a known user a record (one query each for the users,
    the names they already use and the images, one bulk insert)."""
    User = get_user_model()
    username = User.USERNAME_FIELD
    names = {r.get("owner") for r in orphans.values() if r.get("owner")}
    users = {getattr(u, username): u for u in User.objects.filter(**{f"{username}__in": names})}
    taken = set(Container.objects.filter(owner__in=list(users.values()))
                .values_list("owner_id", "name"))
    refs = {r.get("image") for r in orphans.values() if r.get("image")}
    images: dict[str, Image] = {}
    for image in Image.objects.filter(ref__in=refs):  # in the default order: the first per ref wins
        images.setdefault(image.ref, image)
    new: list[Container] = []
    for pk, record in orphans.items():
        owner = users.get(record.get("owner"))
        if owner is None:
            report.problems.append(f"{pk}: no user named {record.get('owner')!r} to adopt it")
            continue
        name = record.get("name") or pk
        if (owner.pk, name) in taken:
            report.problems.append(f"{pk}: {owner} already has a record named {name!r}")
            continue
        taken.add((owner.pk, name))
        container = Container(owner=owner, name=name, node=node, image_ref=record.get("image") or "")
        container.image = images.get(container.image_ref)
        apply_record(container, record)
        new.append(container)
        report.adopted.append(pk)
    Container.objects.bulk_create(new)  # in batches only where the database limits parameters
