"""Quotas (services/quotas.py) on the real engine (on Memory nodes in the fast tier): which
limits a user gets, each guarded path (create, start, resume, snapshot, commit) refusing with an
error that names the limit and by how much, operations at once that cannot both pass, the
users' API and the admin. The PostgreSQL pass of 20 creates at once is in test_postgres.py."""

from __future__ import annotations

import datetime
import json

import pytest
from django.contrib.auth.models import Group
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

from ipynbsrv_backends import errors, registry, services
from ipynbsrv_backends.checks import check_settings
from ipynbsrv_backends.models import Container, Image, QuotaReservation, Snapshot
from ipynbsrv_backends.services import quotas

from ..support.threads import run_together
from ..support.waiting import wait_for
from .test_api import body, client_for

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True)]

MiB = 1024**2


@pytest.fixture
def quota(master_settings):
    """Set ``QUOTAS`` (and every container's mem_limit 64 MiB, cpu_limit 0.5) for the test."""
    master_settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

    def set_quota(default=None, groups=None, users=None, **other):
        master_settings.IPYNBSRV_BACKENDS = {
            **master_settings.IPYNBSRV_BACKENDS, "CONTAINER_OPTIONS": {"mem_limit": "64m", "cpu_limit": 0.5},
            "QUOTAS": {"default": default or {}, "groups": groups or {}, "users": users or {}}, **other,
        }

    set_quota()
    return set_quota


# ---------------------------------------------------------------------------- the settings

def test_limits_come_from_the_default_the_groups_and_the_user(quota, alice, bob):
    quota(default={"memory": "1g", "snapshots": 2}, MAX_CONTAINERS_PER_USER=3,
          groups={"staff-ish": {"memory": "2g", "cpus": 1}, "big": {"memory": None, "cpus": 0.5}},
          users={"bob": {"snapshots": 10, "containers": 1}})
    assert quotas.limits_for(alice) == {"containers": 3, "memory": 1024**3, "cpus": None, "snapshots": 2,
                                        "images": None, "volume_space": None}
    for name in ("staff-ish", "big"):
        alice.groups.add(Group.objects.create(name=name))
    limits = quotas.limits_for(alice)  # the most generous of the groups: None (no limit) beats 2g
    assert limits["memory"] is None and limits["cpus"] == 1 and limits["snapshots"] == 2
    assert quotas.limits_for(bob) == {"containers": 1, "memory": 1024**3, "cpus": None, "snapshots": 10,
                                      "images": None, "volume_space": None}


@pytest.mark.parametrize("bad, words", [
    ({"default": {"memory": "lots"}}, "'memory' must be None or a number of bytes"),
    ({"default": {"disks": 3}}, "unknown quota 'disks'"),
    ({"groups": {"g": {"snapshots": -1}}}, "'snapshots' must be None or a whole number"),
    ({"people": {}}, "unknown key 'people'"),
    ([], "QUOTAS must be a dict"),
])
def test_a_bad_quota_setting_is_a_system_check_error(settings, bad, words):
    settings.IPYNBSRV_BACKENDS = {"QUOTAS": bad}
    found = [m for m in check_settings() if m.id == "ipynbsrv_backends.E017"]
    assert len(found) == 1 and words in found[0].msg, [m.msg for m in check_settings()]


def test_a_memory_quota_without_a_mem_limit_is_a_system_check_error(settings):
    settings.IPYNBSRV_BACKENDS = {"QUOTAS": {"groups": {"g": {"memory": "1g"}}}}
    found = [m for m in check_settings() if m.id == "ipynbsrv_backends.E017"]
    assert len(found) == 1 and "mem_limit" in found[0].msg


# ---------------------------------------------------------------------------- the guarded paths

def test_create_is_refused_past_the_memory_quota_and_says_by_how_much(quota, make_node, image, alice):
    make_node("n1")
    quota(default={"memory": "100m"})
    services.create_container(alice, "one", image=image)
    with pytest.raises(errors.QuotaExceededError) as refused:
        services.create_container(alice, "two", image=image)
    message = str(refused.value)
    assert "alice's memory quota of 100 MiB" in message and "64 MiB in use" in message
    assert "64 MiB more needed, 28 MiB over" in message, message
    assert list(Container.objects.values_list("name", flat=True)) == ["one"]


