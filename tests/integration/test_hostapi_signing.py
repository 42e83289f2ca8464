"""Signed requests against real ``ipynbsrv_hostapi`` processes (2 workers, a shared state
directory): correct signatures pass; a wrong key, a stale or future timestamp, a replay (to
any worker), a tampered body or path are 401 and change nothing on the engine; a rotation
from the master while requests run loses none of them."""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from ipynbsrv_backends import errors, registry
from ipynbsrv_backends.backends import HttpRemote
from ipynbsrv_backends.hostapi import signing
from ipynbsrv_backends.hostapi.wire import encode_pk

from ..conftest import TEST_IMAGE, backend_options
from ..hostapi_process import HostAPINode
from .test_hostapi_auth import engine_state

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def signing_node(raw_docker, workdir):
    """A host API with a signing key, 2 workers and a state directory."""
    key = signing.new_key()
    state = workdir / f"state-{secrets.token_hex(4)}"
    node = HostAPINode(workdir, backend_args=backend_options(), signing_key=key, state_dir=state, workers=2)
    node.start()
    yield node
    assert node.terminate() == 0, node.log()


def send(node: HostAPINode, method: str, path: str, body: bytes | None = None, *, key: str | None = None,
         now: float | None = None, nonce: str | None = None, sign_path: str | None = None,
         sign_body: bytes | None = None, sign_method: str | None = None) -> requests.Response:
    """One request on a fresh connection, signed over ``sign_*`` (default: what is sent)."""
    headers = {"Authorization": f"Bearer {node.token}", "Content-Type": "application/json"}
    headers.update(signing.signature_headers(
        key or node.signing_key, sign_method or method, sign_path or path,
        body if sign_body is None else sign_body, now=now, nonce=nonce,
    ))
    with requests.Session() as session:
        return session.request(method, node.url + path, data=body, headers=headers, timeout=60)


def create_body(name: str) -> bytes:
    return json.dumps({"username": "alice", "uid": 4242, "name": name, "ports": [], "volumes": [],
                       "image": TEST_IMAGE, "options": {}}).encode()


def refused(response: requests.Response, why: str) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "authentication_failed"
    assert why in response.json()["detail"], response.json()


def test_httpremote_with_the_key_passes_and_without_it_is_refused(signing_node, engine):
    with HttpRemote(signing_node.url, token=signing_node.token, signing_key=signing_node.signing_key,
                    long_timeout=120) as remote:
        record = remote.create_container("alice", 4242, "signed", [], [], image=TEST_IMAGE)
        assert remote.get_container(record["pk"])["status"] == "running"
        assert [c["pk"] for c in remote.get_containers()] == [record["pk"]]
        remote.stop_container(record["pk"])
        remote.delete_container(record["pk"])
    before = engine_state(engine)
    for key in (None, signing.new_key()):
        with HttpRemote(signing_node.url, token=signing_node.token, signing_key=key) as remote:
            with pytest.raises(errors.AuthenticationError):
                remote.get_containers()
            with pytest.raises(errors.AuthenticationError):
                remote.create_container("alice", 4242, "unsigned", [], [], image=TEST_IMAGE)
    assert engine_state(engine) == before == ([], [], [])
    assert signing_node.signing_key not in signing_node.log()
    state = Path(signing_node.args[signing_node.args.index("--state-dir") + 1])
    assert state.stat().st_mode & 0o777 == 0o700
    assert (state / "hostapi-state.sqlite3").stat().st_mode & 0o777 == 0o600


def test_bad_signatures_are_refused_and_change_nothing(signing_node, docker_backend, engine):
    victim = docker_backend.create_container("alice", 4242, "victim", [], [], image=TEST_IMAGE)
    other = docker_backend.create_container("alice", 4242, "other", [], [], image=TEST_IMAGE)
    before = engine_state(engine)
    victim_path = f"/containers/{encode_pk(victim['pk'])}/"
    other_path = f"/containers/{encode_pk(other['pk'])}/"

    # A correctly signed read passes (the headers are right).
    assert send(signing_node, "GET", "/containers/?only_running=true").status_code == 200

    refused(send(signing_node, "POST", "/containers/", create_body("wrongkey"), key=signing.new_key()),
            "Invalid request signature")
    refused(send(signing_node, "POST", "/containers/", create_body("stale"), now=time.time() - 120),
            "Stale request")
    refused(send(signing_node, "POST", "/containers/", create_body("future"), now=time.time() + 120),
            "Stale request")
    # The body was changed after signing.
    refused(send(signing_node, "POST", "/containers/", create_body("tampered"), sign_body=create_body("signed")),
            "Invalid request signature")
    # The path: signed to delete one container, sent to delete another.
    refused(send(signing_node, "DELETE", other_path, sign_path=victim_path), "Invalid request signature")
    # The query string and the method are signed too.
    refused(send(signing_node, "GET", "/containers/?only_running=false", sign_path="/containers/?only_running=true"),
            "Invalid request signature")
    refused(send(signing_node, "DELETE", victim_path, sign_method="GET"), "Invalid request signature")
    # Headers missing or malformed.
    with requests.Session() as session:
        response = session.post(signing_node.url + "/containers/", data=create_body("nosig"),
                                headers={"Authorization": f"Bearer {signing_node.token}"}, timeout=30)
    refused(response, "requires signed requests")
    refused(send(signing_node, "DELETE", victim_path, nonce="short"), "Invalid request nonce")

    assert engine_state(engine) == before
    assert docker_backend.get_container(victim["pk"])["status"] == "running"


