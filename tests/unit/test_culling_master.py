"""Idle culling in the master, on an in-memory node (the real notebook and nginx:
tests/integration/test_culling.py): the proxy's check records activity cheaply and resumes a
container the policy suspended (only those), ``ipynbsrv_cull`` once, ``--dry-run``, ``--every``
until SIGTERM, its usage errors, and the reason in the users' API and the audit log."""

from __future__ import annotations

import io
import os
import signal
import threading
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from ipynbsrv_backends import services
from ipynbsrv_backends.backends import Memory
from ipynbsrv_backends.models import AuditEntry, Backend, Container, Image, Node
from ipynbsrv_backends.proxy import UPSTREAM_HEADER
from ipynbsrv_backends.services import culling

from ..conftest import INSTANCE, PREFIX, TEST_IMAGE, memory_options
from ..support import wait_for

AUTH = "/proxy/auth/"
POLICY = {"RULES": [{"suspend_after": "1h", "stop_after": "4h"}], "ACTIVITY_INTERVAL": 60}


@pytest.fixture
def nb(db, workdir, settings, alice):
    settings.IPYNBSRV_BACKENDS = {**settings.IPYNBSRV_BACKENDS, "CONTAINER_VOLUMES": [], "IDLE_CULLING": POLICY}
    instance = f"{INSTANCE}-cull"
    backend = Backend.objects.create(name="mem", kind="Memory",
                                     config=memory_options(host=instance, instance=instance,
                                                            name_prefix=f"{PREFIX}cull"))
    node = Node.objects.create(name="m1", address="127.0.0.1", backend=backend)
    image = Image.objects.create(name="busybox", ref=TEST_IMAGE, public=True)
    culling._noted.clear()
    yield services.create_container(alice, "nb", image=image, node=node)
    Memory.reset(instance)


def _ask(client, container):
    return client.get(AUTH, headers={"X-Original-URI": container.base_url + "tree"})


def _cull(*args: str) -> str:
    out = io.StringIO()
    call_command("ipynbsrv_cull", *args, stdout=out)
    return out.getvalue()


def _suspended_by_policy(container: Container, hours: float) -> Container:
    container = services.suspend_container(container)
    Container.objects.filter(pk=container.pk).update(
        cull_reason="suspended after 2 h idle", culled_at=timezone.now(),
        last_activity=timezone.now() - timedelta(hours=hours))
    container.refresh_from_db()
    return container


def test_the_check_records_a_visit_at_most_once_per_interval(nb, client, alice):
    client.force_login(alice)
    assert nb.last_activity is None
    with CaptureQueriesContext(connection) as first:
        assert _ask(client, nb).status_code == 200
    with CaptureQueriesContext(connection) as second:
        for _ in range(5):
            assert _ask(client, nb).status_code == 200
    writes = [q["sql"] for q in first.captured_queries if q["sql"].startswith("UPDATE")]
    assert len(writes) == 1 and "last_activity" in writes[0]
    assert not [q for q in second.captured_queries if q["sql"].startswith("UPDATE")]
    noted = Container.objects.get(pk=nb.pk).last_activity
    assert noted is not None and timezone.now() - noted < timedelta(seconds=30)
    # another process (no note in this one) that reads a fresh row does not write either
    culling._noted.clear()
    with CaptureQueriesContext(connection) as third:
        assert _ask(client, nb).status_code == 200
    assert not [q for q in third.captured_queries if q["sql"].startswith("UPDATE")]


def test_the_owners_request_resumes_a_container_the_policy_suspended(nb, client, alice):
    nb = _suspended_by_policy(nb, 2)
    client.force_login(alice)
    answer = _ask(client, nb)
    assert answer.status_code == 200 and answer[UPSTREAM_HEADER].startswith("127.0.0.1:")
    assert answer["X-Ipynbsrv-Status"] == "running"
    nb.refresh_from_db()
    assert nb.status == "running" and nb.cull_reason == "" and nb.culled_at is None
    entry = AuditEntry.objects.get(action="container.resume", target_id=str(nb.pk))
    assert entry.actor == alice and entry.details["source"] == "proxy"


