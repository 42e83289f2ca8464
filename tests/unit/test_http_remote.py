"""``HttpRemote`` on the master side: down, hung and garbage-answering nodes, error bodies,
retries, timeouts and what goes over the wire — against real sockets on 127.0.0.1.

The contract itself (records, errors) is tested through a real host API in the contract
suite (``http_remote`` kind); here the "nodes" are tiny misbehaving servers.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.parse

import pytest
import requests

from ipynbsrv_backends import errors
from ipynbsrv_backends.backends import HttpRemote
from ipynbsrv_backends.contract import BACKEND_STATUS_ERROR, BACKEND_STATUS_OK, BACKEND_STATUS_STOPPED
from ipynbsrv_backends.hostapi.wire import encode_pk

from ..tiny_servers import CannedNode, FlakyNode, FullBacklogNode, SilentNode, closed_port

TOKEN = "tok-0123456789abcdef"
RECORD = {"pk": "p-u1-nb", "name": "nb", "status": "running", "image": "i", "owner": "alice",
          "created": "2026-01-01T00:00:00Z", "ports": [], "volumes": []}


def json_answer(status: int, body) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(body).encode()


def remote(url: str, **options) -> HttpRemote:
    settings = {"token": TOKEN, "connect_timeout": 1.0, "timeout": 2.0, "status_timeout": 1.0,
                "long_timeout": 3.0, "retries": 1, "retry_backoff": 0.05}
    settings.update(options)
    return HttpRemote(url, **settings)


class Clock:
    def __enter__(self):
        self.start = time.monotonic()
        return self

    def __exit__(self, *exc_info):
        self.elapsed = time.monotonic() - self.start


# --------------------------------------------------------------------------- a down node

def test_a_down_node_is_unavailable_at_once():
    node = remote(f"http://127.0.0.1:{closed_port()}", retries=2, retry_backoff=0.05)
    with Clock() as clock, pytest.raises(errors.BackendUnavailableError) as info:
        node.get_containers()
    assert clock.elapsed < 2.0  # three refused attempts and two short pauses
    assert isinstance(info.value.__cause__, requests.exceptions.ConnectionError)
    assert "Cannot reach the node" in str(info.value)
    for call in (
        lambda: node.create_container("alice", 1, "nb", [], [], image="i"),
        lambda: node.get_container("p"),
        lambda: node.delete_container("p"),
        lambda: node.exec_in_container("p", "true"),
        lambda: node.restore_container_snapshot("p", "s"),
    ):
        with pytest.raises(errors.BackendUnavailableError):
            call()
    with Clock() as clock:
        assert node.get_status() == BACKEND_STATUS_STOPPED
    assert clock.elapsed < 1.0


def test_no_connection_within_the_connect_timeout_is_unavailable():
    with FullBacklogNode() as hung:
        node = remote(hung.url, connect_timeout=0.5, retries=1, retry_backoff=0.05)
        with Clock() as clock, pytest.raises(errors.BackendUnavailableError) as info:
            node.get_container("p")
        assert 0.9 <= clock.elapsed < 3.0  # two attempts of 0.5 s
        assert "within 0.5 s" in str(info.value)
        assert isinstance(info.value.__cause__, requests.exceptions.ConnectTimeout)
        with Clock() as clock:
            assert node.get_status() == BACKEND_STATUS_STOPPED  # one attempt only
        assert clock.elapsed < 1.5


# --------------------------------------------------------------------------- a hung node

def test_a_node_that_never_answers_times_out_within_the_configured_time():
    with SilentNode() as hung:
        node = remote(hung.url, timeout=1.0, long_timeout=2.0, status_timeout=0.5, retries=2)
        with Clock() as clock, pytest.raises(errors.BackendTimeoutError) as info:
            node.get_containers()
        assert 1.0 <= clock.elapsed < 2.0
        assert hung.accepted == 1  # an answer that timed out is not asked for again
        assert "within 1 s" in str(info.value)
        assert isinstance(info.value.__cause__, requests.exceptions.ReadTimeout)

        with Clock() as clock, pytest.raises(errors.BackendTimeoutError):
            node.create_container("alice", 1, "nb", [], [], image="i")
        assert 2.0 <= clock.elapsed < 3.0  # slow calls get long_timeout

        with Clock() as clock:
            assert node.get_status() == BACKEND_STATUS_ERROR
        assert 0.5 <= clock.elapsed < 1.5  # status_timeout


# --------------------------------------------------------------------------- garbage

@pytest.mark.parametrize("answer,call,fragment", [
    ((200, {"Content-Type": "text/html"}, b"<html><body>It works!</body></html>"), "get_container", "not JSON"),
    ((200, {"Content-Type": "application/json"}, b'{"pk": '), "get_container", "not JSON"),
    ((200, {}, b""), "get_container", "unexpected body"),
    (json_answer(200, {"unexpected": True}), "get_container", "unexpected body"),
    (json_answer(200, [1, 2]), "get_containers", "unexpected body"),
    (json_answer(200, {"exists": "yes"}), "container_exists", "unexpected body"),
    (json_answer(200, ["line", 3]), "get_container_logs", "unexpected body"),
    (json_answer(200, {"output": None}), "exec_in_container", "unexpected body"),
    ((500, {"Content-Type": "text/html"}, b"<h1>Server Error</h1>"), "get_container", "HTTP 500"),
    ((404, {"Content-Type": "text/html"}, b"<h1>Not Found</h1>"), "get_container", "host API"),
    ((302, {"Location": "http://127.0.0.1:9/steal"}, b""), "get_container", "HTTP 302"),
    (json_answer(418, {"error": "teapot"}), "get_container", "HTTP 418"),
])
def test_a_node_answering_garbage_is_a_backend_error(answer, call, fragment):
    args = {"get_container": ("p",), "get_containers": (), "container_exists": ("p",),
            "get_container_logs": ("p",), "exec_in_container": ("p", "true")}[call]
    with CannedNode(lambda *_: answer) as garbage:
        node = remote(garbage.url)
        with Clock() as clock, pytest.raises(errors.BackendError) as info:
            getattr(node, call)(*args)
        assert type(info.value) is errors.BackendError  # not mistaken for a real error class
        assert fragment in str(info.value)
        assert clock.elapsed < 2.0
        assert len(garbage.requests) == 1  # a redirect is not followed
        assert node.get_status() == BACKEND_STATUS_ERROR


@pytest.mark.parametrize("status,cls", [
    (401, errors.AuthenticationError),
    (502, errors.BackendError),
    (503, errors.BackendUnavailableError),
    (504, errors.BackendTimeoutError),
])
def test_bare_statuses_of_a_proxy_are_understood(status, cls):
    with CannedNode(lambda *_: (status, {"Content-Type": "text/html"}, b"<html>proxy</html>")) as proxy:
        with pytest.raises(errors.BackendError) as info:
            remote(proxy.url, retries=0).get_containers()
        assert type(info.value) is cls


# --------------------------------------------------------------------------- error bodies

@pytest.mark.parametrize("code", sorted(errors.ERRORS_BY_CODE))
def test_every_error_code_comes_back_as_its_class_with_the_nodes_message(code):
    cls = errors.ERRORS_BY_CODE[code]
    message = f"the node says: {code} happened"
    with CannedNode(lambda *_: json_answer(cls.status_code, {"code": code, "detail": message})) as node:
        with pytest.raises(errors.BackendError) as info:
            remote(node.url, retries=0).get_container("p")
    assert type(info.value) is cls
    assert str(info.value) == message


@pytest.mark.parametrize("status,cls", [
    (409, errors.ContainerBackendError),
    (404, errors.NotFoundError),
    (400, errors.InvalidArgumentError),
    (418, errors.BackendError),
])
def test_an_unknown_code_from_a_newer_node_falls_back_on_the_status(status, cls):
    with CannedNode(lambda *_: json_answer(status, {"code": "brand_new", "detail": "newer"})) as node:
        with pytest.raises(errors.BackendError) as info:
            remote(node.url, retries=0).get_container("p")
    assert type(info.value) is cls and str(info.value) == "newer"


# --------------------------------------------------------------------------- retries

def test_reads_are_retried_after_a_dropped_connection():
    with FlakyNode(drop=2, answer=json_answer(200, [RECORD])) as flaky:
        assert remote(flaky.url, retries=2).get_containers() == [RECORD]
        assert flaky.accepted == 3


def test_retries_are_bounded():
    with FlakyNode(drop=100, answer=json_answer(200, [])) as flaky:
        with Clock() as clock, pytest.raises(errors.BackendUnavailableError):
            remote(flaky.url, retries=2, retry_backoff=0.05).get_containers()
        assert flaky.accepted == 3 and clock.elapsed < 2.0


@pytest.mark.parametrize("call", [
    lambda node: node.create_container("alice", 1, "nb", [], [], image="i"),
    lambda node: node.exec_in_container("p", "true"),
    lambda node: node.create_container_image("p", "img"),
    lambda node: node.delete_container("p"),
])
def test_writes_are_never_repeated(call):
    with FlakyNode(drop=1, answer=json_answer(201, RECORD)) as flaky:
        with pytest.raises(errors.BackendUnavailableError):
            call(remote(flaky.url, retries=3))
        assert flaky.accepted == 1


# --------------------------------------------------------------------------- on the wire

def answer_for(method, path, headers, body):
    path = urllib.parse.urlsplit(path).path
    if method == "GET" and path.endswith("/logs/"):
        return json_answer(200, ["a", "b"])
    if method == "GET" and path.endswith("/containers/"):
        return json_answer(200, [RECORD])
    if method == "POST" and path.endswith("/containers/"):
        return json_answer(201, RECORD)
    if method == "DELETE":
        return 204, {}, b""
    if path.endswith("/status/"):
        return json_answer(200, {"backend": {"status": 0, "capabilities": []}, "resources": {"cpu_count": 2}})
    return json_answer(200, RECORD)


def test_what_goes_over_the_wire():
    with CannedNode(answer_for) as node:
        client = remote(node.url + "/hostapi/")
        image = "10.0.0.1:5000/ipynbsrv-u1/stack:v2"
        assert client.get_container_image(image) == RECORD
        assert client.create_container("alice", 1, "nb", ({"address": "127.0.0.1", "external": None,
                                                           "internal": 8888},), [], image="i",
                                       env={"A": "1"}) == RECORD
        new_year = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        assert client.get_container_logs("p/x", tail=3, since=new_year) == ["a", "b"]
        assert client.get_containers(only_running=True, colour="blue") == [RECORD]
        assert client.delete_container("p") is None
        get_image, create, logs, listing, delete = node.requests

    assert get_image["path"] == f"/hostapi/images/{encode_pk(image)}/"
    for request in node.requests:
        assert request["headers"]["Authorization"] == f"Bearer {TOKEN}"
    assert create["method"] == "POST" and create["headers"]["Content-Type"] == "application/json"
    assert json.loads(create["body"]) == {
        "username": "alice", "uid": 1, "name": "nb",
        "ports": [{"address": "127.0.0.1", "external": None, "internal": 8888}], "volumes": [],
        "cmd": None, "base_url": None, "image": "i", "clone_of": None, "options": {"env": {"A": "1"}},
    }
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(logs["path"]).query)
    assert query == {"tail": ["3"], "since": ['"2026-01-01T00:00:00+00:00"']}
    assert urllib.parse.urlsplit(logs["path"]).path == f"/hostapi/containers/{encode_pk('p/x')}/logs/"
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(listing["path"]).query)
    assert query == {"only_running": ["true"], "options": ['{"colour": "blue"}']}
    assert delete["method"] == "DELETE" and delete["body"] == b""


def test_connections_are_pooled():
    ports = []

    def respond(method, path, headers, body):
        return json_answer(200, [])

    with CannedNode(respond) as node:
        original = node.server.RequestHandlerClass.handle_one_request

        def recording(handler):
            ports.append(handler.client_address[1])
            return original(handler)

        node.server.RequestHandlerClass.handle_one_request = recording
        client = remote(node.url)
        for _ in range(5):
            client.get_containers()
    assert len(ports) >= 5 and len(set(ports)) == 1


def test_proxies_and_netrc_of_the_environment_are_ignored(monkeypatch, tmp_path):
    dead = f"http://127.0.0.1:{closed_port()}"
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, dead)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password other\n")
    monkeypatch.setenv("NETRC", str(netrc))
    with CannedNode(answer_for) as node:
        assert remote(node.url).get_containers() == [RECORD]
        assert node.requests[0]["headers"]["Authorization"] == f"Bearer {TOKEN}"


def test_values_that_are_not_json_are_refused_before_anything_is_sent():
    with CannedNode(answer_for) as node:
        client = remote(node.url)
        for call in (
            lambda: client.create_container("alice", 1, "nb", [], [], image="i", env={"A": object()}),
            lambda: client.create_container("alice", 1, "nb", [], [], image="i", cpu_limit=float("nan")),
            lambda: client.get_container(None),
            lambda: client.get_container_image(7),
            lambda: client.get_containers(colour={1, 2}),
        ):
            with pytest.raises(errors.InvalidArgumentError):
                call()
        assert node.requests == []


# --------------------------------------------------------------------------- status

@pytest.mark.parametrize("body,expected", [
    ({"backend": {"status": 0, "capabilities": []}, "resources": {}}, BACKEND_STATUS_OK),
    ({"backend": {"status": 1, "capabilities": []}, "resources": {}}, BACKEND_STATUS_STOPPED),
    ({"backend": {"status": 2, "capabilities": []}, "resources": {}}, BACKEND_STATUS_ERROR),
    ({"backend": {"status": 7}, "resources": {}}, BACKEND_STATUS_ERROR),
    ({"backend": {"status": "0"}, "resources": {}}, BACKEND_STATUS_ERROR),
    ({"backend": {"status": True}, "resources": {}}, BACKEND_STATUS_ERROR),
    ({"status": 0}, BACKEND_STATUS_ERROR),
])
def test_status_answers(body, expected):
    with CannedNode(lambda *_: json_answer(200, body)) as node:
        assert remote(node.url).get_status() == expected


def test_get_status_never_raises(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    node = remote("http://127.0.0.1:1")
    monkeypatch.setattr(node, "_request", broken)
    assert node.get_status() == BACKEND_STATUS_ERROR
    assert node.get_status(colour="blue") == BACKEND_STATUS_ERROR


# --------------------------------------------------------------------------- configuration

def test_repr_hides_the_token():
    node = HttpRemote("http://10.0.0.2:8080/", token=TOKEN)
    assert TOKEN not in repr(node) and "***" in repr(node)
    assert repr(node) == "HttpRemote(url='http://10.0.0.2:8080', token='***')"
    assert repr(HttpRemote("http://10.0.0.2:8080")) == "HttpRemote(url='http://10.0.0.2:8080', token=None)"


@pytest.mark.parametrize("options", [
    {"url": "ftp://10.0.0.2"}, {"url": "10.0.0.2:8080"}, {"url": "http://"}, {"url": "http://h:99999"},
    {"url": "http://user:pw@h"}, {"url": "http://h/?x=1"}, {"url": None},
    {"token": ""}, {"token": "two words"}, {"token": "line\nbreak"}, {"token": 5},
    {"verify": "/no/such/ca.pem"}, {"verify": 1},
    {"timeout": 0}, {"connect_timeout": -1}, {"long_timeout": "5"}, {"status_timeout": True},
    {"retries": -1}, {"retries": 11}, {"retries": 1.5}, {"retry_backoff": -1},
    {"pool_size": 0}, {"pool_size": True},
])
def test_bad_configuration_is_refused(options):
    config = {"url": "http://10.0.0.2:8080", **options}
    with pytest.raises(errors.InvalidArgumentError) as info:
        HttpRemote(**config)
    if isinstance(options.get("token"), str) and options["token"]:
        assert options["token"] not in str(info.value)


def test_validate_options_names_unknown_ones():
    with pytest.raises(errors.InvalidArgumentError) as info:
        HttpRemote.validate_options(url="http://h:1", colour="blue")
    assert "colour" in str(info.value)
    config = HttpRemote.validate_options(url="https://h:1/prefix/", token="t")
    assert config["url"] == "https://h:1/prefix" and config["retries"] == 2
