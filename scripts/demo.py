#!/usr/bin/env python
"""`make demo`: the master on this machine, from nothing to the admin in one command.

It builds the real notebook image (``scripts/notebook-image.sh``: a couple of minutes the
first time, then reused), creates (or migrates) a SQLite database, registers the local Docker
engine as the node ``local``, registers the image as a public base image, makes an ``admin``
account with a generated password, starts one Jupyter Notebook for that account through the
service layer, and serves the master as a real site does: Django behind nginx with
``docs/proxy-nginx.conf``, so the notebook is reached through the proxy's check (sign in,
then open it) and answers only requests that carry its access secret. It checks that Jupyter
answers through that path, and serves until Ctrl-C. On Ctrl-C it stops nginx and Django and
removes every container of the demo node, so nothing is left running.

When the notebook image cannot be built (no root, no Debian mirror, no wheels), it says why
and starts the small test image instead, whose busybox httpd stands in for a notebook server
(it checks nothing, and is reached directly).

Everything lives in ``$IPYNBSRV_DEMO_DIR`` (default ``/tmp/ipynbsrv-demo``): the database
``db.sqlite3``, the admin password ``admin-password``, the session key ``secret-key``, the
server's ``server.log`` and nginx's directory ``nginx/``. Running it again reuses them. Other knobs (for tests):
``IPYNBSRV_DEMO_PORT`` (default 8000; 0 picks a free port), ``IPYNBSRV_DEMO_INSTANCE`` and
``IPYNBSRV_DEMO_PREFIX`` (the Docker backend's label and name prefix), ``IPYNBSRV_DEMO_IMAGE``
(an image to start instead, built by nobody), ``IPYNBSRV_DEMO_BUILD`` (the build script).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEMO_DIR = Path(os.environ.get("IPYNBSRV_DEMO_DIR", "/tmp/ipynbsrv-demo"))
NOTEBOOK_IMAGE = os.environ.get("IPYNBSRV_NOTEBOOK_IMAGE", "ipynbsrv/notebook:latest")
STAND_IN = os.environ.get("IPYNBSRV_TEST_IMAGE", "ipynbsrv-test/busybox:latest")
BUILD = os.environ.get("IPYNBSRV_DEMO_BUILD", str(ROOT / "scripts" / "notebook-image.sh"))
INSTANCE = os.environ.get("IPYNBSRV_DEMO_INSTANCE", "demo")
PREFIX = os.environ.get("IPYNBSRV_DEMO_PREFIX", "ipynbsrv-demo")
PORT = int(os.environ.get("IPYNBSRV_DEMO_PORT", "8000"))
NODE, BACKEND, ADMIN, CONTAINER = "local", "local-docker", "admin", "notebook"
NGINX_TEMPLATE = ROOT / "docs" / "proxy-nginx.conf"
#: The dynamic modules the template needs (Debian's libnginx-mod-http-lua: the containers'
#: keep-alive pool), which Debian's own nginx.conf loads from /etc/nginx/modules-enabled/.
NGINX_MODULES = ("/usr/lib/nginx/modules/ndk_http_module.so", "/usr/lib/nginx/modules/ngx_http_lua_module.so")
#: Added to the template's notebook location: a visitor who is not signed in is sent to the
#: admin's login page (docs/proxy.md shows the same for a site's own login page).
LOGIN_REDIRECT = """        error_page 401 = @ipynbsrv_login;
    }

    location @ipynbsrv_login {
        return 302 /admin/login/?next=$request_uri;
    }
"""

#: The master's settings for the demo: no named volumes are made, so Ctrl-C leaves nothing
#: behind. Jupyter serves under the usual base URL; the stand-in's httpd only serves "/".
MASTER_SETTINGS = {"CONTAINER_PORTS": [8888], "CONTAINER_VOLUMES": []}
STAND_IN_SETTINGS = {**MASTER_SETTINGS, "CONTAINER_BASE_URL": "/"}


class Choice:
    """The image the demo starts, and how to tell that it answers."""

    def __init__(self, ref: str, jupyter: bool) -> None:
        self.ref, self.jupyter = ref, jupyter

    @property
    def name(self) -> str:
        return "jupyter-notebook" if self.jupyter else "busybox-notebook"

    @property
    def description(self) -> str:
        if self.jupyter:
            return "Jupyter Notebook (images/notebook/): runs as its owner, keeps the work in /data."
        return "The test image: busybox's httpd on port 8888 stands in for a notebook server."

    @property
    def settings(self) -> dict[str, Any]:
        return MASTER_SETTINGS if self.jupyter else STAND_IN_SETTINGS

    @property
    def options(self) -> dict[str, Any]:
        if self.jupyter:  # a server and a kernel need more room than busybox
            return {"mem_limit": "1g", "cpu_limit": 1, "pids_limit": 512}
        return {"mem_limit": "128m", "cpu_limit": 0.5, "pids_limit": 64}

    def ready_url(self, url: str) -> str:
        """What answers 200 once the server is up: Jupyter's own status for a notebook."""
        return url + "api/status" if self.jupyter else url

    def headers(self, container: Any) -> dict[str, str]:
        """What a request straight to the container needs (what the proxy adds)."""
        from ipynbsrv_backends.contract import ACCESS_HEADER

        return {ACCESS_HEADER: container.access_secret} if self.jupyter else {}


