"""The users' REST API: containers, snapshots and images of the signed-in user (all of them
for staff), and the nodes for staff.

Every action calls :mod:`ipynbsrv_backends.services`, so the API follows the same rules
as the admin and the commands. Authentication (HTTP Basic without the browser's password
dialog, then the Django session), the refusal of cross-site requests (see
:mod:`.crosssite`), permissions, the exception handler and the schema generator are set
here, on the API's own views; the project's global ``REST_FRAMEWORK`` settings are neither
needed nor changed. Other users' things are answered with 404, as if they did not exist.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.db.models import QuerySet
from django.db.models.functions import Coalesce
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import OpenApiParameter
from drf_spectacular.views import SpectacularAPIView
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.authentication import SessionAuthentication
from rest_framework.decorators import action
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from .. import __version__, audit, background, services
from ..errors import ContainerNotFoundError
from ..models import Container, Image, Node, Snapshot, containers_in_use, with_move_target
from ..parsers import SafeJSONParser
from . import serializers as s
from .crosssite import BasicNoPrompt, refuse_cross_site
from .exceptions import api_exception_handler
from .pagination import ListPagination
from .permissions import OwnerOrStaff, StaffOnly
from .schema import UserAPISchema, document, errors

logger = logging.getLogger(__name__)

__all__ = ["UserAPIView", "ContainerViewSet", "SnapshotViewSet", "ImageViewSet", "QuotaView", "NodeViewSet",
           "SchemaView"]


if TYPE_CHECKING:  # a mixin for the generic views; typed as one
    from rest_framework.generics import GenericAPIView

    _ViewBase = GenericAPIView
else:
    _ViewBase = object


class UserAPIView(_ViewBase):
    """What every view of the users' API shares, set on the views themselves."""

    authentication_classes = [BasicNoPrompt, SessionAuthentication]
    permission_classes = [OwnerOrStaff]
    renderer_classes = [JSONRenderer]
    parser_classes = [SafeJSONParser]
    pagination_class = ListPagination  # every list: by id, a cursor, docs/api.md "Lists"
    filter_backends: list[Any] = []
    schema = UserAPISchema()
    schema_tags: list[str] = []

    def get_exception_handler(self) -> Callable[..., Response | None]:
        return api_exception_handler

    # The service layer runs its own transactions: a container's record must be committed
    # before its node is asked to create it, whatever ATOMIC_REQUESTS says.
    @transaction.non_atomic_requests
    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        return super().dispatch(request, *args, **kwargs)

    @classmethod
    def as_view(cls, *args: Any, **kwargs: Any) -> Any:
        """Every view of the users' API runs in the audit context (the request's user, via
        ``api``): the same :func:`audit.entry_point` as the admin's and the commands'."""
        return audit.entry_point(audit.VIA_API)(super().as_view(*args, **kwargs))

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        # Before authentication: a request another site's page may have sent (with
        # credentials the browser remembered) is refused before it can act or probe.
        refuse_cross_site(request)
        super().initial(request, *args, **kwargs)

    @property
    def fake(self) -> bool:
        """True while drf-spectacular inspects the view (there is no real user then)."""
        return bool(getattr(self, "swagger_fake_view", False))

    def body(self, serializer_class: type[serializers.Serializer], **context: Any) -> dict[str, Any]:
        serializer = serializer_class(data=self.request.data,
                                      context={**self.get_serializer_context(), **context})
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)

    def answer(self, serializer_class: type[serializers.Serializer], obj: Any, *,
               created: str | None = None, accepted: bool = False) -> Response:
        """``obj`` serialized; with ``created`` (the route's basename), 201 and its Location
        (202 with ``accepted``: it is still being made)."""
        data = serializer_class(obj, context=self.get_serializer_context()).data
        if created is None:
            return Response(data)
        request = self.request
        namespace = request.resolver_match.namespace if request.resolver_match else ""
        name = f"{namespace}:{created}-detail" if namespace else f"{created}-detail"
        location = reverse(name, kwargs={"pk": obj.pk}, request=request)
        code = status.HTTP_202_ACCEPTED if accepted else status.HTTP_201_CREATED
        return Response(data, status=code, headers={"Location": location})


CONTAINER_ERRORS = (404, 409, 501, 503, 504)
#: The actions a quota guards may also answer 429 quota_exceeded.
QUOTA_ERRORS = (*CONTAINER_ERRORS, 429)

