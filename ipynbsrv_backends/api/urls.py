"""The users' API URLs. Include them in a project with::

    path("api/", include("ipynbsrv_backends.api.urls"))

Below the include prefix (``{id}`` is a whole number)::

    GET    containers/                   your containers (staff: all)
    POST   containers/                   create one: {name, image | clone_of}
    GET    containers/{id}/              one container
    DELETE containers/{id}/              delete it
    POST   containers/{id}/start/        also stop/, restart/, suspend/, resume/, refresh/
    POST   containers/{id}/snapshot/     {name, description?}
    POST   containers/{id}/restore/      {snapshot}
    POST   containers/{id}/commit/       {name, public?, description?}
    POST   containers/{id}/clone/        {name}
    GET    snapshots/?container=         your snapshots
    GET    snapshots/{id}/               one snapshot
    DELETE snapshots/{id}/               delete it
    POST   snapshots/{id}/restore/       restore it into its container
    GET    images/                       the images you may use
    GET    images/{id}/                  one image
    DELETE images/{id}/                  delete an image you committed
    GET    quota/                        your limits and usage
    GET    nodes/                        the nodes (staff only)
    GET    nodes/{id}/                   one node (staff only)
    GET    events/                       your containers' events, live (server-sent events)
    GET    schema/                       the OpenAPI schema (?format=json)

For a JupyterHub's spawner, signed in with the hub's token (docs/jupyterhub.md)::

    GET    hub/images/                   the images the hub's users may choose
    GET    hub/servers/?user=            the hub's servers
    POST   hub/servers/                  start one: {user, server, image?, env, base_url}
    GET    hub/servers/{id}/?refresh=    one server (poll it)
    POST   hub/servers/{id}/stop/        {suspend}
    DELETE hub/servers/{id}/             delete it

See ``docs/api.md``.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse
from django.urls import path, re_path
from django.views.decorators.csrf import csrf_exempt
from rest_framework.routers import SimpleRouter

from . import hub, views
from .events import EventStreamView

app_name = "ipynbsrv_api"

router = SimpleRouter(trailing_slash=True)
router.register("containers", views.ContainerViewSet, basename="container")
router.register("snapshots", views.SnapshotViewSet, basename="snapshot")
router.register("images", views.ImageViewSet, basename="image")
router.register("nodes", views.NodeViewSet, basename="node")
router.register("hub/images", hub.HubImageViewSet, basename="hub-image")
router.register("hub/servers", hub.HubServerViewSet, basename="hub-server")



@csrf_exempt  # it changes nothing, and a POST must get the same JSON 404
def not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    """Any other path below the API (such as ``containers/1.5/``) is a JSON 404 like the
    API's own, never the project's HTML page."""
    return JsonResponse({"code": "not_found", "detail": "Not found."}, status=404)


urlpatterns = [
    *router.urls,
    path("events/", EventStreamView.as_view(), name="events"),
    path("quota/", views.QuotaView.as_view(), name="quota"),
    path("schema/", views.SchemaView.as_view(), name="schema"),
    re_path(r"^", not_found),
]
