"""An in-memory backend, for development and tests: no engine, no network.

Containers, images, snapshots and named volumes live in this process's memory, on a
simulated *host* shared by every :class:`Memory` with the same ``host`` option (as backends
of several instances share one engine): each backend sees only its own ``instance``'s
containers, host ports are kept across instances, and names are taken host-wide. Nothing
runs in a container: its status is bookkeeping, its files are a dict, ``exec_in_container``
answers a handful of shell commands (:mod:`.memory_shell`), its logs are what
:meth:`Memory.write_logs` put there, and a published port is reserved, never bound.

It keeps the contract as :class:`~ipynbsrv_backends.backends.Docker` does: the same checks
(shared :mod:`~ipynbsrv_backends.validation`), the same records and the same ``errors.*``
for the same faults. With a ``registry`` name, snapshots travel between backends of this
process through an in-memory registry of that name. ``Memory.reset()`` forgets everything.
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import os
import re
import secrets
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .. import errors
from ..contract import (
    BACKEND_STATUS_OK,
    ContainerRecord,
    ImageRecord,
    PortRecord,
    SnapshotableContainerBackend,
    SnapshotRecord,
    SuspendableContainerBackend,
    VolumeRecord,
)
from ..validation import (
    NAME_RE,
    iso_utc,
    parse_since,
    validate_cmd,
    validate_cpu_limit,
    validate_env,
    validate_mem_limit,
    validate_name,
    validate_pids_limit,
    validate_pk,
    validate_ports,
    validate_tail,
    validate_uid,
    validate_username,
    validate_volumes,
)
from .memory_shell import Mount, Shell

__all__ = ["Memory"]

logger = logging.getLogger(__name__)

LABEL = "org.ipynbsrv."
#: The size an image or snapshot reports besides its files (a base image's whole size).
BASE_SIZE = 1_000_000
TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
CREATE_OPTIONS = ("env", "mem_limit", "cpu_limit", "pids_limit")
#: Options that would widen a real container's privileges: refused by name, as Docker does.
PRIVILEGED_OPTIONS = frozenset({
    "privileged", "cap_add", "cap_drop", "devices", "network_mode", "network", "pid_mode", "ipc_mode",
    "uts_mode", "userns_mode", "security_opt", "sysctls", "volumes_from", "user", "binds", "mounts",
    "tmpfs", "runtime", "host_config", "labels", "entrypoint",
})


def _now() -> str:
    return iso_utc(dt.datetime.now(dt.UTC))


def _moment() -> str:
    """Now, to the microsecond (when a container last started)."""
    return dt.datetime.now(dt.UTC).isoformat()


@dataclass
class Container:
    """One container on a simulated host (``labels`` as the engine would keep them)."""

    pk: str
    labels: dict[str, str]
    image: str
    env: dict[str, str]
    ports: list[PortRecord]
    volumes: list[VolumeRecord]
    limits: dict[str, Any]
    cmd: list[str] | None = None
    files: dict[str, str] = field(default_factory=dict)
    status: str = "running"
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started_at: str = field(default_factory=_moment)
    exit_code: int = 0
    logs: list[tuple[dt.datetime, str]] = field(default_factory=list)


@dataclass
class Image:
    """An image, snapshot or base image: a copy of a container's files."""

    ref: str
    labels: dict[str, str]
    files: dict[str, str] = field(default_factory=dict)
    created: str = field(default_factory=_now)

    @property
    def size(self) -> int:
        return BASE_SIZE + sum(len(text) for text in self.files.values())


@dataclass
class Volume:
    name: str
    labels: dict[str, str]
    files: dict[str, str] = field(default_factory=dict)


@dataclass
class Host:
    """What one simulated engine keeps; every access holds ``lock``."""

    lock: threading.RLock = field(default_factory=threading.RLock)
    containers: dict[str, Container] = field(default_factory=dict)
    images: dict[str, Image] = field(default_factory=dict)
    volumes: dict[str, Volume] = field(default_factory=dict)


_HOSTS: dict[str, Host] = {}
_REGISTRIES: dict[str, dict[str, Image]] = {}
_GLOBAL = threading.Lock()


