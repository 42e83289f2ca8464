"""An in-memory backend, for development and tests: no engine, no network.

Containers, images, snapshots and named volumes live in this process's memory, on a
simulated *host* shared by every :class:`Memory` with the same ``host`` option (as backends
of several instances share one engine): each backend sees only its own ``instance``'s
containers, host ports are kept across instances, and names are taken host-wide. Nothing
runs in a container: its status is bookkeeping, its files are a dict, ``exec_in_container``
answers a handful of shell commands (:mod:`.shell`), its logs are what
:meth:`Memory.write_logs` put there, and a published port is reserved, never bound.

It keeps the contract as :class:`~ipynbsrv_backends.backends.Docker` does: the same checks
(shared :mod:`~ipynbsrv_backends.validation`), the same records and the same ``errors.*``
for the same faults. With a ``registry`` name, snapshots travel between backends of this
process through an in-memory registry of that name. ``Memory.reset()`` forgets everything.
"""

from __future__ import annotations

from .backend import Memory
from .store import LABEL, Container, Host, Image, Volume

__all__ = ["LABEL", "Container", "Host", "Image", "Memory", "Volume"]
