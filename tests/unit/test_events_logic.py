"""Events (issue 18, part 3) without an engine: the engine's event JSON in the contract's terms,
the words, a stream's bounds, ``HttpRemote`` reading a node's stream (a canned node), and the
master on ``Memory`` nodes: the follower keeping records fresh, reconnecting and reconciling,
and the users' server-sent events, each user's own only. tests/integration/test_events.py
shows the same on the real engine and a real host API process."""

from __future__ import annotations

import json
import logging
import time
import urllib.parse
from typing import Any

import pytest

from ipynbsrv_backends import audit, errors, registry
from ipynbsrv_backends.backends import HttpRemote, Memory
from ipynbsrv_backends.backends.docker.events import event_record
from ipynbsrv_backends.events import event_message, memory_words, validate_stream
from ipynbsrv_backends.models import AuditEntry, Backend, Container, ContainerEvent, Node
from ipynbsrv_backends.services import events as service
from ipynbsrv_backends.wire import signing

from ..support.waiting import wait_for
from ..tiny_servers import CannedNode

GiB = 1024 ** 3


# --------------------------------------------------------------------------- words and bounds

@pytest.mark.parametrize(("limit", "words"), [
    (2 * GiB, "2 GiB"), (512 * 1024 ** 2, "512 MiB"), (int(1.5 * GiB), "1.5 GiB"), (16 * 1024 ** 2, "16 MiB"),
    (1000, "1000 B"), (None, "no"),
])
def test_memory_in_words(limit, words):
    assert memory_words(limit) == words


def test_an_oom_kill_says_so_in_words():
    assert event_message("oom", mem_limit=2 * GiB) == "ran out of memory: 2 GiB limit"
    assert event_message("die", exit_code=137) == "stopped (exit code 137)"
    assert event_message("health", health="unhealthy") == "health check: unhealthy"


@pytest.mark.parametrize(("since", "timeout", "heartbeat", "fragment"), [
    ("12ab", 60, 15, "since must be the cursor"), (True, 60, 15, "since"), ("1" * 30, 60, 15, "since"),
    (None, 0, 15, "timeout must be"), (None, 7200, 15, "timeout must be"), (None, "60", 15, "timeout must be"),
    (None, 60, 0.1, "heartbeat must be"), (None, 5, 10, "heartbeat must be"), (None, 60, 600, "heartbeat must be"),
])
def test_a_streams_bounds_are_checked(since, timeout, heartbeat, fragment):
    with pytest.raises(errors.InvalidArgumentError, match=fragment):
        validate_stream(since, timeout, heartbeat)


def test_a_valid_stream():
    assert validate_stream("1796169462924156487", 60, 15) == (1796169462924156487, 60.0, 15.0)
    assert validate_stream(None, 1, 0.5) == (None, 1.0, 0.5)


# --------------------------------------------------------------------------- the engine's JSON

def raw(action: str, **attributes: str) -> dict[str, Any]:
    labels = {"org.ipynbsrv.owner": "alice", "org.ipynbsrv.name": "nb", "name": "p-u2001-nb", **attributes}
    return {"Type": "container", "Action": action, "Actor": {"ID": "abc", "Attributes": labels},
            "time": 1796169462, "timeNano": 1796169462924156487}


def test_engine_events_in_the_contracts_terms():
    died = event_record(raw("die", exitCode="137"))
    assert died is not None
    assert (died["container"], died["owner"], died["name"]) == ("p-u2001-nb", "alice", "nb")
    assert (died["action"], died["status"], died["exit_code"]) == ("die", "stopped", 137)
    assert died["cursor"] == "1796169462924156487" and died["time"].startswith("2026-")
    oom = event_record(raw("oom"), mem_limit=2 * GiB)
    assert oom is not None and (oom["status"], oom["message"]) == (None, "ran out of memory: 2 GiB limit")
    health = event_record(raw("health_status: unhealthy"))
    assert health is not None and (health["action"], health["health"]) == ("health", "unhealthy")
    assert event_record(raw("pause"))["status"] == "suspended"  # type: ignore[index]
    assert event_record(raw("exec_start: sh")) is None
    assert event_record({**raw("start"), "timeNano": None}) is None


# --------------------------------------------------------------------------- HttpRemote reads a stream

def lines(*items: Any) -> bytes:
    return b"".join(json.dumps(item).encode() + b"\n" for item in items)


