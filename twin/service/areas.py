"""``POST /area/summary`` and ``POST /area/records``: what is inside a drawn area (GeoJSON, WGS84; km² in
EPSG:4547), scoped by the caller's area and rights."""

from __future__ import annotations

from typing import Annotated, cast

import numpy as np
import pandas as pd
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from twin.access.policy import MAX_PAGE_SIZE, scoped_summary, split_by_scope
from twin.access.roles import DISTRICT
from twin.errors import PermissionDenied
from twin.model import Twin
from twin.query.areas import ParsedArea, parse_area
from twin.query.records import RecordKind, records_in_area
from twin.query.summary import summarize_parsed
from twin.service._params import VersionQ
from twin.service._records import RECORD_KINDS, record_rows
from twin.service._responses import json_response
from twin.service._state import ServiceState, service
from twin.service.deps import AreaBody, Audit, Audited

__all__ = ["router"]

router = APIRouter()

_AUDITED_COUNTS = ("buildings", "residents", "businesses")


def _area_at(svc: ServiceState, a: Audit, area: dict[str, object], version: str | None
             ) -> tuple[Twin, int, ParsedArea]:
    """The twin at ``version`` and the parsed area, both noted on the audit record ``a``."""
    t, vid = svc.twins.at(version)
    a.version = vid
    parsed = parse_area(area, district=t.district)
    a.area, a.area_km2 = parsed.geometry, parsed.area_km2
    return t, vid, parsed


@router.post("/area/summary", tags=["area"], summary="What is inside a drawn area (scoped, suppressed outside)")
def area_summary(request: Request, a: Audited, area: AreaBody, version: VersionQ = None,
                 include_cells: bool = False) -> Response:
    """Counts inside the area, split into the caller's scope and the (suppressed) rest."""
    svc = service(request)
    t, vid, parsed = _area_at(svc, a, area, version)
    raw = summarize_parsed(t, parsed, role=DISTRICT, by="grid")
    out = scoped_summary(t, raw, a.role, svc.policy, include_cells=include_cells)
    out.update(area_km2=parsed.area_km2, clipped=parsed.clipped, warnings=list(parsed.warnings), version=vid)
    a.counts = {k: int(v) for k, v in out["totals"].items() if k in _AUDITED_COUNTS and v is not None}
    return json_response(out)


@router.post("/area/records", tags=["records"], summary="Ids and rows of records inside an area, in your scope")
def area_records(request: Request, a: Audited, area: AreaBody,
                 kind: Annotated[str, Query(pattern=RECORD_KINDS)] = "persons",
                 page: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
                 page_size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 100,
                 version: VersionQ = None) -> Response:
    """One 0-based page of the record rows inside the area, only from grids in the caller's record scope."""
    svc = service(request)
    t, vid, parsed = _area_at(svc, a, area, version)
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
