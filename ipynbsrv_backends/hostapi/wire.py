"""Moved to :mod:`ipynbsrv_backends.wire.format`; this path keeps working."""

from __future__ import annotations

from ..wire import format as _moved
from ..wire.format import *  # noqa: F403 - every name of the module it was

__all__ = list(_moved.__all__)
