"""The ``http_remote`` kind of the contract suite: ``HttpRemote`` -> a real
``ipynbsrv_hostapi`` process -> ``Docker`` with the suite's instance and name prefix.

The process helpers live in :mod:`tests.support` (shared with the bench); their names are
re-exported here for older imports.
"""

from __future__ import annotations

import pytest

from .support.processes import HostAPINode, child_env, children_of, hostapi_command, pid_alive, wait_gone
from .support.waiting import free_port

__all__ = ["HostAPINode", "child_env", "children_of", "free_port", "hostapi_command", "pid_alive", "wait_gone",
           "hostapi_node", "http_remote_backend"]


@pytest.fixture(scope="session")
def hostapi_node(raw_docker, workdir):
    """A host API process serving ``Docker`` with the contract suite's options."""
    from .conftest import backend_options

    node = HostAPINode(workdir, backend_args=backend_options())
    node.start()
    yield node
    status = node.terminate()
    assert status == 0, f"ipynbsrv_hostapi exited with {status}:\n{node.log()}"


@pytest.fixture(scope="session")
def http_remote_backend(hostapi_node):
    """The contract suite's ``http_remote`` kind."""
    from ipynbsrv_backends.backends import HttpRemote

    remote = HttpRemote(hostapi_node.url, token=hostapi_node.token, timeout=60, long_timeout=300)
    yield remote
    remote.close()
