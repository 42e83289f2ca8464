"""Options declared once (``backends/options.py``): the constructors' defaults and checks,
the README's tables, the admin's help, the system checks, secrets, and the per-method
options. No engine is contacted: every check runs before a call reaches one."""

from __future__ import annotations

import inspect
import logging
from pathlib import Path

import pytest

from ipynbsrv_backends import errors
from ipynbsrv_backends.backends import Docker, HttpRemote
from ipynbsrv_backends.backends.docker import DOCKER_OPTIONS, PRIVILEGED_OPTIONS
from ipynbsrv_backends.backends.http_remote_options import HTTP_REMOTE_OPTIONS
from ipynbsrv_backends.backends.memory import Memory
from ipynbsrv_backends.backends.memory.options import MEMORY_OPTIONS
from ipynbsrv_backends.backends.options import REGENERATE, MethodOptions, Option, Options, render_readme

README = Path(__file__).resolve().parent.parent.parent / "README.md"
DOWN = "tcp://127.0.0.1:1"  # nothing listens there: a call that reached the engine would fail differently
SECRETS = {
    Docker: {"registry": "127.0.0.1:5000", "registry_username": "ci", "registry_password": "hunter2-secret-pw",
             "tls_client_cert": "/etc/ipynbsrv/cert.pem", "tls_client_key": "/etc/ipynbsrv/key-secret-path.pem"},
    HttpRemote: {"url": "https://10.0.0.2:8080", "token": "tok-secret-value-123",
                 "signing_key": "k" * 20 + "-signing-secret-xyz", "verify": False},
}


def test_the_readme_tables_are_generated_from_the_declarations():
    text = README.read_text(encoding="utf-8")
    assert render_readme(text) == text, f"README.md's constructor tables are stale: run {REGENERATE}"


@pytest.mark.parametrize(("cls", "table", "positional"), [
    (Docker, DOCKER_OPTIONS, ("base_url", "registry", "allowed_volume_roots")),
    (HttpRemote, HTTP_REMOTE_OPTIONS, ("url", "token", "signing_key")),
    (Memory, MEMORY_OPTIONS, ()),
])
def test_defaults_and_secrets_come_from_the_declaration(cls, table, positional):
    assert cls.OPTION_TABLE is table
    assert cls.OPTIONS == {o.name: o.default for o in table if o.name not in positional}
    assert cls.SECRET_OPTIONS == {o.name for o in table if o.secret}
    config = cls.validate_options(**({"url": "http://127.0.0.1:9"} if cls is HttpRemote else {}))
    assert set(config) == set(table.names())


def test_each_declared_check_runs_and_names_the_option():
    assert Docker.OPTIONS["port_range"] == (20000, 32767)
    with pytest.raises(errors.InvalidArgumentError, match="pull_policy"):
        Docker.validate_options(pull_policy="sometimes")
    with pytest.raises(errors.InvalidArgumentError, match="^Unknown Docker backend option\\(s\\): colour\\. Known"):
        Docker.validate_options(colour="blue")
    with pytest.raises(errors.InvalidArgumentError, match="^Unknown HttpRemote option\\(s\\): colour\\. Known"):
        HttpRemote("http://127.0.0.1:9", colour="blue")
    with pytest.raises(errors.InvalidArgumentError, match="go together"):
        Docker.validate_options(registry_username="u")
    assert Docker.validate_options(port_range=[21000, 22000])["port_range"] == (21000, 22000)
    assert HttpRemote("http://127.0.0.1:9/", retry_backoff=1).retry_backoff == 1.0
    with pytest.raises(TypeError):
        HttpRemote("http://127.0.0.1:9", None, "a positional signing key")  # keyword only, as before


def test_a_table_needs_no_backend():
    table = Options("Toy", Option("size", 1, "How big.", lambda name, v: int(v)),
                    Option("key", None, "A key.", secret=True))
    assert table.validate({"size": "3"}) == {"size": 3, "key": None}
    assert table.help_text() == "Toy options: size (1), key (secret)."
    assert "| `key` | `None` | A key. Never shown" in table.markdown()


