"""Events on the real engine (issue 18, part 3): the master follows a real host API process
(``HttpRemote``, token and signature) in front of ``Docker``. A process killed by the memory
limit inside a container is an OOM event in words in the record and in its owner's stream
within seconds, never in another user's; a host API killed and started again mid-stream is
reconnected, the stop it missed replayed from the cursor and the node reconciled, and that is
logged and audited. One module-scoped node; about a minute in all."""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ipynbsrv_backends import registry
from ipynbsrv_backends.backends import Docker, HttpRemote
from ipynbsrv_backends.models import AuditEntry, Backend, Container, ContainerEvent, Node
from ipynbsrv_backends.services.events import NodeFollower

from ..conftest import EXTRA_INSTANCES, INSTANCE, PREFIX, TEST_IMAGE, backend_options
from ..support.processes import HostAPINode
from ..support.waiting import wait_for

pytestmark = pytest.mark.engine

ROOT = Path(__file__).resolve().parents[2]
EVENTS_INSTANCE = f"{INSTANCE}-events"
LIMIT = "16m"


@pytest.fixture(scope="module")
def host_api(raw_docker, workdir):
    """A host API with a signing key, serving ``Docker`` with an instance of its own."""
    EXTRA_INSTANCES.add(EVENTS_INSTANCE)
    options = backend_options(instance=EVENTS_INSTANCE, name_prefix=f"{PREFIX}ev")
    state = workdir / "events-state"
    state.mkdir(exist_ok=True)
    node = HostAPINode(workdir, backend_args=options, signing_key=secrets.token_urlsafe(40), state_dir=state)
    node.start()
    yield node, options, state
    node.kill()


def sse(client: Any) -> list[dict[str, Any]]:
    response = client.get("/api/events/?after=0", HTTP_ACCEPT="text/event-stream")
    assert response.status_code == 200
    text = b"".join(response.streaming_content).decode()
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


def test_oom_and_a_restarted_host_api(host_api, engine, master_settings, transactional_db, django_user_model,
                                      client, caplog, workdir):
    node_process, options, state = host_api
    master_settings.IPYNBSRV_BACKENDS = {**master_settings.IPYNBSRV_BACKENDS, "EVENTS_STREAM_SECONDS": 0.5}
    backend = Backend.objects.create(name="events-remote", kind="HttpRemote", config={
        "url": node_process.url, "token": node_process.token, "signing_key": node_process.signing_key,
        "timeout": 30, "long_timeout": 120})
    node = Node.objects.create(name="events1", address="127.0.0.1", backend=backend, capacity=10)
    remote = registry.get_backend(node)
    assert isinstance(remote, HttpRemote)
    alice = django_user_model.objects.create_user("alice")
    bob = django_user_model.objects.create_user("bob")
    rows = {}
    for user in (alice, bob):
        record = remote.create_container(user.get_username(), 2000 + user.pk, "nb", [], [], cmd=["sleep", "600"],
                                         image=TEST_IMAGE, mem_limit=LIMIT)
        rows[user.get_username()] = Container.objects.create(owner=user, name="nb", node=node,
                                                             backend_pk=record["pk"], status="running")
    caplog.set_level(logging.INFO, logger="ipynbsrv_backends.services.events")
    follower = NodeFollower(node, stream_seconds=60, heartbeat=1, first_backoff=0.2, max_backoff=1)
    follower.start()
    try:
        wait_for(lambda: follower.reconciled == 1, timeout=20, what="the first stream to be up")

        # -- a process in alice's container killed by the memory limit (the container runs on)
        mine = rows["alice"]
        started = time.monotonic()
        remote.exec_in_container(mine.backend_pk, ["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"])
        remote.suspend_container(rows["bob"].backend_pk)  # bob's own event

        def told() -> bool:
            mine.refresh_from_db()
            return mine.last_event == "ran out of memory: 16 MiB limit"

        wait_for(told, timeout=15, what="the OOM kill in alice's record")
        assert time.monotonic() - started < 15
        assert mine.status == "running"  # a process died, not the container
        wait_for(lambda: Container.objects.get(pk=rows["bob"].pk).status == "suspended", timeout=15,
                 what="bob's record to follow his pause")
        client.force_login(alice)
        seen = sse(client)
        assert ("oom", "ran out of memory: 16 MiB limit") in [(e["action"], e["message"]) for e in seen]
        assert {e["container"] for e in seen} == {mine.pk}  # never bob's pause
        client.force_login(bob)
        assert {e["action"] for e in sse(client)} == {"pause"}

        # -- the host API dies mid-stream; meanwhile alice's container stops; it comes back
        node_process.kill()
        Docker(**options).stop_container(mine.backend_pk)
        wait_for(lambda: follower.failures >= 1, timeout=15, what="the broken stream to be noticed")
        again = HostAPINode(workdir, backend_args=options, token=node_process.token, port=node_process.port,
                            signing_key=node_process.signing_key, state_dir=state)
        again.start()
        try:
            wait_for(lambda: follower.reconciled >= 2, timeout=20, what="the reconnected stream's reconcile")
            mine.refresh_from_db()
            wait_for(lambda: Container.objects.get(pk=mine.pk).status == "stopped", timeout=10,
                     what="alice's record to say stopped")
            # the stop happened with no stream open: replayed from the cursor, nothing lost
            wait_for(lambda: ContainerEvent.objects.filter(container=mine, action="die").exists(), timeout=10,
                     what="the missed die event")
        finally:
            follower.stop.set()
            follower.join(timeout=10)
            again.kill()
    finally:
        follower.stop.set()
        follower.join(timeout=10)
    assert not follower.is_alive()
    messages = [r.getMessage() for r in caplog.records]
    assert any("its event stream broke" in m for m in messages), messages
    assert any("event stream reconnected after a broken stream; reconciled the node" in m for m in messages), messages
    assert AuditEntry.objects.filter(action="events.reconnected", node="events1").exists()


