"""The ``DockerSwarm`` backend's pure parts: the service spec, the records made of services,
tasks and nodes, the pin, the swarm's node summary, and its options (no engine)."""

from __future__ import annotations

import json

import pytest

from ipynbsrv_backends import errors
from ipynbsrv_backends.backends import DockerSwarm
from ipynbsrv_backends.backends.docker import spec as docker_spec
from ipynbsrv_backends.backends.swarm import spec
from ipynbsrv_backends.contract import SnapshotableContainerBackend, SuspendableContainerBackend

PORTS = [{"address": "0.0.0.0", "external": 21000, "internal": 8888}]


def _service(replicas=1, constraints=(), ports=PORTS, sid="s1", name="p-u1-nb"):
    labels = docker_spec.container_labels("inst", "alice", 1, "nb", ports, [], "2026-01-01T00:00:00Z")
    return {"ID": sid, "Spec": {"Name": name, "Labels": labels, "Mode": {"Replicated": {"Replicas": replicas}},
                                "TaskTemplate": {"Placement": {"Constraints": list(constraints)}},
                                "EndpointSpec": {"Ports": spec.endpoint_ports(ports)}}}


def _task(state="running", node="N2", sid="s1", stamp="2026-01-01T00:00:01Z", desired="running", err=None):
    status = {"State": state, "Timestamp": stamp, **({"Err": err} if err else {})}
    return {"ID": f"t-{state}-{stamp}", "ServiceID": sid, "NodeID": node, "DesiredState": desired, "Status": status}


def _node(nid, address, name, state="ready", availability="active", manager=False):
    node = {"ID": nid, "Status": {"State": state, "Addr": address}, "Spec": {"Availability": availability,
            "Labels": {spec.NODE_LABEL: name}}, "Description": {"Hostname": "vm", "Resources": {
                "NanoCPUs": 2_000_000_000, "MemoryBytes": 4 << 30}}}
    if manager:
        node["ManagerStatus"] = {"Addr": f"{address}:2377"}
        node["Status"]["Addr"] = "0.0.0.0"  # what a manager may report
    return node


NODES = {"N1": _node("N1", "10.0.0.11", "n1", manager=True), "N2": _node("N2", "10.0.0.12", "n2")}


def test_the_spec_is_one_replica_labelled_host_mode_with_limits():
    labels = {"org.ipynbsrv.instance": "inst"}
    made = spec.service_spec(name="p-u1-nb", image="reg:5000/nb:1", argv=["sh", "-c", "x"], environment={"A": "1"},
                             labels=labels, ports=PORTS, volumes=[{"source": "vol", "target": "/data", "mode": "ro"}],
                             limits={"mem_limit": 64 << 20, "cpu_limit": 0.5, "pids_limit": 64},
                             constraints=["node.role!=manager"], stop_timeout=3, use_init=True, instance="inst",
                             username="alice")
    container = made["task_template"]["ContainerSpec"]
    assert made["mode"] == {"Replicated": {"Replicas": 1}} and made["name"] == "p-u1-nb"
    assert made["labels"] == labels == container["Labels"]
    assert container["Args"] == ["sh", "-c", "x"] and "Command" not in container  # the entrypoint stays
    assert container["Env"] == ["A=1"] and container["Init"] is True and container["StopGracePeriod"] == 3_000_000_000
    assert container["Mounts"] == [{"Target": "/data", "Source": "vol", "ReadOnly": True, "Type": "volume",
                                    "VolumeOptions": {"Labels": {"org.ipynbsrv.instance": "inst",
                                                                 "org.ipynbsrv.owner": "alice",
                                                                 "org.ipynbsrv.kind": "volume"}}}]
    assert made["task_template"]["Resources"] == {"Limits": {"MemoryBytes": 64 << 20, "NanoCPUs": 500_000_000,
                                                             "Pids": 64}}
    assert made["task_template"]["Placement"] == {"Constraints": ["node.role!=manager"]}
    assert made["endpoint_spec"]["Ports"] == [{"Protocol": "tcp", "TargetPort": 8888, "PublishedPort": 21000,
                                               "PublishMode": "host"}]


def test_the_record_carries_the_address_of_the_node_running_the_task():
    record = spec.service_record(_service(), [_task(node="N2")], NODES)
    assert record["status"] == "running" and record["pk"] == "p-u1-nb" and record["owner"] == "alice"
    assert record["ports"] == [{"address": "10.0.0.12", "external": 21000, "internal": 8888}]
    assert (record["node"], record["node_id"], record["state"]) == ("n2", "N2", "running")
    on_manager = spec.service_record(_service(), [_task(node="N1")], NODES)
    assert on_manager["ports"][0]["address"] == "10.0.0.11"  # not the 0.0.0.0 a manager reports


