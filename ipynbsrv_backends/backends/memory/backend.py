"""The :class:`Memory` backend: options, the base contract, create and lifecycle."""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
from collections.abc import Mapping
from typing import Any, ClassVar

from ... import errors
from ...contract import (
    BACKEND_STATUS_OK,
    ContainerRecord,
    NodeStatusContainerBackend,
    PortRecord,
    SnapshotTransferContainerBackend,
    SuspendableContainerBackend,
    VolumeRecord,
)
from ...validation import (
    parse_since,
    resolve_bind_source,
    validate_cmd,
    validate_cpu_limit,
    validate_create_arguments,
    validate_mem_limit,
    validate_pids_limit,
    validate_pk,
    validate_tail,
)
from ..options import Options
from . import store
from .events import MemoryEvents
from .images import MemoryImages
from .options import MEMORY_OPTIONS
from .shell import Mount, Shell
from .store import LABEL, Container, Volume, moment, now

__all__ = ["Memory"]

logger = logging.getLogger(__name__)


class Memory(MemoryImages, MemoryEvents, SnapshotTransferContainerBackend, SuspendableContainerBackend,
             NodeStatusContainerBackend):
    """Containers kept in this process's memory (see the module's docstring)."""

    #: The declaration of every constructor option.
    OPTION_TABLE: ClassVar[Options] = MEMORY_OPTIONS
    OPTIONS: ClassVar[dict[str, Any]] = MEMORY_OPTIONS.defaults()
    SECRET_OPTIONS: ClassVar[frozenset[str]] = MEMORY_OPTIONS.secrets()

    def __init__(self, **options: Any) -> None:
        config = self.validate_options(**options)
        self.host_name: str = config["host"]
        self.instance: str = config["instance"]
        self.name_prefix: str = config["name_prefix"]
        self.base_images: tuple[str, ...] = config["images"]
        self.allowed_volume_roots: tuple[str, ...] = config["allowed_volume_roots"]
        self.registry: str | None = config["registry"]
        self.port_range: tuple[int, int] = config["port_range"]
        self.stop_timeout: int = config["stop_timeout"]
        self.host = store.host(self.host_name)

    def __repr__(self) -> str:
        return f"Memory(host={self.host_name!r}, instance={self.instance!r})"

    @classmethod
    def validate_options(cls, **config: Any) -> dict[str, Any]:
        """Check a constructor configuration; returns it normalised with the defaults filled
        in, or raises ``InvalidArgumentError`` naming the first bad option."""
        return MEMORY_OPTIONS.validate(config)

    @classmethod
    def reset(cls, host: str | None = None) -> None:
        """Empty the simulated host ``host`` (every host and registry when ``None``): a
        test's clean slate. Backends on it stay usable."""
        store.reset(host)

    def container_exists(self, container: str, **kwargs: Any) -> bool:
        with self.host.lock:
            try:
                self._container(container)
            except errors.ContainerNotFoundError:
                return False
        return True

    def container_image_exists(self, image: str, **kwargs: Any) -> bool:
        validate_pk(image, "image")
        with self.host.lock:
            return image in self.base_images or image in self.host.images

    def container_is_running(self, container: str, **kwargs: Any) -> bool:
        with self.host.lock:
            return self._container(container).status in ("running", "suspended")

    def container_is_suspended(self, container: str, **kwargs: Any) -> bool:
        with self.host.lock:
            return self._container(container).status == "suspended"

    def get_container(self, container: str, **kwargs: Any) -> ContainerRecord:
        with self.host.lock:
            return self._record(self._container(container))

    def get_containers(self, only_running: bool = False, **kwargs: Any) -> list[ContainerRecord]:
        if not isinstance(only_running, bool):
            raise errors.InvalidArgumentError("only_running must be true or false.")
        with self.host.lock:
            items = [c for c in self.host.containers.values() if self._ours(c.labels, "container")
                     and (not only_running or c.status != "stopped")]
            return sorted((self._record(c) for c in items), key=lambda record: record["pk"])

    def get_status(self, **kwargs: Any) -> int:
        return BACKEND_STATUS_OK

    def get_node_status(self, **kwargs: Any) -> dict[str, Any]:
        """The shape of Docker's answer: this backend's container counts."""
        with self.host.lock:
            items = [c for c in self.host.containers.values() if self._ours(c.labels, "container")]
        running = sum(1 for c in items if c.status != "stopped")
        return {
            "backend": {"status": BACKEND_STATUS_OK, "capabilities": ["suspend", "snapshot"],
                        "engine_version": "memory", "registry": self.registry},
            "resources": {"cpu_count": os.cpu_count(), "memory_total": None,
                          "containers": {"running": running, "total": len(items)}},
        }

    # ------------------------------------------------------------------ create

    def _limits(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        return {"mem_limit": validate_mem_limit(kwargs.get("mem_limit")),
                "cpu_limit": validate_cpu_limit(kwargs.get("cpu_limit")),
                "pids_limit": validate_pids_limit(kwargs.get("pids_limit"))}

    def _volumes(self, volumes: list[VolumeRecord], username: str) -> tuple[list[VolumeRecord], list[str]]:
        """Resolved records, and the named volumes still to be made."""
        prepared: list[VolumeRecord] = []
        missing: list[str] = []
        for volume in volumes:
            source = volume["source"]
            if source.startswith("/"):
                source = resolve_bind_source(source, self.allowed_volume_roots)
            elif source in self.host.volumes:
                labels = self.host.volumes[source].labels
                if labels.get(LABEL + "instance") != self.instance or labels.get(LABEL + "owner") != username:
                    raise errors.InvalidArgumentError(
                        f"The volume {source!r} exists and does not belong to {username!r} on this backend; pick another name."
                    )
            elif source not in missing:
                missing.append(source)
            prepared.append({"source": source, "target": volume["target"], "mode": volume.get("mode", "rw")})
        return prepared, missing

    def _ports(self, ports: list[PortRecord]) -> list[PortRecord]:
        """Every port with its host port: a free one from port_range where none is given."""
        kept: dict[int, str] = {p["external"]: c.pk for c in self.host.containers.values() for p in c.ports
                                if p["external"] is not None}
        for port in ports:
            if port["external"] in kept:
                raise errors.InvalidArgumentError(
                    f"The host port {port['external']} is kept by the container {kept[port['external']]!r} (running "
                    "or not): pick another port or use external: null."
                )
        avoid = set(kept) | {p["external"] for p in ports if p["external"] is not None}
        low, high = self.port_range
        fixed: list[PortRecord] = []
        for port in ports:
            external = port["external"]
            if external is None:
                free = [n for n in range(low, high + 1) if n not in avoid]
                if not free:
                    raise errors.BackendUnavailableError(f"No free host port left in port_range {low}-{high}.")
                external = free[secrets.randbelow(len(free))] if len(free) < 64 else self._draw(avoid)
                avoid.add(external)
            fixed.append({"address": port["address"], "external": external, "internal": port["internal"]})
        return fixed

    def _draw(self, avoid: set[int]) -> int:
        low, high = self.port_range
        while True:
            port = low + secrets.randbelow(high - low + 1)
            if port not in avoid:
                return port

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
        pk = self.engine_name(uid, name)
        checked = validate_create_arguments(username, ports, volumes, cmd, base_url, image, clone_of, kwargs.get("env"))
        username, port_specs, volume_specs, argv, env = checked
        limits = self._limits(kwargs)
        with self.host.lock:
            source = self._container(clone_of) if clone_of is not None else None
            if pk in self.host.containers:
                raise errors.ContainerAlreadyExistsError(f"{username!r} already has a container named {name!r}.")
            volume_specs, missing = self._volumes(volume_specs, username)
            if image is not None and not self.container_image_exists(image):
                raise errors.ContainerImageNotFoundError(f"The image {image!r} is not on this host.")
            fixed = self._ports(port_specs)
            for volume in missing:
                self.host.volumes[volume] = Volume(volume, {LABEL + "instance": self.instance,
                                                            LABEL + "owner": username, LABEL + "kind": "volume"})
            labels = {LABEL + "instance": self.instance, LABEL + "kind": "container", LABEL + "owner": username,
                      LABEL + "uid": str(uid), LABEL + "name": name, LABEL + "created": now()}
            if source is not None:
                labels[LABEL + "clone-of"] = source.pk
                files, run_image = dict(source.files), source.image
            else:
                assert image is not None
                made = self.host.images.get(image)
                files, run_image = dict(made.files) if made else {}, image
            environment = {**env, "OWNER": username, "OWNER_UID": str(uid),
                           "BASE_URL": base_url if base_url is not None else "/"}
            self.host.containers[pk] = Container(pk, labels, run_image, environment, fixed, volume_specs,
                                                 limits, argv, files)
            self._emit(self.host.containers[pk], "start")
            logger.info("Created container %s for %s (in memory)", pk, username)
            return self._record(self.host.containers[pk])

    # ------------------------------------------------------------------ lifecycle

    def start_container(self, container: str, **kwargs: Any) -> None:
        with self.host.lock:
            item = self._container(container)
            if item.status == "suspended":
                raise errors.IllegalContainerStateError(f"The container {container!r} is suspended: resume it instead.")
            if item.status == "stopped":
                item.status, item.started_at = "running", moment()
                self._emit(item, "start")

    def stop_container(self, container: str, **kwargs: Any) -> None:
        with self.host.lock:
            item = self._container(container)
            if item.status != "stopped":
                item.status, item.exit_code = "stopped", 0
                self._emit(item, "die", exit_code=0)

    def suspend_container(self, container: str, **kwargs: Any) -> None:
        with self.host.lock:
            item = self._container(container)
            if item.status == "stopped":
                raise errors.IllegalContainerStateError(
                    f"The container {container!r} is stopped: only a running one can be suspended.")
            if item.status != "suspended":
                item.status = "suspended"
                self._emit(item, "pause")

    def resume_container(self, container: str, **kwargs: Any) -> None:
        with self.host.lock:
            item = self._container(container)
            if item.status == "stopped":
                raise errors.IllegalContainerStateError(
                    f"The container {container!r} is stopped, not suspended: start it instead.")
            if item.status != "running":
                item.status = "running"
                self._emit(item, "unpause")

    def delete_container(self, container: str, **kwargs: Any) -> None:
        """Remove the container (in any state) and its snapshots; volumes are kept."""
        with self.host.lock:
            item = self._container(container)
            del self.host.containers[item.pk]
            self._emit(item, "destroy")
            for snapshot in self._listed("snapshot", container=item.pk):
                del self.host.images[snapshot.ref]

    def _shell(self, item: Container) -> Shell:
        mounts = []
        for volume in item.volumes:
            named = self.host.volumes.get(volume["source"])
            mounts.append(Mount(volume["target"], volume.get("mode") == "ro",
                                files=named.files if named else None, host=None if named else volume["source"]))
        return Shell(item.files, mounts, dict(item.env))

    def exec_in_container(self, container: str, cmd: str | list[str], **kwargs: Any) -> str:
        """Run ``cmd`` in :mod:`.shell`'s small shell."""
        argv = validate_cmd(cmd, allow_none=False)
        assert argv is not None
        with self.host.lock:
            item = self._container(container)
            if item.status != "running":
                raise errors.IllegalContainerStateError(f"Cannot run a command in {container!r}: it is {item.status}.")
            return self._shell(item).run(argv)

    def write_logs(self, container: str, *lines: str) -> None:
        """Append ``lines`` to what the container printed (there is no process to print them)."""
        with self.host.lock:
            item = self._container(container)
            item.logs.extend((dt.datetime.now(dt.UTC), line) for line in lines)

    def get_container_logs(self, container: str, tail: int | None = None, since: Any = None, **kwargs: Any) -> list[str]:
        tail = validate_tail(tail)
        moment = parse_since(since)
        with self.host.lock:
            lines = [line for when, line in self._container(container).logs if moment is None or when >= moment]
        return lines[len(lines) - tail:] if tail is not None and tail < len(lines) else ([] if tail == 0 else lines)
