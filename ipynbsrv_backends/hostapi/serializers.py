"""Request validation (and response documentation) of the host API.

Request serializers check the JSON *shape* of a call strictly — required members present,
JSON types right (no ``"1000"`` for an int, no ``1`` for a string), no unknown top-level
members — and pass values through unchanged: what a name, port or volume may be is the
backend's decision, so the host API answers exactly as the backend called directly would.
Port and volume records keep members this module does not know, for the backend to judge.

The response serializers only describe the records in the OpenAPI schema (their fields
are made from the record types of :mod:`ipynbsrv_backends.contract`, declared once there);
answers are the backend's own dicts, unchanged.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Mapping
from typing import Any, Literal

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ..contract import ContainerRecord, ImageRecord, PortRecord, SnapshotRecord, VolumeRecord, record_fields
from .wire import OPTIONS_PARAM


class TextField(serializers.CharField):
    """A JSON string, taken as is (no coercion, no trimming)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("trim_whitespace", False)
        kwargs.setdefault("allow_blank", True)
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return data


@extend_schema_field(OpenApiTypes.INT)
class StrictIntegerField(serializers.Field):
    """A JSON integer (``true`` and ``"1"`` are not)."""

    default_error_messages = {"invalid": "A valid integer is required."}

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return data

    def to_representation(self, value: Any) -> Any:
        return value


