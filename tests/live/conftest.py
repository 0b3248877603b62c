"""Fixtures for the live twin: a LiveTwin over the (read-only) small twin with a fresh store per test."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from twin.access.audit import use_audit_dir
from twin.live.state import LiveTwin
from twin.model import Twin
from twin.store.sql import Store

D = dt.date(2026, 12, 1)
KW = {"effective_date": D, "author": "李敏", "reason": "test"}


def sqlite_store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "state.sqlite")
    use_audit_dir(s, tmp_path / "audit")
    return s


@pytest.fixture()
def live(small_twin: Twin, tmp_path: Path) -> LiveTwin:
    lt = LiveTwin(small_twin, sqlite_store(tmp_path))
    yield lt
    lt.store.close()
