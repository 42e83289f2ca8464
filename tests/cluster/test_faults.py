"""Faults on the cluster test bed: a node's engine killed during a create, its host API
killed, its link cut, the registry stopped during a push or a pull, and the master killed
in the middle of a move.

In each: the caller gets a typed error (an ``ipynbsrv_backends.errors`` class) within its
configured timeout, no container runs on a node without a record, no record is lost, and
one run of ``ipynbsrv_reconcile`` with an operator's flags restores a consistent view.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from ipynbsrv_backends import errors, registry, services
from ipynbsrv_backends.models import AuditEntry, Backend, Container, Image, Snapshot

from ..conftest import TEST_IMAGE
from ..testbed import INSTANCE, cluster, cluster_nodes  # noqa: F401 - fixtures

pytestmark = [pytest.mark.engine, pytest.mark.cluster, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parent.parent.parent

#: Short HttpRemote timeouts, so every fault shows within seconds.
TIMEOUTS = {"connect_timeout": 2, "timeout": 4, "status_timeout": 2, "long_timeout": 6, "retries": 0}
#: The longest any single call may take before its typed error: a create that times out
#: waits for the long timeout, then asks the node once more (the listing: the short one).
CALL_LIMIT = TIMEOUTS["long_timeout"] + TIMEOUTS["timeout"] + TIMEOUTS["connect_timeout"] + 3


@pytest.fixture
def nodes(cluster, cluster_nodes, settings):
    Backend.objects.filter(name="hostapi").update(
        config={"url": "http://{address}:8080", **TIMEOUTS})
    registry.forget_backend()
    yield cluster_nodes
    registry.forget_backend()


@pytest.fixture
def base_image(db):
    return Image.objects.create(name="busybox", ref=TEST_IMAGE, public=True)


def engine(cluster, index: int) -> Any:
    import docker

    return docker.DockerClient(base_url=f"unix://{cluster.sockets[index]}", timeout=30)


def on_node(cluster, index: int, *, running_only: bool = False) -> dict[str, str]:
    """name -> status of every test container the node's engine really has."""
    client = engine(cluster, index)
    try:
        found = client.containers.list(all=not running_only, filters={"label": f"org.ipynbsrv.instance={INSTANCE}"})
        return {c.name: c.status for c in found}
    finally:
        client.close()


def wait_for(condition, what: str, seconds: float = 60) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {seconds}s waiting for {what}")


def pid_gone(pid: int) -> bool:
    """Dead (a zombie its parent has not reaped yet counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def timed(call, *args, **kwargs) -> tuple[BaseException | None, float]:
    started = time.monotonic()
    try:
        call(*args, **kwargs)
    except Exception as exc:  # the test checks the class
        return exc, time.monotonic() - started
    return None, time.monotonic() - started


def reconcile_once() -> str:
    """One operator's run: repair what can be repaired; exits 0 only when no drift remains."""
    out = StringIO()
    call_command("ipynbsrv_reconcile", "--mark-lost", "--remove-orphans", stdout=out)
    return out.getvalue()


def assert_consistent(cluster, nodes) -> None:
    """Every live record has its container on its node, and every container has a record."""
    for index, node in enumerate(nodes):
        records = set(Container.objects.filter(node=node).exclude(status="lost").values_list("backend_pk", flat=True))
        assert set(on_node(cluster, index)) == records, f"{node.name}: engine and records differ"
    assert not Container.objects.filter(pending_move__isnull=False).exists()
    out = StringIO()
    call_command("ipynbsrv_reconcile", stdout=out)  # a plain run finds nothing more (exit 0)
    assert "drift remains" not in out.getvalue()


# ---------------------------------------------------------------------------- engine

