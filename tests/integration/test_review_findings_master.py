"""Three findings of an outside review on the master side, each against the real parts.

1. User names placed into host paths and URLs (``{username}`` in ``CONTAINER_VOLUMES`` and
   ``CONTAINER_BASE_URL``): a user ``.`` or ``..`` got the homes root (or the directory
   above it) mounted. Such names are now refused at create; other names Django allows
   (``@``, ``+``, ``-``, inner dots) get exactly their own directory.
2. ``manage.py check --deploy`` failed (``drf_spectacular.E001``) in a project that includes
   the host API URLs.
3. Cross-site requests on the users' API: a browser prompted for Basic credentials and then
   sent them with another site's form POST, which stopped a container.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from django.core import checks
from django.test import override_settings
from django.urls import include, path
from rest_framework.test import APIClient

from ipynbsrv_backends import registry, services
from ipynbsrv_backends.errors import InvalidArgumentError
from ipynbsrv_backends.models import Container
from ipynbsrv_backends.proxy import container_for_path

from ..conftest import ALLOWED_ROOT
from .test_api import API, _api, body, client_for, create  # noqa: F401 - fixtures
from .test_browser import browser  # noqa: F401 - fixture

# A project that includes both APIs the way docs/api.md and docs/hostapi.md show.
urlpatterns = [
    path("hostapi/", include("ipynbsrv_backends.hostapi.urls")),
    path("api/", include("ipynbsrv_backends.api.urls")),
]

PASSWORD = "a-password"


def basic(username: str, password: str = PASSWORD) -> APIClient:
    client = APIClient()
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    client.credentials(HTTP_AUTHORIZATION=f"Basic {token}")
    return client


def engine_container(engine, container: Container) -> Any:
    return engine.containers.get(container.backend_pk)


# ---------------------------------------------------------------------------- 1. names in paths

@pytest.fixture
def homes(master_settings):
    """A homes root below the backend's allowed volume root, with ``{username}`` binds as in
    docs/deployment.md; alice's home holds a private file."""
    root = ALLOWED_ROOT / f"homes-{uuid.uuid4().hex[:6]}"
    (root / "alice").mkdir(parents=True)
    (root / "alice" / "alice-private.txt").write_text("alice's\n")
    master_settings.IPYNBSRV_BACKENDS = {
        **master_settings.IPYNBSRV_BACKENDS,
        "CONTAINER_VOLUMES": [{"source": f"{root}/{{username}}", "target": "/home/work"}],
    }
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.engine
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("username", [".", "..", "...", ".zfs"])
def test_a_dot_username_never_gets_a_shared_directory(username, homes, django_user_model, alice, make_node,
                                                      image, engine):
    (homes / ".zfs").mkdir()  # like a file system's snapshot directory next to the homes
    node = make_node("n1")
    user = django_user_model.objects.create_user(username, password=PASSWORD)
    response = create(basic(username), "nb", image)
    assert response.status_code == 400, body(response)
    answer = body(response)
    assert answer["code"] == "invalid_argument"
    assert repr(username) in answer["detail"] and "{uid}" in answer["detail"] and "{username}" in answer["detail"]
    with pytest.raises(InvalidArgumentError):
        services.create_container(user, "nb", image=image)
    assert not Container.objects.exists()
    label = f"org.ipynbsrv.instance={node.backend.config['instance']}"
    assert engine.containers.list(all=True, filters={"label": label}) == []


@pytest.mark.engine
@pytest.mark.django_db(transaction=True)
def test_a_dot_username_is_refused_for_the_base_url_too(master_settings, django_user_model, make_node, image):
    make_node("n1")  # no volumes: only CONTAINER_BASE_URL's {username} places the name
    django_user_model.objects.create_user(".", password=PASSWORD)
    response = create(basic("."), "nb", image)
    assert response.status_code == 400 and body(response)["code"] == "invalid_argument", body(response)
    assert not Container.objects.exists()  # no base URL /notebooks/./nb/ was ever recorded