def test_a_stopped_container_frees_memory_and_starting_it_again_is_checked(quota, make_node, image, alice):
    make_node("n1")
    quota(default={"memory": "100m", "cpus": 1})
    one = services.create_container(alice, "one", image=image)
    services.stop_container(one)
    two = services.create_container(alice, "two", image=image)  # one holds nothing while stopped
    with pytest.raises(errors.QuotaExceededError, match="Starting alice/one would pass alice's memory quota"):
        services.start_container(one)
    assert Container.objects.get(pk=one.pk).status == "stopped"
    services.stop_container(two)
    assert services.start_container(one).status == "running"
    assert not QuotaReservation.objects.exists()  # the hold is dropped once the record says running


def test_a_suspended_container_keeps_its_memory_but_not_its_cpus(quota, make_node, image, alice):
    make_node("n1")
    quota(default={"cpus": 0.5, "memory": "128m"})
    one = services.create_container(alice, "one", image=image)
    services.suspend_container(one)
    assert quotas.usage_of(alice)["cpus"] == 0 and quotas.usage_of(alice)["memory"] == 64 * MiB
    services.create_container(alice, "two", image=image)  # the CPUs one gave up
    with pytest.raises(errors.QuotaExceededError, match=r"cpus quota of 0.5 CPUs: 0.5 CPUs in use .* 0.5 CPUs over"):
        services.resume_container(one)
    assert Container.objects.get(pk=one.pk).status == "suspended"
    snapshot = services.create_snapshot(one, "s1")
    with pytest.raises(errors.QuotaExceededError, match="Restoring alice/one .* cpus quota"):
        services.restore_snapshot(one, snapshot)  # it would come back running
    assert Container.objects.get(pk=one.pk).status == "suspended"


def test_snapshots_and_commits_count_against_their_quotas(quota, make_node, image, alice):
    make_node("n1")
    quota(default={"snapshots": 1, "images": 1})
    container = services.create_container(alice, "nb", image=image)
    services.create_snapshot(container, "s1")
    with pytest.raises(errors.QuotaExceededError, match="alice's snapshots quota of 1 snapshot: 1 snapshot in use"):
        services.create_snapshot(container, "s2")
    image_made = services.commit_container(container, "mine")
    try:
        with pytest.raises(errors.QuotaExceededError, match="images quota of 1 committed image"):
            services.commit_container(container, "again")
        assert Snapshot.objects.count() == 1 and Image.objects.filter(owner=alice).count() == 1
    finally:
        services.delete_image(image_made)


def test_snapshots_at_once_never_pass_the_quota_together(quota, make_node, image, alice):
    make_node("n1")
    quota(default={"snapshots": 2})
    container = services.create_container(alice, "nb", image=image)
    results = run_together(lambda i: services.create_snapshot(container, f"s{i}"), range(6), timeout=120)
    made = [r for r in results if isinstance(r, Snapshot)]
    refused = [r for r in results if isinstance(r, errors.QuotaExceededError)]
    assert len(made) == 2 and len(refused) == 4, results
    assert Snapshot.objects.count() == 2 and not QuotaReservation.objects.exists()


def test_a_failed_operation_gives_its_hold_back_and_a_stale_hold_expires(quota, make_node, image, alice):
    make_node("n1")
    quota(default={"snapshots": 1})
    container = services.create_container(alice, "nb", image=image)
    with pytest.raises(errors.InvalidArgumentError):
        services.create_snapshot(container, "Not A Name")
    stale = QuotaReservation.objects.create(user=alice, action="snapshot", snapshots=1)
    with pytest.raises(errors.QuotaExceededError):  # a live hold counts
        services.create_snapshot(container, "s1")
    QuotaReservation.objects.filter(pk=stale.pk).update(
        created_at=timezone.now() - quotas.RESERVATION_TTL - datetime.timedelta(seconds=1))
    services.create_snapshot(container, "s1")  # a process that died long ago holds nothing


