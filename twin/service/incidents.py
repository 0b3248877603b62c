"""HTTP endpoints of the incident closed loop, grid workers and inspection plans (an ``APIRouter``).

:func:`twin.service.app.create_app` includes :data:`router`; every endpoint uses the service's key check and audit
dependency (``twin.service.app.Audited``), so each call appends one audit entry (who, endpoint, counts, outcome), and
errors are RFC 7807 ``application/problem+json`` bodies.

Scope (分权分域): an incident belongs to the grid, community and town it was dispatched to (the codes stored on
the case at dispatch time, i.e. the partition then in force; an undispatched case is located in the current
partition). A grid worker sees and acts on the incidents of their grids, a community/town user on those of their
units, the district on all. An incident outside the caller's scope is answered exactly like an unknown id
(404, "no incident N in your scope") — its existence and contents are not revealed. Analysts read aggregates:
they may list incidents and statistics but every personal field (reporter, description, attachments, linked
reports' reporters, actors and reasons of the history) is removed, and they may not report or act.

Points are WGS84 (EPSG:4326) longitude/latitude in degrees; times are ISO-8601, naive = CST (UTC+08:00).
Actions take an optional ``expected_version`` (the ``version`` the caller was looking at): a stale one — or a
concurrent writer winning the compare-and-set — gives 409. An action the state does not allow gives 409 with
``state`` and ``allowed_actions`` in the problem body; a missing reason/satisfaction gives 422.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import math
import threading
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
import shapely
from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from twin.access.policy import record_scope
from twin.access.roles import Role
from twin.errors import InvalidTransition, NotFoundError, PermissionDenied, ValidationError
from twin.incidents.lifecycle import CST, STATES, Incident, allowed_actions, as_time, overdue_mask
from twin.model import Twin
from twin.service.app import Audited, _Audit, _json, _Service, _svc, _write, problem

__all__ = ["router", "ReportRequest", "ActionRequest", "WorkerStatusRequest", "PERSONAL_FIELDS"]

router = APIRouter()

#: Fields about people (the reporter and what they said); never shown to analysts.
PERSONAL_FIELDS = ("reporter", "description", "attachments")
_FUTURE_SLACK = dt.timedelta(minutes=5)
_INIT = threading.Lock()
_CODE = Annotated[str | None, Query(max_length=20, pattern="^[0-9]+$")]
_ACTION_NAMES = ("dispatch", "accept", "start", "resolve", "follow_up", "reopen", "reassign", "escalate")


# --- request bodies ------------------------------------------------------------------------------------------

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


class ActionRequest(BaseModel):
    """One step of the closed loop on a stored incident."""

    action: Literal["dispatch", "accept", "start", "resolve", "follow_up", "reopen", "reassign", "escalate"]
    reason: str = Field("", max_length=1000, description="needed by reopen, reassign, escalate")
    satisfaction: int | None = Field(None, description="follow_up: 1–5")
    worker_id: str | None = Field(None, max_length=40, description="reassign: the new worker")
    allow_offline: bool = Field(False, description="reassign: allow an offline worker")
    level: Literal["grid", "community", "town", "district"] | None = Field(
        None, description="dispatch: force the level; escalate: the target level (default: one up)")
    expected_version: int | None = Field(None, ge=1, description="the version you acted on (stale → 409)")
    at: str | None = Field(None, max_length=40, description="ISO time of the action (default: now, CST)")


class WorkerStatusRequest(BaseModel):
    """A grid worker's live status and (optionally) last known position, WGS84 degrees."""

    status: Literal["online", "offline"]
    lng: float | None = None
    lat: float | None = None
    expected_version: int | None = Field(None, ge=0, description="worker status version you read (stale → 409)")
    at: str | None = Field(None, max_length=40)


# --- shared state: incident tables + catalogue (one per app) -------------------------------------------------

@dataclasses.dataclass
class _State:
    istore: Any
    catalogue: pd.DataFrame


