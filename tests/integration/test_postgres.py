"""The master's concurrency on a real PostgreSQL: many creates at once (threads, each with
its own connection) never exceed a node's capacity, never give two containers one name,
and round-robin stays fair.

Run on SQLite (the usual pass), the module runs itself again on PostgreSQL in a second
pytest process (``TESTPROJECT_DB_ENGINE=postgresql``), using the server ``make test``
started (``TESTPROJECT_PG_PORT``) or starting one with ``scripts/postgres.sh``. With
``CI=true`` a PostgreSQL that cannot be had is a failure, not a skip.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from ipynbsrv_backends import errors, services
from ipynbsrv_backends.models import Container

from ..support.ci import missing

ROOT = Path(__file__).resolve().parent.parent.parent
SCRIPT = ROOT / "scripts" / "postgres.sh"


_unavailable = missing


# ---------------------------------------------------------------------------- the second pass

@pytest.mark.timeout(1200)
def test_the_concurrency_tests_pass_on_postgresql():
    if connection.vendor == "postgresql":
        pytest.skip("this is the PostgreSQL pass")
    port = os.environ.get("TESTPROJECT_PG_PORT")
    started_here = False
    if not port:  # one this machine already runs (scripts/postgres.sh start by hand)?
        out = subprocess.run(["bash", str(SCRIPT), "env"], capture_output=True, text=True, timeout=60)
        port = out.stdout.strip().rpartition("=")[2] if out.returncode == 0 else ""
    if not port:
        if os.geteuid() != 0:
            _unavailable("the test PostgreSQL needs root (scripts/postgres.sh), or set TESTPROJECT_PG_PORT")
        out = subprocess.run(["bash", str(SCRIPT), "start"], capture_output=True, text=True, timeout=600)
        if out.returncode != 0:
            _unavailable(f"scripts/postgres.sh start failed:\n{out.stdout}\n{out.stderr}")
        port = out.stdout.strip().rpartition("=")[2]
        started_here = True
    try:
        env = {**os.environ, "TESTPROJECT_DB_ENGINE": "postgresql", "TESTPROJECT_PG_PORT": port}
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(Path(__file__)), "-m", "postgres"],
            capture_output=True, text=True, env=env, cwd=ROOT, timeout=900,
        )
    finally:
        if started_here:
            subprocess.run(["bash", str(SCRIPT), "stop"], capture_output=True, text=True, timeout=120)
    summary = run.stdout.strip().splitlines()[-1] if run.stdout.strip() else ""
    assert run.returncode == 0, f"{run.stdout[-6000:]}\n{run.stderr[-3000:]}"
    passed = re.search(r"(\d+) passed", summary)
    assert passed and int(passed.group(1)) == 5 and "skipped" not in summary, summary


# ---------------------------------------------------------------------------- on PostgreSQL

@pytest.fixture
def on_postgres(master_settings, engine):
    if connection.vendor != "postgresql":
        pytest.skip("runs in the PostgreSQL pass (test_the_concurrency_tests_pass_on_postgresql)")
    return master_settings


def at_once(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run every call in its own thread (and database connection), all released together;
    returns each result or the exception it raised."""
    results: list[Any] = [None] * len(calls)
    barrier = threading.Barrier(len(calls), timeout=60)

    def run(index: int) -> None:
        from django.db import connection as own

        try:
            barrier.wait()
            results[index] = calls[index]()
        except Exception as exc:  # the test checks what each got
            results[index] = exc
        finally:
            own.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    assert not any(thread.is_alive() for thread in threads), "a create never returned"
    return results


def engine_names(engine, node) -> list[str]:
    label = f"org.ipynbsrv.instance={node.backend.config['instance']}"
    return sorted(c.name for c in engine.containers.list(all=True, filters={"label": label}))


@pytest.mark.postgres
@pytest.mark.engine
@pytest.mark.django_db(transaction=True)
def test_concurrent_creates_never_exceed_capacity(on_postgres, make_node, image, django_user_model, engine):
    nodes = [make_node("p1", capacity=3), make_node("p2", capacity=3)]
    users = [django_user_model.objects.create_user(f"user{i}") for i in range(10)]
    results = at_once([lambda user=user: services.create_container(user, "nb", image=image) for user in users])
    made = [r for r in results if isinstance(r, Container)]
    refused = [r for r in results if isinstance(r, errors.NoNodeAvailableError)]
    assert len(made) == 6 and len(refused) == 4, results
    for node in nodes:
        assert Container.objects.filter(node=node).count() == 3
        assert len(engine_names(engine, node)) == 3


