"""The ``HttpRemote`` backend's constructor options, declared once (see :mod:`.options`)."""

from __future__ import annotations

import os
import urllib.parse
from typing import Any

from .. import errors
from ..wire import signing
from .options import Option, Options, positive_seconds

__all__ = ["HTTP_REMOTE_OPTIONS"]


def _url(name: str, value: Any) -> str:
    parsed = urllib.parse.urlsplit(value) if isinstance(value, str) else None
    if (
        parsed is None
        or not isinstance(value, str)
        or parsed.scheme not in ("http", "https")
        or not parsed.hostname
        or parsed.query
        or parsed.fragment
        or parsed.username
        or parsed.password
    ):
        raise errors.InvalidArgumentError(
            f"Invalid url {str(value)[:80]!r}: use the node's host API base URL, such as "
            "https://10.0.0.2:8080 (no query, fragment or credentials)."
        )
    try:
        parsed.port  # noqa: B018 - raises on a bad port
    except ValueError as exc:
        raise errors.InvalidArgumentError(f"Invalid url {value[:80]!r}: {exc}.") from None
    return value.rstrip("/")


def _token(name: str, value: Any) -> str | None:
    if value is not None and (not isinstance(value, str) or not value or any(c.isspace() for c in value)
                              or not value.isprintable()):
        # Never echo the value: it is a secret.
        raise errors.InvalidArgumentError(
            "Invalid token: it must be a non-empty string without spaces or control characters."
        )
    return value


def _signing_key(name: str, value: Any) -> str | None:
    if value is not None and not signing.valid_key(value):
        # Never echo the value: it is a secret.
        raise errors.InvalidArgumentError("Invalid signing_key: it must be 32 to 256 printable characters without spaces.")
    return value


def _verify(name: str, value: Any) -> bool | str:
    if isinstance(value, str):
        if not os.path.exists(value):
            raise errors.InvalidArgumentError(f"verify: no CA bundle at {value!r}.")
    elif not isinstance(value, bool):
        raise errors.InvalidArgumentError("verify must be true, false or the path of a CA bundle.")
    return value


def _seconds(name: str, value: Any) -> float:
    return float(positive_seconds(name, value))


def _retries(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10:
        raise errors.InvalidArgumentError(f"Invalid retries {value!r}: use a whole number from 0 to 10.")
    return value


def _backoff(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 60:
        raise errors.InvalidArgumentError(f"Invalid retry_backoff {value!r}: use 0 to 60 seconds.")
    return float(value)


def _pool_size(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000:
        raise errors.InvalidArgumentError(f"Invalid pool_size {value!r}: use a whole number from 1 to 1000.")
    return value


HTTP_REMOTE_OPTIONS = Options(
    "HttpRemote",
    Option("url", None, "The node's host API base URL, `http(s)://HOST:PORT` (plus the prefix when a project "
           "includes the URLs under one, e.g. `http://host:8000/hostapi`).", _url, shown_default="(required)"),
    Option("token", None, "The node's `IPYNBSRV_HOSTAPI_TOKEN`, sent as `Authorization: Bearer`. `None` sends none "
           "(only a node started with `--insecure-no-token` accepts that).", _token, secret=True),
    Option("signing_key", None, "The node's `IPYNBSRV_HOSTAPI_SIGNING_KEY` (or the last one rotated in): every "
           "request is then signed over its method, path, body, a timestamp and a nonce. `None` signs nothing, "
           "which only a node without a signing key accepts.", _signing_key, secret=True),
    Option("verify", True, "TLS verification: `True` (the CA bundle of `requests`), the path of the CA bundle that "
           "signed the node's certificate, or `False` (off; a warning is logged).", _verify),
    Option("connect_timeout", 5.0, "Seconds to connect; then `BackendUnavailableError`.", _seconds),
    Option("timeout", 30.0, "Seconds to wait for the answer to a quick call (reads, exists, lists, logs, suspend, "
           "resume); then `BackendTimeoutError`.", _seconds),
    Option("status_timeout", 5.0, "Seconds to wait for `get_status()` / `get_node_status()`.", _seconds),
    Option("long_timeout", 900.0, "Seconds to wait for a slow call: create/clone (may pull), commit (and push), "
           "`pull_container_image`, snapshot, `export_container_snapshot` (push) and `import_container_snapshot` "
           "(pull), restore, exec, start, stop, restart, deletes.", _seconds),
    Option("retries", 2, "Extra attempts of a read after a connection failure; writes and timed-out calls are never "
           "repeated.", _retries),
    Option("retry_backoff", 0.5, "Seconds before the first retry, doubled after each.", _backoff),
    Option("pool_size", 10, "Connections kept open to the node and reused.", _pool_size),
)
