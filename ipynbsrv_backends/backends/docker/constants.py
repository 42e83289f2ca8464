"""The names the ``Docker`` backend writes on the engine (labels, kinds) and its fixed limits.

Everything it creates carries labels (``org.ipynbsrv.*``) naming the backend instance that
manages it, its owner and its name; it lists and acts only on what carries its instance label.
"""

from __future__ import annotations

import re

from ..options import CONTAINER_OPTIONS
from ..options import PRIVILEGED_OPTIONS as PRIVILEGED_OPTIONS  # where it was declared first

LABEL_PREFIX = "org.ipynbsrv."
L_INSTANCE = LABEL_PREFIX + "instance"
L_KIND = LABEL_PREFIX + "kind"
L_OWNER = LABEL_PREFIX + "owner"
L_UID = LABEL_PREFIX + "uid"
L_NAME = LABEL_PREFIX + "name"
L_IMAGE = LABEL_PREFIX + "image"
L_CREATED = LABEL_PREFIX + "created"
L_PORTS = LABEL_PREFIX + "ports"
L_VOLUMES = LABEL_PREFIX + "volumes"
L_CLONE_OF = LABEL_PREFIX + "clone-of"
L_CONTAINER = LABEL_PREFIX + "container"
L_SNAPSHOT = LABEL_PREFIX + "snapshot"
L_IMAGE_NAME = LABEL_PREFIX + "image-name"

KIND_CONTAINER = "container"
KIND_IMAGE = "image"
KIND_SNAPSHOT = "snapshot"
KIND_CLONE_BASE = "clone-base"
#: The short-lived, never started container that relabels an image for a snapshot's move
#: between nodes (see ``SnapshotTransfer._commit_relabelled``); never a user's container.
KIND_TRANSFER = "transfer-helper"

#: Every label a container carries; all are set on each create so nothing is inherited
#: from the labels of the image it starts from (a snapshot or a committed image).
CONTAINER_LABELS = (
    L_INSTANCE, L_KIND, L_OWNER, L_UID, L_NAME, L_IMAGE, L_CREATED, L_PORTS, L_VOLUMES,
    L_CLONE_OF, L_CONTAINER, L_SNAPSHOT, L_IMAGE_NAME,
)

#: The options ``create_container`` accepts (the contract's; ``restore_container_snapshot``
#: accepts ``env``).
CREATE_OPTIONS = tuple(CONTAINER_OPTIONS)

PULL_POLICIES = ("if-not-present", "always", "never")
#: Seconds between two progress reports of one pull (a finished layer is reported at once).
PROGRESS_INTERVAL = 0.25
REGISTRY_RE = re.compile(
    r"^(?P<host>[A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\])(?::(?P<port>\d{1,5}))?(?P<ns>(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*)\Z",
    re.ASCII,
)
PREFIX_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*\Z")
INSTANCE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")
#: Where a port given as ``external: None`` is chosen (the ``port_range`` option's default):
#: below Linux's ephemeral range (32768-60999), which outgoing connections draw from.
DEFAULT_PORT_RANGE = (20000, 32767)
#: How often a create tries another host port when the engine finds the chosen one taken.
PORT_ATTEMPTS = 5
#: The host port the engine names when it cannot bind one ("Bind for 0.0.0.0:PORT failed:
#: port is already allocated", "listen tcp4 127.0.0.1:PORT: bind: address already in use").
PORT_CONFLICT_RE = re.compile(r"(?:bind for|listen tcp[46]?)\s+\S*?:(\d{1,5})\b")
IMAGE_NAME_RE = re.compile(r"^(?P<name>[a-z0-9]+(?:[._-][a-z0-9]+)*)(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?\Z")
