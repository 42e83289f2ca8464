"""The host API views: the node's local backend, method by method, over HTTP.

Every view but :class:`HealthView` needs the node's token (:mod:`.auth`); the backend is
looked up only inside a handler, so a refused request never touches it. Pks travel in URL
paths encoded (:mod:`.wire`), and raw inside JSON bodies. A method's backend-specific
options (the contract's ``**kwargs``) travel as one JSON object named ``options``: in the
body of a POST, in the query string of a GET or DELETE. Errors are answered by
:func:`.exceptions.hostapi_exception_handler` as ``{"code", "detail"}``.
"""

from __future__ import annotations

import inspect
import json
import logging
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.http import StreamingHttpResponse
from django.urls import NoReverseMatch, reverse
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from drf_spectacular.views import SpectacularAPIView
from rest_framework import status as http_status
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import Serializer
from rest_framework.views import APIView

from .. import __version__
from ..conf import app_settings
from ..contract import (
    BACKEND_STATUS_ERROR,
    BACKEND_STATUS_OK,
    CONTAINER_STATUS_STOPPED,
    ContainerBackend,
    SnapshotableContainerBackend,
    SuspendableContainerBackend,
)
from ..errors import AuthenticationError, BackendError, CapabilityNotSupportedError, InvalidArgumentError
from ..parsers import SafeJSONParser
from . import serializers as s
from . import signing
from .auth import HostAPITokenAuthentication, IsHostAPIClient, PayloadTooLarge, get_keystore
from .exceptions import hostapi_exception_handler
from .node import describe_backend, get_backend
from .resources import node_resources
from .wire import OPTIONS_PARAM, PK_PATTERN, decode_pk, encode_pk

logger = logging.getLogger(__name__)

__all__ = [
    "HostAPIView",
    "HealthView",
    "StatusView",
    "ContainerViewSet",
    "ImageViewSet",
    "SnapshotViewSet",
    "SchemaView",
    "NextKeyView",
    "PromoteKeyView",
]

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


CONTAINER = pk_parameter("container")
IMAGE = pk_parameter("image")
SNAPSHOT = pk_parameter("snapshot")
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


def _errors(*statuses: int) -> dict[int, OpenApiResponse]:
    """The error answers an operation documents (401 on every protected one)."""
    meaning = {
        400: "invalid_argument",
        401: "authentication_failed",
        404: "container_not_found, image_not_found or snapshot_not_found",
        409: "already_exists or illegal_state",
        501: "not_supported (the node's backend lacks the sub-contract)",
        503: "backend_unavailable",
        504: "backend_timeout",
    }
    wanted = sorted({400, 401, 503, 504, *statuses})
    return {code: OpenApiResponse(s.ErrorResponse, description=meaning[code]) for code in wanted}


def _responses(ok: Any, *statuses: int, ok_status: int = 200) -> dict[int, Any]:
    return {ok_status: ok, **_errors(*statuses)}


if TYPE_CHECKING:  # a mixin for APIView subclasses; typed as one
    _ViewBase = APIView
else:
    _ViewBase = object


#: Option names that would collide with the bound backend method itself.
_RESERVED_OPTION_NAMES = frozenset({"self", "cls"})

#: Accept headers answered with JSON without running DRF's content negotiation.
_PLAIN_JSON_ACCEPT = frozenset({"application/json", "*/*"})
#: What a client asks for (``Accept``) to get a pull's progress as it goes (``images/pull/``).
NDJSON = "application/x-ndjson"


