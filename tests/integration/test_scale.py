"""The master stays flat as it grows: every page asks the database the same number of
questions at 10 rows and at 1,000 (rows inserted directly with ``bench.scale.fill``, no
engine), the proxy's lookup is served by the base URL index with no join to sort, and the
users' API pages every list with a cursor.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from bench.scale import PAGES, QUERY_PAGES, ask, clients, fill
from ipynbsrv_backends.api.pagination import MAX_PAGE_SIZE
from ipynbsrv_backends.models import AuditEntry, Container
from ipynbsrv_backends.proxy import _prefixes

pytestmark = pytest.mark.django_db

SMALL, LARGE = 10, 1000


def counts() -> dict[str, int]:
    """The queries of one request for each page (each answered 200 once before)."""
    signed_in = clients()
    found = {}
    for name, who, path in PAGES + QUERY_PAGES:
        assert ask(signed_in[who], path).status_code == 200, name
        with CaptureQueriesContext(connection) as queries:
            answer = ask(signed_in[who], path)
        assert answer.status_code == 200, (name, answer.content[:300])
        found[name] = len(queries)
    return found


def test_every_page_asks_as_many_queries_at_1000_rows_as_at_10(master_settings):
    """The auth check, each list of the users' API (owner and staff), each admin change list."""
    fill(SMALL)
    small = counts()
    fill(LARGE)
    assert Container.objects.count() == LARGE and AuditEntry.objects.count() == LARGE
    large = counts()
    grew = {page: (small[page], large[page]) for page in small if large[page] != small[page]}
    assert not grew, f"queries at {SMALL} and at {LARGE} rows: {grew}"
    assert set(small) == {name for name, _who, _path in PAGES + QUERY_PAGES}


def test_a_container_list_with_moves_in_progress_asks_nothing_per_row(master_settings):
    """``progress`` names a move's target node: read with the row, not one query per row."""
    fill(200)  # every 97th container is being moved
    signed_in = clients()
    ask(signed_in["staff"], "/api/containers/?page_size=200")
    with CaptureQueriesContext(connection) as few:
        ask(signed_in["staff"], "/api/containers/?page_size=5")
    with CaptureQueriesContext(connection) as many:
        body = ask(signed_in["staff"], "/api/containers/?page_size=200").json()
    moving = [item for item in body["results"] if item["progress"].startswith("copying to scale-n")]
    assert len(moving) == 2 and len(many) == len(few)


def plan(queryset) -> str:
    """How the database runs ``queryset`` (SQLite's ``EXPLAIN QUERY PLAN``, PostgreSQL's ``EXPLAIN``)."""
    sql, params = queryset.query.sql_with_params()
    explain = "EXPLAIN QUERY PLAN " if connection.vendor == "sqlite" else "EXPLAIN "
    with connection.cursor() as cursor:
        cursor.execute(explain + sql, params)
        return "\n".join(str(row[-1]) for row in cursor.fetchall())


def test_the_proxy_lookup_uses_the_base_url_index_and_joins_nothing_to_sort(master_settings):
    """The query ``proxy.container_for_path`` makes, planned on 1,000 rows (SQLite, or PostgreSQL
    when the suite runs there)."""
    fill(LARGE)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    lookup = Container.objects.filter(base_url__in=_prefixes("/notebooks/scale-u3/c170/api/status")) \
        .select_related("owner", "node")[:10]
    explained = plan(lookup)
    if connection.vendor == "sqlite":
        assert "USING INDEX ipynbsrv_container_base_url (base_url=?)" in explained, explained
        assert "SCAN ipynbsrv_backends_container" not in explained, explained
    else:
        assert "ipynbsrv_container_base_url" in explained, explained
        assert "Seq Scan on ipynbsrv_backends_container" not in explained, explained
    order_by = str(lookup.query).rsplit("ORDER BY", 1)[1]
    assert "auth_user" not in order_by and "ipynbsrv_backends_container" in order_by, order_by
    [found] = list(lookup)
    assert found.name == "c170"


def test_the_admin_container_list_is_ordered_by_an_index(master_settings):
    """Owner id and name: the unique index serves the order, nothing joins the users' table."""
    if connection.vendor != "sqlite":
        pytest.skip("EXPLAIN QUERY PLAN is SQLite's")
    fill(LARGE)
    explained = plan(Container.objects.all()[:100])
    assert "TEMP B-TREE" not in explained and "auth_user" not in explained, explained