def _state(request: Request) -> _State:
    st = getattr(request.app.state, "incidents", None)
    if st is None:
        with _INIT:
            st = getattr(request.app.state, "incidents", None)
            if st is None:
                from twin.incidents.catalogue import load_catalogue
                from twin.incidents.store import IncidentStore

                st = _State(IncidentStore(_svc(request).store), load_catalogue())
                request.app.state.incidents = st
    return st


def _now() -> dt.datetime:
    return dt.datetime.now(CST)


def _when(value: str | None, what: str) -> dt.datetime:
    """Client time (ISO; naive = CST) or now; never more than a few minutes in the future."""
    if value is None or not str(value).strip():
        return _now()
    t = as_time(value, what=what)
    if t > _now() + _FUTURE_SLACK:
        raise ValidationError(f"{what} {value!r} is in the future (server time {_now().isoformat()}).")
    return t


# --- scope ---------------------------------------------------------------------------------------------------

_LEVEL_COL = {"grid": "grid_code", "community": "community_code", "town": "town_code"}


def _unit_codes(t: Twin, inc: Incident) -> dict[str, str]:
    """Grid/community/town of a case: stored at dispatch, else located in the current partition."""
    if inc.grid_code:
        return {"grid_code": inc.grid_code, "community_code": inc.community_code, "town_code": inc.town_code}
    from twin.incidents.dispatch import locate_points

    row = locate_points(t, np.array([inc.lng]), np.array([inc.lat])).iloc[0]
    return {k: str(row[k]) for k in ("grid_code", "community_code", "town_code")}


def _in_scope(role: Role, t: Twin, inc: Incident) -> bool:
    if role.scope_level == "district":
        return True
    return _unit_codes(t, inc)[_LEVEL_COL[role.scope_level]] in role.scope_codes


def _get_scoped(st: _State, role: Role, t: Twin, incident_id: int) -> Incident:
    """The incident, or 404 both for unknown ids and for cases outside the caller's scope (not revealed)."""
    try:
        inc = st.istore.get(incident_id)
    except NotFoundError:
        inc = None
    if inc is None or not _in_scope(role, t, inc):
        raise NotFoundError(f"no incident {incident_id} in your scope ({_scope_text(role)}).")
    return inc


def _scope_text(role: Role) -> str:
    return "district" if role.scope_level == "district" else f"{role.scope_level} {', '.join(role.scope_codes)}"


def _scoped_frame(st: _State, role: Role, t: Twin, **filters: Any) -> pd.DataFrame:
    """Stored incidents inside the caller's scope (SQL pre-filter on the stored grid codes in scope)."""
    grid_codes = filters.pop("grid_codes", None)
    if role.scope_level != "district":
        col = _LEVEL_COL[role.scope_level]
        rows = st.istore.store.query("SELECT DISTINCT grid_code, community_code, town_code FROM incidents")
        known = pd.DataFrame(rows, columns=["grid_code", "community_code", "town_code"]).fillna("")
        mine = set(known.loc[known[col].astype(str).isin(role.scope_codes), "grid_code"].astype(str))
        mine.add("")  # undispatched cases: located below
        grid_codes = mine if grid_codes is None else mine & set(grid_codes) | {""}
    df = st.istore.frame(grid_codes=grid_codes, **filters)
    blank = (df["grid_code"] == "").to_numpy()
    if blank.any():
        from twin.incidents.dispatch import locate_points

        loc = locate_points(t, df["lng"].to_numpy()[blank], df["lat"].to_numpy()[blank])
        for c in ("grid_code", "community_code", "town_code"):
            v = df[c].to_numpy(dtype=object).copy()
            v[blank] = loc[c].to_numpy(dtype=object)
            df[c + "_now"] = v
    else:
        for c in ("grid_code", "community_code", "town_code"):
            df[c + "_now"] = df[c]
    if role.scope_level != "district":
        df = df[df[_LEVEL_COL[role.scope_level] + "_now"].astype(str).isin(role.scope_codes).to_numpy()]
    return df