def test_a_replayed_request_is_refused_by_every_worker(signing_node, engine):
    assert len(signing_node.workers()) == 2
    body = create_body("once")
    nonce = secrets.token_urlsafe(24)
    headers = {"Authorization": f"Bearer {signing_node.token}", "Content-Type": "application/json",
               **signing.signature_headers(signing_node.signing_key, "POST", "/containers/", body, nonce=nonce)}
    answers = []
    # Each on a new connection, so gunicorn hands them to either worker.
    for _ in range(8):
        with requests.Session() as session:
            answers.append(session.post(signing_node.url + "/containers/", data=body, headers=headers, timeout=120))
    assert answers[0].status_code == 201, answers[0].text
    for response in answers[1:]:
        refused(response, "Replayed request")
    assert len(engine_state(engine)[0]) == 1


def test_huge_and_invalid_bodies_get_a_clear_4xx(signing_node, engine):
    huge = b'{"name": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    response = send(signing_node, "POST", "/containers/", huge)
    assert response.status_code == 413 and response.json()["code"] == "invalid_argument", response.text
    response = send(signing_node, "POST", "/containers/", b'{"name": "\xff\xfe"}')
    assert response.status_code == 400 and response.json()["code"] == "invalid_argument", response.text
    assert engine_state(engine) == ([], [], [])


# ---------------------------------------------------------------------------- rotation


@contextlib.contextmanager
def registered_signed_node(workdir: Path) -> Iterator[tuple[HostAPINode, Any, str, Path]]:
    """A host API with a signing key and a state directory, running, and registered on the
    master as the node ``signed`` (its key in the node's own configuration): the process,
    the ``Node``, the start-up key and the state directory."""
    from ipynbsrv_backends.models import Backend, Node

    key = signing.new_key()
    state = workdir / f"state-{secrets.token_hex(4)}"
    process = HostAPINode(workdir, backend_args=backend_options(), signing_key=key, state_dir=state)
    registry.forget_backend()
    with process:
        backend = Backend.objects.create(name="remote", kind="HttpRemote",
                                         config={"url": process.url, "token": process.token})
        node = Node.objects.create(name="signed", address="127.0.0.1", backend=backend,
                                   backend_config={"signing_key": key})
        yield process, node, key, state


