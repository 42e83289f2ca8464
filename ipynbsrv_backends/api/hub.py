"""The JupyterHub endpoints of the users' API (``api/hub/``), what the hub's spawner calls
(``ipynbsrv_backends.jupyterhub``; docs/jupyterhub.md).

Signed in with a hub's token (``Authorization: Bearer TOKEN``, made by ``manage.py ipynbsrv_hub
add``), never with a user's password or session; a hub sees and acts on its own users' servers
only (404 for anything else). Neither the token nor the environment a hub gives a server is ever
part of an answer.
"""

from __future__ import annotations

import re
from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiParameter
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.decorators import action
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response

from ..models import HubCredential, HubServer, Image
from ..services import hub as hubs
from .schema import document, errors
from .serializers import StrictSerializer
from .views import UserAPIView

__all__ = ["HubTokenAuthentication", "HubImageViewSet", "HubServerViewSet"]

_PERCENT = re.compile(r"\((\d{1,3}) %\)")


class HubTokenAuthentication(BaseAuthentication):
    """``Authorization: Bearer TOKEN`` with a hub's token: the request's ``auth`` is the hub
    (its ``user`` stays anonymous: the hub is nobody's account)."""

    keyword = "bearer"

    def authenticate(self, request: Request) -> tuple[Any, HubCredential] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword.encode():
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed(_("Give the hub's token as 'Authorization: Bearer TOKEN'."))
        try:
            token = parts[1].decode()
        except UnicodeError as exc:
            raise exceptions.AuthenticationFailed(_("The hub's token is not valid.")) from exc
        hub = hubs.hub_for_token(token)
        if hub is None:
            raise exceptions.AuthenticationFailed(_("No enabled hub has this token (see manage.py ipynbsrv_hub)."))
        return AnonymousUser(), hub

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="ipynbsrv-jupyterhub"'


class HubTokenScheme(OpenApiAuthenticationExtension):
    target_class = "ipynbsrv_backends.api.hub.HubTokenAuthentication"
    name = "hubToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "description": "A hub's token (manage.py ipynbsrv_hub add)."}


class IsHub(BasePermission):
    message = _("Only a JupyterHub signed in with its token may use these endpoints.")

    def has_permission(self, request: Any, view: Any) -> bool:
        return isinstance(request.auth, HubCredential)


class HubImageSerializer(serializers.ModelSerializer):
    default = serializers.SerializerMethodField(method_name="is_default", help_text=_("The image a start that names none gets."))

    class Meta:
        model = Image
        fields = ["id", "name", "description", "default"]
        read_only_fields = fields

    def is_default(self, image: Image) -> bool:
        return image.pk == self.context.get("default_pk")


class HubServerSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="container_id", read_only=True,
                                  help_text=_("The server's id (its container's on the master)."))
    user = serializers.CharField(source="hub_user.name", read_only=True, help_text=_("The user's name in the hub."))
    server = serializers.CharField(source="server_name", read_only=True, help_text=_("'' for the default server."))
    container = serializers.CharField(source="container.name", read_only=True)
    owner = serializers.CharField(source="container.owner.get_username", read_only=True,
                                  help_text=_("The master user the hub acts for."))
    node = serializers.CharField(source="container.node.name", read_only=True)
    image = serializers.CharField(source="container.image.name", default="", read_only=True)
    status = serializers.CharField(source="container.status", read_only=True,
                                   help_text=_("creating, running, stopped, suspended, error or lost."))
    progress = serializers.CharField(source="container.progress", read_only=True)
    progress_percent = serializers.SerializerMethodField(help_text=_("How far the image's pull got, when known."))
    url = serializers.SerializerMethodField(help_text=_("http://ADDRESS:PORT where the node serves it (the hub's "
                                                         "proxy routes there); null until published."))
    base_url = serializers.CharField(source="container.base_url", read_only=True)
    last_error = serializers.CharField(source="container.last_error", read_only=True)
    error_code = serializers.CharField(source="container.error_code", read_only=True)

    def get_progress_percent(self, found: HubServer) -> int | None:
        match = _PERCENT.search(found.container.progress or "")
        return min(int(match.group(1)), 100) if match else None

    def get_url(self, found: HubServer) -> str | None:
        for port in found.container.ports or []:
            if port.get("external") and port.get("internal") == 8888:
                return f"http://{port['address']}:{port['external']}"
        for port in found.container.ports or []:
            if port.get("external"):
                return f"http://{port['address']}:{port['external']}"
        return None


class HubStartSerializer(StrictSerializer):
    user = serializers.CharField(max_length=100, help_text=_("The user's name in the hub."))
    server = serializers.CharField(max_length=255, allow_blank=True, default="",
                                   help_text=_("The server's name ('' for the default server)."))
    image = serializers.CharField(max_length=200, allow_blank=True, default="",
                                  help_text=_("An allowed image's name or id ('' for the hub's default)."))
    env = serializers.DictField(child=serializers.CharField(allow_blank=True, trim_whitespace=False), default=dict,
                                help_text=_("The hub's environment for the server: JUPYTERHUB_* and JPY_* only."))
    base_url = serializers.CharField(max_length=2048, help_text=_("The server's path on the hub, e.g. /user/alice/."))
    resume = serializers.BooleanField(default=False, help_text=_(
        "true: the hub kept the server's previous API token (its spawner's will_resume): a suspended or "
        "stopped server is brought back with its own token, which the answer's `api_token` gives back."))