def test_engine_killed_during_a_create(cluster, nodes, base_image, alice):
    n1, n2 = nodes
    keep = services.create_container(alice, "keep", image=base_image, node=n1)
    pid = int((cluster.node_dir(0) / "docker.pid").read_text())
    os.kill(pid, signal.SIGSTOP)  # the engine hangs: the create is in flight on the node ...
    outcome: dict[str, Any] = {}

    def create() -> None:
        from django.db import connection

        try:
            outcome["error"], outcome["seconds"] = timed(
                services.create_container, alice, "nb", image=base_image, node=n1)
        finally:
            connection.close()

    worker = threading.Thread(target=create)
    try:
        worker.start()
        wait_for(lambda: Container.objects.filter(name="nb").exists(), "the reservation")
        time.sleep(0.5)  # let the request reach the host API and the engine's socket
    finally:
        os.killpg(pid, signal.SIGKILL)  # ... when the engine dies (dockerd and the containerd it started)
        wait_for(lambda: pid_gone(pid), "the node's dockerd to die", 20)
    worker.join(CALL_LIMIT + 10)
    assert not worker.is_alive()
    assert isinstance(outcome["error"], (errors.BackendTimeoutError, errors.BackendUnavailableError)), outcome
    assert outcome["seconds"] < CALL_LIMIT
    # the record stays until someone knows whether the container exists
    assert Container.objects.filter(name="keep").exists()
    nb = Container.objects.filter(name="nb").first()
    assert nb is None or nb.status == "error"
    cluster.heal()
    reconcile_once()
    nb = Container.objects.filter(name="nb").first()
    assert nb is None or nb.status in ("lost", "running", "stopped")
    assert Container.objects.get(pk=keep.pk).backend_pk == keep.backend_pk
    assert_consistent(cluster, nodes)
    assert AuditEntry.objects.filter(action="container.create", result="error", target="alice/nb").exists()


def test_a_creation_whose_answer_was_lost_is_linked_by_reconcile(cluster, nodes, base_image, alice):
    """The node made the container but the master never heard (a timeout): the record waits
    as ``error`` without a container id, and reconcile links it to the container by name."""
    n1, _ = nodes
    made = services.create_container(alice, "nb", image=base_image, node=n1)
    Container.objects.filter(pk=made.pk).update(backend_pk="", status="error", ports=[])
    reconcile_once()
    linked = Container.objects.get(pk=made.pk)
    assert (linked.backend_pk, linked.status) == (made.backend_pk, "running")
    assert linked.ports == made.ports
    assert_consistent(cluster, nodes)


# ---------------------------------------------------------------------------- host API

def test_host_api_killed(cluster, nodes, base_image, alice):
    n1, n2 = nodes
    mine = services.create_container(alice, "nb", image=base_image, node=n1)
    pid = int((cluster.node_dir(0) / "hostapi.pid").read_text())
    os.killpg(pid, signal.SIGKILL)  # the host API and its workers, with no chance to tidy up
    wait_for(lambda: pid_gone(pid), "the host API to die", 20)
    for action in (services.stop_container, services.delete_container):
        error, seconds = timed(action, mine)
        assert isinstance(error, errors.BackendUnavailableError), error
        assert seconds < CALL_LIMIT
    error, seconds = timed(services.create_container, alice, "more", image=base_image, node=n1)
    assert isinstance(error, errors.BackendUnavailableError) and seconds < CALL_LIMIT
    assert not Container.objects.filter(name="more").exists()
    # placement goes round the dead node
    elsewhere = services.create_container(alice, "elsewhere", image=base_image)
    assert elsewhere.node == n2
    # the container kept running and its record was kept
    assert on_node(cluster, 0, running_only=True) == {mine.backend_pk: "running"}
    assert Container.objects.filter(pk=mine.pk).exists()
    out = StringIO()
    with pytest.raises(CommandError):
        call_command("ipynbsrv_reconcile", stdout=out)
    assert "n1: unreachable" in out.getvalue()
    cluster.heal()
    reconcile_once()
    assert_consistent(cluster, nodes)


# ---------------------------------------------------------------------------- link

