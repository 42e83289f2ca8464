"""How the users' API answers errors: always ``{"code": CODE, "detail": MESSAGE}``.

A :class:`~ipynbsrv_backends.errors.BackendError` keeps its status and code (503
``no_node_available``, 409 ``already_exists``, ...). DRF's own errors get the same shape;
a validation error also carries ``fields``, DRF's per-field messages. Set on the API's
views, never through the project's global ``REST_FRAMEWORK`` settings.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from ..drf import flatten_detail
from ..errors import BackendError

logger = logging.getLogger(__name__)

__all__ = ["api_exception_handler"]


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """The exception handler of every view of the users' API."""
    if isinstance(exc, BackendError):
        if exc.status_code >= 500:
            logger.warning("%s: %s", type(exc).__name__, exc.detail)
        # No rollback: the service layer commits what it did (a container marked lost, say).
        return Response(exc.as_dict(), status=exc.status_code)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # a bug: Django logs it and answers 500
    if isinstance(exc, Http404):
        code = "not_found"
    elif isinstance(exc, DjangoPermissionDenied):
        code = "permission_denied"
    elif isinstance(exc, exceptions.ValidationError):
        code = "invalid"
    elif isinstance(exc, exceptions.APIException):
        code = str(exc.default_code)
    else:  # pragma: no cover - DRF answers only the classes above
        code = "error"
    body: dict[str, Any] = {"code": code, "detail": flatten_detail(response.data)}
    if isinstance(exc, exceptions.ValidationError):
        body["fields"] = response.data if isinstance(response.data, dict) else {"non_field_errors": response.data}
    elif isinstance(response.data, dict) and "detail" in response.data:
        body["detail"] = str(response.data["detail"])
    response.data = body
    return response
