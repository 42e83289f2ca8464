"""Tenant isolation of real notebooks: a notebook server answers only requests that carry its
container's access secret, which the master mints and only its proxy adds, for the owner.

The attacks come from where a user or an intruder really is: another user's container on the
same node (through the node's address and the published port, which the engine's userland
proxy answers, and through the bridge), another node's containers (on the two-node test bed),
and the node itself without credentials. Each attack is also made once *with* the secret, so
the test shows that the network path is open and that the secret alone is what stops it.
"""

from __future__ import annotations

import ipaddress
import json
import re

import pytest
import requests

from ipynbsrv_backends import services
from ipynbsrv_backends.contract import ACCESS_HEADER, ACCESS_SECRET_ENV
from ipynbsrv_backends.models import Container, Image

from ..conftest import TEST_IMAGE
from ..notebook import Jupyter, nginx, notebook_image, notebook_on_nodes, signed_in  # noqa: F401
from ..testbed import cluster, cluster_nodes  # noqa: F401
from ..utils import wait_for

pytestmark = [pytest.mark.engine, pytest.mark.timeout(600)]

PRIVATE = "alice-private-words"

#: What an intruder tries: (method, path under the base URL, body), as a user of Jupyter would.
ATTACKS = [
    ("GET", "api/contents", None),
    ("GET", "api/contents/secret.txt?content=1", None),
    ("GET", "files/secret.txt", None),
    ("GET", "tree", None),
    ("GET", "api/status", None),
    ("GET", "api/kernels", None),
    ("POST", "api/kernels", '{"name": "python3"}'),
    ("POST", "api/terminals", "{}"),
    ("GET", "api/terminals", None),
    ("GET", "static/notebook/main.js", None),
    ("GET", "login", None),
]


def _settings(settings, **more):
    settings.IPYNBSRV_BACKENDS = {
        **settings.IPYNBSRV_BACKENDS, "CONTAINER_PORTS": [8888], "CONTAINER_VOLUMES": [],
        "CONTAINER_OPTIONS": {"mem_limit": "1g"}, **more,
    }


def _bridge_gateway(engine) -> str:
    """The host's address on the engine's default bridge (its gateway), which containers reach."""
    config = engine.networks.get("bridge").attrs["IPAM"]["Config"][0]
    if config.get("Gateway"):
        return config["Gateway"]
    return str(next(ipaddress.ip_network(config["Subnet"]).hosts()))


def _bridge_address(container_pk: str, docker_client) -> str:
    return docker_client.containers.get(container_pk).attrs["NetworkSettings"]["IPAddress"]


def _base(address: str, port: int, base_url: str) -> str:
    return f"http://{address}:{port}{base_url}"


def _wget(docker_container, method: str, url: str, body: str | None = None,
          headers: dict[str, str] | None = None) -> tuple[int | None, str]:
    """An HTTP request from inside ``docker_container`` with busybox's wget: (status, body)."""
    argv = ["timeout", "8", "wget", "-S", "-O", "-"]  # (busybox wget -T crashes)
    for name, value in (headers or {}).items():
        argv += ["--header", f"{name}: {value}"]
    if method == "POST":
        argv += ["--header", "Content-Type: application/json", "--post-data", body or ""]
    argv.append(url)
    result = docker_container.exec_run(argv)
    text = result.output.decode(errors="replace")
    statuses = re.findall(r"HTTP/1\.[01] (\d{3})", text)
    return (int(statuses[-1]) if statuses else None), text


def _attack_from(docker_container, base: str, secret: str) -> None:
    """Every attack without the secret (and with a wrong one) gets 403 and nothing of alice's;
    the same request with the secret reaches her server (so the path is open)."""
    for method, path, body in ATTACKS:
        for headers in ({}, {ACCESS_HEADER: "x" * 43}, {ACCESS_HEADER: ""}):
            status, text = _wget(docker_container, method, base + path, body, headers)
            assert status == 403, f"{method} {base + path} with {list(headers)}: {status}\n{text[:400]}"
            assert PRIVATE not in text and "secret.txt" not in text
    status, text = _wget(docker_container, "GET", base + "api/contents", None, {ACCESS_HEADER: secret})
    assert status == 200 and "secret.txt" in text, f"the path itself is closed: {status} {text[:300]}"


