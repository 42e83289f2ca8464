"""The contract suite: every rule of the container backend contract, against each backend
in ``BACKEND_KINDS``: ``Docker`` directly and ``HttpRemote`` through a live host API, both in
front of the same real engine, and ``Memory`` on its simulated host.

``behind`` is what the backend stands on, to check what it really did: the real engine
(docker-py), or for ``Memory`` the same questions asked of its host
(:mod:`tests.support.memory_engine`). The few tests that need a real process in the
container say so (:func:`engine_only`)."""

from __future__ import annotations

import datetime as dt
import os
import time

import pytest

from ipynbsrv_backends import errors
from ipynbsrv_backends.contract import (
    BACKEND_STATUS_OK,
    ContainerBackend,
    EventSourceContainerBackend,
    SnapshotableContainerBackend,
    SuspendableContainerBackend,
)

from ..conftest import ALLOWED_ROOT, BACKEND_KINDS, INSTANCE, LABEL, TEST_IMAGE, memory_options
from ..support import http_answers, wait_for
from ..support.memory_engine import MemoryEngine

UID = 4242
USER = "alice"
HTTP_PORT = [{"address": "127.0.0.1", "external": None, "internal": 8888}]
LOOP = "trap 'exit 0' TERM; while true; do sleep 0.1; done"


@pytest.fixture(params=[pytest.param(kind, marks=pytest.mark.engine) for kind in BACKEND_KINDS] + ["memory"])
def backend_kind(request):
    """The conftest's kinds, and ``memory``: the contract suite runs on the in-memory backend too."""
    return request.param


@pytest.fixture
def behind(request, backend_kind, backend):
    """The engine behind the backend (for ``memory``: its simulated host, in the same shapes)."""
    if backend_kind == "memory":
        return MemoryEngine(backend.host, backend.base_images)
    return request.getfixturevalue("engine")


def engine_only(backend_kind, reason):
    """Skip the ``memory`` kind of a test that needs a real process in the container."""
    if backend_kind == "memory":
        pytest.skip(f"engine-specific: {reason}; the memory backend runs no process")


def answers(behind, port, body=b""):
    """The container publishing ``port`` serves HTTP there; with the memory backend, which
    binds nothing, a running container of its host keeps the port."""
    if isinstance(behind, MemoryEngine):
        keepers = [c.pk for c in behind.host.containers.values()
                   if c.status == "running" and any(p["external"] == port for p in c.ports)]
        assert keepers, f"no running container keeps the host port {port}"
        return
    assert body in http_answers(f"http://127.0.0.1:{port}/")


def make(backend, name="nb", *, username=USER, uid=UID, ports=None, volumes=None, **kwargs):
    if "clone_of" not in kwargs:
        kwargs.setdefault("image", TEST_IMAGE)
    return backend.create_container(username, uid, name, ports or [], volumes or [], **kwargs)


def managed_names(raw_docker):
    return sorted(c.name for c in raw_docker.containers.list(all=True, filters={"label": LABEL}))


def inspect(raw_docker, pk):
    return raw_docker.api.inspect_container(pk)


# --------------------------------------------------------------------------- records

def test_implements_both_sub_contracts(backend):
    assert isinstance(backend, ContainerBackend)
    assert isinstance(backend, SuspendableContainerBackend)
    assert isinstance(backend, SnapshotableContainerBackend)


def test_status_ok(backend):
    assert backend.get_status() == BACKEND_STATUS_OK


def test_create_returns_a_complete_record_and_serves_http(backend, behind):
    record = make(backend, ports=HTTP_PORT, base_url="/user/alice/nb/")
    assert record["pk"] == backend_pk(record)
    assert record["status"] == "running"
    assert record["name"] == "nb"
    assert record["owner"] == USER
    assert record["image"] == TEST_IMAGE
    created = dt.datetime.fromisoformat(record["created"].replace("Z", "+00:00"))
    assert abs((dt.datetime.now(dt.UTC) - created).total_seconds()) < 120
    [port] = record["ports"]
    assert port["address"] == "127.0.0.1" and port["internal"] == 8888
    assert isinstance(port["external"], int) and port["external"] > 0
    assert record["volumes"] == []
    answers(behind, port["external"], b"ipynbsrv test page")
    # what the behind really has
    info = inspect(behind, record["pk"])
    assert info["State"]["Running"]
    labels = info["Config"]["Labels"]
    assert labels["org.ipynbsrv.instance"] == INSTANCE
    assert labels["org.ipynbsrv.owner"] == USER and labels["org.ipynbsrv.name"] == "nb"
    assert backend.get_container(record["pk"]) == record


def backend_pk(record):
    return record["pk"]


def test_records_are_json_serialisable(backend, behind):
    import json

    record = make(backend, ports=HTTP_PORT)
    snapshot = backend.create_container_snapshot(record["pk"], "s1")
    image = backend.create_container_image(record["pk"], "stack")
    for value in (record, snapshot, image, backend.get_containers(), backend.get_container_images(),
                  backend.get_container_snapshots()):
        assert json.loads(json.dumps(value)) == value


def test_fixed_external_port_is_bound(backend, behind):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    record = make(backend, ports=[{"address": "127.0.0.1", "external": free, "internal": 8888}])
    assert record["ports"] == [{"address": "127.0.0.1", "external": free, "internal": 8888}]
    answers(behind, free)


def test_port_already_in_use_is_invalid_and_leaves_nothing(backend, behind):
    first = make(backend, "first", ports=HTTP_PORT)
    taken = first["ports"][0]["external"]
    with pytest.raises(errors.InvalidArgumentError):
        make(backend, "second", ports=[{"address": "127.0.0.1", "external": taken, "internal": 8888}])
    assert managed_names(behind) == [first["pk"]]


def test_environment_has_owner_base_url_and_env(backend, behind):
    record = make(backend, base_url="/nb/alice/", env={"GREETING": "hello world", "COUNT": 3})
    out = backend.exec_in_container(record["pk"], ["sh", "-c", 'echo "$OWNER|$OWNER_UID|$BASE_URL|$GREETING|$COUNT"'])
    assert out.strip() == f"alice|{record['uid']}|/nb/alice/|hello world|3"


def test_base_url_defaults_to_root(backend, behind):
    record = make(backend)
    assert backend.exec_in_container(record["pk"], ["sh", "-c", "echo $BASE_URL"]).strip() == "/"


