"""Capabilities are declared sub-contracts (issue 14, item 5): the backends claim them in
their class statements, and the master asks the contract, never the concrete class or
whether a method happens to exist. Pure logic: no engine."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import ipynbsrv_backends
from ipynbsrv_backends import contract
from ipynbsrv_backends.backends import Docker, DockerSwarm, HttpRemote
from ipynbsrv_backends.contract import CAPABILITIES, ContainerBackend

PACKAGE = Path(ipynbsrv_backends.__file__).parent
#: The backends implement the methods; the host API serves whatever backend it is given
#: (its own routing decides what answers 501). Everything else is the master's callers.
NOT_CALLERS = ("backends", "hostapi", "migrations")


def capability_methods() -> set[str]:
    names: set[str] = set()
    for sub in CAPABILITIES.values():
        names |= {name for name, _ in inspect.getmembers(sub, inspect.isfunction)} - set(vars(ContainerBackend))
    return names


def test_every_sub_contract_is_listed_and_declares_its_methods():
    subs = {obj for obj in vars(contract).values()
            if isinstance(obj, type) and issubclass(obj, ContainerBackend) and obj is not ContainerBackend}
    assert subs == set(CAPABILITIES.values())
    assert {"pull_container_image", "export_container_snapshot", "import_container_snapshot", "get_node_status",
            "install_next_signing_key", "promote_signing_key", "suspend_container",
            "create_container_snapshot"} <= capability_methods()
    for sub in CAPABILITIES.values():
        assert sub.__abstractmethods__ - ContainerBackend.__abstractmethods__, sub


@pytest.mark.parametrize(("backend", "claims"), [
    (Docker, {"suspend", "snapshot", "snapshot_transfer", "image_pull", "node_status", "events"}),
    # a swarm is reached through its manager's engine, never through a host API: HttpRemote
    # does not forward the swarm's own capability
    (HttpRemote, set(CAPABILITIES) - {"machine_availability"}),
    (DockerSwarm, {"node_status", "machine_availability"}),
])
def test_the_backends_claim_what_they_implement(backend, claims):
    assert {name for name, sub in CAPABILITIES.items() if issubclass(backend, sub)} == claims
    assert not backend.__abstractmethods__  # every claimed method is implemented
    unclaimed = {name for name in capability_methods() if hasattr(backend, name)} - {
        name for sub in CAPABILITIES.values() if issubclass(backend, sub) for name in vars(sub)}
    assert not unclaimed, f"{backend.__name__} has {unclaimed} without claiming the sub-contract"


def _duck_typing(tree: ast.AST, methods: set[str]) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
            continue
        args = node.args
        if node.func.id in ("getattr", "hasattr") and len(args) >= 2 and isinstance(args[1], ast.Constant) \
                and args[1].value in methods:
            found.append(f"line {node.lineno}: {node.func.id}(..., {args[1].value!r})")
        if node.func.id == "isinstance" and len(args) == 2:
            names = {n.id if isinstance(n, ast.Name) else getattr(n, "attr", "") for n in ast.walk(args[1])}
            if names & {"Docker", "HttpRemote"}:
                found.append(f"line {node.lineno}: isinstance(..., {ast.unparse(args[1])})")
    return found


def test_no_caller_duck_types_a_backend():
    methods = capability_methods()
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] in NOT_CALLERS:
            continue
        text = path.read_text()
        problems += [f"{relative} {p}" for p in _duck_typing(ast.parse(text), methods)]
        if "inspect.signature" in text and "on_progress" in text:
            problems.append(f"{relative}: inspects a signature to find a capability")
    assert not problems, problems


def test_the_check_finds_what_it_looks_for():
    """The scan above is not vacuous: the forms the callers used before are found."""
    before = ('puller = getattr(backend, "pull_container_image", None)\n'
              'if not isinstance(backend, HttpRemote): pass\n'
              'describe = getattr(backend, "get_node_status", None)\n')
    assert len(_duck_typing(ast.parse(before), capability_methods())) == 3
