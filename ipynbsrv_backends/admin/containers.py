"""Users' containers in the admin: every lifecycle step as an action and as a button, and
clone, commit and move pages.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext_lazy

from .. import services
from ..errors import BackendError
from ..forms import (
    ContainerCloneForm,
    ContainerCommitForm,
    ContainerCreateForm,
    ContainerMoveForm,
)
from ..models import Container, Snapshot, with_move_target
from .flat import FewRelatedFilter, FlatListMixin
from .mixins import AuditedAdminMixin, ServiceDeleteMixin, _badge, _change_url, run_each
from .quotas import quotas_view

logger = logging.getLogger("ipynbsrv_backends.admin")  # one logger for the whole admin, as before the split

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
class ContainerAdmin(AuditedAdminMixin, ServiceDeleteMixin, FlatListMixin, admin.ModelAdmin):
    """Users' containers: every lifecycle step as an action and as a button."""

    service_delete = staticmethod(services.delete_container)
    delete_done = ngettext_lazy("%(count)d container deleted.", "%(count)d containers deleted.", "count")

    list_display = ["name", "owner", "node", "status_badge", "image_display", "url_link", "created_at"]
    list_display_links = ["name"]
    list_filter = ["status", ("node", FewRelatedFilter), ("image", FewRelatedFilter)]
    search_fields = ["name", "owner__username", "node__name", "backend_pk", "image_ref"]
    list_select_related = ["owner", "node", "image"]
    date_hierarchy = "created_at"
    actions = [*(_lifecycle_action(step) for step in LIFECYCLE), "delete_selected"]
    change_form_template = "admin/ipynbsrv_backends/container/change_form.html"
    step_form_template = "admin/ipynbsrv_backends/container/step_form.html"
    change_list_template = "admin/ipynbsrv_backends/container/change_list.html"  # adds the quotas link
    fieldsets = [
        (None, {"fields": ["owner", "name", "node", "status_badge", "url_link", "image", "image_ref", "clone_of"]}),
        (_("On the node"), {"fields": ["backend_pk", "ports", "volumes", "base_url", "options", "last_error",
                                       "last_event", "last_event_at", "recent_events"]}),
        (_("Times"), {"fields": ["created_at", "updated_at", "status_checked_at"]}),
        (_("Idle culling"), {"fields": ["last_activity", "cull_reason", "culled_at"]}),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return with_move_target(super().get_queryset(request))  # its progress asks nothing per row

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

    @admin.display(description=_("recent events"))
    def recent_events(self, obj: Container) -> str:
        """Its node's last engine events (ipynbsrv_events), newest first."""
        events = list(obj.events.order_by("-id")[:10]) if obj.pk else []
        if not events:
            return "-"
        return format_html_join(mark_safe("<br>"), "{} {}", ((e.when.strftime("%Y-%m-%d %H:%M:%S"), e.message)
                                                             for e in events))

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
        obj = self.get_object(request, unquote(object_id))
        # what the node's backend cannot do is not offered, and the page says why
        unsupported = services.unsupported_actions(obj.node) if obj is not None else {}
        context = {
            "show_save": False, "show_save_and_continue": False, "show_save_and_add_another": False,
            "lifecycle_buttons": [(step.name, step.button) for step in LIFECYCLE if step.name not in unsupported],
            "unsupported": unsupported,
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
            path("quotas/", wrap(self.quotas_view), name="ipynbsrv_backends_container_quotas"),
            path("<path:object_id>/clone/", wrap(self.clone_view), name="ipynbsrv_backends_container_clone"),
            path("<path:object_id>/commit/", wrap(self.commit_view), name="ipynbsrv_backends_container_commit"),
            path("<path:object_id>/move/", wrap(self.move_view), name="ipynbsrv_backends_container_move"),
            *super().get_urls(),
        ]

    def quotas_view(self, request: HttpRequest) -> HttpResponse:
        """Each user's limits and usage (read only)."""
        return quotas_view(self, request)

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