@pytest.mark.parametrize("env", [{"OWNER": "mallory"}, {"OWNER_UID": "0"}, {"BASE_URL": "/x"}, {"1BAD": "x"}, {"A": ["list"]}, "A=1"])
def test_bad_env_is_refused(backend, behind, env):
    with pytest.raises(errors.InvalidArgumentError):
        make(backend, env=env)
    assert managed_names(behind) == []


def test_limits_are_applied(backend, behind):
    record = make(backend, mem_limit="64m", cpu_limit=0.5, pids_limit=64)
    host = inspect(behind, record["pk"])["HostConfig"]
    assert host["Memory"] == 64 * 1024 * 1024
    assert host["NanoCpus"] == 500_000_000
    assert host["PidsLimit"] == 64
    assert "no-new-privileges" in (host.get("SecurityOpt") or [])
    assert not host["Privileged"]


@pytest.mark.parametrize("option,value", [
    ("mem_limit", "lots"), ("mem_limit", 1024), ("cpu_limit", 0), ("cpu_limit", "two"),
    ("pids_limit", 0), ("pids_limit", -1),
])
def test_bad_limits_are_refused(backend, behind, option, value):
    with pytest.raises(errors.InvalidArgumentError):
        make(backend, **{option: value})
    assert managed_names(behind) == []


@pytest.mark.parametrize("option,value", [
    ("privileged", True), ("cap_add", ["SYS_ADMIN"]), ("network_mode", "host"), ("pid_mode", "host"),
    ("devices", ["/dev/sda:/dev/sda"]), ("security_opt", ["seccomp=unconfined"]), ("user", "root"),
    ("ipc_mode", "host"), ("binds", ["/:/host"]),
])
def test_options_that_widen_privileges_are_refused(backend, behind, option, value):
    with pytest.raises(errors.InvalidArgumentError) as info:
        make(backend, **{option: value})
    assert option in str(info.value)
    assert managed_names(behind) == []


def test_unknown_option_is_refused(backend, behind):
    with pytest.raises(errors.InvalidArgumentError) as info:
        make(backend, colour="blue")
    assert "colour" in str(info.value)
    with pytest.raises(errors.InvalidArgumentError):
        backend.get_containers(colour="blue")
    assert managed_names(behind) == []


# --------------------------------------------------------------------------- names

@pytest.mark.parametrize("name", ["", "Has Space", "UPPER", "-lead", "trail-", "a" * 64, "../etc", "a/b", "a:b", "ä"])
def test_bad_names_are_refused(backend, behind, name):
    with pytest.raises(errors.InvalidArgumentError):
        make(backend, name)
    assert managed_names(behind) == []


@pytest.mark.parametrize("username,uid", [("", 1), ("bad user", 1), ("x" * 151, 1), (USER, -1), (USER, "7"), (USER, 2**31)])
def test_bad_owner_is_refused(backend, behind, username, uid):
    with pytest.raises(errors.InvalidArgumentError):
        make(backend, username=username, uid=uid)
    assert managed_names(behind) == []


def test_name_taken_is_already_exists(backend, behind):
    make(backend)
    with pytest.raises(errors.ContainerAlreadyExistsError):
        make(backend)
    # the same name for another user is fine
    other = make(backend, username="bob", uid=UID + 1)
    assert other["name"] == "nb"


def test_name_taken_by_an_unmanaged_container(backend, behind, backend_kind, request):
    namer = backend if backend_kind == "memory" else request.getfixturevalue("docker_backend")
    pk = namer.engine_name(UID, "squat")
    stranger = behind.containers.create(TEST_IMAGE, name=pk, labels={"org.ipynbsrv.instance.test": INSTANCE})
    try:
        with pytest.raises(errors.ContainerAlreadyExistsError):
            make(backend, "squat")
    finally:
        stranger.remove(force=True)


def test_image_and_clone_of_are_exclusive(backend, behind):
    with pytest.raises(errors.InvalidArgumentError):
        backend.create_container(USER, UID, "x", [], [])
    source = make(backend, "source")
    with pytest.raises(errors.InvalidArgumentError):
        backend.create_container(USER, UID, "x", [], [], image=TEST_IMAGE, clone_of=source["pk"])
    assert managed_names(behind) == [source["pk"]]


def test_missing_image_is_image_not_found(backend, behind):
    with pytest.raises(errors.ContainerImageNotFoundError):
        make(backend, image="ipynbsrv-test/does-not-exist:latest")
    assert managed_names(behind) == []


# --------------------------------------------------------------------------- ports

@pytest.mark.parametrize("port", [
    {"address": "127.0.0.1", "external": -1, "internal": 8888},
    {"address": "127.0.0.1", "external": 0, "internal": 8888},
    {"address": "127.0.0.1", "external": 70000, "internal": 8888},
    {"address": "127.0.0.1", "external": None, "internal": 0},
    {"address": "127.0.0.1", "external": None, "internal": 65536},
    {"address": "127.0.0.1", "external": "80", "internal": 8888},
    {"address": "localhost.evil", "external": None, "internal": 8888},
    {"address": "127.0.0.1", "external": None, "internal": 8888, "protocol": "udp"},
    {"external": None, "internal": 8888},
    "127.0.0.1:80:8888",
])
def test_bad_ports_are_refused(backend, behind, port):
    with pytest.raises(errors.InvalidArgumentError):
        make(backend, ports=[port])
    assert managed_names(behind) == []


def test_duplicate_internal_port_is_refused(backend, behind):
    with pytest.raises(errors.InvalidArgumentError):
        make(backend, ports=HTTP_PORT + HTTP_PORT)
    assert managed_names(behind) == []


# --------------------------------------------------------------------------- volumes

def test_bind_mount_under_an_allowed_root(backend, behind, workdir):
    home = ALLOWED_ROOT / "alice-home"
    home.mkdir(exist_ok=True)
    (home / "hello.txt").write_text("from the host")
    shared = ALLOWED_ROOT / "shared"
    shared.mkdir(exist_ok=True)
    record = make(backend, volumes=[
        {"source": str(home), "target": "/home/alice"},
        {"source": str(shared), "target": "/shared", "mode": "ro"},
    ])
    assert record["volumes"] == [
        {"source": str(home), "target": "/home/alice", "mode": "rw"},
        {"source": str(shared), "target": "/shared", "mode": "ro"},
    ]
    out = backend.exec_in_container(record["pk"], ["sh", "-c", "cat /home/alice/hello.txt; echo x > /home/alice/new"])
    assert out.strip() == "from the host"
    assert (home / "new").read_text().strip() == "x"
    out = backend.exec_in_container(record["pk"], ["sh", "-c", "echo y > /shared/f || echo refused"])
    assert "refused" in out and not (shared / "f").exists()


