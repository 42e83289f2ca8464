"""The host API's routes, declared once.

Each :class:`Route` says, for one backend method, how it travels: its HTTP method, its path
below the host API's prefix, where its arguments go, what it answers and with which status,
and which of ``HttpRemote``'s timeouts bounds it. Both sides are generated from :data:`ROUTES`:
``HttpRemote`` (one ``_call``), the host API's URLs, views and OpenAPI operations, and the
route table of ``docs/hostapi.md``, which ``python -m ipynbsrv_backends.wire.routes`` prints
(``--write`` puts it between the markers in the doc).

Kept free of Django and DRF, like all of :mod:`ipynbsrv_backends.wire`.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .format import OPTIONS_PARAM

__all__ = [
    "BASE",
    "SUSPEND",
    "SNAPSHOT",
    "Route",
    "ROUTES",
    "CLIENT_ROUTES",
    "route",
    "markdown_table",
    "write_doc",
]

Http = Literal["GET", "POST", "DELETE"]
#: What a route answers: a record (``record``) or a list of them (``records``); nothing (204);
#: ``{member: bool}`` (``flag``) or ``{member: str}`` (``text``); a list of strings (``lines``);
#: a stream of JSON lines (``events``: always, never a single JSON answer);
#: or the node's own answers (``status``, ``health``, ``schema``).
Answer = Literal["record", "records", "none", "flag", "text", "lines", "events", "status", "health", "schema"]
#: Which ``HttpRemote`` timeout bounds the answer: ``status_timeout``, ``timeout`` or ``long_timeout``.
Timeout = Literal["status", "short", "long"]

#: The contracts (class names in :mod:`ipynbsrv_backends.contract`) a route's method belongs to.
BASE = "ContainerBackend"
SUSPEND = "SuspendableContainerBackend"
SNAPSHOT = "SnapshotableContainerBackend"
PULL = "ImagePullingContainerBackend"
TRANSFER = "SnapshotTransferContainerBackend"
EVENTS = "EventSourceContainerBackend"

TIMEOUT_OPTIONS: dict[str, str] = {"status": "status_timeout", "short": "timeout", "long": "long_timeout"}

_PARAM_RE = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Route:
    """One operation of the host API."""

    #: ``HttpRemote``'s method (and the name its error messages use); ``health`` and ``schema``
    #: are the node's own routes, which ``HttpRemote`` never calls.
    name: str
    http: Http
    #: Below the host API's prefix; ``{container}``, ``{image}`` and ``{snapshot}`` are encoded pks.
    path: str
    answer: Answer
    #: The backend method the node calls; ``None`` for the node's own routes.
    serves: str | None
    #: The contract ``serves`` belongs to; ``None`` for a method outside it (a backend without
    #: it answers ``501 not_supported``) and for the node's own routes.
    contract: str | None = BASE
    status: int = 200
    timeout: Timeout | None = "short"
    #: Positional arguments in the method's order: the pks of the path, then (POST) body members.
    args: tuple[str, ...] = ()
    #: Keyword arguments of a GET, in the query string (left out when ``None``).
    query: tuple[str, ...] = ()
    #: Whether the call carries backend-specific options (the contract's ``**kwargs``).
    options: bool = True
    #: The record (``container``, ``image``, ``snapshot``) of a ``record``/``records`` answer.
    record: str | None = None
    #: The member of a ``flag`` or ``text`` answer.
    member: str | None = None
    #: Whether the answer may be a stream of JSON lines (``Accept: application/x-ndjson``).
    streams: bool = False
    #: Whether the token (and the signature) is needed.
    auth: bool = True
    #: What a backend without the route's sub-contract cannot do (its 501 message).
    capability: str = ""
    #: Error statuses the operation documents beyond 400, 401, 503 and 504.
    errors: tuple[int, ...] = ()
    summary: str = ""
    #: The OpenAPI operation's description (the contract method's docstring when empty).
    description: str = field(default="", repr=False)
    #: What the doc's table says besides the method.
    note: str = ""

    @property
    def pks(self) -> tuple[str, ...]:
        """The pk parameters of the path, in order."""
        return tuple(_PARAM_RE.findall(self.path))

    @property
    def body(self) -> tuple[str, ...]:
        """The members of a POST's body besides ``options``."""
        return tuple(arg for arg in self.args if arg not in self.pks)

    @property
    def title(self) -> str:
        """The operation's summary."""
        if self.summary or not self.serves:
            return self.summary or self.note
        outside = " (not in the contract)" if self.serves and self.contract is None else ""
        return f"{self.serves}(){outside}"


def _method(name: str, http: Http, path: str, answer: Answer, **more: Any) -> Route:
    """The route of the backend method ``name``."""
    return Route(name, http, path, answer, name, **more)


