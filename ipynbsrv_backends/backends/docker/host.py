"""The node's resources a container uses: host directories and volumes it mounts, host
ports it binds.

Bind sources are resolved (symlinks included) and must lie under an allowed root, at
create and again before each start; a port given as ``external: None`` is chosen once, from
``port_range``, avoiding every port a container on the engine holds or keeps.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Mapping
from typing import Any

import docker.errors

from ... import errors
from ...contract import VolumeRecord
from ...validation import resolve_bind_source, under_roots
from .constants import L_INSTANCE, L_KIND, L_OWNER, L_PORTS
from .engine import DockerEngine, port_conflict

__all__ = ["HostResources", "pick_port"]


class HostResources(DockerEngine):
    """Bind mounts, named volumes and host ports of the ``Docker`` backend."""

    # ------------------------------------------------------------------ mounts

    def _resolve_bind_source(self, source: str) -> str:
        return resolve_bind_source(source, self.allowed_volume_roots)

    def _under_roots(self, real: str) -> bool:
        """Whether the resolved path ``real`` is an allowed volume root or lies under one."""
        return under_roots(real, self.allowed_volume_roots)

    def _recheck_binds(self, info: Mapping[str, Any], action: str) -> None:
        """Resolve the bind sources of an existing container again before the engine mounts
        them (start, restart, restore): each must still be the path resolved at creation
        (a symlink anywhere in it means someone swapped a directory since), still exist and
        still be under an allowed root. Refused with IllegalContainerStateError: the call is
        fine, the host path the container was made with is not any more."""
        pk = str(info.get("Name") or "").lstrip("/")
        for bind in (info.get("HostConfig") or {}).get("Binds") or []:
            source = bind.split(":", 1)[0]
            if not source.startswith("/"):
                continue  # a named volume: the engine keeps it, no host path to swap
            problem = self._bind_problem(source)
            if problem:
                raise errors.IllegalContainerStateError(
                    f"The container {pk!r} cannot be {action}: its bind mount source {source!r} {problem}. "
                    f"Nothing was mounted. Put a real directory back at {source} (no symlink anywhere in the "
                    "path), or delete the container and create it again with a valid volume."
                )

    def _bind_problem(self, source: str) -> str | None:
        """What changed about a bind source resolved at creation, or ``None``."""
        if not self.allowed_volume_roots:
            return "is a host directory and this backend no longer allows bind mounts (allowed_volume_roots is empty)"
        try:
            real = os.path.realpath(source, strict=False)
        except OSError as exc:
            return f"cannot be resolved any more ({exc.strerror or exc})"
        if real != source:
            return f"now resolves to {real!r}: a symlink was put in its path since the container was created"
        if not self._under_roots(real):
            return f"is now outside the allowed volume roots ({', '.join(self.allowed_volume_roots)})"
        if not os.path.isdir(real) and not os.path.isfile(real):
            return "no longer exists (the engine would create it again, as root)"
        return None

    def _prepare_volumes(self, volumes: list[VolumeRecord], username: str) -> tuple[list[VolumeRecord], list[str]]:
        """Resolve bind sources; check named volumes. Returns the records and the names of
        volumes that do not exist yet (created by :meth:`_create_volumes`)."""
        prepared: list[VolumeRecord] = []
        missing: list[str] = []
        for volume in volumes:
            source = volume["source"]
            if source.startswith("/"):
                source = self._resolve_bind_source(source)
            else:
                try:
                    with self._engine():
                        info = self._api().inspect_volume(source)
                except errors.ContainerBackendError as exc:
                    if not isinstance(exc.__cause__, docker.errors.NotFound):
                        raise
                    info = None
                if info is None:
                    missing.append(source)
                else:
                    labels = info.get("Labels") or {}
                    if labels.get(L_INSTANCE) != self.instance or labels.get(L_OWNER) != username:
                        raise errors.InvalidArgumentError(
                            f"The volume {source!r} exists and does not belong to {username!r} on this backend; pick another name."
                        )
            prepared.append({"source": source, "target": volume["target"], "mode": volume.get("mode", "rw")})
        return prepared, missing

    def _create_volumes(self, names: list[str], username: str) -> list[str]:
        created = []
        for name in names:
            with self._engine():
                info = self._api().create_volume(name, labels={L_INSTANCE: self.instance, L_OWNER: username,
                                                               L_KIND: "volume"})
            labels = info.get("Labels") or {}
            if labels.get(L_OWNER) != username or labels.get(L_INSTANCE) != self.instance:
                raise errors.InvalidArgumentError(f"The volume {name!r} was just taken by someone else; pick another name.")
            created.append(name)
        return created

    # ------------------------------------------------------------------ host ports

    def _kept_ports(self) -> tuple[set[int], dict[int, str]]:
        """Host ports containers on this engine hold: every port a running container has
        bound, and every port one of this backend's kind (of any instance) keeps in its
        configuration, running or stopped (the latter by container name). One engine call."""
        with self._engine():
            items = self._api().containers(all=True)
        taken: set[int] = set()
        kept: dict[int, str] = {}
        for item in items:
            taken.update(int(p["PublicPort"]) for p in item.get("Ports") or [] if p.get("PublicPort"))
            try:
                specs = json.loads((item.get("Labels") or {}).get(L_PORTS) or "[]")
            except ValueError:
                continue
            for spec in specs if isinstance(specs, list) else []:
                external = spec.get("external") if isinstance(spec, dict) else None
                if isinstance(external, int):
                    kept[external] = (item.get("Names") or ["/?"])[0].lstrip("/")
        return taken | set(kept), kept

    def _random_port(self) -> int:
        low, high = self.port_range
        return low + secrets.randbelow(high - low + 1)

    def _pick_port(self, avoid: set[int]) -> int:
        return pick_port(self.port_range, avoid, self.base_url, self._random_port)

    def _start_keeping_ports(self, container_id: str, pk: str, action: Callable[[], Any]) -> None:
        """Run ``action`` (a start or restart); a host port the container keeps but cannot
        bind is a clear conflict, never a silent move to another port."""
        try:
            with self._engine(not_found=errors.ContainerNotFoundError(f"The container {pk!r} vanished.")):
                action()
        except errors.InvalidArgumentError as exc:
            port = port_conflict(exc.__cause__)
            if port is None:
                raise
            raise errors.IllegalContainerStateError(
                f"The container {pk!r} cannot start: its host port {port} is now taken by another process or "
                "container on the node. The container keeps that port so its URL does not change: free the port "
                "(stop what listens there) and start it again, or recreate the container to get another port."
            ) from exc.__cause__


def pick_port(port_range: tuple[int, int], avoid: set[int], where: str,
              draw: Callable[[], int | None] | None = None) -> int:
    """A host port from ``port_range`` that is not in ``avoid``: random draws (``draw``, or
    uniform ones) first, then a scan from a random point, so a nearly full range is still
    found."""
    low, high = port_range

    def uniform() -> int:
        return low + secrets.randbelow(high - low + 1)

    pick = draw or uniform
    for _ in range(32):
        port = pick()
        if port is not None and port not in avoid:
            return port
    start = uniform()
    for offset in range(high - low + 1):
        port = low + (start - low + offset) % (high - low + 1)
        if port not in avoid:
            return port
    raise errors.BackendUnavailableError(
        f"No free host port left in port_range {low}-{high} on {where}: widen port_range or delete "
        "unused containers."
    )
