"""The ``Docker`` backend, as a package of small parts (see :mod:`.backend` for the map).

``ipynbsrv_backends.backends.docker.Docker`` and the names below are the public import
paths; they stay as they were when this was one module.
"""

from __future__ import annotations

from .backend import Docker
from .constants import (
    CONTAINER_LABELS,
    CREATE_OPTIONS,
    DEFAULT_PORT_RANGE,
    KIND_CLONE_BASE,
    KIND_CONTAINER,
    KIND_IMAGE,
    KIND_SNAPSHOT,
    KIND_TRANSFER,
    L_CLONE_OF,
    L_CONTAINER,
    L_CREATED,
    L_IMAGE,
    L_IMAGE_NAME,
    L_INSTANCE,
    L_KIND,
    L_NAME,
    L_OWNER,
    L_PORTS,
    L_SNAPSHOT,
    L_UID,
    L_VOLUMES,
    LABEL_PREFIX,
    PORT_ATTEMPTS,
    PRIVILEGED_OPTIONS,
    PULL_POLICIES,
)
from .options import DOCKER_OPTIONS
from .registry_client import ProgressCallback

__all__ = [
    "Docker",
    "DOCKER_OPTIONS",
    "LABEL_PREFIX",
    "CONTAINER_LABELS",
    "CREATE_OPTIONS",
    "DEFAULT_PORT_RANGE",
    "KIND_CLONE_BASE",
    "KIND_CONTAINER",
    "KIND_IMAGE",
    "KIND_SNAPSHOT",
    "KIND_TRANSFER",
    "L_CLONE_OF",
    "L_CONTAINER",
    "L_CREATED",
    "L_IMAGE",
    "L_IMAGE_NAME",
    "L_INSTANCE",
    "L_KIND",
    "L_NAME",
    "L_OWNER",
    "L_PORTS",
    "L_SNAPSHOT",
    "L_UID",
    "L_VOLUMES",
    "PORT_ATTEMPTS",
    "PRIVILEGED_OPTIONS",
    "PULL_POLICIES",
    "ProgressCallback",
]
