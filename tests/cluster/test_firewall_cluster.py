"""``ipynbsrv_firewall`` on real nodes of the cluster test bed.

A user's notebook server stands in as a busybox ``httpd`` publishing its port on node A's
address (as the backend publishes notebooks). Other users' containers try to reach it: one
on node A, one on node B. Without the firewall both get the page, although the test bed's
engines run with ``--icc=false``: the connection to the node's address is answered by the
engine's userland proxy on the node, not forwarded between containers. With the firewall on
both nodes neither gets it, while the master's side (this process, in the root namespace,
where nginx would be) still does.

The command always runs inside a node's network namespace (``nsenter --net``), never in the
root namespace, and every test takes its rules out again."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ..conftest import TEST_IMAGE
from ..testbed import INSTANCE, cluster  # noqa: F401 - fixture
from ..utils import http_get, wait_for

pytestmark = [pytest.mark.engine, pytest.mark.cluster]

FIREWALL = Path(sys.executable).parent / "ipynbsrv_firewall"
LABELS = {"org.ipynbsrv.instance": INSTANCE}
A, B = 0, 1
HOSTAPI_PORT = 8080
NSENTER = shutil.which("nsenter") or "/usr/bin/nsenter"


def netns(cluster, index: int) -> str:
    path = f"/run/netns/{cluster.ns_prefix}{index + 1}"
    assert Path(path).exists(), f"no namespace {path}: the test bed is not up"
    return path


def firewall(cluster, index: int, *args: str) -> subprocess.CompletedProcess:
    """Run the console script as an operator would, as root, in node ``index``'s namespace."""
    assert FIREWALL.exists(), f"{FIREWALL} is missing: `make venv` installs the console scripts"
    return subprocess.run(["nsenter", f"--net={netns(cluster, index)}", str(FIREWALL), *args],
                          capture_output=True, text=True, timeout=60)


def install(cluster, index: int, *args: str) -> str:
    done = firewall(cluster, index, *args)
    assert done.returncode == 0, f"ipynbsrv_firewall {' '.join(args)} on node {index + 1}: {done.stdout}{done.stderr}"
    return done.stdout


def rules(cluster, index: int) -> list[str]:
    done = subprocess.run(["nsenter", f"--net={netns(cluster, index)}", "iptables", "-w", "-S"],
                          capture_output=True, text=True, timeout=30, check=True)
    return done.stdout.splitlines()


def engine(cluster, index: int):
    import docker

    return docker.DockerClient(base_url=f"unix://{cluster.sockets[index]}", timeout=30)


def stop_engine(cluster, index: int) -> None:
    """Stop a node's dockerd as its supervisor would (SIGTERM) and wait until it is gone."""
    pid = int((cluster.node_dir(index) / "docker.pid").read_text())
    os.kill(pid, signal.SIGTERM)

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"

    wait_for(gone, timeout=60, interval=0.2, what=f"the engine of node {index + 1} to stop")


def engine_flags(cluster, index: int) -> str:
    pid = int((cluster.node_dir(index) / "docker.pid").read_text())
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


@dataclass
class Bed:
    """A notebook stand-in on node A, and another user's container on each node."""

    cluster: object
    clients: list = field(default_factory=list)  # docker clients of node A and node B
    server: object = None
    probes: list = field(default_factory=list)  # one container per node that tries to connect
    marker: str = ""

    @property
    def address(self) -> str:
        return self.cluster.addresses[A]

    @property
    def port(self) -> int:
        """The server's published port on node A's address (re-read: a restart may change it)."""
        self.server.reload()
        (binding,) = self.server.attrs["NetworkSettings"]["Ports"]["8888/tcp"]
        assert binding["HostIp"] == self.address
        return int(binding["HostPort"])

    @property
    def bridge_ip(self) -> str:
        self.server.reload()
        return self.server.attrs["NetworkSettings"]["IPAddress"]

    def halt(self) -> None:
        """Kill the containers at once (an engine stopping with them waits 10 s for each)."""
        for container in (self.server, *self.probes):
            container.reload()
            if container.status == "running":
                container.kill()

    def start(self) -> None:
        for container in (self.server, *self.probes):
            container.reload()
            if container.status != "running":
                container.start()
        url = f"http://{self.address}:{self.port}/"
        wait_for(lambda: self._master_gets(url), timeout=15, what=f"{url} to answer the master")

    def _master_gets(self, url: str) -> bool:
        try:
            status, body = http_get(url, timeout=2)
        except OSError:
            return False
        return status == 200 and self.marker in body.decode()

    def master_gets(self) -> bool:
        """The master's side (the root namespace, like nginx) asks node A's published port."""
        return self._master_gets(f"http://{self.address}:{self.port}/")

    def reaches(self, node: int, address: str, port: int) -> str:
        """Whether a container on ``node`` gets an HTTP answer from ``address:port``: the
        answer's first line, or '' (bounded: nc gives up after 3 s, the exec after 6 s)."""
        request = r'printf "GET / HTTP/1.0\r\n\r\n"'
        code, output = self.probes[node].exec_run(["timeout", "6", "sh", "-c", f"{request} | nc -w 3 {address} {port}"])
        text = output.decode(errors="replace")
        return text.splitlines()[0] if code == 0 and text.startswith("HTTP/") else ""

    def gets_notebook(self, node: int) -> bool:
        """A container on ``node`` asks node A's address and the port the server publishes."""
        code, output = self.probes[node].exec_run(
            ["timeout", "6", "sh", "-c", rf'printf "GET / HTTP/1.0\r\n\r\n" | nc -w 3 {self.address} {self.port}'])
        return code == 0 and self.marker in output.decode(errors="replace")


