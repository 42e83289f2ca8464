"""What the tests and the bench share: one way to wait, to find a free port, to purge what a
run made on an engine, and to start a host API process.

Nothing here imports pytest, so ``bench/`` uses it as it is. ``tests.utils`` and
``tests.hostapi_process`` re-export these names for older imports.
"""

from __future__ import annotations

from .engine import purge_instances, purge_labelled
from .processes import HostAPINode, child_env, children_of, hostapi_command, pid_alive, stop_process, wait_gone
from .waiting import api_as, free_port, http_answers, http_get, load_image_into, wait_for

__all__ = [
    "HostAPINode",
    "api_as",
    "child_env",
    "children_of",
    "free_port",
    "hostapi_command",
    "http_answers",
    "http_get",
    "load_image_into",
    "pid_alive",
    "purge_instances",
    "purge_labelled",
    "stop_process",
    "wait_for",
    "wait_gone",
]