def test_a_stopped_pinned_service_keeps_its_nodes_address():
    record = spec.service_record(_service(replicas=0, constraints=["node.id==N2"]), [], NODES)
    assert record["status"] == "stopped" and record["state"] == "stopped"
    assert record["detail"] is None
    assert record["ports"][0]["address"] == "10.0.0.12" and record["node"] == "n2"


def test_a_service_waiting_for_its_down_node_says_so():
    nodes = {**NODES, "N2": _node("N2", "10.0.0.12", "n2", state="down")}
    record = spec.service_record(_service(constraints=["node.id==N2"]), [_task(state="pending", node="")], nodes)
    assert record["status"] == "stopped" and record["state"] == "waiting for its node n2 (down)"
    assert record["detail"] == "Swarm: waiting for its node n2 (down)"
    failing = spec.service_record(_service(), [_task(state="starting", err="port in use")], NODES)
    assert failing["status"] == "stopped" and failing["state"] == "starting: port in use"


def test_running_task_prefers_the_running_and_newest():
    tasks = [_task(state="running", stamp="1"), _task(state="starting", stamp="2"),
             _task(state="running", stamp="0", sid="other"), _task(state="failed", stamp="3")]
    assert spec.running_task(tasks, "s1")["Status"]["Timestamp"] == "1"
    assert spec.running_task([_task(state="shutdown", desired="shutdown")], "s1") is None


def test_pinning_replaces_an_earlier_pin_and_keeps_other_constraints():
    template = {"Placement": {"Constraints": ["node.role!=manager", "node.id==OLD"]}, "ContainerSpec": {"Image": "x"}}
    pinned = spec.with_pin(template, "NEW")
    assert pinned["Placement"]["Constraints"] == ["node.role!=manager", "node.id==NEW"]
    assert spec.pinned_node({"Spec": {"TaskTemplate": pinned}}) == "NEW"
    assert template["Placement"]["Constraints"][-1] == "node.id==OLD"  # the input is not changed


def test_kept_ports_from_endpoints_and_labels():
    other = {"Spec": {"Name": "web", "EndpointSpec": {"Ports": [{"PublishedPort": 8080}]}}}
    assert spec.kept_ports([_service(), other]) == {21000: "p-u1-nb", 8080: "web"}


def test_the_node_summary_counts_ready_active_machines_only():
    nodes = [NODES["N1"], _node("N2", "10.0.0.12", "n2", availability="drain"), _node("N3", "10.0.0.13", "n3",
                                                                                         state="down")]
    summary = spec.node_summary(nodes, [_service()], [_task(node="N1")])
    assert [(n["name"], n["state"], n["availability"], n["manager"]) for n in summary["nodes"]] == [
        ("n1", "ready", "active", True), ("n2", "ready", "drain", False), ("n3", "down", "active", False)]
    assert summary["resources"] == {"cpu_count": 2, "memory_total": 4 << 30,
                                    "containers": {"running": 1, "total": 1}}


@pytest.mark.parametrize("source", ["/srv/other", "/srv/nb/../etc", "/srv/nbx"])
def test_bind_sources_outside_the_roots_are_refused(source):
    with pytest.raises(errors.InvalidArgumentError):
        spec.check_bind_sources([{"source": source, "target": "/x"}], ("/srv/nb",))
    assert spec.check_bind_sources([{"source": "/srv/nb/a/", "target": "/x"}], ("/srv/nb",)) == [
        {"source": "/srv/nb/a", "target": "/x", "mode": "rw"}]


def test_options_claims_and_repr():
    backend = DockerSwarm("tcp://10.0.0.11:2376", registry="10.0.0.1:5000", tls_client_cert="/c",
                          tls_client_key="very-secret", constraints=["node.labels.nb==yes"])
    assert not isinstance(backend, (SuspendableContainerBackend, SnapshotableContainerBackend))
    assert "very-secret" not in repr(backend) and "tls_client_key" in DockerSwarm.SECRET_OPTIONS
    for bad in ({"constraints": "node.role==worker"}, {"constraints": ["rm -rf"]}, {"shared_storage": "yes"},
                {"allowed_volume_roots": ["/"]}, {"colour": "blue"}, {"tls_client_cert": "/c"}):
        with pytest.raises(errors.InvalidArgumentError):
            DockerSwarm("unix:///var/run/docker.sock", **bad)
    assert json.dumps(DockerSwarm.OPTIONS)  # the admin shows them
