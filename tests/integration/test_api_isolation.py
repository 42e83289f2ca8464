"""Users cannot reach each other through the users' API, and staff can reach everything.

``test_api.py`` checks that bob gets 404 for each of alice's containers, snapshots and images
and that the database is unchanged. This adds what the engine sees (no container, snapshot
or image made, removed, started or stopped by bob), the cross-wise restores (alice's snapshot
into bob's own container, bob's snapshot into alice's), that a refusal never tells "exists"
from "does not exist", every action for staff, and malformed bodies (400, never 500).
"""

from __future__ import annotations

from typing import Any

import pytest

from ipynbsrv_backends.models import Container, Image, Snapshot

from .test_api import API, _api, body, carol, client_for, create, page  # noqa: F401 - fixtures

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True)]


def engine_view(engine, node) -> Any:
    """Every container (name, status, image id), image and volume of the node's instance."""
    label = {"label": f"org.ipynbsrv.instance={node.backend.config['instance']}"}
    containers = sorted((c.name, c.status, c.image.id) for c in engine.containers.list(all=True, filters=label))
    images = sorted(tuple(sorted(i.tags)) for i in engine.images.list(all=True, filters=label))
    volumes = sorted(v.name for v in engine.volumes.list(filters=label))
    return containers, images, volumes


def database_view() -> Any:
    return (
        sorted(Container.objects.values_list("pk", "owner__username", "status", "backend_pk")),
        sorted(Snapshot.objects.values_list("pk", "container_id", "backend_pk")),
        sorted(Image.objects.values_list("pk", "owner__username", "ref")),
    )


def test_bob_changes_nothing_on_the_engine(alice, bob, make_node, image, engine):
    node = make_node("n1")
    api, other = client_for(alice), client_for(bob)
    mine = body(create(api, "nb", image))["id"]
    snap = body(api.post(f"{API}/containers/{mine}/snapshot/", {"name": "s"}, format="json"))
    committed = body(api.post(f"{API}/containers/{mine}/commit/", {"name": "private"}, format="json"))
    theirs = body(create(other, "own", image))["id"]
    own_snap = body(other.post(f"{API}/containers/{theirs}/snapshot/", {"name": "b"}, format="json"))
    assert {"id"} <= set(snap) and {"id"} <= set(committed) and {"id"} <= set(own_snap)
    engine_before, database_before = engine_view(engine, node), database_view()

    attempts = [
        ("get", f"containers/{mine}/", None),
        *(("post", f"containers/{mine}/{step}/", None)
          for step in ("start", "stop", "restart", "suspend", "resume", "refresh")),
        ("post", f"containers/{mine}/snapshot/", {"name": "mine"}),
        ("post", f"containers/{mine}/restore/", {"snapshot": snap["id"]}),
        # bob's own snapshot, into alice's container
        ("post", f"containers/{mine}/restore/", {"snapshot": own_snap["id"]}),
        ("post", f"containers/{mine}/commit/", {"name": "stolen"}),
        ("post", f"containers/{mine}/clone/", {"name": "stolen"}),
        ("delete", f"containers/{mine}/", None),
        ("get", f"snapshots/{snap['id']}/", None),
        ("post", f"snapshots/{snap['id']}/restore/", None),
        ("delete", f"snapshots/{snap['id']}/", None),
        ("get", f"images/{committed['id']}/", None),
        ("delete", f"images/{committed['id']}/", None),
    ]
    missing = {mine: 10**6, snap["id"]: 10**6 + 1, committed["id"]: 10**6 + 2}
    for method, path, data in attempts:
        response = getattr(other, method)(f"{API}/{path}", data, format="json")
        assert response.status_code == 404, (method, path, body(response))
        # The same answer as for an id that does not exist: no oracle for "exists".
        ghost = path
        for real, fake in missing.items():
            ghost = ghost.replace(f"/{real}/", f"/{fake}/")
        assert body(getattr(other, method)(f"{API}/{ghost}", data, format="json")) == body(response), path

    # alice's snapshot into bob's own container: refused exactly as a snapshot that does not exist.
    response = other.post(f"{API}/containers/{theirs}/restore/", {"snapshot": snap["id"]}, format="json")
    ghost = other.post(f"{API}/containers/{theirs}/restore/", {"snapshot": 10**6}, format="json")
    assert response.status_code == 400 and body(response) == body(ghost)
    # ... and cloning or starting from alice's private image.
    response = create(other, "thief", clone_of=mine)
    assert response.status_code == 400 and "clone_of" in body(response)["fields"]
    response = create(other, "thief", Image.objects.get(pk=committed["id"]))
    assert response.status_code == 400 and "image" in body(response)["fields"]
    # Lists show only bob's own things.
    assert [c["id"] for c in page(other.get(f"{API}/containers/"))] == [theirs]
    assert [s["id"] for s in page(other.get(f"{API}/snapshots/"))] == [own_snap["id"]]
    assert page(other.get(f"{API}/snapshots/?container={mine}")) == []
    assert committed["id"] not in [i["id"] for i in page(other.get(f"{API}/images/"))]

    assert engine_view(engine, node) == engine_before
    assert database_view() == database_before