EVENT = {"cursor": "17", "time": "2026-12-01T00:00:00Z", "container": "p-u2001-nb", "owner": "alice", "name": "nb",
         "action": "oom", "status": None, "message": "ran out of memory: 2 GiB limit"}
NDJSON = {"Content-Type": "application/x-ndjson"}


def test_httpremote_reads_the_events_heartbeats_and_end_and_signs_the_request():
    key = "k" * 40
    with CannedNode(lambda *a: (200, NDJSON, lines({"heartbeat": "15"}, {"event": EVENT}, {"end": True}))) as node:
        remote = HttpRemote(node.url, token="t" * 32, signing_key=key)
        assert list(remote.get_container_events(since="14", timeout=30, heartbeat=5)) == ["15", EVENT]
    [request] = node.requests
    path, _, query = request["path"].partition("?")
    assert path == "/events/"
    assert urllib.parse.parse_qs(query) == {"since": ['"14"'], "timeout": ["30.0"], "heartbeat": ["5.0"]}
    assert request["headers"]["Accept"] == "application/x-ndjson"
    assert request["headers"]["Authorization"] == "Bearer " + "t" * 32
    assert set(signing.signature_headers(key, "GET", "/", None)) <= set(request["headers"])


@pytest.mark.parametrize(("body", "error", "fragment"), [
    (lines({"event": EVENT}), errors.BackendUnavailableError, "broke off before its end"),
    (lines({"error": {"code": "backend_unavailable", "detail": "engine gone"}}), errors.BackendUnavailableError,
     "engine gone"),
    (lines({"surprise": 1}), errors.BackendError, "unexpected body"),
    (b"not json\n", errors.BackendError, "not JSON"),
])
def test_a_broken_or_failed_stream_is_an_error(body, error, fragment):
    with CannedNode(lambda *a: (200, NDJSON, body)) as node:
        with pytest.raises(error, match=fragment):
            list(HttpRemote(node.url).get_container_events(timeout=5, heartbeat=1))


def test_an_error_answer_before_the_stream_is_the_nodes_error():
    answer = (501, {"Content-Type": "application/json"},
              json.dumps({"code": "not_supported", "detail": "cannot stream events"}).encode())
    with CannedNode(lambda *a: answer) as node:
        stream = HttpRemote(node.url).get_container_events()
        with pytest.raises(errors.CapabilityNotSupportedError, match="cannot stream events"):
            next(stream)


def test_bad_arguments_are_refused_before_anything_is_sent():
    with CannedNode(lambda *a: (200, NDJSON, lines({"end": True}))) as node:
        with pytest.raises(errors.InvalidArgumentError):
            HttpRemote(node.url).get_container_events(since="yesterday")
    assert node.requests == []


def test_the_reconnect_pause_grows_and_is_bounded():
    assert [service.reconnect_delay(n, 0.5, 4) for n in (1, 2, 3, 4, 5, 100)] == [0.5, 1, 2, 4, 4, 4]


# --------------------------------------------------------------------------- Memory's stream

def test_memory_streams_its_own_instances_events_only():
    mine = Memory(host="events-unit", instance="mine", images=["img"])
    other = Memory(host="events-unit", instance="other", images=["img"])
    try:
        stream = mine.get_container_events(timeout=5, heartbeat=0.5)
        record = mine.create_container("alice", 2001, "nb", [], [], image="img", mem_limit="64m")
        other.create_container("bob", 2002, "nb", [], [], image="img")
        mine.simulate_oom(record["pk"])
        seen: list[Any] = []
        for item in stream:
            seen.append(item)
            if isinstance(item, dict) and item["action"] == "oom":
                break
        actions = [(e["owner"], e["action"]) for e in seen if isinstance(e, dict)]
        assert actions == [("alice", "start"), ("alice", "oom")]
        assert seen[-1]["message"] == "ran out of memory: 64 MiB limit"
        # the next stream starts after the cursor: nothing twice
        mine.stop_container(record["pk"])
        again = mine.get_container_events(since=seen[-1]["cursor"], timeout=1, heartbeat=0.5)
        assert [e["action"] for e in again if isinstance(e, dict)] == ["die"]
        # a heartbeat is a cursor: a stream from it repeats nothing
        beat = next(item for item in mine.get_container_events(timeout=2, heartbeat=0.5) if isinstance(item, str))
        mine.start_container(record["pk"])
        after = [e["action"] for e in mine.get_container_events(since=beat, timeout=1, heartbeat=0.5)
                 if isinstance(e, dict)]
        assert after == ["start"]
    finally:
        Memory.reset("events-unit")


