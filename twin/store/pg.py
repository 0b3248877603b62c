"""PostgreSQL + PostGIS helpers for the server deployment of the shared store (:mod:`twin.store.sql`).

The store itself speaks PostgreSQL through psycopg 3 when given a ``postgresql://`` URL. This module adds:

* :func:`has_postgis` / :func:`ensure_postgis`: is the ``postgis`` extension there (create it if we may)?
  Modules that keep geometries (audit area footprints) add ``geometry(…, 4326)`` columns with GiST indexes
  only when it is.
* :class:`LocalCluster`: a throwaway PostgreSQL cluster on 127.0.0.1 (``initdb`` + ``pg_ctl`` from
  ``/usr/lib/postgresql/*/bin``) for tests, benchmarks and trying the server backend on one machine. As root it
  runs the server as the ``postgres`` OS user (PostgreSQL refuses to run as root). Trust authentication, loopback
  only, ``fsync=off``: never use it for real data.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from twin.errors import TwinError, ValidationError
from twin.store.sql import Store

__all__ = ["schema_lock_statement", "has_postgis", "ensure_postgis", "postgres_bindir", "postgis_available",
           "LocalCluster"]

_POSTGIS: dict[str, bool] = {}


def schema_lock_statement(store: Store) -> tuple[str, ...]:
    """A statement to run first in a schema transaction so that concurrent processes creating the same tables
    on PostgreSQL wait for each other (a transaction-scoped advisory lock); nothing on SQLite, whose
    ``BEGIN IMMEDIATE`` already serialises writers."""
    return ("SELECT pg_advisory_xact_lock(7007001)",) if store.dialect == "postgresql" else ()


def has_postgis(store: Store) -> bool:
    """True when ``store`` is PostgreSQL with the ``postgis`` extension installed in its database (cached)."""
    if store.dialect != "postgresql":
        return False
    if store.url not in _POSTGIS:
        rows = store.query("SELECT 1 FROM pg_extension WHERE extname = 'postgis'")
        _POSTGIS[store.url] = bool(rows)
    return _POSTGIS[store.url]


def ensure_postgis(store: Store) -> None:
    """``CREATE EXTENSION IF NOT EXISTS postgis`` (needs a superuser or a database owner on PG ≥ 13 with a
    trusted extension); raises :class:`ValidationError` naming the fix if it cannot."""
    if store.dialect != "postgresql":
        raise ValidationError(f"PostGIS needs a postgresql:// store, got {store.url!r}.")
    try:
        store.connection.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    except Exception as e:  # psycopg errors: missing package, no privilege
        raise ValidationError(
            f"cannot create the postgis extension in {store.url!r}: {e}. Install the Debian package "
            "`postgresql-<major>-postgis-3` (`make test` does) and run `CREATE EXTENSION postgis` as a superuser.") from e
    _POSTGIS.pop(store.url, None)


def postgres_bindir() -> Path | None:
    """The server to start: ``/usr/lib/postgresql/<major>/bin`` with ``initdb`` and ``pg_ctl``, preferring the
    newest major that has the PostGIS extension installed, else the newest (None if there is no server).

    ``scripts/system-deps.sh`` (run by ``make test``) installs ``postgresql-<major>-postgis-3`` for the same major.
    """
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    servers = [Path(p).parent for p in found if (Path(p).parent / "pg_ctl").exists()]
    with_postgis = [d for d in servers if postgis_available(int(d.parts[-2]))]
    pick = with_postgis or servers
    return pick[-1] if pick else None


def postgis_available(major: int) -> bool:
    """True when the PostGIS extension files for PostgreSQL ``major`` are installed (Debian layout)."""
    return Path(f"/usr/share/postgresql/{major}/extension/postgis.control").exists()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalCluster:
    """A throwaway PostgreSQL cluster on loopback; use as a context manager.

    >>> with LocalCluster() as pg:                       # doctest: +SKIP
    ...     store = Store(pg.url)                         # postgresql://postgres@127.0.0.1:<port>/twin
    """

    def __init__(self, *, database: str = "twin", postgis: bool = True) -> None:
        bindir = postgres_bindir()
        if bindir is None:
            raise TwinError("PostgreSQL binaries not found under /usr/lib/postgresql/*/bin; "
                            "install the Debian package `postgresql` (`make test` runs scripts/system-deps.sh).")
        self.bindir = bindir
        self.database = database
        self.postgis = postgis
        self.port = 0
        self.dir: Path | None = None
        self._as_postgres = os.geteuid() == 0

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    def _run(self, *args: str | Path) -> None:
        cmd = [str(a) for a in args]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if res.returncode != 0:
            raise TwinError(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.strip() or res.stdout.strip()}")

    def start(self) -> LocalCluster:
        self.dir = Path(tempfile.mkdtemp(prefix="twin-pg-"))
        if self._as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")
        data = self.dir / "data"
        self._run(self.bindir / "initdb", "-D", data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8")
        for _ in range(5):
            self.port = _free_port()
            try:
                self._run(self.bindir / "pg_ctl", "-D", data, "-l", self.dir / "server.log", "-w", "-t", "60",
                          "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                                "-c full_page_writes=off -c max_connections=200", "start")
                break
            except TwinError:
                if "could not bind" not in self.log_tail():
                    raise
        else:
            raise TwinError(f"could not start PostgreSQL on a free port: {self.log_tail()}")
        import psycopg

        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True) as con:
            con.execute(f'CREATE DATABASE "{self.database}"')
        if self.postgis:
            with psycopg.connect(self.url, autocommit=True) as con:
                con.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        return self

    def log_tail(self, n: int = 20) -> str:
        log = self.dir / "server.log" if self.dir else None
        if log is None or not log.exists():
            return ""
        return "\n".join(log.read_text(errors="replace").splitlines()[-n:])

    def stop(self) -> None:
        if self.dir is None:
            return
        data = self.dir / "data"
        if (data / "postmaster.pid").exists():
            try:
                self._run(self.bindir / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")
            except TwinError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
