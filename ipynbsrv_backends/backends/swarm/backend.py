"""The ``DockerSwarm`` backend: each user's container is a one-replica service of a swarm.

It talks to one manager's engine (the connection and the error translation are the
``Docker`` backend's :class:`~..docker.engine.EngineAccess`), labels its services exactly as
``Docker`` labels containers and acts only on services carrying its instance label. A
container's pk is its service name (``<prefix>-u<uid>-<name>``). Start scales the service to
one replica, stop to zero (the task gets ``stop_timeout`` seconds after ``SIGTERM``); delete
removes the service and keeps its volumes. Ports are published in host mode on the node that
runs the task, and the record's ports carry that node's address.

Swarm runs a task on a node whose engine the manager does not expose, so what needs that
engine (pause, commit, snapshots, exec) is not offered: the backend claims only the base
contract, and those methods raise ``CapabilityNotSupportedError`` saying why.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from ... import errors
from ...contract import (
    BACKEND_STATUS_ERROR,
    BACKEND_STATUS_OK,
    BACKEND_STATUS_STOPPED,
    ContainerRecord,
    ImageRecord,
    MachineAvailabilityContainerBackend,
    NodeStatusContainerBackend,
    PortRecord,
    VolumeRecord,
)
from ...validation import iso_utc, parse_since, validate_create_arguments, validate_pk, validate_tail
from ..docker import spec as docker_spec
from ..docker.constants import CREATE_OPTIONS, KIND_CONTAINER, L_IMAGE, L_INSTANCE, L_KIND, PRIVILEGED_OPTIONS
from ..docker.engine import EngineAccess
from ..docker.host import pick_port
from ..docker.records import image_record, is_ours
from ..options import Options
from . import spec
from .options import SWARM_OPTIONS

logger = logging.getLogger(__name__)

__all__ = ["DockerSwarm", "NOT_SUPPORTED"]

#: Why each action Swarm cannot give is refused (the admin and the API show these words).
NOT_SUPPORTED = {
    "exec": "Swarm runs the container on a node whose engine the manager does not expose, so a command "
            "cannot be run in it through the manager.",
    "commit": "A running task's container lives on a node whose engine the manager does not expose, so it "
              "cannot be committed to an image; build images with the registry instead.",
    "suspend": "Swarm services have no pause: a container on a swarm can be stopped (scaled to zero), not "
               "suspended.",
    "snapshot": "Snapshots commit the container's filesystem on its node's engine, which the manager does "
                "not expose.",
    "clone": "A clone starts from a commit of the container, which Swarm cannot make.",
    "move": "A move commits the container, which Swarm cannot do. With shared storage Swarm itself moves a "
            "container whose node fails or is drained; without it the container stays with its volume.",
}

_POSITIONAL = ("base_url", "registry", "allowed_volume_roots")


class DockerSwarm(EngineAccess, NodeStatusContainerBackend, MachineAvailabilityContainerBackend):
    """Containers as one-replica services of a Docker swarm, through one manager's engine.

    See ``docs/swarm.md`` and the README's table (generated from
    :data:`~.options.SWARM_OPTIONS`). Nothing is contacted until the first call."""

    OPTION_TABLE: ClassVar[Options] = SWARM_OPTIONS
    OPTIONS: ClassVar[dict[str, Any]] = SWARM_OPTIONS.defaults(exclude=_POSITIONAL)
    SECRET_OPTIONS: ClassVar[frozenset[str]] = SWARM_OPTIONS.secrets()
    METHOD_OPTIONS: ClassVar[dict[str, tuple[str, ...]]] = {"create_container": CREATE_OPTIONS}
    FORBIDDEN_OPTIONS = PRIVILEGED_OPTIONS
    #: What this backend cannot do, by action name, with the reason.
    UNSUPPORTED: ClassVar[Mapping[str, str]] = NOT_SUPPORTED

    registry: str | None
    allowed_volume_roots: tuple[str, ...]
    instance: str
    name_prefix: str
    port_range: tuple[int, int]
    stop_timeout: int
    default_mem_limit: int | str | None
    default_cpu_limit: float | None
    default_pids_limit: int | None
    allowed_images: tuple[str, ...]
    use_init: bool
    shared_storage: bool
    constraints: tuple[str, ...]
    start_timeout: float

    def __init__(self, base_url: str = SWARM_OPTIONS["base_url"].default, registry: str | None = None,
                 allowed_volume_roots: list[str] | tuple[str, ...] = (), **options: Any) -> None:
        config = self.validate_options(base_url=base_url, registry=registry,
                                       allowed_volume_roots=allowed_volume_roots, **options)
        self._configure(SWARM_OPTIONS.names(), config)

    @classmethod
    def validate_options(cls, **config: Any) -> dict[str, Any]:
        """Check a constructor configuration without contacting anything (see ``Docker``)."""
        return SWARM_OPTIONS.validate(config)

    def __repr__(self) -> str:
        registry = f", registry={self.registry!r}" if self.registry else ""
        return f"DockerSwarm(base_url={self.base_url!r}{registry}, instance={self.instance!r})"

    # ------------------------------------------------------------------ lookups

    def _labels_filter(self) -> dict[str, Any]:
        return {"label": [f"{L_INSTANCE}={self.instance}", f"{L_KIND}={KIND_CONTAINER}"]}

    def _inspect_service(self, container: str) -> dict[str, Any]:
        """A service this backend manages; anything else is not found."""
        validate_pk(container)
        missing = errors.ContainerNotFoundError(f"No container {container!r} is managed by this backend.")
        with self._engine(not_found=missing):
            service = self._api().inspect_service(container)
        if (service.get("Spec") or {}).get("Name") != container \
                or not is_ours((service.get("Spec") or {}).get("Labels"), self.instance, KIND_CONTAINER):
            raise missing
        return service

    def _tasks(self, service_id: str | None = None) -> list[dict[str, Any]]:
        filters: dict[str, Any] = {"desired-state": "running"}
        if service_id is not None:
            filters["service"] = service_id
        with self._engine():
            return list(self._api().tasks(filters=filters))

    def _nodes(self) -> dict[str, dict[str, Any]]:
        with self._engine():
            return {node["ID"]: node for node in self._api().nodes()}

    def _record(self, service: dict[str, Any]) -> ContainerRecord:
        return spec.service_record(service, self._tasks(service["ID"]), self._nodes())

    # ------------------------------------------------------------------ reads

    def container_exists(self, container: str, **kwargs: Any) -> bool:
        try:
            self._inspect_service(container)
        except errors.ContainerNotFoundError:
            return False
        return True

    def container_is_running(self, container: str, **kwargs: Any) -> bool:
        return self.get_container(container)["status"] == "running"

    def get_container(self, container: str, **kwargs: Any) -> ContainerRecord:
        """Three engine calls: the service, its tasks, the nodes."""
        return self._record(self._inspect_service(container))

    def get_containers(self, only_running: bool = False, **kwargs: Any) -> list[ContainerRecord]:
        """Three engine calls (services, tasks, nodes), however many containers there are."""
        if not isinstance(only_running, bool):
            raise errors.InvalidArgumentError("only_running must be true or false.")
        with self._engine():
            services = self._api().services(filters=self._labels_filter())
        tasks, nodes = self._tasks(), self._nodes()
        records = [spec.service_record(s, tasks, nodes) for s in services
                   if is_ours((s.get("Spec") or {}).get("Labels"), self.instance, KIND_CONTAINER)]
        if only_running:
            records = [r for r in records if r["status"] == "running"]
        return sorted(records, key=lambda record: record["pk"])

    def get_container_logs(self, container: str, tail: int | None = None, since: Any = None,
                           **kwargs: Any) -> list[str]:
        tail = validate_tail(tail)
        moment = parse_since(since)
        service = self._inspect_service(container)
        with self._engine(not_found=errors.ContainerNotFoundError(f"The container {container!r} vanished.")):
            output = self._api().service_logs(service["ID"], stdout=True, stderr=True, timestamps=False,
                                              tail="all" if tail is None else tail,
                                              since=int(moment.timestamp()) if moment else 0)
            text = output if isinstance(output, bytes) else b"".join(output)
        return text.decode("utf-8", errors="replace").splitlines()

    def get_status(self, **kwargs: Any) -> int:
        """OK when the engine answers and is a manager of an active swarm; never raises."""
        try:
            with self._engine():
                info = self._api().info()
        except errors.BackendUnavailableError:
            return BACKEND_STATUS_STOPPED
        except Exception:  # noqa: BLE001 - the contract: get_status never raises
            logger.warning("The swarm manager at %s answered with an error", self.base_url, exc_info=True)
            return BACKEND_STATUS_ERROR
        swarm = info.get("Swarm") or {}
        if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable"):
            logger.warning("The engine at %s is not a manager of an active swarm", self.base_url)
            return BACKEND_STATUS_ERROR
        return BACKEND_STATUS_OK

    def get_node_status(self, **kwargs: Any) -> dict[str, Any]:
        """The swarm as one place with many machines: each node (ready/down/drain), the
        capacity of the ready and active ones, this backend's container counts."""
        with self._engine():
            info = self._api().info()
            nodes = self._api().nodes()
            services = self._api().services(filters=self._labels_filter())
        summary = spec.node_summary(nodes, services, self._tasks())
        return {
            "backend": {"status": BACKEND_STATUS_OK, "capabilities": [], "engine_version": info.get("ServerVersion"),
                        "registry": self.registry, "swarm": True},
            **summary,
        }

    def set_machine_availability(self, machine: str, availability: str, **kwargs: Any) -> None:
        """Set a machine of the swarm (its node id, or its ``org.ipynbsrv.node`` label)
        ``active``, ``pause`` or ``drain``: a drained machine takes no tasks, and Swarm moves
        those it runs elsewhere (pinned ones wait for it)."""
        if availability not in ("active", "pause", "drain"):
            raise errors.InvalidArgumentError(
                f"Invalid availability {availability!r}: use 'active', 'pause' or 'drain'.")
        nodes = self._nodes()
        found = [n for n in nodes.values() if machine in (n["ID"], spec.node_name(n))]
        if len(found) != 1:
            raise errors.InvalidArgumentError(
                f"No single machine {machine!r} in the swarm (its machines: "
                f"{', '.join(sorted(str(spec.node_name(n) or n['ID']) for n in nodes.values()))}).")
        node = found[0]
        with self._engine(not_found=errors.InvalidArgumentError(f"The machine {machine!r} left the swarm.")):
            self._api().update_node(node["ID"], node["Version"]["Index"], {**node["Spec"], "Availability": availability})
        logger.info("Swarm machine %s set %s", spec.node_name(node), availability)

    # ------------------------------------------------------------------ images

    def container_image_exists(self, image: str, **kwargs: Any) -> bool:
        try:
            self.get_container_image(image)
        except errors.ContainerImageNotFoundError:
            return False
        return True

    def get_container_image(self, image: str, **kwargs: Any) -> ImageRecord:
        """An image the nodes can pull: from the manager's engine if it has it, else from its
        registry (asked through the manager, as the nodes would)."""
        validate_pk(image, "image")
        missing = errors.ContainerImageNotFoundError(f"No image {image!r} on the manager or in its registry.")
        try:
            with self._engine(not_found=missing):
                return image_record(self._api().inspect_image(image), image, self.instance, self.registry)
        except errors.ContainerImageNotFoundError:
            pass
        found = self._in_registry(image, missing)
        size = int((found.get("Descriptor") or {}).get("size") or 0)
        return {"pk": image, "name": image, "created": "", "size": size, "owner": None,
                "container": None, "managed": False,
                "registry": self.registry if self.registry and image.startswith(self.registry + "/") else None}

    def _in_registry(self, image: str, missing: errors.BackendError) -> dict[str, Any]:
        """The registry's description of ``image``, asked through the manager as every machine
        would ask (``missing`` when the registry does not have it)."""
        try:
            with self._engine(not_found=missing):
                return dict(self._api().inspect_distribution(image))
        except errors.BackendError as exc:
            if isinstance(exc, (errors.BackendUnavailableError, errors.BackendTimeoutError)):
                raise
            raise missing from exc

    def get_container_images(self, **kwargs: Any) -> list[ImageRecord]:
        """The images this backend committed: none (Swarm cannot commit)."""
        return []

    def create_container_image(self, container: str, name: str, **kwargs: Any) -> ImageRecord:
        self._inspect_service(container)
        raise errors.CapabilityNotSupportedError(NOT_SUPPORTED["commit"])

    def delete_container_image(self, image: str, **kwargs: Any) -> None:
        validate_pk(image, "image")
        raise errors.ContainerImageNotFoundError(f"No image {image!r} was made by this backend (it commits none).")

    def exec_in_container(self, container: str, cmd: str | list[str], **kwargs: Any) -> str:
        self._inspect_service(container)
        raise errors.CapabilityNotSupportedError(NOT_SUPPORTED["exec"])

    # ------------------------------------------------------------------ create

    def engine_name(self, uid: int, name: str) -> str:
        """The service name (and pk) of a user's container, as ``Docker`` names containers."""
        return docker_spec.engine_name(self.name_prefix, uid, name)

    def create_container(self, username: str, uid: int, name: str, ports: list[PortRecord],
                         volumes: list[VolumeRecord], cmd: str | list[str] | None = None,
                         base_url: str | None = None, image: str | None = None, clone_of: str | None = None,
                         **kwargs: Any) -> ContainerRecord:
        pk = self.engine_name(uid, name)
        username, port_specs, volume_specs, argv, env = validate_create_arguments(
            username, ports, volumes, cmd, base_url, image, clone_of, kwargs.get("env"))
        limits = docker_spec.limits(kwargs, {"mem_limit": self.default_mem_limit, "cpu_limit": self.default_cpu_limit,
                                             "pids_limit": self.default_pids_limit})
        if clone_of is not None:
            self._inspect_service(clone_of)
            raise errors.CapabilityNotSupportedError(NOT_SUPPORTED["clone"])
        assert image is not None
        docker_spec.image_allowed(image, self.allowed_images)
        volume_specs = spec.check_bind_sources(volume_specs, self.allowed_volume_roots)
        # every machine pulls the image by name: it must be in a registry they reach
        self._in_registry(image, errors.ContainerImageNotFoundError(
            f"The image {image!r} is not in a registry the swarm's machines reach (asked through the manager): "
            "push it to the registry the nodes use."))
        created = iso_utc(dt.datetime.now(dt.UTC))
        with self._name_lock:
            fixed = self._fix_ports(port_specs, pk)
            labels = docker_spec.container_labels(self.instance, username, uid, name, fixed, volume_specs, created)
            labels[L_IMAGE] = image
            kwargs_ = spec.service_spec(
                name=pk, image=image, argv=argv, environment=docker_spec.container_environment(env, username, uid, base_url),
                labels=labels, ports=fixed, volumes=volume_specs, limits=limits, constraints=self.constraints,
                stop_timeout=self.stop_timeout, use_init=self.use_init, instance=self.instance, username=username)
            with self._engine(conflict=errors.ContainerAlreadyExistsError(
                    f"{username!r} already has a container named {name!r}.")):
                self._api().create_service(**kwargs_)
        try:
            service = self._wait_running(pk, "created")
            if not self.shared_storage:
                self._pin(service)
                self._wait_running(pk, "created")
        except Exception:
            self._remove_service_quietly(pk)
            raise
        logger.info("Created container %s (a swarm service) for %s from %s", pk, username, image)
        return self.get_container(pk)

    def _fix_ports(self, ports: list[PortRecord], pk: str) -> list[PortRecord]:
        """The port records with every external port chosen: host-mode ports are bound on
        whichever node runs the task, so one kept by any service of the swarm is refused."""
        if not ports:
            return []
        with self._engine():
            kept = spec.kept_ports(self._api().services())
        for p in ports:
            if p["external"] is not None and p["external"] in kept:
                raise errors.InvalidArgumentError(
                    f"The host port {p['external']} is kept by the service {kept[p['external']]!r} of the swarm: "
                    "pick another port or use external: null.")
        avoid = set(kept) | {p["external"] for p in ports if p["external"] is not None}
        chosen: dict[int, int] = {}
        for p in ports:
            if p["external"] is None:
                chosen[p["internal"]] = pick_port(self.port_range, avoid, self.base_url)
                avoid.add(chosen[p["internal"]])
        return docker_spec.fix_ports(ports, chosen)

    def _pin(self, service: Mapping[str, Any]) -> None:
        """Pin the service to the node its task runs on (its named volumes live there). Swarm
        keeps the running task when only the constraints change and it still meets them."""
        task = spec.running_task(self._tasks(service["ID"]), service["ID"])
        if task is None or not task.get("NodeID"):
            return
        self._update(service["ID"], task_template=lambda current: spec.with_pin(current, task["NodeID"]))

    def _update(self, service_id: str, *, task_template: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                replicas: int | None = None) -> None:
        """Change the service's task template or replica count and keep the rest of its spec
        as stored (not with the engine's defaults filled in: Swarm would take that for a new
        spec and replace the running task)."""
        with self._engine(not_found=errors.ContainerNotFoundError(f"The service {service_id!r} vanished.")):
            current = self._api().inspect_service(service_id)
            stored = current["Spec"]
            template = stored.get("TaskTemplate") or {}
            self._api().update_service(
                current["ID"], current["Version"]["Index"], name=stored["Name"], labels=stored.get("Labels") or {},
                task_template=task_template(template) if task_template else template,
                mode={"Replicated": {"Replicas": replicas}} if replicas is not None else stored.get("Mode"),
                endpoint_spec=stored.get("EndpointSpec"), update_config=stored.get("UpdateConfig"),
                rollback_config=stored.get("RollbackConfig"))

    # ------------------------------------------------------------------ lifecycle

    def _scale(self, service: Mapping[str, Any], count: int) -> None:
        self._update(service["ID"], replicas=count)

    def start_container(self, container: str, **kwargs: Any) -> None:
        """Scale to one replica and wait (``start_timeout``) until the task runs."""
        service = self._inspect_service(container)
        tasks = self._all_tasks(service["ID"], finished=True)
        earlier = {task["ID"] for task in tasks}
        if spec.replicas(service) == 0:
            self._scale(service, 1)
        elif spec.running_task(tasks, service["ID"]) is None:
            # its one task finished (the process exited): ask Swarm for a new one
            self._update(service["ID"], task_template=lambda t: {**t, "ForceUpdate": int(t.get("ForceUpdate") or 0) + 1})
        self._wait_running(container, "started", earlier)

    def stop_container(self, container: str, **kwargs: Any) -> None:
        """Scale to zero: the task gets ``stop_timeout`` seconds after SIGTERM, then SIGKILL."""
        service = self._inspect_service(container)
        if spec.replicas(service) != 0:
            self._scale(service, 0)
        self._wait(lambda: not any((t.get("Status") or {}).get("State") in ("running", "starting", "preparing")
                                   for t in self._all_tasks(service["ID"])),
                   self.stop_timeout + 30, f"the container {container!r} to stop")

    def restart_container(self, container: str, **kwargs: Any) -> None:
        self.stop_container(container)
        self.start_container(container)

    def delete_container(self, container: str, **kwargs: Any) -> None:
        """Remove the service (in any state) and wait until its task is gone; volumes are kept."""
        service = self._inspect_service(container)
        with self._engine(not_found=errors.ContainerNotFoundError(f"The container {container!r} vanished.")):
            self._api().remove_service(service["ID"])
        self._wait(lambda: not self._all_tasks(service["ID"]), self.stop_timeout + 30,
                   f"the tasks of {container!r} to go")
        logger.info("Deleted container %s (its swarm service)", container)

    def _all_tasks(self, service_id: str, finished: bool = False) -> list[dict[str, Any]]:
        """The service's tasks that still are (or may become) containers; with ``finished``
        every task the swarm remembers."""
        try:
            with self._engine(not_found=errors.ContainerNotFoundError()):
                tasks = self._api().tasks(filters={"service": service_id})
        except errors.ContainerNotFoundError:
            return []  # the service is gone, and its tasks with it
        return [t for t in tasks if finished or (t.get("Status") or {}).get("State") not in
                ("complete", "shutdown", "failed", "rejected", "orphaned", "remove")]

    def _wait(self, done: Callable[[], bool], seconds: float, what: str) -> None:
        deadline = time.monotonic() + seconds
        while not done():
            if time.monotonic() > deadline:
                raise errors.BackendTimeoutError(f"The swarm did not get {what} within {seconds:g} s.")
            time.sleep(0.2)

    def _wait_running(self, container: str, done: str, earlier: set[str] | frozenset[str] = frozenset()) -> dict[str, Any]:
        """Poll until the service's task runs; a task (other than the ``earlier`` ones) that
        failed is reported with the engine's words (a taken host port as such)."""
        deadline = time.monotonic() + self.start_timeout
        while True:
            service = self._inspect_service(container)
            tasks = self._all_tasks(service["ID"], finished=True)
            task = spec.running_task(tasks, service["ID"])
            if task is not None and (task.get("Status") or {}).get("State") == "running":
                return service
            if any((t.get("Status") or {}).get("State") == "complete" and t["ID"] not in earlier for t in tasks):
                return service  # it ran, and its process has exited already
            failed = [t for t in tasks if (t.get("Status") or {}).get("State") in ("failed", "rejected")
                      and t["ID"] not in earlier]
            if failed:
                raise self._task_failure(container, failed[0], done)
            if time.monotonic() > deadline:
                state = spec.service_record(service, tasks, self._nodes())["state"]  # type: ignore[typeddict-item]
                raise errors.BackendTimeoutError(
                    f"The container {container!r} was not running within start_timeout ({self.start_timeout:g} s): "
                    f"{state}.")
            time.sleep(0.2)

    def _task_failure(self, container: str, task: Mapping[str, Any], done: str) -> errors.BackendError:
        status = task.get("Status") or {}
        detail = status.get("Err") or status.get("Message") or status.get("State")
        lowered = str(detail).lower()
        if "address already in use" in lowered or "port is already allocated" in lowered:
            return errors.InvalidArgumentError(
                f"A host port of {container!r} is already in use on its node ({detail}); pick another port or "
                "use external: null.")
        if "no such image" in lowered or "not found" in lowered and "image" in lowered:
            return errors.ContainerImageNotFoundError(f"The node could not get the image of {container!r}: {detail}")
        return errors.ContainerBackendError(f"The container {container!r} could not be {done}: its task {detail}.")

    def _remove_service_quietly(self, pk: str) -> None:
        try:
            with self._engine():
                self._api().remove_service(pk)
        except errors.BackendError as exc:
            logger.error("Could not remove the half-created service %s: %s", pk, exc)
