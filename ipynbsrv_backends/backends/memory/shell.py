"""The few commands :class:`~ipynbsrv_backends.backends.memory.Memory` runs in a container.

No process runs in an in-memory container, so ``exec_in_container`` is answered here: a small
interpreter over the container's files (a dict), its named volumes (dicts kept by the backend)
and its bind mounts (real host directories, read and written through, ``ro`` honoured).

It understands ``echo``, ``printf``, ``cat``, ``ls``, ``touch``, ``rm``, ``env``, ``true``,
``false`` and ``sleep`` (which returns at once), and ``sh -c SCRIPT`` where SCRIPT joins such
commands with ``;``, ``&&`` and ``||``, expands ``$NAME`` and ``${NAME}`` (not in single
quotes) and redirects with ``>``, ``>>``, ``>&2``, ``2>&1`` and ``2>/dev/null``. Anything else
answers as a shell does: ``sh: NAME: not found``.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Mount", "Shell"]

_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
_OPERATORS = (";", "&&", "||")


@dataclass
class Mount:
    """A volume in a container: ``files`` (a named volume) or ``host`` (a bind mount)."""

    target: str
    read_only: bool = False
    files: dict[str, str] | None = None
    host: str | None = None


@dataclass
class Shell:
    """One ``exec``: the container's files, mounts and environment."""

    files: dict[str, str]
    mounts: list[Mount]
    env: dict[str, str]
    output: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------ files

    def _where(self, path: str) -> tuple[Mount | None, str]:
        path = os.path.normpath("/" + path.lstrip("/"))
        for mount in sorted(self.mounts, key=lambda m: len(m.target), reverse=True):
            if path == mount.target or path.startswith(mount.target + "/"):
                return mount, path[len(mount.target):].lstrip("/")
        return None, path

    @staticmethod
    def _on_host(mount: Mount, key: str) -> str:
        """The host path of ``key`` in a bind mount; never outside it (a symlink in the host
        directory that leads out is refused as a missing file)."""
        assert mount.host is not None
        root = os.path.realpath(mount.host)
        real = os.path.realpath(os.path.join(root, key))
        if real != root and not real.startswith(root + "/"):
            raise FileNotFoundError(key)
        return real

    def read(self, path: str) -> str | None:
        mount, key = self._where(path)
        if mount is None:
            return self.files.get(key)
        if mount.host is not None:
            try:
                with open(self._on_host(mount, key), encoding="utf-8") as handle:
                    return handle.read()
            except OSError:
                return None
        assert mount.files is not None
        return mount.files.get(key)

    def write(self, path: str, text: str, append: bool = False) -> str | None:
        """Write ``text``; the shell's complaint when it cannot."""
        mount, key = self._where(path)
        if mount is not None and mount.read_only:
            return f"sh: can't create {path}: Read-only file system"
        if mount is not None and mount.host is not None:
            try:
                with open(self._on_host(mount, key), "a" if append else "w", encoding="utf-8") as handle:
                    handle.write(text)
            except OSError as exc:
                return f"sh: can't create {path}: {exc.strerror}"
            return None
        store = self.files if mount is None else mount.files
        assert store is not None
        store[key] = (store.get(key, "") if append else "") + text
        return None

    def remove(self, path: str) -> bool:
        mount, key = self._where(path)
        if mount is not None and mount.host is not None:
            try:
                os.remove(self._on_host(mount, key))
            except OSError:
                return False
            return True
        store = self.files if mount is None else mount.files
        return store is not None and store.pop(key, None) is not None

    # ------------------------------------------------------------------ running

    def run(self, argv: list[str]) -> str:
        """Run one argv (``sh -c`` scripts included); stdout and stderr, merged."""
        self.output = []
        self._command(argv)
        return "".join(self.output)

    def _command(self, argv: list[str]) -> int:
        if len(argv) >= 3 and argv[0] in ("sh", "/bin/sh", "bash") and argv[1] == "-c":
            return self._script(argv[2])
        name, args = argv[0], argv[1:]
        handler = getattr(self, f"_cmd_{name}", None)
        if handler is None:
            self.output.append(f"sh: {name}: not found\n")
            return 127
        return int(handler(args))

    def _expand(self, script: str) -> str:
        out, quoted, start = [], False, 0
        for index, char in enumerate(script + "'"):
            if char == "'" or index == len(script):
                piece = script[start:index]
                out.append(piece if quoted else _VAR.sub(lambda m: self.env.get(m.group(1) or m.group(2), ""), piece))
                if index < len(script):
                    out.append("'")
                quoted, start = not quoted, index + 1
        return "".join(out)

    def _script(self, script: str) -> int:
        lexer = shlex.shlex(self._expand(script), posix=True, punctuation_chars=";&|<>")
        lexer.whitespace_split = True
        try:
            tokens = list(lexer)
        except ValueError as exc:
            self.output.append(f"sh: syntax error: {exc}\n")
            return 2
        status, pending = 0, ";"
        for words, operator in _split(tokens):
            if pending == ";" or (pending == "&&" and status == 0) or (pending == "||" and status != 0):
                status = self._redirected(words)
            pending = operator
        return status

    def _redirected(self, words: list[str]) -> int:
        argv, target, append, quiet = [], None, False, False
        items = iter(range(len(words)))
        for index in items:
            word = words[index]
            follows = words[index + 1] if index + 1 < len(words) else ""
            if word in (">", ">>") and follows:
                target, append = follows, word == ">>"
                next(items, None)
            elif word == "2" and follows in (">&", ">"):
                quiet = follows == ">" and words[index + 2:index + 3] == ["/dev/null"]
                next(items, None)
                next(items, None)
            elif word == ">&":
                next(items, None)
            else:
                argv.append(word)
        if not argv:
            return 0
        before = len(self.output)
        status = self._command(argv)
        if quiet:
            del self.output[before:]
        elif target is not None:
            produced = "".join(self.output[before:])
            del self.output[before:]
            problem = self.write(target, produced, append)
            if problem:
                self.output.append(problem + "\n")
                return 1
        return status

    # ------------------------------------------------------------------ commands

    def _cmd_echo(self, args: list[str]) -> int:
        newline = "\n"
        if args[:1] == ["-n"]:
            args, newline = args[1:], ""
        self.output.append(" ".join(args) + newline)
        return 0

    def _cmd_printf(self, args: list[str]) -> int:
        if args:
            text = args[0].replace("\\n", "\n").replace("\\t", "\t")
            self.output.append(text.replace("%s", " ".join(args[1:]), 1) if "%s" in text else text)
        return 0

    def _cmd_cat(self, args: list[str]) -> int:
        status = 0
        for path in args:
            text = self.read(path)
            if text is None:
                self.output.append(f"cat: can't open '{path}': No such file or directory\n")
                status = 1
            else:
                self.output.append(text)
        return status

    def _cmd_ls(self, args: list[str]) -> int:
        status = 0
        for path in args or ["/"]:
            if self.read(path) is None:
                self.output.append(f"ls: {path}: No such file or directory\n")
                status = 1
            else:
                self.output.append(path + "\n")
        return status

    def _cmd_touch(self, args: list[str]) -> int:
        for path in args:
            problem = self.write(path, "", append=True)
            if problem:
                self.output.append(problem.replace("sh: can't create", "touch:") + "\n")
                return 1
        return 0

    def _cmd_rm(self, args: list[str]) -> int:
        paths = [arg for arg in args if not arg.startswith("-")]
        return 0 if all(self.remove(path) for path in paths) or "-f" in args else 1

    def _cmd_env(self, args: list[str]) -> int:
        self.output.extend(f"{key}={value}\n" for key, value in sorted(self.env.items()))
        return 0

    def _cmd_true(self, args: list[str]) -> int:
        return 0

    def _cmd_false(self, args: list[str]) -> int:
        return 1

    def _cmd_sleep(self, args: list[str]) -> int:
        return 0


def _split(tokens: Iterable[str]) -> Iterable[tuple[list[str], str]]:
    """Commands and the operator after each (``;`` after the last)."""
    words: list[Any] = []
    for token in tokens:
        if token in _OPERATORS:
            yield words, token
            words = []
        else:
            words.append(token)
    yield words, ";"
