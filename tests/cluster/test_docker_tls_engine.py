"""The ``Docker`` backend against a real Docker engine that requires TLS (``--tlsverify``).

The engine runs in a network namespace of its own (never a second dockerd in the root
namespace), with its own data root, reached over a veth from this namespace at
``tcp://<address>:2376``. The certificates are made here with ``openssl``: the engine's CA,
a server and a client certificate it signed, and a second CA with a client certificate of
its own. The environment names an unrelated CA bundle (``REQUESTS_CA_BUNDLE`` and
``CURL_CA_BUNDLE``, as managed hosts and CI do) and a proxy: the backend must ignore both.

Each way the connection can fail gets its own message naming the cause and the option to
fix: the engine's certificate not signed by ``tls_ca_cert``, the client certificate refused
(or none given), plain TCP to the TLS port, TLS to a plain port, and no engine there.
"""

from __future__ import annotations

import os
import shutil
import socket
import socketserver
import subprocess
import threading
import uuid
from pathlib import Path

import pytest

from ipynbsrv_backends import errors
from ipynbsrv_backends.backends import Docker
from ipynbsrv_backends.contract import BACKEND_STATUS_OK, BACKEND_STATUS_STOPPED

from ..conftest import TEST_IMAGE
from ..support.processes import stop_process
from ..utils import load_image_into, wait_for

pytestmark = pytest.mark.cluster

ID = int(os.environ.get("IPYNBSRV_CLUSTER_ID", "0") or 0)
NS = f"ipyntls{ID}"
VETH = f"vtls{ID}"
NET = f"10.231.{7 + ID}"
HOST_IP, ENGINE_IP = f"{NET}.249", f"{NET}.250"  # a /30 of the bed's subnet, apart from its nodes
TLS_URL = f"tcp://{ENGINE_IP}:2376"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(d: Path, name: str) -> None:
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)


def make_cert(d: Path, name: str, ca: str, ext: str) -> None:
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
            "-out", f"{name}.csr", cwd=d)
    (d / f"{name}.ext").write_text(ext)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem", cwd=d)
    os.chmod(d / f"{name}.key", 0o600)


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60, check=check)


def remove_namespace() -> None:
    run("ip", "link", "del", VETH, check=False)
    run("ip", "netns", "del", NS, check=False)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make test certificates")
    d = tmp_path_factory.mktemp("engine-tls")
    make_ca(d, "ca")
    make_ca(d, "other")
    make_cert(d, "server", "ca", f"subjectAltName=IP:{ENGINE_IP}\nextendedKeyUsage=serverAuth\n")
    make_cert(d, "client", "ca", "extendedKeyUsage=clientAuth\n")
    make_cert(d, "stranger", "other", "extendedKeyUsage=clientAuth\n")
    return d


class _Forward(socketserver.BaseRequestHandler):
    """One TCP connection piped to the engine's Unix socket (a plain-TCP engine endpoint)."""

    target = ""

    def handle(self) -> None:
        upstream = socket.socket(socket.AF_UNIX)
        upstream.settimeout(30)
        upstream.connect(self.target)

        def pipe(src: socket.socket, dst: socket.socket) -> None:
            try:
                while data := src.recv(65536):
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for sock in (src, dst):
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        back = threading.Thread(target=pipe, args=(upstream, self.request), daemon=True)
        back.start()
        pipe(self.request, upstream)
        back.join(timeout=30)
        upstream.close()


@pytest.fixture(scope="module")
def tls_engine(certs, raw_docker):
    """A dockerd with --tlsverify in a namespace of its own; yields its directory."""
    if os.geteuid() != 0 or not shutil.which("dockerd") or not shutil.which("nsenter"):
        pytest.skip("a TLS engine in a namespace needs root, dockerd and nsenter")
    remove_namespace()  # a leftover of an interrupted run
    state = Path(f"/tmp/ipynbsrv-tls-engine{ID}")
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(mode=0o700)
    sock = state / "docker.sock"
    pidfile = state / "docker.pid"
    process = None
    try:
        run("ip", "netns", "add", NS)
        run("ip", "link", "add", VETH, "type", "veth", "peer", "name", "eth0", "netns", NS)
        run("ip", "addr", "add", f"{HOST_IP}/30", "dev", VETH)
        run("ip", "link", "set", VETH, "up")
        run("ip", "netns", "exec", NS, "ip", "addr", "add", f"{ENGINE_IP}/30", "dev", "eth0")
        run("ip", "netns", "exec", NS, "ip", "link", "set", "eth0", "up")
        run("ip", "netns", "exec", NS, "ip", "link", "set", "lo", "up")
        log = open(state / "dockerd.log", "wb")
        process = subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{NS}", "dockerd", "--data-root", str(state / "data"),
             "--exec-root", str(state / "exec"), "--pidfile", str(pidfile), "-H", f"unix://{sock}",
             "-H", f"{ENGINE_IP}:2376", "--tlsverify", "--tlscacert", str(certs / "ca.pem"),
             "--tlscert", str(certs / "server.pem"), "--tlskey", str(certs / "server.key"),
             "--bip", f"172.31.{ID}.1/24"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )

        def up() -> bool:
            if process.poll() is not None:
                raise AssertionError((state / "dockerd.log").read_text(errors="replace")[-3000:])
            return run("docker", "-H", f"unix://{sock}", "info", check=False).returncode == 0

        wait_for(up, timeout=60, interval=0.3, what="the TLS engine to start")
        load_image_into(str(sock), TEST_IMAGE, timeout=120)
        yield state
    finally:
        stop_process(process)
        remove_namespace()
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="module")
def plain_port(tls_engine):
    """127.0.0.1:PORT: the same engine without TLS (piped to its Unix socket)."""
    handler = type("Forward", (_Forward,), {"target": str(tls_engine / "docker.sock")})
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def hostile_env(certs, monkeypatch):
    """What a managed host's environment may hold: another CA bundle, a proxy."""
    for key in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.setenv(key, str(certs / "other.pem"))
    for key in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(key, "http://127.0.0.1:9")
    for key in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(key, raising=False)