def test_the_command_follows_a_node_and_stops_on_sigterm(make_node, master_settings, transactional_db,
                                                         django_user_model, workdir):
    """``manage.py ipynbsrv_events`` as an operator runs it: its own process on the master's
    database, following a node until SIGTERM, then exiting 0 within a couple of heartbeats."""
    node = make_node("evc")
    alice = django_user_model.objects.create_user("alice")
    backend = registry.get_backend(node)
    record = backend.create_container("alice", 2000 + alice.pk, "nb", [], [], cmd=["sleep", "600"], image=TEST_IMAGE)
    row = Container.objects.create(owner=alice, name="nb", node=node, backend_pk=record["pk"], status="running")
    env = {**os.environ, "TESTPROJECT_DB": master_settings.DATABASES["default"]["NAME"],
           "IPYNBSRV_BACKENDS_JSON": json.dumps(master_settings.IPYNBSRV_BACKENDS)}
    log = workdir / "ipynbsrv-events-command.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "testproject" / "manage.py"), "ipynbsrv_events", "--heartbeat", "1",
             "--rescan", "1", "--max-backoff", "1"], stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    try:
        wait_for(lambda: "Node evc: event stream connected" in log.read_text(), timeout=30,
                 what=f"the command to follow the node:\n{log.read_text()}")
        backend.suspend_container(record["pk"])
        wait_for(lambda: Container.objects.get(pk=row.pk).status == "suspended", timeout=15,
                 what="the record to follow the pause")
        assert ContainerEvent.objects.filter(container=row, action="pause").exists()
        stopping = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0, log.read_text()
        assert time.monotonic() - stopping < 5
        assert "Stopped following 1 node(s)." in log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_a_health_checks_verdict_is_an_event(host_api, engine):
    """A container with a health check (made on the engine with this instance's labels, as an
    image's HEALTHCHECK would give it): its verdict reaches the stream as ``health``."""
    _node, options, _state = host_api
    backend = Docker(**options)
    stream = backend.get_container_events(timeout=20, heartbeat=1)
    labels = {"org.ipynbsrv.instance": EVENTS_INSTANCE, "org.ipynbsrv.kind": "container",
              "org.ipynbsrv.owner": "alice", "org.ipynbsrv.name": "checked"}
    made = engine.containers.run(TEST_IMAGE, ["sleep", "600"], name=f"{PREFIX}ev-checked", labels=labels,
                                 detach=True, healthcheck={"test": ["CMD", "true"], "interval": 500_000_000,
                                                           "start_period": 0, "retries": 1})
    try:
        health = None
        for item in stream:
            if isinstance(item, dict) and item["action"] == "health":
                health = item
                break
        stream.close()
        assert health is not None, "no health event within the stream's 20 s"
        assert (health["container"], health["health"], health["message"]) == (
            made.name, "healthy", "health check: healthy")
    finally:
        made.remove(force=True)


def test_a_stopping_host_api_ends_its_event_streams_at_once(raw_docker, workdir):
    """SIGTERM to a node's host API with a master following it: the stream ends cleanly within
    a heartbeat, and the node stops well within its graceful timeout (10 s here), rather than
    being held by the stream until its workers are killed."""
    options = backend_options(instance=EVENTS_INSTANCE, name_prefix=f"{PREFIX}ev")
    node = HostAPINode(workdir, backend_args=options).start()
    try:
        remote = HttpRemote(node.url, token=node.token, timeout=10)
        seen: list[Any] = []
        failures: list[BaseException] = []

        def read() -> None:
            try:
                seen.extend(remote.get_container_events(timeout=60, heartbeat=1))
            except Exception as exc:  # noqa: BLE001 - the assertion below says which
                failures.append(exc)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        wait_for(lambda: bool(seen), timeout=15, what="the stream's first heartbeat")
        stopping = time.monotonic()
        assert node.terminate(timeout=30) == 0
        took = time.monotonic() - stopping
        reader.join(timeout=10)
        assert not reader.is_alive() and not failures, failures  # ended with its end line
        assert took < 5, f"the host API took {took:.1f} s to stop"
    finally:
        node.kill()