def test_bind_mount_escapes_are_refused(backend, behind, workdir):
    outside = workdir / "outside"
    outside.mkdir(exist_ok=True)
    link = ALLOWED_ROOT / "sneaky-link"
    if not link.exists():
        os.symlink(outside, link)
    sources = [
        str(ALLOWED_ROOT / ".." / "outside"),  # .. out of the root
        str(link),  # a symlink out of the root
        "/",
        "/proc",
        "/etc",
        "/var/run/docker.sock",
        str(ALLOWED_ROOT) + "-sibling",  # a prefix is not a parent
        "relative/path",
        str(ALLOWED_ROOT / "does-not-exist"),
    ]
    for source in sources:
        with pytest.raises(errors.InvalidArgumentError):
            make(backend, volumes=[{"source": source, "target": "/mnt"}])
    assert managed_names(behind) == []


@pytest.mark.parametrize("volume", [
    {"source": "data", "target": "relative"},
    {"source": "data", "target": "/"},
    {"source": "data", "target": "/a/../.."},
    {"source": "data", "target": "/mnt", "mode": "rwx"},
    {"source": "bad name", "target": "/mnt"},
    {"source": "data", "target": "/mnt", "extra": 1},
    {"source": "data:/x", "target": "/mnt"},
])
def test_bad_volume_records_are_refused(backend, behind, volume):
    with pytest.raises(errors.InvalidArgumentError):
        make(backend, volumes=[volume])
    assert managed_names(behind) == []
    assert behind.volumes.list(filters={"label": LABEL}) == []


def test_named_volume_is_created_labelled_and_kept(backend, behind):
    name = f"{INSTANCE}-work"
    record = make(backend, volumes=[{"source": name, "target": "/data"}])
    assert record["volumes"] == [{"source": name, "target": "/data", "mode": "rw"}]
    backend.exec_in_container(record["pk"], ["sh", "-c", "echo kept > /data/notes.txt"])
    volume = behind.volumes.get(name)
    assert volume.attrs["Labels"]["org.ipynbsrv.owner"] == USER
    backend.delete_container(record["pk"])
    assert behind.volumes.get(name)  # the user's data survives the container
    again = make(backend, "again", volumes=[{"source": name, "target": "/data"}])
    assert backend.exec_in_container(again["pk"], ["cat", "/data/notes.txt"]).strip() == "kept"


def test_another_users_named_volume_is_refused(backend, behind):
    name = f"{INSTANCE}-private"
    make(backend, volumes=[{"source": name, "target": "/data"}])
    with pytest.raises(errors.InvalidArgumentError):
        make(backend, "thief", username="mallory", uid=UID + 7, volumes=[{"source": name, "target": "/data"}])


def test_unmanaged_named_volume_is_refused(backend, behind):
    volume = behind.volumes.create(f"{INSTANCE}-foreign", labels={"org.ipynbsrv.test-owner": INSTANCE})
    try:
        with pytest.raises(errors.InvalidArgumentError):
            make(backend, volumes=[{"source": volume.name, "target": "/data"}])
    finally:
        volume.remove(force=True)


def test_failed_create_removes_the_volumes_it_made(backend, behind):
    first = make(backend, "first", ports=HTTP_PORT)
    taken = first["ports"][0]["external"]
    name = f"{INSTANCE}-fresh"
    with pytest.raises(errors.InvalidArgumentError):
        make(backend, "second", ports=[{"address": "127.0.0.1", "external": taken, "internal": 8888}],
             volumes=[{"source": name, "target": "/data"}])
    assert [v.name for v in behind.volumes.list(filters={"label": LABEL})] == []


# --------------------------------------------------------------------------- managed only

def test_unmanaged_containers_are_invisible(backend, behind):
    mine = make(backend)
    stranger = behind.containers.run(TEST_IMAGE, detach=True, labels={"purpose": "not ours"},
                                     name=f"{INSTANCE}-stranger")
    try:
        assert [c["pk"] for c in backend.get_containers()] == [mine["pk"]]
        for ref in (stranger.name, stranger.id, stranger.id[:12]):
            assert backend.container_exists(ref) is False
            for call in (backend.get_container, backend.start_container, backend.stop_container,
                         backend.delete_container, backend.suspend_container, backend.container_is_running,
                         backend.get_containers_snapshots):
                with pytest.raises(errors.ContainerNotFoundError):
                    call(ref)
            with pytest.raises(errors.ContainerNotFoundError):
                backend.exec_in_container(ref, "true")
            with pytest.raises(errors.ContainerNotFoundError):
                backend.create_container_snapshot(ref, "grab")
            with pytest.raises(errors.ContainerNotFoundError):
                backend.create_container(USER, UID, "steal", [], [], clone_of=ref)
        stranger.reload()
        assert stranger.status == "running"
    finally:
        stranger.remove(force=True)


def test_another_instance_is_invisible(backend, behind, backend_kind):
    from ipynbsrv_backends.backends import Docker, Memory

    if backend_kind == "memory":
        other = Memory(**memory_options(instance=f"{INSTANCE}-other", name_prefix="tother"))
    else:
        other = Docker(instance=f"{INSTANCE}-other", name_prefix="tother", stop_timeout=1, pull_policy="never")
    theirs = other.create_container(USER, UID, "theirs", [], [], image=TEST_IMAGE)
    try:
        assert backend.get_containers() == []
        assert not backend.container_exists(theirs["pk"])
    finally:
        other.delete_container(theirs["pk"])


def test_get_containers_only_running(backend, behind):
    running = make(backend, "running")
    stopped = make(backend, "stopped")
    suspended = make(backend, "suspended")
    backend.stop_container(stopped["pk"])
    backend.suspend_container(suspended["pk"])
    all_pks = {c["pk"]: c["status"] for c in backend.get_containers()}
    assert all_pks == {running["pk"]: "running", stopped["pk"]: "stopped", suspended["pk"]: "suspended"}
    only = {c["pk"] for c in backend.get_containers(only_running=True)}
    assert only == {running["pk"], suspended["pk"]}