def _need_actor(role: Role, what: str) -> None:
    if not role.can_see_records:
        raise PermissionDenied(f"role {role.name!r} reads aggregates only and may not {what}.")


# --- serialisation -------------------------------------------------------------------------------------------

def _iso(v: Any) -> str | None:
    if v is None or v is pd.NaT or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, pd.Timestamp | dt.datetime):
        return as_time(v).isoformat()
    return str(v)


def _incident_dict(inc: Incident, role: Role, now: dt.datetime) -> dict[str, Any]:
    d = dataclasses.asdict(inc)
    for k, v in list(d.items()):
        if isinstance(v, dt.datetime):
            d[k] = v.isoformat()
    d["cell"] = format(int(inc.cell), "x") if inc.cell else None
    d["attachments"] = [dict(a) for a in inc.attachments]
    d["overdue"] = inc.overdue(now)
    d["allowed_actions"] = allowed_actions(inc.state)
    if not role.can_see_records:
        for k in PERSONAL_FIELDS:
            d.pop(k, None)
    return d


def _frame_rows(df: pd.DataFrame, role: Role, overdue: np.ndarray) -> list[dict[str, Any]]:
    cols = [c for c in df.columns if not c.endswith("_now")]
    if not role.can_see_records:
        cols = [c for c in cols if c not in PERSONAL_FIELDS]
    out = []
    for r, late in zip(df[cols].to_dict("records"), overdue, strict=True):
        row: dict[str, Any] = {}
        for k, v in r.items():
            if k == "cell":
                row[k] = format(int(v), "x") if v else None
            elif k == "attachments":
                row[k] = json.loads(v or "[]") if isinstance(v, str) else list(v or [])
            elif isinstance(v, pd.Timestamp | dt.datetime) or v is pd.NaT:
                row[k] = _iso(v)
            elif isinstance(v, np.bool_ | bool):
                row[k] = bool(v)
            elif isinstance(v, np.integer):
                row[k] = int(v)
            elif isinstance(v, float | np.floating):
                row[k] = None if math.isnan(v) else float(v)
            elif v is pd.NA:
                row[k] = None
            else:
                row[k] = v
        row["overdue"] = bool(late)
        row["allowed_actions"] = allowed_actions(str(r["state"]))
        out.append(row)
    return out


def _point_of(req: ReportRequest) -> tuple[float, float]:
    if req.point is not None:
        g = req.point
        if g.get("type") == "Feature":
            g = g.get("geometry") or {}
        if g.get("type") != "Point":
            raise ValidationError(f"point must be a GeoJSON Point (or a Feature with one), got type "
                                  f"{g.get('type')!r}.")
        c = g.get("coordinates")
        if not isinstance(c, list | tuple) or len(c) < 2:
            raise ValidationError(f"GeoJSON Point coordinates must be [lng, lat], got {c!r}.")
        lng, lat = c[0], c[1]
        if req.lng is not None or req.lat is not None:
            raise ValidationError("give the location either as 'point' or as 'lng'/'lat', not both.")
    else:
        if req.lng is None or req.lat is None:
            raise ValidationError("a report needs a location: 'point' (GeoJSON) or both 'lng' and 'lat' (WGS84).")
        lng, lat = req.lng, req.lat
    try:
        x, y = float(lng), float(lat)
    except (TypeError, ValueError):
        raise ValidationError(f"coordinates ({lng!r}, {lat!r}) are not numbers.") from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise ValidationError(f"coordinates ({lng!r}, {lat!r}) are not finite numbers.")
    return x, y


