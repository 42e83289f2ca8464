"""The base contract against ``DockerSwarm`` on a real two-node swarm of the test bed.

The rules of ``tests/integration/test_contract.py`` that belong to ``ContainerBackend``,
checked here against what the swarm really has (its manager's services and tasks, the
nodes' engines) instead of one engine's containers: records, ports that answer on the
address of the node running the task, the environment, lifecycle as scaling, volumes kept,
scoping, errors, and what Swarm cannot do refused with ``not_supported``.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
import time

import pytest

from ipynbsrv_backends import errors
from ipynbsrv_backends.backends import DockerSwarm
from ipynbsrv_backends.contract import (
    BACKEND_STATUS_OK,
    ContainerBackend,
    SnapshotableContainerBackend,
    SuspendableContainerBackend,
)

from ..support import http_answers, wait_for
from ..testbed import SWARM_INSTANCE, _purge_services, cluster, swarm  # noqa: F401 - fixtures

pytestmark = [pytest.mark.engine, pytest.mark.cluster]

UID = 4343
USER = "alice"
HTTP_PORT = [{"address": "0.0.0.0", "external": None, "internal": 8888}]
LOOP = "trap 'exit 0' TERM; while true; do sleep 0.1; done"


def swarm_backend(swarm, **more):
    options = {"registry": swarm.cluster.registry, "instance": SWARM_INSTANCE, "name_prefix": "tsw",
               "stop_timeout": 3, "allowed_volume_roots": [str(swarm.cluster.shared)], "start_timeout": 60, **more}
    return DockerSwarm(swarm.manager, **options)


@pytest.fixture
def backend(swarm):
    yield swarm_backend(swarm)
    _purge_services(swarm.manager, SWARM_INSTANCE)


@pytest.fixture(scope="module", autouse=True)
def _volumes_removed(swarm):
    """The named volumes the tests made on the nodes (kept by delete, as the contract says)."""
    yield
    _purge_services(swarm.manager, SWARM_INSTANCE)
    for index in range(len(swarm.cluster.sockets)):
        client = swarm.client(index)
        for volume in client.volumes(filters={"label": f"org.ipynbsrv.instance={SWARM_INSTANCE}"})["Volumes"] or []:
            client.remove_volume(volume["Name"], force=True)
        client.close()


def make(backend, swarm, name="nb", *, username=USER, uid=UID, ports=None, volumes=None, **kwargs):
    kwargs.setdefault("image", swarm.image)
    return backend.create_container(username, uid, name, ports or [], volumes or [], **kwargs)


def services(swarm):
    """The names of the services this run's backend made, as the manager lists them."""
    client = swarm.client()
    try:
        return sorted(s["Spec"]["Name"] for s in client.services(filters={"label": f"org.ipynbsrv.instance={SWARM_INSTANCE}"}))
    finally:
        client.close()


def task_container(swarm, record):
    """The node index and the inspection of the container running the record's task."""
    client = swarm.client()
    try:
        [task] = [t for t in client.tasks(filters={"service": record["pk"], "desired-state": "running"})
                  if t["Status"]["State"] == "running"]
    finally:
        client.close()
    index = swarm.node_ids.index(task["NodeID"])
    node = swarm.client(index)
    try:
        return index, node.inspect_container(task["Status"]["ContainerStatus"]["ContainerID"])
    finally:
        node.close()


def logs(backend, pk, count):
    def enough():
        lines = backend.get_container_logs(pk)
        return lines if len(lines) >= count else None

    return wait_for(enough, timeout=30, what=f"{count} log lines of {pk}")


# --------------------------------------------------------------------------- claims and status

def test_claims_the_base_contract_only(swarm):
    backend = swarm_backend(swarm)
    assert isinstance(backend, ContainerBackend)
    assert not isinstance(backend, SuspendableContainerBackend)
    assert not isinstance(backend, SnapshotableContainerBackend)
    assert backend.get_status() == BACKEND_STATUS_OK
    assert "secret" not in repr(swarm_backend(swarm, tls_client_cert="/c", tls_client_key="secret"))


def test_a_worker_is_not_a_manager(swarm):
    """The backend must talk to a manager: a worker's engine is an error, not OK."""
    worker = DockerSwarm(f"unix://{swarm.cluster.sockets[1]}", instance=SWARM_INSTANCE)
    assert worker.get_status() != BACKEND_STATUS_OK
    gone = DockerSwarm("unix:///nonexistent/docker.sock", instance=SWARM_INSTANCE, timeout=2)
    assert gone.get_status() != BACKEND_STATUS_OK


# --------------------------------------------------------------------------- create and records

