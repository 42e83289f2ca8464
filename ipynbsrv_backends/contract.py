"""The container backend contract.

A backend turns calls such as :meth:`ContainerBackend.create_container` into real
containers. Every method returns plain JSON-serialisable values (the records below), so a
result crosses the host API unchanged and :class:`~ipynbsrv_backends.backends.HttpRemote`
returns exactly what :class:`~ipynbsrv_backends.backends.Docker` returns.

Capabilities beyond the base contract are sub-contracts (see "Capabilities" at the end);
callers detect them with ``isinstance(backend, SuspendableContainerBackend)`` and so on,
never by the concrete class or by looking for a method.

Every method takes ``**kwargs`` last for backend-specific options. An option a backend does
not know is an :class:`~ipynbsrv_backends.errors.InvalidArgumentError`, never silently
dropped.
"""

from __future__ import annotations

import abc
import typing
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar, Literal, NotRequired, TypedDict

__all__ = [
    "BACKEND_STATUS_OK",
    "BACKEND_STATUS_STOPPED",
    "BACKEND_STATUS_ERROR",
    "CONTAINER_STATUS_RUNNING",
    "CONTAINER_STATUS_STOPPED",
    "CONTAINER_STATUS_SUSPENDED",
    "ACCESS_SECRET_ENV",
    "SECRET_ENV",
    "ACCESS_HEADER",
    "PortRecord",
    "VolumeRecord",
    "ContainerRecord",
    "ImageRecord",
    "SnapshotRecord",
    "EventRecord",
    "EventAction",
    "EVENT_ACTIONS",
    "ContainerStatus",
    "RECORDS",
    "record_fields",
    "ContainerBackend",
    "SuspendableContainerBackend",
    "SnapshotableContainerBackend",
    "ImagePullingContainerBackend",
    "SnapshotTransferContainerBackend",
    "NodeStatusContainerBackend",
    "KeyRotatingContainerBackend",
    "EventSourceContainerBackend",
    "CAPABILITIES",
]

BACKEND_STATUS_OK = 0
BACKEND_STATUS_STOPPED = 1
BACKEND_STATUS_ERROR = 2

CONTAINER_STATUS_RUNNING = "running"
CONTAINER_STATUS_STOPPED = "stopped"
CONTAINER_STATUS_SUSPENDED = "suspended"

#: The environment variable that carries a container's access secret (besides ``OWNER`` and
#: ``BASE_URL``): the master mints one for every container it creates, clones, restores or
#: moves in, and the notebook server in the container answers only requests that carry it.
ACCESS_SECRET_ENV = "IPYNBSRV_ACCESS_SECRET"
#: Other secrets a container's environment may hold (a JupyterHub's API token for its server):
#: like the access secret, never left in an image committed from it (blanked where present).
SECRET_ENV = ("JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN")
#: The request header in which the master's proxy hands the secret to the notebook server
#: (it replaces whatever a client sent under that name).
ACCESS_HEADER = "X-Ipynbsrv-Access"


# ---------------------------------------------------------------------------- records
#
# Every record is declared once, here: the keys every backend returns, and (``NotRequired``)
# the extras a backend may add, which callers read with ``.get``. The host API's response
# serializers are checked against these declarations (``tests/integration/test_records.py``).

#: A container's state as the contract names it.
ContainerStatus = Literal["running", "stopped", "suspended"]


class PortRecord(TypedDict):
    """A published port. ``external: None`` asks the engine for a free port."""

    address: str
    external: int | None
    internal: int


class VolumeRecord(TypedDict):
    """A bind mount (``source`` is an absolute host path) or a named volume (no ``/``)."""

    source: str
    target: str
    mode: NotRequired[Literal["rw", "ro"]]


class ContainerRecord(TypedDict):
    """A container. Extras: ``uid`` (the owner's uid it was created with) and ``clone_of``
    (the pk of the container it was cloned from, or ``None``)."""

    pk: str
    name: str
    status: ContainerStatus
    image: str
    owner: str
    created: str
    ports: list[PortRecord]
    volumes: list[VolumeRecord]
    uid: NotRequired[int]
    clone_of: NotRequired[str | None]


class ImageRecord(TypedDict):
    """An image. Extras: ``managed`` (this backend made it), its ``owner`` and the
    ``container`` it was committed from (``None`` unless managed), and the ``registry``
    every node can pull it from (``None`` when it is kept on one node only)."""

    pk: str
    name: str
    created: str
    size: int
    owner: NotRequired[str | None]
    container: NotRequired[str | None]
    managed: NotRequired[bool]
    registry: NotRequired[str | None]