class HostAPIView(_ViewBase):
    """What every protected host API view shares: token authentication, JSON in and out,
    the exception handler and the schema generator — set here, on the views, so the
    project's global DRF settings are left alone."""

    authentication_classes = [HostAPITokenAuthentication]
    permission_classes = [IsHostAPIClient]
    renderer_classes = [JSONRenderer]
    parser_classes = [SafeJSONParser]
    throttle_classes: list[Any] = []
    schema = HostAPISchema()
    schema_tags: list[str] = []

    def get_exception_handler(self) -> Callable[..., Response]:
        return hostapi_exception_handler

    def perform_content_negotiation(self, request: Request, force: bool = False) -> tuple[Any, str]:
        # JSON is all these views speak: what HttpRemote asks for needs no Accept parsing
        # (anything else still goes through DRF's negotiation, and may be a 406).
        renderers = self.get_renderers()
        accept = request.META.get("HTTP_ACCEPT", "*/*")
        streams = accept == NDJSON and getattr(self, "action", None) == "pull"  # errors before it: JSON
        if (len(renderers) == 1 and isinstance(renderers[0], JSONRenderer)
                and (accept in _PLAIN_JSON_ACCEPT or streams)):
            return renderers[0], renderers[0].media_type
        return super().perform_content_negotiation(request, force)

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        # Before authentication and parsing: a body larger than Django's
        # DATA_UPLOAD_MAX_MEMORY_SIZE is refused unread (DRF's parsers would read it all).
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if limit is not None and length > limit:
            raise PayloadTooLarge(
                f"The request body ({length} bytes) is larger than this node accepts ({limit} bytes)."
            )
        super().initial(request, *args, **kwargs)

    def handle_exception(self, exc: Exception) -> Response:
        # Errors are JSON like everywhere else, whatever format the schema was asked in.
        response = super().handle_exception(exc)
        self.request.accepted_renderer = JSONRenderer()
        self.request.accepted_media_type = JSONRenderer.media_type
        return response

    # -- helpers shared by the handlers -------------------------------------------------

    @property
    def backend(self) -> ContainerBackend:
        return get_backend()

    def suspendable(self) -> SuspendableContainerBackend:
        backend = self.backend
        if not isinstance(backend, SuspendableContainerBackend):
            raise CapabilityNotSupportedError(
                f"The backend of this node ({describe_backend()}) cannot suspend containers."
            )
        return backend

    def snapshotable(self) -> SnapshotableContainerBackend:
        backend = self.backend
        if not isinstance(backend, SnapshotableContainerBackend):
            raise CapabilityNotSupportedError(
                f"The backend of this node ({describe_backend()}) cannot snapshot containers."
            )
        return backend

    def optional_method(self, name: str, what: str) -> Callable[..., Any]:
        """A backend method outside the contract (such as ``pull_container_image``); a
        backend without it is ``501 not_supported``."""
        method = getattr(self.backend, name, None)
        if not callable(method):
            raise CapabilityNotSupportedError(f"The backend of this node ({describe_backend()}) cannot {what}.")
        return method

    @staticmethod
    def decoded_pk(segment: str) -> str:
        try:
            return decode_pk(segment)
        except ValueError as exc:
            raise InvalidArgumentError(
                f"{segment!r} in the URL is not an encoded pk (URL-safe base64 without padding): {exc}"
            ) from exc

    @staticmethod
    def body(request: Request, serializer_class: type[Serializer]) -> dict[str, Any]:
        data = request.data
        if serializer_class is s.OptionsOnlySerializer and type(data) is dict and data.keys() <= {OPTIONS_PARAM}:
            # The body of most calls (``{"options": {}}``): what the serializer would return,
            # without building it. Anything else gets the serializer and its messages.
            options = data.get(OPTIONS_PARAM, {})
            if type(options) is dict:
                return {OPTIONS_PARAM: dict(options)}
        serializer = serializer_class(data=data)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)

    @staticmethod
    def query(request: Request, serializer_class: type[Serializer] = s.OptionsQuerySerializer) -> dict[str, Any]:
        known = set(serializer_class().fields)
        unknown = sorted(key for key in request.query_params if key not in known)
        if unknown:
            raise InvalidArgumentError(
                f"Unknown query parameter(s) {', '.join(unknown)} "
                f"(backend-specific options go in {OPTIONS_PARAM!r} as a JSON object)."
            )
        serializer = serializer_class(data=request.query_params)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)

    @staticmethod
    def call(method: Callable[..., Any], *args: Any, options: dict[str, Any], **named: Any) -> Any:
        """``method(*args, **named, **options)``; an option named like an argument the call
        already gives (by name or by position: ``container``, ``name``, …) or like the bound
        method's own ``self`` is an invalid argument rather than a ``TypeError`` (a 500)."""
        clash = set(options) & (set(named) | _RESERVED_OPTION_NAMES)
        if options and args:
            try:
                parameters = list(inspect.signature(method).parameters)
            except (TypeError, ValueError):
                parameters = []
            clash |= set(options) & set(parameters[: len(args)])
        if clash:
            raise InvalidArgumentError(
                f"{', '.join(sorted(clash))} cannot be an option in {OPTIONS_PARAM!r}: it names an argument of "
                "the call itself; give arguments in their own fields and only backend-specific options there."
            )
        return method(*args, **named, **options)