def test_create_returns_a_complete_record_that_answers_on_its_node(backend, swarm):
    record = make(backend, swarm, ports=HTTP_PORT, base_url="/user/alice/nb/")
    assert record["pk"] == "tsw-u4343-nb" and record["name"] == "nb" and record["owner"] == USER
    assert record["status"] == "running" and record["image"] == swarm.image
    created = dt.datetime.fromisoformat(record["created"].replace("Z", "+00:00"))
    assert abs((dt.datetime.now(dt.UTC) - created).total_seconds()) < 120
    [port] = record["ports"]
    index, info = task_container(swarm, record)
    # the port carries the address of the node the task runs on, and answers there
    assert port["address"] == swarm.cluster.addresses[index] and port["internal"] == 8888
    assert record["node"] == f"n{index + 1}" and record["node_id"] == swarm.node_ids[index]
    assert b"ipynbsrv test page" in http_answers(f"http://{port['address']}:{port['external']}/")
    # the service and the task's container carry the Docker backend's labels
    labels = info["Config"]["Labels"]
    assert labels["org.ipynbsrv.instance"] == SWARM_INSTANCE and labels["org.ipynbsrv.owner"] == USER
    assert json.loads(labels["org.ipynbsrv.ports"])[0]["external"] == port["external"]
    assert json.loads(json.dumps(record)) == record
    assert backend.get_container(record["pk"]) == record
    assert backend.get_containers() == [record]


def test_environment_has_owner_base_url_and_env(backend, swarm):
    record = make(backend, swarm, base_url="/nb/alice/", env={"GREETING": "hello world"},
                  cmd=["sh", "-c", 'echo "$OWNER|$OWNER_UID|$BASE_URL|$GREETING"; ' + LOOP])
    assert logs(backend, record["pk"], 1) == [f"alice|{UID}|/nb/alice/|hello world"]


def test_limits_are_applied(backend, swarm):
    record = make(backend, swarm, mem_limit="64m", cpu_limit=0.5, pids_limit=64)
    _, info = task_container(swarm, record)
    host = info["HostConfig"]
    assert host["Memory"] == 64 * 1024 * 1024 and host["NanoCpus"] == 500_000_000 and host["PidsLimit"] == 64
    assert not host["Privileged"] and host["Init"] is True


@pytest.mark.parametrize("call", [
    {"name": "Has Space"}, {"name": "a/b"}, {"username": "bad user"}, {"uid": -1},
    {"env": {"OWNER": "mallory"}}, {"mem_limit": "lots"}, {"colour": "blue"}, {"privileged": True},
    {"ports": [{"address": "0.0.0.0", "external": 70000, "internal": 8888}]},
    {"volumes": [{"source": "/etc", "target": "/x"}]}, {"volumes": [{"source": "../x", "target": "/x"}]},
])
def test_bad_input_is_refused_before_anything_is_made(backend, swarm, call):
    with pytest.raises(errors.InvalidArgumentError):
        make(backend, swarm, **call)
    assert services(swarm) == []


def test_name_taken_is_already_exists_and_another_user_may_have_it(backend, swarm):
    make(backend, swarm)
    with pytest.raises(errors.ContainerAlreadyExistsError):
        make(backend, swarm)
    other = make(backend, swarm, username="bob", uid=UID + 1)
    assert services(swarm) == sorted(["tsw-u4343-nb", other["pk"]])


def test_missing_image_is_image_not_found(backend, swarm):
    with pytest.raises(errors.ContainerImageNotFoundError):
        make(backend, swarm, image=f"{swarm.cluster.registry}/never/pushed:1")
    assert backend.container_image_exists(swarm.image)
    assert not backend.container_image_exists(f"{swarm.cluster.registry}/never/pushed:1")
    assert backend.get_container_image(swarm.image)["pk"] == swarm.image
    assert backend.get_container_images() == []
    assert services(swarm) == []


def test_an_image_only_the_manager_has_is_refused(backend, swarm):
    """Every machine pulls by name: an image on the manager's engine but not in the registry
    would fail on the others, so a create refuses it."""
    local = f"{swarm.cluster.registry}/tsw/only-on-the-manager:1"
    manager = swarm.client(0)
    try:
        manager.tag(swarm.image, local.rsplit(":", 1)[0], "1")
        assert backend.container_image_exists(local)  # the manager has it
        with pytest.raises(errors.ContainerImageNotFoundError) as info:
            make(backend, swarm, image=local)
        assert "registry" in str(info.value)
        assert services(swarm) == []
    finally:
        manager.remove_image(local)
        manager.close()


