"""``manage.py ipynbsrv_hub add NAME | list | rotate NAME | remove NAME``: the credentials of the
JupyterHubs that spawn onto this master (docs/jupyterhub.md).

``add`` and ``rotate`` print only the token on stdout, once: it is kept as a hash and cannot be
shown again. ``remove`` deletes the credential (its requests are refused at once); the master users
it made and their containers stay, for an administrator to keep or delete.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.db.models import Count

from ... import audit, errors
from ...models import HubCredential
from ...services import hub as hubs
from ...validation import NAME_RE
from ._common import EXIT_USAGE, AuditedCommand, when


class Command(AuditedCommand):
    help = "Add, list, rotate or remove the credentials of JupyterHubs (each prints the token only once)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="verb", required=True, metavar="{add,list,rotate,remove}")
        sub.add_parser("add", help="a new hub: prints its token").add_argument("name", metavar="NAME")
        sub.add_parser("list", help="every hub (no tokens)")
        sub.add_parser("rotate", help="a new token for the hub: prints it").add_argument("name", metavar="NAME")
        sub.add_parser("remove", help="delete the hub's credential").add_argument("name", metavar="NAME")

    def handle(self, *args: Any, verb: str, name: str = "", **options: Any) -> None:
        if verb == "list":
            self._list()
            return
        if verb == "add":
            if not NAME_RE.fullmatch(name) or len(name) > 50 or "." in name:
                raise CommandError("A hub's name is 1 to 50 lower-case letters and digits, optionally separated by "
                                   "single '-' or '_'.", returncode=EXIT_USAGE)
            try:
                hub, token = hubs.add_hub(name)
            except errors.BackendError as exc:
                raise CommandError(str(exc), returncode=EXIT_USAGE) from exc
            audit.record("hub.add", None, target_type="hub", target=hub.name)
            self.stderr.write(f"hub {hub.name} added (group {hub.group.name}); its token, shown only now:")
            self.stdout.write(token)
            return
        found = HubCredential.objects.filter(name=name).first()
        if found is None:
            known = ", ".join(HubCredential.objects.values_list("name", flat=True)) or "none"
            raise CommandError(f"No hub named {name!r} (known: {known}).", returncode=EXIT_USAGE)
        self._change(verb, found)

    def _change(self, verb: str, hub: HubCredential) -> None:
        name = hub.name
        if verb == "rotate":
            token = hubs.rotate_hub(hub)
            audit.record("hub.rotate", None, target_type="hub", target=hub.name)
            self.stderr.write(f"hub {hub.name}: new token (the old one no longer works), shown only now:")
            self.stdout.write(token)
            return
        users = hub.users.count()
        hub.delete()
        audit.record("hub.remove", None, target_type="hub", target=name)
        self.stdout.write(f"hub {name} removed; the {users} master user(s) it made and their containers are kept")

    def _list(self) -> None:
        rows = HubCredential.objects.select_related("group").annotate(
            n_users=Count("users", distinct=True), n_servers=Count("users__servers", distinct=True))
        self.stdout.write(f"{'name':<20} {'enabled':<8} {'group':<28} {'users':>5} {'servers':>7}  last used")
        for hub in rows:
            self.stdout.write(f"{hub.name:<20} {'yes' if hub.enabled else 'no':<8} {hub.group.name:<28} "
                              f"{hub.n_users:>5} {hub.n_servers:>7}  {when(hub.last_used_at) or '-'}")