# ---------------------------------------------------------------------------- the users' API pages

def test_every_list_walks_its_pages_with_a_cursor(master_settings):
    fill(120)
    staff = clients()["staff"]
    seen, url, pages = [], "/api/containers/?page_size=50", 0
    while url:
        body = staff.get(url).json()
        assert set(body) == {"next", "previous", "results"}
        seen += [item["id"] for item in body["results"]]
        url, pages = body["next"], pages + 1
    assert pages == 3 and seen == sorted(seen) and len(set(seen)) == 120
    first = staff.get("/api/containers/").json()
    assert len(first["results"]) == 50 and first["previous"] is None  # the documented default


@pytest.mark.parametrize("query", ["page_size=0", "page_size=abc", f"page_size={MAX_PAGE_SIZE + 1}",
                                   "cursor=not-a-cursor"])
def test_a_bad_page_size_or_cursor_is_a_400_saying_what_to_do(master_settings, query):
    fill(3)
    answer = clients()["owner"].get(f"/api/snapshots/?{query}")
    assert answer.status_code == 400, answer.content
    body = answer.json()
    assert body["code"] == "invalid" and set(body["fields"]) == {query.split("=")[0]}


def test_the_schema_documents_the_pages(master_settings):
    from django.test import Client

    text = Client().get("/api/schema/?format=json").json()
    listing = text["paths"]["/api/containers/"]["get"]
    assert {p["name"] for p in listing["parameters"]} >= {"cursor", "page_size"}
    assert "Paginated" in str(listing["responses"]["200"])


def test_the_mysql_index_is_a_prefix_index():
    """MySQL cannot index 2,048 utf8mb4 characters whole: the migration indexes a prefix there."""
    import importlib

    migration = importlib.import_module("ipynbsrv_backends.migrations.0006_container_lookup_indexes")

    class Editor:
        quote_name = staticmethod(lambda name: f"`{name}`")

    sql = migration.mysql_prefix_sql(Editor(), Container)
    assert sql == ("CREATE INDEX `ipynbsrv_container_base_url` ON `ipynbsrv_backends_container` "
                   f"(`base_url`({migration.MYSQL_PREFIX}))")
    assert migration.MYSQL_PREFIX * 4 <= 767  # fits even the oldest InnoDB row format


def test_the_flat_date_hierarchy_offers_every_period_django_would(master_settings):
    """Every year, month or day Django's own hierarchy lists is offered (also ones between
    them without rows), drilled down or not; and the same links."""
    from django.contrib.admin.templatetags.admin_list import date_hierarchy

    from ipynbsrv_backends.admin.flat import flat_date_hierarchy

    fill(LARGE)  # one a minute: 1,000 minutes back from now
    staff = clients()["staff"]
    first = Container.objects.order_by("created_at").first().created_at
    for query in ("", f"?created_at__year={first.year}",
                  f"?created_at__year={first.year}&created_at__month={first.month}"):
        changelist = staff.get(f"/admin/ipynbsrv_backends/container/{query}").context["cl"]
        ours, django = flat_date_hierarchy(changelist), date_hierarchy(changelist)
        assert ours["back"] == django["back"]
        links = [choice["link"] for choice in ours["choices"]]
        assert django["choices"] and all(choice["link"] in links for choice in django["choices"]), (ours, django)


def filter_of(response, title: str):
    return next(spec for spec in response.context["cl"].filter_specs if str(spec.title) == title)


def test_the_audit_filters_walk_the_index_to_the_same_values_as_distinct(master_settings):
    fill(300)
    response = clients()["staff"].get("/admin/ipynbsrv_backends/auditentry/")
    for title, column in (("action", "action"), ("node", "node")):
        walked = list(filter_of(response, title).lookup_choices)
        assert walked == sorted(set(AuditEntry.objects.values_list(column, flat=True))), title
        assert len(walked) > 1


