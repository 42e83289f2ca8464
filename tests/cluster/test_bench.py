"""The benchmark harness runs end to end with tiny sizes, so it does not rot. No timing is
asserted here (timings belong to ``make bench``): only that every row is there and every
ratio is a number."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from ..testbed import REPO, cluster  # noqa: F401 - the fixture

pytestmark = [pytest.mark.engine, pytest.mark.cluster]

OPS = ("create+start", "stop", "start", "suspend", "resume", "exec", "delete")


@pytest.mark.timeout(1000)
def test_quick_bench_has_every_row(cluster, tmp_path):
    out, page = tmp_path / "rows.json", tmp_path / "benchmarks.md"
    run = subprocess.run([sys.executable, "-m", "bench", "--quick", "--json", str(out), "--out", str(page)],
                         cwd=REPO, capture_output=True, text=True, timeout=900,
                         env={k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"})
    assert run.returncode == 0, f"{run.stdout[-3000:]}\n{run.stderr[-5000:]}"
    rows = json.loads(out.read_text())["rows"]
    names = [row["name"] for row in rows]
    for op in OPS:
        assert f"{op}: Docker vs docker-py (same calls)" in names
        assert f"{op}: HttpRemote→host API→Docker vs docker-py (same calls)" in names
        assert f"{op}: Docker vs docker-py (minimal calls)" in names
    for op in ("suspend", "resume"):
        assert f"{op}: docker-py behind a bare WSGI app under gunicorn vs docker-py (same calls)" in names
        assert f"{op}: HttpRemote→host API→Docker vs the bare hop" in names
    for size in (2, 5):
        assert f"get_containers, {size} containers: time vs one raw list call" in names
    sections = {row["section"][0] for row in rows}
    assert sections == {"1", "2", "3", "4", "5", "6", "7", "8", "9"}
    for clients in ("1 client", "16 clients"):  # the access path's ways, each against its baseline
        assert f"p50, {clients}: the package's path (nginx, docs/proxy-nginx.conf) vs direct" in names
        assert f"req/s, {clients}: the package's path (nginx, docs/proxy-nginx.conf) vs configurable-http-proxy" \
            in names
    for row in rows:
        if row["section"][0] in "12467" or row["name"].startswith(("throughput", "time to")):
            assert isinstance(row["ratio"], float) and math.isfinite(row["ratio"]), row
    storm = {row["name"]: row for row in rows if row["section"].startswith("3")}
    assert storm["creations through the master that succeeded (of 4)"]["met"] is True
    assert storm["containers per node, largest difference (least-loaded)"]["met"] is True
    swarm = {row["name"]: row for row in rows if row["section"].startswith("8")}
    assert swarm["creations through the master onto the swarm that succeeded (of 4)"]["met"] is True
    assert {name.split(",")[0] for name in swarm} >= {"throughput (containers/s)", "time to the last container answering HTTP"}
    hub = [row for row in rows if row["section"].startswith("9")]
    assert len(hub) == 3 and all(isinstance(row["ratio"], float) and math.isfinite(row["ratio"]) for row in hub), hub
    engine_calls = next(row for row in rows if row["name"].startswith("engine requests per get_containers"))
    assert engine_calls["met"] is True  # one request at every size
    text = page.read_text()
    for heading in ("## 1. Per-operation overhead", "## 2. Listing at scale", "## 3. Spawn storm",
                    "## 4. Host API cost", "## 5. Memory", "## 6. The notebook access path",
                    "## 7. The master at scale", "## 8. The spawn storm onto a swarm",
                    "## 9. JupyterHub: this package's spawner next to DockerSpawner"):
        assert heading in text
    assert "--quick" in text
    assert "- **suspend**: docker-py" in text and "the bare hop alone" in text  # computed from the rows
    # nothing left behind on the local engine
    import docker

    client = docker.APIClient(base_url="unix://var/run/docker.sock", version="auto", timeout=30)
    try:
        assert client.containers(all=True, filters={"label": "org.ipynbsrv.bench"}) == []
        for instance in ("bench-ops", "bench-remote", "bench-raw", "bench-list"):
            assert client.containers(all=True, filters={"label": f"org.ipynbsrv.instance={instance}"}) == []
    finally:
        client.close()


def test_against_an_earlier_commit_compares_both_codes_in_one_run(cluster):
    """``python -m bench.against REV``: both codes' host API processes and masters run, and the
    paired ratios are numbers (REV is this very commit here: any commit will do)."""
    run = subprocess.run([sys.executable, "-m", "bench.against", "HEAD", "--rounds", "3", "--storm", "2",
                          "--storm-reps", "1"],
                         cwd=REPO, capture_output=True, text=True, timeout=600,
                         env={k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"})
    assert run.returncode == 0, f"{run.stdout[-3000:]}\n{run.stderr[-5000:]}"
    ratios = [line.split(":", 1)[1].split()[0] for line in run.stdout.splitlines()
              if line.strip().startswith("this tree vs REV:")]
    assert len(ratios) == 2 and all(math.isfinite(float(r)) for r in ratios), run.stdout
    listed = subprocess.run(["git", "-C", str(REPO), "worktree", "list"], capture_output=True, text=True).stdout
    assert "bench-against-" not in listed, "the temporary worktree was left behind"
