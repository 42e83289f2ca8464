"""Dangerous inputs, each refused with the documented error, directly on ``Docker`` and
through a real host API (``HttpRemote``), with nothing left on the engine afterwards.

``test_contract.py`` already covers the common bind-mount escapes, a few privileged options
and malformed port records; this list goes further: every name in ``PRIVILEGED_OPTIONS`` on
every method that takes options, symlinks to the engine's socket and through ``/proc``,
huge and control-character names, out-of-range numbers, and what only the wire can carry
(oversized, invalid UTF-8, deeply nested and non-object bodies).
"""

from __future__ import annotations

import json
import os

import pytest
import requests

from ipynbsrv_backends import errors
from ipynbsrv_backends.backends.docker import PRIVILEGED_OPTIONS

from ..conftest import ALLOWED_ROOT, LABEL, TEST_IMAGE
from .test_contract import make, managed_names

pytestmark = pytest.mark.engine


def nothing_left(engine) -> None:
    assert managed_names(engine) == []
    assert engine.volumes.list(filters={"label": LABEL}) == []
    assert engine.images.list(filters={"label": LABEL}) == []


# ---------------------------------------------------------------------------- privileges

@pytest.mark.parametrize("option", sorted(PRIVILEGED_OPTIONS))
def test_every_privileged_option_is_refused_on_create(backend, engine, option):
    values = {"privileged": True, "user": "0:0", "binds": ["/:/host"], "network_mode": "host",
              "cap_add": ["ALL"], "security_opt": ["apparmor=unconfined"], "labels": {"x": "y"}}
    with pytest.raises(errors.InvalidArgumentError) as info:
        make(backend, **{option: values.get(option, "host")})
    assert option in str(info.value) and "not allowed" in str(info.value)
    nothing_left(engine)


def test_privileged_options_are_refused_by_every_method_that_takes_options(backend, engine):
    record = make(backend)
    snapshot = backend.create_container_snapshot(record["pk"], "snap")
    before = backend.get_container(record["pk"])
    calls = [
        lambda **kw: backend.start_container(record["pk"], **kw),
        lambda **kw: backend.restart_container(record["pk"], **kw),
        lambda **kw: backend.exec_in_container(record["pk"], ["id"], **kw),
        lambda **kw: backend.create_container_image(record["pk"], "img", **kw),
        lambda **kw: backend.create_container_snapshot(record["pk"], "other", **kw),
        lambda **kw: backend.restore_container_snapshot(record["pk"], snapshot["pk"], **kw),
        lambda **kw: backend.create_container("alice", 4242, "clone", [], [], clone_of=record["pk"], **kw),
    ]
    for call in calls:
        for option in ("privileged", "user", "cap_add", "security_opt"):
            with pytest.raises(errors.InvalidArgumentError):
                call(**{option: "root" if option == "user" else True})
    assert backend.get_container(record["pk"]) == before
    assert [s["pk"] for s in backend.get_containers_snapshots(record["pk"])] == [snapshot["pk"]]
    assert [c["pk"] for c in backend.get_containers()] == [record["pk"]]
    assert not backend.container_image_exists("img")
    backend.delete_container_snapshot(snapshot["pk"])
    backend.delete_container(record["pk"])
    nothing_left(engine)


# ---------------------------------------------------------------------------- bind mounts

def test_more_bind_mount_escapes_are_refused(backend, engine, workdir):
    links = {
        "to-socket": "/var/run/docker.sock",
        "to-root": "/",
        "to-proc-root": "/proc/self/root",
        "to-run": "/run",
    }
    for name, target in links.items():
        link = ALLOWED_ROOT / name
        if not os.path.lexists(link):
            os.symlink(target, link)
    # A chain: a link inside the root to another link inside the root that leaves it.
    if not os.path.lexists(ALLOWED_ROOT / "chain"):
        os.symlink(ALLOWED_ROOT / "to-root", ALLOWED_ROOT / "chain")
    sources = [
        *(str(ALLOWED_ROOT / name) for name in links),
        str(ALLOWED_ROOT / "chain" / "etc"),
        str(ALLOWED_ROOT / "to-run" / "docker.sock"),
        str(ALLOWED_ROOT) + "/../../../../var/run/docker.sock",
        "/var/run/../run/docker.sock",
        "/run/docker.sock",
        "/proc/1/root",
        "/proc/self/root/etc",
        "/sys",
        "/dev",
        "//",
        "/.",
        "/" + "../" * 40,
        str(ALLOWED_ROOT / ".." / ".." / ".."),
    ]
    for source in sources:
        for mode in ("rw", "ro"):
            with pytest.raises(errors.InvalidArgumentError):
                make(backend, volumes=[{"source": source, "target": "/mnt", "mode": mode}])
    nothing_left(engine)


# ---------------------------------------------------------------------------- names and numbers

HUGE = "a" * 100_000


@pytest.mark.parametrize("field,value", [
    ("name", HUGE), ("name", "a" * 64), ("name", "nb\x00"), ("name", "nb\nx"), ("name", "../nb"),
    ("name", "nb/../../x"), ("name", "ñb"), ("name", ""),
    ("username", HUGE), ("username", "alice\x00root"), ("username", "alice\nroot"), ("username", ""),
    ("uid", -1), ("uid", 2**64), ("uid", True), ("uid", "4242"),
])
def test_bad_names_and_ids_are_refused(backend, engine, field, value):
    kwargs = {"name": "nb", "username": "alice", "uid": 4242, field: value}
    name = kwargs.pop("name")
    with pytest.raises(errors.InvalidArgumentError):
        make(backend, name, **kwargs)
    nothing_left(engine)