@pytest.mark.engine
@pytest.mark.django_db(transaction=True)
def test_a_dot_username_works_where_its_name_is_not_placed(master_settings, django_user_model, make_node, image,
                                                          engine):
    master_settings.IPYNBSRV_BACKENDS = {**master_settings.IPYNBSRV_BACKENDS,
                                         "CONTAINER_BASE_URL": "/notebooks/{uid}/{name}/"}
    make_node("n1")
    user = django_user_model.objects.create_user("..", password=PASSWORD)
    response = create(basic(".."), "nb", image)
    assert response.status_code == 201, body(response)
    assert body(response)["base_url"] == f"/notebooks/{services._uid(user)}/nb/"


@pytest.mark.engine
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("username", ["a@b+c-d", "-dash", "x.y", "trailing.", "x..y"])
def test_other_names_django_allows_get_exactly_their_own_directory(username, homes, django_user_model, alice,
                                                                    make_node, image, engine):
    make_node("n1")
    own = homes / username
    own.mkdir()
    (own / "mine.txt").write_text("mine\n")
    django_user_model.objects.create_user(username, password=PASSWORD)
    response = create(basic(username), "nb", image)
    assert response.status_code == 201, body(response)
    container = Container.objects.get(pk=body(response)["id"])

    mounts = [m for m in engine_container(engine, container).attrs["Mounts"] if m["Destination"] == "/home/work"]
    assert len(mounts) == 1
    source = os.path.realpath(mounts[0]["Source"])
    assert source == os.path.realpath(own)
    assert source not in (os.path.realpath(homes), os.path.realpath(ALLOWED_ROOT), os.path.realpath(homes / "alice"))
    assert Path(source).parent == Path(os.path.realpath(homes))
    listing = registry.get_backend(container.node).exec_in_container(container.backend_pk, ["ls", "-a", "/home/work"])
    assert "mine.txt" in listing and "alice" not in listing, listing

    assert container.base_url == f"/notebooks/{username}/nb/"
    assert container_for_path(f"/notebooks/{username}/nb/tree") == container


def test_fill_names_refuses_hostile_names_and_keeps_others_verbatim():
    from ipynbsrv_backends.validation import fill_names

    template = [{"source": "/srv/homes/{username}", "target": "/w/{name}"}, "/n/{uid}/{username}/{name}/"]
    names = {"uid": 2001, "username": "a@b+c-d", "name": "nb"}
    assert fill_names(template, names) == [{"source": "/srv/homes/a@b+c-d", "target": "/w/nb"},
                                           "/n/2001/a@b+c-d/nb/"]
    for hostile in [".", "..", ".hidden", "a/b", "../x", "a\x00b", "", "a b", "a%2fb", "a?b", "a#b", "x" * 151]:
        with pytest.raises(InvalidArgumentError):
            fill_names(template, {**names, "username": hostile})
        with pytest.raises(InvalidArgumentError):
            fill_names("/{name}/", {"name": hostile})
    # a name the templates do not use is not checked
    assert fill_names("/srv/u{uid}", {"uid": 1, "username": ".."}) == "/srv/u1"


# ---------------------------------------------------------------------------- 2. check --deploy

@pytest.mark.django_db
def test_check_deploy_passes_with_both_apis_included():
    with override_settings(ROOT_URLCONF=__name__):
        messages = checks.run_checks(include_deployment_checks=True)
    ours = [m for m in messages
            if m.level >= checks.ERROR or str(m.id).startswith(("drf_spectacular", "ipynbsrv"))]
    assert ours == [], [f"{m.id}: {m.msg}" for m in ours]


# ---------------------------------------------------------------------------- 3. cross-site requests

FOREIGN = "https://evil.example"


def running(engine, container: Container) -> bool:
    return engine_container(engine, container).attrs["State"]["Running"]


