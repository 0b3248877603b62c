"""``POST /area/summary`` and ``POST /area/records``: what is inside a drawn area (GeoJSON, WGS84; km² in
EPSG:4547), scoped by the caller's area and rights.

Work per request is bounded by :func:`twin.query.areas.parse_area`'s limits (vertices, parts, crossings to repair;
a request over them gets a 422 problem at once). The bodies are parsed by orjson (:mod:`._requests`). A summary
is one stage (version, parsing, query, scoping: ≈ 0.5 ms for a 1 km² lasso); records run as two stages in
long-lived query threads (:mod:`._threads`).

``POST /area/summary`` has a lean path (:func:`fast_summary`, run by :class:`._requests.FastRoutes`): no FastAPI
dependency solving; the key check the audit middleware made; a small body (≤ ``INLINE_BODY_BYTES``) read at the
head version is answered inline on the event loop (less work than a thread hop), a larger one or an explicit
version in a query thread. Anything unusual (query parameters it does not know, a non-object body, any error)
goes to the FastAPI route, which answers as documented. Before each stage the handler checks whether the client is still there: a
client that has gone gets nothing computed for it (499, audited). A stage already running is not interrupted (GEOS
and numpy calls cannot be cancelled from Python); the limits keep each stage to about a second.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from functools import partial
from typing import Annotated, Any, TypeVar, cast
from urllib.parse import parse_qsl

import numpy as np
import pandas as pd
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from twin.access.policy import MAX_PAGE_SIZE, scoped_summary, split_by_scope
from twin.access.roles import DISTRICT
from twin.encoding import dumps, loads_request
from twin.errors import PermissionDenied
from twin.model import Twin
from twin.query.areas import AreaLike, ParsedArea, parse_area, polygon_from_json
from twin.query.records import RecordKind, records_in_area
from twin.query.summary import summarize_parsed
from twin.service._params import VersionQ
from twin.service._records import RECORD_KINDS, record_rows
from twin.service._requests import FastHandler, JSONRoute
from twin.service._responses import json_response
from twin.service._state import ServiceState, service
from twin.service._threads import run_query
from twin.service.deps import SLOT, AreaBody, Audit, Audited, AuditSlot

__all__ = ["FAST_ROUTES", "fast_summary", "router", "INLINE_BODY_BYTES"]

router = APIRouter(route_class=JSONRoute)

_AUDITED_COUNTS = ("buildings", "residents", "businesses")
CLIENT_GONE = 499  # nginx's "client closed request"
T = TypeVar("T")


async def _stage(request: Request, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a query thread (:mod:`._threads`), unless the client has disconnected (then 499 and nothing is started)."""
    if await request.is_disconnected():
        raise HTTPException(CLIENT_GONE, "the client closed the request before the work started.")
    return await run_query(fn, *args)


def _area_at(svc: ServiceState, a: Audit, area: AreaLike, version: str | None
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
    return await _stage(request, _summary_response, service(request), a, area, version, include_cells)


def _summary_response(svc: ServiceState, a: Audit, area: AreaLike, version: str | None,
                      include_cells: bool) -> Response:
    return json_response(_summary(svc, a, area, version, include_cells))


def _summary(svc: ServiceState, a: Audit, area: AreaLike, version: str | None,
             include_cells: bool) -> dict[str, Any]:
    t, vid, parsed = _area_at(svc, a, area, version)
    raw = summarize_parsed(t, parsed, role=DISTRICT, by="grid")
    out = scoped_summary(t, raw, a.role, svc.policy, include_cells=include_cells)
    out.update(area_km2=parsed.area_km2, clipped=parsed.clipped, warnings=list(parsed.warnings), version=vid)
    a.counts = {k: int(v) for k, v in out["totals"].items() if k in _AUDITED_COUNTS and v is not None}
    return out


#: bodies up to this size (≈ 600 vertices) are summarised inline on the event loop (≈ 0.5 ms for 60 vertices)
INLINE_BODY_BYTES = 16_384
_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"0", "false", "f", "no", "n", "off"})


def _fast_params(query: bytes) -> tuple[str | None, bool] | None:
    """``version`` and ``include_cells`` of a plain query string; ``None`` for anything else (unknown or repeated
    parameters, odd values: the FastAPI route validates those)."""
    if not query:
        return None, False
    try:
        pairs = parse_qsl(query.decode("ascii"), keep_blank_values=True, strict_parsing=True)
    except (UnicodeDecodeError, ValueError):
        return None
    got = dict(pairs)
    if len(got) != len(pairs) or not set(got) <= {"version", "include_cells"}:
        return None
    version = got.get("version")
    if version is not None and not (version in ("head", "base") or (version.isascii() and version.isdigit())):
        return None
    cells = got.get("include_cells", "false").lower()
    if cells not in _TRUE and cells not in _FALSE:
        return None
    return version, cells in _TRUE


async def fast_summary(scope: MutableMapping[str, Any], body: bytes) -> bytes | None:
    """``POST /area/summary`` without FastAPI (see the module docstring): the JSON answer, or ``None`` when the
    FastAPI route must answer. Same work, scope and audit record as :func:`area_summary`."""
    slot: AuditSlot | None = scope.get(SLOT)
    svc: ServiceState | None = getattr(getattr(scope.get("app"), "state", None), "svc", None)
    params = _fast_params(scope.get("query_string", b""))
    if slot is None or slot.role is None or svc is None or params is None:
        return None
    area: object = polygon_from_json(body)  # a plain lasso, decoded straight into coordinates (msgspec)
    if area is None:
        area = loads_request(body)
        if not isinstance(area, dict):
            return None
    version, include_cells = params
    a = Audit(slot.role, "/area/summary", "POST")
    twins = svc.twins
    work = partial(_summary, svc, a, area, version, include_cells)
    if (len(body) <= INLINE_BODY_BYTES and version in (None, "head") and twins.loaded
            and (twins.warmed or twins.built)):
        out = work()  # never waits for a build: head answers from the newest built version
    else:
        out = await run_query(work)
    slot.ctx = a
    return dumps(out)


FAST_ROUTES: dict[tuple[str, str], FastHandler] = {("POST", "/area/summary"): fast_summary}


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
