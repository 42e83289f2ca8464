"""The host API views in-process, through the test project's URLs (``/hostapi/``).

Routing, validation, error bodies and authentication are pure view logic and are tested
here against the tiny fakes of ``hostapi_fakes`` (so a test can see that a refused request
never even built a backend). That the views work over a real engine is shown by the
last tests here (the test project's URLs in front of the real ``Docker``) and by the
contract suite through a real ``ipynbsrv_hostapi`` process.
"""

from __future__ import annotations

import json

import pytest
from django.test import Client

from ipynbsrv_backends.hostapi.node import reset_backend
from ipynbsrv_backends.hostapi.wire import encode_pk

from .. import hostapi_fakes
from ..conftest import TEST_IMAGE, backend_options

TOKEN = "test-token-0123456789"
FULL = "tests.hostapi_fakes.FullBackend"
BASE_ONLY = "tests.hostapi_fakes.BaseOnlyBackend"
PREFIX = "/hostapi/"


def configure(settings, backend=FULL, options=None, token=TOKEN, insecure=False):
    settings.IPYNBSRV_BACKENDS = {
        "HOSTAPI_BACKEND": backend,
        "HOSTAPI_BACKEND_OPTIONS": options or {},
        "HOSTAPI_TOKEN": token,
        "HOSTAPI_INSECURE_NO_TOKEN": insecure,
    }


@pytest.fixture(autouse=True)
def fresh(settings, monkeypatch):
    monkeypatch.delenv("IPYNBSRV_HOSTAPI_TOKEN", raising=False)
    configure(settings)
    reset_backend()
    hostapi_fakes.CALLS.clear()
    yield
    reset_backend()
    hostapi_fakes.CALLS.clear()


@pytest.fixture
def api():
    return Client(HTTP_AUTHORIZATION=f"Bearer {TOKEN}")


def post(client, path, body=None, **extra):
    data = json.dumps(body) if body is not None else ""
    return client.post(PREFIX + path, data=data, content_type="application/json", **extra)


def create_body(**more):
    body = {"username": "alice", "uid": 1000, "name": "nb", "ports": [], "volumes": [],
            "image": "img/busybox:latest"}
    body.update(more)
    return body


def called(name):
    return [call for call in hostapi_fakes.CALLS if call[0] == name]


# --------------------------------------------------------------------------- liveness

def test_health_is_open_and_touches_nothing():
    response = Client().get(PREFIX + "health/")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert hostapi_fakes.CALLS == []


# --------------------------------------------------------------------------- authentication

@pytest.mark.parametrize("header", [
    None, "", "Bearer", "Bearer ", "Bearer wrong", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}",
    f"Basic {TOKEN}", f"Token {TOKEN}", TOKEN,
])
def test_bad_credentials_are_401_and_build_no_backend(header):
    client = Client(HTTP_AUTHORIZATION=header) if header is not None else Client()
    for response in (
        client.get(PREFIX + "status/"),
        client.get(PREFIX + "containers/"),
        post(client, "containers/", create_body()),
        client.delete(PREFIX + f"containers/{encode_pk('fake-alice-nb')}/"),
        client.get(PREFIX + "schema/"),
    ):
        assert response.status_code == 401, response.content
        assert response.json()["code"] == "authentication_failed"
        assert response["WWW-Authenticate"].startswith("Bearer")
    assert hostapi_fakes.CALLS == []  # not even built


def test_token_in_the_query_string_is_not_accepted():
    response = Client().get(PREFIX + f"containers/?token={TOKEN}")
    assert response.status_code == 401


def test_no_token_configured_refuses_everything(settings):
    configure(settings, token=None)
    for header in ("Bearer ", "Bearer None", "Bearer anything"):
        response = Client(HTTP_AUTHORIZATION=header).get(PREFIX + "containers/")
        assert response.status_code == 401
    assert hostapi_fakes.CALLS == []


def test_token_from_the_environment(settings, monkeypatch):
    configure(settings, token=None)
    monkeypatch.setenv("IPYNBSRV_HOSTAPI_TOKEN", "from-env")
    assert Client(HTTP_AUTHORIZATION="Bearer from-env").get(PREFIX + "containers/").status_code == 200
    assert Client(HTTP_AUTHORIZATION=f"Bearer {TOKEN}").get(PREFIX + "containers/").status_code == 401


def test_insecure_mode_without_token(settings):
    configure(settings, token=None, insecure=True)
    assert Client().get(PREFIX + "containers/").status_code == 200


