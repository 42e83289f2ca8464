"""The master in the Django admin: nodes, backends, containers, images and snapshots.

Every action goes through :mod:`ipynbsrv_backends.services`. Actions on several objects
work object by object: a :class:`~ipynbsrv_backends.errors.BackendError` is reported for the
object it happened to, with its reason, and the others go on; the successes are counted.
No backend failure turns into a server error.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.actions import delete_selected as django_delete_selected
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.db import router, transaction
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.defaultfilters import filesizeformat, truncatechars
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext_lazy

from . import audit, services
from .contract import BACKEND_STATUS_ERROR, BACKEND_STATUS_OK, BACKEND_STATUS_STOPPED
from .errors import BackendError
from .forms import (
    BackendForm,
    ContainerCloneForm,
    ContainerCommitForm,
    ContainerCreateForm,
    ContainerMoveForm,
    NodeForm,
)
from .models import AuditEntry, Backend, Container, Image, Node, Snapshot
from .registry import mask_config

logger = logging.getLogger(__name__)

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


# ---------------------------------------------------------------------------- backends

@admin.register(Backend)
class BackendAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """Which backend class nodes use, and its configuration (secrets masked)."""

    form = BackendForm
    list_display = ["name", "kind", "node_count", "masked_config", "updated_at"]
    list_filter = ["kind"]
    search_fields = ["name", "kind"]
    readonly_fields = ["created_at", "updated_at"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(node_count=Count("nodes"))

    @admin.display(description=_("nodes"), ordering="node_count")
    def node_count(self, obj: Backend) -> int:
        return getattr(obj, "node_count", 0)

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
class NodeAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """The machines that run containers: health, load and placement flags."""

    form = NodeForm
    list_display = ["name", "address", "backend", "enabled", "draining", "in_use", "capacity", "health",
                    "last_seen", "short_error"]
    list_filter = ["enabled", "draining", "last_status", "backend"]
    search_fields = ["name", "address"]
    list_select_related = ["backend"]
    actions = ["check_health", "enable", "disable", "drain", "undrain", "refresh_containers", "rotate_signing_key"]
    fieldsets = [
        (None, {"fields": ["name", "address", "backend", "backend_config", "effective_config"]}),
        (_("Placement"), {"fields": ["enabled", "draining", "capacity"]}),
        (_("Health"), {"fields": ["health", "last_checked", "last_seen", "last_error", "resources"]}),
    ]
    readonly_fields = ["effective_config", "health", "last_checked", "last_seen", "last_error", "resources"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        active = Q(containers__status__in=Container.ACTIVE)
        return super().get_queryset(request).annotate(in_use=Count("containers", filter=active))

    @admin.display(description=_("containers in use"), ordering="in_use")
    def in_use(self, obj: Node) -> int:
        return getattr(obj, "in_use", 0)

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
        from .keys import rotate_signing_key

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


# ---------------------------------------------------------------------------- containers

_STATUS_TONES: dict[str, str] = {
    Container.Status.RUNNING: "ok",
    Container.Status.STOPPED: "none",
    Container.Status.SUSPENDED: "warn",
    Container.Status.CREATING: "warn",
    Container.Status.ERROR: "bad",
    Container.Status.LOST: "bad",
}


def snapshot_name() -> str:
    """The name of a snapshot taken from the admin: ``snap-YYYYmmdd-HHMMSS`` (UTC)."""
    return timezone.now().strftime("snap-%Y%m%d-%H%M%S")


def _take_snapshot(container: Container) -> Any:
    return services.create_snapshot(container, snapshot_name(), description=str(_("Taken from the admin.")))


def _refresh(container: Container) -> Any:
    return services.refresh_container(container)


def _move(container: Container) -> Any:
    return services.move_container(container)


@dataclass(frozen=True)
class Step:
    """A lifecycle step: an admin action on the change list and a button on the change page."""

    name: str
    service: Callable[[Container], Any]
    button: Any
    action: Any
    done: Any  # ngettext_lazy keyed on "count"
    failed: Any  # with %(object)s and %(reason)s


LIFECYCLE: list[Step] = [
    Step("start", services.start_container, _("Start"), _("Start selected containers"),
         ngettext_lazy("%(count)d container started.", "%(count)d containers started.", "count"),
         _("Could not start %(object)s: %(reason)s")),
    Step("stop", services.stop_container, _("Stop"), _("Stop selected containers"),
         ngettext_lazy("%(count)d container stopped.", "%(count)d containers stopped.", "count"),
         _("Could not stop %(object)s: %(reason)s")),
    Step("restart", services.restart_container, _("Restart"), _("Restart selected containers"),
         ngettext_lazy("%(count)d container restarted.", "%(count)d containers restarted.", "count"),
         _("Could not restart %(object)s: %(reason)s")),
    Step("suspend", services.suspend_container, _("Suspend"), _("Suspend selected containers (freeze, keep memory)"),
         ngettext_lazy("%(count)d container suspended.", "%(count)d containers suspended.", "count"),
         _("Could not suspend %(object)s: %(reason)s")),
    Step("resume", services.resume_container, _("Resume"), _("Resume selected containers"),
         ngettext_lazy("%(count)d container resumed.", "%(count)d containers resumed.", "count"),
         _("Could not resume %(object)s: %(reason)s")),
    Step("snapshot", _take_snapshot, _("Take a snapshot"), _("Take a snapshot of selected containers"),
         ngettext_lazy("%(count)d snapshot taken.", "%(count)d snapshots taken.", "count"),
         _("Could not take a snapshot of %(object)s: %(reason)s")),
    Step("move", _move, _("Move to another node"),
         _("Move selected containers to another node (placement picks it)"),
         ngettext_lazy("%(count)d container moved.", "%(count)d containers moved.", "count"),
         _("Could not move %(object)s: %(reason)s")),
    Step("refresh", _refresh, _("Refresh status"), _("Refresh the status of selected containers from their nodes"),
         ngettext_lazy("Status of %(count)d container refreshed.", "Status of %(count)d containers refreshed.",
                       "count"),
         _("Could not refresh %(object)s: %(reason)s")),
]
_LIFECYCLE = {step.name: step for step in LIFECYCLE}


def _lifecycle_action(step: Step) -> Callable[..., None]:
    def action(modeladmin: ContainerAdmin, request: HttpRequest, queryset: QuerySet) -> None:
        objects = queryset.select_related("node__backend", "owner")
        run_each(modeladmin, request, objects, step.service, step.done, step.failed)

    action.__name__ = f"{step.name}_containers"
    return admin.action(permissions=["change"], description=step.action)(action)


@admin.register(Container)
class ContainerAdmin(AuditedAdminMixin, ServiceDeleteMixin, admin.ModelAdmin):
    """Users' containers: every lifecycle step as an action and as a button."""

    service_delete = staticmethod(services.delete_container)
    delete_done = ngettext_lazy("%(count)d container deleted.", "%(count)d containers deleted.", "count")

    list_display = ["name", "owner", "node", "status_badge", "image_display", "url_link", "created_at"]
    list_display_links = ["name"]
    list_filter = ["status", "node", ("image", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["name", "owner__username", "node__name", "backend_pk", "image_ref"]
    list_select_related = ["owner", "node", "image"]
    date_hierarchy = "created_at"
    actions = [*(_lifecycle_action(step) for step in LIFECYCLE), "delete_selected"]
    change_form_template = "admin/ipynbsrv_backends/container/change_form.html"
    step_form_template = "admin/ipynbsrv_backends/container/step_form.html"
    fieldsets = [
        (None, {"fields": ["owner", "name", "node", "status_badge", "url_link", "image", "image_ref", "clone_of"]}),
        (_("On the node"), {"fields": ["backend_pk", "ports", "volumes", "base_url", "options", "last_error"]}),
        (_("Times"), {"fields": ["created_at", "updated_at", "status_checked_at"]}),
    ]

    def get_readonly_fields(self, request: HttpRequest, obj: Container | None = None) -> list[str]:
        # The record mirrors the node: it changes only through the lifecycle steps.
        return [str(name) for _title, options in self.fieldsets for name in options["fields"]]

    def get_inlines(self, request: HttpRequest, obj: Container | None) -> list[type]:
        return [SnapshotInline] if obj is not None else []

    @admin.display(description=_("status"), ordering="status")
    def status_badge(self, obj: Container) -> str:
        badge = _badge(obj.get_status_display(), _STATUS_TONES.get(obj.status, "none"))
        progress = obj.progress
        if progress:
            badge = format_html('{} <small class="ipynbsrv-progress">{}…</small>', badge, progress)
        if obj.last_error:
            return format_html('{} <span title="{}">⚠</span>', badge, obj.last_error)
        return badge

    @admin.display(description=_("image"), ordering="image__name")
    def image_display(self, obj: Container) -> str:
        return str(obj.image) if obj.image is not None else obj.image_ref

    @admin.display(description=_("URL"))
    def url_link(self, obj: Container) -> str:
        """Its base URL on this site (through the proxy); where the node serves it, as a hint."""
        if not obj.url:
            return "-"
        return format_html('<a href="{}" title="{}" target="_blank" rel="noopener noreferrer">{}</a>',
                           obj.base_url, _("on the node: {}").format(obj.url), obj.base_url)

    # ------------------------------------------------------------ add: through the service

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: dict | None = None) -> HttpResponse:
        """Ask owner, name, image and (optionally) node; ``services.create_container`` places,
        creates and records it. Not inside a transaction: placement commits its reservation
        before the node is asked, as it does for the API."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = ContainerCreateForm(request.POST or None, initial=self.get_changeform_initial_data(request))
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                container = services.create_container(
                    data["owner"], data["name"], image=data["image"], node=data["node"], options=data["options"],
                    allow_draining=data["allow_draining"])
            except BackendError as exc:
                logger.warning("Admin create of %s/%s by %s failed: %s", data["owner"], data["name"], request.user, exc)
                form.add_error(None, str(exc))
            else:
                self.log_addition(request, container, [{"added": {}}])
                return self.response_add(request, container)
        fieldsets = [(None, {"fields": list(form.fields)})]
        adminform = helpers.AdminForm(form, fieldsets, {}, model_admin=self)  # type: ignore[arg-type]
        context = {
            **self.admin_site.each_context(request),
            "title": _("Add container"),
            "subtitle": None,
            "adminform": adminform,
            "object_id": None,
            "original": None,
            "is_popup": False,
            "to_field": None,
            "media": self.media + adminform.media,
            "inline_admin_formsets": [],
            "errors": helpers.AdminErrorList(form, []),  # type: ignore[arg-type]
            "preserved_filters": self.get_preserved_filters(request),
            **(extra_context or {}),
        }
        return self.render_change_form(request, context, add=True, form_url=form_url)

    # ------------------------------------------------------------ change page: buttons

    def change_view(self, request: HttpRequest, object_id: str, form_url: str = "",
                    extra_context: dict | None = None) -> HttpResponse:
        if request.method == "POST" and "_container_step" in request.POST:
            return self._run_step(request, object_id, request.POST["_container_step"])
        context = {
            "show_save": False, "show_save_and_continue": False, "show_save_and_add_another": False,
            "lifecycle_buttons": [(step.name, step.button) for step in LIFECYCLE],
            **(extra_context or {}),
        }
        return super().change_view(request, object_id, form_url, context)

    def _get_or_redirect(self, request: HttpRequest, object_id: str) -> Container | HttpResponse:
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            return self._get_obj_does_not_exist_redirect(  # type: ignore[attr-defined]
                request, self.opts, object_id)
        if not self.has_change_permission(request, obj):
            raise PermissionDenied
        return obj

    def _run_step(self, request: HttpRequest, object_id: str, step: str) -> HttpResponse:
        obj = self._get_or_redirect(request, object_id)
        if isinstance(obj, HttpResponse):
            return obj
        if step.startswith("restore:"):
            key = step.partition(":")[2]
            snapshot = obj.snapshots.filter(pk=key).first() if key.isdigit() else None
            if snapshot is None:
                self.message_user(request, _("No such snapshot of %(object)s.") % {"object": obj}, messages.ERROR)
            else:
                run_each(self, request, [obj], lambda c: services.restore_snapshot(c, snapshot),
                         ngettext_lazy("%(count)d container restored.", "%(count)d containers restored.", "count"),
                         _("Could not restore %(object)s: %(reason)s"))
        elif step in _LIFECYCLE:
            known = _LIFECYCLE[step]
            run_each(self, request, [obj], known.service, known.done, known.failed)
        else:
            self.message_user(request, _("Unknown step %(step)r.") % {"step": step}, messages.ERROR)
        return HttpResponseRedirect(request.path)

    # ------------------------------------------------------------ clone and commit

    def get_urls(self) -> list:
        wrap = self.admin_site.admin_view
        return [
            path("<path:object_id>/clone/", wrap(self.clone_view), name="ipynbsrv_backends_container_clone"),
            path("<path:object_id>/commit/", wrap(self.commit_view), name="ipynbsrv_backends_container_commit"),
            path("<path:object_id>/move/", wrap(self.move_view), name="ipynbsrv_backends_container_move"),
            *super().get_urls(),
        ]

    def _step_form_page(self, request: HttpRequest, obj: Container, form: Any, title: Any, submit: Any) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "subtitle": str(obj),
            "opts": self.opts,
            "original": obj,
            "form": form,
            "submit_label": submit,
            "media": self.media + form.media,
            "has_view_permission": True,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, self.step_form_template, context)

    def clone_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """A new container from this one's current filesystem (on its node unless another is picked)."""
        source = self._get_or_redirect(request, object_id)
        if isinstance(source, HttpResponse):
            return source
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = ContainerCloneForm(request.POST or None, initial={"owner": source.owner_id,
                                                                  "name": f"{source.name}-copy"})
        if request.method == "POST" and form.is_valid():
            try:
                data = form.cleaned_data
                extra = {"node": data["node"]} if data["node"] is not None else {}
                clone = services.clone_container(source, data["owner"], data["name"],
                                                 allow_draining=data["allow_draining"], **extra)
            except BackendError as exc:
                form.add_error(None, str(exc))
            else:
                self.log_addition(request, clone, [{"added": {}}])
                self.message_user(request, _("%(clone)s was cloned from %(source)s.") % {
                    "clone": clone, "source": source}, messages.SUCCESS)
                return HttpResponseRedirect(_change_url(self, clone))
        return self._step_form_page(request, source, form, _("Clone container"), _("Clone"))

    def move_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Move the container to another node (stop, commit, push, recreate, remove the old)."""
        container = self._get_or_redirect(request, object_id)
        if isinstance(container, HttpResponse):
            return container
        if not self.has_change_permission(request, container):
            raise PermissionDenied
        form = ContainerMoveForm(request.POST or None)
        node_field: Any = form.fields["node"]  # a ModelChoiceField
        node_field.queryset = node_field.queryset.exclude(pk=container.node_id)
        if request.method == "POST" and form.is_valid():
            origin = container.node
            try:
                services.move_container(container, form.cleaned_data["node"],
                                        allow_draining=form.cleaned_data["allow_draining"])
            except BackendError as exc:
                form.add_error(None, str(exc))
            else:
                self.log_change(request, container, [{"changed": {"fields": ["node"]}}])
                self.message_user(request, _("%(object)s was moved from %(origin)s to %(target)s.") % {
                    "object": container, "origin": origin, "target": container.node}, messages.SUCCESS)
                return HttpResponseRedirect(_change_url(self, container))
        return self._step_form_page(request, container, form, _("Move container to another node"), _("Move"))

    def commit_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Commit the container's filesystem to an image its owner can start containers from."""
        container = self._get_or_redirect(request, object_id)
        if isinstance(container, HttpResponse):
            return container
        form = ContainerCommitForm(request.POST or None, initial={"name": container.name})
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                image = services.commit_container(container, data["name"], public=data["public"],
                                                  description=data["description"])
            except BackendError as exc:
                form.add_error(None, str(exc))
            else:
                self.message_user(request, _("%(object)s was committed to the image %(image)s.") % {
                    "object": container, "image": image}, messages.SUCCESS)
                return HttpResponseRedirect(_change_url(self, image))
        return self._step_form_page(request, container, form, _("Commit container to an image"), _("Commit"))


class SnapshotInline(admin.TabularInline):
    """A container's snapshots, each with a restore button (restoring is a lifecycle step)."""

    model = Snapshot
    extra = 0
    can_delete = False
    readonly_fields = ["name", "description", "created_at", "restore_button"]
    fields = tuple(readonly_fields)
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description=_("restore"))
    def restore_button(self, obj: Snapshot) -> str:
        return format_html('<button type="submit" class="button" name="_container_step" value="restore:{}">{}</button>',
                           obj.pk, _("Restore"))


