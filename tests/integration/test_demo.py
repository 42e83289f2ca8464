"""`make demo` end to end: scripts/demo.py sets up the master on the real engine, prints the
URL of a real Jupyter notebook that runs code and an admin one can log in to, and Ctrl-C
(SIGINT) removes the container and stops the server. A second run reuses the database and
the password. When the notebook image cannot be built, the demo says so and starts the
stand-in instead.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
from pathlib import Path

import pytest
import requests

from ..conftest import EXTRA_INSTANCES, INSTANCE, PREFIX
from ..notebook import Jupyter, notebook_image  # noqa: F401
from ..utils import http_answers, http_get

pytestmark = [pytest.mark.engine]

ROOT = Path(__file__).resolve().parent.parent.parent


class Demo:
    """scripts/demo.py running in the background, its output read line by line."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-u", str(ROOT / "scripts" / "demo.py")], cwd=ROOT, env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, text: str, timeout: float = 120.0) -> str:
        """The output up to the first line containing ``text``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            self.output.append(line)
            if text in line:
                return "".join(self.output)
        raise AssertionError(f"the demo never printed {text!r}; it printed:\n{''.join(self.output)}")

    def interrupt(self, timeout: float = 60.0) -> int:
        self.process.send_signal(signal.SIGINT)
        code = self.process.wait(timeout=timeout)
        self.wait_for_end()
        return code

    def wait_for_end(self) -> None:
        while (line := self.lines.get(timeout=10)) is not None:
            self.output.append(line)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def field(output: str, name: str) -> str:
    match = re.search(rf"^\s+{name}\s+(.+)$", output, re.M)
    assert match, f"no {name!r} line in:\n{output}"
    return match.group(1).strip()


def log_in(admin_url: str, username: str, password: str) -> tuple[str, dict[str, str]]:
    """Log in through the real login form; returns the container change list's HTML and the
    session's cookies."""
    import http.cookiejar
    import urllib.parse
    import urllib.request

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    opener.open(admin_url + "login/", timeout=10).read()
    token = next(cookie.value for cookie in jar if cookie.name == "csrftoken")
    body = urllib.parse.urlencode({"username": username, "password": password, "csrfmiddlewaretoken": token,
                                   "next": "/admin/"}).encode()
    request = urllib.request.Request(admin_url + "login/", data=body, headers={"Referer": admin_url})
    with opener.open(request, timeout=10) as response:
        assert response.geturl().rstrip("/").endswith("/admin"), "the login was refused"
    with opener.open(admin_url + "ipynbsrv_backends/container/", timeout=10) as response:
        return response.read().decode(), {cookie.name: cookie.value for cookie in jar}


def engine_has(raw_docker, instance: str) -> list[str]:
    label = f"org.ipynbsrv.instance={instance}"
    return [c.name for c in raw_docker.containers.list(all=True, filters={"label": label})]


def demo_env(tmp_path, **more: str) -> dict[str, str]:
    instance = f"{INSTANCE}-demo"
    EXTRA_INSTANCES.add(instance)
    return {
        **os.environ,
        "IPYNBSRV_DEMO_DIR": str(tmp_path / "demo"),
        "IPYNBSRV_DEMO_PORT": "0",
        "IPYNBSRV_DEMO_INSTANCE": instance,
        "IPYNBSRV_DEMO_PREFIX": f"{PREFIX}demo",
        **more,
    }


def test_make_demo_sets_up_serves_and_cleans_up(engine, notebook_image, tmp_path):
    env = demo_env(tmp_path)
    instance = env["IPYNBSRV_DEMO_INSTANCE"]
    passwords = []
    for run in range(2):  # the second run reuses the database and the password
        demo = Demo(env)
        try:
            output = demo.wait_for("Press Ctrl-C")
            notebook, admin_url = field(output, "notebook"), field(output, "admin")
            username, _, password = field(output, "log in as").partition(" / ")
            passwords.append(password)
            assert notebook.startswith("http://127.0.0.1:") and admin_url.startswith("http://127.0.0.1:")
            assert field(output, "image") == notebook_image and "Building" not in output
            assert notebook.endswith("/notebooks/admin/notebook/")
            assert notebook.startswith(admin_url.removesuffix("/admin/"))  # the same site: through nginx
            # not signed in: the notebook URL sends the visitor to the login page
            redirect = requests.get(notebook + "tree", allow_redirects=False, timeout=10)
            assert redirect.status_code == 302 and "/admin/login/?next=" in redirect.headers["Location"]
            html, cookies = log_in(admin_url, username, password)
            assert "notebook" in html
            if run == 0:  # what a new user does: sign in, open the URL, run a cell
                jupyter = Jupyter(notebook, cookies)
                try:
                    jupyter.wait_ready(timeout=30)
                    kernel = jupyter.start_kernel()
                    assert jupyter.execute(kernel, "print(6 * 7)").strip() == "42"
                finally:
                    jupyter.close()
            assert len(engine_has(engine, instance)) == 1
            # the container's own port answers nobody who comes without the secret
            published = engine.containers.get(engine_has(engine, instance)[0]).attrs["NetworkSettings"]["Ports"]
            host_port = published["8888/tcp"][0]["HostPort"]
            direct = requests.get(f"http://127.0.0.1:{host_port}/notebooks/admin/notebook/api/contents", timeout=10)
            assert direct.status_code == 403

            assert demo.interrupt() == 0, "".join(demo.output)
        finally:
            demo.kill()
        assert "Done." in "".join(demo.output)
        assert engine_has(engine, instance) == []
        with pytest.raises((OSError, urllib.error.URLError)):
            http_get(admin_url + "login/", timeout=2)
    assert passwords[0] == passwords[1]
    assert (tmp_path / "demo" / "db.sqlite3").exists()
    assert oct((tmp_path / "demo" / "admin-password").stat().st_mode & 0o777) == "0o600"


def test_make_demo_falls_back_to_the_stand_in_when_the_image_cannot_be_built(engine, tmp_path):
    env = demo_env(tmp_path, IPYNBSRV_DEMO_BUILD="/bin/false")  # a build that fails, and says nothing
    demo = Demo(env)
    try:
        output = demo.wait_for("Press Ctrl-C")
        assert "Building the notebook image" in output and "falls back to the small stand-in" in output
        assert "(the stand-in: no Jupyter)" in field(output, "image")
        assert b"ipynbsrv test page" in http_answers(field(output, "notebook"))
        assert demo.interrupt() == 0, "".join(demo.output)
    finally:
        demo.kill()
    assert engine_has(engine, env["IPYNBSRV_DEMO_INSTANCE"]) == []
