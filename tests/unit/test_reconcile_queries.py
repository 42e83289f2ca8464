"""Reconcile costs the same number of queries however many containers a node has (issue
15: it made one per missing record). The node is a stand-in that lists given records: the
test is about the master's queries only; tests/integration/test_services.py and tests/integration/test_commands.py
show reconcile against the real engine."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from ipynbsrv_backends import registry, services
from ipynbsrv_backends.models import Backend, Container, Node

from ..hostapi_fakes import BaseOnlyBackend

pytestmark = pytest.mark.django_db


class Listing(BaseOnlyBackend):
    """A node that runs exactly the records in :attr:`RECORDS`."""

    RECORDS: list[dict[str, Any]] = []

    def get_containers(self, only_running: bool = False, **kwargs: Any) -> list[Any]:
        return [dict(r) for r in self.RECORDS]

    def delete_container(self, container: str, **kwargs: Any) -> None:
        Listing.RECORDS = [r for r in self.RECORDS if r["pk"] != container]


@pytest.fixture
def listing(master_settings):
    master_settings.IPYNBSRV_BACKENDS = {
        **master_settings.IPYNBSRV_BACKENDS,
        "BACKEND_CLASSES": {"Docker": "ipynbsrv_backends.backends.Docker",
                            "Listing": f"{__name__}.Listing"},
    }
    Listing.RECORDS = []
    backend = Backend.objects.create(name="listing", kind="Listing", config={})
    yield backend
    Listing.RECORDS = []
    registry.forget_backend()


def record(pk: str, owner: str, name: str, status: str = "running") -> dict[str, Any]:
    return {"pk": pk, "name": name, "owner": owner, "status": status, "image": "img", "created": "",
            "ports": [], "volumes": []}


def drifted_node(backend: Backend, users: list[Any], count: int, tag: str) -> Node:
    """``count`` records on a node: a third gone from it, a third stopped there, a third in
    step; as many unconfirmed records (half found on the node by name); as many orphans."""
    node = Node.objects.create(name=f"n-{tag}", address="127.0.0.1", backend=backend, capacity=10 * count)
    rows, listed = [], []
    for i in range(count):
        owner = users[i % len(users)]
        rows.append(Container(owner=owner, name=f"c{i}-{tag}", node=node, backend_pk=f"{tag}-{i}", status="running"))
        if i % 3 == 1:
            listed.append(record(f"{tag}-{i}", owner.username, f"c{i}-{tag}", status="stopped"))
        elif i % 3 == 2:
            listed.append(record(f"{tag}-{i}", owner.username, f"c{i}-{tag}"))
        rows.append(Container(owner=owner, name=f"u{i}-{tag}", node=node, backend_pk="", status="error"))
        if i % 2:
            listed.append(record(f"{tag}-u{i}", owner.username, f"u{i}-{tag}"))
        listed.append(record(f"{tag}-o{i}", owner.username, f"o{i}-{tag}"))
    Container.objects.bulk_create(rows)
    Listing.RECORDS = listed
    return node


def queries(node: Node, **flags: bool) -> tuple[int, services.ReconcileReport]:
    node = Node.objects.select_related("backend").get(pk=node.pk)
    with CaptureQueriesContext(connection) as captured:
        report = services.reconcile(node, **flags)
    return len(captured.captured_queries), report


@pytest.mark.parametrize("flags", [{}, {"mark_lost": True}, {"mark_lost": True, "remove": True}],
                         ids=["report", "mark-lost", "mark-lost-remove"])
def test_reconcile_queries_do_not_grow_with_the_containers(listing, django_user_model, flags):
    users = [django_user_model.objects.create_user(f"user{i}") for i in range(5)]
    counts = {}
    for count in (10, 100):
        node = drifted_node(listing, users, count, tag=f"{count}")
        counts[count], report = queries(node, **flags)
        gone = len([i for i in range(count) if i % 3 == 0]) + count // 2
        assert len(report.missing) == gone and report.updated == len(range(1, count, 3)) + count - count // 2
        assert len(report.orphans) == count
        if flags.get("mark_lost"):
            assert Container.objects.filter(node=node, status="lost").count() == gone
            assert len(report.marked_lost) == gone
        else:
            assert not Container.objects.filter(node=node, status="lost").exists()
        if flags.get("remove"):
            assert len(report.removed) == count and all("-o" not in r["pk"] for r in Listing.RECORDS)
        stopped = Container.objects.get(node=node, name=f"c1-{count}")
        assert (stopped.status, stopped.backend_pk) == ("stopped", f"{count}-1")
        confirmed = Container.objects.get(node=node, name=f"u1-{count}")
        assert (confirmed.status, confirmed.backend_pk) == ("running", f"{count}-u1")
    assert counts[10] == counts[100], counts
    assert counts[10] <= 12, counts


def test_adopting_orphans_costs_the_same_queries_at_10_and_many(listing, django_user_model):
    """Adoption: one query each for the users, their names in use and the images, and one
    insert (Django splits a bulk insert into batches on SQLite, whose queries take at most 999
    parameters: hence as many as one batch holds, up to 40, not 100)."""
    from django.db import connection

    users = [django_user_model.objects.create_user(f"user{i}") for i in range(5)]
    fields = [f for f in Container._meta.concrete_fields if not f.primary_key]
    many = min(40, connection.ops.bulk_batch_size(fields, [Container()] * 100))
    assert many >= 20, f"a bulk insert of containers holds only {many} rows here"
    counts = {}
    for count in (10, many):
        node = Node.objects.create(name=f"a-{count}", address="127.0.0.1", backend=listing, capacity=1000)
        Listing.RECORDS = [record(f"{count}-o{i}", users[i % 5].username, f"o{i}-{count}") for i in range(count)]
        Listing.RECORDS.append(record(f"{count}-x", "nobody", "stray"))
        Listing.RECORDS.append(record(f"{count}-dup", users[0].username, f"o0-{count}"))  # a name taken
        counts[count], report = queries(node, adopt=True)
        assert len(report.adopted) == count and len(report.problems) == 2, report.problems
        adopted = Container.objects.filter(node=node).select_related("owner")
        assert sorted((c.owner.username, c.name, c.backend_pk) for c in adopted) == \
            sorted((r["owner"], r["name"], r["pk"]) for r in Listing.RECORDS[:count])
    assert counts[10] == counts[many], counts


def test_refreshing_a_node_costs_the_same_queries_at_10_and_100(listing, django_user_model):
    """The admin's "refresh" action on a node: one listing, the same few queries (it saved
    every changed row on its own)."""
    users = [django_user_model.objects.create_user(f"user{i}") for i in range(5)]
    counts = {}
    for count in (10, 100):
        node = Node.objects.select_related("backend").get(pk=drifted_node(listing, users, count, f"{count}").pk)
        with CaptureQueriesContext(connection) as captured:
            changed = services.refresh_node(node)
        counts[count] = len(captured.captured_queries)
        gone, stopped = len(range(0, count, 3)), len(range(1, count, 3))
        assert changed == gone + stopped
        assert Container.objects.filter(node=node, status="lost").count() == gone
        assert Container.objects.filter(node=node, status="stopped").count() == stopped
    assert counts[10] == counts[100], counts
