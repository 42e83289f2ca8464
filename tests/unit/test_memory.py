"""What the in-memory backend adds to the contract (the contract itself: tests/integration/test_contract.py):
its options, its simulated host shared by instances, its thread safety, snapshots travelling
through an in-memory registry, and the small shell of exec_in_container."""

from __future__ import annotations

import os
import threading

import pytest

from ipynbsrv_backends import errors
from ipynbsrv_backends.backends import Memory

from ..conftest import ALLOWED_ROOT, INSTANCE, PREFIX, TEST_IMAGE, memory_options


@pytest.fixture
def memory(workdir):
    yield Memory(**memory_options())
    Memory.reset(INSTANCE)


def make(backend, name="nb", uid=4242, **kwargs):
    kwargs.setdefault("image", TEST_IMAGE)
    return backend.create_container("alice", uid, name, kwargs.pop("ports", []), kwargs.pop("volumes", []), **kwargs)


def test_is_allow_listed_and_checked_like_any_backend(db):
    from django.core.exceptions import ValidationError

    from ipynbsrv_backends import registry

    assert registry.backend_class("Memory") is Memory
    assert registry.validate_backend_config("Memory", {"instance": "dev"})["images"] == ("ipynbsrv/notebook:latest",)
    for bad, named in [({"colour": "blue"}, "colour"), ({"port_range": [30, 20]}, "port_range"),
                       ({"images": ["Not A Ref"]}, "image"), ({"allowed_volume_roots": ["relative"]}, "allowed_volume_roots"),
                       ({"instance": "a b"}, "instance"), ({"stop_timeout": -1}, "stop_timeout")]:
        with pytest.raises(ValidationError, match=named):
            registry.validate_backend_config("Memory", bad)


def test_instances_on_one_host_share_names_and_ports_but_not_containers(memory):
    other = Memory(**memory_options(instance=f"{INSTANCE}-b"))
    mine = make(memory, ports=[{"address": "127.0.0.1", "external": None, "internal": 8888}])
    assert other.get_containers() == [] and not other.container_exists(mine["pk"])
    with pytest.raises(errors.ContainerAlreadyExistsError):
        make(other)  # the same name prefix: the host's name is taken
    taken = mine["ports"][0]["external"]
    third = Memory(**memory_options(instance=f"{INSTANCE}-c", name_prefix=f"{PREFIX}c"))
    with pytest.raises(errors.InvalidArgumentError, match=str(taken)):
        make(third, ports=[{"address": "127.0.0.1", "external": taken, "internal": 8888}])
    elsewhere = Memory(**memory_options(host=f"{INSTANCE}-elsewhere"))
    try:
        assert make(elsewhere)["pk"] == mine["pk"]  # another host, another engine
    finally:
        Memory.reset(f"{INSTANCE}-elsewhere")


def test_concurrent_creates_of_one_name_make_one_container_and_distinct_ports(memory):
    outcomes: list[object] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def create(index: int) -> None:
        start.wait(timeout=10)
        try:
            result: object = make(memory, "same" if index % 2 else f"n{index}",
                                  ports=[{"address": "127.0.0.1", "external": None, "internal": 8888}])
        except errors.BackendError as exc:
            result = exc
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=create, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    made = [o for o in outcomes if isinstance(o, dict)]
    assert len(outcomes) == 8 and len(made) == 5  # four distinct names and one "same"
    assert sum(isinstance(o, errors.ContainerAlreadyExistsError) for o in outcomes) == 3
    ports = [record["ports"][0]["external"] for record in made]
    assert len(set(ports)) == len(ports)


