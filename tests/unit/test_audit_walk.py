"""Every entry point sets the audit context, shown by walking them (issue 14, item 8): every
URL of the admin and of the users' API is called, and every management command of the app
is run, and what each touches of the app happens inside the context of its door. A view or
command added later is walked too, without anyone remembering it; one that sets no context
fails here, loudly. No engine: nothing is acted on (GETs, and POSTs that are refused before
they act)."""

from __future__ import annotations

import getpass
import importlib
import pkgutil
import re
from io import StringIO
from typing import Any

import pytest
from django.contrib.messages.storage.fallback import FallbackStorage
from django.contrib.sessions.backends.db import SessionStore
from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand
from django.db import connection
from django.http import Http404
from django.test import RequestFactory
from django.urls import URLPattern, URLResolver, get_resolver, resolve

from ipynbsrv_backends import audit
from ipynbsrv_backends.management import commands as command_package
from ipynbsrv_backends.models import Container

pytestmark = pytest.mark.django_db

OUR_TABLES = re.compile(r'"?ipynbsrv_backends_\w+"?')
NOT_ACTING = {"not_found", "SchemaView"}  # the API's JSON 404 and its OpenAPI schema act on nothing


class ProbeUser:
    """The signed-in staff member, noting the audit context each time a view consults it."""

    def __init__(self, user: Any, seen: list[Any]) -> None:
        self.__dict__.update(_user=user, _seen=seen)

    def __getattr__(self, name: str) -> Any:
        self._seen.append(("user", audit.current()))
        return getattr(self._user, name)


