"""Authentication of a real ``ipynbsrv_hostapi`` process, operation by operation.

The test walks the OpenAPI schema the node generates from its views and sends every
operation but liveness — with real pks and bodies that would change real containers if
they got through — with a missing, a wrong and a malformed token. Each must be 401 and
the engine must not have changed at all.
"""

from __future__ import annotations

import base64

import pytest
import requests

from ipynbsrv_backends.hostapi.wire import encode_pk

from ..conftest import LABEL, TEST_IMAGE

pytestmark = pytest.mark.engine

#: Every operation the host API must offer: the whole contract and both sub-contracts.
EXPECTED_OPERATIONS = {
    "health", "status",
    "containers_list", "containers_create", "containers_retrieve", "containers_destroy",
    "containers_exists", "containers_running", "containers_suspended", "containers_start",
    "containers_stop", "containers_restart", "containers_suspend", "containers_resume",
    "containers_exec", "containers_logs", "containers_snapshots_list", "containers_snapshots_create",
    "containers_restore", "containers_snapshots_import",
    "images_list", "images_create", "images_pull", "images_retrieve", "images_destroy", "images_exists",
    "snapshots_list", "snapshots_retrieve", "snapshots_destroy", "snapshots_exists", "snapshots_export",
    "keys_next", "keys_promote", "events",
}


def engine_state(engine):
    containers = sorted((c.name, c.status, c.id) for c in engine.containers.list(all=True, filters={"label": LABEL}))
    images = sorted(tag for image in engine.images.list(all=True, filters={"label": LABEL}) for tag in image.tags)
    volumes = sorted(v.name for v in engine.volumes.list(filters={"label": LABEL}))
    return containers, images, volumes


def bad_headers(token):
    return {
        "missing": {},
        "wrong": {"Authorization": "Bearer not-the-token"},
        "prefix of the token": {"Authorization": f"Bearer {token[:-1]}"},
        "token plus a character": {"Authorization": f"Bearer {token}x"},
        "empty bearer": {"Authorization": "Bearer "},
        "other scheme": {"Authorization": "Basic " + base64.b64encode(f"x:{token}".encode()).decode()},
        "bare token": {"Authorization": token},
    }


def test_every_operation_but_liveness_refuses_bad_tokens(hostapi_node, docker_backend, engine):
    record = docker_backend.create_container(
        "alice", 4242, "victim", [{"address": "127.0.0.1", "external": None, "internal": 8888}], [],
        image=TEST_IMAGE,
    )
    snapshot = docker_backend.create_container_snapshot(record["pk"], "snap")
    image = docker_backend.create_container_image(record["pk"], "img")
    base = hostapi_node.url
    good = {"Authorization": f"Bearer {hostapi_node.token}"}

    schema = requests.get(f"{base}/schema/", params={"format": "json"}, headers=good, timeout=30).json()
    operations = [(method.upper(), path, op) for path, item in schema["paths"].items() for method, op in item.items()]
    assert {op["operationId"] for _, _, op in operations} == EXPECTED_OPERATIONS
    assert schema["components"]["securitySchemes"] == {"hostApiToken": {"type": "http", "scheme": "bearer"}}

    values = {
        "container": encode_pk(record["pk"]),
        "image": encode_pk(image["pk"]),
        "snapshot": encode_pk(snapshot["pk"]),
    }
    bodies = {
        "containers_create": {"username": "mallory", "uid": 4243, "name": "intruder", "ports": [],
                              "volumes": [], "image": TEST_IMAGE},
        "containers_exec": {"cmd": ["touch", "/pwned"]},
        "containers_snapshots_create": {"name": "intruder"},
        "containers_restore": {"snapshot": snapshot["pk"]},
        "containers_snapshots_import": {"name": "intruder", "image": image["pk"]},
        "images_create": {"container": record["pk"], "name": "intruder"},
        "images_pull": {"image": TEST_IMAGE},
        "keys_next": {"key": "k" * 40},
        "keys_promote": {"grace": 0},
    }
    before = engine_state(engine)
    refused = 0
    for method, path, op in operations:
        url = base + path.format(**values)
        if op["operationId"] == "health":
            assert not op.get("security") or op["security"] == [{}]
            assert requests.get(url, timeout=10).status_code == 200
            continue
        assert op["security"] == [{"hostApiToken": []}], op["operationId"]
        body = bodies.get(op["operationId"], {} if method == "POST" else None)
        for what, headers in bad_headers(hostapi_node.token).items():
            response = requests.request(method, url, headers=headers, json=body, timeout=30)
            assert response.status_code == 401, (op["operationId"], what, response.text)
            assert response.json()["code"] == "authentication_failed"
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            refused += 1
    assert refused == (len(EXPECTED_OPERATIONS) - 1) * len(bad_headers(hostapi_node.token))

    # The schema itself is protected too.
    assert requests.get(f"{base}/schema/", timeout=10).status_code == 401

    # Nothing changed: no container, image, snapshot or volume made, removed or altered.
    assert engine_state(engine) == before
    assert docker_backend.get_container(record["pk"])["status"] == "running"
    assert "No such file" in docker_backend.exec_in_container(record["pk"], "ls /pwned")

    # The walker's URLs were right: with the token, every read answers.
    for method, path, op in operations:
        if method == "GET":
            # the event stream answers until its timeout (60 s unless asked): its shortest
            params = {"timeout": 1, "heartbeat": 0.5} if op["operationId"] == "events" else None
            response = requests.get(base + path.format(**values), headers=good, params=params, timeout=30)
            assert response.status_code == 200, (op["operationId"], response.text)


def test_remote_with_a_wrong_token(hostapi_node, engine):
    from ipynbsrv_backends import errors
    from ipynbsrv_backends.backends import HttpRemote
    from ipynbsrv_backends.contract import BACKEND_STATUS_ERROR

    for token in ("wrong", None):
        with HttpRemote(hostapi_node.url, token=token) as remote:
            assert remote.get_status() == BACKEND_STATUS_ERROR
            with pytest.raises(errors.AuthenticationError):
                remote.get_containers()
            with pytest.raises(errors.AuthenticationError):
                remote.create_container("alice", 4242, "nb", [], [], image=TEST_IMAGE)
    assert engine_state(engine)[0] == []


def test_the_token_never_reaches_the_log(hostapi_node):
    assert hostapi_node.token not in hostapi_node.log()
