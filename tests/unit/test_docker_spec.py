"""The ``Docker`` backend's pure builders, without an engine: the create spec (labels,
environment, mounts, ports, limits, host configuration) and the records made from the
engine's JSON. What the engine does with them is tested in ``test_docker.py``."""

from __future__ import annotations

import json

import pytest

from ipynbsrv_backends import errors
from ipynbsrv_backends.backends.docker import CONTAINER_LABELS, L_INSTANCE, L_KIND, L_PORTS, L_UID, spec
from ipynbsrv_backends.backends.docker.records import (
    image_record,
    record_from_inspect,
    record_from_list,
    snapshot_record,
    status_of,
)

PORTS = [{"address": "127.0.0.1", "external": None, "internal": 8888},
         {"address": "0.0.0.0", "external": 24000, "internal": 9000}]
VOLUMES = [{"source": "/srv/alice", "target": "/home/jovyan", "mode": "ro"}, {"source": "data", "target": "/data"}]


def test_labels_set_every_container_label_so_none_is_inherited():
    labels = spec.container_labels("site", "alice", 2501, "thesis", PORTS, VOLUMES, "2026-01-01T00:00:00Z")
    assert set(labels) == set(CONTAINER_LABELS)
    assert labels[L_INSTANCE] == "site" and labels[L_KIND] == "container" and labels[L_UID] == "2501"
    assert json.loads(labels[L_PORTS]) == PORTS
    assert labels["org.ipynbsrv.clone-of"] == "" and labels["org.ipynbsrv.image"] == ""


def test_the_backends_variables_win_over_the_callers():
    env = spec.container_environment({"OWNER": "mallory", "TZ": "UTC"}, "alice", 2501, None)
    assert env == {"OWNER": "alice", "TZ": "UTC", "OWNER_UID": "2501", "BASE_URL": "/"}
    assert spec.container_environment({}, "alice", 1, "/u/alice/")["BASE_URL"] == "/u/alice/"


def test_binds_default_to_read_write():
    assert spec.binds(VOLUMES) == ["/srv/alice:/home/jovyan:ro", "data:/data:rw"]


def test_chosen_ports_fill_only_the_free_ones():
    fixed = spec.fix_ports(PORTS, {8888: 21000})
    assert [p["external"] for p in fixed] == [21000, 24000]
    assert spec.port_bindings(fixed) == {8888: ("127.0.0.1", 21000), 9000: ("0.0.0.0", 24000)}


def test_host_config_carries_limits_and_the_hardening():
    config = spec.host_config({8888: ("127.0.0.1", 21000), 9000: ("0.0.0.0", None)}, ["data:/data:rw"],
                              {"mem_limit": "1g", "cpu_limit": 1.5, "pids_limit": 64},
                              no_new_privileges=True, use_init=True)
    assert config == {
        "port_bindings": {8888: ("127.0.0.1", 21000), 9000: ("0.0.0.0",)},
        "binds": ["data:/data:rw"], "mem_limit": "1g", "nano_cpus": 1_500_000_000, "pids_limit": 64,
        "security_opt": ["no-new-privileges"], "init": True,
    }
    bare = spec.host_config({}, [], {"mem_limit": None}, no_new_privileges=False, use_init=False)
    assert bare == {"port_bindings": {}, "binds": []}


def test_limits_come_from_the_call_else_the_backend():
    defaults = {"mem_limit": 1024, "cpu_limit": None, "pids_limit": 100}
    assert spec.limits({"cpu_limit": 2}, defaults) == {"mem_limit": 1024, "cpu_limit": 2.0, "pids_limit": 100}
    with pytest.raises(errors.InvalidArgumentError):
        spec.limits({"mem_limit": "lots"}, defaults)
    assert spec.limits_of({"Memory": 2048, "NanoCpus": 500_000_000, "PidsLimit": 0}) == {
        "mem_limit": 2048, "cpu_limit": 0.5, "pids_limit": None}


@pytest.mark.parametrize(("ref", "expected"), [
    ("host:5000/a/b:v1", ("host:5000/a/b", "v1")),
    ("host:5000/a/b", ("host:5000/a/b", "latest")),
    ("busybox", ("busybox", "latest")),
    ("a/b@sha256:abc", ("a/b@sha256:abc", "")),
])
def test_split_ref(ref, expected):
    assert spec.split_ref(ref) == expected


def test_image_and_snapshot_refs():
    assert spec.image_ref("10.0.0.1:5000", "ipynbsrv", 7, "stack") == "10.0.0.1:5000/ipynbsrv-u7/stack:latest"
    assert spec.image_ref(None, "ipynbsrv", 7, "stack:v2") == "ipynbsrv-u7/stack:v2"
    with pytest.raises(errors.InvalidArgumentError, match="Invalid image name"):
        spec.image_ref(None, "ipynbsrv", 7, "Upper/Case")
    assert spec.snapshot_ref("ipynbsrv", "ipynbsrv-u7-nb", "s1") == "ipynbsrv-snapshots/ipynbsrv-u7-nb:s1"