def _rejected(svc: _Service, a: _Audit, status: int, title: str, detail: str, path: str,
              **extra: Any) -> JSONResponse:
    """A problem response with extra members, audited like a raised error."""
    outcome = {403: "denied", 404: "not_found", 409: "conflict"}.get(status, "rejected")
    _write(svc, a, outcome, status, detail)
    return problem(status, title, detail, path, **extra)


# --- incidents -----------------------------------------------------------------------------------------------

@router.get("/incidents/stats", tags=["incidents"],
            summary="Counts, closure, on-time and immediate-answer rates, handling time, satisfaction (scoped)")
def incidents_stats(request: Request, a: Audited,
                    by: Annotated[str, Query(pattern="^(grid|community|town|district)$")] = "district",
                    period: Annotated[str | None, Query(max_length=4, pattern="^[A-Za-z]{1,3}$",
                                                        description="pandas alias: M, W, D, Q, Y")] = None,
                    since: Annotated[str | None, Query(max_length=40)] = None,
                    until: Annotated[str | None, Query(max_length=40)] = None,
                    now: Annotated[str | None, Query(max_length=40, description="time for overdue_open")] = None
                    ) -> Response:
    """Statistics (:func:`twin.incidents.stats`) over the incidents inside the caller's scope, reported in
    ``[since, until)``. Aggregates only: analysts get them too."""
    from twin.incidents.stats import STAT_COLUMNS, incident_stats

    svc = _svc(request)
    t, vid = svc.at(None)
    a.version = vid
    st = _state(request)
    df = _scoped_frame(st, a.role, t, since=since, until=until)
    stats = incident_stats(df, by=by, period=period.upper() if period else None,
                           now=None if now is None else as_time(now, what="now"))
    rows = []
    index_names = list(stats.index.names)
    for key, r in zip(stats.index, stats.to_dict("records"), strict=True):
        key = key if isinstance(key, tuple) else (key,)
        row: dict[str, Any] = {}
        for name, k in zip(index_names, key, strict=True):
            row["unit" if name != "period" else "period"] = str(k)
        for c, v in r.items():
            row[c] = None if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)) else (
                int(v) if c in ("n", "closed", "followed_up", "overdue_open") else float(v))
        rows.append(row)
    a.counts = {"incidents": len(df), "rows": len(rows)}
    a.detail = f"by={by} period={period}"
    return _json({"by": by, "period": period, "since": since, "until": until, "scope": _scope_text(a.role),
                  "columns": list(STAT_COLUMNS) + (["overdue_open"] if now is not None else []), "rows": rows})


