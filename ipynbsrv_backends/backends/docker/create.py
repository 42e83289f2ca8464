"""``create_container``: check everything, then ask the engine, then clean up on failure.

The spec (labels, environment, mounts, host configuration) comes from the pure builders
in :mod:`.spec`; this module adds what needs the engine: the image, the volumes, a clone's
base image and the host ports chosen for ``external: None``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from ... import errors
from ...contract import ContainerRecord, PortRecord, VolumeRecord
from ...validation import (
    iso_utc,
    validate_create_arguments,
)
from . import spec
from .constants import KIND_CLONE_BASE, L_CLONE_OF, L_CONTAINER, L_IMAGE, L_INSTANCE, L_KIND, L_PORTS, PORT_ATTEMPTS
from .engine import port_conflict
from .host import HostResources
from .images import ImageOps

logger = logging.getLogger(__name__)

__all__ = ["ContainerCreation"]


@dataclass
class _Plan:
    """A checked create: everything the engine is asked for, and what was made so far."""

    pk: str
    username: str
    name: str
    argv: list[str] | None
    environment: dict[str, str]
    labels: dict[str, str]
    ports: list[PortRecord]
    volumes: list[VolumeRecord]
    limits: dict[str, Any]
    image: str | None
    clone_of: str | None
    source_info: dict[str, Any] | None
    missing_volumes: list[str]
    avoid: set[int] = field(default_factory=set)
    created: bool = False
    #: A clone's base image (tagged for the create only), once its name is chosen.
    helper_image: str | None = None


class ContainerCreation(ImageOps, HostResources):
    """The create of the ``Docker`` backend."""

    def engine_name(self, uid: int, name: str) -> str:
        """The engine name (and pk) of a user's container; the one place names are made."""
        return spec.engine_name(self.name_prefix, uid, name)

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
        # Everything is checked before the engine is asked to do anything, as every backend
        # checks it (validation.validate_create_arguments).
        pk = self.engine_name(uid, name)
        checked = validate_create_arguments(username, ports, volumes, cmd, base_url, image, clone_of, kwargs.get("env"))
        username, port_specs, volume_specs, argv, env = checked
        limits = spec.limits(kwargs, self._default_limits())
        if image is not None:
            self._image_allowed(image)

        source_info = self._inspect_container(clone_of) if clone_of is not None else None
        if self._name_taken(pk):
            raise errors.ContainerAlreadyExistsError(f"{username!r} already has a container named {name!r}.")
        volume_specs, missing_volumes = self._prepare_volumes(volume_specs, username)
        if image is not None:
            self._ensure_image(image)
        plan = _Plan(
            pk=pk, username=username, name=name, argv=argv,
            environment=spec.container_environment(env, username, uid, base_url),
            labels=spec.container_labels(self.instance, username, uid, name, port_specs, volume_specs,
                                         iso_utc(dt.datetime.now(dt.UTC))),
            ports=port_specs, volumes=volume_specs, limits=limits, image=image, clone_of=clone_of,
            source_info=source_info, missing_volumes=missing_volumes, avoid=self._ports_to_avoid(port_specs),
        )
        return self._make(plan)

    def _default_limits(self) -> dict[str, Any]:
        return {"mem_limit": self.default_mem_limit, "cpu_limit": self.default_cpu_limit,
                "pids_limit": self.default_pids_limit}

    def _ports_to_avoid(self, port_specs: list[PortRecord]) -> set[int]:
        """The host ports a new container must not get; a fixed one another container keeps
        is refused here."""
        if not port_specs:
            return set()
        avoid, kept = self._kept_ports()
        for p in port_specs:
            if p["external"] is not None and p["external"] in kept:
                raise errors.InvalidArgumentError(
                    f"The host port {p['external']} is kept by the container {kept[p['external']]!r} (running "
                    "or not): pick another port or use external: null."
                )
        avoid.update(p["external"] for p in port_specs if p["external"] is not None)
        return avoid

    def _make(self, plan: _Plan) -> ContainerRecord:
        """Create the volumes (and a clone's base image), then the container; on failure,
        remove what this create made."""
        created_volumes: list[str] = []
        try:
            created_volumes = self._create_volumes(plan.missing_volumes, plan.username)
            if plan.source_info is not None:
                run_image = self._clone_base(plan, plan.source_info)
            else:
                assert plan.image is not None
                plan.labels[L_IMAGE] = plan.image
                run_image = plan.image
            self._create_and_start(plan, run_image)
            logger.info("Created container %s for %s from %s", plan.pk, plan.username,
                        plan.labels[L_IMAGE] or plan.clone_of)
            return self.get_container(plan.pk)
        except Exception:
            if plan.created:
                self._remove_quietly(plan.pk)
            for volume in created_volumes:
                with contextlib.suppress(Exception):
                    self._api().remove_volume(volume)
            raise
        finally:
            if plan.helper_image is not None:
                # The clone keeps the layers; the tag goes, and the untagged image is pruned
                # when the clone is deleted.
                with contextlib.suppress(Exception):
                    self._api().remove_image(plan.helper_image, force=True)
                if not plan.created:
                    self._prune_images()

    def _clone_base(self, plan: _Plan, source_info: dict[str, Any]) -> str:
        """Commit the source of a clone to a helper image the clone starts from."""
        plan.labels[L_IMAGE] = source_info["Config"]["Labels"].get(L_IMAGE, "")
        plan.labels[L_CLONE_OF] = source_info["Name"].lstrip("/")
        plan.helper_image = f"{self.name_prefix}-clones/{plan.pk}:base"
        self._commit_clean(source_info["Id"], plan.helper_image, plan.pk, {
            L_INSTANCE: self.instance, L_KIND: KIND_CLONE_BASE, L_CONTAINER: plan.pk},
            errors.ContainerNotFoundError(f"The container {plan.clone_of!r} vanished."))
        return plan.helper_image

    def _create_and_start(self, plan: _Plan, run_image: str) -> None:
        """Create and start the container. A port given as external: None is chosen here,
        once, and written into the container's configuration, so a stop and start (or a
        restore) keeps it; one the engine finds taken at start is chosen again."""
        auto_ports = [p for p in plan.ports if p["external"] is None]
        bind_lines = spec.binds(plan.volumes)
        for attempt in range(1, PORT_ATTEMPTS + 1):
            chosen = {p["internal"]: self._pick_port(plan.avoid) for p in auto_ports}
            plan.avoid.update(chosen.values())
            fixed = spec.fix_ports(plan.ports, chosen)
            plan.labels[L_PORTS] = json.dumps(fixed)
            try:
                self._create_once(plan, run_image, spec.port_bindings(fixed), bind_lines)
                return
            except errors.InvalidArgumentError as exc:
                port = port_conflict(exc.__cause__)
                if not plan.created or port is None or port not in chosen.values():
                    raise
                # The engine binds at start: the port was taken after all. Try another.
                self._remove_quietly(plan.pk)
                plan.created = False
                if attempt == PORT_ATTEMPTS:
                    raise errors.BackendUnavailableError(
                        f"No free host port found for {plan.pk!r} in {PORT_ATTEMPTS} attempts (the last, {port}, "
                        f"was taken at start): free ports in port_range {self.port_range[0]}-"
                        f"{self.port_range[1]} or widen it."
                    ) from exc.__cause__
                logger.info("Host port %s was taken when %s started; trying another", port, plan.pk)

    def _create_once(self, plan: _Plan, run_image: str, bindings: spec.Bindings, bind_lines: list[str]) -> None:
        with self._engine(
            not_found=errors.ContainerImageNotFoundError(f"The image {run_image!r} is not on this engine."),
            conflict=errors.ContainerAlreadyExistsError(f"{plan.username!r} already has a container named {plan.name!r}."),
        ):
            self._api().create_container(
                run_image, command=plan.argv, name=plan.pk, environment=plan.environment, labels=plan.labels,
                ports=[p["internal"] for p in plan.ports],
                host_config=self._host_config(bindings, bind_lines, plan.limits),
            )
            plan.created = True
            self._api().start(plan.pk)

    def _host_config(self, bindings: spec.Bindings, bind_lines: list[str], limits: dict[str, Any]) -> dict[str, Any]:
        kwargs = spec.host_config(bindings, bind_lines, limits, no_new_privileges=self.no_new_privileges,
                                  use_init=self.use_init)
        return self._api().create_host_config(**kwargs)
