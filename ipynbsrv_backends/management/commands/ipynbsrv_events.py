"""``manage.py ipynbsrv_events``: follow every node's engine events and keep the records fresh.

One thread per enabled node (``services.events.NodeFollower``): each event updates its
container's row and is kept for its owner's live stream (``api/events/``); a broken stream is
reconnected after a growing pause (``--max-backoff`` at most) and the node reconciled once it
is back, which is logged. New and removed nodes are picked up every ``--rescan`` seconds, old
events pruned every hour. Runs until SIGTERM or SIGINT (or ``--duration`` seconds), then
stops every stream within about one heartbeat and exits 0.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

from django.core.management.base import CommandError, CommandParser

from ...models import Node
from ...services.events import NodeFollower, prune_events
from ._common import EXIT_USAGE, AuditedCommand

logger = logging.getLogger(__name__)

_PRUNE_EVERY = 3600.0


def _positive(value: str) -> float:
    number = float(value)
    if not 0 < number <= 86400:
        raise ValueError(value)
    return number


class Command(AuditedCommand):
    help = ("Follow every enabled node's engine events until SIGTERM: keep the container records fresh, "
            "keep the events for their owners' streams, reconnect and reconcile a node whose stream broke.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--node", action="append", dest="names", metavar="NAME",
                            help="Only this node (repeat for more); default: every enabled node.")
        parser.add_argument("--stream-seconds", type=_positive, default=300.0,
                            help="How long one stream lasts before the next starts from its cursor (default 300).")
        parser.add_argument("--heartbeat", type=_positive, default=10.0,
                            help="Seconds of silence before a node sends a heartbeat; also about how long a "
                            "stop takes (default 10).")
        parser.add_argument("--max-backoff", type=_positive, default=30.0,
                            help="The longest pause before reconnecting a broken stream (default 30).")
        parser.add_argument("--rescan", type=_positive, default=60.0,
                            help="Seconds between looks for new, disabled or removed nodes (default 60).")
        parser.add_argument("--duration", type=_positive, default=None,
                            help="Stop after this many seconds (default: run until SIGTERM).")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["heartbeat"] > 120 or options["heartbeat"] >= options["stream_seconds"]:
            raise CommandError("--heartbeat must be at most 120 s and shorter than --stream-seconds.",
                               returncode=EXIT_USAGE)
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        followers: dict[int, NodeFollower] = {}
        end = time.monotonic() + options["duration"] if options["duration"] else None
        pruned = 0.0
        try:
            while not stop.is_set() and (end is None or time.monotonic() < end):
                self._scan(followers, options)
                if time.monotonic() - pruned > _PRUNE_EVERY:
                    logger.info("Pruned %d old container events", prune_events())
                    pruned = time.monotonic()
                wait = options["rescan"] if end is None else max(0.0, min(options["rescan"], end - time.monotonic()))
                stop.wait(wait)
        finally:
            stop.set()
            for follower in followers.values():
                follower.stop.set()
            for follower in followers.values():
                follower.join(timeout=options["heartbeat"] * 2 + 10)
                if follower.is_alive():
                    logger.warning("The events of node %s did not stop in time", follower.node_name)
        self.stdout.write(f"Stopped following {len(followers)} node(s).")

    def _scan(self, followers: dict[int, NodeFollower], options: dict[str, Any]) -> None:
        """Start a follower for each enabled node that has none (or whose follower ended)."""
        nodes = Node.objects.filter(enabled=True).select_related("backend").order_by("name")
        if options["names"]:
            nodes = nodes.filter(name__in=options["names"])
        for node in nodes:
            current = followers.get(node.pk)
            if current is not None and (current.is_alive() or current.unsupported):
                continue
            follower = NodeFollower(node, stream_seconds=options["stream_seconds"], heartbeat=options["heartbeat"],
                                    max_backoff=options["max_backoff"])
            if current is not None:
                follower.cursor = current.cursor  # a node enabled again: go on where it stopped
            followers[node.pk] = follower
            follower.start()
            logger.info("Following the events of node %s", node.name)