# --------------------------------------------------------------------------- secrets


@pytest.mark.parametrize("cls", [Docker, HttpRemote])
def test_secrets_are_never_in_reprs_logs_or_help(cls, caplog):
    caplog.set_level(logging.DEBUG)
    secrets = [value for key, value in SECRETS[cls].items() if key in cls.SECRET_OPTIONS]
    assert len(secrets) == 2
    backend = cls(**SECRETS[cls])
    shown = repr(backend) + str(backend) + caplog.text + cls.OPTION_TABLE.help_text() + cls.OPTION_TABLE.markdown()
    assert not [secret for secret in secrets if secret in shown]


@pytest.mark.parametrize(("cls", "option", "bad"), [
    (Docker, "registry_password", 987654321),
    (Docker, "tls_client_key", 123456789),
    (HttpRemote, "token", "has space-secret-token"),
    (HttpRemote, "signing_key", "short-secret-key"),
])
def test_a_bad_secret_is_refused_without_echoing_it(cls, option, bad):
    config = {**SECRETS[cls], option: bad}
    with pytest.raises(errors.InvalidArgumentError) as caught:
        cls.validate_options(**config)
    assert option in str(caught.value) and str(bad) not in str(caught.value)


@pytest.mark.django_db
def test_the_admin_masks_every_declared_secret_and_its_help_names_no_value():
    from ipynbsrv_backends.forms import BackendForm
    from ipynbsrv_backends.models import Backend
    from ipynbsrv_backends.registry import MASK, mask_config

    config = {key: value for key, value in SECRETS[Docker].items()}
    masked = mask_config("Docker", config)
    assert masked["registry_password"] == MASK and masked["tls_client_key"] == MASK
    backend = Backend.objects.create(name="b", kind="Docker", config=config)
    form = BackendForm(instance=backend)
    page = form.as_p()
    assert "hunter2-secret-pw" not in page and "key-secret-path" not in page
    from django.utils.html import escape

    assert escape(DOCKER_OPTIONS.help_text()) in str(form.fields["config"].help_text)
    assert "tls_client_key (secret)" in page


def test_the_admin_help_is_escaped(monkeypatch):
    from ipynbsrv_backends import forms

    monkeypatch.setattr(forms, "options_help", lambda kinds: ["<script>x</script>"])
    help_text = str(forms.BackendForm().fields["config"].help_text)
    assert "<script>" not in help_text and "&lt;script&gt;" in help_text


def test_the_checks_validate_the_nodes_backend_options_by_its_declaration(settings):
    from ipynbsrv_backends.checks import check_settings

    settings.IPYNBSRV_BACKENDS = {"HOSTAPI_BACKEND_OPTIONS": {"pull_policy": "sometimes"}}
    found = [m for m in check_settings() if m.id == "ipynbsrv_backends.E011"]
    assert len(found) == 1 and "pull_policy" in found[0].msg and "Docker backend options:" in found[0].hint
    settings.IPYNBSRV_BACKENDS = {"HOSTAPI_BACKEND_OPTIONS": {"registry_username": "u", "registry_password": 4242}}
    found = [m for m in check_settings() if m.id == "ipynbsrv_backends.E011"]
    assert found and "4242" not in found[0].msg + (found[0].hint or "")
    settings.IPYNBSRV_BACKENDS = {"HOSTAPI_BACKEND_OPTIONS": {"instance": "node1"}}
    assert not [m for m in check_settings() if m.id == "ipynbsrv_backends.E011"]


# --------------------------------------------------------------------------- per-method options


def _public_methods_with_options(cls):
    for name, member in inspect.getmembers(cls, inspect.isfunction):
        if name.startswith("_") or name == "get_status":
            continue
        parameters = inspect.signature(member).parameters.values()
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
            required = [p.name for p in parameters if p.default is inspect.Parameter.empty
                        and p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD and p.name != "self"]
            yield name, required


DOCKER_METHODS = list(_public_methods_with_options(Docker))


def test_every_contract_method_is_covered():
    names = {name for name, _ in DOCKER_METHODS}
    assert {"create_container", "get_container", "restore_container_snapshot", "export_container_snapshot",
            "pull_container_image", "get_node_status"} <= names
    assert len(names) >= 28


