"""The ``ipynbsrv_hostapi`` command as a real process: bad arguments, the token rule,
clean SIGTERM shutdown (workers included), one backend per worker, the insecure mode."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import threading

import pytest
import requests

from ipynbsrv_backends.backends import HttpRemote
from ipynbsrv_backends.contract import BACKEND_STATUS_OK

from ..conftest import TEST_IMAGE, backend_options
from ..hostapi_process import HostAPINode, child_env, free_port, hostapi_command, pid_alive, wait_gone

RUN_TIMEOUT = 60


def run(*args: str, token: str | None = "t0ken-for-cli-tests", env: dict[str, str] | None = None):
    """Run the command with arguments that make it exit before serving."""
    return subprocess.run(
        [*hostapi_command(), *args], capture_output=True, text=True, timeout=RUN_TIMEOUT,
        env=child_env(token, **(env or {})),
    )


@pytest.mark.parametrize("args,fragment", [
    (["--container-backend-args", "{not json"], "--container-backend-args is not valid JSON"),
    (["--container-backend-args", "[1, 2]"], "must be a JSON object"),
    (["--container-backend-args", '{"colour": "blue"}'],
     "rejected its options: Unknown Docker backend option(s): colour"),
    (["--container-backend-args", '{"stop_timeout": -1}'], "rejected its options: Invalid stop_timeout"),
    (["--container-backend-args", "@/no/such/args.json"], "cannot read --container-backend-args @/no/such/args.json"),
    (["--container-backend-args", "@/etc/hostname"], "--container-backend-args @/etc/hostname is not valid JSON"),
    (["--container-backend", "ipynbsrv_backends.backends.Nope"], "cannot be imported"),
    (["--container-backend", "nodots"], "dotted path"),
    (["--container-backend", "json.JSONDecoder"], "not a ContainerBackend"),
    (["--certfile", "/etc/hostname"], "--certfile and --keyfile go together"),
    (["--certfile", "/no/such.pem", "--keyfile", "/no/such.key"], "no such file"),
    (["--certfile", "/etc/hostname", "--keyfile", "/etc/hostname"], "cannot use --certfile"),
])
def test_bad_arguments_exit_2_with_a_clear_message(args, fragment):
    result = run(*args)
    assert result.returncode == 2, result.stderr
    assert fragment in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("ipynbsrv_hostapi: error: ")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args", [["--port", "0"], ["--port", "70000"], ["--port", "http"], ["--workers", "0"],
                                  ["--threads", "-1"], ["--bogus"]])
def test_argparse_errors_exit_2(args):
    result = run(*args)
    assert result.returncode == 2
    assert "usage: ipynbsrv_hostapi" in result.stderr and "Traceback" not in result.stderr


def test_debug_shows_the_traceback_of_a_bad_backend():
    result = run("--debug", "--container-backend-args", '{"colour": "blue"}')
    assert result.returncode == 2
    assert "Traceback" in result.stderr and "Unknown Docker backend option(s): colour" in result.stderr


def test_refuses_to_start_without_a_token():
    result = run(token=None)
    assert result.returncode == 2
    assert "IPYNBSRV_HOSTAPI_TOKEN is not set" in result.stderr and "--insecure-no-token" in result.stderr


def test_a_busy_port_exits_1():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        result = run("--port", str(busy.getsockname()[1]))
    assert result.returncode == 1
    assert "cannot listen on 127.0.0.1:" in result.stderr and "Traceback" not in result.stderr


def test_help_lists_the_flags():
    result = run("--help")
    assert result.returncode == 0
    for flag in ("--listen", "--port", "--container-backend", "--container-backend-args", "--debug",
                 "--workers", "--threads", "--certfile", "--keyfile", "--insecure-no-token"):
        assert flag in result.stdout


# --------------------------------------------------------------------------- serving

@pytest.mark.engine
def test_sigterm_stops_the_server_and_its_workers_cleanly(engine, workdir):
    node = HostAPINode(workdir, backend_args=backend_options(), workers=2, extra_args=["--debug"])
    with node:
        workers = node.workers()
        assert len(workers) == 2
        remote = HttpRemote(node.url, token=node.token, retries=0)
        assert remote.get_status() == BACKEND_STATUS_OK

        # An in-flight call finishes during the graceful shutdown.
        record = remote.create_container("alice", 4242, "inflight", [], [], image=TEST_IMAGE)
        results: dict[str, object] = {}
        call = threading.Thread(target=lambda: results.setdefault(
            "out", remote.exec_in_container(record["pk"], ["sh", "-c", "sleep 2; echo done"])))
        call.start()
        try:
            # wait until the request is in a worker (the access log shows it when it ends,
            # gunicorn's debug log when it starts)
            from ..utils import wait_for

            wait_for(lambda: "/exec/" in node.log(), timeout=10, what="the exec request to arrive")
            status = node.terminate(timeout=30)
        finally:
            call.join(timeout=30)
        assert status == 0, node.log()
        assert results.get("out", "").strip() == "done"
        wait_gone([node.process.pid, *workers])
        assert not any(pid_alive(pid) for pid in workers)
        assert "Shutting down: Master" in node.log()
    remote.close()


@pytest.mark.engine
def test_each_worker_builds_its_own_backend(raw_docker, workdir):
    node = HostAPINode(workdir, backend_args=backend_options(), workers=2, threads=1)
    with node:
        workers = set(node.workers())
        # Independent connections, in parallel, so both workers get requests (bounded).
        def hit():
            with HttpRemote(node.url, token=node.token, retries=0) as remote:
                remote.get_containers()

        from ..utils import wait_for

        def both_ready():
            threads = [threading.Thread(target=hit) for _ in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=30)
            return len(set(re.findall(r"backend \S+ ready in process (\d+)", node.log()))) >= 2

        wait_for(both_ready, timeout=30, interval=0.2, what="both workers to build their backend")
        builders = {int(pid) for pid in re.findall(r"backend \S+ ready in process (\d+)", node.log())}
        assert builders == workers  # built after the fork, in each worker, never in the master
        assert node.process.pid not in builders


@pytest.mark.engine
def test_insecure_mode_serves_without_a_token(raw_docker, workdir):
    with HostAPINode(workdir, backend_args=backend_options(), token="", extra_args=["--insecure-no-token"]) as node:
        answer = requests.get(f"{node.url}/status/", timeout=10)
        assert answer.status_code == 200 and answer.json()["backend"]["status"] == BACKEND_STATUS_OK
        assert "WITHOUT authentication" in node.log()


@pytest.mark.engine
def test_a_token_wins_over_the_insecure_flag(raw_docker, workdir):
    with HostAPINode(workdir, backend_args=backend_options(), extra_args=["--insecure-no-token"]) as node:
        assert requests.get(f"{node.url}/status/", timeout=10).status_code == 401
        assert "--insecure-no-token is ignored" in node.log()


def test_an_unreachable_engine_does_not_stop_the_node(workdir):
    """The node serves, and its status says the engine is down."""
    args = backend_options(base_url=f"tcp://127.0.0.1:{free_port()}")
    with HostAPINode(workdir, backend_args=args) as node:
        remote = HttpRemote(node.url, token=node.token)
        status = remote.get_node_status()
        assert status["backend"]["status"] != BACKEND_STATUS_OK
        assert status["resources"]["containers"] == {"running": None, "total": None}
        assert remote.get_status() != BACKEND_STATUS_OK
        from ipynbsrv_backends import errors

        with pytest.raises(errors.BackendUnavailableError):
            remote.get_containers()


def test_backend_args_from_a_file(workdir):
    """@PATH keeps secrets out of the process list."""
    args_file = workdir / "backend-args.json"
    args_file.write_text(json.dumps(backend_options(base_url=f"tcp://127.0.0.1:{free_port()}",
                                                    registry_password="s3cret", registry_username="me")))
    with HostAPINode(workdir, extra_args=["--container-backend-args", f"@{args_file}"]) as node:
        cmdline = open(f"/proc/{node.process.pid}/cmdline", "rb").read().decode()
        assert "s3cret" not in cmdline and f"@{args_file}" in cmdline
        status = HttpRemote(node.url, token=node.token).get_node_status()
        assert status["backend"]["status"] != BACKEND_STATUS_OK  # that engine is down, as configured
        assert "s3cret" not in node.log()


def test_sigint_also_stops_cleanly(workdir):
    args = backend_options(base_url=f"tcp://127.0.0.1:{free_port()}")
    node = HostAPINode(workdir, backend_args=args)
    with node:
        workers = node.workers()
        node.process.send_signal(signal.SIGINT)
        assert node.process.wait(timeout=30) == 0
        wait_gone(workers)
