"""HTTP endpoints of the incident closed loop: the queue, reports, one incident, actions, statistics, catalogue.

Scope (分权分域) follows :mod:`._incident_scope`: an incident outside the caller's scope is answered exactly like an
unknown id (404). Analysts read aggregates: lists and statistics without personal fields; they may not report or
act (403). Points are WGS84 (EPSG:4326) longitude/latitude in degrees; times ISO-8601, naive = CST (UTC+08:00).
Actions take an optional ``expected_version``: a stale one — or a concurrent writer winning the compare-and-set —
gives 409. An action the state does not allow gives 409 with ``state`` and ``allowed_actions`` in the problem body.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import pandas as pd
import shapely
from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from shapely.geometry import Point, shape

from twin.access.policy import MAX_PAGE_SIZE, record_scope
from twin.encoding import loads
from twin.errors import ConflictError, InvalidTransition, NotFoundError, PermissionDenied, ValidationError
from twin.incidents.dispatch import dispatch, escalate, locate, reassign
from twin.incidents.lifecycle import STATES, Incident, Transition, allowed_actions, transition
from twin.incidents.queries import ListFilter, list_page, stats_rows
from twin.incidents.stats import STAT_COLUMNS, incident_stats, period_bounds
from twin.incidents.store import board_for, report_incident
from twin.model import Twin
from twin.service._incident_json import PERSONAL_FIELDS, incident_dict, iso, stored_rows
from twin.service._incident_scope import (
    LEVEL_COL,
    get_scoped,
    need_actor,
    now,
    scope_text,
    scoped_frame,
    when,
)
from twin.service._params import MAX_VERSION, client_time
from twin.service._problems import problem
from twin.service._responses import json_response
from twin.service._state import IncidentTables, ServiceState, service
from twin.service._threads import run_query
from twin.service.deps import Audit, Audited, write_audit

__all__ = ["router", "ReportRequest", "ActionRequest", "PERSONAL_FIELDS"]

router = APIRouter(tags=["incidents"])

Code = Annotated[str | None, Query(max_length=20, pattern="^[0-9]+$")]
IncidentId = Annotated[int, PathParam(ge=1, le=2**62)]
_CHANNELS = ["grid_worker", "hotline_12345", "online", "camera_sensor"]
_COUNT_COLUMNS = ("n", "closed", "followed_up", "overdue_open")


class ReportRequest(BaseModel):
    """A front-line report. Give the point as GeoJSON (``point``) or as ``lng``/``lat`` (WGS84 degrees)."""

    category: str = Field(min_length=1, max_length=60, description="item type code (GET /incident-categories)")
    point: dict[str, Any] | None = Field(None, description='GeoJSON Point {"type": "Point", "coordinates": '
                                                           '[lng, lat]} (or a Feature with one)')
    lng: float | None = Field(None, description="WGS84 longitude (degrees), when no point is given")
    lat: float | None = Field(None, description="WGS84 latitude (degrees), when no point is given")
    channel: Literal["grid_worker", "hotline_12345", "online", "camera_sensor"] = "grid_worker"
    severity: int = Field(1, ge=1, le=4, description="1 trivial, 2 small, 3 big, 4 hard")
    description: str = Field("", max_length=4000)
    reporter: str = Field("", max_length=200)
    attachments: list[dict[str, Any]] = Field(default_factory=list, max_length=20,
                                              description="metadata only, each with a 'name'")
    answered_at_once: bool = False
    reported_at: str | None = Field(None, max_length=40, description="ISO time (default: now, CST)")
    dispatch: bool = Field(True, description="dispatch at once (automatic level and worker)")


def point_of(req: ReportRequest) -> tuple[float, float]:
    """The report's (lng, lat) in WGS84 degrees, from ``point`` (parsed with :func:`shapely.geometry.shape`) or
    ``lng``/``lat``; :class:`ValidationError` unless exactly one form gives a finite point."""
    if req.point is None:
        if req.lng is None or req.lat is None:
            raise ValidationError("a report needs a location: 'point' (GeoJSON) or both 'lng' and 'lat' (WGS84).")
        x, y = req.lng, req.lat
    else:
        g: Any = req.point.get("geometry") if req.point.get("type") == "Feature" else req.point
        kind = g.get("type") if isinstance(g, dict) else None
        if kind != "Point":
            raise ValidationError(f"point must be a GeoJSON Point (or a Feature with one), got type {kind!r}.")
        if req.lng is not None or req.lat is not None:
            raise ValidationError("give the location either as 'point' or as 'lng'/'lat', not both.")
        try:
            p = shape(g)
        except (TypeError, ValueError, OverflowError, AttributeError, shapely.errors.ShapelyError) as e:
            raise ValidationError(f"GeoJSON Point coordinates must be [lng, lat], got {g.get('coordinates')!r}.") from e
        if not isinstance(p, Point) or p.is_empty:
            raise ValidationError(f"GeoJSON Point coordinates must be [lng, lat], got {g.get('coordinates')!r}.")
        x, y = p.x, p.y
    if not (math.isfinite(x) and math.isfinite(y)):
        raise ValidationError(f"coordinates ({x!r}, {y!r}) are not finite numbers.")
    return x, y


class ActionRequest(BaseModel):
    """One step of the closed loop on a stored incident."""

    action: Literal["dispatch", "accept", "start", "resolve", "follow_up", "reopen", "reassign", "escalate"]
    reason: str = Field("", max_length=1000, description="needed by reopen, reassign, escalate")
    satisfaction: int | None = Field(None, description="follow_up: 1–5")
    worker_id: str | None = Field(None, max_length=40, description="reassign: the new worker")
    allow_offline: bool = Field(False, description="reassign: allow an offline worker")
    level: Literal["grid", "community", "town", "district"] | None = Field(
        None, description="dispatch: force the level; escalate: the target level (default: one up)")
    expected_version: int | None = Field(None, ge=1, le=MAX_VERSION, description="the version you acted on (stale → 409)")
    at: str | None = Field(None, max_length=40, description="ISO time of the action (default: now, CST)")


ACTION_NAMES = ("dispatch", "accept", "start", "resolve", "follow_up", "reopen", "reassign", "escalate")


# --- the queue and statistics --------------------------------------------------------------------------------

@router.get("/incidents/stats",
            summary="Counts, closure, on-time and immediate-answer rates, handling time, satisfaction (scoped)")
async def incidents_stats(request: Request, a: Audited,
                          by: Annotated[str, Query(pattern="^(grid|community|town|district)$")] = "district",
                          period: Annotated[str | None, Query(max_length=4, pattern="^[A-Za-z]{1,3}$",
                                                              description="pandas alias: M, W, D, Q, Y")] = None,
                          since: Annotated[str | None, Query(max_length=40)] = None,
                          until: Annotated[str | None, Query(max_length=40)] = None,
                          now: Annotated[str | None, Query(max_length=40, description="time for overdue_open")] = None
                          ) -> Response:
    """Statistics (:func:`twin.incidents.stats.incident_stats`) over the incidents inside the caller's scope,
    reported in ``[since, until)``. Aggregates only: analysts get them too."""
    return await run_query(_stats_response, service(request), a, by, period, since, until, now)


def _stats_response(svc: ServiceState, a: Audit, by: str, period: str | None, since: str | None,
                    until: str | None, now: str | None) -> Response:
    """The statistics answer, computed and encoded in a query thread (:mod:`._threads`)."""
    t, vid = svc.twins.at(None)
    a.version = vid
    per = period.upper() if period else None
    t_now = None if now is None else client_time(now, what="now")
    lo = None if since is None else client_time(since, what="since")
    hi = None if until is None else client_time(until, what="until")
    fast = stats_rows(svc.incidents().istore, t, a.role, by=by, period=per, since=lo, until=hi, now=t_now)
    if fast is not None:  # maintained aggregates + indexed medians (twin.incidents.queries)
        rows, n = fast
    else:  # other period aliases (D, W, …): the frame path
        df = scoped_frame(svc.incidents().istore, a.role, t, since=lo, until=hi)
        rows, n = _stat_rows(incident_stats(df, by=by, period=per, now=t_now)), len(df)
    a.counts = {"incidents": n, "rows": len(rows)}
    a.detail = f"by={by} period={period}"
    return json_response({"by": by, "period": period, "since": since, "until": until, "scope": scope_text(a.role),
                          "columns": list(STAT_COLUMNS) + (["overdue_open"] if now is not None else []),
                          "rows": rows})


def _stat_rows(stats: pd.DataFrame) -> list[dict[str, Any]]:
    """One row per unit (and period): ``unit``/``period`` as text, counts as ints, missing rates ``None``."""
    names = list(stats.index.names)
    rows = []
    for key, r in zip(stats.index, stats.to_dict("records"), strict=True):
        key = key if isinstance(key, tuple) else (key,)
        row: dict[str, Any] = {("period" if name == "period" else "unit"): str(k)
                               for name, k in zip(names, key, strict=True)}
        for c, v in r.items():
            row[c] = None if pd.isna(v) else int(v) if c in _COUNT_COLUMNS else v
        rows.append(row)
    return rows


@router.get("/incidents", summary="The incident queue in your scope (filtered, paged)")
async def incidents_list(request: Request, a: Audited,
                         state: Annotated[list[str] | None, Query(max_length=10)] = None,
                         category: Annotated[list[str] | None, Query(max_length=50)] = None,
                         grid_code: Code = None, community_code: Code = None, town_code: Code = None,
                         overdue: bool | None = None,
                         period: Annotated[str | None, Query(
                             max_length=30, description="reported in: 2026-11, 2026, 2026-11-03")] = None,
                         page: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
                         page_size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 100,
                         after: Annotated[str | None, Query(
                             max_length=80, description="cursor: 'next' of the previous page")] = None,
                         format: Annotated[str, Query(pattern="^(json|geojson)$")] = "json") -> Response:
    """Newest report first. ``overdue`` is evaluated now (open past the deadline, or resolved after it).
    Analysts get the rows without personal fields. ``next`` is a cursor: pass it as ``after`` for the next page
    (constant cost however deep; ``page`` still works)."""
    f = ListFilter(states=state, categories=category, grid_code=grid_code, community_code=community_code,
                   town_code=town_code, overdue=overdue)
    return await run_query(_list_response, service(request), a, f, period, page, page_size, after, format)


def _list_response(svc: ServiceState, a: Audit, f: ListFilter, period: str | None, page: int, page_size: int,
                   after: str | None, format: str) -> Response:
    """One page of the queue, read and encoded in a query thread (:mod:`._threads`)."""
    t, vid = svc.twins.at(None)
    a.version = vid
    tables = svc.incidents()
    _check_filters(tables, f.states, f.categories)
    since, until = period_bounds(period)
    now_ = now()
    f = dataclasses.replace(f, since=since, until=until)
    found, late, total, nxt = list_page(tables.istore, t, a.role, f, now=now_, page=page, page_size=page_size,
                                        after=after)
    rows = stored_rows(found, a.role, late)
    a.counts = {"incidents": len(rows), "total": total}
    if format == "geojson":
        feats = [{"type": "Feature", "id": r["id"], "geometry": Point(r["lng"], r["lat"]), "properties": r}
                 for r in rows]
        return json_response({"type": "FeatureCollection", "features": feats, "total": total, "page": page,
                              "page_size": page_size, "next": nxt})
    return json_response({"total": total, "page": page, "page_size": page_size,
                          "pages": (total + page_size - 1) // page_size, "now": now_.isoformat(),
                          "scope": scope_text(a.role), "next": nxt, "incidents": rows})


def _check_filters(tables: IncidentTables, states: Sequence[str] | None, categories: Sequence[str] | None) -> None:
    for s in states or ():
        if s not in STATES:
            raise ValidationError(f"unknown state {s!r}; use one of {list(STATES)}.")
    if not categories:
        return
    known = set(tables.catalogue["code"].astype(str))
    for c in categories:
        if c not in known:
            raise ValidationError(f"unknown category {c!r}; GET /incident-categories lists them.")


# --- one incident --------------------------------------------------------------------------------------------

@router.post("/incidents", status_code=201, responses={200: {"description": "linked to the open incident it repeats"}},
             summary="Report an incident (located and dispatched in the current partition; near-duplicates linked)")
def incidents_report(request: Request, a: Audited, req: ReportRequest) -> Response:
    """201 with the new incident, or 200 with ``linked: true`` and the open incident this report repeats
    (same category, ≤ 100 m, ≤ 24 h, and inside the caller's scope: an incident of another unit is never
    linked or revealed — the report becomes a new case). The point must lie in a grid of the caller's scope."""
    svc = service(request)
    t, vid = svc.twins.at(None)
    a.version = vid
    need_actor(a.role, "report incidents")
    tables = svc.incidents()
    lng, lat = point_of(req)
    a.area, a.area_km2 = Point(lng, lat), 0.0
    loc = locate(t, lng, lat)
    col = LEVEL_COL.get(a.role.scope_level)
    if col is not None and getattr(loc, col) not in a.role.scope_codes:
        raise PermissionDenied(f"point ({lng}, {lat}) is in grid {loc.grid_code} (community {loc.community_code}, "
                               f"town {loc.town_code}), outside your scope ({scope_text(a.role)}); report it "
                               "through the 12345 hotline or the unit that owns it.")
    reported_at = when(req.reported_at, "reported_at")
    inc, linked = report_incident(
        tables.istore, t, tables.catalogue, actor=a.role.user, auto_dispatch=req.dispatch, now=reported_at,
        category=req.category, lng=lng, lat=lat, reported_at=reported_at, channel=req.channel,
        severity=req.severity, reporter=req.reporter, description=req.description,
        attachments=req.attachments, answered_at_once=req.answered_at_once, role=a.role)
    a.counts = {"incidents": 1, "linked": int(linked)}
    a.detail = f"{'linked to' if linked else 'new'} incident {inc.id} ({req.category})"
    body: dict[str, Any] = {"linked": linked, "incident_id": inc.id,
                            "incident": incident_dict(inc, a.role, now())}  # linked only within your scope
    return json_response(body, status=200 if linked else 201)


