"""Shared pieces: statistics, rows of the result table, labels and clean-up."""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Self

import requests

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


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    """Poll ``predicate`` until it holds, within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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


def children_of(pid: int) -> list[int]:
    """Pids whose parent is ``pid``, from /proc."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def tree_rss_kib(pid: int) -> int:
    """RSS of a process and its direct children (a gunicorn master and its workers)."""
    return rss_kib(pid) + sum(rss_kib(child) for child in children_of(pid))


def hostapi_command() -> list[str]:
    script = Path(sys.executable).parent / "ipynbsrv_hostapi"
    return [str(script)] if script.exists() else [sys.executable, "-m", "ipynbsrv_backends.hostapi"]


class ServerProcess:
    """A server process on 127.0.0.1 for the length of a measurement, in its own session."""

    #: What a GET of ``ready_path`` answers once the server is up.
    ready_path = "/"
    ready_status = 200

    def __init__(self, logdir: Path, name: str, args: list[str], env: dict[str, str]) -> None:
        self.port = free_port()
        self.log_path = logdir / f"{name}-{self.port}.log"
        self.args = [arg.replace("{port}", str(self.port)) for arg in args]
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=REPO,
                                            start_new_session=True)

        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.args[0]} exited with {self.process.returncode}: {self.log_path}")
            try:
                return requests.get(f"{self.url}{self.ready_path}", timeout=1).status_code == self.ready_status
            except requests.RequestException:
                return False

        wait_for(ready, 30, f"{self.log_path.stem} to answer", 0.2)
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


def _environment(drop: Iterable[str] = ()) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", *drop)}


class HostAPIProcess(ServerProcess):
    """A real ``ipynbsrv_hostapi`` on 127.0.0.1 serving ``Docker`` with ``backend_args``."""

    ready_path = "/health/"

    def __init__(self, logdir: Path, backend_args: dict[str, Any], workers: int = 2, threads: int = 8) -> None:
        self.token = secrets.token_urlsafe(32)
        env = _environment(["IPYNBSRV_HOSTAPI_INSECURE_NO_TOKEN"])
        env["IPYNBSRV_HOSTAPI_TOKEN"] = self.token
        super().__init__(logdir, "hostapi", [
            *hostapi_command(), "--listen", "127.0.0.1", "--port", "{port}",
            "--container-backend-args", json.dumps(backend_args),
            "--workers", str(workers), "--threads", str(threads), "--graceful-timeout", "10"], env)


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

    client = docker.APIClient(base_url=base_url, version="auto", timeout=120)
    removed = 0
    try:
        for item in client.containers(all=True, filters={"label": list(filters)}):
            try:
                client.remove_container(item["Id"], force=True, v=True)
                removed += 1
            except docker.errors.NotFound:
                pass
    finally:
        client.close()
    return removed


def purge_local(base_url: str = "unix://var/run/docker.sock") -> int:
    """Remove whatever the harness made on the local engine (all its instances)."""
    removed = 0
    for instance in LOCAL_INSTANCES:
        removed += purge_engine(base_url, [f"org.ipynbsrv.instance={instance}"])
    removed += purge_engine(base_url, [BENCH_LABEL])
    return removed