@pytest.fixture
def bed(cluster):
    made = Bed(cluster, clients=[engine(cluster, A), engine(cluster, B)], marker=f"notebook-{uuid.uuid4().hex[:12]}")
    try:
        made.server = made.clients[A].containers.create(
            TEST_IMAGE, ["sh", "-c", f"mkdir -p /www && echo {made.marker} > /www/index.html && exec httpd -f -p 8888 -h /www"],
            labels=LABELS, ports={"8888/tcp": (cluster.addresses[A], None)}, name=f"fw-server-{made.marker}")
        made.probes = [client.containers.create(TEST_IMAGE, ["sleep", "600"], labels=LABELS, name=f"fw-probe{i}-{made.marker}")
                       for i, client in enumerate(made.clients)]
        made.start()
        yield made
    finally:
        for index in (A, B):
            firewall(cluster, index, "--remove")
        for container in (made.server, *made.probes):
            if container is not None:
                container.remove(force=True)
        for client in made.clients:
            client.close()


def test_the_firewall_keeps_containers_from_other_users_notebooks_and_the_master_still_reaches_them(cluster, bed):
    port = bed.port
    # without it (the test bed's engines run with --icc=false): another user's container on
    # the same node and one on another node both get the notebook, and reach the host API
    assert bed.gets_notebook(A), "without the firewall a container on node A should reach node A's published port"
    assert bed.gets_notebook(B), "without the firewall a container on node B should reach node A's published port"
    assert bed.reaches(B, bed.address, HOSTAPI_PORT)

    install(cluster, A)
    install(cluster, B)
    assert firewall(cluster, A, "--check").returncode == 0
    assert firewall(cluster, B, "--check").returncode == 0

    assert not bed.gets_notebook(A), "a container on node A still reaches node A's published port"
    assert not bed.gets_notebook(B), "a container on node B still reaches node A's published port"
    # nor the server's bridge address, nor any node's host API
    assert not bed.reaches(A, bed.bridge_ip, 8888)
    for node in (A, B):
        for address in cluster.addresses:
            assert not bed.reaches(node, address, HOSTAPI_PORT), (node, address)
    # the notebook path keeps working: the master's side reaches the published port
    assert bed.master_gets()
    assert bed.port == port


def test_allow_and_the_protected_list_are_honoured(cluster, bed):
    port = bed.port
    # an exception: node B's containers may reach exactly node A's published port
    install(cluster, B, "--allow", f"{bed.address}:{port}/tcp")
    assert bed.gets_notebook(B)
    assert not bed.reaches(B, bed.address, HOSTAPI_PORT)
    # --check answers for the options it is given
    assert firewall(cluster, B, "--check", "--allow", f"{bed.address}:{port}/tcp").returncode == 0
    checked = firewall(cluster, B, "--check")
    assert checked.returncode == 1 and "differ" in checked.stderr
    # a destination outside the protected networks stays reachable: the containers' own
    # connections out (and the replies, through the node's NAT) keep working
    install(cluster, B, "--protect", "192.168.0.0/16")
    assert bed.gets_notebook(B)
    assert bed.reaches(B, bed.address, HOSTAPI_PORT)


