"""The whole system on a real topology: a master (these tests, in the root network
namespace) that reaches two nodes — each its own network namespace, dockerd and
ipynbsrv_hostapi — only through HttpRemote, and a registry every node pulls from."""

from __future__ import annotations

import html
import json
import time
import urllib.request
from io import StringIO

import pytest
import requests
from django.core.management import call_command

from ipynbsrv_backends import errors, registry, services
from ipynbsrv_backends.hostapi import signing
from ipynbsrv_backends.models import Container, Image, Node

from ..conftest import TEST_IMAGE
from ..testbed import cluster, cluster_nodes  # noqa: F401 - fixtures
from ..utils import http_answers, wait_for

pytestmark = [pytest.mark.engine, pytest.mark.cluster, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def base_image(db):
    return Image.objects.create(name="busybox", ref=TEST_IMAGE, public=True)


def node_engine(cluster, node):
    import docker

    index = cluster.addresses.index(node.address)
    return docker.DockerClient(base_url=f"unix://{cluster.sockets[index]}", timeout=30)


def on_engine(cluster, node):
    client = node_engine(cluster, node)
    try:
        return sorted(c.name for c in client.containers.list(all=True, filters={"label": "org.ipynbsrv.instance=cluster"}))
    finally:
        client.close()


def test_both_nodes_are_healthy_through_the_host_api(cluster_nodes):
    statuses = services.check_nodes_health(cluster_nodes)
    assert statuses == {"n1": 0, "n2": 0}
    for node in cluster_nodes:
        node.refresh_from_db()
        assert node.resources["resources"]["cpu_count"] >= 1
        assert registry.get_backend(node).__class__.__name__ == "HttpRemote"


def test_least_loaded_spreads_over_two_nodes(cluster, cluster_nodes, base_image, alice):
    made = [services.create_container(alice, f"c{i}", image=base_image) for i in range(4)]
    per_node = {node.name: Container.objects.filter(node=node).count() for node in cluster_nodes}
    assert per_node == {"n1": 2, "n2": 2}
    for container in made:
        assert container.ports[0]["address"] == container.node.address
        # reachable from the master, on the node's own address
        http_answers(f"http://{container.node.address}:{container.ports[0]['external']}/")
    for node in cluster_nodes:
        assert len(on_engine(cluster, node)) == 2


def test_a_draining_node_receives_none(cluster, cluster_nodes, base_image, alice):
    n1, n2 = cluster_nodes
    Node.objects.filter(pk=n1.pk).update(draining=True)
    for i in range(3):
        assert services.create_container(alice, f"c{i}", image=base_image).node == n2
    assert on_engine(cluster, n1) == []


def test_a_node_whose_host_api_is_down_is_skipped(cluster, cluster_nodes, base_image, alice):
    n1, n2 = cluster_nodes
    services.check_nodes_health(cluster_nodes)  # both healthy a moment ago
    cluster.stop_hostapi(0)
    placed = [services.create_container(alice, f"c{i}", image=base_image).node for i in range(3)]
    assert placed == [n2, n2, n2]
    n1.refresh_from_db()
    assert n1.last_status != 0 and n1.last_error


def test_every_node_down_is_a_quick_clear_error(cluster, cluster_nodes, base_image, alice):
    cluster.stop_hostapi(0)
    cluster.stop_hostapi(1)
    started = time.monotonic()
    with pytest.raises(errors.NoNodeAvailableError) as info:
        services.create_container(alice, "nb", image=base_image)
    assert time.monotonic() - started < 15
    assert "node" in str(info.value).lower()
    assert Container.objects.count() == 0


def test_commit_on_one_node_and_run_on_the_other(cluster, cluster_nodes, base_image, alice, bob):
    n1, n2 = cluster_nodes
    source = services.create_container(alice, "src", image=base_image, node=n1)
    registry.get_backend(n1).exec_in_container(source.backend_pk, ["sh", "-c", "echo made-on-n1 > /origin"])
    image = services.commit_container(source, "stack", public=True)
    assert image.ref.startswith(cluster.registry + "/")
    assert image.node is None  # in the registry: every node can start it
    child = services.create_container(bob, "child", image=image, node=n2)
    out = registry.get_backend(n2).exec_in_container(child.backend_pk, ["cat", "/origin"])
    assert out.strip() == "made-on-n1"


def test_clone_onto_another_node(cluster, cluster_nodes, base_image, alice, bob):
    n1, n2 = cluster_nodes
    source = services.create_container(alice, "src", image=base_image, node=n1)
    registry.get_backend(n1).exec_in_container(source.backend_pk, ["sh", "-c", "echo work > /work"])
    clone = services.clone_container(source, bob, "copy", node=n2)
    assert clone.node == n2 and clone.clone_of == source and clone.image == base_image
    out = registry.get_backend(n2).exec_in_container(clone.backend_pk, ["cat", "/work"])
    assert out.strip() == "work"
    http_answers(f"http://{n2.address}:{clone.ports[0]['external']}/")
    # the short-lived transfer image is gone from both nodes and the registry
    for node in cluster_nodes:
        client = node_engine(cluster, node)
        tags = [t for i in client.images.list(filters={"label": "org.ipynbsrv.instance=cluster"}) for t in i.tags]
        client.close()
        assert tags == []
    with urllib.request.urlopen(f"http://{cluster.registry}/v2/_catalog", timeout=5) as response:
        repos = json.loads(response.read())["repositories"]
    for repo in repos:
        with urllib.request.urlopen(f"http://{cluster.registry}/v2/{repo}/tags/list", timeout=5) as response:
            assert not any(tag.startswith("clone-") for tag in (json.loads(response.read())["tags"] or []))


def test_move_to_another_node(cluster, cluster_nodes, base_image, alice):
    n1, n2 = cluster_nodes
    container = services.create_container(alice, "nb", image=base_image, node=n1)
    registry.get_backend(n1).exec_in_container(container.backend_pk, ["sh", "-c", "echo precious > /work.txt"])
    services.move_container(container, n2)
    container.refresh_from_db()
    assert container.node == n2 and container.status == "running"
    assert container.ports[0]["address"] == n2.address
    assert on_engine(cluster, n1) == []
    assert on_engine(cluster, n2) == [container.backend_pk]
    out = registry.get_backend(n2).exec_in_container(container.backend_pk, ["cat", "/work.txt"])
    assert out.strip() == "precious"
    http_answers(f"http://{n2.address}:{container.ports[0]['external']}/")


def test_move_keeps_a_stopped_container_stopped(cluster, cluster_nodes, base_image, alice):
    n1, n2 = cluster_nodes
    container = services.create_container(alice, "nb", image=base_image, node=n1)
    services.stop_container(container)
    services.move_container(container)  # placement picks the other node
    container.refresh_from_db()
    assert container.node == n2 and container.status == "stopped"


def test_a_failed_move_leaves_the_container_where_it_was(cluster, cluster_nodes, base_image, alice):
    n1, n2 = cluster_nodes
    container = services.create_container(alice, "nb", image=base_image, node=n1)
    old_pk = container.backend_pk
    cluster.stop_hostapi(1)
    Node.objects.filter(pk=n2.pk).update(last_checked=None)
    with pytest.raises(errors.BackendError):
        services.move_container(container, Node.objects.get(pk=n2.pk))
    container.refresh_from_db()
    assert container.node == n1 and container.backend_pk == old_pk
    assert registry.get_backend(n1).get_container(old_pk)["status"] == "running"


def managed_images(cluster, node) -> dict[str, str]:
    """Tag -> kind of every image the test bed's backends labelled on ``node``'s engine."""
    client = node_engine(cluster, node)
    try:
        return {tag: image.labels.get("org.ipynbsrv.kind", "") for image in
                client.images.list(filters={"label": "org.ipynbsrv.instance=cluster"}) for tag in image.tags}
    finally:
        client.close()


def registry_tags(cluster) -> list[str]:
    with urllib.request.urlopen(f"http://{cluster.registry}/v2/_catalog", timeout=5) as response:
        repos = json.loads(response.read())["repositories"]
    tags = []
    for repo in repos:
        with urllib.request.urlopen(f"http://{cluster.registry}/v2/{repo}/tags/list", timeout=5) as response:
            tags += [f"{repo}:{tag}" for tag in (json.loads(response.read())["tags"] or [])]
    return tags


def written(backend, container, path="/work.txt") -> str:
    return backend.exec_in_container(container.backend_pk, ["cat", path]).strip()


def test_a_move_carries_the_snapshots(cluster, cluster_nodes, base_image, alice):
    n1, n2 = cluster_nodes
    container = services.create_container(alice, "nb", image=base_image, node=n1)
    on_n1 = registry.get_backend(n1)
    for version in ("v1", "v2"):
        on_n1.exec_in_container(container.backend_pk, ["sh", "-c", f"echo {version} > /work.txt"])
        services.create_snapshot(container, f"at-{version}")
    on_n1.exec_in_container(container.backend_pk, ["sh", "-c", "echo v3 > /work.txt"])
    before = set(registry_tags(cluster))
    steps: list[str] = []
    services.move_container(container, n2, on_progress=steps.append)
    container.refresh_from_db()
    assert container.node == n2 and container.status == "running"
    assert [s for s in steps if s.startswith("copying snapshot")] == [
        "copying snapshot at-v1 (1 of 2) through the registry", "copying snapshot at-v2 (2 of 2) through the registry"]
    on_n2 = registry.get_backend(n2)
    assert written(on_n2, container) == "v3"
    snapshots = {s.name: s for s in container.snapshots.all()}
    assert sorted(snapshots) == ["at-v1", "at-v2"]
    assert sorted(r["pk"] for r in on_n2.get_containers_snapshots(container.backend_pk)) == \
        sorted(s.backend_pk for s in snapshots.values())
    # nothing stays behind: not on n1, not as a transfer image on n2, not in the registry
    assert on_engine(cluster, n1) == [] and managed_images(cluster, n1) == {}
    assert sorted(managed_images(cluster, n2).values()) == ["snapshot", "snapshot"]
    assert set(registry_tags(cluster)) == before
    # each snapshot restores on the new node to what it held
    for version in ("v1", "v2"):
        services.restore_snapshot(container, snapshots[f"at-{version}"])
        assert written(on_n2, container) == version
    http_answers(f"http://{n2.address}:{container.ports[0]['external']}/")


def test_a_failed_snapshot_copy_puts_everything_back(cluster, cluster_nodes, base_image, alice, monkeypatch):
    n1, n2 = cluster_nodes
    container = services.create_container(alice, "nb", image=base_image, node=n1)
    old_pk = container.backend_pk
    on_n1 = registry.get_backend(n1)
    for version in ("v1", "v2"):
        on_n1.exec_in_container(old_pk, ["sh", "-c", f"echo {version} > /work.txt"])
        services.create_snapshot(container, f"at-{version}")
    before = set(registry_tags(cluster))
    on_n2 = registry.get_backend(n2)
    real_import = on_n2.import_container_snapshot
    imported: list[str] = []

    def second_fails(container_pk, name, image, **kwargs):
        if imported:  # the first one got through: the second meets a node that is gone
            raise errors.BackendUnavailableError("the node went away (injected)")
        record = real_import(container_pk, name, image, **kwargs)
        imported.append(record["pk"])
        return record

    monkeypatch.setattr(on_n2, "import_container_snapshot", second_fails)
    with pytest.raises(errors.BackendUnavailableError):
        services.move_container(container, n2)
    container.refresh_from_db()
    assert imported and container.node == n1 and container.backend_pk == old_pk and not container.pending_move
    assert on_n1.get_container(old_pk)["status"] == "running"
    assert on_engine(cluster, n2) == [] and managed_images(cluster, n2) == {}
    assert sorted(managed_images(cluster, n1).values()) == ["snapshot", "snapshot"]
    assert set(registry_tags(cluster)) == before
    services.restore_snapshot(container, container.snapshots.get(name="at-v1"))
    assert written(on_n1, container) == "v1"


def test_move_refuses_what_cannot_travel(cluster, cluster_nodes, base_image, alice, master_settings):
    n1, n2 = cluster_nodes
    master_settings.IPYNBSRV_BACKENDS = {**master_settings.IPYNBSRV_BACKENDS,
                                         "CONTAINER_VOLUMES": [{"source": "{username}-{name}-data", "target": "/data"}]}
    container = services.create_container(alice, "nb", image=base_image, node=n1)
    try:
        with pytest.raises(errors.InvalidArgumentError) as info:
            services.move_container(container, n2)
        assert "named volume" in str(info.value) and "alice-nb-data" in str(info.value)
        assert Container.objects.get(pk=container.pk).node == n1
    finally:
        services.delete_container(container)
        client = node_engine(cluster, n1)
        try:
            client.volumes.get("alice-nb-data").remove()  # deleting a container keeps its volumes
        finally:
            client.close()


def test_deleting_an_image_removes_it_everywhere(cluster, cluster_nodes, base_image, alice, bob):
    n1, n2 = cluster_nodes
    source = services.create_container(alice, "src", image=base_image, node=n1)
    image = services.commit_container(source, "gone-soon", public=True)
    child = services.create_container(bob, "child", image=image, node=n2)
    services.delete_container(child)
    services.delete_image(image)
    for node in cluster_nodes:
        assert not registry.get_backend(node).container_image_exists(image.ref)
    repo, tag = image.ref[len(cluster.registry) + 1:].rsplit(":", 1)
    request = urllib.request.Request(f"http://{cluster.registry}/v2/{repo}/manifests/{tag}", method="HEAD",
                                     headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=5)
    assert info.value.code == 404


def test_distribute_puts_an_image_on_every_node(cluster, cluster_nodes, base_image, alice):
    from io import StringIO

    from django.core.management import call_command

    n1, n2 = cluster_nodes
    source = services.create_container(alice, "src", image=base_image, node=n1)
    image = services.commit_container(source, "for-everyone", public=True)
    client = node_engine(cluster, n2)
    try:
        assert not [i for i in client.images.list() if image.ref in i.tags]
        out = StringIO()
        call_command("ipynbsrv_distribute", image.ref, stdout=out)
        text = out.getvalue()
        assert "n1: ready" in text and "n2: ready" in text and "2/2" in text
        assert client.images.get(image.ref)
    finally:
        client.close()


def test_distribute_reports_a_node_that_is_down(cluster, cluster_nodes, base_image, alice):
    from io import StringIO

    from django.core.management import CommandError, call_command

    n1, n2 = cluster_nodes
    source = services.create_container(alice, "src", image=base_image, node=n1)
    image = services.commit_container(source, "half-way", public=True)  # in the registry
    cluster.stop_hostapi(1)
    out = StringIO()
    with pytest.raises(CommandError) as info:
        call_command("ipynbsrv_distribute", image.ref, stdout=out)
    assert "n2: FAILED" in out.getvalue() and "n1: ready" in out.getvalue()
    assert "1 of 2" in str(info.value)


def test_move_command_empties_a_node(cluster, cluster_nodes, base_image, alice, bob):
    from io import StringIO

    from django.core.management import call_command

    n1, n2 = cluster_nodes
    services.create_container(alice, "one", image=base_image, node=n1)
    services.create_container(bob, "two", image=base_image, node=n1)
    Node.objects.filter(pk=n1.pk).update(draining=True)
    out = StringIO()
    call_command("ipynbsrv_move", "--from", "n1", stdout=out)
    assert "alice/one: moved from n1 to n2" in out.getvalue()
    # each step is shown as it starts
    assert "alice/one: committing it and pushing the image to the registry ..." in out.getvalue()
    assert "alice/one: creating it on n2 (which pulls the image) ..." in out.getvalue()
    assert "bob/two: moved from n1 to n2" in out.getvalue()
    assert on_engine(cluster, n1) == []
    assert Container.objects.filter(node=n2).count() == 2


def test_move_from_the_admin(cluster, cluster_nodes, base_image, alice, admin_client):
    n1, n2 = cluster_nodes
    container = services.create_container(alice, "nb", image=base_image, node=n1)
    page = admin_client.get(f"/admin/ipynbsrv_backends/container/{container.pk}/move/")
    assert page.status_code == 200 and b"n2" in page.content
    answer = admin_client.post(f"/admin/ipynbsrv_backends/container/{container.pk}/move/", {"node": n2.pk})
    assert answer.status_code == 302
    container.refresh_from_db()
    assert container.node == n2
    assert on_engine(cluster, n1) == [] and on_engine(cluster, n2) == [container.backend_pk]
    # and back again with the change list's action, placement picking the target
    answer = admin_client.post("/admin/ipynbsrv_backends/container/",
                               {"action": "move_containers", "_selected_action": [container.pk]}, follow=True)
    assert b"1 container moved" in answer.content
    container.refresh_from_db()
    assert container.node == n1


def test_a_failed_move_in_the_admin_says_why(cluster, cluster_nodes, base_image, alice, admin_client):
    n1, n2 = cluster_nodes
    container = services.create_container(alice, "nb", image=base_image, node=n1)
    cluster.stop_hostapi(1)
    Node.objects.filter(pk=n2.pk).update(last_checked=None)
    answer = admin_client.post(f"/admin/ipynbsrv_backends/container/{container.pk}/move/", {"node": n2.pk})
    assert answer.status_code == 200
    text = html.unescape(answer.content.decode())
    assert "The node n2 cannot take alice/nb now: Cannot reach the node" in text, text[-3000:]
    container.refresh_from_db()
    assert container.node == n1
    assert registry.get_backend(n1).get_container(container.backend_pk)["status"] == "running"


# ---------------------------------------------------------------------------- signed requests

#: The rotation test's grace period: short, so that it ends within the test.
GRACE = 5


def direct(cluster, index: int, *, key: str | None = None, sign: bool = True,
           path: str = "/containers/") -> requests.Response:
    """A GET straight to node ``index``'s host API (a fresh connection), with the node's
    token; signed with ``key`` (default: the node's start-up key) unless ``sign`` is false."""
    headers = cluster.signed_headers(index, "GET", path, key=key) if sign \
        else {"Authorization": f"Bearer {cluster.tokens[index]}"}
    with requests.Session() as session:
        return session.get(cluster.urls[index] + path, headers=headers, timeout=10)


def refused(response: requests.Response) -> bool:
    return response.status_code == 401 and response.json().get("code") == "authentication_failed"


def test_every_node_requires_signed_requests(cluster):
    for index in range(len(cluster.urls)):
        unsigned = direct(cluster, index, sign=False)  # the right token, no signature
        assert refused(unsigned), unsigned.text
        assert "requires signed requests" in unsigned.json()["detail"]
        wrong = direct(cluster, index, key=signing.new_key())
        assert refused(wrong) and "Invalid request signature" in wrong.json()["detail"], wrong.text
        signed = direct(cluster, index)
        assert signed.status_code == 200, signed.text
        # the secrets stay the node's: owner-only files, never in its log or the script's output
        directory = cluster.node_dir(index)
        for name in ("token", "signing_key"):
            assert (directory / name).stat().st_mode & 0o777 == 0o600, name
        assert cluster.state_dirs[index].stat().st_mode & 0o777 == 0o700
        key = cluster.signing_keys[index]
        assert key not in (directory / "hostapi.log").read_text(errors="replace")
        assert key not in cluster.run("env") + cluster.run("status")


def test_rotating_a_node_key_on_the_test_bed(cluster, cluster_nodes, base_image, alice):
    """What the test bed adds to tests/integration/test_hostapi_signing.py's rotation tests: the command
    rotates a real node's key across the node network, the master keeps managing that node's
    containers, the old key ends with its (short) grace period, a restart by cluster.sh keeps
    the rotated key, and the other node is untouched."""
    n1, n2 = cluster_nodes
    start_key = cluster.signing_keys[0]
    before = services.create_container(alice, "before", image=base_image, node=n1)
    try:
        out = StringIO()
        call_command("ipynbsrv_rotate_key", "n1", "--grace", str(GRACE), stdout=out)
        rotated_at = time.monotonic()
        assert "n1: signing key rotated" in out.getvalue()
        # within the grace period the old key still passes (requests already under way)
        assert direct(cluster, 0, key=start_key).status_code == 200
        n1.refresh_from_db()
        rotated = n1.backend_config["signing_key"]
        assert rotated != start_key and rotated not in out.getvalue()

        # the master manages n1's containers with the new key (a backend built afresh)
        registry.forget_backend()
        services.stop_container(Container.objects.get(pk=before.pk))
        services.start_container(Container.objects.get(pk=before.pk))
        after = services.create_container(alice, "after", image=base_image, node=n1)
        assert on_engine(cluster, n1) == sorted([before.backend_pk, after.backend_pk])

        # the old key is refused once its grace period is over, and not before
        wait_for(lambda: refused(direct(cluster, 0, key=start_key)), timeout=GRACE + 30, interval=0.5,
                 what="the node to refuse the replaced key")
        assert time.monotonic() - rotated_at >= GRACE - 0.5
        assert direct(cluster, 0, key=rotated).status_code == 200
        services.delete_container(Container.objects.get(pk=after.pk))
        assert on_engine(cluster, n1) == [before.backend_pk]
        # the other node still takes its own start-up key
        assert direct(cluster, 1).status_code == 200
        assert services.check_nodes_health([n1, n2]) == {"n1": 0, "n2": 0}

        # cluster.sh restarts the host API with the same key file and state directory: the
        # rotated key, kept there, is still the current one
        cluster.stop_hostapi(0)
        cluster.heal()
        assert refused(direct(cluster, 0, key=start_key))
        registry.forget_backend()
        services.stop_container(Container.objects.get(pk=before.pk))
        assert Container.objects.get(pk=before.pk).status == "stopped"
    finally:
        cluster.reset_signing_key(0)  # the start-up key again, for the tests that follow
    assert direct(cluster, 0).status_code == 200