def test_missing_container_is_not_found_everywhere(backend, behind):
    pk = "ipynbsrv-u1-never-made"
    assert backend.container_exists(pk) is False
    for call in (backend.get_container, backend.start_container, backend.stop_container,
                 backend.restart_container, backend.delete_container, backend.suspend_container,
                 backend.resume_container, backend.container_is_running, backend.container_is_suspended,
                 backend.get_container_logs, backend.get_containers_snapshots):
        with pytest.raises(errors.ContainerNotFoundError):
            call(pk)
    with pytest.raises(errors.ContainerNotFoundError):
        backend.create_container_image(pk, "img")
    with pytest.raises(errors.NotFoundError):
        backend.create_container(USER, UID, "x", [], [], clone_of=pk)


# --------------------------------------------------------------------------- lifecycle

def test_stop_start_restart(backend, behind):
    record = make(backend, ports=HTTP_PORT)
    pk = record["pk"]
    backend.stop_container(pk)
    assert backend.get_container(pk)["status"] == "stopped"
    assert backend.container_is_running(pk) is False
    backend.stop_container(pk)  # stopping a stopped container is harmless
    backend.start_container(pk)
    assert backend.get_container(pk)["status"] == "running"
    backend.start_container(pk)  # and so is starting a running one
    before = inspect(behind, pk)["State"]["StartedAt"]
    backend.restart_container(pk)
    after = inspect(behind, pk)["State"]
    assert after["Running"] and after["StartedAt"] != before
    answers(behind, backend.get_container(pk)['ports'][0]['external'])


def test_stop_is_graceful(backend, behind, workdir, backend_kind):
    engine_only(backend_kind, "the container's shell must catch SIGTERM")
    out = ALLOWED_ROOT / "graceful"
    out.mkdir(exist_ok=True)
    record = make(backend, volumes=[{"source": str(out), "target": "/out"}],
                  cmd=["sh", "-c", "trap 'echo bye > /out/bye; exit 0' TERM; while true; do sleep 0.1; done"])
    backend.stop_container(record["pk"])
    state = inspect(behind, record["pk"])["State"]
    assert state["ExitCode"] == 0
    assert (out / "bye").read_text().strip() == "bye"


def test_stop_kills_after_the_timeout(backend, behind, backend_kind):
    engine_only(backend_kind, "the container's shell must ignore SIGTERM")
    record = make(backend, cmd=["sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"])
    started = time.monotonic()
    backend.stop_container(record["pk"])
    elapsed = time.monotonic() - started
    state = inspect(behind, record["pk"])["State"]
    assert not state["Running"] and state["ExitCode"] == 137
    assert elapsed >= 2.5  # stop_timeout is 3 s in the suite: it waited before killing


def test_suspend_and_resume(backend, behind):
    record = make(backend, ports=HTTP_PORT)
    pk = record["pk"]
    backend.suspend_container(pk)
    assert backend.get_container(pk)["status"] == "suspended"
    assert backend.container_is_suspended(pk) is True
    assert backend.container_is_running(pk) is True  # a suspended container counts as running
    assert inspect(behind, pk)["State"]["Paused"]
    backend.suspend_container(pk)  # idempotent
    with pytest.raises(errors.IllegalContainerStateError):
        backend.start_container(pk)
    backend.resume_container(pk)
    assert backend.get_container(pk)["status"] == "running"
    assert backend.container_is_suspended(pk) is False
    answers(behind, record['ports'][0]['external'])


def test_suspend_or_resume_a_stopped_container_is_illegal(backend, behind):
    record = make(backend)
    backend.stop_container(record["pk"])
    with pytest.raises(errors.IllegalContainerStateError):
        backend.suspend_container(record["pk"])
    with pytest.raises(errors.IllegalContainerStateError):
        backend.resume_container(record["pk"])


def test_stop_a_suspended_container(backend, behind):
    record = make(backend)
    backend.suspend_container(record["pk"])
    backend.stop_container(record["pk"])
    assert backend.get_container(record["pk"])["status"] == "stopped"


@pytest.mark.parametrize("state", ["running", "stopped", "suspended"])
def test_delete_in_any_state(backend, behind, state):
    record = make(backend)
    if state == "stopped":
        backend.stop_container(record["pk"])
    elif state == "suspended":
        backend.suspend_container(record["pk"])
    backend.delete_container(record["pk"])
    assert backend.container_exists(record["pk"]) is False
    assert managed_names(behind) == []
    with pytest.raises(errors.ContainerNotFoundError):
        backend.delete_container(record["pk"])


# --------------------------------------------------------------------------- exec and logs

def test_exec_returns_stdout_and_stderr_as_text(backend, behind):
    record = make(backend)
    out = backend.exec_in_container(record["pk"], ["sh", "-c", "echo out; echo err >&2; printf 'é\\n'"])
    assert isinstance(out, str)
    assert "out" in out and "err" in out and "é" in out


def test_exec_string_is_split_without_a_shell(backend, behind):
    record = make(backend)
    assert backend.exec_in_container(record["pk"], "echo 'two words' $HOME").strip() == "two words $HOME"
    assert backend.exec_in_container(record["pk"], "echo a; echo b").strip() == "a; echo b"


@pytest.mark.parametrize("cmd", ["", [], ["ok", 3], "unbalanced 'quote", None])
def test_exec_bad_command_is_refused(backend, behind, cmd):
    record = make(backend)
    with pytest.raises(errors.InvalidArgumentError):
        backend.exec_in_container(record["pk"], cmd)


def test_exec_in_a_stopped_or_suspended_container_is_illegal(backend, behind):
    record = make(backend)
    backend.suspend_container(record["pk"])
    with pytest.raises(errors.IllegalContainerStateError):
        backend.exec_in_container(record["pk"], "true")
    backend.stop_container(record["pk"])
    with pytest.raises(errors.IllegalContainerStateError):
        backend.exec_in_container(record["pk"], "true")


