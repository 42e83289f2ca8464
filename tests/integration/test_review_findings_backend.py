"""Five findings of an outside security review, each reproduced against the real engine.

1. A bind source swapped for a symlink after the create-time check (start, restart, restore).
2. Registry credentials sent to whatever registry an image reference names.
3. Image, snapshot and container pks that walk to other engine objects (``../containers/X``).
4. Validators that accepted a trailing newline (``$`` with ``match``).
5. Options and numbers that reached the engine (or Python's call machinery) and came back
   as 500 instead of 400: an option named ``self``, limits beyond int64.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid

import pytest
import requests

from ipynbsrv_backends import errors
from ipynbsrv_backends.backends import Docker
from ipynbsrv_backends.hostapi.wire import encode_pk

from ..conftest import ALLOWED_ROOT, PREFIX, TEST_IMAGE, WORK_DIR, backend_options
from ..tiny_servers import CannedNode
from .test_contract import make

pytestmark = pytest.mark.engine


# ---------------------------------------------------------------------------- 1. bind sources

@pytest.fixture
def swap_dirs(workdir):
    """``ROOT/x`` (with ``d`` in it) inside the allowed root, ``outside`` with a secret."""
    tag = uuid.uuid4().hex[:8]
    inside = ALLOWED_ROOT / f"x-{tag}"
    (inside / "d").mkdir(parents=True)
    (inside / "d" / "mine.txt").write_text("mine\n")
    outside = WORK_DIR / f"outside-{tag}"
    outside.mkdir()
    (outside / "secret.txt").write_text("host secret\n")
    yield inside, outside
    shutil.rmtree(inside, ignore_errors=True)
    shutil.rmtree(outside, ignore_errors=True)


def _swap_from_inside(backend, attacker_pk: str, outside) -> None:
    """From inside A (which mounts ROOT/x at /mnt): replace ``d`` with a symlink that the
    engine resolves on the host, to ``outside``."""
    backend.exec_in_container(attacker_pk, ["sh", "-c", f"rm -rf /mnt/d && ln -s {outside} /mnt/d"])


def _sees_secret(backend, pk: str) -> bool:
    return "host secret" in backend.exec_in_container(pk, ["sh", "-c", "cat /data/secret.txt 2>&1 || true"])


def test_a_bind_source_swapped_for_a_symlink_is_refused_at_start_restart_and_restore(backend, engine, swap_dirs):
    inside, outside = swap_dirs
    attacker = make(backend, "a", volumes=[{"source": str(inside), "target": "/mnt", "mode": "rw"}])
    victim = make(backend, "b", volumes=[{"source": str(inside / "d"), "target": "/data", "mode": "rw"}])
    assert "mine" in backend.exec_in_container(victim["pk"], ["cat", "/data/mine.txt"])
    snapshot = backend.create_container_snapshot(victim["pk"], "before")
    backend.stop_container(victim["pk"])

    _swap_from_inside(backend, attacker["pk"], outside)
    assert os.path.islink(inside / "d")

    with pytest.raises(errors.IllegalContainerStateError) as info:
        backend.start_container(victim["pk"])
    message = str(info.value)
    assert str(inside / "d") in message and "symlink" in message and str(outside) in message
    assert backend.get_container(victim["pk"])["status"] == "stopped"
    with pytest.raises(errors.IllegalContainerStateError):
        backend.restart_container(victim["pk"])
    with pytest.raises(errors.IllegalContainerStateError):
        backend.restore_container_snapshot(victim["pk"], snapshot["pk"])
    assert backend.get_container(victim["pk"])["status"] == "stopped"
    # A clone (and so a move, which creates on the target) resolves its sources again.
    with pytest.raises(errors.InvalidArgumentError):
        make(backend, "c", clone_of=victim["pk"],
             volumes=[{"source": str(inside / "d"), "target": "/data", "mode": "rw"}])

    # Put the directory back: the container starts again.
    os.unlink(inside / "d")
    (inside / "d").mkdir()
    backend.start_container(victim["pk"])
    assert not _sees_secret(backend, victim["pk"])
    backend.delete_container(attacker["pk"])
    backend.delete_container(victim["pk"])


def test_a_running_container_whose_source_was_swapped_is_not_restarted(backend, engine, swap_dirs):
    inside, outside = swap_dirs
    attacker = make(backend, "a", volumes=[{"source": str(inside), "target": "/mnt", "mode": "rw"}])
    victim = make(backend, "b", volumes=[{"source": str(inside / "d"), "target": "/data", "mode": "rw"}])
    _swap_from_inside(backend, attacker["pk"], outside)
    with pytest.raises(errors.IllegalContainerStateError) as info:
        backend.restart_container(victim["pk"])
    assert str(inside / "d") in str(info.value)
    assert not _sees_secret(backend, victim["pk"])  # still the old mount, never remounted


def test_a_bind_source_that_vanished_or_left_the_roots_is_refused(docker_backend, engine, swap_dirs, workdir):
    inside, _outside = swap_dirs
    victim = make(docker_backend, "b", volumes=[{"source": str(inside / "d"), "target": "/data", "mode": "ro"}])
    docker_backend.stop_container(victim["pk"])
    shutil.rmtree(inside / "d")  # the engine would create it again, as root
    with pytest.raises(errors.IllegalContainerStateError) as info:
        docker_backend.start_container(victim["pk"])
    assert "no longer exists" in str(info.value)
    (inside / "d").mkdir()
    # The same container, seen by a backend whose roots no longer include the path.
    elsewhere = WORK_DIR / f"other-root-{uuid.uuid4().hex[:6]}"
    elsewhere.mkdir()
    narrowed = Docker(**backend_options(allowed_volume_roots=[str(elsewhere)]))
    with pytest.raises(errors.IllegalContainerStateError) as info:
        narrowed.start_container(victim["pk"])
    assert "outside the allowed volume roots" in str(info.value)
    docker_backend.start_container(victim["pk"])
    docker_backend.delete_container(victim["pk"])


# ---------------------------------------------------------------------------- 2. credentials

def _recording_registry():
    return CannedNode(lambda method, path, headers, body: (
        401, {"WWW-Authenticate": 'Basic realm="x"', "Content-Type": "application/json"},
        b'{"errors": [{"code": "UNAUTHORIZED", "message": "no"}]}'))


def _basic_sent(server) -> bool:
    return any("Basic" in r["headers"].get("Authorization", "") for r in server.requests)


def test_registry_credentials_go_only_to_the_configured_registry(engine, raw_docker):
    with _recording_registry() as configured, _recording_registry() as stranger:
        mine, theirs = configured.url.removeprefix("http://"), stranger.url.removeprefix("http://")
        backend = Docker(**backend_options(registry=mine, registry_username="ci",
                                           registry_password="hunter2-secret"))
        # The control: the configured registry is asked with the credentials.
        with pytest.raises(errors.BackendError):
            backend.pull_container_image(f"{mine}/x:latest")
        assert _basic_sent(configured), "the configured registry never got the credentials"
        # A registry the caller names gets none, on a pull or a push.
        with pytest.raises(errors.BackendError):
            backend.pull_container_image(f"{theirs}/x:latest")
        assert stranger.requests, "the engine never asked the stranger registry"
        raw_docker.api.tag(TEST_IMAGE, f"{theirs}/x", "latest")
        try:
            with pytest.raises(errors.BackendError):
                backend.push_image(f"{theirs}/x:latest")
        finally:
            raw_docker.api.remove_image(f"{theirs}/x:latest")
        assert len([r for r in stranger.requests if r["method"] != "GET" or "/v2/" in r["path"]]) >= 2
        assert not _basic_sent(stranger), "credentials reached a registry the caller named"


@pytest.mark.parametrize("configured,image,expected", [
    ("10.0.0.1:5000", "10.0.0.1:5000/a/b:1", True),
    ("10.0.0.1:5000/ns", "10.0.0.1:5000/ns/b:1", True),
    ("10.0.0.1:5000", "10.0.0.1:5001/a:1", False),
    ("10.0.0.1:5000", "10.0.0.1/a:1", False),
    ("10.0.0.1:5000", "evil.example/10.0.0.1:5000/a", False),
    ("registry.example", "registry.example/a", True),
    ("registry.example", "registry.example.evil/a", False),
    ("registry.example", "REGISTRY.example/a", False),
    ("localhost", "localhost/a", True),
    ("localhost:5000", "localhost/a", False),
    ("registry.example", "a/b", False),  # Docker Hub
    ("registry.example", "busybox", False),
])
def test_the_registry_host_of_a_reference_follows_docker_rules(configured, image, expected):
    backend = Docker(registry=configured, registry_username="u", registry_password="p")
    assert (backend._auth_config_for(image) is not None) is expected


# ---------------------------------------------------------------------------- 3. pks

WALKING_PKS = [
    "../containers/{name}", "x/../../containers/{name}", "a//b", "/images/x", "a/", "x:latest/../..",
    "sha256:../../containers/{name}", "a b", "a\tb", "a?b", "a#b", "a%2e%2e/b", "ä", "x\n", "a" * 600,
    "..", ".", "a:b:c", "x@sha256:12", "-a",
]


def test_image_and_snapshot_pks_cannot_walk_to_other_engine_objects(backend, engine, raw_docker):
    stranger = f"{PREFIX}-stranger-{uuid.uuid4().hex[:6]}"
    raw_docker.containers.create(TEST_IMAGE, name=stranger, labels={"org.ipynbsrv.instance": "not-ours"})
    try:
        for template in WALKING_PKS:
            pk = template.format(name=stranger)
            for call in (backend.container_image_exists, backend.get_container_image,
                         backend.delete_container_image, backend.container_snapshot_exists,
                         backend.get_container_snapshot, backend.delete_container_snapshot,
                         backend.container_exists, backend.get_container):
                with pytest.raises(errors.InvalidArgumentError) as info:
                    call(pk)
                assert "a valid one is" in str(info.value), (pk, call, str(info.value))
        for pk in ("Upper", "a/Upper", "x:tag with space", "x:" + "t" * 129, "a" * 256 + ":tag"):
            with pytest.raises(errors.InvalidArgumentError):
                backend.container_image_exists(pk)  # not a reference (an engine name may be)
    finally:
        raw_docker.containers.get(stranger).remove(force=True)


def test_valid_references_and_ids_still_answer(backend, engine, raw_docker):
    image_id = raw_docker.images.get(TEST_IMAGE).id
    for pk in (TEST_IMAGE, TEST_IMAGE.rsplit(":", 1)[0], image_id, image_id.split(":")[1][:12]):
        assert backend.container_image_exists(pk), pk
    assert not backend.container_image_exists("127.0.0.1:5000/no-such/image:v1.2_x-y")
    assert not backend.container_image_exists(f"{TEST_IMAGE.split(':')[0]}@sha256:{'0' * 64}")
    assert not backend.container_snapshot_exists(f"{PREFIX}-snapshots/{PREFIX}-u1-nb:snap")
    assert not backend.container_exists(f"{PREFIX}-u1-nb")


def test_the_host_api_refuses_a_walking_pk_with_400(hostapi_node, engine):
    headers = {"Authorization": f"Bearer {hostapi_node.token}"}
    for path in ("images/{}/exists/", "images/{}/", "snapshots/{}/exists/", "containers/{}/"):
        response = requests.get(f"{hostapi_node.url}/{path.format(encode_pk('../containers/x'))}",
                                headers=headers, timeout=30)
        assert response.status_code == 400, (path, response.status_code, response.text[:300])
        answer = response.json()
        assert answer["code"] == "invalid_argument" and "a valid one is" in answer["detail"], answer


# ---------------------------------------------------------------------------- 4. trailing newlines

@pytest.mark.parametrize("field,value", [
    ("username", "alice\n"), ("name", "nb\n"),
])
def test_a_trailing_newline_is_refused_in_names(backend, engine, field, value):
    kwargs = {"name": "nb", "username": "alice", field: value}
    name = kwargs.pop("name")
    with pytest.raises(errors.InvalidArgumentError):
        make(backend, name, **kwargs)


def test_a_trailing_newline_is_refused_in_env_keys(backend, engine):
    with pytest.raises(errors.InvalidArgumentError):
        make(backend, env={"X\n": "1"})


# ---------------------------------------------------------------------------- 5. 400, never 500

@pytest.mark.parametrize("option,value", [
    ("mem_limit", 2**70), ("mem_limit", "99999999999999999999g"), ("mem_limit", 2**63),
    ("mem_limit", "9" * 400), ("mem_limit", -1), ("mem_limit", "8388608.5e400"),
    ("pids_limit", 2**70), ("pids_limit", 2**31), ("pids_limit", 0),
    ("cpu_limit", 2**70), ("cpu_limit", 0), ("cpu_limit", -1),
])
def test_limits_beyond_the_engine_are_refused(backend, engine, option, value):
    with pytest.raises(errors.InvalidArgumentError) as info:
        make(backend, **{option: value})
    assert option in str(info.value)


def test_the_largest_accepted_limits_start(docker_backend, engine):
    from ipynbsrv_backends.validation import MAX_MEMORY, MAX_PIDS

    record = make(docker_backend, mem_limit=MAX_MEMORY, pids_limit=MAX_PIDS, cpu_limit=1)
    assert record["status"] == "running"
    docker_backend.delete_container(record["pk"])


def _post(node, path, body):
    return requests.post(f"{node.url}/{path}", data=json.dumps(body), timeout=120, headers={
        "Authorization": f"Bearer {node.token}", "Content-Type": "application/json"})


def _get(node, path, options):
    return requests.get(f"{node.url}/{path}", params={"options": json.dumps(options)}, timeout=60,
                        headers={"Authorization": f"Bearer {node.token}"})


def test_the_host_api_answers_400_for_positional_names_and_huge_limits(hostapi_node, engine):
    create = {"username": "alice", "uid": 4242, "name": "nb", "ports": [], "volumes": [], "image": TEST_IMAGE}
    bodies = [
        {**create, "options": {"self": 1}},
        {**create, "options": {"mem_limit": 2**70}},
        {**create, "options": {"mem_limit": "99999999999999999999g"}},
        {**create, "options": {"pids_limit": 2**70}},
        {**create, "options": {"cpu_limit": 2**70}},
    ]
    for body in bodies:
        response = _post(hostapi_node, "containers/", body)
        assert response.status_code == 400, (body["options"], response.status_code, response.text[:300])
        assert response.json()["code"] == "invalid_argument", response.text[:300]
    pk = encode_pk(f"{PREFIX}-u4242-nb")
    for path in (f"containers/{pk}/", f"containers/{pk}/exists/", "containers/", f"images/{pk}/",
                 f"containers/{pk}/logs/"):
        for name in ("self", "container", "image", "only_running", "cls"):
            response = _get(hostapi_node, path, {name: 1})
            assert response.status_code == 400, (path, name, response.status_code, response.text[:300])
            answer = response.json()
            assert answer["code"] == "invalid_argument" and name in answer["detail"], (path, name, answer)
    for path in (f"containers/{pk}/start/", f"containers/{pk}/stop/"):
        response = _post(hostapi_node, path, {"options": {"self": 1}})
        assert response.status_code == 400, (path, response.status_code, response.text[:300])
        assert response.json()["code"] == "invalid_argument"
    assert hostapi_node.process.poll() is None



def _table_of_validators():
    from django.core.exceptions import ValidationError

    from ipynbsrv_backends import validation as v
    from ipynbsrv_backends.models import name_validator

    def model_name(value):
        try:
            name_validator(value)
        except ValidationError as exc:
            raise errors.InvalidArgumentError(str(exc)) from None

    return {
        "name": lambda x: v.validate_name(x + "\n"),
        "username": lambda x: v.validate_username(x + "\n"),
        "env key": lambda x: v.validate_env({x.upper() + "\n": "1"}),
        "volume name": lambda x: v.validate_volumes([{"source": x + "\n", "target": "/data"}]),
        "container pk": lambda x: v.validate_pk(x + "\n"),
        "image pk": lambda x: v.validate_pk(x + "\n", "image"),
        "instance": lambda x: Docker.validate_options(instance=x + "\n"),
        "name_prefix": lambda x: Docker.validate_options(name_prefix=x + "\n"),
        "registry": lambda x: Docker.validate_options(registry="10.0.0.1:5000/" + x + "\n"),
        "version": lambda x: Docker.validate_options(version="1.41\n"),
        "image name": lambda x: Docker(**backend_options())._image_ref(1, x + "\n"),
        "model name": lambda x: model_name(x + "\n"),
    }


@pytest.mark.parametrize("what", sorted(_table_of_validators()))
def test_no_validator_accepts_a_trailing_newline(what):
    check = _table_of_validators()[what]
    with pytest.raises(errors.InvalidArgumentError):
        check("abc")
    with pytest.raises(errors.InvalidArgumentError):
        check("abc\n")  # two of them, too
