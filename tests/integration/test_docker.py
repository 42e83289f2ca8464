"""What only the ``Docker`` backend promises: its configuration, its engine calls, its
registry, its behaviour with no engine and its rollback of a failed restore."""

from __future__ import annotations

import json
import time

import docker.errors
import pytest

from ipynbsrv_backends import errors
from ipynbsrv_backends.backends import Docker
from ipynbsrv_backends.contract import BACKEND_STATUS_ERROR, BACKEND_STATUS_OK, BACKEND_STATUS_STOPPED

from ..conftest import INSTANCE, LABEL, TEST_IMAGE, backend_options
from ..utils import http_get

UID = 5151


def make(backend, name="nb", **kwargs):
    kwargs.setdefault("image", TEST_IMAGE)
    return backend.create_container("carol", UID, name, kwargs.pop("ports", []), kwargs.pop("volumes", []), **kwargs)


# --------------------------------------------------------------------------- configuration

@pytest.mark.parametrize("options", [
    {"colour": "blue"},
    {"base_url": "ftp://engine"},
    {"base_url": 42},
    {"registry": "not a registry"},
    {"registry": "host:5000/UPPER"},
    {"allowed_volume_roots": "/srv"},
    {"allowed_volume_roots": ["relative"]},
    {"allowed_volume_roots": ["/"]},
    {"allowed_volume_roots": ["/srv/.."]},
    {"pull_policy": "sometimes"},
    {"timeout": 0},
    {"stop_timeout": -1},
    {"default_mem_limit": "huge"},
    {"default_cpu_limit": 0},
    {"default_pids_limit": 0},
    {"tls_client_cert": "/cert.pem"},
    {"registry_username": "u"},
    {"instance": "has space"},
    {"name_prefix": "UPPER"},
    {"allowed_images": "notebooks/*"},
    {"no_new_privileges": "yes"},
    {"version": "latest"},
])
def test_bad_configuration_is_refused_before_anything_runs(options):
    with pytest.raises(errors.InvalidArgumentError):
        Docker(**options)


def test_validate_options_fills_in_defaults():
    config = Docker.validate_options(registry="10.0.0.1:5000/team")
    assert config["registry"] == "10.0.0.1:5000/team"
    assert config["base_url"] == "unix://var/run/docker.sock"
    assert config["pull_policy"] == "if-not-present"
    assert config["allowed_volume_roots"] == ()


def test_repr_hides_secrets():
    backend = Docker(base_url="tcp://127.0.0.1:2376", registry="127.0.0.1:5000",
                     registry_username="ci", registry_password="hunter2-secret",
                     tls_client_cert="/etc/ipynbsrv/cert.pem", tls_client_key="/etc/ipynbsrv/key-secret.pem")
    text = repr(backend) + str(backend)
    assert "hunter2-secret" not in text and "key-secret" not in text
    assert "127.0.0.1:2376" in text


def test_constructing_never_contacts_the_engine():
    started = time.monotonic()
    Docker(base_url="tcp://127.0.0.1:1")
    assert time.monotonic() - started < 1


# --------------------------------------------------------------------------- no engine

@pytest.mark.parametrize("base_url", ["unix:///nonexistent/docker.sock", "tcp://127.0.0.1:1"])
def test_unreachable_engine(base_url):
    backend = Docker(base_url=base_url, timeout=5)
    assert backend.get_status() in (BACKEND_STATUS_STOPPED, BACKEND_STATUS_ERROR)
    calls = [
        lambda: backend.get_containers(),
        lambda: backend.get_container("x"),
        lambda: backend.container_exists("x"),
        lambda: backend.container_image_exists("x"),
        lambda: backend.create_container("a", 1, "x", [], [], image=TEST_IMAGE),
        lambda: backend.start_container("x"),
        lambda: backend.stop_container("x"),
        lambda: backend.delete_container("x"),
        lambda: backend.exec_in_container("x", "true"),
        lambda: backend.get_container_logs("x"),
        lambda: backend.get_container_images(),
        lambda: backend.get_container_snapshots(),
        lambda: backend.suspend_container("x"),
    ]
    for call in calls:
        started = time.monotonic()
        with pytest.raises(errors.BackendUnavailableError) as info:
            call()
        assert time.monotonic() - started < 6
        assert "docker" in str(info.value).lower()
        assert not isinstance(info.value.__cause__, errors.BackendError)  # translated from the native error


def test_unreachable_engine_status_is_stopped():
    assert Docker(base_url="unix:///nonexistent/docker.sock").get_status() == BACKEND_STATUS_STOPPED


# --------------------------------------------------------------------------- engine calls

@pytest.fixture
def counted(docker_backend, engine, monkeypatch):
    """Count the HTTP requests the backend's real client sends to the engine."""
    api = docker_backend._api()
    calls = []
    original = api.request

    def request(method, url, *args, **kwargs):
        calls.append((method, url))
        return original(method, url, *args, **kwargs)

    monkeypatch.setattr(api, "request", request)
    return calls


