"""The host API URLs. Include them in a project with::

    path("hostapi/", include("ipynbsrv_backends.hostapi.urls"))

and ``HttpRemote(url="http://HOST:PORT/hostapi", token=...)`` reaches them.

Below the include prefix::

    GET    health/                                      (liveness; the only call without a token)
    GET    status/                                      get_status() and the node's resources
    GET    schema/                                      (the OpenAPI schema of all of this)
    GET    containers/?only_running=                    get_containers
    POST   containers/                                  create_container
    GET    containers/{container}/                      get_container
    DELETE containers/{container}/                      delete_container
    GET    containers/{container}/exists/               container_exists
    GET    containers/{container}/running/              container_is_running
    GET    containers/{container}/suspended/            container_is_suspended
    POST   containers/{container}/start/                start_container (also stop/, restart/)
    POST   containers/{container}/suspend/              suspend_container (also resume/)
    POST   containers/{container}/exec/                 exec_in_container
    GET    containers/{container}/logs/?tail=&since=    get_container_logs
    GET    containers/{container}/snapshots/            get_containers_snapshots
    POST   containers/{container}/snapshots/            create_container_snapshot
    POST   containers/{container}/snapshots/import/     import_container_snapshot (not in the contract)
    POST   containers/{container}/restore/              restore_container_snapshot
    GET    images/                                      get_container_images
    POST   images/                                      create_container_image
    POST   images/pull/                                 pull_container_image (not in the contract)
    GET    images/{image}/                              get_container_image
    DELETE images/{image}/                              delete_container_image
    GET    images/{image}/exists/                       container_image_exists
    GET    snapshots/                                   get_container_snapshots
    GET    snapshots/{snapshot}/                        get_container_snapshot
    DELETE snapshots/{snapshot}/                        delete_container_snapshot
    GET    snapshots/{snapshot}/exists/                 container_snapshot_exists
    POST   snapshots/{snapshot}/export/                 export_container_snapshot (not in the contract)
    POST   keys/next/                                   install the next signing key
    POST   keys/promote/                                make the next signing key current

``{container}``, ``{image}`` and ``{snapshot}`` are pks encoded by
:func:`ipynbsrv_backends.hostapi.wire.encode_pk`.
"""

from __future__ import annotations

from django.urls import path
from rest_framework.routers import SimpleRouter

from . import views

app_name = "hostapi"

router = SimpleRouter(trailing_slash=True)
router.register("containers", views.ContainerViewSet, basename="container")
router.register("images", views.ImageViewSet, basename="image")
router.register("snapshots", views.SnapshotViewSet, basename="snapshot")

#: Every endpoint the schema describes.
api_urlpatterns = [
    path("health/", views.HealthView.as_view(), name="health"),
    path("status/", views.StatusView.as_view(), name="status"),
    path("keys/next/", views.NextKeyView.as_view(), name="keys-next"),
    path("keys/promote/", views.PromoteKeyView.as_view(), name="keys-promote"),
    *router.urls,
]

urlpatterns = [
    *api_urlpatterns,
    path("schema/", views.SchemaView.as_view(patterns=api_urlpatterns), name="schema"),
]