class DemoError(Exception):
    """Something the person running the demo must fix; the message says what."""


def say(text: str = "") -> None:
    print(text, flush=True)


def _kept_secret(path: Path, make: Any) -> str:
    """A value kept in a private file, made once."""
    if path.exists():
        return path.read_text().strip()
    value = make()
    path.touch(mode=0o600)
    path.write_text(value + "\n")
    return value


def choose_image(interrupted: threading.Event) -> Choice | None:
    """The real notebook image, built when it is missing; the stand-in if it cannot be.
    ``None`` when Ctrl-C came during the build."""
    override = os.environ.get("IPYNBSRV_DEMO_IMAGE")
    if override:
        return Choice(override, jupyter=override == NOTEBOOK_IMAGE)
    if subprocess.run([BUILD, "--check"], cwd=ROOT, capture_output=True).returncode != 0:
        say(f"Building the notebook image {NOTEBOOK_IMAGE}: this takes a couple of minutes the first time "
            "(a Debian root filesystem and Jupyter's wheels, no registry) ...")
        build = subprocess.Popen([BUILD], cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)
        assert build.stdout is not None
        for line in build.stdout:
            say(f"    {line.rstrip()}")
        if build.wait() != 0 and interrupted.is_set():
            return None
        if build.returncode != 0:
            say(f"The notebook image could not be built (see above), so the demo falls back to the small "
                f"stand-in {STAND_IN}: busybox's httpd answers instead of Jupyter. Fix the cause and run "
                "`make image`, then `make demo` again, for a real notebook.")
            return Choice(STAND_IN, jupyter=False)
    return Choice(NOTEBOOK_IMAGE, jupyter=True)


def environment(choice: Choice) -> dict[str, str]:
    """The environment of this process and of the server: the same database and settings."""
    DEMO_DIR.mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "testproject.settings",
        "TESTPROJECT_DB": str(DEMO_DIR / "db.sqlite3"),
        "IPYNBSRV_BACKENDS_JSON": json.dumps(choice.settings),
        "DJANGO_SECRET_KEY": _kept_secret(DEMO_DIR / "secret-key", lambda: secrets.token_urlsafe(50)),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }


