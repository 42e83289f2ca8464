"""Moving a container to another node, as stages written down one by one (see
:class:`~.movestate.MoveStage`), and finishing or rolling back a move its master did not
live to complete."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone

from .. import audit, errors
from ..contract import ContainerBackend, SnapshotTransferContainerBackend, SuspendableContainerBackend
from ..models import Container, Node, Snapshot
from ..registry import get_backend
from ._base import S, apply_record, backend_pk, find_on_node, hub_env, package, uid, with_env, with_secret
from .capabilities import require
from .lifecycle import refresh_container
from .movestate import MoveStage, PendingMove
from .placing import candidates_for, choose
from .transfer import drop_transfer_image, pull_hint, transfer_image

logger = logging.getLogger(__name__)


def move_details(container: Any, node: Any = None, *args: Any, allow_draining: bool = False,
                 **kwargs: Any) -> dict[str, Any]:
    """What a move's entry says before it runs (``to`` is filled in by :func:`move_outcome`);
    takes every argument :func:`move_container` takes, however it was called."""
    return {"target": str(container), "from": container.node.name if container.node_id else "",
            "requested_node": getattr(node, "name", ""), "allow_draining": bool(allow_draining), "to": ""}


def move_outcome(container: Any) -> dict[str, Any]:
    return {"to": container.node.name if container.node_id else ""}


def move_progress(container: Container, changes: dict[str, Any] | None) -> None:
    """Write down how far the move of ``container`` got (``None``: no move in progress),
    and which process is moving it."""
    if changes is not None:
        changes = {**changes, "process": f"{socket.gethostname()}:{os.getpid()}", "at": timezone.now().isoformat()}
    container.pending_move = None if changes is None else {**(container.pending_move or {}), **changes}
    Container.objects.filter(pk=container.pk).update(pending_move=container.pending_move, updated_at=timezone.now())


def finish_move(container: Container, old_backend: ContainerBackend, old_pk: str, refs: list[str],
                nodes: list[Node]) -> None:
    """Remove the old copy and the transfer images of a switched move, then forget the move."""
    try:
        old_backend.delete_container(old_pk)
    except errors.ContainerNotFoundError:
        pass
    except errors.BackendError as exc:
        logger.error("%s now runs on %s, but its old copy (%s) could not be removed (%s): "
                     "ipynbsrv_reconcile will try again", container, container.node, old_pk, exc)
        package()._move_progress(container, {"abandoned": True})  # the progress stays: reconcile finishes it
        return
    for ref in refs:
        drop_transfer_image(ref, nodes)
    package()._move_progress(container, None)


def _refuse_unmovable(container: Container, node: Node | None) -> None:
    source = container.node
    named = [v["source"] for v in container.volumes or [] if "/" not in v.get("source", "/")]
    if named:
        raise errors.InvalidArgumentError(
            f"{container} keeps data in the named volume(s) {', '.join(named)}, which stay on {source.name}: "
            "moving it would leave that data behind. Use bind mounts on shared storage for containers that move."
        )
    if node is not None and node.pk == source.pk:
        raise errors.InvalidArgumentError(f"{container} is already on {source.name}.")


def _resume_state(backend: ContainerBackend, pk: str, state: str) -> None:
    """Bring a copy that runs (or was just created) back to ``state``."""
    if state == S.STOPPED:
        backend.stop_container(pk)
    elif state == S.SUSPENDED and isinstance(backend, SuspendableContainerBackend):
        backend.suspend_container(pk)


@dataclass
class _Move:
    """One move under way: what it knows, and each of its steps."""

    container: Container
    source: Node
    target: Node
    old_backend: ContainerBackend
    new_backend: ContainerBackend
    old_pk: str
    snapshots: list[Snapshot]
    on_progress: Callable[[str], None] | None
    state: str = ""
    ref: str | None = None
    record: dict[str, Any] | None = None
    snapshot_refs: list[str] = field(default_factory=list)
    moved_snapshots: dict[int, str] = field(default_factory=dict)

    def step(self, text: str) -> None:
        if self.on_progress is not None:
            self.on_progress(text)

    def write(self, changes: dict[str, Any] | None) -> None:
        package()._move_progress(self.container, changes)

    def transfer_refs(self) -> list[str]:
        return ([self.ref] if self.ref else []) + self.snapshot_refs

    def refuse_untransferable_snapshots(self) -> None:
        if not self.snapshots:
            return
        for backend, where in ((self.old_backend, self.source), (self.new_backend, self.target)):
            if not isinstance(backend, SnapshotTransferContainerBackend):
                raise errors.CapabilityNotSupportedError(
                    f"{self.container} has {len(self.snapshots)} snapshot(s), and the backend of {where.name} cannot "
                    "carry snapshots between nodes: delete them first, or move it between nodes whose backends can."
                )

    def stop_source(self) -> None:
        self.state = self.old_backend.get_container(self.old_pk)["status"]
        self.step(f"stopping it on {self.source.name}")
        self.write({"stage": MoveStage.COPYING, "source": self.source.pk, "target": self.target.pk,
                    "old_pk": self.old_pk, "state": self.state, "ref": None, "new_pk": None})
        try:
            self.old_backend.stop_container(self.old_pk)
        except Exception:
            self.write(None)
            raise

    def create_copy(self, secret: str) -> None:
        self.step("committing it and pushing the image to the registry")
        self.ref = transfer_image(self.container, "move")
        self.write({"ref": self.ref})
        self.step(f"creating it on {self.target.name} (which pulls the image)")
        container, owner = self.container, self.container.owner
        ports: list[Any] = [{"address": self.target.address, "external": None, "internal": p["internal"]}
                            for p in container.ports or []]
        try:
            record = self.new_backend.create_container(
                owner.get_username(), uid(owner), container.name, ports, container.volumes or [],
                base_url=container.base_url, image=self.ref,
                **with_secret(with_env(container.options or {}, hub_env(container)), secret),
            )
        except errors.BackendError as exc:
            raise pull_hint(exc, self.target) from exc
        self.record = dict(record)
        self.write({"stage": MoveStage.CREATED, "new_pk": record["pk"], "snapshots": len(self.snapshots),
                    "snapshots_done": 0})

    def copy_snapshots(self) -> None:
        assert self.record is not None
        exporter, importer = self.old_backend, self.new_backend
        if not self.snapshots:
            return
        assert isinstance(exporter, SnapshotTransferContainerBackend)
        assert isinstance(importer, SnapshotTransferContainerBackend)
        for number, snapshot in enumerate(self.snapshots, 1):
            self.step(f"copying snapshot {snapshot.name} ({number} of {len(self.snapshots)}) through the registry")
            exported = exporter.export_container_snapshot(snapshot.backend_pk)
            self.snapshot_refs.append(exported["pk"])
            self.write({"snapshot_refs": list(self.snapshot_refs)})
            try:
                imported = importer.import_container_snapshot(self.record["pk"], snapshot.name, exported["pk"])
            except errors.BackendError as exc:
                raise pull_hint(exc, self.target) from exc
            self.moved_snapshots[snapshot.pk] = imported["pk"]
            self.write({"snapshots_done": number})

    def switch(self, secret: str) -> None:
        """Bring the new copy to the old one's state and point the record (and snapshots) at it."""
        assert self.record is not None
        _resume_state(self.new_backend, self.record["pk"], self.state)
        record = self.new_backend.get_container(self.record["pk"])
        container = self.container
        with transaction.atomic():
            container.node = self.target
            container.access_secret = secret
            apply_record(container, record)
            container.pending_move = {**(container.pending_move or {}), "stage": MoveStage.SWITCHED}
            container.save()
            for snapshot_pk, new_pk in self.moved_snapshots.items():
                Snapshot.objects.filter(pk=snapshot_pk).update(backend_pk=new_pk)
        self.step(f"removing the old copy from {self.source.name}")

    def roll_back(self) -> None:
        """Remove what the target got and put the old copy back as it was; if that cannot be
        done, leave the move to reconcile. The caller re-raises."""
        container, target, source = self.container, self.target, self.source
        logger.exception("Moving %s from %s to %s failed; putting it back", container, source.name, target.name)
        if self.record is not None:
            try:
                self.new_backend.delete_container(self.record["pk"])
            except errors.BackendError as exc:
                logger.error("Could not remove the half-moved copy of %s on %s: %s", container, target.name, exc)
        for transfer in self.transfer_refs():
            drop_transfer_image(transfer, [target, source])
        try:
            if self.state in (S.RUNNING, S.SUSPENDED):
                self.old_backend.start_container(self.old_pk)
                if self.state == S.SUSPENDED:
                    _resume_state(self.old_backend, self.old_pk, self.state)
        except Exception:
            self.write({"abandoned": True})  # the old copy could not be put back: reconcile rolls back
            raise
        self.write(None)

    def run(self) -> None:
        self.refuse_untransferable_snapshots()
        self.stop_source()
        secret = package()._mint_secret()  # the new copy answers only with a secret of its own
        try:
            self.create_copy(secret)
            self.copy_snapshots()
            self.switch(secret)
        except Exception:
            self.roll_back()
            raise
        package()._finish_move(self.container, self.old_backend, self.old_pk, self.transfer_refs(),
                               [self.target, self.source])


