"""Bearer-token authentication of the host API.

Every view but the liveness check requires ``Authorization: Bearer <token>``, where the
token is the node's (``IPYNBSRV_BACKENDS["HOSTAPI_TOKEN"]``, else the environment variable
``IPYNBSRV_HOSTAPI_TOKEN``), compared in constant time. A node without a token refuses every
request, unless ``HOSTAPI_INSECURE_NO_TOKEN`` is set (local development only); a configured
token always wins over that flag.

A node with a signing key (``HOSTAPI_SIGNING_KEY``, else ``IPYNBSRV_HOSTAPI_SIGNING_KEY``)
also requires every request to be signed (:mod:`.signing`): a missing, wrong, stale or
replayed signature is a 401 before any view code runs. The nonce is recorded only once the
signature is verified, so strangers cannot fill the store.
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import RequestDataTooBig
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from rest_framework import authentication, exceptions, permissions

from ..conf import TOKEN_ENV, app_settings
from . import signing
from .keystore import KeyStore, MemoryKeyStore, SqliteKeyStore

logger = logging.getLogger(__name__)

__all__ = ["HostAPIClient", "HostAPITokenAuthentication", "IsHostAPIClient", "get_keystore",
           "PayloadTooLarge"]

REALM = "ipynbsrv-hostapi"
_warned_no_token = False


@dataclass(frozen=True)
class HostAPIClient:
    """The caller, once its token is accepted (there are no user accounts on a node)."""

    insecure: bool = False
    is_authenticated: bool = True
    is_active: bool = True
    is_anonymous: bool = False

    def __str__(self) -> str:
        return "hostapi-client (insecure, no token)" if self.insecure else "hostapi-client"


class HostAPITokenAuthentication(authentication.BaseAuthentication):
    """``Authorization: Bearer <token>``; anything else is refused with 401."""

    keyword = "Bearer"

    def authenticate(self, request: Any) -> tuple[HostAPIClient, None]:
        global _warned_no_token
        expected = app_settings.hostapi_token
        if not expected:
            if app_settings.HOSTAPI_INSECURE_NO_TOKEN:
                return HostAPIClient(insecure=True), None
            if not _warned_no_token:
                _warned_no_token = True
                logger.warning(
                    "The host API has no token (set %s): every request is refused.", TOKEN_ENV
                )
            raise exceptions.AuthenticationFailed("Invalid or missing host API token.")
        header = request.META.get("HTTP_AUTHORIZATION", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != self.keyword.lower() or not presented.strip():
            raise exceptions.NotAuthenticated("Missing host API token (Authorization: Bearer <token>).")
        if not hmac.compare_digest(presented.strip().encode("utf-8"), expected.encode("utf-8")):
            raise exceptions.AuthenticationFailed("Invalid or missing host API token.")
        store = get_keystore()
        if store is not None:
            verify_signature(request, store)
        return HostAPIClient(), None

    def authenticate_header(self, request: Any) -> str:
        # Makes DRF answer 401 (not 403) and tells the caller which scheme to use.
        return f'{self.keyword} realm="{REALM}"'


class PayloadTooLarge(exceptions.APIException):
    status_code = 413
    default_code = "invalid_argument"
    default_detail = "The request body is too large."


_store_lock = threading.Lock()
_store: dict[str, Any] = {"key": None, "store": None}


def get_keystore() -> KeyStore | None:
    """This process's key store, or ``None`` when the node has no signing key (signatures
    are then not required)."""
    initial = app_settings.hostapi_signing_key
    if not initial:
        return None
    state_dir = app_settings.hostapi_state_dir
    cache_key = (os.getpid(), state_dir, signing.body_digest(initial.encode("utf-8")))
    with _store_lock:
        if _store["key"] != cache_key:
            if not signing.valid_key(initial):
                logger.error("The node's signing key is unusable (32 to 256 printable characters "
                             "without spaces): every request is refused.")
                raise exceptions.AuthenticationFailed("The node's signing key is misconfigured.")
            _store["store"] = SqliteKeyStore(state_dir, initial) if state_dir else MemoryKeyStore(initial)
            _store["key"] = cache_key
        return _store["store"]


def reset_keystore() -> None:
    """Forget this process's key store (tests, settings changes)."""
    with _store_lock:
        _store["key"] = None
        _store["store"] = None


def signed_path(request: Any) -> str:
    """The path and query as on the request line (gunicorn's ``RAW_URI``), else as Django
    rebuilds it."""
    return request.META.get("RAW_URI") or request.get_full_path()


def verify_signature(request: Any, store: KeyStore) -> str:
    """Check the request's signature against the accepted keys; returns the key that signed
    it. Raises ``AuthenticationFailed`` (401) otherwise."""
    meta = request.META
    timestamp = meta.get("HTTP_X_IPYNBSRV_TIMESTAMP", "")
    nonce = meta.get("HTTP_X_IPYNBSRV_NONCE", "")
    presented = meta.get("HTTP_X_IPYNBSRV_SIGNATURE", "")
    if not (timestamp and nonce and presented):
        raise exceptions.AuthenticationFailed(
            "This node requires signed requests (X-Ipynbsrv-Timestamp, X-Ipynbsrv-Nonce, "
            "X-Ipynbsrv-Signature): give HttpRemote the node's signing_key."
        )
    window = int(app_settings.HOSTAPI_SIGNATURE_WINDOW)
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        raise exceptions.AuthenticationFailed("Invalid request timestamp.")
    if abs(time.time() - int(timestamp)) > window:
        raise exceptions.AuthenticationFailed(
            f"Stale request: its timestamp is more than {window} s from the node's clock "
            "(check both clocks, e.g. NTP)."
        )
    if not signing.NONCE_RE.fullmatch(nonce):
        raise exceptions.AuthenticationFailed("Invalid request nonce.")
    try:
        body = request.body
    except RequestDataTooBig as exc:
        raise PayloadTooLarge() from exc
    digest = signing.body_digest(body)
    path = signed_path(request)
    matched = None
    for key in store.accepted_keys():
        expected = signing.SIGNATURE_PREFIX + signing.signature(
            key, request.method, path, digest, timestamp, nonce)
        if hmac.compare_digest(presented.encode("utf-8", "replace"), expected.encode("ascii")):
            matched = key
    if matched is None:
        raise exceptions.AuthenticationFailed("Invalid request signature.")
    if not store.remember_nonce(nonce, int(timestamp), window):
        logger.warning("A replayed request was refused (%s %s).", request.method, path[:200])
        raise exceptions.AuthenticationFailed("Replayed request: this nonce was already used.")
    # Which key signed (its digest, never the key), for the rotation endpoints.
    request.META["ipynbsrv.signed_with"] = signing.body_digest(matched.encode("utf-8"))
    return matched


class IsHostAPIClient(permissions.BasePermission):
    """Only callers the authentication above accepted."""

    def has_permission(self, request: Any, view: Any) -> bool:
        return isinstance(request.user, HostAPIClient)


class HostAPITokenScheme(OpenApiAuthenticationExtension):
    """Describes the bearer token in the generated OpenAPI schema."""

    target_class = HostAPITokenAuthentication
    name = "hostApiToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return build_bearer_security_scheme_object(header_name="Authorization", token_prefix="Bearer")
