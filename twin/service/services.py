"""HTTP endpoints of the no-application services (无感服务, :mod:`twin.services`) over the live twin.

* ``GET /services`` — the catalogue (rules, statuses and their order).
* ``GET /services/run?month=2026-12`` — persons per service in the caller's record scope (analysts: district
  counts published like any aggregate: suppressed below *k*, else rounded to a multiple of *k*).
* ``GET /services/counts?month=`` — persons per grid and service for the map (exact in scope, published outside).
* ``GET /services/{name}/worklist?month=&community=&format=json|csv|xlsx`` — the scoped work list (names are
  SYNTHETIC; CSV in UTF-8 with BOM).
* ``POST /services/identify`` — record the caller's list of a month as ``identified`` (idempotent).
* ``POST /services/{name}/status`` — identified → notified → delivered / declined, by the named caller; a move the
  state does not allow → 409 with ``current_status`` and ``allowed``; a stale ``expected_version`` → 409.

Months are ``YYYY-MM`` or a range ``YYYY-MM-DD..YYYY-MM-DD`` (calendar days, CST).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import Response
from pydantic import BaseModel, Field

from twin.access.scope import record_scope, sees_everything
from twin.access.units import publish
from twin.errors import InvalidTransition, NotFoundError, PermissionDenied
from twin.service._live_twin import live_twin, run_for
from twin.service._responses import json_response
from twin.service._state import service
from twin.service.deps import Audited
from twin.service.incidents import _rejected
from twin.services import AgeRule, ServiceStatusStore, counts_by_grid, default_services, export_work_list, work_list
from twin.services.status import NEXT, STATES

__all__ = ["router", "StatusRequest", "IdentifyRequest"]

router = APIRouter(tags=["services"])

_MONTH_PATTERN = r"^(19|20|21)\d{2}-\d{2}(-\d{2}\.\.(19|20|21)\d{2}-\d{2}-\d{2})?$"
Month = Annotated[str, Query(min_length=7, max_length=22, pattern=_MONTH_PATTERN,
                             description="a month like 2026-12, or a range 2026-12-01..2026-12-15")]
Name = Annotated[str, PathParam(max_length=60, pattern="^[A-Za-z_][A-Za-z0-9_]*$", description="service name")]
Community = Annotated[str | None, Query(max_length=20, pattern="^[0-9]+$")]
_MEDIA = {"csv": "text/csv; charset=utf-8",
          "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}


def _known(name: str) -> str:
    names = [s.name for s in default_services()]
    if name not in names:
        raise NotFoundError(f"unknown service {name!r}; GET /services lists them: {', '.join(names)}.")
    return name


def _scope_text(a: Audited) -> str:
    r = a.role
    return "district" if r.scope_level == "district" else f"{r.scope_level} {', '.join(r.scope_codes)}"


@router.get("/services", summary="The no-application services (无感服务) and the statuses of a work list")
def services_catalogue(a: Audited) -> Response:
    """Each service's rule (an age reached, optionally with flags, or a flag turning on) and the status order."""
    rows = []
    for s in default_services():
        rule = ({"kind": "age", "age": s.age, "requires": list(s.requires)} if isinstance(s, AgeRule)
                else {"kind": "flag", "flag": s.flag})
        rows.append({"name": s.name, "title": s.title, "detail": s.detail, **rule})
    a.counts = {"services": len(rows)}
    return json_response({"services": rows, "statuses": list(STATES), "next": {k: list(v) for k, v in NEXT.items()},
                          "synthetic": True})


@router.get("/services/run", summary="Persons per service in a month, over the live state (scoped)")
def services_run(request: Request, a: Audited, month: Month,
                 service_name: Annotated[str | None, Query(alias="service", max_length=60)] = None) -> Response:
    """Counts per service of the persons who qualify in ``month`` inside the caller's record scope (exact);
    analysts get the district counts published (``null`` = suppressed)."""
    if service_name is not None:
        _known(service_name)
    run, seq = run_for(request, month)
    t = live_twin(request).t
    rows = run.rows
    role = a.role
    published = not role.can_see_records
    if not published and not sees_everything(role):
        rows = rows.loc[rows["grid_code"].isin(record_scope(role, t))]
    names = [s.name for s in run.services if service_name in (None, s.name)]
    n = rows.groupby("service").size() if len(rows) else {}
    exact = [int(n.get(s, 0)) for s in names]
    counts: dict[str, int | None] = dict(zip(names, exact, strict=True))
    if published:
        k = service(request).policy.k_for(role)
        pub = publish(exact, k)
        counts = {s: (None if int(v) < 0 else int(v)) for s, v in zip(names, pub, strict=True)}
    a.counts = {"services": len(names), "persons": sum(v or 0 for v in counts.values())}
    a.detail = f"period {run.period}"
    titles = {s.name: s.title for s in run.services}
    return json_response({"period": str(run.period), "scope": _scope_text(a), "change_seq": seq,
                          "published": published, "counts": counts,
                          "services": [{"name": s, "title": titles[s], "count": counts[s]} for s in names]})


