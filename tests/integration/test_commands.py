"""``ipynbsrv_nodes`` and ``ipynbsrv_reconcile`` against the real engine: output, JSON, exit
statuses and the repairs they make."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from ipynbsrv_backends import registry, services
from ipynbsrv_backends.models import Container, Node

from ..conftest import TEST_IMAGE

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("master_settings")]

ROOT = Path(__file__).resolve().parent.parent.parent
DOWN = "unix:///nonexistent/docker.sock"
SECRET = "registry-password-s3cr3t"


def run(name: str, *args: str) -> tuple[int, str, str]:
    """Call a command in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command(name, *args, stdout=out, stderr=err, no_color=True)
    except CommandError as exc:
        return exc.returncode, out.getvalue(), err.getvalue() + str(exc)
    return 0, out.getvalue(), err.getvalue()


def run_process(name: str, *args: str, settings: Any) -> subprocess.CompletedProcess:
    """Run a command as its own process, on the test database, as an operator would."""
    env = {**os.environ, "TESTPROJECT_DB": settings.DATABASES["default"]["NAME"],
           "IPYNBSRV_BACKENDS_JSON": json.dumps(settings.IPYNBSRV_BACKENDS)}
    return subprocess.run([sys.executable, str(ROOT / "testproject" / "manage.py"), name, *args],
                          capture_output=True, text=True, env=env, timeout=120, cwd=ROOT)


# ---------------------------------------------------------------------------- ipynbsrv_nodes

def test_nodes_lists_health_load_and_state(make_node, image, alice):
    make_node("n1", capacity=5)
    drained = make_node("n2")
    Node.objects.filter(pk=drained.pk).update(draining=True)
    services.create_container(alice, "nb", image=image)

    status, out, err = run("ipynbsrv_nodes")
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "HEALTH", "CONTAINERS", "STATE", "CHECKED", "LAST", "ERROR"]
    assert lines[1].split()[:4] == ["n1", "ok", "1/5", "enabled"]
    assert lines[2].split()[:4] == ["n2", "ok", "0/10", "enabled,draining"]


def test_a_down_enabled_node_fails_the_command(make_node):
    make_node("up")
    make_node("down", base_url=DOWN)
    status, out, err = run("ipynbsrv_nodes")
    assert status == 1
    assert "1 enabled node(s) not healthy: down." in err
    row = next(line for line in out.splitlines() if line.startswith("down"))
    assert row.split()[1] in ("stopped", "error") and len(row.split()) > 5  # with its last error
    assert Node.objects.get(name="down").last_checked is not None  # checked now

    Node.objects.filter(name="down").update(enabled=False)  # a disabled node may be down
    status, out, err = run("ipynbsrv_nodes")
    assert status == 0, err
    assert "disabled" in next(line for line in out.splitlines() if line.startswith("down"))


def test_cached_health_is_not_checked_again(make_node):
    node = make_node("n1")
    status, out, err = run("ipynbsrv_nodes", "--cached")
    assert status == 1 and "n1" in err  # never checked: not known to be up
    assert out.splitlines()[1].split()[1] == "unknown"
    assert Node.objects.get(pk=node.pk).last_checked is None

    run("ipynbsrv_nodes")
    # The engine "goes away": --cached still reports the last check, and asks nothing.
    node.refresh_from_db()
    node.backend.config = {**node.backend.config, "base_url": DOWN}
    node.backend.save()
    status, out, err = run("ipynbsrv_nodes", "--cached")
    assert status == 0 and out.splitlines()[1].split()[1] == "ok"
    status, out, err = run("ipynbsrv_nodes")
    assert status == 1


def test_nodes_json_and_no_secrets(make_node, image, alice):
    make_node("n1", registry_username="robot", registry_password=SECRET)
    make_node("down", base_url=DOWN)
    services.create_container(alice, "nb", image=image)
    status, out, err = run("ipynbsrv_nodes", "--json")
    assert status == 1
    data = json.loads(out)
    assert data["down"] == ["down"]
    first = data["nodes"][1]
    assert first["name"] == "n1" and first["health"] == "ok" and first["containers"] == 1
    assert set(first) == {"name", "address", "backend", "kind", "health", "enabled", "draining", "containers",
                          "capacity", "last_checked", "last_seen", "last_error"}
    assert SECRET not in out + err and "registry_password" not in out
    status, out, err = run("ipynbsrv_nodes", "--node", "n1", "--json")
    assert status == 0 and [n["name"] for n in json.loads(out)["nodes"]] == ["n1"]


def test_nodes_usage_errors(make_node):
    make_node("n1")
    status, out, err = run("ipynbsrv_nodes", "--node", "nope")
    assert status == 2 and "nope" in err and "n1" in err


