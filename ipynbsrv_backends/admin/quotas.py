"""The admin's page of quotas: each user's limits and usage (``containers/quotas/``), for staff
who may view containers. Read only: limits are set in the ``QUOTAS`` setting."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.translation import gettext_lazy as _

from ..conf import app_settings
from ..services import quotas

#: The most users one page shows (``?q=`` narrows it to matching usernames).
PAGE = 100


def _shown(key: str, used: int | float | None, limit: int | float | None) -> str:
    def text(value: int | float | None) -> str:
        if value is None:
            return str(_("not measured"))
        return quotas.amount(key, value) if key in quotas.BYTES else f"{value:g}"

    return f"{text(used)} of {text(limit)}" if limit is not None else text(used)


def rows(search: str = "") -> list[dict[str, Any]]:
    """Users who own a container or an image, or have a quota of their own, with their figures."""
    users = get_user_model().objects.filter(
        Q(ipynbsrv_containers__isnull=False) | Q(ipynbsrv_images__isnull=False)
        | Q(username__in=list((app_settings.QUOTAS or {}).get("users") or {}))
    ).distinct().order_by("username")
    if search:
        users = users.filter(username__icontains=search)
    found = []
    measured = quotas.measured_volumes()  # once for the page, not per user
    for user in users[:PAGE]:
        report = quotas.report(user, measured)
        cells = [_shown(key, report["usage"][key], report["limits"][key]) for key in quotas.KEYS]
        full = [key for key in quotas.KEYS if report["limits"][key] is not None
                and report["usage"][key] is not None and report["usage"][key] >= report["limits"][key]]
        found.append({"user": user, "cells": cells, "full": ", ".join(full)})
    return found


def quotas_view(model_admin: Any, request: HttpRequest) -> HttpResponse:
    if not model_admin.has_view_permission(request):
        raise PermissionDenied
    search = request.GET.get("q", "").strip()[:150]
    context = {
        **model_admin.admin_site.each_context(request),
        "title": _("Quotas"),
        "opts": model_admin.opts,
        "headers": [_("containers"), _("memory"), _("CPUs"), _("snapshots"), _("committed images"),
                    _("volume space")],
        "rows": rows(search),
        "search": search,
        "page": PAGE,
        "has_view_permission": True,
    }
    request.current_app = model_admin.admin_site.name
    return TemplateResponse(request, "admin/ipynbsrv_backends/container/quotas.html", context)
