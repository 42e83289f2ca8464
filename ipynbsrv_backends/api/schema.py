"""How the users' API describes itself with drf-spectacular, independent of the project's
``REST_FRAMEWORK['DEFAULT_SCHEMA_CLASS']``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse, extend_schema

from .serializers import ErrorSerializer

__all__ = ["UserAPISchema", "BasicNoPromptScheme", "document", "errors"]


class UserAPISchema(AutoSchema):
    """drf-spectacular's inspector, with each view's ``schema_tags`` as its tags."""

    def get_tags(self) -> list[str]:
        return list(getattr(self.view, "schema_tags", None) or super().get_tags())

    def get_operation(self, *args: Any, **kwargs: Any) -> Any:
        # Every unsafe request with a body that is not JSON answers 415,
        # whether or not the operation reads a body (see api/crosssite.py).
        operation = super().get_operation(*args, **kwargs)
        responses = (operation or {}).get("responses", {})
        if self.method not in ("GET", "HEAD", "OPTIONS") and "415" not in responses and "403" in responses:
            responses["415"] = {**responses["403"], "description": _MEANING[415]}
        return operation


class BasicNoPromptScheme(OpenApiAuthenticationExtension):
    """The API's HTTP Basic (:class:`~.crosssite.BasicNoPrompt`) is plain HTTP Basic to a
    client; only its 401 challenge differs."""

    target_class = "ipynbsrv_backends.api.crosssite.BasicNoPrompt"
    name = "basicAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "basic"}


def document(**kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``extend_schema`` for a view method, based on :class:`UserAPISchema`.

    Plain ``extend_schema`` builds on the project's ``DEFAULT_SCHEMA_CLASS``, which is DRF's
    own inspector unless the project chose drf-spectacular's; handing the base over here
    keeps the schema right whatever the project's global settings say.
    """

    def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
        first = "schema" not in getattr(func, "kwargs", {})
        if first:
            func.schema = UserAPISchema  # type: ignore[attr-defined]
        try:
            return extend_schema(**kwargs)(func)
        finally:
            if first:
                del func.schema  # type: ignore[attr-defined]

    return decorator


_MEANING = {
    400: "invalid (a bad body or query) or invalid_argument",
    401: "not_authenticated or authentication_failed",
    403: "permission_denied (also a failed CSRF check), cross_site_request (an unsafe request whose Origin "
         "or Referer is another site's)",
    404: "not_found: no such object among yours (or the node lost the container)",
    409: "already_exists or illegal_state",
    415: "unsupported_media_type: an unsafe request with a body that is not application/json",
    429: "quota_exceeded",
    501: "not_supported: the node's backend cannot do this",
    503: "no_node_available or backend_unavailable",
    504: "backend_timeout",
}


def errors(*statuses: int) -> dict[int, OpenApiResponse]:
    """The error answers an operation documents; every one may get 401/403."""
    wanted = sorted({401, 403, *statuses})
    return {code: OpenApiResponse(ErrorSerializer, description=_MEANING[code]) for code in wanted}
