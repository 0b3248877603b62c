"""Opening a SQLite store while another process creates it: WAL mode is set once the other's write ends (SQLite
answers that pragma "database is locked" at once, without waiting, while a new database has a write under way);
a lock held past the busy timeout still fails, with SQLite's own message."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from twin.store import sql
from twin.store.sql import Store


def _hold_write_on_new_file(path, seconds):
    """A plain connection holding a write transaction on a new, empty database for ``seconds``."""
    con = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    con.execute("BEGIN IMMEDIATE")
    done = threading.Timer(seconds, lambda: (con.execute("COMMIT"), con.close()))
    done.start()
    return done


def test_a_store_opened_while_a_new_database_is_being_written_waits_for_the_write(tmp_path):
    path = tmp_path / "state.sqlite"
    held = _hold_write_on_new_file(path, 0.3)
    t0 = time.monotonic()
    con = Store(path).connection
    waited = time.monotonic() - t0
    held.join()
    assert waited >= 0.25  # it waited for the other write instead of failing at once
    assert con.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_a_lock_held_past_the_busy_timeout_still_fails(tmp_path, monkeypatch):
    monkeypatch.setattr(sql, "_BUSY_TIMEOUT_S", 0.3)
    path = tmp_path / "state.sqlite"
    held = _hold_write_on_new_file(path, 3.0)
    t0 = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        _ = Store(path).connection
    assert time.monotonic() - t0 < 2.0
    held.join()
