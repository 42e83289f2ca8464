"""Tiny in-memory backends for *pure-logic* unit tests of the host API views (routing,
validation, error mapping, authentication). They are never evidence that a real backend
works: that is the contract suite's job, against Docker and HttpRemote -> ipynbsrv_hostapi
-> Docker."""

from __future__ import annotations

from typing import Any

from ipynbsrv_backends import errors
from ipynbsrv_backends.contract import (
    BACKEND_STATUS_OK,
    ContainerBackend,
    ImagePullingContainerBackend,
    SnapshotableContainerBackend,
    SnapshotTransferContainerBackend,
    SuspendableContainerBackend,
)

#: Every call any fake backend received, and every instance built: ("__init__", kwargs) or
#: (method name, args, kwargs). Tests clear it.
CALLS: list[tuple[Any, ...]] = []


def _record(name: str, *args: Any, **kwargs: Any) -> None:
    CALLS.append((name, args, kwargs))


def _no_options(kwargs: dict[str, Any]) -> None:
    if kwargs:
        raise errors.InvalidArgumentError(f"Unknown option(s): {', '.join(sorted(kwargs))}")


class _Base(ContainerBackend):
    def __init__(self, **kwargs: Any) -> None:
        _no_options({k: v for k, v in kwargs.items() if k != "fail_status"})
        _record("__init__", **kwargs)
        self.fail_status = kwargs.get("fail_status", False)
        self.containers: dict[str, dict[str, Any]] = {}

    def _get(self, pk: str) -> dict[str, Any]:
        if pk not in self.containers:
            raise errors.ContainerNotFoundError(f"No container {pk!r}.")
        return self.containers[pk]

    def container_exists(self, container: str, **kwargs: Any) -> bool:
        _record("container_exists", container, **kwargs)
        _no_options(kwargs)
        return container in self.containers

    def container_image_exists(self, image: str, **kwargs: Any) -> bool:
        _record("container_image_exists", image, **kwargs)
        _no_options(kwargs)
        return image == "img/busybox:latest"

    def container_is_running(self, container: str, **kwargs: Any) -> bool:
        _record("container_is_running", container, **kwargs)
        _no_options(kwargs)
        return self._get(container)["status"] != "stopped"

    def create_container(self, username: str, uid: int, name: str, ports: Any, volumes: Any,
                         cmd: Any = None, base_url: Any = None, image: Any = None,
                         clone_of: Any = None, **kwargs: Any) -> dict[str, Any]:
        _record("create_container", username, uid, name, ports, volumes, cmd, base_url, image,
                clone_of, **kwargs)
        unknown = set(kwargs) - {"env", "mem_limit"}
        if unknown:
            raise errors.InvalidArgumentError(f"Unknown option(s): {', '.join(sorted(unknown))}")
        pk = f"fake-{username}-{name}"
        if pk in self.containers:
            raise errors.ContainerAlreadyExistsError(f"The name {name!r} is taken.")
        record = {"pk": pk, "name": name, "status": "running", "image": image or "",
                  "owner": username, "created": "2024-01-01T00:00:00Z", "ports": ports or [],
                  "volumes": volumes or [], "cmd": cmd}
        self.containers[pk] = record
        return record

    def create_container_image(self, container: str, name: str, **kwargs: Any) -> dict[str, Any]:
        _record("create_container_image", container, name, **kwargs)
        self._get(container)
        return {"pk": f"img/{name}:latest", "name": name, "created": "2024-01-01T00:00:00Z", "size": 1}

    def delete_container(self, container: str, **kwargs: Any) -> None:
        _record("delete_container", container, **kwargs)
        _no_options(kwargs)
        self._get(container)
        del self.containers[container]

    def delete_container_image(self, image: str, **kwargs: Any) -> None:
        _record("delete_container_image", image, **kwargs)

    def exec_in_container(self, container: str, cmd: Any, **kwargs: Any) -> str:
        _record("exec_in_container", container, cmd, **kwargs)
        if self._get(container)["status"] == "stopped":
            raise errors.IllegalContainerStateError("The container is stopped.")
        return f"ran {cmd!r}\n"

    def get_container(self, container: str, **kwargs: Any) -> dict[str, Any]:
        _record("get_container", container, **kwargs)
        _no_options(kwargs)
        return self._get(container)

    def get_container_image(self, image: str, **kwargs: Any) -> dict[str, Any]:
        _record("get_container_image", image, **kwargs)
        raise errors.ContainerImageNotFoundError(f"No image {image!r}.")

    def get_container_images(self, **kwargs: Any) -> list[dict[str, Any]]:
        _record("get_container_images", **kwargs)
        return []

    def get_container_logs(self, container: str, tail: Any = None, since: Any = None,
                           **kwargs: Any) -> list[str]:
        _record("get_container_logs", container, tail=tail, since=since, **kwargs)
        _no_options(kwargs)
        self._get(container)
        return [f"tail={tail!r}", f"since={since!r}"]

    def get_containers(self, only_running: bool = False, **kwargs: Any) -> list[dict[str, Any]]:
        _record("get_containers", only_running=only_running, **kwargs)
        _no_options(kwargs)
        return [c for c in self.containers.values() if not only_running or c["status"] != "stopped"]

    def get_status(self, **kwargs: Any) -> int:
        _record("get_status", **kwargs)
        if self.fail_status:
            raise RuntimeError("a broken get_status")
        return BACKEND_STATUS_OK

    def start_container(self, container: str, **kwargs: Any) -> None:
        _record("start_container", container, **kwargs)
        self._get(container)["status"] = "running"

    def stop_container(self, container: str, **kwargs: Any) -> None:
        _record("stop_container", container, **kwargs)
        self._get(container)["status"] = "stopped"


