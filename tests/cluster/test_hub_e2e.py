"""JupyterHub end to end on the two-node test bed, for real: the hub with configurable-http-proxy
and the shared-password authenticator, ``IpynbsrvSpawner`` pointed at a master (its own gunicorn
process, tests/support/hub_master.py) that places the servers on the nodes, the real notebook
image in hub mode, and the standard ``jupyterhub-idle-culler`` as a hub service.

- Two users sign in on the hub's login form and ask for their servers; each starts on a node
  (the proxy's route leads to a node's address).
- A kernel runs code through the proxy (REST and the kernel's websocket, after the hub's OAuth).
- Neither reaches the other's server: not through the proxy (session or token), not directly
  from inside a container by the node's address and port. The nodes run ``ipynbsrv_firewall``
  with one allowance, the hub's API port on the bridge (docs/jupyterhub.md, *Network*): the
  single-user servers reach the hub, and nothing else of the internal network.
- The idle culler stops the idle server, which the spawner suspends (the container is paused on
  its node); the user starts it again and the kernel's variables are still there.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from ..notebook import notebook_image, notebook_on_nodes  # noqa: F401 - fixtures
from ..support.hub import Hub, HubSpec
from ..support.hub_master import HubMaster, MasterSpec
from ..testbed import _purge, cluster  # noqa: F401 - fixture

pytestmark = [pytest.mark.engine, pytest.mark.cluster, pytest.mark.timeout(420)]

FIREWALL = Path(sys.executable).parent / "ipynbsrv_firewall"
CULL_TIMEOUT = 40  # seconds idle before the culler stops a server (a couple of minutes in all)


def on_nodes(cluster, *args: str) -> None:  # noqa: F811
    """``ipynbsrv_firewall ARGS`` in every node's namespace, as an operator runs it."""
    for index in range(len(cluster.addresses)):
        done = subprocess.run(["nsenter", f"--net=/run/netns/{cluster.ns_prefix}{index + 1}", str(FIREWALL), *args],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"ipynbsrv_firewall {' '.join(args)} on node {index + 1}: {done.stdout}{done.stderr}"


@pytest.fixture(scope="module")
def world(cluster, notebook_on_nodes, tmp_path_factory):  # noqa: F811
    directory = tmp_path_factory.mktemp("hub-e2e")
    nodes = [{"name": f"n{i + 1}", "address": address, "token": cluster.tokens[i], "signing_key": cluster.signing_keys[i]}
             for i, address in enumerate(cluster.addresses)]
    master = HubMaster(directory / "master", MasterSpec(nodes=nodes, image=notebook_on_nodes))
    hub_ip = cluster.registry.split(":")[0]  # the bridge's address: every node reaches it over its veth
    spec = HubSpec(master.spawner_config(), hub_ip=hub_ip, cull_timeout=CULL_TIMEOUT,
                   cull_every=5)
    hub = Hub(spec, directory / "hub")
    try:
        master.setup().start()
        spec.env.update(master.hub_env())
        # The nodes' firewall, with the one allowance the hub needs: its API port on the bridge.
        on_nodes(cluster, "--allow", f"{hub_ip}:{hub.hub_port}/tcp")
        hub.start()
        yield hub, master
    finally:
        print(hub.log(4000))
        print("--- master.log\n" + master.log(3000))
        hub.stop()
        master.stop()
        on_nodes(cluster, "--remove")
        _purge(cluster.sockets)


def routes(hub: Hub) -> dict[str, str]:
    """The proxy's routing table: prefix (without its trailing slash) -> target."""
    answer = requests.get(f"http://127.0.0.1:{hub.api_port}/api/routes", timeout=10,
                          headers={"Authorization": f"token {hub.proxy_token}"})
    assert answer.status_code == 200, answer.text
    return {prefix.rstrip("/"): info["target"] for prefix, info in answer.json().items()}


def node_container(cluster, user: str):  # noqa: F811
    """The container of ``user``'s server on whichever node has it, and that node's index."""
    import docker

    for index, socket in enumerate(cluster.sockets):
        client = docker.DockerClient(base_url=f"unix://{socket}", timeout=30)
        for container in client.containers.list(all=True):
            env = container.attrs["Config"].get("Env") or []
            if f"JUPYTERHUB_USER={user}" in env:
                return container, index
        client.close()
    raise AssertionError(f"no container of {user} on any node")


def owner_uid(container) -> str:
    """The uid the master gave the container's user (``OWNER_UID``; the image's default 1000)."""
    env = dict(item.split("=", 1) for item in container.attrs["Config"].get("Env") or [] if "=" in item)
    return env.get("OWNER_UID", "1000")


def run_inside(container, code: str) -> str:
    """Python ``code`` in ``container`` (the image's Python), as its unprivileged user."""
    done = container.exec_run(["/opt/notebook/bin/python", "-c", code], user=owner_uid(container))
    return done.output.decode(errors="replace").strip()


PROBE = """
import json, socket
out = {}
for name, address, port in json.loads(TARGETS):
    try:
        socket.create_connection((address, port), timeout=5).close()
        out[name] = 'open'
    except OSError as exc:
        out[name] = type(exc).__name__
print(json.dumps(out))
"""


def probe(container, targets: list[tuple[str, str, int]]) -> dict[str, str]:
    """From inside ``container``: which of ``targets`` (name, address, port) accept a TCP connection."""
    output = run_inside(container, f"TARGETS = {json.dumps(targets)!r}\n" + PROBE)
    return json.loads(output.splitlines()[-1])


def test_two_users_on_the_nodes_a_kernel_the_culler_suspends_and_the_state_comes_back(world, cluster):  # noqa: F811
    hub, master = world
    alice, bob = hub.user("alice"), hub.user("bob")
    for user in (alice, bob):
        assert user.sign_in().status_code == 302
        assert user.spawn() in (201, 202)
    for user in (alice, bob):
        hub.api.wait_ready(user.name, timeout=240)

    # Each server runs on a node: the proxy routes to a node's address.
    table = routes(hub)
    targets = {name: table[f"/user/{name}"] for name in ("alice", "bob")}
    for target in targets.values():
        assert any(target.startswith(f"http://{address}:") for address in cluster.addresses), targets

    # A kernel runs code through the proxy, as alice.
    jupyter = alice.server()
    jupyter.wait_ready()
    kernel = jupyter.start_kernel()
    printed = jupyter.execute(kernel, "import os\nx = 6 * 7\nprint(x, os.getuid(), os.getcwd())").split()
    alice_container, _ = node_container(cluster, "alice")
    assert printed == ["42", owner_uid(alice_container), "/data"], printed  # the master's uid for her, not root
    assert printed[1] != "0"

    # Bob never reaches alice's server: not with his session, not with his token, through the proxy...
    assert not bob.opens(f"{hub.url}/user/alice/")
    assert bob.http.get(f"{hub.url}/user/alice/api/kernels", timeout=30).status_code == 403
    token = hub.api.call("POST", "users/bob/tokens", {"note": "e2e"})["token"]
    answer = requests.get(f"{hub.url}/user/alice/api/kernels", timeout=30, allow_redirects=False,
                          headers={"Authorization": f"token {token}"})
    assert answer.status_code == 403, (answer.status_code, answer.text[:300])
    # ... nor directly from inside his container, by the node's address and port: the firewall
    # refuses it, and the one allowance (the hub's API port) is all of the bridge it reaches.
    bob_container, _ = node_container(cluster, "bob")
    alice_address, alice_port = targets["alice"].split("://", 1)[1].rstrip("/").rsplit(":", 1)
    seen = probe(bob_container, [("alice's server", alice_address, int(alice_port)),
                                 ("the hub's API", hub.spec.hub_ip, hub.hub_port),
                                 ("a node's host API", cluster.addresses[0], 8080),
                                 ("the registry", hub.spec.hub_ip, int(cluster.registry.split(":")[1]))])
    assert seen["the hub's API"] == "open", seen
    assert seen["alice's server"] != "open" and seen["a node's host API"] != "open", seen
    assert seen["the registry"] != "open", seen
    # And alice's server itself refuses bob's credentials when reached by its port (from where
    # the proxy reaches it): his server's own token, the one his code holds, and his API token.
    bob_env = dict(item.split("=", 1) for item in bob_container.attrs["Config"]["Env"] if "=" in item)
    for credential in (bob_env["JUPYTERHUB_API_TOKEN"], token):
        direct = requests.get(f"{targets['alice'].rstrip('/')}/user/alice/api/kernels", timeout=30,
                              headers={"Authorization": f"token {credential}"}, allow_redirects=False)
        assert direct.status_code == 403, (direct.status_code, direct.text[:300])

    # Idle: the culler stops alice's server, which the spawner suspends (paused on its node).
    hub.api.wait_stopped("alice", timeout=CULL_TIMEOUT + 90)
    alice_container.reload()
    assert alice_container.attrs["State"]["Paused"], alice_container.attrs["State"]
    assert "/user/alice" not in routes(hub)

    # Alice starts it again: the same kernel still holds x.
    assert alice.spawn() in (201, 202)
    hub.api.wait_ready("alice", timeout=120)
    again = alice.server()
    again.wait_ready()
    assert kernel in [k["id"] for k in again.get("api/kernels").json()]
    assert again.execute(kernel, "print(x)").strip() == "42"
