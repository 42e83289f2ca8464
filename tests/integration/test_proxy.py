"""Access through the master's reverse proxy: the ``auth_request`` view on its own, then a
real nginx (Debian's, running ``docs/proxy-nginx.conf``) in front of the test server and a
real notebook container."""

from __future__ import annotations

import pytest
import requests

from ipynbsrv_backends import services
from ipynbsrv_backends.models import Backend, Container, Image, Node
from ipynbsrv_backends.proxy import UPSTREAM_HEADER

from ..notebook import Jupyter, nginx, notebook_image, signed_in  # noqa: F401

AUTH = "/proxy/auth/"


# ---------------------------------------------------------------------------- the view

@pytest.fixture
def node(db):
    backend = Backend.objects.create(name="docker", kind="Docker", config={})
    return Node.objects.create(name="n1", address="10.0.0.2", backend=backend)


def container(owner, name, node, port=41234, internal=8888, **more):
    ports = [{"address": node.address, "external": port, "internal": internal}] if port else []
    return Container.objects.create(owner=owner, name=name, node=node, status="running", ports=ports,
                                    base_url=f"/notebooks/{owner.username}/{name}/", **more)


def ask(client, uri, method="get"):
    return getattr(client, method)(AUTH, headers={"X-Original-URI": uri})


def test_the_owner_is_let_through_to_the_containers_port(client, alice, node):
    container(alice, "nb", node)
    client.force_login(alice)
    for uri in ("/notebooks/alice/nb/", "/notebooks/alice/nb/tree?x=1", "/notebooks/alice/nb/api/kernels/k/channels"):
        answer = ask(client, uri)
        assert answer.status_code == 200, uri
        assert answer[UPSTREAM_HEADER] == "10.0.0.2:41234"
        assert answer["X-Ipynbsrv-Status"] == "running"
        assert "no-cache" in answer["Cache-Control"]


def test_a_visitor_who_is_not_signed_in_gets_401(client, alice, node):
    container(alice, "nb", node)
    answer = ask(client, "/notebooks/alice/nb/tree")
    assert answer.status_code == 401
    assert UPSTREAM_HEADER not in answer


def test_another_user_gets_403_as_for_a_container_that_does_not_exist(client, alice, bob, node):
    container(alice, "nb", node)
    client.force_login(bob)
    for uri in ("/notebooks/alice/nb/tree", "/notebooks/bob/nb/tree", "/notebooks/", "/elsewhere", ""):
        answer = ask(client, uri)
        assert answer.status_code == 403, uri
        assert UPSTREAM_HEADER not in answer


def test_staff_get_in_only_when_the_setting_allows_it(client, alice, node, django_user_model, settings):
    container(alice, "nb", node)
    client.force_login(django_user_model.objects.create_user("root", is_staff=True))
    assert ask(client, "/notebooks/alice/nb/").status_code == 403
    settings.IPYNBSRV_BACKENDS = {"PROXY_STAFF_ACCESS": True}
    assert ask(client, "/notebooks/alice/nb/").status_code == 200


def test_dot_segments_and_doubled_slashes_match_nothing(client, alice, node):
    container(alice, "nb", node)
    client.force_login(alice)
    for uri in ("/notebooks/alice/nb/../nb/tree", "/notebooks/alice/nb/%2e%2e/x", "/notebooks//alice/nb/",
                "/notebooks/alice/./nb/"):
        assert ask(client, uri).status_code == 403, uri
    assert ask(client, "/notebooks/alice/n%62/tree").status_code == 200  # decoded once: "nb"


def test_the_longest_base_url_wins(client, alice, node):
    container(alice, "nb", node, port=41001)
    longer = container(alice, "nb-2", node, port=41002)
    longer.base_url = "/notebooks/alice/nb/inner/"
    longer.save()
    client.force_login(alice)
    assert ask(client, "/notebooks/alice/nb/tree")[UPSTREAM_HEADER] == "10.0.0.2:41001"
    assert ask(client, "/notebooks/alice/nb/inner/tree")[UPSTREAM_HEADER] == "10.0.0.2:41002"


def test_a_base_url_two_containers_share_routes_to_neither(client, alice, bob, node):
    container(alice, "nb", node)
    shared = container(bob, "nb", node, port=41002)
    shared.base_url = "/notebooks/alice/nb/"
    shared.save()
    client.force_login(alice)
    assert ask(client, "/notebooks/alice/nb/").status_code == 403


