"""A user's notebook in a real browser, through nginx and the master's check.

alice signs in on the master's site (the test project's plain sign-in page), opens her
notebook's URL, types code into a cell of Jupyter's own front end, runs it (the kernel's
websocket goes through nginx with the container's access secret added on the way) and saves
the notebook; the file is then on her volume, hers. Meanwhile the container's port refuses
every request that comes without the secret.
"""

from __future__ import annotations

import pytest
import requests

from ipynbsrv_backends import services
from ipynbsrv_backends.contract import ACCESS_HEADER
from ipynbsrv_backends.models import Image

from ..notebook import Jupyter, nginx, notebook_image, open_in_browser, run_cell, signed_in  # noqa: F401
from ..support import wait_for
from .test_browser import browser  # noqa: F401

pytestmark = [pytest.mark.engine, pytest.mark.django_db(transaction=True), pytest.mark.timeout(420)]

CODE = "x = 6 * 7\nprint(x, 'from the browser')"


def test_alice_runs_a_cell_and_saves_her_notebook_in_a_browser(
        engine, make_node, notebook_image, nginx, settings, django_user_model, browser):  # noqa: F811
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    settings.IPYNBSRV_BACKENDS = {**settings.IPYNBSRV_BACKENDS, "CONTAINER_PORTS": [8888],
                                  "CONTAINER_VOLUMES": [], "CONTAINER_OPTIONS": {"mem_limit": "1g"}}
    make_node("browser-nb")
    image = Image.objects.create(name="jupyter", ref=notebook_image, public=True)
    alice = django_user_model.objects.create_user("alice", password="alice-browser-pw")
    container = services.create_container(alice, "nb", image=image)
    site = nginx.url + container.base_url
    # an empty notebook to open (as "New > Notebook" would make), through the proxy as alice
    api = Jupyter(site, signed_in(alice))
    try:
        api.wait_ready()
        wait = open_in_browser(browser, nginx.url, api, "alice", "alice-browser-pw")

        def kernel_idle() -> bool:  # the page's kernel, connected over its websocket through nginx
            sessions = api.get("api/sessions").json()
            return any(item["path"] == "work.ipynb" and item["kernel"]["execution_state"] == "idle"
                       and item["kernel"]["connections"] > 0 for item in sessions)

        wait_for(kernel_idle, timeout=120, interval=0.5, what="the notebook's kernel to connect")

        run_cell(browser, wait, CODE, "42 from the browser")
        ActionChains(browser).key_down(Keys.CONTROL).send_keys("s").key_up(Keys.CONTROL).perform()

        def saved() -> bool:
            notebook = api.load("work.ipynb", may_be_saving=True) or {}
            cells = notebook.get("cells") or []
            return bool(cells) and "".join(cells[0]["source"]) == CODE and any(
                "42 from the browser" in "".join(output.get("text", "")) for output in cells[0]["outputs"])

        wait_for(saved, timeout=60, interval=0.5, what="the notebook saved from the browser")
        # the page the browser got, its cookies and storage hold nothing of the secret
        seen = browser.page_source + repr(browser.get_cookies()) + str(browser.execute_script(
            "return JSON.stringify(Object.assign({}, window.localStorage, window.sessionStorage))"))
        assert container.access_secret not in seen
    finally:
        api.close()
    owner = engine.containers.get(container.backend_pk).exec_run(["stat", "-c", "%u", "/data/work.ipynb"])
    assert owner.output.decode().strip() == str(container.uid)
    # the same server, straight at its port without the secret: nothing
    direct = requests.get(container.url + "api/contents/work.ipynb", timeout=10)
    assert direct.status_code == 403 and "from the browser" not in direct.text, (container.url, direct.headers, direct.text[:300])
    assert requests.get(container.url + "api/contents/work.ipynb", timeout=10,
                        headers={ACCESS_HEADER: container.access_secret}).status_code == 200
    services.delete_container(container)
