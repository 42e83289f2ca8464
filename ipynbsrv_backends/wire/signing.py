"""Request signatures between ``HttpRemote`` and the host API (kept free of Django).

Beyond the bearer token, a master that has a node's signing key signs every request with
HMAC-SHA256 over this text (lines joined with ``\\n``)::

    ipynbsrv-hostapi-v1
    METHOD                      upper case, e.g. POST
    PATH?QUERY                  exactly as on the request line, e.g. /containers/?only_running=true
    SHA256(BODY)                lower-case hex of the body's bytes (of b"" when there is none)
    TIMESTAMP                   whole seconds since the epoch, as in the header
    NONCE                       as in the header

and sends four headers:

``X-Ipynbsrv-Timestamp``
    the timestamp; the node refuses one further than its window (60 s by default) from its
    own clock, either way.
``X-Ipynbsrv-Nonce``
    16 to 64 characters of ``A-Z a-z 0-9 _ -``, new for every request (a retry gets a new
    one); the node refuses a nonce it has seen within the window.
``X-Ipynbsrv-Content-Sha256``
    the body digest (informational: the node computes its own from the bytes it received).
``X-Ipynbsrv-Signature``
    ``v1=`` and the lower-case hex HMAC-SHA256 of the text above with the signing key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time

__all__ = [
    "SCHEME",
    "TIMESTAMP_HEADER",
    "NONCE_HEADER",
    "DIGEST_HEADER",
    "SIGNATURE_HEADER",
    "SIGNATURE_PREFIX",
    "NONCE_RE",
    "KEY_MIN_LENGTH",
    "KEY_MAX_LENGTH",
    "body_digest",
    "signature",
    "signature_headers",
    "valid_key",
    "new_key",
]

SCHEME = "ipynbsrv-hostapi-v1"
TIMESTAMP_HEADER = "X-Ipynbsrv-Timestamp"
NONCE_HEADER = "X-Ipynbsrv-Nonce"
DIGEST_HEADER = "X-Ipynbsrv-Content-Sha256"
SIGNATURE_HEADER = "X-Ipynbsrv-Signature"
SIGNATURE_PREFIX = "v1="
NONCE_RE = re.compile(r"[A-Za-z0-9_-]{16,64}")
#: Bounds of a signing key's length (characters).
KEY_MIN_LENGTH = 32
KEY_MAX_LENGTH = 256


def body_digest(body: bytes | None) -> str:
    return hashlib.sha256(body or b"").hexdigest()


def signature(key: str, method: str, path: str, digest: str, timestamp: str, nonce: str) -> str:
    """The lower-case hex HMAC-SHA256 of one request's canonical text."""
    text = "\n".join((SCHEME, method.upper(), path, digest, timestamp, nonce))
    return hmac.new(key.encode("utf-8"), text.encode("utf-8"), hashlib.sha256).hexdigest()


def signature_headers(
    key: str, method: str, path: str, body: bytes | None, *, now: float | None = None, nonce: str | None = None
) -> dict[str, str]:
    """The four headers that sign one request (``now`` and ``nonce`` only for tests)."""
    timestamp = str(int(time.time() if now is None else now))
    nonce = nonce or secrets.token_urlsafe(24)
    digest = body_digest(body)
    return {
        TIMESTAMP_HEADER: timestamp,
        NONCE_HEADER: nonce,
        DIGEST_HEADER: digest,
        SIGNATURE_HEADER: SIGNATURE_PREFIX + signature(key, method, path, digest, timestamp, nonce),
    }


def valid_key(key: object) -> bool:
    """A signing key is 32 to 256 printable characters without spaces (never echo it)."""
    return (
        isinstance(key, str)
        and KEY_MIN_LENGTH <= len(key) <= KEY_MAX_LENGTH
        and key.isprintable()
        and not any(c.isspace() for c in key)
    )


def new_key() -> str:
    """A fresh random signing key (256 bits)."""
    return secrets.token_urlsafe(32)
