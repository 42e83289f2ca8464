"""The backends that ship with the package.

Imported lazily so a master that only uses ``HttpRemote`` never imports docker-py, and a
node that only runs ``Docker`` never needs more than it uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Docker", "HttpRemote"]

if TYPE_CHECKING:
    from .docker import Docker
    from .http_remote import HttpRemote


def __getattr__(name: str) -> Any:
    if name == "Docker":
        from .docker import Docker

        return Docker
    if name == "HttpRemote":
        from .http_remote import HttpRemote

        return HttpRemote
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
