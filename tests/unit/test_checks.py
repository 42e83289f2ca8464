"""System checks: each fires on its bad setting and stays silent on good ones;
``manage.py check`` is clean on the testproject."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.test import override_settings

from ipynbsrv_backends.checks import check_nodes, check_settings
from ipynbsrv_backends.models import Backend, Node

ROOT = Path(__file__).resolve().parent.parent.parent


def ids(setting: Any) -> list[str]:
    with override_settings(IPYNBSRV_BACKENDS=setting):
        return [message.id for message in check_settings()]


def messages(setting: Any) -> list[Any]:
    with override_settings(IPYNBSRV_BACKENDS=setting):
        return check_settings()


GOOD = {
    "BACKEND_CLASSES": {"Docker": "ipynbsrv_backends.backends.Docker"},
    "SERVER_SELECTION_ALGORITHM": "ipynbsrv_backends.placement.RoundRobin",
    "HEALTH_TTL": 0,
    "UID_OFFSET": 10000,
    "CONTAINER_PORTS": [8888, 8889],
    "CONTAINER_VOLUMES": [{"source": "u{uid}-{name}", "target": "/data"},
                          {"source": "/srv/shared", "target": "/shared", "mode": "ro"}],
    "CONTAINER_OPTIONS": {"mem_limit": "1g", "cpu_limit": 1.5, "pids_limit": 256, "env": {"TZ": "UTC"}},
    "CONTAINER_BASE_URL": "/u/{uid}/{username}/{name}/",
    "MAX_CONTAINERS_PER_USER": 3,
    "PROXY_STAFF_ACCESS": True,
    "PROXY_PORT": 8889,
    "HOSTAPI_BACKEND": "ipynbsrv_backends.backends.Docker",
    "HOSTAPI_BACKEND_OPTIONS": {"instance": "node1"},
    "HOSTAPI_TOKEN": "from-a-secret-store",
}


@pytest.mark.parametrize("setting", [{}, None, GOOD], ids=["empty", "none", "full"])
def test_good_settings_are_silent(setting):
    assert ids(setting) == []


def test_the_setting_must_be_a_dict():
    assert ids(["SERVER_SELECTION_ALGORITHM"]) == ["ipynbsrv_backends.E001"]


def test_a_misspelt_key_is_named_with_a_suggestion():
    [message] = messages({"SERVER_SELECTON_ALGORITHM": "random"})
    assert message.id == "ipynbsrv_backends.E002"
    assert "'SERVER_SELECTON_ALGORITHM'" in message.msg
    assert "SERVER_SELECTION_ALGORITHM" in message.hint
    [message] = messages({"COMPLETELY_ELSE": 1})
    assert "COMPLETELY_ELSE" in message.msg and "CONTAINER_PORTS" in message.hint


@pytest.mark.parametrize("setting, expected", [
    ({"BACKEND_CLASSES": ["ipynbsrv_backends.backends.Docker"]}, "E003"),
    ({"BACKEND_CLASSES": {"Docker": 1}}, "E003"),
    ({"BACKEND_CLASSES": {"Gone": "ipynbsrv_backends.backends.nothing.Gone"}}, "E004"),
    ({"BACKEND_CLASSES": {"Node": "ipynbsrv_backends.models.Node"}}, "E004"),
    ({"SERVER_SELECTION_ALGORITHM": "fastest"}, "E005"),
    ({"SERVER_SELECTION_ALGORITHM": "ipynbsrv_backends.models.Node"}, "E005"),
    ({"SERVER_SELECTION_ALGORITHM": "nowhere.Algorithm"}, "E005"),
    ({"SERVER_SELECTION_ALGORITHM": None}, "E005"),
    ({"HEALTH_TTL": -1}, "E006"),
    ({"HEALTH_TTL": "30"}, "E006"),
    ({"UID_OFFSET": 1.5}, "E006"),
    ({"MAX_CONTAINERS_PER_USER": 0}, "E006"),
    ({"CONTAINER_PORTS": 8888}, "E007"),
    ({"CONTAINER_PORTS": [0]}, "E007"),
    ({"CONTAINER_PORTS": ["8888"]}, "E007"),
    ({"CONTAINER_PORTS": [8888, 8888]}, "E007"),
    ({"CONTAINER_VOLUMES": {"source": "x", "target": "/x"}}, "E008"),
    ({"CONTAINER_VOLUMES": [{"source": "x", "target": "relative"}]}, "E008"),
    ({"CONTAINER_VOLUMES": [{"source": "x", "target": "/x", "mode": "rwx"}]}, "E008"),
    ({"CONTAINER_VOLUMES": [{"source": "x", "target": "/x", "size": 1}]}, "E008"),
    ({"CONTAINER_VOLUMES": [{"source": "{user}-home", "target": "/x"}]}, "E008"),
    ({"CONTAINER_OPTIONS": ["mem_limit"]}, "E009"),
    ({"CONTAINER_OPTIONS": {"mem_limit": "lots"}}, "E009"),
    ({"CONTAINER_OPTIONS": {"cpu_limit": 0}}, "E009"),
    ({"CONTAINER_OPTIONS": {"env": {"BASE_URL": "/x"}}}, "E009"),
    ({"CONTAINER_BASE_URL": "notebooks/{name}/"}, "E010"),
    ({"CONTAINER_BASE_URL": "/n/{user}/"}, "E010"),
    ({"CONTAINER_BASE_URL": "/n/{name/"}, "E010"),
    ({"HOSTAPI_BACKEND": "ipynbsrv_backends.backends.Nothing"}, "E011"),
    ({"HOSTAPI_BACKEND_OPTIONS": ["instance"]}, "E011"),
    ({"HOSTAPI_TOKEN": 1234}, "E011"),
    ({"PROXY_STAFF_ACCESS": "yes"}, "E013"),
    ({"PROXY_PORT": 0}, "E013"),
    ({"PROXY_PORT": 22}, "E013"),
    ({"HOSTAPI_INSECURE_NO_TOKEN": True}, "W001"),
    ({"CONTAINER_OPTIONS": {"privileged": True}}, "W002"),
])
def test_each_bad_setting_fires_its_check(setting, expected):
    found = messages(setting)
    assert [m.id for m in found] == [f"ipynbsrv_backends.{expected}"], [m.msg for m in found]
    key = next(iter(setting))
    assert key in found[0].msg  # the message names the setting


def test_rest_framework_must_be_installed():
    apps = ["django.contrib.auth", "django.contrib.contenttypes", "ipynbsrv_backends"]
    with override_settings(INSTALLED_APPS=apps):
        assert [m.id for m in check_settings()] == ["ipynbsrv_backends.E012"]


@pytest.mark.django_db  # Django 6's `check` command also asks the database (JSONField support)
def test_the_settings_checks_run_with_manage_py_check():
    with override_settings(IPYNBSRV_BACKENDS={"HOSTAPI_INSECURE_NO_TOKEN": True}):
        from django.core.checks import run_checks

        assert "ipynbsrv_backends.W001" in [m.id for m in run_checks(tags=["ipynbsrv_backends"])]
    call_command("check", "--fail-level", "WARNING")  # clean again


# ---------------------------------------------------------------------------- database

@pytest.mark.django_db
def test_nodes_check_only_with_a_database():
    docker = Backend.objects.create(name="local", kind="Docker", config={"base_url": "tcp://127.0.0.1:1"})
    Node.objects.create(name="ok", address="127.0.0.1", backend=docker)
    assert check_nodes() == []  # needs --database
    assert check_nodes(databases=["default"]) == []


@pytest.mark.django_db
def test_nodes_check_finds_a_class_no_longer_allowed_and_bad_configs(settings):
    docker = Backend.objects.create(name="local", kind="Docker", config={})
    Node.objects.create(name="good", address="127.0.0.1", backend=docker)
    broken = Backend.objects.create(name="broken", kind="Docker", config={"base_url": "ftp://nowhere"})
    Node.objects.create(name="bad-config", address="127.0.0.1", backend=broken)
    override = Node.objects.create(name="bad-override", address="127.0.0.1", backend=docker,
                                   backend_config={"no_such_option": 1})
    remote = Backend.objects.create(name="remote", kind="HttpRemote", config={"url": "http://127.0.0.1:9"})
    Node.objects.create(name="remote-node", address="127.0.0.1", backend=remote)

    found = {(m.id, m.obj.name) for m in check_nodes(databases=["default"])}
    assert found == {("ipynbsrv_backends.E021", "bad-config"), ("ipynbsrv_backends.E021", "bad-override")}

    settings.IPYNBSRV_BACKENDS = {"BACKEND_CLASSES": {"Docker": "ipynbsrv_backends.backends.Docker"}}
    found = {(m.id, m.obj.name) for m in check_nodes(databases=["default"])}
    assert ("ipynbsrv_backends.E020", "remote-node") in found
    [message] = [m for m in check_nodes(databases=["default"]) if m.obj == override]
    assert "no_such_option" in message.msg


@pytest.mark.django_db
def test_nodes_check_never_shows_a_secret():
    secret = "registry-password-s3cr3t"
    bad = Backend.objects.create(name="bad", kind="Docker",
                                 config={"registry_password": secret, "base_url": "ftp://x"})
    Node.objects.create(name="n", address="127.0.0.1", backend=bad)
    [message] = check_nodes(databases=["default"])
    assert secret not in message.msg + (message.hint or "")


# ---------------------------------------------------------------------------- the testproject

@pytest.mark.django_db(transaction=True)
def test_manage_py_check_is_clean_on_the_testproject(settings):
    env = {**os.environ, "TESTPROJECT_DB": settings.DATABASES["default"]["NAME"]}
    env.pop("IPYNBSRV_BACKENDS_JSON", None)
    for args in (["check", "--fail-level", "WARNING"], ["check", "--database", "default", "--fail-level", "WARNING"]):
        result = subprocess.run([sys.executable, str(ROOT / "testproject" / "manage.py"), *args],
                                capture_output=True, text=True, env=env, timeout=120, cwd=ROOT)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "no issues" in result.stdout