def test_logs_with_tail_and_since(backend, behind, backend_kind):
    engine_only(backend_kind, "the container's command must print (see test_memory_logs_with_tail_and_since)")
    record = make(backend, cmd=["sh", "-c", "for i in 1 2 3 4 5; do echo line$i; done; echo oops >&2; " + LOOP])
    pk = record["pk"]
    lines = wait_for(lambda: backend.get_container_logs(pk) if len(backend.get_container_logs(pk)) >= 6 else None,
                     what="six log lines")
    # stdout and stderr are merged in the order the behind received them
    assert sorted(lines) == ["line1", "line2", "line3", "line4", "line5", "oops"]
    assert [line for line in lines if line != "oops"] == ["line1", "line2", "line3", "line4", "line5"]
    assert backend.get_container_logs(pk, tail=2) == lines[-2:]
    assert backend.get_container_logs(pk, tail=0) == []
    past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    future = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    assert len(backend.get_container_logs(pk, since=past.isoformat())) == 6
    assert backend.get_container_logs(pk, since=future.isoformat()) == []
    assert backend.get_container_logs(pk, since=int(future.timestamp())) == []
    for bad in ({"tail": -1}, {"tail": "x"}, {"since": "yesterday"}):
        with pytest.raises(errors.InvalidArgumentError):
            backend.get_container_logs(pk, **bad)


def test_memory_logs_with_tail_and_since(memory_backend):
    """The same rules as test_logs_with_tail_and_since, for lines the memory backend was given."""
    pk = make(memory_backend)["pk"]
    memory_backend.write_logs(pk, "line1", "line2", "oops")
    assert memory_backend.get_container_logs(pk) == ["line1", "line2", "oops"]
    assert memory_backend.get_container_logs(pk, tail=2) == ["line2", "oops"]
    assert memory_backend.get_container_logs(pk, tail=0) == []
    future = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    assert len(memory_backend.get_container_logs(pk, since=(future - dt.timedelta(hours=2)).isoformat())) == 3
    assert memory_backend.get_container_logs(pk, since=int(future.timestamp())) == []
    for bad in ({"tail": -1}, {"tail": "x"}, {"since": "yesterday"}):
        with pytest.raises(errors.InvalidArgumentError):
            memory_backend.get_container_logs(pk, **bad)
    with pytest.raises(errors.ContainerNotFoundError):
        memory_backend.write_logs("ipynbsrv-u1-ghost", "x")


# --------------------------------------------------------------------------- images

def test_commit_to_an_image(backend, behind):
    record = make(backend)
    backend.exec_in_container(record["pk"], ["sh", "-c", "echo baked > /baked.txt"])
    image = backend.create_container_image(record["pk"], "stack")
    assert image["name"] == "stack:latest"
    assert image["size"] > 0 and image["created"]
    assert backend.container_image_exists(image["pk"])
    assert backend.get_container_image(image["pk"]) == image
    assert image["pk"] in [i["pk"] for i in backend.get_container_images()]
    # the image starts containers with the committed filesystem
    child = make(backend, "child", image=image["pk"])
    assert backend.exec_in_container(child["pk"], ["cat", "/baked.txt"]).strip() == "baked"
    assert child["image"] == image["pk"]
    with pytest.raises(errors.ContainerAlreadyExistsError):
        backend.create_container_image(record["pk"], "stack")
    tagged = backend.create_container_image(record["pk"], "stack:v2")
    assert tagged["name"] == "stack:v2" and tagged["pk"] != image["pk"]


@pytest.mark.parametrize("name", ["Stack", "a b", "x:", ":tag", "a/b", "x" * 200])
def test_bad_image_names_are_refused(backend, behind, name):
    record = make(backend)
    with pytest.raises(errors.InvalidArgumentError):
        backend.create_container_image(record["pk"], name)
    assert backend.get_container_images() == []


def test_delete_image(backend, behind):
    record = make(backend)
    image = backend.create_container_image(record["pk"], "gone")
    backend.delete_container_image(image["pk"])
    assert not backend.container_image_exists(image["pk"])
    assert backend.get_container_images() == []
    with pytest.raises(errors.ContainerImageNotFoundError):
        backend.delete_container_image(image["pk"])
    with pytest.raises(errors.ContainerImageNotFoundError):
        backend.get_container_image(image["pk"])


def test_base_images_are_readable_but_never_deleted(backend, behind):
    assert backend.container_image_exists(TEST_IMAGE)
    base = backend.get_container_image(TEST_IMAGE)
    assert base["pk"] == TEST_IMAGE and base["size"] > 0
    assert TEST_IMAGE not in [i["pk"] for i in backend.get_container_images()]
    with pytest.raises(errors.ContainerImageNotFoundError):
        backend.delete_container_image(TEST_IMAGE)
    assert behind.images.get(TEST_IMAGE)


def test_missing_image_lookups(backend, behind):
    assert backend.container_image_exists("ipynbsrv-test/nope:1") is False
    with pytest.raises(errors.ContainerImageNotFoundError):
        backend.get_container_image("ipynbsrv-test/nope:1")


# --------------------------------------------------------------------------- snapshots

def test_snapshots(backend, behind):
    record = make(backend)
    pk = record["pk"]
    snap = backend.create_container_snapshot(pk, "first")
    assert snap["name"] == "first" and snap["container"] == pk and snap["created"]
    assert backend.container_snapshot_exists(snap["pk"])
    assert backend.get_container_snapshot(snap["pk"]) == snap
    assert backend.get_containers_snapshots(pk) == [snap]
    assert backend.get_container_snapshots() == [snap]
    with pytest.raises(errors.ContainerAlreadyExistsError):
        backend.create_container_snapshot(pk, "first")
    other = make(backend, "other")
    same_name = backend.create_container_snapshot(other["pk"], "first")  # unique per container only
    assert same_name["pk"] != snap["pk"]
    assert backend.get_containers_snapshots(pk) == [snap]
    assert {s["pk"] for s in backend.get_container_snapshots()} == {snap["pk"], same_name["pk"]}
    # snapshots are not images
    assert backend.get_container_images() == []
    backend.delete_container_snapshot(snap["pk"])
    assert not backend.container_snapshot_exists(snap["pk"])
    with pytest.raises(errors.ContainerSnapshotNotFoundError):
        backend.get_container_snapshot(snap["pk"])
    with pytest.raises(errors.ContainerSnapshotNotFoundError):
        backend.delete_container_snapshot(snap["pk"])


def test_snapshot_of_a_suspended_container(backend, behind):
    record = make(backend)
    backend.suspend_container(record["pk"])
    snap = backend.create_container_snapshot(record["pk"], "frozen")
    assert backend.get_container(record["pk"])["status"] == "suspended"
    assert backend.container_snapshot_exists(snap["pk"])


@pytest.mark.parametrize("name", ["", "Bad", "a b", "x" * 64])
def test_bad_snapshot_names_are_refused(backend, behind, name):
    record = make(backend)
    with pytest.raises(errors.InvalidArgumentError):
        backend.create_container_snapshot(record["pk"], name)
    assert backend.get_container_snapshots() == []


