"""A container keeps its published host ports across stop/start, restart and a restore.

``external: None`` used to let the engine pick a port at every start, so a plain stop and
start moved the port (and broke every URL that carried it). The ``Docker`` backend now
chooses the port once, at creation, from ``port_range`` and writes it into the container's
configuration; a port the engine finds taken at that first start is replaced by another
(bounded), and a port taken later makes the start fail with a clear error. All against the
real engine, directly and through a real host API process.
"""

from __future__ import annotations

import socket
import uuid

import pytest

from ipynbsrv_backends import errors
from ipynbsrv_backends.backends import Docker, HttpRemote

from ..conftest import LABEL, TEST_IMAGE, backend_options
from ..hostapi_process import HostAPINode

pytestmark = pytest.mark.engine

LOW, HIGH = Docker.OPTIONS["port_range"]


def _name() -> str:
    return f"ports-{uuid.uuid4().hex[:8]}"


def _create(backend, name: str | None = None, external: int | None = None):
    return backend.create_container("alice", 2501, name or _name(),
                                    [{"address": "127.0.0.1", "external": external, "internal": 8888}], [],
                                    cmd=["sleep", "300"], image=TEST_IMAGE)


def _port(record) -> int:
    (port,) = record["ports"]
    return port["external"]


def _engine_binding(raw_docker, pk: str) -> str:
    """The host port in the container's configuration on the engine (what a start binds)."""
    bindings = raw_docker.api.inspect_container(pk)["HostConfig"]["PortBindings"]
    return bindings["8888/tcp"][0]["HostPort"]


def _listen(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(1)
    return sock


def _occupied_port_in_range() -> socket.socket:
    """A listening socket on 127.0.0.1 at some port of the default port_range."""
    import random

    for _ in range(50):
        try:
            return _listen(random.randint(LOW, HIGH))
        except OSError:
            continue
    raise AssertionError("no bindable port found in the port range")


def test_a_chosen_port_survives_stop_start_and_restart(backend, engine):
    record = _create(backend)
    port = _port(record)
    assert LOW <= port <= HIGH
    assert _engine_binding(engine, record["pk"]) == str(port)  # fixed in its configuration
    backend.stop_container(record["pk"])
    assert _port(backend.get_container(record["pk"])) == port  # a stopped record shows it too
    backend.start_container(record["pk"])
    assert _port(backend.get_container(record["pk"])) == port
    backend.restart_container(record["pk"])
    assert _port(backend.get_container(record["pk"])) == port
    backend.stop_container(record["pk"])
    backend.start_container(record["pk"])
    assert _port(backend.get_container(record["pk"])) == port
    assert [r["ports"] for r in backend.get_containers() if r["pk"] == record["pk"]] == \
        [[{"address": "127.0.0.1", "external": port, "internal": 8888}]]


def test_a_restore_of_a_stopped_container_keeps_its_port(backend, engine):
    record = _create(backend)
    port = _port(record)
    snapshot = backend.create_container_snapshot(record["pk"], "before")
    backend.stop_container(record["pk"])
    restored = backend.restore_container_snapshot(record["pk"], snapshot["pk"])
    assert _port(restored) == port
    backend.start_container(record["pk"])
    assert _port(backend.get_container(record["pk"])) == port


def test_a_stopped_containers_port_is_not_given_to_another(docker_backend, engine, monkeypatch):
    first = _create(docker_backend)
    port = _port(first)
    docker_backend.stop_container(first["pk"])
    # the chooser draws the stopped container's port first: it must be passed over
    draws = iter([port])
    real = Docker._random_port
    monkeypatch.setattr(Docker, "_random_port", lambda self: next(draws, None) or real(self))
    second = _create(docker_backend)
    assert _port(second) != port
    docker_backend.start_container(first["pk"])
    assert _port(docker_backend.get_container(first["pk"])) == port
    # nor can it be asked for by number while its owner is stopped
    docker_backend.stop_container(first["pk"])
    with pytest.raises(errors.InvalidArgumentError, match=str(port)) as caught:
        _create(docker_backend, external=port)
    assert first["pk"] in str(caught.value)


def test_a_port_taken_at_the_first_start_is_replaced(docker_backend, engine, monkeypatch):
    blocker = _occupied_port_in_range()
    taken = blocker.getsockname()[1]
    drawn: list[int] = []
    real = Docker._random_port

    def draw(self):
        port = taken if not drawn else real(self)
        drawn.append(port)
        return port

    monkeypatch.setattr(Docker, "_random_port", draw)
    name = _name()
    try:
        record = _create(docker_backend, name=name)
    finally:
        blocker.close()
    assert drawn[0] == taken and len(drawn) >= 2  # the engine refused the first, then another
    assert _port(record) != taken and LOW <= _port(record) <= HIGH
    assert record["status"] == "running"
    same_name = engine.containers.list(all=True, filters={"label": LABEL, "name": record["pk"]})
    assert [c.name for c in same_name] == [record["pk"]]  # the failed attempt was removed


def test_a_port_taken_while_stopped_fails_the_start_clearly(backend, engine):
    record = _create(backend)
    port = _port(record)
    backend.stop_container(record["pk"])
    blocker = _listen(port)
    try:
        with pytest.raises(errors.IllegalContainerStateError) as caught:
            backend.start_container(record["pk"])
        message = str(caught.value)
        assert str(port) in message and "free the port" in message
        assert backend.get_container(record["pk"])["status"] == "stopped"
    finally:
        blocker.close()
    backend.start_container(record["pk"])  # the port is free again: same port, same URL
    assert _port(backend.get_container(record["pk"])) == port


def test_the_host_api_node_retries_within_its_port_range(raw_docker, workdir, engine):
    """Through HttpRemote and a real host API process whose backend has a two-port range,
    one port of which something else holds: the create lands on the other one."""
    blocker = None
    for _ in range(50):
        candidate = _occupied_port_in_range()
        low = candidate.getsockname()[1]
        if low < HIGH:
            try:
                _listen(low + 1).close()
            except OSError:
                candidate.close()
                continue
            blocker = candidate
            break
        candidate.close()
    assert blocker is not None
    try:
        node = HostAPINode(workdir, backend_args=backend_options(port_range=[low, low + 1]))
        with node:
            remote = HttpRemote(node.url, token=node.token, timeout=60)
            try:
                for _ in range(3):  # whichever port is drawn first, the held one is never used
                    record = _create(remote)
                    assert _port(record) == low + 1
                    remote.delete_container(record["pk"])
            finally:
                remote.close()
    finally:
        blocker.close()


@pytest.mark.parametrize("value", [[1000, 2000], [30000, 20000], [20000], "20000-30000", [20000, 70000],
                                   [True, 30000], [20000.0, 30000]])
def test_port_range_is_validated(value):
    with pytest.raises(errors.InvalidArgumentError, match="port_range"):
        Docker.validate_options(port_range=value)


def test_port_range_default_and_json_form():
    assert Docker.validate_options()["port_range"] == (20000, 32767)
    assert Docker(port_range=[40000, 40010]).port_range == (40000, 40010)