@pytest.mark.django_db(transaction=True)
def test_rotation_while_requests_run_loses_none(raw_docker, workdir, engine, settings):
    from django.core.management import call_command

    from ipynbsrv_backends.keys import rotate_signing_key
    from ipynbsrv_backends.models import Node

    with registered_signed_node(workdir) as (node_process, node, key, state):
        held = registry.get_backend(node)  # an instance that keeps the old key, like another process
        results: list[str] = []
        failures: list[BaseException] = []
        stop = threading.Event()

        def stream(fresh: bool) -> None:
            deadline = time.monotonic() + 60
            for _ in range(400):  # bounded in count and time
                if stop.is_set() or time.monotonic() > deadline:
                    break
                try:
                    remote = registry.get_backend(Node.objects.select_related("backend").get(pk=node.pk)) \
                        if fresh else held
                    remote.get_containers()
                    results.append("ok")
                except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                    failures.append(exc)

        threads = [threading.Thread(target=stream, args=(fresh,)) for fresh in (True, True, False)]
        for thread in threads:
            thread.start()
        try:
            count_before = len(results)
            deadline = time.monotonic() + 20
            while len(results) < count_before + 20 and time.monotonic() < deadline:
                time.sleep(0.01)  # let the stream get going (a bounded wait on a condition)
            rotate_signing_key(node, grace=120)
            first = Node.objects.get(pk=node.pk).backend_config["signing_key"]
            call_command("ipynbsrv_rotate_key", "signed", "--grace", "120")
            second = Node.objects.get(pk=node.pk).backend_config["signing_key"]
            mark = len(results)
            deadline = time.monotonic() + 20
            while len(results) < mark + 20 and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=90)
        assert not failures, failures[:3]
        assert len(results) >= 40
        assert len({key, first, second}) == 3
        assert key not in json.dumps(registry.mask_config("HttpRemote", node.effective_config()))
        assert "signing_key='***'" in repr(registry.get_backend(Node.objects.get(pk=node.pk)))

        # The old key is accepted during the grace period only: a rotation with no grace ends it.
        rotate_signing_key(Node.objects.select_related("backend").get(pk=node.pk), grace=0)
        with pytest.raises(errors.AuthenticationError):
            held.get_containers()
        current = registry.get_backend(Node.objects.select_related("backend").get(pk=node.pk))
        assert current.get_containers() == []
        # Promoting needs the next key itself: the current key cannot promote on its own.
        with pytest.raises(errors.BackendError) as info:
            current.promote_signing_key(0)
        assert info.value.status_code == 409
        for name in (key, first, second):
            assert name not in node_process.log()
    # The rotated key survives a restart of the node (kept in the state directory).
    again = HostAPINode(workdir, backend_args=backend_options(), signing_key=key, state_dir=state,
                        token=node_process.token)
    with again:
        config = Node.objects.get(pk=node.pk).backend_config
        with HttpRemote(again.url, token=again.token, signing_key=config["signing_key"]) as remote:
            assert remote.get_containers() == []
        with HttpRemote(again.url, token=again.token, signing_key=key) as remote:
            with pytest.raises(errors.AuthenticationError):  # the start-up key was rotated away
                remote.get_containers()
    registry.forget_backend()


def test_rotation_needs_a_state_directory_and_a_signed_node(signing_node, workdir, engine):
    """Rotation is refused (not_supported) by a node without a signing key."""
    plain = HostAPINode(workdir, backend_args=backend_options())
    with plain, HttpRemote(plain.url, token=plain.token) as remote:
        with pytest.raises(errors.CapabilityNotSupportedError):
            remote.install_next_signing_key(signing.new_key())
    with HttpRemote(signing_node.url, token=signing_node.token, signing_key=signing_node.signing_key) as remote:
        with pytest.raises(errors.InvalidArgumentError):
            remote.install_next_signing_key("short")
        with pytest.raises(errors.BackendError) as info:
            remote.promote_signing_key()
        assert info.value.status_code == 409  # no next key installed


def test_the_cli_needs_a_state_dir_with_a_signing_key(tmp_path):
    import subprocess

    from ..hostapi_process import child_env, hostapi_command

    env = child_env("t" * 40, IPYNBSRV_HOSTAPI_SIGNING_KEY=signing.new_key())
    result = subprocess.run([*hostapi_command(), "--port", "1"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--state-dir" in result.stderr
    env["IPYNBSRV_HOSTAPI_SIGNING_KEY"] = "short"
    result = subprocess.run([*hostapi_command(), "--port", "1", "--state-dir", str(tmp_path)],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "32 to 256" in result.stderr and "short" not in result.stderr


@pytest.mark.django_db(transaction=True)
def test_rotation_from_the_admin(raw_docker, workdir, engine, admin_client, make_node):
    from ipynbsrv_backends.models import AuditEntry, Node

    with registered_signed_node(workdir) as (process, node, key, _state):
        local = make_node("local")
        url = "/admin/ipynbsrv_backends/node/"
        response = admin_client.post(url, {"action": "rotate_signing_key", "_selected_action": [node.pk, local.pk]},
                                     follow=True)
        assert response.status_code == 200
        text = response.content.decode()
        assert "The signing key of 1 node was rotated." in text
        assert "Could not rotate the signing key of local" in text
        rotated = Node.objects.get(pk=node.pk).backend_config["signing_key"]
        assert rotated != key
        assert registry.get_backend(Node.objects.select_related("backend").get(pk=node.pk)).get_containers() == []
        for page in (url, f"{url}{node.pk}/change/"):
            content = admin_client.get(page).content.decode()
            assert rotated not in content and key not in content and process.token not in content
        entries = AuditEntry.objects.filter(action="node.rotate_signing_key")
        assert entries.count() == 2
        assert rotated not in json.dumps(list(entries.values()), default=str)
    registry.forget_backend()
