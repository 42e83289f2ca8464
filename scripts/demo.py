#!/usr/bin/env python
"""`make demo`: start a "notebook" container for a demo user through the Docker backend,
print the URL where it answers, and remove it on Ctrl-C.

The container is the small test image: busybox's httpd stands in for a notebook server.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ipynbsrv_backends import errors  # noqa: E402
from ipynbsrv_backends.backends import Docker  # noqa: E402

IMAGE = os.environ.get("IPYNBSRV_DEMO_IMAGE", "ipynbsrv-test/busybox:latest")


def wait_until_answering(url: str, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def main() -> int:
    backend = Docker(instance="demo", name_prefix="ipynbsrv-demo", stop_timeout=5, pull_policy="never")
    if backend.get_status() != Docker.BACKEND_STATUS_OK:
        print("The Docker engine does not answer: run `make engine` (as root) first.", file=sys.stderr)
        return 1
    for stale in backend.get_containers():  # left by a demo that was killed hard
        backend.delete_container(stale["pk"])

    try:
        container = backend.create_container(
            "demo", 1000, "notebook",
            ports=[{"address": "127.0.0.1", "external": None, "internal": 8888}],
            volumes=[], image=IMAGE, base_url="/", mem_limit="128m", cpu_limit=0.5, pids_limit=64,
        )
    except errors.BackendError as exc:
        print(f"Could not start the demo container: {exc}", file=sys.stderr)
        return 1

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        port = container["ports"][0]["external"]
        url = f"http://127.0.0.1:{port}/"
        if not wait_until_answering(url):
            print(f"The container {container['pk']} did not answer at {url}.", file=sys.stderr)
            return 1
        print()
        print(f"  container  {container['pk']}  (owner {container['owner']}, {container['status']})")
        print(f"  notebook   {url}")
        print()
        print("Press Ctrl-C to stop and remove it.", flush=True)
        stop.wait()
    finally:
        print("\nRemoving the demo container ...", flush=True)
        backend.delete_container(container["pk"])
        print("Done.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