def test_install_twice_check_repair_and_remove(cluster, bed):
    before = rules(cluster, A)
    assert not [line for line in before if "IPYNBSRV" in line]
    checked = firewall(cluster, A, "--check")
    assert checked.returncode == 1 and "missing" in checked.stderr

    first = install(cluster, A)
    assert first.startswith("installed")
    installed = rules(cluster, A)
    second = install(cluster, A)
    assert second.startswith("already in place")
    assert rules(cluster, A) == installed
    assert installed.count("-A INPUT -j IPYNBSRV-INPUT") == 1
    assert installed.count("-A DOCKER-USER -j IPYNBSRV-FORWARD") == 1
    assert [line for line in installed if line.startswith("-A INPUT")][0] == "-A INPUT -j IPYNBSRV-INPUT"
    assert [line for line in installed if line.startswith("-A DOCKER-USER")][0] == "-A DOCKER-USER -j IPYNBSRV-FORWARD"
    assert not bed.gets_notebook(A)

    # a rule taken out by hand: --check says so, and an install puts it back
    subprocess.run(["nsenter", f"--net={netns(cluster, A)}", "iptables", "-w", "-D", "IPYNBSRV-INPUT", "2"], check=True)
    checked = firewall(cluster, A, "--check")
    assert checked.returncode == 1 and "IPYNBSRV-INPUT" in checked.stderr
    assert bed.gets_notebook(A)  # the hole is real
    install(cluster, A)
    assert rules(cluster, A) == installed
    assert firewall(cluster, A, "--check").returncode == 0
    assert not bed.gets_notebook(A)

    # the dry run shows what a removal would run, and changes nothing
    dry = firewall(cluster, A, "--remove", "--dry-run")
    assert dry.returncode == 0 and "iptables -w -X IPYNBSRV-FORWARD" in dry.stdout
    assert rules(cluster, A) == installed

    removed = install(cluster, A, "--remove")
    assert removed.startswith("removed")
    assert rules(cluster, A) == before
    assert firewall(cluster, A, "--check").returncode == 1
    assert bed.gets_notebook(A), "--remove should restore the previous behaviour"
    assert install(cluster, A, "--remove").startswith("nothing to remove")


def test_the_rules_survive_an_engine_restart(cluster, bed):
    install(cluster, A)
    bed.halt()
    stop_engine(cluster, A)
    try:
        # the engine stopped: its chains and ours stay where they were
        assert firewall(cluster, A, "--check").returncode == 0
    finally:
        cluster.heal()  # starts the engine again, as its supervisor would
    assert firewall(cluster, A, "--check").returncode == 0, "the engine's restart lost the rules"
    bed.start()  # the engine stopped the containers with it
    assert not bed.gets_notebook(A)
    assert bed.master_gets()


def test_the_rules_hold_without_the_userland_proxy_and_with_icc(cluster, bed, monkeypatch):
    """The other engine settings: no docker-proxy (published ports by NAT alone, hairpin
    included) and containers allowed to talk over the bridge (icc true)."""
    bed.halt()
    stop_engine(cluster, A)
    monkeypatch.setenv("IPYNBSRV_CLUSTER_DOCKERD_ARGS", "--userland-proxy=false --icc=true")
    try:
        cluster.heal()
        assert "--userland-proxy=false --icc=true" in engine_flags(cluster, A)
        bed.start()
        assert bed.gets_notebook(A)
        assert bed.reaches(A, bed.bridge_ip, 8888)  # icc true: straight over the bridge
        install(cluster, A)
        assert not bed.gets_notebook(A)
        assert not bed.reaches(A, bed.bridge_ip, 8888)
        assert bed.master_gets()
        # container to container is refused whatever the addresses: with no protected
        # network covering the bridge's, the rule for each pair of bridges still holds
        install(cluster, A, "--protect", "192.168.0.0/16")
        assert not bed.gets_notebook(A)  # the hairpin: NAT to the server, then over the bridge
        assert not bed.reaches(A, bed.bridge_ip, 8888)
        assert bed.master_gets()
    finally:
        monkeypatch.delenv("IPYNBSRV_CLUSTER_DOCKERD_ARGS")
        firewall(cluster, A, "--remove")
        bed.halt()
        stop_engine(cluster, A)
        cluster.heal()
    assert "--userland-proxy" not in engine_flags(cluster, A)


@pytest.fixture
def scratch_netns(cluster):
    """A network namespace of our own with no engine at all (so no DOCKER-USER chain)."""
    name = f"{cluster.ns_prefix}fw{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield f"/run/netns/{name}"
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def test_clear_errors_where_it_cannot_act(scratch_netns):
    def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([NSENTER, f"--net={scratch_netns}", str(FIREWALL), *args],
                              capture_output=True, text=True, timeout=60, env=env)

    def iptables_s() -> str:
        return subprocess.run(["nsenter", f"--net={scratch_netns}", "iptables", "-w", "-S"],
                              capture_output=True, text=True, timeout=30, check=True).stdout

    untouched = iptables_s()
    done = run()
    assert done.returncode == 3
    assert "DOCKER-USER" in done.stderr and '"iptables": true' in done.stderr
    assert iptables_s() == untouched  # nothing half-installed
    done = run("--check")
    assert done.returncode == 1 and "DOCKER-USER chain is missing" in done.stderr
    assert run("--remove").returncode == 0

    # no iptables on PATH
    done = run(env={"PATH": "/nonexistent"})
    assert done.returncode == 3 and "iptables is not installed" in done.stderr
    # not root (nsenter first, as root, then drop to nobody)
    done = subprocess.run(["nsenter", f"--net={scratch_netns}", "setpriv", "--reuid=65534", "--regid=65534",
                           "--clear-groups", str(FIREWALL), "--check"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 3 and "needs root" in done.stderr
    # bad input is a usage error that names the value
    done = run("--allow", "10.0.0.1:99999")
    assert done.returncode == 2 and "99999" in done.stderr
    assert iptables_s() == untouched
