"""Section 8: the spawn storm onto a swarm (issue 16).

The test bed's two nodes as one swarm (``scripts/cluster.sh swarm``; node 1 the manager).
Each repetition runs three storms of ``count`` containers at once:

- through the master onto the swarm, registered as one ``DockerSwarm`` node
  (:mod:`bench.master` in its own process, as section 3);
- the baseline: ``docker service create`` made directly on the manager with docker-py, one
  one-replica service per container publishing port 8888 in host mode, each thread then
  waiting for its task to run and its port to answer;
- the same storm through the master onto the two nodes' host APIs (``HttpRemote``, section 3's
  path), so the two ways of running a fleet compare in one run.

Throughput is containers per second until the last create returned (for the baseline: until
the last task ran, which is when a ``DockerSwarm`` create returns).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import docker

from ipynbsrv_backends.backends.swarm.spec import node_address

from .common import BENCH_LABEL, Row, row
from .master import HTTP_DEADLINE, http_answers
from .storm import cluster_facts, cluster_sh, fan_out, master_storm, purge_nodes

logger = logging.getLogger(__name__)

SECTION = "8 swarm storm"
INSTANCE = "bench-swarm"
RAW_INSTANCE = "bench-raw-swarm"


def purge_services(manager: str) -> int:
    """Remove the services either storm left on the swarm; returns how many."""
    api = docker.APIClient(base_url=manager, version="auto", timeout=120)
    removed = 0
    try:
        for instance in (INSTANCE, RAW_INSTANCE):
            for service in api.services(filters={"label": f"org.ipynbsrv.instance={instance}"}):
                api.remove_service(service["ID"])
                removed += 1
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(
                (t.get("Spec", {}).get("ContainerSpec", {}).get("Labels") or {}).get("org.ipynbsrv.instance")
                in (INSTANCE, RAW_INSTANCE) for t in api.tasks()):
            time.sleep(0.2)
    finally:
        api.close()
    return removed


def _running_port(api: docker.APIClient, name: str, addresses: dict[str, str | None], deadline: float) -> str | None:
    """Wait for the service's task to run; its URL (machine address, published port)."""
    while time.monotonic() < deadline:
        for task in api.tasks(filters={"service": name, "desired-state": "running"}):
            status = task.get("Status") or {}
            ports = (status.get("PortStatus") or {}).get("Ports") or []
            if status.get("State") == "running" and ports:
                return f"http://{addresses[task['NodeID']]}:{ports[0]['PublishedPort']}/"
        time.sleep(0.1)
    return None


def raw_storm(count: int, manager: str, image: str) -> dict[str, Any]:
    """``docker service create`` straight on the manager, ``count`` at once."""
    api = docker.APIClient(base_url=manager, version="auto", timeout=300, max_pool_size=count)
    addresses = {n["ID"]: node_address(n) for n in api.nodes()}

    def make_one(index: int, mark: Any) -> float | None:
        name = f"bench-raw-swarm-s{index}"
        labels = {BENCH_LABEL: "1", "org.ipynbsrv.instance": RAW_INSTANCE}
        spec = docker.types.ContainerSpec(image, env={"OWNER": f"bench-s{index}", "BASE_URL": "/"},
                                          labels=labels, init=True)
        api.create_service(docker.types.TaskTemplate(spec), name=name, labels=labels,
                           endpoint_spec=docker.types.EndpointSpec(ports={None: (8888, "tcp", "host")}))
        url = _running_port(api, name, addresses, time.monotonic() + HTTP_DEADLINE)
        mark()
        return http_answers(url, time.monotonic() + HTTP_DEADLINE) if url else None

    try:
        return fan_out(count, make_one)
    finally:
        api.close()
        purge_services(manager)


def _swarm_ready(facts: dict[str, str]) -> tuple[str, str]:
    """Swarm mode on (``cluster.sh swarm`` is idempotent and pushes the test image to the
    registry every machine pulls from): (manager URL, image)."""
    cluster_sh("swarm")
    facts.update(cluster_facts())
    return facts["CLUSTER_SWARM_MANAGER"], facts["CLUSTER_SWARM_IMAGE"]


