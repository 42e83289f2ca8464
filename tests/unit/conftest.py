"""``tests/unit`` holds tests that need no engine and start no server. A test here that asks
for an engine fixture or carries an engine marker is a layout error, reported when the tests
are collected (rather than a test that quietly drops out of ``make test-fast``)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest

from ..support.fast_tier import NEEDS_ENGINE

HERE = Path(__file__).resolve().parent


def misplaced(fixtures: Iterable[str], markers: Iterable[str]) -> list[str]:
    """What makes a test unfit for ``tests/unit``: its engine fixtures and markers."""
    return sorted(set(fixtures) & NEEDS_ENGINE[1]) + sorted(f"@{m}" for m in set(markers) & set(NEEDS_ENGINE[0]))


@pytest.hookimpl(tryfirst=True)  # before the fast tier deselects what needs an engine
def pytest_collection_modifyitems(config, items):
    wrong = []
    for item in items:
        if HERE in Path(item.path).resolve().parents:
            why = misplaced(item.fixturenames, (mark.name for mark in item.iter_markers()))
            if why:
                wrong.append(f"  {item.nodeid}: {', '.join(why)}")
    if wrong:
        raise pytest.UsageError("tests/unit is for tests that need no engine and start no server; move these "
                                "files to tests/integration (or tests/cluster, for the test bed):\n" + "\n".join(wrong))