def _unreachable_from(docker_container, base: str, secret: str) -> None:
    """The network itself does not carry ``docker_container``'s requests to ``base`` (even
    with the secret): no answer at all."""
    status, text = _wget(docker_container, "GET", base + "api/contents", None, {ACCESS_HEADER: secret})
    assert status is None and PRIVATE not in text and "secret.txt" not in text, f"{status} {text[:300]}"


def _attack_from_the_node(base: str, secret: str) -> None:
    """The same from outside any container, with no credentials: HTTP and a websocket upgrade."""
    with requests.Session() as http:
        for method, path, body in ATTACKS:
            answer = http.request(method, base + path, data=body, timeout=10, allow_redirects=False)
            assert answer.status_code == 403, f"{method} {path}: {answer.status_code}"
            assert PRIVATE not in answer.text and "secret.txt" not in answer.text
        kernel = http.get(base + "api/kernels", headers={ACCESS_HEADER: secret}, timeout=10).json()
        assert kernel == [], "an attack started a kernel"
        upgrade = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                   "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
        answer = http.get(base + "api/kernels/00000000-0000-0000-0000-000000000000/channels", headers=upgrade,
                          timeout=10)
        assert answer.status_code == 403
        assert http.get(base + "api/terminals", headers={ACCESS_HEADER: secret}, timeout=10).json() == []


def _private_file(engine, container: Container) -> None:
    engine.containers.get(container.backend_pk).exec_run(
        ["sh", "-c", f"echo {PRIVATE} > /data/secret.txt && chown $OWNER_UID /data/secret.txt"])


def _wait_jupyter(base: str, secret: str) -> None:
    def up() -> bool:
        try:
            return requests.get(base + "api/status", headers={ACCESS_HEADER: secret}, timeout=3).status_code == 200
        except requests.RequestException:
            return False

    wait_for(up, timeout=90, interval=0.3, what=f"Jupyter at {base}")


def test_another_users_container_and_the_node_get_nothing_from_a_notebook(
        transactional_db, engine, make_node, notebook_image, settings, django_user_model):  # noqa: F811
    _settings(settings)
    node = make_node("iso")
    node.address = _bridge_gateway(engine)  # an address containers can reach, as a node's is
    node.save()
    notebook = Image.objects.create(name="jupyter", ref=notebook_image, public=True)
    stand_in = Image.objects.create(name="busybox", ref=TEST_IMAGE, public=True)
    alice = django_user_model.objects.create_user("alice")
    bob = django_user_model.objects.create_user("bob")

    mine = services.create_container(alice, "nb", image=notebook, node=node)
    theirs = services.create_container(bob, "box", image=stand_in, node=node)
    assert mine.access_secret and len(mine.access_secret) >= 40
    port = mine.ports[0]["external"]
    published = _base(node.address, port, mine.base_url)
    bridged = _base(_bridge_address(mine.backend_pk, engine), 8888, mine.base_url)
    _wait_jupyter(published, mine.access_secret)
    _private_file(engine, mine)
    attacker = engine.containers.get(theirs.backend_pk)

    _attack_from(attacker, published, mine.access_secret)  # the node's address: the userland proxy
    _attack_from(attacker, bridged, mine.access_secret)    # the bridge, container to container
    _attack_from_the_node(published, mine.access_secret)

    # The secret is the container's own: in its environment, not in its owner's kernels'.
    env = engine.containers.get(mine.backend_pk).attrs["Config"]["Env"]
    assert f"{ACCESS_SECRET_ENV}={mine.access_secret}" in env
    jupyter = Jupyter(published, headers={ACCESS_HEADER: mine.access_secret})
    try:
        jupyter.wait_ready()
        kernel = jupyter.start_kernel()
        printed = jupyter.execute(kernel, f"import os\nprint(os.environ.get({ACCESS_SECRET_ENV!r}, 'absent'))")
        assert printed.strip() == "absent"
        jupyter.stop_kernel(kernel)
    finally:
        jupyter.close()
    services.delete_container(theirs)
    services.delete_container(mine)