@audit.audited("container.move", from_result=True, details=move_details, outcome=move_outcome)
def move_container(container: Container, node: Node | None = None,
                   on_progress: Callable[[str], None] | None = None, *, allow_draining: bool = False) -> Container:
    """Move ``container`` to another node (``node``, or one placement picks).

    ``on_progress`` is called with a short sentence as each step starts (the commands
    print them); the admin and the API read the step from ``Container.progress``.

    The container is stopped, committed and pushed to the registry, recreated on the
    target with the same name, base URL, environment and limits; its snapshots follow it
    through the registry, one by one, and it is brought back to the state it had. Only then
    is the old one removed and the record switched over. If anything fails before that, the
    copies on the target are removed and the old container is started again as it was.

    Named volumes live on their node: a container with one is refused rather than moved
    without its data. A named ``node`` must be enabled and, unless ``allow_draining``, not
    draining (placement never picks a draining one).
    """
    source = container.node
    pk = backend_pk(container)
    require(source, "move")
    _refuse_unmovable(container, node)
    snapshots = list(container.snapshots.order_by("created_at", "pk"))
    candidates = candidates_for(node, exclude=[source.pk], allow_draining=allow_draining, moving=container)
    target = choose(candidates, named=node, allow_draining=allow_draining,
                    full=f"Every node that could take {container} is full.")
    move = _Move(container, source, target, get_backend(source), get_backend(target), pk, snapshots, on_progress)
    move.run()
    logger.info("Moved %s from %s to %s%s", container, source.name, target.name,
                f" with {len(snapshots)} snapshot(s)" if snapshots else "")
    return container


