"""A warmed service process pays its one-off costs at start-up, not on its first requests: every query thread is
started, the version builder is running (its transformers made), and the head's partition is loaded, labelled and known valid before the first edit."""

from __future__ import annotations

import gc
import warnings
from pathlib import Path

import pytest

import twin
from twin.access import audit
from twin.partition import versions
from twin.partition.model import known_valid
from twin.service import _threads
from twin.service._twins import Twins
from twin.service._versioned import warm_edits
from twin.store.sql import Store


def test_every_query_thread_is_started(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_threads, "_pool", None)
    monkeypatch.setenv("TWIN_QUERY_THREADS", "3")
    try:
        assert _threads.start_query_threads() == 3
        pool = _threads.query_pool()
        assert all(t.is_alive() for t in pool._threads)
        assert len({t.name for t in pool._threads}) == 3
    finally:
        _threads.query_pool().shutdown(wait=True)


def test_first_edit_starts_from_a_checked_head(small_twin: twin.Twin, tmp_path: Path) -> None:
    st = Store(tmp_path / "state.sqlite")
    versions.ensure_base(st, small_twin)
    head = versions.resolve_version(st, "head")
    assert not known_valid(versions.load_partition(st, small_twin, head))  # the base was never checked
    warm_edits(st, small_twin, head)
    p = versions.load_partition(st, small_twin, head)  # the same loaded object, now known valid
    assert known_valid(p)
    assert p.labels()[0].shape == p.grid_code.shape


def test_the_builder_thread_starts_warm_and_ends_with_its_twins(small_twin: twin.Twin, tmp_path: Path) -> None:
    twins = Twins(None, Store(tmp_path / "state.sqlite"), small_twin, live_poll_s=0.05)
    twins.warm()
    builder = twins._builder
    assert builder is not None and builder.is_alive()  # started at warm-up, before any edit asks for a build
    del twins
    gc.collect()
    builder.join(timeout=10)
    assert not builder.is_alive()  # it held the twins only weakly


def test_the_event_loop_thread_has_its_transformers_before_the_first_request(small_twin: twin.Twin,
                                                                               tmp_path: Path) -> None:
    """Small lassos are answered inline on the event loop (:func:`twin.service.areas.fast_summary`); a thread's
    first transform makes its PROJ context (≈ 70 ms), which start-up pays, not a worker's first lasso."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # starlette warns that its TestClient will move to httpx2
        from fastapi.testclient import TestClient

    from twin import crs
    from twin.service.app import create_app

    def loop_thread_pairs() -> set[tuple[str, str]]:
        return set(getattr(crs._local, "transformers", {}))

    app = create_app(twin=small_twin, database_url=str(tmp_path / "state.sqlite"))
    with TestClient(app) as c:  # start-up (lifespan) has run on the client's event loop thread; no request yet
        assert c.portal is not None
        assert (crs.STORAGE_CRS, crs.METRIC_CRS) in c.portal.call(loop_thread_pairs)


def test_close_stops_both_background_threads(small_twin: twin.Twin, tmp_path: Path) -> None:
    """The service's shutdown (its lifespan) closes its twins: the builder and live-view threads end, while the
    twins are still referenced (the app holds them), and are not started again; and its audit writer, once the
    entries queued are written."""
    from twin.service.app import create_app

    app = create_app(twin=small_twin, database_url=str(tmp_path / "state.sqlite"), warm=True)
    twins = app.state.svc.twins
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # starlette warns that its TestClient will move to httpx2
        from fastapi.testclient import TestClient

        with TestClient(app) as c:
            assert c.get("/health").status_code == 200
            builder, deriver = twins._builder, twins._deriver
            assert builder is not None and builder.is_alive() and deriver is not None and deriver.is_alive()
            store = app.state.svc.store
            queued = audit.submit(store, user="a", role="district", endpoint="/x")
            writer = audit.writer_for(store, "audit", audit._make_writer)
    assert twins.closed and not builder.is_alive() and not deriver.is_alive()
    assert queued.done() and writer.closed and not writer._thread.is_alive()  # the audit writer: drained, ended
    twins.base_twin()
    assert twins._deriver is deriver and not deriver.is_alive()