def test_get_containers_is_one_engine_call_however_many(docker_backend, counted):
    make(docker_backend, "one")
    counted.clear()
    assert len(docker_backend.get_containers()) == 1
    assert len(counted) == 1
    for i in range(5):
        make(docker_backend, f"more{i}")
    counted.clear()
    assert len(docker_backend.get_containers()) == 6
    assert len(counted) == 1
    counted.clear()
    docker_backend.get_containers(only_running=True)
    assert len(counted) == 1


def test_get_container_is_one_engine_call(docker_backend, counted):
    record = make(docker_backend)
    counted.clear()
    docker_backend.get_container(record["pk"])
    assert len(counted) == 1


# --------------------------------------------------------------------------- defaults

def test_limit_defaults_are_set_on_the_backend(engine):
    backend = Docker(**backend_options(default_mem_limit="32m", default_cpu_limit=0.25, default_pids_limit=20))
    record = make(backend)
    host = engine.api.inspect_container(record["pk"])["HostConfig"]
    assert (host["Memory"], host["NanoCpus"], host["PidsLimit"]) == (32 * 1024**2, 250_000_000, 20)
    # a call may still choose its own
    other = make(backend, "other", mem_limit="48m")
    assert engine.api.inspect_container(other["pk"])["HostConfig"]["Memory"] == 48 * 1024**2


def test_allowed_images(engine):
    backend = Docker(**backend_options(allowed_images=["notebooks/*"]))
    with pytest.raises(errors.InvalidArgumentError):
        make(backend)
    assert engine.containers.list(all=True, filters={"label": LABEL}) == []


def test_containers_run_with_an_init_process(docker_backend, engine):
    record = make(docker_backend)
    assert engine.api.inspect_container(record["pk"])["HostConfig"]["Init"] is True


# --------------------------------------------------------------------------- restore rollback

def test_a_failed_restore_puts_the_old_container_back(docker_backend, engine, monkeypatch):
    record = make(docker_backend, ports=[{"address": "127.0.0.1", "external": None, "internal": 8888}])
    pk = record["pk"]
    docker_backend.exec_in_container(pk, ["sh", "-c", "echo current > /state.txt"])
    snap = docker_backend.create_container_snapshot(pk, "s")
    old_id = engine.api.inspect_container(pk)["Id"]
    api = docker_backend._api()
    real_create = api.create_container

    def failing_create(*args, **kwargs):
        raise docker.errors.APIError("injected failure", explanation="no space left on device")

    monkeypatch.setattr(api, "create_container", failing_create)
    with pytest.raises(errors.ContainerBackendError):
        docker_backend.restore_container_snapshot(pk, snap["pk"])
    monkeypatch.setattr(api, "create_container", real_create)

    info = engine.api.inspect_container(pk)
    assert info["Id"] == old_id and info["State"]["Running"]
    assert docker_backend.exec_in_container(pk, ["cat", "/state.txt"]).strip() == "current"
    assert [c["pk"] for c in docker_backend.get_containers()] == [pk]


# --------------------------------------------------------------------------- registry

def _catalog(registry):
    status, body = http_get(f"http://{registry}/v2/_catalog")
    assert status == 200
    return json.loads(body)["repositories"]


def test_commit_pushes_to_the_registry_and_a_missing_image_is_pulled(engine, registry):
    backend = Docker(**backend_options(registry=registry, pull_policy="if-not-present"))
    record = make(backend)
    backend.exec_in_container(record["pk"], ["sh", "-c", "echo shared > /shared.txt"])
    image = backend.create_container_image(record["pk"], "team-stack")
    assert image["pk"].startswith(registry + "/")
    repo = image["pk"][len(registry) + 1:].rsplit(":", 1)[0]
    assert repo in _catalog(registry)
    # a node that lacks the image pulls it from the registry
    engine.images.remove(image["pk"], force=True)
    assert not backend.container_image_exists(image["pk"])
    child = make(backend, "child", image=image["pk"])
    assert backend.exec_in_container(child["pk"], ["cat", "/shared.txt"]).strip() == "shared"


def test_pull_policy_never_does_not_pull(engine, registry):
    backend = Docker(**backend_options(registry=registry, pull_policy="never"))
    record = make(backend)
    image = backend.create_container_image(record["pk"], "local-only")
    engine.images.remove(image["pk"], force=True)
    with pytest.raises(errors.ContainerImageNotFoundError):
        make(backend, "child", image=image["pk"])
    assert [c["pk"] for c in backend.get_containers()] == [record["pk"]]


