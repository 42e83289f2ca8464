"""Section 7: the master at scale. The proxy's auth check, every list of the users' API (an
owner's and staff's) and every change list of the admin, with 100, 10,000 and 100,000
containers on record (and as many snapshots and audit entries), against the same pages with
100: the time of a request through Django's test client and the SQL queries it makes.

The rows are inserted directly (:func:`fill`, no engine: what is measured is the master's own
work). Each size has a process of its own with its own file SQLite database
(``python -m bench.scale --serve SIZE``, :func:`serve`), filled once; the bench asks the sizes
in turn, page by page, so the ratios are paired samples taken side by side, and the bench's own
process never sets up Django.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .common import REPO, Row, row

logger = logging.getLogger(__name__)

SECTION = "7 master at scale"
#: Containers per user and per node (the issue's 10,000 rows for 200 users; a node's capacity).
PER_USER = 50
PER_NODE = 50
TARGET = 1.2


@contextlib.contextmanager
def _dates_as_given(*models: Any) -> Iterator[None]:
    """``auto_now_add`` off while rows are inserted with the dates they are given."""
    fields = [field for model in models for field in model._meta.concrete_fields if getattr(field, "auto_now_add", False)]
    for field in fields:
        field.auto_now_add = False
    try:
        yield
    finally:
        for field in fields:
            field.auto_now_add = True


def fill(total: int, batch: int = 5000) -> None:
    """Grow the master's tables to ``total`` containers (one snapshot and one audit entry
    each), ``PER_USER`` a user and ``PER_NODE`` a node, one image every user committed and one
    public base image, with bulk inserts: no engine."""
    from django.contrib.auth import get_user_model

    from ipynbsrv_backends.models import AuditEntry, Backend, Container, Image, Node, Snapshot

    user_model = get_user_model()
    backend, _ = Backend.objects.get_or_create(name="scale", defaults={"kind": "Docker", "config": {}})
    image, _ = Image.objects.get_or_create(name="scale-base", ref="scale/base:1", defaults={"public": True})
    have = Container.objects.count()
    now = datetime.datetime.now(datetime.UTC)
    with _dates_as_given(Container, Node, Backend):
        for start in range(have, total, batch):
            numbers = range(start, min(total, start + batch))
            users = {n // PER_USER for n in numbers}
            user_model.objects.bulk_create([user_model(username=f"scale-u{u}") for u in sorted(users)],
                                           ignore_conflicts=True)
            nodes = {n // PER_NODE for n in numbers}
            Node.objects.bulk_create([Node(name=f"scale-n{k}", address=f"10.{k // 250 % 250}.{k % 250}.1",
                                           backend=backend, created_at=now, updated_at=now) for k in sorted(nodes)],
                                     ignore_conflicts=True)
            owner = dict(user_model.objects.filter(username__in=[f"scale-u{u}" for u in users])
                         .values_list("username", "pk"))
            node = dict(Node.objects.filter(name__in=[f"scale-n{k}" for k in nodes]).values_list("name", "pk"))
            Image.objects.bulk_create([Image(name=f"img-u{u}", ref=f"scale/u{u}:1", owner_id=owner[f"scale-u{u}"],
                                             size=1 << 20) for u in sorted(users)], ignore_conflicts=True)
            Container.objects.bulk_create([_container(n, owner[f"scale-u{n // PER_USER}"],
                                                      node[f"scale-n{n // PER_NODE}"], image.pk, now)
                                           for n in numbers])
            ids = list(Container.objects.filter(name__in=[f"c{n}" for n in numbers]).values_list("pk", "name"))
            Snapshot.objects.bulk_create([Snapshot(container_id=pk, name="s1", backend_pk=f"snap-{name}",
                                                   created_at=now) for pk, name in ids])
            AuditEntry.objects.bulk_create([AuditEntry(when=now - datetime.timedelta(minutes=n), actor_name="scale",
                                                       action=("container.create", "container.stop")[n % 2],
                                                       target=f"c{n}", node=f"scale-n{n // PER_NODE}")
                                            for n in numbers])


def _container(n: int, owner: int, node: int, image: int, now: datetime.datetime) -> Any:
    from ipynbsrv_backends.models import Container

    statuses = ("running", "stopped", "creating", "error", "suspended")
    status = statuses[n % len(statuses)]
    return Container(
        owner_id=owner, name=f"c{n}", node_id=node, image_id=image, image_ref="scale/base:1", status=status,
        backend_pk=f"pk-{n}", base_url=f"/notebooks/scale-u{n // PER_USER}/c{n}/",
        ports=[{"internal": 8888, "external": 20000 + n % 40000, "address": "10.0.0.1"}],
        access_secret=f"secret-{n}", created_at=now - datetime.timedelta(minutes=n), updated_at=now,
        pending_move={"stage": "copying", "target": node} if n % 97 == 5 else None,
    )


#: (name, who asks, path): every page measured. ``owner`` is a user with ``PER_USER``
#: containers (fewer below that size); ``staff`` a superuser.
API = "/api"
ADMIN = "/admin/ipynbsrv_backends"
PAGES: list[tuple[str, str, str]] = [
    ("proxy auth check", "owner", "/proxy/auth/"),
    ("API containers (owner)", "owner", f"{API}/containers/"),
    ("API containers (staff)", "staff", f"{API}/containers/"),
    ("API snapshots (owner)", "owner", f"{API}/snapshots/"),
    ("API snapshots (staff)", "staff", f"{API}/snapshots/"),
    ("API images (owner)", "owner", f"{API}/images/"),
    ("API images (staff)", "staff", f"{API}/images/"),
    ("API nodes (staff)", "staff", f"{API}/nodes/"),
    ("admin containers", "staff", f"{ADMIN}/container/"),
    ("admin snapshots", "staff", f"{ADMIN}/snapshot/"),
    ("admin audit log", "staff", f"{ADMIN}/auditentry/"),
    ("admin nodes", "staff", f"{ADMIN}/node/"),
    ("admin images", "staff", f"{ADMIN}/image/"),
    ("admin backends", "staff", f"{ADMIN}/backend/"),
]
#: Pages whose rows are nodes or images (2 nodes, 3 images at 100 containers; a full page
#: from 10,000 on). They are compared with the same page at the second size, where both hold
#: a full page.
NODE_PAGES = {"API nodes (staff)", "admin nodes", "API images (staff)", "admin images"}
#: More pages for the query counts only (their 100-row page holds fewer rows than a full one):
#: a filter, the date hierarchy drilled down, the audit log's filters, a search.
QUERY_PAGES: list[tuple[str, str, str]] = [
    ("admin containers, filtered by status and node", "staff",
     f"{ADMIN}/container/?status__exact=running&node__id__exact=1"),
    ("admin containers, one month", "staff",
     f"{ADMIN}/container/?created_at__year=2020&created_at__month=1"),
    ("admin audit log, by action and node", "staff", f"{ADMIN}/auditentry/?action=container.stop&node=scale-n0"),
    ("API snapshots of one container", "owner", f"{API}/snapshots/?container=1"),
]


def clients() -> dict[str, Any]:
    """Test clients signed in as the owner (``scale-u0``) and as staff (``scale-admin``)."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    user_model = get_user_model()
    staff = user_model.objects.filter(username="scale-admin").first() or user_model.objects.create_superuser(
        "scale-admin", password=None)
    owner = user_model.objects.get(username="scale-u0")
    signed_in = {}
    for who, user in (("owner", owner), ("staff", staff)):
        client = Client()
        client.force_login(user)
        signed_in[who] = client
    return signed_in


