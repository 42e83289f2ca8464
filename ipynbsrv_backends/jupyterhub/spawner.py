"""``IpynbsrvSpawner``: a JupyterHub spawner whose servers the master places on its nodes
(docs/jupyterhub.md).

The hub is a client of the master's JupyterHub endpoints (``api/hub/``, signed in with the hub's
token): ``start`` asks the master to create the user's server (or resume the one they have) and
follows its placement, the image's pull and its start; ``poll``, ``stop`` (suspend by default)
and ``delete_forever`` act on it there. Runs inside the hub's process: nothing of Django here,
only JupyterHub, traitlets and tornado; every request to the master is bounded in time.
"""

from __future__ import annotations

import asyncio
import html
import json
import os
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, urljoin

from jupyterhub.spawner import Spawner
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from traitlets import Bool, Float, Unicode, default, observe, validate

__all__ = ["IpynbsrvSpawner", "MasterError", "progress_event", "hub_env"]

#: The environment a hub may give a server (the master refuses any other key).
ENV_PREFIXES = ("JUPYTERHUB_", "JPY_")
#: The port the notebook server listens on inside its container (the master publishes it).
CONTAINER_PORT = 8888
#: Statuses of a server that is up (``poll`` answers ``None``).
UP = ("creating", "running")


class MasterError(Exception):
    """The master refused or failed a request; ``str()`` is its own words (what the hub's page
    shows), ``code`` its machine code and ``status`` the HTTP status (0: no answer)."""

    def __init__(self, detail: str, *, code: str = "", status: int = 0) -> None:
        super().__init__(detail)
        self.detail, self.code, self.status = detail, code, status


def hub_env(env: dict[str, str]) -> dict[str, str]:
    """The part of the hub's environment for a server that goes to its container."""
    return {key: value for key, value in env.items() if key.startswith(ENV_PREFIXES)}


def progress_event(record: dict[str, Any]) -> dict[str, Any]:
    """A JupyterHub progress event from the master's record of a server being started:
    placed (10 %), pulling (10-80 % with the pull's own percentage), starting (85 %), running."""
    status, text = record.get("status", ""), record.get("progress") or ""
    node = record.get("node") or "?"
    if status == "running":
        return {"progress": 95, "message": f"running on {node}"}
    if status in ("error", "lost"):
        return {"progress": 100, "failed": True, "message": record.get("last_error") or f"the server is {status}"}
    percent = record.get("progress_percent")
    if text.startswith("pulling"):
        share = 10 + int(0.7 * percent) if isinstance(percent, int) else 10
        return {"progress": min(share, 80), "message": text}
    if text.startswith("starting"):
        return {"progress": 85, "message": text}
    return {"progress": 10, "message": text or f"placed on {node}"}


