"""Fixtures for the access tests: a store on SQLite or on a throwaway local PostgreSQL + PostGIS cluster, with its
audit key and checkpoints in a directory of the test's own.

The PostgreSQL cluster is started once per session (like tests/store/test_store_backends.py) and every test gets a
database cloned from a template with the ``postgis`` extension; the PostgreSQL half is skipped, with the reason
printed, only when the server binaries or PostGIS are not installed.
"""

from __future__ import annotations

import itertools

import pytest

from twin.access.audit import use_audit_dir
from twin.store.pg import LocalCluster, postgis_available, postgres_bindir
from twin.store.sql import Store

_ids = itertools.count()


@pytest.fixture(scope="session")
def access_pg_cluster():
    """A loopback PostgreSQL cluster with a ``template_twin`` database that has PostGIS."""
    bindir = postgres_bindir()
    reason = None
    if bindir is None:
        reason = "PostgreSQL binaries not found under /usr/lib/postgresql/*/bin (make test installs them as root)"
    elif not postgis_available(int(bindir.parts[-2])):
        reason = f"PostGIS is not installed for PostgreSQL {bindir.parts[-2]} (postgresql-{bindir.parts[-2]}-postgis-3)"
    if reason:
        print(f"SKIP PostgreSQL backend: {reason}")
        pytest.skip(reason)
    with LocalCluster(database="template_twin") as pg:
        yield pg


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request, tmp_path):
    """A fresh store on each backend; audit key and checkpoints in ``tmp_path / "audit"``."""
    if request.param == "sqlite":
        s = Store(tmp_path / "state.sqlite")
    else:
        import psycopg

        pg = request.getfixturevalue("access_pg_cluster")
        name = f"a{next(_ids)}"
        with psycopg.connect(pg.url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as con:
            con.execute(f'CREATE DATABASE "{name}" TEMPLATE template_twin')
        s = Store(pg.url.rsplit("/", 1)[0] + "/" + name)
    use_audit_dir(s, tmp_path / "audit")
    yield s
    s.close()
