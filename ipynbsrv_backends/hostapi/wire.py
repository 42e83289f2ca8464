"""Moved to :mod:`ipynbsrv_backends.wire.format`; this path keeps working."""

from __future__ import annotations

from ..wire.format import EMPTY_PK, OPTIONS_PARAM, PK_PATTERN, decode_pk, encode_pk

__all__ = ["EMPTY_PK", "PK_PATTERN", "OPTIONS_PARAM", "encode_pk", "decode_pk"]