def test_staff_can_do_every_action_on_alices_things(alice, carol, make_node, image, engine):
    node = make_node("n1")
    api, staff = client_for(alice), client_for(carol)
    pk = body(create(api, "nb", image))["id"]
    snap = body(api.post(f"{API}/containers/{pk}/snapshot/", {"name": "s"}, format="json"))
    committed = body(api.post(f"{API}/containers/{pk}/commit/", {"name": "private"}, format="json"))

    assert staff.get(f"{API}/containers/{pk}/").status_code == 200
    for step, status in [("stop", "stopped"), ("start", "running"), ("suspend", "suspended"),
                         ("resume", "running"), ("restart", "running"), ("refresh", "running")]:
        response = staff.post(f"{API}/containers/{pk}/{step}/")
        assert response.status_code == 200 and body(response)["status"] == status, (step, body(response))
    response = staff.post(f"{API}/containers/{pk}/snapshot/", {"name": "by-staff"}, format="json")
    assert response.status_code == 201, body(response)
    by_staff = body(response)["id"]
    response = staff.post(f"{API}/containers/{pk}/restore/", {"snapshot": snap["id"]}, format="json")
    assert response.status_code == 200, body(response)
    response = staff.post(f"{API}/containers/{pk}/commit/", {"name": "by-staff"}, format="json")
    assert response.status_code == 201, body(response)
    response = staff.post(f"{API}/containers/{pk}/clone/?wait=true", {"name": "copy"}, format="json")
    assert response.status_code == 201, body(response)
    clone = body(response)["id"]
    assert staff.get(f"{API}/snapshots/{snap['id']}/").status_code == 200
    assert staff.post(f"{API}/snapshots/{snap['id']}/restore/").status_code == 200
    assert staff.delete(f"{API}/snapshots/{by_staff}/").status_code == 204
    assert staff.get(f"{API}/images/{committed['id']}/").status_code == 200
    assert staff.delete(f"{API}/images/{committed['id']}/").status_code == 204
    assert staff.delete(f"{API}/containers/{clone}/").status_code == 204
    assert staff.delete(f"{API}/containers/{pk}/").status_code == 204
    assert not Container.objects.filter(pk__in=[pk, clone]).exists()
    assert not Image.objects.filter(pk=committed["id"]).exists()
    assert engine_view(engine, node)[0] == []


def test_malformed_bodies_are_400_never_500(alice, make_node, image):
    make_node("n1")
    api = client_for(alice)
    for data in (b'{"name": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", b'{"name": "\xff\xfe"}',
                 b'{"name": "nb", "image": 1e400}', b"[]", b"\x00"):
        response = api.post(f"{API}/containers/", data, content_type="application/json")
        assert response.status_code == 400, (data[:40], response.status_code)
        assert set(body(response)) >= {"code", "detail"}
    assert not Container.objects.exists()
