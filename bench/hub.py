"""Section 9: JupyterHub with this package's spawner next to DockerSpawner.

The same JupyterHub (tests/support/hub.py: the hub, configurable-http-proxy, the shared-password
authenticator, one config but for the spawner), the same notebook image, on the same machine:

- **DockerSpawner** on this machine's engine (the root namespace's dockerd), containers kept
  when stopped (``remove = False``), so a stopped server's next start is the engine's start of
  the stopped container;
- **IpynbsrvSpawner** against a master (``testproject`` under gunicorn, tests/support/hub_master.py)
  placing the servers on the two nodes of the cluster test bed (``scripts/cluster.sh``), each
  with its own dockerd, reached through their host APIs; stop suspends (the default).

Per repetition and per spawner (the two take turns, the order alternating): **N users at
once** (the hub's REST API starts N servers together; each is ready when the hub says so and
the server answers through the proxy: ``GET /user/NAME/api``); then **a culled server's
return**: a started server is stopped through the REST API as ``jupyterhub-idle-culler`` stops
it, then started again, timed until it answers through the proxy again.

``python -m bench.hub`` runs this section alone and puts its rows into docs/benchmarks.md in
place (the other sections stay as they were); ``make bench`` runs it with the rest.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from .common import REPO, Row, row

logger = logging.getLogger(__name__)

SECTION = "9 JupyterHub"
NOTEBOOK_IMAGE = os.environ.get("IPYNBSRV_NOTEBOOK_IMAGE", "ipynbsrv/notebook:latest")
READY_DEADLINE = 300.0


def answers(hub: Any, name: str, session: requests.Session) -> bool:
    """Whether ``name``'s server answers through the proxy (its version, no sign-in needed)."""
    try:
        return session.get(f"{hub.url}/user/{name}/api", timeout=3, allow_redirects=False).status_code == 200
    except requests.RequestException:
        return False


def storm(hub: Any, names: list[str]) -> dict[str, Any]:
    """Start every user's server at once; seconds until each answered through the proxy."""
    hub.api.create_users(names)
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        list(pool.map(hub.api.start, names))
    ready: dict[str, float] = {}
    session = requests.Session()
    deadline = start + READY_DEADLINE
    while len(ready) < len(names) and time.monotonic() < deadline:
        for name in names:
            if name not in ready and answers(hub, name, session):
                ready[name] = time.monotonic() - start
        time.sleep(0.1)
    session.close()
    return {"ready": len(ready), "first": min(ready.values(), default=None),
            "all": max(ready.values()) if len(ready) == len(names) else None}


def comeback(hub: Any, name: str) -> float | None:
    """Start ``name``'s server, stop it as the idle culler does (DELETE .../server), start it
    again: seconds from the second start until it answers through the proxy."""
    session = requests.Session()
    try:
        hub.api.create_users([name])
        hub.api.start(name)
        hub.api.wait_ready(name, timeout=READY_DEADLINE)
        hub.api.stop(name)
        hub.api.wait_stopped(name)
        start = time.monotonic()
        hub.api.start(name)
        deadline = start + READY_DEADLINE
        while time.monotonic() < deadline:
            if answers(hub, name, session):
                return time.monotonic() - start
            time.sleep(0.05)
        return None
    finally:
        session.close()


def stop_all(hub: Any, names: list[str], delete: bool) -> None:
    """Stop every server of ``names`` (and delete the users, which deletes their servers on
    the master for IpynbsrvSpawner), bounded."""
    for name in names:
        try:
            if hub.api.server(name) is not None:
                hub.api.stop(name)
        except AssertionError as exc:
            logger.warning("stopping %s: %s", name, exc)
    for name in names:
        try:
            hub.api.wait_stopped(name, timeout=120)
            if delete:
                hub.api.call("DELETE", f"users/{name}", ok=(204, 404))
        except AssertionError as exc:
            logger.warning("removing %s: %s", name, exc)


