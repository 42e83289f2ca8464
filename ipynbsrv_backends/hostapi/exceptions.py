"""How the host API answers errors: always ``{"code": CODE, "detail": MESSAGE}``.

Set on the app's own views (``get_exception_handler``), never through the project's global
``REST_FRAMEWORK`` settings. A :class:`~ipynbsrv_backends.errors.BackendError` keeps its
status and code (``errors.ERRORS_BY_CODE`` is the table ``HttpRemote`` reads them back
with); DRF's own errors are mapped onto the same codes; anything else is logged with its
traceback and answered as a bare 500 ``backend_error`` that leaks nothing.
"""

from __future__ import annotations

import logging
from typing import Any

from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response

from ..drf import flatten_detail
from ..errors import AuthenticationError, BackendError, InvalidArgumentError, NotFoundError

logger = logging.getLogger(__name__)

__all__ = ["hostapi_exception_handler", "flatten_detail", "json_not_found", "json_server_error"]


def _error_response(error: BackendError, headers: dict[str, str] | None = None) -> Response:
    return Response(error.as_dict(), status=error.status_code, headers=headers)


def hostapi_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """The exception handler of every host API view."""
    if isinstance(exc, BackendError):
        if exc.status_code >= 500:
            logger.warning("%s: %s", type(exc).__name__, exc.detail)
        return _error_response(exc)
    if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
        headers = {}
        auth_header = getattr(exc, "auth_header", None)
        if auth_header:
            headers["WWW-Authenticate"] = auth_header
        return _error_response(AuthenticationError(str(exc.detail)), headers)
    if isinstance(exc, exceptions.PermissionDenied):
        return _error_response(AuthenticationError(str(exc.detail)))
    if isinstance(exc, (exceptions.ValidationError, exceptions.ParseError)):
        return _error_response(InvalidArgumentError(flatten_detail(exc.detail)))
    if isinstance(exc, (exceptions.NotFound, Http404)):
        return _error_response(NotFoundError("No such endpoint or resource."))
    if isinstance(exc, exceptions.APIException):
        body = {"code": str(exc.default_code), "detail": flatten_detail(exc.detail)}
        headers = {}
        wait = getattr(exc, "wait", None)  # Throttled
        if wait:
            headers["Retry-After"] = str(int(wait))
        return Response(body, status=exc.status_code, headers=headers)
    view = context.get("view")
    logger.exception("Unexpected error in the host API view %s", type(view).__name__ if view else "?")
    return _error_response(BackendError("Unexpected error on the node; see the node's log."))


def json_not_found(request: Any, exception: Exception | None = None) -> JsonResponse:
    """``handler404`` of the command's URL configuration: no HTML on a node."""
    return JsonResponse(
        {"code": "not_found", "detail": f"No host API endpoint at {request.path}."},
        status=status.HTTP_404_NOT_FOUND,
    )


def json_server_error(request: Any) -> JsonResponse:
    """``handler500`` of the command's URL configuration."""
    return JsonResponse(
        {"code": "backend_error", "detail": "Unexpected error on the node; see the node's log."},
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )
