"""Real data in: building footprints and grid polygons (GeoJSON / GeoPackage / GeoParquet).

Every check names the file and the problem: missing CRS, projected coordinates labelled as degrees, no overlap
with the district, GCJ-02-looking coordinates (a :class:`~twin.errors.GCJ02Warning`; convert with
``from_gcj02=True``), invalid geometries (repaired with ``make_valid`` and counted), and for grids: overlaps and
gaps (grid ids and areas in km², EPSG:4547).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely.geometry.base import BaseGeometry

from twin.cells import PARTITION_RES, cell_boundaries, cells_to_latlng, latlng_to_cells
from twin.crs import METRIC_CRS, STORAGE_CRS, gcj02_to_wgs84
from twin.errors import CRSError, GCJ02Warning, IngestError, OutsideDistrictError, PartitionError
from twin.geography import nbs_communities
from twin.io import read_vector
from twin.model import BUILDING_USES

__all__ = ["read_vector_checked", "read_buildings", "read_grids", "looks_gcj02", "OVERLAP_TOLERANCE_M2"]

OVERLAP_TOLERANCE_M2 = 1.0  # overlaps between grid polygons smaller than this are digitising noise
GAP_TOLERANCE_KM2 = 0.01  # uncovered district area tolerated (boundary slivers)
_USE_ALIASES = {
    "residential": "residential", "house": "residential", "apartments": "residential", "dormitory": "residential",
    "detached": "residential", "住宅": "residential",
    "mixed": "mixed", "商住": "mixed",
    "commercial": "commercial", "retail": "commercial", "office": "commercial", "hotel": "commercial",
    "商业": "commercial", "办公": "commercial",
    "industrial": "industrial", "warehouse": "industrial", "factory": "industrial", "工业": "industrial",
    "public": "public", "school": "public", "hospital": "public", "government": "public", "civic": "public",
    "公共": "public",
}


def looks_gcj02(geoms: gpd.GeoSeries, district: BaseGeometry) -> bool:
    """True when moving the geometries from GCJ-02 to WGS84 puts clearly more of them inside the district."""
    pts = geoms.representative_point()
    if len(pts) > 5000:
        pts = pts.sample(5000, random_state=0)
    x, y = pts.x.to_numpy(), pts.y.to_numpy()
    asis = shapely.contains_xy(district, x, y).mean()
    cx, cy = gcj02_to_wgs84(x, y)
    conv = shapely.contains_xy(district, cx, cy).mean()
    return bool(conv - asis > 0.03 and conv > 0.5)


def read_vector_checked(path: str | Path, district: BaseGeometry, *, what: str, from_gcj02: bool = False
                        ) -> tuple[gpd.GeoDataFrame, list[str]]:
    """Read polygons, reproject to WGS84, repair invalid geometries; returns (frame, notes)."""
    gdf = read_vector(path)
    notes: list[str] = []
    if len(gdf) == 0:
        raise IngestError(f"{path}: the {what} layer has no features.")
    if gdf.crs is None:
        raise CRSError(f"{path}: the {what} layer has no CRS. Declare it (GeoJSON is WGS84 by definition; for other "
                       "formats set it in your GIS) and try again.")
    gdf = gdf[~gdf.geometry.isna() & ~gdf.geometry.is_empty].copy()
    if gdf.crs.is_geographic:
        minx, miny, maxx, maxy = gdf.total_bounds
        if max(abs(minx), abs(maxx)) > 180 or max(abs(miny), abs(maxy)) > 90:
            raise CRSError(f"{path}: coordinates {gdf.total_bounds.round(1).tolist()} are not degrees although the "
                           f"layer says {gdf.crs.to_string()}; they look projected (metres). Set the real CRS.")
    gdf = gdf.to_crs(STORAGE_CRS)
    types = set(gdf.geom_type)
    if not types <= {"Polygon", "MultiPolygon"}:
        raise IngestError(f"{path}: the {what} layer must hold polygons, found {sorted(types)}.")
    invalid = ~gdf.geometry.is_valid
    if invalid.any():
        gdf.loc[invalid, "geometry"] = shapely.make_valid(gdf.geometry[invalid].values)
        gdf["geometry"] = [_polygonal(g) for g in gdf.geometry]
        gdf = gdf[~gdf.geometry.is_empty]
        notes.append(f"{int(invalid.sum())} invalid {what} geometries repaired with make_valid")
    if from_gcj02:
        gdf["geometry"] = shapely.transform(
            gdf.geometry.values, lambda c: np.column_stack(gcj02_to_wgs84(c[:, 0], c[:, 1])))
        notes.append("converted from GCJ-02 to WGS84")
    elif looks_gcj02(gdf.geometry, district):
        warnings.warn(GCJ02Warning(
            f"{path}: the {what} coordinates look GCJ-02 (Amap/Tencent), about 600 m off WGS84 here; "
            "re-run with --from-gcj02 (from_gcj02=True) to convert them."), stacklevel=2)
    if not gdf.geometry.intersects(district).any():
        raise OutsideDistrictError(f"{path}: no {what} overlaps Chancheng District (layer bounds "
                                   f"{gdf.total_bounds.round(4).tolist()}, district {np.round(district.bounds, 4).tolist()}).")
    return gdf, notes


def _polygonal(g: BaseGeometry) -> BaseGeometry:
    if g.geom_type in ("Polygon", "MultiPolygon"):
        return g
    parts = [p for p in getattr(g, "geoms", []) if p.geom_type in ("Polygon", "MultiPolygon")]
    return shapely.union_all(parts) if parts else shapely.Polygon()


def _column(gdf: pd.DataFrame, names: tuple[str, ...]) -> str | None:
    lower = {c.lower(): c for c in gdf.columns}
    for n in names:
        if n in lower:
            return lower[n]
    return None


def read_buildings(path: str | Path, district: BaseGeometry, cells: np.ndarray, *, from_gcj02: bool = False
                   ) -> gpd.GeoDataFrame:
    """Footprints from a user file → the frame :func:`twin.synth.buildings.layout_buildings` returns (+ floors).

    Optional columns (case-insensitive): ``use`` / ``building`` / ``type`` (mapped onto residential, mixed,
    commercial, industrial, public; unknown → residential), ``floors`` / ``levels`` / ``building:levels``,
    ``height_m`` / ``height``. Footprints outside the district are dropped (counted in the progress log).
    """
    gdf, notes = read_vector_checked(path, district, what="building", from_gcj02=from_gcj02)
    shapely.prepare(district)
    rep = gdf.geometry.representative_point()
    inside = shapely.contains_xy(district, rep.x.to_numpy(), rep.y.to_numpy())
    if not inside.any():
        raise OutsideDistrictError(f"{path}: no building lies inside Chancheng District.")
    gdf, rep = gdf[inside].reset_index(drop=True), rep[inside].reset_index(drop=True)
    out = gpd.GeoDataFrame(geometry=gdf.geometry.values, crs=STORAGE_CRS)
    use_col = _column(gdf, ("use", "building", "type", "landuse"))
    uses = gdf[use_col].astype(str).str.lower().map(_USE_ALIASES) if use_col else None
    out["use"] = uses.fillna("residential").to_numpy() if uses is not None else "residential"
    assert set(out["use"]) <= set(BUILDING_USES)
    out["footprint_m2"] = gdf.geometry.to_crs(METRIC_CRS).area.to_numpy().astype(np.float32)
    out["lng"], out["lat"] = rep.x.to_numpy(), rep.y.to_numpy()
    cell = latlng_to_cells(out["lat"].to_numpy(), out["lng"].to_numpy(), PARTITION_RES)
    pos = np.searchsorted(cells, cell)
    pos[pos >= len(cells)] = 0
    ok = cells[pos] == cell
    out = out[ok].copy()
    out["cell_idx"] = pos[ok]
    fl = _column(gdf, ("floors", "levels", "building:levels", "storeys"))
    out["floors"] = pd.to_numeric(gdf.loc[ok, fl], errors="coerce").to_numpy() if fl else np.nan
    hc = _column(gdf, ("height_m", "height"))
    if hc:
        out["height_m_user"] = pd.to_numeric(gdf.loc[ok, hc], errors="coerce").to_numpy()
    out = out.sort_values(["cell_idx", "lng", "lat"], kind="stable").reset_index(drop=True)
    out["cell"] = cells[out["cell_idx"].to_numpy()]
    out.attrs["notes"] = notes + [f"{int((~inside).sum())} footprints outside the district dropped"]
    return out


def read_grids(path: str | Path, district: BaseGeometry, cells: np.ndarray, community_of_cell: np.ndarray, *,
               from_gcj02: bool = False) -> tuple[np.ndarray, pd.DataFrame]:
    """Grid polygons → (grid code per cell, grid table with grid_code, grid_name, community_code).

    Each cell goes to the grid containing its centre, else (cells cut by the district edge) to the grid
    overlapping it most. Raises :class:`PartitionError` listing overlapping grid pairs (> 1 m²), uncovered
    district area (gaps > 0.01 km²) with the grids around them, and grids too small to hold one H3 cell.
    A ``community_code`` column (NBS codes) is used when present; otherwise each grid joins the community that
    holds most of its cells.
    """
    gdf, _ = read_vector_checked(path, district, what="grid", from_gcj02=from_gcj02)
    code_col = _column(gdf, ("grid_code", "code", "id", "grid_id"))
    codes = gdf[code_col].astype(str).to_numpy() if code_col else np.array([f"G{i + 1:04d}" for i in range(len(gdf))])
    dup = pd.Series(codes)[pd.Series(codes).duplicated()].unique().tolist()
    if dup:
        raise PartitionError(f"{path}: duplicate grid codes {dup[:10]}; each grid needs a unique code.")
    metric = gdf.geometry.to_crs(METRIC_CRS).reset_index(drop=True)
    problems: list[str] = []
    tree = shapely.STRtree(metric.values)
    left, right = tree.query(metric.values, predicate="intersects")
    keep = left < right
    if keep.any():
        inter = shapely.area(shapely.intersection(metric.values[left[keep]], metric.values[right[keep]]))
        bad = inter > OVERLAP_TOLERANCE_M2
        pairs = [f"{codes[a]}×{codes[b]} ({m2:.0f} m²)" for a, b, m2 in
                 zip(left[keep][bad], right[keep][bad], inter[bad])]
        if pairs:
            problems.append(f"{len(pairs)} overlapping grid pairs: {', '.join(pairs[:10])}")
    d_metric = gpd.GeoSeries([district], crs=STORAGE_CRS).to_crs(METRIC_CRS).iloc[0]
    gaps = shapely.difference(d_metric, shapely.union_all(metric.values))
    gap_km2 = gaps.area / 1e6
    if gap_km2 > GAP_TOLERANCE_KM2:
        near = sorted({codes[i] for i in tree.query(gaps, predicate="intersects")} |
                      {codes[i] for i in tree.query(gaps.buffer(5.0), predicate="intersects")})
        problems.append(f"grids leave {gap_km2:.3f} km² of the district uncovered (next to grids {near[:10]})")
    if problems:
        raise PartitionError(f"{path}: " + "; ".join(problems))

    lat, lng = cells_to_latlng(cells)
    pts = gpd.GeoSeries(shapely.points(lng, lat), crs=STORAGE_CRS)
    g_of_cell = np.full(len(cells), -1, dtype=np.int64)
    ci, gi = gdf.geometry.reset_index(drop=True).sindex.query(pts.values, predicate="within")
    g_of_cell[ci] = gi
    missing = np.flatnonzero(g_of_cell < 0)
    if len(missing):
        hexes = shapely.polygons([np.array(r + [r[0]]) for r in cell_boundaries(cells[missing])])
        a, b = gdf.geometry.reset_index(drop=True).sindex.query(hexes, predicate="intersects")
        if len(a):
            ar = shapely.area(shapely.intersection(hexes[a], gdf.geometry.values[b]))
            best = pd.DataFrame({"a": a, "b": b, "ar": ar}).sort_values("ar").groupby("a").tail(1)
            g_of_cell[missing[best["a"].to_numpy()]] = best["b"].to_numpy()
    still = np.flatnonzero(g_of_cell < 0)
    if len(still):
        raise PartitionError(f"{path}: {len(still)} H3 cells of the district touch no grid.")
    empty = sorted(set(codes) - set(codes[np.unique(g_of_cell)]))
    if empty:
        raise PartitionError(f"{path}: grids {empty[:10]} are smaller than one H3 res-{PARTITION_RES} cell "
                             "(≈ 2,150 m²) and cannot be represented; merge them into a neighbour.")
    cell_code = codes[g_of_cell].astype(object)
    comm_col = _column(gdf, ("community_code", "community"))
    nbs = set(nbs_communities()["community_code"])
    if comm_col:
        comm = gdf[comm_col].astype(str).to_numpy()
        unknown = sorted(set(comm) - nbs)
        if unknown:
            raise PartitionError(f"{path}: community codes {unknown[:5]} are not in the NBS 2023 list.")
    else:
        df = pd.DataFrame({"g": g_of_cell, "c": community_of_cell})
        comm_major = df.groupby("g")["c"].agg(lambda s: s.value_counts().index[0])
        comm = np.array([comm_major.get(i, "") for i in range(len(gdf))], dtype=object)
    name_col = _column(gdf, ("grid_name", "name"))
    names = gdf[name_col].astype(str).to_numpy() if name_col else codes
    meta = pd.DataFrame({"grid_code": codes, "grid_name": names, "community_code": comm})
    meta = meta[meta["grid_code"].isin(set(cell_code))].reset_index(drop=True)
    return cell_code, meta
