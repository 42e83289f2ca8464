"""A real JupyterHub for the tests and the bench: the hub process, configurable-http-proxy in
front of it, a simple authenticator, and clients of both sides.

:func:`start_hub` writes a ``jupyterhub_config.py`` for a given spawner (its lines are passed
in as Python source), starts configurable-http-proxy (``scripts/chp.sh`` installs it) on
127.0.0.1 and the hub behind it, and waits (bounded) until the hub answers through the
proxy. The hub's own API listens on ``hub_ip`` (an address the containers can reach: the root
engine's ``docker0`` gateway, or the test bed's bridge, which the nodes reach over their
veths) and tells the single-user servers that address.

- :class:`HubAPI`: the hub's REST API with a service token the harness registers (admin of
  users and servers): create users, start and stop servers, read their state.
- :class:`HubUser`: a person: signs in on the hub's login form (``shared-password``
  authenticator: one password for every user), asks for their server with the hub's REST
  API (the session's cookie and ``_xsrf``, as the hub's pages do), and opens it through the
  proxy: the OAuth hand-shake with the hub as a browser follows it, then a
  :class:`tests.notebook.Jupyter` on the same session (REST and kernel websockets).

Every wait is bounded (:func:`wait_for`); :meth:`Hub.stop` ends both processes (SIGTERM, then
SIGKILL after a deadline) and never the servers of other hubs.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from .processes import stop_process
from .waiting import free_port, wait_for

REPO = Path(__file__).resolve().parents[2]
CHP_SCRIPT = REPO / "scripts" / "chp.sh"
#: The service whose token the harness's :class:`HubAPI` uses, and its scopes.
ADMIN_SERVICE = "harness"
ADMIN_SCOPES = ["admin:users", "admin:servers", "tokens", "list:users", "read:users", "read:servers",
                "access:servers"]


def chp_command() -> str:
    """configurable-http-proxy's command (``scripts/chp.sh`` installs it when it is missing)."""
    done = subprocess.run(["bash", str(CHP_SCRIPT)], capture_output=True, text=True, timeout=660)
    if done.returncode != 0 or not done.stdout.strip():
        raise RuntimeError(f"scripts/chp.sh could not provide configurable-http-proxy:\n{done.stderr}")
    return done.stdout.strip().splitlines()[-1]


def jupyterhub_command() -> list[str]:
    """This Python's ``jupyterhub`` (the Makefile installs it into the venv)."""
    script = Path(sys.executable).parent / "jupyterhub"
    return [str(script)] if script.exists() else [sys.executable, "-m", "jupyterhub"]


def docker0_address() -> str:
    """The root engine's bridge gateway: where its containers reach this machine."""
    import docker

    client = docker.from_env(timeout=30)
    try:
        return client.networks.get("bridge").attrs["IPAM"]["Config"][0]["Gateway"]
    finally:
        client.close()


@dataclass
class HubSpec:
    """What the hub runs: the spawner's config lines (Python source using ``c``), the address
    of the hub's API for the containers, and the idle culler when ``cull_timeout`` is set."""

    spawner_config: str
    hub_ip: str
    password: str = field(default_factory=lambda: secrets.token_urlsafe(12), repr=False)
    cull_timeout: int | None = None  # seconds idle before jupyterhub-idle-culler stops a server
    cull_every: int = 5
    activity_interval: int = 5  # how often a single-user server tells the hub it is active
    start_timeout: int = 240
    http_timeout: int = 180
    env: dict[str, str] = field(default_factory=dict, repr=False)  # for the hub process (secrets)


