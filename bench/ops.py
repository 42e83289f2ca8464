"""Section 1: per-operation overhead of ``Docker`` and of ``HttpRemote`` -> host API ->
``Docker``, against docker-py making the same engine calls itself.

Two baselines run in the same repetitions, interleaved with the backends:

- *same calls*: docker-py sends exactly the requests the backend sends (the ownership
  inspect before each action, the name check and image check before a create, the snapshot
  listing and image prune after a delete). The targets apply here: this is the cost of the
  abstraction itself.
- *minimal*: what a hand-written docker-py script needs for the same effect (no checks).
  The gap between the two is the engine's time for the backend's safety checks.
"""

from __future__ import annotations

import logging
import random
import re
import statistics
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import docker
import requests

from ipynbsrv_backends import errors
from ipynbsrv_backends.backends import Docker, HttpRemote
from ipynbsrv_backends.backends.docker import CONTAINER_LABELS, L_CONTAINER, L_INSTANCE, L_KIND

from .common import (
    BENCH_LABEL,
    IMAGE,
    INSTANCE_OPS,
    INSTANCE_RAW,
    INSTANCE_REMOTE,
    BareHopProcess,
    HostAPIProcess,
    Row,
    purge_local,
    row,
    timed,
)

logger = logging.getLogger(__name__)

OPS = ("create+start", "stop", "start", "suspend", "resume", "exec", "delete")
UID = 4242
USER = "bencher"
PORTS = [{"address": "127.0.0.1", "external": None, "internal": 8888}]
EXEC = ["echo", "bench"]
STOP_TIMEOUT = 3
LOCAL = "unix://var/run/docker.sock"
#: The operations also measured behind the bare hop (the cheap ones, where a hop shows).
HOP_OPS = ("suspend", "resume")


class Cycle:
    """One way of doing the seven operations; each method returns after the engine has."""

    def create(self, name: str) -> str:
        raise NotImplementedError
    def stop(self, pk: str) -> None: ...
    def start(self, pk: str) -> None: ...
    def suspend(self, pk: str) -> None: ...
    def resume(self, pk: str) -> None: ...
    def exec(self, pk: str) -> None: ...
    def delete(self, pk: str) -> None: ...


