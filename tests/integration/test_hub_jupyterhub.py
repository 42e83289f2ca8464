"""``IpynbsrvSpawner`` inside a real JupyterHub (its own process, with configurable-http-proxy),
spawning through a real master (pytest-django's live server) onto a node on the real engine,
driven through the hub's REST API: a start with the master's progress events, the hub's proxy
routing to the node's port, a stop that suspends and a start that resumes, a named server, a
refused placement in the hub's words, and a hub restart that finds its servers again.

The busybox stand-in answers HTTP on the published port, which is all the hub asks of a server
here; the real notebook image's hub mode, a kernel and culling are tests/cluster's end to end test
(the cluster folder's test_hub_e2e.py), on the two-node test bed."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command

from ipynbsrv_backends.models import Container, Node

from ..support import free_port, stop_process, wait_for
from ..support.ci import missing

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
SERVICE_TOKEN = "test-service-token-0123456789abcdef0123456789"


def chp_command() -> str:
    found = shutil.which("configurable-http-proxy")
    if found:
        return found
    try:
        return subprocess.run([str(ROOT / "scripts" / "chp.sh")], capture_output=True, text=True, check=True,
                              timeout=600).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        missing(f"configurable-http-proxy is needed (scripts/chp.sh installs it): {exc}")


class RealHub:
    """A JupyterHub process with IpynbsrvSpawner, started (and restarted) on fixed ports."""

    def __init__(self, workdir: Path, master: str, token: str) -> None:
        self.dir, self.port, self.hub_port, self.api_port = workdir, free_port(), free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.env = {**os.environ, "IPYNBSRV_HUB_TOKEN": token, "CONFIGPROXY_AUTH_TOKEN": "proxy-token-0123456789"}
        (workdir / "jupyterhub_config.py").write_text(f"""
c.JupyterHub.spawner_class = "ipynbsrv"
c.IpynbsrvSpawner.master_url = {master!r}
c.IpynbsrvSpawner.master_poll_interval = 0.2
c.JupyterHub.authenticator_class = "dummy"
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {self.port}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {self.hub_port}
c.JupyterHub.allow_named_servers = True
c.JupyterHub.cleanup_servers = False
c.JupyterHub.cleanup_proxy = True
c.JupyterHub.db_url = "sqlite:///{workdir}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{workdir}/cookie_secret"
c.JupyterHub.pid_file = "{workdir}/jupyterhub.pid"
c.JupyterHub.tornado_settings = {{"slow_spawn_timeout": 0}}
c.ConfigurableHTTPProxy.command = [{chp_command()!r}]
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{self.api_port}"
c.JupyterHub.services = [{{"name": "tester", "api_token": {SERVICE_TOKEN!r}}}]
c.JupyterHub.load_roles = [{{"name": "tester", "services": ["tester"],
                            "scopes": ["admin:users", "admin:servers", "read:users", "servers", "users"]}}]
""")

    def start(self) -> None:
        log = open(self.dir / "jupyterhub.log", "ab")
        binary = Path(sys.executable).parent / "jupyterhub"
        self.process = subprocess.Popen([str(binary), "-f", str(self.dir / "jupyterhub_config.py")], cwd=self.dir,
                                        env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()

        def up() -> bool:
            if self.process is not None and self.process.poll() is not None:
                pytest.fail("JupyterHub exited at start:\n" + self.log()[-3000:])
            try:
                return self.api("GET", "/")[0] == 200
            except OSError:
                return False

        wait_for(up, timeout=60, what="JupyterHub to answer")

    def stop(self) -> None:
        stop_process(self.process, timeout=20)
        # the proxy the hub started (it stops it itself on SIGTERM; not after a SIGKILL)
        pid_file = self.dir / "jupyterhub-proxy.pid"
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text().strip()), 15)
            except (ValueError, OSError):
                pass  # gone already

    def log(self) -> str:
        return (self.dir / "jupyterhub.log").read_text(errors="replace")

    def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        request = urllib.request.Request(f"{self.url}/hub/api{path}", method=method,
                                         data=json.dumps(body).encode() if body is not None else None,
                                         headers={"Authorization": f"token {SERVICE_TOKEN}"})
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                code, text = answer.status, answer.read()
        except urllib.error.HTTPError as exc:
            code, text = exc.code, exc.read()
        try:
            return code, json.loads(text) if text else None
        except ValueError:  # the proxy's own answer while the hub is not routed yet
            return code, text.decode(errors="replace")

    def progress(self, path: str) -> list[dict[str, Any]]:
        """The spawn's progress events, until the ready or failed one (bounded)."""
        request = urllib.request.Request(f"{self.url}/hub/api{path}/progress",
                                         headers={"Authorization": f"token {SERVICE_TOKEN}"})
        events: list[dict[str, Any]] = []
        with urllib.request.urlopen(request, timeout=60) as stream:
            for raw in stream:
                line = raw.decode().strip()
                if line.startswith("data:"):
                    events.append(json.loads(line[5:]))
                    if events[-1].get("ready") or events[-1].get("failed") or len(events) > 200:
                        break
        return events

    def server(self, user: str, name: str = "") -> dict[str, Any] | None:
        return (self.api("GET", f"/users/{user}")[1].get("servers") or {}).get(name)


