"""Idle culling on the real engine with the real notebook image behind Debian's nginx running
``docs/proxy-nginx.conf`` (docs/operations.md, "Idle culling"):

- an idle notebook is suspended by ``ipynbsrv_cull`` (``--dry-run`` first changes nothing), the
  reason is on the record in the users' API and in the audit log, and its owner's next request
  through nginx resumes it, with the kernel's variables as they were; one an operator
  suspends is not resumed, and nginx refuses its requests at once instead of waiting on it;
- a kernel that is busy is never culled, however long since the last request; once it is idle
  the same policy suspends the container.
"""

from __future__ import annotations

import io
import json
import time
import uuid

import pytest
import requests
from django.core.management import call_command
from django.test import Client

from ipynbsrv_backends import services
from ipynbsrv_backends.models import AuditEntry, Container, Image
from ipynbsrv_backends.services import culling, idlepolicy

from ..notebook import Jupyter, nginx, notebook_image  # noqa: F401
from ..support import wait_for

pytestmark = [pytest.mark.engine, pytest.mark.timeout(300)]

#: The policy of these tests: suspend after 2 s idle; the proxy notes every visit.
POLICY = {"RULES": [{"images": ["ipynbsrv/notebook:*"], "suspend_after": "2s"}], "ACTIVITY_INTERVAL": 1}


@pytest.fixture
def notebook(transactional_db, engine, make_node, notebook_image, settings, django_user_model):  # noqa: F811
    settings.IPYNBSRV_BACKENDS = {**settings.IPYNBSRV_BACKENDS, "CONTAINER_PORTS": [8888], "CONTAINER_VOLUMES": [],
                                  "CONTAINER_OPTIONS": {"mem_limit": "1g"}, "IDLE_CULLING": POLICY}
    owner = django_user_model.objects.create_user("carol")
    image = Image.objects.create(name="jupyter", ref=notebook_image, public=True)
    return services.create_container(owner, "nb", image=image, node=make_node("cull"))


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _jupyter(nginx_server, container: Container) -> Jupyter:  # noqa: F811
    session = _client(container.owner)
    return Jupyter(nginx_server.url + container.base_url, {"sessionid": session.cookies["sessionid"].value})


def _cull(*args: str) -> str:
    out = io.StringIO()
    call_command("ipynbsrv_cull", *args, stdout=out)
    return out.getvalue()


def _due(container: Container) -> idlepolicy.Verdict:
    [decision] = [d for d in culling.plan() if d.container.pk == container.pk]
    return decision.verdict


def _paused(engine, container: Container) -> bool:  # noqa: F811
    container.refresh_from_db()
    return bool(engine.api.inspect_container(container.backend_pk)["State"]["Paused"])


def test_an_idle_notebook_is_suspended_and_the_next_request_resumes_it_with_its_kernel(notebook, nginx, engine):  # noqa: F811
    jupyter = _jupyter(nginx, notebook)
    try:
        jupyter.wait_ready()
        kernel = jupyter.start_kernel()
        assert jupyter.execute(kernel, "answer = 41 + 1\nprint('set')").strip() == "set"
        notebook.refresh_from_db()
        assert notebook.last_activity is not None, "the proxy's check recorded no activity"

        wait_for(lambda: _due(notebook).action == idlepolicy.SUSPEND, timeout=30, interval=0.5,
                 what="the policy to find the notebook idle for 2 s")
        planned = _cull("--dry-run")
        assert f"{notebook}" in planned and "would suspend" in planned, planned
        assert not _paused(engine, notebook), "--dry-run suspended it"

        done = _cull()
        assert "suspend" in done and "suspended after" in done, done
        notebook.refresh_from_db()
        assert notebook.status == "suspended" and _paused(engine, notebook)
        assert notebook.cull_reason.startswith("suspended after ") and notebook.cull_reason.endswith(" idle")
        shown = _client(notebook.owner).get(f"/api/containers/{notebook.pk}/").json()
        assert shown["status"] == "suspended" and shown["cull_reason"] == notebook.cull_reason, shown
        entry = AuditEntry.objects.filter(action="container.idle_suspend", target_id=str(notebook.pk)).get()
        assert entry.result == "ok" and entry.details["reason"] == notebook.cull_reason
        assert entry.details["source"] == "ipynbsrv_cull" and entry.details["idle_seconds"] >= 2

        began = time.monotonic()
        # the owner comes back, in the same session: the check resumes it
        answer = jupyter.get("api/status")
        waited = time.monotonic() - began
        assert answer.status_code == 200, (answer.status_code, answer.text[:300], nginx.log()[-2000:])
        assert waited < 10, f"the first request after the suspend took {waited:.1f} s"
        notebook.refresh_from_db()
        assert notebook.status == "running" and not _paused(engine, notebook)
        assert notebook.cull_reason == "" and notebook.culled_at is None
        resumed = AuditEntry.objects.filter(action="container.resume", target_id=str(notebook.pk)).get()
        assert resumed.actor == notebook.owner and resumed.details.get("source") == "proxy"
        assert jupyter.execute(kernel, "print(answer)").strip() == "42", "the kernel lost its state"

        # the policy suspends it the instant after a request nginx kept the answer to: the next
        # request must still be checked by the master (and resume it), not wait on the paused server
        assert jupyter.get("api/status").status_code == 200
        decision = culling.Decision(notebook, idlepolicy.Verdict(idlepolicy.SUSPEND, "suspended after 2 s idle", 2))
        culling.idle_suspend(notebook, decision)
        assert _paused(engine, notebook)
        began = time.monotonic()
        try:
            answer = jupyter.http.get(jupyter.base + "api/status", timeout=8)
        except requests.Timeout:
            raise AssertionError("the request right after the suspend went to the paused server and waited") from None
        assert answer.status_code == 200 and time.monotonic() - began < 8, (answer.status_code, answer.text[:300])
        assert not _paused(engine, notebook) and jupyter.execute(kernel, "print(answer)").strip() == "42"

        # one an operator suspends is not resumed by requests, and no request waits on it, not
        # even the first one, right after a request nginx kept the answer to
        assert jupyter.get("api/status").status_code == 200
        services.suspend_container(notebook)
        began = time.monotonic()
        try:
            answer = jupyter.http.get(jupyter.base + "api/status", timeout=5)
        except requests.Timeout:
            raise AssertionError("the request right after the suspend went to the paused server and waited") from None
        assert answer.status_code == 502 and "does not answer" in answer.text, (answer.status_code, answer.text[:300])
        assert time.monotonic() - began < 1
        assert Container.objects.get(pk=notebook.pk).status == "suspended" and _paused(engine, notebook)
    finally:
        jupyter.close()


