"""Moved to :mod:`ipynbsrv_backends.wire.signing`; this path keeps working."""

from __future__ import annotations

from ..wire.signing import (
    DIGEST_HEADER,
    KEY_MAX_LENGTH,
    KEY_MIN_LENGTH,
    NONCE_HEADER,
    NONCE_RE,
    SCHEME,
    SIGNATURE_HEADER,
    SIGNATURE_PREFIX,
    TIMESTAMP_HEADER,
    body_digest,
    new_key,
    signature,
    signature_headers,
    valid_key,
)

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
