"""Synthetic building footprints placed on the H3 cells (labelled ``source="synthetic"``).

Layout guarantees footprints never overlap: a building either fills one res-11 cell (a rectangle inside the
cell's inscribed circle, radius ≈ 24 m) or sits in one of the cell's seven res-12 children (a rectangle inside
the child's inscribed circle, radius ≈ 9 m). Hexagons do not overlap, so neither do the rectangles.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from twin.cells import cells_to_children, cells_to_latlng
from twin.crs import STORAGE_CRS, lnglat_to_xy, xy_to_lnglat
from twin.model import BUILDING_USES

__all__ = ["BUILDING_USES", "layout_buildings", "rectangles_xy", "set_floors", "FLOOR_HEIGHT_M"]

FLOOR_HEIGHT_M = 3.0
_BIG_HALF_DIAG_M = 21.0  # < inscribed radius of a res-11 hexagon (≈ 24.6 m)
_SMALL_HALF_DIAG_M = 8.0  # < inscribed radius of a res-12 hexagon (≈ 9.3 m)
_DENSE_PERSONS = 45  # a residential cell with this many persons gets one apartment block instead of houses


def rectangles_xy(cx: np.ndarray, cy: np.ndarray, w: np.ndarray, d: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Rotated rectangles as shapely Polygons (vectorised); centres, sizes (m) and angles (rad) in EPSG:4547."""
    hw, hd = w / 2.0, d / 2.0
    corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1], [-1, -1]], dtype=float)
    lx = corners[None, :, 0] * hw[:, None]
    ly = corners[None, :, 1] * hd[:, None]
    c, s = np.cos(theta)[:, None], np.sin(theta)[:, None]
    x = cx[:, None] + lx * c - ly * s
    y = cy[:, None] + lx * s + ly * c
    return shapely.polygons(np.stack([x, y], axis=2))


def _sizes(rng: np.random.Generator, n: int, half_diag: float, lo: float, hi: float, aspect: tuple[float, float]
           ) -> tuple[np.ndarray, np.ndarray]:
    w = rng.uniform(lo, hi, n)
    d = w * rng.uniform(*aspect, n)
    f = np.minimum(1.0, half_diag / (0.5 * np.hypot(w, d)))
    return w * f, d * f