class BackendCycle(Cycle):
    """Through a contract backend (``Docker`` or ``HttpRemote``)."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    def create(self, name: str) -> str:
        return self.backend.create_container(USER, UID, name, PORTS, [], image=IMAGE)["pk"]

    def stop(self, pk: str) -> None:
        self.backend.stop_container(pk)

    def start(self, pk: str) -> None:
        self.backend.start_container(pk)

    def suspend(self, pk: str) -> None:
        self.backend.suspend_container(pk)

    def resume(self, pk: str) -> None:
        self.backend.resume_container(pk)

    def exec(self, pk: str) -> None:
        self.backend.exec_in_container(pk, EXEC)

    def delete(self, pk: str) -> None:
        self.backend.delete_container(pk)


class RawSameCycle(Cycle):
    """docker-py sending the very requests ``Docker`` sends, in the same order."""

    def __init__(self, api: docker.APIClient, prefix: str, instance: str) -> None:
        self.api, self.prefix, self.instance = api, prefix, instance

    def _host_config(self, port: int) -> dict[str, Any]:
        return self.api.create_host_config(port_bindings={8888: ("127.0.0.1", port)}, binds=[],
                                           security_opt=["no-new-privileges"], init=True)

    def create(self, name: str) -> str:
        pk = f"{self.prefix}-u{UID}-{name}"
        self.api.containers(all=True, filters={"name": f"^/{re.escape(pk)}$"})
        self.api.inspect_image(IMAGE)
        # the host port is chosen once, as Docker does: one listing of what is taken, then a draw
        taken = {int(p["PublicPort"]) for item in self.api.containers(all=True)
                 for p in item.get("Ports") or [] if p.get("PublicPort")}
        port = next(p for p in (random.randint(20000, 32767) for _ in range(100)) if p not in taken)
        labels = {key: "" for key in CONTAINER_LABELS}
        labels.update({L_INSTANCE: self.instance, L_KIND: "container", "org.ipynbsrv.owner": USER,
                       "org.ipynbsrv.uid": str(UID), "org.ipynbsrv.name": name, "org.ipynbsrv.image": IMAGE,
                       "org.ipynbsrv.ports": f'[{{"address": "127.0.0.1", "external": {port}, "internal": 8888}}]',
                       "org.ipynbsrv.volumes": "[]", BENCH_LABEL: "1"})
        self.api.create_container(IMAGE, command=None, name=pk, environment={"OWNER": USER, "BASE_URL": "/"},
                                  labels=labels, ports=[8888], host_config=self._host_config(port))
        self.api.start(pk)
        self.api.inspect_container(pk)
        return pk

    def _id(self, pk: str) -> str:
        return self.api.inspect_container(pk)["Id"]

    def stop(self, pk: str) -> None:
        self.api.stop(self._id(pk), timeout=STOP_TIMEOUT)

    def start(self, pk: str) -> None:
        self.api.start(self._id(pk))

    def suspend(self, pk: str) -> None:
        self.api.pause(self._id(pk))

    def resume(self, pk: str) -> None:
        self.api.unpause(self._id(pk))

    def exec(self, pk: str) -> None:
        exec_id = self.api.exec_create(self._id(pk), EXEC, stdout=True, stderr=True)
        self.api.exec_start(exec_id)

    def delete(self, pk: str) -> None:
        self.api.remove_container(self._id(pk), force=True, v=False)
        self.api.images(filters={"label": [f"{L_INSTANCE}={self.instance}", f"{L_KIND}=snapshot",
                                           f"{L_CONTAINER}={pk}"]})
        try:
            self.api.prune_images(filters={"dangling": True, "label": f"{L_INSTANCE}={self.instance}"})
        except docker.errors.APIError as exc:  # another prune runs on this engine: Docker logs and goes on too
            logger.debug("prune refused: %s", exc)


class BareHopCycle(RawSameCycle):
    """docker-py's same calls, with suspend and resume behind one bare HTTP hop
    (:mod:`bench.hop_app`): only those two rows are reported for it."""

    def __init__(self, api: docker.APIClient, prefix: str, instance: str, url: str) -> None:
        super().__init__(api, prefix, instance)
        self.url = url
        self.http = requests.Session()
        self.http.trust_env = False

    def _hop(self, pk: str, action: str) -> None:
        response = self.http.post(f"{self.url}/{pk}/{action}", data=b"{}", timeout=60,
                                  headers={"Content-Type": "application/json"})
        if response.status_code != 204:
            raise docker.errors.DockerException(f"bare hop {action}: HTTP {response.status_code} {response.text[:200]}")

    def suspend(self, pk: str) -> None:
        self._hop(pk, "suspend")

    def resume(self, pk: str) -> None:
        self._hop(pk, "resume")


class RawMinimalCycle(Cycle):
    """What a hand-written docker-py script needs for the same effect: no checks."""

    def __init__(self, api: docker.APIClient, prefix: str) -> None:
        self.api, self.prefix = api, prefix

    def create(self, name: str) -> str:
        pk = f"{self.prefix}-{name}"
        host_config = self.api.create_host_config(port_bindings={8888: ("127.0.0.1",)},
                                                  security_opt=["no-new-privileges"], init=True)
        self.api.create_container(IMAGE, name=pk, labels={L_INSTANCE: INSTANCE_RAW, BENCH_LABEL: "1"},
                                  ports=[8888], host_config=host_config)
        self.api.start(pk)
        return pk

    def stop(self, pk: str) -> None:
        self.api.stop(pk, timeout=STOP_TIMEOUT)

    def start(self, pk: str) -> None:
        self.api.start(pk)

    def suspend(self, pk: str) -> None:
        self.api.pause(pk)

    def resume(self, pk: str) -> None:
        self.api.unpause(pk)

    def exec(self, pk: str) -> None:
        self.api.exec_start(self.api.exec_create(pk, EXEC, stdout=True, stderr=True))

    def delete(self, pk: str) -> None:
        self.api.remove_container(pk, force=True, v=False)


#: The fast operations (about 10–20 ms for the engine) are repeated this often in each
#: repetition, every way taking its turn before any way goes again, and each way counts its
#: median: one hiccup of a shared engine does not decide a ratio, and drift hits every way alike.
FAST_REPEATS = 15
FAST_OPS = ("suspend", "resume", "exec")


def _rotations(order: list[str], count: int) -> Iterator[list[str]]:
    """``order`` rotated by one more place each time, ``count`` times."""
    for index in range(count):
        shift = index % len(order)
        yield order[shift:] + order[:shift]


def run_repetition(cycles: dict[str, Cycle], order: list[str], name: str) -> dict[str, dict[str, float]]:
    """The seven operations, each way on one fresh container of its own, interleaved: every
    operation is made by each way in turn (in ``order``) before the next operation begins, and
    the fast ones :data:`FAST_REPEATS` times in rotating order. Seconds per operation per way."""
    times: dict[str, dict[str, float]] = {way: {} for way in order}
    pks: dict[str, str] = {}
    try:
        for way in order:
            times[way]["create+start"], pks[way] = timed(partial(cycles[way].create, name))
        for op in ("stop", "start"):
            for way in order:
                times[way][op], _ = timed(partial(getattr(cycles[way], op), pks[way]))
        fast: dict[str, dict[str, list[float]]] = {way: {op: [] for op in FAST_OPS} for way in order}
        for turn in _rotations(order, FAST_REPEATS):
            for way in turn:
                fast[way]["suspend"].append(timed(partial(cycles[way].suspend, pks[way]))[0])
                fast[way]["resume"].append(timed(partial(cycles[way].resume, pks[way]))[0])
        for turn in _rotations(order, FAST_REPEATS):
            for way in turn:
                fast[way]["exec"].append(timed(partial(cycles[way].exec, pks[way]))[0])
        for way in order:
            times[way].update({op: statistics.median(values) for op, values in fast[way].items()})
        for way in order:
            times[way]["delete"], _ = timed(partial(cycles[way].delete, pks[way]))
            del pks[way]
    finally:
        if pks:
            logger.warning("a repetition failed part-way; its containers %s are removed by the final purge",
                           ", ".join(sorted(pks.values())))
    return times


def measure(reps: int, logdir: Path, warmup: int = 1) -> list[Row]:
    """Interleave the five ways for ``reps`` repetitions (plus warm-up) and compare."""
    api = docker.APIClient(base_url=LOCAL, version="auto", timeout=120)
    options: dict[str, Any] = {"stop_timeout": STOP_TIMEOUT, "pull_policy": "never"}
    direct = Docker(LOCAL, instance=INSTANCE_OPS, name_prefix="bench-ops", **options)
    node = HostAPIProcess(logdir, {"base_url": LOCAL, "instance": INSTANCE_REMOTE, "name_prefix": "bench-rem",
                                   **options}).start()
    remote = HttpRemote(node.url, token=node.token, timeout=60, long_timeout=300)
    hop = BareHopProcess(logdir).start()
    cycles: dict[str, Cycle] = {
        "raw-same": RawSameCycle(api, "bench-raw", INSTANCE_RAW),
        "raw-min": RawMinimalCycle(api, "bench-min"),
        "docker": BackendCycle(direct),
        "remote": BackendCycle(remote),
        "bare-hop": BareHopCycle(api, "bench-hop", INSTANCE_RAW, hop.url),
    }
    samples: dict[str, dict[str, list[float]]] = {way: {op: [] for op in OPS} for way in cycles}
    order = list(cycles)
    try:
        done = failed = attempt = 0
        while done < warmup + reps:
            attempt += 1
            # rotate who goes first, so drift in the engine's speed hits every way alike
            shift = attempt % len(order)
            try:
                times = run_repetition(cycles, order[shift:] + order[:shift], f"op{attempt}")
            except (docker.errors.DockerException, errors.BackendError) as exc:
                # a shared engine hiccuped: drop the whole repetition (ratios are paired), a few times at most
                failed += 1
                logger.warning("per-operation repetition failed (%s); %s", exc, "retrying" if failed <= 3 else "giving up")
                if failed > 3:
                    raise
                purge_local()
                continue
            if done >= warmup:
                for way, ops in times.items():
                    for op, seconds in ops.items():
                        samples[way][op].append(seconds)
            done += 1
            logger.info("per-operation repetition %d/%d done", done, warmup + reps)
    finally:
        remote.close()
        node.stop()
        hop.stop()
        purge_local()
        api.close()
    rows = []
    for op in OPS:
        base = samples["raw-same"][op]
        rows.append(row("1 per-operation", f"{op}: Docker vs docker-py (same calls)", samples["docker"][op], base,
                        target=1.05))
        rows.append(row("1 per-operation", f"{op}: HttpRemote→host API→Docker vs docker-py (same calls)",
                        samples["remote"][op], base, target=1.15))
        rows.append(row("1 per-operation", f"{op}: Docker vs docker-py (minimal calls)", samples["docker"][op],
                        samples["raw-min"][op],
                        note="informative: the engine's time for the backend's checks"))
        if op in HOP_OPS:
            rows.append(row("1 per-operation", f"{op}: docker-py behind a bare WSGI app under gunicorn vs docker-py "
                            "(same calls)", samples["bare-hop"][op], base,
                            note="informative: the floor of one HTTP hop on this machine"))
            rows.append(row("1 per-operation", f"{op}: HttpRemote→host API→Docker vs the bare hop",
                            samples["remote"][op], samples["bare-hop"][op],
                            note="informative: what our code adds to the hop"))
    return rows