# --------------------------------------------------------------------------- the master, on Memory nodes

@pytest.fixture
def memory_node(master_settings, transactional_db):
    host = f"events-{id(master_settings)}"
    backend = Backend.objects.create(name="memory-events", kind="Memory",
                                     config={"host": host, "instance": host, "images": ["img"]})
    node = Node.objects.create(name="ev1", address="127.0.0.1", backend=backend, capacity=10)
    yield node
    registry.forget_backend()
    Memory.reset(host)


def make_container(node: Node, user: Any, name: str, **options: Any) -> Container:
    record = registry.get_backend(node).create_container(user.get_username(), 2000 + user.pk, name, [], [],
                                                          image="img", **options)
    return Container.objects.create(owner=user, name=name, node=node, backend_pk=record["pk"], status="running")


@pytest.fixture
def follower(memory_node):
    running = service.NodeFollower(memory_node, stream_seconds=30, heartbeat=0.5, first_backoff=0.1,
                                   max_backoff=0.5)
    running.start()
    yield running
    running.stop.set()
    running.join(timeout=10)
    assert not running.is_alive()


def test_events_keep_the_records_fresh(memory_node, follower, django_user_model):
    alice = django_user_model.objects.create_user("alice")
    wait_for(lambda: follower.reconciled == 1, timeout=10, what="the first stream to be up")
    container = make_container(memory_node, alice, "nb", mem_limit="2g")
    backend = registry.get_backend(memory_node)
    backend.simulate_oom(container.backend_pk)
    backend.suspend_container(container.backend_pk)
    container.refresh_from_db()

    def fresh() -> bool:
        container.refresh_from_db()
        return container.status == "suspended" and container.last_event == "suspended"

    wait_for(fresh, timeout=10, what="the record to follow the node")
    # (its start may come before its row is written: the create itself records that it runs)
    assert list(ContainerEvent.objects.filter(container=container).exclude(action="start")
                .values_list("action", "message")) == [
        ("oom", "ran out of memory: 2 GiB limit"), ("pause", "suspended")]


def test_an_event_does_not_undo_a_newer_status_or_touch_a_creation(memory_node, django_user_model):
    alice = django_user_model.objects.create_user("alice")
    container = make_container(memory_node, alice, "nb")
    event = {"container": container.backend_pk, "action": "die", "status": "stopped", "message": "stopped",
             "time": "2020-01-01T00:00:00Z", "cursor": "1"}
    Container.objects.filter(pk=container.pk).update(status_checked_at="2021-01-01T00:00:00Z")
    assert service.apply_event(memory_node, event) is not None
    container.refresh_from_db()
    assert container.status == "running" and container.last_event == "stopped"  # the event is older
    Container.objects.filter(pk=container.pk).update(status="creating", status_checked_at=None)
    service.apply_event(memory_node, event)
    assert Container.objects.get(pk=container.pk).status == "creating"
    assert service.apply_event(memory_node, {**event, "container": "someone-elses"}) is None


class Breaking:
    """A node whose first stream breaks after one event; what happens meanwhile is reconciled."""

    def __init__(self, backend: Any, during_break: Any) -> None:
        self.backend, self.during_break, self.calls = backend, during_break, 0

    def get_container_events(self, **kwargs: Any) -> Any:
        self.calls += 1
        stream = self.backend.get_container_events(**kwargs)
        if self.calls > 1:
            return stream

        def broken() -> Any:
            for item in stream:
                yield item
                if isinstance(item, dict):
                    break
            self.during_break()
            raise errors.BackendUnavailableError("the stream broke")

        return broken()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)