@router.get("/incidents", tags=["incidents"], summary="The incident queue in your scope (filtered, paged)")
def incidents_list(request: Request, a: Audited,
                   state: Annotated[list[str] | None, Query(max_length=10)] = None,
                   category: Annotated[list[str] | None, Query(max_length=50)] = None,
                   grid_code: _CODE = None, community_code: _CODE = None, town_code: _CODE = None,
                   overdue: bool | None = None,
                   period: Annotated[str | None, Query(max_length=30,
                                                       description="reported in: 2026-11, 2026, 2026-11-03")] = None,
                   page: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
                   page_size: Annotated[int, Query(ge=1, le=1000)] = 100,
                   format: Annotated[str, Query(pattern="^(json|geojson)$")] = "json") -> Response:
    """Newest report first. ``overdue`` is evaluated now (open past the deadline, or resolved after it).
    Analysts get the rows without personal fields."""
    from twin.incidents.stats import period_bounds

    svc = _svc(request)
    t, vid = svc.at(None)
    a.version = vid
    st = _state(request)
    for s in state or ():
        if s not in STATES:
            raise ValidationError(f"unknown state {s!r}; use one of {list(STATES)}.")
    known = set(st.catalogue["code"].astype(str))
    for c in category or ():
        if c not in known:
            raise ValidationError(f"unknown category {c!r}; GET /incident-categories lists them.")
    since, until = period_bounds(period)
    df = _scoped_frame(st, a.role, t, states=state, categories=category, since=since, until=until,
                       grid_codes=None if grid_code is None else [grid_code])
    for col, v in (("grid_code", grid_code), ("community_code", community_code), ("town_code", town_code)):
        if v is not None:
            df = df[(df[col + "_now"].astype(str) == v).to_numpy()]
    now_ = _now()
    late = overdue_mask(df, now_) if len(df) else np.zeros(0, dtype=bool)
    if overdue is not None:
        keep = late if overdue else ~late
        df, late = df[keep], late[keep]
    order: np.ndarray = (np.lexsort((-df["id"].to_numpy(), -df["reported_at"].astype("int64").to_numpy()))
                         if len(df) else np.zeros(0, dtype=np.int64))
    df, late = df.iloc[order], late[order]
    total = len(df)
    chunk = slice(page * page_size, (page + 1) * page_size)
    rows = _frame_rows(df.iloc[chunk], a.role, late[chunk])
    a.counts = {"incidents": len(rows), "total": total}
    if format == "geojson":
        feats = [{"type": "Feature", "id": r["id"], "geometry": {"type": "Point", "coordinates": [r["lng"], r["lat"]]},
                  "properties": r} for r in rows]
        return _json({"type": "FeatureCollection", "features": feats, "total": total, "page": page,
                      "page_size": page_size})
    return _json({"total": total, "page": page, "page_size": page_size, "pages": (total + page_size - 1) // page_size,
                  "now": now_.isoformat(), "scope": _scope_text(a.role), "incidents": rows})


@router.post("/incidents", tags=["incidents"], status_code=201,
             summary="Report an incident (located and dispatched in the current partition; near-duplicates linked)")
def incidents_report(request: Request, a: Audited, req: ReportRequest) -> Response:
    """201 with the new incident, or 200 with ``linked: true`` and the open incident this report repeats
    (same category, ≤ 100 m, ≤ 24 h). The point must lie in a grid of the caller's scope."""
    from twin.incidents.dispatch import locate
    from twin.incidents.store import report_incident

    svc = _svc(request)
    t, vid = svc.at(None)
    a.version = vid
    _need_actor(a.role, "report incidents")
    st = _state(request)
    lng, lat = _point_of(req)
    a.area, a.area_km2 = shapely.Point(lng, lat), 0.0
    loc = locate(t, lng, lat)
    col = _LEVEL_COL.get(a.role.scope_level)
    if col is not None and getattr(loc, col) not in a.role.scope_codes:
        raise PermissionDenied(f"point ({lng}, {lat}) is in grid {loc.grid_code} (community {loc.community_code}, "
                               f"town {loc.town_code}), outside your scope ({_scope_text(a.role)}); report it "
                               "through the 12345 hotline or the unit that owns it.")
    reported_at = _when(req.reported_at, "reported_at")
    inc, linked = report_incident(
        st.istore, t, st.catalogue, actor=a.role.user, auto_dispatch=req.dispatch, now=reported_at,
        category=req.category, lng=lng, lat=lat, reported_at=reported_at, channel=req.channel,
        severity=req.severity, reporter=req.reporter, description=req.description,
        attachments=req.attachments, answered_at_once=req.answered_at_once)
    now_ = _now()
    a.counts = {"incidents": 1, "linked": int(linked)}
    a.detail = f"{'linked to' if linked else 'new'} incident {inc.id} ({req.category})"
    body: dict[str, Any] = {"linked": linked, "incident_id": inc.id}
    if not linked or _in_scope(a.role, t, inc):
        body["incident"] = _incident_dict(inc, a.role, now_)
    return _json(body, status=200 if linked else 201)


