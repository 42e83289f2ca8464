"""Fixtures shared by the whole suite.

Engine tests run against the real Docker engine. Everything they create carries the label
``org.ipynbsrv.instance=<INSTANCE>`` (unique per run) and is removed after each test; when a
test fails, the engine's view of what it made is printed.

With ``CI=true`` a missing engine is a failure, not a skip.

``IPYNBSRV_TEST_BACKEND=memory`` (``make test-fast``) puts the in-memory backend under the
master's tests instead: ``make_node`` makes ``Memory`` nodes, ``engine`` and ``raw_docker``
are a docker-py-shaped view of the simulated host they share (:mod:`tests.support.memory_engine`),
and the contract suite runs on its ``memory`` kind only. No engine is contacted.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest

from .support.ci import in_ci, missing
from .support.engine import prune_images, purge_instances  # noqa: F401 - prune_images: older imports
from .support.processes import stop_process

RUN_ID = uuid.uuid4().hex[:6]
INSTANCE = f"pytest-{RUN_ID}"
PREFIX = f"t{RUN_ID}"
TEST_IMAGE = os.environ.get("IPYNBSRV_TEST_IMAGE", "ipynbsrv-test/busybox:latest")
WORK_DIR = Path(tempfile.gettempdir()) / f"ipynbsrv-test-{RUN_ID}"
ALLOWED_ROOT = WORK_DIR / "allowed"
LABEL = f"org.ipynbsrv.instance={INSTANCE}"

#: Which backend the master's tests run on: "docker" (the real engine) or "memory".
TEST_BACKEND = os.environ.get("IPYNBSRV_TEST_BACKEND", "docker")
MEMORY = TEST_BACKEND == "memory"
#: The backends the ``backend`` fixture gives, in front of the real engine. Each name
#: ``kind`` needs a fixture ``<kind>_backend``; the contract suite adds ``memory``.
BACKEND_KINDS = ["docker", "http_remote"]


def backend_options(**more: Any) -> dict[str, Any]:
    """Options of the ``Docker`` backend under test (also given to host API processes)."""
    return {
        "instance": INSTANCE,
        "name_prefix": PREFIX,
        "stop_timeout": 3,
        "allowed_volume_roots": [str(ALLOWED_ROOT)],
        "pull_policy": "never",  # tests never reach out to a public registry
        **more,
    }


def memory_options(**more: Any) -> dict[str, Any]:
    """Options of the ``Memory`` backend under test: the run's own simulated host."""
    return {
        "host": INSTANCE,
        "instance": INSTANCE,
        "name_prefix": PREFIX,
        "stop_timeout": 3,
        "allowed_volume_roots": [str(ALLOWED_ROOT)],
        "images": [TEST_IMAGE],
        **more,
    }


def _memory_engine():
    from ipynbsrv_backends.backends import Memory

    from .support.memory_engine import MemoryEngine

    return MemoryEngine(Memory(**memory_options()).host, (TEST_IMAGE,))


_in_ci = in_ci  # older imports (tests/integration/test_browser.py)


@pytest.fixture(scope="session")
def raw_docker():
    """docker-py itself, for checking what the engine really has (with the memory backend,
    the same questions asked of its simulated host)."""
    if MEMORY:
        client = _memory_engine()
        yield client
        purge(client)
        return
    import docker

    try:
        client = docker.from_env(timeout=30)
        client.ping()
        client.images.get(TEST_IMAGE)
    except Exception as exc:  # noqa: BLE001
        missing(f"a Docker engine with the image {TEST_IMAGE} is needed ({exc}); run `make test`")
    yield client
    purge(client)
    client.close()


@pytest.fixture(scope="session")
def workdir():
    ALLOWED_ROOT.mkdir(parents=True, exist_ok=True)
    yield WORK_DIR
    shutil.rmtree(WORK_DIR, ignore_errors=True)


#: More backend instances a test made (one per simulated node); purged like INSTANCE.
EXTRA_INSTANCES: set[str] = set()


def purge(client) -> None:
    """Remove everything this run made on the engine (or the memory backend's host)."""
    from .support.memory_engine import MemoryEngine

    if isinstance(client, MemoryEngine):
        from ipynbsrv_backends.backends import Memory

        Memory.reset(INSTANCE)
        return
    purge_instances(client, [INSTANCE, *sorted(EXTRA_INSTANCES)])


def dump_engine(client) -> str:
    lines = []
    for container in client.containers.list(all=True, filters={"label": LABEL}):
        lines.append(f"--- container {container.name} ({container.status})")
        lines.append(str(container.attrs.get("State")))
        lines.append(container.logs(tail=30).decode(errors="replace"))
    for image in client.images.list(all=True, filters={"label": LABEL}):
        lines.append(f"--- image {image.tags or image.id}")
    return "\n".join(lines)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
