"""The pure logic of JupyterHub support: the spawner's progress events, the hub environment it
passes, its options form's answer, its state; the master's container names for hub servers and
its check of the hub's environment. No master, no hub."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from ipynbsrv_backends import errors
from ipynbsrv_backends.jupyterhub import IpynbsrvSpawner, MasterError
from ipynbsrv_backends.jupyterhub.spawner import hub_env, progress_event
from ipynbsrv_backends.services.hub import check_env, container_name
from ipynbsrv_backends.validation import validate_name


def record(status: str = "creating", progress: str = "", percent: int | None = None, **more):
    return {"status": status, "progress": progress, "progress_percent": percent, "node": "n1", **more}


def test_progress_events_follow_placement_pull_and_start():
    placed = progress_event(record(progress="waiting to be created on n1"))
    pulling = [progress_event(record(progress=f"pulling img on n1: 1 of 2 layers ({p} %)", percent=p))
               for p in (0, 50, 100)]
    starting = progress_event(record(progress="starting on n1"))
    running = progress_event(record("running"))
    figures = [placed["progress"], *(e["progress"] for e in pulling), starting["progress"], running["progress"]]
    assert figures == sorted(figures) and figures[0] == 10 and pulling[1]["progress"] == 45
    assert pulling[1]["message"].endswith("(50 %)") and running["message"] == "running on n1"
    assert progress_event(record(progress=""))["message"] == "placed on n1"
    failed = progress_event(record("error", last_error="Every node that could take the container is full."))
    assert failed["failed"] is True and "full" in failed["message"]


def test_only_the_hubs_variables_go_to_the_container():
    env = {"JUPYTERHUB_API_TOKEN": "t", "JPY_API_TOKEN": "t", "PATH": "/usr/bin", "LANG": "C",
           "JUPYTERHUB_SERVICE_PREFIX": "/user/a/"}
    assert hub_env(env) == {"JUPYTERHUB_API_TOKEN": "t", "JPY_API_TOKEN": "t", "JUPYTERHUB_SERVICE_PREFIX": "/user/a/"}
    assert IpynbsrvSpawner().env_keep == []


def test_the_master_refuses_any_other_variable():
    assert check_env({"JUPYTERHUB_API_TOKEN": "x", "JPY_API_TOKEN": "", "JUPYTERHUB_HOST": ""})["JPY_API_TOKEN"] == ""
    for bad in ({"LD_PRELOAD": "/x.so"}, {"IPYNBSRV_ACCESS_SECRET": "s"}, {"jupyterhub_user": "a"},
                {"JUPYTERHUB_": "x"}, {"JUPYTERHUB_USER": 1}, {"JUPYTERHUB_USER": "a\x00b"}, ["JUPYTERHUB_USER"]):
        with pytest.raises(errors.InvalidArgumentError):
            check_env(bad)


@pytest.mark.parametrize("server", ["", "work", "Work 1", "a" * 200, "ümlaut", "x.y", "hub", "-"])
def test_every_server_name_makes_a_valid_distinct_container_name(server):
    name = container_name(server)
    assert validate_name(name) == name
    assert name == "hub" if not server else name.startswith("hub-")


def test_two_server_names_never_meet():
    names = ["Work", "work", "work 1", "work-1", "WORK-1", "a" * 100, "a" * 101]
    assert len({container_name(n) for n in names}) == len(names)


def test_suspend_on_stop_decides_will_resume_and_the_state_round_trips():
    spawner = IpynbsrvSpawner()
    assert spawner.suspend_on_stop and spawner.will_resume
    spawner.suspend_on_stop = False
    assert spawner.will_resume is False
    assert IpynbsrvSpawner(suspend_on_stop=False).will_resume is False
    spawner.server_id = 42
    again = IpynbsrvSpawner()
    again.load_state(spawner.get_state())
    assert again.server_id == 42
    again.clear_state()
    assert again.server_id is None and "ipynbsrv_server_id" not in again.get_state()
    again.load_state({"ipynbsrv_server_id": "42; drop"})
    assert again.server_id is None


def test_the_options_form_answer_and_the_users_choice():
    spawner = IpynbsrvSpawner(image="base")
    assert spawner.options_from_form({"image": [" py311 "]}) == {"image": "py311"}
    assert spawner.options_from_form({}) == {}
    assert spawner._image() == "base"
    spawner.user_options = {"image": "py311"}
    assert spawner._image() == "py311"


def test_the_token_comes_from_the_environment_and_a_bad_url_is_refused(monkeypatch):
    monkeypatch.setenv("IPYNBSRV_HUB_TOKEN", "from-env")
    assert IpynbsrvSpawner().master_token == "from-env"
    assert IpynbsrvSpawner(master_url="http://m:8000").master_url == "http://m:8000/"
    with pytest.raises(Exception, match="http"):
        IpynbsrvSpawner(master_url="m:8000")


def test_without_a_master_url_or_token_it_says_what_to_set(monkeypatch):
    monkeypatch.delenv("IPYNBSRV_HUB_TOKEN", raising=False)
    spawner = IpynbsrvSpawner(master_url="http://127.0.0.1:9/")
    spawner.user = SimpleNamespace(name="a")
    with pytest.raises(MasterError, match="IPYNBSRV_HUB_TOKEN"):
        asyncio.run(spawner._call("GET", "hub/images/"))
    spawner.master_token, spawner.http_timeout = "t", 2
    with pytest.raises(MasterError, match="cannot be reached"):  # nothing listens on port 9
        asyncio.run(spawner._call("GET", "hub/images/"))


def test_progress_follows_the_start_it_is_asked_for_even_before_it_begins():
    """The hub may ask for progress before start has begun, and again for a later start: each
    time it gets that start's own events, to the end (the master's answers stubbed)."""
    answers: list[dict] = []

    async def fake_call(method, path, body=None):
        return answers.pop(0)

    spawner = IpynbsrvSpawner(master_url="http://m/", master_token="t", master_poll_interval=0.01)
    spawner.user = SimpleNamespace(name="alice", url="/user/alice/", escaped_name="alice")
    spawner.get_env = lambda: {"JUPYTERHUB_API_TOKEN": "x", "PATH": "/bin"}  # type: ignore[method-assign]
    spawner._call = fake_call  # type: ignore[method-assign]

    async def one_start(first_progress: str) -> tuple[str, list[dict]]:
        answers[:] = [record(progress=first_progress, id=7), record(progress="starting on n1", id=7),
                      record("running", url="http://10.0.0.2:20001", id=7)]
        events: list[dict] = []

        async def follow():
            async for event in spawner.progress():
                events.append(event)

        follower = asyncio.ensure_future(follow())
        await asyncio.sleep(0.05)  # asked before the start begins
        url = await spawner.start()
        await asyncio.wait_for(follower, 5)
        return url, events

    url, first = asyncio.run(one_start("waiting to be created on n1"))
    assert url == "http://10.0.0.2:20001" and spawner.server_id == 7
    assert [e["message"] for e in first] == ["waiting to be created on n1", "starting on n1", "running on n1"]
    _, second = asyncio.run(one_start("pulling img on n1: 1 of 2 layers (50 %)"))
    assert [e["message"] for e in second][0].startswith("pulling") and len(second) == 3


def test_a_wrong_master_url_is_said_so(monkeypatch):
    """Something that is not the master's API answers (an HTML page, a 404 without our error body):
    the error says where it asked and what to check (the HTTP client's answer stubbed)."""
    import io as _io

    from tornado.httpclient import AsyncHTTPClient, HTTPResponse

    async def fetch(self, request, raise_error=True):
        found = request.url.startswith("http://m/api/hub/")
        return HTTPResponse(request, 200 if found else 404, buffer=_io.BytesIO(b"<html>a page</html>"))

    monkeypatch.setattr(AsyncHTTPClient, "fetch", fetch)
    with pytest.raises(MasterError, match="http://m/api/hub/images/ did not answer JSON"):
        asyncio.run(IpynbsrvSpawner(master_url="http://m/", master_token="t")._call("GET", "hub/images/"))
    with pytest.raises(MasterError, match="answered 404 at http://m/x/hub/images/ .*master_api_path") as wrong:
        asyncio.run(IpynbsrvSpawner(master_url="http://m/", master_token="t", master_api_path="x/")
                    ._call("GET", "hub/images/"))
    assert wrong.value.status == 404


DOC = Path(__file__).resolve().parents[2] / "docs" / "jupyterhub.md"


def test_the_documented_config_loads_and_the_option_table_is_complete(monkeypatch):
    """docs/jupyterhub.md's jupyterhub_config.py runs as it is, and sets what it says; its table
    names every option the spawner declares, each one that exists."""
    from traitlets.config import Config

    text = DOC.read_text()
    block = text.split("`jupyterhub_config.py`:", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    monkeypatch.setenv("IPYNBSRV_HUB_TOKEN", "from-the-environment")
    config = Config()
    exec(compile(block, str(DOC), "exec"), {"c": config})  # noqa: S102 - the documentation's own code
    assert config.JupyterHub.spawner_class == "ipynbsrv"
    spawner = IpynbsrvSpawner(config=config)
    assert spawner.master_url == "https://master.example.org/" and spawner.master_token == "from-the-environment"
    assert spawner.suspend_on_stop is True and spawner.will_resume is True and spawner.start_timeout == 300
    table = text.split("### Every option", 1)[1].split("### ", 1)[0]
    documented = set(re.findall(r"^\| `(\w+)` \|", table, flags=re.M))
    own = {name for name, trait in IpynbsrvSpawner.class_traits(config=True).items()
           if name in IpynbsrvSpawner.__dict__}
    assert own <= documented, own - documented
    assert documented <= set(IpynbsrvSpawner.class_traits()), documented - set(IpynbsrvSpawner.class_traits())
