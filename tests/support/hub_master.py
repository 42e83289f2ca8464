"""A master for a JupyterHub: ``testproject`` served by gunicorn in a process of its own, on a
file SQLite database that knows the test bed's nodes (reached only through ``HttpRemote`` with
each node's token and signing key), the notebook image, and one hub credential made the
documented way (``manage.py ipynbsrv_hub add NAME``, which prints only the token).

Used by ``tests/cluster/test_hub_e2e.py`` and ``bench/hub.py``: the hub's ``IpynbsrvSpawner``
talks to it over HTTP as it would to a real master. ``python -m tests.support.hub_master
setup FACTS.json`` is the set-up half (run in the master's environment, not in the caller's).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from .processes import stop_process
from .waiting import free_port, wait_for

REPO = Path(__file__).resolve().parents[2]
MANAGE = REPO / "testproject" / "manage.py"


@dataclass
class MasterSpec:
    """What the master knows: ``nodes`` (dicts of name, address, token, signing_key), the
    notebook image it starts for the hub, the hub's name, and its ``IPYNBSRV_BACKENDS``."""

    nodes: list[dict[str, str]] = field(repr=False)
    image: str
    hub_name: str = "testhub"
    settings: dict[str, Any] = field(default_factory=lambda: {
        "CONTAINER_PORTS": [8888], "SERVER_SELECTION_ALGORITHM": "least-loaded", "HEALTH_TTL": 30,
        "CONTAINER_OPTIONS": {"mem_limit": "1g"}})
    capacity: int = 40


class HubMaster:
    """The master's process, its database and the hub's token (kept out of reprs)."""

    def __init__(self, directory: Path, spec: MasterSpec) -> None:
        self.directory = directory
        self.spec = spec
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._token = ""

    def __repr__(self) -> str:
        return f"HubMaster({self.url}, hub={self.spec.hub_name!r})"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def token(self) -> str:
        """The hub's credential (``manage.py ipynbsrv_hub add`` printed it once)."""
        return self._token

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("IPYNBSRV_HOSTAPI_", "JUPYTERHUB_"))}
        env.update({
            "DJANGO_SETTINGS_MODULE": "testproject.settings",
            "TESTPROJECT_DB": str(self.directory / "master.sqlite3"),
            "IPYNBSRV_BACKENDS_JSON": json.dumps(self.spec.settings),
            "PYTHONPATH": str(REPO),
        })
        return env

    def manage(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(MANAGE), *args], capture_output=True, text=True,
                              timeout=timeout, env=self.env(), cwd=REPO)

    def setup(self) -> HubMaster:
        """The database: migrations, nodes, the image, the hub's credential."""
        self.directory.mkdir(parents=True, exist_ok=True)
        facts = self.directory / "master-facts.json"
        facts.write_text(json.dumps({"nodes": self.spec.nodes, "image": self.spec.image,
                                     "capacity": self.spec.capacity}))
        facts.chmod(0o600)
        done = subprocess.run([sys.executable, "-m", "tests.support.hub_master", "setup", str(facts)],
                              capture_output=True, text=True, timeout=300, env=self.env(), cwd=REPO)
        facts.unlink()
        if done.returncode != 0:
            raise AssertionError(f"the master's set-up failed:\n{done.stdout}\n{done.stderr}")
        added = self.manage("ipynbsrv_hub", "add", self.spec.hub_name)
        if added.returncode != 0:
            raise AssertionError(f"manage.py ipynbsrv_hub add failed:\n{added.stderr}")
        lines = added.stdout.strip().splitlines()
        assert len(lines) == 1 and lines[0].strip(), "ipynbsrv_hub add must print only the token"
        self._token = lines[0].strip()
        return self

    def start(self, timeout: float = 60.0) -> HubMaster:
        """gunicorn (one worker: SQLite; threads for the hub's concurrent calls)."""
        log = open(self.directory / "master.log", "wb")  # noqa: SIM115 - kept open by the child
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{self.port}", "--workers", "1",
             "--worker-class", "gthread", "--threads", "32", "--timeout", "300", "--graceful-timeout", "10",
             "testproject.wsgi:application"],
            stdout=log, stderr=subprocess.STDOUT, env=self.env(), cwd=REPO, start_new_session=True)
        log.close()

        def answers() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"the master exited with {self.process.returncode}:\n{self.log()}")
            try:
                return requests.get(f"{self.url}admin/login/", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_for(answers, timeout=timeout, interval=0.2, what="the master to answer")
        return self

    def log(self, tail: int = 6000) -> str:
        path = self.directory / "master.log"
        return path.read_text(errors="replace")[-tail:] if path.exists() else ""

    def stop(self) -> None:
        stop_process(self.process, timeout=20)

    def spawner_config(self, **more: Any) -> str:
        """The hub's config lines for ``IpynbsrvSpawner`` against this master (the token comes
        from the hub's environment, ``IPYNBSRV_HUB_TOKEN``: see :meth:`hub_env`)."""
        lines = ["c.JupyterHub.spawner_class = 'ipynbsrv'",
                 f"c.IpynbsrvSpawner.master_url = {self.url!r}"]
        lines += [f"c.IpynbsrvSpawner.{key} = {value!r}" for key, value in more.items()]
        return "\n".join(lines)

    def hub_env(self) -> dict[str, str]:
        return {"IPYNBSRV_HUB_TOKEN": self._token}


def _setup(facts_path: str) -> int:
    """In the master's environment: migrate, the nodes, the image (public)."""
    facts = json.loads(Path(facts_path).read_text())
    sys.path.insert(0, str(REPO))
    import django

    django.setup()
    from django.core.management import call_command

    from ipynbsrv_backends import services
    from ipynbsrv_backends.models import Backend, Image, Node

    call_command("migrate", verbosity=0, interactive=False)
    backend, _ = Backend.objects.update_or_create(
        name="host API", defaults={"kind": "HttpRemote",
                                   "config": {"url": "http://{address}:8080", "timeout": 60, "long_timeout": 300}})
    for node in facts["nodes"]:
        Node.objects.update_or_create(name=node["name"], defaults={
            "address": node["address"], "backend": backend, "capacity": facts["capacity"],
            "backend_config": {"token": node["token"], "signing_key": node["signing_key"]}})
    Image.objects.get_or_create(ref=facts["image"], node=None, defaults={"name": "jupyter", "public": True})
    statuses = services.check_nodes_health(Node.objects.all())
    if any(status != 0 for status in statuses.values()):
        print(f"not every node is healthy: {statuses}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "setup":
        sys.exit(_setup(sys.argv[2]))
    print("usage: python -m tests.support.hub_master setup FACTS.json", file=sys.stderr)
    sys.exit(2)


def purge_hub_servers(sockets: list[str], hub_name: str) -> int:
    """Remove from the nodes' engines (``sockets``) the containers and volumes the master made
    for ``hub_name``'s users (owners ``HUB.NAME``), nothing else; how many containers."""
    import docker

    removed = 0
    for socket in sockets:
        client = docker.DockerClient(base_url=f"unix://{socket}", timeout=120)
        try:
            mine = [c for c in client.containers.list(all=True, filters={"label": "org.ipynbsrv.instance=cluster"})
                    if c.labels.get("org.ipynbsrv.owner", "").startswith(f"{hub_name}.")]
            for container in mine:
                container.remove(force=True)
                removed += 1
            for volume in client.volumes.list(filters={"label": "org.ipynbsrv.instance=cluster"}):
                if (volume.attrs.get("Labels") or {}).get("org.ipynbsrv.owner", "").startswith(f"{hub_name}."):
                    volume.remove(force=True)
        finally:
            client.close()
    return removed
