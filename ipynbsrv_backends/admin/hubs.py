"""JupyterHubs in the admin: each hub's group, images, users and servers; never its token
(made and rotated only with ``manage.py ipynbsrv_hub``, kept only as a hash)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from ..models import HubCredential, HubUser
from .mixins import AuditedAdminMixin


class HubUserInline(admin.TabularInline):
    model = HubUser
    fields = ["name", "user", "created_at"]
    readonly_fields = ["name", "user", "created_at"]
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(HubCredential)
class HubCredentialAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """A hub's settings (enabled, images); made, rotated and removed with ``ipynbsrv_hub``."""

    list_display = ["name", "enabled", "group", "users_count", "servers_count", "created_at", "rotated_at",
                    "last_used_at"]
    list_filter = ["enabled"]
    search_fields = ["name"]
    fields = ["name", "enabled", "group", "images", "default_image", "created_at", "rotated_at", "last_used_at"]
    readonly_fields = ["name", "group", "created_at", "rotated_at", "last_used_at"]
    filter_horizontal = ["images"]
    inlines = [HubUserInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("group").annotate(
            users_count=Count("users", distinct=True), servers_count=Count("users__servers", distinct=True))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a token is shown once, by the command: manage.py ipynbsrv_hub add NAME

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # manage.py ipynbsrv_hub remove NAME (which says what stays)

    @admin.display(description=_("users"), ordering="users_count")
    def users_count(self, obj: Any) -> int:
        return obj.users_count

    @admin.display(description=_("servers"), ordering="servers_count")
    def servers_count(self, obj: Any) -> int:
        return obj.servers_count