def observe(view: Any, request: Any, *args: Any, **kwargs: Any) -> list[tuple[str, Any]]:
    """Call ``view``; every query on the app's tables and every look at the user, with the
    audit context in force at that moment."""
    seen: list[Any] = request.user._seen

    def spy(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if OUR_TABLES.search(sql):
            seen.append((sql[:80], audit.current()))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(spy):
        try:
            view(request, *args, **kwargs)
        except (Http404, PermissionDenied):  # answers (404, 403) the handler would give
            pass
    return seen


def leaves(patterns: list[Any], prefix: str = "") -> list[tuple[str, Any]]:
    """(regex of the whole path, pattern) of every view below ``patterns``."""
    found = []
    for pattern in patterns:
        regex = prefix + pattern.pattern.regex.pattern.lstrip("^")
        if isinstance(pattern, URLResolver):
            found += leaves(pattern.url_patterns, regex.rstrip("$").removesuffix(r"\Z"))
        elif isinstance(pattern, URLPattern):
            found.append((regex, pattern))
    return found


def concrete(regex: str) -> str:
    """A path the regex matches: each group the first of its alternatives, or ``1``."""
    def fill(match: re.Match[str]) -> str:
        body = match.group(2)
        return body.split("|")[0] if re.fullmatch(r"[\w|]+", body) else "1"

    path = re.sub(r"\(\?P<(\w+)>([^()]*)\)", fill, regex)
    return "/" + path.replace(r"\Z", "").replace("$", "").replace("\\", "")


def request_for(method: str, path: str, user: Any, hub_token: str = "") -> Any:
    factory = RequestFactory()
    # the JupyterHub endpoints (api/hub/) are signed in with a hub's token, never a user's
    extra = {"HTTP_AUTHORIZATION": f"Bearer {hub_token}"} if hub_token and path.startswith("/api/hub/") else {}
    request = (factory.post(path, data={}, content_type="application/json", **extra) if method == "POST"
               else factory.get(path, **extra))
    request.user = ProbeUser(user, [])
    request.session = SessionStore()
    request._messages = FallbackStorage(request)
    request._dont_enforce_csrf_checks = True
    return request


def walk(prefix: str, via: str, user: Any, methods: tuple[str, ...],
         hub_token: str = "") -> dict[str, list[tuple[str, Any]]]:
    """Call every view below ``prefix``; returns, per path, every observation made outside
    the context of ``via``, and fails when the walk saw nothing at all."""
    outside: dict[str, list[tuple[str, Any]]] = {}
    observed = 0
    urls = [(concrete(regex), p) for regex, p in leaves(get_resolver().url_patterns) if regex.startswith(prefix)]
    assert len(urls) > 5, urls
    for path, pattern in urls:
        name = getattr(getattr(pattern.callback, "cls", None), "__name__", None) or pattern.callback.__name__
        if name in NOT_ACTING:
            continue
        match = resolve(path)
        assert match.func is pattern.callback or match.url_name == pattern.name, (path, pattern)
        for method in methods:
            seen = observe(match.func, request_for(method, path, user, hub_token), *match.args, **match.kwargs)
            observed += bool(seen)
            wrong = [(what, ctx) for what, ctx in seen if ctx is None or ctx.via != via]
            if wrong or not seen:
                outside[f"{method} {path} ({name})"] = wrong or [("nothing observed", None)]
    assert observed > len(urls) // 2
    return outside


def test_every_admin_url_runs_in_the_admins_context(admin_user):
    """Django's views and the app's own (clone, move, commit) of every model admin of the app
    run in the admin's context. The admin's other pages (the index, sign-in, other apps' model
    admins) may read the app's rows (the user admin's delete page lists what goes with a
    user) but write none: what a user's deletion takes with it is recorded apart (see
    tests/unit/test_audit_walk.py::test_rows_deleted_with_a_user_are_recorded)."""
    outside = walk("admin/", audit.VIA_ADMIN, admin_user, ("GET",))
    ours = {k: v for k, v in outside.items() if "ipynbsrv_backends/" in k}
    assert not ours, ours
    writes = {k: [w for w in v if re.match(r"(INSERT|UPDATE|DELETE)", w[0])] for k, v in outside.items()}
    assert not any(writes.values()), writes


def test_every_users_api_url_runs_in_the_apis_context(admin_user):
    from ipynbsrv_backends.services.hub import add_hub

    outside = walk("api/", audit.VIA_API, admin_user, ("GET", "POST"), hub_token=add_hub("walk")[1])
    assert not outside, outside


def test_the_walk_finds_a_view_without_context(admin_user):
    """The walk is not vacuous: a view that reads the app's rows without an entry point is seen."""
    def bare(request: Any) -> None:
        request.user.is_staff  # noqa: B018 - consulted, as views do
        Container.objects.count()

    seen = observe(bare, request_for("GET", "/x/", admin_user))
    assert [ctx for _, ctx in seen] == [None, None]
    seen = observe(audit.entry_point(audit.VIA_API)(bare), request_for("GET", "/x/", admin_user))
    assert [ctx.via for _, ctx in seen] == ["api", "api"] and seen[0][1].actor() is not None


def command_names() -> list[str]:
    return [info.name for info in pkgutil.iter_modules(command_package.__path__) if not info.name.startswith("_")]


def run_probed(command: BaseCommand) -> Any:
    """Run ``command`` through ``execute`` (as ``manage.py`` and ``call_command`` do) with its
    ``handle`` replaced by a probe; returns the audit context ``handle`` ran in."""
    seen: list[Any] = []
    command.handle = lambda *args, **options: seen.append(audit.current())  # type: ignore[method-assign]
    command.execute(no_color=True, force_color=False, skip_checks=True, stdout=StringIO(), stderr=StringIO())
    assert len(seen) == 1
    return seen[0]


@pytest.mark.parametrize("name", command_names())
def test_every_command_runs_in_the_commands_context(name):
    context = run_probed(importlib.import_module(f"{command_package.__name__}.{name}").Command())
    assert context is not None, f"{name} runs outside any audit context"
    assert (context.via, context.actor, context.source, context.run_by) == ("command", None, name, getpass.getuser())


def test_every_command_is_walked_and_the_walk_finds_an_unaudited_one():
    assert {"ipynbsrv_move", "ipynbsrv_reconcile", "ipynbsrv_rotate_key", "ipynbsrv_nodes",
            "ipynbsrv_distribute"} <= set(command_names())

    class Bare(BaseCommand):
        pass

    assert run_probed(Bare()) is None


def test_rows_deleted_with_a_user_are_recorded(django_user_model, admin_client, admin_user):
    """Django's user admin is no door of the app, yet deleting a user there takes their
    images with them: each such row is recorded, naming the user; a deletion the app starts
    itself is recorded once, as before."""
    from ipynbsrv_backends import services
    from ipynbsrv_backends.models import AuditEntry, Image

    bob = django_user_model.objects.create_user("bob")
    Image.objects.create(name="bob/mine", ref="registry.example/bob/mine:1", owner=bob)
    kept = Image.objects.create(name="bob/other", ref="registry.example/bob/other:1", owner=bob)
    services.delete_image(kept)
    assert [(e.action, e.target) for e in AuditEntry.objects.all()] == [("image.delete", "registry.example/bob/other:1")]
    answer = admin_client.post(f"/admin/auth/user/{bob.pk}/delete/", {"post": "yes"})
    assert answer.status_code == 302 and not django_user_model.objects.filter(username="bob").exists()
    entry = AuditEntry.objects.exclude(target__endswith="other:1").get()
    assert (entry.action, entry.target, entry.details["deleted_with"]) == \
        ("image.delete", "registry.example/bob/mine:1", "user bob")
