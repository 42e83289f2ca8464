"""What the master records: nodes, their backends, and every user's containers, images and
snapshots.

The rows are the master's view; the nodes hold the truth. The service layer
(:mod:`ipynbsrv_backends.services`) keeps the two in step, and the ``ipynbsrv_reconcile``
command reports and repairs drift.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator, RegexValidator
from django.db import DatabaseError, models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .contract import BACKEND_STATUS_ERROR, BACKEND_STATUS_OK, BACKEND_STATUS_STOPPED
from .validation import NAME_MAX, NAME_RE

name_validator = RegexValidator(
    NAME_RE,
    _("Use lower-case letters and digits, optionally separated by single '-', '_' or '.'."),
)


# ---------------------------------------------------------------------------- querysets
# The questions the service layer, the admin and the users' API ask of the rows, each
# written once.

class NodeQuerySet(models.QuerySet["Node"]):
    def open(self) -> NodeQuerySet:
        """Nodes that take new containers: enabled and not draining (health aside)."""
        return self.filter(enabled=True, draining=False)


class ImageQuerySet(models.QuerySet["Image"]):
    def usable_by(self, user: Any) -> ImageQuerySet:
        """The images ``user`` may start containers from: base and public images and their
        own, or every image for staff."""
        if user.is_staff:
            return self.all()
        return self.filter(models.Q(public=True) | models.Q(owner__isnull=True) | models.Q(owner=user))


class ContainerQuerySet(models.QuerySet["Container"]):
    def visible_to(self, user: Any) -> ContainerQuerySet:
        """The containers ``user`` may see: their own, or every one for staff."""
        return self if user.is_staff else self.filter(owner=user)

    def active(self) -> ContainerQuerySet:
        """Containers that count against their node's capacity and their owner's quota (every
        status but ``lost``)."""
        return self.filter(status__in=Container.ACTIVE)

    def moving(self) -> ContainerQuerySet:
        """Containers with a move in progress (or an interrupted one left to reconcile)."""
        return self.filter(pending_move__isnull=False)

    def load_by_node(self, node_pks: Iterable[int]) -> dict[int, int]:
        """How many active containers each of the nodes ``node_pks`` holds (absent: none)."""
        rows = self.active().filter(node__in=list(node_pks)).values("node").annotate(n=models.Count("pk"))
        return {row["node"]: row["n"] for row in rows}


class Backend(models.Model):
    """A backend class (from the allow-list in settings) and its configuration.

    One backend may serve many nodes: string values of the configuration may use
    ``{name}`` and ``{address}``, filled in with each node's own, and a node can override
    single keys (a per-node token, say).
    """

    name = models.CharField(_("name"), max_length=100, unique=True)
    kind = models.CharField(
        _("backend class"), max_length=100,
        help_text=_("One of the classes allowed in the IPYNBSRV_BACKENDS['BACKEND_CLASSES'] setting."),
    )
    config = models.JSONField(
        _("configuration"), default=dict, blank=True,
        help_text=_("Constructor arguments as a JSON object, e.g. {\"url\": \"http://{address}:8080\"}."),
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = _("backend")
        verbose_name_plural = _("backends")

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"

    def clean(self) -> None:
        from .registry import validate_backend_config

        validate_backend_config(self.kind, self.config, field="config")


class Node(models.Model):
    """A machine that runs containers, reached through its backend."""

    HEALTH_CHOICES = [
        (BACKEND_STATUS_OK, _("ok")),
        (BACKEND_STATUS_STOPPED, _("stopped")),
        (BACKEND_STATUS_ERROR, _("error")),
    ]

    name = models.SlugField(_("name"), max_length=100, unique=True)
    address = models.CharField(
        _("internal address"), max_length=255,
        help_text=_("The node's address on the internal network; published container ports are bound to it."),
    )
    backend = models.ForeignKey(Backend, on_delete=models.PROTECT, related_name="nodes", verbose_name=_("backend"))
    backend_config = models.JSONField(
        _("backend configuration overrides"), default=dict, blank=True,
        help_text=_("Keys that override the backend's configuration for this node only."),
    )
    enabled = models.BooleanField(_("enabled"), default=True, help_text=_("Disabled nodes get no new containers."))
    draining = models.BooleanField(
        _("draining"), default=False,
        help_text=_("A draining node keeps its containers but gets no new ones."),
    )
    capacity = models.PositiveIntegerField(
        _("capacity"), default=50, validators=[MinValueValidator(1)],
        help_text=_("The most containers this node may hold."),
    )
    last_status = models.SmallIntegerField(_("health"), choices=HEALTH_CHOICES, null=True, blank=True)
    last_checked = models.DateTimeField(_("health checked"), null=True, blank=True)
    last_seen = models.DateTimeField(_("last seen healthy"), null=True, blank=True)
    last_error = models.TextField(_("last error"), blank=True)
    resources = models.JSONField(_("resources"), default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = NodeQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        verbose_name = _("node")
        verbose_name_plural = _("nodes")

    def __str__(self) -> str:
        return self.name

    @property
    def is_healthy(self) -> bool:
        return self.last_status == BACKEND_STATUS_OK

    def effective_config(self) -> dict[str, Any]:
        """The backend configuration with this node's overrides and placeholders applied."""
        merged = {**(self.backend.config or {}), **(self.backend_config or {})}
        return {key: _fill(value, name=self.name, address=self.address) for key, value in merged.items()}

    def clean(self) -> None:
        if self.backend_id is not None:
            from .registry import validate_backend_config

            validate_backend_config(self.backend.kind, self.effective_config(), field="backend_config")