def test_base_image_is_not_a_snapshot(backend, behind):
    assert backend.container_snapshot_exists(TEST_IMAGE) is False
    with pytest.raises(errors.ContainerSnapshotNotFoundError):
        backend.delete_container_snapshot(TEST_IMAGE)
    assert behind.images.get(TEST_IMAGE)


def test_restore_brings_the_filesystem_back_and_keeps_everything_else(backend, behind):
    volume = f"{INSTANCE}-keep"
    record = make(backend, ports=HTTP_PORT, volumes=[{"source": volume, "target": "/data"}],
                  env={"KEEP": "me"}, mem_limit="64m", pids_limit=50, base_url="/b/")
    pk = record["pk"]
    backend.exec_in_container(pk, ["sh", "-c", "echo before > /state.txt; echo vol1 > /data/v.txt"])
    snap = backend.create_container_snapshot(pk, "good")
    backend.exec_in_container(pk, ["sh", "-c", "echo after > /state.txt; touch /broken; echo vol2 > /data/v.txt"])
    before = inspect(behind, pk)

    restored = backend.restore_container_snapshot(pk, snap["pk"])

    assert restored["pk"] == pk
    assert restored["status"] == "running"
    assert restored["ports"] == record["ports"]  # the same URL as before
    assert restored["volumes"] == record["volumes"]
    assert restored["created"] == record["created"] and restored["owner"] == USER
    out = backend.exec_in_container(pk, ["sh", "-c", "cat /state.txt; ls /broken 2>&1; cat /data/v.txt; echo $KEEP $OWNER $BASE_URL"])
    lines = out.strip().splitlines()
    assert lines[0] == "before"
    assert "No such file" in lines[1]
    assert lines[2] == "vol2"  # volume data is not part of a snapshot: it is never rolled back
    assert lines[3] == "me alice /b/"
    after = inspect(behind, pk)
    assert after["Id"] != before["Id"]
    for key in ("Memory", "PidsLimit", "NanoCpus", "Binds"):
        assert after["HostConfig"][key] == before["HostConfig"][key]
    assert managed_names(behind) == [pk]
    answers(behind, restored['ports'][0]['external'])
    # the snapshot is still there and still belongs to the container
    assert backend.get_containers_snapshots(pk) == [backend.get_container_snapshot(snap["pk"])]


def test_restore_keeps_a_stopped_container_stopped(backend, behind):
    record = make(backend)
    snap = backend.create_container_snapshot(record["pk"], "s")
    backend.stop_container(record["pk"])
    restored = backend.restore_container_snapshot(record["pk"], snap["pk"])
    assert restored["status"] == "stopped"
    backend.start_container(record["pk"])
    assert backend.get_container(record["pk"])["status"] == "running"


def test_restore_refuses_another_containers_snapshot(backend, behind):
    one = make(backend, "one")
    two = make(backend, "two")
    snap = backend.create_container_snapshot(two["pk"], "s")
    with pytest.raises(errors.ContainerSnapshotNotFoundError):
        backend.restore_container_snapshot(one["pk"], snap["pk"])
    with pytest.raises(errors.ContainerSnapshotNotFoundError):
        backend.restore_container_snapshot(one["pk"], "nope:nope")
    with pytest.raises(errors.ContainerNotFoundError):
        backend.restore_container_snapshot("ipynbsrv-u1-ghost", snap["pk"])
    assert backend.get_container(one["pk"])["status"] == "running"


def test_delete_removes_the_containers_snapshots(backend, behind):
    record = make(backend)
    snap = backend.create_container_snapshot(record["pk"], "s")
    backend.restore_container_snapshot(record["pk"], snap["pk"])
    backend.delete_container(record["pk"])
    assert backend.get_container_snapshots() == []
    assert behind.images.list(all=True, filters={"label": LABEL}) == []


# --------------------------------------------------------------------------- clones

def test_clone_starts_from_the_current_filesystem(backend, behind):
    source = make(backend, "source", env={"SECRET_OF_SOURCE": "x"})
    backend.exec_in_container(source["pk"], ["sh", "-c", "echo work > /work.txt"])
    clone = make(backend, "copy", username="bob", uid=UID + 1, clone_of=source["pk"], ports=HTTP_PORT)
    assert clone["status"] == "running" and clone["owner"] == "bob"
    assert clone["image"] == source["image"]
    assert backend.exec_in_container(clone["pk"], ["cat", "/work.txt"]).strip() == "work"
    assert backend.exec_in_container(clone["pk"], ["sh", "-c", "echo $OWNER"]).strip() == "bob"
    answers(behind, clone['ports'][0]['external'])
    # the source is untouched and no helper image is left behind
    assert backend.get_container(source["pk"])["status"] == "running"
    tagged = [tag for image in behind.images.list(filters={"label": LABEL}) for tag in image.tags]
    assert tagged == []
    backend.delete_container(clone["pk"])
    backend.delete_container(source["pk"])
    assert behind.images.list(all=True, filters={"label": LABEL}) == []


def test_clone_name_taken_makes_nothing(backend, behind):
    source = make(backend, "source")
    with pytest.raises(errors.ContainerAlreadyExistsError):
        make(backend, "source", clone_of=source["pk"])
    assert behind.images.list(all=True, filters={"label": LABEL}) == []


# --------------------------------------------------------------------------- snapshots between nodes
#
# ``export_container_snapshot`` and ``import_container_snapshot`` (not in the contract): two
# "nodes" on the same behind, each its own backend instance and name prefix, sharing the
# suite's registry; for the ``http_remote`` kind each node is a host API process.

TRANSFER_NODES = ("xa", "xb")


def transfer_options(node, registry):
    from ..conftest import EXTRA_INSTANCES, PREFIX, backend_options

    EXTRA_INSTANCES.add(f"{INSTANCE}-{node}")
    return backend_options(instance=f"{INSTANCE}-{node}", name_prefix=f"{PREFIX}{node}", registry=registry,
                           registry_insecure=True)


@pytest.fixture(scope="module")
def transfer_hostapi_nodes(raw_docker, workdir, registry):
    from ..hostapi_process import HostAPINode

    nodes = [HostAPINode(workdir, backend_args=transfer_options(node, registry)) for node in TRANSFER_NODES]
    try:
        for node in nodes:
            node.start()
        yield nodes
    finally:
        for node in nodes:
            if node.process is not None and node.process.poll() is None:
                assert node.terminate() == 0, node.log()


