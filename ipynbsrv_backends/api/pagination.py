"""How the users' API pages its lists: cursor pagination, by id.

Every list answers ``{"next": URL | null, "previous": URL | null, "results": [...]}``, at most
:attr:`ListPagination.page_size` items a page unless ``?page_size=`` asks for another number
(1 to :attr:`ListPagination.max_page_size`). ``next`` and ``previous`` carry an opaque
``cursor``: follow them as they are.

A cursor, not a page number, because the cost of a page must not grow with the table: a page
is ``WHERE id > last-seen ORDER BY id LIMIT n``, served by an index, whatever page it is and
however many rows there are. A page number would cost ``OFFSET`` rows skipped and, for the
``count`` of the usual ``{count, next, previous, results}`` answer, a ``COUNT(*)`` of every
row the user may see: on a large table that is a scan of the table (an index at best) on
every request, the staff listing's most of all. So there is no total; a client that needs one
walks the pages. Ordering by id is creation order, and a row created or deleted while a
client walks the pages neither repeats nor hides another.
"""

from __future__ import annotations

from django.utils.translation import gettext_lazy as _
from rest_framework import exceptions
from rest_framework.pagination import Cursor, CursorPagination
from rest_framework.request import Request

__all__ = ["ListPagination", "PAGE_SIZE", "MAX_PAGE_SIZE"]

#: Items per page when the client does not ask for another number.
PAGE_SIZE = 50
#: The most items a page holds, whatever ``?page_size=`` asks for.
MAX_PAGE_SIZE = 500


class ListPagination(CursorPagination):
    """Every list of the users' API: by id (creation order), ``?page_size=`` up to the maximum."""

    page_size = PAGE_SIZE
    max_page_size = MAX_PAGE_SIZE
    page_size_query_param = "page_size"
    ordering = "id"

    def get_page_size(self, request: Request) -> int:
        """``?page_size=`` when given (a 400 for anything but 1 to the maximum), else the default."""
        value = request.query_params.get(self.page_size_query_param)
        if value is None:
            return self.page_size
        if not value.isdigit() or not 1 <= int(value) <= self.max_page_size:
            raise exceptions.ValidationError({self.page_size_query_param: [
                _("Give a whole number from 1 to %(most)d.") % {"most": self.max_page_size}]})
        return int(value)

    def decode_cursor(self, request: Request) -> Cursor | None:
        """The ``cursor`` of the request; one that was not taken from ``next``/``previous`` is a 400."""
        try:
            return super().decode_cursor(request)
        except exceptions.NotFound:
            raise exceptions.ValidationError({self.cursor_query_param: [
                _("Not a cursor of this API: follow the next and previous links as they are.")]}) from None
