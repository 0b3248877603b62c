"""``GET /workers`` (grid workers' live status, position and open cases; scoped) and
``POST /workers/{id}/status`` (on/offline and position, WGS84 degrees; compare-and-set)."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import Response
from pydantic import BaseModel, Field
from shapely.geometry import Point

from twin.access.policy import record_scope, worker_summary
from twin.errors import NotFoundError, ValidationError
from twin.incidents.store import board_for
from twin.service._incident_scope import need_actor, scope_text, when
from twin.service._params import MAX_VERSION
from twin.service._responses import json_response
from twin.service._state import service
from twin.service.deps import Audited

__all__ = ["router", "WorkerStatusRequest"]

router = APIRouter(tags=["workers"])


class WorkerStatusRequest(BaseModel):
    """A grid worker's live status and (optionally) last known position, WGS84 degrees."""

    status: Literal["online", "offline"]
    lng: float | None = None
    lat: float | None = None
    expected_version: int | None = Field(None, ge=0, le=MAX_VERSION, description="worker status version you read (stale → 409)")
    at: str | None = Field(None, max_length=40)


@router.get("/workers", summary="Grid workers' live status, position and open cases (scoped)")
def workers_list(request: Request, a: Audited,
                 grid_code: Annotated[str | None, Query(max_length=20, pattern="^[0-9]+$")] = None,
                 status: Annotated[str | None, Query(pattern="^(online|offline)$")] = None) -> Response:
    """Rows (names, positions) only for workers of grids in your record scope; everyone gets the counts by
    status (analysts only those): exact in your record scope; outside it in whole towns, each suppressed below
    k or rounded to a multiple of k, and suppressed for one outside grid (:func:`twin.access.policy.worker_summary`)."""
    svc = service(request)
    t, vid = svc.twins.at(None)
    a.version = vid
    istore = svc.incidents().istore
    board = board_for(istore, t)
    live = istore.worker_status().set_index("worker_id")
    if grid_code is not None:
        board = board[board["grid_code"] == grid_code]
    if status is not None:
        board = board[board["status"] == status]
    summary = worker_summary(board, a.role, t, svc.policy, grid_code=grid_code)
    mine = board[board["grid_code"].isin(record_scope(a.role, t)).to_numpy()] if a.role.can_see_records else board.iloc[:0]
    rows = []
    for r in mine.to_dict("records"):
        wid = str(r["worker_id"])
        seen = wid in live.index
        rows.append({"worker_id": wid, "name": str(r["name"]), "grid_code": str(r["grid_code"]),
                     "status": str(r["status"]), "lng": float(r["lng"]), "lat": float(r["lat"]),
                     "open_cases": int(r["open_cases"]),
                     "status_version": int(live.loc[wid, "version"]) if seen else 0,
                     "updated_at": str(live.loc[wid, "updated_at"]) if seen else None})
    a.counts = {"workers": len(rows)}
    return json_response({"summary": summary, "scope": scope_text(a.role), "workers": rows})


@router.post("/workers/{worker_id}/status", summary="Set a worker's on/offline status and position")
def workers_set_status(request: Request, a: Audited, worker_id: Annotated[str, PathParam(max_length=40)],
                       req: WorkerStatusRequest) -> Response:
    """Workers of grids in your scope only (404 otherwise); ``expected_version`` makes it a compare-and-set."""
    svc = service(request)
    t, vid = svc.twins.at(None)
    a.version = vid
    need_actor(a.role, "change worker status")
    istore = svc.incidents().istore
    w = t.workers[t.workers["worker_id"].astype(str) == worker_id]
    if w.empty or (a.role.scope_level != "district" and str(w["grid_code"].iloc[0]) not in record_scope(a.role, t)):
        raise NotFoundError(f"no worker {worker_id!r} in your scope ({scope_text(a.role)}).")
    if (req.lng is None) != (req.lat is None):
        raise ValidationError("give both 'lng' and 'lat' (WGS84 degrees) or neither.")
    if req.lng is not None and req.lat is not None:
        if not (math.isfinite(req.lng) and math.isfinite(req.lat) and -180 <= req.lng <= 180
                and -90 <= req.lat <= 90):
            raise ValidationError(f"position ({req.lng}, {req.lat}) is not WGS84 longitude/latitude in degrees.")
        a.area, a.area_km2 = Point(req.lng, req.lat), 0.0
    grid = str(w["grid_code"].iloc[0])
    units = t.grids.loc[t.grids["grid_code"].astype(str) == grid, ["community_code", "town_code"]].astype(str)
    ver = istore.set_worker_status(worker_id, status=req.status, now=when(req.at, "at"), lng=req.lng,
                                   lat=req.lat, expected_version=req.expected_version, grid_code=grid,
                                   **(units.iloc[0].to_dict() if len(units) else {}))  # scope of its feed event
    a.counts = {"workers": 1}
    a.detail = f"worker {worker_id} {req.status}"
    return json_response({"worker_id": worker_id, "status": req.status, "status_version": ver,
                          "lng": req.lng, "lat": req.lat})
