"""Section 6: what one request of a user's notebook costs on its way in.

One real notebook container (the notebook image, ``GET api/status``), reached five ways in the
same run, interleaved, at 1 and at 16 concurrent clients (each with its own keep-alive
connection), a fixed number of requests each:

- **direct**: the container's published port, with its access secret;
- **configurable-http-proxy**: JupyterHub's proxy (Node.js), with a route for the base URL
  and the secret as a custom header (``scripts/chp.sh`` installs it under a cache directory);
- **the package's path**: nginx with ``docs/proxy-nginx.conf`` as written, in front of the
  master (the test project under gunicorn, 2 workers × 4 threads), signed in as the owner;
- **nginx, no check**: the same file with the check taken out (upstream and secret fixed);
- **nginx, check every request**: the same file without the answer cache (the design before);
- **nginx, signed ticket**: the fast path of the other design measured (a short-lived ticket
  cookie checked inside nginx with ``secure_link_md5``, the container's address and secret from
  a routing table pushed into nginx's configuration); its slow path, when the ticket has
  expired, is the same Django check as the package's path.

The figures are the median latency (p50) and the throughput (requests per second) of each
measurement; the ratios are per repetition, against direct (p50) and against
configurable-http-proxy (throughput).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import docker
import requests

from tests.support.nginx import fill_template, main_conf

from .common import BENCH_LABEL, REPO, Row, ServerProcess, free_port, row, wait_for

logger = logging.getLogger(__name__)

SECTION = "6 access path"
NOTEBOOK_IMAGE = os.environ.get("IPYNBSRV_NOTEBOOK_IMAGE", "ipynbsrv/notebook:latest")
CHP = Path(os.environ.get("IPYNBSRV_CHP_DIR", "/var/cache/ipynbsrv/chp")) / "node_modules/.bin/configurable-http-proxy"
BASE_URL = "/notebooks/alice/nb/"
PATH = BASE_URL + "api/status"
TEMPLATE = REPO / "docs" / "proxy-nginx.conf"
#: The order of the ways; each repetition rotates it.
WAYS = ("direct", "chp", "package", "bare", "every", "ticket")
LABELS = {
    "direct": "direct to the container's port",
    "chp": "configurable-http-proxy",
    "package": "the package's path (nginx, docs/proxy-nginx.conf)",
    "bare": "the same nginx, no check",
    "every": "the same nginx, checking every request (no answer cache)",
    "ticket": "nginx with a signed ticket and a pushed routing table (the other design)",
}


# --------------------------------------------------------------------------- the load


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """(status, whether the server closes the connection after it)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status, headers.get("connection", "").lower() == "close"


