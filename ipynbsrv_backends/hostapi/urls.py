"""The host API URLs. Include them in a project with::

    path("hostapi/", include("ipynbsrv_backends.hostapi.urls"))

and ``HttpRemote(url="http://HOST:PORT/hostapi", token=...)`` reaches them.

=======  ==============================================  =====================================
method   path (below the include prefix)                 backend method
=======  ==============================================  =====================================
GET      ``health/``                                     (liveness, no token)
GET      ``status/``                                     get_status() + node resources
GET      ``schema/``                                     (the OpenAPI schema)
GET      ``containers/?only_running=``                   get_containers
POST     ``containers/``                                 create_container
GET      ``containers/{pk}/``                            get_container
DELETE   ``containers/{pk}/``                            delete_container
GET      ``containers/{pk}/exists/``                     container_exists
GET      ``containers/{pk}/running/``                    container_is_running
GET      ``containers/{pk}/suspended/``                  container_is_suspended
POST     ``containers/{pk}/start|stop|restart/``         start/stop/restart_container
POST     ``containers/{pk}/suspend|resume/``             suspend/resume_container
POST     ``containers/{pk}/exec/``                       exec_in_container
GET      ``containers/{pk}/logs/?tail=&since=``          get_container_logs
GET      ``containers/{pk}/snapshots/``                  get_containers_snapshots
POST     ``containers/{pk}/snapshots/``                  create_container_snapshot
POST     ``containers/{pk}/restore/``                    restore_container_snapshot
GET      ``images/``                                     get_container_images
POST     ``images/``                                     create_container_image
GET      ``images/{pk}/``                                get_container_image
DELETE   ``images/{pk}/``                                delete_container_image
GET      ``images/{pk}/exists/``                         container_image_exists
GET      ``snapshots/``                                  get_container_snapshots
GET      ``snapshots/{pk}/``                             get_container_snapshot
DELETE   ``snapshots/{pk}/``                             delete_container_snapshot
GET      ``snapshots/{pk}/exists/``                      container_snapshot_exists
=======  ==============================================  =====================================

``{pk}`` is the pk encoded by :func:`ipynbsrv_backends.hostapi.wire.encode_pk`.
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
    *router.urls,
]

urlpatterns = [
    *api_urlpatterns,
    path("schema/", views.SchemaView.as_view(patterns=api_urlpatterns), name="schema"),
]