_LONG: dict[str, Any] = {"timeout": "long"}
_CREATE_ARGS = ("username", "uid", "name", "ports", "volumes", "cmd", "base_url", "image", "clone_of")
_PULL = (
    "Pull an image onto this node ahead of time, where the backend can (`Docker.pull_container_image`); "
    "answers the image's record. Asked with `Accept: application/x-ndjson`, it answers 200 at once with "
    "one JSON object a line as the pull goes: `{\"progress\": {layers, layers_done, bytes_done, bytes_total, "
    "sizes_known}}` lines, then `{\"record\": ...}` or `{\"error\": {code, detail}}`. Errors found before "
    "the pull starts (authentication, the body, a backend without pulls) are the usual JSON error answers."
)
_IMPORT = (
    "Make an image that `snapshots/{snapshot}/export/` pushed to the registry (on this node or another) "
    "the snapshot `name` of this container: pulled when the node lacks it, relabelled for this backend, "
    "and its pulled tag removed again (the registry keeps it). `image` must be in the backend's registry; "
    "without a registry, `501 not_supported`."
)
_EXPORT = (
    "Push a copy of the snapshot to the backend's registry as a new image of this backend (a unique "
    "reference), for `containers/{container}/snapshots/import/` on another node; answers the image's "
    "record. `DELETE images/{image}/` removes it here and from the registry. Without a registry, "
    "`501 not_supported`."
)

_EVENTS = (
    "The engine's events about the containers this node's backend manages (start, die with its exit "
    "code, oom, pause, unpause, health, destroy), as they happen: always answered as JSON lines "
    "(`application/x-ndjson`), `{\"event\": EventRecord}` for each, `{\"heartbeat\": CURSOR}` after "
    "`heartbeat` seconds (0.5 to 120, default 15) without one (nothing happened up to that cursor), and "
    "`{\"end\": true}` once `timeout` seconds (1 to 3600, default 60) have passed; `{\"error\": {code, "
    "detail}}` ends a stream that failed. `since` is the cursor of the last event or heartbeat received "
    "(the next stream starts after it); without it, from now on. A stream that stops without its `end` "
    "line broke. Errors found before the stream starts are the usual JSON error answers."
)