def test_a_broken_stream_is_reconnected_and_the_node_reconciled(memory_node, django_user_model, monkeypatch,
                                                                 caplog):
    from ipynbsrv_backends.contract import EventSourceContainerBackend

    alice = django_user_model.objects.create_user("alice")
    container = make_container(memory_node, alice, "nb")
    backend = registry.get_backend(memory_node)
    store = backend.host  # type: ignore[attr-defined]

    def lose_the_stop() -> None:
        """The container stops while no stream is open, and the engine forgets it did."""
        backend.stop_container(container.backend_pk)
        with store.lock:
            store.events.clear()

    breaking = Breaking(backend, lose_the_stop)
    EventSourceContainerBackend.register(Breaking)
    monkeypatch.setattr(service, "get_backend", lambda node: breaking)
    caplog.set_level(logging.WARNING, logger="ipynbsrv_backends.services.events")
    # made inside a command's audit context (as ipynbsrv_events makes it): its thread audits in it too
    with audit.acting(None, audit.VIA_COMMAND, source="ipynbsrv_events", run_by="operator"):
        running = service.NodeFollower(memory_node, stream_seconds=30, heartbeat=0.5, first_backoff=0.1,
                                       max_backoff=0.5)
    running.start()
    try:
        wait_for(lambda: running.reconciled == 1, timeout=10, what="the first stream")
        backend.suspend_container(container.backend_pk)  # the one event the first stream passes on
        wait_for(lambda: running.reconciled == 2, timeout=10, what="the reconnected stream's reconcile")
    finally:
        running.stop.set()
        running.join(timeout=10)
    container.refresh_from_db()
    assert container.status == "stopped"  # learnt from the reconcile: no event told it
    assert any("event stream broke" in r.getMessage() for r in caplog.records)
    assert any("reconnected after a broken stream; reconciled the node: 1 record(s) updated" in r.getMessage()
               for r in caplog.records)
    entry = AuditEntry.objects.get(action="events.reconnected", node=memory_node.name)
    assert (entry.via, entry.details["source"], entry.details["updated"]) == ("command", "ipynbsrv_events", 1)


# --------------------------------------------------------------------------- the users' stream

