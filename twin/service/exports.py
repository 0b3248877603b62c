"""``GET /exports/grids``: the grid layer of a version as GeoJSON, GeoPackage or GeoParquet (WGS84)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.background import BackgroundTask
from starlette.responses import FileResponse

from twin.partition.export import export_grids
from twin.partition.versions import load_partition
from twin.service._params import VersionQ
from twin.service._responses import GEOJSON_MEDIA_TYPE
from twin.service._state import service
from twin.service.deps import Audited

__all__ = ["router"]

router = APIRouter(tags=["versions"])

_MEDIA = {"geojson": GEOJSON_MEDIA_TYPE, "gpkg": "application/geopackage+sqlite3",
          "parquet": "application/vnd.apache.parquet"}


@router.get("/exports/grids", summary="The grid layer of a version (GeoJSON/GPKG/GeoParquet)",
            response_class=Response, responses={200: {"content": {m: {} for m in _MEDIA.values()}}})
def export(request: Request, a: Audited, version: VersionQ = None,
           format: Annotated[str, Query(pattern="^(geojson|gpkg|parquet)$")] = "geojson") -> Response:
    """Grid polygons with grid/community/town codes, counts and workload, WGS84. Counts are exact for grids in
    the caller's record scope; other grids' counts are published units (suppressed below k, else rounded to a
    multiple of k; ``in_scope`` false), the same values their dossiers show."""
    svc = service(request)
    _, vid = svc.twins.at(version)
    a.version = vid
    base = svc.twins.base_twin()
    p = load_partition(svc.store, base, vid)
    tmp = Path(tempfile.mkdtemp(prefix="twin-export-"))
    path = export_grids(base, p, tmp / f"grids_v{vid}.{format}", version=vid, role=a.role, policy=svc.policy)
    a.counts = {"grids": int(p.n_grids)}
    return FileResponse(path, media_type=_MEDIA[format], filename=path.name,
                        background=BackgroundTask(shutil.rmtree, tmp, ignore_errors=True))