def config_source(spec: HubSpec, directory: Path, public_port: int, api_port: int, hub_port: int,
                  admin_token: str) -> str:
    """The ``jupyterhub_config.py`` of :func:`start_hub` (the proxy's token comes from the
    environment, ``CONFIGPROXY_AUTH_TOKEN``, not from this file)."""
    services: list[dict[str, Any]] = [{"name": ADMIN_SERVICE, "api_token": admin_token}]
    roles: list[dict[str, Any]] = [{"name": "harness", "scopes": ADMIN_SCOPES, "services": [ADMIN_SERVICE]}]
    if spec.cull_timeout is not None:
        services.append({"name": "idle-culler", "command": [
            sys.executable, "-m", "jupyterhub_idle_culler",
            f"--timeout={spec.cull_timeout}", f"--cull-every={spec.cull_every}"]})
        roles.append({"name": "idle-culler", "services": ["idle-culler"],
                      "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"]})
    lines = [
        "c = get_config()  # noqa: F821",
        f"c.JupyterHub.bind_url = {f'http://127.0.0.1:{public_port}/'!r}",
        f"c.JupyterHub.hub_bind_url = {f'http://{spec.hub_ip}:{hub_port}'!r}",
        f"c.JupyterHub.hub_connect_url = {f'http://{spec.hub_ip}:{hub_port}'!r}",
        "c.ConfigurableHTTPProxy.should_start = False",
        f"c.ConfigurableHTTPProxy.api_url = {f'http://127.0.0.1:{api_port}'!r}",
        f"c.JupyterHub.db_url = {f'sqlite:///{directory}/jupyterhub.sqlite'!r}",
        f"c.JupyterHub.cookie_secret_file = {str(directory / 'cookie_secret')!r}",
        f"c.JupyterHub.pid_file = {str(directory / 'jupyterhub.pid')!r}",
        "c.JupyterHub.cleanup_servers = False  # the tests remove what they made",
        "c.JupyterHub.last_activity_interval = 5",
        "c.JupyterHub.authenticator_class = 'shared-password'",
        f"c.SharedPasswordAuthenticator.user_password = {spec.password!r}",
        "c.Authenticator.allow_all = True",
        f"c.JupyterHub.services = {services!r}",
        f"c.JupyterHub.load_roles = {roles!r}",
        f"c.Spawner.start_timeout = {spec.start_timeout}",
        f"c.Spawner.http_timeout = {spec.http_timeout}",
        f"c.Spawner.environment = {{'JUPYTERHUB_ACTIVITY_INTERVAL': {str(spec.activity_interval)!r}}}",
        "",
        spec.spawner_config,
    ]
    return "\n".join(lines) + "\n"