WAIT_QUERY = OpenApiParameter(
    "wait", bool, OpenApiParameter.QUERY, required=False,
    description="true: answer only once the container runs (201), or with the error that stopped it, as "
                "before creations ran in the background. Without it: 202 at once, with the record "
                "(status `creating`) and a Location to poll.")
_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


def wait_requested(request: Request) -> bool:
    """``?wait=true``: create in the request and answer 201 (else 202 and the background)."""
    value = request.query_params.get("wait")
    if value is None or value.lower() in _FALSE:
        return False
    if value.lower() in _TRUE:
        return True
    raise serializers.ValidationError({"wait": [_("Use wait=true or wait=false.")]})


class ContainerViewSet(UserAPIView, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Your containers (staff: everyone's) and every step of their life."""

    serializer_class = s.ContainerSerializer
    schema_tags = ["containers"]

    def get_queryset(self) -> QuerySet[Container]:
        if self.fake:
            return Container.objects.none()
        return with_move_target(services.user_containers(self.request.user).select_related("node__backend"))

    @document(summary=_("Your containers (staff: all)"), responses={200: s.ContainerSerializer(many=True), **errors(400)})
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @document(summary=_("One container"), responses={200: s.ContainerSerializer, **errors(404)})
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().retrieve(request, *args, **kwargs)

    @document(
        summary=_("Create and start a container"),
        description=_("From an image you may use, or as a clone of one of your containers. The node is "
                      "chosen by placement; staff may name `node` and `owner`. Answers 202 at once with the "
                      "record (status `creating`, its `progress`) and a Location to poll: it becomes `running`, "
                      "or `error` with `last_error` and `error_code` saying why. Refusals found before anything "
                      "is recorded (the body, no node, the quota, a name taken) are answered at once. "
                      "With `?wait=true`: 201 once it runs, or the error."),
        parameters=[WAIT_QUERY],
        request=s.ContainerCreateSerializer,
        responses={201: s.ContainerSerializer, 202: s.ContainerSerializer, **errors(400, 409, 429, 503, 504)},
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        wait = wait_requested(request)
        data = self.body(s.ContainerCreateSerializer)
        owner = data.get("owner", request.user)
        override = data.get("allow_draining", False)
        if not wait:
            container = services.start_creating(owner, data["name"], submit=background.submit,
                                                image=data.get("image"), clone_of=data.get("clone_of"),
                                                node=data.get("node"), allow_draining=override)
            return self.answer(s.ContainerSerializer, container, created="container", accepted=True)
        if "clone_of" in data:
            container = services.clone_container(data["clone_of"], owner, data["name"], allow_draining=override)
        else:
            container = services.create_container(owner, data["name"], image=data["image"], node=data.get("node"),
                                                  allow_draining=override)
        return self.answer(s.ContainerSerializer, container, created="container")

    @document(summary=_("Delete the container"),
              description=_("Removes it from its node, then its record. Its snapshots go with it."),
              responses={204: None, **errors(404, 409, 503, 504)})
    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        services.delete_container(self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _step(self, step: Callable[[Container], Container]) -> Response:
        return self.answer(s.ContainerSerializer, step(self.get_object()))

    @document(summary=_("Start the container"), request=None,
              responses={200: s.ContainerSerializer, **errors(*QUOTA_ERRORS)})
    @action(detail=True, methods=["post"])
    def start(self, request: Request, pk: str | None = None) -> Response:
        return self._step(services.start_container)

    @document(summary=_("Stop the container"), request=None,
              responses={200: s.ContainerSerializer, **errors(*CONTAINER_ERRORS)})
    @action(detail=True, methods=["post"])
    def stop(self, request: Request, pk: str | None = None) -> Response:
        return self._step(services.stop_container)

    @document(summary=_("Restart the container"), request=None,
              responses={200: s.ContainerSerializer, **errors(*QUOTA_ERRORS)})
    @action(detail=True, methods=["post"])
    def restart(self, request: Request, pk: str | None = None) -> Response:
        return self._step(services.restart_container)

    @document(summary=_("Suspend the container (freeze its processes)"), request=None,
              responses={200: s.ContainerSerializer, **errors(*CONTAINER_ERRORS)})
    @action(detail=True, methods=["post"])
    def suspend(self, request: Request, pk: str | None = None) -> Response:
        return self._step(services.suspend_container)

    @document(summary=_("Resume a suspended container"), request=None,
              responses={200: s.ContainerSerializer, **errors(*QUOTA_ERRORS)})
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str | None = None) -> Response:
        return self._step(services.resume_container)

    @document(summary=_("Read the container's state from its node"), request=None,
              description=_("A container its node no longer has comes back with status `lost`."),
              responses={200: s.ContainerSerializer, **errors(404, 503, 504)})
    @action(detail=True, methods=["post"])
    def refresh(self, request: Request, pk: str | None = None) -> Response:
        container = self.get_object()
        try:
            services.refresh_container(container)
        except ContainerNotFoundError:
            container.refresh_from_db()  # marked lost by the service
        return self.answer(s.ContainerSerializer, container)

    @document(summary=_("Take a snapshot of the container's filesystem"), request=s.SnapshotCreateSerializer,
              responses={201: s.SnapshotSerializer, **errors(400, *QUOTA_ERRORS)})
    @action(detail=True, methods=["post"])
    def snapshot(self, request: Request, pk: str | None = None) -> Response:
        container = self.get_object()
        data = self.body(s.SnapshotCreateSerializer)
        snapshot = services.create_snapshot(container, data["name"], data["description"])
        return self.answer(s.SnapshotSerializer, snapshot, created="snapshot")

    @document(summary=_("Restore one of the container's snapshots"), request=s.RestoreSerializer,
              responses={200: s.ContainerSerializer, **errors(400, *CONTAINER_ERRORS)})
    @action(detail=True, methods=["post"])
    def restore(self, request: Request, pk: str | None = None) -> Response:
        container = self.get_object()
        data = self.body(s.RestoreSerializer, container=container)
        return self.answer(s.ContainerSerializer, services.restore_snapshot(container, data["snapshot"]))

    @document(summary=_("Commit the container to an image"),
              description=_("The image is yours; with `public` everyone may start containers from it."),
              request=s.CommitSerializer, responses={201: s.ImageSerializer, **errors(400, *QUOTA_ERRORS)})
    @action(detail=True, methods=["post"])
    def commit(self, request: Request, pk: str | None = None) -> Response:
        container = self.get_object()
        data = self.body(s.CommitSerializer)
        image = services.commit_container(container, data["name"], public=data["public"],
                                          description=data["description"])
        return self.answer(s.ImageSerializer, image, created="image")

    @document(summary=_("A new container of yours from this one's current filesystem"),
              description=_("The clone is made on the same node. Like creating one: 202 at once and a "
                            "Location to poll, or with `?wait=true` 201 once it runs."),
              parameters=[WAIT_QUERY], request=s.CloneSerializer,
              responses={201: s.ContainerSerializer, 202: s.ContainerSerializer,
                         **errors(400, 429, *CONTAINER_ERRORS)})
    @action(detail=True, methods=["post"])
    def clone(self, request: Request, pk: str | None = None) -> Response:
        wait = wait_requested(request)
        source = self.get_object()
        data = self.body(s.CloneSerializer)
        override = data.get("allow_draining", False)
        if not wait:
            container = services.start_creating(request.user, data["name"], submit=background.submit,
                                                clone_of=source, allow_draining=override)
            return self.answer(s.ContainerSerializer, container, created="container", accepted=True)
        container = services.clone_container(source, request.user, data["name"], allow_draining=override)
        return self.answer(s.ContainerSerializer, container, created="container")


CONTAINER_QUERY = OpenApiParameter("container", int, OpenApiParameter.QUERY, required=False,
                                   description="Only the snapshots of this container.")


class SnapshotViewSet(UserAPIView, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Snapshots of your containers (staff: of all). Take one with ``containers/{id}/snapshot/``."""

    serializer_class = s.SnapshotSerializer
    schema_tags = ["snapshots"]

    def get_queryset(self) -> QuerySet[Snapshot]:
        if self.fake:
            return Snapshot.objects.none()
        queryset = Snapshot.objects.select_related("container__node__backend", "container__owner")
        if not self.request.user.is_staff:
            queryset = queryset.filter(container__owner=self.request.user)  # type: ignore[misc]  # signed in
        return queryset

    def filter_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        container = self.request.query_params.get("container")
        if self.action == "list" and container is not None:
            if not container.isdigit():
                raise serializers.ValidationError({"container": [_("Give a container id (a whole number).")]})
            queryset = queryset.filter(container_id=int(container))
        return queryset

    @document(summary=_("Your snapshots (staff: all)"), parameters=[CONTAINER_QUERY],
              responses={200: s.SnapshotSerializer(many=True), **errors(400)})
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @document(summary=_("One snapshot"), responses={200: s.SnapshotSerializer, **errors(404)})
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().retrieve(request, *args, **kwargs)

    @document(summary=_("Delete the snapshot"), responses={204: None, **errors(404, 501, 503, 504)})
    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        services.delete_snapshot(self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @document(summary=_("Restore the snapshot into its container"), request=None,
              responses={200: s.ContainerSerializer, **errors(*CONTAINER_ERRORS)})
    @action(detail=True, methods=["post"])
    def restore(self, request: Request, pk: str | None = None) -> Response:
        snapshot = self.get_object()
        container = services.restore_snapshot(snapshot.container, snapshot)
        return self.answer(s.ContainerSerializer, container)


class ImageViewSet(UserAPIView, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """The images you may start containers from: base images, public ones and your own."""

    serializer_class = s.ImageSerializer
    schema_tags = ["images"]

    def get_queryset(self) -> QuerySet[Image]:
        if self.fake:
            return Image.objects.none()
        return services.usable_images(self.request.user).select_related("owner", "node")

    @document(summary=_("Images you may use"), responses={200: s.ImageSerializer(many=True), **errors(400)})
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @document(summary=_("One image"), responses={200: s.ImageSerializer, **errors(404)})
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().retrieve(request, *args, **kwargs)

    @document(summary=_("Delete an image you committed"),
              description=_("Removes it from the node(s) that hold it. Others' public images and base images "
                            "answer 403 (staff may delete any)."),
              responses={204: None, **errors(404, 409, 503, 504)})
    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        services.delete_image(self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class QuotaView(UserAPIView, APIView):
    """Your quota: each limit and how much of it you use (docs/operations.md, "Quotas"). One
    object, not a list: no pagination."""

    serializer_class = s.QuotaSerializer
    schema_tags = ["quota"]

    @document(summary=_("Your limits and usage"),
              description=_("`limits`: the most you may have (`null`: no limit); `usage`: what you have now, "
                            "operations under way included. An action that would pass a limit answers 429 "
                            "`quota_exceeded`, naming the limit and by how much."),
              responses={200: s.QuotaSerializer, **errors()})
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return Response(s.QuotaSerializer(services.quota_report(request.user)).data)


class NodeViewSet(UserAPIView, viewsets.ReadOnlyModelViewSet):
    """The nodes and their health, for staff. Backend configurations are never shown."""

    serializer_class = s.NodeSerializer
    permission_classes = [StaffOnly]
    schema_tags = ["nodes"]

    def get_queryset(self) -> QuerySet[Node]:
        return Node.objects.select_related("backend").annotate(containers_in_use=Coalesce(containers_in_use(), 0))

    @document(summary=_("Every node (staff only)"), responses={200: s.NodeSerializer(many=True), **errors(400)})
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @document(summary=_("One node (staff only)"), responses={200: s.NodeSerializer, **errors(404)})
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().retrieve(request, *args, **kwargs)


def only_user_api(endpoints: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """drf-spectacular preprocessing hook: keep the users' API, wherever it is mounted."""
    return [
        endpoint for endpoint in endpoints
        if isinstance(getattr(endpoint[3], "cls", None), type) and issubclass(endpoint[3].cls, UserAPIView)
    ]


class SchemaView(SpectacularAPIView):
    """The OpenAPI 3 schema of the users' API, generated from the views above.

    YAML by default, ``?format=json`` for JSON. Readable without signing in: it holds
    nothing but the API's shape.
    """

    authentication_classes = [BasicNoPrompt, SessionAuthentication]
    permission_classes = [AllowAny]
    schema = None  # not part of the schema it serves
    custom_settings = {
        "TITLE": "ipynbsrv API",
        "DESCRIPTION": "Your containers, their snapshots and the images you may use; the nodes for staff. "
        "Sign in with HTTP Basic, sent with each request (a 401 does not ask for it), or a Django session "
        "(unsafe methods then need the CSRF token). Unsafe requests whose Origin or Referer is another "
        "site's are refused (403 `cross_site_request`); their bodies must be JSON (else 415). "
        "Errors are `{code, detail}`; a bad body's answer adds `fields`. Every list answers one page, "
        "`{next, previous, results}`, by id: follow `next` (50 items, `?page_size=` 1 to 500).",
        "VERSION": __version__,
        "COMPONENT_SPLIT_REQUEST": True,
        "PREPROCESSING_HOOKS": [f"{__name__}.only_user_api"],
    }