def test_a_configured_token_wins_over_insecure_mode(settings):
    configure(settings, insecure=True)
    assert Client().get(PREFIX + "containers/").status_code == 401
    assert Client(HTTP_AUTHORIZATION=f"Bearer {TOKEN}").get(PREFIX + "containers/").status_code == 200


# --------------------------------------------------------------------------- the calls

def test_create_passes_values_and_options_unchanged(api):
    ports = [{"address": "127.0.0.1", "external": None, "internal": 8888}]
    response = post(api, "containers/", create_body(ports=ports, cmd=["sh", "-c", "x"],
                                                     options={"env": {"A": 1}}))
    assert response.status_code == 201, response.content
    record = response.json()
    assert record["pk"] == "fake-alice-nb"
    assert response["Location"] == f"/hostapi/containers/{encode_pk('fake-alice-nb')}/"
    [call] = called("create_container")
    assert call[1] == ("alice", 1000, "nb", ports, [], ["sh", "-c", "x"], None, "img/busybox:latest", None)
    assert call[2] == {"env": {"A": 1}}


def test_pks_with_slashes_and_colons_travel_in_the_path(api):
    post(api, "containers/", create_body())
    pk = "fake-alice-nb"
    image = post(api, "images/", {"container": pk, "name": "stack"}).json()
    assert image["pk"] == "img/stack:latest"
    response = api.get(PREFIX + f"images/{encode_pk(image['pk'])}/")
    assert response.status_code == 404 and response.json()["code"] == "image_not_found"
    assert called("get_container_image")[0][1] == ("img/stack:latest",)
    assert api.get(PREFIX + f"images/{encode_pk('img/busybox:latest')}/exists/").json() == {"exists": True}


@pytest.mark.parametrize("path,method,body,expected", [
    ("containers/{pk}/", "get", None, {"pk": "fake-alice-nb"}),
    ("containers/{pk}/exists/", "get", None, {"exists": True}),
    ("containers/{pk}/running/", "get", None, {"running": True}),
    ("containers/{pk}/suspended/", "get", None, {"suspended": False}),
    ("containers/{pk}/exec/", "post", {"cmd": "echo hi"}, {"output": "ran 'echo hi'\n"}),
    ("containers/{pk}/snapshots/", "get", None, []),
])
def test_reads(api, path, method, body, expected):
    post(api, "containers/", create_body())
    url = PREFIX + path.format(pk=encode_pk("fake-alice-nb"))
    response = getattr(api, method)(url, data=json.dumps(body), content_type="application/json") \
        if body is not None else getattr(api, method)(url)
    assert response.status_code == 200, response.content
    answer = response.json()
    if isinstance(expected, dict) and "pk" in expected:
        assert answer["pk"] == expected["pk"]
    else:
        assert answer == expected


@pytest.mark.parametrize("action,status", [("stop", "stopped"), ("start", "running"), ("suspend", "suspended"),
                                           ("resume", "running")])
def test_actions_answer_204(api, action, status):
    post(api, "containers/", create_body())
    pk = encode_pk("fake-alice-nb")
    response = post(api, f"containers/{pk}/{action}/")
    assert response.status_code == 204, response.content
    assert api.get(PREFIX + f"containers/{pk}/").json()["status"] == status


@pytest.mark.parametrize("body,status,options", [
    (None, 204, {}),
    ({}, 204, {}),
    ({"options": {}}, 204, {}),
    ({"options": {"timeout": 3}}, 204, {"timeout": 3}),
    ({"options": '{"timeout": 3}'}, 204, {"timeout": 3}),  # JSON text, as in a query string
    ({"options": ["timeout"]}, 400, None),
    ({"options": {}, "colour": "blue"}, 400, None),
    ([{"options": {}}], 400, None),
])
def test_an_action_body_holds_only_options(api, body, status, options):
    """What an action accepts in its body (the common ``{"options": {}}`` takes a shortcut
    past the serializer: the answers must be the serializer's all the same)."""
    post(api, "containers/", create_body())
    pk = encode_pk("fake-alice-nb")
    response = post(api, f"containers/{pk}/stop/", body)
    assert response.status_code == status, response.content
    stops = called("stop_container")
    if status == 204:
        assert stops and stops[-1][2] == options
    else:
        assert response.json()["code"] == "invalid_argument" and not stops


@pytest.mark.parametrize("accept,status", [
    ("application/json", 200), ("*/*", 200), (None, 200), ("application/json; indent=2", 200),
    ("text/html, application/json;q=0.9", 200), ("text/html", 406),
])
def test_answers_are_json_whatever_is_asked(api, accept, status):
    extra = {"HTTP_ACCEPT": accept} if accept is not None else {}
    response = api.get(PREFIX + "containers/", **extra)
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    assert isinstance(response.json(), list if status == 200 else dict)