def backend(certs, url: str = TLS_URL, **tls) -> Docker:
    options = {"tls_ca_cert": str(certs / "ca.pem"), "tls_client_cert": str(certs / "client.pem"),
               "tls_client_key": str(certs / "client.key"), **tls}
    options = {key: value for key, value in options.items() if value is not None}
    return Docker(url, instance=f"tls-{uuid.uuid4().hex[:6]}", pull_policy="never", stop_timeout=2,
                  timeout=20, **options)


def failure(b: Docker) -> errors.BackendError:
    with pytest.raises(errors.BackendUnavailableError) as caught:
        b.get_containers()
    assert b.get_status() == BACKEND_STATUS_STOPPED  # never raises
    return caught.value


def test_the_right_certificates_work_whatever_the_environment_says(certs, tls_engine, hostile_env):
    b = backend(certs)
    record = b.create_container("alice", 2501, "tls", [{"address": "127.0.0.1", "external": None, "internal": 8888}],
                                [], cmd=["sleep", "60"], image=TEST_IMAGE)
    try:
        assert record["status"] == "running"
        assert [r["pk"] for r in b.get_containers()] == [record["pk"]]
        assert b.get_status() == BACKEND_STATUS_OK
    finally:
        b.delete_container(record["pk"])
    assert b.get_containers() == []


def test_an_engine_certificate_from_another_ca(certs, tls_engine, hostile_env):
    message = str(failure(backend(certs, tls_ca_cert=str(certs / "other.pem"))))
    assert "certificate is not trusted" in message and "tls_ca_cert" in message
    assert "other.pem" in message and "dockerd running" not in message


def test_a_client_certificate_the_engine_does_not_trust(certs, tls_engine, hostile_env):
    message = str(failure(backend(certs, tls_client_cert=str(certs / "stranger.pem"),
                                  tls_client_key=str(certs / "stranger.key"))))
    assert "refused the client certificate" in message and "tls_client_cert" in message
    assert "stranger.pem" in message and "stranger.key" not in message


def test_no_client_certificate(certs, tls_engine, hostile_env):
    message = str(failure(backend(certs, tls_client_cert=None, tls_client_key=None)))
    assert "requires a client certificate" in message and "none was given" in message
    assert "tls_client_cert" in message


def test_plain_tcp_to_the_tls_port(certs, tls_engine, hostile_env):
    message = str(failure(backend(certs, tls_ca_cert=None, tls_client_cert=None, tls_client_key=None)))
    assert "speaks TLS" in message and "tls_ca_cert" in message


def test_tls_to_a_plain_port(certs, tls_engine, plain_port, hostile_env):
    plain = backend(certs, url=f"tcp://127.0.0.1:{plain_port}", tls_ca_cert=None, tls_client_cert=None,
                    tls_client_key=None)
    assert plain.get_status() == BACKEND_STATUS_OK  # the forward really is a plain engine
    message = str(failure(backend(certs, url=f"tcp://127.0.0.1:{plain_port}")))
    assert "does not speak TLS" in message and "tls_ca_cert" in message


def test_no_engine_there(certs, tls_engine, hostile_env):
    message = str(failure(backend(certs, url=f"tcp://{ENGINE_IP}:2399")))
    assert message.startswith(f"Cannot reach the Docker engine at tcp://{ENGINE_IP}:2399: nothing answers there")
    assert "Connection refused" in message and "base_url" in message
    assert "TLS" not in message