class SnapshotRecord(TypedDict):
    """A snapshot of a container's filesystem. Extra: ``size`` in bytes."""

    pk: str
    name: str
    container: str
    created: str
    size: NotRequired[int]


#: What an engine event says happened to a container: started, stopped (``die``, with its exit
#: code), a process in it killed for memory (``oom``; the container may still run), suspended
#: (``pause``), resumed (``unpause``), its health check's verdict changed (``health``), removed.
EventAction = Literal["start", "die", "oom", "pause", "unpause", "health", "destroy"]
EVENT_ACTIONS: tuple[str, ...] = typing.get_args(EventAction)


class EventRecord(TypedDict):
    """One engine event of a container the backend manages. ``cursor`` is opaque: give the last
    one back as ``since`` and the next stream starts after it. ``status`` is the container's
    status after the event when the event tells it (``None`` for ``oom``, ``health`` and
    ``destroy``); ``message`` says what happened in words ("ran out of memory: 2 GiB limit").
    Extras: ``exit_code`` (``die``), ``health`` (``healthy``, ``unhealthy``, ``starting``) and
    ``mem_limit`` in bytes (``oom``)."""

    cursor: str
    time: str
    container: str
    owner: str
    name: str
    action: EventAction
    status: ContainerStatus | None
    message: str
    exit_code: NotRequired[int | None]
    health: NotRequired[str | None]
    mem_limit: NotRequired[int | None]


#: Every record type, by the name the host API's schema gives its answer.
RECORDS: dict[str, type] = {
    "PortRecord": PortRecord,
    "VolumeRecord": VolumeRecord,
    "ContainerRecord": ContainerRecord,
    "ImageRecord": ImageRecord,
    "SnapshotRecord": SnapshotRecord,
}


def record_fields(record: type) -> dict[str, tuple[Any, bool]]:
    """Each key of a record type: its type and whether every record has it (``NotRequired``
    extras do not). Read from the annotations, since ``__required_keys__`` is not reliable
    with postponed annotations."""
    fields = {}
    for key, hint in typing.get_type_hints(record, include_extras=True).items():
        extra = typing.get_origin(hint) is NotRequired
        fields[key] = (typing.get_args(hint)[0] if extra else hint, not extra)
    return fields


