"""Bearer-token authentication of the host API.

Every view but the liveness check requires ``Authorization: Bearer <token>``, where the
token is the node's (``IPYNBSRV_BACKENDS["HOSTAPI_TOKEN"]``, else the environment variable
``IPYNBSRV_HOSTAPI_TOKEN``), compared in constant time. A node without a token refuses every
request, unless ``HOSTAPI_INSECURE_NO_TOKEN`` is set (local development only); a configured
token always wins over that flag.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from rest_framework import authentication, exceptions, permissions

from ..conf import TOKEN_ENV, app_settings

logger = logging.getLogger(__name__)

__all__ = ["HostAPIClient", "HostAPITokenAuthentication", "IsHostAPIClient"]

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
        return HostAPIClient(), None

    def authenticate_header(self, request: Any) -> str:
        # Makes DRF answer 401 (not 403) and tells the caller which scheme to use.
        return f'{self.keyword} realm="{REALM}"'


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
