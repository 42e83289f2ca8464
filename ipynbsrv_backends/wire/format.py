"""The wire format the host API and ``HttpRemote`` share: pks in paths, the options member.

Kept free of Django and DRF imports, like all of :mod:`ipynbsrv_backends.wire`:
``HttpRemote`` imports it on the master.

Primary keys travel in URL paths as URL-safe base64 (RFC 4648 section 5, alphabet
``A-Z a-z 0-9 - _``) of their UTF-8 bytes, without ``=`` padding, because pks contain ``/``
and ``:`` (image references do). The empty pk, which base64 would turn into an empty path
segment, is written as a single ``=``; no other encoded pk contains ``=``.
"""

from __future__ import annotations

import base64
import binascii
import re

__all__ = ["EMPTY_PK", "PK_PATTERN", "OPTIONS_PARAM", "encode_pk", "decode_pk"]

#: How the empty pk is written in a URL.
EMPTY_PK = "="

#: The regular expression an encoded pk matches (used by the URL routes).
PK_PATTERN = r"(?:[A-Za-z0-9_-]+|=)"

#: The query parameter (GET, DELETE) or body member (POST) that carries a method's
#: backend-specific options (the contract's ``**kwargs``) as one JSON object.
OPTIONS_PARAM = "options"

_ENCODED_RE = re.compile(r"[A-Za-z0-9_-]+")


def encode_pk(pk: str) -> str:
    """The URL path segment for ``pk``."""
    if not isinstance(pk, str):
        raise TypeError(f"a pk is a string, not {type(pk).__name__}")
    if pk == "":
        return EMPTY_PK
    return base64.urlsafe_b64encode(pk.encode("utf-8")).decode("ascii").rstrip("=")


def decode_pk(segment: str) -> str:
    """The pk a URL path segment carries; ``ValueError`` when it is not one."""
    if segment == EMPTY_PK:
        return ""
    if not _ENCODED_RE.fullmatch(segment or "") or len(segment) % 4 == 1:
        raise ValueError("not URL-safe base64 without padding")
    padded = segment + "=" * (-len(segment) % 4)
    try:
        raw = base64.urlsafe_b64decode(padded.encode("ascii"))
        pk = raw.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError(f"not the encoding of a UTF-8 pk ({exc})") from exc
    if encode_pk(pk) != segment:
        # Non-canonical encodings (stray low bits in the last character) would give two
        # URLs for one resource; refuse them.
        raise ValueError("not the canonical encoding of a pk")
    return pk