@router.get("/incidents/{incident_id}", tags=["incidents"], summary="One incident with its transition history")
def incidents_get(request: Request, a: Audited, incident_id: Annotated[int, PathParam(ge=1, le=2**62)]) -> Response:
    """404 for unknown ids and for incidents outside your scope. Analysts get no personal fields and no
    actors/reasons in the history."""
    svc = _svc(request)
    t, vid = svc.at(None)
    a.version = vid
    st = _state(request)
    inc = _get_scoped(st, a.role, t, incident_id)
    hist = st.istore.transitions(incident_id)
    history = []
    for r in hist.to_dict("records"):
        h = {"action": r["action"], "from_state": r["from_state"], "to_state": r["to_state"], "at": _iso(r["at"])}
        if a.role.can_see_records:
            h.update(actor=r["actor"], reason=r["reason"], detail=json.loads(r["detail"] or "{}"))
        history.append(h)
    out = _incident_dict(inc, a.role, _now())
    out["history"] = history
    if a.role.can_see_records:
        links = st.istore.links(incident_id)
        out["linked"] = [{"reported_at": str(r["reported_at"]), "channel": r["channel"], "reporter": r["reporter"],
                          "description": r["description"], "lng": float(r["lng"]), "lat": float(r["lat"])}
                         for r in links.to_dict("records")]
    a.counts = {"incidents": 1, "transitions": len(history)}
    a.detail = f"incident {incident_id}"
    return _json(out)


@router.post("/incidents/{incident_id}/actions", tags=["incidents"],
             summary="dispatch / accept / resolve / follow_up / reopen / reassign / escalate")
def incidents_act(request: Request, a: Audited, incident_id: Annotated[int, PathParam(ge=1, le=2**62)],
                  req: ActionRequest) -> Response:
    """Apply one action (compare-and-set on the incident's version). Invalid for the current state → 409 with
    ``state`` and ``allowed_actions``; stale ``expected_version`` or a concurrent change → 409."""
    from twin.errors import ConflictError
    from twin.incidents.dispatch import dispatch, escalate, reassign
    from twin.incidents.lifecycle import transition
    from twin.incidents.store import board_for

    svc = _svc(request)
    t, vid = svc.at(None)
    a.version = vid
    _need_actor(a.role, "act on incidents")
    st = _state(request)
    inc = _get_scoped(st, a.role, t, incident_id)
    act = "start" if req.action == "accept" else req.action
    a.detail = f"incident {incident_id} {req.action}"
    if req.expected_version is not None and req.expected_version != inc.version:
        raise ConflictError(f"incident {incident_id} is at version {inc.version} (state {inc.state!r}); you had "
                            f"version {req.expected_version}. Reload it and try {req.action!r} again.")
    now = _when(req.at, "at")
    try:
        if act == "dispatch":
            new, rec = dispatch(t, inc, board=board_for(st.istore, t), catalogue=st.catalogue, actor=a.role.user,
                                now=now, level=req.level)
        elif act == "reassign":
            if not req.worker_id:
                raise ValidationError("reassign needs 'worker_id' (GET /workers lists them).")
            board = board_for(st.istore, t)
            w = board[board["worker_id"] == req.worker_id]
            if w.empty or (a.role.scope_level != "district"
                           and str(w["grid_code"].iloc[0]) not in record_scope(a.role, t)):
                raise NotFoundError(f"no worker {req.worker_id!r} in your scope ({_scope_text(a.role)}).")
            new, rec = reassign(inc, req.worker_id, board=board, actor=a.role.user, now=now, reason=req.reason,
                                catalogue=st.catalogue, allow_offline=req.allow_offline)
        elif act == "escalate":
            new, rec = escalate(inc, actor=a.role.user, now=now, reason=req.reason, to_level=req.level,
                                catalogue=st.catalogue)
        else:
            if req.level is not None:
                raise ValidationError(f"'level' applies to dispatch and escalate, not {req.action!r}.")
            new, rec = transition(inc, act, actor=a.role.user, now=now, reason=req.reason,
                                  satisfaction=req.satisfaction, catalogue=st.catalogue)
    except InvalidTransition as e:
        return _rejected(svc, a, 409, "InvalidTransition", str(e), request.url.path, incident_id=inc.id,
                         state=inc.state, action=req.action, allowed_actions=allowed_actions(inc.state),
                         version=inc.version)
    saved = st.istore.save(new, rec)
    a.counts = {"incidents": 1}
    a.detail = f"incident {incident_id} {req.action}: {inc.state} → {saved.state}"
    return _json(_incident_dict(saved, a.role, _now()))


