"""Drop a node's cached backend instance as soon as its node or backend row changes, and
record in the audit log the app's rows another deletion takes with it (a user's images)."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from . import audit
from .models import Backend, Container, Image, Node, Snapshot
from .registry import forget_backend


@receiver([post_save, post_delete], sender=Node, dispatch_uid="ipynbsrv_forget_node_backend")
def _node_changed(sender: type, instance: Node, **kwargs: Any) -> None:
    forget_backend(instance.pk)


@receiver([post_save, post_delete], sender=Backend, dispatch_uid="ipynbsrv_forget_backend_nodes")
def _backend_changed(sender: type, instance: Backend, **kwargs: Any) -> None:
    for pk in Node.objects.filter(backend=instance).values_list("pk", flat=True):
        forget_backend(pk)


@receiver(post_delete, dispatch_uid="ipynbsrv_record_cascaded_delete")
def _deleted_along(sender: Any, instance: Any, origin: Any = None, **kwargs: Any) -> None:
    """A row of the app deleted because a row of another app was (a user deleted in Django's
    user admin takes their images): recorded like a deletion, naming what it went with. A
    deletion the app itself started (the services, its admin) is recorded where it started."""
    if sender not in (Container, Image, Snapshot) or origin is None:
        return
    model: Any = getattr(origin, "model", type(origin))  # a queryset's model, or the row's
    if getattr(getattr(model, "_meta", None), "app_label", None) == Container._meta.app_label:
        return
    audit.record(f"{sender._meta.model_name}.delete", instance,
                 details={"deleted_with": f"{model._meta.model_name} {origin}"[:200]})