def _created(request: Request, record: Any, route: str, kwarg: str) -> Response:
    """``201 Created`` with the record, and a ``Location`` when the record has a pk."""
    pk = record.get("pk") if isinstance(record, dict) else None
    return Response(record, status=http_status.HTTP_201_CREATED, headers=_location(request, route, kwarg, pk))


def _streamed_pull(puller: Callable[..., Any], image: str, options: dict[str, Any]) -> StreamingHttpResponse:
    """Run the pull in a thread of its own and answer its progress, one JSON line per report,
    ending with the image's record or the error (``{"code", "detail"}`` as everywhere)."""
    events: queue.Queue[tuple[str, Any]] = queue.Queue()

    def run() -> None:
        try:
            record = HostAPIView.call(puller, image, options=options,
                                      on_progress=lambda summary: events.put(("progress", summary)))
            events.put(("record", record))
        except BackendError as exc:
            events.put(("error", exc.as_dict()))
        except Exception:
            logger.exception("Unexpected error in a streamed pull of %s", image)
            events.put(("error", BackendError("Unexpected error on the node; see the node's log.").as_dict()))

    # The thread ends with the pull (bounded by the backend's own timeouts), even if the
    # client has gone: the image is then on the node for the next try.
    threading.Thread(target=run, name="hostapi-pull", daemon=True).start()

    def lines() -> Any:
        while True:
            kind, value = events.get()
            yield (json.dumps({kind: value}, allow_nan=False) + "\n").encode("utf-8")
            if kind != "progress":
                return

    response = StreamingHttpResponse(lines(), content_type=NDJSON)
    response["Cache-Control"] = "no-store"
    response["X-Accel-Buffering"] = "no"  # a proxy in front must pass the lines on as they come
    return response


def _location(request: Request, route: str, kwarg: str, pk: Any) -> dict[str, str]:
    if not isinstance(pk, str):
        return {}
    namespace = request.resolver_match.namespace if request.resolver_match else ""
    name = f"{namespace}:{route}" if namespace else route
    try:
        return {"Location": reverse(name, kwargs={kwarg: encode_pk(pk)})}
    except NoReverseMatch:
        return {}


class HealthView(HostAPIView, APIView):
    """Bare liveness: answers while the process serves. The one open endpoint; it touches
    neither the backend nor the engine."""

    schema_tags = ["node"]
    authentication_classes: list[Any] = []
    permission_classes: list[Any] = []

    @document(operation_id="health", summary="Liveness (no token)", responses={200: s.HealthResponse}, auth=[])
    def get(self, request: Request) -> Response:
        return Response({"status": "ok"})


class StatusView(HostAPIView, APIView):
    """The backend's status and what the node has to offer, for placement."""

    schema_tags = ["node"]

    @document(
        operation_id="status",
        summary="get_status() and the node's resources",
        responses=_responses(s.StatusResponse),
        description="`backend.status` is the backend's get_status() (0 ok, 1 stopped, 2 error); "
        "`resources.containers` counts the containers the backend manages (running includes "
        "suspended); they are null when the backend is not ok.",
    )
    def get(self, request: Request) -> Response:
        self.query(request)
        backend = self.backend
        try:
            backend_status = int(backend.get_status())
        except Exception:  # get_status must never raise; a broken one is an error status
            logger.exception("get_status() of %s raised", describe_backend())
            backend_status = BACKEND_STATUS_ERROR
        running = total = None
        if backend_status == BACKEND_STATUS_OK:
            try:
                containers = backend.get_containers()
            except Exception as exc:  # the status must answer even when listing fails
                logger.warning("Counting containers for the status failed: %s", exc)
            else:
                total = len(containers)
                running = sum(1 for c in containers if c.get("status") != CONTAINER_STATUS_STOPPED)
        capabilities = [
            name
            for name, contract in (
                ("suspend", SuspendableContainerBackend),
                ("snapshot", SnapshotableContainerBackend),
            )
            if isinstance(backend, contract)
        ]
        resources = dict(node_resources())
        resources["containers"] = {"running": running, "total": total}
        return Response(
            {
                "backend": {"status": backend_status, "capabilities": capabilities},
                "resources": resources,
            }
        )


