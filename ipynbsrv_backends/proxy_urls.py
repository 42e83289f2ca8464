"""The URL the master's reverse proxy asks before it lets a request through to a container.
Include it in a project with::

    path("proxy/", include("ipynbsrv_backends.proxy_urls"))

and point nginx's ``auth_request`` at ``/proxy/auth/`` (see ``docs/proxy.md``).
"""

from __future__ import annotations

from django.urls import path

from . import proxy

app_name = "ipynbsrv_proxy"

urlpatterns = [
    path("auth/", proxy.auth, name="auth"),
]
