"""The notebook server answers its owner only: every request must carry the container's secret.

The master mints a random secret for each container and puts it in the container's
environment (``IPYNBSRV_ACCESS_SECRET``). Its proxy, after checking that the signed-in user
owns the container, passes the request on with the secret in the ``X-Ipynbsrv-Access`` header
(replacing any header of that name the client sent). Nothing else knows the secret: not
another user's container, not another node, not a process on the node without root.

Two layers, both in this module, which Jupyter imports as its identity provider (so a server
that cannot import it does not start at all):

1. **The gate**, in front of Tornado's routing: a request without the right header gets 403
   before any handler runs: pages, the REST API, kernels, terminals, websockets and static
   files alike.
2. **The identity provider**: the request's user is the container's owner only when the header
   is right. Such a request never counts as token-authenticated, so Jupyter's own XSRF and
   Origin checks stay on for the owner's browser (a page on another site cannot make the
   owner's browser act on the notebook).

3. **Revocation of open websockets.** A websocket is checked once, when it opens; it must not
   outlive the sign-in that opened it. The proxy tags every request with who it let through
   (``X-Ipynbsrv-Session``: a tag of the user and one of the master's session, never the session
   itself), and the gate keeps each open websocket's connection under its tags. When the user
   signs out, is deactivated or deleted, the master sends this server a request with the
   secret and ``X-Ipynbsrv-Revoke: TAG ...`` (``*``: every one); the gate closes those
   websockets' connections at once and answers with how many it closed, and refuses every
   request under those tags for :data:`REMEMBER` seconds (longer than the proxy keeps an
   answer), so that neither a reconnect nor any other request gets in on an answer the proxy
   kept from before. The proxy, told ``403``, asks the master afresh, which refuses it. The proxy drops any
   ``X-Ipynbsrv-Revoke`` a browser sends, and without the secret the header is refused like
   any other request.

The secret is removed from this process's environment at import, so kernels and terminals do
not inherit it. The server refuses to start without one (a server open to anyone who reaches
its port is what this module exists to prevent).
"""

from __future__ import annotations

import hmac
import json
import os
import sys
import time
import weakref
from typing import Any

from jupyter_server.auth.identity import IdentityProvider, User
from tornado import web

ENV = "IPYNBSRV_ACCESS_SECRET"
HEADER = "X-Ipynbsrv-Access"
#: Who the proxy let through: space-separated tags (the user's, the session's), set by the proxy.
SESSION_HEADER = "X-Ipynbsrv-Session"
#: From the master: the tags whose open websockets close now (``*``: all of them).
REVOKE_HEADER = "X-Ipynbsrv-Revoke"
#: How long a revoked tag is refused (seconds): longer than the proxy keeps the master's answer.
REMEMBER = 30.0
#: At most this many revoked tags are remembered (the oldest are forgotten first).
REMEMBER_AT_MOST = 10000
#: Shorter than this is no secret (the master mints 43 characters).
MIN_LENGTH = 16

_SECRET = os.environ.pop(ENV, "").encode()
if len(_SECRET) < MIN_LENGTH:
    sys.exit(f"[ipynbsrv-notebook] {ENV} is missing or too short: the master sets it for every container. "
             "This server refuses to run without it (it would answer anyone who reaches its port).")


def allowed(request: Any) -> bool:
    """Whether ``request`` (a Tornado request) carries this container's secret."""
    given = request.headers.get(HEADER, "").encode()
    return hmac.compare_digest(given, _SECRET)


class Refused(web.RequestHandler):
    """The answer to every request without the secret: 403, nothing else."""

    def check_xsrf_cookie(self) -> None:  # refused anyway; no other reason is given
        return None

    def prepare(self) -> None:
        self.set_status(403)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish("This notebook server answers only through its owner's sign-in on the master.\n")


#: Open websockets' connections (their Tornado streams) under each tag, and under "*".
_OPEN: dict[str, weakref.WeakSet[Any]] = {}
#: Revoked tags, and until when (monotonic) requests under them are refused.
_REVOKED: dict[str, float] = {}


def _tags(request: Any) -> list[str]:
    return [tag for tag in request.headers.get(SESSION_HEADER, "").split()[:4] if tag != "*"] + ["*"]


def _keep(request: Any) -> None:
    """Remember a websocket upgrade's connection under the tags the proxy put on it (the same
    stream carries the websocket once Tornado has upgraded it)."""
    stream = getattr(request.connection, "stream", None)
    if stream is None:
        return
    for tag in _tags(request):
        _OPEN.setdefault(tag[:64], weakref.WeakSet()).add(stream)


def revoked(request: Any) -> bool:
    """Whether ``request`` comes under a tag the master revoked less than REMEMBER s ago."""
    if not _REVOKED:
        return False
    now = time.monotonic()
    return any(_REVOKED.get(tag[:64], 0.0) > now for tag in _tags(request))


def revoke(tags: list[str]) -> int:
    """Close the connections of every open websocket under any of ``tags``, and refuse requests
    under them for a while (``*`` only closes); how many were open."""
    now = time.monotonic()
    for tag in [tag for tag, until in _REVOKED.items() if until <= now]:
        del _REVOKED[tag]
    for tag in tags:
        if tag != "*":
            _REVOKED.pop(tag[:64], None)
            _REVOKED[tag[:64]] = now + REMEMBER
    while len(_REVOKED) > REMEMBER_AT_MOST:
        del _REVOKED[next(iter(_REVOKED))]
    streams = {id(s): s for tag in tags for s in list(_OPEN.get(tag, ())) if not s.closed()}
    for stream in streams.values():
        stream.close()
    for tag in [tag for tag, kept in _OPEN.items() if not any(not s.closed() for s in kept)]:
        del _OPEN[tag]
    return len(streams)


class Revoked(web.RequestHandler):
    """The master's revocation (secret checked by the gate): close the tagged websockets."""

    def check_xsrf_cookie(self) -> None:  # the secret is the credential; browsers cannot send this header
        return None

    def prepare(self) -> None:
        closed = revoke(self.request.headers.get(REVOKE_HEADER, "").split()[:64])
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"closed": closed}))


_route = web.Application.find_handler


def _gate(self: web.Application, request: Any, **kwargs: Any) -> Any:
    if not allowed(request):
        return self.get_handler_delegate(request, Refused)
    if request.headers.get(REVOKE_HEADER):
        return self.get_handler_delegate(request, Revoked)
    if revoked(request):
        return self.get_handler_delegate(request, Refused)
    if request.headers.get("Upgrade", "").lower() == "websocket":
        _keep(request)
    return _route(self, request, **kwargs)


web.Application.find_handler = _gate  # type: ignore[method-assign]


class ProxyIdentityProvider(IdentityProvider):
    """The owner, when the request carries the secret; nobody otherwise."""

    @property
    def auth_enabled(self) -> bool:
        return True

    @property
    def login_available(self) -> bool:
        return False

    @property
    def logout_available(self) -> bool:
        return False

    def get_handlers(self) -> list[tuple[str, object]]:
        return []  # signing in and out happen on the master

    def get_user(self, handler: web.RequestHandler) -> User | None:
        if not allowed(handler.request):
            return None
        owner = os.environ.get("USER") or os.environ.get("OWNER") or "owner"
        return User(username=owner, name=owner, display_name=owner)

    def is_token_authenticated(self, handler: web.RequestHandler) -> bool:
        return False  # keeps Jupyter's XSRF and Origin checks on

    def should_check_origin(self, handler: web.RequestHandler) -> bool:
        return True