def test_nodes_exit_status_of_the_process(make_node, master_settings):
    make_node("up")
    result = run_process("ipynbsrv_nodes", settings=master_settings)
    assert result.returncode == 0, result.stderr
    make_node("down", base_url=DOWN)
    result = run_process("ipynbsrv_nodes", settings=master_settings)
    assert result.returncode == 1 and "down" in result.stderr
    result = run_process("ipynbsrv_nodes", "--node", "nope", settings=master_settings)
    assert result.returncode == 2


def test_no_nodes(db):
    status, out, err = run("ipynbsrv_nodes")
    assert status == 0 and "No nodes" in out and "No enabled node" in err


# ---------------------------------------------------------------------------- ipynbsrv_reconcile

def test_reconcile_in_step(make_node, image, alice):
    make_node("n1")
    services.create_container(alice, "nb", image=image)
    status, out, err = run("ipynbsrv_reconcile")
    assert status == 0, out + err
    assert out.strip() == "n1: in step"


def test_reconcile_reports_drift_and_changes_nothing_else(drifted):
    status, out, err = run("ipynbsrv_reconcile")
    assert status == 1 and "Drift remains on n1" in err
    assert "n1: drift remains, 1 record(s) brought up to date" in out
    assert f"missing      {drifted['gone']}" in out
    assert f"orphan       {drifted['orphan']}" in out
    assert Container.objects.get(pk=drifted["gone"].pk).status == "running"
    assert Container.objects.get(pk=drifted["kept"].pk).status == "stopped"  # statuses are kept up to date
    assert not Container.objects.filter(backend_pk=drifted["orphan"]).exists()
    assert drifted["backend"].container_exists(drifted["orphan"])


def test_reconcile_mark_lost_and_adopt(drifted, alice):
    status, out, err = run("ipynbsrv_reconcile", "--mark-lost")
    assert status == 1  # the orphan is still there
    assert f"marked lost  {drifted['gone']}" in out
    assert Container.objects.get(pk=drifted["gone"].pk).status == "lost"

    status, out, err = run("ipynbsrv_reconcile", "--mark-lost", "--adopt")
    assert status == 0, out + err
    assert f"adopted      {drifted['orphan']}" in out
    adopted = Container.objects.get(backend_pk=drifted["orphan"])
    assert adopted.owner == alice and adopted.name == "orphan" and adopted.node == drifted["node"]
    assert run("ipynbsrv_reconcile")[0] == 0


def test_reconcile_remove_orphans(drifted):
    status, out, err = run("ipynbsrv_reconcile", "--remove-orphans", "--mark-lost")
    assert status == 0, out + err
    assert f"removed      {drifted['orphan']}" in out
    assert not drifted["backend"].container_exists(drifted["orphan"])
    assert not Container.objects.filter(backend_pk=drifted["orphan"]).exists()


def test_reconcile_an_orphan_nobody_owns_remains_drift(make_node, engine):
    node = make_node("n1")
    stray = registry.get_backend(node).create_container("nobody-known", 99999, "stray", [], [], image=TEST_IMAGE)
    status, out, err = run("ipynbsrv_reconcile", "--adopt")
    assert status == 1
    assert "problem" in out and "nobody-known" in out
    assert registry.get_backend(node).container_exists(stray["pk"])


def test_reconcile_json_and_node_selection(drifted, make_node):
    make_node("other")
    status, out, err = run("ipynbsrv_reconcile", "--json", "--node", "n1", "--mark-lost")
    assert status == 1
    [report] = json.loads(out)["nodes"]
    assert report["node"] == "n1" and report["reachable"] is True
    assert report["missing"] == [str(drifted["gone"])] and report["marked_lost"] == [str(drifted["gone"])]
    assert report["orphans"] == [drifted["orphan"]]
    assert report["drift_remaining"] == {"orphans": [drifted["orphan"]]}
    status, out, err = run("ipynbsrv_reconcile", "--json", "--node", "other")
    assert status == 0 and json.loads(out)["nodes"][0]["drift_remaining"] == {}


def test_reconcile_an_unreachable_node(make_node):
    make_node("down", base_url=DOWN)
    status, out, err = run("ipynbsrv_reconcile")
    assert status == 1
    assert out.startswith("down: unreachable:")


def test_reconcile_usage_errors(make_node, master_settings):
    make_node("n1")
    status, out, err = run("ipynbsrv_reconcile", "--node", "missing")
    assert status == 2 and "missing" in err
    result = run_process("ipynbsrv_reconcile", "--adopt", "--remove-orphans", settings=master_settings)
    assert result.returncode == 2 and "not allowed with" in result.stderr
    result = run_process("ipynbsrv_reconcile", settings=master_settings)
    assert result.returncode == 0, result.stdout + result.stderr
