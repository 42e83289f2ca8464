"""JupyterHub on the master (docs/jupyterhub.md): hub credentials, the users a hub acts for, and
their servers' lives (create or resume, stop or suspend, delete).

A hub acts only for the master users it made itself (a :class:`HubUser` of that hub, in the
hub's group): never for staff, for users of the site or of another hub. What it asks goes through
the same services as everyone's, so placement, quotas, policies and the audit log apply.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from collections.abc import Mapping
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from .. import audit, background, errors
from ..contract import SECRET_ENV, SuspendableContainerBackend
from ..models import Container, HubCredential, HubServer, HubUser, Image
from ..registry import get_backend
from ..validation import NAME_MAX
from ._base import S
from .create import start_creating
from .lifecycle import delete_container, refresh_container, resume_container, start_container, stop_container, suspend_container

logger = logging.getLogger(__name__)

#: The environment a hub may give its containers: its own variables only.
ENV_KEY = re.compile(r"(JUPYTERHUB_|JPY_)[A-Z0-9_]{1,100}")
ENV_MAX_VALUE, ENV_MAX_KEYS = 32768, 100
#: A user's name in a hub, as the master user's name takes it (letters, digits, @ . + - _).
HUB_USER = re.compile(r"[\w.@+-]{1,100}")
#: The name of the container of a user's default server; a named server's is ``hub-NAME``.
DEFAULT_SERVER = "hub"


class HubNotAllowedError(errors.BackendError):
    """The hub named a user it may not act for."""

    status_code = 403
    code = "not_allowed"
    default_detail = "The hub may not act for this user."


# ---------------------------------------------------------------------------- credentials

def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _new_token() -> str:
    return "ipynbsrv-hub-" + secrets.token_urlsafe(32)


def add_hub(name: str) -> tuple[HubCredential, str]:
    """A new hub credential and its group; returns the token (shown once, kept hashed)."""
    if HubCredential.objects.filter(name=name).exists():
        raise errors.ContainerAlreadyExistsError(f"A hub named {name!r} exists already: rotate its token instead.")
    token = _new_token()
    with transaction.atomic():
        group, _ = Group.objects.get_or_create(name=f"jupyterhub-{name}")
        hub = HubCredential(name=name, token_hash=hash_token(token), group=group)
        hub.full_clean(exclude=["token_hash", "group"])
        hub.save()
    return hub, token


def rotate_hub(hub: HubCredential) -> str:
    """A new token for ``hub``; the old one stops working at once."""
    token = _new_token()
    hub.token_hash, hub.rotated_at = hash_token(token), timezone.now()
    hub.save(update_fields=["token_hash", "rotated_at"])
    return token


def hub_for_token(token: str) -> HubCredential | None:
    """The enabled hub whose token this is (``None`` for any other string)."""
    if not token:
        return None
    digest = hash_token(token)
    hub = HubCredential.objects.select_related("group").filter(token_hash=digest).first()
    if hub is None or not hmac.compare_digest(hub.token_hash, digest) or not hub.enabled:
        return None
    now = timezone.now()
    if hub.last_used_at is None or (now - hub.last_used_at).total_seconds() > 60:
        HubCredential.objects.filter(pk=hub.pk).update(last_used_at=now)
    return hub


# ---------------------------------------------------------------------------- users and input

def acting_user(hub: HubCredential, name: str, *, create: bool) -> HubUser:
    """The master user ``hub`` acts for as its user ``name``, made on first use (``create``).
    Refused for anyone the hub did not make: staff, users of the site, another hub's users."""
    if not isinstance(name, str) or not HUB_USER.fullmatch(name):
        raise errors.InvalidArgumentError(
            "user must be the hub's user name: 1 to 100 letters, digits and @ . + - _.")
    found = HubUser.objects.select_related("user").filter(hub=hub, name=name).first()
    if found is None:
        if not create:
            raise errors.ContainerNotFoundError(f"The hub {hub} has no user {name!r} on this master.")
        found = _make_user(hub, name)
    user = found.user
    if user.is_staff or user.is_superuser or not user.is_active:
        raise HubNotAllowedError(
            f"The hub {hub} may not act for {user.get_username()}: staff and disabled accounts are not the hub's.")
    return found