def test_a_container_without_a_mem_limit_is_refused_under_a_memory_quota(quota, make_node, image, alice):
    make_node("n1")
    quota(default={"memory": "1g"})
    with pytest.raises(errors.QuotaExceededError, match=r"has no mem_limit.*CONTAINER_OPTIONS\['mem_limit'\]"):
        services.create_container(alice, "nb", image=image, options={"mem_limit": None})
    assert not Container.objects.exists()


def test_no_quota_no_lock(quota, make_node, image, alice):
    """Without limits a start takes no lock and writes no hold (the storm's path stays as it was)."""
    make_node("n1")
    container = services.create_container(alice, "nb", image=image)
    services.stop_container(container)
    services.start_container(container)
    assert not QuotaReservation.objects.exists()
    assert quotas.guards(alice, ("memory", "cpus")) is False


# ---------------------------------------------------------------------------- users' API, admin

def test_the_users_api_shows_limits_and_usage_and_answers_a_clear_429(quota, make_node, image, alice, bob):
    make_node("n1")
    quota(default={"memory": "100m", "containers": 5}, users={"bob": {"memory": None}})
    api = client_for(alice)
    response = api.get("/api/quota/")
    assert response.status_code == 200, response.content
    assert body(response) == {
        "limits": {"containers": 5, "memory": 100 * MiB, "cpus": None, "snapshots": None, "images": None,
                   "volume_space": None},
        "usage": {"containers": 0, "memory": 0, "cpus": 0, "snapshots": 0, "images": 0, "volume_space": None},
    }
    created = api.post("/api/containers/?wait=true", json.dumps({"name": "one", "image": image.pk}),
                       content_type="application/json")
    assert created.status_code == 201, created.content
    refused = api.post("/api/containers/", json.dumps({"name": "two", "image": image.pk}),
                       content_type="application/json")
    assert refused.status_code == 429 and body(refused)["code"] == "quota_exceeded"
    assert "memory quota of 100 MiB" in body(refused)["detail"] and "28 MiB over" in body(refused)["detail"]
    usage = body(api.get("/api/quota/"))["usage"]
    assert usage["containers"] == 1 and usage["memory"] == 64 * MiB and usage["cpus"] == 0.5
    assert body(client_for(bob).get("/api/quota/"))["limits"]["memory"] is None  # their own only
    assert client_for().get("/api/quota/").status_code in (401, 403)


def test_staff_see_each_users_limits_and_usage_in_the_admin(quota, make_node, image, alice, admin_client):
    make_node("n1")
    quota(default={"memory": "100m", "snapshots": 3})
    one = services.create_container(alice, "one", image=image)
    changelist = admin_client.get(reverse("admin:ipynbsrv_backends_container_changelist"))
    assert 'href="quotas/"' in changelist.content.decode()
    page = admin_client.get(reverse("admin:ipynbsrv_backends_container_quotas"))
    assert page.status_code == 200
    text = page.content.decode()
    assert "alice" in text and "64 MiB of 100 MiB" in text and "0 of 3" in text
    # An admin action past the owner's quota is refused with the limit's message, not a 500.
    services.stop_container(one)
    services.create_container(alice, "two", image=image)
    response = admin_client.post(reverse("admin:ipynbsrv_backends_container_changelist"),
                                 {"action": "start_containers", "_selected_action": [one.pk]}, follow=True)
    assert response.status_code == 200
    shown = " ".join(str(m) for m in get_messages(response.wsgi_request))
    assert "memory quota of 100 MiB" in shown and "28 MiB over" in shown, shown
    assert Container.objects.get(pk=one.pk).status == "stopped"


def test_the_quota_page_is_for_staff_only(quota, alice, client):
    client.force_login(alice)
    response = client.get(reverse("admin:ipynbsrv_backends_container_quotas"))
    assert response.status_code == 302 and "/login/" in response["Location"]


# ---------------------------------------------------------------------------- volume space

