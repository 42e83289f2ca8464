"""The cluster test bed for the tests: two real nodes (network namespaces, each with its own
dockerd and ipynbsrv_hostapi) and a real registry, made by ``scripts/cluster.sh``.

The fixture brings the cluster up unless it already runs (``make cluster``), and takes it
down again at the end only if it brought it up. Everything a test makes on the nodes
carries the label ``org.ipynbsrv.instance=cluster`` and is removed after each test.

Every node requires its token and signed requests, as a production node should: its host
API runs with ``IPYNBSRV_HOSTAPI_SIGNING_KEY`` and ``--state-dir``, and the ``cluster_nodes``
fixture gives the master each node's ``token`` and ``signing_key``. Anything that calls a
node's host API directly must sign (:func:`Cluster.signed_headers`).
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "cluster.sh"
INSTANCE = "cluster"


@dataclass
class Cluster:
    directory: Path
    registry: str
    addresses: list[str]
    urls: list[str]
    sockets: list[str]
    started_here: bool
    # secrets: kept out of the dataclass's repr, so out of any failure message
    tokens: list[str] = field(default_factory=list, repr=False)
    signing_keys: list[str] = field(default_factory=list, repr=False)
    state_dirs: list[Path] = field(default_factory=list)  # each node's host API --state-dir
    ns_prefix: str = "ipyn"
    bridge: str = "ipynbr0"
    shared: Path | None = None  # a directory every node may bind-mount (stands in for NFS)

    def node_dir(self, index: int) -> Path:
        return self.directory / f"n{index + 1}"

    def signed_headers(self, index: int, method: str, path: str, body: bytes | None = None, *,
                       key: str | None = None) -> dict[str, str]:
        """The token and a fresh signature (with the node's start-up key unless ``key``) for
        one direct request to node ``index``'s host API; ``path`` with its query."""
        from ipynbsrv_backends.hostapi.signing import signature_headers

        return {"Authorization": f"Bearer {self.tokens[index]}",
                **signature_headers(key or self.signing_keys[index], method, path, body)}

    def reset_signing_key(self, index: int) -> None:
        """Start node ``index``'s host API over from its start-up key (the documented way:
        stop it, delete the state file, start it), after a test rotated its key."""
        try:
            self.stop_hostapi(index)
        except (FileNotFoundError, ProcessLookupError, ValueError):
            pass  # it was not running (a test stopped it and failed before healing)
        for path in self.state_dirs[index].glob("hostapi-state.sqlite3*"):
            path.unlink()
        self.heal()

    def run(self, *args: str, timeout: float = 300) -> str:
        out = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
                             env={**os.environ, "VENV_BIN": str(Path(os.sys.executable).parent)})
        if out.returncode != 0:
            raise AssertionError(f"cluster.sh {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
        return out.stdout

    def stop_hostapi(self, index: int) -> None:
        """Stop a node's host API the way a supervisor would (SIGTERM) and wait for it."""
        import signal
        import time

        pidfile = self.node_dir(index) / "hostapi.pid"
        pid = int(pidfile.read_text())
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        raise AssertionError(f"the host API of node {index + 1} did not stop")

    def heal(self) -> None:
        """Restart whatever a test stopped."""
        self.run("up", str(len(self.addresses)))


def _facts(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _purge(sockets: list[str]) -> None:
    import docker

    label = f"org.ipynbsrv.instance={INSTANCE}"
    for socket in sockets:
        client = docker.DockerClient(base_url=f"unix://{socket}", timeout=60)
        try:
            for container in client.containers.list(all=True, filters={"label": label}):
                container.remove(force=True, v=True)
            for image in client.images.list(filters={"label": label}):
                for tag in image.tags:
                    try:
                        client.images.remove(tag, force=True)
                    except docker.errors.APIError:
                        pass
            client.images.prune(filters={"dangling": True, "label": label})
            for volume in client.volumes.list(filters={"label": label}):
                volume.remove(force=True)
        finally:
            client.close()


@pytest.fixture(scope="session")
def cluster(raw_docker):
    if os.geteuid() != 0:
        message = "the cluster test bed needs root (network namespaces)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    probe = Cluster(Path("/"), "", [], [], [], False)
    facts = _facts(probe.run("env"))
    already = facts.get("CLUSTER_NODES", "0") not in ("", "0") and "up" in probe.run("status")
    # `up` on a running test bed restarts only what is down, or a host API an older
    # cluster.sh started without a signing key
    probe.run("up", facts["CLUSTER_NODES"] if already else "2")
    facts = _facts(probe.run("env"))
    count = int(facts["CLUSTER_NODES"])
    info = Cluster(
        directory=Path(facts["CLUSTER_DIR"]),
        registry=facts["CLUSTER_REGISTRY"],
        addresses=[facts[f"CLUSTER_NODE_{i}_ADDRESS"] for i in range(1, count + 1)],
        urls=[facts[f"CLUSTER_NODE_{i}_URL"] for i in range(1, count + 1)],
        sockets=[facts[f"CLUSTER_NODE_{i}_SOCKET"] for i in range(1, count + 1)],
        started_here=not already,
        ns_prefix=facts.get("CLUSTER_NAMESPACE_PREFIX", "ipyn"),
        bridge=facts.get("CLUSTER_BRIDGE", "ipynbr0"),
        shared=Path(facts["CLUSTER_SHARED"]) if facts.get("CLUSTER_SHARED") else None,
        state_dirs=[Path(facts[f"CLUSTER_NODE_{i}_STATE_DIR"]) for i in range(1, count + 1)],
    )
    info.tokens = [(info.node_dir(i) / "token").read_text().strip() for i in range(count)]
    info.signing_keys = [(info.node_dir(i) / "signing_key").read_text().strip() for i in range(count)]
    yield info
    _purge(info.sockets)
    if info.started_here:
        info.run("down")
        left = traces(info)
        assert not left, f"cluster.sh down left traces behind: {left}"


def traces(info: Cluster) -> list[str]:
    """What of the test bed still exists: namespaces, links, processes, state."""
    found = []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    import re

    mine = re.compile(rf"^{re.escape(info.ns_prefix)}\d+$")
    found += [f"netns {line.split()[0]}" for line in netns.splitlines() if line and mine.match(line.split()[0])]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    for line in links.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if name == info.bridge or (name.startswith(f"veth-{info.ns_prefix}") and name[len(info.ns_prefix) + 5:].isdigit()):
            found.append(f"link {name}")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if f"{info.directory}/" in cmdline or cmdline.rstrip().endswith(str(info.directory)):
            found.append(f"process {entry.name}: {cmdline[:120]}")
    if info.directory.exists():
        found.append(f"directory {info.directory}")
    return found


@pytest.fixture
def cluster_nodes(cluster, db, master_settings):
    """Node rows on the master for every cluster node, reached through HttpRemote only, each
    with its own token and signing key (conftest's master settings)."""
    from ipynbsrv_backends import registry
    from ipynbsrv_backends.models import Backend, Node

    backend = Backend.objects.create(name="hostapi", kind="HttpRemote",
                                     config={"url": "http://{address}:8080", "timeout": 10})
    nodes = [
        Node.objects.create(name=f"n{i + 1}", address=address, backend=backend, capacity=20,
                            backend_config={"token": cluster.tokens[i], "signing_key": cluster.signing_keys[i]})
        for i, address in enumerate(cluster.addresses)
    ]
    yield nodes
    cluster.heal()
    _purge(cluster.sockets)
    registry.forget_backend()


#: The instance label of what the swarm tests make (apart from the host API tests' ``cluster``).
SWARM_INSTANCE = "swarm-test"


@dataclass
class Swarm:
    """The test bed's nodes as one swarm: node 1 the manager, every node labelled
    ``org.ipynbsrv.node=nN``, and the test image in the test bed's registry."""

    cluster: Cluster
    manager: str  # the manager engine's URL (DockerSwarm's base_url)
    image: str  # the test image, by its name in the registry every node pulls from
    node_ids: list[str]  # by node index

    def client(self, index: int = 0):  # type: ignore[no-untyped-def]
        import docker

        return docker.APIClient(base_url=f"unix://{self.cluster.sockets[index]}", timeout=60)

    def availability(self, index: int) -> str:
        """``active``, ``pause`` or ``drain``: node ``index`` as the manager sees it."""
        client = self.client()
        try:
            return client.inspect_node(self.node_ids[index])["Spec"]["Availability"]
        finally:
            client.close()


def _purge_services(manager: str, instance: str) -> None:
    """Remove the services ``instance`` made and wait (bounded) until their tasks are gone."""
    import time

    import docker

    client = docker.APIClient(base_url=manager, timeout=60)
    try:
        ids = [s["ID"] for s in client.services(filters={"label": f"org.ipynbsrv.instance={instance}"})]
        for service_id in ids:
            try:
                client.remove_service(service_id)
            except docker.errors.NotFound:
                pass
        deadline = time.monotonic() + 30
        while ids and time.monotonic() < deadline:
            if not [t for t in client.tasks() if t.get("ServiceID") in ids]:
                break
            time.sleep(0.2)
    finally:
        client.close()


@pytest.fixture(scope="session")
def swarm(cluster):
    """The cluster's nodes in swarm mode (made here if they were not, left again at the end),
    the test image in the test bed's registry."""
    import docker

    already = "CLUSTER_SWARM_MANAGER" in _facts(cluster.run("env"))
    cluster.run("swarm")
    facts = _facts(cluster.run("env"))
    node_ids = []
    for socket in cluster.sockets:
        client = docker.APIClient(base_url=f"unix://{socket}", timeout=60)
        node_ids.append(client.info()["Swarm"]["NodeID"])
        client.close()
    image = facts["CLUSTER_SWARM_IMAGE"]  # `swarm` pushed it to the registry every machine pulls from
    info = Swarm(cluster=cluster, manager=facts["CLUSTER_SWARM_MANAGER"], image=image, node_ids=node_ids)
    yield info
    _purge_services(info.manager, SWARM_INSTANCE)
    if not already:
        cluster.run("unswarm")