@pytest.mark.engine
@pytest.mark.django_db(transaction=True)
def test_a_cross_site_form_post_cannot_stop_a_container(alice, make_node, image, engine, settings):
    make_node("n1")
    api = client_for(alice)  # Basic credentials, as a browser that remembered them sends them
    container = Container.objects.get(pk=body(create(api, "nb", image))["id"])
    stop = f"{API}/containers/{container.pk}/stop/"
    assert running(engine, container)

    refused = [
        ({"HTTP_ORIGIN": FOREIGN}, "text/plain", "x=y", 403),
        ({"HTTP_ORIGIN": FOREIGN}, "application/x-www-form-urlencoded", "x=y", 403),
        ({"HTTP_ORIGIN": FOREIGN}, "application/json", "{}", 403),
        ({"HTTP_ORIGIN": "null"}, "text/plain", "x=y", 403),  # a sandboxed page, a data: URL
        ({"HTTP_ORIGIN": "http://testserver.evil.example"}, "application/json", "{}", 403),
        ({"HTTP_REFERER": f"{FOREIGN}/page.html"}, "text/plain", "x=y", 403),
        ({"HTTP_ORIGIN": "http://testserver"}, "text/plain", "x=y", 415),  # not JSON, even same-site
        ({}, "multipart/form-data; boundary=x", "--x--", 415),
    ]
    for headers, content_type, data, expected in refused:
        response = api.post(stop, data, content_type=content_type, **headers)
        answer = body(response)
        assert response.status_code == expected, (headers, content_type, answer)
        assert set(answer) == {"code", "detail"}
        assert answer["code"] == ("cross_site_request" if expected == 403 else "unsupported_media_type")
        assert answer["detail"]
        assert running(engine, container), (headers, content_type)
    container.refresh_from_db()
    assert container.status == "running"

    # The site's own pages (same Origin, JSON), and clients that send no Origin, still act.
    response = api.post(stop, {}, format="json", HTTP_ORIGIN="http://testserver",
                        HTTP_REFERER="http://testserver/page/")
    assert response.status_code == 200 and body(response)["status"] == "stopped", body(response)
    assert not running(engine, container)
    response = api.post(f"{API}/containers/{container.pk}/start/")  # like `curl -u -X POST`
    assert response.status_code == 200 and body(response)["status"] == "running", body(response)
    # An origin Django's CSRF check trusts is trusted here too.
    settings.CSRF_TRUSTED_ORIGINS = ["https://*.example.org"]
    response = api.post(stop, {}, format="json", HTTP_ORIGIN="https://app.example.org")
    assert response.status_code == 200, body(response)
    response = api.post(f"{API}/containers/{container.pk}/start/", HTTP_ORIGIN="https://example.org.evil.example")
    assert response.status_code == 403 and not running(engine, container)


@pytest.mark.engine
@pytest.mark.django_db(transaction=True)
def test_cross_site_creates_and_deletes_are_refused_too(alice, make_node, image, engine):
    make_node("n1")
    api = client_for(alice)
    response = api.post(f"{API}/containers/", {"name": "nb", "image": image.pk}, format="json", HTTP_ORIGIN=FOREIGN)
    assert response.status_code == 403 and body(response)["code"] == "cross_site_request"
    assert not Container.objects.exists()
    pk = body(create(api, "nb", image))["id"]
    response = api.delete(f"{API}/containers/{pk}/", HTTP_ORIGIN=FOREIGN)
    assert response.status_code == 403 and Container.objects.filter(pk=pk).exists()
    assert api.get(f"{API}/containers/", HTTP_ORIGIN=FOREIGN).status_code == 200  # reading is not acting


@pytest.mark.django_db
def test_401_does_not_make_browsers_prompt(alice):
    for client in (APIClient(), basic("alice", "wrong")):
        response = client.get(f"{API}/containers/")
        assert response.status_code == 401
        challenge = response.get("WWW-Authenticate", "")
        assert challenge and challenge.split()[0].lower() != "basic", challenge
    assert client_for(alice).get(f"{API}/containers/").status_code == 200  # Basic sent up front works