class IpynbsrvSpawner(Spawner):
    """Spawns each user's (named) server through an ipynbsrv master onto one of its nodes."""

    master_url = Unicode(
        "", config=True,
        help="The master's base URL, e.g. http://127.0.0.1:8000/ (the spawner appends master_api_path and "
             "hub/servers/ itself).",
    )
    master_api_path = Unicode(
        "api/", config=True, help="Where the project includes the master's users' API, below master_url.",
    )
    master_token = Unicode(
        "", config=True,
        help="The hub's token (manage.py ipynbsrv_hub add NAME on the master). Default: the environment "
             "variable IPYNBSRV_HUB_TOKEN. Never logged.",
    )
    master_ca_file = Unicode(
        "", config=True, help="The CA bundle that signed an https master's certificate ('' : the system's).",
    )
    image = Unicode(
        "", config=True,
        help="The image's name (or id) among those the master allows this hub; '' : the master's default for "
             "this hub. A user's choice (user_options['image']) wins.",
    )
    suspend_on_stop = Bool(
        True, config=True,
        help="Stop pauses the container (memory and kernels kept; the next start resumes it at once) instead of "
             "stopping it. will_resume follows it, so the hub keeps the server's API token meanwhile.",
    )
    master_poll_interval = Float(
        0.5, config=True, help="Seconds between two looks at a server being started (progress, readiness).",
    )

    @default("master_token")
    def _token_from_env(self) -> str:
        return os.environ.get("IPYNBSRV_HUB_TOKEN", "")

    @validate("master_url")
    def _check_url(self, proposal: Any) -> str:
        url = str(proposal["value"])
        if url and not url.startswith(("http://", "https://")):
            raise ValueError(f"master_url must be an http:// or https:// URL, not {url!r}")
        return url if url.endswith("/") or not url else url + "/"

    @default("will_resume")
    def _will_resume_default(self) -> bool:
        return bool(self.suspend_on_stop)

    @observe("suspend_on_stop")
    def _suspend_changed(self, change: Any) -> None:
        self.will_resume = bool(change["new"])

    @default("env_keep")
    def _env_keep_default(self) -> list[str]:
        return []  # the hub's own PATH and friends mean nothing inside the container

    @default("start_timeout")
    def _start_timeout_default(self) -> int:
        return 300  # a node may pull the image first

    @default("options_form")
    def _options_form_default(self) -> Any:
        return IpynbsrvSpawner.images_form

    # ------------------------------------------------------------------ state

    server_id: int | None = None
    #: Where the hub's proxy routes to (what start returned); a move changes the master's.
    server_url: str | None = None

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        value, url = state.get("ipynbsrv_server_id"), state.get("ipynbsrv_url")
        self.server_id = value if isinstance(value, int) else None
        self.server_url = url if isinstance(url, str) else None

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        if self.server_id is not None:
            state["ipynbsrv_server_id"] = self.server_id
        if self.server_url is not None:
            state["ipynbsrv_url"] = self.server_url
        return state

    def clear_state(self) -> None:
        super().clear_state()
        self.server_id = self.server_url = None

    # ------------------------------------------------------------------ the master

    def _url(self, path: str) -> str:
        if not self.master_url:
            raise MasterError("IpynbsrvSpawner.master_url is not set: the master's base URL, e.g. http://master:8000/")
        return urljoin(urljoin(self.master_url, self.master_api_path.lstrip("/")), path)

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        """One request to the master, bounded by ``http_timeout``; its JSON answer, or MasterError."""
        if not self.master_token:
            raise MasterError("No token for the master: set IpynbsrvSpawner.master_token or IPYNBSRV_HUB_TOKEN.")
        request = HTTPRequest(
            self._url(path), method=method,
            headers={"Authorization": f"Bearer {self.master_token}", "Accept": "application/json",
                     **({"Content-Type": "application/json"} if body is not None else {})},
            body=json.dumps(body) if body is not None else None,
            connect_timeout=min(10.0, float(self.http_timeout)), request_timeout=float(self.http_timeout),
            ca_certs=self.master_ca_file or None, follow_redirects=False,
        )
        try:
            response = await AsyncHTTPClient().fetch(request, raise_error=False)
        except (OSError, HTTPClientError) as exc:
            raise MasterError(f"The master at {self.master_url} cannot be reached: {exc}") from exc
        if response.code == 599 or response.code == 0:
            raise MasterError(f"The master at {self.master_url} cannot be reached: {response.error}")
        if response.code == 204:
            return None
        try:
            data = json.loads(response.body or b"null")
        except ValueError:
            data = None
        if response.code >= 400:
            detail = data.get("detail") if isinstance(data, dict) else None
            code = data.get("code", "") if isinstance(data, dict) else ""
            raise MasterError(str(detail or f"The master answered {response.code} at {request.url} (are master_url "
                                            "and master_api_path where the project includes the API?)."),
                              code=code, status=response.code)
        if data is None:
            raise MasterError(f"{request.url} did not answer JSON: is master_url the master's base URL?",
                              status=response.code)
        return data

    # ------------------------------------------------------------------ the options form

    async def images_form(self) -> str:
        """A choice of the images the master allows this hub ('' when there is one or none)."""
        images = await self._call("GET", "hub/images/")
        if not isinstance(images, list) or len(images) < 2:
            return ""
        options = "".join(
            f'<option value="{html.escape(str(image["name"]))}"{" selected" if image.get("default") else ""}>'
            f'{html.escape(str(image["name"]))}'
            f'{" - " + html.escape(str(image["description"])) if image.get("description") else ""}</option>'
            for image in images
        )
        return f'<label for="ipynbsrv-image">Image</label>\n<select id="ipynbsrv-image" name="image" ' \
               f'class="form-control">{options}</select>'

    def options_from_form(self, formdata: dict[str, list[str]]) -> dict[str, Any]:
        chosen = (formdata.get("image") or [""])[0].strip()
        return {"image": chosen} if chosen else {}

    # ------------------------------------------------------------------ the server's life

    def _image(self) -> str:
        wanted = (self.user_options or {}).get("image")
        return str(wanted) if wanted else self.image

    async def start(self) -> str:
        # The notebook server listens on the container's own port; the record says where the node publishes it.
        self.ip, self.port = "0.0.0.0", CONTAINER_PORT
        env = self.get_env()
        body = {"user": self.user.name, "server": self.name or "", "image": self._image(), "env": hub_env(env),
                "base_url": self.server.base_url if self.server else env.get("JUPYTERHUB_SERVICE_PREFIX", "/"),
                "resume": bool(self.will_resume)}
        self._events: list[dict[str, Any]] = []  # this start's own list: progress() follows it
        self._starting, self._round = True, getattr(self, "_round", 0) + 1
        try:
            record = await self._call("POST", "hub/servers/", body)
            self.server_id = int(record["id"])
            kept = record.pop("api_token", None)
            if isinstance(kept, str) and kept:
                # a resumed server keeps the token it has: the hub uses it again (and drops the new one)
                self.api_token = kept
            return await self._until_running(record)
        finally:
            self._starting = False

    async def _until_running(self, record: dict[str, Any]) -> str:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + float(self.start_timeout)
        while True:
            event = progress_event(record)
            if not self._events or self._events[-1]["message"] != event["message"]:
                self._events.append(event)
            status = record.get("status")
            if status == "running" and record.get("url"):
                self.log.info("%s's server %r runs on %s", self.user.name, self.name, record.get("node"))
                self.server_url = str(record["url"])
                return self.server_url
            if status != "creating":
                raise MasterError(record.get("last_error") or f"The server is {status} on the master.",
                                  code=record.get("error_code") or "", status=0)
            if loop.time() > deadline:
                raise MasterError(f"The server was not running after {self.start_timeout} s: {record.get('progress')}")
            await asyncio.sleep(float(self.master_poll_interval))
            record = await self._call("GET", f"hub/servers/{self.server_id}/")

    async def progress(self) -> AsyncIterator[dict[str, Any]]:
        """Placement, the image's pull (with its percentage) and the start, as they happen. The
        hub may ask before ``start`` has begun: it waits for that start (the hub ends the wait
        when the spawn ends)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + float(self.start_timeout) + 5
        asked = getattr(self, "_round", 0)
        while not getattr(self, "_starting", False) and getattr(self, "_round", 0) == asked:
            if loop.time() > deadline:
                return
            await asyncio.sleep(0.1)
        events, sent = self._events, 0
        while loop.time() < deadline:
            while sent < len(events):
                yield events[sent]
                sent += 1
            if not self._starting or self._events is not events:
                for event in events[sent:]:  # what came with the end
                    yield event
                return
            await asyncio.sleep(0.2)

    async def _find(self) -> int | None:
        """The id of this user's server on the master (when the hub's state lost it)."""
        try:
            page = await self._call("GET", f"hub/servers/?user={quote(self.user.name)}")
        except MasterError as exc:
            if exc.status in (400, 403, 404):
                return None
            raise
        for item in (page or {}).get("results", []):
            if item.get("server") == (self.name or ""):
                return int(item["id"])
        return None

    async def poll(self) -> int | None:
        if self.server_id is None:
            return 0
        try:
            record = await self._call("GET", f"hub/servers/{self.server_id}/?refresh=true")
        except MasterError as exc:
            if exc.status == 404:
                return 0  # deleted on the master
            self.log.warning("Could not poll %s's server on the master (%s); taking it as running", self.user.name,
                             exc)
            return None
        status = record.get("status")
        if status in UP and self.server_url and record.get("url") and record["url"] != self.server_url:
            # moved to another node: the proxy's route is stale; the next start resumes it there
            self.log.info("%s's server %r moved to %s; reporting it stopped", self.user.name, self.name,
                          record.get("node"))
            return 0
        if status in UP:
            return None
        return 0 if status in ("stopped", "suspended") else 1

    async def stop(self, now: bool = False) -> None:
        if self.server_id is None:
            return
        path = f"hub/servers/{self.server_id}/stop/"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + float(self.start_timeout)
        while True:
            try:
                await self._call("POST", path, {"suspend": bool(self.suspend_on_stop)})
                return
            except MasterError as exc:
                if exc.status == 404:
                    return
                if exc.status != 409 or loop.time() > deadline:
                    raise
            await asyncio.sleep(1.0)  # still being created: stop it once it is

    async def delete_forever(self) -> None:
        """The named server (or the user) is deleted in the hub: its container goes too."""
        server_id = self.server_id if self.server_id is not None else await self._find()
        if server_id is None:
            return
        try:
            await self._call("DELETE", f"hub/servers/{server_id}/")
        except MasterError as exc:
            if exc.status != 404:
                raise
        self.server_id = None
