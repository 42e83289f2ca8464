"""The ``HttpRemote`` backend: another node's backend, through its host API.

A master uses one ``HttpRemote`` per node. Every contract method is one HTTP request to the
node's ``ipynbsrv_hostapi`` (see ``docs/hostapi.md``) and returns exactly what the node's
backend returned. Errors come back as the same class with the node's message, through the
one table in :mod:`ipynbsrv_backends.errors`; a node that cannot be reached is
:class:`~ipynbsrv_backends.errors.BackendUnavailableError`, one that does not answer in
time :class:`~ipynbsrv_backends.errors.BackendTimeoutError`. No ``requests`` exception
ever leaves it. The HTTP under it (pool, signing, retries, error mapping, streamed answers)
is :mod:`.http_transport`; each method here is one route of
:data:`~ipynbsrv_backends.wire.routes.ROUTES`, called through ``_call``.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import requests.exceptions

from .. import errors
from ..contract import (
    BACKEND_STATUS_ERROR,
    BACKEND_STATUS_OK,
    BACKEND_STATUS_STOPPED,
    ContainerRecord,
    EventRecord,
    EventSourceContainerBackend,
    ImagePullingContainerBackend,
    ImageRecord,
    KeyRotatingContainerBackend,
    NodeStatusContainerBackend,
    PortRecord,
    SnapshotRecord,
    SnapshotTransferContainerBackend,
    SuspendableContainerBackend,
    VolumeRecord,
)
from ..events import validate_stream
from ..validation import validate_opaque_pk
from ..wire import signing
from ..wire.format import OPTIONS_PARAM, encode_pk
from ..wire.routes import CLIENT_ROUTES, Route
from .http_remote_options import HTTP_REMOTE_OPTIONS
from .http_transport import NDJSON, NodeTransport, ProgressCallback
from .options import Options

logger = logging.getLogger(__name__)

__all__ = ["HttpRemote"]


class HttpRemote(NodeTransport, SuspendableContainerBackend, SnapshotTransferContainerBackend, ImagePullingContainerBackend,
                 NodeStatusContainerBackend, KeyRotatingContainerBackend, EventSourceContainerBackend):
    """The backend of another node, reached over HTTP(S) through its host API.

    ``HttpRemote(url, token=None, *, signing_key=None, verify=True, ...)``: every argument is
    declared once, with its default, check and help, in
    :data:`~ipynbsrv_backends.backends.http_remote_options.HTTP_REMOTE_OPTIONS` (the README's
    table is generated from it). ``token`` and ``signing_key`` are secrets: never shown.
    """

    #: The declaration of every constructor option.
    OPTION_TABLE: ClassVar[Options] = HTTP_REMOTE_OPTIONS
    #: Constructor options and their defaults (besides ``url``, ``token`` and ``signing_key``).
    OPTIONS: ClassVar[dict[str, Any]] = HTTP_REMOTE_OPTIONS.defaults(exclude=("url", "token", "signing_key"))
    SECRET_OPTIONS: ClassVar[frozenset[str]] = HTTP_REMOTE_OPTIONS.secrets()

    def __init__(self, url: str, token: str | None = None, **options: Any) -> None:
        """``HttpRemote(url, token=None, *, signing_key=None, verify=True, ...)``: every
        option is declared in :data:`~.http_remote_options.HTTP_REMOTE_OPTIONS`."""
        config = self.validate_options(url=url, token=token, **options)
        self._token = config.pop("token")
        self._signing_key = config.pop("signing_key")
        for key, value in config.items():
            setattr(self, key, value)
        self._init_transport()
        if self.verify is False and self.url.startswith("https://"):
            logger.warning("HttpRemote(%s) does not verify the node's TLS certificate.", self.url)

    # ------------------------------------------------------------------ configuration

    @classmethod
    def validate_options(cls, **config: Any) -> dict[str, Any]:
        """Check a constructor configuration without contacting anything; returns it
        normalised with defaults filled in, or raises ``InvalidArgumentError`` naming the
        first bad option."""
        return HTTP_REMOTE_OPTIONS.validate(config)

    def __repr__(self) -> str:
        token = "'***'" if self._token else "None"
        signed = ", signing_key='***'" if self._signing_key else ""
        return f"HttpRemote(url={self.url!r}, token={token}{signed})"

    # ------------------------------------------------------------------ signing keys

    def install_next_signing_key(self, key: str) -> None:
        """Give the node the key that will replace the current one (it accepts both from
        now on). Not part of the contract; see :func:`ipynbsrv_backends.services.rotate_signing_key`."""
        if not signing.valid_key(key):
            raise errors.InvalidArgumentError("Invalid signing key: 32 to 256 printable characters without spaces.")
        self._call("install_next_signing_key", None, key=key)

    def promote_signing_key(self, grace: int | None = None) -> None:
        """Make the node's next key its current one; this instance must sign with that next
        key. The replaced key stays accepted for ``grace`` seconds (the node's default when
        ``None``)."""
        self._call("promote_signing_key", None, **({} if grace is None else {"grace": grace}))

    # ------------------------------------------------------------------ shapes

    def _record(self, value: Any, op: str) -> Any:
        if not (isinstance(value, dict) and isinstance(value.get("pk"), str)):
            raise self._garbage(op, value)
        return value

    def _records(self, value: Any, op: str) -> Any:
        if not isinstance(value, list):
            raise self._garbage(op, value)
        for item in value:
            self._record(item, op)
        return value

    def _member(self, value: Any, key: str, kind: type, op: str) -> Any:
        if not isinstance(value, dict) or not isinstance(value.get(key), kind):
            raise self._garbage(op, value)
        return value[key]

    @staticmethod
    def _pk(value: Any, what: str = "container") -> str:
        # Pks are opaque here: only their shape is checked (an empty pk travels, and the node
        # refuses it), so a huge pk is not turned into a URL the node's server refuses as too
        # long. The node's backend checks its own grammar (Docker: an image reference).
        if value != "":
            validate_opaque_pk(value, what)
        return encode_pk(value)

    @staticmethod
    def _params(kwargs: dict[str, Any], **named: Any) -> dict[str, Any]:
        params = {key: value for key, value in named.items() if value is not None}
        if kwargs:
            params[OPTIONS_PARAM] = kwargs
        return params

    def _call(self, name: str, options: dict[str, Any] | None, /, **arguments: Any) -> Any:
        """Call the route ``name`` of :data:`~ipynbsrv_backends.wire.routes.ROUTES`: its pks go
        into the path, the other arguments into the body of a POST or the query of a GET or
        DELETE, with the backend-specific ``options``; returns the answer, checked for its shape."""
        route = CLIENT_ROUTES[name]
        path = route.path.format(**{pk: self._pk(arguments.pop(pk), pk) for pk in route.pks})
        params = body = None
        if route.http == "POST":
            body = {**arguments, OPTIONS_PARAM: options or {}} if route.options else arguments
        else:
            params = self._params(options or {}, **arguments)
        assert route.timeout is not None
        return self._shaped(route, self._request(route.http, path, name, kind=route.timeout, params=params,
                                                 body=body))

    def _shaped(self, route: Route, answer: Any) -> Any:
        """The answer, if it has the shape the route promises (else a ``BackendError``)."""
        op = route.name
        if route.answer == "record":
            return self._record(answer, op)
        if route.answer == "records":
            return self._records(answer, op)
        if route.answer in ("flag", "text"):
            assert route.member is not None
            return self._member(answer, route.member, bool if route.answer == "flag" else str, op)
        if route.answer == "lines":
            if not (isinstance(answer, list) and all(isinstance(line, str) for line in answer)):
                raise self._garbage(op, answer)
            return answer
        if route.answer == "status":
            backend = answer.get("backend") if isinstance(answer, dict) else None
            if not isinstance(backend, dict) or type(backend.get("status")) is not int \
                    or not isinstance(answer.get("resources"), dict):
                raise self._garbage(op, answer)
            return answer
        return None

    # ------------------------------------------------------------------ node

    def get_node_status(self, **kwargs: Any) -> dict[str, Any]:
        """The node's ``status/`` answer: ``{"backend": {"status", "capabilities"},
        "resources": {"cpu_count", "load_average", "memory_total", "memory_available",
        "containers": {"running", "total"}}}``. Raises like any other call."""
        return self._call("get_node_status", kwargs)

    def get_status(self, **kwargs: Any) -> int:
        """The node's backend status: ``BACKEND_STATUS_STOPPED`` when the node cannot be
        reached, ``BACKEND_STATUS_ERROR`` for any other failure (a wrong token included).
        Never raises."""
        try:
            status = self.get_node_status(**kwargs)["backend"]["status"]
        except errors.BackendUnavailableError as exc:
            logger.info("Node %s is unavailable: %s", self.url, exc)
            return BACKEND_STATUS_STOPPED
        except errors.BackendError as exc:
            logger.warning("Node %s reports an error: %s: %s", self.url, type(exc).__name__, exc)
            return BACKEND_STATUS_ERROR
        except Exception:  # the contract: get_status never raises
            logger.exception("get_status of node %s failed unexpectedly", self.url)
            return BACKEND_STATUS_ERROR
        if status not in (BACKEND_STATUS_OK, BACKEND_STATUS_STOPPED, BACKEND_STATUS_ERROR):
            return BACKEND_STATUS_ERROR
        return status

    # ------------------------------------------------------------------ containers
    # Each method is its route in ipynbsrv_backends.wire.routes.ROUTES: see _call.

    def container_exists(self, container: str, **kwargs: Any) -> bool:
        return self._call("container_exists", kwargs, container=container)

    def container_is_running(self, container: str, **kwargs: Any) -> bool:
        return self._call("container_is_running", kwargs, container=container)

    def container_is_suspended(self, container: str, **kwargs: Any) -> bool:
        return self._call("container_is_suspended", kwargs, container=container)

    def create_container(
        self,
        username: str,
        uid: int,
        name: str,
        ports: list[PortRecord],
        volumes: list[VolumeRecord],
        cmd: str | list[str] | None = None,
        base_url: str | None = None,
        image: str | None = None,
        clone_of: str | None = None,
        **kwargs: Any,
    ) -> ContainerRecord:
        return self._call(
            "create_container", kwargs, username=username, uid=uid, name=name, ports=ports, volumes=volumes,
            cmd=cmd, base_url=base_url, image=image, clone_of=clone_of,
        )

    def delete_container(self, container: str, **kwargs: Any) -> None:
        self._call("delete_container", kwargs, container=container)

    def exec_in_container(self, container: str, cmd: str | list[str], **kwargs: Any) -> str:
        return self._call("exec_in_container", kwargs, container=container, cmd=cmd)

    def get_container(self, container: str, **kwargs: Any) -> ContainerRecord:
        return self._call("get_container", kwargs, container=container)

    def get_container_logs(
        self, container: str, tail: int | None = None, since: Any = None, **kwargs: Any
    ) -> list[str]:
        if isinstance(since, dt.datetime):
            since = since.isoformat()  # the node reads it back the same (naive is UTC)
        return self._call("get_container_logs", kwargs, container=container, tail=tail, since=since)

    def get_containers(self, only_running: bool = False, **kwargs: Any) -> list[ContainerRecord]:
        return self._call("get_containers", kwargs, only_running=only_running)

    def start_container(self, container: str, **kwargs: Any) -> None:
        self._call("start_container", kwargs, container=container)

    def stop_container(self, container: str, **kwargs: Any) -> None:
        self._call("stop_container", kwargs, container=container)

    def restart_container(self, container: str, **kwargs: Any) -> None:
        self._call("restart_container", kwargs, container=container)

    def suspend_container(self, container: str, **kwargs: Any) -> None:
        self._call("suspend_container", kwargs, container=container)

    def resume_container(self, container: str, **kwargs: Any) -> None:
        self._call("resume_container", kwargs, container=container)

    # ------------------------------------------------------------------ images

    def container_image_exists(self, image: str, **kwargs: Any) -> bool:
        return self._call("container_image_exists", kwargs, image=image)

    def create_container_image(self, container: str, name: str, **kwargs: Any) -> ImageRecord:
        return self._call("create_container_image", kwargs, container=container, name=name)

    def delete_container_image(self, image: str, **kwargs: Any) -> None:
        self._call("delete_container_image", kwargs, image=image)

    def get_container_image(self, image: str, **kwargs: Any) -> ImageRecord:
        return self._call("get_container_image", kwargs, image=image)

    def get_container_images(self, **kwargs: Any) -> list[ImageRecord]:
        return self._call("get_container_images", kwargs)

    def pull_container_image(self, image: str, on_progress: ProgressCallback | None = None,
                             **kwargs: Any) -> ImageRecord:
        """Pull ``image`` onto the node now and return its record (``ImagePullingContainerBackend``;
        the node's backend must have ``pull_container_image``, else
        ``CapabilityNotSupportedError``). With ``on_progress``, the node answers the pull's
        progress as it goes (one JSON line per report) and ``on_progress(summary)`` is called
        with each summary, as the node's ``Docker`` calls it."""
        op = "pull_container_image"
        if on_progress is None:
            return self._call(op, kwargs, image=image)
        if not callable(on_progress):
            raise errors.InvalidArgumentError("on_progress must be a callable.")
        return self._record(self._streamed_pull(CLIENT_ROUTES[op].path, image, kwargs, on_progress, op), op)

    # ------------------------------------------------------------------ snapshots

    def container_snapshot_exists(self, snapshot: str, **kwargs: Any) -> bool:
        return self._call("container_snapshot_exists", kwargs, snapshot=snapshot)

    def create_container_snapshot(self, container: str, name: str, **kwargs: Any) -> SnapshotRecord:
        return self._call("create_container_snapshot", kwargs, container=container, name=name)

    def delete_container_snapshot(self, snapshot: str, **kwargs: Any) -> None:
        self._call("delete_container_snapshot", kwargs, snapshot=snapshot)

    def get_container_snapshot(self, snapshot: str, **kwargs: Any) -> SnapshotRecord:
        return self._call("get_container_snapshot", kwargs, snapshot=snapshot)

    def get_container_snapshots(self, **kwargs: Any) -> list[SnapshotRecord]:
        return self._call("get_container_snapshots", kwargs)

    def get_containers_snapshots(self, container: str, **kwargs: Any) -> list[SnapshotRecord]:
        return self._call("get_containers_snapshots", kwargs, container=container)

    def restore_container_snapshot(self, container: str, snapshot: str, **kwargs: Any) -> ContainerRecord:
        return self._call("restore_container_snapshot", kwargs, container=container, snapshot=snapshot)

    # ------------------------------------------------------------------ snapshots between nodes

    def export_container_snapshot(self, snapshot: str, **kwargs: Any) -> ImageRecord:
        """Push a copy of the snapshot to the node's registry as an image and return that
        image's record (``SnapshotTransferContainerBackend``; see ``Docker.export_container_snapshot``;
        ``CapabilityNotSupportedError`` when the node's backend cannot)."""
        return self._call("export_container_snapshot", kwargs, snapshot=snapshot)

    def import_container_snapshot(self, container: str, name: str, image: str, **kwargs: Any) -> SnapshotRecord:
        """Make the exported ``image`` the snapshot ``name`` of ``container`` on the node and
        return the snapshot's record (``SnapshotTransferContainerBackend``; see
        ``Docker.import_container_snapshot``)."""
        return self._call("import_container_snapshot", kwargs, container=container, name=name, image=image)

    # ------------------------------------------------------------------ the engine's events

    def get_container_events(self, since: str | None = None, timeout: float = 60.0, heartbeat: float = 15.0,
                             **kwargs: Any) -> Iterator[EventRecord | str]:
        """The node's engine events (``EventSourceContainerBackend``; see the host API's
        ``events/``): each event's record, and each heartbeat's cursor. Each line must come
        within ``heartbeat`` plus the ``timeout`` option, the whole stream within its
        ``timeout`` plus those; a stream that stops without its end line is a
        ``BackendUnavailableError`` (the consumer reconnects from its last cursor)."""
        cursor, seconds, beat = validate_stream(since, timeout, heartbeat)
        params = self._params(kwargs, since=None if cursor is None else str(cursor), timeout=seconds, heartbeat=beat)
        return self._event_stream(params, seconds, beat)

    def _event_stream(self, params: dict[str, Any], seconds: float, beat: float) -> Iterator[EventRecord | str]:
        op = "get_container_events"
        url = f"{self.url}/{CLIENT_ROUTES[op].path}"
        query = {key: self._json(value, key) for key, value in params.items()}
        deadline = time.monotonic() + seconds + beat + self.timeout
        try:
            response = self._send("GET", url, query, None, {"Accept": NDJSON},
                                  (self.connect_timeout, beat + self.timeout), stream=True)
        except requests.exceptions.RequestException as exc:
            raise self._failure(exc, op, "short")[0] from exc
        try:
            if response.status_code != 200 or response.headers.get("Content-Type", "").split(";")[0] != NDJSON:
                raise self._garbage(op, self._answer(response, op))  # an error answer raises itself
            for item in self._json_lines(response, op, deadline):
                beat_cursor = item.get("heartbeat") if isinstance(item, dict) and len(item) == 1 else None
                if isinstance(beat_cursor, str) and beat_cursor.isdigit():
                    yield beat_cursor
                elif item == {"end": True}:
                    return
                elif isinstance(item, dict) and len(item) == 1 and isinstance(item.get("event"), dict) \
                        and isinstance(item["event"].get("cursor"), str):
                    yield item["event"]
                else:
                    error = item.get("error") if isinstance(item, dict) else None
                    if isinstance(error, dict) and isinstance(error.get("code"), str):
                        detail = error.get("detail")
                        raise errors.error_for_code(error["code"], None if detail is None else str(detail), None)
                    raise self._garbage(op, item)
        except requests.exceptions.RequestException as exc:
            raise errors.BackendUnavailableError(
                f"The event stream of the node at {self.url} broke off ({exc.__class__.__name__})."
            ) from exc
        finally:
            response.close()
        raise errors.BackendUnavailableError(f"The event stream of the node at {self.url} broke off before its end.")