def test_proxy_port_picks_the_port_and_no_published_port_gives_no_upstream(client, alice, node, settings):
    nb = container(alice, "nb", node)
    nb.ports = [{"address": "10.0.0.2", "external": 41001, "internal": 22},
                {"address": "10.0.0.2", "external": 41002, "internal": 8888}]
    nb.save()
    client.force_login(alice)
    assert ask(client, "/notebooks/alice/nb/")[UPSTREAM_HEADER] == "10.0.0.2:41001"
    settings.IPYNBSRV_BACKENDS = {"PROXY_PORT": 8888}
    assert ask(client, "/notebooks/alice/nb/")[UPSTREAM_HEADER] == "10.0.0.2:41002"
    container(alice, "creating", node, port=None)
    answer = ask(client, "/notebooks/alice/creating/")
    assert answer.status_code == 200 and UPSTREAM_HEADER not in answer


def test_any_method_is_answered_without_a_csrf_token(alice, node):
    from django.test import Client

    container(alice, "nb", node)
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    assert ask(client, "/notebooks/alice/nb/api/contents/x.ipynb", method="put").status_code == 200
    assert ask(client, "/notebooks/alice/nb/api/kernels", method="post").status_code == 200


# ---------------------------------------------------------------------------- real nginx

def test_nginx_passes_the_url_unchanged_and_keeps_the_session_cookie_from_the_container(
        transactional_db, nginx, node, alice):
    from ..tiny_servers import CannedNode

    with CannedNode(lambda method, path, headers, body: (200, {}, b"stand-in")) as stand_in:
        port = int(stand_in.url.rsplit(":", 1)[1])
        nb = container(alice, "nb", node, port=port)
        nb.ports = [{"address": "127.0.0.1", "external": port, "internal": 8888}]
        nb.save()
        cookies = {"before": "1", **signed_in(alice), "after": "2"}
        header = "; ".join(f"{k}={v}" for k, v in cookies.items())
        answer = requests.post(nginx.url + "/notebooks/alice/nb/api/x%20y?z=1", data=b"body",
                               headers={"Cookie": header}, timeout=10)
        assert answer.status_code == 200 and answer.text == "stand-in", nginx.log()
        seen = stand_in.requests[-1]
    assert seen["method"] == "POST" and seen["path"] == "/notebooks/alice/nb/api/x%20y?z=1"
    assert seen["body"] == b"body"
    assert seen["headers"]["Host"] == f"127.0.0.1:{nginx.port}"
    assert "sessionid" not in seen["headers"]["Cookie"], seen["headers"]["Cookie"]
    assert "before=1" in seen["headers"]["Cookie"] and "after=2" in seen["headers"]["Cookie"]


# ---------------------------------------------------------------------------- real nginx, real notebook

@pytest.mark.engine
def test_through_nginx_only_the_owner_reaches_a_real_notebook(
        transactional_db, engine, make_node, notebook_image, nginx, settings, django_user_model):
    settings.IPYNBSRV_BACKENDS = {"CONTAINER_PORTS": [8888], "CONTAINER_VOLUMES": []}
    owner = django_user_model.objects.create_user("alice")
    other = django_user_model.objects.create_user("bob")
    image = Image.objects.create(name="jupyter", ref=notebook_image, public=True)
    nb = services.create_container(owner, "nb", image=image, node=make_node("proxy"))
    assert nb.base_url == "/notebooks/alice/nb/"
    base = nginx.url + nb.base_url

    # The engine binds the notebook's port to the node's internal address, nowhere else.
    info = engine.api.inspect_container(nb.backend_pk)
    bound = info["NetworkSettings"]["Ports"]["8888/tcp"]
    assert bound and {b["HostIp"] for b in bound} == {"127.0.0.1"}, bound
    assert {b["HostIp"] for b in info["HostConfig"]["PortBindings"]["8888/tcp"]} == {"127.0.0.1"}

    jupyter = Jupyter(base, signed_in(owner))
    try:
        jupyter.wait_ready()
        tree = jupyter.get("tree")
        assert tree.status_code == 200 and "Jupyter" in tree.text
        assert jupyter.get("api/contents").json()["type"] == "directory"
    finally:
        jupyter.close()

    stranger = requests.get(base + "tree", cookies=signed_in(other), timeout=10, allow_redirects=False)
    assert stranger.status_code == 403
    nobody = requests.get(base + "api/status", timeout=10, allow_redirects=False)
    assert nobody.status_code == 401
    assert requests.get(base + "api/status", cookies={"sessionid": "forged"}, timeout=10).status_code == 401

    # A stopped notebook: let through, but nginx says it does not answer.
    services.stop_container(nb)
    down = requests.get(base + "api/status", cookies=signed_in(owner), timeout=10)
    assert down.status_code == 502 and "does not answer" in down.text, nginx.log()