def resume_interrupted_move(container: Container) -> str:
    """Finish (the record already points at the new copy) or roll back (it does not) a move
    the master did not live to complete. Returns what was done; raises
    :class:`errors.BackendError` when a node involved cannot be reached (the progress stays)."""
    move = PendingMove.of(container)
    nodes = Node.objects.in_bulk([pk for pk in (move.source, move.target) if pk is not None])
    source, target = nodes.get(move.source or 0), nodes.get(move.target or 0)
    if source is None or target is None:
        package()._move_progress(container, None)
        return "forgotten (a node of the move no longer exists)"
    old_backend, new_backend = get_backend(source), get_backend(target)
    if move.stage == MoveStage.SWITCHED:
        package()._finish_move(container, old_backend, move.old_pk, move.transfer_refs, [target, source])
        if container.pending_move:
            raise errors.BackendUnavailableError(f"The old copy of {container} on {source.name} is still there.")
        return f"finished: now on {target.name}"
    # Not switched: the record still names the old copy. Remove any new copy (its imported
    # snapshots go with it), put the old back.
    copy = find_on_node(new_backend, container.owner, container.name)
    if copy is not None:
        new_backend.delete_container(copy["pk"])
    for ref in move.transfer_refs:
        drop_transfer_image(ref, [target, source])
    if move.state in (S.RUNNING, S.SUSPENDED):
        if old_backend.get_container(move.old_pk)["status"] == S.STOPPED:
            old_backend.start_container(move.old_pk)
        if move.state == S.SUSPENDED:
            _resume_state(old_backend, move.old_pk, move.state)
    package()._move_progress(container, None)
    refresh_container(container)
    return f"rolled back: stays on {source.name}"

