"""Images, snapshots and the audit log in the admin."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.defaultfilters import filesizeformat
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext_lazy

from .. import services
from ..models import AuditEntry, Container, Image, Node, Snapshot
from .flat import FewRelatedFilter, FlatListMixin, IndexedValuesFilter, capped_count, shown_count
from .mixins import AuditedAdminMixin, ServiceDeleteMixin, _badge, run_each

# ---------------------------------------------------------------------------- images

@admin.register(Image)
class ImageAdmin(AuditedAdminMixin, ServiceDeleteMixin, FlatListMixin, admin.ModelAdmin):
    """Base images an operator registers, and images users committed (mostly read-only)."""

    service_delete = staticmethod(services.delete_image)
    delete_done = ngettext_lazy("%(count)d image deleted.", "%(count)d images deleted.", "count")

    list_display = ["name", "ref", "kind", "owner", "public", "node", "size_display", "containers_count",
                    "created_at"]
    list_filter = ["public", ("owner", admin.EmptyFieldListFilter), ("node", FewRelatedFilter)]
    search_fields = ["name", "ref", "owner__username", "description"]
    list_select_related = ["owner", "node"]
    actions = ["delete_selected"]
    base_fields = ["name", "ref", "public", "description"]
    committed_fields = ["name", "ref", "owner", "public", "description", "node", "source", "size", "created_at"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(containers_count=capped_count(Container, "image"))

    @staticmethod
    def _committed(obj: Image | None) -> bool:
        return obj is not None and (obj.owner_id is not None or obj.source_id is not None)

    def get_fields(self, request: HttpRequest, obj: Image | None = None) -> list[Any]:
        return self.committed_fields if self._committed(obj) else self.base_fields

    def get_readonly_fields(self, request: HttpRequest, obj: Image | None = None) -> list[str]:
        if self._committed(obj):  # it names a real image a user made: only the words may change
            return ["ref", "owner", "node", "source", "size", "created_at"]
        return []

    @admin.display(description=_("kind"), ordering="owner")
    def kind(self, obj: Image) -> Any:
        return _("committed") if self._committed(obj) else _("base image")

    @admin.display(description=_("size"), ordering="size")
    def size_display(self, obj: Image) -> str:
        return filesizeformat(obj.size) if obj.size else "-"

    @admin.display(description=_("containers"), ordering="containers_count")
    def containers_count(self, obj: Image) -> str:
        return shown_count(getattr(obj, "containers_count", 0))

# ---------------------------------------------------------------------------- snapshots

@admin.register(Snapshot)
class SnapshotAdmin(AuditedAdminMixin, ServiceDeleteMixin, FlatListMixin, admin.ModelAdmin):
    """Snapshots of containers: restore or delete them through the service layer."""

    service_delete = staticmethod(services.delete_snapshot)
    delete_done = ngettext_lazy("%(count)d snapshot deleted.", "%(count)d snapshots deleted.", "count")

    list_display = ["name", "container", "node", "description", "created_at"]
    list_filter = [("container__node", FewRelatedFilter), "created_at"]
    ordering = ["-pk"]  # newest first, by the primary key: no sort of the whole table
    search_fields = ["name", "description", "container__name", "container__owner__username"]
    list_select_related = ["container__owner", "container__node"]
    fields = ["container", "name", "description", "backend_pk", "created_at"]
    readonly_fields = ["container", "name", "backend_pk", "created_at"]
    actions = ["restore", "delete_selected"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # snapshots are taken from a container

    @admin.display(description=_("node"), ordering="container__node__name")
    def node(self, obj: Snapshot) -> Node:
        return obj.container.node

    @admin.action(permissions=["change"], description=_("Restore the container from the selected snapshots"))
    def restore(self, request: HttpRequest, queryset: QuerySet) -> None:
        seen: set[int] = set()
        snapshots = []
        for snapshot in queryset.select_related("container__node__backend", "container__owner"):
            if snapshot.container_id in seen:
                self.message_user(request, _("%(object)s was skipped: pick one snapshot per container.")
                                  % {"object": snapshot}, level=messages.WARNING)
                continue
            seen.add(snapshot.container_id)
            snapshots.append(snapshot)
        run_each(self, request, snapshots, lambda s: services.restore_snapshot(s.container, s),
                 ngettext_lazy("%(count)d container restored.", "%(count)d containers restored.", "count"),
                 _("Could not restore %(object)s: %(reason)s"))


@admin.register(AuditEntry)
class AuditEntryAdmin(AuditedAdminMixin, FlatListMixin, admin.ModelAdmin):
    """The audit log, read-only: nobody adds, changes or deletes an entry."""

    list_display = ["when", "actor_display", "via", "action", "target", "node", "result_badge"]
    list_filter = ["via", "result", ("action", IndexedValuesFilter), ("node", IndexedValuesFilter),
                   ("when", admin.DateFieldListFilter)]
    search_fields = ["actor_name", "action", "target", "node", "message"]
    date_hierarchy = "when"
    list_select_related = ["actor"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=_("actor"), ordering="actor_name")
    def actor_display(self, obj: AuditEntry) -> str:
        return obj.actor_name or str(_("system"))

    @admin.display(description=_("result"), ordering="result")
    def result_badge(self, obj: AuditEntry) -> str:
        return _badge(obj.get_result_display(), "ok" if obj.result == AuditEntry.Result.OK else "bad")
