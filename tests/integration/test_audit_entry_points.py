"""Every entry point that acts records its actor and its door, on the real engine: the
admin's own views (clone, commit, move), its actions, the users' API and every management
command (key rotation included); a move's entry is complete (from, requested, where it
went), refused moves too, and describing it never fails."""

from __future__ import annotations

import getpass
import importlib
import pkgutil
import secrets
from io import StringIO

import pytest
from django.contrib import admin
from django.core.management import CommandError, call_command
from django.urls import get_resolver, reverse

from ipynbsrv_backends import registry, services
from ipynbsrv_backends.admin import AuditedAdminMixin
from ipynbsrv_backends.api.urls import not_found
from ipynbsrv_backends.api.views import SchemaView, UserAPIView
from ipynbsrv_backends.management import commands as command_package
from ipynbsrv_backends.management.commands._common import AuditedCommand
from ipynbsrv_backends.models import AuditEntry, Backend, Container, Image, Node

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _master(master_settings):
    return master_settings


@pytest.fixture
def two_nodes(make_node, registry):
    """Two nodes on the local engine sharing the suite's registry, so containers can move."""
    return (make_node("n1", registry=registry, registry_insecure=True),
            make_node("n2", registry=registry, registry_insecure=True))


def only_entry(**filters) -> AuditEntry:
    found = list(AuditEntry.objects.filter(**filters))
    assert len(found) == 1, [str(e) for e in AuditEntry.objects.all()]
    return found[0]


def move_row(entry: AuditEntry) -> tuple:
    d = entry.details
    return (entry.via, entry.actor, entry.target, entry.node, d["from"], d["requested_node"], d["to"], entry.result)


def no_describe_failure(caplog) -> None:
    assert not [r for r in caplog.records if "for the audit log" in r.getMessage()], caplog.text


# ---------------------------------------------------------------------------- moves

def test_the_move_command_records_complete_rows(two_nodes, image, alice, caplog):
    n1, n2 = two_nodes
    container = services.create_container(alice, "nb", image=image, node=n1)
    out = StringIO()
    call_command("ipynbsrv_move", "alice/nb", "--to", "n2", stdout=out)
    assert "moved from n1 to n2" in out.getvalue()
    entry = only_entry(action="container.move")
    assert move_row(entry) == ("command", None, "alice/nb", "n2", "n1", "n2", "n2", "ok")
    assert entry.target_id == str(container.pk) and entry.message == ""
    assert entry.details["source"] == "ipynbsrv_move" and entry.details["run_by"] == getpass.getuser()
    # refused: it is already there
    with pytest.raises(CommandError):
        call_command("ipynbsrv_move", "alice/nb", "--to", "n2", stdout=out)
    refused = AuditEntry.objects.filter(action="container.move", result="error").get()
    assert move_row(refused) == ("command", None, "alice/nb", "n2", "n2", "n2", "", "error")
    assert refused.target_id == str(container.pk) and "already on n2" in refused.message
    no_describe_failure(caplog)


def test_the_admin_action_records_complete_rows(two_nodes, image, alice, admin_client, admin_user, caplog):
    n1, n2 = two_nodes
    container = services.create_container(alice, "nb", image=image, node=n1)
    changelist = reverse("admin:ipynbsrv_backends_container_changelist")
    answer = admin_client.post(changelist, {"action": "move_containers", "_selected_action": [container.pk]})
    assert answer.status_code == 302
    entry = only_entry(action="container.move")
    assert move_row(entry) == ("admin", admin_user, "alice/nb", "n2", "n1", "", "n2", "ok")
    # refused: no other node can take it
    Node.objects.filter(pk=n1.pk).update(draining=True)
    admin_client.post(changelist, {"action": "move_containers", "_selected_action": [container.pk]})
    refused = only_entry(action="container.move", result="error")
    assert move_row(refused) == ("admin", admin_user, "alice/nb", "n2", "n2", "", "", "error")
    assert "No other node can take alice/nb" in refused.message
    no_describe_failure(caplog)


def test_the_admins_move_page_records_the_staff_member(two_nodes, image, alice, admin_client, admin_user, caplog):
    n1, n2 = two_nodes
    container = services.create_container(alice, "nb", image=image, node=n1)
    page = reverse("admin:ipynbsrv_backends_container_move", args=[container.pk])
    Node.objects.filter(pk=n2.pk).update(draining=True)
    answer = admin_client.post(page, {"node": n2.pk})
    assert answer.status_code == 200
    assert "'n2' is draining" in " ".join(answer.context["form"].non_field_errors())
    refused = only_entry(action="container.move")
    assert move_row(refused) == ("admin", admin_user, "alice/nb", "n1", "n1", "n2", "", "error")
    answer = admin_client.post(page, {"node": n2.pk, "allow_draining": "on"})
    assert answer.status_code == 302, answer.content.decode()[:2000]
    moved = only_entry(action="container.move", result="ok")
    assert move_row(moved) == ("admin", admin_user, "alice/nb", "n2", "n1", "n2", "n2", "ok")
    assert moved.details["allow_draining"] is True
    assert Container.objects.get(pk=container.pk).node == n2
    no_describe_failure(caplog)


# ---------------------------------------------------------------------------- the admin's own views

