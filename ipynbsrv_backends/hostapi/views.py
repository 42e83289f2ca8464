"""The host API views: the node's local backend, method by method, over HTTP.

The views are generated from the route table (:data:`ipynbsrv_backends.wire.routes.ROUTES`):
one view per path (:func:`route_view`), whose handler for each HTTP method is :func:`serve`
(a backend method) or one of the node's own (:data:`HANDLERS`), documented by
:func:`.schema.operation`.

Every route but ``health/`` needs the node's token (:mod:`.auth`); the backend is looked up
only inside a handler, so a refused request never touches it. Pks travel in URL paths
encoded (:mod:`ipynbsrv_backends.wire.format`), and raw inside JSON bodies. A method's
backend-specific options (the contract's ``**kwargs``) travel as one JSON object named
``options``: in the body of a POST, in the query string of a GET or DELETE. Errors are
answered by :func:`.exceptions.hostapi_exception_handler` as ``{"code", "detail"}``.
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
from drf_spectacular.views import SpectacularAPIView
from rest_framework import status as http_status
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import Serializer
from rest_framework.views import APIView

from .. import __version__
from .. import contract as contract_module
from ..conf import app_settings
from ..contract import (
    BACKEND_STATUS_ERROR,
    BACKEND_STATUS_OK,
    CAPABILITIES,
    CONTAINER_STATUS_STOPPED,
    ContainerBackend,
)
from ..errors import (
    AuthenticationError,
    BackendError,
    CapabilityNotSupportedError,
    IllegalContainerStateError,
    InvalidArgumentError,
)
from ..parsers import SafeJSONParser
from ..wire import signing
from ..wire.format import OPTIONS_PARAM, decode_pk, encode_pk
from ..wire.routes import BASE, ROUTES, SNAPSHOT, SUSPEND, Route
from . import serializers as s
from .auth import HostAPITokenAuthentication, IsHostAPIClient, PayloadTooLarge, get_keystore
from .exceptions import hostapi_exception_handler
from .node import describe_backend, get_backend
from .resources import node_resources
from .schema import HostAPISchema, document, operation, query_serializer, request_serializer, tag

logger = logging.getLogger(__name__)

__all__ = ["HostAPIView", "RouteView", "SchemaView", "VIEWS", "HANDLERS", "route_view", "serve"]

if TYPE_CHECKING:  # a mixin for APIView subclasses; typed as one
    _ViewBase = APIView
else:
    _ViewBase = object


#: Option names that would collide with the bound backend method itself.
_RESERVED_OPTION_NAMES = frozenset({"self", "cls"})

#: Accept headers answered with JSON without running DRF's content negotiation.
_PLAIN_JSON_ACCEPT = frozenset({"application/json", "*/*"})
#: What a backend without a route's sub-contract cannot do, when the route does not say.
_CANNOT = {SUSPEND: "suspend containers", SNAPSHOT: "snapshot containers"}
#: The sub-contracts whose methods this node serves through routes of the table, by their names
#: in ``contract.CAPABILITIES`` (in its order: ``suspend`` and ``snapshot`` first, as ever):
#: ``status/`` lists those its backend claims.
SERVED_CAPABILITIES = tuple(
    (name, contract) for name, contract in CAPABILITIES.items()
    if any(route.contract == contract.__name__ for route in ROUTES)
)
#: Set when this process begins a graceful stop (SIGTERM, see :mod:`.cli`): an open event
#: stream then ends at its next line (within a heartbeat), instead of holding the stop for
#: the whole graceful timeout; the client goes on from its cursor at the restarted node.
STOPPING = threading.Event()
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
    #: The routes this view answers, by HTTP method (see :func:`route_view`).
    routes: dict[str, Route] = {}

    def get_exception_handler(self) -> Callable[..., Response]:
        return hostapi_exception_handler

    def perform_content_negotiation(self, request: Request, force: bool = False) -> tuple[Any, str]:
        # JSON is all these views speak: what HttpRemote asks for needs no Accept parsing
        # (anything else still goes through DRF's negotiation, and may be a 406).
        renderers = self.get_renderers()
        accept = request.META.get("HTTP_ACCEPT", "*/*")
        route = self.routes.get(request.method or "")
        streams = accept == NDJSON and route is not None and route.streams  # errors before it: JSON
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

    def capable(self, route: Route) -> Callable[..., Any] | None:
        """The method of a route outside the base contract, or ``501 not_supported`` when the
        node's backend does not claim the route's sub-contract; ``None`` for a base contract route."""
        assert route.serves is not None and route.contract is not None
        if route.contract == BASE:
            return None
        backend = self.backend
        if not isinstance(backend, getattr(contract_module, route.contract)):
            what = route.capability or _CANNOT[route.contract]
            raise CapabilityNotSupportedError(f"The backend of this node ({describe_backend()}) cannot {what}.")
        return getattr(backend, route.serves)

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


class RouteView(HostAPIView, APIView):
    """A view of one path of the route table (:func:`route_view` makes one per path)."""


# --------------------------------------------------------------------------- handlers


def serve(view: HostAPIView, request: Request, route: Route, **segments: str) -> Response | StreamingHttpResponse:
    """A backend method's route: a backend without the method's sub-contract is refused
    first; then the body (POST) or query is checked, the pks of the path decoded, and the
    method called with the route's arguments in order, the query's by name, and the options."""
    assert route.serves is not None
    method = view.capable(route)
    if route.http == "POST":
        data = view.body(request, request_serializer(route))
    else:
        data = view.query(request, query_serializer(route))
    options = data.pop(OPTIONS_PARAM)
    args = [view.decoded_pk(segments[arg]) if arg in segments else data.pop(arg) for arg in route.args]
    method = method or getattr(view.backend, route.serves)
    if route.streams and request.META.get("HTTP_ACCEPT") == NDJSON:
        return _streamed_pull(method, args[0], options)
    result = view.call(method, *args, options=options, **data)
    if route.answer == "none":
        return Response(status=http_status.HTTP_204_NO_CONTENT)
    if route.member:
        result = {route.member: result}
    headers = _location(request, route, result) if route.status == http_status.HTTP_201_CREATED else None
    return Response(result, status=route.status, headers=headers)


def _location(request: Request, route: Route, record: Any) -> dict[str, str]:
    """The ``Location`` of a record just made, when it has a pk."""
    pk = record.get("pk") if isinstance(record, dict) else None
    if not isinstance(pk, str) or route.record is None:
        return {}
    namespace = request.resolver_match.namespace if request.resolver_match else ""
    name = f"{route.record}-detail"
    try:
        return {"Location": reverse(f"{namespace}:{name}" if namespace else name, kwargs={route.record: encode_pk(pk)})}
    except NoReverseMatch:
        return {}


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


def events(view: HostAPIView, request: Request, route: Route) -> StreamingHttpResponse:
    """The engine's events as JSON lines: each event, a heartbeat line when the backend says the
    stream is alive but quiet, then ``end`` (or the error that broke it). The stream is bounded
    by its ``timeout`` (checked by the backend before the answer starts)."""
    method = view.capable(route)
    assert method is not None
    data = view.query(request, query_serializer(route))
    options = data.pop(OPTIONS_PARAM)
    stream = view.call(method, options=options, **data)

    def lines() -> Any:
        try:
            for item in stream:
                line = {"heartbeat": item} if isinstance(item, str) else {"event": item}
                yield (json.dumps(line, allow_nan=False) + "\n").encode("utf-8")
                if STOPPING.is_set():
                    break
            yield b'{"end": true}\n'
        except BackendError as exc:
            yield (json.dumps({"error": exc.as_dict()}) + "\n").encode("utf-8")
        except Exception:
            logger.exception("Unexpected error in an event stream")
            error = BackendError("Unexpected error on the node; see the node's log.").as_dict()
            yield (json.dumps({"error": error}) + "\n").encode("utf-8")
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()  # the client left: the engine's request ends too

    response = StreamingHttpResponse(lines(), content_type=NDJSON)
    response["Cache-Control"] = "no-store"
    response["X-Accel-Buffering"] = "no"
    return response


def health(view: HostAPIView, request: Request, route: Route) -> Response:
    """Bare liveness: touches neither the backend nor the engine."""
    return Response({"status": "ok"})


def node_status(view: HostAPIView, request: Request, route: Route) -> Response:
    """The backend's status and what the node has to offer, for placement."""
    view.query(request)
    backend = view.backend
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
    capabilities = [name for name, contract in SERVED_CAPABILITIES if isinstance(backend, contract)]
    resources = dict(node_resources())
    resources["containers"] = {"running": running, "total": total}
    measured = getattr(backend, "volume_usage", None)  # Docker with volume_usage_every: the last measurement
    usage = measured() if callable(measured) and backend_status == BACKEND_STATUS_OK else None
    if isinstance(usage, dict):
        resources["volume_usage"] = usage
    return Response({"backend": {"status": backend_status, "capabilities": capabilities}, "resources": resources})