def layout_buildings(
    cells: np.ndarray,
    persons: np.ndarray,
    industrial: np.ndarray,
    commercial: np.ndarray,
    district: BaseGeometry,
    *,
    seed: int,
) -> gpd.GeoDataFrame:
    """Place buildings in cells. Returns footprints (WGS84) with ``use``, ``cell`` and ``planned_persons``.

    Residential cells (``persons > 0``) get one apartment block (dense) or up to seven houses; empty cells get an
    industrial, commercial or public building with probabilities from the land-use intensities, or stay empty.
    Footprints not entirely inside ``district`` are dropped; ``planned_persons`` of a cell is split over its
    residential buildings (it may be 0 when none fits: the caller moves those persons).
    """
    rng = np.random.default_rng(seed)
    n = len(cells)
    lat, lng = cells_to_latlng(cells)
    cx, cy = lnglat_to_xy(lng, lat)
    # a smooth street orientation field so that neighbouring buildings line up
    theta_field = 0.6 * np.sin(cx / 1700.0) + 0.6 * np.cos(cy / 2300.0)

    u = rng.random(n)
    dense = persons >= _DENSE_PERSONS
    houses = (persons > 0) & ~dense
    empty = persons == 0
    is_ind = empty & (u < 0.75 * industrial)
    is_com = empty & ~is_ind & (u < 0.75 * industrial + 0.6 * commercial)
    is_pub = empty & ~is_ind & ~is_com & (rng.random(n) < 0.05)
    big = dense | is_ind | is_com | is_pub

    parts = []
    # one big building per cell
    bi = np.flatnonzero(big)
    w, d = _sizes(rng, len(bi), _BIG_HALF_DIAG_M, 18, 38, (0.45, 0.9))
    use_big = np.where(dense[bi], "residential", np.where(is_ind[bi], "industrial",
                       np.where(is_com[bi], "commercial", "public")))
    mixed = dense[bi] & (rng.random(len(bi)) < 0.8 * commercial[bi])
    use_big = np.where(mixed, "mixed", use_big)
    parts.append((bi, cx[bi], cy[bi], w, d, theta_field[bi] + rng.normal(0, 0.08, len(bi)), use_big))

    # houses: up to seven per cell, at res-12 children
    hi = np.flatnonzero(houses)
    n_h = np.minimum(7, np.ceil(persons[hi] / 10.0)).astype(int)
    children = cells_to_children(cells[hi], 12)
    pick_cell, pick_child = [], []
    for ci, ch, k in zip(hi.tolist(), children, n_h.tolist()):
        sel = rng.choice(len(ch), size=min(k, len(ch)), replace=False)
        pick_cell.extend([ci] * len(sel))
        pick_child.append(ch[sel])
    pick_cell_a = np.asarray(pick_cell, dtype=np.int64)
    child_cells = np.concatenate(pick_child) if pick_child else np.empty(0, dtype=np.uint64)
    clat, clng = cells_to_latlng(child_cells)
    hx, hy = lnglat_to_xy(clng, clat)
    hw, hd = _sizes(rng, len(child_cells), _SMALL_HALF_DIAG_M, 8, 13, (0.7, 1.0))
    use_h = np.where(rng.random(len(child_cells)) < 0.15 + 0.6 * commercial[pick_cell_a], "mixed", "residential")
    parts.append((pick_cell_a, hx, hy, hw, hd, theta_field[pick_cell_a] + rng.normal(0, 0.1, len(hx)), use_h))

    cell_idx = np.concatenate([p[0] for p in parts])
    geoms_m = np.concatenate([rectangles_xy(p[1], p[2], p[3], p[4], p[5]) for p in parts])
    use = np.concatenate([p[6] for p in parts])
    footprint_m2 = shapely.area(geoms_m)
    rep = shapely.centroid(geoms_m)
    rx, ry = shapely.get_x(rep), shapely.get_y(rep)

    geoms = shapely.transform(geoms_m, lambda c: np.column_stack(xy_to_lnglat(c[:, 0], c[:, 1])))
    shapely.prepare(district)
    inside = shapely.contains(district, geoms)
    rlng, rlat = xy_to_lnglat(rx, ry)

    gdf = gpd.GeoDataFrame(
        {
            "cell_idx": cell_idx[inside],
            "use": use[inside],
            "footprint_m2": footprint_m2[inside].astype(np.float32),
            "lng": rlng[inside],
            "lat": rlat[inside],
        },
        geometry=geoms[inside],
        crs=STORAGE_CRS,
    )
    # deterministic order: by cell, then west→east
    gdf = gdf.sort_values(["cell_idx", "lng", "lat"], kind="stable").reset_index(drop=True)
    gdf["cell"] = cells[gdf["cell_idx"].to_numpy()]
    return gdf


def set_floors(buildings: gpd.GeoDataFrame, dw_per_b: np.ndarray, *, seed: int, keep_user: bool) -> None:
    """Set ``floors``, ``height_m`` (m) and ``dwellings`` in place: floors follow the dwellings a building holds
    (industrial floors 6 m, others :data:`FLOOR_HEIGHT_M`); ``keep_user`` keeps floors/heights a user file gave."""
    rng = np.random.default_rng(seed)
    n = len(buildings)
    use = buildings["use"].to_numpy().astype(str)
    fp = buildings["footprint_m2"].to_numpy(dtype=float)
    big = fp > 300
    upf = np.where(big, np.clip(np.round(fp / 110), 2, 8), np.where(fp > 120, 2, 1))
    floors = np.ceil(dw_per_b / upf)
    floors = np.where(big, np.clip(floors, 6, 45), np.clip(floors, 2, 9))
    floors = np.where(use == "commercial", rng.integers(2, 24, n), floors)
    floors = np.where(use == "industrial", rng.integers(1, 4, n), floors)
    floors = np.where(use == "public", rng.integers(2, 7, n), floors)
    floor_h = np.where(use == "industrial", 6.0, FLOOR_HEIGHT_M)
    if keep_user and "floors" in buildings:
        given = buildings["floors"].to_numpy(dtype=float)
        floors = np.where(np.isfinite(given) & (given > 0), given, floors)
    buildings["floors"] = floors.astype(np.int16)
    buildings["height_m"] = (floors * floor_h + rng.uniform(0.5, 2.0, n)).astype(np.float32)
    if keep_user and "height_m_user" in buildings:
        given_h = buildings["height_m_user"].to_numpy(dtype=float)
        buildings["height_m"] = np.where(np.isfinite(given_h), given_h, buildings["height_m"]).astype(np.float32)
        buildings.drop(columns=["height_m_user"], inplace=True)
    buildings["dwellings"] = dw_per_b.astype(np.int32)