def sse(client: Any, **headers: str) -> list[dict[str, Any]]:
    response = client.get("/api/events/?after=0", HTTP_ACCEPT="text/event-stream", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/event-stream")
    text = b"".join(response.streaming_content).decode()
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ")]


def test_a_user_streams_their_own_containers_events_only(memory_node, django_user_model, client, settings):
    settings.IPYNBSRV_BACKENDS = {**settings.IPYNBSRV_BACKENDS, "EVENTS_STREAM_SECONDS": 0.2}
    alice = django_user_model.objects.create_user("alice")
    bob = django_user_model.objects.create_user("bob", is_staff=True)
    for user in (alice, bob):
        container = make_container(memory_node, user, "nb")
        service.apply_event(memory_node, {"container": container.backend_pk, "action": "oom", "status": None,
                                          "message": f"ran out of memory: 1 GiB limit ({user})", "cursor": "1",
                                          "time": "2026-12-01T00:00:00Z"})
    client.force_login(alice)
    seen = sse(client)
    assert [(e["action"], e["message"]) for e in seen] == [("oom", "ran out of memory: 1 GiB limit (alice)")]
    assert sse(client, HTTP_LAST_EVENT_ID=str(seen[0]["id"])) == []
    bobs = Container.objects.get(owner=bob)
    assert client.get(f"/api/events/?container={bobs.pk}", HTTP_ACCEPT="text/event-stream").status_code == 404
    refused = client.get("/api/events/?after=x", HTTP_ACCEPT="text/event-stream")
    assert refused.status_code == 400 and refused["Content-Type"] == "application/json"
    assert refused.json()["code"] == "invalid_argument" and "after must be the id" in refused.json()["detail"]
    client.force_login(bob)  # staff too: their own only
    assert [e["message"] for e in sse(client)] == ["ran out of memory: 1 GiB limit (bob)"]
    client.logout()
    assert client.get("/api/events/", HTTP_ACCEPT="text/event-stream").status_code in (401, 403)


# --------------------------------------------------------------------------- the settings

@pytest.mark.parametrize(("setting", "value"), [
    ("EVENTS_KEEP_DAYS", 0), ("EVENTS_KEEP_DAYS", "7"), ("EVENTS_STREAM_SECONDS", 5), ("EVENTS_HEARTBEAT", 0),
    ("EVENTS_HEARTBEAT", 1.5),
])
def test_bad_event_settings_are_reported(settings, setting, value):
    from django.core.checks import run_checks

    settings.IPYNBSRV_BACKENDS = {setting: value}
    found = [m for m in run_checks(tags=["ipynbsrv_backends"]) if setting in m.msg]
    assert len(found) == 1 and found[0].level >= 40, found


def test_the_default_event_settings_pass(settings):
    from django.core.checks import run_checks

    settings.IPYNBSRV_BACKENDS = {}
    assert not [m for m in run_checks(tags=["ipynbsrv_backends"]) if "EVENTS_" in m.msg]


def test_old_events_are_pruned(memory_node, django_user_model):
    import datetime as dt

    from django.utils import timezone

    alice = django_user_model.objects.create_user("alice")
    container = make_container(memory_node, alice, "nb")
    event = {"container": container.backend_pk, "action": "start", "status": "running", "message": "started",
             "time": "2026-12-01T00:00:00Z", "cursor": "1"}
    old, new = service.apply_event(memory_node, event), service.apply_event(memory_node, event)
    assert old is not None and new is not None
    ContainerEvent.objects.filter(pk=old.pk).update(received_at=timezone.now() - dt.timedelta(days=8))
    assert service.prune_events() == 1  # EVENTS_KEEP_DAYS: 7
    assert list(ContainerEvent.objects.values_list("pk", flat=True)) == [new.pk]


@pytest.mark.parametrize("args", [["--heartbeat", "30", "--stream-seconds", "20"], ["--heartbeat", "200"],
                                  ["--max-backoff", "0"]])
def test_the_command_refuses_bad_bounds(args, db):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    with pytest.raises((CommandError, SystemExit)):
        call_command("ipynbsrv_events", *args)


def test_a_node_whose_far_side_has_no_events_is_left_alone(memory_node, monkeypatch, caplog):
    """A host API whose backend lacks events answers 501: no reconnecting every few seconds."""
    from ipynbsrv_backends.contract import EventSourceContainerBackend

    class Refusing:
        calls = 0

        def get_container_events(self, **kwargs: Any) -> Any:
            Refusing.calls += 1
            raise errors.CapabilityNotSupportedError("The backend of this node cannot stream events.")

    EventSourceContainerBackend.register(Refusing)
    monkeypatch.setattr(service, "get_backend", lambda node: Refusing())
    running = service.NodeFollower(memory_node, first_backoff=0.01, max_backoff=0.01)
    running.start()
    running.join(timeout=10)
    assert not running.is_alive() and running.unsupported and Refusing.calls == 1
    assert any("has no event stream" in r.getMessage() for r in caplog.records)


def test_a_node_misbehaving_is_never_asked_in_a_tight_loop(memory_node, monkeypatch):
    """A stream that ends at once is opened again at most once a second; one that fails in an
    unexpected way is tried again after the pause (the follower lives on)."""
    from ipynbsrv_backends.contract import EventSourceContainerBackend

    class Odd:
        calls = 0

        def get_container_events(self, **kwargs: Any) -> Any:
            Odd.calls += 1
            if Odd.calls % 2:
                return iter(())  # ends at once, without a single item
            raise ValueError("a bug on the far side")

    EventSourceContainerBackend.register(Odd)
    monkeypatch.setattr(service, "get_backend", lambda node: Odd())
    running = service.NodeFollower(memory_node, first_backoff=0.5, max_backoff=0.5)
    started = time.monotonic()
    running.start()
    wait_for(lambda: Odd.calls >= 4, timeout=10, what="four streams")
    running.stop.set()
    running.join(timeout=5)
    assert not running.is_alive()
    assert time.monotonic() - started >= 2.0  # two quick ends (1 s each) and two failures (0.5 s each)


def test_the_admin_shows_a_containers_recent_events(memory_node, admin_client, django_user_model):
    alice = django_user_model.objects.create_user("alice")
    container = make_container(memory_node, alice, "nb")
    service.apply_event(memory_node, {"container": container.backend_pk, "action": "oom", "status": None,
                                      "message": "ran out of memory: 1 GiB limit", "cursor": "1",
                                      "time": "2026-12-01T10:00:00Z"})
    response = admin_client.get(f"/admin/ipynbsrv_backends/container/{container.pk}/change/")
    assert response.status_code == 200
    text = response.content.decode()
    assert "2026-12-01 10:00:00 ran out of memory: 1 GiB limit" in text
    assert text.count("ran out of memory: 1 GiB limit") >= 2  # the last event, and the recent ones