def _keystore() -> Any:
    """The node's signing keys, where a rotation can be kept (docs/security.md)."""
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


def next_key(view: HostAPIView, request: Request, route: Route) -> Response:
    """Rotation, step 1: install the key that will replace the current one; both are accepted."""
    store = _keystore()
    key = view.body(request, request_serializer(route))["key"]
    if not signing.valid_key(key):
        raise InvalidArgumentError("The key must be 32 to 256 printable characters without spaces.")
    store.install_next(key)
    return Response(status=http_status.HTTP_204_NO_CONTENT)


def promote_key(view: HostAPIView, request: Request, route: Route) -> Response:
    """Rotation, step 2: the next key becomes current; the replaced one is accepted for a grace period."""
    store = _keystore()
    grace = view.body(request, request_serializer(route)).get("grace")
    if grace is None:
        grace = int(app_settings.HOSTAPI_KEY_GRACE)
    following = store.next_key()
    if following is None:
        raise IllegalContainerStateError("There is no next signing key to promote.")
    if request.META.get("ipynbsrv.signed_with") != signing.body_digest(following.encode("utf-8")):
        raise AuthenticationError("Promoting a key needs a request signed with that key.")
    store.promote(grace)
    return Response(status=http_status.HTTP_204_NO_CONTENT)


