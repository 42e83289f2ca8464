"""Running one function in several threads at once, for the concurrency tests and the bench."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any


def run_together(target: Callable[[Any], Any], arguments: Iterable[Any], *, timeout: float) -> list[Any]:
    """Call ``target(argument)`` for every argument, each in a thread of its own, all at once,
    and return what each returned or raised (an exception is returned, not raised), in the
    order the calls ended. Each Django thread closes its database connection when it ends.
    A call still running after ``timeout`` seconds is left behind and has no result."""
    results: list[Any] = []
    lock = threading.Lock()

    def call(argument: Any) -> None:
        from django.db import connection

        try:
            outcome = target(argument)
        except Exception as exc:  # noqa: BLE001 - the caller inspects every outcome
            outcome = exc
        finally:
            connection.close()
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=call, args=(argument,)) for argument in arguments]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    with lock:
        return list(results)