def engine(raw_docker, workdir, request):
    """The real engine; what the test made is removed afterwards (and shown on failure)."""
    yield raw_docker
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print("\n=== what the engine has for this run ===\n" + dump_engine(raw_docker))
    purge(raw_docker)


@pytest.fixture(scope="session")
def docker_backend(raw_docker, workdir):
    from ipynbsrv_backends.backends import Docker

    return Docker(**backend_options())


# The ``http_remote`` kind: HttpRemote -> a real ipynbsrv_hostapi process -> Docker.
from .hostapi_process import hostapi_node, http_remote_backend  # noqa: E402,F401


@pytest.fixture
def memory_backend(workdir):
    """The contract suite's ``memory`` kind, on a simulated host emptied after each test."""
    from ipynbsrv_backends.backends import Memory

    yield Memory(**memory_options())
    Memory.reset(INSTANCE)


@pytest.fixture(params=[pytest.param(kind, marks=pytest.mark.engine) for kind in BACKEND_KINDS])
def backend_kind(request):
    return request.param


@pytest.fixture
def backend(request, backend_kind):
    """Each backend kind: ``docker`` and ``http_remote`` in front of the same real engine
    (purged after the test), ``memory`` on its own simulated host."""
    if backend_kind != "memory":
        request.getfixturevalue("engine")
    return request.getfixturevalue(f"{backend_kind}_backend")


@pytest.fixture(scope="session")
def registry(workdir):
    """A real registry (Debian's docker-registry) on 127.0.0.1; yields ``HOST:PORT``."""
    import subprocess

    from .support import free_port, http_get, wait_for

    binary = shutil.which("docker-registry")
    if binary is None:
        missing("docker-registry is needed (scripts/packages.sh installs it)")
    port = free_port()
    root = workdir / "registry"
    root.mkdir(exist_ok=True)
    config = workdir / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: warn}\n"
        f"storage: {{filesystem: {{rootdirectory: {root}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: 127.0.0.1:{port}}}\n"
    )
    log = open(workdir / "registry.log", "wb")
    process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)

    def up():
        try:
            return http_get(f"http://127.0.0.1:{port}/v2/", timeout=1)[0] == 200
        except OSError:
            return process.poll() is not None and pytest.fail("the registry exited at start")

    wait_for(up, timeout=20, what="the registry to answer")
    yield f"127.0.0.1:{port}"
    stop_process(process, timeout=10)
    log.close()


# ---------------------------------------------------------------------------- the master

@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item, nextitem):
    """Creations the users' API runs in the background (202) end before the test's fixtures
    (its database, the engine's containers) are torn down."""
    import sys

    background = sys.modules.get("ipynbsrv_backends.background")
    if background is not None and not background.wait_idle(300):
        print("\nbackground creations were still running after the test")


@pytest.fixture
def make_node(engine):
    """Create a Node (and its Docker Backend row) on the real engine. Each node gets its own
    backend instance, so nodes sharing the engine never see each other's containers."""
    from ipynbsrv_backends.models import Backend, Node

    def make(name, capacity=10, **config):
        instance = f"{INSTANCE}-{name}"
        EXTRA_INSTANCES.add(instance)
        options = backend_options(instance=instance, name_prefix=f"{PREFIX}{name}")
        kind = "Docker"
        if MEMORY:
            kind, options = "Memory", memory_options(instance=instance, name_prefix=f"{PREFIX}{name}")
        options.update(config)
        backend = Backend.objects.create(name=f"{kind.lower()}-{name}", kind=kind, config=options)
        return Node.objects.create(name=name, address="127.0.0.1", backend=backend, capacity=capacity)

    return make


@pytest.fixture
def image(db):
    """The test image, registered as a public base image."""
    from ipynbsrv_backends.models import Image

    return Image.objects.create(name="busybox", ref=TEST_IMAGE, public=True)


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice", password="alice-password")


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user("bob", password="bob-password")


@pytest.fixture
def drifted(make_node, image, alice, engine):
    """A node whose engine drifted from the records: one record whose container is gone, one
    orphan of alice's, one container stopped behind the master's back and one in step."""
    from ipynbsrv_backends import registry, services

    node = make_node("n1")
    kept = services.create_container(alice, "kept", image=image)
    gone = services.create_container(alice, "gone", image=image)
    engine.containers.get(gone.backend_pk).remove(force=True)
    backend = registry.get_backend(node)
    orphan = backend.create_container("alice", 2000 + alice.pk, "orphan", [], [], image=TEST_IMAGE)
    backend.stop_container(kept.backend_pk)
    return {"node": node, "kept": kept, "gone": gone, "orphan": orphan["pk"], "backend": backend}