@pytest.fixture
def dead():
    """A registry address on 127.0.0.1 where nothing listens."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


def test_a_failed_push_leaves_no_image(engine, workdir, dead):
    backend = Docker(**backend_options(registry=dead))
    record = make(backend)
    with pytest.raises(errors.ContainerBackendError) as info:
        backend.create_container_image(record["pk"], "unpushed")
    assert dead in str(info.value)
    assert backend.get_container_images() == []
    assert [t for i in engine.images.list(filters={"label": LABEL}) for t in i.tags] == []


def test_labels_name_the_instance(docker_backend, engine):
    record = make(docker_backend)
    labels = engine.api.inspect_container(record["pk"])["Config"]["Labels"]
    assert labels["org.ipynbsrv.instance"] == INSTANCE
    assert labels["org.ipynbsrv.kind"] == "container"
    assert json.loads(labels["org.ipynbsrv.ports"]) == []


def test_status_ok(docker_backend):
    assert docker_backend.get_status() == BACKEND_STATUS_OK


def _manifest_status(registry, ref):
    import urllib.request

    repo, tag = ref[len(registry) + 1:].rsplit(":", 1)
    request = urllib.request.Request(
        f"http://{registry}/v2/{repo}/manifests/{tag}", method="HEAD",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_deleting_an_image_deletes_it_from_the_registry(engine, registry):
    backend = Docker(**backend_options(registry=registry, registry_insecure=True))
    record = make(backend)
    image = backend.create_container_image(record["pk"], "to-delete")
    assert _manifest_status(registry, image["pk"]) == 200
    backend.delete_container_image(image["pk"])
    assert _manifest_status(registry, image["pk"]) == 404
    assert not backend.container_image_exists(image["pk"])
    with pytest.raises(errors.ContainerImageNotFoundError):
        backend.delete_container_image(image["pk"])


def test_an_image_only_in_the_registry_is_deleted_there(engine, registry):
    """Another node pushed it; this node never pulled it."""
    backend = Docker(**backend_options(registry=registry, registry_insecure=True))
    record = make(backend)
    image = backend.create_container_image(record["pk"], "elsewhere")
    engine.images.remove(image["pk"], force=True)
    backend.delete_container_image(image["pk"])
    assert _manifest_status(registry, image["pk"]) == 404


# --------------------------------------------------------------------------- snapshots between nodes

def _transfer_leftovers(engine):
    helpers = engine.containers.list(all=True, filters={"label": [LABEL, "org.ipynbsrv.kind=transfer-helper"]})
    tags = [t for i in engine.images.list(filters={"label": [LABEL, "org.ipynbsrv.kind=image"]}) for t in i.tags]
    return [c.name for c in helpers], tags


def test_a_failed_export_push_leaves_no_image(engine, workdir, dead):
    backend = Docker(**backend_options(registry=dead))
    record = make(backend)
    snap = backend.create_container_snapshot(record["pk"], "s")
    with pytest.raises(errors.ContainerBackendError) as info:
        backend.export_container_snapshot(snap["pk"])
    assert dead in str(info.value)
    assert backend.get_container_images() == []
    assert _transfer_leftovers(engine) == ([], [])
    assert backend.get_container_snapshots() == [snap]


@pytest.mark.parametrize("step", ["export", "import"])
def test_the_transfer_helper_is_never_a_user_container_and_always_goes(engine, registry, monkeypatch, step):
    backend = Docker(**backend_options(registry=registry, registry_insecure=True))
    record = make(backend)
    snap = backend.create_container_snapshot(record["pk"], "s")
    image = backend.export_container_snapshot(snap["pk"]) if step == "import" else None
    if image:
        engine.images.remove(image["pk"])  # so the import pulls it, and must remove it again
    api = backend._api()
    real_commit = api.commit
    seen = {}

    def failing_commit(container, *args, **kwargs):
        labels = engine.api.inspect_container(container)["Config"]["Labels"]
        seen["labels"] = {k: labels[k] for k in ("org.ipynbsrv.instance", "org.ipynbsrv.kind")}
        seen["listed"] = [c["pk"] for c in backend.get_containers()]
        raise docker.errors.APIError("injected failure", explanation="no space left on device")

    monkeypatch.setattr(api, "commit", failing_commit)
    with pytest.raises(errors.ContainerBackendError):
        if step == "export":
            backend.export_container_snapshot(snap["pk"])
        else:
            backend.import_container_snapshot(record["pk"], "moved", image["pk"])
    monkeypatch.setattr(api, "commit", real_commit)

    assert seen["labels"] == {"org.ipynbsrv.instance": INSTANCE, "org.ipynbsrv.kind": "transfer-helper"}
    assert seen["listed"] == [record["pk"]]
    helpers, tags = _transfer_leftovers(engine)
    assert helpers == []
    assert tags == []
    assert backend.get_containers_snapshots(record["pk"]) == [snap]
    if image:
        backend.delete_container_image(image["pk"])  # from the registry
        assert _manifest_status(registry, image["pk"]) == 404


def test_an_export_is_deleted_from_the_registry_by_another_node(engine, registry):
    """Any node with the same registry and name prefix deletes it, like a committed image."""
    from ..conftest import EXTRA_INSTANCES

    backend = Docker(**backend_options(registry=registry, registry_insecure=True))
    record = make(backend)
    image = backend.export_container_snapshot(backend.create_container_snapshot(record["pk"], "s")["pk"])
    EXTRA_INSTANCES.add(f"{INSTANCE}-other")
    other = Docker(**backend_options(registry=registry, registry_insecure=True, instance=f"{INSTANCE}-other"))
    engine.images.remove(image["pk"])  # the other node never had it locally
    other.delete_container_image(image["pk"])
    assert _manifest_status(registry, image["pk"]) == 404
    with pytest.raises(errors.ContainerImageNotFoundError):
        backend.delete_container_image(image["pk"])
