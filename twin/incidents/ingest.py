"""Ingestion of real incidents from CSV or GeoJSON files: validate every row, then report them one by one.

:func:`read_incident_file` reads a CSV (``category``, ``lng``, ``lat``, ``reported_at`` + optional ``channel``,
``severity``, ``reporter``, ``description``, ``answered_at_once``; WGS84 degrees) or GeoJSON points with the same
properties (reprojected to WGS84 when in another CRS); :func:`import_incidents` validates every row first (an
:class:`twin.errors.IngestError` lists each bad row by number and problem, and nothing is written), then reports
them in time order through :func:`twin.incidents.store.report_incident` (near-duplicates are linked).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from twin.crs import STORAGE_CRS
from twin.errors import IngestError, TwinError
from twin.incidents.dispatch import locate_points
from twin.incidents.lifecycle import as_time, new_incident
from twin.incidents.store import IncidentStore, report_incident
from twin.io import read_vector
from twin.model import Twin

__all__ = ["read_incident_file", "import_incidents"]

_REQUIRED = ("category", "reported_at")


def read_incident_file(path: str | Path) -> pd.DataFrame:
    """Rows of a CSV (``lng``/``lat`` columns, WGS84) or GeoJSON (Point geometries) incident file, as strings.

    GeoJSON in another CRS is reprojected to WGS84; rows keep their file order (``row`` = 1-based data row).
    """
    p = Path(path)
    if not p.exists():
        raise IngestError(f"{p}: file not found.")
    if p.suffix.lower() == ".csv":
        try:
            df = pd.read_csv(p, dtype=str, keep_default_na=False)
        except Exception as e:
            raise IngestError(f"{p}: cannot read as CSV ({type(e).__name__}: {e}).") from e
    else:
        gdf = read_vector(p)
        if gdf.crs is not None and gdf.crs != STORAGE_CRS:
            gdf = gdf.to_crs(STORAGE_CRS)
        kinds = gdf.geometry.geom_type.fillna("None")
        df = pd.DataFrame(gdf.drop(columns=gdf.geometry.name)).astype(object)
        df["lng"] = [g.x if k == "Point" else "" for g, k in zip(gdf.geometry, kinds, strict=True)]
        df["lat"] = [g.y if k == "Point" else "" for g, k in zip(gdf.geometry, kinds, strict=True)]
        df["_geom_type"] = kinds.to_numpy()
    missing = [c for c in (*_REQUIRED, "lng", "lat") if c not in df.columns]
    if missing:
        raise IngestError(f"{p}: missing column(s) {missing}; need category, lng, lat (or Point geometry), "
                          "reported_at; optional channel, severity, reporter, description, answered_at_once.")
    df.insert(0, "row", np.arange(1, len(df) + 1))
    return df


def import_incidents(
    istore: IncidentStore, t: Twin, catalogue: pd.DataFrame, path: str | Path, *, actor: str, auto_dispatch: bool = False,
    max_errors: int = 20,
) -> dict[str, int]:
    """Validate then report every row of an incident file; returns ``{"rows", "new", "linked"}``.

    All rows are checked before anything is written: category known, channel valid, severity 1–4,
    coordinates numbers inside a grid, time parseable. The :class:`IngestError` names each bad row
    (``row 7: unknown incident category 'fire'``), up to ``max_errors`` of them.
    """
    df = read_incident_file(path)
    errors: list[str] = []
    fields: list[dict[str, Any]] = []
    for r in df.to_dict("records"):
        if r.get("_geom_type", "Point") != "Point":
            errors.append(f"row {r['row']}: geometry is {r['_geom_type']}, need a Point.")
            continue
        f = {
            "category": str(r["category"]).strip(), "lng": r["lng"], "lat": r["lat"],
            "reported_at": str(r["reported_at"]).strip(),
            "channel": str(r.get("channel") or "grid_worker").strip(),
            "severity": _int_or(r.get("severity"), 1),
            "reporter": str(r.get("reporter") or ""), "description": str(r.get("description") or ""),
            "answered_at_once": str(r.get("answered_at_once") or "").strip().lower() in ("1", "true", "yes", "y"),
        }
        try:
            new_incident(catalogue, **f)
        except TwinError as e:
            errors.append(f"row {r['row']}: {e}")
            continue
        fields.append(f | {"_row": r["row"]})
    if fields:
        lng = np.array([float(f["lng"]) for f in fields])
        lat = np.array([float(f["lat"]) for f in fields])
        loc = locate_points(t, lng, lat)
        for f, g in zip(fields, loc["grid_code"], strict=True):
            if not g:
                errors.append(f"row {f['_row']}: point ({f['lng']}, {f['lat']}) is outside every grid of the "
                              "district (WGS84 lng/lat expected; GCJ-02 must be converted).")
    if errors:
        errors.sort(key=lambda s: int(s.split(":")[0].split()[1]))
        more = f" … and {len(errors) - max_errors} more" if len(errors) > max_errors else ""
        raise IngestError(f"{path}: {len(errors)} bad row(s), nothing imported:\n  "
                          + "\n  ".join(errors[:max_errors]) + more)
    new = linked = 0
    for f in sorted(fields, key=lambda f: as_time(f["reported_at"])):
        f = {k: v for k, v in f.items() if k != "_row"}
        _, was_linked = report_incident(istore, t, catalogue, actor=actor, auto_dispatch=auto_dispatch, **f)
        linked += int(was_linked)
        new += int(not was_linked)
    return {"rows": len(df), "new": new, "linked": linked}


def _int_or(v: Any, default: int) -> Any:
    if v is None or (isinstance(v, str) and not v.strip()):
        return default
    try:
        f = float(v)
    except (TypeError, ValueError):
        return v  # new_incident names the bad value
    return int(f) if f.is_integer() else v
