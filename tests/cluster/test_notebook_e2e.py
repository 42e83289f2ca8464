"""Real notebooks end to end, as a user meets them.

A user creates a notebook through the users' API and opens it through nginx in front of the
master; code runs in a kernel over Jupyter's own REST and websocket APIs; a notebook saved
through Jupyter's contents API is still there after a suspend and resume, after a snapshot
and its restore, and — on the two-node test bed — after a move to the other node.
"""

from __future__ import annotations

import shutil

import pytest
import requests

from ipynbsrv_backends import services
from ipynbsrv_backends.models import Container, Image

from ..notebook import Jupyter, a_notebook, nginx, notebook_image, notebook_on_nodes, signed_in  # noqa: F401
from ..testbed import cluster, cluster_nodes  # noqa: F401
from ..utils import wait_for

pytestmark = [pytest.mark.engine, pytest.mark.timeout(420)]

CODE = "import os\nx = 6 * 7\nprint(x, os.getuid(), os.getcwd())"


class User:
    """A user of the master: the users' API with HTTP Basic, the notebook with the session."""

    def __init__(self, django_user_model, name: str, site: str) -> None:
        self.user = django_user_model.objects.create_user(name, password=f"{name}-password")
        self.site = site
        self.api = requests.Session()
        self.api.auth = (name, f"{name}-password")

    def call(self, method: str, path: str, body: dict | None = None, status: int = 200) -> dict:
        answer = self.api.request(method, f"{self.site}/api/{path}", json=body, timeout=300)
        assert answer.status_code == status, f"{method} {path}: {answer.status_code} {answer.text}"
        return answer.json() if answer.content else {}

    def create(self, name: str, image: Image) -> dict:
        """Create a container the way a user's script does: POST answers 202 at once with the
        pending record and its Location, which is polled (bounded) until it is no longer
        creating. Returns the settled record and every progress text seen meanwhile."""
        answer = self.api.post(f"{self.site}/api/containers/", json={"name": name, "image": image.pk}, timeout=60)
        assert answer.status_code == 202, f"POST containers/: {answer.status_code} {answer.text}"
        pending = answer.json()
        assert pending["status"] == "creating" and pending["progress"], pending
        location = answer.headers["Location"]
        assert location.endswith(f"/api/containers/{pending['id']}/"), location
        seen = [pending["progress"]]

        def settled() -> dict | None:
            current = self.api.get(location, timeout=30)
            assert current.status_code == 200, current.text
            record = current.json()
            if record["status"] == "creating":
                seen.append(record["progress"])
                return None
            return record

        record = wait_for(settled, timeout=300, interval=0.2, what=f"{name} to be created")
        return {**record, "progress_seen": seen}

    def notebook(self, container: dict) -> Jupyter:
        return Jupyter(self.site + container["base_url"], signed_in(self.user))


def work(notebook: dict | None) -> list:
    """What a user wrote and got in a notebook (Jupyter adds metadata such as "trusted")."""
    assert notebook is not None, "the notebook is gone"
    return [(cell["source"], [out.get("text") for out in cell.get("outputs", [])]) for cell in notebook["cells"]]


def check_saved(jupyter: Jupyter, notebook: dict, kernel_code: str = "print(6 * 7)") -> None:
    """The server answers again, the saved notebook is there, and a new kernel runs code."""
    jupyter.wait_ready()
    assert work(jupyter.load("work.ipynb")) == work(notebook)
    kernel = jupyter.start_kernel()
    try:
        assert jupyter.execute(kernel, kernel_code).strip() == "42"
    finally:
        jupyter.stop_kernel(kernel)