def answers(url: str, timeout: float = 30.0, alive: Any = None, headers: dict[str, str] | None = None) -> bool:
    """Poll ``url`` until it answers 200, for at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            return False
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=2) as response:
                if response.status == 200:
                    return True
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.2)
    return False


def free_port(preferred: int) -> int:
    """``preferred`` when it is free on 127.0.0.1, else any free port."""
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return probe.getsockname()[1]
    raise DemoError("No free port on 127.0.0.1.")


# ---------------------------------------------------------------------------- set-up

def admin_password() -> str:
    """The admin account, with the password kept in the demo directory (made once)."""
    from django.contrib.auth import get_user_model

    password = _kept_secret(DEMO_DIR / "admin-password", lambda: secrets.token_urlsafe(12))
    user, _created = get_user_model().objects.get_or_create(username=ADMIN, defaults={"email": "admin@localhost"})
    if not (user.is_staff and user.is_superuser and user.is_active and user.check_password(password)):
        user.is_staff = user.is_superuser = user.is_active = True
        user.set_password(password)
        user.save()
    return password


def remove_everything(node: Any) -> list[str]:
    """Remove every container of the demo node (through the services) and every image users
    committed during the demo; returns what could not be removed."""
    from ipynbsrv_backends import errors, services
    from ipynbsrv_backends.models import Container, Image

    problems = []
    for container in Container.objects.filter(node=node).select_related("node__backend", "owner"):
        try:
            services.delete_container(container)
        except errors.BackendError as exc:
            problems.append(f"{container}: {exc}")
    for image in Image.objects.filter(owner__isnull=False):
        try:
            services.delete_image(image)
        except errors.BackendError as exc:
            problems.append(f"{image}: {exc}")
    report = services.reconcile(node, remove=True)  # labelled containers without a record
    problems.extend(report.problems)
    return problems


def set_up(choice: Choice) -> tuple[Any, Any, str]:
    """Database, node, image, accounts and the demo container; returns (node, container, password)."""
    import django

    django.setup()
    logging.getLogger("ipynbsrv_backends").setLevel(logging.WARNING)
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from ipynbsrv_backends import errors, services
    from ipynbsrv_backends.contract import BACKEND_STATUS_OK
    from ipynbsrv_backends.models import Backend, Image, Node

    call_command("migrate", interactive=False, verbosity=0)
    backend, _ = Backend.objects.update_or_create(name=BACKEND, defaults={"kind": "Docker", "config": {
        "instance": INSTANCE, "name_prefix": PREFIX, "stop_timeout": 5, "pull_policy": "never"}})
    node, _ = Node.objects.update_or_create(name=NODE, defaults={
        "address": "127.0.0.1", "backend": backend, "enabled": True, "draining": False, "capacity": 10})
    if services.check_node_health(node) != BACKEND_STATUS_OK:
        raise DemoError(f"The local Docker engine does not answer ({node.last_error}). "
                        "Run `make engine` as root, or start dockerd, and try again.")
    image, _ = Image.objects.update_or_create(ref=choice.ref, node=None, defaults={
        "name": choice.name, "public": True, "owner": None, "description": choice.description})
    password = admin_password()
    user = get_user_model().objects.get(username=ADMIN)

    leftovers = remove_everything(node)  # from a demo that was killed without Ctrl-C
    if leftovers:
        raise DemoError("Could not remove what an earlier demo left: " + "; ".join(leftovers))
    try:
        container = services.create_container(user, CONTAINER, image=image, node=node, options=choice.options)
    except errors.BackendError as exc:
        raise DemoError(f"Could not start the demo container: {exc}") from exc
    return node, container, password


def last_logs(container: Any) -> str:
    """The container's last log lines (before Ctrl-C's clean-up removes it)."""
    from ipynbsrv_backends import errors
    from ipynbsrv_backends.registry import get_backend

    try:
        lines = get_backend(container.node).get_container_logs(container.backend_pk, tail=20)
    except errors.BackendError as exc:
        return f"  (none: {exc})"
    return "\n".join(f"  {line}" for line in lines) or "  (none)"


# ---------------------------------------------------------------------------- serving

def serve(env: dict[str, str], port: int) -> subprocess.Popen:
    """The admin under Django's development server (static files included)."""
    log = open(DEMO_DIR / "server.log", "ab")
    try:
        return subprocess.Popen(
            [sys.executable, str(ROOT / "testproject" / "manage.py"), "runserver", "--noreload", "--insecure",
             f"127.0.0.1:{port}"],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )
    finally:
        log.close()


