"""The users' REST API against the real engine: every endpoint and action for the owner,
404 for everyone else, staff, placement, errors, the schema, and no secret in any answer."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.urls import resolve
from rest_framework.test import APIClient

from ipynbsrv_backends import background, registry
from ipynbsrv_backends.models import Backend, Container, Image, Node, Snapshot

from ..conftest import TEST_IMAGE

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parent.parent.parent
API = "/api"
PASSWORDS = {"alice": "alice-password", "bob": "bob-password", "carol": "carol-password"}


@pytest.fixture(autouse=True)
def _api(master_settings):
    """The master's test settings (conftest), with a cheap password hasher: Basic
    authentication hashes the password on every request."""
    master_settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return master_settings


@pytest.fixture
def carol(django_user_model):
    return django_user_model.objects.create_user("carol", password="carol-password", is_staff=True)


def client_for(user: Any = None, password: str | None = None) -> APIClient:
    """A client that signs in with HTTP Basic (anonymous without a user)."""
    client = APIClient()
    if user is not None:
        secret = password if password is not None else PASSWORDS[user.username]
        token = base64.b64encode(f"{user.username}:{secret}".encode()).decode()
        client.credentials(HTTP_AUTHORIZATION=f"Basic {token}")
    return client


def body(response) -> Any:
    """The JSON of an answer (``None`` for an empty or non-JSON one, such as the YAML schema)."""
    if not response.content or "json" not in response.get("Content-Type", ""):
        return None
    return json.loads(response.content)


def page(response) -> list[Any]:
    """The items of one page of a list (every list is paginated: ``{next, previous, results}``)."""
    data = body(response)
    assert response.status_code == 200 and set(data) == {"next", "previous", "results"}, response.content[:500]
    return data["results"]


def create(client: APIClient, name: str, image: Image | None = None, **more: Any):
    data = {"name": name, **({"image": image.pk} if image is not None else {}), **more}
    return client.post(f"{API}/containers/?wait=true", data, format="json")


def engine_names(engine, node: Node) -> list[str]:
    label = f"org.ipynbsrv.instance={node.backend.config['instance']}"
    return sorted(c.name for c in engine.containers.list(all=True, filters={"label": label}))


def run_in(container_id: int, *argv: str) -> str:
    container = Container.objects.select_related("node__backend").get(pk=container_id)
    return registry.get_backend(container.node).exec_in_container(container.backend_pk, list(argv))


# ---------------------------------------------------------------------------- authentication

def test_anonymous_and_wrong_passwords_are_refused(alice, make_node, image):
    make_node("n1")
    for method, path in [("get", "containers/"), ("post", "containers/"), ("get", "containers/1/"),
                         ("post", "containers/1/start/"), ("get", "snapshots/"), ("get", "images/"),
                         ("delete", "images/1/"), ("get", "nodes/")]:
        response = getattr(client_for(), method)(f"{API}/{path}", {}, format="json")
        assert response.status_code == 401, (method, path)
        assert body(response)["code"] == "not_authenticated"
        assert response["WWW-Authenticate"] == 'X-Basic realm="api"'  # no browser password dialog
    response = client_for(alice, "wrong").get(f"{API}/containers/")
    assert response.status_code == 401 and body(response)["code"] == "authentication_failed"
    assert Container.objects.count() == 0


def test_session_authentication_needs_the_csrf_token(alice, make_node, image):
    make_node("n1")
    client = APIClient(enforce_csrf_checks=True)
    assert client.login(username="alice", password="alice-password")
    assert client.get(f"{API}/containers/").status_code == 200
    response = create(client, "nb", image)
    assert response.status_code == 403 and "CSRF" in body(response)["detail"]
    assert Container.objects.count() == 0


# ---------------------------------------------------------------------------- containers

def test_create_list_retrieve_and_delete(alice, make_node, image, engine):
    node = make_node("n1")
    api = client_for(alice)
    response = create(api, "nb", image)
    assert response.status_code == 201, body(response)
    data = body(response)
    assert set(data) == {"id", "name", "owner", "node", "status", "image", "clone_of", "ports", "url",
                         "base_url", "created_at", "last_error", "progress", "error_code",
                         "last_activity", "cull_reason", "culled_at", "last_event", "last_event_at"}
    assert data["name"] == "nb" and data["owner"] == "alice" and data["node"] == "n1"
    assert data["status"] == "running" and data["image"] == image.pk and data["clone_of"] is None
    assert data["url"] == "http://testserver/notebooks/alice/nb/" and data["base_url"] == "/notebooks/alice/nb/"
    assert response["Location"].endswith(f"{API}/containers/{data['id']}/")
    assert engine_names(engine, node) == [Container.objects.get().backend_pk]

    listed = page(api.get(f"{API}/containers/"))
    assert [c["id"] for c in listed] == [data["id"]]
    assert body(api.get(f"{API}/containers/{data['id']}/")) == data

    response = api.delete(f"{API}/containers/{data['id']}/")
    assert response.status_code == 204
    assert not Container.objects.exists() and engine_names(engine, node) == []
    response = api.get(f"{API}/containers/{data['id']}/")
    assert response.status_code == 404 and body(response)["code"] == "not_found"


def test_every_lifecycle_action(alice, make_node, image, engine):
    make_node("n1")
    api = client_for(alice)
    pk = body(create(api, "nb", image))["id"]
    for step, status in [("stop", "stopped"), ("start", "running"), ("suspend", "suspended"),
                         ("resume", "running"), ("restart", "running"), ("refresh", "running")]:
        response = api.post(f"{API}/containers/{pk}/{step}/")
        assert response.status_code == 200, (step, body(response))
        assert body(response)["status"] == status, step
        assert Container.objects.get(pk=pk).status == status
    response = api.post(f"{API}/containers/{pk}/start/")  # already running
    assert response.status_code in (200, 409)

    engine.containers.get(Container.objects.get(pk=pk).backend_pk).remove(force=True)
    response = api.post(f"{API}/containers/{pk}/refresh/")
    assert response.status_code == 200 and body(response)["status"] == "lost"


def test_snapshot_restore_and_delete(alice, make_node, image):
    make_node("n1")
    api = client_for(alice)
    pk = body(create(api, "nb", image))["id"]
    run_in(pk, "sh", "-c", "echo v1 > /v")

    response = api.post(f"{API}/containers/{pk}/snapshot/", {"name": "v1", "description": "first"}, format="json")
    assert response.status_code == 201, body(response)
    snap = body(response)
    assert snap["name"] == "v1" and snap["container"] == pk and snap["container_name"] == "nb"
    assert snap["description"] == "first"
    assert response["Location"].endswith(f"{API}/snapshots/{snap['id']}/")
    response = api.post(f"{API}/containers/{pk}/snapshot/", {"name": "v1"}, format="json")
    assert response.status_code == 409 and body(response)["code"] == "already_exists"

    assert [s["id"] for s in page(api.get(f"{API}/snapshots/"))] == [snap["id"]]
    assert [s["id"] for s in page(api.get(f"{API}/snapshots/?container={pk}"))] == [snap["id"]]
    assert page(api.get(f"{API}/snapshots/?container={pk + 1000}")) == []
    assert body(api.get(f"{API}/snapshots/{snap['id']}/")) == snap

    run_in(pk, "sh", "-c", "echo v2 > /v")
    response = api.post(f"{API}/containers/{pk}/restore/", {"snapshot": snap["id"]}, format="json")
    assert response.status_code == 200, body(response)
    assert body(response)["id"] == pk and body(response)["status"] == "running"
    assert run_in(pk, "cat", "/v").strip() == "v1"

    run_in(pk, "sh", "-c", "echo v3 > /v")
    response = api.post(f"{API}/snapshots/{snap['id']}/restore/")
    assert response.status_code == 200 and body(response)["id"] == pk
    assert run_in(pk, "cat", "/v").strip() == "v1"

    assert api.delete(f"{API}/snapshots/{snap['id']}/").status_code == 204
    assert not Snapshot.objects.exists()
    assert api.get(f"{API}/snapshots/{snap['id']}/").status_code == 404


def test_commit_images_and_start_from_them(alice, bob, make_node, image):
    make_node("n1")
    api, other = client_for(alice), client_for(bob)
    pk = body(create(api, "nb", image))["id"]
    run_in(pk, "sh", "-c", "echo baked > /b")

    response = api.post(f"{API}/containers/{pk}/commit/", {"name": "stack", "description": "mine"}, format="json")
    assert response.status_code == 201, body(response)
    committed = body(response)
    assert committed["name"] == "alice/stack:latest" and committed["owner"] == "alice" and committed["public"] is False
    assert committed["base"] is False and committed["source"] == pk and committed["node"] == "n1"
    assert response["Location"].endswith(f"{API}/images/{committed['id']}/")

    assert sorted(i["id"] for i in page(api.get(f"{API}/images/"))) == sorted([image.pk, committed["id"]])
    base = body(api.get(f"{API}/images/{image.pk}/"))
    assert base["base"] is True and base["owner"] is None and base["source"] is None
    assert [i["id"] for i in page(other.get(f"{API}/images/"))] == [image.pk]
    assert other.get(f"{API}/images/{committed['id']}/").status_code == 404
    assert other.delete(f"{API}/images/{committed['id']}/").status_code == 404

    child = body(create(api, "child", Image.objects.get(pk=committed["id"])))
    assert child["image"] == committed["id"]
    assert run_in(child["id"], "cat", "/b").strip() == "baked"
    assert api.delete(f"{API}/containers/{child['id']}/").status_code == 204

    Image.objects.filter(pk=committed["id"]).update(public=True)
    shared = body(other.get(f"{API}/images/{committed['id']}/"))
    assert shared["public"] is True and shared["source"] is None  # not bob's to know
    response = other.delete(f"{API}/images/{committed['id']}/")
    assert response.status_code == 403 and body(response)["code"] == "permission_denied"
    response = api.delete(f"{API}/images/{image.pk}/")  # a base image: not alice's to delete
    assert response.status_code == 403
    assert api.delete(f"{API}/images/{committed['id']}/").status_code == 204
    assert list(Image.objects.values_list("pk", flat=True)) == [image.pk]


def test_clone_by_action_and_on_create(alice, make_node, image):
    make_node("n1")
    make_node("n2")
    api = client_for(alice)
    source = body(create(api, "nb", image))
    run_in(source["id"], "sh", "-c", "echo mine > /m")

    response = api.post(f"{API}/containers/{source['id']}/clone/?wait=true", {"name": "copy"}, format="json")
    assert response.status_code == 201, body(response)
    copy = body(response)
    assert copy["clone_of"] == source["id"] and copy["node"] == source["node"] and copy["owner"] == "alice"
    assert run_in(copy["id"], "cat", "/m").strip() == "mine"

    response = create(api, "copy2", clone_of=source["id"])
    assert response.status_code == 201, body(response)
    assert body(response)["clone_of"] == source["id"] and body(response)["node"] == source["node"]


# ---------------------------------------------------------------------------- other users and staff

def test_another_user_gets_404_for_everything_of_alice(alice, bob, make_node, image):
    make_node("n1")
    api, other = client_for(alice), client_for(bob)
    pk = body(create(api, "nb", image))["id"]
    snap = body(api.post(f"{API}/containers/{pk}/snapshot/", {"name": "s"}, format="json"))
    committed = body(api.post(f"{API}/containers/{pk}/commit/", {"name": "private"}, format="json"))
    before = Container.objects.get(pk=pk).status

    assert page(other.get(f"{API}/containers/")) == []
    assert page(other.get(f"{API}/snapshots/")) == []
    assert committed["id"] not in [i["id"] for i in page(other.get(f"{API}/images/"))]
    requests = [
        ("get", f"containers/{pk}/", None),
        *(("post", f"containers/{pk}/{step}/", None)
          for step in ("start", "stop", "restart", "suspend", "resume", "refresh")),
        ("post", f"containers/{pk}/snapshot/", {"name": "mine"}),
        ("post", f"containers/{pk}/restore/", {"snapshot": snap["id"]}),
        ("post", f"containers/{pk}/commit/", {"name": "stolen"}),
        ("post", f"containers/{pk}/clone/", {"name": "stolen"}),
        ("delete", f"containers/{pk}/", None),
        ("get", f"snapshots/{snap['id']}/", None),
        ("post", f"snapshots/{snap['id']}/restore/", None),
        ("delete", f"snapshots/{snap['id']}/", None),
        ("get", f"images/{committed['id']}/", None),
        ("delete", f"images/{committed['id']}/", None),
    ]
    for method, path, data in requests:
        response = getattr(other, method)(f"{API}/{path}", data, format="json")
        assert response.status_code == 404, (method, path, body(response))
        assert body(response)["code"] == "not_found"
    response = create(other, "stolen", clone_of=pk)
    assert response.status_code == 400 and "clone_of" in body(response)["fields"]

    assert Container.objects.filter(owner=bob).count() == 0
    assert Container.objects.get(pk=pk).status == before
    assert Snapshot.objects.filter(pk=snap["id"]).exists() and Image.objects.filter(pk=committed["id"]).exists()
    assert Image.objects.filter(owner=bob).count() == 0


def test_staff_see_and_act_on_everything(alice, bob, carol, make_node, image):
    make_node("n1")
    make_node("n2")
    mine = body(create(client_for(alice), "nb", image))
    theirs = body(create(client_for(bob), "nb", image))
    staff = client_for(carol)
    assert sorted(c["id"] for c in page(staff.get(f"{API}/containers/"))) == sorted([mine["id"], theirs["id"]])
    response = staff.post(f"{API}/containers/{mine['id']}/stop/")
    assert response.status_code == 200 and body(response)["status"] == "stopped"

    response = create(staff, "placed", image, node="n2", owner="alice")
    assert response.status_code == 201, body(response)
    assert body(response)["node"] == "n2" and body(response)["owner"] == "alice"
    assert create(staff, "x", image, node="nowhere").status_code == 400
    assert create(staff, "x", image, owner="nobody").status_code == 400


def test_nodes_are_for_staff_only(alice, carol, make_node, image):
    node = make_node("n1", capacity=7)
    create(client_for(alice), "nb", image)
    response = client_for(alice).get(f"{API}/nodes/")
    assert response.status_code == 403 and body(response)["code"] == "permission_denied"
    assert client_for(alice).get(f"{API}/nodes/{node.pk}/").status_code == 403

    listed = page(client_for(carol).get(f"{API}/nodes/"))
    assert [n["name"] for n in listed] == ["n1"]
    entry = listed[0]
    assert set(entry) == {"id", "name", "address", "backend", "kind", "enabled", "draining", "capacity",
                          "containers", "health", "last_checked", "last_seen", "last_error", "resources"}
    assert entry["containers"] == 1 and entry["capacity"] == 7 and entry["health"] == "ok"
    assert entry["kind"] == "Docker" and entry["backend"] == "docker-n1"
    assert body(client_for(carol).get(f"{API}/nodes/{node.pk}/")) == entry


# ---------------------------------------------------------------------------- placement and errors

def test_create_without_a_node_uses_placement(alice, make_node, image):
    make_node("n1")
    make_node("n2")
    api = client_for(alice)
    nodes = [body(create(api, f"c{i}", image))["node"] for i in range(4)]
    assert sorted(nodes) == ["n1", "n1", "n2", "n2"]
    response = create(api, "picky", image, node="n1")
    assert response.status_code == 400 and "node" in body(response)["fields"]
    response = create(api, "boss", image, owner="bob")
    assert response.status_code == 400 and "owner" in body(response)["fields"]


def test_no_node_is_a_503_with_a_helpful_message(alice, make_node, image):
    api = client_for(alice)
    response = create(api, "nb", image)
    assert response.status_code == 503
    answer = body(response)
    assert answer["code"] == "no_node_available"
    assert "node" in answer["detail"] and "administrator" in answer["detail"]

    node = make_node("n1")
    Node.objects.filter(pk=node.pk).update(enabled=False)
    response = create(api, "nb", image)
    assert response.status_code == 503 and body(response)["code"] == "no_node_available"
    assert Container.objects.count() == 0


def test_a_taken_name_is_a_409_and_the_quota_a_429(alice, make_node, image, master_settings):
    make_node("n1")
    api = client_for(alice)
    assert create(api, "nb", image).status_code == 201
    response = create(api, "nb", image)
    assert response.status_code == 409 and body(response)["code"] == "already_exists"
    assert "nb" in body(response)["detail"]
    master_settings.IPYNBSRV_BACKENDS = {**master_settings.IPYNBSRV_BACKENDS, "MAX_CONTAINERS_PER_USER": 1}
    response = create(api, "second", image)
    assert response.status_code == 429 and body(response)["code"] == "quota_exceeded"
    assert Container.objects.count() == 1


def test_bad_bodies_are_clear_400s(alice, bob, make_node, image):
    make_node("n1")
    api = client_for(alice)
    private = Image.objects.create(name="bobs", ref="bobs:1", owner=bob)
    cases = [
        ({}, "name"),
        ({"name": "Bad Name", "image": image.pk}, "name"),
        ({"name": "x" * 64, "image": image.pk}, "name"),
        ({"name": "nb"}, "non_field_errors"),
        ({"name": "nb", "image": image.pk, "clone_of": 1}, "clone_of"),
        ({"name": "nb", "image": private.pk}, "image"),
        ({"name": "nb", "image": 99999}, "image"),
        ({"name": "nb", "image": "busybox"}, "image"),
        ({"name": "nb", "image": image.pk, "imagee": 1}, "imagee"),
    ]
    for data, field in cases:
        response = api.post(f"{API}/containers/", data, format="json")
        assert response.status_code == 400, (data, body(response))
        answer = body(response)
        assert answer["code"] == "invalid" and field in answer["fields"], (data, answer)
        assert answer["detail"]
    response = api.post(f"{API}/containers/", "{not json", content_type="application/json")
    assert response.status_code == 400 and body(response)["code"] == "parse_error"
    response = api.post(f"{API}/containers/", [1, 2], format="json")
    assert response.status_code == 400 and body(response)["code"] == "invalid"
    response = api.post(f"{API}/containers/", "name=nb", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415 and body(response)["code"] == "unsupported_media_type"
    assert Container.objects.count() == 0

    pk = body(create(api, "nb", image))["id"]
    other = body(create(api, "other", image))["id"]
    foreign = body(api.post(f"{API}/containers/{other}/snapshot/", {"name": "s"}, format="json"))["id"]
    for path, data, field in [
        (f"containers/{pk}/snapshot/", {}, "name"),
        (f"containers/{pk}/snapshot/", {"name": "../x"}, "name"),
        (f"containers/{pk}/restore/", {}, "snapshot"),
        (f"containers/{pk}/restore/", {"snapshot": foreign}, "snapshot"),
        (f"containers/{pk}/commit/", {"name": "ok", "public": "perhaps"}, "public"),
        (f"containers/{pk}/commit/", {"name": "UPPER"}, "name"),
        (f"containers/{pk}/clone/", {}, "name"),
        (f"containers/{pk}/clone/", {"name": "nb2", "node": "n1"}, "node"),
    ]:
        response = api.post(f"{API}/{path}", data, format="json")
        assert response.status_code == 400, (path, data, body(response))
        assert body(response)["code"] == "invalid" and field in body(response)["fields"], (path, body(response))
    response = api.get(f"{API}/snapshots/?container=abc")
    assert response.status_code == 400 and "container" in body(response)["fields"]
    assert api.get(f"{API}/containers/abc/").status_code == 404
    assert Snapshot.objects.count() == 1 and Image.objects.count() == 2


def test_requests_run_outside_the_request_transaction():
    """The service layer commits each record itself, even under ATOMIC_REQUESTS."""
    for path in ("containers/", "containers/1/", "containers/1/start/", "snapshots/1/restore/", "images/1/"):
        assert resolve(f"{API}/{path}").func._non_atomic_requests == {"default"}


# ---------------------------------------------------------------------------- schema

EXPECTED_OPERATIONS = {
    ("/api/containers/", "get"), ("/api/containers/", "post"),
    ("/api/containers/{id}/", "get"), ("/api/containers/{id}/", "delete"),
    *((f"/api/containers/{{id}}/{step}/", "post") for step in
      ("start", "stop", "restart", "suspend", "resume", "refresh", "snapshot", "restore", "commit", "clone")),
    ("/api/snapshots/", "get"), ("/api/snapshots/{id}/", "get"), ("/api/snapshots/{id}/", "delete"),
    ("/api/snapshots/{id}/restore/", "post"),
    ("/api/images/", "get"), ("/api/images/{id}/", "get"), ("/api/images/{id}/", "delete"),
    ("/api/quota/", "get"),
    ("/api/nodes/", "get"), ("/api/nodes/{id}/", "get"),
    ("/api/events/", "get"),
    # the JupyterHub endpoints (docs/jupyterhub.md), signed in with a hub's token
    ("/api/hub/images/", "get"), ("/api/hub/servers/", "get"), ("/api/hub/servers/", "post"),
    ("/api/hub/servers/{id}/", "get"), ("/api/hub/servers/{id}/", "delete"), ("/api/hub/servers/{id}/stop/", "post"),
}


def test_the_schema_describes_every_endpoint():
    from drf_spectacular.validation import validate_schema

    response = client_for().get(f"{API}/schema/?format=json")
    assert response.status_code == 200
    schema = json.loads(response.content)
    validate_schema(schema)
    operations = {(path, method) for path, item in schema["paths"].items() for method in item}
    assert operations == EXPECTED_OPERATIONS
    create_body = schema["components"]["schemas"]["ContainerCreateRequest"]
    assert set(create_body["properties"]) == {"name", "image", "clone_of", "node", "owner", "allow_draining"}
    create_op = schema["paths"]["/api/containers/"]["post"]
    assert {"201", "202", "400", "409", "429", "503"} <= set(create_op["responses"])
    start = schema["paths"]["/api/containers/{id}/start/"]["post"]
    assert "requestBody" not in start and start["parameters"][0]["schema"]["type"] == "integer"
    assert set(schema["components"]["securitySchemes"]) == {"basicAuth", "cookieAuth", "hubToken"}
    assert "env" not in schema["components"]["schemas"]["HubServer"]["properties"]
    assert not [key for key in schema["components"]["schemas"]["Node"]["properties"] if "config" in key]


def test_the_schema_command_validates_without_warnings(tmp_path):
    out = tmp_path / "schema.yaml"
    result = subprocess.run(
        [sys.executable, str(ROOT / "testproject" / "manage.py"), "spectacular", "--urlconf",
         "ipynbsrv_backends.api.urls", "--validate", "--fail-on-warn", "--file", str(out)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    paths = yaml.safe_load(out.read_text())["paths"]
    for path, method in EXPECTED_OPERATIONS:
        assert method.lower() in paths[path.removeprefix("/api")], (path, method)


# ---------------------------------------------------------------------------- secrets

SECRETS = ["registry-password-s3cr3t", "node-override-s3cr3t", "hostapi-token-s3cr3t"]


def test_no_secret_in_any_answer(alice, bob, carol, make_node, image):
    node = make_node("n1", registry_username="robot", registry_password=SECRETS[0])
    Node.objects.filter(pk=node.pk).update(backend_config={"registry_password": SECRETS[1]})
    remote = Backend.objects.create(name="remote", kind="HttpRemote",
                                    config={"url": "http://127.0.0.1:9", "token": SECRETS[2]})
    Node.objects.create(name="far", address="127.0.0.1", backend=remote, enabled=False)

    answers: list[str] = []

    def call(client: APIClient, method: str, path: str, data: Any = None):
        response = getattr(client, method)(f"{API}/{path}", data, format="json")
        answers.append(f"{method} {path} {response.status_code} {dict(response.items())} "
                       f"{response.content.decode()}")
        return body(response)

    api, other, staff = client_for(alice), client_for(bob), client_for(carol)
    pk = call(api, "post", "containers/?wait=true", {"name": "nb", "image": image.pk})["id"]
    for step in ("stop", "start", "restart", "suspend", "resume", "refresh"):
        call(api, "post", f"containers/{pk}/{step}/")
    snap = call(api, "post", f"containers/{pk}/snapshot/", {"name": "s"})["id"]
    call(api, "post", f"containers/{pk}/restore/", {"snapshot": snap})
    call(api, "post", f"snapshots/{snap}/restore/")
    committed = call(api, "post", f"containers/{pk}/commit/", {"name": "img", "public": True})["id"]
    clone = call(api, "post", f"containers/{pk}/clone/", {"name": "copy"})["id"]  # 202, in the background
    pending = call(api, "get", f"containers/{clone}/")
    assert background.wait_idle(60) and call(api, "get", f"containers/{clone}/")["status"] == "running", pending
    call(api, "post", "containers/", {"name": "bad name", "image": image.pk})
    call(api, "post", "containers/", {"name": "nb", "image": image.pk})
    for client in (api, other, staff):
        for path in ("containers/", f"containers/{pk}/", "snapshots/", f"snapshots/{snap}/", "images/",
                     f"images/{committed}/", "nodes/", f"nodes/{node.pk}/", "schema/", "schema/?format=json"):
            call(client, "get", path)
    for far in Node.objects.all():
        call(staff, "get", f"nodes/{far.pk}/")
    call(staff, "post", "containers/", {"name": "far", "image": image.pk, "node": "far"})
    call(api, "delete", f"snapshots/{snap}/")
    call(api, "delete", f"containers/{clone}/")
    call(api, "delete", f"containers/{pk}/")
    call(api, "delete", f"images/{committed}/")

    assert len(answers) > 40
    everything = "\n".join(answers)
    for secret in SECRETS:
        assert secret not in everything
    assert "registry_password" not in everything and "backend_config" not in everything
    assert Container.objects.count() == 0
    assert TEST_IMAGE not in "".join(a for a in answers if a.startswith("get images"))  # no registry refs
