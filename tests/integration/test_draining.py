"""One rule for a node that is draining or disabled, on the real engine: nobody, staff
included, places a new container there (create, clone, move) unless the override
(``allow_draining``) is asked for; a disabled node is never used; the audit entry says
whether the override was asked for."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from ipynbsrv_backends import errors, services
from ipynbsrv_backends.models import AuditEntry, Container, Node

from ..utils import api_as

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _master(master_settings):
    master_settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return master_settings


def drain(node: Node, **flags: bool) -> Node:
    Node.objects.filter(pk=node.pk).update(**({"draining": True} | flags))
    return Node.objects.select_related("backend").get(pk=node.pk)


def entries(action: str) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(action=action).order_by("pk"))


def test_the_service_refuses_a_draining_node_unless_asked(make_node, image, alice):
    n1 = drain(make_node("n1"))
    make_node("n2")
    with pytest.raises(errors.NoNodeAvailableError, match=r"'n1' is draining.*allow_draining"):
        services.create_container(alice, "nb", image=image, node=n1)
    assert not Container.objects.exists()
    container = services.create_container(alice, "nb", image=image, node=n1, allow_draining=True)
    assert container.node == n1 and container.status == "running"
    refused, placed = entries("container.create")
    assert (refused.result, refused.target, refused.details["requested_node"]) == ("error", "alice/nb", "n1")
    assert "'n1' is draining" in refused.message and refused.details["allow_draining"] is False
    assert (placed.result, placed.node, placed.details["allow_draining"]) == ("ok", "n1", True)
    # placement alone never picks it, override or not
    other = services.create_container(alice, "other", image=image, allow_draining=True)
    assert other.node.name == "n2"


def test_a_disabled_node_is_refused_even_with_the_override(make_node, image, alice):
    n1 = drain(make_node("n1"), enabled=False, draining=False)
    with pytest.raises(errors.NoNodeAvailableError, match=r"'n1' is disabled"):
        services.create_container(alice, "nb", image=image, node=n1, allow_draining=True)
    assert not Container.objects.exists()


def test_the_flags_are_read_when_placing_not_when_the_node_was_loaded(make_node, image, alice):
    stale = make_node("n1")  # loaded before it was drained
    drain(stale)
    with pytest.raises(errors.NoNodeAvailableError, match="draining"):
        services.create_container(alice, "nb", image=image, node=stale)
    assert not Container.objects.exists()


def test_a_clone_on_its_sources_draining_node(make_node, image, alice):
    n1 = make_node("n1")
    source = services.create_container(alice, "nb", image=image, node=n1)
    drain(n1)
    source = Container.objects.select_related("node__backend").get(pk=source.pk)
    with pytest.raises(errors.NoNodeAvailableError, match="'n1' is draining"):
        services.clone_container(source, alice, "copy")
    clone = services.clone_container(source, alice, "copy", allow_draining=True)
    assert clone.node == n1
    refused, made = entries("container.clone")
    assert refused.result == "error" and refused.details["allow_draining"] is False
    assert made.result == "ok" and made.details["allow_draining"] is True and made.node == "n1"


def test_staff_in_the_users_api(make_node, image, alice, admin_user):
    drain(make_node("n1"))
    staff = api_as(admin_user.get_username(), "password")
    body = {"name": "nb", "image": image.pk, "node": "n1", "owner": "alice"}
    answer = staff.post("/api/containers/", body, format="json")
    assert answer.status_code == 503, answer.content
    assert answer.json()["code"] == "no_node_available" and "'n1' is draining" in answer.json()["detail"]
    assert not Container.objects.exists()
    answer = staff.post("/api/containers/?wait=true", {**body, "allow_draining": True}, format="json")
    assert answer.status_code == 201, answer.content
    assert answer.json()["node"] == "n1"
    refused, placed = entries("container.create")
    assert (refused.via, refused.actor, refused.result) == ("api", admin_user, "error")
    assert (placed.via, placed.actor, placed.result, placed.node) == ("api", admin_user, "ok", "n1")
    assert placed.details["allow_draining"] is True
    # a user may not ask for the override
    answer = api_as("alice", "alice-password").post(
        "/api/containers/", {"name": "mine", "image": image.pk, "allow_draining": True}, format="json")
    assert answer.status_code == 400 and "allow_draining" in answer.json()["fields"]


def test_the_admins_add_form(make_node, image, alice, admin_client, admin_user):
    n1 = drain(make_node("n1"))
    add = reverse("admin:ipynbsrv_backends_container_add")
    form = {"owner": alice.pk, "name": "nb", "image": image.pk, "node": n1.pk, "options": "{}"}
    answer = admin_client.post(add, form)
    assert answer.status_code == 200
    assert "'n1' is draining" in " ".join(answer.context["adminform"].form.non_field_errors())
    assert not Container.objects.exists()
    answer = admin_client.post(add, {**form, "allow_draining": "on"})
    assert answer.status_code == 302, answer.content.decode()[:2000]
    assert Container.objects.get(name="nb").node == n1
    refused, placed = entries("container.create")
    assert (refused.via, refused.actor, refused.result) == ("admin", admin_user, "error")
    assert (placed.via, placed.actor, placed.details["allow_draining"]) == ("admin", admin_user, True)


def test_move_to_a_draining_node(make_node, image, alice, registry):
    n1 = make_node("n1", registry=registry, registry_insecure=True)
    n2 = make_node("n2", registry=registry, registry_insecure=True)
    container = services.create_container(alice, "nb", image=image, node=n1)
    n2 = drain(n2)
    with pytest.raises(errors.NoNodeAvailableError, match="'n2' is draining"):
        services.move_container(container, n2)
    out = StringIO()
    with pytest.raises(CommandError):
        call_command("ipynbsrv_move", "alice/nb", "--to", "n2", stdout=out)
    assert "'n2' is draining" in out.getvalue()
    call_command("ipynbsrv_move", "alice/nb", "--to", "n2", "--allow-draining", stdout=out)
    assert Container.objects.get(pk=container.pk).node == n2
    by_service, by_command, moved = entries("container.move")
    assert by_service.result == by_command.result == "error" and moved.result == "ok"
    assert by_command.details["allow_draining"] is False and moved.details["allow_draining"] is True
    assert (moved.via, moved.details["from"], moved.details["to"]) == ("command", "n1", "n2")
    with pytest.raises(CommandError, match="--allow-draining goes with --to"):
        call_command("ipynbsrv_move", "alice/nb", "--allow-draining", stdout=out)