class Sides:
    """The two hubs (one per spawner; the same config otherwise) and what they run on."""

    def __init__(self, workdir: Path, count: int) -> None:
        self.workdir = workdir
        self.count = count
        self.run = uuid.uuid4().hex[:6]
        self.hubs: dict[str, Any] = {}
        self.master: Any = None
        self.cluster_started = False
        self.facts: dict[str, str] = {}

    def sockets(self) -> list[str]:
        return [self.facts[f"CLUSTER_NODE_{i}_SOCKET"] for i in range(1, int(self.facts["CLUSTER_NODES"]) + 1)]

    def up(self) -> None:
        from tests.support import load_image_into
        from tests.support.hub import HubSpec, dockerspawner_config, start_hub
        from tests.support.hub_master import HubMaster, MasterSpec

        from .storm import cluster_facts, cluster_sh

        facts = cluster_facts()
        already = facts.get("CLUSTER_NODES", "0") not in ("", "0") and "host API up" in cluster_sh("status")
        cluster_sh("up", facts["CLUSTER_NODES"] if already else "2")
        self.cluster_started = not already
        self.facts = facts = cluster_facts()
        directory = Path(facts["CLUSTER_DIR"])
        count = int(facts["CLUSTER_NODES"])
        wanted = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", NOTEBOOK_IMAGE], capture_output=True,
                                text=True, timeout=60).stdout.strip()
        if not wanted:
            raise RuntimeError(f"the notebook image {NOTEBOOK_IMAGE} is missing: run `make image`")
        for socket in self.sockets():
            have = subprocess.run(["docker", "-H", f"unix://{socket}", "image", "inspect", "-f", "{{.Id}}",
                                   NOTEBOOK_IMAGE], capture_output=True, text=True, timeout=60).stdout.strip()
            if have != wanted:
                logger.info("the notebook image into the node at %s", socket)
                load_image_into(socket, NOTEBOOK_IMAGE, timeout=600)
        nodes = [{"name": f"n{i}", "address": facts[f"CLUSTER_NODE_{i}_ADDRESS"],
                  "token": (directory / f"n{i}" / "token").read_text().strip(),
                  "signing_key": (directory / f"n{i}" / "signing_key").read_text().strip()} for i in range(1, count + 1)]
        self.master = HubMaster(self.workdir / "master", MasterSpec(nodes=nodes, image=NOTEBOOK_IMAGE,
                                                                     capacity=4 * self.count + 20)).setup().start()
        hub_ip = facts["CLUSTER_REGISTRY"].split(":")[0]  # the bridge: the root engine's and the nodes' containers reach it
        specs = {
            "DockerSpawner": HubSpec(dockerspawner_config(NOTEBOOK_IMAGE, self.run), hub_ip=hub_ip),
            "IpynbsrvSpawner": HubSpec(self.master.spawner_config(), hub_ip=hub_ip,
                                       env=self.master.hub_env()),
        }
        for label, spec in specs.items():
            self.hubs[label] = start_hub(spec, self.workdir / f"hub-{label}")

    def clean(self) -> None:
        from tests.support.hub import purge_docker
        from tests.support.hub_master import purge_hub_servers

        purge_docker(self.run)
        if self.facts and self.master is not None:
            purge_hub_servers(self.sockets(), self.master.spec.hub_name)

    def down(self, keep_cluster: bool) -> None:
        from .storm import cluster_sh

        for hub in self.hubs.values():
            hub.stop()
        if self.master is not None:
            self.master.stop()
        self.clean()
        if self.cluster_started and not keep_cluster:
            logger.info("taking the cluster test bed down")
            cluster_sh("down")


def measure(count: int, reps: int, workdir: Path, keep_cluster: bool = False) -> list[Row]:
    sides = Sides(workdir, count)
    results: dict[str, dict[str, list[float]]] = {
        label: {"all": [], "first": [], "return": []} for label in ("DockerSpawner", "IpynbsrvSpawner")}
    try:
        sides.up()
        for rep in range(reps):
            order = ["DockerSpawner", "IpynbsrvSpawner"]
            if rep % 2:
                order.reverse()
            for label in order:
                hub = sides.hubs[label]
                tag = "d" if label == "DockerSpawner" else "i"
                names = [f"{tag}{rep}u{i}" for i in range(count)]
                outcome = storm(hub, names)
                logger.info("%s: %d/%d users ready, all after %s s", label, outcome["ready"], count, outcome["all"])
                results[label]["all"].append(outcome["all"] if outcome["all"] is not None else float("nan"))
                results[label]["first"].append(outcome["first"] if outcome["first"] is not None else float("nan"))
                stop_all(hub, names, delete=label == "IpynbsrvSpawner")
                back = comeback(hub, f"{tag}{rep}back")
                logger.info("%s: a stopped server answered again after %s s", label, back)
                results[label]["return"].append(back if back is not None else float("nan"))
                stop_all(hub, [f"{tag}{rep}back"], delete=label == "IpynbsrvSpawner")
            sides.clean()
    finally:
        sides.down(keep_cluster)
    return rows_of(results, count)