def _fill(value: Any, **names: str) -> Any:
    if isinstance(value, str):
        for key, replacement in names.items():
            value = value.replace("{" + key + "}", replacement)
        return value
    if isinstance(value, list):
        return [_fill(item, **names) for item in value]
    if isinstance(value, dict):
        return {key: _fill(item, **names) for key, item in value.items()}
    return value


class Image(models.Model):
    """An image users may start containers from: a base image an operator registered, or
    one a user committed from a container."""

    name = models.CharField(_("name"), max_length=200)
    ref = models.CharField(_("image reference"), max_length=512, help_text=_("The backend's pk of the image."))
    description = models.TextField(_("description"), blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True,
        related_name="ipynbsrv_images", verbose_name=_("owner"),
        help_text=_("Empty for a base image everyone may use."),
    )
    public = models.BooleanField(_("public"), default=False, help_text=_("Everyone may start containers from it."))
    node = models.ForeignKey(
        Node, on_delete=models.PROTECT, null=True, blank=True, related_name="images",
        help_text=_("The node that holds a committed image; empty when every node can get it."),
    )
    source = models.ForeignKey(
        "Container", on_delete=models.SET_NULL, null=True, blank=True, related_name="committed_images",
    )
    size = models.BigIntegerField(_("size"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    objects = ImageQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        verbose_name = _("image")
        verbose_name_plural = _("images")
        constraints = [
            models.UniqueConstraint(fields=["ref", "node"], name="ipynbsrv_image_ref_node_unique"),
            models.UniqueConstraint(fields=["ref"], condition=models.Q(node__isnull=True),
                                    name="ipynbsrv_image_ref_unique_everywhere"),
        ]

    def __str__(self) -> str:
        return self.name

    def usable_by(self, user: Any) -> bool:
        return self.public or self.owner_id is None or self.owner_id == user.pk or user.is_staff


class Container(models.Model):
    """A user's container on a node."""

    class Status(models.TextChoices):
        CREATING = "creating", _("creating")
        RUNNING = "running", _("running")
        STOPPED = "stopped", _("stopped")
        SUSPENDED = "suspended", _("suspended")
        ERROR = "error", _("error")
        LOST = "lost", _("lost")

    #: Statuses that count against a node's capacity.
    ACTIVE = (Status.CREATING, Status.RUNNING, Status.STOPPED, Status.SUSPENDED, Status.ERROR)

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="ipynbsrv_containers",
        verbose_name=_("owner"),
    )
    name = models.CharField(_("name"), max_length=NAME_MAX, validators=[name_validator])
    node = models.ForeignKey(Node, on_delete=models.PROTECT, related_name="containers", verbose_name=_("node"))
    backend_pk = models.CharField(_("backend pk"), max_length=512, blank=True)
    image = models.ForeignKey(
        Image, on_delete=models.SET_NULL, null=True, blank=True, related_name="containers", verbose_name=_("image"),
    )
    image_ref = models.CharField(_("image reference"), max_length=512, blank=True)
    clone_of = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="clones", verbose_name=_("clone of"),
    )
    status = models.CharField(_("status"), max_length=16, choices=Status.choices, default=Status.CREATING)
    ports = models.JSONField(_("ports"), default=list, blank=True)
    volumes = models.JSONField(_("volumes"), default=list, blank=True)
    base_url = models.CharField(_("base URL"), max_length=2048, blank=True)
    options = models.JSONField(_("options"), default=dict, blank=True)
    last_error = models.TextField(_("last error"), blank=True)
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated"), auto_now=True)
    status_checked_at = models.DateTimeField(_("status checked"), null=True, blank=True)
    access_secret = models.CharField(
        _("access secret"), max_length=128, blank=True, editable=False,
        help_text=_("What the notebook server in the container requires of every request; the proxy "
                    "adds it for the owner. Never shown."),
    )
    progress_detail = models.CharField(
        _("progress detail"), max_length=255, blank=True, editable=False,
        help_text=_("What its creation is doing now, e.g. how far the node got pulling the image."),
    )
    error_code = models.CharField(
        _("error code"), max_length=64, blank=True, editable=False,
        help_text=_("The machine code of the error that ended its creation in the background "
                    "(image_not_found, backend_unavailable, ...); empty otherwise."),
    )
    last_activity = models.DateTimeField(
        _("last activity"), null=True, blank=True, editable=False,
        help_text=_("The latest use the master knows of: a request through the proxy, or its notebook "
                    "server's own last activity (kernels, terminals, its API)."),
    )
    cull_reason = models.CharField(
        _("idle culling"), max_length=255, blank=True, editable=False,
        help_text=_("What the idle policy did to it and why, e.g. 'suspended after 2 h idle'; cleared "
                    "when it is started or resumed."),
    )
    culled_at = models.DateTimeField(_("culled at"), null=True, blank=True, editable=False)
    last_event = models.CharField(
        _("last event"), max_length=255, blank=True, editable=False,
        help_text=_("What its node's engine last said happened to it, in words (ipynbsrv_events)."),
    )
    last_event_at = models.DateTimeField(_("last event at"), null=True, blank=True, editable=False)
    pending_move = models.JSONField(
        _("move in progress"), null=True, blank=True, editable=False,
        help_text=_("How far an unfinished move got; ipynbsrv_reconcile finishes or rolls it back."),
    )

    kept_until = models.DateTimeField(
        _("proxy may keep until"), null=True, blank=True, editable=False,
        help_text=_("Until when the proxy may still hold an allowing answer with its address; a "
                    "suspend waits for it (services/proxykeep.py)."),
    )
    suspending_since = models.DateTimeField(_("suspending since"), null=True, blank=True, editable=False)

    objects = ContainerQuerySet.as_manager()

    #: Written only by query (services/proxykeep.py): a full save() of an older copy of the row
    #: must not undo them.
    BY_QUERY_ONLY = ("kept_until", "suspending_since")

    class Meta:
        # By the owner's id, not the username: the unique (owner, name) index serves it, so no
        # query joins the users' table just to sort (the proxy's lookup, the admin's list).
        ordering = ["owner_id", "name"]
        verbose_name = _("container")
        verbose_name_plural = _("containers")
        constraints = [
            models.UniqueConstraint(fields=["owner", "name"], name="ipynbsrv_container_owner_name_unique"),
        ]
        indexes = [
            # The proxy's lookup by base URL (on MySQL the migration makes it a prefix index).
            models.Index(fields=["base_url"], name="ipynbsrv_container_base_url"),
            # The admin's date hierarchy: its bounds and ranges.
            models.Index(fields=["created_at"], name="ipynbsrv_container_created"),
        ]

    def __str__(self) -> str:
        return f"{self.owner}/{self.name}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Like Django's, but a full save of a row that exists leaves :attr:`BY_QUERY_ONLY` alone."""
        if not args and kwargs.get("update_fields") is None and not kwargs.get("force_insert") \
                and not self._state.adding and self.pk is not None:
            fields = [f.name for f in self._meta.concrete_fields
                      if not f.primary_key and f.name not in self.BY_QUERY_ONLY]
            try:
                super().save(**{**kwargs, "update_fields": fields})
                return
            except DatabaseError as exc:  # the row is gone: Django's full save inserts it again
                if "did not affect any rows" not in str(exc):
                    raise
        super().save(*args, **kwargs)

    def clean(self) -> None:
        if self.clone_of_id and self.clone_of_id == self.pk:
            raise ValidationError({"clone_of": _("A container cannot be a clone of itself.")})

    @property
    def uid(self) -> int:
        from .conf import app_settings

        return int(app_settings.UID_OFFSET) + int(self.owner_id)

    #: What each recorded stage of a move is doing, for people.
    MOVE_STAGES = {
        "copying": _("copying to {target}"),
        "created": _("starting on {target}"),
        "switched": _("removing the old copy"),
    }

    @property
    def progress(self) -> str:
        """What a long operation on this container is doing now ('' when none runs)."""
        if self.status == self.Status.CREATING:
            if self.progress_detail:
                return self.progress_detail
            return str(_("creating on {node} (the node pulls the image if it lacks it)")).format(node=self.node)
        move = self.pending_move or {}
        if move:
            if move.get("abandoned"):
                return str(_("an interrupted move: run ipynbsrv_reconcile"))
            target_pk = move.get("target")
            if "move_target_name" in self.__dict__:  # read with the row (with_move_target)
                target = self.__dict__["move_target_name"] or "?"
            else:
                target = (Node.objects.filter(pk=target_pk).values_list("name", flat=True).first()
                          if target_pk else None) or "?"
            total, done = move.get("snapshots") or 0, move.get("snapshots_done") or 0
            if move.get("stage") == "created" and isinstance(total, int) and isinstance(done, int) and done < total:
                return str(_("copying snapshot {number} of {total} to {target}")).format(
                    number=done + 1, total=total, target=target)
            template = self.MOVE_STAGES.get(move.get("stage", ""), _("moving to {target}"))
            return str(template).format(target=target)
        return ""

    @property
    def url(self) -> str | None:
        """``http://address:port/base_url`` of the first published port, when bound: where the
        node serves it (for operators; users open ``base_url`` on the master's site, through the
        proxy, since the server answers nothing without the access secret the proxy adds)."""
        for port in self.ports or []:
            if port.get("external"):
                return f"http://{port['address']}:{port['external']}{self.base_url or '/'}"
        return None


