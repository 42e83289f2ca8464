"""Which actions a node's backend cannot do, from its class alone (services.capabilities):
what the admin hides and the users' API refuses with 501 before any node is asked."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from ipynbsrv_backends import errors
from ipynbsrv_backends.backends.swarm import NOT_SUPPORTED
from ipynbsrv_backends.services.capabilities import require, unsupported_actions


def _node(kind):
    return SimpleNamespace(backend=SimpleNamespace(kind=kind), __str__=lambda self: "n1")


def test_a_swarm_node_cannot_do_what_swarm_cannot_and_says_why():
    refused = unsupported_actions(_node("DockerSwarm"))
    assert set(refused) == {"suspend", "resume", "snapshot", "restore", "clone", "commit", "move", "exec"}
    assert refused["resume"] == NOT_SUPPORTED["suspend"] and refused["restore"] == NOT_SUPPORTED["snapshot"]
    with pytest.raises(errors.CapabilityNotSupportedError) as info:
        require(_node("DockerSwarm"), "suspend")
    assert info.value.status_code == 501 and NOT_SUPPORTED["suspend"] in str(info.value)


@pytest.mark.parametrize("kind", ["Docker", "HttpRemote", "Memory", "NoSuchKind"])
def test_other_backends_can_do_everything_or_are_not_judged_here(kind):
    assert unsupported_actions(_node(kind)) == {}
    require(_node(kind), "suspend")  # nothing raised
