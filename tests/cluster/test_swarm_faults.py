"""A swarm worker's engine killed mid-run, seen from the master (a ``DockerSwarm`` node).

Without shared storage the container is pinned to the worker holding its volume: the
record turns ``stopped`` and says it waits for that node, within the documented bound
(:data:`BOUND`), and runs again there when the node is back. With shared storage Swarm
starts it on the other node and the notebook answers from there with its data.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from ipynbsrv_backends import registry, services
from ipynbsrv_backends.models import Backend, Image, Node

from ..support import http_answers, wait_for
from ..testbed import SWARM_INSTANCE, _purge_services, cluster, swarm  # noqa: F401 - fixtures

pytestmark = [pytest.mark.engine, pytest.mark.cluster, pytest.mark.django_db(transaction=True)]

#: docs/swarm.md: a manager marks a silent node down after about 15 s (its heartbeat
#: period, 5 s, three times); a refresh then sees it. Some margin for a busy machine.
BOUND = 30


def _node(swarm, **config):
    backend = Backend.objects.create(name=f"swarm-{len(config)}", kind="DockerSwarm", config={
        "base_url": swarm.manager, "registry": swarm.cluster.registry, "instance": SWARM_INSTANCE,
        "name_prefix": "tsf", "stop_timeout": 3, **config})
    return Node.objects.create(name=f"swarm{len(config)}", address=swarm.cluster.addresses[0], backend=backend,
                               capacity=20)


@pytest.fixture
def image(db, swarm):
    return Image.objects.create(name="busybox", ref=swarm.image, public=True)


@pytest.fixture
def healing(swarm, master_settings):
    yield
    swarm.cluster.heal()  # the killed engine started again: it rejoins the swarm by itself
    wait_for(lambda: _ready(swarm) == 2, timeout=60, what="both nodes ready again")
    _set_availability(swarm, 0, "active")
    _purge_services(swarm.manager, SWARM_INSTANCE)
    registry.forget_backend()


def _ready(swarm):
    client = swarm.client()
    try:
        return sum(1 for node in client.nodes() if node["Status"]["State"] == "ready")
    finally:
        client.close()


def _set_availability(swarm, index, availability):
    client = swarm.client()
    try:
        node = client.inspect_node(swarm.node_ids[index])
        client.update_node(node["ID"], node["Version"]["Index"], {**node["Spec"], "Availability": availability})
    finally:
        client.close()


def _kill_engine(swarm, index):
    pid = int((swarm.cluster.node_dir(index) / "docker.pid").read_text())
    os.kill(pid, signal.SIGKILL)


def _refreshed(container):
    try:
        return services.refresh_container(container)
    except Exception:  # noqa: BLE001 - a refresh racing the failure: ask again
        return None


def test_without_shared_storage_the_record_says_it_waits_for_its_node(swarm, image, alice, healing):
    node = _node(swarm, constraints=["node.labels.org.ipynbsrv.node==n2"])
    container = services.create_container(alice, "nb", image=image, node=node)
    assert container.status == "running" and container.ports[0]["address"] == swarm.cluster.addresses[1]
    _kill_engine(swarm, 1)
    started = time.monotonic()
    seen = wait_for(lambda: (c := _refreshed(container)) is not None and c.status == "stopped" and c,
                    timeout=BOUND, interval=0.5, what="the record to say stopped")
    assert time.monotonic() - started < BOUND
    assert "waiting for its node n2" in seen.last_error
    assert seen.ports[0]["address"] == swarm.cluster.addresses[1]  # still where its data is
    swarm.cluster.heal()
    back = wait_for(lambda: (c := _refreshed(container)) is not None and c.status == "running" and c,
                    timeout=90, interval=0.5, what="the container running again on its node")
    assert back.ports[0]["address"] == swarm.cluster.addresses[1] and back.last_error == ""
    assert http_answers(f"http://{back.ports[0]['address']}:{back.ports[0]['external']}/", timeout=30)


def test_with_shared_storage_swarm_moves_it_and_the_data_follows(swarm, image, alice, healing, master_settings):
    shared = swarm.cluster.shared / f"nb-{time.monotonic_ns()}"
    shared.mkdir(parents=True)
    (shared / "index.html").write_text("my notebook's data\n")
    master_settings.IPYNBSRV_BACKENDS = {**master_settings.IPYNBSRV_BACKENDS,
                                         "CONTAINER_VOLUMES": [{"source": str(shared), "target": "/data"}]}
    node = _node(swarm, shared_storage=True, allowed_volume_roots=[str(swarm.cluster.shared)])
    _set_availability(swarm, 0, "drain")  # so its first place is the worker
    container = services.create_container(alice, "nb", image=image, node=node, cmd=["httpd", "-f", "-p", "8888",
                                                                                   "-h", "/data"])
    _set_availability(swarm, 0, "active")
    assert container.ports[0]["address"] == swarm.cluster.addresses[1]
    _kill_engine(swarm, 1)
    moved = wait_for(lambda: (c := _refreshed(container)) is not None and c.status == "running"
                     and c.ports[0]["address"] == swarm.cluster.addresses[0] and c,
                     timeout=BOUND + 30, interval=0.5, what="Swarm to run it on the other node")
    port = moved.ports[0]
    assert http_answers(f"http://{port['address']}:{port['external']}/", timeout=30) == b"my notebook's data\n"