def test_a_resume_that_fails_leaves_it_suspended_unless_another_process_resumed_it(nb, client, alice, monkeypatch,
                                                                                   caplog):
    from ipynbsrv_backends import errors

    nb = _suspended_by_policy(nb, 2)
    others = []

    def fails(container):
        for pk in others:  # another process of the master resumed it meanwhile
            Container.objects.filter(pk=pk).update(status="running", cull_reason="")
        raise errors.IllegalContainerStateError("it cannot be resumed now")

    monkeypatch.setattr(culling, "resume_container", fails)
    client.force_login(alice)
    answer = _ask(client, nb)
    assert answer.status_code == 200 and UPSTREAM_HEADER not in answer
    assert "Could not resume alice/nb for alice's request: it cannot be resumed now" in caplog.text
    others.append(nb.pk)
    answer = _ask(client, nb)
    assert answer.status_code == 200 and answer[UPSTREAM_HEADER].startswith("127.0.0.1:")


def test_a_container_an_operator_suspended_stays_suspended_and_gets_no_address(nb, client, alice, bob, settings):
    services.suspend_container(nb)
    client.force_login(alice)
    answer = _ask(client, nb)
    assert answer.status_code == 200 and UPSTREAM_HEADER not in answer and answer["X-Accel-Expires"] == "0"
    assert Container.objects.get(pk=nb.pk).status == "suspended"
    # neither does a stranger's request resume one the policy suspended, nor one when the setting is off
    _suspended_by_policy(nb, 2)
    client.force_login(bob)
    assert _ask(client, nb).status_code == 403
    settings.IPYNBSRV_BACKENDS = {**settings.IPYNBSRV_BACKENDS,
                                  "IDLE_CULLING": {**POLICY, "RESUME_ON_REQUEST": False}}
    client.force_login(alice)
    assert UPSTREAM_HEADER not in _ask(client, nb)
    assert Container.objects.get(pk=nb.pk).status == "suspended"


def test_cull_stops_a_container_suspended_long_enough_and_says_why(nb, client, alice):
    nb = _suspended_by_policy(nb, 5)
    planned = _cull("--dry-run")
    assert f"{nb} [suspended]: would stop (rule 0): stopped after 5 h idle" in planned, planned
    assert Container.objects.get(pk=nb.pk).status == "suspended" and not AuditEntry.objects.filter(
        action__startswith="container.idle_").exists()

    done = _cull()
    assert f"{nb} [stopped]: stop (rule 0): stopped after 5 h idle" in done, done
    nb.refresh_from_db()
    assert nb.status == "stopped" and nb.cull_reason == "stopped after 5 h idle" and nb.culled_at is not None
    entry = AuditEntry.objects.get(action="container.idle_stop", target_id=str(nb.pk))
    assert entry.via == "command" and entry.details["source"] == "ipynbsrv_cull"
    assert entry.details["reason"] == nb.cull_reason and entry.details["idle_seconds"] >= 5 * 3600
    client.force_login(alice)
    shown = client.get(f"/api/containers/{nb.pk}/").json()
    assert shown["cull_reason"] == "stopped after 5 h idle" and shown["culled_at"] and shown["last_activity"]
    # starting it again clears the note: it is in use
    nb = services.start_container(nb)
    assert nb.cull_reason == "" and timezone.now() - nb.last_activity < timedelta(seconds=30)


