"""The tests' look behind the in-memory backend, in the few shapes of docker-py they use.

Where a test checks what the engine really has (``engine.containers.list(...)``,
``engine.api.inspect_container(pk)``, ``engine.volumes.get(name)``...), with the ``Memory``
backend it reads the simulated host those backends keep instead: the same questions, asked
of the state the backend really changed. Only what the suite asks is here.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import docker.errors

from ipynbsrv_backends.backends.memory import LABEL, Container, Host, Image, Volume


class NotFound(docker.errors.NotFound):
    """What docker-py raises for a missing object, so the tests' ``except`` clauses hold."""


def _matches(labels: dict[str, str], filters: dict[str, Any] | None) -> bool:
    wanted = (filters or {}).get("label") or []
    for item in [wanted] if isinstance(wanted, str) else wanted:
        key, _eq, value = item.partition("=")
        if key not in labels or (_eq and labels[key] != value):
            return False
    return True


@dataclass
class _ContainerView:
    host: Host
    item: Container

    @property
    def name(self) -> str:
        return self.item.pk

    @property
    def id(self) -> str:
        return self.item.id

    @property
    def labels(self) -> dict[str, str]:
        return self.item.labels

    @property
    def image(self) -> _ImageView:
        made = self.host.images.get(self.item.image)
        return _ImageView(made or Image(self.item.image, {}))

    @property
    def status(self) -> str:
        return {"suspended": "paused", "stopped": "exited"}.get(self.item.status, self.item.status)

    def reload(self) -> None:
        pass

    def remove(self, force: bool = False, v: bool = False) -> None:
        with self.host.lock:
            self.host.containers.pop(self.item.pk, None)

    def stop(self, timeout: int = 10) -> None:
        """Stopped behind the backend's back, as ``docker stop`` would."""
        with self.host.lock:
            self.item.status = "stopped"

    def logs(self, tail: int = 30) -> bytes:
        return "\n".join(line for _when, line in self.item.logs[-tail:]).encode()

    @property
    def attrs(self) -> dict[str, Any]:
        return inspect_container(self.item)


def inspect_container(item: Container) -> dict[str, Any]:
    """The parts of ``docker inspect`` the suite reads."""
    limits = item.limits
    return {
        "Id": item.id,
        "Name": "/" + item.pk,
        "State": {"Status": item.status, "Running": item.status != "stopped", "Paused": item.status == "suspended",
                  "StartedAt": item.started_at, "ExitCode": item.exit_code},
        "Config": {"Labels": dict(item.labels), "Env": [f"{k}={v}" for k, v in item.env.items()]},
        "HostConfig": {
            "Memory": limits.get("mem_limit") or 0,
            "NanoCpus": int((limits.get("cpu_limit") or 0) * 1_000_000_000),
            "PidsLimit": limits.get("pids_limit"),
            "SecurityOpt": ["no-new-privileges"],
            "Privileged": False,
            "Binds": [f"{v['source']}:{v['target']}:{v.get('mode', 'rw')}" for v in item.volumes],
        },
    }


class _Containers:
    def __init__(self, host: Host) -> None:
        self.host = host

    def list(self, all: bool = False, filters: dict[str, Any] | None = None) -> list[_ContainerView]:
        with self.host.lock:
            return [_ContainerView(self.host, c) for c in self.host.containers.values()
                    if (all or c.status != "stopped") and _matches(c.labels, filters)]

    def get(self, name: str) -> _ContainerView:
        with self.host.lock:
            if name not in self.host.containers:
                raise NotFound(name)
            return _ContainerView(self.host, self.host.containers[name])

    def create(self, image: str, name: str | None = None, labels: dict[str, str] | None = None,
               **_: Any) -> _ContainerView:
        """A container no backend manages (no instance label), as a stranger on the host."""
        pk = name or f"stranger-{uuid.uuid4().hex[:8]}"
        item = Container(pk, dict(labels or {}), image, {}, [], [], {}, status="stopped")
        with self.host.lock:
            self.host.containers[pk] = item
        return _ContainerView(self.host, item)

    def run(self, image: str, detach: bool = True, **kwargs: Any) -> _ContainerView:
        view = self.create(image, **kwargs)
        view.item.status = "running"
        return view


class _VolumeView:
    """A named volume as docker-py's ``Volume``: its name, labels, removal."""

    def __init__(self, host: Host, item: Volume) -> None:
        self.host, self.item, self.name = host, item, item.name
        self.attrs = {"Name": item.name, "Labels": dict(item.labels)}

    def remove(self, force: bool = False) -> None:
        with self.host.lock:
            self.host.volumes.pop(self.item.name, None)


class _Volumes:
    def __init__(self, host: Host) -> None:
        self.host = host

    def list(self, filters: dict[str, Any] | None = None) -> list[_VolumeView]:
        with self.host.lock:
            return [_VolumeView(self.host, v) for v in self.host.volumes.values() if _matches(v.labels, filters)]

    def get(self, name: str) -> _VolumeView:
        with self.host.lock:
            if name not in self.host.volumes:
                raise NotFound(name)
            return _VolumeView(self.host, self.host.volumes[name])

    def create(self, name: str, labels: dict[str, str] | None = None, **_: Any) -> _VolumeView:
        with self.host.lock:
            self.host.volumes[name] = Volume(name, dict(labels or {}))
            return _VolumeView(self.host, self.host.volumes[name])


@dataclass
class _ImageView:
    item: Image

    @property
    def tags(self) -> list[str]:
        return [self.item.ref]

    @property
    def id(self) -> str:
        return self.item.ref


class _Images:
    def __init__(self, host: Host, base: tuple[str, ...]) -> None:
        self.host, self.base = host, base

    def list(self, all: bool = False, filters: dict[str, Any] | None = None) -> list[_ImageView]:
        with self.host.lock:
            return [_ImageView(i) for i in self.host.images.values() if _matches(i.labels, filters)]

    def get(self, ref: str) -> _ImageView:
        with self.host.lock:
            if ref in self.host.images:
                return _ImageView(self.host.images[ref])
        if ref in self.base:
            return _ImageView(Image(ref, {}))
        raise NotFound(ref)


class _Api:
    def __init__(self, host: Host) -> None:
        self.host = host

    def inspect_container(self, pk: str) -> dict[str, Any]:
        with self.host.lock:
            if pk not in self.host.containers:
                raise NotFound(pk)
            return inspect_container(self.host.containers[pk])


class MemoryEngine:
    """docker-py's ``DockerClient`` as far as the suite uses it, over one simulated host."""

    def __init__(self, host: Host, base_images: tuple[str, ...] = ()) -> None:
        self.host = host
        self.api = _Api(host)
        self.containers = _Containers(host)
        self.volumes = _Volumes(host)
        self.images = _Images(host, base_images)

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        pass


__all__ = ["LABEL", "MemoryEngine", "NotFound", "inspect_container"]
