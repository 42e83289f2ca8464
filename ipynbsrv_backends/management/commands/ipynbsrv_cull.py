"""``manage.py ipynbsrv_cull``: apply the idle policy (``IDLE_CULLING``) once, or on a schedule.

Once (the default): decide for every running or suspended container and suspend or stop the
idle ones, one line each with the reason; ``--dry-run`` only says what it would do and why.
``--every SECONDS`` runs a round, waits, and runs again until it gets SIGTERM or SIGINT (it
finishes the container it is acting on, skips the rest of the round and exits 0): no cron
needed, e.g. as a systemd service. A round that fails as a whole (the database away) is logged and the next one runs.

Exit status (once): 0 when every action went well, 1 when one failed, 2 on a usage error.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

from django.core.management.base import CommandError, CommandParser
from django.db import connections

from ...services import culling, idlepolicy
from ._common import EXIT_PROBLEM, EXIT_USAGE, AuditedCommand

logger = logging.getLogger(__name__)

#: The shortest interval ``--every`` accepts (seconds): each round asks every running server.
MIN_EVERY = 5


def _drop_stale_connections() -> None:
    """Between rounds of a long-running process: close database connections that broke or
    outlived ``CONN_MAX_AGE`` (as Django does between requests), never one inside a
    transaction."""
    for connection in connections.all():
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()


class Command(AuditedCommand):
    help = (
        "Suspend or stop idle containers by the idle policy (IDLE_CULLING): once, or every SECONDS with "
        "--every until SIGTERM. --dry-run says what it would do and why. Exits 1 when an action failed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Only say what would be done, and why.")
        parser.add_argument("--every", type=float, metavar="SECONDS",
                            help=f"Run a round every SECONDS (at least {MIN_EVERY}) until SIGTERM or SIGINT.")
        parser.add_argument("--rounds", type=int, metavar="N",
                            help="With --every: stop after N rounds (default: run until stopped).")
        parser.add_argument("--json", action="store_true", dest="as_json", help="Print JSON lines instead of text.")

    def handle(self, *args: Any, dry_run: bool = False, every: float | None = None, rounds: int | None = None,
               as_json: bool = False, **options: Any) -> None:
        try:
            policy = idlepolicy.current_policy()
        except ValueError as exc:
            raise CommandError(f"The idle policy is not valid: {exc}", returncode=EXIT_USAGE) from exc
        if every is None:
            if rounds is not None:
                raise CommandError("--rounds goes with --every.", returncode=EXIT_USAGE)
            if self._round(policy, dry_run, as_json):
                raise CommandError("An action failed (see above and the audit log).", returncode=EXIT_PROBLEM)
            return
        if every < MIN_EVERY:
            raise CommandError(f"--every must be at least {MIN_EVERY} seconds, not {every:g}.", returncode=EXIT_USAGE)
        if rounds is not None and rounds < 1:
            raise CommandError(f"--rounds must be at least 1, not {rounds}.", returncode=EXIT_USAGE)
        self._loop(policy, every, rounds, dry_run, as_json)

    def _loop(self, policy: idlepolicy.Policy, every: float, rounds: int | None, dry_run: bool, as_json: bool) -> None:
        stop = threading.Event()
        previous: dict[Any, Any] = {}

        def stopping(signum: int, frame: Any) -> None:
            logger.info("ipynbsrv_cull: signal %d, stopping after this round", signum)
            stop.set()

        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, stopping)
        try:
            done = 0
            while not stop.is_set():
                _drop_stale_connections()
                try:
                    self._round(policy, dry_run, as_json, stop.is_set)
                except Exception:  # noqa: BLE001 - one failed round (the database away) is not the end
                    logger.exception("ipynbsrv_cull: a round failed; the next one runs in %g s", every)
                done += 1
                if rounds is not None and done >= rounds:
                    break
                stop.wait(every)
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)
        self.stdout.write("Stopped." if stop.is_set() else f"Done after {done} round(s).")

    def _round(self, policy: idlepolicy.Policy, dry_run: bool, as_json: bool,
               stopping: Callable[[], bool] = lambda: False) -> bool:
        """One round; True when an action failed."""
        decisions = culling.cull(dry_run=dry_run, policy=policy, stopping=stopping)
        for decision in decisions:
            if as_json:
                self.stdout.write(json.dumps({
                    "container": str(decision.container), "id": decision.container.pk,
                    "status": decision.container.status, "action": decision.action, "dry_run": dry_run,
                    "done": decision.done, "reason": decision.verdict.reason, "rule": decision.rule,
                    "idle_seconds": decision.verdict.idle_seconds, "error": decision.error}))
            else:
                style = self.style.ERROR if decision.error else \
                    self.style.WARNING if decision.action != idlepolicy.LEAVE else (lambda text: text)
                self.stdout.write(style(decision.line(dry_run)))
        if not decisions and not as_json:
            self.stdout.write("No running or suspended containers.")
        return any(decision.error for decision in decisions)
