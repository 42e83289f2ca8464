"""Drop a node's cached backend instance as soon as its node or backend row changes."""

from __future__ import annotations

from typing import Any

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from .models import Backend, Node
from .registry import forget_backend


@receiver([post_save, post_delete], sender=Node, dispatch_uid="ipynbsrv_forget_node_backend")
def _node_changed(sender: type, instance: Node, **kwargs: Any) -> None:
    forget_backend(instance.pk)


@receiver([post_save, post_delete], sender=Backend, dispatch_uid="ipynbsrv_forget_backend_nodes")
def _backend_changed(sender: type, instance: Backend, **kwargs: Any) -> None:
    for pk in Node.objects.filter(backend=instance).values_list("pk", flat=True):
        forget_backend(pk)