def test_query_values_are_json_with_a_string_fallback(api):
    post(api, "containers/", create_body())
    pk = encode_pk("fake-alice-nb")
    lines = api.get(PREFIX + f"containers/{pk}/logs/?tail=2&since=2026-01-31T12:00:00Z").json()
    assert lines == ["tail=2", "since='2026-01-31T12:00:00Z'"]
    lines = api.get(PREFIX + f'containers/{pk}/logs/?tail="2"&since=1700000000').json()
    assert lines == ["tail='2'", "since=1700000000"]  # types reach the backend as sent
    api.get(PREFIX + "containers/?only_running=true")
    assert called("get_containers")[-1][2] == {"only_running": True}


def test_options_reach_the_backend_which_judges_them(api):
    response = api.get(PREFIX + "containers/", {"options": json.dumps({"colour": "blue"})})
    assert response.status_code == 400
    assert response.json() == {"code": "invalid_argument", "detail": "Unknown option(s): colour"}


@pytest.mark.parametrize("body,fragment", [
    (create_body(uid="1000"), "uid"),
    (create_body(uid=True), "uid"),
    (create_body(username=7), "username"),
    (create_body(colour="blue"), "colour"),
    (create_body(ports="127.0.0.1:80:8888"), "ports"),
    (create_body(ports=[{"address": "127.0.0.1", "external": "80", "internal": 8888}]), "external"),
    (create_body(volumes=[{"source": "x"}]), "target"),
    (create_body(cmd=["ok", 3]), "cmd"),
    (create_body(options=["env"]), "options"),
    (create_body(options={"name": "other"}), "name"),
    ({"username": "alice"}, "uid"),
    ([1, 2], "JSON object"),
])
def test_bad_bodies_are_400_invalid_argument(api, body, fragment):
    response = post(api, "containers/", body)
    assert response.status_code == 400, response.content
    answer = response.json()
    assert answer["code"] == "invalid_argument" and fragment in answer["detail"]
    assert called("create_container") == []


def test_unparseable_json_is_400(api):
    response = api.post(PREFIX + "containers/", data="{not json", content_type="application/json")
    assert response.status_code == 400 and response.json()["code"] == "invalid_argument"


def test_unknown_query_parameter_is_400(api):
    response = api.get(PREFIX + "containers/?colour=blue")
    assert response.status_code == 400 and "colour" in response.json()["detail"]


@pytest.mark.parametrize("segment", ["YR", "a.b", "x%2Fy"])
def test_a_bad_pk_segment_is_400_or_unrouted(api, segment):
    response = api.get(PREFIX + f"containers/{segment}/")
    assert response.status_code in (400, 404)
    assert called("get_container") == []


def test_the_empty_pk_reaches_the_backend(api):
    response = api.get(PREFIX + "containers/=/")
    assert response.status_code == 404
    assert called("get_container")[0][1] == ("",)


# --------------------------------------------------------------------------- errors

def test_errors_keep_status_code_and_message(api):
    pk = encode_pk("fake-nobody-x")
    response = api.get(PREFIX + f"containers/{pk}/")
    assert response.status_code == 404
    assert response.json() == {"code": "container_not_found", "detail": "No container 'fake-nobody-x'."}
    post(api, "containers/", create_body())
    response = post(api, "containers/", create_body())
    assert response.status_code == 409 and response.json()["code"] == "already_exists"
    nb = encode_pk("fake-alice-nb")
    post(api, f"containers/{nb}/stop/")
    response = post(api, f"containers/{nb}/exec/", {"cmd": ["true"]})
    assert response.status_code == 409 and response.json()["code"] == "illegal_state"


def test_missing_sub_contract_is_501(api, settings):
    configure(settings, backend=BASE_ONLY)
    post(api, "containers/", create_body())
    pk = encode_pk("fake-alice-nb")
    for response in (
        post(api, f"containers/{pk}/suspend/"),
        post(api, f"containers/{pk}/resume/"),
        api.get(PREFIX + f"containers/{pk}/suspended/"),
        api.get(PREFIX + f"containers/{pk}/snapshots/"),
        post(api, f"containers/{pk}/snapshots/", {"name": "s"}),
        post(api, f"containers/{pk}/restore/", {"snapshot": "s"}),
        api.get(PREFIX + "snapshots/"),
        api.get(PREFIX + f"snapshots/{encode_pk('s')}/"),
    ):
        assert response.status_code == 501, response.content
        assert response.json()["code"] == "not_supported"
    assert api.get(PREFIX + "status/").json()["backend"]["capabilities"] == []


