"""The users' API event stream: the signed-in user's own containers' engine events, live, as
server-sent events (``GET events/``, ``Accept: text/event-stream``).

The events are those ``ipynbsrv_events`` received from the nodes and kept
(:class:`~ipynbsrv_backends.models.ContainerEvent`); a stream reads the user's new ones (one
indexed query a second), sends a comment line as a heartbeat, and ends after the
``EVENTS_STREAM_SECONDS`` setting. A browser's ``EventSource`` then reconnects by itself with
``Last-Event-ID`` and misses nothing. Only the user's own containers' events, staff included:
another user's stream is theirs to open.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from django.db import close_old_connections
from django.http import StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from ..conf import app_settings
from ..errors import ContainerNotFoundError, InvalidArgumentError
from ..models import Container, ContainerEvent
from .schema import document, errors
from .views import UserAPIView

__all__ = ["EventStreamView", "EVENT_STREAM"]

EVENT_STREAM = "text/event-stream"
#: Seconds between two reads of new events, and the most read at once.
POLL_SECONDS = 1.0
BATCH = 100


class EventStreamRenderer(BaseRenderer):
    """Lets a client ask for ``text/event-stream`` (the view answers the stream itself)."""

    media_type = EVENT_STREAM
    format = "sse"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        return json.dumps(data).encode("utf-8")


def event_data(event: ContainerEvent) -> dict[str, Any]:
    """What one event carries, as JSON."""
    return {"id": event.pk, "container": event.container_id, "action": event.action, "status": event.status or None,
            "message": event.message, "exit_code": event.exit_code, "when": event.when.isoformat(),
            "node": event.node}


def _number(value: str | None, what: str) -> int | None:
    if value in (None, ""):
        return None
    assert value is not None
    if not value.isdigit() or len(value) > 18:
        raise InvalidArgumentError(f"{what} must be the id of an event (a whole number), not {value[:40]!r}.")
    return int(value)


class EventStreamView(UserAPIView, APIView):
    """``GET events/``: the user's containers' events as server-sent events."""

    renderer_classes = [JSONRenderer, EventStreamRenderer]
    schema_tags = ["events"]

    def handle_exception(self, exc: Exception) -> Any:
        # An error is the API's JSON error, whatever the client asked the stream in.
        response = super().handle_exception(exc)
        self.request.accepted_renderer = JSONRenderer()
        self.request.accepted_media_type = JSONRenderer.media_type
        return response

    @document(
        summary="Your containers' events, live (server-sent events)",
        description="One `text/event-stream` message per event of your own containers (start, die with its "
        "exit code, oom, pause, unpause, health, destroy): `id:` the event's id, `event:` its action, `data:` "
        "JSON {id, container, action, status, message, exit_code, when, node}; an OOM kill says so in words "
        "(\"ran out of memory: 2 GiB limit\"). From now on, or after `Last-Event-ID` (or `?after=`); "
        "`?container=` keeps one container's. A comment line is a heartbeat; the stream ends after a few "
        "minutes and the client reconnects with Last-Event-ID, missing nothing.",
        parameters=[OpenApiParameter("after", int, OpenApiParameter.QUERY, required=False),
                    OpenApiParameter("container", int, OpenApiParameter.QUERY, required=False)],
        responses={200: OpenApiResponse(description="text/event-stream"), **errors(400, 404)},
    )
    def get(self, request: Request) -> StreamingHttpResponse:
        user: Any = request.user
        after = _number(request.META.get("HTTP_LAST_EVENT_ID") or request.query_params.get("after"), "after")
        container = _number(request.query_params.get("container"), "container")
        events = ContainerEvent.objects.filter(owner_id=user.pk)
        if container is not None:
            if not Container.objects.filter(pk=container, owner_id=user.pk).exists():
                raise ContainerNotFoundError("No such container of yours.")
            events = events.filter(container_id=container)
        if after is None:
            after = events.order_by("-id").values_list("id", flat=True).first() or 0
        response = StreamingHttpResponse(_stream(events, after), content_type=EVENT_STREAM)
        response["Cache-Control"] = "no-store"
        response["X-Accel-Buffering"] = "no"  # nginx in front passes each message on at once
        return response


def _stream(events: Any, after: int) -> Iterator[bytes]:
    """The messages after ``after``, until the stream's time is up (bounded: one query a second)."""
    end = time.monotonic() + float(app_settings.EVENTS_STREAM_SECONDS)
    beat = float(app_settings.EVENTS_HEARTBEAT)
    last_sent = time.monotonic()
    yield b"retry: 3000\n: stream open\n\n"
    try:
        while time.monotonic() < end:
            batch = list(events.filter(id__gt=after).order_by("id")[:BATCH])
            for event in batch:
                after = event.pk
                data = json.dumps(event_data(event))
                yield f"id: {event.pk}\nevent: {event.action}\ndata: {data}\n\n".encode()
                last_sent = time.monotonic()
            if len(batch) == BATCH:
                continue
            if time.monotonic() - last_sent >= beat:
                yield b": heartbeat\n\n"
                last_sent = time.monotonic()
            time.sleep(min(POLL_SECONDS, max(0.0, end - time.monotonic())))
    finally:
        close_old_connections()