class ContainerBackend(abc.ABC):
    """The base contract every container backend implements."""

    BACKEND_STATUS_OK = BACKEND_STATUS_OK
    BACKEND_STATUS_STOPPED = BACKEND_STATUS_STOPPED
    BACKEND_STATUS_ERROR = BACKEND_STATUS_ERROR
    CONTAINER_STATUS_RUNNING = CONTAINER_STATUS_RUNNING
    CONTAINER_STATUS_STOPPED = CONTAINER_STATUS_STOPPED
    #: Actions (``exec``, ``commit``, ``clone``, ``move``, ``suspend``, ``snapshot``) this backend
    #: refuses although callers may ask, each with the reason the master shows; empty for most.
    UNSUPPORTED: ClassVar[Mapping[str, str]] = {}

    @abc.abstractmethod
    def container_exists(self, container: str, **kwargs: Any) -> bool:
        """Whether this backend manages a container with the pk ``container``."""

    @abc.abstractmethod
    def container_image_exists(self, image: str, **kwargs: Any) -> bool:
        """Whether the image ``image`` exists."""

    @abc.abstractmethod
    def container_is_running(self, container: str, **kwargs: Any) -> bool:
        """Whether the container runs; a suspended container counts as running."""

    @abc.abstractmethod
    def create_container(
        self,
        username: str,
        uid: int,
        name: str,
        ports: list[PortRecord],
        volumes: list[VolumeRecord],
        cmd: str | list[str] | None = None,
        base_url: str | None = None,
        image: str | None = None,
        clone_of: str | None = None,
        **kwargs: Any,
    ) -> ContainerRecord:
        """Create and start a container from ``image``, or from the current filesystem of
        the container ``clone_of`` (exactly one of the two).

        The container sees ``OWNER=<username>`` and ``BASE_URL=<base_url>`` in its
        environment. Options: at least ``env`` (dict), ``mem_limit``, ``cpu_limit`` and
        ``pids_limit``.
        """

    @abc.abstractmethod
    def create_container_image(self, container: str, name: str, **kwargs: Any) -> ImageRecord:
        """Commit the container to an image (pushed to the registry when one is set)."""

    @abc.abstractmethod
    def delete_container(self, container: str, **kwargs: Any) -> None:
        """Remove the container in whatever state it is. Named volumes are kept."""

    @abc.abstractmethod
    def delete_container_image(self, image: str, **kwargs: Any) -> None:
        """Remove an image this backend made."""

    @abc.abstractmethod
    def exec_in_container(self, container: str, cmd: str | list[str], **kwargs: Any) -> str:
        """Run ``cmd`` (an argv list, or a string split as a shell would, with no shell) in
        the running container and return its stdout and stderr as text."""

    @abc.abstractmethod
    def get_container(self, container: str, **kwargs: Any) -> ContainerRecord:
        """The record of one container."""

    @abc.abstractmethod
    def get_container_image(self, image: str, **kwargs: Any) -> ImageRecord:
        """The record of one image."""

    @abc.abstractmethod
    def get_container_images(self, **kwargs: Any) -> list[ImageRecord]:
        """The images this backend made."""

    @abc.abstractmethod
    def get_container_logs(
        self, container: str, tail: int | None = None, since: Any = None, **kwargs: Any
    ) -> list[str]:
        """The container's output, one line each; ``tail`` keeps the last lines only,
        ``since`` (a datetime, an ISO 8601 string or a Unix time) the newer ones."""

    @abc.abstractmethod
    def get_containers(self, only_running: bool = False, **kwargs: Any) -> list[ContainerRecord]:
        """The containers this backend manages (only running or suspended ones on request)."""

    @abc.abstractmethod
    def get_status(self, **kwargs: Any) -> int:
        """``BACKEND_STATUS_OK``, ``_STOPPED`` or ``_ERROR``. Never raises."""

    def restart_container(self, container: str, **kwargs: Any) -> None:
        """Stop (gracefully) and start the container again."""
        self.stop_container(container, **kwargs)
        self.start_container(container, **kwargs)

    @abc.abstractmethod
    def start_container(self, container: str, **kwargs: Any) -> None:
        """Start a stopped container; starting a running one does nothing."""

    @abc.abstractmethod
    def stop_container(self, container: str, **kwargs: Any) -> None:
        """Stop the container gracefully: a signal, a timeout, then a kill."""


class SuspendableContainerBackend(ContainerBackend):
    """A backend that can freeze a container and thaw it again (``"suspended"``)."""

    CONTAINER_STATUS_SUSPENDED = CONTAINER_STATUS_SUSPENDED

    @abc.abstractmethod
    def container_is_suspended(self, container: str, **kwargs: Any) -> bool:
        """Whether the container is suspended."""

    @abc.abstractmethod
    def resume_container(self, container: str, **kwargs: Any) -> None:
        """Thaw a suspended container."""

    @abc.abstractmethod
    def suspend_container(self, container: str, **kwargs: Any) -> None:
        """Freeze a running container; its processes keep their memory."""


class SnapshotableContainerBackend(ContainerBackend):
    """A backend that can keep and restore snapshots of a container's filesystem."""

    @abc.abstractmethod
    def container_snapshot_exists(self, snapshot: str, **kwargs: Any) -> bool:
        """Whether the snapshot exists."""

    @abc.abstractmethod
    def create_container_snapshot(self, container: str, name: str, **kwargs: Any) -> SnapshotRecord:
        """Snapshot the container's filesystem; names are unique per container."""

    @abc.abstractmethod
    def delete_container_snapshot(self, snapshot: str, **kwargs: Any) -> None:
        """Remove a snapshot."""

    @abc.abstractmethod
    def get_container_snapshot(self, snapshot: str, **kwargs: Any) -> SnapshotRecord:
        """The record of one snapshot."""

    @abc.abstractmethod
    def get_container_snapshots(self, **kwargs: Any) -> list[SnapshotRecord]:
        """Every snapshot this backend keeps."""

    @abc.abstractmethod
    def get_containers_snapshots(self, container: str, **kwargs: Any) -> list[SnapshotRecord]:
        """The snapshots of one container."""

    @abc.abstractmethod
    def restore_container_snapshot(self, container: str, snapshot: str, **kwargs: Any) -> ContainerRecord:
        """Put the container's filesystem back to the snapshot's; its pk, name, ports,
        volumes, environment and limits are kept."""


