"""The access secret of a container never leaks: not into images (committed, snapshots, clone
bases, images moved through the registry), not into API answers, admin pages, audit entries or
reprs; and every container the master creates, clones, restores or moves in gets a new one.
(That no log line of the whole run carries one is checked by conftest's
``no_secret_in_any_log``.)"""

from __future__ import annotations

import json

import pytest
import requests

from ipynbsrv_backends import services
from ipynbsrv_backends.contract import ACCESS_SECRET_ENV
from ipynbsrv_backends.models import AuditEntry, Container, Image, Snapshot

from ..testbed import cluster, cluster_nodes  # noqa: F401

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True)]


def env_of(client, container: Container) -> list[str]:
    return client.containers.get(container.backend_pk).attrs["Config"]["Env"]


def secret_in_env(client, container: Container) -> str:
    values = [line.split("=", 1)[1] for line in env_of(client, container) if line.startswith(ACCESS_SECRET_ENV + "=")]
    assert len(values) == 1, values
    return values[0]


def assert_clean(client, reference: str, secrets: list[str]) -> None:
    """``docker image inspect`` of ``reference`` shows none of ``secrets``."""
    text = json.dumps(client.api.inspect_image(reference))
    leaked = [index for index, secret in enumerate(secrets) if secret in text]
    assert not leaked, f"{reference} carries secret(s) #{leaked}"


def test_every_container_gets_its_own_secret_and_no_image_carries_one(
        make_node, image, alice, bob, engine, admin_client, client, settings):
    settings.IPYNBSRV_BACKENDS = {**settings.IPYNBSRV_BACKENDS, "CONTAINER_PORTS": [8888], "CONTAINER_VOLUMES": []}
    make_node("n1")
    original = services.create_container(alice, "nb", image=image)
    minted = [original.access_secret]
    assert secret_in_env(engine, original) == original.access_secret

    clone = services.clone_container(original, alice, "copy")
    snapshot = services.create_snapshot(original, "snap")
    committed = services.commit_container(original, "mine", public=True)
    from_image = services.create_container(bob, "from-image", image=committed)
    minted += [clone.access_secret, from_image.access_secret]
    restored = services.restore_snapshot(original, snapshot)
    minted.append(restored.access_secret)

    assert len(set(minted)) == len(minted) and all(len(s) >= 40 for s in minted), "a secret was reused"
    for container in (clone, from_image, restored):
        assert secret_in_env(engine, container) == container.access_secret
    # the images: the committed one, the snapshot, the clone's and the restored container's bases
    assert_clean(engine, committed.ref, minted)
    assert_clean(engine, snapshot.backend_pk, minted)
    for container in (clone, from_image, restored):
        assert_clean(engine, engine.containers.get(container.backend_pk).attrs["Image"], minted)
    # an image configuration keeps the variable blank, so a container started from it without
    # the master gets no secret of another's
    config_env = engine.api.inspect_image(committed.ref)["Config"]["Env"]
    assert f"{ACCESS_SECRET_ENV}=" in config_env

    # nothing the owner, staff or the admin see carries one
    client.force_login(alice)
    pages = [client.get("/api/containers/").content, client.get(f"/api/containers/{original.pk}/").content]
    for url in ("/admin/ipynbsrv_backends/container/", f"/admin/ipynbsrv_backends/container/{original.pk}/change/",
                f"/admin/ipynbsrv_backends/container/{clone.pk}/change/", "/admin/ipynbsrv_backends/auditentry/",
                "/api/containers/"):
        answer = admin_client.get(url)
        assert answer.status_code == 200, url
        pages.append(answer.content)
    text = b"\n".join(pages).decode()
    text += "\n".join(repr(c) + str(c) for c in Container.objects.all())
    text += json.dumps(list(AuditEntry.objects.values()), default=str)
    text += json.dumps(list(Container.objects.values("options", "pending_move")), default=str)
    assert not [s for s in minted if s in text]

    for container in (from_image, clone, original):
        services.delete_container(container)
    services.delete_image(Image.objects.get(pk=committed.pk))


@pytest.mark.cluster
def test_a_move_gets_a_new_secret_and_the_registry_keeps_none(
        cluster, cluster_nodes, alice, settings):  # noqa: F811
    import docker

    from ..conftest import TEST_IMAGE

    n1, n2 = cluster_nodes
    base = Image.objects.create(name="busybox", ref=TEST_IMAGE, public=True)
    container = services.create_container(alice, "nb", image=base, node=n1)
    minted = [container.access_secret]
    snapshot = services.create_snapshot(container, "before")
    committed = services.commit_container(container, "kept")
    services.move_container(container, n2)
    container.refresh_from_db()
    minted.append(container.access_secret)
    assert container.node == n2 and minted[0] != minted[1]
    # a restore through HttpRemote and the host API (the snapshot came along with the move)
    services.restore_snapshot(container, Snapshot.objects.get(pk=snapshot.pk))
    container.refresh_from_db()
    minted.append(container.access_secret)
    assert len(set(minted)) == 3
    engines = [docker.DockerClient(base_url=f"unix://{socket}", timeout=60) for socket in cluster.sockets]
    try:
        assert secret_in_env(engines[1], container) == container.access_secret
        for client in engines:  # every tagged image this test made, on both nodes
            for item in client.images.list(filters={"label": "org.ipynbsrv.instance=cluster"}):
                for tag in item.tags:
                    assert_clean(client, tag, minted)
    finally:
        for client in engines:
            client.close()
    # the configuration the registry serves for the committed image
    repository, tag = committed.ref.split("/", 1)[1].rsplit(":", 1)
    accept = "application/vnd.docker.distribution.manifest.v2+json"
    manifest = requests.get(f"http://{cluster.registry}/v2/{repository}/manifests/{tag}",
                            headers={"Accept": accept}, timeout=10).json()
    config = requests.get(f"http://{cluster.registry}/v2/{repository}/blobs/{manifest['config']['digest']}",
                          timeout=10).text
    assert ACCESS_SECRET_ENV in config and not [s for s in minted if s in config]
    services.delete_container(container)
    services.delete_image(Image.objects.get(pk=committed.pk))