class BaseOnlyBackend(_Base):
    """Only the base contract: suspend and snapshot calls must answer 501."""


class FullBackend(_Base, SuspendableContainerBackend, SnapshotableContainerBackend):
    """Both sub-contracts (snapshots are not kept; enough for routing tests)."""

    def container_is_suspended(self, container: str, **kwargs: Any) -> bool:
        _record("container_is_suspended", container, **kwargs)
        return self._get(container)["status"] == "suspended"

    def suspend_container(self, container: str, **kwargs: Any) -> None:
        _record("suspend_container", container, **kwargs)
        self._get(container)["status"] = "suspended"

    def resume_container(self, container: str, **kwargs: Any) -> None:
        _record("resume_container", container, **kwargs)
        self._get(container)["status"] = "running"

    def container_snapshot_exists(self, snapshot: str, **kwargs: Any) -> bool:
        _record("container_snapshot_exists", snapshot, **kwargs)
        return False

    def create_container_snapshot(self, container: str, name: str, **kwargs: Any) -> dict[str, Any]:
        _record("create_container_snapshot", container, name, **kwargs)
        self._get(container)
        return {"pk": f"snap/{container}:{name}", "name": name, "container": container,
                "created": "2024-01-01T00:00:00Z"}

    def delete_container_snapshot(self, snapshot: str, **kwargs: Any) -> None:
        _record("delete_container_snapshot", snapshot, **kwargs)
        raise errors.ContainerSnapshotNotFoundError(f"No snapshot {snapshot!r}.")

    def get_container_snapshot(self, snapshot: str, **kwargs: Any) -> dict[str, Any]:
        _record("get_container_snapshot", snapshot, **kwargs)
        raise errors.ContainerSnapshotNotFoundError(f"No snapshot {snapshot!r}.")

    def get_container_snapshots(self, **kwargs: Any) -> list[dict[str, Any]]:
        _record("get_container_snapshots", **kwargs)
        return []

    def get_containers_snapshots(self, container: str, **kwargs: Any) -> list[dict[str, Any]]:
        _record("get_containers_snapshots", container, **kwargs)
        self._get(container)
        return []

    def restore_container_snapshot(self, container: str, snapshot: str, **kwargs: Any) -> dict[str, Any]:
        _record("restore_container_snapshot", container, snapshot, **kwargs)
        return self._get(container)


class TransferBackend(FullBackend, ImagePullingContainerBackend, SnapshotTransferContainerBackend):
    """Also claims image pulls and snapshot transfer (the node routes them; FullBackend's are 501)."""

    def pull_container_image(self, image: str, on_progress: Any = None, **kwargs: Any) -> dict[str, Any]:
        _record("pull_container_image", image, **kwargs)
        return {"pk": image, "name": image, "created": "", "size": 1}

    def export_container_snapshot(self, snapshot: str, **kwargs: Any) -> dict[str, Any]:
        _record("export_container_snapshot", snapshot, **kwargs)
        return {"pk": TRANSFER_IMAGE, "name": "transfer-s1-1:latest", "created": "", "size": 1}

    def import_container_snapshot(self, container: str, name: str, image: str, **kwargs: Any) -> dict[str, Any]:
        _record("import_container_snapshot", container, name, image, **kwargs)
        return {"pk": f"q-snapshots/{container}:{name}", "name": name, "container": container,
                "created": "", "size": 1}


#: The image reference TransferBackend's export answers.
TRANSFER_IMAGE = "10.0.0.1:5000/p-u1/transfer-s1-1:latest"
