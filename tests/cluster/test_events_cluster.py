"""Events on the cluster test bed: two nodes, each with its own engine and host API (token and
signed requests), followed by the master at once. An OOM kill on one node reaches only its
container's record; the other node's host API restarted by its supervisor (SIGTERM) while its
container stops is followed again, the stop replayed and the node reconciled, while the first
node's stream never breaks."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from ipynbsrv_backends import registry
from ipynbsrv_backends.models import Backend, Container, ContainerEvent
from ipynbsrv_backends.services.events import NodeFollower

from ..conftest import TEST_IMAGE
from ..support.waiting import wait_for
from ..testbed import cluster, cluster_nodes  # noqa: F401 - fixtures

pytestmark = [pytest.mark.engine, pytest.mark.cluster, pytest.mark.django_db(transaction=True)]

TIMEOUTS = {"connect_timeout": 2, "timeout": 5, "status_timeout": 2, "long_timeout": 60, "retries": 0}


def engine(cluster: Any, index: int) -> Any:
    import docker

    return docker.DockerClient(base_url=f"unix://{cluster.sockets[index]}", timeout=30)


def test_every_nodes_events_reach_the_master(cluster, cluster_nodes, django_user_model, caplog):
    Backend.objects.filter(name="hostapi").update(config={"url": "http://{address}:8080", **TIMEOUTS})
    registry.forget_backend()
    first, second = cluster_nodes[:2]
    rows = {}
    for node, username in ((first, "alice"), (second, "bob")):
        user = django_user_model.objects.create_user(username)
        record = registry.get_backend(node).create_container(username, 2000 + user.pk, "nb", [], [],
                                                             cmd=["sleep", "600"], image=TEST_IMAGE, mem_limit="16m")
        rows[node.name] = Container.objects.create(owner=user, name="nb", node=node, backend_pk=record["pk"],
                                                   status="running")
    caplog.set_level(logging.INFO, logger="ipynbsrv_backends.services.events")
    followers = [NodeFollower(node, stream_seconds=60, heartbeat=1, first_backoff=0.5, max_backoff=2)
                 for node in (first, second)]
    for follower in followers:
        follower.start()
    try:
        wait_for(lambda: all(f.reconciled == 1 for f in followers), timeout=30, what="both streams")
        # -- an OOM kill on the second node
        oom = rows[second.name]
        registry.get_backend(second).exec_in_container(
            oom.backend_pk, ["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"])
        wait_for(lambda: Container.objects.get(pk=oom.pk).last_event == "ran out of memory: 16 MiB limit",
                 timeout=15, what="the OOM kill in bob's record")
        assert not ContainerEvent.objects.filter(container=rows[first.name]).exists()
        # -- the first node's host API restarted by its supervisor while its container stops
        cluster.stop_hostapi(0)
        engine(cluster, 0).containers.get(rows[first.name].backend_pk).stop(timeout=1)
        cluster.heal()
        wait_for(lambda: ContainerEvent.objects.filter(container=rows[first.name], action="die").exists(),
                 timeout=30, what="the stop the first node's stream missed")
        assert Container.objects.get(pk=rows[first.name].pk).status == "stopped"
        # followed again; reconciled once more if a stream broke meanwhile (it ended cleanly on the
        # SIGTERM; asking again while the node was down fails, unless it was back already)
        wait_for(lambda: followers[0].failures == 0 and followers[0].reconciled == 1 + bool(followers[0].broken),
                 timeout=15, what="the first node followed again")
        assert (followers[1].broken, followers[1].reconciled) == (0, 1)  # the second node never broke
    finally:
        for follower in followers:
            follower.stop.set()
        for follower in followers:
            follower.join(timeout=15)
    assert not any(f.is_alive() for f in followers)
