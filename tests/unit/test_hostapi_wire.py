"""The pk encoding both sides of the host API share (pure logic)."""

from __future__ import annotations

import re

import pytest

from ipynbsrv_backends.hostapi.wire import EMPTY_PK, PK_PATTERN, decode_pk, encode_pk

PKS = [
    "ipynbsrv-u1000-notebook",
    "10.0.0.1:5000/ipynbsrv-u1000/stack:v2",
    "ipynbsrv-snapshots/ipynbsrv-u1000-nb:first",
    "sha256:0123456789abcdef",
    "a",
    "ab",
    "abc",
    "?#%&+ /\\",
    "ünïcødé/✓",
    "\x00\n",
    "",
]


@pytest.mark.parametrize("pk", PKS)
def test_round_trip_and_url_safe(pk):
    segment = encode_pk(pk)
    assert re.fullmatch(PK_PATTERN, segment)
    assert "/" not in segment and "+" not in segment and ("=" not in segment or segment == EMPTY_PK)
    assert decode_pk(segment) == pk


def test_empty_pk_has_its_own_segment():
    assert encode_pk("") == "="
    assert decode_pk("=") == ""


@pytest.mark.parametrize("segment", ["", "a", "ab=", "ab==", "a+b", "a/b", "a.b", "YQ=", "YR", "/wA", "==", "%41"])
def test_bad_segments_are_refused(segment):
    with pytest.raises(ValueError):
        decode_pk(segment)


def test_non_canonical_encoding_is_refused():
    # "YR" decodes to "a" like "YQ", but only "YQ" is the encoding of "a".
    assert encode_pk("a") == "YQ"
    with pytest.raises(ValueError):
        decode_pk("YR")


def test_invalid_utf8_is_refused():
    assert encode_pk("a") == "YQ"
    with pytest.raises(ValueError):
        decode_pk("_w")  # 0xff


def test_encode_needs_a_string():
    with pytest.raises(TypeError):
        encode_pk(None)  # type: ignore[arg-type]


def test_action_names_are_not_encoded_pks():
    """``images/pull/`` shares the level of ``images/{image}/``: no pk encodes to ``pull``."""
    with pytest.raises(ValueError):
        decode_pk("pull")
