"""The master's half of the spawn storm, run as its own process (so its memory is the
master's alone): ``python -m bench.master FACTS.json``.

It sets up a file SQLite database (``transaction_mode IMMEDIATE``, as testproject uses),
registers the cluster's nodes (reached only through ``HttpRemote``, with each node's token
and signing key), then ``count`` threads each call ``services.create_container`` at once and
poll their container's HTTP port. It
prints one JSON line with the timings, the containers per node and its peak RSS, after
deleting every container it made through the same services.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parent.parent
logger = logging.getLogger("bench.master")

HTTP_DEADLINE = 90.0


def http_answers(url: str, deadline: float) -> float | None:
    """Poll ``url`` until it answers 200 (bounded by ``deadline``, a monotonic time)."""
    with requests.Session() as session:
        while time.monotonic() < deadline:
            try:
                if session.get(url, timeout=2).status_code == 200:
                    return time.monotonic()
            except requests.RequestException:
                pass
            time.sleep(0.05)
    return None


def peak_rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def main(facts_path: str) -> int:
    facts = json.loads(Path(facts_path).read_text())
    os.environ["DJANGO_SETTINGS_MODULE"] = "testproject.settings"
    os.environ["TESTPROJECT_DB"] = facts["database"]
    os.environ["IPYNBSRV_BACKENDS_JSON"] = json.dumps({
        "SERVER_SELECTION_ALGORITHM": "least-loaded",
        "CONTAINER_PORTS": [8888],
        "CONTAINER_VOLUMES": [],
        "HEALTH_TTL": 30,
    })
    sys.path.insert(0, str(REPO))
    logging.basicConfig(level=logging.WARNING, format="[bench.master] %(message)s", stream=sys.stderr)
    for noisy in ("urllib3", "ipynbsrv_backends"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection

    from ipynbsrv_backends import services
    from ipynbsrv_backends.models import Backend, Container, Node
    from tests.support.threads import run_together

    count = int(facts["count"])
    call_command("migrate", verbosity=0, interactive=False)
    if facts.get("swarm"):  # bench/swarm.py: the swarm as one node (DockerSwarm through its manager)
        backend = Backend.objects.create(name="bench swarm", kind="DockerSwarm", config=facts["swarm"])
        Node.objects.create(name="swarm", address=facts["addresses"][0], backend=backend, capacity=count + 10)
    else:
        backend = Backend.objects.create(name="bench host API", kind="HttpRemote",
                                         config={"url": "http://{address}:8080", "timeout": 60, "long_timeout": 300})
        credentials = zip(facts["addresses"], facts["tokens"], facts["signing_keys"], strict=True)
        for index, (address, token, key) in enumerate(credentials):
            Node.objects.create(name=f"n{index + 1}", address=address, backend=backend, capacity=count + 10,
                                backend_config={"token": token, "signing_key": key})
    users = [get_user_model().objects.create(username=f"bench-s{i}") for i in range(count)]
    statuses = services.check_nodes_health(Node.objects.all())
    if any(status != 0 for status in statuses.values()):
        raise RuntimeError(f"not every node is healthy: {statuses}")
    connection.close()

    # when each placement (the reservation transaction) was done: measurement only
    reserved: list[float] = []
    original_reserve = services._reserve

    def timed_reserve(*args: Any, **kwargs: Any) -> Any:
        result = original_reserve(*args, **kwargs)
        reserved.append(time.monotonic())
        return result

    services._reserve = timed_reserve
    barrier = threading.Barrier(count)
    start_box: list[float] = []

    def spawn(user: Any) -> dict[str, Any]:
        outcome: dict[str, Any] = {"user": user.username}
        try:
            barrier.wait(timeout=120)
            if not start_box:
                start_box.append(time.monotonic())
            container = services.create_container(user, "nb", image=facts["image"])
            outcome["created"] = time.monotonic()
            outcome["node"] = container.node.name
            # the port's own address: a node's, or the swarm machine's that runs the task
            url = f"http://{container.ports[0]['address']}:{container.ports[0]['external']}/"
            outcome["http"] = http_answers(url, time.monotonic() + HTTP_DEADLINE)
        except Exception as exc:  # noqa: BLE001 - every failure is counted and shown
            outcome["error"] = f"{type(exc).__name__}: {exc}"
        return outcome

    results: list[dict[str, Any]] = run_together(spawn, users, timeout=600)
    start = start_box[0] if start_box else time.monotonic()
    created = [r["created"] - start for r in results if "created" in r]
    answered = [r["http"] - start for r in results if r.get("http")]
    per_node: dict[str, int] = {}
    for r in results:
        if "node" in r:
            per_node[r["node"]] = per_node.get(r["node"], 0) + 1
    peak = peak_rss_kib()

    # clean up through the same services, a few at a time
    def remove(container: Container) -> str | None:
        try:
            services.delete_container(container)
            return None
        except Exception as exc:  # noqa: BLE001
            return f"{container}: {exc}"
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        cleanup_errors = [e for e in pool.map(remove, list(Container.objects.select_related("node"))) if e]
    left = Container.objects.count()
    print(json.dumps({
        "count": count,
        "succeeded": len(created),
        "errors": [r["error"] for r in results if "error" in r][:5],
        "error_count": sum(1 for r in results if "error" in r),
        "create_wall": max(created) if created else None,
        "first_http": min(answered) if answered else None,
        "last_http": max(answered) if len(answered) == count else None,
        "answered": len(answered),
        "last_placed": max(reserved) - start if reserved else None,
        "per_node": per_node,
        "peak_rss_kib": peak,
        "cleanup_errors": cleanup_errors[:5],
        "records_left": left,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
