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
    GET    nodes/                        the nodes (staff only)
    GET    nodes/{id}/                   one node (staff only)
    GET    schema/                       the OpenAPI schema (?format=json)

See ``docs/api.md``.
"""

from __future__ import annotations

from django.urls import path
from rest_framework.routers import SimpleRouter

from . import views

app_name = "ipynbsrv_api"

router = SimpleRouter(trailing_slash=True)
router.register("containers", views.ContainerViewSet, basename="container")
router.register("snapshots", views.SnapshotViewSet, basename="snapshot")
router.register("images", views.ImageViewSet, basename="image")
router.register("nodes", views.NodeViewSet, basename="node")

urlpatterns = [
    *router.urls,
    path("schema/", views.SchemaView.as_view(), name="schema"),
]
