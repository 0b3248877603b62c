"""A server process freezes the loaded twin out of the garbage collector's full collections (``freeze_gc``); an app
made for a test or a notebook does not."""

from __future__ import annotations

import gc
import warnings

from twin.service.app import create_app

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


def test_a_server_app_freezes_the_warmed_twin_and_a_plain_app_does_not(small_twin, tmp_path):
    gc.unfreeze()
    try:
        with TestClient(create_app(twin=small_twin, database_url=str(tmp_path / "a.sqlite"))) as c:
            assert c.get("/health").status_code == 200
            assert gc.get_freeze_count() == 0
        with TestClient(create_app(twin=small_twin, database_url=str(tmp_path / "b.sqlite"), freeze_gc=True)) as c:
            assert c.get("/health").status_code == 200
            # the twin's frames and the app are in the permanent generation: a full collection skips them
            assert gc.get_freeze_count() > 10_000
            assert not any(o is small_twin.cache for o in gc.get_objects(generation=2))
    finally:
        gc.unfreeze()
