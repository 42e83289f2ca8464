"""How the users' API keeps other sites out.

Browsers remember HTTP Basic credentials they were prompted for and send them along with
every later request to the same site, also with a form another site submits. So:

- :class:`BasicNoPrompt` signs in with HTTP Basic like DRF's ``BasicAuthentication``, but
  its ``401`` challenge is ``WWW-Authenticate: X-Basic realm="api"``, a scheme no browser
  answers with a password dialog. Clients that send their credentials with the request
  (``curl -u``, ``requests``' ``auth=``, ``HttpRemote``-like scripts) are not affected.
- :func:`refuse_cross_site` refuses every unsafe request (``POST``, ``PUT``, ``PATCH``,
  ``DELETE``) whose ``Origin`` (or, without one, ``Referer``) is not the site's own: the
  request's scheme and host, or one of Django's ``CSRF_TRUSTED_ORIGINS``. Requests that send
  neither header (command-line clients) pass.
- It also refuses an unsafe request with a body that is not ``application/json``
  (``415``), whether or not the action reads the body: no HTML form can send JSON.

Session-authenticated requests keep DRF's CSRF check on top of all this.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.utils.http import is_same_domain
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions, status
from rest_framework.authentication import BasicAuthentication
from rest_framework.request import Request

__all__ = ["BasicNoPrompt", "CrossSiteRequest", "refuse_cross_site", "CHALLENGE"]

#: The ``WWW-Authenticate`` value of the users' API's 401 answers.
CHALLENGE = 'X-Basic realm="api"'

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_JSON = "application/json"


class BasicNoPrompt(BasicAuthentication):
    """HTTP Basic without the browser's password dialog: send the credentials with the
    request (``curl -u USER:PASSWORD``); a ``401`` never asks for them."""

    def authenticate_header(self, request: Any) -> str:
        return CHALLENGE


class CrossSiteRequest(exceptions.PermissionDenied):
    status_code = status.HTTP_403_FORBIDDEN
    default_code = "cross_site_request"
    default_detail = _("Cross-site request refused.")


def _origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` of ``url`` in lower case, or ``None`` when it has none."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def _trusted(origin: str, request: Request) -> bool:
    """The site's own origin, or one Django's CSRF check trusts as well."""
    own = f"{'https' if request.is_secure() else 'http'}://{request.get_host()}".lower()
    if origin == own:
        return True
    scheme, _sep, netloc = origin.partition("://")
    for trusted in getattr(settings, "CSRF_TRUSTED_ORIGINS", None) or []:
        trusted = str(trusted).lower()
        if "*" not in trusted:
            if origin == trusted:
                return True
            continue
        trusted_scheme, _sep, pattern = trusted.partition("://")
        # "https://*.example.com" trusts every subdomain of example.com, as Django does.
        if trusted_scheme == scheme and pattern.startswith("*") and is_same_domain(netloc, pattern[1:]):
            return True
    return False


def refuse_cross_site(request: Request) -> None:
    """Raise :class:`CrossSiteRequest` (403) or ``UnsupportedMediaType`` (415) for an unsafe
    request another site may have made; return for everything else."""
    if request.method in _SAFE_METHODS:
        return
    headers = request.headers
    origin_header = headers.get("Origin")
    if origin_header is not None:
        origin = _origin_of(origin_header.strip())  # "null" (an opaque origin) has none
        if origin is None or not _trusted(origin, request):
            raise CrossSiteRequest(
                gettext("Cross-site request refused: the Origin %(origin)s is not this site's. Call the API from "
                  "this site's own pages, from a site listed in CSRF_TRUSTED_ORIGINS, or from a client "
                  "that sends no Origin header (such as curl).") % {"origin": repr(origin_header[:100])}
            )
    else:
        referer = headers.get("Referer")
        if referer is not None:
            origin = _origin_of(referer.strip())
            if origin is None or not _trusted(origin, request):
                raise CrossSiteRequest(
                    gettext("Cross-site request refused: the Referer is not a page of this site. Call the API "
                      "from this site's own pages or from a client that sends no Referer (such as curl).")
                )
    content_type = (request.META.get("CONTENT_TYPE") or "").split(";", 1)[0].strip().lower()
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 1  # a malformed length: treat it as a body
    has_body = length > 0 or "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower()
    # Only a body counts: some servers (wsgiref) report "text/plain" for a request without
    # a Content-Type, and a request without a body carries nothing to parse.
    if has_body and content_type != _JSON:
        raise exceptions.UnsupportedMediaType(
            content_type or "(none)",
            detail=gettext("Unsupported media type %(type)s: send the body as JSON with "
                     "'Content-Type: application/json', or send no body.") % {"type": repr(content_type or "(none)")},
        )
