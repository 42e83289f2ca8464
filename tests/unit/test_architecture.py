"""The import rules of ``docs/architecture.md``, checked against the code.

Every module of the package is parsed with :mod:`ast`; every import counts, at any depth (in a
function, under ``TYPE_CHECKING``), relative ones resolved. A module belongs to the first layer
of ``LAYERS`` whose prefix it starts with; a test fails naming the module and the import when
it reaches a layer (or a third-party package) its own layer may not, or when a module belongs
to no layer (then add it to the table here and to the map in docs/architecture.md).
Imports by dotted-path string (the backend a node or a Backend row names) are not imports here.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import ipynbsrv_backends

PACKAGE = Path(ipynbsrv_backends.__file__).resolve().parent
NAME = PACKAGE.name
DOC = PACKAGE.parent / "docs" / "architecture.md"
DJANGO = frozenset({"django", "rest_framework", "drf_spectacular", "gunicorn"})


@dataclass(frozen=True)
class Layer:
    name: str
    prefixes: tuple[str, ...]  # module names, relative to the package ("" is the package itself)
    may_import: frozenset[str]  # the layers it may import (its own always)
    third_party: bool = False  # any installed package besides the standard library
    django: bool = False  # Django, DRF and their kin (only when third_party)


#: Every layer in the order a module is matched (first prefix wins). The map, in words:
#: docs/architecture.md.
LAYERS = (
    Layer("root", ("",), frozenset()),
    Layer("wire", ("wire",), frozenset()),
    Layer("core", ("contract", "errors", "validation", "pullprogress", "events"), frozenset({"root"})),
    Layer("firewall", ("firewall",), frozenset()),
    Layer("backends", ("backends",), frozenset({"root", "wire", "core"}), third_party=True),
    Layer("django-shared", ("conf", "parsers", "drf"), frozenset({"root", "core"}), third_party=True, django=True),
    Layer("hostapi", ("hostapi",), frozenset({"root", "wire", "core", "backends", "django-shared"}),
          third_party=True, django=True),
    Layer("master", ("apps", "checks", "signals", "models", "migrations", "registry", "placement", "services",
                     "audit", "keys", "forms", "admin", "templatetags", "api", "proxy", "proxy_urls", "background",
                     "management"),
          frozenset({"root", "wire", "core", "backends.options", "django-shared", "master"}),
          third_party=True, django=True),
    # The JupyterHub spawner runs inside the hub: only JupyterHub, traitlets and tornado.
    Layer("jupyterhub", ("jupyterhub",), frozenset(), third_party=True),
)
#: ``backends.options`` (the declared options) is the one part of ``backends`` the master
#: imports (its system checks read the declarations); it is matched as a layer of its own.
LAYER_ALIASES = {"backends.options": "backends"}

#: Crossings kept on purpose: (importing module, imported module) -> why. None today: the two
#: there were are gone (keys.py takes new_key from wire.signing; the users' API and the host
#: API take flatten_detail from drf.py). A new one is listed here and in docs/architecture.md.
EXCEPTIONS: dict[tuple[str, str], str] = {}


def module_name(path: Path) -> str:
    parts = [NAME, *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, source: str, is_package: bool) -> list[tuple[int, str]]:
    """Every module ``source`` imports, with its line: ``from X import y`` gives ``X.y`` when
    that is a module of the package, else ``X``; relative imports resolved against ``name``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")[: len(name.split(".")) - (node.level - (1 if is_package else 0))]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            for alias in node.names:
                found.append((node.lineno, f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base))
    return found


def layer_of(module: str) -> Layer | None:
    relative = module[len(NAME) + 1:] if module != NAME else ""
    for layer in LAYERS:
        for prefix in layer.prefixes:
            if relative == prefix or (prefix and relative.startswith(prefix + ".")):
                return layer
    return None


def target_layer(module: str) -> str | None:
    relative = module[len(NAME) + 1:]
    for alias in LAYER_ALIASES:
        if relative == alias or relative.startswith(alias + "."):
            return alias
    layer = layer_of(module)
    return layer.name if layer else None