@pytest.fixture(params=["docker", "http_remote"])
def nodes(request, engine, registry):
    """(node a, node b, Docker of a, Docker of b): the backends under test and, to look
    behind them, the same backends called directly."""
    from ipynbsrv_backends.backends import Docker, HttpRemote

    direct = [Docker(**transfer_options(node, registry)) for node in TRANSFER_NODES]
    if request.param == "docker":
        yield (*direct, *direct)
        return
    remotes = [HttpRemote(node.url, token=node.token, timeout=60, long_timeout=300)
               for node in request.getfixturevalue("transfer_hostapi_nodes")]
    yield (*remotes, *direct)
    for remote in remotes:
        remote.close()


def manifest_status(registry, ref):
    import requests

    repo, tag = ref[len(registry) + 1:].rsplit(":", 1)
    return requests.head(f"http://{registry}/v2/{repo}/manifests/{tag}", timeout=10, headers={
        "Accept": "application/vnd.docker.distribution.manifest.v2+json"}).status_code


def helpers_left(engine):
    """Transfer helper containers, and transfer images that are still tagged, of this run."""
    containers = [c.name for c in engine.containers.list(all=True, filters={"label": "org.ipynbsrv.kind=transfer-helper"})
                  if c.labels.get("org.ipynbsrv.instance", "").startswith(INSTANCE)]
    return containers


def tags_of(engine, instance):
    return sorted(tag for image in engine.images.list(filters={"label": f"org.ipynbsrv.instance={instance}"})
                  for tag in image.tags)


@pytest.mark.engine
def test_a_snapshot_travels_to_another_node(nodes, engine, registry):
    a, b, direct_a, direct_b = nodes
    source = make(a, "nb")
    a.exec_in_container(source["pk"], ["sh", "-c", "echo in-the-snapshot > /state.txt"])
    snap = a.create_container_snapshot(source["pk"], "s1")
    a.exec_in_container(source["pk"], ["sh", "-c", "echo later > /state.txt"])

    image = a.export_container_snapshot(snap["pk"])

    prefix_a = direct_a.name_prefix
    assert image["pk"].startswith(f"{registry}/{prefix_a}-u{UID}/transfer-s1-")  # the container's uid
    assert image["managed"] is True and image["registry"] == registry
    assert image["container"] == source["pk"] and image["owner"] == USER
    assert image["name"] == image["pk"].rsplit("/", 1)[1]
    assert len(image["name"]) <= 120
    assert a.get_container_image(image["pk"]) == image
    assert [i["pk"] for i in a.get_container_images()] == [image["pk"]]
    labels = engine.api.inspect_image(image["pk"])["Config"]["Labels"]
    assert labels["org.ipynbsrv.instance"] == direct_a.instance and labels["org.ipynbsrv.kind"] == "image"
    assert manifest_status(registry, image["pk"]) == 200
    assert helpers_left(engine) == []
    assert [c["pk"] for c in a.get_containers()] == [source["pk"]]
    assert a.get_container_snapshots() == [snap]  # the snapshot itself stays
    # a second export of the same snapshot is another image
    again = a.export_container_snapshot(snap["pk"])
    assert again["pk"] != image["pk"]
    a.delete_container_image(again["pk"])

    # The other node has its own engine: it must pull the image from the registry.
    engine.images.remove(image["pk"])
    target = make(b, "nb")
    assert target["pk"] != source["pk"]
    b.exec_in_container(target["pk"], ["sh", "-c", "echo target > /state.txt"])

    moved = b.import_container_snapshot(target["pk"], "s1", image["pk"])

    assert moved["pk"] == f"{direct_b.name_prefix}-snapshots/{target['pk']}:s1"
    assert moved["name"] == "s1" and moved["container"] == target["pk"] and moved["created"]
    assert b.get_container_snapshot(moved["pk"]) == moved
    assert b.get_containers_snapshots(target["pk"]) == [moved]
    assert b.get_container_snapshots() == [moved]
    assert b.get_container_images() == []
    labels = engine.api.inspect_image(moved["pk"])["Config"]["Labels"]
    assert labels["org.ipynbsrv.instance"] == direct_b.instance
    assert labels["org.ipynbsrv.kind"] == "snapshot"
    assert labels["org.ipynbsrv.container"] == target["pk"] and labels["org.ipynbsrv.snapshot"] == "s1"
    # the pulled transfer tag is gone here, but not from the registry (the caller deletes it)
    assert not direct_a.container_image_exists(image["pk"])
    assert manifest_status(registry, image["pk"]) == 200
    assert helpers_left(engine) == []
    assert tags_of(engine, direct_b.instance) == [moved["pk"]]

    restored = b.restore_container_snapshot(target["pk"], moved["pk"])
    assert restored["pk"] == target["pk"] and restored["status"] == "running"
    assert b.exec_in_container(target["pk"], ["cat", "/state.txt"]).strip() == "in-the-snapshot"
    assert b.get_containers_snapshots(target["pk"]) == [moved]

    # deleted like any snapshot: by itself, and with its container
    second = b.import_container_snapshot(target["pk"], "s2", image["pk"])  # pulled again
    b.delete_container_snapshot(moved["pk"])
    assert not b.container_snapshot_exists(moved["pk"])
    assert b.get_containers_snapshots(target["pk"]) == [second]
    b.delete_container(target["pk"])
    assert b.get_container_snapshots() == []
    assert engine.images.list(all=True, filters={"label": f"org.ipynbsrv.instance={direct_b.instance}"}) == []

    # the image is deleted like one from create_container_image: here and in the registry
    a.delete_container_image(image["pk"])
    assert manifest_status(registry, image["pk"]) == 404
    assert manifest_status(registry, again["pk"]) == 404
    assert a.get_container_images() == []
    assert tags_of(engine, direct_a.instance) == [snap["pk"]]
    assert helpers_left(engine) == []


