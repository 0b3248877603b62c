"""``GET /versions`` (the partition versions, oldest first), ``GET /versions/{a}/diff/{b}`` and
``GET /versions/{v}/ready`` (wait until this process answers from version v: its indexes are built)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from twin.partition.versions import diff_versions, head_version, list_versions
from twin.service._params import VERSION_PATTERN, parse_version
from twin.service._responses import json_response
from twin.service._state import service
from twin.service.deps import Audited

__all__ = ["router"]

router = APIRouter(tags=["versions"])

_Version = Annotated[str, PathParam(max_length=20, pattern=VERSION_PATTERN,
                                     description="version id, 'base' or 'head'")]


@router.get("/versions", summary="Partition versions, oldest first")
def versions_list(request: Request, a: Audited) -> Response:
    """Every version (id, parent, author, reason, time, grid count) and the head."""
    svc = service(request)
    svc.twins.base_twin()  # registers the base version on first use
    vs = list_versions(svc.store)
    a.version = head_version(svc.store)
    a.counts = {"versions": len(vs)}
    return json_response({"head": a.version, "versions": [asdict(v) for v in vs]})


@router.get("/versions/{a_version}/diff/{b_version}", summary="What changed from a to b")
def versions_diff(request: Request, a: Audited, a_version: _Version, b_version: _Version) -> Response:
    """Grids added, removed and changed, cells and residents moved, balance before and after."""
    svc = service(request)
    va, vb = parse_version(a_version, what="a_version"), parse_version(b_version, what="b_version")
    d = diff_versions(svc.store, svc.twins.base_twin(), va, vb, role=a.role, policy=svc.policy)
    a.version = f"{d.a}..{d.b}"
    a.counts = {"grids_changed": len(d.grids_changed), "cells_moved": d.cells_moved}
    return json_response(d.to_dict())


@router.get("/versions/{version}/ready", summary="Whether a version is built here (optionally wait for it)")
async def version_ready(request: Request, a: Audited, version: _Version,
                        wait: Annotated[float, Query(ge=0, le=30, description="seconds to wait for the build")] = 0.0
                        ) -> Response:
    """``ready`` is true once this server process has the version's twin and query indexes built, so that reads of
    ``head`` answer from it (every answer names its version: ``X-Twin-Version``). An edit returns before its
    version is built; wait here (up to ``wait`` seconds) to read your own edit through ``head``."""
    svc = service(request)
    v = parse_version(version)
    vid, ready = await run_in_threadpool(svc.twins.wait_ready, v, wait)
    a.version = vid
    return json_response({"version": vid, "ready": ready, "answering_head_from": svc.twins.newest_built(),
                          "build_seconds": svc.twins.build_seconds.get(vid)})
