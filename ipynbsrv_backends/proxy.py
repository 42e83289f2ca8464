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

nginx keeps an allowing answer for :data:`CACHE_SECONDS` (keyed on the visitor's session cookie
and the container's base URL, see ``docs/proxy.md``), so a notebook's requests cost a Django
round trip once per that many seconds instead of every time; that is also the bound within
which signing out or losing the container closes the door to new requests. An allowing answer
also tags the request with who was let through (``X-Ipynbsrv-Session``), and when a user signs
out, is deactivated or deleted, :func:`revoke_websockets` tells the notebook servers they may
have open websockets on to close them at once.

Each allowed visit is also noted for idle culling (:func:`.services.culling.note_access`, at
most once per ``ACTIVITY_INTERVAL`` per container), and a container the idle policy suspended
is resumed before the answer (:func:`.services.culling.resume_on_request`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any
from urllib.parse import unquote, urlsplit

import requests
from django.conf import settings
from django.contrib.auth.signals import user_logged_out
from django.db.models.signals import post_save, pre_delete, pre_save
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.utils.crypto import salted_hmac
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt

from .conf import app_settings
from .contract import ACCESS_HEADER
from .models import Container

logger = logging.getLogger(__name__)

__all__ = ["ORIGINAL_URI_HEADER", "UPSTREAM_HEADER", "SECRET_HEADER", "SESSION_HEADER", "REVOKE_HEADER",
           "SCOPE_HEADER", "CACHE_SECONDS", "auth", "container_for_path", "upstream_of", "revoke_websockets"]

#: The request header the proxy puts the visitor's URL in.
ORIGINAL_URI_HEADER = "X-Original-URI"
#: The response header that tells the proxy where to send an allowed request.
UPSTREAM_HEADER = "X-Ipynbsrv-Upstream"
#: The response header with the container's access secret, for the proxy to pass on.
SECRET_HEADER = ACCESS_HEADER
#: The response header with the container's status as the master last saw it.
STATUS_HEADER = "X-Ipynbsrv-Status"
#: The response header with who was let through (tags of the user and of the session, never
#: the session itself), which the proxy passes on to the notebook server.
SESSION_HEADER = "X-Ipynbsrv-Session"
#: The request header the master sends a notebook server (with its secret): close the open
#: websockets under these tags.
REVOKE_HEADER = "X-Ipynbsrv-Revoke"
#: The request header with the part of the URL nginx keys its cached answer on (the base URL's
#: shape, see docs/proxy-nginx.conf): an answer is cacheable only when it is the container's
#: base URL exactly.
SCOPE_HEADER = "X-Ipynbsrv-Scope"
#: How long nginx may reuse an allowing answer: the bound on signing out, deactivation and
#: deletion for new requests (docs/proxy.md).
CACHE_SECONDS = 2
#: How long the master waits for the notebook servers when it revokes websockets (per server).
REVOKE_TIMEOUT = 2.0


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
    container = _wake(container, user)
    response = _answer(200, "ok")
    # A suspended container takes a connection and never answers it: no address, so nginx
    # fails the request at once instead of waiting on it (docs/proxy.md).
    upstream = upstream_of(container) if container.status != Container.Status.SUSPENDED else None
    if upstream:  # without it the proxy answers 503: the container has no port to reach
        response[UPSTREAM_HEADER] = upstream
    if container.access_secret:
        response[SECRET_HEADER] = container.access_secret
    response[STATUS_HEADER] = container.status
    response[SESSION_HEADER] = f"{user_tag(user)} {session_tag(request.session.session_key or '')}"
    # nginx keeps the answer for the container's base URL only: a scope of another shape (a
    # nginx map that does not fit CONTAINER_BASE_URL) is answered afresh every time.
    scope = unquote(request.headers.get(SCOPE_HEADER, ""))
    # Kept only once the row says so, and never while the container is being suspended: a
    # suspend waits for every kept answer to expire first (services/proxykeep.py).
    keep = bool(upstream) and scope == container.base_url and _hold(container)
    response["X-Accel-Expires"] = str(CACHE_SECONDS if keep else 0)
    return response


def _hold(container: Container) -> bool:
    from .services import proxykeep

    return proxykeep.hold(container)


def _wake(container: Container, user: Any) -> Container:
    """Record the visit (idle culling, at most once a minute or so per container), and resume
    the container first when the idle policy suspended it; never fails the check."""
    from .services import culling, idlepolicy

    try:
        policy = idlepolicy.current_policy()
        culling.note_access(container, policy.activity_interval)
        if container.status == Container.Status.SUSPENDED and container.cull_reason and policy.resume_on_request:
            return culling.resume_on_request(container, user)
    except Exception:  # noqa: BLE001 - the visit still gets its answer
        logger.exception("Idle culling's part of the check failed for %s", container)
    return container


# ---------------------------------------------------------------------------- revocation

def user_tag(user: Any) -> str:
    """The tag of a user on the requests the proxy lets through: keyed on the master's
    ``SECRET_KEY``, the user's pk and password (so a password change makes a new one, as it
    ends the user's other sessions)."""
    hashed = user.get_session_auth_hash() if hasattr(user, "get_session_auth_hash") else ""
    return "u" + salted_hmac("ipynbsrv.proxy.user", f"{user.pk}:{hashed}", algorithm="sha256").hexdigest()[:24]


def session_tag(session_key: str) -> str:
    """The tag of a master session (the session key itself never leaves the master)."""
    return "s" + salted_hmac("ipynbsrv.proxy.session", session_key, algorithm="sha256").hexdigest()[:24]


def _reachable_for(user: Any) -> list[Container]:
    """The running containers ``user`` may have websockets open on: their own, and with
    ``PROXY_STAFF_ACCESS`` every one for staff."""
    containers = Container.objects.filter(status="running").select_related("node")
    if not (app_settings.PROXY_STAFF_ACCESS and getattr(user, "is_staff", False)):
        containers = containers.filter(owner_id=user.pk)
    return list(containers)


def _revoke_one(container: Container, tags: str) -> int:
    upstream = upstream_of(container)
    if not upstream or not container.access_secret:
        return 0
    answer = requests.post(f"http://{upstream}{container.base_url or '/'}", timeout=REVOKE_TIMEOUT,
                           headers={SECRET_HEADER: container.access_secret, REVOKE_HEADER: tags})
    if answer.status_code != 200:
        raise RuntimeError(f"answered {answer.status_code}")
    return int(answer.json().get("closed", 0))


def revoke_websockets(containers: Iterable[Container], tags: list[str]) -> int:
    """Tell each container's notebook server to close its open websockets under ``tags``, all
    at once; waits at most about :data:`REVOKE_TIMEOUT` and returns how many were closed."""
    containers = list(containers)
    if not containers or not tags:
        return 0
    value = " ".join(tags)
    closed = 0
    with ThreadPoolExecutor(max_workers=min(16, len(containers)), thread_name_prefix="ipynbsrv-revoke") as pool:
        futures = {pool.submit(_revoke_one, c, value): c for c in containers}
        done, _pending = wait(futures, timeout=REVOKE_TIMEOUT + 1)
        for future, container in futures.items():
            if future in done and future.exception() is None:
                closed += future.result()
            else:  # a stopped or unreachable server holds no websocket the proxy can still reach
                logger.warning("Could not revoke websockets on %s: %s", container,
                               future.exception() if future in done else "no answer in time")
    return closed


@receiver(user_logged_out, dispatch_uid="ipynbsrv_proxy_logged_out")
def _logged_out(sender: Any, request: HttpRequest | None = None, user: Any = None, **kwargs: Any) -> None:
    session = getattr(request, "session", None)
    key = getattr(session, "session_key", None)
    if user is None or not key:
        return
    revoke_websockets(_reachable_for(user), [session_tag(key)])


@receiver(pre_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="ipynbsrv_proxy_password_changing")
def _password_changing(sender: Any, instance: Any, raw: bool = False, update_fields: Any = None,
                       **kwargs: Any) -> None:
    """Note the tag a user had before their password changes (a sign-in's save is skipped)."""
    if raw or instance.pk is None or (update_fields is not None and "password" not in update_fields):
        return
    old = sender._default_manager.filter(pk=instance.pk).only("pk", "password").first()
    if old is not None and old.password != instance.password:
        instance._ipynbsrv_old_tag = user_tag(old)


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="ipynbsrv_proxy_user_saved")
def _user_saved(sender: Any, instance: Any, created: bool = False, **kwargs: Any) -> None:
    """Deactivated: every websocket of the user closes; password changed: every one of the
    sessions that came before (Django ends them too)."""
    tags = [getattr(instance, "_ipynbsrv_old_tag", None)]
    instance.__dict__.pop("_ipynbsrv_old_tag", None)
    if not created and not getattr(instance, "is_active", True):
        tags.append(user_tag(instance))
    if any(tags):
        revoke_websockets(_reachable_for(instance), [tag for tag in tags if tag])


@receiver(pre_delete, sender=settings.AUTH_USER_MODEL, dispatch_uid="ipynbsrv_proxy_user_deleted")
def _user_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    revoke_websockets(_reachable_for(instance), [user_tag(instance)])
