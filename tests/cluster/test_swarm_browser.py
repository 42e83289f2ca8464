"""A swarm in the admin, in a real browser (the ``browser`` fixture and ``Operator`` of
``tests/integration/test_browser.py``): an operator registers the test bed's swarm as one
``DockerSwarm`` node, checks its health and sees its machines, creates a container for a user,
finds no suspend, snapshot, clone, commit or move for it (the page says why), stops and starts
it, and drains a machine of the swarm and makes it active again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ipynbsrv_backends import registry as backend_registry
from ipynbsrv_backends.models import Backend, Container, Image, Node

from ..integration.test_browser import PASSWORD, Operator, browser  # noqa: F401 - the fixture
from ..testbed import SWARM_INSTANCE, _purge_services, cluster, swarm  # noqa: F401 - fixtures

pytestmark = [pytest.mark.engine, pytest.mark.cluster, pytest.mark.django_db(transaction=True),
              pytest.mark.usefixtures("master_settings")]


def test_an_operator_runs_a_container_on_a_swarm(live_server, browser, swarm, django_user_model, tmp_path):
    django_user_model.objects.create_superuser("operator", "op@example.org", PASSWORD)
    alice = django_user_model.objects.create_user("alice", password="alice-pw")
    op = Operator(browser, live_server.url, Path(tmp_path / "screenshots"))
    try:
        op.open("/admin/")
        op.type("username", "operator")
        op.type("password", PASSWORD)
        op.submit('input[type="submit"]')

        # --- the swarm as one node
        op.open("/admin/ipynbsrv_backends/backend/add/")
        op.type("name", "swarm")
        op.choose("kind", "DockerSwarm")
        op.type("config", json.dumps({"base_url": swarm.manager, "registry": swarm.cluster.registry,
                                      "instance": SWARM_INSTANCE, "name_prefix": "tsb", "stop_timeout": 3}))
        op.submit()
        assert not op.errors(), op.errors()
        op.open("/admin/ipynbsrv_backends/node/add/")
        op.type("name", "swarm")
        op.type("address", swarm.cluster.addresses[0])
        op.choose("backend", "swarm (DockerSwarm)")
        op.type("capacity", "10")
        op.submit()
        assert not op.errors(), op.errors()
        node = Node.objects.get(name="swarm")
        op.open("/admin/ipynbsrv_backends/node/")
        op.action("check_health", "swarm")
        assert "1 node is healthy." in op.messages()
        op.open(f"/admin/ipynbsrv_backends/node/{node.pk}/change/")
        machines = op.find("table.ipynbsrv-machines").text
        assert "n1" in machines and "n2" in machines and machines.count("ready") == 2

        # --- a container for alice
        Image.objects.create(name="busybox", ref=swarm.image, public=True)
        op.open("/admin/ipynbsrv_backends/container/add/")
        op.choose("owner", "alice")
        op.type("name", "nb")
        op.choose("image", "busybox")
        op.submit()
        assert not op.errors(), op.errors()
        container = Container.objects.get(owner=alice, name="nb")
        assert container.status == "running" and container.ports[0]["address"] in swarm.cluster.addresses
        op.open(f"/admin/ipynbsrv_backends/container/{container.pk}/change/")
        buttons = [b.get_attribute("value") for b in op.all('button[name="_container_step"]')]
        assert "stop" in buttons and "restart" in buttons
        assert not {"suspend", "resume", "snapshot", "move"} & set(buttons)
        links = " ".join(a.get_attribute("href") or "" for a in op.all("ul.object-tools a"))
        assert "/clone/" not in links and "/commit/" not in links and "/move/" not in links
        note = op.find(".ipynbsrv-unsupported").text
        assert "Swarm services have no pause" in note and "commit" in note
        op.screenshot("swarm-container")
        op.step("stop")
        assert Container.objects.get(pk=container.pk).status == "stopped"
        op.step("start")
        assert Container.objects.get(pk=container.pk).status == "running"

        # --- drain the worker from the node's page, then make it active again
        op.open(f"/admin/ipynbsrv_backends/node/{node.pk}/change/")
        op.submit(f'button[name="_machine"][value="drain:{swarm.node_ids[1]}"]')
        assert swarm.availability(1) == "drain"
        op.submit(f'button[name="_machine"][value="active:{swarm.node_ids[1]}"]')
        assert swarm.availability(1) == "active"
        assert Backend.objects.filter(kind="DockerSwarm").count() == 1
    finally:
        _purge_services(swarm.manager, SWARM_INSTANCE)
        backend_registry.forget_backend()
