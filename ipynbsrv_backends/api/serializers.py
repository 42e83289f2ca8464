"""What the users' API reads and writes.

Nothing here exposes a backend's configuration or any secret: nodes appear by name (and,
for staff, with their health), images without their registry reference.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.contrib.auth import get_user_model
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from .. import services
from ..contract import BACKEND_STATUS_ERROR, BACKEND_STATUS_OK, BACKEND_STATUS_STOPPED
from ..errors import InvalidArgumentError
from ..models import Container, Image, Node, Snapshot
from ..validation import NAME_MAX, validate_name

__all__ = [
    "ErrorSerializer",
    "ContainerSerializer",
    "ContainerCreateSerializer",
    "CloneSerializer",
    "SnapshotSerializer",
    "SnapshotCreateSerializer",
    "RestoreSerializer",
    "CommitSerializer",
    "ImageSerializer",
    "NodeSerializer",
]

NAME_HELP = _("1 to 63 lower-case letters and digits, optionally separated by single '-', '_' or '.'.")


class ErrorSerializer(serializers.Serializer):
    """Every error answer."""

    code = serializers.CharField(help_text=_("A machine code: no_node_available, already_exists, invalid, ..."))
    detail = serializers.CharField(help_text=_("What went wrong, for people."))
    fields = serializers.DictField(  # type: ignore[assignment]  # a field named like Serializer.fields
        required=False, child=serializers.ListField(child=serializers.CharField()),
        help_text=_("Only for code 'invalid': the messages per field of the body."),
    )


class StrictSerializer(serializers.Serializer):
    """A body serializer that refuses fields it does not know (a typo is a 400, not a
    silently ignored key)."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping):
            unknown = sorted(str(key) for key in data if key not in self.fields)
            if unknown:
                raise serializers.ValidationError({key: [_("Unknown field.")] for key in unknown})
        return super().to_internal_value(data)


class NameField(serializers.CharField):
    """A container, snapshot or image name, checked by the same rule the backends use."""

    def __init__(self, what: str = "name", **kwargs: Any) -> None:
        self.what = what
        kwargs.setdefault("max_length", NAME_MAX)
        kwargs.setdefault("help_text", NAME_HELP)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        try:
            return validate_name(value, self.what)
        except InvalidArgumentError as exc:
            raise serializers.ValidationError(str(exc)) from exc


# ---------------------------------------------------------------------------- output

