"""Move users' containers to another node."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError, CommandParser

from ... import errors, services
from ...models import Container
from ._common import EXIT_PROBLEM, EXIT_USAGE, AuditedCommand, select_nodes


class Command(AuditedCommand):
    help = (
        "Move containers to another node: stop, commit and push, recreate on the target, "
        "then remove the old copy. Name containers as OWNER/NAME, or use --from to empty a node."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("containers", nargs="*", metavar="OWNER/NAME")
        parser.add_argument("--from", dest="source", metavar="NODE", help="move every container off this node")
        parser.add_argument("--to", dest="target", metavar="NODE", help="the target node (default: placement decides)")
        parser.add_argument("--allow-draining", action="store_true",
                            help="let --to name a draining node (recorded in the audit log); never a disabled one")

    def handle(self, *args: Any, containers: list[str], source: str | None, target: str | None,
               allow_draining: bool = False, **options: Any) -> None:
        if bool(containers) == bool(source):
            raise CommandError("Name containers as OWNER/NAME, or give --from NODE (one of the two).")
        if allow_draining and not target:
            raise CommandError("--allow-draining goes with --to NODE (placement never picks a draining node).",
                               returncode=EXIT_USAGE)
        target_node = select_nodes([target])[0] if target else None
        if source:
            node = select_nodes([source])[0]
            chosen = list(Container.objects.filter(node=node).exclude(status__in=[Container.Status.LOST,
                                                                                   Container.Status.CREATING]))
        else:
            chosen = [self._find(ref) for ref in containers]
        if not chosen:
            self.stdout.write("Nothing to move.")
            return
        failures = 0
        for container in chosen:
            origin = container.node.name
            try:
                services.move_container(container, target_node, on_progress=self._reporter(container),
                                        allow_draining=allow_draining)
            except errors.BackendError as exc:
                failures += 1
                self.stdout.write(self.style.ERROR(f"{container}: not moved from {origin}: {exc}"))
                continue
            self.stdout.write(self.style.SUCCESS(f"{container}: moved from {origin} to {container.node.name}"))
        if failures:
            raise CommandError(f"{failures} of {len(chosen)} container(s) were not moved.", returncode=EXIT_PROBLEM)

    def _reporter(self, container: Container) -> Callable[[str], None]:
        def report(text: str) -> None:
            self.stdout.write(f"{container}: {text} ...")

        return report

    def _find(self, ref: str) -> Container:
        owner, _, name = ref.partition("/")
        if not owner or not name:
            raise CommandError(f"{ref!r}: name a container as OWNER/NAME, e.g. alice/thesis.")
        User = get_user_model()
        try:
            return Container.objects.select_related("node", "owner").get(
                **{f"owner__{User.USERNAME_FIELD}": owner}, name=name)
        except Container.DoesNotExist:
            raise CommandError(f"{owner} has no container named {name!r}.") from None