@router.get("/incidents/{incident_id}", summary="One incident with its transition history")
def incidents_get(request: Request, a: Audited, incident_id: IncidentId) -> Response:
    """404 for unknown ids and for incidents outside your scope. Analysts get no personal fields and no
    actors/reasons in the history."""
    svc = service(request)
    t, vid = svc.twins.at(None)
    a.version = vid
    istore = svc.incidents().istore
    inc = get_scoped(istore, a.role, t, incident_id)
    history = []
    for r in istore.transitions(incident_id).to_dict("records"):
        h = {"action": r["action"], "from_state": r["from_state"], "to_state": r["to_state"], "at": iso(r["at"])}
        if a.role.can_see_records:
            h.update(actor=r["actor"], reason=r["reason"], detail=loads(r["detail"] or "{}"))
        history.append(h)
    out = incident_dict(inc, a.role, now())
    out["history"] = history
    if a.role.can_see_records:
        links = istore.links(incident_id)
        out["linked"] = [{"reported_at": str(r["reported_at"]), "channel": r["channel"], "reporter": r["reporter"],
                          "description": r["description"], "lng": float(r["lng"]), "lat": float(r["lat"])}
                         for r in links.to_dict("records")]
    a.counts = {"incidents": 1, "transitions": len(history)}
    a.detail = f"incident {incident_id}"
    return json_response(out)