def test_the_owner_still_works_through_nginx_and_a_forged_header_changes_nothing(
        transactional_db, engine, make_node, notebook_image, nginx, settings, django_user_model):  # noqa: F811
    _settings(settings)
    make_node("iso2")
    notebook = Image.objects.create(name="jupyter", ref=notebook_image, public=True)
    alice = django_user_model.objects.create_user("alice")
    bob = django_user_model.objects.create_user("bob")
    mine = services.create_container(alice, "nb", image=notebook)
    url = nginx.url + mine.base_url
    # alice, through the proxy: her cookie only; a header of the secret's name she sends is replaced
    jupyter = Jupyter(url, signed_in(alice), headers={ACCESS_HEADER: "forged-by-the-client"})
    try:
        jupyter.wait_ready()
        kernel = jupyter.start_kernel()
        assert jupyter.execute(kernel, "print(6 * 7)").strip() == "42"
        jupyter.stop_kernel(kernel)
    finally:
        jupyter.close()
    # bob, with the right secret in the header, through the proxy: the master refuses him first
    with requests.Session() as http:
        for name, value in signed_in(bob).items():
            http.cookies.set(name, value)
        answer = http.get(url + "api/contents", headers={ACCESS_HEADER: mine.access_secret}, timeout=10)
        assert answer.status_code == 403 and "secret.txt" not in answer.text
        # the master's check is for nginx only: not reachable through the public server
        answer = http.get(nginx.url + "/proxy/auth/", headers={"X-Original-URI": mine.base_url}, timeout=10)
        assert answer.status_code == 404 and mine.access_secret not in answer.text
        assert mine.access_secret not in json.dumps(dict(answer.headers))
    services.delete_container(mine)


@pytest.mark.cluster
def test_no_container_on_either_node_reaches_a_notebook_on_the_other(
        transactional_db, cluster, cluster_nodes, notebook_on_nodes, settings, django_user_model,  # noqa: F811
        raw_docker):
    import docker

    _settings(settings)
    n1, n2 = cluster_nodes
    notebook = Image.objects.create(name="jupyter", ref=notebook_on_nodes, public=True)
    stand_in = Image.objects.create(name="busybox", ref=TEST_IMAGE, public=True)
    alice = django_user_model.objects.create_user("alice")
    bob = django_user_model.objects.create_user("bob")
    mine = services.create_container(alice, "nb", image=notebook, node=n1)
    near = services.create_container(bob, "near", image=stand_in, node=n1)
    far = services.create_container(bob, "far", image=stand_in, node=n2)
    engines = [docker.DockerClient(base_url=f"unix://{socket}", timeout=60) for socket in cluster.sockets]
    try:
        port = mine.ports[0]["external"]
        published = _base(n1.address, port, mine.base_url)
        _wait_jupyter(published, mine.access_secret)
        _private_file(engines[0], mine)
        bridged = _base(_bridge_address(mine.backend_pk, engines[0]), 8888, mine.base_url)
        _attack_from(engines[1].containers.get(far.backend_pk), published, mine.access_secret)  # the other node
        _attack_from(engines[0].containers.get(near.backend_pk), published, mine.access_secret)  # its neighbour
        # the test bed's engines run with "icc": false: the bridge itself carries nothing
        _unreachable_from(engines[0].containers.get(near.backend_pk), bridged, mine.access_secret)
        _attack_from_the_node(published, mine.access_secret)  # the master's side of the node network
    finally:
        for client in engines:
            client.close()
    for container in (far, near, mine):
        services.delete_container(container)


def test_a_notebook_server_without_a_secret_does_not_start(engine, docker_backend, notebook_image):  # noqa: F811
    """The image refuses to serve open: started without (or with too short) a secret, it exits
    before Jupyter starts, and says why."""
    for name, env in (("nosecret", {}), ("short", {ACCESS_SECRET_ENV: "too-short"})):
        record = docker_backend.create_container(
            "carol", 2999, name, [{"address": "127.0.0.1", "external": None, "internal": 8888}], [],
            image=notebook_image, base_url="/x/", env=env)

        def exited(pk=record["pk"]):
            state = engine.containers.get(pk).attrs["State"]
            return state if state["Status"] == "exited" else None

        state = wait_for(exited, timeout=60, interval=0.3, what=f"{name} to exit")
        assert state["ExitCode"] == 64
        logs = engine.containers.get(record["pk"]).logs().decode(errors="replace")
        assert f"{ACCESS_SECRET_ENV} is not set" in logs and "serving Jupyter" not in logs
        docker_backend.delete_container(record["pk"])
