"""Shared pieces: statistics, rows of the result table, labels and clean-up."""

from __future__ import annotations

import logging
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Self

import requests

from tests.support import HostAPINode, children_of, free_port, purge_labelled, wait_for

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
IMAGE = os.environ.get("IPYNBSRV_TEST_IMAGE", "ipynbsrv-test/busybox:latest")
#: Every container the harness makes carries this label, whatever path made it.
BENCH_LABEL = "org.ipynbsrv.bench"
#: The backend instances the harness uses on the local engine (never anyone else's).
INSTANCE_OPS = "bench-ops"
INSTANCE_REMOTE = "bench-remote"
INSTANCE_RAW = "bench-raw"
INSTANCE_LIST = "bench-list"
LOCAL_INSTANCES = (INSTANCE_OPS, INSTANCE_REMOTE, INSTANCE_RAW, INSTANCE_LIST)


@dataclass
class Row:
    """One line of the result table: a measured figure against its baseline."""

    section: str
    name: str
    ours: float | None  # median, in ``unit``
    base: float | None
    ratio: float | None  # median of the per-repetition ratios
    low: float | None  # spread: the smallest and largest per-repetition ratio
    high: float | None
    reps: int
    target: str = ""
    met: bool | None = None
    note: str = ""
    unit: str = "ms"
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def paired(ours: list[float], base: list[float]) -> tuple[float, float, float]:
    """Median, min and max of the per-repetition ratios ``ours[i] / base[i]``."""
    ratios = [a / b for a, b in zip(ours, base, strict=True) if b > 0]
    if not ratios:
        return float("nan"), float("nan"), float("nan")
    return statistics.median(ratios), min(ratios), max(ratios)


def row(section: str, name: str, ours: list[float], base: list[float], *, target: float | None = None,
        higher_is_better: bool = False, note: str = "", scale: float = 1000.0, unit: str = "ms",
        **extra: Any) -> Row:
    """A row from paired samples (seconds, shown ×``scale`` in ``unit``); ``target`` bounds the ratio."""
    ratio, low, high = paired(ours, base)
    met = None
    label = ""
    if target is not None:
        met = ratio >= target if higher_is_better else ratio <= target
        label = f"≥ {target:.2f}" if higher_is_better else f"≤ {target:.2f}"
    return Row(section, name, statistics.median(ours) * scale, statistics.median(base) * scale,
               ratio, low, high, min(len(ours), len(base)), label, met, note, unit, extra)


def timed(call: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = call()
    return time.perf_counter() - start, result


# --------------------------------------------------------------------------- processes

def rss_kib(pid: int) -> int:
    """Resident memory of one process in KiB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_kib(pid: int) -> int:
    """RSS of a process and its direct children (a gunicorn master and its workers)."""
    return rss_kib(pid) + sum(rss_kib(child) for child in children_of(pid))


class ServerProcess:
    """A server process on 127.0.0.1 for the length of a measurement, in its own session."""

    #: What a GET of ``ready_path`` answers once the server is up.
    ready_path = "/"
    ready_status = 200

    def __init__(self, logdir: Path, name: str, args: list[str], env: dict[str, str], cwd: Path = REPO) -> None:
        self.port = free_port()
        self.cwd = cwd
        self.log_path = logdir / f"{name}-{self.port}.log"
        self.args = [arg.replace("{port}", str(self.port)) for arg in args]
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd,
                                            start_new_session=True)

        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.args[0]} exited with {self.process.returncode}: {self.log_path}")
            try:
                return requests.get(f"{self.url}{self.ready_path}", timeout=1).status_code == self.ready_status
            except requests.RequestException:
                return False

        wait_for(ready, timeout=30, interval=0.2, what=f"{self.log_path.stem} to answer")
        return self

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


def _environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}


class HostAPIProcess(HostAPINode):
    """A real ``ipynbsrv_hostapi`` on 127.0.0.1 serving ``Docker`` with ``backend_args``: the
    tests' host API process (its own token, no signing key), with the bench's thread count."""

    def __init__(self, logdir: Path, backend_args: dict[str, Any], workers: int = 2, threads: int = 8) -> None:
        super().__init__(logdir, backend_args=backend_args, workers=workers, threads=threads)


class BareHopProcess(ServerProcess):
    """:mod:`bench.hop_app` under gunicorn with the host API's worker settings (gthread,
    ``workers`` × ``threads``, keep-alive 5 s): the floor of one HTTP hop."""

    ready_status = 404

    def __init__(self, logdir: Path, workers: int = 2, threads: int = 8) -> None:
        super().__init__(logdir, "bare-hop", [
            sys.executable, "-m", "gunicorn", "--bind", "127.0.0.1:{port}", "--worker-class", "gthread",
            "--workers", str(workers), "--threads", str(threads), "--keep-alive", "5",
            "--graceful-timeout", "10", "bench.hop_app:app"], _environment())


# --------------------------------------------------------------------------- clean-up

def purge_engine(base_url: str, filters: Iterable[str]) -> int:
    """Remove every container on the engine carrying all ``filters`` labels; returns how many."""
    import docker

    client = docker.DockerClient(base_url=base_url, version="auto", timeout=120)
    try:
        return purge_labelled(client, filters, images=False, volumes=False)
    finally:
        client.close()


def purge_local(base_url: str = "unix://var/run/docker.sock") -> int:
    """Remove whatever the harness made on the local engine (all its instances)."""
    removed = 0
    for instance in LOCAL_INSTANCES:
        removed += purge_engine(base_url, [f"org.ipynbsrv.instance={instance}"])
    removed += purge_engine(base_url, [BENCH_LABEL])
    return removed
