"""``{% flat_date_hierarchy cl %}``: Django's date hierarchy, at the price of two rows read
(see :mod:`ipynbsrv_backends.admin.flat`)."""

from __future__ import annotations

from typing import Any

from django import template
from django.contrib.admin.templatetags.base import InclusionAdminNode

register = template.Library()


@register.tag(name="flat_date_hierarchy")
def flat_date_hierarchy_tag(parser: Any, token: Any) -> InclusionAdminNode:
    from ..admin.flat import flat_date_hierarchy

    return InclusionAdminNode(parser, token, func=flat_date_hierarchy, template_name="date_hierarchy.html",  # type: ignore[call-arg]
                              takes_context=False)