def with_move_target(queryset: models.QuerySet[Container]) -> models.QuerySet[Container]:
    """``queryset`` with the name of each row's move target read in the same query, so that
    :attr:`Container.progress` of a list asks nothing per row."""
    from django.db.models.fields.json import KeyTextTransform
    from django.db.models.functions import Cast

    target = Cast(KeyTextTransform("target", models.OuterRef("pending_move")), models.BigIntegerField())
    name = Node.objects.filter(pk=target).order_by().values("name")[:1]
    return queryset.annotate(move_target_name=models.Subquery(name))


def containers_in_use() -> models.Subquery:
    """For ``Node.objects.annotate(...)``: how many active containers each node holds, counted
    for the rows the query answers only (one index lookup each), not for every node first."""
    active = Container.objects.filter(node=models.OuterRef("pk")).active().order_by()
    count = active.values("node").annotate(n=models.Count("pk")).values("n")
    return models.Subquery(count, output_field=models.IntegerField())


class Snapshot(models.Model):
    """A snapshot of a container's filesystem."""

    container = models.ForeignKey(Container, on_delete=models.CASCADE, related_name="snapshots")
    name = models.CharField(_("name"), max_length=NAME_MAX, validators=[name_validator])
    backend_pk = models.CharField(_("backend pk"), max_length=512)
    description = models.TextField(_("description"), blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    class Meta:
        ordering = ["container_id", "-created_at"]
        verbose_name = _("snapshot")
        verbose_name_plural = _("snapshots")
        constraints = [
            models.UniqueConstraint(fields=["container", "name"], name="ipynbsrv_snapshot_name_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.container}:{self.name}"


class ContainerEvent(models.Model):
    """One engine event of a container, as ``ipynbsrv_events`` received it from its node; what
    the users' API streams to the container's owner (``api/events/``)."""

    container = models.ForeignKey(Container, on_delete=models.CASCADE, related_name="events")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    node = models.CharField(_("node"), max_length=100)
    action = models.CharField(_("action"), max_length=16)
    status = models.CharField(_("status"), max_length=16, blank=True)
    message = models.CharField(_("message"), max_length=255)
    exit_code = models.IntegerField(_("exit code"), null=True, blank=True)
    when = models.DateTimeField(_("when"))
    received_at = models.DateTimeField(_("received"), auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["id"]
        verbose_name = _("container event")
        indexes = [models.Index(fields=["owner", "id"], name="ipynbsrv_event_owner_id")]

    def __str__(self) -> str:
        return f"{self.container_id}: {self.message}"


class PlacementState(models.Model):
    """Where a placement algorithm stands (the round-robin position), shared by every
    process of the master and kept across restarts."""

    key = models.CharField(max_length=100, unique=True)
    last_node = models.ForeignKey(Node, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("placement state")
        verbose_name_plural = _("placement states")

    def __str__(self) -> str:
        return self.key


class AuditEntry(models.Model):
    """One action on the master, who did it, how, and how it ended. Append-only: rows are
    written by :mod:`ipynbsrv_backends.audit` and never changed."""

    class Via(models.TextChoices):
        ADMIN = "admin", _("admin")
        API = "api", _("users' API")
        COMMAND = "command", _("command")
        SYSTEM = "system", _("system")

    class Result(models.TextChoices):
        OK = "ok", _("ok")
        ERROR = "error", _("error")

    when = models.DateTimeField(_("when"), default=timezone.now, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        verbose_name=_("actor"), help_text=_("Empty for the system (commands, reconcile)."),
    )
    actor_name = models.CharField(_("actor name"), max_length=150, blank=True)
    via = models.CharField(_("via"), max_length=16, choices=Via.choices, default=Via.SYSTEM)
    action = models.CharField(_("action"), max_length=64, db_index=True)
    target_type = models.CharField(_("target type"), max_length=32, blank=True)
    target_id = models.CharField(_("target id"), max_length=64, blank=True)
    target = models.CharField(_("target"), max_length=512, blank=True)
    node = models.CharField(_("node"), max_length=100, blank=True)
    result = models.CharField(_("result"), max_length=8, choices=Result.choices, default=Result.OK)
    message = models.TextField(_("message"), blank=True)
    details = models.JSONField(_("details"), default=dict, blank=True)

    class Meta:
        ordering = ["-when", "-pk"]
        verbose_name = _("audit entry")
        verbose_name_plural = _("audit log")
        indexes = [
            # The admin's filter by node walks it (admin/flat.py).
            models.Index(fields=["node"], name="ipynbsrv_audit_node"),
        ]

    def __str__(self) -> str:
        return f"{self.when:%Y-%m-%d %H:%M:%S} {self.actor_name or 'system'} {self.action} {self.target}"


class QuotaReservation(models.Model):
    """What an operation under way holds of its user's quota until its record is written (a
    snapshot being taken, an image being committed, a container being started), so that two
    operations at once cannot both pass the check (:mod:`ipynbsrv_backends.services.quotas`).
    Dropped when the operation ends; one left by a process that died expires by itself."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    action = models.CharField(_("action"), max_length=32)
    memory = models.BigIntegerField(_("memory (bytes)"), default=0)
    cpus = models.FloatField(_("CPUs"), default=0)
    snapshots = models.PositiveIntegerField(_("snapshots"), default=0)
    images = models.PositiveIntegerField(_("images"), default=0)
    created_at = models.DateTimeField(_("created"), default=timezone.now)

    class Meta:
        verbose_name = _("quota reservation")
        verbose_name_plural = _("quota reservations")
        indexes = [models.Index(fields=["user", "created_at"], name="ipynbsrv_quota_reservation")]

    def __str__(self) -> str:
        return f"{self.user_id} {self.action}"


# ---------------------------------------------------------------------------- JupyterHub

class HubCredential(models.Model):
    """A JupyterHub's credential on the master (docs/jupyterhub.md): the hub's spawner acts
    with it for the users the hub names, and only for them (:class:`HubUser`). The token is
    shown once, when made (``manage.py ipynbsrv_hub add|rotate``), and kept only as its hash."""

    name = models.SlugField(_("name"), max_length=50, unique=True)
    token_hash = models.CharField(_("token hash"), max_length=64, unique=True, editable=False)
    group = models.ForeignKey(
        "auth.Group", on_delete=models.PROTECT, related_name="+", verbose_name=_("group"),
        help_text=_("The group of the master users this hub acts for (quotas and idle policies per group apply)."),
    )
    images = models.ManyToManyField(
        Image, blank=True, related_name="+", verbose_name=_("images"),
        help_text=_("The images the hub's users may choose. Empty: the base and public images."),
    )
    default_image = models.ForeignKey(
        Image, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", verbose_name=_("default image"),
        help_text=_("The image of a server whose start names none. Empty: the first image the hub may use."),
    )
    enabled = models.BooleanField(_("enabled"), default=True, help_text=_("A disabled hub's requests are refused."))
    created_at = models.DateTimeField(_("created"), auto_now_add=True)
    rotated_at = models.DateTimeField(_("token made"), default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True, editable=False)

    class Meta:
        ordering = ["name"]
        verbose_name = _("JupyterHub")
        verbose_name_plural = _("JupyterHubs")

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:  # never the hash
        return f"<HubCredential {self.name}>"


class HubUser(models.Model):
    """A user a hub named, and the master user made for them on first use. A hub acts only for
    the master users it made itself."""

    hub = models.ForeignKey(HubCredential, on_delete=models.CASCADE, related_name="users", verbose_name=_("hub"))
    name = models.CharField(_("name in the hub"), max_length=100)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="ipynbsrv_hub_user",
        verbose_name=_("master user"),
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        ordering = ["hub_id", "name"]
        verbose_name = _("hub user")
        constraints = [models.UniqueConstraint(fields=["hub", "name"], name="ipynbsrv_hub_user_unique")]

    def __str__(self) -> str:
        return f"{self.hub}:{self.name}"


class HubServer(models.Model):
    """A hub user's (named) server: its container, and the environment the hub gave it (which
    holds the hub's API token for that server: never shown, used again only to recreate the
    container on a move)."""

    container = models.OneToOneField(Container, on_delete=models.CASCADE, related_name="hub_server")
    hub_user = models.ForeignKey(HubUser, on_delete=models.CASCADE, related_name="servers")
    server_name = models.CharField(_("server name"), max_length=255, blank=True)
    env = models.JSONField(_("environment"), default=dict, blank=True, editable=False)

    class Meta:
        verbose_name = _("hub server")
        constraints = [
            models.UniqueConstraint(fields=["hub_user", "server_name"], name="ipynbsrv_hub_server_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.hub_user}/{self.server_name or '(default)'}"

    def __repr__(self) -> str:  # never the environment
        return f"<HubServer {self}>"
