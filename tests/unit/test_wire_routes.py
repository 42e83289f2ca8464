"""The route table (``ipynbsrv_backends.wire.routes``) against what is built from it: the
contract it must cover, ``HttpRemote``'s calls, the host API's URLs, serializers and schema,
and the table in ``docs/hostapi.md``. Pure logic: no engine, no node process."""

from __future__ import annotations

import ast
import inspect
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.urls import resolve, reverse

import ipynbsrv_backends.wire
from ipynbsrv_backends import contract
from ipynbsrv_backends.backends.http_remote import HttpRemote
from ipynbsrv_backends.wire import routes as r
from ipynbsrv_backends.wire.format import OPTIONS_PARAM, encode_pk

WIRE = Path(ipynbsrv_backends.wire.__file__).parent
REGENERATE = "python -m ipynbsrv_backends.wire.routes --write"


def contracts_of(cls: type) -> list[type]:
    return [c for c in cls.__mro__ if issubclass(c, contract.ContainerBackend) and c.__module__ == contract.__name__]


def declared(cls: type) -> set[str]:
    """The public methods a contract class itself declares."""
    return {name for name, value in vars(cls).items() if inspect.isfunction(value) and not name.startswith("_")}


# --------------------------------------------------------------------------- the package stays Django-free

def test_the_wire_package_imports_no_django_and_no_server():
    code = (
        "import sys\n"
        "import ipynbsrv_backends.wire, ipynbsrv_backends.wire.routes, ipynbsrv_backends.wire.signing\n"
        "import ipynbsrv_backends.wire.format\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('django', 'rest_framework', 'drf_spectacular')"
        " or m.startswith('ipynbsrv_backends.hostapi')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]", result.stdout


def test_http_remote_imports_nothing_of_the_server():
    code = (
        "import sys\n"
        "from ipynbsrv_backends.backends.http_remote import HttpRemote\n"
        "print(sorted(m for m in sys.modules if m.startswith('ipynbsrv_backends.hostapi')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]", result.stdout


@pytest.mark.parametrize("module", sorted(WIRE.glob("*.py")), ids=lambda path: path.name)
def test_the_wire_package_imports_only_the_standard_library_and_itself(module):
    """Also imports inside functions, which the subprocess above would not see."""
    for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [] if node.level == 1 else [node.module or ""]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            assert top in sys.stdlib_module_names or top == "__future__", f"{module.name} imports {name}"


# --------------------------------------------------------------------------- the contract is covered

def test_every_contract_method_has_a_route_and_every_route_a_method():
    claimed = contracts_of(HttpRemote)
    # every method of every contract HttpRemote claims is one of its routes (the client side) ...
    wanted = {name for c in claimed for name in declared(c)}
    # (get_status is read from get_node_status's route, which says more than the status alone)
    assert wanted - set(r.CLIENT_ROUTES) == {"get_status"}, "contract methods of HttpRemote without a route"
    assert r.route("get_node_status").serves == "get_status"
    # ... every method of the contracts a node's backend serves has a route (the node side) ...
    served = {(route.contract, route.serves) for route in r.ROUTES if route.contract and route.serves}
    node_contracts = {route.contract for route in r.ROUTES if route.contract and route.serves}
    assert node_contracts == {r.BASE, r.SUSPEND, r.SNAPSHOT, r.PULL, r.TRANSFER, r.EVENTS}
    node_side = {(name, method) for name in node_contracts for method in declared(getattr(contract, name))}
    assert node_side - served == set(), "contract methods without a route"
    # ... and every route names a method its contract declares, of a contract HttpRemote claims
    assert served - node_side == set(), "routes naming a method their contract does not declare"
    assert node_contracts <= {c.__name__ for c in claimed}


def test_every_route_httpremote_calls_is_one_of_its_methods():
    for route in r.CLIENT_ROUTES.values():
        method = getattr(HttpRemote, route.name, None)
        assert callable(method), route.name
        if route.serves and route.contract not in (None, r.BASE):  # a sub-contract's: same name both sides
            assert route.serves == route.name
    node_only = {route.name for route in r.ROUTES} - set(r.CLIENT_ROUTES)
    assert node_only == {"health", "schema"}


def test_the_tables_rules_are_enforced():
    bad = r.Route("x", "GET", "containers/{container}/", "record", "get_container", record="container")
    with pytest.raises(ValueError, match="the pks of the path are arguments"):
        r._check((bad,))
    bad = r.Route("y", "GET", "images/", "none", "get_container_images")
    with pytest.raises(ValueError, match="204 is the answer without a body"):
        r._check((bad,))


# --------------------------------------------------------------------------- HttpRemote follows the table

def _argument(name: str) -> Any:
    return {"uid": 1000, "ports": [], "volumes": [], "tail": 5, "only_running": True, "grace": 30,
            "cmd": ["true"], "key": "k" * 40}.get(name, f"{name}:x/1")


def _answer(route: r.Route) -> Any:
    record = {"pk": "p"}
    return {"record": record, "records": [record], "none": None, "flag": {route.member: True},
            "text": {route.member: "out"}, "lines": ["a"],
            "status": {"backend": {"status": 0}, "resources": {}}}[route.answer]


# (the event stream is read line by line, not through ``_request``: tests/unit/test_http_remote.py)
@pytest.mark.parametrize("route", [route for route in r.CLIENT_ROUTES.values() if route.answer != "events"],
                         ids=lambda route: route.name)
def test_httpremote_sends_each_call_as_its_route_says(route, monkeypatch):
    sent: list[tuple[Any, ...]] = []

    def request(method, path, op, *, kind, params=None, body=None):
        sent.append((method, path, op, kind, params, body))
        return _answer(route)

    client = HttpRemote("http://127.0.0.1:1")
    monkeypatch.setattr(client, "_request", request)
    parameters = inspect.signature(getattr(client, route.name)).parameters
    arguments = {name: _argument(name) for name in [*route.args, *route.query] if name in parameters}
    options = {"colour": "blue"} if route.options else {}
    result = getattr(client, route.name)(**arguments, **options)

    [(method, path, op, kind, params, body)] = sent
    assert (method, op, kind) == (route.http, route.name, route.timeout)
    assert path == route.path.format(**{pk: encode_pk(arguments[pk]) for pk in route.pks})
    members = {name: arguments[name] for name in route.body if name in arguments}
    if route.http == "POST":
        assert params is None
        assert body == ({**members, OPTIONS_PARAM: options} if route.options else members)
    else:
        assert body is None
        expected = {name: arguments[name] for name in route.query}
        assert params == ({**expected, OPTIONS_PARAM: options} if options else expected)
    expected = _answer(route)[route.member] if route.member else _answer(route)
    assert result == expected


# --------------------------------------------------------------------------- the host API follows the table

@pytest.mark.parametrize("route", [route for route in r.ROUTES], ids=lambda route: f"{route.http} {route.path}")
def test_each_route_is_a_url_of_the_host_api_answered_by_its_view(route):
    path = "/hostapi/" + route.path.format(**{pk: encode_pk(f"{pk}/1") for pk in route.pks})
    match = resolve(path)
    assert match.namespace == "hostapi"
    view = match.func.view_class
    if route.answer == "schema":
        assert match.url_name == "schema"
        return
    assert view.routes[route.http] is route
    assert callable(getattr(view, route.http.lower()))
    assert reverse(f"hostapi:{match.url_name}", kwargs=match.kwargs) == path


def test_the_arguments_of_each_route_are_its_serializers_fields():
    from ipynbsrv_backends.hostapi.schema import query_serializer, request_serializer

    for route in r.ROUTES:
        if route.answer in ("health", "schema"):
            continue
        options = {OPTIONS_PARAM} if route.options else set()
        if route.http == "POST":
            assert set(request_serializer(route)().fields) == {*route.body, *options}, route.name
        else:
            assert set(query_serializer(route)().fields) == {*route.query, OPTIONS_PARAM}, route.name


def test_the_schema_has_one_operation_per_route(settings):
    from django.test import Client

    token = "t" * 24
    settings.IPYNBSRV_BACKENDS = {"HOSTAPI_BACKEND": "tests.hostapi_fakes.FullBackend", "HOSTAPI_BACKEND_OPTIONS": {},
                                  "HOSTAPI_TOKEN": token, "HOSTAPI_INSECURE_NO_TOKEN": False}
    response = Client(HTTP_AUTHORIZATION=f"Bearer {token}").get("/hostapi/schema/", {"format": "json"})
    assert response.status_code == 200
    paths = json.loads(response.content)["paths"]
    documented = {(method.upper(), path) for path, item in paths.items() for method in item}
    assert documented == {(route.http, "/" + route.path) for route in r.ROUTES if route.answer != "schema"}
    for route in r.ROUTES:
        if route.answer != "schema":
            operation = paths["/" + route.path][route.http.lower()]
            assert str(route.status) in operation["responses"], route.name
            assert operation["summary"] == route.title


# --------------------------------------------------------------------------- the doc's table

def test_the_docs_route_table_is_generated_from_the_table():
    doc = r.DOC.read_text(encoding="utf-8")
    assert doc == r.with_table(doc), (
        f"docs/hostapi.md's route table is stale: regenerate it with `{REGENERATE}`"
    )
    for route in r.ROUTES:
        assert f"| {route.http} | `{route.path}` |" in doc


def test_the_table_command_prints_and_writes(tmp_path):
    printed = subprocess.run([sys.executable, "-m", "ipynbsrv_backends.wire.routes"], capture_output=True,
                             text=True, timeout=60, check=True).stdout
    assert printed == r.markdown_table()
    stale = tmp_path / "doc.md"
    stale.write_text(f"before\n{r.BEGIN}\n| old |\n{r.END}\nafter\n", encoding="utf-8")
    assert r.write_doc(stale) is True
    assert stale.read_text(encoding="utf-8") == f"before\n{r.BEGIN}\n{printed}{r.END}\nafter\n"
    assert r.write_doc(stale) is False
    with pytest.raises(ValueError, match="markers"):
        r.with_table("no markers here")


def test_the_old_import_paths_are_the_moved_modules_names():
    from ipynbsrv_backends.hostapi import signing as old_signing
    from ipynbsrv_backends.hostapi import wire as old_wire
    from ipynbsrv_backends.wire import format as new_format
    from ipynbsrv_backends.wire import signing as new_signing

    for old, new in ((old_signing, new_signing), (old_wire, new_format)):
        assert set(old.__all__) == set(new.__all__)
        for name in new.__all__:
            assert getattr(old, name) is getattr(new, name), name
    assert {"SIGNATURE_PREFIX", "KEY_MIN_LENGTH", "signature_headers"} <= set(old_signing.__all__)
