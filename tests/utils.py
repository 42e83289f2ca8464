"""Small helpers the tests share."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 15.0, interval: float = 0.1, what: str = "condition") -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last value: {last!r})")


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def http_answers(url: str, timeout: float = 15.0) -> bytes:
    """Wait until ``url`` answers 200 and return the body (bounded in count and time)."""

    def attempt() -> bytes | None:
        try:
            status, body = http_get(url, timeout=1.0)
        except OSError:
            return None
        return body if status == 200 else None

    return wait_for(attempt, timeout=timeout, interval=0.1, what=f"{url} to answer")
