"""The floor of one HTTP hop: a bare WSGI app (no Django, no DRF, no checks of ours) that makes
the very engine calls ``Docker`` makes for a suspend or a resume — the ownership inspect, then
the pause or unpause — served by gunicorn with the host API's worker settings.

Section 1 measures it next to ``HttpRemote`` → host API → ``Docker``: what the hop itself costs
on this machine (sockets, gunicorn's threads, the scheduler waking each process), and what our
code adds on top of it. Only the harness runs it, on 127.0.0.1, for the length of section 1.

``POST /<container name>/suspend`` or ``/resume``; 204 when done, 500 with the error otherwise.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

import docker

_lock = threading.Lock()
_client: dict[str, docker.APIClient] = {}


def _api() -> docker.APIClient:
    with _lock:
        if "api" not in _client:
            _client["api"] = docker.APIClient(base_url="unix://var/run/docker.sock", version="auto", timeout=60)
        return _client["api"]


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length:
        environ["wsgi.input"].read(length)
    name, _, action = environ.get("PATH_INFO", "").strip("/").partition("/")
    api = _api()
    try:
        if environ.get("REQUEST_METHOD") != "POST" or action not in ("suspend", "resume"):
            start_response("404 Not Found", [("Content-Length", "0")])
            return [b""]
        container = api.inspect_container(name)["Id"]
        (api.pause if action == "suspend" else api.unpause)(container)
    except docker.errors.DockerException as exc:
        body = str(exc).encode()
        start_response("500 Internal Server Error", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    start_response("204 No Content", [])
    return [b""]
