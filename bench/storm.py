"""Sections 3 and 5: the spawn storm on the two-node cluster test bed, and the memory of
the master and of a node's host API during it.

Each repetition runs the master's storm (:mod:`bench.master`, its own process) and then the
baseline: the same number of threads creating the same containers with docker-py directly
on the nodes' engines (their unix sockets), split evenly, each then polling its container's
HTTP port the same way. Throughput is containers per second until the last create returned.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import docker

from .common import BENCH_LABEL, IMAGE, REPO, Row, purge_engine, row, rss_kib
from .master import HTTP_DEADLINE, http_answers

logger = logging.getLogger(__name__)

SCRIPT = REPO / "scripts" / "cluster.sh"
NODE_INSTANCE = "cluster"  # what scripts/cluster.sh gives every node's backend


def cluster_sh(*args: str, timeout: float = 300) -> str:
    env = {**os.environ, "VENV_BIN": str(Path(sys.executable).parent)}
    out = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"cluster.sh {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout


def cluster_facts() -> dict[str, str]:
    return dict(line.split("=", 1) for line in cluster_sh("env").splitlines() if "=" in line)


def descendants(pid: int) -> list[int]:
    """Every process under ``pid`` (a gunicorn master's workers, say)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents.setdefault(int(stat[stat.rfind(")") + 2:].split()[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class Sampler:
    """Peak RSS of some process trees, sampled every 0.1 s in a thread."""

    def __init__(self) -> None:
        self.roots: dict[str, int] = {}
        self.peaks: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def watch(self, name: str, pid: int) -> None:
        self.roots[name] = pid

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, pid in list(self.roots.items()):
                total = rss_kib(pid) + sum(rss_kib(child) for child in descendants(pid))
                self.peaks[name] = max(self.peaks.get(name, 0), total)
            self._stop.wait(0.1)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def fan_out(count: int, make_one: Any) -> dict[str, Any]:
    """``count`` threads released at once, each running ``make_one(index, mark)``: it makes one
    container, calls ``mark()`` when its create returned and returns when (monotonic) it
    answered HTTP, or None. The storm's summary, timed from the release."""
    barrier = threading.Barrier(count)
    results: list[dict[str, Any]] = []
    lock = threading.Lock()
    start_box: list[float] = []

    def spawn(index: int) -> None:
        outcome: dict[str, Any] = {}
        try:
            barrier.wait(timeout=120)
            if not start_box:
                start_box.append(time.monotonic())
            outcome["http"] = make_one(index, lambda: outcome.setdefault("created", time.monotonic()))
        except Exception as exc:  # noqa: BLE001 - counted and shown
            outcome["error"] = f"{type(exc).__name__}: {exc}"
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=spawn, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    start = start_box[0] if start_box else time.monotonic()
    created = [r["created"] - start for r in results if "created" in r]
    answered = [r["http"] - start for r in results if r.get("http")]
    return {
        "succeeded": len(created),
        "errors": [r["error"] for r in results if "error" in r][:5],
        "create_wall": max(created) if created else None,
        "first_http": min(answered) if answered else None,
        "last_http": max(answered) if len(answered) == count else None,
    }


def raw_storm(count: int, sockets: list[str], addresses: list[str]) -> dict[str, Any]:
    """docker-py creating ``count`` containers at once straight on the nodes' engines."""
    clients = [docker.APIClient(base_url=f"unix://{sock}", version="auto", timeout=300, max_pool_size=count)
               for sock in sockets]

    def make_one(index: int, mark: Any) -> float | None:
        node = index % len(clients)
        api, address = clients[node], addresses[node]
        name = f"bench-raw-s{index}"
        host_config = api.create_host_config(port_bindings={8888: (address,)}, init=True,
                                             security_opt=["no-new-privileges"])
        api.create_container(IMAGE, name=name, ports=[8888], host_config=host_config,
                             labels={BENCH_LABEL: "1", "org.ipynbsrv.instance": "bench-raw"},
                             environment={"OWNER": f"bench-s{index}", "BASE_URL": "/"})
        api.start(name)
        port = api.inspect_container(name)["NetworkSettings"]["Ports"]["8888/tcp"][0]["HostPort"]
        mark()
        return http_answers(f"http://{address}:{port}/", time.monotonic() + HTTP_DEADLINE)

    try:
        return fan_out(count, make_one)
    finally:
        for sock in sockets:
            purge_engine(f"unix://{sock}", ["org.ipynbsrv.instance=bench-raw"])
        for client in clients:
            client.close()


def purge_nodes(sockets: list[str]) -> int:
    """Whatever a storm left on the nodes: the master's (owners bench-s*) and the baseline's."""
    removed = 0
    for sock in sockets:
        api = docker.APIClient(base_url=f"unix://{sock}", version="auto", timeout=120)
        try:
            for item in api.containers(all=True, filters={"label": f"org.ipynbsrv.instance={NODE_INSTANCE}"}):
                if (item.get("Labels") or {}).get("org.ipynbsrv.owner", "").startswith("bench-s"):
                    api.remove_container(item["Id"], force=True)
                    removed += 1
        finally:
            api.close()
        removed += purge_engine(f"unix://{sock}", [BENCH_LABEL])
    return removed


def master_storm(count: int, facts: dict[str, str], workdir: Path, rep: int,
                 extra: dict[str, Any] | None = None, repo: Path = REPO) -> tuple[dict[str, Any], dict[str, int]]:
    """The master's storm in its own process, running the code in ``repo`` (this tree, or
    another commit's for :mod:`bench.against`); ``extra`` goes into its facts (``swarm``: the
    DockerSwarm configuration of a swarm node registered instead of the host API nodes)."""
    count_nodes = int(facts["CLUSTER_NODES"])
    node_dirs = [Path(facts["CLUSTER_DIR"]) / f"n{i}" for i in range(1, count_nodes + 1)]
    payload = {
        "database": str(workdir / f"master-{rep}.sqlite3"),
        "count": count,
        "image": IMAGE,
        "addresses": [facts[f"CLUSTER_NODE_{i}_ADDRESS"] for i in range(1, count_nodes + 1)],
        "tokens": [(d / "token").read_text().strip() for d in node_dirs],
        "signing_keys": [(d / "signing_key").read_text().strip() for d in node_dirs],  # the nodes require signatures
        **(extra or {}),
    }
    facts_path = workdir / f"storm-{rep}.json"
    facts_path.write_text(json.dumps(payload))
    facts_path.chmod(0o600)
    with Sampler() as sampler:
        for index, directory in enumerate(node_dirs):
            sampler.watch(f"n{index + 1}", int((directory / "hostapi.pid").read_text()))
        command = [sys.executable, "-m", "bench.master", str(facts_path)]
        profile_dir = os.environ.get("BENCH_PROFILE_DIR")
        if profile_dir:  # a wall-clock profile of every thread of the master (py-spy, the bench extra)
            command = [str(Path(sys.executable).parent / "py-spy"), "record", "--threads", "--idle", "--format", "raw",
                       "--rate", "50", "--output", str(Path(profile_dir) / f"master-{rep}.txt"), "--", *command]
        process = subprocess.Popen(command, cwd=repo,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        sampler.watch("master", process.pid)
        try:
            out, err = process.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
    facts_path.unlink()
    if process.returncode != 0:
        raise RuntimeError(f"the master's storm failed ({process.returncode}):\n{err[-3000:]}")
    answer = [line for line in out.splitlines() if line.startswith("{")]
    if not answer:
        raise RuntimeError(f"the master's storm printed no result:\n{out[-2000:]}\n{err[-2000:]}")
    return json.loads(answer[-1]), dict(sampler.peaks)


def measure(count: int, reps: int, workdir: Path, keep_cluster: bool = False) -> tuple[list[Row], dict[str, Any]]:
    facts = cluster_facts()
    already = facts.get("CLUSTER_NODES", "0") not in ("", "0") and "host API up" in cluster_sh("status")
    if not already:
        logger.info("bringing the cluster test bed up (cluster id %s)", facts.get("CLUSTER_ID"))
        cluster_sh("up", "2")
        facts = cluster_facts()
    else:  # restarts only a host API an older cluster.sh started without a signing key
        cluster_sh("up", facts["CLUSTER_NODES"])
    sockets = [facts[f"CLUSTER_NODE_{i}_SOCKET"] for i in range(1, int(facts["CLUSTER_NODES"]) + 1)]
    addresses = [facts[f"CLUSTER_NODE_{i}_ADDRESS"] for i in range(1, int(facts["CLUSTER_NODES"]) + 1)]
    runs: list[dict[str, Any]] = []
    try:
        purge_nodes(sockets)
        for rep in range(reps):
            ours, peaks = master_storm(count, facts, workdir, rep)
            left = purge_nodes(sockets)
            base = raw_storm(count, sockets, addresses)
            runs.append({"master": ours, "raw": base, "peaks_kib": peaks, "left_on_nodes": left})
            logger.info("storm %d/%d: master %s/%d in %.1f s, docker-py %s/%d in %.1f s", rep + 1, reps,
                        ours["succeeded"], count, ours["create_wall"] or -1, base["succeeded"], count,
                        base["create_wall"] or -1)
    finally:
        purge_nodes(sockets)
        if not already and not keep_cluster:
            logger.info("taking the cluster test bed down")
            cluster_sh("down")
    return rows_of(runs, count), {"runs": runs, "count": count}


def rows_of(runs: list[dict[str, Any]], count: int) -> list[Row]:
    def series(who: str, key: str) -> list[float]:
        return [float(r[who][key]) if r[who].get(key) is not None else float("nan") for r in runs]

    all_ok = all(r["master"]["succeeded"] == count and not r["master"]["error_count"] for r in runs)
    spreads = [max(r["master"]["per_node"].values()) - min(r["master"]["per_node"].values())
               if len(r["master"]["per_node"]) > 1 else count for r in runs]
    rows = [
        Row("3 spawn storm", f"creations through the master that succeeded (of {count})",
            float(min(r["master"]["succeeded"] for r in runs)), None, None, None, None, len(runs),
            f"= {count}", all_ok, "; ".join(runs[0]["master"]["errors"]), ""),
        Row("3 spawn storm", "containers per node, largest difference (least-loaded)",
            float(max(spreads)), None, None, None, None, len(runs), "≤ 1", max(spreads) <= 1,
            ", ".join(f"{k}: {v}" for k, v in sorted(runs[-1]["master"]["per_node"].items())), ""),
    ]
    throughput_ours = [count / w for w in series("master", "create_wall")]
    throughput_base = [count / w for w in series("raw", "create_wall")]
    rows.append(row("3 spawn storm", "throughput (containers/s) through the master vs docker-py on the nodes",
                    throughput_ours, throughput_base, target=0.80, higher_is_better=True, scale=1.0, unit="/s"))
    rows.append(row("3 spawn storm", "time to the first container answering HTTP, master vs docker-py",
                    series("master", "first_http"), series("raw", "first_http"), scale=1.0, unit="s"))
    rows.append(row("3 spawn storm", "time to the last container answering HTTP, master vs docker-py",
                    series("master", "last_http"), series("raw", "last_http"), scale=1.0, unit="s"))
    placed = [float(r["master"]["last_placed"]) for r in runs if r["master"].get("last_placed") is not None]
    if placed:
        rows.append(Row("3 spawn storm", "time until the master had placed every container (its database turns)",
                        statistics.median(placed), None, None, None, None, len(placed), "", None,
                        "master only: the serial part of a creation", "s"))
    masters = [r["master"]["peak_rss_kib"] / 1024 for r in runs]
    nodes = [r["peaks_kib"].get("n1", 0) / 1024 for r in runs]
    sampled = [r["peaks_kib"].get("master", 0) / 1024 for r in runs]
    rows.append(Row("5 memory", "peak RSS of the master process during the storm", max(masters), None,
                    None, None, None, len(runs), "", None,
                    f"its own VmHWM (sampled from outside: {max(sampled):.0f} MiB); includes the harness's "
                    "100 polling threads", "MiB"))
    rows.append(Row("5 memory", "peak RSS of a node's host API (gunicorn master + 2 workers)", max(nodes), None,
                    None, None, None, len(runs), "", None, "node n1, summed from /proc every 0.1 s", "MiB"))
    return rows
