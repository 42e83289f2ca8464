"""The worker threads that create the users' API's new containers after it has answered.

``POST containers/`` places and records a container, answers ``202 Accepted``, and hands the
rest (pulling the image, creating and starting it on its node) to :func:`submit`. A bounded
pool of threads per process (``IPYNBSRV_BACKENDS["CREATE_WORKERS"]``, default 4) runs that
work; more waits its turn. Each task runs in the audit context of the request that submitted
it (who, through which door) and closes its thread's database connections when it ends.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from django.db import connections

from .conf import app_settings

logger = logging.getLogger(__name__)

__all__ = ["submit", "wait_idle"]

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_pending: set[Future[Any]] = set()


def _executor() -> ThreadPoolExecutor:
    global _pool, _pool_size
    size = int(app_settings.CREATE_WORKERS)
    with _lock:
        if _pool is None or _pool_size != size:
            if _pool is not None:
                _pool.shutdown(wait=False)  # its tasks still run to their end
            _pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="ipynbsrv-create")
            _pool_size = size
        return _pool


def submit(task: Callable[[], Any]) -> Future[Any]:
    """Run ``task`` in a worker thread, in the caller's context (the audit log's actor)."""
    context = contextvars.copy_context()

    def run() -> Any:
        try:
            return context.run(task)
        except Exception:
            logger.exception("A background creation failed unexpectedly")
            raise
        finally:
            connections.close_all()

    future = _executor().submit(run)
    with _lock:
        _pending.add(future)
    future.add_done_callback(_forget)
    return future


def _forget(future: Future[Any]) -> None:
    with _lock:
        _pending.discard(future)


def wait_idle(timeout: float) -> bool:
    """Wait until every submitted task has ended (at most ``timeout`` seconds); True if so.
    For tests and orderly shutdowns."""
    with _lock:
        pending = set(_pending)
    done, not_done = wait(pending, timeout=timeout)
    return not not_done