class KeyView(HostAPIView, APIView):
    """Shared by the two steps of a signing-key rotation (docs/security.md)."""

    schema_tags = ["keys"]

    def store(self) -> Any:
        store = get_keystore()
        if store is None:
            raise CapabilityNotSupportedError(
                "This node has no signing key (IPYNBSRV_HOSTAPI_SIGNING_KEY): there is nothing to rotate."
            )
        if not store.persistent:
            raise CapabilityNotSupportedError(
                "This node has no state directory (--state-dir): a rotated key would be lost on "
                "restart, so rotation is refused."
            )
        return store


class NextKeyView(KeyView):
    """Step 1: install the key that will replace the current one; both are accepted."""

    @document(
        operation_id="keys_next",
        summary="Install the next signing key",
        request=s.NextKeySerializer,
        responses=_responses(None, 409, 501, ok_status=204),
        description="Signed with a key the node accepts. From now on the node accepts the "
        "current and the next key, so requests in flight never fail.",
    )
    def post(self, request: Request) -> Response:
        store = self.store()
        key = self.body(request, s.NextKeySerializer)["key"]
        if not signing.valid_key(key):
            raise InvalidArgumentError("The key must be 32 to 256 printable characters without spaces.")
        store.install_next(key)
        return Response(status=http_status.HTTP_204_NO_CONTENT)


class PromoteKeyView(KeyView):
    """Step 2: the next key becomes current; the replaced one is accepted for a grace period."""

    @document(
        operation_id="keys_promote",
        summary="Make the next signing key the current one",
        request=s.PromoteKeySerializer,
        responses=_responses(None, 409, 501, ok_status=204),
        description="Must be signed with the next key itself (proof that the master has it). "
        "The replaced key is still accepted for `grace` seconds.",
    )
    def post(self, request: Request) -> Response:
        store = self.store()
        grace = self.body(request, s.PromoteKeySerializer).get("grace")
        if grace is None:
            grace = int(app_settings.HOSTAPI_KEY_GRACE)
        following = store.next_key()
        if following is None:
            from ..errors import IllegalContainerStateError

            raise IllegalContainerStateError("There is no next signing key to promote.")
        if request.META.get("ipynbsrv.signed_with") != signing.body_digest(following.encode("utf-8")):
            raise AuthenticationError("Promoting a key needs a request signed with that key.")
        store.promote(grace)
        return Response(status=http_status.HTTP_204_NO_CONTENT)


