"""Moved to :mod:`ipynbsrv_backends.wire.signing`; this path keeps working."""

from __future__ import annotations

from ..wire import signing as _moved
from ..wire.signing import *  # noqa: F403 - every name of the module it was

__all__ = list(_moved.__all__)