def test_a_notebook_keeps_its_work_through_suspend_and_snapshot_restore(
        transactional_db, engine, make_node, notebook_image, nginx, settings, django_user_model):
    settings.IPYNBSRV_BACKENDS = {"CONTAINER_PORTS": [8888], "CONTAINER_OPTIONS": {"mem_limit": "1g"}}
    make_node("e2e")
    image = Image.objects.create(name="jupyter", ref=notebook_image, public=True)
    alice = User(django_user_model, "alice", nginx.url)  # the API through nginx too

    created = alice.create("nb", image)  # 202 and polling, as a script does
    assert created["status"] == "running" and created["base_url"] == "/notebooks/alice/nb/", created
    assert created["progress"] == "" and created["last_error"] == ""
    pk = Container.objects.get(pk=created["id"]).backend_pk
    uid = Container.objects.get(pk=created["id"]).uid
    jupyter = alice.notebook(created)
    try:
        jupyter.wait_ready()
        kernel = jupyter.start_kernel()
        printed = jupyter.execute(kernel, CODE)
        assert printed.split() == ["42", str(uid), "/data"]  # as the user, in the work directory
        notebook = a_notebook(CODE, printed)
        jupyter.save("work.ipynb", notebook)
        assert work(jupyter.load("work.ipynb")) == work(notebook)
        owner = engine.containers.get(pk).exec_run(["stat", "-c", "%u", "/data/work.ipynb"]).output.decode()
        assert owner.strip() == str(uid)

        # Suspend and resume: the server and the running kernel (its variables) carry on.
        assert alice.call("POST", f"containers/{created['id']}/suspend/")["status"] == "suspended"
        assert alice.call("POST", f"containers/{created['id']}/resume/")["status"] == "running"
        jupyter.wait_ready()
        assert jupyter.execute(kernel, "print(x)").strip() == "42"
        assert work(jupyter.load("work.ipynb")) == work(notebook)
        jupyter.stop_kernel(kernel)

        # A snapshot, a change outside /data, the restore: the change is gone, the work is not.
        snap = alice.call("POST", f"containers/{created['id']}/snapshot/", {"name": "before"}, status=201)
        kernel = jupyter.start_kernel()
        jupyter.execute(kernel, "open('/tmp/after-snapshot', 'w').close(); print('ok')")
        jupyter.stop_kernel(kernel)
        restored = alice.call("POST", f"containers/{created['id']}/restore/", {"snapshot": snap["id"]})
        assert restored["status"] == "running" and restored["url"] == created["url"]
        check_saved(jupyter, notebook, "import os\nprint(6 * 7 if not os.path.exists('/tmp/after-snapshot') else 0)")
    finally:
        jupyter.close()
    alice.call("DELETE", f"containers/{created['id']}/", status=204)


# ---------------------------------------------------------------------------- two nodes

@pytest.mark.cluster
def test_a_notebook_moves_to_the_other_node_with_its_work(
        transactional_db, cluster, cluster_nodes, notebook_on_nodes, nginx, settings,  # noqa: F811
        django_user_model):
    # The work lives on storage every node mounts at the same path (cluster.shared stands in
    # for NFS): a named volume would stay behind on its node, so a move refuses it.
    work_root = cluster.shared / "e2e-notebooks"
    settings.IPYNBSRV_BACKENDS = {
        **settings.IPYNBSRV_BACKENDS,
        "CONTAINER_VOLUMES": [{"source": f"{work_root}/{{username}}-{{name}}", "target": "/data"}],
        "CONTAINER_OPTIONS": {"mem_limit": "1g"},
    }
    (work_root / "alice-nb").mkdir(parents=True, exist_ok=True)
    image = Image.objects.create(name="jupyter", ref=notebook_on_nodes, public=True)
    alice = User(django_user_model, "alice", nginx.url)
    try:
        created = alice.create("nb", image)
        assert created["status"] == "running", created
        container = Container.objects.get(pk=created["id"])
        first = container.node
        # Bound on the node's internal address only, and reached there through nginx.
        assert {p["address"] for p in created["ports"]} == {first.address}
        jupyter = alice.notebook(created)
        try:
            jupyter.wait_ready()
            kernel = jupyter.start_kernel()
            printed = jupyter.execute(kernel, CODE)
            assert printed.split() == ["42", str(container.uid), "/data"]
            notebook = a_notebook(CODE, printed)
            jupyter.save("work.ipynb", notebook)
            assert (work_root / "alice-nb" / "work.ipynb").stat().st_uid == container.uid

            services.move_container(container)
            container.refresh_from_db()
            assert container.node != first and container.status == "running"
            assert {p["address"] for p in container.ports} == {container.node.address}
            # The same URL now reaches the other node; the work came along.
            check_saved(jupyter, notebook)
        finally:
            jupyter.close()
        alice.call("DELETE", f"containers/{created['id']}/", status=204)
    finally:
        shutil.rmtree(work_root, ignore_errors=True)