def test_a_snapshot_travels_through_a_shared_registry(workdir):
    a = Memory(**memory_options(instance=f"{INSTANCE}-xa", name_prefix=f"{PREFIX}xa", registry="reg.test:5000"))
    b = Memory(**memory_options(host=f"{INSTANCE}-nodeb", instance=f"{INSTANCE}-xb", name_prefix=f"{PREFIX}xb",
                                registry="reg.test:5000"))
    try:
        source = make(a)
        a.exec_in_container(source["pk"], ["sh", "-c", "echo in-the-snapshot > /state.txt"])
        snap = a.create_container_snapshot(source["pk"], "s1")
        image = a.export_container_snapshot(snap["pk"])
        assert image["pk"].startswith("reg.test:5000/") and image["registry"] == "reg.test:5000" and image["managed"]
        target = make(b)
        moved = b.import_container_snapshot(target["pk"], "s1", image["pk"])
        assert moved["name"] == "s1" and moved["container"] == target["pk"]
        b.restore_container_snapshot(target["pk"], moved["pk"])
        assert b.exec_in_container(target["pk"], ["cat", "/state.txt"]).strip() == "in-the-snapshot"
        with pytest.raises(errors.ContainerAlreadyExistsError):
            b.import_container_snapshot(target["pk"], "s1", image["pk"])
        with pytest.raises(errors.InvalidArgumentError):
            b.import_container_snapshot(target["pk"], "s2", TEST_IMAGE)  # not an image of the registry
        a.delete_container_image(image["pk"])
        with pytest.raises(errors.ContainerImageNotFoundError):
            b.import_container_snapshot(target["pk"], "s3", image["pk"])
    finally:
        Memory.reset()


def test_bind_sources_are_checked_as_docker_checks_them(memory):
    """One check for both backends (validation.resolve_bind_source): only a directory or a
    file under an allowed root; anything else there (a FIFO, a socket) is refused."""
    fifo = ALLOWED_ROOT / "memory-fifo"
    if not fifo.exists():
        os.mkfifo(fifo)
    for source, why in ((str(fifo), "does not exist"), (str(ALLOWED_ROOT / "memory-none"), "does not exist"),
                        ("/etc", "outside the allowed volume roots")):
        with pytest.raises(errors.InvalidArgumentError, match=why):
            make(memory, volumes=[{"source": source, "target": "/data"}])
    assert memory.get_containers() == []


def test_the_small_shell(memory, workdir):
    shared = ALLOWED_ROOT / "memory-ro"
    shared.mkdir(exist_ok=True)
    (shared / "given.txt").write_text("from the host\n")
    pk = make(memory, volumes=[{"source": str(shared), "target": "/shared", "mode": "ro"}], env={"WHO": "me"})["pk"]
    run = memory.exec_in_container
    assert run(pk, ["sh", "-c", "echo '$WHO' \"$WHO\" ${WHO}"]) == "$WHO me me\n"
    assert run(pk, ["cat", "/shared/given.txt"]) == "from the host\n"
    assert "Read-only" in run(pk, ["sh", "-c", "echo x > /shared/given.txt"])
    assert (shared / "given.txt").read_text() == "from the host\n"
    assert run(pk, ["sh", "-c", "false && echo no; false || echo yes; echo a >> /f; echo b >> /f; cat /f"]) == "yes\na\nb\n"
    assert run(pk, ["sh", "-c", "cat /nope 2>/dev/null; echo done"]) == "done\n"
    assert run(pk, ["python3", "-c", "1"]) == "sh: python3: not found\n"
    assert "syntax error" in run(pk, ["sh", "-c", "echo 'open"])


def test_the_shell_never_follows_a_link_out_of_a_bind_mount(memory, workdir):
    outside = workdir / "memory-outside"
    outside.mkdir(exist_ok=True)
    (outside / "secret.txt").write_text("host secret\n")
    inside = ALLOWED_ROOT / "memory-links"
    inside.mkdir(exist_ok=True)
    link = inside / "out"
    if not link.exists():
        link.symlink_to(outside)
    pk = make(memory, volumes=[{"source": str(inside), "target": "/mnt"}])["pk"]
    assert "No such file" in memory.exec_in_container(pk, ["cat", "/mnt/out/secret.txt"])
    assert "can't create" in memory.exec_in_container(pk, ["sh", "-c", "echo x > /mnt/out/new.txt"])
    assert not (outside / "new.txt").exists()
