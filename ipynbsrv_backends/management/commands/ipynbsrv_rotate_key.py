"""``manage.py ipynbsrv_rotate_key NODE [NODE ...] [--grace SECONDS]``: give nodes new
request-signing keys without downtime (docs/security.md). Exit 1 when a node failed."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser

from ...errors import BackendError
from ...keys import rotate_signing_key
from ...models import Node
from ._common import AuditedCommand


class Command(AuditedCommand):
    help = "Rotate the request-signing key of the named nodes (or of every HttpRemote node with --all)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("nodes", nargs="*", metavar="NODE", help="node names")
        parser.add_argument("--all", action="store_true", help="every node whose configuration has a signing_key")
        parser.add_argument(
            "--grace", type=int, default=None, metavar="SECONDS",
            help="how long the node still accepts the replaced key (default: the node's setting, 300)",
        )

    def handle(self, *args: Any, nodes: list[str], all: bool, grace: int | None, **options: Any) -> None:
        if bool(nodes) == bool(all):
            raise CommandError("Name the nodes, or give --all.", returncode=2)
        queryset = Node.objects.select_related("backend").order_by("name")
        if all:
            selected = [node for node in queryset if node.effective_config().get("signing_key")]
        else:
            selected = list(queryset.filter(name__in=nodes))
            unknown = sorted(set(nodes) - {node.name for node in selected})
            if unknown:
                raise CommandError(f"No node named {', '.join(unknown)}.", returncode=2)
        failed = 0
        for node in selected:
            try:
                rotate_signing_key(node, grace=grace)
            except BackendError as exc:
                failed += 1
                self.stderr.write(f"{node.name}: {type(exc).__name__}: {exc}")
            else:
                self.stdout.write(f"{node.name}: signing key rotated")
        if failed:
            raise CommandError(f"{failed} of {len(selected)} node(s) were not rotated.", returncode=1)
