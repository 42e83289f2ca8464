"""The book the proxy's check and a suspend keep on a container's row (services/proxykeep.py),
on an in-memory node; the whole path with the real nginx and a real notebook is in
tests/integration/test_culling.py (a request right after a suspend is never sent to the paused
server)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from ipynbsrv_backends import services
from ipynbsrv_backends.backends import Memory
from ipynbsrv_backends.models import Backend, Container, Image, Node
from ipynbsrv_backends.proxy import CACHE_SECONDS
from ipynbsrv_backends.services import proxykeep

from ..conftest import INSTANCE, PREFIX, TEST_IMAGE, memory_options

AUTH = "/proxy/auth/"


@pytest.fixture
def nb(db, workdir, settings, alice):
    settings.IPYNBSRV_BACKENDS = {**settings.IPYNBSRV_BACKENDS, "CONTAINER_VOLUMES": []}
    instance = f"{INSTANCE}-keep"
    backend = Backend.objects.create(name="mem", kind="Memory",
                                     config=memory_options(host=instance, instance=instance, name_prefix=f"{PREFIX}keep"))
    node = Node.objects.create(name="m1", address="127.0.0.1", backend=backend)
    image = Image.objects.create(name="busybox", ref=TEST_IMAGE, public=True)
    yield services.create_container(alice, "nb", image=image, node=node)
    Memory.reset(instance)


def _row(container: Container) -> Container:
    return Container.objects.get(pk=container.pk)


def test_the_check_notes_until_when_nginx_may_keep_its_answer(nb, alice, client):
    client.force_login(alice)
    before = timezone.now()
    answer = client.get(AUTH, headers={"X-Original-URI": nb.base_url + "tree", "X-Ipynbsrv-Scope": nb.base_url})
    assert answer.status_code == 200 and answer["X-Accel-Expires"] == str(CACHE_SECONDS)
    kept = _row(nb).kept_until
    assert kept is not None and kept >= before + timedelta(seconds=CACHE_SECONDS)
    # a second answer a moment later is covered by what the row says: no write
    row = _row(nb)
    with CaptureQueriesContext(connection) as queries:
        assert proxykeep.hold(row)
    assert not queries.captured_queries


def test_no_answer_is_kept_while_a_suspend_is_under_way(nb, alice, client):
    Container.objects.filter(pk=nb.pk).update(suspending_since=timezone.now())
    client.force_login(alice)
    answer = client.get(AUTH, headers={"X-Original-URI": nb.base_url + "tree", "X-Ipynbsrv-Scope": nb.base_url})
    assert answer.status_code == 200 and answer["X-Accel-Expires"] == "0"
    assert _row(nb).kept_until is None


def test_a_mark_set_after_the_check_read_the_row_still_wins(nb):
    row = _row(nb)  # the check read the row before the suspend marked it ...
    Container.objects.filter(pk=nb.pk).update(suspending_since=timezone.now())
    assert not proxykeep.hold(row)  # ... so its conditional write finds the mark
    assert _row(nb).kept_until is None


def test_a_mark_left_by_a_master_that_died_is_ignored(nb):
    Container.objects.filter(pk=nb.pk).update(suspending_since=timezone.now() - timedelta(minutes=5))
    assert proxykeep.hold(_row(nb))
    assert _row(nb).kept_until is not None


def test_a_full_save_of_an_older_copy_does_not_undo_the_book(nb):
    old = _row(nb)
    moment = timezone.now() + timedelta(seconds=3)
    Container.objects.filter(pk=nb.pk).update(kept_until=moment, suspending_since=moment)
    old.last_error = "something else changed"
    old.save()
    row = _row(nb)
    assert row.last_error == "something else changed"
    assert row.kept_until == moment and row.suspending_since == moment


def test_a_suspend_waits_for_kept_answers_and_marks_the_row_meanwhile(nb, monkeypatch):
    slept: list[float] = []
    seen: list[object] = []
    monkeypatch.setattr(proxykeep.time, "sleep", slept.append)
    Container.objects.filter(pk=nb.pk).update(kept_until=timezone.now() + timedelta(seconds=2))
    real = Memory.suspend_container

    def suspend(self, pk, **kwargs):
        seen.append(_row(nb).suspending_since)
        return real(self, pk, **kwargs)

    monkeypatch.setattr(Memory, "suspend_container", suspend)
    services.suspend_container(nb)
    assert slept and 2 < slept[0] <= CACHE_SECONDS + proxykeep.CLOCK_MARGIN + proxykeep.WRITE_SLACK
    assert seen and seen[0] is not None, "the row was not marked while the node suspended it"
    row = _row(nb)
    assert row.status == "suspended" and row.suspending_since is None


def test_a_suspend_with_nothing_kept_does_not_wait_and_a_failed_one_lifts_the_mark(nb, monkeypatch):
    slept: list[float] = []
    monkeypatch.setattr(proxykeep.time, "sleep", slept.append)

    def broken(self, pk, **kwargs):
        raise RuntimeError("the node fell over")

    monkeypatch.setattr(Memory, "suspend_container", broken)
    with pytest.raises(RuntimeError):
        services.suspend_container(nb)
    assert not slept
    assert _row(nb).suspending_since is None