class Memory(SnapshotableContainerBackend, SuspendableContainerBackend):
    """Containers kept in this process's memory (see the module's docstring)."""

    OPTIONS: ClassVar[dict[str, Any]] = {
        "host": "default",
        "instance": "default",
        "name_prefix": "ipynbsrv",
        "images": ("ipynbsrv/notebook:latest",),
        "allowed_volume_roots": (),
        "registry": None,
        "port_range": (20000, 32767),
        "stop_timeout": 10,
    }
    SECRET_OPTIONS: ClassVar[frozenset[str]] = frozenset()

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
        with _GLOBAL:
            self.host = _HOSTS.setdefault(self.host_name, Host())

    def __repr__(self) -> str:
        return f"Memory(host={self.host_name!r}, instance={self.instance!r})"

    @classmethod
    def validate_options(cls, **config: Any) -> dict[str, Any]:
        unknown = sorted(set(config) - set(cls.OPTIONS))
        if unknown:
            raise errors.InvalidArgumentError(
                f"Unknown Memory backend option(s): {', '.join(unknown)}. Known options: {', '.join(sorted(cls.OPTIONS))}."
            )
        result = {**cls.OPTIONS, **config}
        for key in ("host", "instance", "name_prefix"):
            if not isinstance(result[key], str) or not NAME_RE.fullmatch(result[key].lower()):
                raise errors.InvalidArgumentError(f"Invalid {key} {result[key]!r}: use letters, digits, '-', '_' and '.'.")
        if not isinstance(result["images"], (list, tuple)) or not all(isinstance(i, str) for i in result["images"]):
            raise errors.InvalidArgumentError("images must be a list of image references such as 'ipynbsrv/notebook:latest'.")
        for ref in result["images"]:
            validate_pk(ref, "image")
        roots = result["allowed_volume_roots"]
        if not isinstance(roots, (list, tuple)) or not all(isinstance(r, str) and r.startswith("/") for r in roots):
            raise errors.InvalidArgumentError("allowed_volume_roots must be a list of absolute host paths.")
        if result["registry"] is not None and (not isinstance(result["registry"], str) or not result["registry"]):
            raise errors.InvalidArgumentError("registry must be a name such as 'registry.local:5000', or null.")
        low_high = result["port_range"]
        if (not isinstance(low_high, (list, tuple)) or len(low_high) != 2
                or not all(isinstance(p, int) and 1 <= p <= 65535 for p in low_high) or low_high[0] > low_high[1]):
            raise errors.InvalidArgumentError("port_range must be [low, high] with 1 <= low <= high <= 65535.")
        if isinstance(result["stop_timeout"], bool) or not isinstance(result["stop_timeout"], int) or result["stop_timeout"] < 0:
            raise errors.InvalidArgumentError("stop_timeout must be a whole number of seconds from 0 up.")
        result.update(images=tuple(result["images"]), port_range=tuple(low_high),
                      allowed_volume_roots=tuple(os.path.realpath(r) for r in roots))
        return result

    @classmethod
    def reset(cls, host: str | None = None) -> None:
        """Empty the simulated host ``host`` (every host and registry when ``None``): a
        test's clean slate. Backends on it stay usable."""
        with _GLOBAL:
            hosts = [_HOSTS[host]] if host in _HOSTS else [] if host else list(_HOSTS.values())
            if host is None:
                _REGISTRIES.clear()
        for item in hosts:
            with item.lock:
                item.containers.clear()
                item.images.clear()
                item.volumes.clear()

    # ------------------------------------------------------------------ lookups

    def _no_options(self, kwargs: Mapping[str, Any], allowed: tuple[str, ...] = ()) -> None:
        unknown = sorted(set(kwargs) - set(allowed))
        forbidden = [key for key in unknown if key in PRIVILEGED_OPTIONS]
        if forbidden:
            raise errors.InvalidArgumentError(
                f"Option(s) {', '.join(forbidden)} are not allowed: they would widen what a container may do on the host."
            )
        if unknown:
            accepted = f"; this call accepts {', '.join(allowed)}" if allowed else "; this call takes no options"
            raise errors.InvalidArgumentError(f"Unknown option(s) {', '.join(unknown)}{accepted}.")

    def _ours(self, labels: Mapping[str, str], kind: str) -> bool:
        return labels.get(LABEL + "instance") == self.instance and labels.get(LABEL + "kind") == kind

    def _container(self, container: str) -> Container:
        validate_pk(container)
        found = self.host.containers.get(container)
        if found is None or not self._ours(found.labels, "container"):
            raise errors.ContainerNotFoundError(f"No container {container!r} is managed by this backend.")
        return found

    def _image(self, image: str, kind: str, missing: errors.BackendError) -> Image:
        validate_pk(image, "snapshot" if kind == "snapshot" else "image")
        found = self.host.images.get(image)
        if found is None or not self._ours(found.labels, kind):
            raise missing
        return found

    def _snapshot(self, snapshot: str) -> Image:
        return self._image(snapshot, "snapshot",
                           errors.ContainerSnapshotNotFoundError(f"No snapshot {snapshot!r} is kept by this backend."))

    def _listed(self, kind: str, **labels: str) -> list[Image]:
        found = [i for i in self.host.images.values() if self._ours(i.labels, kind)
                 and all(i.labels.get(LABEL + key) == value for key, value in labels.items())]
        return sorted(found, key=lambda image: (image.created, image.ref))

    def engine_name(self, uid: int, name: str) -> str:
        """The pk of a user's container, as Docker names it."""
        return f"{self.name_prefix}-u{validate_uid(uid)}-{validate_name(name)}"

    # ------------------------------------------------------------------ records

    def _record(self, item: Container) -> ContainerRecord:
        labels = item.labels
        return {  # type: ignore[typeddict-unknown-key]
            "pk": item.pk, "name": labels[LABEL + "name"], "status": item.status,  # type: ignore[typeddict-item]
            "image": item.image, "owner": labels[LABEL + "owner"], "uid": int(labels[LABEL + "uid"]),
            "created": labels[LABEL + "created"], "ports": copy.deepcopy(item.ports),
            "volumes": copy.deepcopy(item.volumes), "clone_of": labels.get(LABEL + "clone-of") or None,
        }

    def _image_record(self, image: Image) -> ImageRecord:
        managed = self._ours(image.labels, "image")
        return {  # type: ignore[typeddict-unknown-key]
            "pk": image.ref, "name": image.labels.get(LABEL + "image-name", image.ref) if managed else image.ref,
            "created": image.created, "size": image.size,
            "owner": image.labels.get(LABEL + "owner") if managed else None,
            "container": image.labels.get(LABEL + "container") if managed else None, "managed": managed,
            "registry": self.registry if self.registry and image.ref.startswith(self.registry + "/") else None,
        }

    def _snapshot_record(self, image: Image) -> SnapshotRecord:
        return {  # type: ignore[typeddict-unknown-key]
            "pk": image.ref, "name": image.labels[LABEL + "snapshot"], "container": image.labels[LABEL + "container"],
            "created": image.created, "size": image.size,
        }

    # ------------------------------------------------------------------ the base contract

    def container_exists(self, container: str, **kwargs: Any) -> bool:
        self._no_options(kwargs)
        with self.host.lock:
            try:
                self._container(container)
            except errors.ContainerNotFoundError:
                return False
        return True

    def container_image_exists(self, image: str, **kwargs: Any) -> bool:
        self._no_options(kwargs)
        validate_pk(image, "image")
        with self.host.lock:
            return image in self.base_images or image in self.host.images

    def container_is_running(self, container: str, **kwargs: Any) -> bool:
        self._no_options(kwargs)
        with self.host.lock:
            return self._container(container).status in ("running", "suspended")

    def container_is_suspended(self, container: str, **kwargs: Any) -> bool:
        self._no_options(kwargs)
        with self.host.lock:
            return self._container(container).status == "suspended"

    def get_container(self, container: str, **kwargs: Any) -> ContainerRecord:
        self._no_options(kwargs)
        with self.host.lock:
            return self._record(self._container(container))

    def get_containers(self, only_running: bool = False, **kwargs: Any) -> list[ContainerRecord]:
        self._no_options(kwargs)
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
        self._no_options(kwargs)
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

    def _bind_source(self, source: str) -> str:
        if not self.allowed_volume_roots:
            raise errors.InvalidArgumentError(
                f"Host directory {source!r} cannot be mounted: this backend allows no bind mounts "
                "(set allowed_volume_roots, or use a named volume)."
            )
        real = os.path.realpath(source)
        if not any(real == root or real.startswith(root.rstrip("/") + "/") for root in self.allowed_volume_roots):
            raise errors.InvalidArgumentError(
                f"Host path {source!r} (resolved to {real!r}) is outside the allowed volume roots "
                f"({', '.join(self.allowed_volume_roots)})."
            )
        if not os.path.exists(real):
            raise errors.InvalidArgumentError(f"Host path {source!r} does not exist: create it first.")
        return real

    def _volumes(self, volumes: list[VolumeRecord], username: str) -> tuple[list[VolumeRecord], list[str]]:
        """Resolved records, and the named volumes still to be made."""
        prepared: list[VolumeRecord] = []
        missing: list[str] = []
        for volume in volumes:
            source = volume["source"]
            if source.startswith("/"):
                source = self._bind_source(source)
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
        self._no_options(kwargs, CREATE_OPTIONS)
        username = validate_username(username)
        pk = self.engine_name(uid, name)
        port_specs, volume_specs, argv = validate_ports(ports), validate_volumes(volumes), validate_cmd(cmd)
        if base_url is not None and (not isinstance(base_url, str) or "\x00" in base_url or len(base_url) > 2048):
            raise errors.InvalidArgumentError("base_url must be a string such as '/user/alice/notebook/'.")
        if (image is None) == (clone_of is None):
            raise errors.InvalidArgumentError("Give exactly one of image and clone_of.")
        env = validate_env(kwargs.get("env"))
        limits = self._limits(kwargs)
        if image is not None:
            validate_pk(image, "image")
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
                      LABEL + "uid": str(uid), LABEL + "name": name, LABEL + "created": _now()}
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
            logger.info("Created container %s for %s (in memory)", pk, username)
            return self._record(self.host.containers[pk])

    # ------------------------------------------------------------------ lifecycle

    def start_container(self, container: str, **kwargs: Any) -> None:
        self._no_options(kwargs)
        with self.host.lock:
            item = self._container(container)
            if item.status == "suspended":
                raise errors.IllegalContainerStateError(f"The container {container!r} is suspended: resume it instead.")
            if item.status == "stopped":
                item.status, item.started_at = "running", _moment()

    def stop_container(self, container: str, **kwargs: Any) -> None:
        self._no_options(kwargs)
        with self.host.lock:
            item = self._container(container)
            if item.status != "stopped":
                item.status, item.exit_code = "stopped", 0

    def suspend_container(self, container: str, **kwargs: Any) -> None:
        self._no_options(kwargs)
        with self.host.lock:
            item = self._container(container)
            if item.status == "stopped":
                raise errors.IllegalContainerStateError(
                    f"The container {container!r} is stopped: only a running one can be suspended.")
            item.status = "suspended"

    def resume_container(self, container: str, **kwargs: Any) -> None:
        self._no_options(kwargs)
        with self.host.lock:
            item = self._container(container)
            if item.status == "stopped":
                raise errors.IllegalContainerStateError(
                    f"The container {container!r} is stopped, not suspended: start it instead.")
            item.status = "running"

    def delete_container(self, container: str, **kwargs: Any) -> None:
        """Remove the container (in any state) and its snapshots; volumes are kept."""
        self._no_options(kwargs)
        with self.host.lock:
            item = self._container(container)
            del self.host.containers[item.pk]
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
        """Run ``cmd`` in :mod:`.memory_shell`'s small shell."""
        self._no_options(kwargs)
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
        self._no_options(kwargs)
        tail = validate_tail(tail)
        moment = parse_since(since)
        with self.host.lock:
            lines = [line for when, line in self._container(container).logs if moment is None or when >= moment]
        return lines[len(lines) - tail:] if tail is not None and tail < len(lines) else ([] if tail == 0 else lines)

    # ------------------------------------------------------------------ images

    def _commit(self, item: Container, ref: str, labels: dict[str, str]) -> Image:
        if ref in self.host.images:
            raise errors.ContainerAlreadyExistsError(f"An image named {ref!r} already exists.")
        image = Image(ref, {LABEL + "instance": self.instance, LABEL + "container": item.pk, **labels}, dict(item.files))
        self.host.images[ref] = image
        return image

    def create_container_image(self, container: str, name: str, **kwargs: Any) -> ImageRecord:
        self._no_options(kwargs)
        with self.host.lock:
            item = self._container(container)
            repo, _colon, tag = name.partition(":") if isinstance(name, str) else ("", "", "")
            if not isinstance(name, str) or len(name) > 128 or not NAME_RE.fullmatch(repo) or (_colon and not TAG_RE.fullmatch(tag)):
                raise errors.InvalidArgumentError(
                    f"Invalid image name {str(name)[:80]!r}: use a lower-case name with an optional tag, such as "
                    "'my-stack' or 'my-stack:v2'."
                )
            tag = tag or "latest"
            base = f"{self.registry}/" if self.registry else ""
            ref = validate_pk(f"{base}{self.name_prefix}-u{item.labels[LABEL + 'uid']}/{repo}:{tag}", "image")
            image = self._commit(item, ref, {LABEL + "kind": "image", LABEL + "image-name": f"{repo}:{tag}",
                                             LABEL + "owner": item.labels[LABEL + "owner"]})
            if self.registry:
                _REGISTRIES.setdefault(self.registry, {})[ref] = image
            return self._image_record(image)

    def get_container_image(self, image: str, **kwargs: Any) -> ImageRecord:
        self._no_options(kwargs)
        validate_pk(image, "image")
        with self.host.lock:
            if image in self.host.images:
                return self._image_record(self.host.images[image])
            if image in self.base_images:
                return self._image_record(Image(image, {}, created="1970-01-01T00:00:00Z"))
        raise errors.ContainerImageNotFoundError(f"No image {image!r} on this host.")

    def get_container_images(self, **kwargs: Any) -> list[ImageRecord]:
        self._no_options(kwargs)
        with self.host.lock:
            return [self._image_record(image) for image in self._listed("image")]

    def delete_container_image(self, image: str, **kwargs: Any) -> None:
        """Remove an image this backend committed (and from its registry); never a base image."""
        self._no_options(kwargs)
        missing = errors.ContainerImageNotFoundError(f"No image {image!r} was made by this backend.")
        with self.host.lock:
            self._image(image, "image", missing)
            del self.host.images[image]
            if self.registry:
                _REGISTRIES.get(self.registry, {}).pop(image, None)

    # ------------------------------------------------------------------ snapshots

    def container_snapshot_exists(self, snapshot: str, **kwargs: Any) -> bool:
        self._no_options(kwargs)
        with self.host.lock:
            try:
                self._snapshot(snapshot)
            except errors.ContainerSnapshotNotFoundError:
                return False
        return True

    def create_container_snapshot(self, container: str, name: str, **kwargs: Any) -> SnapshotRecord:
        self._no_options(kwargs)
        with self.host.lock:
            item = self._container(container)
            validate_name(name, "snapshot name")
            ref = f"{self.name_prefix}-snapshots/{item.pk}:{name}"
            if ref in self.host.images:
                raise errors.ContainerAlreadyExistsError(f"The container {item.pk!r} already has a snapshot named {name!r}.")
            return self._snapshot_record(self._commit(item, ref, {LABEL + "kind": "snapshot", LABEL + "snapshot": name}))

    def delete_container_snapshot(self, snapshot: str, **kwargs: Any) -> None:
        self._no_options(kwargs)
        with self.host.lock:
            del self.host.images[self._snapshot(snapshot).ref]

    def get_container_snapshot(self, snapshot: str, **kwargs: Any) -> SnapshotRecord:
        self._no_options(kwargs)
        with self.host.lock:
            return self._snapshot_record(self._snapshot(snapshot))

    def get_container_snapshots(self, **kwargs: Any) -> list[SnapshotRecord]:
        self._no_options(kwargs)
        with self.host.lock:
            return [self._snapshot_record(image) for image in self._listed("snapshot")]

    def get_containers_snapshots(self, container: str, **kwargs: Any) -> list[SnapshotRecord]:
        self._no_options(kwargs)
        with self.host.lock:
            pk = self._container(container).pk
            return [self._snapshot_record(image) for image in self._listed("snapshot", container=pk)]

    def restore_container_snapshot(self, container: str, snapshot: str, **kwargs: Any) -> ContainerRecord:
        """The snapshot's files back in place; pk, ports, volumes, environment and limits kept.
        Option ``env``: variables to set or replace in the kept environment."""
        self._no_options(kwargs, ("env",))
        replaced = validate_env(kwargs.get("env"))
        with self.host.lock:
            item = self._container(container)
            image = self._snapshot(snapshot)
            if image.labels.get(LABEL + "container") != item.pk:
                raise errors.ContainerSnapshotNotFoundError(f"{snapshot!r} is not a snapshot of the container {item.pk!r}.")
            item.files, item.id = dict(image.files), uuid.uuid4().hex
            item.env.update(replaced)
            if item.status != "stopped":
                item.status, item.started_at = "running", _moment()
            return self._record(item)

    # ------------------------------------------------------------------ between backends

    def _needs_registry(self, what: str) -> str:
        if not self.registry:
            raise errors.CapabilityNotSupportedError(
                f"{what} needs a registry: set the Memory backend's registry option (the same name on both sides)."
            )
        return self.registry

    def export_container_snapshot(self, snapshot: str, **kwargs: Any) -> ImageRecord:
        """Put a copy of the snapshot into the in-memory registry, as an image."""
        self._no_options(kwargs)
        with self.host.lock:
            source = self._snapshot(snapshot)
            registry = self._needs_registry("Exporting a snapshot")
            item_uid = self.host.containers[source.labels[LABEL + "container"]].labels[LABEL + "uid"]
            name = f"transfer-{source.labels[LABEL + 'snapshot']}-{secrets.token_hex(4)}"
            ref = f"{registry}/{self.name_prefix}-u{item_uid}/{name}:latest"
            item = self.host.containers[source.labels[LABEL + "container"]]
            image = Image(ref, {LABEL + "instance": self.instance, LABEL + "kind": "image", LABEL + "container": item.pk,
                                LABEL + "owner": item.labels[LABEL + "owner"], LABEL + "image-name": name},
                          dict(source.files))
            self.host.images[ref] = image
            _REGISTRIES.setdefault(registry, {})[ref] = image
            return self._image_record(image)

    def import_container_snapshot(self, container: str, name: str, image: str, **kwargs: Any) -> SnapshotRecord:
        """Make the image a snapshot ``name`` of the container."""
        self._no_options(kwargs)
        with self.host.lock:
            item = self._container(container)
            validate_name(name, "snapshot name")
            registry = self._needs_registry("Importing a snapshot")
            validate_pk(image, "image")
            if not image.startswith(registry + "/"):
                raise errors.InvalidArgumentError(f"{image!r} is not an image of the registry {registry}.")
            found = _REGISTRIES.get(registry, {}).get(image) or self.host.images.get(image)
            if found is None:
                raise errors.ContainerImageNotFoundError(f"No image {image!r} in the registry {registry}.")
            ref = f"{self.name_prefix}-snapshots/{item.pk}:{name}"
            if ref in self.host.images:
                raise errors.ContainerAlreadyExistsError(f"The container {item.pk!r} already has a snapshot named {name!r}.")
            copied = Image(ref, {LABEL + "instance": self.instance, LABEL + "kind": "snapshot",
                                 LABEL + "container": item.pk, LABEL + "snapshot": name}, dict(found.files))
            self.host.images[ref] = copied
            return self._snapshot_record(copied)

