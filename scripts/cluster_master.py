#!/usr/bin/env python
"""`make cluster`, the master's half: a database that knows the test bed's nodes (reached
only through HttpRemote, with each node's token and signing key), an admin account, and the
admin served on 127.0.0.1.

Run after `scripts/cluster.sh up`; `scripts/cluster.sh down` stops the admin again.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("IPYNBSRV_CLUSTER_DIR", "/tmp/ipynbsrv-cluster"))  # cluster.sh's own replaces it
PORT = int(os.environ.get("IPYNBSRV_CLUSTER_ADMIN_PORT", "8001"))
IMAGE = os.environ.get("IPYNBSRV_TEST_IMAGE", "ipynbsrv-test/busybox:latest")

sys.path.insert(0, str(REPO))
os.environ["DJANGO_SETTINGS_MODULE"] = "testproject.settings"


def facts() -> dict[str, str]:
    out = subprocess.run(["bash", str(REPO / "scripts" / "cluster.sh"), "env"], capture_output=True, text=True,
                         check=True)
    return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)


def accepted(address: str, token: str, key: str) -> bool:
    """Whether the node at ``address`` accepts requests signed with ``key``."""
    from ipynbsrv_backends import errors
    from ipynbsrv_backends.backends import HttpRemote

    with HttpRemote(f"http://{address}:8080", token=token, signing_key=key, timeout=10, retries=0) as remote:
        try:
            remote.get_node_status()
        except errors.AuthenticationError:
            return False
        except errors.BackendError:
            return True  # some other trouble: the health check below reports it
    return True


def main() -> int:
    global STATE
    info = facts()
    STATE = Path(info.get("CLUSTER_DIR") or STATE)  # honours IPYNBSRV_CLUSTER_ID like cluster.sh
    os.environ["TESTPROJECT_DB"] = str(STATE / "master.sqlite3")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from ipynbsrv_backends import services
    from ipynbsrv_backends.models import Backend, Image, Node

    count = int(info.get("CLUSTER_NODES") or 0)
    if not count:
        print("The cluster is not up: run scripts/cluster.sh up first.", file=sys.stderr)
        return 1
    call_command("migrate", verbosity=0, interactive=False)
    backend, _ = Backend.objects.update_or_create(
        name="host API", defaults={"kind": "HttpRemote", "config": {"url": "http://{address}:8080"}})
    for i in range(1, count + 1):
        # Each node's token and signing key, as cluster.sh made them: the nodes refuse
        # unsigned requests. A key rotated in since (the admin's action, ipynbsrv_rotate_key)
        # is kept while the node still accepts it.
        token = (STATE / f"n{i}" / "token").read_text().strip()
        address = info[f"CLUSTER_NODE_{i}_ADDRESS"]
        known = Node.objects.filter(name=f"n{i}").first()
        candidates = [(known.backend_config or {}).get("signing_key")] if known else []
        candidates.append((STATE / f"n{i}" / "signing_key").read_text().strip())
        key = next((k for k in candidates if k and accepted(address, token, k)), candidates[-1])
        Node.objects.update_or_create(name=f"n{i}", defaults={
            "address": address, "backend": backend, "backend_config": {"token": token, "signing_key": key}})
    Image.objects.get_or_create(ref=IMAGE, node=None, defaults={"name": "busybox (test image)", "public": True})
    if info.get("CLUSTER_SWARM_MANAGER"):  # make cluster SWARM=1: the swarm as one more node (docs/swarm.md)
        swarm, _ = Backend.objects.update_or_create(name="swarm", defaults={"kind": "DockerSwarm", "config": {
            "base_url": info["CLUSTER_SWARM_MANAGER"], "registry": info["CLUSTER_REGISTRY"], "instance": "swarm"}})
        Node.objects.update_or_create(name="swarm", defaults={"address": info["CLUSTER_NODE_1_ADDRESS"],
                                                              "backend": swarm})
        Image.objects.get_or_create(ref=info["CLUSTER_SWARM_IMAGE"], node=None,
                                    defaults={"name": "busybox (test image, for the swarm)", "public": True})
    password_file = STATE / "admin-password"
    if not password_file.exists():
        password_file.write_text(secrets.token_urlsafe(12))
        password_file.chmod(0o600)
    password = password_file.read_text().strip()
    User = get_user_model()
    admin, _ = User.objects.get_or_create(username="admin", defaults={"is_staff": True, "is_superuser": True})
    admin.is_staff = admin.is_superuser = True
    admin.set_password(password)
    admin.save()
    statuses = services.check_nodes_health(Node.objects.all())

    pidfile = STATE / "master.pid"
    url = f"http://127.0.0.1:{PORT}/admin/"
    running = pidfile.exists() and Path(f"/proc/{pidfile.read_text().strip()}").exists()
    if not running:
        log = open(STATE / "master.log", "ab")
        process = subprocess.Popen(
            [sys.executable, str(REPO / "testproject" / "manage.py"), "runserver", "--noreload", f"127.0.0.1:{PORT}"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, env=os.environ,
        )
        pidfile.write_text(str(process.pid))
        (STATE / "master.url").write_text(url)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(url, timeout=1)
                break
            except OSError:
                time.sleep(0.2)
    print()
    for name, status in statuses.items():
        print(f"  node {name}: {'healthy' if status == 0 else 'NOT healthy'}")
    print(f"  admin: {url}  (user admin, password {password})")
    print("  stop everything with: make cluster-down")
    return 0 if all(status == 0 for status in statuses.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
