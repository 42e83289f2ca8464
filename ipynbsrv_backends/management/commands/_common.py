"""What the app's management commands share."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from ... import audit
from ...models import Node

#: Exit statuses, the same for every command of the app (see docs/commands.md).
EXIT_OK = 0
EXIT_PROBLEM = 1
EXIT_USAGE = 2


def select_nodes(names: Sequence[str] | None) -> list[Node]:
    """Every node by name, or the ones named; an unknown name is a usage error."""
    queryset = Node.objects.select_related("backend").order_by("name")
    if not names:
        return list(queryset)
    nodes = list(queryset.filter(name__in=names))
    unknown = sorted(set(names) - {node.name for node in nodes})
    if unknown:
        known = ", ".join(node.name for node in Node.objects.order_by("name")) or "none"
        raise CommandError(f"No node named {', '.join(unknown)} (known nodes: {known}).", returncode=EXIT_USAGE)
    return nodes


def when(moment: datetime | None) -> str | None:
    """A timestamp as ISO 8601 (``None`` stays ``None``)."""
    return moment.isoformat() if moment else None


class AuditedCommand(BaseCommand):
    """The base of every command of the app: whatever it does through the services is
    recorded with via ``command``, no user (the system), the command's name as ``source``
    and the operating-system account that ran it as ``run_by`` (:func:`audit.entry_point`;
    tests/unit/test_audit_walk.py runs every command of the app to show it)."""

    @audit.entry_point(audit.VIA_COMMAND)
    def execute(self, *args: Any, **options: Any) -> Any:
        return super().execute(*args, **options)