# ---------------------------------------------------------------------------- images

@admin.register(Image)
class ImageAdmin(AuditedAdminMixin, ServiceDeleteMixin, admin.ModelAdmin):
    """Base images an operator registers, and images users committed (mostly read-only)."""

    service_delete = staticmethod(services.delete_image)
    delete_done = ngettext_lazy("%(count)d image deleted.", "%(count)d images deleted.", "count")

    list_display = ["name", "ref", "kind", "owner", "public", "node", "size_display", "containers_count",
                    "created_at"]
    list_filter = ["public", ("owner", admin.EmptyFieldListFilter), "node"]
    search_fields = ["name", "ref", "owner__username", "description"]
    list_select_related = ["owner", "node"]
    actions = ["delete_selected"]
    base_fields = ["name", "ref", "public", "description"]
    committed_fields = ["name", "ref", "owner", "public", "description", "node", "source", "size", "created_at"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(containers_count=Count("containers"))

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
    def containers_count(self, obj: Image) -> int:
        return getattr(obj, "containers_count", 0)


# ---------------------------------------------------------------------------- snapshots

@admin.register(Snapshot)
class SnapshotAdmin(AuditedAdminMixin, ServiceDeleteMixin, admin.ModelAdmin):
    """Snapshots of containers: restore or delete them through the service layer."""

    service_delete = staticmethod(services.delete_snapshot)
    delete_done = ngettext_lazy("%(count)d snapshot deleted.", "%(count)d snapshots deleted.", "count")

    list_display = ["name", "container", "node", "description", "created_at"]
    list_filter = [("container__node", admin.RelatedOnlyFieldListFilter), "created_at"]
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
class AuditEntryAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """The audit log, read-only: nobody adds, changes or deletes an entry."""

    list_display = ["when", "actor_display", "via", "action", "target", "node", "result_badge"]
    list_filter = ["via", "result", "action", "node", ("when", admin.DateFieldListFilter)]
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
