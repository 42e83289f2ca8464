"""The notebook image's hub mode, with a real JupyterHub, configurable-http-proxy and
DockerSpawner on this machine's engine (tests/support/hub.py).

With a hub's environment (``JUPYTERHUB_API_TOKEN``) the image's entrypoint runs
``jupyterhub-singleuser`` as the unprivileged user, in /data, on port 8888, under the prefix
the hub chose; the hub's sign-in guards it (a user signs in on the hub's form, the server
takes them through the hub's OAuth), and another signed-in user is refused. The master's
access secret, given too, reaches no kernel. The server's state survives DockerSpawner's
stop and start (the container is kept), and the image's health check answers in hub mode.

This also proves the harness the end-to-end test and the bench use with ``IpynbsrvSpawner``.
"""

from __future__ import annotations

import uuid

import pytest

from ..notebook import notebook_image  # noqa: F401 - fixture
from ..support.hub import DOCKER_LABEL, HubSpec, docker0_address, dockerspawner_config, purge_docker, start_hub

pytestmark = [pytest.mark.engine, pytest.mark.timeout(400)]

CODE = "import os\nx = 6 * 7\nprint(x, os.getuid(), os.getcwd(), 'IPYNBSRV_ACCESS_SECRET' in os.environ)"


@pytest.fixture(scope="module")
def docker_hub(notebook_image, tmp_path_factory):  # noqa: F811
    run = uuid.uuid4().hex[:8]
    # The master's secret too, as the master would set it: hub mode must not pass it on.
    config = dockerspawner_config(notebook_image, run) + "\nc.DockerSpawner.environment = " \
        "{'IPYNBSRV_ACCESS_SECRET': 'not-for-kernels-' + 'x' * 20, 'JUPYTERHUB_ACTIVITY_INTERVAL': '5'}\n"
    hub = start_hub(HubSpec(config, hub_ip=docker0_address()), tmp_path_factory.mktemp("hub"))
    try:
        yield hub
    finally:
        print(hub.log(3000))
        hub.stop()
        purge_docker(run)


def test_a_signed_in_user_runs_code_in_the_hub_mode_server(docker_hub, raw_docker):
    alice = docker_hub.user("alice")
    assert alice.sign_in(password="wrong").status_code == 403  # the authenticator is really asked
    signed = alice.sign_in()
    assert signed.status_code == 302, signed.text[:300]
    assert alice.spawn() in (201, 202)
    docker_hub.api.wait_ready("alice")
    jupyter = alice.server()
    jupyter.wait_ready()
    kernel = jupyter.start_kernel()
    printed = jupyter.execute(kernel, CODE).split()
    assert printed == ["42", "1000", "/data", "False"], printed  # unprivileged, in /data, no secret

    (container,) = raw_docker.containers.list(filters={"label": DOCKER_LABEL, "name": "-alice"})
    health = container.exec_run(["/opt/notebook/bin/python", "/usr/local/bin/ipynbsrv-healthcheck"])
    assert health.exit_code == 0, health.output.decode()
    assert "jupyterhub-singleuser" in container.logs().decode(errors="replace")

    # Stopped (as the idle culler stops it) and started again: DockerSpawner starts the kept
    # container; the kernel is gone (a new process), the work in /data is not.
    jupyter.execute(kernel, "open('/data/kept.txt', 'w').write('kept')")
    docker_hub.api.stop("alice")
    docker_hub.api.wait_stopped("alice")
    docker_hub.api.start("alice")
    docker_hub.api.wait_ready("alice")
    again = alice.server()
    again.wait_ready()
    kernel = again.start_kernel()
    assert again.execute(kernel, "print(open('/data/kept.txt').read())").strip() == "kept"


def test_another_user_is_refused_by_the_server(docker_hub):
    bob = docker_hub.user("bob")
    assert bob.sign_in().status_code == 302
    if not docker_hub.api.ready("alice"):
        docker_hub.api.start("alice")
        docker_hub.api.wait_ready("alice")
    # Bob's session, through the proxy, to alice's server: the hub's OAuth refuses him.
    assert not bob.opens(f"{docker_hub.url}/user/alice/")
    answer = bob.http.get(f"{docker_hub.url}/user/alice/api/status", timeout=30)
    assert answer.status_code == 403, (answer.status_code, answer.url)
    # A token of bob's (his own scopes: his server) is refused by alice's server too.
    token = docker_hub.api.call("POST", "users/bob/tokens", {"note": "test"})["token"]
    answer = bob.http.get(f"{docker_hub.url}/user/alice/api/status", timeout=30,
                          headers={"Authorization": f"token {token}"}, allow_redirects=False)
    assert answer.status_code == 403, (answer.status_code, answer.text[:300])