#: The node's own routes' handlers, by route name; every other route is :func:`serve`.
HANDLERS: dict[str, Callable[..., Response | StreamingHttpResponse]] = {
    "health": health,
    "get_node_status": node_status,
    "get_container_events": events,
    "install_next_signing_key": next_key,
    "promote_signing_key": promote_key,
}


# --------------------------------------------------------------------------- the views


def _endpoint(route: Route) -> Callable[..., Any]:
    """The view method (``get``, ``post``, ``delete``) that answers ``route``, documented."""
    handler = HANDLERS.get(route.name, serve)

    def endpoint(self: HostAPIView, request: Request, **segments: str) -> Any:
        return handler(self, request, route, **segments)

    endpoint.__name__ = endpoint.__qualname__ = route.http.lower()
    endpoint.__doc__ = route.title
    return document(**operation(route))(endpoint)


def route_view(path: str, routes: list[Route]) -> type[RouteView]:
    """The view of one path: a method for each of its routes."""
    words = [part.title() for part in path.split("/") if part and not part.startswith("{")]
    name = "".join(words) + ("Detail" if path.rstrip("/").endswith("}") else "") + "View"
    attrs: dict[str, Any] = {
        "__doc__": "; ".join(f"{r.http} {r.title}" for r in routes),
        "__module__": __name__,
        "routes": {r.http: r for r in routes},
        "schema_tags": [tag(path)],
        **{r.http.lower(): _endpoint(r) for r in routes},
    }
    if not any(r.auth for r in routes):
        attrs.update(authentication_classes=[], permission_classes=[])
    return type(name, (RouteView,), attrs)


def _views() -> dict[str, type[RouteView]]:
    paths: dict[str, list[Route]] = {}
    for r in ROUTES:
        if r.answer != "schema":  # served by SchemaView
            paths.setdefault(r.path, []).append(r)
    return {path: route_view(path, routes) for path, routes in paths.items()}


#: The view of every path of the route table but ``schema/``, by path.
VIEWS: dict[str, type[RouteView]] = _views()


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
