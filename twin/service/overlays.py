"""``GET /overlays/{category}``: key-population counts and densities per H3 cell (res 8–10), aggregates only."""

from __future__ import annotations

from typing import Annotated

import pandas as pd
from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import Response

from twin.query.overlays import overlay
from twin.service._params import VersionQ
from twin.service._responses import json_response
from twin.service._state import service
from twin.service.deps import Audited

__all__ = ["router", "overlay_cells_json"]

router = APIRouter(tags=["area"])


@router.get("/overlays/{category}", summary="Key-population counts per H3 cell (res 8–10)")
def overlay_cells(request: Request, a: Audited, category: Annotated[str, PathParam(max_length=40)],
                  res: Annotated[int, Query(ge=8, le=10)] = 9, version: VersionQ = None,
                  include_zero: bool = False) -> Response:
    """Aggregates only (never records): cells not wholly inside the caller's record scope — every cell for
    analysts — have counts 1…k−1 suppressed (``count``/``density_km2`` null, ``suppressed`` true)."""
    svc = service(request)
    t, vid = svc.twins.at(version)
    a.version = vid
    k = svc.policy.k_for(a.role)
    f = overlay(t, category, res=res, role=a.role, k=k)
    if not include_zero:
        f = f.loc[f["suppressed"].to_numpy() | (f["count"].fillna(1).to_numpy() > 0)]
    a.counts = {"cells": len(f), "suppressed": int(f["suppressed"].sum())}
    return json_response({"category": category, "res": res, "version": vid, "k": k,
                          "cells": overlay_cells_json(f, density_decimals=3)})


def overlay_cells_json(f: pd.DataFrame, *, density_decimals: int | None = None) -> list[dict[str, object]]:
    """Rows of an :func:`twin.query.overlays.overlay` frame for JSON: ``cell`` in hex, suppressed values ``NA``
    (written as ``null`` by :func:`twin.encoding.dumps`), ``density_km2`` optionally rounded."""
    dens = f["density_km2"] if density_decimals is None else f["density_km2"].round(density_decimals)
    rows = pd.DataFrame({"cell": [format(int(c), "x") for c in f["cell"].to_numpy()], "count": f["count"].array,
                         "density_km2": dens.array, "suppressed": f["suppressed"].to_numpy(dtype=bool)})
    return rows.to_dict("records")
