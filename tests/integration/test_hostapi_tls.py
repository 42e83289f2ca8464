"""HTTPS: a node serving its own certificate, and ``HttpRemote`` verifying it.

The certificates are made in the test with the ``openssl`` command: a throw-away CA, and a
node certificate for 127.0.0.1 signed by it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from ipynbsrv_backends import errors
from ipynbsrv_backends.backends import HttpRemote
from ipynbsrv_backends.contract import BACKEND_STATUS_OK, BACKEND_STATUS_STOPPED

from ..conftest import TEST_IMAGE, backend_options
from ..hostapi_process import HostAPINode

pytestmark = pytest.mark.engine


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    if shutil.which("openssl") is None:
        message = "the openssl command is needed to make test certificates"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    d = tmp_path_factory.mktemp("tls")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=ipynbsrv test CA",
            "-keyout", "ca.key", "-out", "ca.pem", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "node.key",
            "-out", "node.csr", cwd=d)
    (d / "node.ext").write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "node.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", "node.ext", "-out", "node.pem", cwd=d)
    # another CA that did not sign the node's certificate
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=someone else",
            "-keyout", "other.key", "-out", "other.pem", cwd=d)
    os.chmod(d / "node.key", 0o600)
    return d


@pytest.fixture(scope="module")
def tls_node(certificates, raw_docker, workdir):
    node = HostAPINode(workdir, backend_args=backend_options(), certfile=str(certificates / "node.pem"),
                       keyfile=str(certificates / "node.key"), cafile=str(certificates / "ca.pem"))
    with node:
        yield node


def test_https_with_the_nodes_ca(tls_node, certificates, engine):
    assert tls_node.url.startswith("https://")
    with HttpRemote(tls_node.url, token=tls_node.token, verify=str(certificates / "ca.pem")) as remote:
        assert remote.get_status() == BACKEND_STATUS_OK
        record = remote.create_container("alice", 4242, "tls", [], [], image=TEST_IMAGE)
        assert remote.exec_in_container(record["pk"], ["echo", "over tls"]).strip() == "over tls"
        remote.delete_container(record["pk"])


@pytest.mark.parametrize("verify", [True, "other.pem"])
def test_an_unknown_certificate_is_refused(tls_node, certificates, verify):
    if isinstance(verify, str):
        verify = str(certificates / verify)
    with HttpRemote(tls_node.url, token=tls_node.token, verify=verify, retries=0) as remote:
        with pytest.raises(errors.BackendUnavailableError) as info:
            remote.get_containers()
        assert "TLS" in str(info.value) and "verify" in str(info.value)
        assert remote.get_status() == BACKEND_STATUS_STOPPED


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_verification_can_be_switched_off(tls_node, caplog):
    with HttpRemote(tls_node.url, token=tls_node.token, verify=False) as remote:
        assert remote.get_status() == BACKEND_STATUS_OK
    assert "does not verify" in caplog.text


def test_plain_http_to_a_tls_node_is_an_error(tls_node):
    url = tls_node.url.replace("https://", "http://")
    with HttpRemote(url, token=tls_node.token, retries=0, timeout=5) as remote:
        with pytest.raises(errors.BackendError):
            remote.get_containers()


def test_the_node_refuses_plain_http(tls_node):
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(tls_node.url.replace("https://", "http://") + "/health/", timeout=5)