def start_nginx(port: int, master: str) -> subprocess.Popen:
    """Debian's nginx on 127.0.0.1:``port`` with docs/proxy-nginx.conf in front of ``master``."""
    binary = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if binary is None:
        raise DemoError("nginx is missing: `make demo` installs it as root (Debian's nginx package).")
    prefix = DEMO_DIR / "nginx"
    (prefix / "tmp").mkdir(parents=True, exist_ok=True)
    site = (NGINX_TEMPLATE.read_text().replace("@LISTEN@", f"127.0.0.1:{port}").replace("@MASTER@", master)
            .replace("@AUTH_CACHE@", str(prefix / "tmp" / "auth-cache")))
    location_end = "        error_page 504 = @ipynbsrv_unreachable;\n    }\n"  # the end of location /notebooks/
    if location_end not in site:
        raise DemoError(f"{NGINX_TEMPLATE} has no location /notebooks/ ending in {location_end.strip()!r}.")
    site = site.replace(location_end, location_end[:-len("    }\n")] + LOGIN_REDIRECT, 1)
    (prefix / "ipynbsrv.conf").write_text(site)
    temp = prefix / "tmp"
    modules = [m for m in NGINX_MODULES if os.path.exists(m)]
    if len(modules) != len(NGINX_MODULES):
        raise DemoError("nginx's Lua module is missing: `make demo` installs it as root (Debian's "
                        "libnginx-mod-http-lua).")
    (prefix / "nginx.conf").write_text(
        "".join(f"load_module {module};\n" for module in modules)
        + ("user root;\n" if os.geteuid() == 0 else "")
        + f"daemon off;\nworker_processes 1;\npid {prefix}/nginx.pid;\nerror_log {prefix}/error.log;\n"
        + "events { worker_connections 256; }\n"
        + f"http {{\n    access_log {prefix}/access.log;\n    client_body_temp_path {temp}/body;\n"
        + f"    proxy_temp_path {temp}/proxy;\n    fastcgi_temp_path {temp}/fastcgi;\n"
        + f"    uwsgi_temp_path {temp}/uwsgi;\n    scgi_temp_path {temp}/scgi;\n"
        + f"    include {prefix}/ipynbsrv.conf;\n}}\n")
    check = subprocess.run([binary, "-t", "-p", str(prefix), "-c", str(prefix / "nginx.conf")],
                           capture_output=True, text=True)
    if check.returncode != 0:
        raise DemoError(f"nginx refuses the proxy configuration:\n{check.stderr}")
    return subprocess.Popen([binary, "-p", str(prefix), "-c", str(prefix / "nginx.conf")],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(server: subprocess.Popen | None) -> None:
    if server is None or server.poll() is not None:
        return
    server.terminate()
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(timeout=10)


def main() -> int:
    interrupted = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: interrupted.set())

    choice = choose_image(interrupted)
    if choice is None:
        return 0
    env = environment(choice)
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    node = server = proxy = None
    try:
        say(f"Setting up the master in {DEMO_DIR} ...")
        node, container, password = set_up(choice)
        direct = container.url
        if not direct or not answers(choice.ready_url(direct), timeout=90, headers=choice.headers(container),
                                     alive=lambda: not interrupted.is_set()):
            if interrupted.is_set():
                return 0
            raise DemoError(f"The demo container {container.backend_pk} did not answer at {direct}. "
                            "Its last log lines:\n" + last_logs(container))
        port = free_port(PORT)
        django_port = free_port(0)
        server = serve(env, django_port)
        proxy = start_nginx(port, f"127.0.0.1:{django_port}")
        site = f"http://127.0.0.1:{port}"
        admin_url = f"{site}/admin/"
        if not answers(admin_url + "login/", alive=lambda: server.poll() is None and proxy.poll() is None
                       and not interrupted.is_set()):
            if interrupted.is_set():
                return 0
            raise DemoError(f"The admin did not start; see {DEMO_DIR / 'server.log'} and {DEMO_DIR / 'nginx'}.")
        url = site + container.base_url if choice.jupyter else direct
        say()
        say(f"  database   {env['TESTPROJECT_DB']}")
        say(f"  node       {node.name} (the local Docker engine, instance {INSTANCE!r}): healthy")
        say(f"  container  {container} on {container.node}: {container.status}")
        say(f"  image      {choice.ref}" + ("" if choice.jupyter else " (the stand-in: no Jupyter)"))
        say(f"  notebook   {url}")
        say(f"  admin      {admin_url}")
        say(f"  log in as  {ADMIN} / {password}")
        say()
        if choice.jupyter:
            say(f"Open the notebook URL and sign in as {ADMIN}: it is that account's own Jupyter Notebook,")
            say("reached through nginx and the master's check, as every user reaches theirs. Make a notebook")
            say("with New > Notebook and run a cell. The container's port itself answers nobody without the")
            say("secret the master gave it.")
        else:
            say("The stand-in checks nothing: it is reached on its port directly.")
        say("Press Ctrl-C to stop the admin and remove the demo's containers.")
        while not interrupted.wait(0.5):
            if server.poll() is not None:
                raise DemoError(f"The admin server stopped; see {DEMO_DIR / 'server.log'}.")
            if proxy.poll() is not None:
                raise DemoError(f"nginx stopped; see {DEMO_DIR / 'nginx' / 'error.log'}.")
        return 0
    except DemoError as exc:
        print(f"\n{exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        stop(proxy)
        stop(server)
        if node is not None:
            say("\nRemoving the demo's containers ...")
            problems = remove_everything(node)
            for problem in problems:
                print(f"  not removed: {problem}", file=sys.stderr)
            say("Done." if not problems else "Done, with problems (see above).")


if __name__ == "__main__":
    sys.exit(main())