@pytest.mark.postgres
@pytest.mark.engine
@pytest.mark.django_db(transaction=True)
def test_concurrent_creates_never_share_a_name(on_postgres, make_node, image, alice, engine):
    node = make_node("p1", capacity=20)
    results = at_once([lambda: services.create_container(alice, "same", image=image) for _ in range(8)])
    made = [r for r in results if isinstance(r, Container)]
    taken = [r for r in results if isinstance(r, errors.ContainerAlreadyExistsError)]
    assert len(made) == 1 and len(taken) == 7, results
    assert Container.objects.filter(owner=alice, name="same").count() == 1
    assert engine_names(engine, node) == [made[0].backend_pk]


@pytest.mark.postgres
@pytest.mark.engine
@pytest.mark.django_db(transaction=True)
def test_round_robin_stays_fair_under_concurrency(on_postgres, make_node, image, alice):
    on_postgres.IPYNBSRV_BACKENDS = {**on_postgres.IPYNBSRV_BACKENDS, "SERVER_SELECTION_ALGORITHM": "round-robin"}
    nodes = [make_node(f"r{i}", capacity=20) for i in range(3)]
    results = at_once([lambda i=i: services.create_container(alice, f"c{i}", image=image) for i in range(9)])
    assert all(isinstance(r, Container) for r in results), results
    counts = Counter(Container.objects.values_list("node__name", flat=True))
    assert set(counts) == {node.name for node in nodes}
    assert max(counts.values()) - min(counts.values()) <= 1, counts


class NoTurn:
    """Stands in for the service layer's in-process write turn: the threads below then meet
    only in the database, as the processes of several web servers do."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


@pytest.mark.postgres
@pytest.mark.engine
@pytest.mark.django_db(transaction=True)
def test_twenty_creates_at_once_by_one_user_never_pass_the_quota(on_postgres, make_node, image, alice, engine,
                                                                 monkeypatch):
    from ipynbsrv_backends.services import create, placing, quotas

    for module in (create, placing, quotas):
        monkeypatch.setattr(module, "write_turn", NoTurn())
    on_postgres.IPYNBSRV_BACKENDS = {
        **on_postgres.IPYNBSRV_BACKENDS, "CONTAINER_OPTIONS": {"mem_limit": "64m"},
        "QUOTAS": {"default": {"containers": 10, "memory": "320m"}},  # memory is the one that binds: 5
    }
    node = make_node("q1", capacity=30)
    results = at_once([lambda i=i: services.create_container(alice, f"c{i}", image=image) for i in range(20)])
    made = [r for r in results if isinstance(r, Container)]
    refused = [r for r in results if isinstance(r, errors.QuotaExceededError)]
    assert len(made) == 5 and len(refused) == 15, results
    assert all("alice's memory quota of 320 MiB: 320 MiB in use and 64 MiB more needed, 64 MiB over" in str(r)
               for r in refused), refused[0]
    assert Container.objects.filter(owner=alice).count() == 5
    assert len(engine_names(engine, node)) == 5


@pytest.mark.postgres
@pytest.mark.engine
@pytest.mark.django_db(transaction=True)
def test_starts_at_once_never_pass_the_memory_quota(on_postgres, make_node, image, alice, monkeypatch):
    """Starts hold their memory in a reservation until their record says running: of six stopped
    containers started at once under a quota for two, two run."""
    from ipynbsrv_backends.services import create, placing, quotas

    for module in (create, placing, quotas):
        monkeypatch.setattr(module, "write_turn", NoTurn())
    on_postgres.IPYNBSRV_BACKENDS = {**on_postgres.IPYNBSRV_BACKENDS, "CONTAINER_OPTIONS": {"mem_limit": "64m"}}
    make_node("s1", capacity=10)
    stopped = [services.stop_container(services.create_container(alice, f"c{i}", image=image)) for i in range(6)]
    on_postgres.IPYNBSRV_BACKENDS = {**on_postgres.IPYNBSRV_BACKENDS, "QUOTAS": {"default": {"memory": "128m"}}}
    results = at_once([lambda c=c: services.start_container(c) for c in stopped])
    started = [r for r in results if isinstance(r, Container)]
    refused = [r for r in results if isinstance(r, errors.QuotaExceededError)]
    assert len(started) == 2 and len(refused) == 4, results
    assert Container.objects.filter(owner=alice, status="running").count() == 2
