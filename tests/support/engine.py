"""One way to remove what a run made on a Docker engine: everything carrying its labels."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any


def purge_labelled(client: Any, labels: Iterable[str], *, images: bool = True, volumes: bool = True) -> int:
    """Remove the containers (and, unless told not to, the images and volumes) that carry
    every label of ``labels`` on the engine of ``client`` (a ``docker.DockerClient``);
    returns how many containers went."""
    import docker

    wanted = list(labels)
    removed = 0
    for container in client.containers.list(all=True, filters={"label": wanted}):
        try:
            container.remove(force=True, v=True)
            removed += 1
        except docker.errors.NotFound:
            pass
    if images:
        for image in client.images.list(all=True, filters={"label": wanted}):
            for tag in image.tags or [image.id]:
                try:
                    client.images.remove(tag, force=True)
                except docker.errors.APIError:  # already gone with an earlier tag
                    pass
        for label in wanted:
            prune_images(client, label)
    if volumes:
        for volume in client.volumes.list(filters={"label": wanted}):
            volume.remove(force=True)
    return removed


def purge_instances(client: Any, instances: Iterable[str]) -> int:
    """Everything the backend instances ``instances`` made (``org.ipynbsrv.instance``)."""
    return sum(purge_labelled(client, [f"org.ipynbsrv.instance={instance}"]) for instance in instances)


def prune_images(client: Any, label: str, attempts: int = 40) -> None:
    """Prune our dangling images; the engine runs one prune at a time (a 409 while another
    session or backend prunes), so wait for our turn, within bounds."""
    import docker

    for _ in range(attempts):
        try:
            client.images.prune(filters={"dangling": True, "label": label})
            return
        except docker.errors.APIError as exc:
            if "prune operation is already running" not in str(exc):
                raise
            time.sleep(0.25)
    raise AssertionError(f"the engine kept refusing to prune the images labelled {label}")
