"""Access to users' containers through the master's reverse proxy.

A reverse proxy in front of the master (nginx, see ``docs/proxy.md``) asks :func:`auth`
before it passes on any request for a container's URL (nginx's ``auth_request``). The view
reads the URL the visitor asked for from the ``X-Original-URI`` header, finds the container
whose base URL it lies under, and answers

- ``200`` when the signed-in Django user owns that container (or is staff, when the setting
  ``PROXY_STAFF_ACCESS`` is on), with ``X-Ipynbsrv-Upstream: ADDRESS:PORT``: where the
  container's port is bound on its node, so the proxy routes the request there, and
  ``X-Ipynbsrv-Access``: the container's access secret, which the proxy puts on the request it
  passes on (the notebook server answers nothing without it; the visitor never sees it);
- ``401`` when nobody is signed in;
- ``403`` for everyone else, also when no container lies under that URL (so nobody learns
  which containers exist).

The routing and the permission are one decision: the proxy sends a request only to the
container this view allowed, whatever the rest of the URL says.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import unquote, urlsplit

from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt

from .conf import app_settings
from .contract import ACCESS_HEADER
from .models import Container

logger = logging.getLogger(__name__)

__all__ = ["ORIGINAL_URI_HEADER", "UPSTREAM_HEADER", "SECRET_HEADER", "auth", "container_for_path", "upstream_of"]

#: The request header the proxy puts the visitor's URL in.
ORIGINAL_URI_HEADER = "X-Original-URI"
#: The response header that tells the proxy where to send an allowed request.
UPSTREAM_HEADER = "X-Ipynbsrv-Upstream"
#: The response header with the container's access secret, for the proxy to pass on.
SECRET_HEADER = ACCESS_HEADER
#: The response header with the container's status as the master last saw it.
STATUS_HEADER = "X-Ipynbsrv-Status"


def _prefixes(path: str) -> list[str]:
    """Every ``/a/b/`` prefix of ``path`` that ends in a slash, but ``/`` itself."""
    parts = path.split("/")[1:-1] if path.endswith("/") else path.split("/")[1:]
    return ["/" + "/".join(parts[:n]) + "/" for n in range(1, len(parts) + 1)]


def container_for_path(uri: str) -> Container | None:
    """The container whose base URL ``uri`` lies under, or ``None``.

    The URI is decoded once; one with ``.``/``..`` segments, or that a browser would not send,
    matches nothing. When several base URLs match, the longest wins; a base URL that two
    containers share names neither (a template without ``{username}`` or ``{name}``).
    """
    path = unquote(urlsplit(uri).path)
    if not path.startswith("/") or "\x00" in path or "//" in path:
        return None
    if any(segment in (".", "..") for segment in path.split("/")):
        return None
    candidates = _prefixes(path)
    if not candidates:
        return None
    matches = list(Container.objects.filter(base_url__in=candidates).select_related("owner", "node")[:10])
    if not matches:
        return None
    longest = max(len(c.base_url) for c in matches)
    best = [c for c in matches if len(c.base_url) == longest]
    if len(best) > 1:
        logger.warning("The base URL %s is shared by %d containers; refusing to route it", best[0].base_url, len(best))
        return None
    return best[0]


def upstream_of(container: Container) -> str | None:
    """``ADDRESS:PORT`` where the container's proxied port is bound on its node."""
    wanted = app_settings.PROXY_PORT
    for port in container.ports or []:
        if not port.get("external"):
            continue
        if wanted is not None and int(port.get("internal") or 0) != int(wanted):
            continue
        address = port.get("address") or ""
        if address in ("", "0.0.0.0", "::"):
            address = container.node.address
        if ":" in address:  # IPv6
            address = f"[{address.strip('[]')}]"
        return f"{address}:{port['external']}"
    return None


def _answer(status: int, reason: str) -> HttpResponse:
    return HttpResponse(reason + "\n", status=status, content_type="text/plain; charset=utf-8")


@csrf_exempt  # it changes nothing, and the proxy may ask with the visitor's method
@never_cache
def auth(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    """nginx ``auth_request``: may the signed-in user reach the container this URL names?"""
    uri = request.headers.get(ORIGINAL_URI_HEADER, "")
    user = request.user
    if not user.is_authenticated:
        return _answer(401, "Sign in first.")
    container = container_for_path(uri) if uri else None
    if container is None:
        return _answer(403, "No container of yours is served here.")
    if container.owner_id != user.pk and not (app_settings.PROXY_STAFF_ACCESS and user.is_staff):
        logger.info("Refused %s access to %s (%s)", user, container, uri[:200])
        return _answer(403, "No container of yours is served here.")
    response = _answer(200, "ok")
    upstream = upstream_of(container)
    if upstream:  # without it the proxy answers 503: the container has no port to reach
        response[UPSTREAM_HEADER] = upstream
    if container.access_secret:
        response[SECRET_HEADER] = container.access_secret
    response[STATUS_HEADER] = container.status
    return response
