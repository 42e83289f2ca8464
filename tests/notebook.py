"""What the tests of real notebooks share: the notebook image, a real nginx in front of the
master (``docs/proxy-nginx.conf`` as it is), signed-in visitors, and a small client of
Jupyter's own REST and websocket APIs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from .support import free_port, load_image_into, wait_for
from .support.ci import missing
from .support.nginx import absent_modules, fill_template, main_conf

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK_IMAGE = os.environ.get("IPYNBSRV_NOTEBOOK_IMAGE", "ipynbsrv/notebook:latest")
TEMPLATE = REPO / "docs" / "proxy-nginx.conf"


@pytest.fixture(scope="session")
def notebook_image(raw_docker) -> str:
    """The real notebook image (``make image`` builds it; ``make test`` does too)."""
    import docker

    try:
        raw_docker.images.get(NOTEBOOK_IMAGE)
    except docker.errors.ImageNotFound:
        missing(f"the notebook image {NOTEBOOK_IMAGE} is missing: run `make image` (or `make test`)")
    return NOTEBOOK_IMAGE


@pytest.fixture(scope="session")
def notebook_on_nodes(cluster, notebook_image, raw_docker):
    """The notebook image in every node's engine (the nodes reach no registry but the test
    bed's own): ``docker save | docker -H NODE load``, once per session."""
    wanted = raw_docker.images.get(notebook_image).id
    for engine_socket in cluster.sockets:
        have = subprocess.run(["docker", "-H", f"unix://{engine_socket}", "image", "inspect", "-f", "{{.Id}}",
                               notebook_image], capture_output=True, text=True)
        if have.returncode == 0 and have.stdout.strip() == wanted:
            continue
        load_image_into(engine_socket, notebook_image)
    return notebook_image


@dataclass
class Nginx:
    """Debian's nginx on 127.0.0.1 with its own prefix directory, serving the template."""

    process: subprocess.Popen
    prefix: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return "\n".join((self.prefix / name).read_text(errors="replace")[-4000:]
                         for name in ("error.log", "access.log") if (self.prefix / name).exists())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful: finish open requests, then exit
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def nginx_modules() -> None:
    """Skip (fail in CI) when nginx's Lua module, which the template needs, is missing."""
    absent = absent_modules()
    if absent:
        missing(f"nginx's Lua module is needed ({', '.join(absent)}): scripts/packages.sh installs "
                "Debian's libnginx-mod-http-lua")


