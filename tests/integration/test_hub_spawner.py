"""``IpynbsrvSpawner`` against a real master (pytest-django's live server; its node on the real
engine under ``make test``, a Memory node under ``make test-fast``): start, poll, stop (suspend),
resume, delete, named servers, the images form, progress, the hub's state across a restart, the
errors the hub's page shows, and who the hub's credential may act for.

The end to end test with a real JupyterHub, its proxy and the real notebook image on the two-node
test bed is the cluster folder's test_hub_e2e.py."""

from __future__ import annotations

import asyncio
import io
import json
import urllib.request
from types import SimpleNamespace
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from jupyterhub import orm
from jupyterhub.objects import Hub
from rest_framework.test import APIClient

from ipynbsrv_backends.jupyterhub import IpynbsrvSpawner, MasterError
from ipynbsrv_backends.models import AuditEntry, Container, HubCredential, HubServer, Image

from ..conftest import MEMORY, TEST_IMAGE

pytestmark = [pytest.mark.django_db(transaction=True)]

HUB_TOKEN_OF = "hub-api-token-{user}-{server}-0123456789abcdef"


@pytest.fixture
def hub_settings(master_settings):
    master_settings.IPYNBSRV_BACKENDS = {**master_settings.IPYNBSRV_BACKENDS, "CONTAINER_PORTS": [8888]}
    return master_settings