def test_a_container_used_through_the_proxy_lately_is_not_even_asked(nb, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("its server was asked")

    monkeypatch.setattr(culling, "ask_server", never)
    Container.objects.filter(pk=nb.pk).update(last_activity=timezone.now() - timedelta(minutes=10))
    assert f"{nb} [running]: leave (rule 0): last used 10 min" in _cull()


def test_the_rule_of_the_owners_group_applies(nb, alice, settings):
    from django.contrib.auth.models import Group

    alice.groups.add(Group.objects.create(name="research"))
    settings.IPYNBSRV_BACKENDS = {**settings.IPYNBSRV_BACKENDS, "IDLE_CULLING": {"RULES": [
        {"groups": ["research"], "suspend_after": None, "stop_after": None}, *POLICY["RULES"]]}}
    nb = _suspended_by_policy(nb, 30)
    assert f"{nb} [suspended]: leave (rule 0 (groups research)): its rule never culls it" in _cull()
    alice.groups.clear()
    assert f"{nb} [stopped]: stop (rule 1): stopped after 1 d 6 h idle" in _cull()


def test_a_round_that_is_told_to_stop_leaves_what_it_has_not_done(nb):
    nb = _suspended_by_policy(nb, 5)
    [decision] = culling.cull(stopping=lambda: True)
    assert decision.action == "leave" and decision.verdict.reason == "not this round: the command is stopping"
    assert Container.objects.get(pk=nb.pk).status == "suspended"


def test_a_running_container_whose_server_does_not_answer_is_left_alone(nb):
    Container.objects.filter(pk=nb.pk).update(last_activity=timezone.now() - timedelta(days=3))
    out = _cull("--json")
    assert '"action": "leave"' in out and "its notebook server did not answer" in out, out
    assert Container.objects.get(pk=nb.pk).status == "running"


def test_every_runs_until_sigterm(nb):
    out = io.StringIO()
    done = threading.Event()

    def stop_after_the_first_round() -> None:
        try:
            wait_for(lambda: str(nb) in out.getvalue(), timeout=30, interval=0.05, what="the first round")
            done.set()
        finally:  # the command stops in any case (the test fails if the round did not come)
            os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=stop_after_the_first_round, daemon=True)
    thread.start()
    previous = signal.getsignal(signal.SIGTERM)
    call_command("ipynbsrv_cull", "--every", "30", stdout=out)  # returns at the signal, not after 30 s
    thread.join(timeout=5)
    assert done.is_set() and out.getvalue().rstrip().endswith("Stopped.")
    assert signal.getsignal(signal.SIGTERM) == previous


@pytest.mark.parametrize(("args", "message"), [
    (["--every", "1"], "--every must be at least 5 seconds"),
    (["--rounds", "2"], "--rounds goes with --every"),
    (["--every", "10", "--rounds", "0"], "--rounds must be at least 1"),
])
def test_usage_errors(nb, args, message):
    with pytest.raises(CommandError, match=message) as caught:
        call_command("ipynbsrv_cull", *args, stdout=io.StringIO())
    assert caught.value.returncode == 2


def test_a_bad_policy_is_a_usage_error(nb, settings):
    settings.IPYNBSRV_BACKENDS = {**settings.IPYNBSRV_BACKENDS, "IDLE_CULLING": {"RULES": [{"stop_after": "soon"}]}}
    with pytest.raises(CommandError, match=r"not valid: .*\['stop_after'\] must be a duration") as caught:
        call_command("ipynbsrv_cull", stdout=io.StringIO())
    assert caught.value.returncode == 2


def test_a_node_that_cannot_suspend_leaves_it_running_until_stop_after(nb, monkeypatch):
    """A swarm node cannot pause a task: the policy's suspend becomes "leave", saying why, and
    its stop_after still applies (no failed suspend every round)."""
    from ipynbsrv_backends.services.idlepolicy import ServerState

    monkeypatch.setattr(culling, "unsupported_actions", lambda node: {"suspend": "Swarm cannot pause a task"})
    monkeypatch.setattr(culling, "ask_server", lambda container, timeout: ServerState(
        True, timezone.now() - timedelta(hours=2), kernels=1))
    Container.objects.filter(pk=nb.pk).update(last_activity=timezone.now() - timedelta(hours=2))
    out = _cull()
    assert "leave" in out and "but its node cannot suspend (Swarm cannot pause a task)" in out, out
    assert Container.objects.get(pk=nb.pk).status == "running"
    assert not AuditEntry.objects.filter(action="container.idle_suspend").exists()
    monkeypatch.setattr(culling, "ask_server", lambda container, timeout: ServerState(
        True, timezone.now() - timedelta(hours=5, seconds=-30), kernels=1))
    Container.objects.filter(pk=nb.pk).update(last_activity=timezone.now() - timedelta(hours=5, seconds=-30))
    assert "stop (rule 0): stopped after 4 h 59 min idle" in _cull()
    assert Container.objects.get(pk=nb.pk).status == "stopped"
