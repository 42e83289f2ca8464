"""What every model admin of the package shares: actions object by object (:func:`run_each`), the
audit context (:class:`AuditedAdminMixin`) and deletes through the service layer
(:class:`ServiceDeleteMixin`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected as django_delete_selected
from django.contrib.admin.utils import quote
from django.core.exceptions import PermissionDenied
from django.db import router, transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext_lazy

from .. import audit
from ..errors import BackendError

logger = logging.getLogger("ipynbsrv_backends.admin")  # one logger for the whole admin, as before the split


#: Text shown for the colour-coded states (health of a node, status of a container).
_COLOURS = {"ok": "#2e7d32", "warn": "#ef6c00", "bad": "#c62828", "none": "#757575"}


def _badge(text: Any, tone: str, symbol: str = "●") -> str:
    return format_html('<span style="color:{};font-weight:bold" title="{}">{} {}</span>',
                       _COLOURS[tone], text, symbol, text)


def run_each(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    objects: Iterable[Any],
    service: Callable[[Any], Any],
    done: Any,
    failed: Any,
) -> int:
    """Call ``service`` on each object; report each failure and count the successes.

    ``done`` is an ``ngettext_lazy`` message keyed on ``count``; ``failed`` a message with
    ``%(object)s`` and ``%(reason)s``.
    """
    count = 0
    for obj in objects:
        try:
            service(obj)
        except BackendError as exc:
            logger.warning("Admin action on %s by %s failed: %s", obj, request.user, exc)
            modeladmin.message_user(request, failed % {"object": obj, "reason": exc}, level=messages.ERROR)
        else:
            count += 1
    if count:
        modeladmin.message_user(request, done % {"count": count}, level=messages.SUCCESS)
    return count


if TYPE_CHECKING:  # the mixins below are for ModelAdmin subclasses; typed as one
    _AdminBase = admin.ModelAdmin
else:
    _AdminBase = object


class AuditedAdminMixin(_AdminBase):
    """Every view of this model admin acts as the signed-in staff member, through the admin,
    for the audit log; saving a row through a form is recorded too (field names, no values).

    The audit context is set on :attr:`urls`, the list the admin site includes, so every
    view is covered: Django's own, their actions, and any a subclass adds in ``get_urls``
    (clone, commit, move), whatever order it puts them in.
    """

    @property
    def urls(self) -> list:
        return _audited_patterns(self.get_urls())

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        audit.record(f"{obj._meta.model_name}.{'change' if change else 'add'}", obj,
                     details={"fields": sorted(form.changed_data)})

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        if hasattr(self, "service_delete"):  # the service records it
            super().delete_model(request, obj)
            return
        described = audit.describe(obj)
        super().delete_model(request, obj)
        audit.record(f"{obj._meta.model_name}.delete", None, **described)  # type: ignore[arg-type]


def _audited_patterns(patterns: list) -> list:
    """``patterns`` with every view (in included lists too) run inside the admin's audit context."""
    for pattern in patterns:
        callback = getattr(pattern, "callback", None)
        if callback is not None and getattr(callback, "audit_via", None) != audit.VIA_ADMIN:
            pattern.callback = _acting_in_admin(callback)
        nested = getattr(pattern, "url_patterns", None)
        if isinstance(nested, list):
            _audited_patterns(nested)
    return patterns


def _acting_in_admin(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    return audit.entry_point(audit.VIA_ADMIN)(view)


class _DeleteFailed(Exception):
    """Raised out of ``delete_model`` (and its transaction) when the service refused."""

    def __init__(self, obj: Any, error: BackendError) -> None:
        super().__init__(str(error))
        self.obj, self.error = obj, error


class ServiceDeleteMixin(_AdminBase):
    """Deleting from the admin goes through a service that removes the real thing first.

    The admin's own delete (the change page's "Delete" and the "delete selected" action)
    calls ``service_delete``; a failure keeps the row and shows why.
    """

    #: ``staticmethod(services.delete_...)`` in each subclass.
    service_delete: Callable[[Any], None]
    delete_done = ngettext_lazy("%(count)d object deleted.", "%(count)d objects deleted.", "count")
    delete_failed = _("Could not delete %(object)s: %(reason)s")

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        try:
            self.service_delete(obj)
        except BackendError as exc:
            raise _DeleteFailed(obj, exc) from exc

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: dict | None = None) -> HttpResponse:
        try:
            return super().delete_view(request, object_id, extra_context)
        except _DeleteFailed as failure:  # the transaction (and its log entry) was rolled back
            logger.warning("Admin delete of %s by %s failed: %s", failure.obj, request.user, failure.error)
            audit.record(f"{self.model._meta.model_name}.delete", failure.obj, error=failure.error)
            self.message_user(request, self.delete_failed % {"object": failure.obj, "reason": failure.error},
                              level=messages.ERROR)
            return HttpResponseRedirect(_change_url(self, failure.obj))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        """Delete object by object: each with its log entry, in its own transaction."""

        def delete(obj: Any) -> None:
            try:
                with transaction.atomic(using=router.db_for_write(self.model)):
                    self.log_deletions(request, [obj])  # type: ignore[arg-type]  # Django only iterates it
                    self.service_delete(obj)  # a BackendError rolls the log entry back
            except BackendError as exc:  # ... and the audit entry with it: record it again
                audit.record(f"{self.model._meta.model_name}.delete", obj, error=exc)
                raise

        run_each(self, request, list(queryset), delete, self.delete_done, self.delete_failed)

    @admin.action(permissions=["delete"], description=_("Delete selected %(verbose_name_plural)s"))
    def delete_selected(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        """Django's confirmation page, then the delete through the service."""
        if request.POST.get("post"):
            _objects, _counts, perms_needed, protected = self.get_deleted_objects(queryset, request)
            if perms_needed or not self.has_delete_permission(request):
                raise PermissionDenied
            if not protected:
                self.delete_queryset(request, queryset)
                return None
        return django_delete_selected(self, request, queryset)


def _change_url(modeladmin: admin.ModelAdmin, obj: Any) -> str:
    opts = obj._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[quote(obj.pk)],
                   current_app=modeladmin.admin_site.name)