def test_with_env_replaces_and_adds():
    assert spec.with_env(["A=1", "SECRET=old", "B=x=y"], {"SECRET": "new", "C": "3"}) == [
        "A=1", "B=x=y", "SECRET=new", "C=3"]


# --------------------------------------------------------------------------- records

LABELS = {
    "org.ipynbsrv.instance": "site", "org.ipynbsrv.kind": "container", "org.ipynbsrv.owner": "alice",
    "org.ipynbsrv.uid": "2501", "org.ipynbsrv.name": "thesis", "org.ipynbsrv.image": "nb:latest",
    "org.ipynbsrv.created": "2026-01-01T00:00:00Z", "org.ipynbsrv.ports": json.dumps(PORTS[:1]),
    "org.ipynbsrv.volumes": json.dumps(VOLUMES[1:]), "org.ipynbsrv.clone-of": "",
}


@pytest.mark.parametrize(("state", "status"), [
    ("running", "running"), ("restarting", "running"), ("paused", "suspended"), ("exited", "stopped"),
    ("created", "stopped"),
])
def test_status_of(state, status):
    assert status_of(state) == status


def test_a_record_from_the_list_and_from_an_inspection_agree():
    listed = record_from_list({"Names": ["/ipynbsrv-u2501-thesis"], "State": "running", "Labels": LABELS,
                               "Ports": [{"PrivatePort": 8888, "PublicPort": 21000, "IP": "127.0.0.1"}]})
    inspected = record_from_inspect({
        "Name": "/ipynbsrv-u2501-thesis", "State": {"Status": "running"}, "Config": {"Labels": LABELS},
        "NetworkSettings": {"Ports": {"8888/tcp": [{"HostIp": "127.0.0.1", "HostPort": "21000"}]}},
    })
    assert listed == inspected == {
        "pk": "ipynbsrv-u2501-thesis", "name": "thesis", "status": "running", "image": "nb:latest",
        "owner": "alice", "uid": 2501, "created": "2026-01-01T00:00:00Z",
        "ports": [{"address": "127.0.0.1", "external": 21000, "internal": 8888}],
        "volumes": [{"source": "data", "target": "/data"}], "clone_of": None,
    }


def test_a_stopped_container_shows_the_port_it_keeps_and_bad_labels_show_none():
    record = record_from_list({"Names": ["/x"], "State": "exited",
                               "Labels": {**LABELS, "org.ipynbsrv.ports": json.dumps([{**PORTS[0], "external": 21000}])}})
    assert record["ports"] == [{"address": "127.0.0.1", "external": 21000, "internal": 8888}]
    broken = record_from_list({"Names": ["/x"], "State": "exited", "Labels": {"org.ipynbsrv.ports": "{not json"}})
    assert broken["ports"] == [] and broken["volumes"] == [] and broken["uid"] == 0


def test_image_records_say_whether_the_backend_made_them():
    labels = {"org.ipynbsrv.instance": "site", "org.ipynbsrv.kind": "image", "org.ipynbsrv.owner": "alice",
              "org.ipynbsrv.container": "ipynbsrv-u2501-thesis", "org.ipynbsrv.image-name": "stack:latest"}
    pk = "10.0.0.1:5000/ipynbsrv-u2501/stack:latest"
    ours = image_record({"Config": {"Labels": labels}, "Created": 0, "Size": 42}, pk, "site", "10.0.0.1:5000")
    assert ours == {"pk": pk, "name": "stack:latest", "created": "1970-01-01T00:00:00Z", "size": 42, "owner": "alice",
                    "container": "ipynbsrv-u2501-thesis", "managed": True, "registry": "10.0.0.1:5000"}
    other = image_record({"Config": {"Labels": labels}, "Size": None}, "busybox:latest", "elsewhere", None)
    assert (other["managed"], other["owner"], other["name"], other["registry"], other["size"]) == (
        False, None, "busybox:latest", None, 0)


def test_snapshot_records():
    labels = {"org.ipynbsrv.snapshot": "s1", "org.ipynbsrv.container": "ipynbsrv-u1-nb"}
    assert snapshot_record({"Labels": labels, "Size": 7, "Created": 0}, "ipynbsrv-snapshots/ipynbsrv-u1-nb:s1") == {
        "pk": "ipynbsrv-snapshots/ipynbsrv-u1-nb:s1", "name": "s1", "container": "ipynbsrv-u1-nb",
        "created": "1970-01-01T00:00:00Z", "size": 7}
