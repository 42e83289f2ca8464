"""What the proxy may still hold about a container, so that a suspend never strands a request.

nginx keeps an allowing answer of the access check for :data:`~ipynbsrv_backends.proxy.CACHE_SECONDS`
(docs/proxy.md); a request that arrives on a kept answer goes to the container's address without
asking the master. A suspended (paused) container takes that connection and never answers it, so
a request in the seconds after a suspend would hang until someone resumes the container, and the
idle policy's "the next request resumes it" would not hold for it.

So the two sides keep a little book on the container's row:

- the check (:func:`hold`) lets nginx keep an answer only after writing, on the row, until when
  that answer may live (``kept_until``), and only while no suspend is under way
  (``suspending_since``), in one conditional ``UPDATE``;
- a suspend (:func:`draining`) first marks the row, so every later check is answered afresh and
  kept nowhere, then waits until every answer kept before the mark has expired, then pauses.

A request that comes after the pause is therefore always checked by the master, which answers
"suspended" at once (or resumes the container when the idle policy suspended it). The wait is
zero when nginx was not asked to keep an answer for the container in the last few seconds (the
usual case); at most ``CACHE_SECONDS`` plus the margins below.

Both fields are written only here, by query: ``Container.save()`` leaves them alone, so a full
save of an older copy of the row never undoes them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from ..models import Container

logger = logging.getLogger(__name__)

#: nginx counts a kept answer's life in whole seconds of its own clock: one more second covers it.
CLOCK_MARGIN = 1.0
#: A check does not write the row again while what it holds already covers the new answer but
#: for this much; a suspend waits this much longer than the row says.
WRITE_SLACK = 1.0
#: A suspend mark older than this was left by a master that died mid-suspend: it is ignored.
STALE_MARK = timedelta(minutes=2)


def _keep_seconds() -> int:
    from ..proxy import CACHE_SECONDS

    return CACHE_SECONDS


def hold(container: Container) -> bool:
    """For the access check: may nginx keep this allowing answer? True once the row says until
    when it may live; False (answer afresh every time) while the container is being suspended."""
    now = timezone.now()
    mark = container.suspending_since
    if mark is not None and now - mark < STALE_MARK:
        return False
    until = now + timedelta(seconds=_keep_seconds() + CLOCK_MARGIN)
    if container.kept_until is not None and container.kept_until >= until - timedelta(seconds=WRITE_SLACK):
        return True  # a suspend waits for the row's time plus WRITE_SLACK, which covers this answer
    written = (Container.objects.filter(pk=container.pk)
               .filter(Q(suspending_since__isnull=True) | Q(suspending_since__lt=now - STALE_MARK))
               .update(kept_until=until))
    if written:
        container.kept_until = until
    return bool(written)


def _kept_until(pk: int) -> float:
    """Seconds from now until every answer the proxy may hold for container ``pk`` has expired."""
    kept = Container.objects.filter(pk=pk).values_list("kept_until", flat=True).first()
    if kept is None:
        return 0.0
    return (kept - timezone.now()).total_seconds() + WRITE_SLACK


@contextmanager
def draining(container: Container) -> Iterator[None]:
    """Around a suspend: no answer for ``container`` is kept from now on, and the body runs once
    every answer kept before has expired. The mark is lifted afterwards, whatever happened."""
    Container.objects.filter(pk=container.pk).update(suspending_since=timezone.now())
    try:
        # Inside a caller's transaction the mark is not seen by the checks until it commits, so
        # an answer may still be kept while we wait: look again (a bounded number of times).
        bound = _keep_seconds() + CLOCK_MARGIN + WRITE_SLACK
        for _round in range(3):
            wait = _kept_until(container.pk)
            if wait <= 0:
                break
            logger.info("Waiting %.1f s before suspending %s: the proxy may still hold an answer for it",
                        wait, container)
            time.sleep(min(wait, bound))
        yield
    finally:
        Container.objects.filter(pk=container.pk).update(suspending_since=None)
        container.suspending_since = None
