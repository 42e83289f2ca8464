"""Creation through the users' API answers at once (202, the pending record, its Location)
and goes on in the background on the real engine; a failure leaves a record whose owner can
read why; ``?wait=true`` keeps the blocking 201."""

from __future__ import annotations

from typing import Any

import pytest

from ipynbsrv_backends import background
from ipynbsrv_backends.backends import Docker
from ipynbsrv_backends.models import AuditEntry, Container, Image

from ..conftest import TEST_IMAGE, backend_options
from ..utils import wait_for
from .test_api import API, _api, body, client_for  # noqa: F401 - fixtures

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True)]


def settled(api, location: str, seen: list[str] | None = None) -> dict[str, Any]:
    """Poll the record at ``location`` (bounded) until it is no longer creating."""

    def done() -> dict[str, Any] | None:
        response = api.get(location)
        assert response.status_code == 200, body(response)
        record = body(response)
        if record["status"] == "creating":
            if seen is not None:
                seen.append(record["progress"])
            return None
        return record

    return wait_for(done, timeout=120, interval=0.05, what="the creation to end")


def test_create_answers_202_with_the_pending_record_then_it_runs(alice, make_node, image, engine):
    make_node("n1")
    api = client_for(alice)
    response = api.post(f"{API}/containers/", {"name": "nb", "image": image.pk}, format="json")
    assert response.status_code == 202, body(response)
    pending = body(response)
    assert pending["status"] == "creating" and pending["name"] == "nb" and pending["node"] == "n1"
    assert pending["progress"] == "waiting to be created on n1"
    assert pending["last_error"] == "" and pending["error_code"] == "" and pending["url"] is None
    assert response["Location"] == f"http://testserver{API}/containers/{pending['id']}/"
    record = settled(api, response["Location"])
    assert record["status"] == "running" and record["progress"] == "" and record["id"] == pending["id"]
    assert record["url"] == "http://testserver/notebooks/alice/nb/"
    container = Container.objects.get(pk=pending["id"])
    assert container.access_secret and container.backend_pk  # the secret reached the record
    assert engine.containers.get(container.backend_pk).status == "running"
    entry = AuditEntry.objects.get(action="container.create")
    assert (entry.actor, entry.via, entry.result, entry.target_id) == (alice, "api", "ok", str(pending["id"]))


def test_a_clone_answers_202_too(alice, make_node, image, engine):
    make_node("n1")
    api = client_for(alice)
    source = body(api.post(f"{API}/containers/?wait=true", {"name": "nb", "image": image.pk}, format="json"))
    response = api.post(f"{API}/containers/{source['id']}/clone/", {"name": "copy"}, format="json")
    assert response.status_code == 202, body(response)
    assert body(response)["status"] == "creating"
    record = settled(api, response["Location"])
    assert record["status"] == "running" and record["clone_of"] == source["id"]
    # the audit row is written as the background job ends, just after the record's last save
    entry = wait_for(lambda: AuditEntry.objects.filter(action="container.clone").first(), what="the clone's audit")
    assert entry.result == "ok"


def test_a_failed_background_creation_says_why_on_the_record(alice, make_node, engine):
    make_node("n1")  # pull_policy "never": an image the engine lacks cannot be had
    missing = Image.objects.create(name="missing", ref="ipynbsrv-test/not-there:never", public=True)
    api = client_for(alice)
    response = api.post(f"{API}/containers/", {"name": "nb", "image": missing.pk}, format="json")
    assert response.status_code == 202, body(response)
    record = settled(api, response["Location"])
    assert record["status"] == "error" and record["error_code"] == "image_not_found"
    assert "ipynbsrv-test/not-there:never" in record["last_error"] and record["progress"] == ""
    entry = wait_for(lambda: AuditEntry.objects.filter(action="container.create").first(), what="the audit")
    assert entry.result == "error" and "ContainerImageNotFoundError" in entry.message
    assert entry.target_id == str(record["id"])
    # the user deletes it and may use the name again
    assert api.delete(response["Location"]).status_code == 204
    again = api.post(f"{API}/containers/", {"name": "nb", "image": missing.pk}, format="json")
    assert again.status_code == 202, body(again)


def test_refusals_before_anything_is_recorded_are_answered_at_once(alice, make_node, image, engine):
    make_node("n1", capacity=2)
    api = client_for(alice)
    assert api.post(f"{API}/containers/", {"name": "nb", "image": image.pk}, format="json").status_code == 202
    taken = api.post(f"{API}/containers/", {"name": "nb", "image": image.pk}, format="json")
    assert taken.status_code == 409 and body(taken)["code"] == "already_exists"
    assert api.post(f"{API}/containers/", {"name": "two", "image": image.pk}, format="json").status_code == 202
    full = api.post(f"{API}/containers/", {"name": "three", "image": image.pk}, format="json")
    assert full.status_code == 503 and body(full)["code"] == "no_node_available"
    bad = api.post(f"{API}/containers/?wait=maybe", {"name": "three", "image": image.pk}, format="json")
    assert bad.status_code == 400 and "wait" in body(bad)["fields"]
    assert background.wait_idle(60)
    assert sorted(Container.objects.values_list("name", "status")) == [("nb", "running"), ("two", "running")]


def test_wait_true_answers_201_once_it_runs(alice, make_node, image, engine):
    make_node("n1")
    api = client_for(alice)
    response = api.post(f"{API}/containers/?wait=true", {"name": "nb", "image": image.pk}, format="json")
    assert response.status_code == 201, body(response)
    assert body(response)["status"] == "running"
    assert response["Location"].endswith(f"{API}/containers/{body(response)['id']}/")
    missing = Image.objects.create(name="missing", ref="ipynbsrv-test/not-there:never", public=True)
    failed = api.post(f"{API}/containers/?wait=true", {"name": "two", "image": missing.pk}, format="json")
    assert failed.status_code == 404 and body(failed)["code"] == "image_not_found"
    assert not Container.objects.filter(name="two").exists()  # as before: nothing left behind


def test_a_creation_pulls_from_the_registry_with_progress(alice, make_node, engine, registry, caplog):
    """A node that lacks the image pulls it first; the record says so while it does."""
    pusher = Docker(**backend_options(registry=registry))
    source = pusher.create_container("alice", 4242, "source", [], [], image=TEST_IMAGE)
    pusher.exec_in_container(source["pk"], ["sh", "-c", "head -c 8000000 /dev/urandom > /blob"])
    ref = pusher.create_container_image(source["pk"], "to-pull")["pk"]
    pusher.delete_container(source["pk"])
    engine.images.remove(ref, force=True)
    make_node("n1", pull_policy="if-not-present")
    pulled = Image.objects.create(name="pulled", ref=ref, public=True)
    api = client_for(alice)
    response = api.post(f"{API}/containers/", {"name": "nb", "image": pulled.pk}, format="json")
    assert response.status_code == 202, body(response)
    seen: list[str] = []
    with caplog.at_level("INFO", logger="ipynbsrv_backends.services"):
        record = settled(api, response["Location"], seen)
        assert background.wait_idle(60)
    assert record["status"] == "running", record
    assert engine.images.get(ref)
    # a local registry is too quick to poll every step (the test bed's test sees them while they
    # happen); the master says what it last wrote on the record for the pull
    pulls = [r.getMessage() for r in caplog.records if f"pulling {ref} on n1: " in r.getMessage()]
    assert len(pulls) == 1 and pulls[0].endswith(" layers, 8.0 of 8.0 MB (100 %)"), pulls
    assert all(text.startswith(("waiting to be created on n1", f"pulling {ref} on n1", "starting on n1"))
               for text in seen), seen