def test_a_broken_get_status_is_an_error_status(api, settings):
    configure(settings, options={"fail_status": True})
    post(api, "containers/", create_body())
    assert api.get(PREFIX + "status/").json()["backend"]["status"] == 2


def test_a_backend_bug_leaks_nothing(api, monkeypatch):
    def broken(self, **kwargs):
        raise KeyError("secret internals")

    monkeypatch.setattr(hostapi_fakes.FullBackend, "get_container_images", broken)
    response = api.get(PREFIX + "images/")
    assert response.status_code == 500
    assert response.json() == {"code": "backend_error", "detail": "Unexpected error on the node; see the node's log."}


@pytest.mark.parametrize("backend,options,fragment", [
    ("tests.hostapi_fakes.Nope", {}, "cannot be imported"),
    ("json.JSONDecoder", {}, "not a ContainerBackend"),
    (FULL, {"colour": "blue"}, "rejected its options"),
])
def test_misconfigured_backend_is_a_clear_500(api, settings, caplog, backend, options, fragment):
    configure(settings, backend=backend, options=options)
    response = api.get(PREFIX + "containers/")
    assert response.status_code == 500
    assert response.json()["code"] == "backend_error"
    assert "misconfigured" in response.json()["detail"]
    assert fragment in caplog.text


def test_status_counts_and_resources(api):
    post(api, "containers/", create_body())
    post(api, "containers/", create_body(name="two"))
    post(api, f"containers/{encode_pk('fake-alice-two')}/stop/")
    status = api.get(PREFIX + "status/").json()
    assert status["backend"] == {"status": 0, "capabilities": ["suspend", "snapshot"]}
    resources = status["resources"]
    assert resources["containers"] == {"running": 1, "total": 2}
    assert resources["cpu_count"] >= 1
    assert resources["memory_total"] >= resources["memory_available"] > 0
    assert len(resources["load_average"]) == 3


def test_backend_is_built_once_per_process(api):
    api.get(PREFIX + "containers/")
    api.get(PREFIX + "images/")
    assert len(called("__init__")) == 1


def test_a_forked_child_builds_its_own_backend(api):
    import os

    from ipynbsrv_backends.hostapi.node import get_backend

    parent = get_backend()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report whether it got a new instance, then leave at once
        try:
            os.close(read)
            before = len(called("__init__"))
            child = get_backend()
            fresh_instance = len(called("__init__")) == before + 1 and child is get_backend()
            os.write(write, b"1" if fresh_instance else b"0")
        finally:
            os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.close(read)
    os.waitpid(pid, 0)
    assert answer == b"1"
    assert get_backend() is parent


# --------------------------------------------------------------------------- the real engine

@pytest.mark.engine
def test_project_urls_serve_the_real_backend(api, settings, engine):
    """What ``manage.py runserver`` serves with ``path("hostapi/", include(...))``."""
    configure(settings, backend="ipynbsrv_backends.backends.Docker", options=backend_options())
    response = post(api, "containers/", create_body(image=TEST_IMAGE))
    assert response.status_code == 201, response.content
    record = response.json()
    pk = encode_pk(record["pk"])
    assert engine.containers.get(record["pk"]).status == "running"
    assert api.get(PREFIX + "containers/").json() == [api.get(PREFIX + f"containers/{pk}/").json()]
    assert api.get(PREFIX + "status/").json()["resources"]["containers"] == {"running": 1, "total": 1}
    assert api.delete(PREFIX + f"containers/{pk}/").status_code == 204
    assert api.get(PREFIX + f"containers/{pk}/exists/").json() == {"exists": False}


def test_the_schema_in_a_project_with_drfs_default_settings(api, settings):
    """The test project leaves REST_FRAMEWORK alone (DRF's own DEFAULT_SCHEMA_CLASS): the
    host API schema must still come from drf-spectacular, complete."""
    from rest_framework.settings import api_settings

    assert "drf_spectacular" not in api_settings.DEFAULT_SCHEMA_CLASS.__module__
    response = api.get(PREFIX + "schema/", {"format": "json"})
    assert response.status_code == 200
    schema = json.loads(response.content)
    assert schema["openapi"].startswith("3.")
    operations = {op["operationId"] for item in schema["paths"].values() for op in item.values()}
    assert len(operations) == 34 and "containers_restore" in operations and "keys_promote" in operations
    assert "events" in operations
    assert {"snapshots_export", "containers_snapshots_import"} <= operations
    assert "/containers/{container}/logs/" in schema["paths"]
    assert hostapi_fakes.CALLS == []  # describing the API builds no backend


