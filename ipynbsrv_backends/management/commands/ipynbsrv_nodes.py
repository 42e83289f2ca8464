"""``manage.py ipynbsrv_nodes``: the nodes, their health and how full they are.

Exit status: 0 when every enabled node is healthy, 1 when an enabled node is down (or,
with ``--cached``, was never checked), 2 on a usage error.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.db.models import Count

from ... import services
from ...contract import BACKEND_STATUS_ERROR, BACKEND_STATUS_OK, BACKEND_STATUS_STOPPED
from ...models import Container
from ._common import EXIT_PROBLEM, AuditedCommand, select_nodes, when

logger = logging.getLogger(__name__)

HEALTH: dict[int | None, str] = {
    BACKEND_STATUS_OK: "ok", BACKEND_STATUS_STOPPED: "stopped", BACKEND_STATUS_ERROR: "error",
}


class Command(AuditedCommand):
    help = (
        "List the nodes with their health (checked now unless --cached), containers in use and capacity, "
        "enabled/draining and last error. Exits 1 if an enabled node is down, 2 on a usage error."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--node", action="append", dest="names", metavar="NAME",
                            help="Only this node (repeat for more).")
        parser.add_argument("--cached", action="store_true",
                            help="Show the health recorded by the last check instead of checking now.")
        parser.add_argument("--json", action="store_true", dest="as_json", help="Print JSON instead of a table.")

    def handle(self, *args: Any, names: list[str] | None = None, cached: bool = False, as_json: bool = False,
               **options: Any) -> None:
        nodes = select_nodes(names)
        if not cached:
            services.check_nodes_health(nodes)
        loads = dict(
            Container.objects.filter(node__in=nodes, status__in=Container.ACTIVE)
            .values_list("node").annotate(n=Count("pk"))
        )
        rows = [
            {
                "name": node.name,
                "address": node.address,
                "backend": node.backend.name,
                "kind": node.backend.kind,
                "health": HEALTH.get(node.last_status, "unknown"),
                "enabled": node.enabled,
                "draining": node.draining,
                "containers": loads.get(node.pk, 0),
                "capacity": node.capacity,
                "last_checked": when(node.last_checked),
                "last_seen": when(node.last_seen),
                "last_error": node.last_error,
            }
            for node in nodes
        ]
        down = [row["name"] for row in rows if row["enabled"] and row["health"] != "ok"]
        if as_json:
            self.stdout.write(json.dumps({"nodes": rows, "down": down}, indent=2))
        else:
            self._table(rows)
        if not any(row["enabled"] for row in rows):
            self.stderr.write("No enabled node: no container can be placed.")
        if down:
            raise CommandError(
                f"{len(down)} enabled node(s) not healthy: {', '.join(down)}.", returncode=EXIT_PROBLEM
            )

    def _table(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            self.stdout.write("No nodes. Add one in the admin (Nodes).")
            return
        header = ["NAME", "HEALTH", "CONTAINERS", "STATE", "CHECKED", "LAST ERROR"]
        lines = []
        for row in rows:
            state = "enabled" if row["enabled"] else "disabled"
            if row["draining"]:
                state += ",draining"
            error = " ".join((row["last_error"] or "").split())
            lines.append([row["name"], row["health"], f"{row['containers']}/{row['capacity']}", state,
                          (row["last_checked"] or "never")[:19], error[:100]])
        widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header) - 1)]

        def render(line: list[str]) -> str:
            # the last cell has no width: zip stops before it
            return ("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=False)) + "  " + line[-1]).rstrip()

        self.stdout.write(render(header))
        for row, line in zip(rows, lines, strict=True):
            text = render(line)
            if row["health"] != "ok":
                text = self.style.ERROR(text) if row["enabled"] else self.style.WARNING(text)
            self.stdout.write(text)
