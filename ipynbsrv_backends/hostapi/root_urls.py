"""The URL configuration of the ``ipynbsrv_hostapi`` command: the host API at the root,
and JSON (not HTML) for unknown paths and unexpected errors."""

from __future__ import annotations

from django.urls import include, path

urlpatterns = [
    path("", include("ipynbsrv_backends.hostapi.urls")),
]

handler404 = "ipynbsrv_backends.hostapi.exceptions.json_not_found"
handler500 = "ipynbsrv_backends.hostapi.exceptions.json_server_error"
