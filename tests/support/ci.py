"""What a test does when something it needs is missing: skip, or fail under ``CI=true``."""

from __future__ import annotations

import os
from typing import NoReturn


def in_ci() -> bool:
    """Whether this run is CI (``CI=true``): a missing engine, image or tool is a failure."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(message: str) -> NoReturn:
    """Skip the test for want of something; in CI, fail it."""
    import pytest

    if in_ci():
        pytest.fail(message)
    pytest.skip(message)