def test_pull_where_the_backend_can(api, settings):
    response = post(api, "images/pull/", {"image": "img/busybox:latest"})
    assert response.status_code == 501 and response.json()["code"] == "not_supported"

    configure(settings, backend="tests.hostapi_fakes.TransferBackend")  # claims ImagePullingContainerBackend
    reset_backend()
    response = post(api, "images/pull/", {"image": "10.0.0.1:5000/a/b:c", "options": {"x": 1}})
    assert response.status_code == 200 and response.json()["pk"] == "10.0.0.1:5000/a/b:c"
    assert called("pull_container_image") == [("pull_container_image", ("10.0.0.1:5000/a/b:c",), {"x": 1})]
    assert post(api, "images/pull/", {}).status_code == 400


def test_status_lists_each_served_sub_contract_the_backend_claims(api, settings):
    from ipynbsrv_backends.contract import CAPABILITIES

    configure(settings, backend="tests.hostapi_fakes.TransferBackend")
    reset_backend()
    capabilities = api.get(PREFIX + "status/").json()["backend"]["capabilities"]
    # suspend and snapshot first, as before; then the sub-contracts of the table's other routes.
    assert capabilities == ["suspend", "snapshot", "snapshot_transfer", "image_pull"]
    assert set(capabilities) <= set(CAPABILITIES)


def test_snapshot_export_and_import_where_the_backend_can(api, settings):
    snapshot, container = "p-snapshots/p-u1-nb:s1", "p-u1-nb"
    export_path = f"snapshots/{encode_pk(snapshot)}/export/"
    import_path = f"containers/{encode_pk(container)}/snapshots/import/"
    body = {"name": "s1", "image": hostapi_fakes.TRANSFER_IMAGE}
    for path, data in ((export_path, {}), (import_path, body)):
        assert Client().post(PREFIX + path, data=json.dumps(data), content_type="application/json").status_code == 401
        response = post(api, path, data)
        assert response.status_code == 501 and response.json()["code"] == "not_supported"
    assert not called("export_container_snapshot") and not called("import_container_snapshot")

    configure(settings, backend="tests.hostapi_fakes.TransferBackend")  # claims SnapshotTransferContainerBackend
    reset_backend()
    response = post(api, export_path, {"options": {"x": 1}})
    assert response.status_code == 201 and response.json()["pk"] == body["image"]
    assert response["Location"] == f"{PREFIX}images/{encode_pk(body['image'])}/"
    assert called("export_container_snapshot") == [("export_container_snapshot", (snapshot,), {"x": 1})]
    assert post(api, export_path, {"options": {"snapshot": "other"}}).status_code == 400
    response = post(api, import_path, body)
    assert response.status_code == 201 and response.json()["pk"] == f"q-snapshots/{container}:s1"
    assert response["Location"] == f"{PREFIX}snapshots/{encode_pk(f'q-snapshots/{container}:s1')}/"
    assert called("import_container_snapshot") == [
        ("import_container_snapshot", (container, "s1", body["image"]), {})]
    for bad in ({}, {"name": "s1"}, {"name": 1, "image": "x"}, {**body, "colour": "blue"},
                {**body, "options": {"name": "again"}}):
        assert post(api, import_path, bad).status_code == 400, bad
    assert post(api, export_path, {"colour": "blue"}).status_code == 400
    assert post(api, "snapshots/not-base64!/export/", {}).status_code == 404



@pytest.mark.parametrize(("path", "body"), [
    (f"containers/{encode_pk('p-u1-nb')}/snapshots/", {"name": "s", "options": {"name": "x"}}),
    (f"containers/{encode_pk('p-u1-nb')}/restore/", {"snapshot": "s", "options": {"container": "x"}}),
    (f"containers/{encode_pk('p-u1-nb')}/restore/", {"snapshot": "s", "options": {"snapshot": "x"}}),
    ("images/", {"container": "c", "name": "n", "options": {"name": "x"}}),
])
def test_an_option_named_like_a_positional_argument_is_invalid(api, path, body):
    """Not a TypeError (a 500): found by fuzzing ``restore/`` with ``options: {"container": …}``."""
    response = post(api, path, body)
    assert response.status_code == 400 and response.json()["code"] == "invalid_argument"
