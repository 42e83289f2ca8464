"""The backends that ship with the package.

Imported lazily so a master that only uses ``HttpRemote`` never imports docker-py, and a
node that only runs ``Docker`` never needs more than it uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Docker", "DockerSwarm", "HttpRemote", "Memory"]

if TYPE_CHECKING:
    from .docker import Docker
    from .http_remote import HttpRemote
    from .memory import Memory
    from .swarm import DockerSwarm


def __getattr__(name: str) -> Any:
    if name == "Docker":
        from .docker import Docker

        return Docker
    if name == "DockerSwarm":
        from .swarm import DockerSwarm

        return DockerSwarm
    if name == "HttpRemote":
        from .http_remote import HttpRemote

        return HttpRemote
    if name == "Memory":
        from .memory import Memory

        return Memory
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