def start_nginx(prefix: Path, master: str) -> Nginx:
    binary = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
    if binary is None:
        missing("nginx is needed (scripts/packages.sh installs Debian's package)")
    prefix.mkdir(parents=True, exist_ok=True)
    (prefix / "tmp").mkdir(exist_ok=True)
    port = free_port()
    temp = prefix / "tmp"
    site = fill_template(TEMPLATE.read_text(), f"127.0.0.1:{port}", master, temp / "auth-cache")
    (prefix / "ipynbsrv.conf").write_text(site)
    nginx_modules()
    (prefix / "nginx.conf").write_text(main_conf(prefix, prefix / "ipynbsrv.conf", error_level="info"))
    check = subprocess.run([binary, "-t", "-p", str(prefix), "-c", str(prefix / "nginx.conf")],
                           capture_output=True, text=True)
    assert check.returncode == 0, f"nginx refuses the template:\n{check.stderr}"
    process = subprocess.Popen([binary, "-p", str(prefix), "-c", str(prefix / "nginx.conf")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = Nginx(process, prefix, port)

    def up() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"nginx exited at start:\n{server.log()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False

    wait_for(up, timeout=15, what="nginx to listen")
    return server


@pytest.fixture(scope="session")
def nginx(live_server, tmp_path_factory):
    """nginx in front of the test server (pytest-django's ``live_server``)."""
    master = live_server.url.split("://", 1)[1]
    server = start_nginx(tmp_path_factory.mktemp("nginx"), master)
    yield server
    server.stop()


def signed_in(user: Any) -> dict[str, str]:
    """The cookies of a Django session for ``user`` (as after signing in)."""
    from django.conf import settings
    from django.test import Client

    client = Client()
    client.force_login(user)
    return {settings.SESSION_COOKIE_NAME: client.cookies[settings.SESSION_COOKIE_NAME].value}


class Jupyter:
    """A browser's view of one notebook server under ``base`` (a full URL ending in "/"):
    its cookies (the master's session, Jupyter's ``_xsrf``), REST and kernel websockets."""

    def __init__(self, base: str, cookies: dict[str, str] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        self.base = base
        self.http = requests.Session()
        self.headers = dict(headers or {})  # sent with every request, websockets included
        self.http.headers.update(self.headers)
        host = base.split("://", 1)[1].split("/", 1)[0].split(":")[0]
        for name, value in (cookies or {}).items():
            self.http.cookies.set(name, value, domain=host, path="/")

    def close(self) -> None:
        self.http.close()

    def _cookies(self) -> list[Any]:
        """The session's cookies a browser sends to this server: those whose path is a prefix
        of its base (a hub's session also has cookies for ``/hub/``, one of them ``_xsrf``)."""
        path = "/" + self.base.split("://", 1)[1].partition("/")[2]
        return [c for c in self.http.cookies if path.startswith(c.path.rstrip("/") + "/") or c.path in ("", "/")]

    def xsrf(self) -> str:
        """The ``_xsrf`` cookie for this server (the most specific path wins, as in a browser)."""
        found = sorted((c for c in self._cookies() if c.name == "_xsrf"), key=lambda c: len(c.path), reverse=True)
        return (found[0].value or "") if found else ""

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.http.get(self.base + path, timeout=10, allow_redirects=False, **kwargs)

    def _send(self, method: str, path: str, body: Any = None) -> requests.Response:
        headers = {"X-XSRFToken": self.xsrf()}
        return self.http.request(method, self.base + path, json=body, headers=headers, timeout=30)

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Until the server answers its status, then open the notebook page (as a browser
        does first; it sets the ``_xsrf`` cookie the API calls need)."""

        def ready() -> bool:
            try:
                answer = self.get("api/status")
            except requests.RequestException:
                return False
            return answer.status_code == 200 and "started" in answer.json()

        wait_for(ready, timeout=timeout, interval=0.3, what=f"{self.base} to answer")
        page = self.get("tree")
        assert page.status_code == 200 and "Jupyter" in page.text, page.text[:500]
        assert self.xsrf(), "Jupyter set no _xsrf cookie"

    def start_kernel(self) -> str:
        answer = self._send("POST", "api/kernels", {"name": "python3"})
        assert answer.status_code == 201, answer.text
        return answer.json()["id"]

    def stop_kernel(self, kernel: str) -> None:
        self._send("DELETE", f"api/kernels/{kernel}")

    def execute(self, kernel: str, code: str, timeout: float = 60.0) -> str:
        """Run ``code`` in the kernel over its websocket; returns what it printed."""
        import websocket

        url = "ws" + self.base[len("http"):] + f"api/kernels/{kernel}/channels?session_id={uuid.uuid4().hex}"
        cookie = "; ".join(f"{c.name}={c.value}" for c in self._cookies())
        ws = websocket.create_connection(url, cookie=cookie, timeout=timeout,
                                         header=[f"{name}: {value}" for name, value in self.headers.items()])
        try:
            msg_id = uuid.uuid4().hex
            ws.send(json.dumps({
                "header": {"msg_id": msg_id, "username": "test", "session": uuid.uuid4().hex,
                           "msg_type": "execute_request", "version": "5.3"},
                "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
                "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                            "allow_stdin": False, "stop_on_error": True},
            }))
            printed: list[str] = []
            reply: dict[str, Any] | None = None
            idle = False  # the kernel's "idle" comes after the output and the reply
            deadline = time.monotonic() + timeout
            while reply is None or not idle:
                if time.monotonic() > deadline:
                    raise AssertionError(f"no execute_reply within {timeout} s (printed {printed!r})")
                message = json.loads(ws.recv())
                if message.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                kind, content = message["header"]["msg_type"], message["content"]
                if kind == "stream":
                    printed.append(content["text"])
                elif kind == "error":
                    raise AssertionError(f"the kernel raised {content.get('ename')}: {content.get('evalue')}")
                elif kind == "execute_reply":
                    reply = content
                elif kind == "status" and content.get("execution_state") == "idle":
                    idle = True
            assert reply["status"] == "ok", reply
            return "".join(printed)
        finally:
            ws.close()

    def save(self, path: str, notebook: dict[str, Any]) -> None:
        answer = self._send("PUT", f"api/contents/{path}", {"type": "notebook", "format": "json",
                                                            "content": notebook})
        assert answer.status_code in (200, 201), answer.text

    def load(self, path: str, *, may_be_saving: bool = False) -> dict[str, Any] | None:
        """The notebook at ``path``, or None when there is none. Jupyter saves a notebook in
        place (its "atomic" writing keeps a backup, but truncates the file first), so a read
        racing a save from elsewhere (a browser's Ctrl+S) can find it empty: with
        ``may_be_saving``, that answer is also None (not there yet), not a failure."""
        answer = self.get(f"api/contents/{path}?content=1")
        if answer.status_code == 404:
            return None
        if may_be_saving and answer.status_code == 400 and "Unreadable Notebook" in answer.text:
            return None
        assert answer.status_code == 200, answer.text
        return answer.json()["content"]


def a_notebook(source: str, output: str) -> dict[str, Any]:
    """A one-cell notebook (nbformat 4.5) with the cell's printed output."""
    return {
        "nbformat": 4, "nbformat_minor": 5,
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "cells": [{
            "id": "cell-1", "cell_type": "code", "execution_count": 1, "metadata": {}, "source": source,
            "outputs": [{"output_type": "stream", "name": "stdout", "text": output}],
        }],
    }


def open_in_browser(browser: Any, site: str, jupyter: Jupyter, username: str, password: str,
                    path: str = "work.ipynb") -> Any:
    """Save an empty notebook at ``path`` through ``jupyter`` (as "New > Notebook" would make
    it), sign ``username`` in on the master's page (``site``) in ``browser`` and open the
    notebook there; returns a ``WebDriverWait`` for the page."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    empty = a_notebook("", "")
    empty["cells"][0]["outputs"], empty["cells"][0]["execution_count"] = [], None
    jupyter.save(path, empty)
    base_url = "/" + jupyter.base.split("://", 1)[1].split("/", 1)[1]
    browser.get(f"{site}/accounts/login/?next={base_url}notebooks/{path}")
    browser.find_element(By.NAME, "username").send_keys(username)
    browser.find_element(By.NAME, "password").send_keys(password)
    browser.find_element(By.NAME, "login").click()
    wait = WebDriverWait(browser, 120, ignored_exceptions=(StaleElementReferenceException,))
    wait.until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, ".jp-Cell .cm-content")))
    return wait


def run_cell(browser: Any, wait: Any, code: str, printed: str) -> None:
    """Type ``code`` into the page's first cell, run it (Shift+Enter) and wait until its
    output shows ``printed``."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    def typed(driver: Any) -> bool:
        editor = driver.find_element(By.CSS_SELECTOR, ".jp-Cell .cm-content")
        editor.click()
        editor.send_keys(code)
        return True

    wait.until(typed)
    wait.until(lambda driver: code.split("\n")[0] in driver.find_element(By.CSS_SELECTOR, ".jp-Cell .cm-content").text)
    ActionChains(browser).key_down(Keys.SHIFT).send_keys(Keys.ENTER).key_up(Keys.SHIFT).perform()
    wait.until(lambda driver: printed in " ".join(
        element.text for element in driver.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output")))
