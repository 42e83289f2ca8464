"""The admin in a real browser (Debian's Chromium through Selenium and chromium-driver).

An operator logs in through the login form, adds two Docker backends and their nodes on the
real engine, checks their health, registers the test image, creates a container for a user and
takes it through suspend, resume, snapshot, restore, a move to the other node (through the test
registry, its snapshot with it), a restore there and delete, then reads why a node that is down cannot be used. After each step the
engine itself is asked what it has. Screenshots of the main pages are taken on the way
(``make screenshots`` keeps them in ``docs/screenshots/``).

No browser is downloaded: ``scripts/packages.sh`` installs ``chromium`` and ``chromium-driver``.
With ``CI=true`` a missing browser is a failure, not a skip.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ipynbsrv_backends import registry as backend_registry
from ipynbsrv_backends.models import Backend, Container, Node, Snapshot

from ..conftest import EXTRA_INSTANCES, INSTANCE, PREFIX, TEST_IMAGE, _in_ci, backend_options
from ..utils import wait_for

logger = logging.getLogger(__name__)

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("master_settings")]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
#: Where the screenshots go: ``make screenshots`` sets it to ``docs/screenshots`` (kept in git);
#: otherwise a temporary directory, so a test run leaves the work tree alone.
SCREENSHOTS_ENV = "IPYNBSRV_SCREENSHOTS"
DOWN = "unix:///nonexistent/ipynbsrv-browser-test.sock"
PASSWORD = "operator-browser-pw"  # never typed where a screenshot is taken
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1680,1000", "--lang=en-US",
]


@pytest.fixture
def browser() -> Iterator[Any]:
    """A headless Chromium with a fresh profile, closed (and its profile removed) afterwards."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as exc:  # pragma: no cover - the test extra installs it
        missing.append(f"selenium ({exc})")
    if missing:
        message = f"the browser tests need {', '.join(missing)} (scripts/packages.sh, the test extra)"
        if _in_ci():
            pytest.fail(message)
        pytest.skip(message)
    profile = tempfile.mkdtemp(prefix="ipynbsrv-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in [*CHROMIUM_ARGS, f"--user-data-dir={profile}"]:
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


class Operator:
    """What a person does in the admin: open pages, fill forms, press buttons, read messages."""

    def __init__(self, driver: Any, base: str, screenshots: Path) -> None:
        self.driver, self.base, self.screenshots = driver, base, screenshots

    def open(self, path: str) -> None:
        self.driver.get(self.base + path)

    def find(self, css: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def all(self, css: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def type(self, name: str, text: str) -> None:
        field = self.find(f'[name="{name}"]')
        field.clear()
        field.send_keys(text)

    def choose(self, name: str, label: str) -> None:
        from selenium.webdriver.support.ui import Select

        Select(self.find(f'select[name="{name}"]')).select_by_visible_text(label)

    def submit(self, css: str = 'input[type="submit"][name="_save"]') -> None:
        """Press a button and wait for the next page (the old one goes stale)."""
        from selenium.webdriver.support import expected_conditions
        from selenium.webdriver.support.ui import WebDriverWait

        old = self.find("html")
        self.find(css).click()
        WebDriverWait(self.driver, 120).until(expected_conditions.staleness_of(old))

    def step(self, value: str) -> None:
        """A lifecycle button on a container's page."""
        self.submit(f'button[name="_container_step"][value="{value}"]')

    def action(self, name: str, *labels: str) -> None:
        """Tick rows of a change list by their link text and run an action on them."""
        for row in self.all("#result_list tbody tr"):
            if row.find_element("css selector", "th a, td a").text in labels:
                row.find_element("css selector", "input.action-select").click()
        from selenium.webdriver.support.ui import Select

        Select(self.find('select[name="action"]')).select_by_value(name)
        self.submit('button[name="index"]')

    def messages(self) -> list[str]:
        return [item.text for item in self.all("ul.messagelist li")]

    def errors(self) -> str:
        return " ".join(item.text for item in self.all(".errornote, .errorlist"))

    def text(self) -> str:
        return self.find("body").text

    def screenshot(self, name: str) -> None:
        """A PNG of the page; no password may be on it."""
        assert PASSWORD not in self.driver.page_source
        self.screenshots.mkdir(parents=True, exist_ok=True)
        target = self.screenshots / f"{name}.png"
        assert self.driver.save_screenshot(str(target))
        assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def on_engine(engine: Any, container: Container) -> Any:
    """The engine's own view of the container, or None."""
    import docker

    try:
        return engine.containers.get(container.backend_pk)
    except docker.errors.NotFound:
        return None


def node_config(name: str, registry: str) -> dict[str, Any]:
    instance = f"{INSTANCE}-{name}"
    EXTRA_INSTANCES.add(instance)  # purged by the engine fixture
    return backend_options(instance=instance, name_prefix=f"{PREFIX}{name}", registry=registry,
                           registry_insecure=True)


def test_an_operator_runs_a_container_through_the_admin(live_server, browser, engine, registry,
                                                        django_user_model, tmp_path):
    django_user_model.objects.create_superuser("operator", "op@example.org", PASSWORD)
    alice = django_user_model.objects.create_user("alice", password="alice-pw")
    op = Operator(browser, live_server.url, Path(os.environ.get(SCREENSHOTS_ENV) or tmp_path / "screenshots"))

    # --- log in through the form
    op.open("/admin/")
    op.type("username", "operator")
    op.type("password", PASSWORD)
    op.submit('input[type="submit"]')
    assert "Site administration" in op.text()

    # --- two backends on the real engine (two instances), each with its node
    for name in ("b1", "b2"):
        op.open("/admin/ipynbsrv_backends/backend/add/")
        op.type("name", f"docker-{name}")
        op.choose("kind", "Docker")
        op.type("config", json.dumps(node_config(name, registry)))
        op.submit()
        assert not op.errors(), op.errors()
        assert Backend.objects.filter(name=f"docker-{name}", kind="Docker").exists()

        op.open("/admin/ipynbsrv_backends/node/add/")
        op.type("name", name)
        op.type("address", "127.0.0.1")
        op.choose("backend", f"docker-{name} (Docker)")
        op.type("capacity", "5")
        op.submit()
        assert not op.errors(), op.errors()
    assert sorted(Node.objects.values_list("name", flat=True)) == ["b1", "b2"]

    # --- check their health: both answer
    op.open("/admin/ipynbsrv_backends/node/")
    op.action("check_health", "b1", "b2")
    assert "2 nodes are healthy." in op.messages()
    assert op.text().count("✔") == 2
    op.screenshot("node-list")

    # --- register the test image
    op.open("/admin/ipynbsrv_backends/image/add/")
    op.type("name", "busybox")
    op.type("ref", TEST_IMAGE)
    op.find('input[name="public"]').click()
    op.submit()
    assert not op.errors(), op.errors()

    # --- a container for alice on b1
    op.open("/admin/ipynbsrv_backends/container/add/")
    op.choose("owner", "alice")
    op.type("name", "thesis")
    op.choose("image", "busybox")
    op.choose("node", "b1")
    op.screenshot("container-add")
    op.submit()
    assert not op.errors(), op.errors()
    container = Container.objects.get(owner=alice, name="thesis")
    assert container.node.name == "b1" and container.status == "running"
    assert on_engine(engine, container).status == "running"
    page = f"/admin/ipynbsrv_backends/container/{container.pk}/change/"

    # --- suspend and resume with the buttons on its page
    op.open(page)
    op.step("suspend")
    assert "1 container suspended." in op.messages()
    assert on_engine(engine, container).status == "paused"
    op.step("resume")
    assert "1 container resumed." in op.messages()
    assert on_engine(engine, container).status == "running"

    # --- a snapshot, then restore it: the same engine container name, running again
    backend = backend_registry.get_backend(container.node)
    backend.exec_in_container(container.backend_pk, ["sh", "-c", "echo before > /marker"])
    op.step("snapshot")
    assert "1 snapshot taken." in op.messages()
    snapshot = Snapshot.objects.get(container=container)
    backend.exec_in_container(container.backend_pk, ["sh", "-c", "echo after > /marker"])
    op.submit(f'button[name="_container_step"][value="restore:{snapshot.pk}"]')
    assert "1 container restored." in op.messages()
    assert backend.exec_in_container(container.backend_pk, ["cat", "/marker"]).strip() == "before"
    assert on_engine(engine, container).status == "running"
    op.screenshot("container-page")

    # --- move it to b2: its snapshot goes with it
    old_pk = container.backend_pk
    op.find('a[href$="/move/"]').click()
    wait_for(lambda: "Move container" in op.text(), timeout=30, what="the move page")
    op.choose("node", "b2")
    op.submit('input[type="submit"]')
    assert not op.errors(), op.errors()
    assert any("was moved from b1 to b2" in note for note in op.messages()), op.messages()
    container.refresh_from_db()
    assert container.node.name == "b2"
    moved = on_engine(engine, container)
    assert moved is not None and moved.status == "running"
    assert moved.labels["org.ipynbsrv.instance"] == f"{INSTANCE}-b2"
    assert not engine.containers.list(all=True, filters={"label": f"org.ipynbsrv.instance={INSTANCE}-b1"}), \
        f"{old_pk} is still on b1"
    # b1 keeps no image of its own (the untagged transfer image under the moved container is b2's base)
    assert not [i.tags for i in engine.images.list(filters={"label": f"org.ipynbsrv.instance={INSTANCE}-b1"}) if i.tags]
    snapshot.refresh_from_db()
    backend = backend_registry.get_backend(container.node)
    assert [s["pk"] for s in backend.get_containers_snapshots(container.backend_pk)] == [snapshot.backend_pk]

    # --- restore the moved snapshot on b2
    backend.exec_in_container(container.backend_pk, ["sh", "-c", "echo after > /marker"])
    op.open(page)
    op.submit(f'button[name="_container_step"][value="restore:{snapshot.pk}"]')
    assert "1 container restored." in op.messages()
    assert backend.exec_in_container(container.backend_pk, ["cat", "/marker"]).strip() == "before"

    # --- delete the snapshot from the snapshot list
    op.open("/admin/ipynbsrv_backends/snapshot/")
    op.action("delete_selected", snapshot.name)
    op.submit('input[type="submit"]')  # "Yes, I'm sure"
    assert "1 snapshot deleted." in op.messages(), op.messages()
    assert not Snapshot.objects.filter(pk=snapshot.pk).exists()
    assert backend.get_containers_snapshots(container.backend_pk) == []

    op.open("/admin/ipynbsrv_backends/container/")
    (row,) = [row.text for row in op.all("#result_list tbody tr")]
    assert "thesis" in row and "alice" in row and "b2" in row and "running" in row, row
    op.screenshot("container-list")

    # --- delete it from its page
    op.open(page)
    op.find("a.deletelink").click()
    wait_for(lambda: "Are you sure" in op.text(), timeout=30, what="the delete confirmation")
    op.submit('input[type="submit"]')
    assert "deleted successfully" in " ".join(op.messages()), op.messages()
    assert not Container.objects.filter(pk=container.pk).exists()
    assert on_engine(engine, container) is None

    # --- a node that is down: its health says why, and creating a container on it says why
    op.open("/admin/ipynbsrv_backends/backend/add/")
    op.type("name", "docker-down")
    op.choose("kind", "Docker")
    op.type("config", json.dumps({**node_config("down", registry), "base_url": DOWN}))
    op.submit()
    assert not op.errors(), op.errors()
    op.open("/admin/ipynbsrv_backends/node/add/")
    op.type("name", "down")
    op.type("address", "127.0.0.1")
    op.choose("backend", "docker-down (Docker)")
    op.submit()
    assert not op.errors(), op.errors()
    op.open("/admin/ipynbsrv_backends/node/")
    op.action("check_health", "down")
    notes = " ".join(op.messages())
    assert "The node down is not healthy: Cannot reach the Docker engine at" in notes, notes
    assert DOWN in notes and "is dockerd running" in notes, notes
    op.screenshot("node-down")
    assert Node.objects.get(name="down").is_healthy is False
    op.open("/admin/ipynbsrv_backends/container/add/")
    op.choose("owner", "alice")
    op.type("name", "second")
    op.choose("image", "busybox")
    op.choose("node", "down")
    op.submit()
    problem = op.errors()
    assert "The node 'down' is not healthy: Cannot reach the Docker engine at" in problem, problem
    assert not Container.objects.filter(name="second").exists()
    assert "Server Error" not in op.text()