# ---------------------------------------------------------------------------- capabilities
#
# The two sub-contracts above, and the six below, are every extra a backend may offer. A
# backend claims one by subclassing it; the master asks ``isinstance(backend, <sub-contract>)``.
# A backend that forwards calls to another (HttpRemote) claims what it can forward: the far
# side may still answer ``CapabilityNotSupportedError`` (501) when its own backend cannot.

#: ``on_progress(summary)`` of an image pull (see :mod:`ipynbsrv_backends.pullprogress`).
PullProgressCallback = Callable[[dict[str, Any]], None]


class ImagePullingContainerBackend(ContainerBackend):
    """A backend that can pull an image ahead of time, reporting its progress."""

    @abc.abstractmethod
    def pull_container_image(self, image: str, on_progress: PullProgressCallback | None = None,
                             **kwargs: Any) -> ImageRecord:
        """Pull ``image`` now and return its record; ``on_progress(summary)`` is called as the
        pull goes. ``follow_pull_policy=True`` pulls only as ``create_container`` would."""


class SnapshotTransferContainerBackend(SnapshotableContainerBackend):
    """A backend whose snapshots can travel to another node (through a registry both use)."""

    @abc.abstractmethod
    def export_container_snapshot(self, snapshot: str, **kwargs: Any) -> ImageRecord:
        """Push a copy of the snapshot as an image another node can import; its record."""

    @abc.abstractmethod
    def import_container_snapshot(self, container: str, name: str, image: str, **kwargs: Any) -> SnapshotRecord:
        """Make the exported ``image`` the snapshot ``name`` of ``container``; its record."""


class NodeStatusContainerBackend(ContainerBackend):
    """A backend that reports its node's resources (for placement and the admin)."""

    @abc.abstractmethod
    def get_node_status(self, **kwargs: Any) -> dict[str, Any]:
        """``{"backend": {"status", "capabilities"}, "resources": {...}}`` as the host API's
        ``status/`` answers it. Raises like any other call."""


class KeyRotatingContainerBackend(ContainerBackend):
    """A backend that signs its requests with a key that can be rotated without downtime."""

    @abc.abstractmethod
    def install_next_signing_key(self, key: str) -> None:
        """Give the far side the key that will replace the current one (it accepts both)."""

    @abc.abstractmethod
    def promote_signing_key(self, grace: int | None = None) -> None:
        """Make the next key the current one; the old one stays accepted ``grace`` seconds."""


class EventSourceContainerBackend(ContainerBackend):
    """A backend that streams its engine's events about the containers it manages (only
    those: its labels or scope), so a master keeps its records fresh without polling each."""

    @abc.abstractmethod
    def get_container_events(self, since: str | None = None, timeout: float = 60.0, heartbeat: float = 15.0,
                             **kwargs: Any) -> Iterator[EventRecord | str]:
        """The events after the cursor ``since`` (``None``: from now on), as they happen, for
        ``timeout`` seconds. Whenever ``heartbeat`` seconds pass without one, a heartbeat is
        yielded: a cursor (a string) up to which nothing happened, so the stream is alive and a
        later stream may start from it. Cursors are digits, and a later one is larger. Arguments
        are checked before the first item is asked for (``InvalidArgumentError``); an engine
        that fails mid-stream raises like any call."""


class MachineAvailabilityContainerBackend(ContainerBackend):
    """A backend that stands for many machines (a swarm) and can take one out of service."""

    @abc.abstractmethod
    def set_machine_availability(self, machine: str, availability: str, **kwargs: Any) -> None:
        """Set one machine (by its id or name) ``active``, ``pause`` or ``drain``: a drained
        machine takes no new containers and hands over what it runs where it can."""


#: Every capability sub-contract by a short name (the names the host API's status answers).
CAPABILITIES: dict[str, type] = {
    "suspend": SuspendableContainerBackend,
    "snapshot": SnapshotableContainerBackend,
    "snapshot_transfer": SnapshotTransferContainerBackend,
    "image_pull": ImagePullingContainerBackend,
    "node_status": NodeStatusContainerBackend,
    "signing_key_rotation": KeyRotatingContainerBackend,
    "events": EventSourceContainerBackend,
    "machine_availability": MachineAvailabilityContainerBackend,
}
