"""Mutable state (partition versions, edits, incidents, audit log, users) in one transactional store.

* Embedded default: SQLite in WAL mode at ``<twin dir>/state.sqlite`` (no server to install).
* Server deployment: PostgreSQL (+ PostGIS) selected by a ``postgresql://`` URL (needs ``psycopg``).

Modules write portable SQL with ``?`` placeholders and the DDL types ``TEXT``, ``INTEGER``, ``BIGINT``,
``REAL``, ``BLOB`` and ``INTEGER PRIMARY KEY AUTOINCREMENT``; :meth:`Store.ddl` and the PostgreSQL cursor
translate them. Every write happens inside :meth:`Store.transaction`, which serialises writers
(SQLite ``BEGIN IMMEDIATE``; PostgreSQL ``SERIALIZABLE``-free row locks are the caller's ``SELECT … FOR UPDATE``
via :meth:`Store.lock_clause`), so a crash mid-write leaves the last committed state intact.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from twin.store._write_lock import WriteLockBusy, acquire, write_lock

__all__ = ["HandOffTransaction", "Store", "Transaction", "WriteLockBusy", "open_store"]


#: how long (seconds) a SQLite connection waits for another one's lock before it gives up
_BUSY_TIMEOUT_S = 30.0


def _set_wal(con: sqlite3.Connection, timeout_s: float) -> None:
    """Put ``con``'s database in WAL mode, retrying while another connection holds a lock for at most
    ``timeout_s`` seconds. SQLite answers this pragma "database is locked" at once, without its busy handler,
    while another connection holds a write transaction on a database not yet in WAL mode (a new, empty file that
    another process is creating its tables in): two processes opening a new store together hit that."""
    deadline = time.monotonic() + timeout_s
    pause = 0.001
    while True:
        try:
            con.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() + pause > deadline:
                raise
            time.sleep(pause)
            pause = min(2 * pause, 0.05)


class Store:
    """A connection factory plus a transaction helper for one database URL."""

    def __init__(self, url: str | Path) -> None:
        s = str(url)
        if s.startswith(("postgresql://", "postgres://")):
            self.dialect = "postgresql"
            self.url = s
        else:
            self.dialect = "sqlite"
            path = s[len("sqlite:///"):] if s.startswith("sqlite:///") else s
            self.path = Path(path)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.url = f"sqlite:///{self.path}"
        self._local = threading.local()
        self._schemas: set[str] = set()

    # -- connections -------------------------------------------------------------------------------------
    def _connect(self) -> Any:
        if self.dialect == "sqlite":
            con = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
            _set_wal(con, _BUSY_TIMEOUT_S)
            con.execute("PRAGMA synchronous=FULL")
            con.execute("PRAGMA foreign_keys=ON")
            return con
        import psycopg

        return psycopg.connect(self.url, autocommit=True)

    @property
    def connection(self) -> Any:
        con = getattr(self._local, "con", None)
        if con is None:
            con = self._local.con = self._connect()
        return con

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None

    # -- SQL ---------------------------------------------------------------------------------------------
    def ddl(self, sql: str) -> str:
        """Translate portable DDL to this dialect."""
        if self.dialect == "postgresql":
            sql = re.sub(r"INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY", sql, flags=re.I)
            sql = re.sub(r"\bBLOB\b", "BYTEA", sql, flags=re.I)
        return sql

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.dialect == "postgresql" else sql

    def lock_clause(self) -> str:
        """``FOR UPDATE`` on PostgreSQL (row lock inside a transaction); empty on SQLite (whole-db write lock)."""
        return " FOR UPDATE" if self.dialect == "postgresql" else ""

    def ensure_schema(self, name: str, statements: Sequence[str]) -> None:
        """Run ``CREATE … IF NOT EXISTS`` statements once per process for schema ``name``."""
        if name in self._schemas:
            return
        with self.transaction() as tx:
            for st in statements:
                tx.execute(self.ddl(st))
        self._schemas.add(name)

    @contextmanager
    def transaction(self, *, wait: bool = True) -> Iterator[Transaction]:
        """A write transaction: commits on success, rolls back on any exception.

        ``wait=False`` (SQLite): raise :class:`~twin.store._write_lock.WriteLockBusy` before beginning when another
        writer holds the database, instead of waiting for it. PostgreSQL begins at once either way."""
        con = self.connection
        sqlite = self.dialect == "sqlite"
        # SQLite: one writer at a time through the write lock, without SQLite's sleeping busy back-off
        with write_lock(self.path, wait=wait) if sqlite else nullcontext():
            con.execute("BEGIN IMMEDIATE" if sqlite else "BEGIN")
            try:
                yield Transaction(self, con)
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    def begin(self, *, wait: bool = True) -> HandOffTransaction:
        """A write transaction on this thread's connection that any thread may end (:meth:`HandOffTransaction.commit`
        or ``rollback``): filled on an event loop, committed by a thread, so the loop never waits for the fsync.

        Until it ends, its write lock (SQLite) belongs to no thread and this thread's connection is the
        transaction's: do not write or read through this store on this thread meanwhile (the audit writer keeps a
        store of its own). ``wait`` as in :meth:`transaction`."""
        con = self.connection
        release = acquire(self.path, wait=wait) if self.dialect == "sqlite" else None
        try:
            con.execute("BEGIN IMMEDIATE" if self.dialect == "sqlite" else "BEGIN")
        except BaseException:
            if release is not None:
                release()
            raise
        return HandOffTransaction(self, con, release)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """Read-only query outside an explicit transaction."""
        cur = self.connection.execute(self._sql(sql), tuple(params))
        return list(cur.fetchall())


_SQLITE_MAX_VARIABLES = 32766  # SQLite ≥ 3.32's default limit of bound parameters per statement


class Transaction:
    def __init__(self, store: Store, con: Any) -> None:
        self._store = store
        self._con = con

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._con.execute(self._store._sql(sql), tuple(params))

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        return list(self.execute(sql, params).fetchall())

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """One statement for many parameter rows. On SQLite an ``INSERT … VALUES (?, …)`` runs as one multi-row
        ``VALUES (…), (…), …`` statement (one step, so the GIL is given up and taken back once per batch, not once
        per row — under load each take-back can wait a switch interval while the write lock is held); psycopg
        sends the rows in one round trip on PostgreSQL."""
        if not rows:
            return
        head, sep, group = sql.rpartition("VALUES")
        group = group.strip()
        if self._store.dialect == "sqlite" and sep and group.startswith("(") and group.endswith(")"):
            per = max(1, _SQLITE_MAX_VARIABLES // max(1, len(rows[0])))
            for i in range(0, len(rows), per):
                chunk = rows[i:i + per]
                self._con.execute(f"{head}VALUES {', '.join([group] * len(chunk))}", [v for r in chunk for v in r])
            return
        self._con.cursor().executemany(self._store._sql(sql), [tuple(r) for r in rows])

    def insert(self, sql: str, params: Sequence[Any] = ()) -> int:
        """INSERT and return the new row id (``RETURNING id`` is appended on PostgreSQL)."""
        if self._store.dialect == "postgresql":
            return int(self.execute(sql + " RETURNING id", params).fetchone()[0])
        return int(self.execute(sql, params).lastrowid)


def open_store(url: str | Path | None = None, *, twin_root: str | Path | None = None) -> Store:
    """The store at ``url``; else ``$TWIN_DATABASE_URL``; else ``<twin_root>/state.sqlite``."""
    import os

    if url is None:
        url = os.environ.get("TWIN_DATABASE_URL")
    if url is None:
        from twin.io import default_twin_dir

        root = Path(twin_root) if twin_root is not None else default_twin_dir()
        url = root / "state.sqlite"
    return Store(url)


class HandOffTransaction(Transaction):
    """A write transaction begun by :meth:`Store.begin`; :meth:`commit` or :meth:`rollback` ends it, on any thread."""

    def __init__(self, store: Store, con: Any, release: Callable[[], None] | None) -> None:
        super().__init__(store, con)
        self._release = release

    def commit(self) -> None:
        """Commit (the fsync happens here); on failure roll back and raise. Ends the transaction either way."""
        try:
            self._con.execute("COMMIT")
        except BaseException:
            self._undo()
            raise
        finally:
            self._end()

    def rollback(self) -> None:
        """Roll back and end the transaction."""
        try:
            self._undo()
        finally:
            self._end()

    def _undo(self) -> None:
        try:
            self._con.execute("ROLLBACK")
        except Exception:  # noqa: BLE001 - no transaction left to roll back (SQLite ended it on the error)
            pass

    def _end(self) -> None:
        release, self._release = self._release, None
        if release is not None:
            release()
