"""The signature scheme itself (pure logic), and the host API served from a Django project
(no state directory: nonces in memory, rotation refused)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest
from django.test import Client

from ipynbsrv_backends.hostapi import auth, signing

KEY = "k" * 40


def test_the_canonical_text_is_fixed():
    """Masters and nodes of different versions must agree on every byte of it."""
    headers = signing.signature_headers(KEY, "post", "/containers/?a=1", b'{"x": 1}', now=1700000000.9,
                                        nonce="n" * 20)
    digest = hashlib.sha256(b'{"x": 1}').hexdigest()
    text = f"ipynbsrv-hostapi-v1\nPOST\n/containers/?a=1\n{digest}\n1700000000\n{'n' * 20}"
    expected = hmac.new(KEY.encode(), text.encode(), hashlib.sha256).hexdigest()
    assert headers == {
        "X-Ipynbsrv-Timestamp": "1700000000",
        "X-Ipynbsrv-Nonce": "n" * 20,
        "X-Ipynbsrv-Content-Sha256": digest,
        "X-Ipynbsrv-Signature": "v1=" + expected,
    }
    assert signing.body_digest(None) == signing.body_digest(b"") == hashlib.sha256(b"").hexdigest()


def test_every_part_changes_the_signature():
    base = ("POST", "/containers/", signing.body_digest(b"{}"), "1700000000", "n" * 20)
    reference = signing.signature(KEY, *base)
    for index, other in enumerate(("GET", "/containers/x/", signing.body_digest(b"{ }"), "1700000001", "m" * 20)):
        changed = list(base)
        changed[index] = other
        assert signing.signature(KEY, *changed) != reference
    assert signing.signature("j" * 40, *base) != reference


@pytest.mark.parametrize("key,valid", [
    ("k" * 32, True), ("k" * 256, True), ("k" * 31, False), ("k" * 257, False), ("k" * 31 + " ", False),
    ("k" * 32 + "\n", False), (None, False), (b"k" * 40, False), (signing.new_key(), True),
])
def test_key_rules(key, valid):
    assert signing.valid_key(key) is valid


@pytest.fixture
def project_node(settings):
    """The host API included in the test project, with a signing key and no state directory."""
    settings.IPYNBSRV_BACKENDS = {
        "HOSTAPI_TOKEN": "t" * 40, "HOSTAPI_SIGNING_KEY": KEY, "HOSTAPI_STATE_DIR": "",
        "HOSTAPI_BACKEND": "tests.hostapi_fakes.FullBackend",
    }
    auth.reset_keystore()
    yield Client()
    auth.reset_keystore()


def signed_get(client: Client, path: str, **sign: object):
    headers = signing.signature_headers(KEY, "GET", path, b"", **sign)
    return client.get(path, HTTP_AUTHORIZATION="Bearer " + "t" * 40,
                      **{"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers.items()})


def test_in_a_project_without_a_state_dir(project_node):
    nonce = "a" * 24
    first = signed_get(project_node, "/hostapi/containers/", nonce=nonce)
    assert first.status_code == 200, first.content
    again = signed_get(project_node, "/hostapi/containers/", nonce=nonce)
    assert again.status_code == 401 and "Replayed" in again.json()["detail"]
    stale = signed_get(project_node, "/hostapi/containers/", now=time.time() - 61)
    assert stale.status_code == 401
    # The path is signed with its prefix, as HttpRemote sends it.
    assert signed_get(project_node, "/hostapi/containers/?only_running=true").status_code == 200
    body = json.dumps({"key": "n" * 40}).encode()
    headers = signing.signature_headers(KEY, "POST", "/hostapi/keys/next/", body)
    response = project_node.post("/hostapi/keys/next/", body, content_type="application/json",
                                 HTTP_AUTHORIZATION="Bearer " + "t" * 40,
                                 **{"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()})
    assert response.status_code == 501 and response.json()["code"] == "not_supported"


@pytest.mark.parametrize("setting,value", [
    ("HOSTAPI_SIGNING_KEY", "short-secret"), ("HOSTAPI_SIGNING_KEY", 42), ("HOSTAPI_STATE_DIR", 1),
    ("HOSTAPI_SIGNATURE_WINDOW", 0), ("HOSTAPI_SIGNATURE_WINDOW", "60"), ("HOSTAPI_KEY_GRACE", -1),
])
def test_bad_signing_settings_are_e014(settings, setting, value):
    from django.core.checks import run_checks

    settings.IPYNBSRV_BACKENDS = {setting: value}
    found = [m for m in run_checks(tags=["ipynbsrv_backends"]) if m.id == "ipynbsrv_backends.E014"]
    assert len(found) == 1 and setting in found[0].msg
    assert "short-secret" not in found[0].msg


def test_good_signing_settings_pass(settings):
    from django.core.checks import run_checks

    settings.IPYNBSRV_BACKENDS = {"HOSTAPI_SIGNING_KEY": KEY, "HOSTAPI_STATE_DIR": "/var/lib/x",
                                  "HOSTAPI_SIGNATURE_WINDOW": 30, "HOSTAPI_KEY_GRACE": 0}
    assert not [m for m in run_checks(tags=["ipynbsrv_backends"]) if m.id == "ipynbsrv_backends.E014"]


def test_httpremote_checks_and_hides_its_signing_key():
    from ipynbsrv_backends import errors, registry
    from ipynbsrv_backends.backends import HttpRemote

    for bad in ("short", "k" * 40 + " ", 42):
        with pytest.raises(errors.InvalidArgumentError) as info:
            HttpRemote("http://127.0.0.1:1", token="t", signing_key=bad)
        assert str(bad) not in str(info.value)
    remote = HttpRemote("http://127.0.0.1:1", token="t", signing_key=KEY)
    assert KEY not in repr(remote) and "signing_key='***'" in repr(remote)
    assert "signing_key" in HttpRemote.SECRET_OPTIONS
    assert registry.mask_config("HttpRemote", {"signing_key": KEY})["signing_key"] != KEY
