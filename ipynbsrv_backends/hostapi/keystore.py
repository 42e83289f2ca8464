"""A node's signing keys and the nonces it has seen, shared by all its workers.

With a state directory (``--state-dir``, ``HOSTAPI_STATE_DIR``) both live in one SQLite file,
``hostapi-state.sqlite3`` (mode 0600), so a nonce accepted by one gunicorn worker is refused
by every other, and a key installed through one worker is used by all and survives a
restart. Without one (a project serving the host API under ``runserver``), both live in
this process's memory: replay protection then holds per process only, and rotation is
refused (a rotated key that vanished on restart would lock the master out).

Keys: ``current`` (the one the node was started with, until a rotation), ``next`` (installed
by the master, accepted too, becomes current when the master promotes it) and ``previous``
ones (replaced keys, each accepted until its grace period ends). Once the state file has
keys, the start-up key (``IPYNBSRV_HOSTAPI_SIGNING_KEY``) is no longer read: delete the file
to start over with it.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = ["KeyStore", "SqliteKeyStore", "MemoryKeyStore", "STATE_FILE"]

STATE_FILE = "hostapi-state.sqlite3"


class KeyStore:
    """What the authentication and the key endpoints need; see the two implementations."""

    persistent = False

    def accepted_keys(self) -> list[str]:
        """Every key a signature may be made with now (current first)."""
        raise NotImplementedError

    def next_key(self) -> str | None:
        raise NotImplementedError

    def remember_nonce(self, nonce: str, timestamp: int, window: int) -> bool:
        """Record ``nonce``; False when it was already seen (a replay)."""
        raise NotImplementedError

    def install_next(self, key: str) -> None:
        raise NotImplementedError

    def promote(self, grace: int) -> None:
        raise NotImplementedError


class MemoryKeyStore(KeyStore):
    """Per process: the initial key only, nonces in a dict (bounded by the window)."""

    def __init__(self, initial_key: str) -> None:
        self._initial = initial_key
        self._lock = threading.Lock()
        self._nonces: dict[str, float] = {}

    def accepted_keys(self) -> list[str]:
        return [self._initial]

    def next_key(self) -> str | None:
        return None

    def remember_nonce(self, nonce: str, timestamp: int, window: int) -> bool:
        now = time.time()
        with self._lock:
            for seen, expires in list(self._nonces.items()):
                if expires < now:
                    del self._nonces[seen]
            if nonce in self._nonces:
                return False
            self._nonces[nonce] = timestamp + window + 1
            return True

    def install_next(self, key: str) -> None:
        from ..errors import CapabilityNotSupportedError

        raise CapabilityNotSupportedError(
            "This host API has no state directory (--state-dir): a rotated key would be lost on "
            "restart, so rotation is refused."
        )

    promote = install_next  # type: ignore[assignment]


class SqliteKeyStore(KeyStore):
    """One SQLite file in the node's state directory; one connection per thread."""

    persistent = True

    def __init__(self, state_dir: str | os.PathLike[str], initial_key: str) -> None:
        self.path = Path(state_dir) / STATE_FILE
        self._initial = initial_key
        self._local = threading.local()
        Path(state_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS nonces (nonce TEXT PRIMARY KEY, expires REAL NOT NULL)")
            # role: 'current' (one), 'next' (at most one), 'previous' (accepted until ``until``).
            db.execute("CREATE TABLE IF NOT EXISTS keys (value TEXT PRIMARY KEY, role TEXT NOT NULL, until REAL)")
            db.execute("BEGIN IMMEDIATE")
            if db.execute("SELECT COUNT(*) FROM keys").fetchone()[0] == 0:
                db.execute("INSERT INTO keys (value, role) VALUES (?, 'current')", (initial_key,))
            db.execute("COMMIT")

    def _connect(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None or getattr(self._local, "pid", None) != os.getpid():
            db = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=True)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
            self._local.pid = os.getpid()
        return db

    def accepted_keys(self) -> list[str]:
        rows = self._connect().execute(
            "SELECT value FROM keys WHERE role IN ('current', 'next') OR until > ? "
            "ORDER BY CASE role WHEN 'current' THEN 0 WHEN 'next' THEN 1 ELSE 2 END",
            (time.time(),),
        ).fetchall()
        return [value for (value,) in rows]

    def next_key(self) -> str | None:
        row = self._connect().execute("SELECT value FROM keys WHERE role = 'next'").fetchone()
        return row[0] if row else None

    def remember_nonce(self, nonce: str, timestamp: int, window: int) -> bool:
        db = self._connect()
        now = time.time()
        try:
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM nonces WHERE expires < ?", (now,))
            db.execute("INSERT INTO nonces (nonce, expires) VALUES (?, ?)", (nonce, timestamp + window + 1))
            db.execute("COMMIT")
            return True
        except sqlite3.IntegrityError:
            db.execute("ROLLBACK")
            return False
        except sqlite3.Error:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def install_next(self, key: str) -> None:
        db = self._connect()
        db.execute("BEGIN IMMEDIATE")
        try:
            if db.execute("SELECT role FROM keys WHERE value = ?", (key,)).fetchone() is not None:
                db.execute("ROLLBACK")
                from ..errors import InvalidArgumentError

                raise InvalidArgumentError("This key was already used on this node: pick a new one.")
            db.execute("DELETE FROM keys WHERE role = 'next'")
            db.execute("INSERT INTO keys (value, role) VALUES (?, 'next')", (key,))
            db.execute("COMMIT")
        except sqlite3.Error:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        logger.info("A next signing key was installed (the current one stays valid).")

    def promote(self, grace: int) -> None:
        db = self._connect()
        now = time.time()
        db.execute("BEGIN IMMEDIATE")
        try:
            if db.execute("SELECT 1 FROM keys WHERE role = 'next'").fetchone() is None:
                db.execute("ROLLBACK")
                from ..errors import IllegalContainerStateError

                raise IllegalContainerStateError("There is no next signing key to promote.")
            # Every replaced key, older ones included, ends within ``grace`` from now: a
            # rotation with grace 0 revokes them all at once (after a leak).
            db.execute("UPDATE keys SET until = MIN(until, ?) WHERE role = 'previous'", (now + grace,))
            db.execute("DELETE FROM keys WHERE role = 'previous' AND until <= ?", (now,))
            db.execute("UPDATE keys SET role = 'previous', until = ? WHERE role = 'current'", (now + grace,))
            db.execute("UPDATE keys SET role = 'current' WHERE role = 'next'")
            db.execute("COMMIT")
        except sqlite3.Error:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        logger.info("The next signing key is now current; the previous one is accepted for %d s.", grace)