def add_hub(name: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    call_command("ipynbsrv_hub", "add", name, stdout=out, stderr=err)
    return out.getvalue().strip()


@pytest.fixture
def lab(hub_settings, make_node, image):
    """A node, the test image and a hub called lab; its token."""
    make_node("n1")
    return add_hub("lab")


def spawner(master: str, token: str, user: str = "alice", server: str = "", **config: Any) -> IpynbsrvSpawner:
    """A spawner as the hub makes one for ``user``'s server (the hub's own objects, no hub process)."""
    hub_user = SimpleNamespace(name=user, url=f"/user/{user}/", id=1, escaped_name=user, settings={}, orm_user=None)
    orm_server = orm.Server(base_url=f"/user/{user}/{server + '/' if server else ''}", ip="", port=0, proto="http",
                            cookie_name="jupyterhub-user-x")
    made = IpynbsrvSpawner(user=hub_user, hub=Hub(ip="127.0.0.1", port=8081, base_url="/hub/"),
                           orm_spawner=SimpleNamespace(name=server, server=orm_server, state=None),
                           master_url=master, master_token=token, master_poll_interval=0.1,
                           api_token=HUB_TOKEN_OF.format(user=user, server=server or "default"),
                           oauth_client_id=f"jupyterhub-user-{user}", **config)
    return made


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def server_of(spawned: IpynbsrvSpawner) -> HubServer:
    return HubServer.objects.select_related("container", "hub_user__user").get(container_id=spawned.server_id)


def test_start_poll_suspend_resume_and_delete(lab, live_server, engine):
    alice = spawner(live_server.url, lab)
    assert alice.will_resume is True
    url = run(alice.start())
    found = server_of(alice)
    container = found.container
    port = next(p for p in container.ports if p["internal"] == 8888)
    assert url == f"http://127.0.0.1:{port['external']}"
    assert container.status == "running" and container.base_url == "/user/alice/"
    assert found.hub_user.user.get_username() == "lab.alice"
    assert found.hub_user.user.groups.filter(name="jupyterhub-lab").exists()
    # the hub's environment reached the container (and only the hub's variables)
    env = dict(line.split("=", 1) for line in engine.containers.get(container.backend_pk).attrs["Config"]["Env"])
    assert env["JUPYTERHUB_API_TOKEN"] == HUB_TOKEN_OF.format(user="alice", server="default")
    assert env["JUPYTERHUB_SERVICE_PREFIX"] == "/user/alice/"
    assert "PATH" not in env or "/hub" not in env["PATH"]
    if not MEMORY:  # the stand-in's web server answers on the published port
        with urllib.request.urlopen(url + "/", timeout=10) as answer:
            assert answer.status in (200, 404)
    assert run(alice.poll()) is None

    run(alice.stop())
    container.refresh_from_db()
    assert container.status == "suspended"
    assert run(alice.poll()) == 0

    state = alice.get_state()
    again = spawner(live_server.url, lab)  # a restarted hub loads the state it kept
    again.load_state(state)
    assert again.server_id == alice.server_id
    # the hub makes a new token for every start; a resumed server keeps its own, which the hub uses again
    again.api_token = "the-token-the-hub-made-for-this-start"
    assert run(again.start()) == url  # resumed: the same container, the same address
    assert again.api_token == HUB_TOKEN_OF.format(user="alice", server="default")
    container.refresh_from_db()
    assert container.status == "running" and Container.objects.filter(owner=container.owner).count() == 1
    assert run(again.poll()) is None

    run(again.delete_forever())
    assert not Container.objects.filter(pk=container.pk).exists()
    assert run(again.poll()) == 0


def test_stop_without_suspend_stops_and_the_next_start_makes_it_anew(lab, live_server):
    alice = spawner(live_server.url, lab, suspend_on_stop=False)
    assert alice.will_resume is False
    run(alice.start())
    first = alice.server_id
    run(alice.stop())
    assert Container.objects.get(pk=first).status == "stopped"
    assert run(alice.poll()) == 0
    alice.clear_state()
    alice.api_token = "a-new-token-the-hub-made-for-the-next-start"
    run(alice.start())
    assert alice.server_id != first and not Container.objects.filter(pk=first).exists()
    assert server_of(alice).env["JUPYTERHUB_API_TOKEN"] == "a-new-token-the-hub-made-for-the-next-start"
    run(alice.delete_forever())


def test_named_servers_and_progress(lab, live_server):
    default, named = spawner(live_server.url, lab), spawner(live_server.url, lab, server="Work 1")

    async def start_with_progress(spawned: IpynbsrvSpawner) -> tuple[str, list[dict[str, Any]]]:
        events: list[dict[str, Any]] = []

        async def follow() -> None:
            async for event in spawned.progress():
                events.append(event)

        follower = asyncio.ensure_future(follow())
        url = await spawned.start()
        await asyncio.wait_for(follower, 10)
        return url, events

    url, events = run(start_with_progress(named))
    run(default.start())
    containers = {server_of(s).container.name: server_of(s).container for s in (default, named)}
    assert set(containers) == {"hub", next(name for name in containers if name.startswith("hub-work-1-"))}
    assert containers[server_of(named).container.name].base_url == "/user/alice/Work 1/"
    assert events and events[-1]["message"].startswith("running on n1"), events
    assert all(0 <= event["progress"] <= 100 for event in events)
    assert [e["progress"] for e in events] == sorted(e["progress"] for e in events)
    for spawned in (default, named):
        run(spawned.delete_forever())


def test_the_images_form_and_user_options(lab, live_server):
    other = Image.objects.create(name="other", ref=TEST_IMAGE + "-other", public=True, description="<b>x</b>")
    alice = spawner(live_server.url, lab)
    form = run(alice.get_options_form())
    assert 'value="busybox"' in form and 'value="other"' in form and "&lt;b&gt;" in form
    assert alice.options_from_form({"image": ["busybox"]}) == {"image": "busybox"}
    hub = HubCredential.objects.get(name="lab")
    hub.images.set([other])  # the admin narrows the hub's images to one: no form
    assert run(alice.get_options_form()) == ""
    alice.user_options = {"image": "busybox"}
    with pytest.raises(MasterError) as refused:
        run(alice.start())
    assert refused.value.status == 400 and "not one the master allows" in str(refused.value)
    assert "other" in str(refused.value)


def test_placement_and_quota_refusals_reach_the_hub_in_the_masters_words(lab, live_server, hub_settings):
    hub_settings.IPYNBSRV_BACKENDS = {**hub_settings.IPYNBSRV_BACKENDS,
                                      "QUOTAS": {"groups": {"jupyterhub-lab": {"containers": 1}}}}
    alice = spawner(live_server.url, lab)
    run(alice.start())
    second = spawner(live_server.url, lab, server="second")
    with pytest.raises(MasterError) as refused:
        run(second.start())
    assert refused.value.status == 429 and refused.value.code == "quota_exceeded"
    assert "containers" in str(refused.value)
    run(alice.delete_forever())
    from ipynbsrv_backends.models import Node

    Node.objects.update(enabled=False)  # no node may take it
    with pytest.raises(MasterError) as refused:
        run(alice.start())
    assert refused.value.status == 503 and refused.value.code == "no_node_available"
    assert "node" in str(refused.value)


def hub_client(token: str | None) -> APIClient:
    client = APIClient()
    if token is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def start_body(user: str, server: str = "", **more: Any) -> dict[str, Any]:
    return {"user": user, "server": server, "base_url": f"/user/{user}/", "env": {}, **more}


def test_a_hub_acts_only_for_the_users_it_made(lab, live_server, alice):
    other = add_hub("other")
    ours = hub_client(lab).post("/api/hub/servers/", start_body("bob"), format="json")
    assert ours.status_code in (200, 202), ours.content
    server_id = ours.json()["id"]
    # another hub: the same name is another master user, and our server is not found
    theirs = hub_client(other).get(f"/api/hub/servers/{server_id}/")
    assert theirs.status_code == 404
    assert hub_client(other).post(f"/api/hub/servers/{server_id}/stop/", {}, format="json").status_code == 404
    assert hub_client(other).delete(f"/api/hub/servers/{server_id}/").status_code == 404
    # a user of the site with the name the hub's user would get
    get_user_model().objects.create_user("lab.carol", password="x")
    refused = hub_client(lab).post("/api/hub/servers/", start_body("carol"), format="json")
    assert refused.status_code == 403 and refused.json()["code"] == "not_allowed", refused.content
    # a hub user made staff afterwards is no longer the hub's to act for
    bob = get_user_model().objects.get(username="lab.bob")
    bob.is_staff = True
    bob.save()
    refused = hub_client(lab).post("/api/hub/servers/", start_body("bob"), format="json")
    assert refused.status_code == 403 and refused.json()["code"] == "not_allowed"
    # no token, a wrong one, a user's password, a removed hub
    assert hub_client(None).get("/api/hub/servers/").status_code in (401, 403)
    assert hub_client("ipynbsrv-hub-wrong").get("/api/hub/servers/").status_code == 401
    basic = APIClient()
    basic.credentials(HTTP_AUTHORIZATION="Basic " + __import__("base64").b64encode(b"alice:alice-password").decode())
    assert basic.get("/api/hub/servers/").status_code in (401, 403)
    # the hub's token opens nothing of the users' API
    assert hub_client(lab).get("/api/containers/").status_code in (401, 403)
    call_command("ipynbsrv_hub", "remove", "other", stdout=io.StringIO())
    assert hub_client(other).get("/api/hub/servers/").status_code == 401


def test_only_the_hubs_variables_pass_and_no_secret_shows(lab, live_server, caplog, django_user_model):
    token = HUB_TOKEN_OF.format(user="dave", server="default")
    bad = hub_client(lab).post("/api/hub/servers/", start_body("dave", env={"LD_PRELOAD": "/x.so"}), format="json")
    assert bad.status_code == 400 and "JUPYTERHUB_" in bad.json()["detail"]
    caplog.set_level("DEBUG")
    dave = spawner(live_server.url, lab, user="dave")
    run(dave.start())
    found = server_of(dave)
    assert found.env["JUPYTERHUB_API_TOKEN"] == token
    assert token not in repr(found) and token not in str(found) and lab not in repr(found.hub_user.hub)
    answers = [hub_client(lab).get("/api/hub/servers/"), hub_client(lab).get(f"/api/hub/servers/{dave.server_id}/")]
    staff = django_user_model.objects.create_superuser("root", password="root-password")
    admin = APIClient()
    admin.force_login(staff)
    answers += [admin.get("/api/containers/"), admin.get(f"/api/containers/{dave.server_id}/"),
                admin.get("/admin/ipynbsrv_backends/hubcredential/"),
                admin.get(f"/admin/ipynbsrv_backends/hubcredential/{found.hub_user.hub.pk}/change/"),
                admin.get(f"/admin/ipynbsrv_backends/container/{dave.server_id}/change/"),
                admin.get("/admin/ipynbsrv_backends/container/")]
    for answer in answers:
        assert answer.status_code == 200, answer
        text = answer.content.decode()
        assert token not in text and lab not in text and found.hub_user.hub.token_hash not in text
    hub_pk = found.hub_user.hub.pk
    assert admin.get("/admin/ipynbsrv_backends/hubcredential/add/").status_code == 403  # the command makes tokens
    assert admin.get(f"/admin/ipynbsrv_backends/hubcredential/{hub_pk}/delete/").status_code == 403
    audit = json.dumps(list(AuditEntry.objects.values()), default=str)
    assert "lab.dave" in audit and token not in audit and lab not in audit
    assert token not in caplog.text and lab not in caplog.text
    run(dave.delete_forever())


def test_the_command_shows_a_token_once_and_keeps_its_hash(hub_settings):
    token = add_hub("lab")
    hub = HubCredential.objects.get(name="lab")
    assert token.startswith("ipynbsrv-hub-") and len(token) > 40 and token not in hub.token_hash
    out = io.StringIO()
    call_command("ipynbsrv_hub", "list", stdout=out)
    assert "lab" in out.getvalue() and token not in out.getvalue()
    rotated = io.StringIO()
    call_command("ipynbsrv_hub", "rotate", "lab", stdout=rotated)
    new = rotated.getvalue().strip()
    assert new != token and hub_client(token).get("/api/hub/images/").status_code == 401
    assert hub_client(new).get("/api/hub/images/").status_code == 200
    HubCredential.objects.filter(name="lab").update(enabled=False)  # turned off in the admin
    assert hub_client(new).get("/api/hub/images/").status_code == 401
    HubCredential.objects.filter(name="lab").update(enabled=True)
    with pytest.raises(Exception, match="exists already"):
        add_hub("lab")
    entries = list(AuditEntry.objects.filter(action__startswith="hub.").values("action", "via", "target", "details"))
    assert [(e["action"], e["via"], e["target"]) for e in reversed(entries)] == [
        ("hub.add", "command", "lab"), ("hub.rotate", "command", "lab")]
    assert token not in json.dumps(entries) and new not in json.dumps(entries)


def test_a_commit_of_a_hub_server_leaves_no_token_in_the_image(lab, live_server, engine):
    """The engine copies a container's environment into an image committed from it (its config and
    its record of the container): the hub's API token is blanked there, as the access secret is."""
    from ipynbsrv_backends import services

    alice = spawner(live_server.url, lab)
    run(alice.start())
    found = server_of(alice)
    image = services.commit_container(found.container, "saved")
    try:
        attrs = json.dumps(engine.images.get(image.ref).attrs)
        assert found.env["JUPYTERHUB_API_TOKEN"] not in attrs and "JUPYTERHUB_SERVICE_PREFIX=/user/alice/" in attrs
    finally:
        services.delete_image(image)
        run(alice.delete_forever())


def test_a_moved_hub_server_keeps_the_hubs_environment_and_address_record(hub_settings, make_node, image,
                                                                          live_server, registry, engine):
    """The operator moves a hub user's server in the master (admin, ipynbsrv_move): the copy on the
    other node gets the hub's environment again (its API token); the hub's next poll reports it
    stopped (the proxy's route is stale), the hub stops it (a suspend) and the next start resumes it
    at its new address."""
    from ipynbsrv_backends import services
    from ipynbsrv_backends.models import Node

    n1 = make_node("n1", registry=registry, registry_insecure=True)
    make_node("n2", registry=registry, registry_insecure=True)
    token = add_hub("lab")
    Node.objects.filter(name="n2").update(enabled=False)  # the first placement goes to n1
    alice = spawner(live_server.url, token)
    before = run(alice.start())
    found = server_of(alice)
    assert found.container.node == n1
    Node.objects.filter(name="n2").update(enabled=True)
    moved = services.move_container(found.container, Node.objects.get(name="n2"))
    env = dict(line.split("=", 1) for line in engine.containers.get(moved.backend_pk).attrs["Config"]["Env"])
    assert env["JUPYTERHUB_API_TOKEN"] == found.env["JUPYTERHUB_API_TOKEN"]
    answer = hub_client(token).get(f"/api/hub/servers/{alice.server_id}/").json()
    assert answer["node"] == "n2" and answer["status"] == "running" and answer["url"] != before
    assert run(alice.poll()) == 0
    run(alice.stop())
    assert Container.objects.get(pk=alice.server_id).status == "suspended"
    assert run(alice.start()) == answer["url"] and run(alice.poll()) is None
    assert Container.objects.get(pk=alice.server_id).status == "running"
    run(alice.delete_forever())


def test_a_node_that_is_down_reaches_the_hub_in_the_masters_words(hub_settings, make_node, image, live_server):
    """The only node's engine does not answer: the hub's start fails with what the master says."""
    make_node("n1", base_url="tcp://127.0.0.1:9")  # nothing listens there
    alice = spawner(live_server.url, add_hub("lab"))
    with pytest.raises(MasterError) as failed:
        run(alice.start())
    assert failed.value.code in ("no_node_available", "backend_unavailable"), (failed.value.code, failed.value)
    assert "n1" in str(failed.value) or "node" in str(failed.value), str(failed.value)


@pytest.fixture
def pushed(engine, registry):
    """An image in the real registry with a layer of its own (30 MB of random bytes) that the
    engine lacks, so a node pulls it (the recipe of test_pull_progress.py)."""
    from ipynbsrv_backends.backends import Docker

    from ..conftest import backend_options

    pusher = Docker(**backend_options(registry=registry))
    source = pusher.create_container("alice", 4242, "source", [], [], image=TEST_IMAGE)
    pusher.exec_in_container(source["pk"], ["sh", "-c", "head -c 30000000 /dev/urandom > /blob"])
    image = pusher.create_container_image(source["pk"], "hub-pull")  # pushed to the registry
    engine.images.remove(image["pk"], force=True)
    pusher.delete_container(source["pk"])
    yield image["pk"]
    try:
        engine.images.remove(image["pk"], force=True)
    except Exception:  # noqa: BLE001 - not pulled, or already gone
        pass


def test_the_hub_sees_the_nodes_pull_as_progress(hub_settings, make_node, live_server, registry, pushed):
    make_node("n1", registry=registry, registry_insecure=True, pull_policy="if-not-present")
    Image.objects.create(name="pulled", ref=pushed, public=True)
    alice = spawner(live_server.url, add_hub("lab"))
    alice.user_options = {"image": "pulled"}

    async def start_with_progress() -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []

        async def follow() -> None:
            async for event in alice.progress():
                events.append(event)

        follower = asyncio.ensure_future(follow())
        await alice.start()
        await asyncio.wait_for(follower, 10)
        return events

    events = run(start_with_progress())
    pulling = [e for e in events if e["message"].startswith(f"pulling {pushed} on n1")]
    assert pulling, events
    assert all(10 <= e["progress"] <= 80 for e in pulling)
    for event in pulling:
        if "%)" in event["message"]:
            percent = int(event["message"].rsplit("(", 1)[1].split(" ", 1)[0])
            assert event["progress"] == min(10 + int(0.7 * percent), 80)
    assert events[-1]["message"] == "running on n1"
    run(alice.delete_forever())