class ContainerSerializer(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.get_username", read_only=True)
    node = serializers.CharField(source="node.name", read_only=True)
    progress = serializers.CharField(read_only=True, help_text=_(
        "What a long operation is doing now, for people ('' when none runs): while it is created, e.g. "
        "'pulling IMAGE on n1: 3 of 7 layers, 120 of 376 MB (32 %)', then 'starting on n1'."))
    url = serializers.SerializerMethodField(help_text=_(
        "Where its owner opens it: its base URL on this site, through the proxy (the notebook server "
        "answers nothing that does not come through it); null until a port is published."))

    class Meta:
        model = Container
        fields = ["id", "name", "owner", "node", "status", "progress", "image", "clone_of", "ports", "url",
                  "base_url", "created_at", "last_error", "error_code", "last_activity", "cull_reason", "culled_at",
                  "last_event", "last_event_at"]
        read_only_fields = fields
        extra_kwargs = {
            "image": {"help_text": _("The id of the image it was started from (null for a clone).")},
            "clone_of": {"help_text": _("The id of the container it was cloned from.")},
            "ports": {"help_text": _("[{address, external, internal}]: internal ports and where they are published.")},
            "last_error": {"help_text": _("Why the last action or the creation failed ('' when none did).")},
            "error_code": {"help_text": _("The machine code of the error that ended a creation in the background "
                                          "(image_not_found, backend_unavailable, no_node_available, ...); '' "
                                          "otherwise.")},
            "last_activity": {"help_text": _("The latest use the master knows of (a request through the proxy, "
                                             "or the notebook server's own activity); null when none is known.")},
            "cull_reason": {"help_text": _("What the idle policy did to it and why, e.g. 'suspended after 2 h "
                                           "idle' ('' when it did nothing since the last start or resume). A "
                                           "container it suspended is resumed by the next request through the "
                                           "proxy.")},
            "culled_at": {"help_text": _("When the idle policy did that (null when it did nothing).")},
            "last_event": {"help_text": _("What its node's engine last said happened to it, in words, e.g. "
                                          "'ran out of memory: 2 GiB limit' ('' before any).")},
        }

    @extend_schema_field(OpenApiTypes.URI)
    def get_url(self, container: Container) -> str | None:
        if not container.url:
            return None
        request = self.context.get("request")
        return request.build_absolute_uri(container.base_url) if request is not None else container.base_url


class SnapshotSerializer(serializers.ModelSerializer):
    container_name = serializers.CharField(source="container.name", read_only=True)

    class Meta:
        model = Snapshot
        fields = ["id", "name", "container", "container_name", "description", "created_at"]
        read_only_fields = fields


class ImageSerializer(serializers.ModelSerializer):
    owner = serializers.SerializerMethodField(help_text=_("Who committed it; null for a base image."))
    node = serializers.SerializerMethodField(help_text=_("The node that holds it; null when every node can get it."))
    base = serializers.SerializerMethodField(help_text=_("A base image an administrator registered."))
    source = serializers.SerializerMethodField(  # type: ignore[assignment]  # named like Field.source
        help_text=_("The id of the container it was committed from (shown to its owner and staff)."))

    class Meta:
        model = Image
        fields = ["id", "name", "description", "owner", "base", "public", "node", "source", "size", "created_at"]
        read_only_fields = fields

    def get_owner(self, image: Image) -> str | None:
        return image.owner.get_username() if image.owner is not None else None

    def get_node(self, image: Image) -> str | None:
        return image.node.name if image.node is not None else None

    def get_base(self, image: Image) -> bool:
        return image.owner_id is None

    def get_source(self, image: Image) -> int | None:
        request = self.context.get("request")
        user = getattr(request, "user", None)
        mine = user is not None and (user.is_staff or (image.owner_id is not None and image.owner_id == user.pk))
        return image.source_id if mine else None


_HEALTH: dict[int | None, str] = {BACKEND_STATUS_OK: "ok", BACKEND_STATUS_STOPPED: "stopped", BACKEND_STATUS_ERROR: "error"}


class NodeSerializer(serializers.ModelSerializer):
    """A node as staff see it: never its backend configuration."""

    backend = serializers.CharField(source="backend.name", read_only=True)
    kind = serializers.CharField(source="backend.kind", read_only=True, help_text=_("The backend class."))
    health = serializers.SerializerMethodField(help_text=_("ok, stopped, error, or unknown (never checked)."))
    containers = serializers.IntegerField(source="containers_in_use", read_only=True,
                                          help_text=_("Containers that count against the capacity."))

    class Meta:
        model = Node
        fields = ["id", "name", "address", "backend", "kind", "enabled", "draining", "capacity", "containers",
                  "health", "last_checked", "last_seen", "last_error", "resources"]
        read_only_fields = fields

    @extend_schema_field(serializers.ChoiceField(choices=["ok", "stopped", "error", "unknown"]))
    def get_health(self, node: Node) -> str:
        return _HEALTH.get(node.last_status, "unknown")


# ---------------------------------------------------------------------------- input

def _user(serializer: serializers.Serializer) -> Any:
    return serializer.context["request"].user


def _staff_override(serializer: serializers.Serializer, value: bool) -> bool:
    if value and not _user(serializer).is_staff:
        raise serializers.ValidationError(_("Only staff may place a container on a draining node; leave it out."))
    return value


class ContainerCreateSerializer(StrictSerializer):
    """A new container from an image, or a clone of one of yours. Placement picks the node."""

    name = NameField()
    image = serializers.IntegerField(required=False, help_text=_("The id of an image you may use."))
    clone_of = serializers.IntegerField(required=False, help_text=_("The id of one of your containers."))
    node = serializers.CharField(required=False, help_text=_("Staff only: the name of the node to use."))
    owner = serializers.CharField(required=False, help_text=_("Staff only: the username to create it for."))
    allow_draining = serializers.BooleanField(
        required=False, default=False,
        help_text=_("Staff only: place it on a draining node anyway (the named node, or a clone's source's); "
                    "the audit log records it. A disabled node is never used."),
    )

    def validate_image(self, value: int) -> Image:
        image = services.usable_images(_user(self)).filter(pk=value).first()
        if image is None:
            raise serializers.ValidationError(_("There is no image with this id that you may use."))
        return image

    def validate_clone_of(self, value: int) -> Container:
        container = services.user_containers(_user(self)).filter(pk=value).first()
        if container is None:
            raise serializers.ValidationError(_("You have no container with this id."))
        return container

    def validate_node(self, value: str) -> Node:
        if not _user(self).is_staff:
            raise serializers.ValidationError(_("Only staff may choose the node; leave it out and one is picked."))
        node = Node.objects.select_related("backend").filter(name=value).first()
        if node is None:
            raise serializers.ValidationError(_("There is no node with this name."))
        return node

    def validate_allow_draining(self, value: bool) -> bool:
        return _staff_override(self, value)

    def validate_owner(self, value: str) -> Any:
        if not _user(self).is_staff:
            raise serializers.ValidationError(_("Only staff may create containers for someone else."))
        User = get_user_model()
        owner = User.objects.filter(**{User.USERNAME_FIELD: value}).first()
        if owner is None:
            raise serializers.ValidationError(_("There is no user with this username."))
        return owner

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("image" in attrs) == ("clone_of" in attrs):
            raise serializers.ValidationError(_("Give exactly one of image and clone_of."))
        if "clone_of" in attrs and "node" in attrs:
            raise serializers.ValidationError({"node": [_("A clone is made on the node of its source.")]})
        return attrs


class CloneSerializer(StrictSerializer):
    name = NameField(help_text=format_lazy("{}{}", _("The name of the new container. "), NAME_HELP))
    allow_draining = serializers.BooleanField(
        required=False, default=False,
        help_text=_("Staff only: make the clone even though its source's node is draining (audited)."),
    )

    def validate_allow_draining(self, value: bool) -> bool:
        return _staff_override(self, value)


class SnapshotCreateSerializer(StrictSerializer):
    name = NameField("snapshot name")
    description = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)


