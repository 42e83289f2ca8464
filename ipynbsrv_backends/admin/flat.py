"""What keeps the admin's lists flat as the tables grow: the cost of a page must not depend on
how many rows there are.

- :func:`flat_date_hierarchy`: Django's date hierarchy asks the database for every distinct
  year (month, day) of the list, which reads every row. This one reads two rows, the first and
  the last by date (an index serves both), and offers every period between them, also one
  without rows.
- :class:`IndexedValuesFilter`: a filter by the values of an indexed column that walks the
  index from one value to the next (one recursive query) instead of reading every row for
  ``SELECT DISTINCT``.
- :class:`FewRelatedFilter`: a filter by node (image, backend) that offers the first few, not
  every one.
- :class:`FlatPaginator`: counts the rows of a list up to :data:`MOST_COUNTED` and says
  "10000+" beyond, instead of counting every row on every page.
- :class:`FlatListMixin`: that paginator, no second count of the unfiltered table (Django
  counts it for the "N total" link), and the change list template with the flat date
  hierarchy.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.contrib.admin.templatetags.admin_list import date_hierarchy
from django.core.paginator import Paginator
from django.db import connection, connections, router
from django.db.models import IntegerField, QuerySet
from django.db.models.expressions import RawSQL
from django.utils import timezone
from django.utils.functional import cached_property

__all__ = ["COUNT_CAP", "AtLeast", "FewRelatedFilter", "FlatListMixin", "FlatPaginator", "IndexedValuesFilter",
           "capped_count", "flat_date_hierarchy", "shown_count"]

#: The most values :class:`IndexedValuesFilter` offers.
MOST_VALUES = 50
#: The most rows :class:`FlatPaginator` counts.
MOST_COUNTED = 10_000
#: The most related objects (nodes, images) :class:`FewRelatedFilter` offers.
MOST_CHOICES = 50


class _Bounds:
    """Stands in for the change list's queryset in Django's date hierarchy: the same answers,
    from the first and the last row instead of from all of them."""

    def __init__(self, queryset: QuerySet, field: str) -> None:
        self.queryset, self.field = queryset, field
        self._edges: tuple[Any, Any] | None = None

    def edges(self) -> tuple[Any, Any]:
        if self._edges is None:
            ordered = self.queryset.order_by().values_list(self.field, flat=True)
            first = ordered.order_by(self.field).first()
            last = ordered.order_by(f"-{self.field}").first()
            if isinstance(first, datetime.datetime) and timezone.is_aware(first):
                first, last = timezone.localtime(first), timezone.localtime(last)
            self._edges = (first, last)
        return self._edges

    def aggregate(self, **_aggregates: Any) -> dict[str, Any]:
        first, last = self.edges()
        return {"first": first, "last": last}

    def datetimes(self, field: str, kind: str) -> list[Any]:
        return [_as_datetime(day) for day in self.dates(field, kind)]

    def dates(self, field: str, kind: str) -> list[datetime.date]:
        first, last = self.edges()
        if first is None or last is None:
            return []
        return list(_periods(_as_date(first), _as_date(last), kind))


def _as_date(value: Any) -> datetime.date:
    return value.date() if isinstance(value, datetime.datetime) else value


def _as_datetime(day: datetime.date) -> datetime.datetime:
    moment = datetime.datetime(day.year, day.month, day.day)
    return timezone.make_aware(moment) if timezone.is_aware(timezone.now()) else moment


def _periods(first: datetime.date, last: datetime.date, kind: str) -> Iterator[datetime.date]:
    """The first day of every year, month or day from ``first`` to ``last``."""
    if kind == "year":
        yield from (datetime.date(year, 1, 1) for year in range(first.year, last.year + 1))
    elif kind == "month":
        month = first.replace(day=1)
        while month <= last:
            yield month
            month = (month + datetime.timedelta(days=32)).replace(day=1)
    else:
        yield from (first + datetime.timedelta(days=n) for n in range((last - first).days + 1))


class _FlatChangeList:
    """The change list as Django's date hierarchy sees it, with :class:`_Bounds` for its queryset."""

    def __init__(self, changelist: Any) -> None:
        self._changelist = changelist
        self.queryset = _Bounds(changelist.queryset, changelist.date_hierarchy)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._changelist, name)


def flat_date_hierarchy(changelist: Any) -> dict[str, Any] | None:
    """Django's date hierarchy of ``changelist``, at the price of two rows read."""
    return date_hierarchy(_FlatChangeList(changelist))  # type: ignore[arg-type]  # a stand-in