@pytest.mark.parametrize("port", [
    {"address": "127.0.0.1", "external": -8888, "internal": 8888},
    {"address": "127.0.0.1", "external": 65536, "internal": 8888},
    {"address": "127.0.0.1", "external": 2**63, "internal": 8888},
    {"address": "127.0.0.1", "external": None, "internal": -1},
    {"address": "127.0.0.1", "external": None, "internal": 2**31},
    {"address": "127.0.0.1", "external": True, "internal": 8888},
    {"address": "127.0.0.1", "external": 8080.5, "internal": 8888},
    {"address": "0.0.0.0\x00", "external": None, "internal": 8888},
    {"address": HUGE, "external": None, "internal": 8888},
])
def test_negative_and_out_of_range_ports_are_refused(backend, engine, port):
    with pytest.raises(errors.InvalidArgumentError):
        make(backend, ports=[port])
    nothing_left(engine)


def test_huge_names_for_images_and_snapshots_are_refused(backend, engine):
    record = make(backend)
    for name in (HUGE, "x" * 200, "img\x00", "IMG", "img name"):
        with pytest.raises(errors.InvalidArgumentError):
            backend.create_container_image(record["pk"], name)
        with pytest.raises(errors.InvalidArgumentError):
            backend.create_container_snapshot(record["pk"], name)
    for pk in (HUGE, "x\x00y", ""):
        with pytest.raises((errors.InvalidArgumentError, errors.NotFoundError)):
            backend.get_container(pk)
        with pytest.raises((errors.InvalidArgumentError, errors.NotFoundError)):
            backend.delete_container_image(pk)
    assert backend.get_containers_snapshots(record["pk"]) == []
    backend.delete_container(record["pk"])
    nothing_left(engine)


def test_huge_environment_and_commands_are_refused_or_harmless(backend, engine):
    with pytest.raises(errors.InvalidArgumentError):
        make(backend, env={"A" * 10: "x", "BAD=KEY": "y"})
    with pytest.raises(errors.InvalidArgumentError):
        make(backend, env={"OWNER": "root"})  # reserved: the owner cannot be forged
    with pytest.raises(errors.InvalidArgumentError):
        make(backend, cmd=["sh", "-c", "x\x00"])
    nothing_left(engine)


# ---------------------------------------------------------------------------- only on the wire

def post(node, path: str, data: bytes, content_type: str = "application/json") -> requests.Response:
    return requests.post(f"{node.url}{path}", data=data, timeout=60, headers={
        "Authorization": f"Bearer {node.token}", "Content-Type": content_type})


def test_what_only_the_wire_can_carry_is_a_clear_4xx(hostapi_node, http_remote_backend, engine):
    body = {"username": "alice", "uid": 4242, "name": "nb", "ports": [], "volumes": [], "image": TEST_IMAGE}
    cases = {
        # Larger than the node accepts (DATA_UPLOAD_MAX_MEMORY_SIZE, 1 MiB): refused unread.
        "oversized": (json.dumps({**body, "cmd": ["x" * (3 * 1024 * 1024)]}).encode(), 413),
        "invalid UTF-8": (json.dumps(body).encode().replace(b'"nb"', b'"n\xff\xfeb"'), 400),
        "invalid UTF-8 key": (b'{"\xc3\x28": 1}', 400),
        "lone surrogate": (json.dumps(body).replace('"nb"', '"n\\ud800b"').encode(), 400),
        "NUL in a string": (json.dumps({**body, "name": "n\u0000b"}).encode(), 400),
        "deeply nested": (b'{"options": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400),
        "not an object": (b"[1, 2, 3]", 400),
        "not JSON": (b"name=nb&privileged=1", 400),
        "huge number": (json.dumps({**body, "uid": 10**400}).encode(), 400),
        "NaN": (json.dumps(body).replace("4242", "NaN").encode(), 400),
        "empty": (b"", 400),
    }
    for what, (data, status) in cases.items():
        response = post(hostapi_node, "/containers/", data)
        assert response.status_code == status, (what, response.status_code, response.text[:300])
        answer = response.json()
        assert answer["code"] == "invalid_argument" and answer["detail"], (what, answer)
    response = post(hostapi_node, "/containers/", json.dumps(body).encode(), "application/x-www-form-urlencoded")
    assert response.status_code == 415 and set(response.json()) == {"code", "detail"}
    # Invalid UTF-8 and NULs in the query string and the path.
    headers = {"Authorization": f"Bearer {hostapi_node.token}"}
    for path in ("/containers/?only_running=%ff%fe", "/containers/?options=%00", "/containers/%ff/"):
        response = requests.get(hostapi_node.url + path, headers=headers, timeout=30)
        assert 400 <= response.status_code < 500, (path, response.status_code, response.text[:300])
        assert response.json()["code"] in ("invalid_argument", "not_found"), (path, response.text[:300])
    # A request line longer than gunicorn reads (4094 bytes) never reaches the app.
    response = requests.get(f"{hostapi_node.url}/containers/?only_running={'x' * 20_000}", headers=headers,
                            timeout=30)
    assert response.status_code == 414
    # Through HttpRemote: the node's 413 arrives as the documented class.
    with pytest.raises(errors.InvalidArgumentError):
        http_remote_backend.create_container("alice", 4242, "nb", [], [], image=TEST_IMAGE,
                                             env={"BIG": "x" * (2 * 1024 * 1024)})
    assert hostapi_node.process.poll() is None
    nothing_left(engine)