def _make_user(hub: HubCredential, name: str) -> HubUser:
    username = f"{hub.name}.{name}"
    model = get_user_model()
    try:
        with transaction.atomic():
            if model.objects.filter(**{model.USERNAME_FIELD: username}).exists():
                raise HubNotAllowedError(
                    f"The master has a user {username!r} that the hub {hub} did not make: it may not act for it.")
            user = model.objects.create_user(username)  # no usable password: it signs in nowhere
            user.groups.add(hub.group)
            return HubUser.objects.create(hub=hub, name=name, user=user)
    except IntegrityError:  # the same name made at once by another request
        return HubUser.objects.select_related("user").get(hub=hub, name=name)


def container_name(server: str) -> str:
    """The master's container name of a hub server: ``hub`` for the default one, ``hub-NAME``
    for a named one (lower-cased, other characters as ``-``, with a short hash when that
    changed the name, so two names never meet)."""
    if not server:
        return DEFAULT_SERVER
    clean = re.sub(r"[^a-z0-9]+", "-", server.lower()).strip("-") or "x"
    name = f"{DEFAULT_SERVER}-{clean}"
    if clean != server or len(name) > NAME_MAX:
        name = f"{name[:NAME_MAX - 9]}-{hashlib.sha256(server.encode()).hexdigest()[:8]}"
    return name


def check_env(env: Any) -> dict[str, str]:
    if env is None:
        return {}
    if not isinstance(env, Mapping) or len(env) > ENV_MAX_KEYS:
        raise errors.InvalidArgumentError(f"env must be an object of at most {ENV_MAX_KEYS} variables.")
    bad = sorted(str(key)[:60] for key in env if not isinstance(key, str) or not ENV_KEY.fullmatch(key))
    if bad:
        raise errors.InvalidArgumentError(
            f"A hub may set only JUPYTERHUB_* and JPY_* variables (upper-case letters, digits, _), not {bad}.")
    for key, value in env.items():
        if not isinstance(value, str) or len(value) > ENV_MAX_VALUE or "\x00" in value:
            raise errors.InvalidArgumentError(f"{key} must be a string of at most {ENV_MAX_VALUE} characters.")
    return dict(env)


def allowed_images(hub: HubCredential) -> QuerySet[Image]:
    """The images the hub's users may choose: the hub's list, or the base and public images."""
    chosen = hub.images.all()
    if chosen.exists():
        return chosen.order_by("name", "pk")
    return Image.objects.filter(Q(owner__isnull=True) | Q(public=True)).order_by("name", "pk")


def default_image(hub: HubCredential) -> Image | None:
    allowed = allowed_images(hub)
    if hub.default_image_id and allowed.filter(pk=hub.default_image_id).exists():
        return hub.default_image
    return allowed.first()


def pick_image(hub: HubCredential, wanted: Any) -> Image:
    """The image a start asks for (its name or id; '' or none: the hub's default), among the
    hub's allowed images."""
    if wanted in (None, ""):
        image = default_image(hub)
        if image is None:
            raise errors.InvalidArgumentError(f"The master allows the hub {hub} no image: ask its administrator.")
        return image
    allowed = allowed_images(hub)
    text = str(wanted)
    matches = list(allowed.filter(pk=int(text))) if text.isdigit() else list(allowed.filter(name=text))
    if len(matches) != 1:
        names = ", ".join(sorted({image.name for image in allowed})) or "none"
        why = "is ambiguous (give its id)" if matches else "is not one the master allows for this hub"
        raise errors.InvalidArgumentError(f"The image {text!r} {why}; allowed: {names}.")
    return matches[0]


# ---------------------------------------------------------------------------- servers

def hub_servers(hub: HubCredential) -> QuerySet[HubServer]:
    return HubServer.objects.select_related("container__node__backend", "container__image",
                                            "container__owner", "hub_user").filter(hub_user__hub=hub)


def start_server(hub: HubCredential, user_name: str, server: str, *, image: Any = None,
                 env: Any = None, base_url: str = "", resume: bool = False) -> HubServer:
    """Create the user's server, or bring back the one they have: a suspended one is resumed
    and a stopped one started when the hub gives the same environment and image (with
    ``resume``, the hub kept the server's previous API token: the tokens may differ, and the
    server keeps its own, which the hub then uses again); otherwise (a new API token, another
    image, an error or lost record) it is made anew from the image, its named volumes kept. A
    creation runs in the background: poll the server's status."""
    if not isinstance(server, str) or len(server) > 255:
        raise errors.InvalidArgumentError("server must be the server's name ('' for the default server).")
    if not isinstance(base_url, str) or not base_url.startswith("/") or not base_url.endswith("/"):
        raise errors.InvalidArgumentError("base_url must be the server's path on the hub, such as /user/alice/.")
    env = check_env(env)
    chosen = pick_image(hub, image)
    hub_user = acting_user(hub, user_name, create=True)
    owner = hub_user.user
    with audit.acting(owner, audit.VIA_API, source=f"jupyterhub {hub.name}"):
        found = hub_servers(hub).filter(hub_user=hub_user, server_name=server).first()
        if found is not None:
            again = _bring_back(found, chosen, env, base_url, resume)
            if again is not None:
                return again
        return _create(hub_user, server, chosen, env, base_url)