class HubStartAnswerSerializer(HubServerSerializer):
    api_token = serializers.CharField(read_only=True, required=False, help_text=_(
        "Only in this answer, only when a server was brought back with an API token other than the one "
        "sent: the token it has, which the hub uses again (its own token, returned to it alone)."))


class HubStopSerializer(StrictSerializer):
    suspend = serializers.BooleanField(default=True, help_text=_(
        "true: pause it (memory and kernels kept; the next start resumes it); false: stop it."))


USER_QUERY = OpenApiParameter("user", str, OpenApiParameter.QUERY, required=False,
                              description="Only this hub user's servers.")
REFRESH_QUERY = OpenApiParameter("refresh", bool, OpenApiParameter.QUERY, required=False,
                                 description="true: read its state from its node first (a vanished one is `lost`).")


class HubAPIView(UserAPIView):
    authentication_classes = [HubTokenAuthentication]
    permission_classes = [IsHub]

    @property
    def hub(self) -> HubCredential:
        return self.request.auth  # type: ignore[return-value]  # IsHub checked it


class HubImageViewSet(HubAPIView, mixins.ListModelMixin, viewsets.GenericViewSet):
    """The images the hub's users may choose."""

    serializer_class = HubImageSerializer
    pagination_class = None  # type: ignore[assignment]  # a short list: no pages
    schema_tags = ["jupyterhub"]

    def get_queryset(self) -> QuerySet[Image]:
        if self.fake:
            return Image.objects.none()
        return hubs.allowed_images(self.hub)

    def get_serializer_context(self) -> dict[str, Any]:
        default = None if self.fake else hubs.default_image(self.hub)
        return {**super().get_serializer_context(), "default_pk": getattr(default, "pk", None)}

    @document(summary=_("The images this hub's users may choose"),
              responses={200: HubImageSerializer(many=True), **errors()})
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)


class HubServerViewSet(HubAPIView, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """The hub's users' servers: create or resume, poll, stop or suspend, delete."""

    serializer_class = HubServerSerializer
    schema_tags = ["jupyterhub"]
    lookup_field = "container_id"
    lookup_url_kwarg = "pk"

    def get_queryset(self) -> QuerySet[HubServer]:
        if self.fake:
            return HubServer.objects.none()
        queryset = hubs.hub_servers(self.hub).order_by("container_id")
        user = self.request.query_params.get("user")
        if self.action == "list" and user is not None:
            queryset = queryset.filter(hub_user__name=user)
        return queryset

    def answer_server(self, found: HubServer, code: int = status.HTTP_200_OK) -> Response:
        found.container.refresh_from_db()
        return Response(HubServerSerializer(found, context=self.get_serializer_context()).data, status=code)

    @document(summary=_("The hub's servers"), parameters=[USER_QUERY],
              responses={200: HubServerSerializer(many=True), **errors(400)})
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @document(summary=_("One server of the hub's"), parameters=[REFRESH_QUERY],
              responses={200: HubServerSerializer, **errors(404, 503, 504)})
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        found = self.get_object()
        if request.query_params.get("refresh", "").lower() in ("true", "1", "yes"):
            hubs.poll_server(found)
        return self.answer_server(found)

    @document(
        summary=_("Start a user's server: create it, or bring back the one they have"),
        description=_("The master user is made on first use, in the hub's group. A suspended server is resumed "
                      "and a stopped one started (200) when the environment and image are the same; otherwise "
                      "it is made anew from the image (202: poll it until `running`, or `error` with "
                      "`last_error`). Quotas and placement apply: 429 `quota_exceeded`, 503 "
                      "`no_node_available`, with the reason in `detail`."),
        request=HubStartSerializer,
        responses={200: HubStartAnswerSerializer, 202: HubServerSerializer, **errors(400, 409, 429, 503, 504)},
    )
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        data = self.body(HubStartSerializer)
        found = hubs.start_server(self.hub, data["user"], data["server"], image=data["image"], env=data["env"],
                                  base_url=data["base_url"], resume=data["resume"])
        found.container.refresh_from_db()
        code = status.HTTP_202_ACCEPTED if found.container.status == "creating" else status.HTTP_200_OK
        answer = dict(HubServerSerializer(found, context=self.get_serializer_context()).data)
        token = hubs.kept_token(found, data["env"])
        if token is not None:
            answer["api_token"] = token
        return Response(answer, status=code)

    @document(summary=_("Stop or suspend a server"), request=HubStopSerializer,
              responses={200: HubServerSerializer, **errors(400, 404, 409, 503, 504)})
    @action(detail=True, methods=["post"])
    def stop(self, request: Request, pk: str | None = None) -> Response:
        data = self.body(HubStopSerializer)
        return self.answer_server(hubs.stop_server(self.get_object(), suspend=data["suspend"]))

    @document(summary=_("Delete a server (its container; named volumes are kept)"),
              responses={204: None, **errors(404, 409, 503, 504)})
    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        hubs.delete_server(self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)