def rows_of(results: dict[str, dict[str, list[float]]], count: int) -> list[Row]:
    ours, base = results["IpynbsrvSpawner"], results["DockerSpawner"]
    return [
        row(SECTION, f"{count} users at once: time until every server answered (IpynbsrvSpawner, 2 nodes, vs "
            "DockerSpawner, 1 engine)", ours["all"], base["all"], scale=1.0, unit="s",
            note="hub REST API → ready through the proxy"),
        row(SECTION, f"{count} users at once: the first server answered", ours["first"], base["first"],
            scale=1.0, unit="s"),
        row(SECTION, "a culled server's return: resume (IpynbsrvSpawner) vs start of the stopped container "
            "(DockerSpawner)", ours["return"], base["return"], scale=1.0, unit="s",
            note="stopped through the REST API as the idle culler does"),
    ]


PAGE_TEXT = """## 9. JupyterHub: this package's spawner next to DockerSpawner

The same JupyterHub 6 with configurable-http-proxy and the same configuration but for the
spawner (`bench/hub.py`, `tests/support/hub.py`), the same notebook image (hub mode:
`jupyterhub-singleuser`), on this machine. **Baseline: DockerSpawner** on the root namespace's
engine, containers kept when stopped. **Ours: IpynbsrvSpawner** against a master
(`testproject` under gunicorn, SQLite) that places the servers on the two nodes of the cluster
test bed through their host APIs (signed requests); stop suspends the container (the default).
The two hubs take turns, the order alternating per repetition.

- *N users at once*: the hub's REST API asks for N servers together; each counts as ready when
  it answers through the proxy (`GET /user/NAME/api`). The nodes are namespaces of the same
  2-core machine as the root engine: two nodes add no CPU here, only the path through the
  master and a node's host API.
- *A culled server's return*: a server stopped through the REST API, as
  `jupyterhub-idle-culler` stops it, then started again: ours resumes the paused container
  (the kernels and their state are still there), DockerSpawner starts the stopped container
  (a fresh single-user server, kernels gone).

How to read it: the N-at-once figures depend on what else the 2 cores do at the moment (each
server's start is mostly Python importing Jupyter), so read the spread: where it straddles 1, the
two spawners are not told apart on this machine. The return is another matter: a resume is an
unpause and the hub's check of the server, a start of a stopped container boots a new server.
"""


def page_section(rows: list[Row], run: str = "") -> str:
    """Section 9 of docs/benchmarks.md (its table, or a line saying it was not run); ``run``
    says when and how, for a run of this section alone."""
    from .report import table_lines

    chosen = [item for item in rows if item.section == SECTION]
    table = "\n".join(table_lines(chosen)) + "\n" if chosen else "*Not run.*\n"
    return PAGE_TEXT + "\n" + (run + "\n\n" if run else "") + table


def splice(page: str, section: str) -> str:
    """``page`` with its section 9 replaced by ``section`` (inserted before *Profiled and
    fixed* when the page has none)."""
    pattern = re.compile(r"^## 9\. JupyterHub.*?(?=^## )", re.S | re.M)
    if pattern.search(page):
        return pattern.sub(lambda _: section + "\n", page, count=1)
    marker = "## Profiled and fixed"
    if marker in page:
        return page.replace(marker, section + "\n" + marker, 1)
    return page.rstrip("\n") + "\n\n" + section


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hub", description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=8, help="users spawning at once (default 8)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md",
                        help="the page whose section 9 is replaced (default docs/benchmarks.md)")
    parser.add_argument("--keep-cluster", action="store_true", help="leave a cluster this run started up")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[bench.hub] %(message)s", stream=sys.stderr)
    for noisy in ("ipynbsrv_backends", "urllib3", "docker"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="ipynbsrv-bench-hub-") as tmp:
        rows = measure(args.users, args.reps, Path(tmp), keep_cluster=args.keep_cluster)
    loads = ", ".join(f"{value:.1f}" for value in load_before), ", ".join(f"{value:.1f}" for value in os.getloadavg())
    run = (f"*This section alone* (`python -m bench.hub --users {args.users} --reps {args.reps}`), "
           f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, on {os.cpu_count()} cores; load average before "
           f"{loads[0]}, after {loads[1]} (the machine is shared: read the spread).")
    from .report import terminal

    print(terminal(rows))
    if args.out:
        page = args.out.read_text() if args.out.exists() else ""
        args.out.write_text(splice(page, page_section(rows, run)))
        logger.info("wrote section 9 of %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
