"""The master's service layer on the real engine: placement, records, compensation,
lifecycle, snapshots, images, reconcile and the backend registry.

Several "nodes" here are one engine seen through backends with different instances, so each
node only sees its own containers; the cluster tests put nodes on separate engines.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ipynbsrv_backends import errors, registry, services
from ipynbsrv_backends.backends import Docker
from ipynbsrv_backends.models import Backend, Container, Image, Node, Snapshot

from ..conftest import PREFIX, TEST_IMAGE
from ..support.threads import run_together

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.fixture(autouse=True)
def _master(master_settings):
    """Every test here runs with the master's test settings (conftest's ``master_settings``)."""
    return master_settings


def engine_containers(raw_docker, node):
    instance = node.backend.config["instance"]
    return sorted(c.name for c in raw_docker.containers.list(all=True, filters={"label": f"org.ipynbsrv.instance={instance}"}))


# ---------------------------------------------------------------------------- create

def test_create_places_creates_and_records(make_node, image, alice, engine):
    node = make_node("n1")
    container = services.create_container(alice, "nb", image=image)
    container.refresh_from_db()
    assert container.node == node
    assert container.status == "running"
    assert container.backend_pk == f"{PREFIX}n1-u{2000 + alice.pk}-nb"
    assert container.ports[0]["address"] == "127.0.0.1" and container.ports[0]["external"]
    assert container.base_url == "/notebooks/alice/nb/"
    assert engine_containers(engine, node) == [container.backend_pk]
    assert container.url.startswith("http://127.0.0.1:")


def test_name_taken_makes_nothing(make_node, image, alice, bob, engine):
    node = make_node("n1")
    services.create_container(alice, "nb", image=image)
    with pytest.raises(errors.ContainerAlreadyExistsError):
        services.create_container(alice, "nb", image=image)
    assert Container.objects.count() == 1
    assert len(engine_containers(engine, node)) == 1
    services.create_container(bob, "nb", image=image)  # another user may use the name


def test_a_backend_failure_leaves_no_record(make_node, alice, engine):
    node = make_node("n1")
    with pytest.raises(errors.ContainerImageNotFoundError):
        services.create_container(alice, "nb", image="ipynbsrv-test/missing:1")
    assert Container.objects.count() == 0
    assert engine_containers(engine, node) == []


def test_bad_name_is_refused_before_placement(make_node, image, alice):
    make_node("n1")
    with pytest.raises(errors.InvalidArgumentError):
        services.create_container(alice, "Bad Name", image=image)
    assert Container.objects.count() == 0


def test_per_user_limit(make_node, image, alice, master_settings):
    make_node("n1")
    master_settings.IPYNBSRV_BACKENDS = {**master_settings.IPYNBSRV_BACKENDS, "MAX_CONTAINERS_PER_USER": 1}
    services.create_container(alice, "one", image=image)
    with pytest.raises(errors.QuotaExceededError):
        services.create_container(alice, "two", image=image)
    assert Container.objects.count() == 1


# ---------------------------------------------------------------------------- placement

def test_least_loaded_spreads_evenly(make_node, image, alice, engine):
    n1, n2 = make_node("n1"), make_node("n2")
    for i in range(4):
        services.create_container(alice, f"c{i}", image=image)
    counts = {node.name: Container.objects.filter(node=node).count() for node in (n1, n2)}
    assert counts == {"n1": 2, "n2": 2}


def test_least_loaded_uses_capacity(make_node, image, alice):
    small, big = make_node("small", capacity=2), make_node("big", capacity=8)
    for i in range(5):
        services.create_container(alice, f"c{i}", image=image)
    assert Container.objects.filter(node=small).count() == 1
    assert Container.objects.filter(node=big).count() == 4


def test_round_robin_alternates(make_node, image, alice, master_settings):
    master_settings.IPYNBSRV_BACKENDS = {**master_settings.IPYNBSRV_BACKENDS, "SERVER_SELECTION_ALGORITHM": "round-robin"}
    make_node("n1"), make_node("n2"), make_node("n3")
    placed = [services.create_container(alice, f"c{i}", image=image).node.name for i in range(5)]
    assert placed == ["n1", "n2", "n3", "n1", "n2"]


def test_round_robin_position_holds_across_processes(make_node, image, alice, master_settings, settings):
    master_settings.IPYNBSRV_BACKENDS = {**master_settings.IPYNBSRV_BACKENDS, "SERVER_SELECTION_ALGORITHM": "round-robin"}
    make_node("n1"), make_node("n2")
    first = services.create_container(alice, "c0", image=image)
    assert first.node.name == "n1"
    # another master process, sharing the database, continues where this one stopped
    script = (
        "from django.contrib.auth import get_user_model\n"
        "from ipynbsrv_backends import services\n"
        "from ipynbsrv_backends.models import Image\n"
        "c = services.create_container(get_user_model().objects.get(username='alice'), 'c1', image=Image.objects.get())\n"
        "print(c.node.name)\n"
    )
    env = {**os.environ, "TESTPROJECT_DB": settings.DATABASES["default"]["NAME"],
           "IPYNBSRV_BACKENDS_JSON": json.dumps(master_settings.IPYNBSRV_BACKENDS)}
    out = subprocess.run(
        [sys.executable, str(ROOT / "testproject" / "manage.py"), "shell", "-c", script],
        capture_output=True, text=True, env=env, timeout=120, cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "n2"
    assert services.create_container(alice, "c2", image=image).node.name == "n1"


def test_random_picks_only_candidates(make_node, image, alice, master_settings):
    master_settings.IPYNBSRV_BACKENDS = {**master_settings.IPYNBSRV_BACKENDS, "SERVER_SELECTION_ALGORITHM": "random"}
    n1 = make_node("n1")
    n2 = make_node("n2")
    n2.enabled = False
    n2.save()
    for i in range(3):
        assert services.create_container(alice, f"c{i}", image=image).node == n1


def test_disabled_and_draining_nodes_get_nothing(make_node, image, alice):
    n1, n2, n3 = make_node("n1"), make_node("n2"), make_node("n3")
    Node.objects.filter(pk=n2.pk).update(enabled=False)
    Node.objects.filter(pk=n3.pk).update(draining=True)
    for i in range(3):
        assert services.create_container(alice, f"c{i}", image=image).node == n1


def test_a_down_node_is_skipped(make_node, image, alice):
    make_node("down", base_url="unix:///nonexistent/docker.sock")
    up = make_node("up")
    for i in range(3):
        assert services.create_container(alice, f"c{i}", image=image).node == up
    down = Node.objects.get(name="down")
    assert down.last_status != 0 and down.last_checked is not None
    assert "Cannot reach the Docker engine" in down.last_error  # the cause, not just "stopped"


def test_a_node_that_fails_after_its_health_check_is_skipped(make_node, image, alice):
    """Healthy when checked, unreachable when asked to create: placed elsewhere."""
    flaky = make_node("a-flaky")
    up = make_node("b-up")
    services.check_nodes_health([flaky, up])
    Backend.objects.filter(pk=flaky.backend_id).update(
        config={**flaky.backend.config, "base_url": "unix:///nonexistent/docker.sock"})
    container = services.create_container(alice, "nb", image=image)
    assert container.node == up
    assert Container.objects.count() == 1


def test_no_node_is_a_clear_error(make_node, image, alice):
    import time

    make_node("down1", base_url="unix:///nonexistent/a.sock")
    make_node("down2", base_url="tcp://127.0.0.1:1")
    started = time.monotonic()
    with pytest.raises(errors.NoNodeAvailableError) as info:
        services.create_container(alice, "nb", image=image)
    assert time.monotonic() - started < 10
    assert "node" in str(info.value)
    assert Container.objects.count() == 0


def test_no_nodes_at_all(image, alice):
    with pytest.raises(errors.NoNodeAvailableError):
        services.create_container(alice, "nb", image=image)


def test_capacity_is_respected(make_node, image, alice, engine):
    node = make_node("n1", capacity=2)
    services.create_container(alice, "c0", image=image)
    services.create_container(alice, "c1", image=image)
    with pytest.raises(errors.NoNodeAvailableError):
        services.create_container(alice, "c2", image=image)
    assert len(engine_containers(engine, node)) == 2


def test_concurrent_creations_never_exceed_capacity(make_node, image, django_user_model, engine):
    node = make_node("n1", capacity=3)
    users = [django_user_model.objects.create_user(f"user{i}") for i in range(6)]
    results = run_together(lambda user: services.create_container(user, "nb", image=image), users, timeout=120)
    created = [r for r in results if isinstance(r, Container)]
    refused = [r for r in results if isinstance(r, errors.NoNodeAvailableError)]
    assert len(created) == 3 and len(refused) == 3, results
    assert Container.objects.filter(node=node).count() == 3
    assert len(engine_containers(engine, node)) == 3


# ---------------------------------------------------------------------------- lifecycle

def test_lifecycle_updates_the_record(make_node, image, alice):
    make_node("n1")
    container = services.create_container(alice, "nb", image=image)
    assert services.stop_container(container).status == "stopped"
    assert services.start_container(container).status == "running"
    assert services.suspend_container(container).status == "suspended"
    assert services.resume_container(container).status == "running"
    assert services.restart_container(container).status == "running"
    container.refresh_from_db()
    assert container.status == "running"


def test_snapshot_restore_and_delete(make_node, image, alice, engine):
    make_node("n1")
    container = services.create_container(alice, "nb", image=image)
    backend = registry.get_backend(container.node)
    backend.exec_in_container(container.backend_pk, ["sh", "-c", "echo v1 > /v"])
    snapshot = services.create_snapshot(container, "v1")
    assert Snapshot.objects.get().backend_pk == snapshot.backend_pk
    with pytest.raises(errors.ContainerAlreadyExistsError):
        services.create_snapshot(container, "v1")
    backend.exec_in_container(container.backend_pk, ["sh", "-c", "echo v2 > /v"])
    services.restore_snapshot(container, snapshot)
    assert backend.exec_in_container(container.backend_pk, ["cat", "/v"]).strip() == "v1"
    services.delete_snapshot(snapshot)
    assert Snapshot.objects.count() == 0
    assert not backend.container_snapshot_exists(snapshot.backend_pk)


def test_commit_and_start_from_the_image(make_node, image, alice, bob):
    make_node("n1")
    container = services.create_container(alice, "nb", image=image)
    registry.get_backend(container.node).exec_in_container(container.backend_pk, ["sh", "-c", "echo baked > /b"])
    committed = services.commit_container(container, "stack", public=True)
    assert committed.owner == alice and committed.node == container.node
    child = services.create_container(bob, "child", image=committed)
    out = registry.get_backend(child.node).exec_in_container(child.backend_pk, ["cat", "/b"])
    assert out.strip() == "baked"
    services.delete_container(child)
    services.delete_image(committed)
    assert not Image.objects.filter(pk=committed.pk).exists()
    assert not registry.get_backend(container.node).container_image_exists(committed.ref)


def test_clone(make_node, image, alice, bob):
    make_node("n1")
    make_node("n2")
    source = services.create_container(alice, "nb", image=image)
    registry.get_backend(source.node).exec_in_container(source.backend_pk, ["sh", "-c", "echo mine > /m"])
    clone = services.clone_container(source, bob, "copy")
    assert clone.node == source.node and clone.clone_of == source and clone.owner == bob
    out = registry.get_backend(clone.node).exec_in_container(clone.backend_pk, ["cat", "/m"])
    assert out.strip() == "mine"


def test_delete_removes_container_and_record(make_node, image, alice, engine):
    node = make_node("n1")
    container = services.create_container(alice, "nb", image=image)
    services.create_snapshot(container, "s")
    services.delete_container(container)
    assert Container.objects.count() == 0 and Snapshot.objects.count() == 0
    assert engine_containers(engine, node) == []


def test_delete_on_a_down_node_keeps_the_record(make_node, image, alice):
    node = make_node("n1")
    container = services.create_container(alice, "nb", image=image)
    Backend.objects.filter(pk=node.backend_id).update(
        config={**node.backend.config, "base_url": "unix:///nonexistent/docker.sock"})
    container = Container.objects.select_related("node__backend").get(pk=container.pk)
    with pytest.raises(errors.BackendUnavailableError):
        services.delete_container(container)
    assert Container.objects.filter(pk=container.pk).exists()


def test_a_container_removed_behind_our_back_is_marked_lost(make_node, image, alice, engine):
    make_node("n1")
    container = services.create_container(alice, "nb", image=image)
    engine.containers.get(container.backend_pk).remove(force=True)
    with pytest.raises(errors.ContainerNotFoundError):
        services.stop_container(container)
    container.refresh_from_db()
    assert container.status == "lost"


# ---------------------------------------------------------------------------- reconcile

def test_reconcile_reports_and_repairs_drift(drifted, alice):
    node, gone, backend = drifted["node"], drifted["gone"], drifted["backend"]
    orphan = {"pk": drifted["orphan"]}
    stranger = backend.create_container("nobody-known", 99999, "stray", [], [], image=TEST_IMAGE)

    report = services.reconcile(node)
    assert report.missing == [str(gone)]
    assert sorted(report.orphans) == sorted([orphan["pk"], stranger["pk"]])
    assert report.updated == 1  # kept: running -> stopped
    assert Container.objects.get(pk=gone.pk).status == "running"  # reporting changes nothing else

    report = services.reconcile(node, mark_lost=True, adopt=True)
    assert report.marked_lost == [str(gone)]
    assert report.adopted == [orphan["pk"]]
    assert any("nobody-known" in problem for problem in report.problems)
    assert Container.objects.get(pk=gone.pk).status == "lost"
    adopted = Container.objects.get(backend_pk=orphan["pk"])
    assert adopted.owner == alice and adopted.name == "orphan"

    report = services.reconcile(node, remove=True)
    assert report.removed == [stranger["pk"]]
    assert not backend.container_exists(stranger["pk"])
    assert not services.reconcile(node).orphans


def test_reconcile_an_unreachable_node(make_node):
    node = make_node("down", base_url="unix:///nonexistent/docker.sock")
    report = services.reconcile(node)
    assert not report.reachable and report.drift and "docker" in report.error.lower()


# ---------------------------------------------------------------------------- registry

def test_backend_instances_are_cached_per_node_and_rebuilt_on_change(make_node):
    node = make_node("n1")
    first = registry.get_backend(node)
    assert registry.get_backend(Node.objects.get(pk=node.pk)) is first
    node.backend_config = {"stop_timeout": 7}
    node.save()
    second = registry.get_backend(Node.objects.get(pk=node.pk))
    assert second is not first and second.stop_timeout == 7


def test_placeholders_and_overrides(make_node):
    node = make_node("n1")
    node.backend.config = {**node.backend.config, "name_prefix": "x{name}"}
    node.backend.save()
    node.backend_config = {"instance": "{name}-{address}"}
    node.save()
    config = Node.objects.get(pk=node.pk).effective_config()
    assert config["name_prefix"] == "xn1" and config["instance"] == "n1-127.0.0.1"


def test_only_allowed_backend_classes(settings):
    from django.core.exceptions import ValidationError

    with pytest.raises(errors.InvalidArgumentError):
        registry.backend_class("os.system")
    with pytest.raises(ValidationError):
        registry.validate_backend_config("subprocess.Popen", {})
    with pytest.raises(ValidationError) as info:
        registry.validate_backend_config("Docker", {"privileged": True})
    assert "privileged" in str(info.value)
    assert registry.validate_backend_config("Docker", {"registry": "10.0.0.1:5000"})["registry"] == "10.0.0.1:5000"


def test_secrets_are_masked():
    config = {"url": "http://n1:8080", "token": "s3cret-token", "registry_password": "pw", "timeout": 5}
    masked = registry.mask_config("HttpRemote", config)
    assert masked["token"] == registry.MASK and masked["registry_password"] == registry.MASK
    assert masked["url"] == "http://n1:8080" and masked["timeout"] == 5
    assert registry.unmask_config("HttpRemote", masked, config) == config


def test_node_health_records_resources(make_node):
    node = make_node("n1")
    assert services.check_node_health(node) == 0
    node.refresh_from_db()
    assert node.last_seen is not None and node.resources["resources"]["cpu_count"] >= 1
    assert node.resources["resources"]["containers"] == {"running": 0, "total": 0}


def test_models_and_migrations_do_not_drift():
    out = subprocess.run(
        [sys.executable, str(ROOT / "testproject" / "manage.py"), "makemigrations", "--check", "--dry-run"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_direct_backend_and_service_agree(make_node, image, alice):
    node = make_node("n1")
    container = services.create_container(alice, "nb", image=image)
    direct = Docker(**node.effective_config()).get_container(container.backend_pk)
    assert direct["ports"] == container.ports and direct["status"] == container.status


def test_a_container_being_moved_is_left_alone(make_node, image, alice, engine):
    """While a move runs (its progress written down), actions on the container are refused,
    not carried out on a copy the move is about to replace or remove."""
    node = make_node("n1")
    container = services.create_container(alice, "nb", image=image)
    snapshot = services.create_snapshot(container, "keep")
    Container.objects.filter(pk=container.pk).update(pending_move={"stage": "copying", "target": node.pk})
    refused = [
        lambda: services.stop_container(container),
        lambda: services.create_snapshot(container, "another"),
        lambda: services.restore_snapshot(container, snapshot),
        lambda: services.delete_snapshot(snapshot),
        lambda: services.delete_container(container),
    ]
    for call in refused:
        with pytest.raises(errors.IllegalContainerStateError, match="being moved"):
            call()
    backend = registry.get_backend(node)
    assert backend.get_container(container.backend_pk)["status"] == "running"
    assert [s["pk"] for s in backend.get_containers_snapshots(container.backend_pk)] == [snapshot.backend_pk]
    assert list(Snapshot.objects.values_list("name", flat=True)) == ["keep"]
    Container.objects.filter(pk=container.pk).update(pending_move=None)
    services.stop_container(container)  # once the move is over, it is an ordinary container again
    assert Container.objects.get(pk=container.pk).status == "stopped"


def test_progress_of_long_operations(make_node, alice):
    """What a creation or a move is doing, for the admin and the users' API."""
    from ipynbsrv_backends.api.serializers import ContainerSerializer

    n1, n2 = make_node("n1"), make_node("n2")
    pending = Container.objects.create(owner=alice, name="pending", node=n1, status=Container.Status.CREATING)
    assert "creating on n1" in pending.progress
    assert "creating on n1" in ContainerSerializer(pending).data["progress"]
    moving = Container.objects.create(owner=alice, name="moving", node=n1, status=Container.Status.RUNNING,
                                      pending_move={"stage": "copying", "target": n2.pk})
    assert moving.progress == "copying to n2"
    moving.pending_move = {"stage": "created", "target": n2.pk, "snapshots": 3, "snapshots_done": 1}
    assert moving.progress == "copying snapshot 2 of 3 to n2"
    moving.pending_move = {"stage": "created", "target": n2.pk, "snapshots": 3, "snapshots_done": 3}
    assert moving.progress == "starting on n2"
    moving.pending_move = {"stage": "copying", "target": n2.pk, "abandoned": True}
    assert "ipynbsrv_reconcile" in moving.progress
    idle = Container.objects.create(owner=alice, name="idle", node=n1, status=Container.Status.RUNNING)
    assert idle.progress == "" and ContainerSerializer(idle).data["progress"] == ""
