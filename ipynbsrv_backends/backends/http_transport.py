"""How ``HttpRemote`` talks to a node: the HTTP transport under the backend.

One pooled ``requests`` session per process (a forked child opens its own), each request
prepared here and sent on the pooled adapter, signed when there is a signing key, repeated
only where that is safe (a read that never reached the node), every ``requests`` failure
and every error answer mapped to the ``errors.*`` class the node raised or to
``BackendUnavailableError``/``BackendTimeoutError``, and the reading of a streamed pull's
progress lines. :class:`~ipynbsrv_backends.backends.http_remote.HttpRemote` adds the
contract's methods on top (one route each, see :mod:`ipynbsrv_backends.wire.routes`).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal, Self

import requests
import requests.adapters
import requests.exceptions
import urllib3.exceptions

from .. import __version__, errors
from ..pullprogress import valid_summary
from ..wire import signing
from ..wire.format import OPTIONS_PARAM

# HttpRemote's logger: its retries and warnings keep the name a site's logging configures.
logger = logging.getLogger("ipynbsrv_backends.backends.http_remote")

__all__ = ["NodeTransport", "Kind", "NDJSON", "ProgressCallback"]

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


class NodeTransport:
    """The HTTP side of :class:`~.http_remote.HttpRemote`: its connection pool, requests,
    retries, error mapping and streamed answers. The options it reads are set by
    ``HttpRemote``'s constructor (declared in :mod:`.http_remote_options`)."""

    url: str
    verify: bool | str
    connect_timeout: float
    timeout: float
    status_timeout: float
    long_timeout: float
    retries: int
    retry_backoff: float
    pool_size: int
    _token: str | None
    _signing_key: str | None

    def _init_transport(self) -> None:
        """No connection yet: the pool is opened by the first call (:meth:`_http`)."""
        self._session_lock = threading.Lock()
        self._session: requests.Session | None = None
        self._session_pid: int | None = None

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

    def __enter__(self) -> Self:
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

    def _garbage(self, op: str, value: Any) -> errors.BackendError:
        return errors.BackendError(
            f"The node at {self.url} answered {op} with an unexpected body: {_snippet(json.dumps(value))!r}"
        )

    # ------------------------------------------------------------------ streamed answers

    def _streamed_pull(self, path: str, image: str, kwargs: dict[str, Any], on_progress: ProgressCallback,
                       op: str) -> Any:
        """POST a pull to ``path`` asking for its progress as it goes (NDJSON): each progress
        line is handed to ``on_progress``; returns the record the last line carries, raises
        the error it carries (or that the node answered at once)."""
        url = f"{self.url}/{path}"
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

    def _json_lines(self, response: requests.Response, op: str, deadline: float) -> Iterator[Any]:
        """The JSON values of a streamed answer, one a line, until it ends or ``deadline``
        (``time.monotonic()``) passes; a line that is not JSON or too long is a ``BackendError``."""
        buffer = b""
        for chunk in response.iter_content(chunk_size=None):
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if line.strip():
                    try:
                        yield json.loads(line)
                    except ValueError:
                        raise errors.BackendError(f"The node at {self.url} answered {op} with a line that is not "
                                                  f"JSON: {_snippet(line)!r}") from None
            if len(buffer) > _MAX_LINE:
                raise errors.BackendError(f"The node at {self.url} answered {op} with a line too long to be ours.")
            if time.monotonic() > deadline:
                raise errors.BackendTimeoutError(f"The node at {self.url} did not end {op} in time.")

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
