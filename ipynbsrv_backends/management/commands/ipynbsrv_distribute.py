"""Put an image on every node (or the named ones) ahead of time, so a class's first spawn
does not wait for a pull."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from django.core.management.base import CommandError, CommandParser

from ... import audit, errors
from ...contract import ImagePullingContainerBackend
from ...registry import get_backend
from ._common import EXIT_PROBLEM, AuditedCommand, select_nodes


class Command(AuditedCommand):
    help = "Pull an image onto every enabled node (or the named ones), showing progress per node."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("image", help="the image reference, e.g. 10.0.0.1:5000/notebooks/python:3.11")
        parser.add_argument("--node", action="append", dest="nodes", metavar="NAME",
                            help="only this node (repeatable); default: every enabled node")
        parser.add_argument("--parallel", type=int, default=4, help="nodes pulling at once (default 4)")

    def handle(self, *args: Any, image: str, nodes: list[str] | None, parallel: int, **options: Any) -> None:
        targets = select_nodes(nodes)
        if not nodes:
            targets = [node for node in targets if node.enabled]
        if not targets:
            raise CommandError("There is no enabled node to distribute to.")
        if parallel < 1:
            raise CommandError("--parallel must be at least 1.")
        total = len(targets)
        self.stdout.write(f"Distributing {image} to {total} node(s): {', '.join(n.name for n in targets)}")

        def pull(node: Any) -> tuple[Any, float, str | None]:
            started = time.monotonic()
            try:
                backend = get_backend(node)
                if not isinstance(backend, ImagePullingContainerBackend):
                    return node, 0.0, f"its backend ({type(backend).__name__}) cannot pull images"
                record = backend.pull_container_image(image)
                size = record.get("size") or 0
                return node, time.monotonic() - started, None if size else "pulled, but the node reports no size"
            except errors.BackendError as exc:
                return node, time.monotonic() - started, str(exc)

        failures = 0
        done = 0
        with ThreadPoolExecutor(max_workers=min(parallel, total)) as pool:
            futures = [pool.submit(pull, node) for node in targets]
            for future in as_completed(futures):
                node, seconds, problem = future.result()
                done += 1
                prefix = f"[{done}/{total}] {node.name}:"
                audit.record("image.distribute", node, error=problem, details={"image": image})
                if problem is None:
                    self.stdout.write(self.style.SUCCESS(f"{prefix} ready ({seconds:.1f} s)"))
                else:
                    failures += 1
                    self.stdout.write(self.style.ERROR(f"{prefix} FAILED: {problem}"))
        if failures:
            raise CommandError(f"{failures} of {total} node(s) did not get {image}.", returncode=EXIT_PROBLEM)
        self.stdout.write(self.style.SUCCESS(f"{image} is on all {total} node(s)."))
