"""Schema-driven fuzzing (schemathesis) of the host API and of the users' API.

Both run against live servers over real HTTP in front of the real engine: the host API as an
``ipynbsrv_hostapi`` process (2 workers, signed requests) serving ``Docker`` with this run's
test instance; the users' API under pytest-django's ``live_server``, signed in as a normal
user who owns a real container, snapshot and image, so the generated cases reach real
objects too. Every answer must be below 500 and conform to the schema (status code, content
type, body). Each test prints its case count; ``IPYNBSRV_FUZZ_EXAMPLES`` sets the examples per
operation and mode (15 by default, which keeps both under a few minutes).
"""

from __future__ import annotations

import secrets

import pytest
import requests

from ipynbsrv_backends import background
from ipynbsrv_backends.hostapi import signing

from ..conftest import TEST_IMAGE, backend_options
from ..fuzzing import fuzz
from ..hostapi_process import HostAPINode

pytestmark = [pytest.mark.engine, pytest.mark.timeout(600)]


class Signer(requests.auth.AuthBase):
    """Signs each prepared request as HttpRemote does (so fuzzing goes through signing)."""

    def __init__(self, token: str, key: str) -> None:
        self.token, self.key = token, key

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        body = request.body.encode("utf-8") if isinstance(request.body, str) else request.body
        request.headers["Authorization"] = f"Bearer {self.token}"
        request.headers.update(signing.signature_headers(self.key, request.method, request.path_url, body))
        return request


def test_fuzz_the_host_api(raw_docker, workdir, engine, capsys):
    import schemathesis

    key = signing.new_key()
    node = HostAPINode(workdir, backend_args=backend_options(), signing_key=key,
                       state_dir=workdir / f"fuzz-state-{secrets.token_hex(4)}")
    with node:
        auth = Signer(node.token, key)
        raw = requests.get(f"{node.url}/schema/", params={"format": "json"}, auth=auth, timeout=30).json()
        schema = schemathesis.openapi.from_dict(raw)
        with requests.Session() as session:
            session.auth = auth
            # A real container, so some generated pks can be swapped for it below.
            created = session.post(f"{node.url}/containers/", json={
                "username": "alice", "uid": 4242, "name": "fuzzed", "ports": [], "volumes": [],
                "image": TEST_IMAGE}, timeout=120)
        assert created.status_code == 201, created.text
        real = created.json()["pk"]

        def prepare(case, number):
            # Every third case that names a container names the real one.
            if number % 3 == 0 and "container" in (case.path_parameters or {}):
                from ipynbsrv_backends.hostapi.wire import encode_pk

                case.path_parameters["container"] = encode_pk(real)

        report = fuzz(
            schema, node.url, headers={}, prepare=prepare, auth=auth,
            # A pull would reach for whatever registry a random reference names: off this machine.
            # The event stream lasts as long as its valid ``timeout`` (up to an hour) whatever the
            # fuzzer sends: its bounds are checked in tests/unit/test_events_logic.py, its
            # stream on the real engine in tests/integration/test_events.py.
            skip={"images_pull", "events"},
        )
        with capsys.disabled():
            print("\n" + report.summary("host API"))
        assert report.cases >= 100
        assert not report.failures, "\n".join(report.failures[:10])
        assert node.process.poll() is None  # no worker crashed either


@pytest.fixture
def cheap_passwords(settings):
    # Basic authentication hashes the password on every request: keep that cheap here.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.mark.django_db(transaction=True)
def test_fuzz_the_users_api(cheap_passwords, master_settings, live_server, alice, make_node, image, capsys):
    import schemathesis

    make_node("n1")
    # The users' event stream ends after EVENTS_STREAM_SECONDS (a browser reconnects): short
    # here, so each generated case of it ends at once instead of after minutes.
    master_settings.IPYNBSRV_BACKENDS = {**master_settings.IPYNBSRV_BACKENDS, "EVENTS_STREAM_SECONDS": 0.2}
    base = f"{live_server.url}/api"
    auth = ("alice", "alice-password")
    with requests.Session() as session:
        session.auth = auth
        container = session.post(f"{base}/containers/?wait=true", json={"name": "nb", "image": image.pk},
                                 timeout=120)
        assert container.status_code == 201, container.text
        cid = container.json()["id"]
        snap = session.post(f"{base}/containers/{cid}/snapshot/", json={"name": "s"}, timeout=120).json()
        raw = session.get(f"{base}/schema/", params={"format": "json"}, timeout=30).json()
    schema = schemathesis.openapi.from_dict(raw)
    real = {"containers": cid, "snapshots": snap["id"], "images": image.pk}

    def prepare(case, number):
        # Every other case with an id names a real object of alice's (or the public image).
        if number % 2 == 0 and "id" in (case.path_parameters or {}):
            kind = case.path.strip("/").split("/")[1]  # /api/<kind>/{id}/...
            if kind in real:
                case.path_parameters["id"] = real[kind]

    report = fuzz(schema, live_server.url, headers={}, prepare=prepare, auth=auth)
    assert background.wait_idle(300), "creations the fuzzer started (202) did not end"
    with capsys.disabled():
        print("\n" + report.summary("users' API"))
    assert report.cases >= 100
    assert not report.failures, "\n".join(report.failures[:10])
