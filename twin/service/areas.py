"""``POST /area/summary`` and ``POST /area/records``: what is inside a drawn area (GeoJSON, WGS84; km² in
EPSG:4547), scoped by the caller's area and rights.

Work per request is bounded by :func:`twin.query.areas.parse_area`'s limits (vertices, parts, crossings to repair;
a request over them gets a 422 problem at once). The bodies are parsed by orjson (:mod:`._requests`). A summary
runs as one stage (version, parsing, query, scoping: ≈ 1 ms for a 1 km² lasso) in a long-lived query thread
(:mod:`._threads`); records run as two. Before each stage the handler checks whether the client is still there: a
client that has gone gets nothing computed for it (499, audited). A stage already running is not interrupted (GEOS
and numpy calls cannot be cancelled from Python); the limits keep each stage to about a second.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar, cast

import numpy as np
import pandas as pd
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from twin.access.policy import MAX_PAGE_SIZE, scoped_summary, split_by_scope
from twin.access.roles import DISTRICT
from twin.errors import PermissionDenied
from twin.model import Twin
from twin.query.areas import ParsedArea, parse_area
from twin.query.records import RecordKind, records_in_area
from twin.query.summary import summarize_parsed
from twin.service._params import VersionQ
from twin.service._records import RECORD_KINDS, record_rows
from twin.service._requests import JSONRoute
from twin.service._responses import json_response
from twin.service._state import ServiceState, service
from twin.service._threads import run_query
from twin.service.deps import AreaBody, Audit, Audited

__all__ = ["router"]

router = APIRouter(route_class=JSONRoute)

_AUDITED_COUNTS = ("buildings", "residents", "businesses")
CLIENT_GONE = 499  # nginx's "client closed request"
T = TypeVar("T")


async def _stage(request: Request, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a query thread (:mod:`._threads`), unless the client has disconnected (then 499 and nothing is started)."""
    if await request.is_disconnected():
        raise HTTPException(CLIENT_GONE, "the client closed the request before the work started.")
    return await run_query(fn, *args)


def _area_at(svc: ServiceState, a: Audit, area: dict[str, object], version: str | None
             ) -> tuple[Twin, int, ParsedArea]:
    """The twin at ``version`` and the parsed area, both noted on the audit record ``a``."""
    t, vid = svc.twins.at(version)
    a.version = vid
    parsed = parse_area(area, district=t.district)
    a.area, a.area_km2 = parsed.geometry, parsed.area_km2
    return t, vid, parsed


@router.post("/area/summary", tags=["area"], summary="What is inside a drawn area (scoped, suppressed outside)")
async def area_summary(request: Request, a: Audited, area: AreaBody, version: VersionQ = None,
                       include_cells: bool = False) -> Response:
    """Counts inside the area, split into the caller's scope and the (suppressed) rest; ``warnings`` says when the
    area was repaired or clipped, or looks GCJ-02 (Amap/Tencent) rather than WGS84."""
    return await _stage(request, _summary, service(request), a, area, version, include_cells)


def _summary(svc: ServiceState, a: Audit, area: dict[str, object], version: str | None,
             include_cells: bool) -> Response:
    t, vid, parsed = _area_at(svc, a, area, version)
    raw = summarize_parsed(t, parsed, role=DISTRICT, by="grid")
    out = scoped_summary(t, raw, a.role, svc.policy, include_cells=include_cells)
    out.update(area_km2=parsed.area_km2, clipped=parsed.clipped, warnings=list(parsed.warnings), version=vid)
    a.counts = {k: int(v) for k, v in out["totals"].items() if k in _AUDITED_COUNTS and v is not None}
    return json_response(out)


@router.post("/area/records", tags=["records"], summary="Ids and rows of records inside an area, in your scope")
async def area_records(request: Request, a: Audited, area: AreaBody,
                       kind: Annotated[str, Query(pattern=RECORD_KINDS)] = "persons",
                       page: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
                       page_size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 100,
                       version: VersionQ = None) -> Response:
    """One 0-based page of the record rows inside the area, only from grids in the caller's record scope."""
    svc = service(request)
    t, vid, parsed = await _stage(request, _area_at, svc, a, area, version)
    return await _stage(request, _records, svc, a, t, vid, parsed, kind, page, page_size)


def _records(svc: ServiceState, a: Audit, t: Twin, vid: int, parsed: ParsedArea, kind: str, page: int,
             page_size: int) -> Response:
    if not a.role.can_see_records:
        raise PermissionDenied(f"role {a.role.name!r} may not see individual records; use /area/summary.")
    if svc.policy.outside == "deny" and a.role.scope_level != "district":
        touched = summarize_parsed(t, parsed, role=DISTRICT, by="grid").by_grid
        codes = touched["grid_code"].astype(str) if len(touched) else pd.Series([], dtype=str)
        split_by_scope(pd.DataFrame(index=codes.to_numpy()), a.role, t, svc.policy, what="the area")
    pg = records_in_area(t, parsed.geometry, cast(RecordKind, kind), role=a.role, page=page, page_size=page_size)
    a.counts = {"records": len(pg.ids)}
    return json_response({"kind": kind, "version": vid, "page": pg.page, "page_size": pg.page_size,
                          "total": pg.total, "pages": pg.pages,
                          "scope": {"level": a.role.scope_level, "codes": a.role.scope_codes},
                          "records": record_rows(t, kind, np.asarray(pg.ids, dtype=np.int64))})
