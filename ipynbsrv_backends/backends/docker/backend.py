"""The ``Docker`` backend: containers on one Docker engine, through docker-py.

Everything it creates carries labels (``org.ipynbsrv.*``) naming the backend instance that
manages it, its owner and its name; it lists and acts only on what carries its instance
label. A container's pk is its engine name (``<prefix>-u<uid>-<name>``), which survives a
snapshot restore; image and snapshot pks are image references.

The class is put together from the package's parts: engine access (:mod:`.engine`), the
registry (:mod:`.registry_client`), snapshot transfer (:mod:`.transfer`), images
(:mod:`.images`), host resources (:mod:`.host`) and the create (:mod:`.create`); this module
holds its options, the base contract's reads, the lifecycle and the snapshots.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any, ClassVar

from ... import errors
from ...contract import (
    BACKEND_STATUS_ERROR,
    BACKEND_STATUS_OK,
    BACKEND_STATUS_STOPPED,
    ContainerRecord,
    SnapshotRecord,
)
from ...validation import parse_since, validate_cmd, validate_env, validate_tail
from ..options import Options
from . import spec
from .constants import (
    CONTAINER_LABELS,
    CREATE_OPTIONS,
    KIND_CONTAINER,
    KIND_SNAPSHOT,
    L_CONTAINER,
    L_INSTANCE,
    L_KIND,
    L_SNAPSHOT,
    PRIVILEGED_OPTIONS,
)
from .create import ContainerCreation
from .events import EngineEvents
from .options import DOCKER_OPTIONS
from .records import record_from_inspect, record_from_list, snapshot_record
from .volume_usage import VolumeUsage

logger = logging.getLogger(__name__)

__all__ = ["Docker"]

#: The positional constructor arguments (the contract's); every other option is a keyword.
_POSITIONAL = ("base_url", "registry", "allowed_volume_roots")


class Docker(ContainerCreation, EngineEvents):
    """Containers on one Docker engine.

    See the README for every constructor argument (generated from
    :data:`~.options.DOCKER_OPTIONS`). The engine is not contacted until the first call, so
    building a backend never blocks and never fails on a down engine.
    """

    #: The declaration of every constructor option.
    OPTION_TABLE: ClassVar[Options] = DOCKER_OPTIONS
    #: Constructor options and their defaults (besides the three positional ones).
    OPTIONS: ClassVar[dict[str, Any]] = DOCKER_OPTIONS.defaults(exclude=_POSITIONAL)
    SECRET_OPTIONS: ClassVar[frozenset[str]] = DOCKER_OPTIONS.secrets()
    #: The options each method accepts; every other method takes none.
    METHOD_OPTIONS: ClassVar[dict[str, tuple[str, ...]]] = {
        "create_container": CREATE_OPTIONS,
        "restore_container_snapshot": ("env",),
    }
    FORBIDDEN_OPTIONS = PRIVILEGED_OPTIONS

    def __init__(
        self,
        base_url: str = DOCKER_OPTIONS["base_url"].default,
        registry: str | None = None,
        allowed_volume_roots: list[str] | tuple[str, ...] = (),
        **options: Any,
    ) -> None:
        config = self.validate_options(base_url=base_url, registry=registry,
                                       allowed_volume_roots=allowed_volume_roots, **options)
        self._configure(DOCKER_OPTIONS.names(), config)
        self._volume_usage = VolumeUsage()

    # ------------------------------------------------------------------ configuration

    @classmethod
    def validate_options(cls, **config: Any) -> dict[str, Any]:
        """Check a constructor configuration without contacting anything.

        Returns the configuration with defaults filled in; raises InvalidArgumentError
        naming the first bad option. The admin form, the API and the checks all call this.
        """
        return DOCKER_OPTIONS.validate(config)

    def __repr__(self) -> str:
        registry = f", registry={self.registry!r}" if self.registry else ""
        return f"Docker(base_url={self.base_url!r}{registry}, instance={self.instance!r})"

    # ------------------------------------------------------------------ the base contract

    def container_exists(self, container: str, **kwargs: Any) -> bool:
        try:
            self._inspect_container(container)
        except errors.ContainerNotFoundError:
            return False
        return True

    def container_image_exists(self, image: str, **kwargs: Any) -> bool:
        try:
            self._inspect_image(image, None, errors.ContainerImageNotFoundError())
        except errors.ContainerImageNotFoundError:
            return False
        return True

    def container_is_running(self, container: str, **kwargs: Any) -> bool:
        return bool(self._inspect_container(container)["State"].get("Running"))

    def container_is_suspended(self, container: str, **kwargs: Any) -> bool:
        return bool(self._inspect_container(container)["State"].get("Paused"))

    def get_container(self, container: str, **kwargs: Any) -> ContainerRecord:
        return record_from_inspect(self._inspect_container(container))

    def get_containers(self, only_running: bool = False, **kwargs: Any) -> list[ContainerRecord]:
        """One engine call, however many containers there are."""
        if not isinstance(only_running, bool):
            raise errors.InvalidArgumentError("only_running must be true or false.")
        with self._engine():
            items = self._api().containers(all=not only_running, filters=self._labels_filter(KIND_CONTAINER))
        records = [record_from_list(item) for item in items]
        return sorted(records, key=lambda record: record["pk"])

    def get_status(self, **kwargs: Any) -> int:
        try:
            with self._engine():
                self._api().ping()
        except errors.BackendUnavailableError:
            return BACKEND_STATUS_STOPPED
        except Exception:  # noqa: BLE001 - the contract: get_status never raises
            logger.warning("The Docker engine at %s answered its ping with an error", self.base_url, exc_info=True)
            return BACKEND_STATUS_ERROR
        return BACKEND_STATUS_OK

    def get_node_status(self, **kwargs: Any) -> dict[str, Any]:
        """The engine's resources and this backend's container counts, in the shape of the
        host API's status answer, for placement and the admin."""
        with self._engine():
            info = self._api().info()
            items = self._api().containers(all=True, filters=self._labels_filter(KIND_CONTAINER))
        running = sum(1 for item in items if item.get("State") in ("running", "paused", "restarting"))
        resources: dict[str, Any] = {
            "cpu_count": info.get("NCPU"),
            "memory_total": info.get("MemTotal"),
            "containers": {"running": running, "total": len(items)},
        }
        volume_usage = self.volume_usage()
        if volume_usage is not None:
            resources["volume_usage"] = volume_usage
        return {
            "backend": {"status": BACKEND_STATUS_OK, "capabilities": ["suspend", "snapshot"],
                        "engine_version": info.get("ServerVersion"), "registry": self.registry},
            "resources": resources,
        }

    def volume_usage(self) -> dict[str, int] | None:
        """Bytes of this backend's named volumes per owner, as last measured (``None``: not
        measured yet, or ``volume_usage_every`` is off); see :mod:`.volume_usage`."""
        return self._volume_usage.current(self)

    # ------------------------------------------------------------------ lifecycle

    def start_container(self, container: str, **kwargs: Any) -> None:
        info = self._inspect_container(container)
        if info["State"].get("Paused"):
            raise errors.IllegalContainerStateError(f"The container {container!r} is suspended: resume it instead.")
        if info["State"].get("Running"):
            return
        self._recheck_binds(info, "started")
        self._start_keeping_ports(info["Id"], container, lambda: self._api().start(info["Id"]))

    def stop_container(self, container: str, **kwargs: Any) -> None:
        info = self._inspect_container(container)
        with self._engine(not_found=errors.ContainerNotFoundError(f"The container {container!r} vanished.")):
            if info["State"].get("Paused"):
                self._api().unpause(info["Id"])
            if info["State"].get("Running"):
                self._api().stop(info["Id"], timeout=self.stop_timeout)

    def restart_container(self, container: str, **kwargs: Any) -> None:
        info = self._inspect_container(container)
        self._recheck_binds(info, "restarted")
        with self._engine(not_found=errors.ContainerNotFoundError(f"The container {container!r} vanished.")):
            if info["State"].get("Paused"):
                self._api().unpause(info["Id"])
        self._start_keeping_ports(info["Id"], container,
                                  lambda: self._api().restart(info["Id"], timeout=self.stop_timeout))

    def suspend_container(self, container: str, **kwargs: Any) -> None:
        info = self._inspect_container(container)
        if info["State"].get("Paused"):
            return
        if not info["State"].get("Running"):
            raise errors.IllegalContainerStateError(f"The container {container!r} is stopped: only a running one can be suspended.")
        with self._engine(conflict=errors.IllegalContainerStateError(f"The container {container!r} cannot be suspended now.")):
            self._api().pause(info["Id"])

    def resume_container(self, container: str, **kwargs: Any) -> None:
        info = self._inspect_container(container)
        if not info["State"].get("Paused"):
            if info["State"].get("Running"):
                return
            raise errors.IllegalContainerStateError(f"The container {container!r} is stopped, not suspended: start it instead.")
        with self._engine(conflict=errors.IllegalContainerStateError(f"The container {container!r} cannot be resumed now.")):
            self._api().unpause(info["Id"])

    def delete_container(self, container: str, **kwargs: Any) -> None:
        """Remove the container (in any state) and its snapshots. Volumes are kept."""
        info = self._inspect_container(container)
        pk = info["Name"].lstrip("/")
        with self._engine(not_found=errors.ContainerNotFoundError(f"The container {container!r} vanished.")):
            self._api().remove_container(info["Id"], force=True, v=False)
        for ref, _item in self._list_images(KIND_SNAPSHOT, **{L_CONTAINER: pk}):
            try:
                with self._engine(not_found=errors.ContainerSnapshotNotFoundError()):
                    self._api().remove_image(ref, force=True)
            except errors.NotFoundError:
                pass
        self._prune_images()
        logger.info("Deleted container %s", pk)

    def exec_in_container(self, container: str, cmd: str | list[str], **kwargs: Any) -> str:
        argv = validate_cmd(cmd, allow_none=False)
        info = self._inspect_container(container)
        if info["State"].get("Paused") or not info["State"].get("Running"):
            state = "suspended" if info["State"].get("Paused") else "stopped"
            raise errors.IllegalContainerStateError(f"Cannot run a command in {container!r}: it is {state}.")
        illegal = errors.IllegalContainerStateError(f"Cannot run a command in {container!r} now: it is not running.")
        with self._engine(conflict=illegal, not_found=errors.ContainerNotFoundError(f"The container {container!r} vanished.")):
            exec_id = self._api().exec_create(info["Id"], argv, stdout=True, stderr=True)
            output = self._api().exec_start(exec_id)
        return output.decode("utf-8", errors="replace") if isinstance(output, bytes) else str(output)

    def get_container_logs(self, container: str, tail: int | None = None, since: Any = None, **kwargs: Any) -> list[str]:
        tail = validate_tail(tail)
        moment = parse_since(since)
        info = self._inspect_container(container)
        with self._engine(not_found=errors.ContainerNotFoundError(f"The container {container!r} vanished.")):
            output = self._api().logs(info["Id"], stdout=True, stderr=True, timestamps=False,
                                      tail="all" if tail is None else tail,
                                      since=int(moment.timestamp()) if moment else None)
        text = output.decode("utf-8", errors="replace") if isinstance(output, bytes) else str(output)
        return text.splitlines()

    # ------------------------------------------------------------------ snapshots

    def container_snapshot_exists(self, snapshot: str, **kwargs: Any) -> bool:
        try:
            self._inspect_snapshot(snapshot)
        except errors.ContainerSnapshotNotFoundError:
            return False
        return True

    def create_container_snapshot(self, container: str, name: str, **kwargs: Any) -> SnapshotRecord:
        info = self._inspect_container(container)
        pk = info["Name"].lstrip("/")
        ref = spec.snapshot_ref(self.name_prefix, pk, name)
        with self._name_lock:
            if self.container_image_exists(ref):
                raise errors.ContainerAlreadyExistsError(f"The container {pk!r} already has a snapshot named {name!r}.")
            self._commit_clean(info["Id"], ref, pk, {
                L_INSTANCE: self.instance, L_KIND: KIND_SNAPSHOT, L_CONTAINER: pk, L_SNAPSHOT: name,
            }, errors.ContainerNotFoundError(f"The container {container!r} vanished."))
        logger.info("Snapshot %s of container %s taken", name, pk)
        return self.get_container_snapshot(ref)

    def delete_container_snapshot(self, snapshot: str, **kwargs: Any) -> None:
        self._inspect_snapshot(snapshot)
        with self._engine(not_found=errors.ContainerSnapshotNotFoundError(f"No snapshot {snapshot!r}.")):
            self._api().remove_image(snapshot, force=True)
        self._prune_images()

    def get_container_snapshot(self, snapshot: str, **kwargs: Any) -> SnapshotRecord:
        return snapshot_record(self._inspect_snapshot(snapshot), snapshot)

    def get_container_snapshots(self, **kwargs: Any) -> list[SnapshotRecord]:
        return [snapshot_record(item, ref) for ref, item in self._list_images(KIND_SNAPSHOT)]

    def get_containers_snapshots(self, container: str, **kwargs: Any) -> list[SnapshotRecord]:
        pk = self._inspect_container(container)["Name"].lstrip("/")
        return [snapshot_record(item, ref) for ref, item in self._list_images(KIND_SNAPSHOT, **{L_CONTAINER: pk})]

    def restore_container_snapshot(self, container: str, snapshot: str, **kwargs: Any) -> ContainerRecord:
        """Recreate the container from the snapshot with the same name, ports, volumes,
        environment and limits. The pk does not change. On failure the old container is
        put back as it was.

        Option ``env``: variables to set or replace in the kept environment (the master gives
        the container a new access secret this way)."""
        replaced = validate_env(kwargs.get("env"))
        old = self._inspect_container(container)
        self._recheck_binds(old, "restored")
        pk = old["Name"].lstrip("/")
        snap = self._inspect_snapshot(snapshot)
        if (snap["Config"].get("Labels") or {}).get(L_CONTAINER) != pk:
            raise errors.ContainerSnapshotNotFoundError(f"{snapshot!r} is not a snapshot of the container {pk!r}.")
        self._park(old, f"{pk}-restoring-{int(time.time() * 1000)}")
        try:
            self._recreate(old, pk, snapshot, replaced)
        except Exception:
            logger.error("Restoring %s from %s failed; putting the old container back", pk, snapshot)
            with contextlib.suppress(Exception):
                self._api().rename(old["Id"], pk)
                if old["State"].get("Running"):
                    self._api().start(old["Id"])
            raise
        self._remove_quietly(old["Id"])
        self._prune_images()
        logger.info("Restored container %s from snapshot %s", pk, snapshot)
        return self.get_container(pk)

    def _park(self, old: dict[str, Any], parked: str) -> None:
        """Stop the container a restore replaces and rename it out of the way."""
        pk = old["Name"].lstrip("/")
        vanished = errors.ContainerNotFoundError(f"The container {pk!r} vanished during the restore.")
        with self._engine(not_found=vanished):
            if old["State"].get("Paused"):
                self._api().unpause(old["Id"])
            if old["State"].get("Running"):
                self._api().stop(old["Id"], timeout=self.stop_timeout)
            self._api().rename(old["Id"], parked)

    def _recreate(self, old: dict[str, Any], pk: str, snapshot: str, replaced: dict[str, str]) -> None:
        """Create (and start, if the old one ran) the container ``pk`` from the snapshot with
        the old one's command, environment, labels, host ports, mounts and limits; a half
        made one is removed again."""
        labels = {key: (old["Config"].get("Labels") or {}).get(key, "") for key in CONTAINER_LABELS}
        host = old["HostConfig"]
        # Keep the external ports the container has now, so its URLs stay the same.
        bindings = spec.port_bindings(record_from_inspect(old)["ports"])
        created = False
        try:
            with self._engine(not_found=errors.ContainerSnapshotNotFoundError(f"The snapshot {snapshot!r} vanished.")):
                self._api().create_container(
                    snapshot, command=old["Config"].get("Cmd"), name=pk,
                    environment=spec.with_env(old["Config"].get("Env") or [], replaced), labels=labels,
                    ports=list(bindings),
                    host_config=self._host_config(bindings, host.get("Binds") or [], spec.limits_of(host)),
                )
                created = True
                if old["State"].get("Running"):
                    self._api().start(pk)
        except Exception:
            if created:
                self._remove_quietly(pk)
            raise
