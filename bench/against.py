"""``python -m bench.against REV``: this tree against the code of an earlier commit, in one run.

Ratios against docker-py move from run to run with the machine (the floor of one HTTP hop on
a shared 2-core machine has measured anywhere from 1.04 to 1.16 of a suspend), so "no slower
than before" is asked of the two codes side by side, taking turns, on the same engine:

- **suspend + resume through a host API**: two real ``ipynbsrv_hostapi`` processes serving
  ``Docker``, one running this tree's code and one ``REV``'s, each driven by this tree's
  ``HttpRemote``; docker-py's same calls (inspect, pause, inspect, unpause) as the baseline.
- **the spawn storm's master** (``--storm N``, needs the cluster test bed): ``N`` containers
  through this tree's master and through ``REV``'s (:mod:`bench.master` of each) onto the
  same two host-API nodes, and docker-py directly on the nodes, in rotating order.

``REV`` is checked out into a temporary worktree (removed at the end). Its code must speak the
same host API and ``bench.master`` interface (true of every commit since request signing).
Prints the medians and the paired ratios; exits 0 whatever they are.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import docker

from ipynbsrv_backends.backends import HttpRemote

from .common import BENCH_LABEL, IMAGE, REPO, ServerProcess, paired, purge_engine

LOCAL = "unix://var/run/docker.sock"
INSTANCE = "bench-against"


@contextmanager
def checkout(rev: str) -> Iterator[Path]:
    """``rev`` in a temporary git worktree of this repository."""
    where = Path(tempfile.mkdtemp(prefix="bench-against-")) / "tree"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(where), rev],
                   check=True, capture_output=True, text=True)
    try:
        yield where
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(where)],
                       capture_output=True, text=True)


class TreeHostAPI(ServerProcess):
    """``ipynbsrv_hostapi`` running the code of ``tree`` (its own token, no signing key)."""

    ready_path = "/health/"

    def __init__(self, logdir: Path, tree: Path, label: str) -> None:
        self.token = os.urandom(24).hex()
        backend = {"base_url": LOCAL, "instance": f"{INSTANCE}-{label}", "name_prefix": f"ba-{label}",
                   "stop_timeout": 3, "pull_policy": "never"}
        env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
        env.update({"IPYNBSRV_HOSTAPI_TOKEN": self.token, "PYTHONPATH": str(tree)})
        super().__init__(logdir, f"hostapi-{label}", [
            sys.executable, "-m", "ipynbsrv_backends.hostapi", "--listen", "127.0.0.1", "--port", "{port}",
            "--container-backend-args", json.dumps(backend), "--workers", "2", "--threads", "8",
            "--graceful-timeout", "10"], env, cwd=tree)


def suspend_resume(rev_tree: Path, rounds: int, logdir: Path) -> dict[str, list[float]]:
    """Seconds of one suspend + resume, per round, for this tree, ``REV`` and docker-py."""
    api = docker.APIClient(base_url=LOCAL, version="auto", timeout=120)
    nodes = {"this tree": TreeHostAPI(logdir, REPO, "this").start(),
             "REV": TreeHostAPI(logdir, rev_tree, "rev").start()}
    remotes = {way: HttpRemote(node.url, token=node.token, timeout=60) for way, node in nodes.items()}
    samples: dict[str, list[float]] = {"this tree": [], "REV": [], "docker-py": []}
    try:
        pks = {way: remote.create_container("bencher", 4242, "against", [], [], image=IMAGE)["pk"]
               for way, remote in remotes.items()}
        for way, remote in remotes.items():
            remote.start_container(pks[way])
        raw = api.create_container(IMAGE, labels={BENCH_LABEL: "1"})["Id"]
        api.start(raw)

        def once(way: str) -> float:
            began = time.perf_counter()
            if way == "docker-py":
                api.inspect_container(raw)
                api.pause(raw)
                api.inspect_container(raw)
                api.unpause(raw)
            else:
                remotes[way].suspend_container(pks[way])
                remotes[way].resume_container(pks[way])
            return time.perf_counter() - began

        order = list(samples)
        for index in range(rounds + 5):  # five rounds of warm-up
            shift = index % len(order)
            times = {way: once(way) for way in order[shift:] + order[:shift]}
            if index >= 5:
                for way, seconds in times.items():
                    samples[way].append(seconds)
    finally:
        for remote in remotes.values():
            remote.close()
        for node in nodes.values():
            node.stop()
        for label in ("this", "rev"):
            purge_engine(LOCAL, [f"org.ipynbsrv.instance={INSTANCE}-{label}"])
        purge_engine(LOCAL, [BENCH_LABEL])
        api.close()
    return samples


def storms(rev_tree: Path, count: int, reps: int, workdir: Path) -> dict[str, list[float]]:
    """Containers per second of ``reps`` storms of ``count`` for each master and docker-py."""
    from . import storm

    facts = storm.cluster_facts()
    already = facts.get("CLUSTER_NODES", "0") not in ("", "0") and "host API up" in storm.cluster_sh("status")
    storm.cluster_sh("up", facts["CLUSTER_NODES"] if already else "2")
    facts = storm.cluster_facts()
    nodes = range(1, int(facts["CLUSTER_NODES"]) + 1)
    sockets = [facts[f"CLUSTER_NODE_{i}_SOCKET"] for i in nodes]
    addresses = [facts[f"CLUSTER_NODE_{i}_ADDRESS"] for i in nodes]
    trees = {"this tree": REPO, "REV": rev_tree}
    throughput: dict[str, list[float]] = {"this tree": [], "REV": [], "docker-py": []}
    try:
        storm.purge_nodes(sockets)
        order = list(throughput)
        for rep in range(reps):
            for number, way in enumerate(order[rep % 3:] + order[:rep % 3]):
                if way == "docker-py":
                    result = storm.raw_storm(count, sockets, addresses)
                else:
                    result, _ = storm.master_storm(count, facts, workdir, rep * 10 + number, repo=trees[way])
                storm.purge_nodes(sockets)
                throughput[way].append(count / result["create_wall"] if result["create_wall"] else float("nan"))
    finally:
        storm.purge_nodes(sockets)
        if not already:
            storm.cluster_sh("down")
    return throughput


def report(title: str, samples: dict[str, list[float]], unit: str, scale: float, higher_is_better: bool) -> None:
    print(f"\n{title}")
    for way, values in samples.items():
        print(f"  {way:10} median {statistics.median(values) * scale:9.2f} {unit}  ({len(values)} samples)")
    for way in ("this tree", "REV"):
        ratio, low, high = paired(samples[way], samples["docker-py"])
        print(f"  {way} vs docker-py: {ratio:.3f} (spread {low:.3f}–{high:.3f})")
    ratio, low, high = paired(samples["this tree"], samples["REV"])
    better = "higher is better" if higher_is_better else "lower is better"
    print(f"  this tree vs REV: {ratio:.3f} (spread {low:.3f}–{high:.3f}; {better})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.against", description=__doc__.split("\n\n")[0])
    parser.add_argument("rev", help="the earlier commit (any git revision)")
    parser.add_argument("--rounds", type=int, default=150, help="suspend + resume rounds (default 150)")
    parser.add_argument("--storm", type=int, default=0, help="also a storm of this many containers (default: none)")
    parser.add_argument("--storm-reps", type=int, default=3, help="storm repetitions (default 3)")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-against-run-"))
    with checkout(args.rev) as tree:
        samples = suspend_resume(tree, args.rounds, workdir)
        report(f"suspend + resume through a host API process: this tree vs {args.rev}", samples, "ms", 1000.0, False)
        if args.storm:
            rates = storms(tree, args.storm, args.storm_reps, workdir)
            report(f"spawn storm of {args.storm}: this tree's master vs {args.rev}'s", rates, "/s", 1.0, True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
