"""Creating containers: check the request, reserve a record on a node (placement), then
build it there, now (:func:`create_container`) or in a worker (:func:`start_creating`);
clones too, across nodes through the registry."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db import IntegrityError, transaction

from .. import audit, errors
from ..conf import app_settings
from ..models import Container, Image, Node
from ..validation import fill_names, validate_name
from . import quotas
from ._base import S, package, uid, write_turn
from .build import Creation, build
from .capabilities import require
from .placing import candidates_for, placing
from .transfer import drop_transfer_image, pull_hint, transfer_image

logger = logging.getLogger(__name__)


def create_details(owner: Any, name: str, *, image: Any = None, clone_of: Any = None, node: Any = None,
                   allow_draining: bool = False, **kwargs: Any) -> dict[str, Any]:
    return {"target": f"{owner}/{name}", "image": getattr(image, "ref", image) or "",
            "clone_of": str(clone_of or ""), "requested_node": getattr(node, "name", ""),
            "allow_draining": bool(allow_draining)}


def clone_details(source: Any, owner: Any, name: str, **kwargs: Any) -> dict[str, Any]:
    node = kwargs.get("node")
    return {"target": f"{owner}/{name}", "clone_of": str(source), "requested_node": getattr(node, "name", ""),
            "allow_draining": bool(kwargs.get("allow_draining"))}


def reserve(owner: Any, name: str, *, image: Image | None, image_ref: str, clone_of: Container | None,
            node: Node | None, exclude: set[int], base_url: str, options: dict[str, Any],
            allow_draining: bool = False) -> Container:
    """Pick a node and insert the record (status ``creating``) in one locked transaction.
    A named ``node`` must be enabled and, unless ``allow_draining``, not draining."""
    candidates = candidates_for(node, exclude=exclude, allow_draining=allow_draining)
    full = "Every node that could take the container is full. Ask an administrator to add capacity."
    # The owner's lock first, then the nodes' (placing): the quota check and the new record
    # commit together, so two creates of one user cannot both pass it.
    with write_turn, transaction.atomic():
        if quotas.guards(owner, quotas.CREATE_KEYS):
            quotas.lock(owner)
            quotas.check(owner, quotas.creation_need(owner, name, options), f"Creating {owner}/{name}", space=True)
        return _insert(owner, name, candidates, node=node, full=full, allow_draining=allow_draining,
                       image=image, image_ref=image_ref, clone_of=clone_of, base_url=base_url, options=options)


def _insert(owner: Any, name: str, candidates: list[Node], *, node: Node | None, full: str, allow_draining: bool,
            **fields: Any) -> Container:
    with placing(candidates, named=node, full=full, allow_draining=allow_draining) as chosen:
        if Container.objects.filter(owner=owner, name=name).exists():
            raise errors.ContainerAlreadyExistsError(f"{owner} already has a container named {name!r}.")
        try:
            with transaction.atomic():
                return Container.objects.create(owner=owner, name=name, node=chosen, status=S.CREATING, **fields)
        except IntegrityError as exc:
            raise errors.ContainerAlreadyExistsError(f"{owner} already has a container named {name!r}.") from exc


def plan_creation(owner: Any, name: str, *, image: Image | str | None, clone_of: Container | None,
                  node: Node | None, cmd: str | list[str] | None, options: dict[str, Any] | None,
                  allow_draining: bool, base_url: str | None = None,
                  env: dict[str, str] | None = None) -> Creation:
    """Check a creation's arguments and work out its names, options and access secret (a hub
    gives its own ``base_url`` and ``env``)."""
    name = validate_name(name)
    if (image is None) == (clone_of is None):
        raise errors.InvalidArgumentError("Give exactly one of image and clone_of.")
    if clone_of is not None:
        require(clone_of.node, "clone")
    image_obj = image if isinstance(image, Image) else None
    image_ref = image.ref if isinstance(image, Image) else (image or "")
    if clone_of is not None:
        node = clone_of.node  # a clone starts from its source's filesystem, on its node
        image_obj, image_ref = clone_of.image, clone_of.image_ref
        if not clone_of.backend_pk:
            raise errors.IllegalContainerStateError(f"{clone_of} has not been created yet.")
    elif image_obj is not None and image_obj.node_id is not None:
        node = node or image_obj.node
        if node is None or node.pk != image_obj.node_id:
            raise errors.InvalidArgumentError(f"The image {image_obj} exists only on the node {image_obj.node}.")
    merged_options = {**(app_settings.CONTAINER_OPTIONS or {}), **(options or {})}
    names = {"uid": uid(owner), "username": owner.get_username(), "name": name}
    # Names become path segments only when safe as such: a user "." or ".." is refused here
    # rather than given the homes root (see validation.fill_names).
    if base_url is None:
        base_url = fill_names(app_settings.CONTAINER_BASE_URL, names)
    volumes = fill_names(app_settings.CONTAINER_VOLUMES or [], names)
    return Creation(owner=owner, name=name, image=image_obj, image_ref=image_ref, clone_of=clone_of, node=node,
                    cmd=cmd, options=merged_options, uid=names["uid"], base_url=base_url, volumes=volumes,
                    secret=package()._mint_secret(), allow_draining=allow_draining, env=env)


def _reserve_for(plan: Creation) -> Container:
    return package()._reserve(plan.owner, plan.name, image=plan.image, image_ref=plan.image_ref,
                               clone_of=plan.clone_of, node=plan.node, exclude=set(), base_url=plan.base_url,
                               options=plan.options, allow_draining=plan.allow_draining)


@audit.audited("container.create", target=lambda *a, **k: None, details=create_details)
def create_container(
    owner: Any,
    name: str,
    *,
    image: Image | str | None = None,
    clone_of: Container | None = None,
    node: Node | None = None,
    cmd: str | list[str] | None = None,
    options: dict[str, Any] | None = None,
    allow_draining: bool = False,
) -> Container:
    """Create and start a container for ``owner``: place it, create it through the node's
    backend, and record it. Placement skips nodes that turn out to be unreachable. A node
    that is named (or implied: a clone's source, an image's only node) must be enabled and,
    unless ``allow_draining``, not draining. While it runs, the record (status ``creating``)
    says how far it got (``Container.progress``: the image's layers and bytes while the node
    pulls it, then ``starting on NODE``)."""
    if clone_of is not None and node is not None and node.pk != clone_of.node_id:
        return _clone_across(clone_of, owner, validate_name(name), node, cmd=cmd, options=options,
                             allow_draining=allow_draining)
    plan = plan_creation(owner, name, image=image, clone_of=clone_of, node=node, cmd=cmd, options=options,
                         allow_draining=allow_draining)
    return build(plan, _reserve_for(plan), keep_failed=False)


def start_creating(owner: Any, name: str, *, submit: Callable[[Callable[[], None]], Any],
                   image: Image | str | None = None, clone_of: Container | None = None, node: Node | None = None,
                   allow_draining: bool = False, base_url: str | None = None,
                   env: dict[str, str] | None = None,
                   prepare: Callable[[Container], Any] | None = None) -> Container:
    """Place and record a new container now, and create it on its node through ``submit``
    (which runs the function it is given later, in a worker thread: see
    :mod:`ipynbsrv_backends.background`).

    What :func:`create_container` refuses before anything is recorded (bad input, no node,
    the quota, a name taken) is raised here, at once. The returned record has status
    ``creating``; ``progress`` follows the work. A failure later keeps the record, with
    status ``error``, ``last_error`` the message and ``error_code`` the error's code, where
    :func:`create_container` would have removed it (so whoever polls it can read why); the
    node is left as that function leaves it. ``prepare(record)`` runs on the new record before
    the work is handed over. The audit log gets one entry
    (``container.create``, or ``container.clone`` for a clone) when the creation has ended,
    or at once when it was refused."""
    action = "container.clone" if clone_of is not None else "container.create"
    extra = (clone_details(clone_of, owner, name, allow_draining=allow_draining) if clone_of is not None
             else create_details(owner, name, image=image, node=node, allow_draining=allow_draining))
    try:
        plan = plan_creation(owner, name, image=image, clone_of=clone_of, node=node, cmd=None, options=None,
                             allow_draining=allow_draining, base_url=base_url, env=env)
        container = _reserve_for(plan)
        if prepare is not None:
            try:
                prepare(container)  # before the worker runs (a hub's row of the server)
            except Exception:
                Container.objects.filter(pk=container.pk).delete()  # nothing of it exists yet
                raise
    except Exception as exc:
        audit.record(action, None, error=exc, details=extra, target_type="container",
                     target=str(extra.get("target", "")))
        raise
    container.progress_detail = f"waiting to be created on {container.node.name}"
    Container.objects.filter(pk=container.pk).update(progress_detail=container.progress_detail)
    # The worker gets a copy of its own: the record returned here is answered meanwhile.
    work = Container.objects.select_related("node__backend", "owner").get(pk=container.pk)

    def run() -> None:
        try:
            result = build(plan, work, keep_failed=True)
        except Exception as exc:  # recorded on the container and in the audit log
            audit.record(action, None, error=exc, details=extra, **audit.describe(work))
            if not isinstance(exc, errors.BackendError):
                logger.exception("Creating %s failed", work)
            return
        audit.record(action, None, details=extra, **audit.describe(result))

    submit(run)
    return container


@audit.audited("container.clone", target=lambda *a, **k: None, details=clone_details)
def clone_container(source: Container, owner: Any, name: str, **kwargs: Any) -> Container:
    """A new container for ``owner`` from the current filesystem of ``source``; with
    ``node=`` on another node (through the registry)."""
    return create_container(owner, name, clone_of=source, **kwargs)


def _clone_across(source: Container, owner: Any, name: str, node: Node, **kwargs: Any) -> Container:
    ref = transfer_image(source, "clone")
    try:
        clone = create_container(owner, name, image=ref, node=node, **kwargs)
    except errors.BackendError as exc:
        drop_transfer_image(ref, [source.node, node])
        raise pull_hint(exc, node) from exc
    clone.clone_of, clone.image, clone.image_ref = source, source.image, source.image_ref
    clone.save(update_fields=["clone_of", "image", "image_ref", "updated_at"])
    drop_transfer_image(ref, [node, source.node])
    return clone