def test_fixed_external_port_and_a_taken_one(backend, swarm):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    first = make(backend, swarm, "first", ports=[{"address": "0.0.0.0", "external": free, "internal": 8888}])
    assert first["ports"][0]["external"] == free
    assert http_answers(f"http://{first['ports'][0]['address']}:{free}/")
    with pytest.raises(errors.InvalidArgumentError) as info:
        make(backend, swarm, "second", ports=[{"address": "0.0.0.0", "external": free, "internal": 8888}])
    assert first["pk"] in str(info.value)
    assert services(swarm) == [first["pk"]]


# --------------------------------------------------------------------------- lifecycle

def test_stop_start_restart_keep_the_port_and_the_node(backend, swarm):
    record = make(backend, swarm, ports=HTTP_PORT)
    pk, port = record["pk"], record["ports"][0]
    backend.stop_container(pk)
    stopped = backend.get_container(pk)
    assert stopped["status"] == "stopped" and backend.container_is_running(pk) is False
    assert stopped["ports"] == record["ports"]  # the pinned node's address, kept
    assert backend.get_containers(only_running=True) == []
    backend.stop_container(pk)  # harmless
    backend.start_container(pk)
    assert backend.get_container(pk)["status"] == "running"
    backend.start_container(pk)  # harmless
    _, before = task_container(swarm, record)
    backend.restart_container(pk)
    _, after = task_container(swarm, record)
    assert after["Id"] != before["Id"] and after["State"]["Running"]
    again = backend.get_container(pk)
    assert again["ports"] == record["ports"] and again["node_id"] == record["node_id"]
    assert http_answers(f"http://{port['address']}:{port['external']}/")


def test_a_command_that_exits_is_stopped_and_starts_again(backend, swarm):
    """A clean exit is not restarted by Swarm: the record says stopped (exited), and a start
    runs the command again (a new task), as a start of a ``Docker`` container does."""
    record = make(backend, swarm, cmd=["sh", "-c", "echo ran; sleep 1"])
    pk = record["pk"]
    exited = wait_for(lambda: (r := backend.get_container(pk))["status"] == "stopped" and r, timeout=30,
                      what="the command to exit")
    assert exited["state"] == "exited" and exited["detail"] is None  # as a Docker container that exited
    backend.start_container(pk)
    assert logs(backend, pk, 2) == ["ran", "ran"]
    assert wait_for(lambda: backend.get_container(pk)["state"] == "exited", timeout=30, what="the second exit")


def test_stop_is_graceful_then_kills(backend, swarm):
    shared = swarm.cluster.shared
    out = shared / f"graceful-{time.monotonic_ns()}"
    out.mkdir()
    polite = make(backend, swarm, "polite", volumes=[{"source": str(out), "target": "/out"}],
                  cmd=["sh", "-c", "trap 'echo bye > /out/bye; exit 0' TERM; while true; do sleep 0.1; done"])
    backend.stop_container(polite["pk"])
    assert (out / "bye").read_text().strip() == "bye"
    stubborn = make(backend, swarm, "stubborn", cmd=["sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"])
    started = time.monotonic()
    backend.stop_container(stubborn["pk"])
    assert time.monotonic() - started >= 2.5  # stop_timeout is 3 s: it waited before the kill
    assert backend.get_container(stubborn["pk"])["status"] == "stopped"


@pytest.mark.parametrize("state", ["running", "stopped"])
def test_delete_in_any_state_keeps_the_volume(backend, swarm, state):
    volume = f"tsw-vol-{state}"
    record = make(backend, swarm, volumes=[{"source": volume, "target": "/data"}],
                  cmd=["sh", "-c", "echo kept > /data/file; " + LOOP])
    if state == "stopped":
        backend.stop_container(record["pk"])
    index = swarm.node_ids.index(record["node_id"])
    backend.delete_container(record["pk"])
    assert not backend.container_exists(record["pk"]) and services(swarm) == []
    node = swarm.client(index)
    try:
        info = node.inspect_volume(volume)  # kept, on the node that ran it, labelled
    finally:
        node.close()
    assert info["Labels"]["org.ipynbsrv.instance"] == SWARM_INSTANCE and info["Labels"]["org.ipynbsrv.owner"] == USER


def test_the_service_is_pinned_to_the_node_of_its_volume(backend, swarm):
    record = make(backend, swarm, volumes=[{"source": "tsw-pinned", "target": "/data"}])
    client = swarm.client()
    try:
        constraints = client.inspect_service(record["pk"])["Spec"]["TaskTemplate"]["Placement"]["Constraints"]
    finally:
        client.close()
    assert f"node.id=={record['node_id']}" in constraints
    # and a restart after the pin did not move it: the data is where it was
    backend.restart_container(record["pk"])
    assert backend.get_container(record["pk"])["node_id"] == record["node_id"]