def test_the_node_filter_offers_the_first_nodes_and_the_chosen_one(master_settings):
    from ipynbsrv_backends.admin.flat import MOST_CHOICES
    from ipynbsrv_backends.models import Node

    fill(50 * (MOST_CHOICES + 10))  # 60 nodes
    staff = clients()["staff"]
    offered = filter_of(staff.get("/admin/ipynbsrv_backends/container/"), "node").lookup_choices
    assert [label for _pk, label in offered] == list(Node.objects.values_list("name", flat=True)[:MOST_CHOICES])
    last = Node.objects.order_by("-name").first()
    chosen = filter_of(staff.get(f"/admin/ipynbsrv_backends/container/?node__id__exact={last.pk}"), "node")
    assert (last.pk, last.name) in chosen.lookup_choices and len(chosen.lookup_choices) == MOST_CHOICES + 1


def test_the_image_list_counts_containers_up_to_the_cap(master_settings):
    from ipynbsrv_backends.admin.flat import COUNT_CAP
    from ipynbsrv_backends.models import Image

    fill(COUNT_CAP)
    staff = clients()["staff"]
    assert f'<td class="field-containers_count">{COUNT_CAP}</td>' in staff.get("/admin/ipynbsrv_backends/image/").text
    fill(COUNT_CAP + 1)
    assert Image.objects.get(owner__isnull=True).containers.count() == COUNT_CAP + 1  # every one from the base image
    assert f'<td class="field-containers_count">{COUNT_CAP:,}+</td>' in staff.get("/admin/ipynbsrv_backends/image/").text


# ---------------------------------------------------------------------------- the bench's section 7

def test_the_scale_bench_has_a_row_per_page_and_size():
    """``bench.scale`` end to end with tiny sizes (no timing asserted: that is ``make bench``'s)."""
    import math

    from bench import scale

    rows = scale.measure((10, 30, 60), reps=1, per_sample=1)
    names = {row.name for row in rows}
    for name, _who, _path in scale.PAGES:
        sizes = (60,) if name in scale.NODE_PAGES else (30, 60)
        for size in sizes:
            base = 30 if name in scale.NODE_PAGES else 10
            assert f"{name}: {size:,} rows vs {base:,}" in names
    for row in rows:
        assert math.isfinite(row.ratio) and row.extra["queries"] == row.extra["base_queries"], row


@pytest.mark.engine
def test_the_reconcile_bench_runs_on_real_containers_and_cleans_up(raw_docker):
    from bench import reconcile

    rows = reconcile.measure((2, 4), reps=1)
    drift = next(row for row in rows if row.name == "reconcile, with drift: 4 real containers vs 2")
    assert "1 missing, 1 orphans, 1 updated" in drift.note
    assert raw_docker.containers.list(all=True, filters={"label": "org.ipynbsrv.instance=bench-reconcile-4"}) == []


def test_a_long_list_counts_up_to_the_cap_and_says_so(master_settings, monkeypatch):
    """The admin counts a list's rows up to a cap (one bounded query), and shows "N+" beyond."""
    from ipynbsrv_backends.admin.flat import FlatPaginator

    monkeypatch.setattr(FlatPaginator, "most_counted", 150)
    fill(150)
    staff = clients()["staff"]
    page = staff.get("/admin/ipynbsrv_backends/container/")
    assert page.context["cl"].result_count == 150 and "150 containers" in page.text
    fill(151)
    with CaptureQueriesContext(connection) as queries:
        page = staff.get("/admin/ipynbsrv_backends/container/?p=2")
    assert page.status_code == 200 and page.context["cl"].result_count == 150
    assert "150+ containers" in page.text and "Select all 150+" in page.text
    [count] = [q["sql"] for q in queries.captured_queries if "COUNT(*)" in q["sql"] and "LIMIT 151" in q["sql"]]
    assert "ORDER BY" not in count
    assert "ipynbsrv_backends_node" not in count  # the move target a row shows is not worked out to count it


def test_the_index_walk_stops_at_its_bound(master_settings, monkeypatch):
    from ipynbsrv_backends.admin import flat

    fill(300)  # 6 nodes named in the audit log
    monkeypatch.setattr(flat, "MOST_VALUES", 4)
    walked = list(flat._IndexWalk(AuditEntry, "node"))
    assert walked == sorted(set(AuditEntry.objects.values_list("node", flat=True)))[:4]
