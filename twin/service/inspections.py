"""``GET /inspections/plan``: the month's credit-based inspection visits of the businesses in the caller's grids
(records: not for analysts); JSON (per-worker summary + a page of visits) or CSV (every visit, UTF-8 with BOM)."""

from __future__ import annotations

import datetime as dt
import io
from typing import Annotated

import pandas as pd
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from twin.access.policy import MAX_PAGE_SIZE, record_scope
from twin.errors import NotFoundError, PermissionDenied, ValidationError
from twin.incidents.inspections import inspection_plan, plan_summary
from twin.service._incident_scope import scope_text
from twin.service._responses import json_response
from twin.service._state import service
from twin.service.deps import Audited

__all__ = ["router"]

router = APIRouter(tags=["inspections"])

_Visits = Annotated[int, Query(ge=0, le=23)]


@router.get("/inspections/plan", summary="The month's credit-based inspection plan (scoped)",
            responses={200: {"content": {"text/csv": {}, "application/json": {}}}})
def inspections_plan(request: Request, a: Audited,
                     month: Annotated[str, Query(pattern=r"^\d{4}-\d{2}$", description="YYYY-MM")],
                     format: Annotated[str, Query(pattern="^(csv|json)$")] = "json",
                     grid_code: Annotated[str | None, Query(max_length=20, pattern="^[0-9]+$")] = None,
                     green: _Visits = 1, yellow: _Visits = 2, red: _Visits = 4,
                     holiday: Annotated[list[str] | None, Query(max_length=31)] = None,
                     page: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
                     page_size: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = MAX_PAGE_SIZE) -> Response:
    """Visits of the businesses in the caller's grids (or one of them, ``grid_code``) in ``month``."""
    svc = service(request)
    t, vid = svc.twins.at(None)
    a.version = vid
    if not a.role.can_see_records:
        raise PermissionDenied(f"role {a.role.name!r} may not see inspection plans (they list businesses); "
                               "use the aggregate endpoints.")
    grids: set[str] | None = None if a.role.scope_level == "district" else set(record_scope(a.role, t))
    if grid_code is not None:
        if grid_code not in set(t.grids["grid_code"].astype(str)) or (grids is not None and grid_code not in grids):
            raise NotFoundError(f"no grid {grid_code} in your scope ({scope_text(a.role)}).")
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
    return json_response({"month": month, "visits": len(plan), "page": page, "page_size": page_size,
                          "pages": (len(plan) + page_size - 1) // page_size,
                          "summary": summ.to_dict("records"), "rows": chunk.to_dict("records")})
