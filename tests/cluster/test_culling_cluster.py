"""Idle culling on a node reached through its host API (``HttpRemote``), on the test bed: the
master asks the notebook server at the node's internal address, suspends it through the host
API, and the owner's next request through nginx resumes it with the kernel's state
(docs/operations.md, "Idle culling"; the same on the root engine: tests/integration/test_culling.py)."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from ipynbsrv_backends import services
from ipynbsrv_backends.models import AuditEntry, Container, Image
from ipynbsrv_backends.services import culling, idlepolicy

from ..notebook import Jupyter, nginx, notebook_image, notebook_on_nodes, signed_in  # noqa: F401
from ..testbed import cluster, cluster_nodes  # noqa: F401
from ..utils import wait_for

pytestmark = [pytest.mark.engine, pytest.mark.timeout(420)]


def test_an_idle_notebook_on_a_remote_node_is_suspended_and_resumed_by_the_next_request(
        transactional_db, cluster, cluster_nodes, notebook_on_nodes, nginx, settings,  # noqa: F811
        django_user_model):
    settings.IPYNBSRV_BACKENDS = {
        **settings.IPYNBSRV_BACKENDS, "CONTAINER_VOLUMES": [], "CONTAINER_OPTIONS": {"mem_limit": "1g"},
        "IDLE_CULLING": {"RULES": [{"suspend_after": "2s"}], "ACTIVITY_INTERVAL": 1},
    }
    owner = django_user_model.objects.create_user("dave")
    image = Image.objects.create(name="jupyter", ref=notebook_on_nodes, public=True)
    container = services.create_container(owner, "nb", image=image, node=cluster_nodes[0])
    assert container.node.backend.kind == "HttpRemote"
    jupyter = Jupyter(nginx.url + container.base_url, signed_in(owner))
    try:
        jupyter.wait_ready()
        kernel = jupyter.start_kernel()
        jupyter.execute(kernel, "kept = 'still here'")
        server = culling.ask_server(container)
        assert server.reachable and server.kernels == 1, server.summary()

        def idle() -> bool:
            [decision] = [d for d in culling.plan() if d.container.pk == container.pk]
            return decision.action == idlepolicy.SUSPEND

        wait_for(idle, timeout=30, interval=0.5, what="the notebook to be idle for 2 s")
        out = io.StringIO()
        call_command("ipynbsrv_cull", stdout=out)
        container.refresh_from_db()
        assert container.status == "suspended" and container.cull_reason.startswith("suspended after"), out.getvalue()
        assert AuditEntry.objects.filter(action="container.idle_suspend", target_id=str(container.pk)).exists()

        # the owner comes back in the same session: its first request is checked (a suspend
        # waits for nginx's kept answers to expire), the check resumes it, then it answers
        answer = jupyter.get("api/status")
        assert answer.status_code == 200, (answer.status_code, answer.text[:300], nginx.log()[-2000:])
        assert Container.objects.get(pk=container.pk).status == "running"
        assert jupyter.execute(kernel, "print(kept)").strip() == "still here"
    finally:
        jupyter.close()
        services.delete_container(Container.objects.get(pk=container.pk))