def test_with_shared_storage_the_service_is_not_pinned(swarm):
    backend = swarm_backend(swarm, shared_storage=True, constraints=["node.labels.org.ipynbsrv.node==n2"])
    try:
        record = make(backend, swarm)
        client = swarm.client()
        try:
            constraints = client.inspect_service(record["pk"])["Spec"]["TaskTemplate"]["Placement"]["Constraints"]
        finally:
            client.close()
        assert constraints == ["node.labels.org.ipynbsrv.node==n2"]
        assert record["node"] == "n2" and record["node_id"] == swarm.node_ids[1]
    finally:
        _purge_services(swarm.manager, SWARM_INSTANCE)


def test_logs_with_tail_and_since(backend, swarm):
    record = make(backend, swarm, cmd=["sh", "-c", "for i in 1 2 3 4 5; do echo line$i; done; " + LOOP])
    pk = record["pk"]
    assert logs(backend, pk, 5) == ["line1", "line2", "line3", "line4", "line5"]
    assert backend.get_container_logs(pk, tail=2) == ["line4", "line5"]
    future = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    assert backend.get_container_logs(pk, since=future.isoformat()) == []
    with pytest.raises(errors.InvalidArgumentError):
        backend.get_container_logs(pk, tail=-1)


# --------------------------------------------------------------------------- scoping and errors

def test_listing_costs_three_engine_calls_however_many(backend, swarm):
    calls = []
    client = backend._api()
    for method in ("services", "tasks", "nodes", "inspect_service"):
        real = getattr(client, method)
        setattr(client, method, lambda *a, _real=real, _name=method, **k: (calls.append(_name), _real(*a, **k))[1])
    make(backend, swarm, "one")
    calls.clear()
    assert len(backend.get_containers()) == 1
    few = len(calls)
    make(backend, swarm, "two")
    make(backend, swarm, "three")
    calls.clear()
    assert len(backend.get_containers()) == 3
    assert len(calls) == few == 3


def test_another_instance_and_unmanaged_services_are_invisible(backend, swarm):
    mine = make(backend, swarm, "mine")
    other = swarm_backend(swarm, instance=f"{SWARM_INSTANCE}-other")
    try:
        theirs = make(other, swarm, "theirs")
        assert [r["pk"] for r in backend.get_containers()] == [mine["pk"]]
        assert not backend.container_exists(theirs["pk"])
        with pytest.raises(errors.ContainerNotFoundError):
            backend.delete_container(theirs["pk"])
        assert other.container_exists(theirs["pk"])
    finally:
        _purge_services(swarm.manager, f"{SWARM_INSTANCE}-other")


def test_missing_container_is_not_found_everywhere(backend, swarm):
    pk = "tsw-u1-never-made"
    assert backend.container_exists(pk) is False
    for call in (backend.get_container, backend.start_container, backend.stop_container, backend.restart_container,
                 backend.delete_container, backend.container_is_running, backend.get_container_logs):
        with pytest.raises(errors.ContainerNotFoundError):
            call(pk)
    with pytest.raises(errors.ContainerNotFoundError):
        backend.exec_in_container(pk, ["true"])


def test_what_swarm_cannot_do_is_not_supported_and_says_why(backend, swarm):
    record = make(backend, swarm)
    cases = [
        (lambda: backend.exec_in_container(record["pk"], ["true"]), "command"),
        (lambda: backend.create_container_image(record["pk"], "stack"), "commit"),
        (lambda: make(backend, swarm, "clone", clone_of=record["pk"], image=None), "clone"),
    ]
    for call, word in cases:
        with pytest.raises(errors.CapabilityNotSupportedError) as info:
            call()
        assert info.value.status_code == 501 and info.value.code == "not_supported"
        assert word in str(info.value)
    assert not hasattr(backend, "suspend_container") and not hasattr(backend, "create_container_snapshot")
    assert services(swarm) == [record["pk"]]


def test_node_status_reports_every_machine_of_the_swarm(backend, swarm):
    make(backend, swarm)
    status = backend.get_node_status()
    assert [(n["name"], n["state"], n["availability"]) for n in status["nodes"]] == [
        ("n1", "ready", "active"), ("n2", "ready", "active")]
    assert [n["address"] for n in status["nodes"]] == swarm.cluster.addresses
    assert status["resources"]["containers"] == {"running": 1, "total": 1}
    assert status["resources"]["cpu_count"] > 0 and status["backend"]["capabilities"] == []
