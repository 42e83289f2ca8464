"""A real ``ipynbsrv_hostapi`` process on 127.0.0.1, for the tests and the bench.

:class:`HostAPINode` starts the console script as a separate OS process (its own session,
so its gunicorn workers can be found and nothing outlives the test), waits on the health
endpoint with a deadline, and stops it with SIGTERM. Its environment is ours minus every
host API setting, plus the token (and signing key) it was given, so a node never picks up a
key its client does not use.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import requests

from .waiting import free_port, wait_for

REPO = Path(__file__).resolve().parents[2]


def hostapi_command() -> list[str]:
    """The installed console script, else the module (same code)."""
    script = Path(sys.executable).parent / "ipynbsrv_hostapi"
    if script.exists():
        return [str(script)]
    found = shutil.which("ipynbsrv_hostapi")
    return [found] if found else [sys.executable, "-m", "ipynbsrv_backends.hostapi"]


def child_env(token: str | None, **more: str) -> dict[str, str]:
    """The environment of a host API process: ours, minus what would confuse it."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("DJANGO_SETTINGS_MODULE", "IPYNBSRV_HOSTAPI_TOKEN", "IPYNBSRV_HOSTAPI_INSECURE_NO_TOKEN",
                        "IPYNBSRV_HOSTAPI_SIGNING_KEY", "IPYNBSRV_HOSTAPI_STATE_DIR",
                        "IPYNBSRV_HOSTAPI_SIGNATURE_WINDOW")}
    if token is not None:
        env["IPYNBSRV_HOSTAPI_TOKEN"] = token
    env.update(more)
    return env


def children_of(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (from /proc; no psutil needed)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the command name is in parentheses and may contain spaces
        fields = stat[stat.rfind(")") + 2:].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def pid_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2:].split()[0] != "Z"


class HostAPINode:
    """One ``ipynbsrv_hostapi`` process."""

    def __init__(
        self,
        logdir: Path,
        *,
        backend_args: dict[str, Any] | None = None,
        token: str | None = None,
        port: int | None = None,
        certfile: str | None = None,
        keyfile: str | None = None,
        cafile: str | None = None,
        extra_args: list[str] | None = None,
        workers: int = 2,
        threads: int = 4,
        signing_key: str | None = None,
        state_dir: Path | None = None,
    ) -> None:
        self.token = token if token is not None else secrets.token_urlsafe(32)
        self.signing_key = signing_key
        self.env = {"IPYNBSRV_HOSTAPI_SIGNING_KEY": signing_key} if signing_key else {}
        self.port = port or free_port()
        self.certfile = certfile
        self.cafile = cafile
        self.backend_args = backend_args or {}
        self.args = [
            *hostapi_command(),
            "--listen", "127.0.0.1",
            "--port", str(self.port),
            "--container-backend-args", json.dumps(self.backend_args),
            "--workers", str(workers),
            "--threads", str(threads),
            "--graceful-timeout", "10",
        ]
        if certfile:
            self.args += ["--certfile", certfile, "--keyfile", keyfile or ""]
        if state_dir is not None:
            self.args += ["--state-dir", str(state_dir)]
        self.args += extra_args or []
        self.log_path = logdir / f"hostapi-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.certfile else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def start(self, timeout: float = 30.0) -> HostAPINode:
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.args, stdout=log, stderr=subprocess.STDOUT, env=child_env(self.token, **self.env),
                cwd=REPO, start_new_session=True,
            )
        verify: Any = self.cafile or True

        def healthy() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"ipynbsrv_hostapi exited with {self.process.returncode}:\n{self.log()}")
            try:
                return requests.get(f"{self.url}/health/", timeout=1, verify=verify).status_code == 200
            except requests.RequestException:
                return False

        try:
            wait_for(healthy, timeout=timeout, what=f"ipynbsrv_hostapi on port {self.port} to answer")
        except AssertionError:
            self.kill()
            raise
        return self

    def workers(self) -> list[int]:
        assert self.process is not None
        return children_of(self.process.pid)

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM, as a supervisor sends it; returns the exit status."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"ipynbsrv_hostapi did not stop within {timeout} s:\n{self.log()}") from None

    def kill(self) -> None:
        """Last resort, while it still runs: kill the session this node leads (it and its
        workers, nothing else)."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def stop(self) -> None:
        """SIGTERM, and a kill if it does not end in time (for the bench: never raises)."""
        try:
            self.terminate()
        except AssertionError:
            pass

    def __enter__(self) -> HostAPINode:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        if self.process is not None and self.process.poll() is None:
            self.terminate()


def stop_process(process: subprocess.Popen | None, timeout: float = 30.0) -> None:
    """SIGTERM a child process that may still run, and SIGKILL it when it has not ended
    within ``timeout`` seconds (never raises for one that has ended already)."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def wait_gone(pids: list[int], timeout: float = 15.0) -> None:
    wait_for(lambda: not any(pid_alive(pid) for pid in pids), timeout=timeout,
             what=f"processes {pids} to exit")