def measure(count: int, reps: int, workdir: Path, keep_cluster: bool = False) -> list[Row]:
    facts = cluster_facts()
    already = facts.get("CLUSTER_NODES", "0") not in ("", "0") and "host API up" in cluster_sh("status")
    cluster_sh("up", facts["CLUSTER_NODES"] if already else "2")
    facts = cluster_facts()
    swarm_before = "CLUSTER_SWARM_MANAGER" in facts
    manager, image = _swarm_ready(facts)
    sockets = [facts[f"CLUSTER_NODE_{i}_SOCKET"] for i in range(1, int(facts["CLUSTER_NODES"]) + 1)]
    config = {"base_url": manager, "registry": facts["CLUSTER_REGISTRY"], "instance": INSTANCE, "stop_timeout": 3}
    runs: list[dict[str, Any]] = []
    try:
        for rep in range(reps):
            # two master storms per repetition, each with a database of its own (named by the number
            # given; section 3 numbers its own from 0 in the same directory)
            swarm, _peaks = master_storm(count, facts, workdir, 100 + 2 * rep, extra={"swarm": config, "image": image})
            purge_services(manager)
            raw = raw_storm(count, manager, image)
            remote, _peaks = master_storm(count, facts, workdir, 101 + 2 * rep)
            purge_nodes(sockets)
            runs.append({"swarm": swarm, "raw": raw, "remote": remote})
            logger.info("swarm storm %d/%d: master->swarm %s/%d in %.1f s, service create %s/%d in %.1f s, "
                        "master->host APIs %s/%d in %.1f s", rep + 1, reps, swarm["succeeded"], count,
                        swarm["create_wall"] or -1, raw["succeeded"], count, raw["create_wall"] or -1,
                        remote["succeeded"], count, remote["create_wall"] or -1)
    finally:
        purge_services(manager)
        purge_nodes(sockets)
        if not swarm_before:
            cluster_sh("unswarm")
        if not already and not keep_cluster:
            cluster_sh("down")
    return rows_of(runs, count)


def rows_of(runs: list[dict[str, Any]], count: int) -> list[Row]:
    def series(who: str, key: str) -> list[float]:
        return [float(r[who][key]) if r[who].get(key) is not None else float("nan") for r in runs]

    def throughput(who: str) -> list[float]:
        return [count / wall for wall in series(who, "create_wall")]

    ok = all(r["swarm"]["succeeded"] == count and not r["swarm"]["error_count"] for r in runs)
    return [
        Row(SECTION, f"creations through the master onto the swarm that succeeded (of {count})",
            float(min(r["swarm"]["succeeded"] for r in runs)), None, None, None, None, len(runs), f"= {count}", ok,
            "; ".join(runs[0]["swarm"]["errors"] + runs[0]["raw"]["errors"]), ""),
        row(SECTION, "throughput (containers/s), master onto the swarm vs docker service create on the manager",
            throughput("swarm"), throughput("raw"), higher_is_better=True, scale=1.0, unit="/s",
            note="a create returns when its task runs, as the baseline's clock stops"),
        row(SECTION, "throughput (containers/s), master onto the swarm vs master onto host-API nodes",
            throughput("swarm"), throughput("remote"), higher_is_better=True, scale=1.0, unit="/s",
            note="the same storm, the same two machines"),
        row(SECTION, "time to the last container answering HTTP, master onto the swarm vs docker service create",
            series("swarm", "last_http"), series("raw", "last_http"), scale=1.0, unit="s"),
        row(SECTION, "time to the last container answering HTTP, master onto the swarm vs onto host-API nodes",
            series("swarm", "last_http"), series("remote", "last_http"), scale=1.0, unit="s"),
    ]


PAGE_TEXT = """## 8. The spawn storm onto a swarm

The test bed's two nodes as one Docker swarm (node 1 the manager, `scripts/cluster.sh swarm`),
registered on the master as one `DockerSwarm` node (`docs/swarm.md`). Each repetition runs
three storms of the same size at once: through the master onto the swarm; the baseline,
`docker service create` made directly on the manager with docker-py (one one-replica service
per container, port 8888 published in host mode, each thread waiting for its task to run);
and the same storm through the master onto the two nodes' host APIs (`HttpRemote`, section
3's path), so the two ways of running a fleet compare in one run (`bench/swarm.py`).
"""


def page_section(rows: list[Row]) -> str:
    """Section 8 of docs/benchmarks.md (its table, or a line saying it was not run)."""
    from .report import table_lines

    chosen = [item for item in rows if item.section == SECTION]
    return PAGE_TEXT + "\n" + ("\n".join(table_lines(chosen)) + "\n" if chosen else "*Not run.*\n")
