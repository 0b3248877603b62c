"""``GET /grids/{code}`` (a grid's dossier, scoped) and ``GET /grids/{code}/records`` (its records, paged)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import Response

from twin.access.policy import MAX_PAGE_SIZE, record_scope, scoped_dossier
from twin.errors import PermissionDenied
from twin.query.dossier import grid_dossier
from twin.service._params import VersionQ
from twin.service._records import RECORD_KINDS, grid_record_ids, record_rows
from twin.service._responses import json_response
from twin.service._state import service
from twin.service.deps import Audited

__all__ = ["router"]

router = APIRouter()

GridCode = Annotated[str, PathParam(max_length=20)]


@router.get("/grids/{grid_code}", tags=["grids"], summary="A grid's dossier (scoped)")
def dossier(request: Request, a: Audited, grid_code: GridCode, version: VersionQ = None) -> Response:
    """Codes, names, area, counts, workers and outline; outside the caller's scope: suppressed counts, no names."""
    svc = service(request)
    t, vid = svc.twins.at(version)
    a.version = vid
    d = scoped_dossier(grid_dossier(t, grid_code), a.role, t, svc.policy)
    a.counts = {"residents": d["counts"]["residents"] or 0, "workers": len(d["workers"] or [])}
    return json_response({**d, "version": vid})


@router.get("/grids/{grid_code}/records", tags=["records"], summary="Records of one grid in your scope (paged)")
def grid_records(request: Request, a: Audited, grid_code: GridCode,
                 kind: Annotated[str, Query(pattern=RECORD_KINDS)] = "persons",
                 page: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
                 page_size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 100,
                 version: VersionQ = None) -> Response:
    """One 0-based page of the grid's record rows; only grids inside the caller's record scope."""
    svc = service(request)
    t, vid = svc.twins.at(version)
    a.version = vid
    t.grid(grid_code)  # 404 for unknown codes
    if not a.role.can_see_records:
        raise PermissionDenied(f"role {a.role.name!r} may not see individual records.")
    if grid_code not in record_scope(a.role, t):
        raise PermissionDenied(f"grid {grid_code} is outside the scope of {a.role.user!r} "
                               f"({a.role.scope_level} {', '.join(a.role.scope_codes)}); records are "
                               "returned only inside your scope.")
    ids = grid_record_ids(t, grid_code, kind)
    chunk = ids[page * page_size:(page + 1) * page_size]
    a.counts = {"records": len(chunk)}
    return json_response({"kind": kind, "grid_code": grid_code, "version": vid, "page": page, "page_size": page_size,
                          "total": len(ids), "pages": (len(ids) + page_size - 1) // page_size,
                          "records": record_rows(t, kind, chunk)})