def _start_busy(jupyter: Jupyter, kernel: str, seconds: int):
    """Send the kernel a cell that runs ``seconds`` without waiting for it; the open websocket."""
    import websocket

    url = "ws" + jupyter.base[len("http"):] + f"api/kernels/{kernel}/channels?session_id={uuid.uuid4().hex}"
    cookie = "; ".join(f"{k}={v}" for k, v in jupyter.http.cookies.items())
    ws = websocket.create_connection(url, cookie=cookie, timeout=30)
    ws.send(json.dumps({
        "header": {"msg_id": uuid.uuid4().hex, "username": "t", "session": uuid.uuid4().hex,
                   "msg_type": "execute_request", "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": f"import time\ntime.sleep({seconds})", "silent": False, "store_history": False,
                    "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
    }))
    return ws


def test_a_busy_kernel_is_never_culled_and_an_idle_one_is(notebook, nginx, engine):  # noqa: F811
    jupyter = _jupyter(nginx, notebook)
    try:
        jupyter.wait_ready()
        kernel = jupyter.start_kernel()
        ws = _start_busy(jupyter, kernel, 120)
        wait_for(lambda: culling.ask_server(notebook).busy_kernels == 1, timeout=30, interval=0.3,
                 what="the kernel to be busy")
        # the server's last activity and the proxy's record are both older than the policy's
        # 2 s now: only the busy kernel keeps it running
        began = time.monotonic()

        def idle_long_enough() -> bool:
            verdict = _due(notebook)
            assert verdict.action == idlepolicy.LEAVE, verdict
            return "a kernel is busy" in verdict.reason and time.monotonic() - began > 3

        wait_for(idle_long_enough, timeout=30, interval=0.5, what="the policy to look at a busy kernel")
        notebook.refresh_from_db()
        server = culling.ask_server(notebook)
        assert server.last_activity is not None
        assert (time.time() - max(server.last_activity, notebook.last_activity).timestamp()) > 2, \
            "not idle for the policy's 2 s: this test would prove nothing"
        assert "a kernel is busy" in _cull()
        assert not _paused(engine, notebook) and Container.objects.get(pk=notebook.pk).status == "running"
        assert not AuditEntry.objects.filter(action__startswith="container.idle_").exists()

        # interrupted, the kernel is idle: the same policy suspends it once it has been idle 2 s
        assert jupyter._send("POST", f"api/kernels/{kernel}/interrupt").status_code == 204
        ws.close()
        wait_for(lambda: _due(notebook).action == idlepolicy.SUSPEND, timeout=30, interval=0.5,
                 what="the policy to find the idle kernel's notebook idle")
        assert "suspended after" in _cull()
        assert _paused(engine, notebook)
    finally:
        jupyter.close()
