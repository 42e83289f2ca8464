"""The ``HttpRemote`` backend: another node's backend, through its host API.

A master uses one ``HttpRemote`` per node. Every contract method is one HTTP request to the
node's ``ipynbsrv_hostapi`` (see ``docs/hostapi.md``) and returns exactly what the node's
backend returned. Errors come back as the same class with the node's message, through the
one table in :mod:`ipynbsrv_backends.errors`; a node that cannot be reached is
:class:`~ipynbsrv_backends.errors.BackendUnavailableError`, one that does not answer in
time :class:`~ipynbsrv_backends.errors.BackendTimeoutError`. No ``requests`` exception
ever leaves this module.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import requests
import requests.adapters
import requests.exceptions
import urllib3.exceptions

from .. import __version__, errors
from ..contract import (
    BACKEND_STATUS_ERROR,
    BACKEND_STATUS_OK,
    BACKEND_STATUS_STOPPED,
    ContainerRecord,
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
from ..pullprogress import valid_summary
from ..validation import validate_opaque_pk
from ..wire import signing
from ..wire.format import OPTIONS_PARAM, encode_pk
from ..wire.routes import CLIENT_ROUTES, Route
from .http_remote_options import HTTP_REMOTE_OPTIONS
from .options import Options

logger = logging.getLogger(__name__)

__all__ = ["HttpRemote"]

Kind = Literal["status", "short", "long"]
_SNIPPET = 200
#: What a node answers a streamed pull with (see the host API's ``images/pull/``).
NDJSON = "application/x-ndjson"
#: The longest line of a streamed answer taken from a node (a progress line is ~100 bytes).
_MAX_LINE = 65536
#: What ``pull_container_image(on_progress=...)`` calls with a pull's summary.
ProgressCallback = Callable[[dict[str, Any]], None]


def _snippet(data: bytes | str) -> str:
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    text = " ".join(text.split())
    return text[:_SNIPPET] + ("..." if len(text) > _SNIPPET else "")


def _is_read_timeout(exc: BaseException) -> bool:
    """requests reports a timeout while reading the body as a ConnectionError."""
    return any(isinstance(arg, urllib3.exceptions.ReadTimeoutError) for arg in exc.args)


class HttpRemote(SuspendableContainerBackend, SnapshotTransferContainerBackend, ImagePullingContainerBackend,
                 NodeStatusContainerBackend, KeyRotatingContainerBackend):
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

    # Set by the constructor from its options.
    url: str
    verify: bool | str
    connect_timeout: float
    timeout: float
    status_timeout: float
    long_timeout: float
    retries: int
    retry_backoff: float
    pool_size: int

    def __init__(self, url: str, token: str | None = None, **options: Any) -> None:
        """``HttpRemote(url, token=None, *, signing_key=None, verify=True, ...)``: every
        option is declared in :data:`~.http_remote_options.HTTP_REMOTE_OPTIONS`."""
        config = self.validate_options(url=url, token=token, **options)
        self._token: str | None = config.pop("token")
        self._signing_key: str | None = config.pop("signing_key")
        for key, value in config.items():
            setattr(self, key, value)
        self._session_lock = threading.Lock()
        self._session: requests.Session | None = None
        self._session_pid: int | None = None
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

    # ------------------------------------------------------------------ HTTP

    def _http(self) -> requests.Session:
        """The connection pool; a new one in a forked child, which must not share sockets."""
        with self._session_lock:
            if self._session is None or self._session_pid != os.getpid():
                session = requests.Session()
                # Talk to the node directly: no proxies, netrc or CA bundles from the
                # environment (the CA is the ``verify`` option).
                session.trust_env = False
                session.verify = self.verify
                adapter = requests.adapters.HTTPAdapter(
                    pool_connections=1, pool_maxsize=self.pool_size, max_retries=0
                )
                session.mount("http://", adapter)
                session.mount("https://", adapter)
                session.headers.update({
                    "Accept": "application/json",
                    "User-Agent": f"ipynbsrv-backends/{__version__} HttpRemote",
                })
                if self._token:
                    session.headers["Authorization"] = f"Bearer {self._token}"
                self._session = session
                self._session_pid = os.getpid()
            return self._session

    def close(self) -> None:
        """Close the pooled connections (a later call opens new ones)."""
        with self._session_lock:
            if self._session is not None:
                self._session.close()
            self._session = None

    def __enter__(self) -> HttpRemote:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def _read_timeout(self, kind: Kind) -> float:
        return {"status": self.status_timeout, "short": self.timeout, "long": self.long_timeout}[kind]

    @staticmethod
    def _json(value: Any, what: str) -> str:
        try:
            return json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise errors.InvalidArgumentError(
                f"{what} cannot be sent to the node: it is not JSON ({exc})."
            ) from None

    def _request(
        self,
        method: str,
        path: str,
        op: str,
        *,
        kind: Kind,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
    ) -> Any:
        """One call to the node; returns the decoded JSON answer (``None`` for 204)."""
        url = f"{self.url}/{path}"
        query = {key: self._json(value, key) for key, value in (params or {}).items()}
        data = self._json(body, "The request") if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else None
        timeout = (self.connect_timeout, self._read_timeout(kind))
        # Only reads are repeated, only after a connection failure, and never the status
        # call (placement asks again soon enough).
        attempts = 1 + (self.retries if method == "GET" and kind != "status" else 0)
        failure: errors.BackendError | None = None
        for attempt in range(attempts):
            if attempt:
                delay = self.retry_backoff * 2 ** (attempt - 1)
                logger.info("Retrying %s of %s in %.1f s (%s)", op, self.url, delay, failure)
                time.sleep(delay)
            try:
                response = self._send(method, url, query, data, headers, timeout)
            except requests.exceptions.RequestException as exc:
                failure, again = self._failure(exc, op, kind)
                if not again:
                    raise failure from exc
            else:
                return self._answer(response, op)
        assert failure is not None
        raise failure from failure.__cause__

    def _failure(self, exc: requests.exceptions.RequestException, op: str,
                 kind: Kind) -> tuple[errors.BackendError, bool]:
        """The error a ``requests`` failure is, and whether the request may be tried again
        (it never reached the node)."""
        failure: errors.BackendError
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            failure = errors.BackendUnavailableError(
                f"No connection to the node at {self.url} within {self.connect_timeout:g} s ({op})."
            )
            failure.__cause__ = exc
            return failure, True
        if isinstance(exc, requests.exceptions.SSLError):
            return errors.BackendUnavailableError(
                f"TLS with the node at {self.url} failed ({op}): {exc}. Check the node's "
                "certificate and the verify option (a CA bundle that signed it)."
            ), False
        if isinstance(exc, requests.exceptions.ReadTimeout):
            return errors.BackendTimeoutError(
                f"The node at {self.url} did not answer {op} within {self._read_timeout(kind):g} s."
            ), False
        if isinstance(exc, requests.exceptions.ConnectionError):
            if _is_read_timeout(exc):
                return errors.BackendTimeoutError(
                    f"The node at {self.url} did not finish answering {op} within "
                    f"{self._read_timeout(kind):g} s."
                ), False
            failure = errors.BackendUnavailableError(
                f"Cannot reach the node at {self.url} ({op}): {exc.__class__.__name__}. "
                "Is ipynbsrv_hostapi running there and reachable from here?"
            )
            failure.__cause__ = exc
            return failure, True
        return errors.BackendError(f"Talking to the node at {self.url} failed ({op}): {exc}"), False

    def _send(
        self, method: str, url: str, query: dict[str, str], data: str | None,
        headers: dict[str, str] | None, timeout: tuple[float, float], *, stream: bool = False,
    ) -> requests.Response:
        """One HTTP exchange; signed (with a new nonce each time) when there is a key.

        The request is prepared and sent on the pooled adapter directly: the session's
        cookie jar, hooks, environment merging and redirect handling have nothing to do for a
        node (it sets no cookies and is never followed elsewhere), and skipping them is a
        tenth of a millisecond on every call (see docs/benchmarks.md)."""
        session = self._http()
        prepared = requests.PreparedRequest()
        prepared.prepare_method(method)
        prepared.prepare_url(url, query)
        prepared.prepare_headers({**session.headers, **headers} if headers else session.headers)
        payload = data.encode("utf-8") if data is not None else None
        prepared.prepare_body(payload, None)
        if self._signing_key:
            prepared.headers.update(
                signing.signature_headers(self._signing_key, method, prepared.path_url, payload)
            )
        response = session.get_adapter(url).send(
            prepared, stream=stream, timeout=timeout, verify=self.verify, cert=None, proxies={}
        )
        if not stream:
            response.content  # noqa: B018 - read it all, so the connection goes back to the pool
        return response

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

    def _answer(self, response: requests.Response, op: str) -> Any:
        status = response.status_code
        content = response.content
        if 200 <= status < 300:
            if status == 204 or not content.strip():
                return None
            try:
                return json.loads(content)
            except ValueError:
                raise errors.BackendError(
                    f"The node at {self.url} answered {op} with something that is not JSON "
                    f"(HTTP {status}, {response.headers.get('Content-Type', 'no content type')}): "
                    f"{_snippet(content)!r}"
                ) from None
        try:
            body = json.loads(content)
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("code"), str):
            detail = body.get("detail")
            raise errors.error_for_code(body["code"], None if detail is None else str(detail), status)
        if status == 401:
            raise errors.AuthenticationError()
        if status in (502, 503, 504):
            # A proxy or load balancer in front of the node could not get an answer.
            raise errors.error_for_code(
                None, f"The node at {self.url} is unavailable behind a proxy (HTTP {status}, {op}).", status
            )
        raise errors.BackendError(
            f"The node at {self.url} answered {op} with HTTP {status} and a body that is not a "
            f"host API error (is the url that of a host API?): {_snippet(content)!r}"
        )

    # ------------------------------------------------------------------ shapes

    def _garbage(self, op: str, value: Any) -> errors.BackendError:
        return errors.BackendError(
            f"The node at {self.url} answered {op} with an unexpected body: {_snippet(json.dumps(value))!r}"
        )

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
        return self._record(self._streamed_pull(image, kwargs, on_progress, op), op)

    def _streamed_pull(self, image: str, kwargs: dict[str, Any], on_progress: ProgressCallback, op: str) -> Any:
        url = f"{self.url}/{CLIENT_ROUTES['pull_container_image'].path}"
        data = self._json({"image": image, OPTIONS_PARAM: kwargs}, "The request")
        headers = {"Content-Type": "application/json", "Accept": NDJSON}
        # Each line must come within long_timeout, and the whole pull too (as unstreamed).
        deadline = time.monotonic() + self.long_timeout
        try:
            response = self._send("POST", url, {}, data, headers, (self.connect_timeout, self.long_timeout),
                                  stream=True)
        except requests.exceptions.RequestException as exc:
            raise self._failure(exc, op, "long")[0] from exc
        try:
            if response.status_code != 200 or response.headers.get("Content-Type", "").split(";")[0] != NDJSON:
                return self._answer(response, op)  # an error, or a node that answers the record at once
            buffer = b""
            for chunk in response.iter_content(chunk_size=None):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    outcome = self._pull_line(line, op, on_progress)
                    if outcome is not None:
                        return outcome
                if len(buffer) > _MAX_LINE:
                    raise errors.BackendError(f"The node at {self.url} answered {op} with a line too long to be ours.")
                if time.monotonic() > deadline:
                    raise errors.BackendTimeoutError(
                        f"The node at {self.url} did not finish {op} within {self.long_timeout:g} s.")
            if buffer.strip():
                outcome = self._pull_line(buffer, op, on_progress)
                if outcome is not None:
                    return outcome
            raise errors.BackendError(f"The node at {self.url} ended {op} without the image's record or an error.")
        except requests.exceptions.RequestException as exc:
            raise self._failure(exc, op, "long")[0] from exc
        finally:
            response.close()

    def _pull_line(self, line: bytes, op: str, on_progress: ProgressCallback) -> Any:
        """One line of a streamed pull: progress (handed on; ``None`` returned), the record,
        or the error (raised as the node raised it)."""
        if not line.strip():
            return None
        try:
            item = json.loads(line)
        except ValueError:
            raise errors.BackendError(
                f"The node at {self.url} answered {op} with a line that is not JSON: {_snippet(line)!r}") from None
        if isinstance(item, dict) and len(item) == 1:
            if valid_summary(item.get("progress")):
                try:
                    on_progress(dict(item["progress"]))
                except Exception:  # a broken observer must not break the pull
                    logger.exception("The pull progress callback failed")
                return None
            if "record" in item:
                return item["record"]
            error = item.get("error")
            if isinstance(error, dict) and isinstance(error.get("code"), str):
                detail = error.get("detail")
                raise errors.error_for_code(error["code"], None if detail is None else str(detail), None)
        raise self._garbage(op, item)

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
