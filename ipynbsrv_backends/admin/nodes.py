"""Backends and nodes in the admin."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.defaultfilters import truncatechars
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext_lazy

from .. import audit, services
from ..contract import BACKEND_STATUS_ERROR, BACKEND_STATUS_OK, BACKEND_STATUS_STOPPED
from ..errors import BackendError
from ..forms import (
    BackendForm,
    NodeForm,
)
from ..models import Backend, Node, containers_in_use
from ..registry import mask_config
from .flat import FewRelatedFilter, FlatListMixin, capped_count, shown_count
from .mixins import AuditedAdminMixin, _badge, run_each

# ---------------------------------------------------------------------------- backends

@admin.register(Backend)
class BackendAdmin(AuditedAdminMixin, FlatListMixin, admin.ModelAdmin):
    """Which backend class nodes use, and its configuration (secrets masked)."""

    form = BackendForm
    list_display = ["name", "kind", "node_count", "masked_config", "updated_at"]
    list_filter = ["kind"]
    search_fields = ["name", "kind"]
    readonly_fields = ["created_at", "updated_at"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(node_count=capped_count(Node, "backend"))

    @admin.display(description=_("nodes"), ordering="node_count")
    def node_count(self, obj: Backend) -> str:
        return shown_count(getattr(obj, "node_count", 0))

    @admin.display(description=_("configuration"))
    def masked_config(self, obj: Backend) -> str:
        return truncatechars(json.dumps(mask_config(obj.kind, obj.config), sort_keys=True), 120)

# ---------------------------------------------------------------------------- nodes

_HEALTH = {
    BACKEND_STATUS_OK: ("ok", "✔"),
    BACKEND_STATUS_STOPPED: ("warn", "■"),
    BACKEND_STATUS_ERROR: ("bad", "✘"),
}


@admin.register(Node)
class NodeAdmin(AuditedAdminMixin, FlatListMixin, admin.ModelAdmin):
    """The machines that run containers: health, load and placement flags."""

    form = NodeForm
    list_display = ["name", "address", "backend", "enabled", "draining", "in_use", "capacity", "health",
                    "last_seen", "short_error"]
    list_filter = ["enabled", "draining", "last_status", ("backend", FewRelatedFilter)]
    search_fields = ["name", "address"]
    list_select_related = ["backend"]
    actions = ["check_health", "enable", "disable", "drain", "undrain", "refresh_containers", "rotate_signing_key"]
    fieldsets = [
        (None, {"fields": ["name", "address", "backend", "backend_config", "effective_config"]}),
        (_("Placement"), {"fields": ["enabled", "draining", "capacity"]}),
        (_("Health"), {"fields": ["health", "last_checked", "last_seen", "last_error", "machines", "resources"]}),
    ]
    readonly_fields = ["effective_config", "health", "last_checked", "last_seen", "last_error", "machines",
                       "resources"]

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict | None = None) -> HttpResponse:
        """A button of the machines table (``_machine=AVAILABILITY:MACHINE``) sets that machine of
        a swarm node, instead of saving the form."""
        if request.method == "POST" and "_machine" in request.POST:
            node = self.get_object(request, unquote(object_id))
            if node is None or not self.has_change_permission(request, node):
                raise PermissionDenied
            availability, _sep, machine = request.POST["_machine"].partition(":")
            try:
                services.set_machine_availability(node, machine, availability)
            except BackendError as exc:
                self.message_user(request, _("Could not set %(machine)s %(availability)s: %(reason)s") % {
                    "machine": machine, "availability": availability, "reason": exc}, level=messages.ERROR)
            else:
                self.message_user(request, _("%(machine)s is now %(availability)s.") % {
                    "machine": machine, "availability": availability}, level=messages.SUCCESS)
            return HttpResponseRedirect(request.path)
        return super().change_view(request, object_id, form_url, extra_context)

    @admin.display(description=_("machines"))
    def machines(self, obj: Node) -> str:
        """A node that stands for many machines (a swarm): each with its state, availability
        and a button to drain it or make it active again (from the last health check)."""
        rows = (obj.resources or {}).get("nodes") or []
        if not rows:
            return "-"
        body = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", (
            (row.get("name") or row.get("id"), row.get("address") or "", row.get("state"), row.get("availability"),
             format_html('<button type="submit" class="button" name="_machine" value="{}:{}">{}</button>',
                         "active" if row.get("availability") == "drain" else "drain", row.get("id"),
                         _("Make active") if row.get("availability") == "drain" else _("Drain")))
            for row in rows))
        return format_html('<table class="ipynbsrv-machines"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th>'
                           "<th></th></tr></thead><tbody>{}</tbody></table>", _("machine"), _("address"), _("state"),
                           _("availability"), body)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(in_use=Coalesce(containers_in_use(), 0))

    @admin.display(description=_("containers in use"), ordering="in_use")
    def in_use(self, obj: Node) -> str:
        """The count, a link to the node's containers (the container list's node filter names
        only the first nodes when there are many)."""
        link = reverse("admin:ipynbsrv_backends_container_changelist", current_app=self.admin_site.name)
        return format_html('<a href="{}?node__id__exact={}">{}</a>', link, obj.pk, getattr(obj, "in_use", 0))

    @admin.display(description=_("health"), ordering="last_status")
    def health(self, obj: Node) -> str:
        if obj.last_status is None:
            return _badge(_("not checked"), "none", "?")
        tone, symbol = _HEALTH.get(obj.last_status, ("bad", "✘"))
        return _badge(obj.get_last_status_display(), tone, symbol)

    @admin.display(description=_("last error"))
    def short_error(self, obj: Node) -> str:
        if not obj.last_error:
            return ""
        return format_html('<span title="{}">{}</span>', obj.last_error, truncatechars(obj.last_error, 80))

    @admin.display(description=_("configuration in effect"))
    def effective_config(self, obj: Node) -> str:
        if not obj.pk or not obj.backend_id:
            return "-"
        text = json.dumps(mask_config(obj.backend.kind, obj.effective_config()), indent=2, sort_keys=True)
        return format_html("<pre>{}</pre>", text)

    @admin.action(permissions=["change"], description=_("Check health"))
    def check_health(self, request: HttpRequest, queryset: QuerySet) -> None:
        nodes = list(queryset.select_related("backend"))
        services.check_nodes_health(nodes)
        healthy = 0
        for node in nodes:
            if node.is_healthy:
                healthy += 1
            else:
                self.message_user(request, _("The node %(object)s is not healthy: %(reason)s") % {
                    "object": node, "reason": node.last_error or _("it does not answer")}, level=messages.ERROR)
        if healthy:
            self.message_user(request, ngettext_lazy("%(count)d node is healthy.", "%(count)d nodes are healthy.",
                                                     "count") % {"count": healthy}, level=messages.SUCCESS)

    def _set_flags(self, request: HttpRequest, queryset: QuerySet, message: Any, **flags: bool) -> None:
        nodes = list(queryset)
        count = queryset.update(**flags)
        for node in nodes:
            audit.record("node.set_flags", node, details=flags)
        self.message_user(request, message % {"count": count}, level=messages.SUCCESS)

    @admin.action(permissions=["change"], description=_("Enable: place new containers here"))
    def enable(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._set_flags(request, queryset, ngettext_lazy(
            "%(count)d node enabled.", "%(count)d nodes enabled.", "count"), enabled=True)

    @admin.action(permissions=["change"], description=_("Disable: place no new containers here"))
    def disable(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._set_flags(request, queryset, ngettext_lazy(
            "%(count)d node disabled.", "%(count)d nodes disabled.", "count"), enabled=False)

    @admin.action(permissions=["change"], description=_("Drain: keep the containers, take no new ones"))
    def drain(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._set_flags(request, queryset, ngettext_lazy(
            "%(count)d node is draining.", "%(count)d nodes are draining.", "count"), draining=True)

    @admin.action(permissions=["change"], description=_("Stop draining"))
    def undrain(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._set_flags(request, queryset, ngettext_lazy(
            "%(count)d node takes new containers again.", "%(count)d nodes take new containers again.", "count"),
            draining=False)

    @admin.action(permissions=["change"], description=_("Rotate the signing key"))
    def rotate_signing_key(self, request: HttpRequest, queryset: QuerySet) -> None:
        """A new request-signing key for each node, without downtime (docs/security.md)."""
        from ..keys import rotate_signing_key

        run_each(self, request, queryset.select_related("backend"), rotate_signing_key, ngettext_lazy(
            "The signing key of %(count)d node was rotated.", "The signing keys of %(count)d nodes were rotated.",
            "count"), _("Could not rotate the signing key of %(object)s: %(reason)s"))

    @admin.action(permissions=["change"], description=_("Refresh container statuses"))
    def refresh_containers(self, request: HttpRequest, queryset: QuerySet) -> None:
        changed = 0

        def refresh(node: Node) -> None:
            nonlocal changed
            changed += services.refresh_node(node)

        done = run_each(self, request, queryset.select_related("backend"), refresh, ngettext_lazy(
            "Container statuses of %(count)d node refreshed.", "Container statuses of %(count)d nodes refreshed.",
            "count"), _("Could not refresh the containers of %(object)s: %(reason)s"))
        if done:
            self.message_user(request, ngettext_lazy(
                "%(count)d container record changed.", "%(count)d container records changed.", "count")
                % {"count": changed}, level=messages.INFO)