def test_the_admins_clone_and_commit_pages_record_the_staff_member(make_node, image, alice, admin_client,
                                                                   admin_user):
    make_node("n1")
    source = services.create_container(alice, "nb", image=image)
    answer = admin_client.post(reverse("admin:ipynbsrv_backends_container_clone", args=[source.pk]),
                               {"owner": alice.pk, "name": "copy"})
    assert answer.status_code == 302, answer.content.decode()[:2000]
    clone = only_entry(action="container.clone")
    assert (clone.via, clone.actor, clone.actor_name, clone.target, clone.result) == \
        ("admin", admin_user, admin_user.get_username(), "alice/copy", "ok")
    answer = admin_client.post(reverse("admin:ipynbsrv_backends_container_commit", args=[source.pk]),
                               {"name": "baked", "description": ""})
    assert answer.status_code == 302, answer.content.decode()[:2000]
    commit = only_entry(action="image.commit")
    assert (commit.via, commit.actor, commit.target, commit.result) == ("admin", admin_user, "alice/nb", "ok")
    assert Image.objects.filter(owner=alice, name__contains="baked").exists()


def test_every_admin_view_runs_in_the_audit_context():
    """Structural: every model admin of the app, and every URL it serves (Django's and its
    own), sets the actor; a view added later is covered without anyone remembering it."""
    ours = [ma for model, ma in admin.site._registry.items() if model._meta.app_label == "ipynbsrv_backends"]
    assert {type(ma).__name__ for ma in ours} >= {"ContainerAdmin", "NodeAdmin", "AuditEntryAdmin"}
    for model_admin in ours:
        assert isinstance(model_admin, AuditedAdminMixin), type(model_admin)
        names = set()
        for pattern in model_admin.urls:
            if getattr(pattern, "callback", None) is not None:
                assert getattr(pattern.callback, "audit_via", None) == "admin", (type(model_admin), pattern)
                names.add(pattern.name)
        if type(model_admin).__name__ == "ContainerAdmin":
            assert {"ipynbsrv_backends_container_clone", "ipynbsrv_backends_container_move",
                    "ipynbsrv_backends_container_commit"} <= names


def test_every_users_api_view_sets_the_context():
    """Structural: every view under the users' API is a UserAPIView (whose dispatch sets the
    actor), or the schema and the JSON 404, which act on nothing."""
    api = next(p for p in get_resolver().url_patterns if "api/" == str(p.pattern))

    def views(patterns):
        for pattern in patterns:
            if hasattr(pattern, "url_patterns"):
                yield from views(pattern.url_patterns)
            else:
                yield getattr(pattern.callback, "cls", None), pattern

    found = list(views(api.url_patterns))
    assert found
    for cls, pattern in found:
        if pattern.callback is not_found:
            continue
        assert cls is not None and (issubclass(cls, UserAPIView) or issubclass(cls, SchemaView)), pattern


# ---------------------------------------------------------------------------- commands

def test_every_command_of_the_app_is_audited():
    names = [info.name for info in pkgutil.iter_modules(command_package.__path__) if not info.name.startswith("_")]
    assert "ipynbsrv_rotate_key" in names and "ipynbsrv_move" in names
    for name in names:
        module = importlib.import_module(f"{command_package.__name__}.{name}")
        assert issubclass(module.Command, AuditedCommand), name


def test_key_rotation_by_command_is_audited(make_node, workdir, engine):
    """A rotation the node refuses (a Docker node has no signing key) and one that works (a
    real host API with a signing key) are each recorded as the command's, never the key."""
    from ipynbsrv_backends.hostapi import signing

    from ..conftest import backend_options
    from ..hostapi_process import HostAPINode

    make_node("local")
    with pytest.raises(CommandError):
        call_command("ipynbsrv_rotate_key", "local", stdout=StringIO(), stderr=StringIO())
    refused = only_entry(action="node.rotate_signing_key")
    assert (refused.via, refused.actor, refused.node, refused.result) == ("command", None, "local", "error")
    assert refused.details["source"] == "ipynbsrv_rotate_key" and refused.details["run_by"] == getpass.getuser()
    assert "CapabilityNotSupportedError" in refused.message

    key = signing.new_key()
    process = HostAPINode(workdir, backend_args=backend_options(), signing_key=key,
                          state_dir=workdir / f"state-{secrets.token_hex(4)}")
    registry.forget_backend()
    try:
        with process:
            backend = Backend.objects.create(name="remote", kind="HttpRemote",
                                             config={"url": process.url, "token": process.token})
            Node.objects.create(name="signed", address="127.0.0.1", backend=backend,
                                backend_config={"signing_key": key})
            call_command("ipynbsrv_rotate_key", "signed", "--grace", "0", stdout=StringIO())
    finally:
        registry.forget_backend()
    rotated = only_entry(action="node.rotate_signing_key", result="ok")
    assert (rotated.via, rotated.actor, rotated.node, rotated.details["grace"]) == ("command", None, "signed", 0)
    new = Node.objects.get(name="signed").backend_config["signing_key"]
    assert new != key
    for entry in AuditEntry.objects.all():
        assert key not in str(entry.details) + entry.message and new not in str(entry.details) + entry.message
