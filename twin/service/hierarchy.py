"""``GET /hierarchy/{towns,communities,grids}``: boundaries as a GeoJSON FeatureCollection (WGS84), ``in_scope``
per feature; the encoded collection is cached per version, filter and caller scope."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
import pandas as pd
from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import Response
from shapely.geometry import mapping

from twin.access.policy import record_scope
from twin.access.roles import Role
from twin.encoding import dumps
from twin.model import Twin
from twin.service._params import VersionQ
from twin.service._responses import GEOJSON_MEDIA_TYPE, geojson_response
from twin.service._state import service
from twin.service.deps import Audited

__all__ = ["router", "hierarchy_geojson"]

router = APIRouter(tags=["hierarchy"])

_LEVELS = {"towns": ("town_code", "towns"), "communities": ("community_code", "communities"),
           "grids": ("grid_code", "grids")}
_CACHE_SIZE = 256
_Code = Annotated[str | None, Query(max_length=20, pattern="^[0-9]+$")]


@router.get("/hierarchy/{level}", summary="Towns, communities or grids as GeoJSON", response_class=Response,
            responses={200: {"content": {GEOJSON_MEDIA_TYPE: {}}}})
def hierarchy(request: Request, a: Audited, level: Annotated[str, PathParam(pattern="^(towns|communities|grids)$")],
              version: VersionQ = None, town: _Code = None, community: _Code = None) -> Response:
    """Units of ``level`` (optionally of one town or community) with their codes, names and ``in_scope``."""
    svc = service(request)
    t, vid = svc.twins.at(version)
    a.version = vid
    key = (level, vid, town, community, a.role.scope_level, a.role.scope_codes, a.role.can_see_records)
    hit = svc.hierarchy_cache.get(key)
    if hit is None:
        fc = hierarchy_geojson(t, level, a.role, town=town, community=community)
        hit = dumps(fc), len(fc["features"])
        if len(svc.hierarchy_cache) > _CACHE_SIZE:
            svc.hierarchy_cache.clear()
        svc.hierarchy_cache[key] = hit
    body, n = hit
    a.counts = {"features": n}
    return geojson_response(body)


def hierarchy_geojson(t: Twin, level: str, role: Role, *, town: str | None = None,
                      community: str | None = None) -> dict[str, Any]:
    """Towns, communities or grids of ``t`` as a FeatureCollection (WGS84; feature ``id`` = the unit's code).

    ``in_scope`` is true for a unit wholly inside ``role``'s record scope.
    """
    code_col, table = _LEVELS[level]
    f = getattr(t, table)
    if town is not None and "town_code" in f:
        f = f.loc[f["town_code"].astype(str) == town]
    if community is not None and "community_code" in f:
        f = f.loc[f["community_code"].astype(str) == community]
    in_scope = _in_scope(t, f, level, code_col, role)
    props = [c for c in f.columns if c != "geometry"]
    features = [{"type": "Feature", "id": str(row[code_col]), "properties": {**row, "in_scope": bool(ins)},
                 "geometry": mapping(geom)}
                for row, geom, ins in zip(f[props].to_dict("records"), f.geometry, in_scope, strict=True)]
    return {"type": "FeatureCollection", "features": features}


def _in_scope(t: Twin, f: pd.DataFrame, level: str, code_col: str, role: Role) -> np.ndarray:
    scope = record_scope(role, t)
    if level == "grids":
        return f["grid_code"].astype(str).isin(scope).to_numpy()
    g = t.grids
    all_in = g["grid_code"].astype(str).isin(scope).groupby(g[code_col].astype(str)).all()
    return f[code_col].astype(str).map(all_in).fillna(False).astype(bool).to_numpy()