def test_link_cut(cluster, nodes, base_image, alice):
    n1, n2 = nodes
    mine = services.create_container(alice, "nb", image=base_image, node=n1)
    link = f"veth-{cluster.ns_prefix}1"
    subprocess.run(["ip", "link", "set", link, "down"], check=True)
    try:
        error, seconds = timed(services.stop_container, mine)
        assert isinstance(error, (errors.BackendUnavailableError, errors.BackendTimeoutError)), error
        assert seconds < CALL_LIMIT
        error, seconds = timed(services.create_container, alice, "cut", image=base_image, node=n1)
        assert isinstance(error, (errors.BackendUnavailableError, errors.BackendTimeoutError)), error
        assert seconds < CALL_LIMIT
        registry.forget_backend()
        error, seconds = timed(services.move_container, Container.objects.get(pk=mine.pk), n2)
        assert isinstance(error, (errors.BackendUnavailableError, errors.BackendTimeoutError)), error
        assert seconds < CALL_LIMIT
    finally:
        subprocess.run(["ip", "link", "set", link, "up"], check=True)
    assert Container.objects.get(pk=mine.pk).node == n1  # no record lost, none moved
    assert on_node(cluster, 1) == {}
    cluster.heal()
    reconcile_once()
    assert_consistent(cluster, nodes)
    assert on_node(cluster, 0)[mine.backend_pk] == "running"


# ---------------------------------------------------------------------------- registry

