"""The admin on the real engine: forms that validate and mask configuration, node health,
containers created and driven through the service layer, and readable errors (never a 500)
when a node is down.
"""

from __future__ import annotations

import json

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse

from ipynbsrv_backends import registry, services
from ipynbsrv_backends.admin import snapshot_name
from ipynbsrv_backends.models import Backend, Container, Image, Node, Snapshot

from ..conftest import EXTRA_INSTANCES, INSTANCE, PREFIX, backend_options

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True)]

SECRET = "hunter2-do-not-show"
NODE_SECRET = "node-only-s3cret"
DOWN = "unix:///nonexistent/docker.sock"


@pytest.fixture(autouse=True)
def _master(master_settings):
    """Every test here runs with the master's test settings (conftest's ``master_settings``)."""
    return master_settings


@pytest.fixture
def client(admin_client):
    """The test client, logged in as a superuser."""
    return admin_client


def url(model: str, view: str = "changelist", *args) -> str:
    return reverse(f"admin:ipynbsrv_backends_{model}_{view}", args=args)


def notes(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def act(client, model: str, action: str, objects, **extra):
    data = {"action": action, "_selected_action": [obj.pk for obj in objects], **extra}
    response = client.post(url(model), data)
    assert response.status_code in (200, 302), response.content[:2000]
    return response


def on_engine(engine, container: Container):
    """The engine's own view of the container, or None."""
    import docker

    try:
        return engine.containers.get(container.backend_pk)
    except docker.errors.NotFound:
        return None


def break_node(node: Node) -> None:
    """Point the node's backend at an engine that does not exist."""
    Backend.objects.filter(pk=node.backend_id).update(config={**node.backend.config, "base_url": DOWN})
    registry.forget_backend()


# ---------------------------------------------------------------------------- backends and nodes

def docker_config(name: str, **more) -> dict:
    instance = f"{INSTANCE}-{name}"
    EXTRA_INSTANCES.add(instance)
    return backend_options(instance=instance, name_prefix=f"{PREFIX}{name}", **more)


def test_add_a_backend_and_a_node_through_the_forms(client, engine):
    config = docker_config("adm", registry_username="ops", registry_password=SECRET)
    response = client.post(url("backend", "add"), {"name": "local", "kind": "Docker", "config": json.dumps(config)})
    assert response.status_code == 302, response.content.decode()[:3000]
    backend = Backend.objects.get(name="local")
    assert backend.kind == "Docker" and backend.config["registry_password"] == SECRET

    response = client.post(url("node", "add"), {
        "name": "n1", "address": "127.0.0.1", "backend": backend.pk, "enabled": "on", "capacity": "5",
        "backend_config": json.dumps({"tls_client_cert": "/etc/cert.pem", "tls_client_key": NODE_SECRET}),
    })
    assert response.status_code == 302, response.content.decode()[:3000]
    node = Node.objects.get(name="n1")
    assert node.backend == backend and node.capacity == 5 and node.backend_config["tls_client_key"] == NODE_SECRET

    pages = [url("backend"), url("backend", "change", backend.pk), url("node"), url("node", "change", node.pk)]
    for page in pages:
        html = client.get(page).content.decode()
        assert SECRET not in html and NODE_SECRET not in html, page
    assert registry.MASK in client.get(url("backend", "change", backend.pk)).content.decode()

    # Sending the form back with the masks keeps the stored secrets.
    masked = registry.mask_config("Docker", backend.config)
    response = client.post(url("backend", "change", backend.pk),
                           {"name": "local", "kind": "Docker", "config": json.dumps({**masked, "stop_timeout": 4})})
    assert response.status_code == 302, response.content.decode()[:3000]
    backend.refresh_from_db()
    assert backend.config["registry_password"] == SECRET and backend.config["stop_timeout"] == 4
    response = client.post(url("node", "change", node.pk), {
        "name": "n1", "address": "127.0.0.1", "backend": backend.pk, "enabled": "on", "capacity": "6",
        "backend_config": json.dumps(registry.mask_config("Docker", node.backend_config)),
    })
    assert response.status_code == 302, response.content.decode()[:3000]
    node.refresh_from_db()
    assert node.backend_config["tls_client_key"] == NODE_SECRET and node.capacity == 6


def test_bad_configuration_is_a_form_error(client, engine):
    def add_backend(kind: str, config: str):
        response = client.post(url("backend", "add"), {"name": "b", "kind": kind, "config": config})
        assert response.status_code == 200  # the form again, with its errors
        return response.context["adminform"].form.errors

    assert "config" in add_backend("Docker", "{not json")
    errors = add_backend("Docker", json.dumps({"privileged": True}))
    assert "privileged" in " ".join(errors["config"])
    assert "kind" in add_backend("os.system", "{}")  # only the allow-list, never a dotted path
    assert "config" in add_backend("Docker", json.dumps({"registry_password": registry.MASK,
                                                         "registry_username": "u"}))
    assert not Backend.objects.exists()

    backend = Backend.objects.create(name="b", kind="Docker", config=docker_config("bad"))
    response = client.post(url("node", "add"), {
        "name": "n1", "address": "127.0.0.1", "backend": backend.pk, "capacity": "5",
        "backend_config": json.dumps({"cap_add": ["SYS_ADMIN"]}),
    })
    assert response.status_code == 200
    assert "cap_add" in " ".join(response.context["adminform"].form.errors["backend_config"])
    assert not Node.objects.exists()


def test_an_invalid_backend_change_is_reported_once(client, make_node):
    node = make_node("n1")
    node.backend_config = {"registry_username": "ops", "registry_password": "pw"}
    node.save()
    backend = node.backend
    response = client.post(url("backend", "change", backend.pk), {
        "name": backend.name, "kind": "Docker",
        "config": json.dumps({**backend.config, "registry_username": "x", "registry_password": "y",
                              "stop_timeout": -1}),
    })
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["config"]
    assert len(errors) == 1 and "stop_timeout" in errors[0]  # reported once


def test_a_backend_change_that_would_break_a_node_is_refused(client, make_node):
    node = make_node("n1")
    node.backend_config = {"stop_timeout": 3}  # a Docker option
    node.save()
    backend = node.backend
    response = client.post(url("backend", "change", backend.pk), {
        "name": backend.name, "kind": "HttpRemote", "config": json.dumps({"url": "http://{address}:8080"})})
    assert response.status_code == 200
    errors = response.context["adminform"].form.non_field_errors()
    assert len(errors) == 1 and "node n1 would be invalid" in errors[0] and "stop_timeout" in errors[0]
    assert not response.context["adminform"].form.errors.get("config")
    assert Backend.objects.get(pk=backend.pk).kind == "Docker"


# ---------------------------------------------------------------------------- node actions

def test_health_action_marks_nodes(client, make_node):
    up, down = make_node("up"), make_node("down", base_url=DOWN)
    response = act(client, "node", "check_health", [up, down])
    up.refresh_from_db(), down.refresh_from_db()
    assert up.is_healthy and up.last_seen is not None
    assert not down.is_healthy and down.last_error
    messages = notes(response)
    assert "1 node is healthy." in messages
    assert any(m.startswith("The node down is not healthy:") for m in messages)

    html = client.get(url("node")).content.decode()
    assert "✔ ok" in html and f"{down.get_last_status_display()}</span>" in html


def test_node_flags_and_container_counts(client, make_node, image, alice, django_assert_max_num_queries):
    n1, n2 = make_node("n1"), make_node("n2")
    services.create_container(alice, "a", image=image, node=n1)
    services.create_container(alice, "b", image=image, node=n1)
    assert "2 nodes disabled." in notes(act(client, "node", "disable", [n1, n2]))
    assert not Node.objects.filter(enabled=True).exists()
    assert "1 node enabled." in notes(act(client, "node", "enable", [n1]))
    assert "1 node is draining." in notes(act(client, "node", "drain", [n2]))
    assert Node.objects.get(pk=n2.pk).draining

    for i in range(3):  # more nodes, same number of queries: the counts are annotated
        make_node(f"x{i}")
    with django_assert_max_num_queries(12):
        response = client.get(url("node"))
    rows = {node.name: node.in_use for node in response.context["cl"].result_list}
    assert rows["n1"] == 2 and rows["n2"] == 0


def test_refresh_node_action(client, make_node, image, alice, engine):
    node = make_node("n1")
    container = services.create_container(alice, "nb", image=image)
    engine.containers.get(container.backend_pk).stop(timeout=1)
    response = act(client, "node", "refresh_containers", [node])
    assert "Container statuses of 1 node refreshed." in notes(response)
    assert Container.objects.get(pk=container.pk).status == "stopped"

    break_node(node)
    response = act(client, "node", "refresh_containers", [Node.objects.get(pk=node.pk)])
    assert any(m.startswith("Could not refresh the containers of n1:") for m in notes(response))


# ---------------------------------------------------------------------------- containers

def test_create_a_container_through_the_add_form(client, make_node, image, alice, engine):
    node = make_node("n1")
    page = client.get(url("container", "add"))
    assert page.status_code == 200 and b'name="owner"' in page.content

    response = client.post(url("container", "add"), {"owner": alice.pk, "name": "nb", "image": image.pk,
                                                     "options": json.dumps({"mem_limit": "64m"})})
    assert response.status_code == 302, response.content.decode()[:3000]
    container = Container.objects.get(owner=alice, name="nb")
    assert container.node == node and container.status == "running"
    real = on_engine(engine, container)
    assert real is not None and real.status == "running"
    assert real.attrs["HostConfig"]["Memory"] == 64 * 1024 * 1024

    html = client.get(url("container")).content.decode()
    assert f'href="{container.base_url}"' in html and container.url in html  # the site's, and the node's
    html = client.get(url("container", "change", container.pk)).content.decode()
    assert 'name="_container_step" value="suspend"' in html and container.backend_pk in html

    # the same name again: the service's message, as a form error
    response = client.post(url("container", "add"), {"owner": alice.pk, "name": "nb", "image": image.pk})
    assert response.status_code == 200
    assert "already has a container named 'nb'" in " ".join(response.context["adminform"].form.non_field_errors())
    assert Container.objects.count() == 1


def test_lifecycle_through_actions(client, make_node, image, alice, engine):
    make_node("n1")
    container = services.create_container(alice, "nb", image=image)
    other = services.create_container(alice, "other", image=image)

    assert "2 containers suspended." in notes(act(client, "container", "suspend_containers", [container, other]))
    assert on_engine(engine, container).attrs["State"]["Paused"]
    assert Container.objects.get(pk=container.pk).status == "suspended"
    assert "2 containers resumed." in notes(act(client, "container", "resume_containers", [container, other]))
    assert on_engine(engine, container).status == "running"
    assert "1 container stopped." in notes(act(client, "container", "stop_containers", [other]))
    assert on_engine(engine, other).status == "exited"
    assert "1 container started." in notes(act(client, "container", "start_containers", [other]))
    assert "1 container restarted." in notes(act(client, "container", "restart_containers", [other]))
    assert "Status of 2 containers refreshed." in notes(act(client, "container", "refresh_containers",
                                                            [container, other]))

    backend = registry.get_backend(container.node)
    backend.exec_in_container(container.backend_pk, ["sh", "-c", "echo before > /v"])
    assert "1 snapshot taken." in notes(act(client, "container", "snapshot_containers", [container]))
    snapshot = Snapshot.objects.get(container=container)
    assert snapshot.name.startswith("snap-") and backend.container_snapshot_exists(snapshot.backend_pk)
    backend.exec_in_container(container.backend_pk, ["sh", "-c", "echo after > /v"])
    assert "1 container restored." in notes(act(client, "snapshot", "restore", [snapshot]))
    assert backend.exec_in_container(container.backend_pk, ["cat", "/v"]).strip() == "before"

    assert "1 snapshot deleted." in notes(act(client, "snapshot", "delete_selected", [snapshot], post="yes"))
    assert not Snapshot.objects.exists() and not backend.container_snapshot_exists(snapshot.backend_pk)

    # "delete selected": the confirmation page first, then the real containers go
    page = act(client, "container", "delete_selected", [container, other])
    assert page.status_code == 200 and b"Are you sure" in page.content
    assert on_engine(engine, container) is not None
    response = act(client, "container", "delete_selected", [container, other], post="yes")
    assert "2 containers deleted." in notes(response)
    assert not Container.objects.exists()
    assert on_engine(engine, container) is None and on_engine(engine, other) is None


def test_buttons_on_the_change_page(client, make_node, image, alice, bob, engine):
    make_node("n1")
    container = services.create_container(alice, "nb", image=image)
    page = url("container", "change", container.pk)
    response = client.post(page, {"_container_step": "stop"})
    assert response.status_code == 302 and response["Location"] == page
    assert "1 container stopped." in notes(response)
    assert on_engine(engine, container).status == "exited"
    client.post(page, {"_container_step": "start"})
    response = client.post(page, {"_container_step": "snapshot"})
    assert "1 snapshot taken." in notes(response)
    snapshot = Snapshot.objects.get()
    backend = registry.get_backend(container.node)
    backend.exec_in_container(container.backend_pk, ["sh", "-c", "echo later > /w"])
    html = client.get(page).content.decode()
    assert f'value="restore:{snapshot.pk}"' in html
    response = client.post(page, {"_container_step": f"restore:{snapshot.pk}"})
    assert "1 container restored." in notes(response)
    assert "later" not in backend.exec_in_container(container.backend_pk, ["sh", "-c", "cat /w || true"])
    assert "Unknown step" in notes(client.post(page, {"_container_step": "explode"}))[-1]

    # clone and commit, each through a small form
    response = client.post(url("container", "clone", container.pk), {"owner": bob.pk, "name": "copy"})
    assert response.status_code == 302, response.content.decode()[:3000]
    clone = Container.objects.get(owner=bob, name="copy")
    assert clone.clone_of == container and on_engine(engine, clone).status == "running"
    response = client.post(url("container", "clone", container.pk), {"owner": bob.pk, "name": "copy"})
    assert response.status_code == 200 and b"already has a container named" in response.content
    elsewhere = make_node("n2")
    response = client.post(url("container", "clone", container.pk),
                           {"owner": bob.pk, "name": "moved", "node": elsewhere.pk})
    assert response.status_code == 302, response.content.decode()[:3000]
    assert Container.objects.get(owner=bob, name="moved").node == elsewhere

    response = client.post(url("container", "commit", container.pk), {"name": "stack", "public": "on"})
    assert response.status_code == 302, response.content.decode()[:3000]
    image_row = Image.objects.get(source=container)
    response = client.post(url("container", "commit", container.pk), {"name": "stack"})
    assert response.status_code == 200 and response.context["form"].non_field_errors()  # the name is taken
    assert image_row.public and image_row.owner == alice and backend.container_image_exists(image_row.ref)
    html = client.get(url("image", "change", image_row.pk)).content.decode()
    assert 'name="ref"' not in html  # a committed image's reference is not editable
    assert "1 image deleted." in notes(act(client, "image", "delete_selected", [image_row], post="yes"))
    assert not backend.container_image_exists(image_row.ref)


def test_admin_delete_removes_the_real_container(client, make_node, image, alice, engine):
    make_node("n1")
    container = services.create_container(alice, "nb", image=image)
    assert client.get(url("container", "delete", container.pk)).status_code == 200
    response = client.post(url("container", "delete", container.pk), {"post": "yes"})
    assert response.status_code == 302
    assert not Container.objects.exists()
    assert on_engine(engine, container) is None


def test_snapshot_name():
    assert snapshot_name().startswith("snap-") and len(snapshot_name()) == len("snap-20250101-120000")


# ---------------------------------------------------------------------------- a node that is down

def test_a_down_node_gives_readable_errors(client, make_node, image, alice, engine):
    up = make_node("up")
    down = make_node("down", base_url=DOWN)

    response = client.post(url("container", "add"), {"owner": alice.pk, "name": "nb", "image": image.pk,
                                                     "node": down.pk})
    assert response.status_code == 200
    errors = " ".join(response.context["adminform"].form.non_field_errors())
    assert "down" in errors and "not healthy" in errors
    assert not Container.objects.exists()

    Node.objects.filter(pk=up.pk).update(enabled=False)
    response = client.post(url("container", "add"), {"owner": alice.pk, "name": "nb", "image": image.pk})
    assert response.status_code == 200
    assert "No node can take a new container" in response.content.decode()

    Node.objects.filter(pk=up.pk).update(enabled=True)
    first = services.create_container(alice, "one", image=image)
    second = services.create_container(alice, "two", image=image)
    Container.objects.filter(pk=first.pk).update(node=down)  # "one" is on the node that is down
    first.refresh_from_db(), second.refresh_from_db()

    response = act(client, "container", "stop_containers", [first, second])
    messages = notes(response)
    assert "1 container stopped." in messages
    assert any(m.startswith("Could not stop alice/one:") and "docker" in m.lower() for m in messages), messages

    response = client.post(url("container", "change", first.pk), {"_container_step": "suspend"})
    assert response.status_code == 302
    assert notes(response)[-1].startswith("Could not suspend alice/one:")

    response = client.post(url("container", "delete", first.pk), {"post": "yes"})
    assert response.status_code == 302 and response["Location"] == url("container", "change", first.pk)
    assert notes(response)[-1].startswith("Could not delete alice/one:")
    assert Container.objects.filter(pk=first.pk).exists()

    response = act(client, "container", "delete_selected", [first, second], post="yes")
    messages = notes(response)
    assert "1 container deleted." in messages and any(m.startswith("Could not delete alice/one") for m in messages)
    assert list(Container.objects.values_list("name", flat=True)) == ["one"]
    assert on_engine(engine, second) is None


# ---------------------------------------------------------------------------- images and snapshots

def test_register_a_base_image(client, engine, make_node, alice):
    from ..conftest import TEST_IMAGE

    make_node("n1")
    response = client.post(url("image", "add"), {"name": "busybox", "ref": TEST_IMAGE, "public": "on",
                                                 "description": "tiny"})
    assert response.status_code == 302, response.content.decode()[:3000]
    image = Image.objects.get(ref=TEST_IMAGE)
    assert image.owner is None and image.public
    html = client.get(url("image")).content.decode()
    assert "base image" in html
    assert "1 image deleted." in notes(act(client, "image", "delete_selected", [image], post="yes"))
    assert engine.images.get(TEST_IMAGE)  # a base image's record goes, the engine's image stays


def test_every_page_renders(client, make_node, image, alice):
    make_node("n1")
    container = services.create_container(alice, "nb", image=image)
    snapshot = services.create_snapshot(container, "s1")
    for page in [url("node"), url("node", "add"), url("backend"), url("backend", "add"), url("container"),
                 url("container", "add"), url("container", "change", container.pk),
                 url("container", "clone", container.pk), url("container", "commit", container.pk),
                 url("image"), url("image", "add"), url("image", "change", image.pk), url("snapshot"),
                 url("snapshot", "change", snapshot.pk), url("container") + "?q=nb&status__exact=running"]:
        assert client.get(page).status_code == 200, page