def ask(client: Any, path: str) -> Any:
    """One request for ``path`` (the auth check with the URL of the owner's first container)."""
    if path.startswith("/proxy/"):
        return client.get(path, HTTP_X_ORIGINAL_URI="/notebooks/scale-u0/c0/api/status")
    return client.get(path)


def count_queries(client: Any, path: str) -> int:
    """The SQL queries one request for ``path`` makes (after it answered 200 once)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        answer = ask(client, path)
    if answer.status_code != 200:
        raise RuntimeError(f"{path} answered {answer.status_code}: {answer.content[:300]!r}")
    return len(queries)


def timed(client: Any, path: str, count: int) -> list[float]:
    """``count`` timings (seconds) of a request for ``path``."""
    times = []
    for _ in range(count):
        started = time.perf_counter()
        ask(client, path)
        times.append(time.perf_counter() - started)
    return times


def serve(size: int) -> None:
    """One size, in a process of its own: a new database (``TESTPROJECT_DB``) filled to ``size``
    containers; then, for each line ``PAGE-NAME<TAB>COUNT`` on stdin, the timings of ``COUNT``
    requests for that page as a JSON line on stdout."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "testproject.settings"
    sys.path.insert(0, str(REPO))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    started = time.monotonic()
    fill(size)
    logger.info("%d containers on record (%.1f s to insert)", size, time.monotonic() - started)
    signed_in = clients()
    paths = {name: (signed_in[who], path) for name, who, path in PAGES}
    queries = {name: count_queries(client, path) for name, (client, path) in paths.items()}
    for _round in range(5):  # templates, URL resolvers, caches: no size's price
        for client, path in paths.values():
            ask(client, path)
    print(json.dumps({"ready": True, "queries": queries}), flush=True)
    for line in sys.stdin:
        name, _tab, count = line.rstrip("\n").partition("\t")
        client, path = paths[name]
        print(json.dumps({"seconds": timed(client, path, int(count))}), flush=True)