# --- catalogue -----------------------------------------------------------------------------------------------

@router.get("/incident-categories", tags=["incidents"], summary="The item-type catalogue (入格事项)")
def incident_categories(request: Request, a: Audited) -> Response:
    cat = _state(request).catalogue
    rows = []
    for r in cat.to_dict("records"):
        rows.append({k: (float(v) if isinstance(v, float | np.floating) else str(v)) for k, v in r.items()})
    a.counts = {"categories": len(rows)}
    return _json({"categories": rows, "levels": ["grid", "community", "town", "district"],
                  "channels": ["grid_worker", "hotline_12345", "online", "camera_sensor"],
                  "actions": list(_ACTION_NAMES), "states": list(STATES)})


# --- inspections ---------------------------------------------------------------------------------------------

@router.get("/inspections/plan", tags=["inspections"], summary="The month's credit-based inspection plan (scoped)",
            responses={200: {"content": {"text/csv": {}, "application/json": {}}}})
def inspections_plan(request: Request, a: Audited,
                     month: Annotated[str, Query(pattern=r"^\d{4}-\d{2}$", description="YYYY-MM")],
                     format: Annotated[str, Query(pattern="^(csv|json)$")] = "json",
                     grid_code: _CODE = None,
                     green: Annotated[int, Query(ge=0, le=23)] = 1, yellow: Annotated[int, Query(ge=0, le=23)] = 2,
                     red: Annotated[int, Query(ge=0, le=23)] = 4,
                     holiday: Annotated[list[str] | None, Query(max_length=31)] = None,
                     page: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
                     page_size: Annotated[int, Query(ge=1, le=1000)] = 1000) -> Response:
    """Visits of the businesses in the caller's grids (records: not for analysts). JSON: per-worker summary and
    a page of visits; CSV: every visit (UTF-8 with BOM)."""
    from twin.incidents.inspections import inspection_plan, plan_summary

    svc = _svc(request)
    t, vid = svc.at(None)
    a.version = vid
    if not a.role.can_see_records:
        raise PermissionDenied(f"role {a.role.name!r} may not see inspection plans (they list businesses); "
                               "use the aggregate endpoints.")
    scope = record_scope(a.role, t)
    grids: set[str] | None = None if a.role.scope_level == "district" else set(scope)
    if grid_code is not None:
        if grid_code not in set(t.grids["grid_code"].astype(str)) or (grids is not None and grid_code not in grids):
            raise NotFoundError(f"no grid {grid_code} in your scope ({_scope_text(a.role)}).")
        grids = {grid_code}
    try:
        hol = [dt.date.fromisoformat(h) for h in holiday or ()]
    except ValueError as e:
        raise ValidationError(f"holiday must be ISO dates like 2026-11-11: {e}") from None
    plan = inspection_plan(t, month, frequency={"green": green, "yellow": yellow, "red": red}, holidays=hol,
                           grid_codes=grids)
    a.counts = {"visits": len(plan), "businesses": int(plan["business_id"].nunique()) if len(plan) else 0}
    a.detail = f"month {month}"
    if format == "csv":
        buf = io.StringIO()
        plan.to_csv(buf, index=False)
        return Response(("\ufeff" + buf.getvalue()).encode("utf-8"), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="inspections_{month}.csv"'})
    summ = plan_summary(plan).reset_index() if len(plan) else pd.DataFrame()
    chunk = plan.iloc[page * page_size:(page + 1) * page_size].copy()
    chunk["date"] = chunk["date"].astype(str)
    return _json({"month": month, "visits": len(plan), "page": page, "page_size": page_size,
                  "pages": (len(plan) + page_size - 1) // page_size,
                  "summary": summ.to_dict("records"), "rows": chunk.to_dict("records")})


# --- workers -------------------------------------------------------------------------------------------------

@router.get("/workers", tags=["workers"], summary="Grid workers' live status, position and open cases (scoped)")
def workers_list(request: Request, a: Audited, grid_code: _CODE = None,
                 status: Annotated[str | None, Query(pattern="^(online|offline)$")] = None) -> Response:
    """Rows (names, positions) only for workers of grids in your record scope; everyone gets the counts by
    status (analysts only those)."""
    from twin.incidents.store import board_for

    svc = _svc(request)
    t, vid = svc.at(None)
    a.version = vid
    st = _state(request)
    board = board_for(st.istore, t)
    live = st.istore.worker_status().set_index("worker_id")
    if grid_code is not None:
        board = board[board["grid_code"] == grid_code]
    if status is not None:
        board = board[board["status"] == status]
    summary = {"online": int((board["status"] == "online").sum()), "offline": int((board["status"] != "online").sum())}
    scope = record_scope(a.role, t)
    mine = board[board["grid_code"].isin(scope).to_numpy()] if a.role.can_see_records else board.iloc[:0]
    rows = []
    for r in mine.to_dict("records"):
        wid = str(r["worker_id"])
        rows.append({"worker_id": wid, "name": str(r["name"]), "grid_code": str(r["grid_code"]),
                     "status": str(r["status"]), "lng": float(r["lng"]), "lat": float(r["lat"]),
                     "open_cases": int(r["open_cases"]),
                     "status_version": int(live.loc[wid, "version"]) if wid in live.index else 0,
                     "updated_at": str(live.loc[wid, "updated_at"]) if wid in live.index else None})
    a.counts = {"workers": len(rows)}
    return _json({"summary": summary, "scope": _scope_text(a.role), "workers": rows})


@router.post("/workers/{worker_id}/status", tags=["workers"], summary="Set a worker's on/offline status and position")
def workers_set_status(request: Request, a: Audited, worker_id: Annotated[str, PathParam(max_length=40)],
                       req: WorkerStatusRequest) -> Response:
    """Workers of grids in your scope only (404 otherwise); ``expected_version`` makes it a compare-and-set."""
    svc = _svc(request)
    t, vid = svc.at(None)
    a.version = vid
    _need_actor(a.role, "change worker status")
    st = _state(request)
    w = t.workers[t.workers["worker_id"].astype(str) == worker_id]
    if w.empty or (a.role.scope_level != "district" and str(w["grid_code"].iloc[0]) not in record_scope(a.role, t)):
        raise NotFoundError(f"no worker {worker_id!r} in your scope ({_scope_text(a.role)}).")
    if (req.lng is None) != (req.lat is None):
        raise ValidationError("give both 'lng' and 'lat' (WGS84 degrees) or neither.")
    if req.lng is not None and req.lat is not None:
        if not (math.isfinite(req.lng) and math.isfinite(req.lat) and -180 <= req.lng <= 180
                and -90 <= req.lat <= 90):
            raise ValidationError(f"position ({req.lng}, {req.lat}) is not WGS84 longitude/latitude in degrees.")
        a.area, a.area_km2 = shapely.Point(req.lng, req.lat), 0.0
    ver = st.istore.set_worker_status(worker_id, status=req.status, now=_when(req.at, "at"), lng=req.lng,
                                      lat=req.lat, expected_version=req.expected_version)
    a.counts = {"workers": 1}
    a.detail = f"worker {worker_id} {req.status}"
    return _json({"worker_id": worker_id, "status": req.status, "status_version": ver,
                  "lng": req.lng, "lat": req.lat})