class ContainerViewSet(HostAPIView, viewsets.ViewSet):
    """Containers: the base contract, plus suspend and snapshots where the backend has them."""

    schema_tags = ["containers"]
    lookup_url_kwarg = "container"
    lookup_value_regex = PK_PATTERN

    @document(
        operation_id="containers_list",
        summary="get_containers()",
        parameters=[s.ContainerListQuerySerializer],
        responses=_responses(s.ContainerRecordResponse(many=True)),
    )
    def list(self, request: Request) -> Response:
        query = self.query(request, s.ContainerListQuerySerializer)
        options = query.pop("options")
        return Response(self.call(self.backend.get_containers, options=options, **query))

    @document(
        operation_id="containers_create",
        summary="create_container()",
        request=s.CreateContainerSerializer,
        responses=_responses(s.ContainerRecordResponse, 404, 409, ok_status=201),
        description="create_container(); the container is started before the answer.",
    )
    def create(self, request: Request) -> Response:
        data = self.body(request, s.CreateContainerSerializer)
        options = data.pop("options")
        record = self.call(self.backend.create_container, options=options, **data)
        return _created(request, record, "container-detail", "container")

    @document(
        operation_id="containers_retrieve",
        summary="get_container()",
        parameters=[CONTAINER, OPTIONS_QUERY],
        responses=_responses(s.ContainerRecordResponse, 404),
    )
    def retrieve(self, request: Request, container: str) -> Response:
        options = self.query(request)["options"]
        return Response(self.call(self.backend.get_container, self.decoded_pk(container), options=options))

    @document(
        operation_id="containers_destroy",
        summary="delete_container()",
        parameters=[CONTAINER, OPTIONS_QUERY],
        responses=_responses(None, 404, 409, ok_status=204),
    )
    def destroy(self, request: Request, container: str) -> Response:
        options = self.query(request)["options"]
        self.call(self.backend.delete_container, self.decoded_pk(container), options=options)
        return Response(status=http_status.HTTP_204_NO_CONTENT)

    @document(
        operation_id="containers_exists",
        summary="container_exists()",
        parameters=[CONTAINER, OPTIONS_QUERY],
        responses=_responses(s.ExistsResponse),
    )
    @action(detail=True, methods=["get"])
    def exists(self, request: Request, container: str) -> Response:
        options = self.query(request)["options"]
        exists = self.call(self.backend.container_exists, self.decoded_pk(container), options=options)
        return Response({"exists": exists})

    @document(
        operation_id="containers_running",
        summary="container_is_running()",
        parameters=[CONTAINER, OPTIONS_QUERY],
        responses=_responses(s.RunningResponse, 404),
    )
    @action(detail=True, methods=["get"])
    def running(self, request: Request, container: str) -> Response:
        options = self.query(request)["options"]
        running = self.call(self.backend.container_is_running, self.decoded_pk(container), options=options)
        return Response({"running": running})

    @document(
        operation_id="containers_suspended",
        summary="container_is_suspended()",
        parameters=[CONTAINER, OPTIONS_QUERY],
        responses=_responses(s.SuspendedResponse, 404, 501),
    )
    @action(detail=True, methods=["get"])
    def suspended(self, request: Request, container: str) -> Response:
        backend = self.suspendable()
        options = self.query(request)["options"]
        suspended = self.call(backend.container_is_suspended, self.decoded_pk(container), options=options)
        return Response({"suspended": suspended})

    def _simple_action(self, request: Request, container: str, method: Callable[..., Any]) -> Response:
        options = self.body(request, s.OptionsOnlySerializer)["options"]
        self.call(method, self.decoded_pk(container), options=options)
        return Response(status=http_status.HTTP_204_NO_CONTENT)

    @document(
        operation_id="containers_start",
        summary="start_container()",
        parameters=[CONTAINER],
        request=s.OptionsOnlySerializer,
        responses=_responses(None, 404, 409, ok_status=204),
    )
    @action(detail=True, methods=["post"])
    def start(self, request: Request, container: str) -> Response:
        return self._simple_action(request, container, self.backend.start_container)

    @document(
        operation_id="containers_stop",
        summary="stop_container()",
        parameters=[CONTAINER],
        request=s.OptionsOnlySerializer,
        responses=_responses(None, 404, 409, ok_status=204),
    )
    @action(detail=True, methods=["post"])
    def stop(self, request: Request, container: str) -> Response:
        return self._simple_action(request, container, self.backend.stop_container)

    @document(
        operation_id="containers_restart",
        summary="restart_container()",
        parameters=[CONTAINER],
        request=s.OptionsOnlySerializer,
        responses=_responses(None, 404, 409, ok_status=204),
    )
    @action(detail=True, methods=["post"])
    def restart(self, request: Request, container: str) -> Response:
        return self._simple_action(request, container, self.backend.restart_container)

    @document(
        operation_id="containers_suspend",
        summary="suspend_container()",
        parameters=[CONTAINER],
        request=s.OptionsOnlySerializer,
        responses=_responses(None, 404, 409, 501, ok_status=204),
    )
    @action(detail=True, methods=["post"])
    def suspend(self, request: Request, container: str) -> Response:
        return self._simple_action(request, container, self.suspendable().suspend_container)

    @document(
        operation_id="containers_resume",
        summary="resume_container()",
        parameters=[CONTAINER],
        request=s.OptionsOnlySerializer,
        responses=_responses(None, 404, 409, 501, ok_status=204),
    )
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, container: str) -> Response:
        return self._simple_action(request, container, self.suspendable().resume_container)

    @document(
        operation_id="containers_exec",
        summary="exec_in_container()",
        parameters=[CONTAINER],
        request=s.ExecSerializer,
        responses=_responses(s.ExecResponse, 404, 409),
    )
    @action(detail=True, methods=["post"], url_path="exec", url_name="exec")
    def exec_(self, request: Request, container: str) -> Response:
        data = self.body(request, s.ExecSerializer)
        output = self.call(
            self.backend.exec_in_container, self.decoded_pk(container), data["cmd"], options=data["options"]
        )
        return Response({"output": output})

    @document(
        operation_id="containers_logs",
        summary="get_container_logs()",
        parameters=[CONTAINER, s.LogsQuerySerializer],
        responses=_responses({"type": "array", "items": {"type": "string"}}, 404),
    )
    @action(detail=True, methods=["get"])
    def logs(self, request: Request, container: str) -> Response:
        query = self.query(request, s.LogsQuerySerializer)
        options = query.pop("options")
        lines = self.call(self.backend.get_container_logs, self.decoded_pk(container), options=options, **query)
        return Response(lines)

    @document(
        methods=["GET"],
        operation_id="containers_snapshots_list",
        summary="get_containers_snapshots()",
        parameters=[CONTAINER, OPTIONS_QUERY],
        responses=_responses(s.SnapshotRecordResponse(many=True), 404, 501),
    )
    @document(
        methods=["POST"],
        operation_id="containers_snapshots_create",
        summary="create_container_snapshot()",
        parameters=[CONTAINER],
        request=s.CreateSnapshotSerializer,
        responses=_responses(s.SnapshotRecordResponse, 404, 409, 501, ok_status=201),
    )
    @action(detail=True, methods=["get", "post"])
    def snapshots(self, request: Request, container: str) -> Response:
        backend = self.snapshotable()
        if request.method == "POST":
            data = self.body(request, s.CreateSnapshotSerializer)
            record = self.call(
                backend.create_container_snapshot,
                self.decoded_pk(container),
                data["name"],
                options=data["options"],
            )
            return _created(request, record, "snapshot-detail", "snapshot")
        options = self.query(request)["options"]
        return Response(self.call(backend.get_containers_snapshots, self.decoded_pk(container), options=options))

    @document(
        operation_id="containers_snapshots_import",
        summary="import_container_snapshot() (not in the contract)",
        parameters=[CONTAINER],
        request=s.ImportSnapshotSerializer,
        responses=_responses(s.SnapshotRecordResponse, 404, 409, 501, ok_status=201),
        description="Make an image that `snapshots/{snapshot}/export/` pushed to the registry (on "
        "this node or another) the snapshot `name` of this container: pulled when the node lacks "
        "it, relabelled for this backend, and its pulled tag removed again (the registry keeps "
        "it). `image` must be in the backend's registry; without a registry, `501 not_supported`.",
    )
    @action(detail=True, methods=["post"], url_path="snapshots/import", url_name="snapshots-import")
    def import_snapshot(self, request: Request, container: str) -> Response:
        importer = self.optional_method("import_container_snapshot", "import snapshots")
        data = self.body(request, s.ImportSnapshotSerializer)
        # by name, so an option that repeats one is refused (not a TypeError)
        record = self.call(importer, container=self.decoded_pk(container), name=data["name"],
                           image=data["image"], options=data["options"])
        return _created(request, record, "snapshot-detail", "snapshot")

    @document(
        operation_id="containers_restore",
        summary="restore_container_snapshot()",
        parameters=[CONTAINER],
        request=s.RestoreSnapshotSerializer,
        responses=_responses(s.ContainerRecordResponse, 404, 409, 501),
    )
    @action(detail=True, methods=["post"])
    def restore(self, request: Request, container: str) -> Response:
        backend = self.snapshotable()
        data = self.body(request, s.RestoreSnapshotSerializer)
        record = self.call(
            backend.restore_container_snapshot,
            self.decoded_pk(container),
            data["snapshot"],
            options=data["options"],
        )
        return Response(record)