class RestoreSerializer(StrictSerializer):
    snapshot = serializers.IntegerField(help_text=_("The id of a snapshot of this container."))

    def validate_snapshot(self, value: int) -> Snapshot:
        container = self.context["container"]
        snapshot = container.snapshots.filter(pk=value).first()
        if snapshot is None:
            raise serializers.ValidationError(_("This container has no snapshot with this id."))
        return snapshot


class CommitSerializer(StrictSerializer):
    name = NameField("image name")
    public = serializers.BooleanField(required=False, default=False,
                                      help_text=_("Let everyone start containers from the image."))
    description = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)


class QuotaFiguresSerializer(serializers.Serializer):
    containers = serializers.IntegerField(allow_null=True)
    memory = serializers.IntegerField(allow_null=True, help_text="Bytes: the mem_limit of running and suspended "
                                                                 "containers.")
    cpus = serializers.FloatField(allow_null=True, help_text="The cpu_limit of running containers.")
    snapshots = serializers.IntegerField(allow_null=True)
    images = serializers.IntegerField(allow_null=True, help_text="Images you committed.")
    volume_space = serializers.IntegerField(
        allow_null=True, help_text="Bytes your named volumes hold, as the nodes that measure them last did "
                                   "(usage null: no node measures them).")


class QuotaSerializer(serializers.Serializer):
    """Your limits (``null``: none) and what you use now (with operations under way)."""

    limits = QuotaFiguresSerializer()
    usage = QuotaFiguresSerializer()