async def _client(port: int, request: bytes, count: int, out: list[float], start: asyncio.Event) -> None:
    """One client: one keep-alive connection (opened again when the server closes it, as nginx
    does after ``keepalive_requests``), ``count`` requests once ``start`` is set."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)  # one request before the clock starts: connected and warm
        await writer.drain()
        status, close = await _read_answer(reader)
        if status != 200:
            raise RuntimeError(f"port {port} does not answer 200")
        await start.wait()
        for _ in range(count):
            began = time.perf_counter()
            if close:
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            await writer.drain()
            status, close = await _read_answer(reader)
            out.append(time.perf_counter() - began)
            if status != 200:
                raise RuntimeError(f"port {port} answered {status}")
    finally:
        writer.close()


async def _load(port: int, request: bytes, clients: int, total: int) -> tuple[float, float]:
    """``clients`` connections sending ``total`` requests between them: (p50 in s, req/s)."""
    latencies: list[float] = []
    start = asyncio.Event()
    tasks = [asyncio.create_task(_client(port, request, total // clients, latencies, start)) for _ in range(clients)]
    await asyncio.sleep(0.05)
    began = time.perf_counter()
    start.set()
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=120)
    elapsed = time.perf_counter() - began
    return statistics.median(latencies), len(latencies) / elapsed


def _request(headers: dict[str, str]) -> bytes:
    lines = [f"GET {PATH} HTTP/1.1", "Host: 127.0.0.1", "Connection: keep-alive", "User-Agent: bench"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# --------------------------------------------------------------------------- the parts


def setup_database() -> None:
    """(Run in a subprocess with the test project's settings.) Migrate, make alice's container
    record from the facts in the environment, print a signed-in session key."""
    import django

    django.setup()
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.sessions.backends.db import SessionStore
    from django.core.management import call_command

    from ipynbsrv_backends.models import Backend, Container, Node

    call_command("migrate", verbosity=0, interactive=False)
    user = get_user_model().objects.create_user("alice")
    backend = Backend.objects.create(name="bench", kind="Docker", config={})
    node = Node.objects.create(name="bench", address="127.0.0.1", backend=backend)
    Container.objects.create(owner=user, name="nb", node=node, status="running", base_url=BASE_URL,
                             ports=[{"address": "127.0.0.1", "external": int(os.environ["BENCH_PORT"]),
                                     "internal": 8888}],
                             access_secret=os.environ["BENCH_SECRET"], backend_pk="bench")
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    print(json.dumps({"session": session.session_key}))


def ticket(session: str, key: str, expires: int) -> str:
    """The ticket cookie of the ``ticket`` design: ``MD5,EXPIRES`` as ``secure_link`` reads it."""
    digest = hashlib.md5(f"{expires}{BASE_URL}{session} {key}".encode()).digest()  # noqa: S324 - what nginx offers
    return base64.urlsafe_b64encode(digest).decode().rstrip("=") + f",{expires}"


def _variant(text: str, way: str, upstream: str, secret: str, key: str = "") -> str:
    """docs/proxy-nginx.conf as written (``package``), without its check (``bare``), without
    its answer cache (``every``), or with a signed ticket and a routing table (``ticket``)."""
    if way == "every":
        return text.replace("        proxy_cache ipynbsrv_auth;\n", "")
    if way not in ("bare", "ticket"):
        return text
    fixed = (f'        set $ipynbsrv_upstream "{upstream}";\n        set $ipynbsrv_access "{secret}";\n'
             '        set $ipynbsrv_session "";\n        set $ipynbsrv_allowed "1";\n')
    if way == "ticket":
        fixed = ('        secure_link $cookie_ipynbsrv_ticket;\n'
                 f'        secure_link_md5 "$secure_link_expires$ipynbsrv_scope$cookie_sessionid {key}";\n'
                 '        if ($secure_link != "1") {\n            return 401;\n        }\n'
                 '        set $ipynbsrv_upstream $ipynbsrv_table_upstream;\n'
                 '        set $ipynbsrv_access $ipynbsrv_table_secret;\n'
                 '        set $ipynbsrv_session "";\n        set $ipynbsrv_allowed "1";\n')
        text = (f'map $ipynbsrv_scope $ipynbsrv_table_upstream {{\n    default "";\n    "{BASE_URL}" "{upstream}";\n}}\n'
                f'map $ipynbsrv_scope $ipynbsrv_table_secret {{\n    default "";\n    "{BASE_URL}" "{secret}";\n}}\n'
                + text)
    lines = [line for line in text.splitlines(keepends=True) if "auth_request" not in line]
    text = "".join(lines)
    return text.replace('        set $ipynbsrv_fresh "";\n', '        set $ipynbsrv_fresh "";\n' + fixed, 1)


class Nginx(ServerProcess):
    ready_path = "/nonexistent"
    ready_status = 404

    def __init__(self, logdir: Path, way: str, master: str, upstream: str, secret: str, key: str) -> None:
        prefix = Path(tempfile.mkdtemp(prefix=f"nginx-{way}-", dir=logdir))
        (prefix / "tmp").mkdir()
        port = free_port()
        site = fill_template(_variant(TEMPLATE.read_text(), way, upstream, secret, key), f"127.0.0.1:{port}",
                             master, prefix / "auth-cache")
        (prefix / "site.conf").write_text(site)
        (prefix / "nginx.conf").write_text(main_conf(prefix, prefix / "site.conf", access_log=False, connections=1024))
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        super().__init__(logdir, f"nginx-{way}", [binary, "-p", str(prefix), "-c", str(prefix / "nginx.conf")],
                         dict(os.environ))
        self.port = port


class ConfigurableHttpProxy(ServerProcess):
    ready_path = "/nonexistent"
    ready_status = 404

    def __init__(self, logdir: Path, secret: str) -> None:
        self.api_port = free_port()
        self.token = secrets.token_urlsafe(24)
        env = {**os.environ, "CONFIGPROXY_AUTH_TOKEN": self.token}
        super().__init__(logdir, "chp", [
            str(CHP), "--ip", "127.0.0.1", "--port", "{port}", "--api-ip", "127.0.0.1",
            "--api-port", str(self.api_port), "--custom-header", f"X-Ipynbsrv-Access: {secret}",
            "--log-level", "warn"], env)

    def route(self, prefix: str, target: str) -> None:
        answer = requests.post(f"http://127.0.0.1:{self.api_port}/api/routes{prefix.rstrip('/')}",
                               json={"target": target}, headers={"Authorization": f"token {self.token}"},
                               timeout=10)
        answer.raise_for_status()


class Master(ServerProcess):
    ready_path = "/proxy/auth/"
    ready_status = 401

    def __init__(self, logdir: Path, env: dict[str, str]) -> None:
        super().__init__(logdir, "master", [
            sys.executable, "-m", "gunicorn", "--bind", "127.0.0.1:{port}", "--worker-class", "gthread",
            "--workers", "2", "--threads", "4", "--keep-alive", "5", "--graceful-timeout", "10",
            "--chdir", str(REPO / "testproject"), "--pythonpath", str(REPO), "wsgi:application"], env)


def _notebook(client: docker.DockerClient, secret: str) -> tuple[Any, int]:
    container = client.containers.run(
        NOTEBOOK_IMAGE, detach=True, labels={BENCH_LABEL: "access"}, ports={"8888/tcp": ("127.0.0.1", None)},
        environment={"OWNER": "alice", "BASE_URL": BASE_URL, "IPYNBSRV_ACCESS_SECRET": secret},
        mem_limit="1g", name=f"bench-access-{secrets.token_hex(4)}")
    container.reload()
    port = int(container.attrs["NetworkSettings"]["Ports"]["8888/tcp"][0]["HostPort"])

    def ready() -> bool:
        try:
            answer = requests.get(f"http://127.0.0.1:{port}{PATH}", headers={"X-Ipynbsrv-Access": secret}, timeout=2)
        except requests.RequestException:
            return False
        return answer.status_code == 200

    wait_for(ready, timeout=120, interval=0.3, what="the notebook container to answer")
    return container, port


# --------------------------------------------------------------------------- the section


def measure(logdir: Path, total: int = 2000, clients: tuple[int, ...] = (1, 16), reps: int = 5) -> list[Row]:
    if not CHP.exists():  # scripts/chp.sh installs it under a cache directory with npm
        made = subprocess.run([str(REPO / "scripts" / "chp.sh")], capture_output=True, text=True, timeout=900)
        if made.returncode != 0 or not CHP.exists():
            raise RuntimeError(f"configurable-http-proxy is not at {CHP} and scripts/chp.sh could not install it:\n"
                               + made.stderr[-2000:])
    client = docker.from_env()
    try:
        client.images.get(NOTEBOOK_IMAGE)
    except docker.errors.ImageNotFound:  # never pulled: scripts/notebook-image.sh builds it here
        made = subprocess.run([str(REPO / "scripts" / "notebook-image.sh")], capture_output=True, text=True,
                              timeout=1800)
        if made.returncode != 0:
            raise RuntimeError(f"the notebook image {NOTEBOOK_IMAGE} is missing and could not be built:\n"
                               + made.stderr[-2000:]) from None
    secret = secrets.token_urlsafe(32)
    servers: list[ServerProcess] = []
    notebook, port = _notebook(client, secret)
    try:
        env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
        env.update({"DJANGO_SETTINGS_MODULE": "testproject.settings", "TESTPROJECT_DB": str(logdir / "access.db"),
                    "DJANGO_SECRET_KEY": secrets.token_urlsafe(40), "BENCH_PORT": str(port),
                    "BENCH_SECRET": secret, "PYTHONPATH": str(REPO)})
        made = subprocess.run([sys.executable, "-c", "from bench.access import setup_database; setup_database()"],
                              env=env, cwd=REPO, capture_output=True, text=True, timeout=120, check=True)
        session = json.loads(made.stdout.strip().splitlines()[-1])["session"]
        master = Master(logdir, env).start()
        servers.append(master)
        upstream = f"127.0.0.1:{port}"
        ports = {"direct": port}
        key = secrets.token_urlsafe(24)
        for way in ("package", "bare", "every", "ticket"):
            server = Nginx(logdir, way, f"127.0.0.1:{master.port}", upstream, secret, key).start()
            servers.append(server)
            ports[way] = server.port
        chp = ConfigurableHttpProxy(logdir, secret).start()
        servers.append(chp)
        chp.route(BASE_URL, f"http://{upstream}")
        ports["chp"] = chp.port
        headers = {"direct": {"X-Ipynbsrv-Access": secret}, "package": {"Cookie": f"sessionid={session}"},
                   "every": {"Cookie": f"sessionid={session}"},
                   "ticket": {"Cookie": f"sessionid={session}; "
                                        f"ipynbsrv_ticket={ticket(session, key, int(time.time()) + 3600)}"}}
        return _measure(ports, {way: _request(headers.get(way, {})) for way in WAYS}, total, clients, reps)
    finally:
        for started in reversed(servers):
            started.stop()
        notebook.remove(force=True)
        client.close()


def _measure(ports: dict[str, int], request: dict[str, bytes], total: int, clients: tuple[int, ...],
             reps: int) -> list[Row]:
    rows: list[Row] = []
    for count in clients:
        p50: dict[str, list[float]] = {way: [] for way in WAYS}
        rate: dict[str, list[float]] = {way: [] for way in WAYS}
        for rep in range(reps):
            order = WAYS[rep % len(WAYS):] + WAYS[:rep % len(WAYS)]
            for way in order:
                median, per_second = asyncio.run(_load(ports[way], request[way], count, total))
                p50[way].append(median)
                rate[way].append(per_second)
        per = "client" if count == 1 else "clients"
        for way in ("package", "chp", "bare", "every", "ticket"):
            target = 1.5 if way == "package" else None
            rows.append(row(SECTION, f"p50, {count} {per}: {LABELS[way]} vs direct", p50[way], p50["direct"],
                            target=target, note=f"{total} requests of GET api/status"))
        for way in ("package", "bare", "every", "ticket", "direct"):
            target = 0.8 if way == "package" and count == max(clients) else None
            rows.append(row(SECTION, f"req/s, {count} {per}: {LABELS[way]} vs configurable-http-proxy",
                            rate[way], rate["chp"], target=target, higher_is_better=True, scale=1.0, unit="/s"))
        logger.info("access path at %d client(s) done", count)
    return rows


def page_section(rows: list[Row]) -> str:
    """This section's part of docs/benchmarks.md."""
    from .report import table_lines

    chosen = [item for item in rows if item.section == SECTION]
    return ("## 6. The notebook access path\n\n" + (__doc__ or "").split("\n\n", 1)[1].strip() + "\n\n"
            + "Targets: the package's path at p50 within 1.5× direct, and at 16 clients at least 0.8× "
            "configurable-http-proxy's throughput. Why the path costs what it does: `docs/proxy.md`.\n\n"
            + "\n".join(table_lines(chosen)) + "\n")