def stop_registry(cluster) -> None:
    pid = int((cluster.directory / "registry.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: pid_gone(pid), "the registry to stop", 20)


def test_registry_down_during_a_push(cluster, nodes, base_image, alice):
    n1, _ = nodes
    source = services.create_container(alice, "src", image=base_image, node=n1)
    stop_registry(cluster)
    error, seconds = timed(services.commit_container, source, "pushed", public=True)
    assert isinstance(error, errors.BackendError), error
    assert seconds < CALL_LIMIT
    assert not Image.objects.filter(name__endswith="pushed").exists()
    client = engine(cluster, 0)
    try:  # no half-made image is left tagged on the node
        assert not [t for i in client.images.list() for t in i.tags if "pushed" in t]
    finally:
        client.close()
    cluster.heal()
    reconcile_once()
    assert_consistent(cluster, nodes)
    assert AuditEntry.objects.filter(action="image.commit", result="error").exists()


def test_registry_down_during_a_pull(cluster, nodes, base_image, alice, bob):
    n1, n2 = nodes
    source = services.create_container(alice, "src", image=base_image, node=n1)
    image = services.commit_container(source, "shared", public=True)  # pushed: n2 must pull it
    stop_registry(cluster)
    error, seconds = timed(services.create_container, bob, "child", image=image, node=n2)
    assert isinstance(error, errors.BackendError), error
    assert seconds < CALL_LIMIT
    assert not Container.objects.filter(name="child").exists()
    assert on_node(cluster, 1) == {}
    out = StringIO()
    with pytest.raises(CommandError):
        call_command("ipynbsrv_distribute", image.ref, "--node", "n2", stdout=out)
    assert "n2: FAILED" in out.getvalue()
    cluster.heal()
    reconcile_once()
    assert_consistent(cluster, nodes)
    services.delete_container(source)
    services.delete_image(image)


# ---------------------------------------------------------------------------- master

MOVER = """
import os, time
from ipynbsrv_backends import services
from ipynbsrv_backends.models import Container, Node

def hold(what):
    open(os.environ["MOVE_MARKER"], "w").write(what)
    time.sleep(600)  # killed here

if os.environ["MOVE_STOP_AT"] in ("created", "copying a snapshot"):
    progress = services._move_progress
    def hooked(container, changes):
        progress(container, changes)
        if changes and changes.get("stage") == "created" and os.environ["MOVE_STOP_AT"] == "created":
            hold("created")
        if changes and changes.get("snapshot_refs") and os.environ["MOVE_STOP_AT"] == "copying a snapshot":
            hold("copying a snapshot")
    services._move_progress = hooked
else:
    def hooked(*args, **kwargs):
        hold("switched")
    services._finish_move = hooked
services.move_container(Container.objects.get(pk=int(os.environ["MOVE_PK"])),
                        Node.objects.get(pk=int(os.environ["MOVE_TARGET"])))
"""


@pytest.mark.parametrize("stop_at", ["created", "copying a snapshot", "switched"])
def test_master_killed_during_a_move(cluster, nodes, base_image, alice, settings, tmp_path, stop_at):
    """Killed once the target has the new copy, or while its snapshot travels (reconcile rolls
    back), or once the record was switched over (reconcile finishes). The container's snapshot
    is restorable wherever it ends up, and no transfer image is left anywhere."""
    n1, n2 = nodes
    container = services.create_container(alice, "nb", image=base_image, node=n1)
    old_pk = container.backend_pk
    registry.get_backend(n1).exec_in_container(old_pk, ["sh", "-c", "echo snapped > /work.txt"])
    snapshot = services.create_snapshot(container, "keep")
    registry.get_backend(n1).exec_in_container(old_pk, ["sh", "-c", "echo precious > /work.txt"])
    marker = tmp_path / "marker"
    env = {**os.environ, "TESTPROJECT_DB": settings.DATABASES["default"]["NAME"],
           "IPYNBSRV_BACKENDS_JSON": json.dumps(settings.IPYNBSRV_BACKENDS),
           "MOVE_STOP_AT": stop_at, "MOVE_MARKER": str(marker), "MOVE_PK": str(container.pk),
           "MOVE_TARGET": str(n2.pk)}
    master = subprocess.Popen([sys.executable, str(ROOT / "testproject" / "manage.py"), "shell", "-c", MOVER],
                              env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: marker.exists() or master.poll() is not None, "the move to reach its stop", 120)
        assert marker.exists(), master.communicate(timeout=10)[0]
    finally:
        master.kill()
        master.wait(30)
    # nothing lost: the record is there, the new copy is on n2, its progress written down
    container.refresh_from_db()
    stage = "created" if stop_at == "copying a snapshot" else stop_at
    assert container.pending_move and container.pending_move["stage"] == stage
    assert bool(container.pending_move.get("snapshot_refs")) == (stop_at != "created")
    assert len(on_node(cluster, 1)) == 1
    out = reconcile_once()
    assert "nb" in out
    container.refresh_from_db()
    if stop_at != "switched":  # rolled back: it stays on n1, running, with its data
        assert container.node == n1 and container.backend_pk == old_pk
        assert on_node(cluster, 1) == {}
        assert on_node(cluster, 0) == {old_pk: "running"}
    else:  # finished: it lives on n2, the old copy is gone
        assert container.node == n2
        assert on_node(cluster, 0) == {}
    assert container.status == "running"
    backend = registry.get_backend(container.node)
    assert backend.exec_in_container(container.backend_pk, ["cat", "/work.txt"]).strip() == "precious"
    assert_consistent(cluster, nodes)
    for index in (0, 1):  # no transfer image left tagged on a node: only the one snapshot, where the container is
        # (an untagged transfer image stays as long as the moved container is made from it)
        client = engine(cluster, index)
        try:
            kinds = sorted(i.labels.get("org.ipynbsrv.kind", "") for i in
                           client.images.list(filters={"label": "org.ipynbsrv.instance=cluster"}) if i.tags)
        finally:
            client.close()
        assert kinds == (["snapshot"] if nodes[index] == container.node else []), (index, kinds)
    services.restore_snapshot(container, Snapshot.objects.get(pk=snapshot.pk))
    assert backend.exec_in_container(container.backend_pk, ["cat", "/work.txt"]).strip() == "snapped"
    entries = AuditEntry.objects.filter(action="reconcile.drift")
    assert any("alice/nb" in move for entry in entries for move in entry.details.get("moves", []))