@pytest.mark.engine
@pytest.mark.django_db(transaction=True)
def test_session_requests_still_need_the_csrf_token(alice, make_node, image, engine):
    make_node("n1")
    client = APIClient(enforce_csrf_checks=True)
    assert client.login(username="alice", password="alice-password")
    response = client.post(f"{API}/containers/", {"name": "nb", "image": image.pk}, format="json",
                           HTTP_ORIGIN="http://testserver")
    assert response.status_code == 403 and "CSRF" in body(response)["detail"]
    assert not Container.objects.exists()


@pytest.mark.engine
@pytest.mark.django_db(transaction=True)
def test_curl_with_basic_credentials_works_over_http(live_server, alice, make_node, image, engine):
    if shutil.which("curl") is None:
        pytest.skip("curl is needed")
    make_node("n1")
    base = f"{live_server.url}{API}"

    def curl(*args: str) -> tuple[int, str]:
        out = subprocess.run(["curl", "-sS", "--max-time", "120", "-o", "-", "-w", "\n%{http_code}", *args],
                             capture_output=True, text=True, timeout=150, check=True).stdout
        text, _sep, code = out.rpartition("\n")
        return int(code), text

    code, text = curl("-u", "alice:alice-password", "-H", "Content-Type: application/json",
                      "-d", f'{{"name": "nb", "image": {image.pk}}}', f"{base}/containers/?wait=true")
    assert code == 201, text
    container = Container.objects.get()
    code, text = curl("-u", "alice:alice-password", "-X", "POST", f"{base}/containers/{container.pk}/stop/")
    assert code == 200 and '"stopped"' in text, text
    code, text = curl("-u", "alice:alice-password", "-H", f"Origin: {FOREIGN}", "-H", "Content-Type: text/plain",
                      "-d", "x=y", f"{base}/containers/{container.pk}/start/")
    assert code == 403 and "cross_site_request" in text, text
    assert not running(engine, container)
    code, text = curl("-i", f"{base}/containers/")
    assert code == 401 and "www-authenticate: basic" not in text.lower(), text


@pytest.fixture
def foreign_site(tmp_path):
    """Another site (another origin: 127.0.0.1 on a port of its own) serving ``tmp_path``."""
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield tmp_path, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.mark.engine
@pytest.mark.django_db(transaction=True)
def test_a_browser_with_remembered_basic_credentials_cannot_be_used_by_another_site(
        live_server, browser, foreign_site, alice, make_node, image, engine):
    from ..utils import wait_for

    make_node("n1")
    container = Container.objects.get(pk=body(create(client_for(alice), "nb", image))["id"])
    assert running(engine, container)
    root, foreign = foreign_site
    target = f"{live_server.url}{API}/containers/{container.pk}/stop/"
    (root / "attack.html").write_text(
        "<!doctype html><html><body>"
        f'<form id="f" method="post" enctype="text/plain" action="{target}">'
        '<input type="hidden" name="x" value="y"></form>'
        "<script>document.getElementById('f').submit()</script></body></html>"
    )
    # The browser sends alice's Basic credentials with every request, as one that once
    # answered a Basic prompt for the master does.
    token = base64.b64encode(b"alice:alice-password").decode()
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {token}"}})
    browser.get(f"{live_server.url}{API}/containers/")
    assert '"nb"' in browser.page_source  # the credentials work for the site itself

    browser.get(f"{foreign}/attack.html")
    wait_for(lambda: browser.current_url.startswith(live_server.url), timeout=30, what="the form to be submitted")
    wait_for(lambda: "cross_site_request" in browser.page_source, timeout=30, what="the API's refusal")
    assert running(engine, container)
    container.refresh_from_db()
    assert container.status == "running"