@router.post("/incidents/{incident_id}/actions",
             summary="dispatch / accept / resolve / follow_up / reopen / reassign / escalate")
def incidents_act(request: Request, a: Audited, incident_id: IncidentId, req: ActionRequest) -> Response:
    """Apply one action (compare-and-set on the incident's version). Invalid for the current state → 409 with
    ``state`` and ``allowed_actions``; stale ``expected_version`` or a concurrent change → 409."""
    svc = service(request)
    t, vid = svc.twins.at(None)
    a.version = vid
    need_actor(a.role, "act on incidents")
    tables = svc.incidents()
    inc = get_scoped(tables.istore, a.role, t, incident_id)
    a.detail = f"incident {incident_id} {req.action}"
    if req.expected_version is not None and req.expected_version != inc.version:
        raise ConflictError(f"incident {incident_id} is at version {inc.version} (state {inc.state!r}); you had "
                            f"version {req.expected_version}. Reload it and try {req.action!r} again.")
    try:
        new, rec = _step(tables, t, a, inc, req)
    except InvalidTransition as e:
        return _rejected(svc, a, 409, "InvalidTransition", str(e), request.url.path, incident_id=inc.id,
                         state=inc.state, action=req.action, allowed_actions=allowed_actions(inc.state),
                         version=inc.version)
    saved = tables.istore.save(new, rec)
    a.counts = {"incidents": 1}
    a.detail = f"incident {incident_id} {req.action}: {inc.state} → {saved.state}"
    return json_response(incident_dict(saved, a.role, now()))


