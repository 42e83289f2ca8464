"""``manage.py ipynbsrv_reconcile``: compare the records with what the nodes really run.

Reports drift per node — records whose container is gone (*missing*), labelled containers
without a record (*orphans*), nodes that cannot be reached — and repairs it on request.
Moves a master did not live to finish are always resolved: finished when the record already
names the new copy, rolled back otherwise. Otherwise it repairs only on request:
``--mark-lost`` marks missing records ``lost``; ``--adopt`` records orphans for their
owners, ``--remove-orphans`` deletes them from their node. Statuses that merely changed
(a container stopped behind the master's back) are always brought up to date.

Exit status: 0 when no drift remains (after the repairs asked for), 1 when drift remains
or a node could not be reached, 2 on a usage error.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any

from django.core.management.base import CommandError, CommandParser

from ... import services
from ._common import EXIT_PROBLEM, AuditedCommand, select_nodes

logger = logging.getLogger(__name__)


def remaining_drift(report: services.ReconcileReport) -> dict[str, Any]:
    """What is still wrong on a node after the repairs that were asked for."""
    left: dict[str, Any] = {}
    if not report.reachable:
        left["unreachable"] = report.error
    missing = [name for name in report.missing if name not in report.marked_lost]
    orphans = [pk for pk in report.orphans if pk not in report.adopted and pk not in report.removed]
    if missing:
        left["missing"] = missing
    if orphans:
        left["orphans"] = orphans
    if report.problems:
        left["problems"] = list(report.problems)
    return left


class Command(AuditedCommand):
    help = (
        "Report drift between the container records and what the nodes run, and on request repair it "
        "(--mark-lost, --adopt or --remove-orphans). Exits 1 while drift remains, 2 on a usage error."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--node", action="append", dest="names", metavar="NAME",
                            help="Only this node (repeat for more); default: every node.")
        parser.add_argument("--mark-lost", action="store_true",
                            help="Mark records whose container is gone from its node as 'lost'.")
        orphans = parser.add_mutually_exclusive_group()
        orphans.add_argument("--adopt", action="store_true",
                             help="Record labelled containers that have no record, for the user named in their "
                                  "owner label.")
        orphans.add_argument("--remove-orphans", action="store_true",
                             help="Delete labelled containers that have no record from their node.")
        parser.add_argument("--json", action="store_true", dest="as_json", help="Print JSON instead of text.")

    def handle(self, *args: Any, names: list[str] | None = None, mark_lost: bool = False, adopt: bool = False,
               remove_orphans: bool = False, as_json: bool = False, **options: Any) -> None:
        nodes = select_nodes(names)
        results = []
        for node in nodes:
            report = services.reconcile(node, mark_lost=mark_lost, adopt=adopt, remove=remove_orphans)
            results.append((report, remaining_drift(report)))
        if as_json:
            payload = [{**dataclasses.asdict(report), "drift_remaining": left} for report, left in results]
            self.stdout.write(json.dumps({"nodes": payload}, indent=2))
        else:
            if not nodes:
                self.stdout.write("No nodes.")
            for report, left in results:
                self._print(report, left)
        drifting = [report.node for report, left in results if left]
        if drifting:
            raise CommandError(f"Drift remains on {', '.join(drifting)}.", returncode=EXIT_PROBLEM)

    def _print(self, report: services.ReconcileReport, left: dict[str, Any]) -> None:
        if not report.reachable:
            self.stdout.write(self.style.ERROR(f"{report.node}: unreachable: {report.error}"))
            return
        summary = "drift remains" if left else "in step"
        if report.moves:
            summary += f", {len(report.moves)} interrupted move(s) resolved"
        if report.updated:
            summary += f", {report.updated} record(s) brought up to date"
        style = self.style.WARNING if left else self.style.SUCCESS
        self.stdout.write(style(f"{report.node}: {summary}"))
        lines = [
            *((f"missing      {name}", "record without a container; --mark-lost marks it lost")
              for name in report.missing if name not in report.marked_lost),
            *((f"marked lost  {name}", "") for name in report.marked_lost),
            *((f"orphan       {pk}", "container without a record; --adopt or --remove-orphans")
              for pk in report.orphans if pk not in report.adopted and pk not in report.removed),
            *((f"adopted      {pk}", "") for pk in report.adopted),
            *((f"removed      {pk}", "") for pk in report.removed),
            *((f"move         {move}", "") for move in report.moves),
            *((f"problem      {problem}", "") for problem in report.problems),
        ]
        for text, hint in lines:
            self.stdout.write(f"  {text}" + (f"  ({hint})" if hint else ""))