@pytest.fixture
def real_hub(master_settings, make_node, image, live_server, tmp_path):
    make_node("n1")
    out = io.StringIO()
    call_command("ipynbsrv_hub", "add", "lab", stdout=out, stderr=io.StringIO())
    hub = RealHub(tmp_path, live_server.url, out.getvalue().strip())
    try:
        hub.start()
    except BaseException:  # pytest's failure too: never leave the hub (and its proxy) running
        hub.stop()
        raise
    yield hub
    for container in Container.objects.all():  # the hub leaves its servers (cleanup_servers = False)
        from ipynbsrv_backends import services

        services.delete_container(container)
    hub.stop()


def ready(hub: RealHub, user: str, name: str = "") -> dict[str, Any]:
    return wait_for(lambda: (s := hub.server(user, name)) and s.get("ready") and s, timeout=60,
                    what=f"{user}'s server {name!r} to be ready in the hub")


def test_a_real_hub_spawns_suspends_resumes_and_survives_a_restart(real_hub):
    hub = real_hub
    assert hub.api("POST", "/users/alice")[0] == 201
    code, _ = hub.api("POST", "/users/alice/server")
    assert code in (201, 202)
    events = hub.progress("/users/alice/server")
    assert events[-1].get("ready"), events
    messages = [e.get("message", "") for e in events]
    assert any("on n1" in m for m in messages), messages  # the master's own words: placed/starting/running on n1
    ready(hub, "alice")
    container = Container.objects.get(owner__username="lab.alice", name="hub")
    assert container.status == "running"
    # the hub's proxy routes /user/alice/ to the node's published port, where the stand-in answers
    port = next(p["external"] for p in container.ports if p["internal"] == 8888)
    direct = urllib.request.Request(f"http://127.0.0.1:{port}/user/alice/")
    proxied = urllib.request.Request(f"{hub.url}/user/alice/")
    answers = []
    for request in (direct, proxied):
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                answers.append((answer.status, answer.read()[:200]))
        except urllib.error.HTTPError as exc:
            answers.append((exc.code, exc.read()[:200]))
    assert answers[0] == answers[1], answers

    # stop in the hub: the master suspends it; start again: resumed, the same container
    assert hub.api("DELETE", "/users/alice/server")[0] in (202, 204)
    wait_for(lambda: hub.server("alice") is None, timeout=30, what="the hub to see the server stopped")
    container.refresh_from_db()
    assert container.status == "suspended"
    assert hub.api("POST", "/users/alice/server")[0] in (201, 202)
    ready(hub, "alice")
    assert Container.objects.get(pk=container.pk).status == "running"

    # a named server is a container of its own
    assert hub.api("POST", "/users/alice/servers/work")[0] in (201, 202)
    ready(hub, "alice", "work")
    assert Container.objects.filter(owner__username="lab.alice", name="hub-work").exists()

    # the hub restarts and finds both servers where they were (its state, polled on the master)
    hub.stop()
    hub.start()
    assert hub.server("alice")["ready"] and hub.server("alice", "work")["ready"]
    assert "moved to" not in hub.log()

    # a placement the master refuses reaches the hub's progress in the master's words
    Node.objects.update(enabled=False)
    assert hub.api("POST", "/users/bob")[0] == 201
    hub.api("POST", "/users/bob/server")
    failed = hub.progress("/users/bob/server")
    assert failed[-1].get("failed"), failed
    assert "node" in failed[-1]["message"].lower(), failed[-1]

    # deleting the named server in the hub deletes its container
    Node.objects.update(enabled=True)
    assert hub.api("DELETE", "/users/alice/servers/work", {"remove": True})[0] in (202, 204)
    wait_for(lambda: not Container.objects.filter(name="hub-work").exists(), timeout=30,
             what="the named server's container to be deleted")
