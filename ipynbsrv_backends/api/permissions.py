"""Who may do what in the users' API.

Owners act on their own things and staff on everything. Other users' containers,
snapshots and images are not even found (404): the views filter them out of the queryset
before any permission is asked, and :class:`OwnerOrStaff` guards the objects again.
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from rest_framework.permissions import BasePermission

from ..models import Container, Image, Snapshot

__all__ = ["OwnerOrStaff", "StaffOnly", "owner_of"]


def owner_of(obj: Any) -> int | None:
    """The pk of the user an API object belongs to (``None`` for a base image)."""
    if isinstance(obj, Container):
        return obj.owner_id
    if isinstance(obj, Snapshot):
        return obj.container.owner_id
    if isinstance(obj, Image):
        return obj.owner_id
    return None


class OwnerOrStaff(BasePermission):
    """Signed-in users; on an object, its owner or staff. Images others may use can be read
    by them, but only deleted by their owner (or staff)."""

    message = _("You can change only your own containers, snapshots and images.")

    def has_permission(self, request: Any, view: Any) -> bool:
        return bool(request.user and request.user.is_authenticated)

    def has_object_permission(self, request: Any, view: Any, obj: Any) -> bool:
        user = request.user
        if user.is_staff:
            return True
        if isinstance(obj, Image) and request.method in ("GET", "HEAD", "OPTIONS"):
            return obj.usable_by(user)
        return owner_of(obj) == user.pk


class StaffOnly(BasePermission):
    """Staff users only (the nodes)."""

    message = _("Only staff may see the nodes.")

    def has_permission(self, request: Any, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.is_staff)
