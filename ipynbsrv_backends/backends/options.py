"""Options declared once: a backend's constructor options, and the options its methods take.

A backend class declares its constructor options as an :class:`Options` table of
:class:`Option` entries (name, default, check, help text, secret or not). From that one
declaration come the constructor's defaults and ``validate_options``, the admin form's help,
the system checks, which options are secret (never shown), and the README's constructor
tables (``python -m ipynbsrv_backends.backends.options --write README.md`` regenerates them;
``tests/unit/test_options.py`` fails when they are stale).

:class:`MethodOptions` is the other half: the options each public method accepts (its
``**kwargs``), declared once per class and checked in one place, before the method runs.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from .. import errors
from ..validation import validate_cpu_limit, validate_env, validate_mem_limit, validate_pids_limit

__all__ = [
    "Option",
    "Options",
    "MethodOptions",
    "CONTAINER_OPTIONS",
    "PRIVILEGED_OPTIONS",
    "Check",
    "boolean",
    "optional_string",
    "positive_seconds",
    "choice",
]

#: A check takes the option's name and value and returns the value to keep (normalised),
#: or raises ``InvalidArgumentError`` saying what is wrong and what to use instead. A check
#: of a secret option never puts the value in its message.
Check = Callable[[str, Any], Any]


@dataclass(frozen=True)
class Option:
    """One constructor option."""

    name: str
    default: Any
    help: str
    check: Check | None = None
    secret: bool = False
    #: How the README shows the default (e.g. ``(required)``); ``None``: the default's repr.
    shown_default: str | None = None

    def default_text(self) -> str:
        if self.shown_default is not None:
            return self.shown_default
        if isinstance(self.default, tuple) and self.default:
            return f"`{list(self.default)!r}`"
        return f"`{self.default!r}`".replace("'", '"')


class Options:
    """The constructor options of one backend class, in the order its docs list them."""

    def __init__(self, label: str, *options: Option, together: tuple[tuple[str, str], ...] = ()) -> None:
        self.label = label
        self._options = {option.name: option for option in options}
        self.together = together

    def __iter__(self) -> Iterator[Option]:
        return iter(self._options.values())

    def __getitem__(self, name: str) -> Option:
        return self._options[name]

    def __contains__(self, name: object) -> bool:
        return name in self._options

    def names(self) -> list[str]:
        return list(self._options)

    def defaults(self, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
        """Every option's default (the ones in ``exclude`` left out)."""
        return {option.name: option.default for option in self if option.name not in exclude}

    def secrets(self) -> frozenset[str]:
        """The options whose values are never shown."""
        return frozenset(option.name for option in self if option.secret)

    def validate(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """``config`` checked, normalised and with the defaults filled in; an unknown or bad
        option is an ``InvalidArgumentError`` naming the first one (in declaration order)."""
        unknown = sorted(set(config) - set(self._options))
        if unknown:
            raise errors.InvalidArgumentError(
                f"Unknown {self.label} option(s): {', '.join(unknown)}. "
                f"Known options: {', '.join(sorted(self._options))}."
            )
        result = {**self.defaults(), **config}
        for option in self:
            if option.check is not None:
                result[option.name] = option.check(option.name, result[option.name])
        for first, second in self.together:
            if bool(result[first]) != bool(result[second]):
                raise errors.InvalidArgumentError(f"{first} and {second} go together: give both or neither.")
        return result

    def help_text(self) -> str:
        """One line naming every option and its default, secrets marked (values never)."""
        parts = []
        for option in self:
            default = option.default_text().strip("`")
            parts.append(f"{option.name} (secret)" if option.secret else f"{option.name} ({default})")
        return f"{self.label} options: {', '.join(parts)}."

    def markdown(self) -> str:
        """The README's table of these options."""
        rows = ["| argument | default | meaning |", "|---|---|---|"]
        for option in self:
            secret = " Never shown in `repr`, logs, the admin or the API." if option.secret else ""
            rows.append(f"| `{option.name}` | {option.default_text()} | {option.help}{secret} |")
        return "\n".join(rows)


# --------------------------------------------------------------------------- checks


def boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise errors.InvalidArgumentError(f"{name} must be true or false.")
    return value


def optional_string(name: str, value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise errors.InvalidArgumentError(f"{name} must be a string.")
    return value


def positive_seconds(name: str, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise errors.InvalidArgumentError(f"Invalid {name} {value!r}: use a positive number of seconds.")
    return value


def choice(*values: str) -> Check:
    def check(name: str, value: Any) -> Any:
        if value not in values:
            raise errors.InvalidArgumentError(f"Invalid {name} {value!r}: use one of {', '.join(values)}.")
        return value

    return check


# --------------------------------------------------------------------------- method options

#: The options of ``create_container`` every backend understands (the contract's), each with
#: its check; the system checks judge ``CONTAINER_OPTIONS`` settings by these.
CONTAINER_OPTIONS: Mapping[str, Callable[[Any], Any]] = {
    "env": validate_env,
    "mem_limit": validate_mem_limit,
    "cpu_limit": validate_cpu_limit,
    "pids_limit": validate_pids_limit,
}

#: Options a caller might try to smuggle in; each widens what a container may do on the
#: host, so every backend refuses each by name (its ``FORBIDDEN_OPTIONS``) rather than
#: passing it on to an engine.
PRIVILEGED_OPTIONS = frozenset({
    "privileged", "cap_add", "cap_drop", "devices", "device_requests", "device_cgroup_rules",
    "network_mode", "network", "pid_mode", "ipc_mode", "uts_mode", "userns_mode", "cgroupns",
    "security_opt", "sysctls", "volumes_from", "cgroup_parent", "runtime", "host_config",
    "user", "binds", "mounts", "tmpfs", "extra_hosts", "dns", "oom_kill_disable",
    "restart_policy", "labels", "entrypoint", "working_dir", "init", "read_only", "shm_size",
})


class MethodOptions:
    """Checks, in one place, the options (``**kwargs``) each public method is called with.

    Every public method a subclass defines with ``**kwargs`` refuses options it does not
    accept before it runs: those in :attr:`METHOD_OPTIONS` for it, none otherwise. Names in
    :attr:`FORBIDDEN_OPTIONS` are refused as widening what a container may do. Methods in
    :attr:`UNCHECKED_METHODS` are left alone (``get_status`` never raises).
    """

    #: The options a method accepts, by method name; any other method takes none.
    METHOD_OPTIONS: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    #: Options refused by name, with a message saying why.
    FORBIDDEN_OPTIONS: ClassVar[frozenset[str]] = frozenset()
    UNCHECKED_METHODS: ClassVar[frozenset[str]] = frozenset({"get_status"})

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, member in list(vars(cls).items()):
            if name.startswith("_") or name in cls.UNCHECKED_METHODS or not inspect.isfunction(member):
                continue
            if getattr(member, "_options_checked", False):
                continue
            parameters = inspect.signature(member).parameters.values()
            if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
                setattr(cls, name, _checked(member))

    def _refuse_options(self, method: str, given: set[str]) -> None:
        allowed = self.METHOD_OPTIONS.get(method, ())
        unknown = sorted(given - set(allowed))
        if not unknown:
            return
        forbidden = [key for key in unknown if key in self.FORBIDDEN_OPTIONS]
        if forbidden:
            raise errors.InvalidArgumentError(
                f"Option(s) {', '.join(forbidden)} are not allowed: they would widen what a container may do on the host."
            )
        accepted = f"; this call accepts {', '.join(allowed)}" if allowed else "; this call takes no options"
        raise errors.InvalidArgumentError(f"Unknown option(s) {', '.join(unknown)}{accepted}.")


def _checked(method: Callable[..., Any]) -> Callable[..., Any]:
    named = frozenset(
        p.name for p in inspect.signature(method).parameters.values()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    )
    name = method.__name__

    @functools.wraps(method)
    def checked(self: MethodOptions, *args: Any, **kwargs: Any) -> Any:
        if kwargs and not named.issuperset(kwargs):
            self._refuse_options(name, set(kwargs) - named)
        return method(self, *args, **kwargs)

    checked.__dict__["_options_checked"] = True
    return checked


# --------------------------------------------------------------------------- the README's tables

#: The README's generated tables: marker name -> ``module:attribute`` of an :class:`Options`.
README_TABLES = {
    "HttpRemote": "ipynbsrv_backends.backends.http_remote_options:HTTP_REMOTE_OPTIONS",
    "Docker": "ipynbsrv_backends.backends.docker.options:DOCKER_OPTIONS",
    "Memory": "ipynbsrv_backends.backends.memory.options:MEMORY_OPTIONS",
    "DockerSwarm": "ipynbsrv_backends.backends.swarm.options:SWARM_OPTIONS",
}
REGENERATE = "python -m ipynbsrv_backends.backends.options --write README.md"


def render_readme(text: str) -> str:
    """``text`` (the README) with each table between ``<!-- options:NAME -->`` and
    ``<!-- /options:NAME -->`` generated from its declaration."""
    import importlib

    for marker, target in README_TABLES.items():
        module, attribute = target.split(":")
        table: Options = getattr(importlib.import_module(module), attribute)
        start, end = f"<!-- options:{marker} -->", f"<!-- /options:{marker} -->"
        before, found, rest = text.partition(start)
        if not found or end not in rest:
            raise ValueError(f"The README has no {start} ... {end} block.")
        text = f"{before}{start}\n{table.markdown()}\n{end}{rest.partition(end)[2]}"
    return text


def main(argv: list[str] | None = None) -> int:
    import argparse
    import pathlib

    parser = argparse.ArgumentParser(description="Regenerate (or check) the README's constructor tables.")
    parser.add_argument("--write", action="store_true", help="rewrite the file (else: exit 1 when it is stale)")
    parser.add_argument("path", nargs="?", default="README.md")
    args = parser.parse_args(argv)
    path = pathlib.Path(args.path)
    text = path.read_text(encoding="utf-8")
    fresh = render_readme(text)
    if args.write:
        path.write_text(fresh, encoding="utf-8")
        return 0
    if fresh != text:
        print(f"{path} is stale: run {REGENERATE}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