#: Every route of the host API, in the order of the docs.
ROUTES: tuple[Route, ...] = (
    # -- the node
    Route("health", "GET", "health/", "health", None, contract=None, timeout=None, options=False, auth=False,
          summary="Liveness (no token)", note="liveness",
          description="Bare liveness: answers while the process serves. The one open endpoint; it touches "
          "neither the backend nor the engine."),
    Route("get_node_status", "GET", "status/", "status", "get_status", timeout="status",
          summary="get_status() and the node's resources", note="and the node's resources",
          description="`backend.status` is the backend's get_status() (0 ok, 1 stopped, 2 error); "
          "`resources.containers` counts the containers the backend manages (running includes "
          "suspended); they are null when the backend is not ok."),
    Route("schema", "GET", "schema/", "schema", None, contract=None, timeout=None, options=False,
          note="the OpenAPI schema of all of this (YAML; `?format=json` for JSON)"),
    # -- containers
    _method("get_containers", "GET", "containers/", "records", record="container", query=("only_running",)),
    _method("create_container", "POST", "containers/", "record", record="container", status=201, **_LONG,
            args=_CREATE_ARGS, errors=(404, 409),
            description="create_container(); the container is started before the answer."),
    _method("get_container", "GET", "containers/{container}/", "record", record="container",
            args=("container",), errors=(404,)),
    _method("delete_container", "DELETE", "containers/{container}/", "none", status=204, **_LONG,
            args=("container",), errors=(404, 409)),
    _method("container_exists", "GET", "containers/{container}/exists/", "flag", member="exists",
            args=("container",)),
    _method("container_is_running", "GET", "containers/{container}/running/", "flag", member="running",
            args=("container",), errors=(404,)),
    _method("container_is_suspended", "GET", "containers/{container}/suspended/", "flag", member="suspended",
            contract=SUSPEND, args=("container",), errors=(404, 501)),
    _method("start_container", "POST", "containers/{container}/start/", "none", status=204, **_LONG,
            args=("container",), errors=(404, 409)),
    _method("stop_container", "POST", "containers/{container}/stop/", "none", status=204, **_LONG,
            args=("container",), errors=(404, 409)),
    _method("restart_container", "POST", "containers/{container}/restart/", "none", status=204, **_LONG,
            args=("container",), errors=(404, 409)),
    _method("suspend_container", "POST", "containers/{container}/suspend/", "none", status=204,
            contract=SUSPEND, args=("container",), errors=(404, 409, 501)),
    _method("resume_container", "POST", "containers/{container}/resume/", "none", status=204,
            contract=SUSPEND, args=("container",), errors=(404, 409, 501)),
    _method("exec_in_container", "POST", "containers/{container}/exec/", "text", member="output", **_LONG,
            args=("container", "cmd"), errors=(404, 409)),
    _method("get_container_logs", "GET", "containers/{container}/logs/", "lines",
            args=("container",), query=("tail", "since"), errors=(404,)),
    _method("get_containers_snapshots", "GET", "containers/{container}/snapshots/", "records", record="snapshot",
            contract=SNAPSHOT, args=("container",), errors=(404, 501)),
    _method("create_container_snapshot", "POST", "containers/{container}/snapshots/", "record", record="snapshot",
            status=201, **_LONG, contract=SNAPSHOT, args=("container", "name"), errors=(404, 409, 501)),
    _method("import_container_snapshot", "POST", "containers/{container}/snapshots/import/", "record",
            record="snapshot", status=201, **_LONG, contract=TRANSFER, capability="import snapshots",
            args=("container", "name", "image"), errors=(404, 409, 501), description=_IMPORT),
    _method("restore_container_snapshot", "POST", "containers/{container}/restore/", "record", record="container",
            **_LONG, contract=SNAPSHOT, args=("container", "snapshot"), errors=(404, 409, 501)),
    # -- images
    _method("get_container_images", "GET", "images/", "records", record="image"),
    _method("create_container_image", "POST", "images/", "record", record="image", status=201, **_LONG,
            args=("container", "name"), errors=(404, 409),
            description="create_container_image(): commit a container (and push it when the backend has a "
            "registry)."),
    _method("pull_container_image", "POST", "images/pull/", "record", record="image", streams=True, **_LONG,
            contract=PULL, capability="pull images", args=("image",), errors=(404, 501), description=_PULL),
    _method("get_container_image", "GET", "images/{image}/", "record", record="image",
            args=("image",), errors=(404,)),
    _method("delete_container_image", "DELETE", "images/{image}/", "none", status=204, **_LONG,
            args=("image",), errors=(404, 409)),
    _method("container_image_exists", "GET", "images/{image}/exists/", "flag", member="exists", args=("image",)),
    # -- snapshots (made and restored under their container)
    _method("get_container_snapshots", "GET", "snapshots/", "records", record="snapshot",
            contract=SNAPSHOT, errors=(501,)),
    _method("get_container_snapshot", "GET", "snapshots/{snapshot}/", "record", record="snapshot",
            contract=SNAPSHOT, args=("snapshot",), errors=(404, 501)),
    _method("delete_container_snapshot", "DELETE", "snapshots/{snapshot}/", "none", status=204, **_LONG,
            contract=SNAPSHOT, args=("snapshot",), errors=(404, 409, 501)),
    _method("container_snapshot_exists", "GET", "snapshots/{snapshot}/exists/", "flag", member="exists",
            contract=SNAPSHOT, args=("snapshot",), errors=(501,)),
    _method("export_container_snapshot", "POST", "snapshots/{snapshot}/export/", "record", record="image",
            status=201, **_LONG, contract=TRANSFER, capability="export snapshots", args=("snapshot",),
            errors=(404, 409, 501), description=_EXPORT),
    # -- the engine's events
    _method("get_container_events", "GET", "events/", "events", contract=EVENTS, capability="stream events",
            query=("since", "timeout", "heartbeat"), streams=True, errors=(501,), description=_EVENTS,
            note="a stream of JSON lines ([below](#events))"),
    # -- signing keys (docs/security.md); HttpRemote's own methods, not a backend's
    Route("install_next_signing_key", "POST", "keys/next/", "none", None, contract=None, status=204,
          args=("key",), options=False, errors=(409, 501), summary="Install the next signing key",
          note="install the next signing key (signed with an accepted key; `501 not_supported` without "
          "a signing key or `--state-dir`)",
          description="Signed with a key the node accepts. From now on the node accepts the current and "
          "the next key, so requests in flight never fail."),
    Route("promote_signing_key", "POST", "keys/promote/", "none", None, contract=None, status=204,
          args=("grace",), options=False, errors=(409, 501), summary="Make the next signing key the current one",
          note="make the next key current (signed with that next key; `409 illegal_state` when there is none)",
          description="Must be signed with the next key itself (proof that the master has it). The replaced "
          "key is still accepted for `grace` seconds."),
)

_BY_NAME: dict[str, Route] = {r.name: r for r in ROUTES}
#: The routes ``HttpRemote`` calls (all but ``health`` and ``schema``), by its method's name.
CLIENT_ROUTES: dict[str, Route] = {r.name: r for r in ROUTES if r.timeout is not None}