def _step(tables: IncidentTables, t: Twin, a: Audit, inc: Incident, req: ActionRequest
          ) -> tuple[Incident, Transition]:
    """The incident after ``req.action`` and its transition record (not saved yet)."""
    act = "start" if req.action == "accept" else req.action
    at = when(req.at, "at")
    user, cat = a.role.user, tables.catalogue
    if act == "dispatch":
        return dispatch(t, inc, board=board_for(tables.istore, t), catalogue=cat, actor=user, now=at, level=req.level)
    if act == "reassign":
        if not req.worker_id:
            raise ValidationError("reassign needs 'worker_id' (GET /workers lists them).")
        board = board_for(tables.istore, t)
        w = board[board["worker_id"] == req.worker_id]
        if w.empty or (a.role.scope_level != "district"
                       and str(w["grid_code"].iloc[0]) not in record_scope(a.role, t)):
            raise NotFoundError(f"no worker {req.worker_id!r} in your scope ({scope_text(a.role)}).")
        return reassign(inc, req.worker_id, board=board, actor=user, now=at, reason=req.reason, catalogue=cat,
                        allow_offline=req.allow_offline)
    if act == "escalate":
        return escalate(inc, actor=user, now=at, reason=req.reason, to_level=req.level, catalogue=cat)
    if req.level is not None:
        raise ValidationError(f"'level' applies to dispatch and escalate, not {req.action!r}.")
    return transition(inc, act, actor=user, now=at, reason=req.reason, satisfaction=req.satisfaction, catalogue=cat)


def _rejected(svc: ServiceState, a: Audit, status: int, title: str, detail: str, path: str,
              **extra: Any) -> JSONResponse:
    """A problem response with extra members, audited like a raised error."""
    outcome = {403: "denied", 404: "not_found", 409: "conflict"}.get(status, "rejected")
    write_audit(svc, a, outcome, status, detail)
    return problem(status, title, detail, path, **extra)


# --- catalogue -----------------------------------------------------------------------------------------------

@router.get("/incident-categories", summary="The item-type catalogue (入格事项)")
def incident_categories(request: Request, a: Audited) -> Response:
    """Item types with their level and time limit; the levels, channels, actions and states of the loop."""
    rows = service(request).incidents().catalogue.to_dict("records")
    a.counts = {"categories": len(rows)}
    return json_response({"categories": rows, "levels": ["grid", "community", "town", "district"],
                          "channels": _CHANNELS, "actions": list(ACTION_NAMES), "states": list(STATES)})
