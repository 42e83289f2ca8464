"""The audit log: one action through each entry point (the admin, the users' API, a
command, reconcile) leaves the right entry; a failed action records its error; no entry
holds a secret; the admin shows the log read-only."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction
from django.urls import reverse

from ipynbsrv_backends import audit, background, errors, services
from ipynbsrv_backends.models import AuditEntry, Backend, Container, Node

from ..utils import api_as

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True)]

SECRET = "tok-9f3c-not-for-logs"


@pytest.fixture(autouse=True)
def _master(master_settings):
    """The master's test settings (conftest), with a cheap password hasher: Basic
    authentication hashes the password on every request."""
    master_settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return master_settings


def only_entry(**filters) -> AuditEntry:
    entries = list(AuditEntry.objects.filter(**filters))
    assert len(entries) == 1, [str(e) for e in AuditEntry.objects.all()]
    return entries[0]


def test_an_api_action_is_recorded_for_its_user(make_node, image, alice):
    node = make_node("n1")
    client = api_as("alice", "alice-password")
    answer = client.post("/api/containers/", {"name": "nb", "image": image.pk}, format="json")
    assert answer.status_code == 202, answer.content  # created in the background, recorded when done
    assert background.wait_idle(60)
    entry = only_entry(action="container.create")
    assert (entry.actor, entry.actor_name, entry.via, entry.result) == (alice, "alice", "api", "ok")
    assert (entry.target_type, entry.target, entry.node) == ("container", "alice/nb", node.name)
    assert entry.target_id == str(Container.objects.get(name="nb").pk)
    answer = client.post(f"/api/containers/{entry.target_id}/stop/")
    assert answer.status_code == 200
    assert only_entry(action="container.stop").via == "api"


def test_a_failed_action_records_its_error(make_node, image, alice, engine):
    make_node("n1")
    container = services.create_container(alice, "nb", image=image)
    engine.containers.get(container.backend_pk).remove(force=True)  # gone behind the master's back
    answer = api_as("alice", "alice-password").post(f"/api/containers/{container.pk}/start/")
    assert answer.status_code == 404
    entry = only_entry(action="container.start")
    assert entry.result == "error" and entry.actor == alice and entry.via == "api"
    assert "ContainerNotFoundError" in entry.message
    assert entry.target == "alice/nb"


def test_an_admin_action_is_recorded_for_the_staff_member(make_node, image, alice, admin_client, admin_user):
    make_node("n1")
    container = services.create_container(alice, "nb", image=image)
    answer = admin_client.post(reverse("admin:ipynbsrv_backends_container_changelist"),
                               {"action": "stop_containers", "_selected_action": [container.pk]})
    assert answer.status_code == 302
    entry = only_entry(action="container.stop")
    assert (entry.actor, entry.via, entry.result, entry.target) == (admin_user, "admin", "ok", "alice/nb")
    # a change through a form names the fields it changed, never their values
    node = Node.objects.get(name="n1")
    answer = admin_client.post(reverse("admin:ipynbsrv_backends_node_change", args=[node.pk]), {
        "name": "n1", "address": "127.0.0.1", "backend": node.backend_id, "backend_config": "{}",
        "enabled": "on", "capacity": "7",
    })
    assert answer.status_code == 302, answer.content[:3000]
    entry = only_entry(action="node.change")
    assert entry.via == "admin" and "capacity" in entry.details["fields"]


def test_services_outside_any_entry_point_are_the_system(make_node, image, alice):
    make_node("n1")
    services.create_container(alice, "nb", image=image)
    entry = only_entry(action="container.create")
    assert entry.actor is None and entry.via == "system"


def test_a_command_and_reconcile_drift_are_recorded(make_node, image, alice, engine):
    make_node("n1")
    container = services.create_container(alice, "nb", image=image)
    engine.containers.get(container.backend_pk).remove(force=True)
    with pytest.raises(CommandError):
        call_command("ipynbsrv_reconcile", stdout=StringIO())  # reports, repairs nothing
    call_command("ipynbsrv_reconcile", "--mark-lost", stdout=StringIO())
    drift = list(AuditEntry.objects.filter(action="reconcile.drift").order_by("pk"))
    assert len(drift) == 2
    assert all(e.via == "command" and e.actor is None and e.node == "n1" for e in drift)
    assert drift[0].details["missing"] == ["alice/nb"] and drift[0].details["marked_lost"] == []
    assert drift[1].details["marked_lost"] == ["alice/nb"]
    assert drift[1].details["source"] == "ipynbsrv_reconcile"
    # a run that finds nothing records nothing
    call_command("ipynbsrv_reconcile", stdout=StringIO())
    assert AuditEntry.objects.filter(action="reconcile.drift").count() == 2


def test_each_entry_is_also_a_log_line(make_node, image, alice, caplog):
    make_node("n1")
    client = api_as("alice", "alice-password")
    with caplog.at_level("INFO", logger="ipynbsrv_backends.audit"):
        answer = client.post("/api/containers/?wait=true", {"name": "nb", "image": image.pk}, format="json")
        assert answer.status_code == 201, answer.content
        again = client.post("/api/containers/", {"name": "nb", "image": image.pk}, format="json")
        assert again.status_code == 409
    lines = [r for r in caplog.records if r.name == "ipynbsrv_backends.audit" and r.getMessage().startswith("audit:")]
    entries = list(AuditEntry.objects.order_by("pk"))
    assert len(lines) == len(entries) == 2
    ok, refused = (line.getMessage() for line in lines)
    pk = Container.objects.get(name="nb").pk
    assert ok.startswith(f"audit: container.create by alice via api on container:{pk} 'alice/nb' node=n1: ok")
    assert "error ContainerAlreadyExistsError" in refused and lines[1].levelname == "WARNING"


def test_a_rolled_back_entry_is_still_logged(alice, caplog):
    """An action inside a caller's transaction that rolls back loses its row with the
    transaction; its log line stays, and holds no secret either."""
    with caplog.at_level("INFO", logger="ipynbsrv_backends.audit"), pytest.raises(RuntimeError):
        with transaction.atomic(), audit.acting(alice, audit.VIA_COMMAND, "test"):
            audit.record("container.delete", None, target="alice/gone", node="n1",
                         details={"password": SECRET, "why": "cleanup"})
            raise RuntimeError("the caller's transaction fails")
    assert not AuditEntry.objects.exists()
    (line,) = [r.getMessage() for r in caplog.records if r.name == "ipynbsrv_backends.audit"]
    assert "container.delete by alice via command" in line and "alice/gone" in line and "cleanup" in line
    assert SECRET not in line and '"password": "***"' in line


def test_no_secret_reaches_an_entry(alice):
    backend = Backend.objects.create(name="remote", kind="HttpRemote",
                                     config={"url": "http://127.0.0.1:9", "token": SECRET, "connect_timeout": 1,
                                             "retries": 0})
    node = Node.objects.create(name="far", address="127.0.0.1", backend=backend)
    with audit.acting(alice, audit.VIA_API):
        with pytest.raises(errors.BackendError):
            services.create_container(alice, "nb", image="ipynbsrv-test/busybox:latest", node=node)
        audit.record("test.secret", node, details={"token": SECRET, "nested": [{"signing_key": SECRET}], "ok": 1})
    entries = list(AuditEntry.objects.all())
    assert {e.action for e in entries} == {"container.create", "test.secret"}
    assert next(e for e in entries if e.action == "container.create").result == "error"
    for entry in entries:
        text = json.dumps([entry.message, entry.details, entry.target, str(entry)])
        assert SECRET not in text
    assert next(e for e in entries if e.action == "test.secret").details["ok"] == 1


def test_the_admin_shows_the_log_read_only(admin_client, alice):
    with audit.acting(alice, audit.VIA_API):
        entry = audit.record("container.stop", None, target="alice/nb", node="n1")
    changelist = reverse("admin:ipynbsrv_backends_auditentry_changelist")
    answer = admin_client.get(changelist, {"via__exact": "api"})
    assert answer.status_code == 200 and b"alice/nb" in answer.content
    assert admin_client.get(reverse("admin:ipynbsrv_backends_auditentry_add")).status_code == 403
    assert admin_client.get(reverse("admin:ipynbsrv_backends_auditentry_delete", args=[entry.pk])).status_code == 403
    answer = admin_client.post(reverse("admin:ipynbsrv_backends_auditentry_change", args=[entry.pk]),
                               {"action": "container.delete"})
    assert answer.status_code == 403
    entry.refresh_from_db()
    assert entry.action == "container.stop"


def test_a_failed_admin_delete_is_recorded(make_node, alice, admin_client, admin_user):
    node = make_node("n1", base_url="unix:///nonexistent/docker.sock")  # the engine cannot be reached
    container = Container.objects.create(owner=alice, name="nb", node=node, backend_pk="ipynbsrv-gone",
                                         status="running")
    answer = admin_client.post(reverse("admin:ipynbsrv_backends_container_changelist"), {
        "action": "delete_selected", "_selected_action": [container.pk], "post": "yes"})
    assert answer.status_code in (200, 302)
    assert Container.objects.filter(pk=container.pk).exists()  # kept: it may still run
    entry = only_entry(action="container.delete")
    assert (entry.result, entry.via, entry.actor, entry.target) == ("error", "admin", admin_user, "alice/nb")
    assert "BackendUnavailableError" in entry.message


def test_keyword_calls_are_recorded_too(make_node, image, alice):
    make_node("n1")
    container = services.create_container(owner=alice, name="nb", image=image)
    services.create_snapshot(container=container, name="s1")
    services.stop_container(container=container)
    snapshot = only_entry(action="snapshot.create")
    assert (snapshot.result, snapshot.target_type, snapshot.details["name"]) == ("ok", "container", "s1")
    stop = only_entry(action="container.stop")
    assert (stop.result, stop.target) == ("ok", "alice/nb")