def route(name: str) -> Route:
    """The route named ``name`` (``KeyError`` when there is none)."""
    return _BY_NAME[name]


def _check(routes: tuple[Route, ...]) -> None:
    """The table's own rules, checked on import (a mistake in it is a programming error)."""
    problems = []
    if len({r.name for r in routes}) != len(routes) or len({(r.http, r.path) for r in routes}) != len(routes):
        problems.append("two routes with one name, or for one method and path")
    for r in routes:
        rules = {
            "a path is relative and ends with '/'": r.path.endswith("/") and not r.path.startswith("/"),
            "the pks of the path are arguments": set(r.pks) <= set(r.args),
            "only a POST has a body": r.http == "POST" or not r.body,
            "a record answer names its record": r.answer not in ("record", "records") or bool(r.record),
            "a flag or text answer names its member": r.answer not in ("flag", "text") or bool(r.member),
            "204 is the answer without a body": (r.status == 204) == (r.answer == "none"),
        }
        problems += [f"{r.name}: {rule}" for rule, holds in rules.items() if not holds]
    if problems:
        raise ValueError("; ".join(problems))


_check(ROUTES)


# --------------------------------------------------------------------------- the doc's table

DOC = Path(__file__).resolve().parents[2] / "docs" / "hostapi.md"
BEGIN = "<!-- routes:begin (generated by `python -m ipynbsrv_backends.wire.routes --write`; do not edit) -->"
END = "<!-- routes:end -->"


def _answer_text(r: Route) -> str:
    if r.answer == "none":
        return "`204`"
    text = {
        "record": f"{r.record}",
        "records": f"[{r.record}, …]",
        "flag": f'{{"{r.member}": bool}}',
        "text": f'{{"{r.member}": str}}',
        "lines": "[str, …]",
        "events": "JSON lines",
        "status": "see below",
        "health": '{"status": "ok"}',
        "schema": "the OpenAPI schema",
    }[r.answer]
    text = f"`{r.status} {text}`" if r.answer not in ("status", "schema") else f"`{r.status}`, {text}"
    if r.status == 201:
        text += " + `Location`"
    if r.streams and r.answer != "events":
        text += ", or with `Accept: application/x-ndjson` progress lines ([below](#pull-progress))"
    return text


def _method_text(r: Route) -> str:
    text = f"`{r.serves}`" if r.serves else "—"
    if r.serves and r.contract is None:
        text += f" (not in the contract; `501 not_supported` when the backend cannot {r.capability})"
    elif r.serves and r.contract != BASE:
        text += f" (`{r.contract}`)"
    return f"{text} {r.note}" if r.note else text


def markdown_table(routes: tuple[Route, ...] = ROUTES) -> str:
    """The route table of ``docs/hostapi.md``."""
    lines = [
        "| method | path | backend method | arguments (POST: body; else query) | answer | `HttpRemote` timeout |",
        "|---|---|---|---|---|---|",
    ]
    for r in routes:
        names = [*r.body, *r.query, *([OPTIONS_PARAM] if r.options else [])]
        where = [f"`{name}`" if r.http == "POST" else f"`?{name}=`" for name in names]
        timeout = f"`{TIMEOUT_OPTIONS[r.timeout]}`" if r.timeout else "—"
        if not r.auth:
            timeout += " (no token)"
        lines.append(f"| {r.http} | `{r.path}` | {_method_text(r)} | {', '.join(where) or '—'} | "
                     f"{_answer_text(r)} | {timeout} |")
    return "\n".join(lines) + "\n"


def with_table(doc: str, table: str | None = None) -> str:
    """``doc`` with the text between the markers replaced by the table."""
    head, begin, rest = doc.partition(BEGIN)
    _, end, tail = rest.partition(END)
    if not begin or not end:
        raise ValueError(f"the doc lacks the markers {BEGIN!r} … {END!r}")
    return f"{head}{BEGIN}\n{table or markdown_table()}{END}{tail}"


def write_doc(path: Path = DOC) -> bool:
    """Regenerate the table in ``path``; whether it changed."""
    old = path.read_text(encoding="utf-8")
    new = with_table(old)
    if new != old:
        path.write_text(new, encoding="utf-8")
    return new != old


def main(argv: list[str]) -> int:
    if argv == ["--write"]:
        if not DOC.is_file():
            print(f"no {DOC}: --write works in a checkout of the project", file=sys.stderr)
            return 1
        print(("updated " if write_doc() else "unchanged ") + str(DOC))
        return 0
    if argv:
        print("usage: python -m ipynbsrv_backends.wire.routes [--write]", file=sys.stderr)
        return 2
    sys.stdout.write(markdown_table())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
