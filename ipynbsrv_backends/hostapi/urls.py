"""The host API URLs. Include them in a project with::

    path("hostapi/", include("ipynbsrv_backends.hostapi.urls"))

and ``HttpRemote(url="http://HOST:PORT/hostapi", token=...)`` reaches them.

The paths below that prefix are those of the route table,
:data:`ipynbsrv_backends.wire.routes.ROUTES` (printed, as in ``docs/hostapi.md``, by
``python -m ipynbsrv_backends.wire.routes``); one view per path (:data:`.views.VIEWS`).
``{container}``, ``{image}`` and ``{snapshot}`` are pks encoded by
:func:`ipynbsrv_backends.wire.format.encode_pk`; a segment that is not one matches no URL.

URL names: ``health``, ``status``, ``schema``, ``keys-next``, ``keys-promote``, and for the
collections ``container-list``, ``container-detail``, ``container-exists``,
``container-snapshots-import``, ``image-pull``, ``snapshot-export``… (the collection's
singular, then the path's words after it, or ``list``/``detail``).
"""

from __future__ import annotations

import re

from django.urls import URLPattern, re_path

from ..wire.format import PK_PATTERN
from ..wire.routes import route
from . import views
from .schema import COLLECTIONS

app_name = "hostapi"


def url_regex(path: str) -> str:
    """The regular expression of a route's path: each ``{name}`` an encoded pk."""
    return "^" + re.sub(r"\\\{(\w+)\\\}", lambda pk: f"(?P<{pk[1]}>{PK_PATTERN})", re.escape(path)) + "$"


def url_name(path: str) -> str:
    """``container-list``, ``container-detail``, ``container-exists``, ``keys-next``, ``status``…"""
    words = [part for part in path.split("/") if part and not part.startswith("{")]
    if words[0] not in COLLECTIONS:
        return "-".join(words)
    rest = words[1:] or ["detail" if "{" in path else "list"]
    return "-".join([words[0].removesuffix("s"), *rest])


def _patterns() -> list[URLPattern]:
    # A path without pks first, so ``images/pull/`` is never taken for the image ``pull``.
    paths = sorted(views.VIEWS, key=lambda path: path.count("{"))
    return [re_path(url_regex(path), views.VIEWS[path].as_view(), name=url_name(path)) for path in paths]


#: Every endpoint the schema describes.
api_urlpatterns = _patterns()

urlpatterns = [
    *api_urlpatterns,
    re_path(url_regex(route("schema").path), views.SchemaView.as_view(patterns=api_urlpatterns), name="schema"),
]