@extend_schema_field({"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]})
class CommandField(serializers.Field):
    """An argv list of strings, or one string split as a shell would split it."""

    default_error_messages = {"invalid": "Must be a string or a list of strings."}

    def to_internal_value(self, data: Any) -> str | list[str]:
        if isinstance(data, str):
            return data
        if isinstance(data, list) and all(isinstance(item, str) for item in data):
            return list(data)
        self.fail("invalid")

    def to_representation(self, value: Any) -> Any:
        return value


@extend_schema_field(OpenApiTypes.OBJECT)
class OptionsField(serializers.Field):
    """The backend-specific options of a call (the contract's ``**kwargs``): a JSON object.

    In a query string it is the JSON text of that object.
    """

    default_error_messages = {
        "invalid": "Must be a JSON object of backend-specific options.",
        "invalid_json": "Is not valid JSON: {error}.",
    }

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("default", dict)
        kwargs.setdefault(
            "help_text",
            "Backend-specific options (keyword arguments of the backend method) as one JSON "
            "object; an option the node's backend does not know is answered with "
            "400 invalid_argument.",
        )
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except ValueError as exc:
                self.fail("invalid_json", error=exc)
        if not isinstance(data, dict):
            self.fail("invalid")
        return dict(data)

    def to_representation(self, value: Any) -> Any:
        return value


class StrictSerializer(serializers.Serializer):
    """Refuses members it does not declare (unless ``keep_unknown``, which passes them on)."""

    keep_unknown = False

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, Mapping):
            raise serializers.ValidationError({"non_field_errors": ["Must be a JSON object."]})
        unknown = sorted(str(key) for key in data if key not in self.fields)
        if unknown and not self.keep_unknown:
            hint = f" (backend-specific options go in {OPTIONS_PARAM!r})" if OPTIONS_PARAM in self.fields else ""
            raise serializers.ValidationError(
                {"non_field_errors": [f"Unknown member(s) {', '.join(unknown)}{hint}."]}
            )
        value = dict(super().to_internal_value(data))
        if self.keep_unknown:
            for key in unknown:
                value[key] = data[key]
        return value


class PortRecordSerializer(StrictSerializer):
    keep_unknown = True
    address = TextField(required=False, help_text="Host address to bind, e.g. 127.0.0.1.")
    external = StrictIntegerField(
        required=False, allow_null=True, help_text="Host port; null asks the engine for a free one."
    )
    internal = StrictIntegerField(help_text="Port inside the container.")


class VolumeRecordSerializer(StrictSerializer):
    keep_unknown = True
    source = TextField(  # type: ignore[assignment]  # a field named like Field.source
        help_text="Absolute host path (bind mount) or a volume name (no '/').")
    target = TextField(help_text="Path inside the container.")
    mode = serializers.ChoiceField(choices=["rw", "ro"], required=False)


class OptionsOnlySerializer(StrictSerializer):
    options = OptionsField()


class CreateContainerSerializer(StrictSerializer):
    username = TextField()
    uid = StrictIntegerField()
    name = TextField()
    ports = serializers.ListField(child=PortRecordSerializer(), allow_null=True)
    volumes = serializers.ListField(child=VolumeRecordSerializer(), allow_null=True)
    cmd = CommandField(required=False, allow_null=True, default=None)
    base_url = TextField(required=False, allow_null=True, default=None)
    image = TextField(required=False, allow_null=True, default=None, help_text="Image pk (raw, not encoded).")
    clone_of = TextField(
        required=False, allow_null=True, default=None, help_text="Container pk (raw, not encoded) to clone."
    )
    options = OptionsField()


class ExecSerializer(StrictSerializer):
    cmd = CommandField()
    options = OptionsField()


class CreateSnapshotSerializer(StrictSerializer):
    name = TextField()
    options = OptionsField()


class CreateImageSerializer(StrictSerializer):
    container = TextField(help_text="Container pk (raw, not encoded) to commit.")
    name = TextField()
    options = OptionsField()


class PullImageSerializer(StrictSerializer):
    image = TextField(help_text="Image reference (raw, not encoded), e.g. 10.0.0.1:5000/notebooks/base:latest.")
    options = OptionsField()


class ImportSnapshotSerializer(StrictSerializer):
    name = TextField(help_text="The snapshot's name on this node.")
    image = TextField(help_text="Image reference (raw, not encoded) that export pushed to the registry.")
    options = OptionsField()


class RestoreSnapshotSerializer(StrictSerializer):
    snapshot = TextField(help_text="Snapshot pk (raw, not encoded).")
    options = OptionsField()


class NextKeySerializer(StrictSerializer):
    key = serializers.CharField(
        min_length=32, max_length=256, trim_whitespace=False,
        help_text="The new signing key (32 to 256 printable characters without spaces).",
    )


class PromoteKeySerializer(StrictSerializer):
    grace = serializers.IntegerField(
        required=False, min_value=0, max_value=86400,
        help_text="Seconds the replaced key is still accepted (default: the node's setting).",
    )


# --- query strings ------------------------------------------------------------------
#
# A GET or DELETE carries its arguments in the query string. Each value is read as JSON
# (``only_running=true``, ``tail=10``, ``since="2026-01-31T12:00:00Z"``); text that is not
# valid JSON is taken as a plain string (``since=2026-01-31T12:00:00Z`` works from curl).
# Values reach the backend with their JSON types, so it judges them as if called directly.


@extend_schema_field(OpenApiTypes.STR)
class JSONQueryField(serializers.Field):
    """A query parameter whose text is a JSON value (or, failing that, a string)."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str):
            self.fail("invalid")
        try:
            return json.loads(data)
        except ValueError:
            return data

    def to_representation(self, value: Any) -> Any:
        return value


@extend_schema_field(OpenApiTypes.STR)
class OptionsQueryField(OptionsField):
    """:class:`OptionsField` in a query string: the JSON text of the object."""


class OptionsQuerySerializer(serializers.Serializer):
    options = OptionsQueryField()


class ContainerListQuerySerializer(OptionsQuerySerializer):
    only_running = JSONQueryField(
        required=False, help_text="JSON true: only running (or suspended) containers."
    )


class LogsQuerySerializer(OptionsQuerySerializer):
    tail = JSONQueryField(required=False, help_text="Keep the last N lines (a JSON integer).")
    since = JSONQueryField(
        required=False,
        help_text='Only newer lines: a Unix time, or an ISO 8601 date and time (JSON string, '
        'e.g. "2026-01-31T12:00:00Z"; unquoted text is taken as a string).',
    )


class EventsQuerySerializer(OptionsQuerySerializer):
    since = JSONQueryField(required=False, help_text="The cursor of the last event received (a JSON string of "
                           "digits); without it, from now on.")
    timeout = JSONQueryField(required=False, help_text="Seconds the stream lasts (1 to 3600; default 60).")
    heartbeat = JSONQueryField(required=False, help_text="Seconds of silence before a heartbeat line (0.5 to "
                               "120; default 15).")


# --- responses (schema only) ----------------------------------------------------------


#: Help texts of record keys in the schema (the keys and types come from the records).
RECORD_HELP = {
    ("PortRecord", "address"): "Host address the port is bound to, e.g. 127.0.0.1.",
    ("PortRecord", "external"): "Host port; null until the engine chose one.",
    ("PortRecord", "internal"): "Port inside the container.",
    ("VolumeRecord", "source"): "Absolute host path (bind mount) or a volume name (no '/').",
    ("VolumeRecord", "target"): "Path inside the container.",
    ("ContainerRecord", "created"): "ISO 8601, UTC.",
    ("ContainerRecord", "uid"): "The owner's uid the container was created with.",
    ("ContainerRecord", "clone_of"): "The pk of the container it was cloned from.",
    ("ImageRecord", "created"): "ISO 8601, UTC.",
    ("ImageRecord", "size"): "Bytes.",
    ("ImageRecord", "managed"): "Whether this node's backend made the image.",
    ("ImageRecord", "registry"): "The registry every node can pull the image from.",
    ("SnapshotRecord", "created"): "ISO 8601, UTC.",
    ("SnapshotRecord", "size"): "Bytes.",
}


def _record_field(record: str, key: str, hint: Any, required: bool) -> serializers.Field:
    """The schema field of one record key, from its declared type."""
    kwargs: dict[str, Any] = {"required": required, "help_text": RECORD_HELP.get((record, key))}
    args = typing.get_args(hint)
    if type(None) in args:
        kwargs["allow_null"] = True
        (hint,) = [arg for arg in args if arg is not type(None)]
    if typing.get_origin(hint) is Literal:
        return serializers.ChoiceField(choices=list(typing.get_args(hint)), **kwargs)
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        return _RESPONSES[item.__name__](many=True, **kwargs)
    fields: dict[type, type[serializers.Field]] = {
        str: serializers.CharField, int: serializers.IntegerField, bool: serializers.BooleanField,
    }
    return fields[hint](**kwargs)


def record_response(record: type) -> type[serializers.Serializer]:
    """The response serializer (schema only) of a record type from :mod:`...contract`:
    one field per key, typed and required as the record declares it."""
    name = record.__name__
    fields = {key: _record_field(name, key, hint, required) for key, (hint, required) in record_fields(record).items()}
    serializer = type(f"{name}Response", (serializers.Serializer,), {**fields, "__module__": __name__})
    _RESPONSES[name] = serializer
    return serializer


_RESPONSES: dict[str, type[serializers.Serializer]] = {}
PortRecordResponse = record_response(PortRecord)
VolumeRecordResponse = record_response(VolumeRecord)
ContainerRecordResponse = record_response(ContainerRecord)
ImageRecordResponse = record_response(ImageRecord)
SnapshotRecordResponse = record_response(SnapshotRecord)


class ExistsResponse(serializers.Serializer):
    exists = serializers.BooleanField()


class RunningResponse(serializers.Serializer):
    running = serializers.BooleanField()


class SuspendedResponse(serializers.Serializer):
    suspended = serializers.BooleanField()


class ExecResponse(serializers.Serializer):
    output = serializers.CharField(help_text="stdout and stderr as text.")


class ErrorResponse(serializers.Serializer):
    code = serializers.CharField(help_text="Machine code, see ipynbsrv_backends.errors.")
    detail = serializers.CharField()


class HealthResponse(serializers.Serializer):
    status = serializers.CharField()


class ContainerCountsResponse(serializers.Serializer):
    running = serializers.IntegerField(allow_null=True)
    total = serializers.IntegerField(allow_null=True)


class BackendStatusResponse(serializers.Serializer):
    status = serializers.IntegerField(help_text="0 ok, 1 stopped, 2 error.")
    capabilities = serializers.ListField(child=serializers.CharField())


class ResourcesResponse(serializers.Serializer):
    cpu_count = serializers.IntegerField()
    load_average = serializers.ListField(child=serializers.FloatField(), allow_null=True)
    memory_total = serializers.IntegerField(allow_null=True, help_text="Bytes.")
    memory_available = serializers.IntegerField(allow_null=True, help_text="Bytes.")
    containers = ContainerCountsResponse()
    volume_usage = serializers.DictField(
        child=serializers.IntegerField(), required=False,
        help_text="Bytes of the backend's named volumes per owner, as last measured; only with the Docker "
                  "backend's volume_usage_every (absent until the first measurement).")


class StatusResponse(serializers.Serializer):
    backend = BackendStatusResponse()
    resources = ResourcesResponse()