def test_volume_space_as_the_engine_measures_it(quota, make_node, image, alice):
    """A Docker node with volume_usage_every reports its volumes' bytes per owner in its health;
    past volume_space, creating is refused, saying by how much; starting is not."""
    node = make_node("n1", volume_usage_every=0.2)
    quota(default={"volume_space": "4m"}, CONTAINER_VOLUMES=[{"source": "u{uid}-{name}", "target": "/data"}])
    one = services.create_container(alice, "one", image=image)
    assert quotas.usage_of(alice)["volume_space"] is None  # no node has measured yet
    registry.get_backend(node).exec_in_container(one.backend_pk, ["sh", "-c", "head -c 8388608 /dev/zero > /data/f"])

    def measured() -> int:
        services.check_node_health(node)
        return (quotas.volume_space_of(alice) or 0) >= 8 * MiB

    wait_for(measured, timeout=60, interval=0.3, what="the node to report alice's 8 MiB volume")
    with pytest.raises(errors.QuotaExceededError,
                       match=r"Creating alice/two is refused: alice's volumes hold 8 MiB \(as their nodes last "
                             r"measured\), 4 MiB over the volume_space quota of 4 MiB"):
        services.create_container(alice, "two", image=image)
    services.stop_container(one)
    assert services.start_container(one).status == "running"  # to delete files, the user must get in
    usage = body(client_for(alice).get("/api/quota/"))["usage"]
    assert usage["volume_space"] >= 8 * MiB
    services.delete_container(one)  # the named volume stays, and still counts
    assert quotas.volume_space_of(alice) >= 8 * MiB


def test_volume_usage_counts_this_backends_volumes_by_owner():
    from ipynbsrv_backends.backends.docker.volume_usage import usage_by_owner

    label = {"org.ipynbsrv.instance": "a", "org.ipynbsrv.owner": "alice"}
    df = {"Volumes": [
        {"Labels": label, "UsageData": {"Size": 100}},
        {"Labels": label, "UsageData": {"Size": 50}},
        {"Labels": {**label, "org.ipynbsrv.owner": "bob"}, "UsageData": {"Size": -1}},  # not sized
        {"Labels": {**label, "org.ipynbsrv.instance": "b"}, "UsageData": {"Size": 7}},  # another instance
        {"Labels": None, "UsageData": None},
    ]}
    assert usage_by_owner(df, "a") == {"alice": 150}


def test_a_nodes_host_api_reports_its_volumes_usage(settings, engine):
    """Through the host API (what HttpRemote nodes answer the master's health checks with)."""
    from django.test import Client

    from ipynbsrv_backends.hostapi.node import reset_backend
    from ipynbsrv_backends.hostapi.wire import encode_pk

    from ..conftest import TEST_IMAGE, backend_options

    settings.IPYNBSRV_BACKENDS = {"HOSTAPI_BACKEND": "ipynbsrv_backends.backends.Docker", "HOSTAPI_TOKEN": "t" * 24,
                                  "HOSTAPI_BACKEND_OPTIONS": backend_options(volume_usage_every=0.2)}
    reset_backend()
    api = Client(HTTP_AUTHORIZATION=f"Bearer {'t' * 24}")
    try:
        body_ = {"username": "carol", "uid": 2999, "name": "vol", "ports": [], "image": TEST_IMAGE,
                 "volumes": [{"source": "quota-test-vol", "target": "/data"}]}
        created = api.post("/hostapi/containers/", json.dumps(body_), content_type="application/json")
        assert created.status_code == 201, created.content
        pk = encode_pk(created.json()["pk"])
        written = api.post(f"/hostapi/containers/{pk}/exec/", json.dumps({"cmd": ["sh", "-c",
                           "head -c 3145728 /dev/zero > /data/f"]}), content_type="application/json")
        assert written.status_code == 200, written.content

        def reported() -> bool:
            usage = api.get("/hostapi/status/").json()["resources"].get("volume_usage") or {}
            return usage.get("carol", 0) >= 3 * MiB

        wait_for(reported, timeout=60, interval=0.3, what="status/ to report carol's 3 MiB volume")
        assert api.delete(f"/hostapi/containers/{pk}/").status_code == 204
    finally:
        reset_backend()