class _IndexWalk:
    """The distinct values of an indexed column, read by walking its index from one value to the
    next: one query whose cost grows with the number of values, not of rows."""

    def __init__(self, model: Any, column: str) -> None:
        self.model, self.column = model, column

    def __iter__(self) -> Iterator[Any]:
        connection = connections[router.db_for_read(self.model)]
        quote = connection.ops.quote_name
        table, column = quote(self.model._meta.db_table), quote(self.column)
        # n bounds the recursion itself (MySQL stops a recursion at 1,000 steps with an error)
        sql = (f"WITH RECURSIVE walk(v, n) AS (SELECT MIN({column}), 1 FROM {table} UNION ALL "
               f"SELECT (SELECT MIN({column}) FROM {table} WHERE {column} > walk.v), walk.n + 1 FROM walk "
               f"WHERE walk.v IS NOT NULL AND walk.n < {MOST_VALUES}) SELECT v FROM walk WHERE v IS NOT NULL")
        with connection.cursor() as cursor:
            cursor.execute(sql)
            return iter([row[0] for row in cursor.fetchall()])


class IndexedValuesFilter(admin.AllValuesFieldListFilter):
    """Django's filter by every value of a column, for a column with an index: the values come
    from walking the index (:class:`_IndexWalk`), not from reading every row."""

    def __init__(self, field: Any, request: Any, params: Any, model: Any, model_admin: Any,
                 field_path: str) -> None:
        super().__init__(field, request, params, model, model_admin, field_path)
        self.lookup_choices = _IndexWalk(model, field.column)  # type: ignore[assignment]


class FewRelatedFilter(admin.RelatedFieldListFilter):
    """Django's filter by a related object (a node, an image), offering the first
    :data:`MOST_CHOICES` of them in their own order (and the one chosen): a site with thousands
    of nodes gets a short list, not a page of links. Any other is one click away: the node
    list links each node's containers."""

    def field_choices(self, field: Any, request: Any, model_admin: Any) -> Any:  # [(pk, label)]
        ordering = self.field_admin_ordering(field, request, model_admin)
        queryset = field.remote_field.model._default_manager.all()
        if ordering:
            queryset = queryset.order_by(*ordering)
        shown = list(queryset[:MOST_CHOICES])
        chosen = [value for value in (self.lookup_val or []) if str(value).isdigit()]
        if chosen:
            shown += list(queryset.filter(pk__in=chosen).exclude(pk__in=[obj.pk for obj in shown]))
        return [(obj.pk, str(obj)) for obj in shown]


#: Related rows :func:`capped_count` counts at most per row of a list.
COUNT_CAP = 1000


def capped_count(related: Any, foreign_key: str) -> RawSQL:
    """For ``annotate``: the ``related`` rows whose ``foreign_key`` points at each row, counted
    up to ``COUNT_CAP + 1`` (a base image 100,000 containers were started from costs the list
    what one with 1,001 does); show it with :func:`shown_count`."""
    quote = connection.ops.quote_name
    field = related._meta.get_field(foreign_key)
    table, outer = quote(related._meta.db_table), quote(field.related_model._meta.db_table)
    return RawSQL(f"SELECT COUNT(*) FROM (SELECT 1 FROM {table} WHERE {table}.{quote(field.column)} = "
                  f"{outer}.{quote(field.target_field.column)} LIMIT %s) capped", (COUNT_CAP + 1,),
                  output_field=IntegerField())


def shown_count(count: int | None) -> str:
    """A :func:`capped_count` for people: ``1,000+`` beyond the cap."""
    return f"{COUNT_CAP:,}+" if (count or 0) > COUNT_CAP else str(count or 0)


class AtLeast(int):
    """A count that stopped at its cap: it compares as the cap and shows as ``10000+``."""

    def __str__(self) -> str:
        return f"{int(self)}+"


class FlatPaginator(Paginator):
    """Django's paginator, counting at most :attr:`most_counted` rows (one query whose cost
    stops growing there); a list with more has that many pages and an :class:`AtLeast` count."""

    most_counted = MOST_COUNTED

    @cached_property
    def count(self) -> int:
        # only the keys: a column the list annotates (a count per row) is not worked out for each
        rows = self.object_list.order_by().values("pk")  # type: ignore[attr-defined]
        counted = rows[: self.most_counted + 1].count()
        return AtLeast(self.most_counted) if counted > self.most_counted else counted


if TYPE_CHECKING:
    _AdminBase = admin.ModelAdmin
else:
    _AdminBase = object


class FlatListMixin(_AdminBase):
    """A model admin whose change list costs the same at 100 rows and at 100,000: no count of
    the unfiltered table, the flat date hierarchy, filters that read no table whole."""

    show_full_result_count = False
    paginator = FlatPaginator
    change_list_template = "admin/ipynbsrv_backends/flat_change_list.html"
