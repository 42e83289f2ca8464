"""Section 7, reconcile: ``services.reconcile`` of one node on the local engine with 20 and
200 real containers (the busybox stand-in, created and not started, with the labels the
``Docker`` backend puts on its own; each size a node with an instance of its own), first in step with the records, then with drift: a tenth
of the records without their container, a tenth of the containers without a record, a tenth
of the records with another status than their container's. The time of a reconcile and its
SQL queries, the larger size against the smaller.

It runs in a process of its own (``python -m bench.reconcile OUT.json SIZE...``) with its own
file SQLite database; everything it creates on the engine carries the instance
``INSTANCE-SIZE`` (:data:`INSTANCE`) and is removed at the end.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .common import BENCH_LABEL, IMAGE, REPO, Row, purge_engine, row

logger = logging.getLogger(__name__)

SECTION = "7 master at scale"
LOCAL = "unix://var/run/docker.sock"
INSTANCE = "bench-reconcile"
PREFIX = "bench-rec"


def _create(api: Any, names: list[str], owner: str, instance: str) -> None:
    """Managed containers of ``instance`` (created, not started) named ``names`` for ``owner``,
    four at a time."""
    from ipynbsrv_backends.backends.docker import L_INSTANCE

    from .listing import _labels

    def one(name: str) -> None:
        labels = {**_labels(name), L_INSTANCE: instance, "org.ipynbsrv.owner": owner, BENCH_LABEL: "1"}
        api.create_container(IMAGE, name=f"{PREFIX}-{owner}-{name}", labels=labels, ports=[8888],
                             host_config=api.create_host_config(port_bindings={8888: ("127.0.0.1",)}))

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(one, names))


def _timed_reconcile(node: Any, reps: int) -> tuple[list[float], int, Any]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from ipynbsrv_backends import services

    times, queries, report = [], 0, None
    for _ in range(reps):
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            report = services.reconcile(node)
            times.append(time.perf_counter() - started)
        queries = max(queries, len(captured))
    return times, queries, report


def one_size(size: int, reps: int) -> dict[str, Any]:
    """In step, then with drift, for ``size`` containers on one node."""
    import docker
    from django.contrib.auth import get_user_model

    from ipynbsrv_backends import registry
    from ipynbsrv_backends.models import Backend, Container, Node

    api = docker.APIClient(base_url=LOCAL, version="auto", timeout=120)
    owner = get_user_model().objects.create_user(f"rec{size}")
    instance = f"{INSTANCE}-{size}"  # each size's node sees only its own containers
    backend = Backend.objects.create(name=f"rec{size}", kind="Docker", config={
        "base_url": LOCAL, "instance": instance, "name_prefix": PREFIX, "pull_policy": "never"})
    node = Node.objects.create(name=f"rec{size}", address="127.0.0.1", backend=backend, capacity=size + 100)
    names = [f"c{n}" for n in range(size)]
    _create(api, names, owner.username, instance)
    mine = [r for r in registry.get_backend(node).get_containers() if r.get("owner") == owner.username]
    Container.objects.bulk_create([Container(owner=owner, name=r["name"], node=node, backend_pk=r["pk"],
                                             status=r["status"], ports=r["ports"], image_ref=IMAGE) for r in mine])
    in_step = _timed_reconcile(node, reps)
    tenth = max(1, size // 10)
    gone = Container.objects.filter(node=node).order_by("pk")[:tenth]
    for container in gone:
        api.remove_container(container.backend_pk, force=True)
    _create(api, [f"x{n}" for n in range(tenth)], owner.username, instance)
    drifted_pks = list(Container.objects.filter(node=node).order_by("-pk").values_list("pk", flat=True)[:tenth])
    times, queries = [], 0
    for _ in range(reps):  # the status drift is repaired by each run: put it back before the next
        Container.objects.filter(pk__in=drifted_pks).update(status="running")
        rep_times, rep_queries, report = _timed_reconcile(node, 1)
        times += rep_times
        queries = max(queries, rep_queries)
    api.close()
    return {"in_step": {"times": in_step[0], "queries": in_step[1]},
            "drift": {"times": times, "queries": queries, "missing": len(report.missing),
                      "orphans": len(report.orphans), "updated": report.updated}}


def child(out: Path, sizes: list[int], reps: int) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "testproject.settings"
    sys.path.insert(0, str(REPO))
    import django

    django.setup()
    from django.core.management import call_command

    for noisy in ("ipynbsrv_backends", "urllib3", "docker"):  # after Django's own logging set-up
        logging.getLogger(noisy).setLevel(logging.ERROR)
    call_command("migrate", verbosity=0, interactive=False)
    try:
        out.write_text(json.dumps({str(size): one_size(size, reps) for size in sizes}))
    finally:
        removed = sum(purge_engine(LOCAL, [f"org.ipynbsrv.instance={INSTANCE}-{size}"]) for size in sizes)
        logger.info("reconcile: removed %d containers", removed)


def measure(sizes: tuple[int, int], reps: int) -> list[Row]:
    small, large = sizes
    with tempfile.TemporaryDirectory(prefix="ipynbsrv-bench-reconcile-") as tmp:
        out = Path(tmp) / "reconcile.json"
        env = {**os.environ, "TESTPROJECT_DB": str(Path(tmp) / "reconcile.sqlite3")}
        subprocess.run([sys.executable, "-m", "bench.reconcile", str(out), str(reps), str(small), str(large)],
                       cwd=REPO, env=env, check=True, timeout=1800)
        results = json.loads(out.read_text())
    rows = []
    for case, label in (("in_step", "in step"), ("drift", "with drift")):
        ours, base = results[str(large)][case], results[str(small)][case]
        extra = (f"; drift found at {large}: {ours['missing']} missing, {ours['orphans']} orphans, "
                 f"{ours['updated']} updated" if case == "drift" else "")
        rows.append(row(SECTION, f"reconcile, {label}: {large} real containers vs {small}", ours["times"],
                        base["times"], note=f"{ours['queries']} queries ({base['queries']} at {small}){extra}"))
        rows.append(row(SECTION, f"reconcile, {label}: queries at {large} vs {small}", [float(ours["queries"])],
                        [float(base["queries"])], target=1.0, scale=1.0, unit=""))
    return rows


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="[bench.reconcile] %(message)s", stream=sys.stderr)
    child(Path(sys.argv[1]), [int(size) for size in sys.argv[3:]], int(sys.argv[2]))