class ImageViewSet(HostAPIView, viewsets.ViewSet):
    """Images: the ones this backend made (commits), and checks for any image."""

    schema_tags = ["images"]
    lookup_url_kwarg = "image"
    lookup_value_regex = PK_PATTERN

    @document(
        operation_id="images_list",
        summary="get_container_images()",
        parameters=[OPTIONS_QUERY],
        responses=_responses(s.ImageRecordResponse(many=True)),
    )
    def list(self, request: Request) -> Response:
        options = self.query(request)["options"]
        return Response(self.call(self.backend.get_container_images, options=options))

    @document(
        operation_id="images_create",
        summary="create_container_image()",
        request=s.CreateImageSerializer,
        responses=_responses(s.ImageRecordResponse, 404, 409, ok_status=201),
        description="create_container_image(): commit a container (and push it when the "
        "backend has a registry).",
    )
    def create(self, request: Request) -> Response:
        data = self.body(request, s.CreateImageSerializer)
        record = self.call(
            self.backend.create_container_image, data["container"], data["name"], options=data["options"]
        )
        return _created(request, record, "image-detail", "image")

    @document(
        operation_id="images_pull",
        summary="pull_container_image() (not in the contract)",
        request=s.PullImageSerializer,
        responses=_responses(s.ImageRecordResponse, 404, 501),
        description="Pull an image onto this node ahead of time, where the backend can "
        "(`Docker.pull_container_image`); answers the image's record. Asked with `Accept: "
        f"{NDJSON}`, it answers 200 at once with one JSON object a line as the pull goes: "
        "`{\"progress\": {layers, layers_done, bytes_done, bytes_total, sizes_known}}` lines, then "
        "`{\"record\": ...}` or `{\"error\": {code, detail}}`. Errors found before the pull starts "
        "(authentication, the body, a backend without pulls) are the usual JSON error answers.",
    )
    @action(detail=False, methods=["post"])
    def pull(self, request: Request) -> Response | StreamingHttpResponse:
        puller = self.optional_method("pull_container_image", "pull images")
        data = self.body(request, s.PullImageSerializer)
        if request.META.get("HTTP_ACCEPT") == NDJSON:
            return _streamed_pull(puller, data["image"], data["options"])
        return Response(self.call(puller, data["image"], options=data["options"]))

    @document(
        operation_id="images_retrieve",
        summary="get_container_image()",
        parameters=[IMAGE, OPTIONS_QUERY],
        responses=_responses(s.ImageRecordResponse, 404),
    )
    def retrieve(self, request: Request, image: str) -> Response:
        options = self.query(request)["options"]
        return Response(self.call(self.backend.get_container_image, self.decoded_pk(image), options=options))

    @document(
        operation_id="images_destroy",
        summary="delete_container_image()",
        parameters=[IMAGE, OPTIONS_QUERY],
        responses=_responses(None, 404, 409, ok_status=204),
    )
    def destroy(self, request: Request, image: str) -> Response:
        options = self.query(request)["options"]
        self.call(self.backend.delete_container_image, self.decoded_pk(image), options=options)
        return Response(status=http_status.HTTP_204_NO_CONTENT)

    @document(
        operation_id="images_exists",
        summary="container_image_exists()",
        parameters=[IMAGE, OPTIONS_QUERY],
        responses=_responses(s.ExistsResponse),
    )
    @action(detail=True, methods=["get"])
    def exists(self, request: Request, image: str) -> Response:
        options = self.query(request)["options"]
        exists = self.call(self.backend.container_image_exists, self.decoded_pk(image), options=options)
        return Response({"exists": exists})