@pytest.fixture
def master_settings(settings):
    """The master's settings for tests: least-loaded placement, port 8888 published, no
    volumes; cached backend instances dropped before and after."""
    from ipynbsrv_backends import registry

    settings.IPYNBSRV_BACKENDS = {
        "SERVER_SELECTION_ALGORITHM": "least-loaded",
        "CONTAINER_PORTS": [8888],
        "CONTAINER_VOLUMES": [],
        "HEALTH_TTL": 30,
    }
    registry.forget_backend()
    yield settings
    registry.forget_backend()


# ---------------------------------------------------------------------------- secrets in logs

#: Every access secret the master minted during this run (see ``no_secret_in_any_log``).
MINTED_SECRETS: list[str] = []


def _log_texts(*roots: Path) -> list[tuple[Path, str]]:
    """Every log file under ``roots`` with its text (files that go away meanwhile are skipped:
    a test bed being taken down)."""
    found = []
    for root in roots:
        if not root.is_dir():
            continue
        for path in root.rglob("*"):
            if path.suffix != ".log" and path.name not in ("stdout", "stderr"):
                continue
            try:
                if path.is_file() and path.stat().st_size < 50_000_000:
                    found.append((path, path.read_text(errors="replace")))
            except OSError:
                continue
    return found


def _cluster_dir() -> Path:
    """The directory of the cluster test bed this run uses (scripts/cluster.sh's rule)."""
    cluster_id = os.environ.get("IPYNBSRV_CLUSTER_ID", "0")
    return Path(os.environ.get("IPYNBSRV_CLUSTER_DIR") or f"/tmp/ipynbsrv-cluster{'' if cluster_id == '0' else cluster_id}")


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_any_log(tmp_path_factory):
    """At the end of the run, none of the access secrets minted in it appears in any log the
    run wrote: the package's own log lines (INFO and up, as the test project logs them, plus
    everything on the root logger), the host API processes' logs, nginx's access and error
    logs, the registry's, and the cluster test bed's node logs."""
    import logging

    from ipynbsrv_backends import services

    original = services._mint_secret

    def recording() -> str:
        value = original()
        MINTED_SECRETS.append(value)
        return value

    services._mint_secret = recording
    own_log = tmp_path_factory.getbasetemp() / "ipynbsrv-run.log"
    handler = logging.FileHandler(own_log)
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    loggers = [logging.getLogger(), logging.getLogger("ipynbsrv_backends")]
    for logger in loggers:
        logger.addHandler(handler)
    yield
    for logger in loggers:
        logger.removeHandler(handler)
    handler.close()
    services._mint_secret = original
    if not MINTED_SECRETS:
        return
    leaks = []
    for path, text in _log_texts(tmp_path_factory.getbasetemp(), WORK_DIR, _cluster_dir()):
        leaks += [f"{path}: secret #{MINTED_SECRETS.index(s)}" for s in MINTED_SECRETS if s in text]
    assert not leaks, "access secrets appear in logs:\n" + "\n".join(leaks)


# ---------------------------------------------------------------------------- the fast tier

@pytest.fixture(scope="session", autouse=True)
def fast_password_hashing():
    """In the fast tier, users' passwords are hashed cheaply (each test makes a few users,
    and the real hasher's cost is most of a test's time); ``make test`` keeps the real one."""
    if not MEMORY:
        yield
        return
    from django.test.utils import override_settings

    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        yield



def pytest_collection_modifyitems(config, items):
    """With ``IPYNBSRV_TEST_BACKEND=memory`` only what runs without an engine is collected:
    the master's tests (on ``Memory`` nodes, less the few that need a real engine; they are
    skipped with the reason) and every test that reaches no engine and starts no server
    process (:mod:`tests.support.fast_tier`)."""
    if not MEMORY:
        return
    from .support.fast_tier import ENGINE_ONLY, MASTER_FILES, NEEDS_ENGINE, PROCESS_FILES, REAL_ONLY

    kept, dropped = [], []
    for item in items:
        path = item.nodeid.split("::", 1)[0].rsplit("/", 1)[-1]
        if path in MASTER_FILES:
            reason = ENGINE_ONLY.get(item.nodeid.split("[", 1)[0].rsplit("/", 1)[-1])
            if not reason and set(item.fixturenames) & REAL_ONLY:
                reason = f"it uses {', '.join(sorted(set(item.fixturenames) & REAL_ONLY))}"
            if reason:
                item.add_marker(pytest.mark.skip(reason=f"needs the real engine: {reason}"))
            kept.append(item)
        elif (path in PROCESS_FILES or any(item.get_closest_marker(m) for m in NEEDS_ENGINE[0])
              or set(item.fixturenames) & NEEDS_ENGINE[1]):
            dropped.append(item)
        else:
            kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