def crossings(name: str, source: str, is_package: bool = False) -> list[str]:
    """What ``source`` (the module ``name``) imports that its layer may not, one line each."""
    layer = layer_of(name)
    if layer is None:
        return [f"{name} belongs to no layer: add it to LAYERS here and to docs/architecture.md"]
    wrong = []
    for line, imported in imports_of(name, source, is_package):
        top = imported.split(".")[0]
        if top == NAME:
            target = target_layer(imported)
            allowed = target in layer.may_import or target == layer.name or (
                target in LAYER_ALIASES and LAYER_ALIASES[target] == layer.name)
            if not allowed and (name, imported) not in EXCEPTIONS:
                wrong.append(f"{name} (line {line}) imports {imported}: the {layer.name} layer may not "
                             f"import the {target} layer")
        elif top not in sys.stdlib_module_names and top != "__future__":
            if not layer.third_party or (top in DJANGO and not layer.django):
                kind = "Django" if top in DJANGO else "a third-party package"
                wrong.append(f"{name} (line {line}) imports {imported}: the {layer.name} layer may not import {kind}")
    return wrong


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_crosses_a_layer(name):
    path = MODULES[name]
    assert crossings(name, path.read_text(), path.name == "__init__.py") == []


def test_the_exceptions_still_exist_and_are_in_the_map():
    """An exception whose import is gone is taken out of the table; each is in the doc."""
    doc = DOC.read_text()
    for importer, imported in EXCEPTIONS:
        path = MODULES[importer]
        assert imported in [i for _, i in imports_of(importer, path.read_text(), path.name == "__init__.py")]
        assert f"`{importer[len(NAME) + 1:]}`" in doc and f"`{imported[len(NAME) + 1:]}`" in doc


def test_the_old_path_of_a_moved_helper_is_the_same_function():
    from ipynbsrv_backends import drf
    from ipynbsrv_backends.hostapi import exceptions

    assert exceptions.flatten_detail is drf.flatten_detail


def test_the_map_names_every_layer():
    doc = DOC.read_text()
    for layer in LAYERS[1:]:
        for prefix in layer.prefixes:
            assert f"`{prefix}" in doc, f"docs/architecture.md does not name {prefix} ({layer.name})"


@pytest.mark.parametrize(("name", "source", "expected"), [
    (f"{NAME}.wire.format", "import json\n", []),
    (f"{NAME}.wire.format", "def f():\n    import django\n", ["imports django: the wire layer may not import Django"]),
    (f"{NAME}.wire.format", "from ..hostapi import views\n", ["imports ipynbsrv_backends.hostapi.views"]),
    (f"{NAME}.contract", "from django.db import models\n", ["may not import Django"]),
    (f"{NAME}.backends.docker.spec", "from ...models import Node\n", ["the backends layer may not import the master"]),
    (f"{NAME}.backends.memory.base", "from ipynbsrv_backends.hostapi import signing\n", ["may not import the hostapi"]),
    (f"{NAME}.backends.docker.engine", "import docker\nfrom ..options import Option\n", []),
    (f"{NAME}.backends.docker.engine", "from django.conf import settings\n", ["may not import Django"]),
    (f"{NAME}.hostapi.views", "from ..services import create\n", ["may not import the master layer"]),
    (f"{NAME}.hostapi.views", "from .. import keys\n", ["imports ipynbsrv_backends.keys"]),
    (f"{NAME}.hostapi.views", "from ..backends import Docker\nfrom ..wire import routes\n", []),
    (f"{NAME}.services.create", "from ..hostapi.auth import check\n", ["may not import the hostapi layer"]),
    (f"{NAME}.services.create", "from ..backends.docker import Docker\n", ["may not import the backends layer"]),
    (f"{NAME}.checks", "from .backends.options import Option\nfrom .wire import signing\n", []),
    (f"{NAME}.admin.containers", "from ..api.exceptions import x\nfrom ..models import Node\n", []),
    (f"{NAME}.api.exceptions", "from ..hostapi.exceptions import flatten_detail\n", ["may not import the hostapi"]),
    (f"{NAME}.api.exceptions", "from ..drf import flatten_detail\n", []),
    (f"{NAME}.keys", "from .hostapi.signing import new_key\n", ["may not import the hostapi"]),
    (f"{NAME}.newthing", "import os\n", ["belongs to no layer"]),
])
def test_the_check_finds_what_it_looks_for(name, source, expected):
    found = crossings(name, source, name.endswith("__init__"))
    assert len(found) == len(expected), found
    for line, part in zip(found, expected, strict=True):
        assert part in line, line
