"""Shared fixtures: the small twin (built in seconds, for unit tests), the default twin (built once if missing), and
the test lanes: every test that needs the full default twin is marked ``slow`` here, so ``pytest -m "not slow and
not browser"`` (``make test-fast``) runs in well under a minute."""

from __future__ import annotations

import inspect
import itertools
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import settings

import twin
from twin.access.audit import use_audit_dir
from twin.io import default_twin_dir
from twin.store.pg import LocalCluster, postgis_available, postgres_bindir
from twin.store.sql import Store
from twin.synth.build import build_twin
from twin.testing import small_twin as build_small_twin

# Property tests are deterministic: the same examples on every run and machine (no example database), so a CI run
# never fails at random; a test that wants more variety raises max_examples, not randomness.
settings.register_profile("twin", derandomize=True, database=None, print_blob=False)
settings.load_profile("twin")

# What makes a test slow: the default-twin fixture, loading the default twin (`twin.load()` with no path) in the test
# or in a fixture it uses, or living in a module that runs the Streamlit app script (the app loads the default twin).
_SLOW_FIXTURES = {"default_twin"}
_LOADS_DEFAULT_TWIN = re.compile(r"\bload\(\s*\)")
_RUNS_THE_APP = re.compile(r"streamlit_app\.py")
_TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def default_twin() -> twin.Twin:
    """The default twin (seed 20231), built into data/generated/default if it is not there yet. Marks tests slow."""
    root = default_twin_dir()
    if not (root / "manifest.json").exists():
        build_twin(root, progress=False)
    return twin.load(root)


@pytest.fixture(scope="session")
def small_twin(tmp_path_factory: pytest.TempPathFactory) -> twin.Twin:
    """A tiny complete twin (4 communities of 祖庙街道, 4,000 residents, 10 grids) built by the real pipeline in a
    few seconds (:func:`twin.testing.small_twin`). Read-only: build your own with ``twin.testing.small_twin(tmp)``
    to change it."""
    return build_small_twin(tmp_path_factory.mktemp("small_twin"))


@pytest.fixture(scope="session")
def cat() -> pd.DataFrame:
    """The shipped incident catalogue (grid item types with levels and time limits)."""
    from twin.incidents.catalogue import load_catalogue

    return load_catalogue()


def _source(obj: object) -> str:
    """Source of a test, fixture or module defined under tests/ ("" for anything else)."""
    try:
        path = inspect.getsourcefile(obj)  # type: ignore[arg-type]
        if path is None or _TESTS not in Path(path).resolve().parents:
            return ""
        return inspect.getsource(obj)  # type: ignore[arg-type]
    except (OSError, TypeError):
        return ""


def _needs_default_twin(item: pytest.Item, module_source: dict[str, str]) -> bool:
    if set(getattr(item, "fixturenames", ())) & _SLOW_FIXTURES:
        return True
    module = getattr(item, "module", None)
    if module is not None:
        text = module_source.setdefault(module.__name__, _source(module))
        if _RUNS_THE_APP.search(text):
            return True
    funcs: list[Callable[..., object]] = []
    if getattr(item, "function", None) is not None:
        funcs.append(item.function)  # type: ignore[attr-defined]
    info = getattr(item, "_fixtureinfo", None)
    for defs in info.name2fixturedefs.values() if info is not None else ():
        funcs += [d.func for d in defs]
    return any(_LOADS_DEFAULT_TWIN.search(_source(f)) for f in funcs)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark ``slow`` every test that uses the default twin (directly, through a fixture, or through the app)."""
    module_source: dict[str, str] = {}
    for item in items:
        if item.get_closest_marker("slow") is None and _needs_default_twin(item, module_source):
            item.add_marker(pytest.mark.slow)


# --- stores on both backends ----------------------------------------------------------------------------------------

_db_ids = itertools.count()


@pytest.fixture(scope="session")
def pg_cluster():
    """One throwaway loopback PostgreSQL cluster for the whole session, with a ``template_twin`` database that has
    PostGIS; skipped (reason printed) only when the server or PostGIS is not installed (``make test`` installs both)."""
    bindir = postgres_bindir()
    reason = None
    if bindir is None:
        reason = "PostgreSQL binaries not found under /usr/lib/postgresql/*/bin (make test installs them as root)"
    elif not postgis_available(int(bindir.parts[-2])):
        reason = (f"PostGIS is not installed for PostgreSQL {bindir.parts[-2]} "
                  f"(postgresql-{bindir.parts[-2]}-postgis-3; make test installs it as root)")
    if reason:
        print(f"SKIP PostgreSQL backend: {reason}")
        pytest.skip(reason)
    with LocalCluster(database="template_twin") as pg:
        yield pg


def new_store(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Store:
    """A fresh store: SQLite in ``tmp_path`` or a PostgreSQL database cloned from the PostGIS template; its audit key
    and checkpoints go to ``tmp_path / "audit"`` (also those a checkpoint timer writes late)."""
    if kind == "sqlite":
        s = Store(tmp_path / "state.sqlite")
    else:
        import psycopg  # the [postgres] extra

        pg = request.getfixturevalue("pg_cluster")
        name = f"t{next(_db_ids)}"
        with psycopg.connect(pg.url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as con:
            con.execute(f'CREATE DATABASE "{name}" TEMPLATE template_twin')
        s = Store(pg.url.rsplit("/", 1)[0] + "/" + name)
    use_audit_dir(s, tmp_path / "audit")
    return s


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path):
    """The same test on SQLite and on PostgreSQL + PostGIS."""
    s = new_store(request.param, tmp_path, request)
    yield s
    s.close()


@pytest.fixture()
def pg_store(request: pytest.FixtureRequest, tmp_path: Path):
    """A PostgreSQL + PostGIS store (for what exists only there)."""
    s = new_store("postgresql", tmp_path, request)
    yield s
    s.close()


@pytest.fixture()
def hold_write_lock() -> Callable[[str, str], AbstractContextManager[threading.Event]]:
    """``with hold_write_lock(url, sql) as release:`` — another thread holds the SQLite write lock of ``url`` (inside
    a transaction that ran ``sql``) until ``release`` is set or the block ends."""

    @contextmanager
    def holding(url: str, sql: str) -> Iterator[threading.Event]:
        held, release = threading.Event(), threading.Event()

        def hold() -> None:
            with Store(url).transaction() as tx:
                tx.execute(sql)
                held.set()
                release.wait(30)

        th = threading.Thread(target=hold)
        th.start()
        assert held.wait(10)
        try:
            yield release
        finally:
            release.set()
            th.join(30)

    return holding
