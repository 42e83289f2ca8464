"""Waiting on a condition, a free port, small HTTP checks."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 15.0, interval: float = 0.1, what: str = "condition") -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last value: {last!r})")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the caller binds it soon after)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def http_answers(url: str, timeout: float = 15.0) -> bytes:
    """Wait until ``url`` answers 200 and return the body (bounded in count and time)."""

    def attempt() -> bytes | None:
        try:
            status, body = http_get(url, timeout=1.0)
        except OSError:
            return None
        return body if status == 200 else None

    return wait_for(attempt, timeout=timeout, interval=0.1, what=f"{url} to answer")


def load_image_into(engine_socket: str, image: str, timeout: float = 300) -> None:
    """Put ``image`` of this machine's engine into the engine at ``engine_socket`` (a test-bed
    node reaches no registry but the bed's own): ``docker save | docker -H ... load``."""
    import subprocess

    save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
    load = subprocess.run(["docker", "-H", f"unix://{engine_socket}", "load", "-q"], stdin=save.stdout,
                          capture_output=True, text=True, timeout=timeout)
    assert save.stdout is not None
    save.stdout.close()
    assert save.wait(timeout=60) == 0 and load.returncode == 0, load.stderr


def api_as(username: str, password: str):
    """A DRF test client of the users' API signed in with HTTP Basic."""
    import base64

    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Basic " + base64.b64encode(f"{username}:{password}".encode()).decode())
    return client