class SnapshotViewSet(HostAPIView, viewsets.ViewSet):
    """Snapshots of every container (create and restore live under the container)."""

    schema_tags = ["snapshots"]
    lookup_url_kwarg = "snapshot"
    lookup_value_regex = PK_PATTERN

    @document(
        operation_id="snapshots_list",
        summary="get_container_snapshots()",
        parameters=[OPTIONS_QUERY],
        responses=_responses(s.SnapshotRecordResponse(many=True), 501),
    )
    def list(self, request: Request) -> Response:
        backend = self.snapshotable()
        options = self.query(request)["options"]
        return Response(self.call(backend.get_container_snapshots, options=options))

    @document(
        operation_id="snapshots_retrieve",
        summary="get_container_snapshot()",
        parameters=[SNAPSHOT, OPTIONS_QUERY],
        responses=_responses(s.SnapshotRecordResponse, 404, 501),
    )
    def retrieve(self, request: Request, snapshot: str) -> Response:
        backend = self.snapshotable()
        options = self.query(request)["options"]
        return Response(self.call(backend.get_container_snapshot, self.decoded_pk(snapshot), options=options))

    @document(
        operation_id="snapshots_destroy",
        summary="delete_container_snapshot()",
        parameters=[SNAPSHOT, OPTIONS_QUERY],
        responses=_responses(None, 404, 409, 501, ok_status=204),
    )
    def destroy(self, request: Request, snapshot: str) -> Response:
        backend = self.snapshotable()
        options = self.query(request)["options"]
        self.call(backend.delete_container_snapshot, self.decoded_pk(snapshot), options=options)
        return Response(status=http_status.HTTP_204_NO_CONTENT)

    @document(
        operation_id="snapshots_exists",
        summary="container_snapshot_exists()",
        parameters=[SNAPSHOT, OPTIONS_QUERY],
        responses=_responses(s.ExistsResponse, 501),
    )
    @action(detail=True, methods=["get"])
    def exists(self, request: Request, snapshot: str) -> Response:
        backend = self.snapshotable()
        options = self.query(request)["options"]
        exists = self.call(backend.container_snapshot_exists, self.decoded_pk(snapshot), options=options)
        return Response({"exists": exists})

    @document(
        operation_id="snapshots_export",
        summary="export_container_snapshot() (not in the contract)",
        parameters=[SNAPSHOT],
        request=s.OptionsOnlySerializer,
        responses=_responses(s.ImageRecordResponse, 404, 409, 501, ok_status=201),
        description="Push a copy of the snapshot to the backend's registry as a new image of this "
        "backend (a unique reference), for `containers/{container}/snapshots/import/` on another "
        "node; answers the image's record. `DELETE images/{image}/` removes it here and from the "
        "registry. Without a registry, `501 not_supported`.",
    )
    @action(detail=True, methods=["post"])
    def export(self, request: Request, snapshot: str) -> Response:
        exporter = self.optional_method("export_container_snapshot", "export snapshots")
        options = self.body(request, s.OptionsOnlySerializer)["options"]
        record = self.call(exporter, snapshot=self.decoded_pk(snapshot), options=options)
        return _created(request, record, "image-detail", "image")


class SchemaView(HostAPIView, SpectacularAPIView):
    """The OpenAPI 3 schema of the host API, generated from these views (token required).

    YAML by default; ``?format=json`` for JSON.
    """

    renderer_classes = SpectacularAPIView.renderer_classes
    # Not part of any schema: the schema it serves lists only ``api_urlpatterns``, and the
    # project's own schema generation (drf-spectacular's ``check --deploy``) must skip it,
    # since its inherited ``get`` is annotated on the project's DEFAULT_SCHEMA_CLASS.
    schema = None  # type: ignore[assignment]  # DRF: None leaves a view out of every schema
    custom_settings = {
        "TITLE": "ipynbsrv host API",
        "DESCRIPTION": "A node's container backend over HTTP. Every operation but `health` "
        "needs `Authorization: Bearer <token>`. Pks in paths are URL-safe base64 without "
        "padding; errors are `{code, detail}`.",
        "VERSION": __version__,
        "COMPONENT_SPLIT_REQUEST": True,
    }
