"""Section 6: the master at scale. The proxy's auth check, every list of the users' API (an
owner's and staff's) and every change list of the admin, with 100, 10,000 and 100,000
containers on record (and as many snapshots and audit entries), against the same pages with
100: the time of a request through Django's test client (median) and its SQL queries.

The rows are inserted directly (:func:`fill`, no engine: what is measured is the master's own
work), into one file SQLite database that grows from one size to the next. It runs in a
process of its own (``python -m bench.scale --child OUT.json``), so the bench's own process
never sets up Django.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .common import REPO, Row, row

logger = logging.getLogger(__name__)

SECTION = "6 master at scale"
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
    each), ``PER_USER`` a user and ``PER_NODE`` a node, with bulk inserts: no engine."""
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
#: Pages whose rows are nodes: 2 nodes at 100 containers, a full page from 10,000 on. They
#: are compared with the same page at the second size, where both hold a full page.
NODE_PAGES = {"API nodes (staff)", "admin nodes"}
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


def sample(client: Any, path: str, reps: int) -> list[float]:
    """``reps`` timings (seconds) of a request for ``path``, after two to warm up."""
    for _ in range(2):
        ask(client, path)
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        ask(client, path)
        times.append(time.perf_counter() - started)
    return times


def child(out: Path, sizes: list[int], reps: int) -> None:
    """In a process of its own: a new database, filled size by size, every page measured."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "testproject.settings"
    sys.path.insert(0, str(REPO))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    results: dict[str, Any] = {}
    for size in sizes:
        started = time.monotonic()
        fill(size)
        logger.info("  %d containers on record (%.1f s to insert)", size, time.monotonic() - started)
        signed_in = clients()
        if size == sizes[0]:  # templates, URL resolvers, the first connection: not the smallest size's price
            for _round in range(5):
                for _name, who, path in PAGES:
                    ask(signed_in[who], path)
        results[str(size)] = {name: {"queries": count_queries(signed_in[who], path),
                                     "times": sample(signed_in[who], path, reps)}
                              for name, who, path in PAGES}
    out.write_text(json.dumps(results))


def measure(sizes: tuple[int, ...], reps: int) -> list[Row]:
    """The rows of section 6: each page at every size against the smallest."""
    with tempfile.TemporaryDirectory(prefix="ipynbsrv-bench-scale-") as tmp:
        out = Path(tmp) / "scale.json"
        env = {**os.environ, "TESTPROJECT_DB": str(Path(tmp) / "scale.sqlite3"),
               "IPYNBSRV_BACKENDS_JSON": json.dumps({"CONTAINER_PORTS": [8888], "CONTAINER_VOLUMES": []})}
        subprocess.run([sys.executable, "-m", "bench.scale", "--child", str(out), "--reps", str(reps),
                        "--sizes", ",".join(map(str, sizes))], cwd=REPO, env=env, check=True, timeout=3600)
        results = json.loads(out.read_text())
    rows = []
    for name, _who, _path in PAGES:
        base_size = sizes[1] if name in NODE_PAGES and len(sizes) > 2 else sizes[0]
        base = results[str(base_size)][name]
        for size in sizes:
            if size <= base_size:
                continue
            ours = results[str(size)][name]
            same = ours["queries"] == base["queries"]
            note = f"{ours['queries']} queries" + ("" if same else f" (**{base['queries']} at {base_size:,}**)")
            rows.append(row(SECTION, f"{name}: {size:,} rows vs {base_size:,}", ours["times"], base["times"],
                            target=TARGET, queries=ours["queries"], base_queries=base["queries"], note=note))
            if not same:
                rows[-1].met = False
    return rows


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="[bench.scale] %(message)s", stream=sys.stderr)
    for noisy in ("ipynbsrv_backends", "django"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(prog="python -m bench.scale")
    parser.add_argument("--child", type=Path, required=True, help="write the raw figures here (JSON)")
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--sizes", default="100,10000,100000")
    args = parser.parse_args(argv)
    child(args.child, [int(size) for size in args.sizes.split(",")], args.reps)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
