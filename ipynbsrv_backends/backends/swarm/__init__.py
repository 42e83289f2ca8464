"""The ``DockerSwarm`` backend: users' containers as one-replica services of a Docker swarm
(see :mod:`.backend` and ``docs/swarm.md``)."""

from __future__ import annotations

from .backend import NOT_SUPPORTED, DockerSwarm
from .options import SWARM_OPTIONS

__all__ = ["DockerSwarm", "NOT_SUPPORTED", "SWARM_OPTIONS"]