@router.get("/services/counts", summary="Persons per grid and service in a month, for the map")
def services_counts(request: Request, a: Audited, month: Month) -> Response:
    """One row per grid: ``in_scope`` and a count per service (exact in the caller's record scope, published
    outside it: ``null`` = suppressed)."""
    run, seq = run_for(request, month)
    t = live_twin(request).t
    table = counts_by_grid(run, t, role=a.role, policy=service(request).policy)
    names = [s.name for s in run.services]
    rows = [{"grid_code": str(g), "in_scope": bool(r["in_scope"]),
             **{s: (None if r[s] is None or r[s] != r[s] else int(r[s])) for s in names}}
            for g, r in zip(table.index, table.astype(object).where(table.notna(), None).to_dict("records"),
                            strict=True)]
    a.counts = {"grids": len(rows)}
    a.detail = f"period {run.period}"
    return json_response({"period": str(run.period), "scope": _scope_text(a), "change_seq": seq,
                          "services": names, "grids": rows})


@router.get("/services/{name}/worklist", summary="The work list of one service in a month (scoped; CSV/XLSX)",
            response_class=Response, responses={200: {"content": {"application/json": {}, **{m: {} for m in
                                                                                            _MEDIA.values()}}}})
def services_worklist(request: Request, a: Audited, name: Name, month: Month, community: Community = None,
                      format: Annotated[str, Query(pattern="^(json|csv|xlsx)$")] = "json") -> Response:
    """Rows of the caller's record scope (one community with ``community``): service, qualifying date,
    ``synthetic_name`` (made up from the person id: the persons are SYNTHETIC), ids, grid, community, the grid
    worker who follows it up, and the stored status. Analysts get 403."""
    _known(name)
    run, seq = run_for(request, month)
    t = live_twin(request).t
    work = work_list(run, t, store=service(request).store, role=a.role, community=community, service=name)
    a.counts = {"persons": len(work)}
    a.detail = f"{name} {run.period} community {community or 'all in scope'} ({format})"
    if format != "json":
        data = export_work_list(work, format)
        fname = f"worklist_{name}_{run.period}{'_' + community if community else ''}.{format}".replace("..", "_")
        return Response(data, media_type=_MEDIA[format],
                        headers={"Content-Disposition": f'attachment; filename="{fname}"'})
    return json_response({"service": name, "period": str(run.period), "scope": _scope_text(a),
                          "community": community, "change_seq": seq, "synthetic_names": True,
                          "columns": list(work.columns), "rows": work.to_dict("records")})


class IdentifyRequest(BaseModel):
    """Which list to record as identified."""

    month: str = Field(min_length=7, max_length=22, pattern=_MONTH_PATTERN)
    service: str | None = Field(None, max_length=60, description="one service (default: all)")
    community: str | None = Field(None, max_length=20, pattern="^[0-9]+$")


@router.post("/services/identify", summary="Record the caller's work list of a month as identified (idempotent)")
def services_identify(request: Request, a: Audited, req: IdentifyRequest) -> Response:
    """Every row of the caller's scoped work list (:func:`twin.services.work_list`) not yet recorded becomes
    ``identified``; returns how many were new."""
    if req.service is not None:
        _known(req.service)
    if not a.role.can_see_records:
        raise PermissionDenied(f"user {a.role.user!r} ({a.role.name}) may not see or change work-list records.")
    run, _ = run_for(request, req.month)
    t = live_twin(request).t
    store = service(request).store
    work = work_list(run, t, store=store, role=a.role, community=req.community, service=req.service)
    new = ServiceStatusStore(store).identify(work, role=a.role, t=t)
    a.counts = {"persons": len(work), "identified": new}
    a.detail = f"identify {req.service or 'all'} {run.period}"
    return json_response({"period": str(run.period), "persons": len(work), "identified": new})


class StatusRequest(BaseModel):
    """One person's next status on one service's list."""

    person_id: int = Field(ge=0, le=2**62)
    qualifying_date: str = Field(min_length=10, max_length=10, pattern=r"^\d{4}-\d{2}-\d{2}$")
    to: Literal["identified", "notified", "delivered", "declined"]
    note: str = Field("", max_length=1000)
    expected_version: int | None = Field(None, ge=1, le=2**62, description="the version you saw (stale → 409)")


@router.post("/services/{name}/status", summary="Advance a person's status: identified → notified → "
                                                 "delivered / declined")
def services_status(request: Request, a: Audited, name: Name, req: StatusRequest) -> Response:
    """Moves one person's status, recording the caller as who (and when); the person must be on the list
    (identified). 409 when the current status does not allow ``to`` (with ``current_status`` and ``allowed``) or
    ``expected_version`` is stale; 403 outside the caller's scope."""
    _known(name)
    if not a.role.can_see_records:
        raise PermissionDenied(f"user {a.role.user!r} ({a.role.name}) may not see or change work-list records.")
    t = live_twin(request).t
    svc = service(request)
    ss = ServiceStatusStore(svc.store)
    a.detail = f"{name}/{req.person_id}/{req.qualifying_date} → {req.to}"
    try:
        rec = ss.advance(name, req.person_id, req.qualifying_date, req.to, t=t, role=a.role, note=req.note,
                         expected_version=req.expected_version)
    except InvalidTransition as e:
        cur = ss.get(name, req.person_id, req.qualifying_date)
        return _rejected(svc, a, 409, "InvalidTransition", str(e), request.url.path, current_status=cur.status,
                         allowed=list(NEXT[cur.status]), version=cur.version)
    a.counts = {"persons": 1}
    return json_response({"service": rec.service, "person_id": rec.person_id,
                          "qualifying_date": rec.qualifying_date.isoformat(), "status": rec.status,
                          "version": rec.version, "grid_code": rec.grid_code, "community_code": rec.community_code,
                          "updated_by": rec.updated_by, "updated_at": rec.updated_at, "note": rec.note})
