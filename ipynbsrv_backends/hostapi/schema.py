"""What the host API adds to a route of :mod:`ipynbsrv_backends.wire.routes`: the serializers
that check its request, and its OpenAPI operation (one helper, :func:`operation`, for all).

The route table says what travels; this module says how the node validates and describes it
with DRF and drf-spectacular (which is why it is not in the Django-free ``wire`` package).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.serializers import Serializer

from .. import contract
from ..wire.format import OPTIONS_PARAM, PK_PATTERN
from ..wire.routes import Route
from . import serializers as s

__all__ = [
    "HostAPISchema",
    "document",
    "operation",
    "operation_id",
    "request_serializer",
    "query_serializer",
    "tag",
]

#: The body serializer of a POST, by route name (the others take only ``options``).
BODIES: dict[str, type[Serializer]] = {
    "create_container": s.CreateContainerSerializer,
    "exec_in_container": s.ExecSerializer,
    "create_container_snapshot": s.CreateSnapshotSerializer,
    "import_container_snapshot": s.ImportSnapshotSerializer,
    "restore_container_snapshot": s.RestoreSnapshotSerializer,
    "create_container_image": s.CreateImageSerializer,
    "pull_container_image": s.PullImageSerializer,
    "install_next_signing_key": s.NextKeySerializer,
    "promote_signing_key": s.PromoteKeySerializer,
}
#: The query serializer of a GET or DELETE, by route name (the others take only ``options``).
QUERIES: dict[str, type[Serializer]] = {
    "get_containers": s.ContainerListQuerySerializer,
    "get_container_logs": s.LogsQuerySerializer,
    "get_container_events": s.EventsQuerySerializer,
}
RECORDS: dict[str, type[Serializer]] = {
    "container": s.ContainerRecordResponse,
    "image": s.ImageRecordResponse,
    "snapshot": s.SnapshotRecordResponse,
}
MEMBERS: dict[str, type[Serializer]] = {
    "exists": s.ExistsResponse,
    "running": s.RunningResponse,
    "suspended": s.SuspendedResponse,
    "output": s.ExecResponse,
}
#: The meaning of each error status an operation documents.
ERRORS = {
    400: "invalid_argument",
    401: "authentication_failed",
    404: "container_not_found, image_not_found or snapshot_not_found",
    409: "already_exists or illegal_state",
    501: "not_supported (the node's backend lacks the sub-contract)",
    503: "backend_unavailable",
    504: "backend_timeout",
}
#: The collections of the API (a path ending in one lists or creates).
COLLECTIONS = ("containers", "images", "snapshots")


def request_serializer(route: Route) -> type[Serializer]:
    return BODIES.get(route.name, s.OptionsOnlySerializer)


def query_serializer(route: Route) -> type[Serializer]:
    return QUERIES.get(route.name, s.OptionsQuerySerializer)


def pk_parameter(name: str) -> OpenApiParameter:
    """The encoded pk in a path (named after the resource, so it reads ``{container}``)."""
    return OpenApiParameter(
        name,
        str,
        OpenApiParameter.PATH,
        pattern=f"^{PK_PATTERN}$",
        description=f"The {name}'s pk as URL-safe base64 of its UTF-8 bytes without '=' padding "
        "(the empty pk is written '=').",
    )


OPTIONS_QUERY = OpenApiParameter(
    OPTIONS_PARAM,
    str,
    OpenApiParameter.QUERY,
    required=False,
    description="Backend-specific options as the JSON text of one object.",
)


class HostAPISchema(AutoSchema):
    """drf-spectacular's generator, tagging operations with the view's ``schema_tags``.

    (Tags are not set with a class-level ``@extend_schema``: combined with the method-level
    ones, that would pull DRF's own AutoSchema into the schema class hierarchy of projects
    whose ``DEFAULT_SCHEMA_CLASS`` is DRF's.)
    """

    def get_tags(self) -> list[str]:
        return list(getattr(self.view, "schema_tags", None) or super().get_tags())

    def get_operation(self, *args: Any, **kwargs: Any) -> Any:
        # A pk that is not encoded (or empty) matches no route: 404 ``not_found``, so every
        # operation with a pk in its path documents 404.
        operation = super().get_operation(*args, **kwargs)
        responses = (operation or {}).get("responses", {})
        if "{" in self.path and "404" not in responses and "401" in responses:
            responses["404"] = {**responses["401"], "description": "not_found (no such endpoint: a malformed pk)"}
        return operation


def document(**kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``extend_schema`` for a view method, built on :class:`HostAPISchema`.

    ``extend_schema`` bases a method's schema on the project's ``DEFAULT_SCHEMA_CLASS``
    (DRF's own AutoSchema unless the project chose drf-spectacular's); the host API must not
    depend on that global setting, so the base is handed over explicitly.
    """

    def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
        previous = getattr(func, "kwargs", {}).get("schema")
        if previous is None:  # the first annotation of this method
            func.schema = HostAPISchema  # type: ignore[attr-defined]
        try:
            return extend_schema(**kwargs)(func)
        finally:
            if previous is None:
                del func.schema  # type: ignore[attr-defined]

    return decorator


def tag(path: str) -> str:
    """The OpenAPI tag of the operations on ``path``: its collection, or ``node``/``keys``."""
    first = path.split("/", 1)[0]
    return first if first in (*COLLECTIONS, "keys") else "node"


def operation_id(route: Route) -> str:
    """``containers_list``, ``containers_retrieve``, ``containers_exists``, ``images_pull``…"""
    segments = [part for part in route.path.split("/") if part]
    words = [part for part in segments if not part.startswith("{")]
    if route.path in ("health/", "status/", "schema/"):
        return words[0]
    if segments[-1].startswith("{"):
        words.append({"GET": "retrieve", "DELETE": "destroy"}[route.http])
    elif segments[-1] in COLLECTIONS:
        words.append({"GET": "list", "POST": "create"}[route.http])
    return "_".join(words)


def _description(route: Route) -> str:
    if route.description:
        return route.description
    owner = getattr(contract, route.contract or "", None)
    method = getattr(owner, route.serves or "", None)
    return inspect.cleandoc(method.__doc__ or "") if method is not None else ""


def _ok(route: Route) -> Any:
    """What the operation answers when it succeeds."""
    if route.answer in ("record", "records"):
        assert route.record is not None
        return RECORDS[route.record](many=route.answer == "records")
    if route.member:
        return MEMBERS[route.member]
    return {
        "lines": {"type": "array", "items": {"type": "string"}},
        "events": {"type": "string", "description": "JSON lines (application/x-ndjson): {event}, {heartbeat}, "
                   "then {end} or {error}"},
        "status": s.StatusResponse,
        "health": s.HealthResponse,
    }.get(route.answer)


def operation(route: Route) -> dict[str, Any]:
    """The ``extend_schema`` arguments of one route."""
    kwargs: dict[str, Any] = {
        "operation_id": operation_id(route),
        "summary": route.title,
        "description": _description(route),
        "parameters": [pk_parameter(pk) for pk in route.pks],
    }
    if route.http == "POST":
        kwargs["request"] = request_serializer(route)
    elif route.name in QUERIES:
        kwargs["parameters"].append(QUERIES[route.name])
    elif route.options:
        kwargs["parameters"].append(OPTIONS_QUERY)
    if not route.auth:
        kwargs["responses"] = {route.status: _ok(route)}
        kwargs["auth"] = []
        return kwargs
    wanted = sorted({400, 401, 503, 504, *route.errors})
    kwargs["responses"] = {
        route.status: _ok(route),
        **{code: OpenApiResponse(s.ErrorResponse, description=ERRORS[code]) for code in wanted},
    }
    return kwargs