class Hub:
    """A running hub and its proxy (see :func:`start_hub`)."""

    def __init__(self, spec: HubSpec, directory: Path) -> None:
        self.spec = spec
        self.directory = directory
        self.public_port, self.api_port, self.hub_port = free_port(), free_port(), free_port()
        self.proxy_token = secrets.token_hex(32)
        self.admin_token = secrets.token_hex(32)
        self.proxy: subprocess.Popen[bytes] | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.api = HubAPI(self.url, self.admin_token)

    @property
    def url(self) -> str:
        """The public URL (the proxy's), without a trailing slash."""
        return f"http://127.0.0.1:{self.public_port}"

    @property
    def hub_api_url(self) -> str:
        """Where containers reach the hub's API (the allowance a firewall must make)."""
        return f"http://{self.spec.hub_ip}:{self.hub_port}/hub/api"

    def log(self, tail: int = 6000) -> str:
        parts = []
        for name in ("jupyterhub.log",):
            path = self.directory / name
            if path.exists():
                parts.append(f"--- {name}\n" + path.read_text(errors="replace")[-tail:])
        return "\n".join(parts)

    def start(self, timeout: float = 90.0) -> Hub:
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "jupyterhub_config.py"
        config.write_text(config_source(self.spec, self.directory, self.public_port, self.api_port, self.hub_port,
                                        self.admin_token))
        env = {**_clean_env(), **self.spec.env, "CONFIGPROXY_AUTH_TOKEN": self.proxy_token}
        with open(self.directory / "chp.log", "wb") as log:
            self.proxy = subprocess.Popen(
                [chp_command(), "--ip", "127.0.0.1", "--port", str(self.public_port),
                 "--api-ip", "127.0.0.1", "--api-port", str(self.api_port),
                 "--error-target", f"http://{self.spec.hub_ip}:{self.hub_port}/hub/error", "--log-level", "warn"],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.directory, start_new_session=True)
        with open(self.directory / "jupyterhub.log", "wb") as log:
            self.process = subprocess.Popen(
                [*jupyterhub_command(), "-f", str(config)],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.directory, start_new_session=True)
        try:
            wait_for(self._answers, timeout=timeout, interval=0.3, what="JupyterHub to answer through its proxy")
        except BaseException:
            self.stop()
            raise
        return self

    def _answers(self) -> bool:
        for process, name in ((self.process, "jupyterhub"), (self.proxy, "configurable-http-proxy")):
            if process is not None and process.poll() is not None:
                raise AssertionError(f"{name} exited with {process.returncode}:\n{self.log()}")
        try:
            return requests.get(f"{self.url}/hub/api/", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def stop(self) -> None:
        """SIGTERM to the hub (it stops its managed services, the culler), then the proxy."""
        stop_process(self.process, timeout=30)
        stop_process(self.proxy, timeout=15)

    def user(self, name: str) -> HubUser:
        return HubUser(self, name)

    def __enter__(self) -> Hub:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


def _clean_env() -> dict[str, str]:
    """Our environment minus Django's and the host API's settings (the hub is no Django
    process) and minus any JupyterHub variables of an outer hub."""
    import os

    return {k: v for k, v in os.environ.items()
            if k != "DJANGO_SETTINGS_MODULE" and not k.startswith(("IPYNBSRV_HOSTAPI_", "JUPYTERHUB_"))}


def start_hub(spec: HubSpec, directory: Path, timeout: float = 90.0) -> Hub:
    """A hub with configurable-http-proxy for ``spec``, answering (bounded wait)."""
    return Hub(spec, directory).start(timeout=timeout)


class HubAPI:
    """The hub's REST API with a token (the harness's service, or a user's)."""

    def __init__(self, url: str, token: str) -> None:
        self.base = f"{url}/hub/api"
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"token {token}"

    def call(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200, 201, 202, 204)) -> Any:
        answer = self.http.request(method, f"{self.base}/{path}", json=body, timeout=60)
        if answer.status_code not in ok:
            raise AssertionError(f"{method} hub/api/{path}: {answer.status_code} {answer.text[:500]}")
        return answer.json() if answer.content else None

    def create_users(self, names: list[str]) -> None:
        self.call("POST", "users", {"usernames": names}, ok=(201, 409))

    def user(self, name: str) -> dict[str, Any]:
        return self.call("GET", f"users/{name}")

    def start(self, name: str) -> int:
        """Ask for ``name``'s default server: 201 (started) or 202 (starting)."""
        answer = self.http.post(f"{self.base}/users/{name}/server", timeout=60)
        if answer.status_code not in (201, 202):
            raise AssertionError(f"starting {name}'s server: {answer.status_code} {answer.text[:500]}")
        return answer.status_code

    def stop(self, name: str) -> int:
        """Stop ``name``'s default server (as the idle culler does): 204 (stopped), 202 (stopping)."""
        answer = self.http.delete(f"{self.base}/users/{name}/server", timeout=60)
        if answer.status_code not in (202, 204):
            raise AssertionError(f"stopping {name}'s server: {answer.status_code} {answer.text[:500]}")
        return answer.status_code

    def server(self, name: str) -> dict[str, Any] | None:
        """``name``'s default server as the hub sees it (None when it has none)."""
        return self.user(name).get("servers", {}).get("")

    def ready(self, name: str) -> bool:
        server = self.server(name)
        return bool(server and server.get("ready") and not server.get("pending"))

    def stopped(self, name: str) -> bool:
        return self.server(name) is None

    def wait_ready(self, name: str, timeout: float = 240.0) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            server = self.server(name)
            if server is None:
                raise AssertionError(f"{name}'s server is gone (start failed?)")
            return server if server.get("ready") and not server.get("pending") else None

        return wait_for(ready, timeout=timeout, interval=0.3, what=f"{name}'s server to be ready")

    def wait_stopped(self, name: str, timeout: float = 120.0) -> None:
        wait_for(lambda: self.stopped(name), timeout=timeout, interval=0.3, what=f"{name}'s server to stop")


class HubUser:
    """One person on the hub: a browser-like session (cookies), signed in on the login form."""

    def __init__(self, hub: Hub, name: str) -> None:
        self.hub = hub
        self.name = name
        self.http = requests.Session()

    def cookie(self, name: str, path: str) -> str:
        """The value of cookie ``name`` set for ``path`` (several may share a name)."""
        for cookie in self.http.cookies:
            if cookie.name == name and cookie.path.rstrip("/") == path.rstrip("/"):
                return cookie.value or ""
        return ""

    def sign_in(self, password: str | None = None) -> requests.Response:
        """The login form, as a browser submits it (``_xsrf`` from the form's page)."""
        page = self.http.get(f"{self.hub.url}/hub/login", timeout=30)
        assert page.status_code == 200, page.text[:500]
        answer = self.http.post(
            f"{self.hub.url}/hub/login?next=", timeout=60, allow_redirects=False,
            data={"username": self.name, "password": password if password is not None else self.hub.spec.password,
                  "_xsrf": self.cookie("_xsrf", "/hub/")})
        return answer

    def api(self, method: str, path: str) -> requests.Response:
        """The hub's REST API with this session's cookie (and ``_xsrf``, as the hub's pages send it)."""
        return self.http.request(method, f"{self.hub.url}/hub/api/{path}", timeout=60,
                                 headers={"X-XSRFToken": self.cookie("_xsrf", "/hub/")})

    def spawn(self) -> int:
        """Ask for this user's default server through the REST API: 201 or 202."""
        answer = self.api("POST", f"users/{self.name}/server")
        assert answer.status_code in (201, 202), f"{answer.status_code} {answer.text[:500]}"
        return answer.status_code

    @property
    def prefix(self) -> str:
        return f"/user/{self.name}/"

    def server(self, owner: str | None = None, timeout: float = 120.0) -> Any:
        """``owner``'s (default: this user's) server through the proxy, as this session: the
        OAuth hand-shake with the hub (redirects followed, as a browser does), then a Jupyter
        client on the same session."""
        from ..notebook import Jupyter

        base = f"{self.hub.url}/user/{owner or self.name}/"
        wait_for(lambda: self.opens(base), timeout=timeout, interval=0.5, what=f"{base} to open for {self.name}")
        jupyter = Jupyter(base)
        jupyter.http.close()
        jupyter.http = self.http
        return jupyter

    def opens(self, base: str) -> bool:
        """Whether the server's page under ``base`` opens for this session: GET ``base``tree,
        following the redirects (at most 10: to the hub's OAuth and back), ends in a 200 from
        the server itself (not the hub's "your server is starting" page)."""
        self.http.max_redirects = 10
        answer = self.http.get(base + "tree", timeout=30)
        return answer.status_code == 200 and answer.url.startswith(base)


#: The label on every container a harness's DockerSpawner makes (its value: the run's id).
DOCKER_LABEL = "org.ipynbsrv.hubtest"


def dockerspawner_config(image: str, run: str) -> str:
    """DockerSpawner on this machine's engine: ``image``, containers named and labelled for
    ``run``, kept when stopped (the next start is the engine's start of a stopped container),
    the port published on 127.0.0.1 where the proxy reaches it."""
    return "\n".join([
        "c.JupyterHub.spawner_class = 'docker'",
        f"c.DockerSpawner.image = {image!r}",
        f"c.DockerSpawner.name_template = {f'hubtest-{run}-{{username}}'!r}",
        f"c.DockerSpawner.extra_create_kwargs = {{'labels': {{{DOCKER_LABEL!r}: {run!r}}}}}",
        "c.DockerSpawner.remove = False",
        "c.DockerSpawner.host_ip = '127.0.0.1'",
        "c.DockerSpawner.port = 8888",
    ])


def purge_docker(run: str) -> None:
    """Remove the containers (and their anonymous volumes) of ``run``'s DockerSpawner."""
    import docker

    client = docker.from_env(timeout=60)
    try:
        for container in client.containers.list(all=True, filters={"label": f"{DOCKER_LABEL}={run}"}):
            container.remove(force=True, v=True)
    finally:
        client.close()
