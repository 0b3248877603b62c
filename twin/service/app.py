"""The HTTP service: the FastAPI app factory :func:`create_app` (run it with ``twin serve``) and
:func:`app_from_env` (``uvicorn --factory twin.service.app:app_from_env``).

Every endpoint except ``GET /health`` needs an API key (``Authorization: Bearer <key>`` or ``X-API-Key``; keys come
from ``twin users add``) and appends one audit entry (:mod:`twin.service.deps`). What a caller sees follows
:mod:`twin.access.policy` (record scope, suppressed aggregates outside it, editor rights). Geometry in and out is
GeoJSON in WGS84 (EPSG:4326, x = longitude); areas are measured in EPSG:4547 (km²). Every error is an RFC 7807
``application/problem+json`` body (:mod:`twin.service._problems`); bodies over ``max_body_bytes`` get 413.
OpenAPI docs are served at ``/docs`` (schema at ``/openapi.json``).
"""

from __future__ import annotations

import gc
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from twin.access import audit
from twin.access.policy import MAX_PAGE_SIZE, AccessPolicy
from twin.crs import warm_transformers
from twin.model import Twin
from twin.service import (
    areas,
    changes,
    edits,
    events,
    exports,
    grids,
    hierarchy,
    incidents,
    inspections,
    meta,
    overlays,
    services,
    sheets,
    versions,
    workers,
)
from twin.service._audit_trail import AuditTrail
from twin.service._body_limit import MAX_BODY_BYTES, BodyLimit
from twin.service._handlers import install_handlers
from twin.service._problems import document_problems, problem, status_for
from twin.service._requests import FastRoutes
from twin.service._state import ServiceState
from twin.service._threads import start_query_threads
from twin.service._twins import Twins
from twin.service.edits import EditRequest
from twin.store.sql import open_store

# problem, status_for, EditRequest and the two limits are re-exported: they were importable from here before.
__all__ = ["create_app", "app_from_env", "EditRequest", "problem", "status_for", "MAX_BODY_BYTES", "MAX_PAGE_SIZE"]

_ROUTERS = (meta, hierarchy, grids, areas, versions, edits, overlays, exports, incidents, inspections, workers, events)
_DESCRIPTION = ("One map for Chancheng District: hierarchy, grid dossiers, area summaries, records, partition "
                "versions and edits, scoped by area and by right (分权分域) and audited.")


def create_app(twin_root: str | Path | None = None, database_url: str | None = None, *,
               policy: AccessPolicy | None = None, max_body_bytes: int = MAX_BODY_BYTES,
               twin: Twin | None = None, warm: bool = True, freeze_gc: bool = False,
               parts_dir: str | Path | None = None) -> FastAPI:
    """The FastAPI application.

    Parameters
    ----------
    twin_root : twin directory (default :func:`twin.io.default_twin_dir`).
    database_url : shared store URL (``postgresql://…`` or a SQLite path; default ``$TWIN_DATABASE_URL`` or
        ``<twin_root>/state.sqlite``).
    policy : what callers get outside their scope (default: suppressed aggregates, k = 5).
    max_body_bytes : larger request bodies get 413.
    twin : an already loaded twin to serve (tests); else it is loaded at startup.
    warm : build the query indexes at startup so the first requests are fast.
    freeze_gc : after warming, move every live object into the garbage collector's permanent generation
        (:func:`gc.freeze`): the loaded twin's ≈ 300,000 objects are then never traversed again, where a full
        collection otherwise stalls a request for ≈ 140 ms every few thousand requests. For a server process
        (``twin serve``), not for a process that makes many apps (their cyclic garbage would never be collected).
    parts_dir : the directory of the host's version builder process (:mod:`twin.service.build_process`, started by
        ``twin serve``): version builds use its parts instead of making them in this process.
    """
    store = open_store(database_url, twin_root=twin_root if twin is None else twin.root)
    twins = Twins(Path(twin_root) if twin_root is not None else None, store, twin,
                  parts_dir=Path(parts_dir) if parts_dir is not None else None)
    svc = ServiceState(store, policy or AccessPolicy(), twins)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if warm:
            await anyio.to_thread.run_sync(twins.warm)
            await anyio.to_thread.run_sync(start_query_threads)
            warm_transformers()  # this (the event loop's) thread answers small lassos inline: ≈ 70 ms once, here
        if freeze_gc:
            gc.collect()
            gc.freeze()
        yield
        await anyio.to_thread.run_sync(twins.close)
        await anyio.to_thread.run_sync(audit.close_writers, store.url)  # entries still queued are written first
        store.close()

    app = FastAPI(title="Chancheng Twin service", version="1", lifespan=lifespan, description=_DESCRIPTION)
    app.state.svc = svc
    install_handlers(app)
    app.add_middleware(FastRoutes, routes=areas.FAST_ROUTES)  # innermost: lean hot paths, FastAPI for the rest
    app.add_middleware(BodyLimit, limit=int(max_body_bytes))
    app.add_middleware(AuditTrail)  # outermost: audits every keyed request, 413s included, before it is answered
    for module in _ROUTERS:
        app.include_router(module.router)
    app.include_router(services.router)
    app.include_router(sheets.router)
    app.include_router(changes.router)
    app.openapi = partial(_openapi, app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI schema with the problem+json error responses (:func:`._problems.document_problems`)."""
    if app.openapi_schema is None:
        app.openapi_schema = document_problems(get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes))
    return app.openapi_schema


def app_from_env() -> FastAPI:
    """App factory for ``uvicorn --factory`` / several workers: twin from ``$TWIN_HOME``, store from
    ``$TWIN_DATABASE_URL``, policy from ``$TWIN_OUTSIDE_POLICY`` (aggregate|deny) and ``$TWIN_K``, the version
    builder's directory from ``$TWIN_PARTS_DIR`` (if set)."""
    policy = AccessPolicy(outside=os.environ.get("TWIN_OUTSIDE_POLICY", "aggregate"),  # type: ignore[arg-type]
                          k=int(os.environ.get("TWIN_K", "5")))
    return create_app(None, None, policy=policy, freeze_gc=True, parts_dir=os.environ.get("TWIN_PARTS_DIR") or None)
