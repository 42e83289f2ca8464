"""The master with a swarm as one node (one place with many machines): users' API and admin
on a ``DockerSwarm`` node of the test bed's real two-node swarm.

What Swarm cannot do answers ``501 not_supported`` with the reason in the API, before the
swarm is asked, and is absent from the admin's container page, which says why; health and
capacity come from the swarm's node list.
"""

from __future__ import annotations

import base64
import json

import pytest
from rest_framework.test import APIClient

from ipynbsrv_backends import registry, services
from ipynbsrv_backends.backends.swarm import NOT_SUPPORTED
from ipynbsrv_backends.models import Backend, Container, Image, Node

from ..support import http_answers
from ..testbed import SWARM_INSTANCE, _purge_services, cluster, swarm  # noqa: F401 - fixtures

pytestmark = [pytest.mark.engine, pytest.mark.cluster, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def swarm_node(swarm, master_settings):
    master_settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    backend = Backend.objects.create(name="swarm", kind="DockerSwarm", config={
        "base_url": swarm.manager, "registry": swarm.cluster.registry, "instance": SWARM_INSTANCE,
        "name_prefix": "tsm", "stop_timeout": 3})
    node = Node.objects.create(name="swarm", address=swarm.cluster.addresses[0], backend=backend, capacity=20)
    yield node
    _purge_services(swarm.manager, SWARM_INSTANCE)
    registry.forget_backend()


@pytest.fixture
def image(db, swarm):
    return Image.objects.create(name="busybox", ref=swarm.image, public=True)


def api_for(user, password):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Basic " + base64.b64encode(f"{user.username}:{password}".encode()).decode())
    return client


def test_api_runs_a_container_on_the_swarm_and_refuses_what_swarm_cannot(swarm, swarm_node, image, alice):
    api = api_for(alice, "alice-password")
    response = api.post("/api/containers/?wait=true", {"name": "nb", "image": image.pk}, format="json")
    assert response.status_code == 201, response.content[:500]
    data = json.loads(response.content)
    container = Container.objects.get(pk=data["id"])
    assert container.status == "running"
    # the record's port is on the swarm node running the task, and answers there
    [port] = container.ports
    assert port["address"] in swarm.cluster.addresses
    assert http_answers(f"http://{port['address']}:{port['external']}/")
    for step, key in [("suspend", "suspend"), ("resume", "suspend"), ("snapshot", "snapshot"), ("commit", "commit"),
                      ("clone", "clone")]:
        payload = {"name": "x"} if step in ("snapshot", "commit", "clone") else {}
        response = api.post(f"/api/containers/{data['id']}/{step}/", payload, format="json")
        answer = json.loads(response.content)
        assert response.status_code == 501 and answer["code"] == "not_supported", (step, answer)
        assert NOT_SUPPORTED[key] in answer["detail"], (step, answer)
    # what it can do still works
    for step, status in [("stop", "stopped"), ("start", "running"), ("restart", "running")]:
        response = api.post(f"/api/containers/{data['id']}/{step}/")
        assert response.status_code == 200 and json.loads(response.content)["status"] == status, step
    assert Container.objects.count() == 1  # the refused clone made nothing


def test_admin_hides_what_swarm_cannot_and_says_why(swarm_node, image, alice, admin_client):
    container = services.create_container(alice, "nb", image=image)
    page = admin_client.get(f"/admin/ipynbsrv_backends/container/{container.pk}/change/").content.decode()
    for shown in ('value="start"', 'value="stop"', 'value="restart"'):
        assert shown in page
    for hidden in ('value="suspend"', 'value="resume"', 'value="snapshot"', 'value="move"', "/clone/", "/commit/",
                   "/move/"):
        assert hidden not in page, hidden
    assert "Swarm services have no pause" in page and "ipynbsrv-unsupported" in page


def test_health_and_capacity_come_from_the_swarms_node_list(swarm_node):
    assert services.check_nodes_health([swarm_node]) == {"swarm": 0}
    swarm_node.refresh_from_db()
    machines = swarm_node.resources["nodes"]
    assert [(m["name"], m["state"], m["availability"]) for m in machines] == [
        ("n1", "ready", "active"), ("n2", "ready", "active")]
    assert swarm_node.resources["resources"]["cpu_count"] >= 2


def test_admin_drains_a_machine_of_the_swarm_and_makes_it_active_again(swarm, swarm_node, admin_client):
    services.check_node_health(swarm_node)
    url = f"/admin/ipynbsrv_backends/node/{swarm_node.pk}/change/"
    page = admin_client.get(url).content.decode()
    assert f'name="_machine" value="drain:{swarm.node_ids[1]}"' in page
    try:
        response = admin_client.post(url, {"_machine": f"drain:{swarm.node_ids[1]}"})
        assert response.status_code == 302
        assert swarm.availability(1) == "drain"
        swarm_node.refresh_from_db()
        assert [m["availability"] for m in swarm_node.resources["nodes"]] == ["active", "drain"]
        page = admin_client.get(url).content.decode()
        assert f'value="active:{swarm.node_ids[1]}"' in page
        admin_client.post(url, {"_machine": f"active:{swarm.node_ids[1]}"})
        assert swarm.availability(1) == "active"
        response = admin_client.post(url, {"_machine": "sleep:n2"}, follow=True)
        assert "Invalid availability" in response.content.decode()
    finally:
        if swarm.availability(1) != "active":
            services.set_machine_availability(swarm_node, swarm.node_ids[1], "active")


def test_reconcile_against_the_swarms_services(swarm, swarm_node, image, alice):
    kept = services.create_container(alice, "kept", image=image)
    gone = services.create_container(alice, "gone", image=image)
    client = swarm.client()
    try:
        client.remove_service(gone.backend_pk)  # behind the master's back
    finally:
        client.close()
    report = services.reconcile(swarm_node, mark_lost=True)
    assert report.missing == [str(gone)] and report.orphans == []
    gone.refresh_from_db()
    kept.refresh_from_db()
    assert gone.status == "lost" and kept.status == "running"