@pytest.mark.engine
def test_import_of_a_snapshot_name_taken_is_already_exists(nodes, engine, registry):
    a, b, direct_a, direct_b = nodes
    source = make(a, "nb")
    image = a.export_container_snapshot(a.create_container_snapshot(source["pk"], "s1")["pk"])
    target = make(b, "nb")
    taken = b.create_container_snapshot(target["pk"], "s1")
    with pytest.raises(errors.ContainerAlreadyExistsError):
        b.import_container_snapshot(target["pk"], "s1", image["pk"])
    assert b.get_containers_snapshots(target["pk"]) == [taken]
    # On a shared engine the image is not pulled, so the node's tag stays where it is.
    other = b.import_container_snapshot(target["pk"], "s2", image["pk"])
    assert {s["pk"] for s in b.get_containers_snapshots(target["pk"])} == {taken["pk"], other["pk"]}
    assert a.get_container_image(image["pk"]) == image
    assert tags_of(engine, direct_b.instance) == sorted([taken["pk"], other["pk"]])
    assert helpers_left(engine) == []
    a.delete_container_image(image["pk"])
    assert manifest_status(registry, image["pk"]) == 404
    assert b.get_container_snapshot(other["pk"]) == other  # an imported snapshot keeps its layers


@pytest.mark.engine
def test_snapshot_transfer_errors(nodes, engine, registry):
    a, b, direct_a, direct_b = nodes
    source = make(a, "nb")
    snap = a.create_container_snapshot(source["pk"], "s1")
    target = make(b, "nb")
    absent = f"{registry}/{direct_a.name_prefix}-u{UID}/transfer-nothing:latest"
    for call, error in [
        (lambda: a.export_container_snapshot("nope/nope:nope"), errors.ContainerSnapshotNotFoundError),
        (lambda: a.export_container_snapshot(TEST_IMAGE), errors.ContainerSnapshotNotFoundError),
        (lambda: b.export_container_snapshot(snap["pk"]), errors.ContainerSnapshotNotFoundError),  # a's
        (lambda: a.export_container_snapshot(""), errors.InvalidArgumentError),
        (lambda: a.export_container_snapshot(snap["pk"], colour="blue"), errors.InvalidArgumentError),
        (lambda: b.import_container_snapshot("ipynbsrv-u1-ghost", "s1", absent), errors.ContainerNotFoundError),
        (lambda: b.import_container_snapshot(source["pk"], "s1", absent), errors.ContainerNotFoundError),  # a's
        (lambda: b.import_container_snapshot(target["pk"], "s1", absent), errors.ContainerImageNotFoundError),
        (lambda: b.import_container_snapshot(target["pk"], "Bad Name", absent), errors.InvalidArgumentError),
        (lambda: b.import_container_snapshot(target["pk"], "s1", ""), errors.InvalidArgumentError),
        (lambda: b.import_container_snapshot(target["pk"], "s1", TEST_IMAGE), errors.InvalidArgumentError),
        (lambda: b.import_container_snapshot(target["pk"], "s1", absent, colour="blue"), errors.InvalidArgumentError),
    ]:
        with pytest.raises(error):
            call()
    assert b.get_container_snapshots() == []
    assert a.get_container_images() == []
    assert helpers_left(engine) == []
    assert [c["pk"] for c in b.get_containers()] == [target["pk"]]


def test_snapshot_transfer_needs_a_registry(backend, behind):
    """The contract suite's backends have no registry."""
    record = make(backend)
    snap = backend.create_container_snapshot(record["pk"], "s1")
    with pytest.raises(errors.CapabilityNotSupportedError, match="registry"):
        backend.export_container_snapshot(snap["pk"])
    with pytest.raises(errors.CapabilityNotSupportedError, match="registry"):
        backend.import_container_snapshot(record["pk"], "s2", "127.0.0.1:5000/x/y:z")
    assert backend.get_container_images() == []
    assert backend.get_containers_snapshots(record["pk"]) == [snap]
    assert helpers_left(behind) == []


# --------------------------------------------------------------------------- events

def follow(backend, seen, **kwargs):
    """Collect a stream's items in a thread until a container is removed (or the stream's own
    timeout), then close it."""
    import threading

    def run():
        stream = backend.get_container_events(**kwargs)
        for item in stream:
            seen.append(item)
            if isinstance(item, dict) and item["action"] == "destroy":
                stream.close()
                return

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_events_stream_the_lifecycle_of_its_own_containers(backend, behind):
    """Each step of a container's life is an event in order, with its status after it; a stream
    started from a cursor goes on after it (the engine keeps what came meanwhile)."""
    assert isinstance(backend, EventSourceContainerBackend)
    with pytest.raises(errors.InvalidArgumentError):
        backend.get_container_events(heartbeat=0)
    seen: list = []
    thread = follow(backend, seen, timeout=20, heartbeat=0.5)
    wait_for(lambda: any(isinstance(item, str) for item in seen), timeout=10, what="the stream's first heartbeat")
    pk = make(backend, cmd=["sh", "-c", LOOP])["pk"]
    backend.suspend_container(pk)
    backend.resume_container(pk)
    backend.stop_container(pk)
    backend.delete_container(pk)

    def ours():
        return [e for e in list(seen) if isinstance(e, dict) and e["container"] == pk]

    wait_for(lambda: any(e["action"] == "destroy" for e in ours()), timeout=10, what="the destroy event")
    steps = [(e["action"], e["status"]) for e in ours()]
    assert steps == [("start", "running"), ("pause", "suspended"), ("unpause", "running"), ("die", "stopped"),
                     ("destroy", None)], steps
    assert all((e["owner"], e["name"]) == (USER, "nb") for e in ours())
    assert ours()[3]["exit_code"] == 0 and ours()[3]["message"] == "stopped (exit code 0)"
    cursors = [int(e["cursor"]) for e in ours()]
    assert cursors == sorted(set(cursors))
    thread.join(timeout=15)
    assert not thread.is_alive()  # closed: a stream ends when its reader leaves
    rest = [e["action"] for e in backend.get_container_events(since=ours()[1]["cursor"], timeout=1, heartbeat=1)
            if isinstance(e, dict) and e["container"] == pk]
    assert rest == ["unpause", "die", "destroy"]


def test_a_heartbeat_is_a_cursor_a_stream_can_start_from(backend, behind):
    """Nothing is lost between two streams even when nothing happened in the first: its
    heartbeat says up to where, and the next starts from there."""
    stream = backend.get_container_events(timeout=10, heartbeat=0.5)
    beat = next(item for item in stream if isinstance(item, str))
    stream.close()
    pk = make(backend, name="after-beat", cmd=["sh", "-c", LOOP])["pk"]
    after = [e["action"] for e in backend.get_container_events(since=beat, timeout=1, heartbeat=0.5)
             if isinstance(e, dict) and e["container"] == pk]
    assert after == ["start"]