def _without_tokens(env: Mapping[str, str]) -> dict[str, str]:
    return {key: value for key, value in env.items() if key not in SECRET_ENV}


def _bring_back(found: HubServer, image: Image, env: dict[str, str], base_url: str,
                resume: bool) -> HubServer | None:
    """``found`` running again when it can be, else ``None`` (removed: make it anew)."""
    container = found.container
    if container.status == S.CREATING:
        return found
    same_env = found.env == env or (resume and _without_tokens(found.env) == _without_tokens(env))
    same = same_env and container.image_id == image.pk and container.base_url == base_url
    if same and container.status in (S.RUNNING, S.SUSPENDED, S.STOPPED):
        try:
            refresh_container(container)
        except errors.ContainerNotFoundError:
            pass  # lost: made anew below
        else:
            if container.status == S.SUSPENDED:
                resume_container(container)
            elif container.status == S.STOPPED:
                start_container(container)
            if container.status == S.RUNNING:
                return found
    if container.status == S.CREATING:
        raise errors.IllegalContainerStateError(f"{container} is being created: wait for it.")
    changed = sorted(key for key in set(found.env) | set(env) if found.env.get(key) != env.get(key))
    logger.info("Making %s anew (it was %s; the hub changed %s)", container, container.status,
                ", ".join(changed + (["the image"] if container.image_id != image.pk else [])
                          + (["the base URL"] if container.base_url != base_url else [])) or "nothing")
    delete_container(container)
    return None


def kept_token(found: HubServer, env: Mapping[str, str]) -> str | None:
    """The server's own API token when the hub sent another one (a resumed server keeps its own):
    what the hub's spawner must use again. Only ever answered to the hub that gave it."""
    token = found.env.get("JUPYTERHUB_API_TOKEN")
    return token if token and token != env.get("JUPYTERHUB_API_TOKEN") else None


def _create(hub_user: HubUser, server: str, image: Image, env: dict[str, str], base_url: str) -> HubServer:
    made: list[HubServer] = []

    def prepare(container: Container) -> None:
        made.append(HubServer.objects.create(container=container, hub_user=hub_user, server_name=server, env=env))

    start_creating(hub_user.user, container_name(server), submit=background.submit, image=image,
                   base_url=base_url, env=env, prepare=prepare)
    return made[0]


def stop_server(found: HubServer, *, suspend: bool) -> HubServer:
    """Suspend (its memory and kernels kept) or stop the server; nothing to do when it is not running.
    A node that cannot suspend (a swarm) stops it instead."""
    container = found.container
    if container.status == S.CREATING:
        raise errors.IllegalContainerStateError(f"{container} is still being created: stop it once it runs.")
    with audit.acting(found.hub_user.user, audit.VIA_API, source=f"jupyterhub {found.hub_user.hub.name}"):
        try:
            refresh_container(container)
        except errors.ContainerNotFoundError:
            return found  # lost: nothing runs
        if container.status != S.RUNNING:
            return found
        if suspend and isinstance(get_backend(container.node), SuspendableContainerBackend):
            suspend_container(container)
        else:
            stop_container(container)
    return found


def delete_server(found: HubServer) -> None:
    container = found.container
    if container.status == S.CREATING:
        raise errors.IllegalContainerStateError(f"{container} is still being created: delete it once it runs.")
    with audit.acting(found.hub_user.user, audit.VIA_API, source=f"jupyterhub {found.hub_user.hub.name}"):
        delete_container(container)


def poll_server(found: HubServer) -> HubServer:
    """Read the server's state from its node (a container the node no longer has becomes ``lost``)."""
    container = found.container
    if container.status in (S.RUNNING, S.SUSPENDED, S.STOPPED):
        try:
            refresh_container(container)
        except errors.ContainerNotFoundError:
            container.refresh_from_db()
    return found