class Size:
    """A :func:`serve` process for one size, asked page by page."""

    def __init__(self, size: int, tmp: Path) -> None:
        self.size = size
        env = {**os.environ, "TESTPROJECT_DB": str(tmp / f"scale-{size}.sqlite3"),
               "IPYNBSRV_BACKENDS_JSON": json.dumps({"CONTAINER_PORTS": [8888], "CONTAINER_VOLUMES": []})}
        self.process = subprocess.Popen([sys.executable, "-m", "bench.scale", "--serve", str(size)], cwd=REPO,
                                        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.queries: dict[str, int] = {}

    def answer(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the bench process for {self.size} rows ended (exit {self.process.wait()})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def ready(self) -> None:
        self.queries = self.answer()["queries"]

    def sample(self, name: str, count: int) -> float:
        """The median of ``count`` requests for the page ``name``."""
        assert self.process.stdin is not None
        self.process.stdin.write(f"{name}\t{count}\n")
        self.process.stdin.flush()
        return statistics.median(self.answer()["seconds"])

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def measure(sizes: tuple[int, ...], reps: int, per_sample: int = 5) -> list[Row]:
    """The rows of section 7: each page at every size against the smallest (node pages against
    the second), the sizes asked in turn, page by page, ``reps`` times (each sample the median
    of ``per_sample`` requests): a load that comes and goes meets every size alike."""
    with tempfile.TemporaryDirectory(prefix="ipynbsrv-bench-scale-") as tmp:
        servers = [Size(size, Path(tmp)) for size in sizes]  # they fill their databases at once
        try:
            for server in servers:
                server.ready()
            samples: dict[tuple[str, int], list[float]] = {}
            for rep in range(reps):
                for name, _who, _path in PAGES:
                    turn = servers[rep % len(servers):] + servers[:rep % len(servers)]
                    for server in turn:
                        samples.setdefault((name, server.size), []).append(server.sample(name, per_sample))
        finally:
            for server in servers:
                server.close()
    queries = {server.size: server.queries for server in servers}
    return rows_of(sizes, samples, queries)


def rows_of(sizes: tuple[int, ...], samples: dict[tuple[str, int], list[float]],
            queries: dict[int, dict[str, int]]) -> list[Row]:
    rows = []
    for name, _who, _path in PAGES:
        base_size = sizes[1] if name in NODE_PAGES and len(sizes) > 2 else sizes[0]
        for size in (size for size in sizes if size > base_size):
            ours, base = queries[size][name], queries[base_size][name]
            note = f"{ours} queries" + ("" if ours == base else f" (**{base} at {base_size:,}**)")
            rows.append(row(SECTION, f"{name}: {size:,} rows vs {base_size:,}", samples[name, size],
                            samples[name, base_size], target=TARGET, queries=ours, base_queries=base, note=note))
            if ours != base:
                rows[-1].met = False
    return rows


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="[bench.scale] %(message)s", stream=sys.stderr)
    for noisy in ("ipynbsrv_backends", "django"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(prog="python -m bench.scale")
    parser.add_argument("--serve", type=int, required=True, help="containers on record (see serve())")
    serve(parser.parse_args(argv).serve)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
