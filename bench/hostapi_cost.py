"""Section 4: what a status call through the host API costs next to the engine's own ping,
at 1 and at 32 concurrent clients (each with its own connection)."""

from __future__ import annotations

import logging
import statistics
import threading
from collections.abc import Callable
from pathlib import Path

import docker

from ipynbsrv_backends.backends import HttpRemote

from .common import INSTANCE_REMOTE, HostAPIProcess, Row, row, timed

logger = logging.getLogger(__name__)

LOCAL = "unix://var/run/docker.sock"


def _latencies(make: Callable[[], tuple[Callable[[], object], Callable[[], None]]], clients: int,
               calls: int) -> list[float]:
    """Every call's latency, ``clients`` threads making ``calls`` calls each, all at once."""
    results: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients)
    failures: list[BaseException] = []

    def client() -> None:
        call, close = make()
        try:
            call()  # connect before the clock starts
            barrier.wait(timeout=60)
            mine = [timed(call)[0] for _ in range(calls)]
            with lock:
                results.extend(mine)
        except Exception as exc:  # noqa: BLE001 - reported below
            failures.append(exc)
        finally:
            close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    if failures:
        raise RuntimeError(f"{len(failures)} client(s) failed: {failures[0]!r}")
    return results


def _chunks(values: list[float], parts: int) -> list[float]:
    """Medians of ``parts`` equal slices, as repetitions for the spread."""
    size = max(1, len(values) // parts)
    return [statistics.median(values[i:i + size]) for i in range(0, size * parts, size) if values[i:i + size]]


def measure(logdir: Path, calls: int, clients: tuple[int, ...]) -> list[Row]:
    node = HostAPIProcess(logdir, {"base_url": LOCAL, "instance": INSTANCE_REMOTE, "name_prefix": "bench-rem",
                                   "pull_policy": "never"}).start()

    def remote() -> tuple[Callable[[], object], Callable[[], None]]:
        backend = HttpRemote(node.url, token=node.token, timeout=60, status_timeout=60)

        def status() -> object:
            if backend.get_status() != 0:
                raise RuntimeError("the host API reports a status other than ok")
            return None
        return status, backend.close

    def ping() -> tuple[Callable[[], object], Callable[[], None]]:
        api = docker.APIClient(base_url=LOCAL, version="auto", timeout=60)
        return api.ping, api.close

    def same() -> tuple[Callable[[], object], Callable[[], None]]:
        api = docker.APIClient(base_url=LOCAL, version="auto", timeout=60)
        labels = {"label": [f"org.ipynbsrv.instance={INSTANCE_REMOTE}", "org.ipynbsrv.kind=container"]}

        def both() -> object:
            api.ping()
            return api.containers(all=True, filters=labels)
        return both, api.close

    rows: list[Row] = []
    try:
        for count in clients:
            parts = 5
            ours = _latencies(remote, count, calls)
            base = _latencies(ping, count, calls)
            engine = _latencies(same, count, calls)
            per = "client" if count == 1 else "clients"
            rows.append(row("4 host API", f"status through the host API vs engine ping, {count} {per}",
                            _chunks(ours, parts), _chunks(base, parts),
                            note="the status call pings and lists the node's containers"))
            rows.append(row("4 host API", f"status through the host API vs the same engine calls, {count} {per}",
                            _chunks(ours, parts), _chunks(engine, parts),
                            note="baseline: ping + one list call, made directly"))
            logger.info("host API cost at %d client(s) done", count)
    finally:
        node.stop()
    return rows
