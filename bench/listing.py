"""Section 2: ``get_containers`` with 10, 100 and 500 managed containers: the engine
requests it sends (counted on its own docker-py client, which must not grow) and its time
against one raw list call asking the engine the same question.

The containers are created (not started) by docker-py with the labels the backend puts
on its own, so they are managed containers in every respect the listing sees; starting 500
would cost minutes and change nothing the listing does.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import docker

from ipynbsrv_backends.backends import Docker
from ipynbsrv_backends.backends.docker import CONTAINER_LABELS, L_INSTANCE, L_KIND

from .common import BENCH_LABEL, IMAGE, INSTANCE_LIST, Row, purge_engine, row, timed

logger = logging.getLogger(__name__)

LOCAL = "unix://var/run/docker.sock"
PREFIX = "bench-list"
UID = 4343


def _labels(name: str) -> dict[str, str]:
    labels = {key: "" for key in CONTAINER_LABELS}
    labels.update({L_INSTANCE: INSTANCE_LIST, L_KIND: "container", "org.ipynbsrv.owner": "lister",
                   "org.ipynbsrv.uid": str(UID), "org.ipynbsrv.name": name, "org.ipynbsrv.image": IMAGE,
                   "org.ipynbsrv.created": "2026-01-01T00:00:00Z",
                   "org.ipynbsrv.ports": '[{"address": "127.0.0.1", "external": null, "internal": 8888}]',
                   "org.ipynbsrv.volumes": "[]", BENCH_LABEL: "1"})
    return labels


def _grow(api: docker.APIClient, have: int, want: int) -> None:
    """Create managed containers ``have`` .. ``want - 1`` (four at a time)."""
    def one(index: int) -> None:
        name = f"l{index}"
        api.create_container(IMAGE, name=f"{PREFIX}-u{UID}-{name}", labels=_labels(name), ports=[8888],
                             host_config=api.create_host_config(port_bindings={8888: ("127.0.0.1",)}))

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(one, range(have, want)))


def measure(sizes: tuple[int, ...], reps: int) -> list[Row]:
    api = docker.APIClient(base_url=LOCAL, version="auto", timeout=120, max_pool_size=8)
    backend = Docker(LOCAL, instance=INSTANCE_LIST, name_prefix=PREFIX, pull_policy="never")
    client = backend._api()
    calls: list[tuple[str, str]] = []
    original = client.request

    def counting(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        calls.append((method, url))
        return original(method, url, *args, **kwargs)

    client.request = counting
    filters = {"label": [f"{L_INSTANCE}={INSTANCE_LIST}", f"{L_KIND}=container"]}
    rows: list[Row] = []
    have = 0
    try:
        for size in sorted(sizes):
            _grow(api, have, size)
            have = size
            ours, base, counts = [], [], []
            backend.get_containers()  # warm both connections
            api.containers(all=True, filters=filters)
            for rep in range(reps):
                raw_first = rep % 2 == 1  # alternate who goes first
                if raw_first:
                    seconds, raw = timed(lambda: api.containers(all=True, filters=filters))
                    base.append(seconds)
                calls.clear()
                seconds, records = timed(backend.get_containers)
                counts.append(len(calls))
                ours.append(seconds)
                if not raw_first:
                    seconds, raw = timed(lambda: api.containers(all=True, filters=filters))
                    base.append(seconds)
                if len(records) != size or len(raw) != size:
                    raise RuntimeError(f"listed {len(records)} (raw {len(raw)}) of {size} containers")
            rows.append(row("2 listing", f"get_containers, {size} containers: time vs one raw list call", ours, base,
                            note=f"{max(counts)} engine request(s)", engine_calls=max(counts)))
            logger.info("listing at %d containers: %d engine request(s)", size, max(counts))
        constant = len({item.extra["engine_calls"] for item in rows}) == 1
        rows.append(row("2 listing", "engine requests per get_containers, largest vs smallest size",
                        [float(rows[-1].extra["engine_calls"])], [float(rows[0].extra["engine_calls"])],
                        target=1.0, scale=1.0, unit="",
                        note="constant" if constant else "GROWS with the number of containers"))
    finally:
        removed = purge_engine(LOCAL, [f"{L_INSTANCE}={INSTANCE_LIST}"])
        logger.info("listing: removed %d containers", removed)
        api.close()
    return rows