MEMORY_METHODS = list(_public_methods_with_options(Memory))


def test_memory_declares_the_same_method_options_as_docker():
    # Memory has every method of Docker's that takes options but the pull (it never pulls).
    assert {name for name, _ in MEMORY_METHODS} == {name for name, _ in DOCKER_METHODS} - {"pull_container_image"}
    assert dict(Memory.METHOD_OPTIONS) == dict(Docker.METHOD_OPTIONS)
    assert Memory.FORBIDDEN_OPTIONS is Docker.FORBIDDEN_OPTIONS  # one list of names refused by name


@pytest.mark.parametrize(("cls", "method", "required"),
                         [(Docker, *m) for m in DOCKER_METHODS] + [(Memory, *m) for m in MEMORY_METHODS],
                         ids=[f"Docker.{m[0]}" for m in DOCKER_METHODS] + [f"Memory.{m[0]}" for m in MEMORY_METHODS])
def test_every_method_refuses_unknown_options_before_it_runs(cls, method, required):
    backend = Docker(base_url=DOWN) if cls is Docker else Memory(host="options-test")
    accepted = cls.METHOD_OPTIONS.get(method, ())
    tail = f"; this call accepts {', '.join(accepted)}" if accepted else "; this call takes no options"
    with pytest.raises(errors.InvalidArgumentError) as caught:
        getattr(backend, method)(*["x"] * len(required), colour="blue")
    assert str(caught.value) == f"Unknown option(s) colour{tail}."
    with pytest.raises(errors.InvalidArgumentError, match="^Option\\(s\\) privileged are not allowed"):
        getattr(backend, method)(*["x"] * len(required), privileged=True)


def test_named_arguments_given_by_keyword_are_not_options():
    backend = Docker(base_url=DOWN)
    with pytest.raises(errors.BackendUnavailableError):  # past the options check, at the engine
        backend.get_containers(only_running=True)
    assert sorted(PRIVILEGED_OPTIONS)  # the names refused by name are the documented ones


def test_a_declared_method_accepts_its_options_and_nothing_else():
    class Toy(MethodOptions):
        METHOD_OPTIONS = {"make": ("size",)}

        def make(self, name, **kwargs):
            return name, kwargs

        def read(self, name, **kwargs):
            return name

    assert Toy().make("a", size=2) == ("a", {"size": 2})
    with pytest.raises(errors.InvalidArgumentError, match="^Unknown option\\(s\\) colour; this call accepts size\\.$"):
        Toy().make("a", size=2, colour="blue")
    with pytest.raises(errors.InvalidArgumentError, match="takes no options"):
        Toy().read("a", size=2)
    assert inspect.signature(Toy.make).parameters.keys() == {"self", "name", "kwargs"}


@pytest.mark.django_db
@pytest.mark.parametrize("cls", [Docker, HttpRemote])
def test_no_declared_secret_reaches_the_admin_pages_or_the_api(cls, admin_client):
    from ipynbsrv_backends.models import Backend, Node

    secrets = [value for key, value in SECRETS[cls].items() if key in cls.SECRET_OPTIONS]
    backend = Backend.objects.create(name="b", kind=cls.__name__, config=SECRETS[cls])
    node = Node.objects.create(name="n1", address="127.0.0.1", backend=backend,
                               backend_config={key: value for key, value in SECRETS[cls].items()
                                               if key in cls.SECRET_OPTIONS})
    responses = [admin_client.get(url) for url in (
        "/admin/ipynbsrv_backends/backend/", f"/admin/ipynbsrv_backends/backend/{backend.pk}/change/",
        "/admin/ipynbsrv_backends/node/", f"/admin/ipynbsrv_backends/node/{node.pk}/change/",
        "/api/nodes/", f"/api/nodes/{node.pk}/",
    )]
    assert [r.status_code for r in responses] == [200] * 6
    pages = b"".join(r.content for r in responses).decode()
    assert pages.count("n1") >= 4
    assert not [secret for secret in secrets if secret in pages]
