"""Synthetic building footprints packed inside the city blocks (labelled ``source="synthetic"``).

Sizes and shapes follow each block's land use (old-town mid-rise slabs, tower estates, dense small village
houses 城中村, industrial sheds, schools and public sites), aligned with the block's minimum rotated rectangle and
set back from its streets. Footprints never overlap (lattice slots inside disjoint blocks) and never lie on
streets or water (blocks exclude both). Floors follow the dwellings a building must hold (:func:`set_floors`).
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import shapely

from twin.cells import PARTITION_RES, latlng_to_cells
from twin.crs import STORAGE_CRS, xy_to_lnglat
from twin.model import BUILDING_USES

__all__ = ["BUILDING_USES", "layout_buildings", "rectangles_xy", "set_floors", "FLOOR_HEIGHT_M"]

FLOOR_HEIGHT_M = 3.0


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


# per land use: width (along the block) and depth ranges (m), gaps between buildings along / across (m),
# setback from the block edge (m), share of mixed use (shops below homes)
_SPECS: dict[str, tuple[tuple[float, float], tuple[float, float], float, float, float, float]] = {
    "old_town": ((30.0, 55.0), (12.0, 16.0), 5.0, 9.0, 3.0, 0.3),  # mid-rise slabs
    "towers": ((20.0, 26.0), (18.0, 23.0), 26.0, 30.0, 9.0, 0.1),  # tower estates
    "village": ((11.0, 15.0), (10.0, 13.0), 1.8, 2.2, 2.0, 0.15),  # 城中村: dense small houses
    "housing": ((14.0, 20.0), (11.0, 14.0), 10.0, 12.0, 4.0, 0.1),
    "commercial": ((35.0, 70.0), (25.0, 40.0), 18.0, 20.0, 8.0, 0.0),
    "industrial": ((60.0, 110.0), (30.0, 55.0), 16.0, 22.0, 10.0, 0.0),  # sheds
    "public": ((45.0, 70.0), (14.0, 18.0), 24.0, 30.0, 12.0, 0.0),  # schools, clinics, offices
}
# persons a home of this land use holds at least before the block's lattice is thinned (sparse land: scattered homes)
_MIN_PERSONS = {"village": 2.5, "housing": 2.5}  # keeps households (mean ≈ 2.35) and dwellings as before
_USE_OF = {"old_town": "residential", "towers": "residential", "village": "residential", "housing": "residential",
           "commercial": "commercial", "industrial": "industrial", "public": "public"}


def _frames(blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each block's minimum rotated rectangle: centre x, y, long side, short side (m) and the long side's angle."""
    rect = shapely.oriented_envelope(blocks)
    xy = shapely.get_coordinates(rect).reshape(len(blocks), -1, 2)[:, :4]
    e1, e2 = xy[:, 1] - xy[:, 0], xy[:, 3] - xy[:, 0]
    l1, l2 = np.hypot(e1[:, 0], e1[:, 1]), np.hypot(e2[:, 0], e2[:, 1])
    swap = l2 > l1
    long_e = np.where(swap[:, None], e2, e1)
    centre = xy.mean(axis=1)
    return centre[:, 0], centre[:, 1], np.maximum(l1, l2), np.minimum(l1, l2), np.arctan2(long_e[:, 1], long_e[:, 0])


def layout_buildings(blocks: gpd.GeoDataFrame, cells: np.ndarray, *, seed: int) -> gpd.GeoDataFrame:
    """Footprints packed inside the blocks (EPSG:4547 ``blocks`` with ``land_use``). Returns WGS84 footprints with
    ``use``, ``footprint_m2``, ``lng``/``lat`` (centroid), ``cell`` and ``cell_idx`` (the res-11 cell of the
    centroid in ``cells``).

    Each block gets one building type by its land use (:data:`_SPECS`): rotated rectangles on a lattice aligned
    with the block's minimum rotated rectangle (so they follow its streets), set back from the block edge; a
    rectangle is kept only when it lies wholly inside the set-back block. Lattice slots are wider than their
    rectangles and blocks never overlap, so footprints never overlap and never touch streets or water.
    """
    rng = np.random.default_rng(seed)
    use_b = blocks["land_use"].to_numpy().astype(str)
    build = np.isin(use_b, list(_SPECS))
    geoms = blocks.geometry.to_numpy()[build]
    use_b = use_b[build]
    nb = len(geoms)
    spec = np.array([_SPECS[u][:2] for u in use_b]).reshape(nb, 4)  # (w lo, w hi, d lo, d hi)
    gaps = np.array([_SPECS[u][2:] for u in use_b]).reshape(nb, 4)  # (gap w, gap d, setback, mixed)
    w = rng.uniform(spec[:, 0], spec[:, 1])
    d = rng.uniform(spec[:, 2], spec[:, 3])
    pitch_w, pitch_d = w + gaps[:, 0] * rng.uniform(0.9, 1.2, nb), d + gaps[:, 1] * rng.uniform(0.9, 1.2, nb)
    inset = shapely.buffer(geoms, -gaps[:, 2], quad_segs=2)
    cx, cy, long_m, short_m, theta = _frames(geoms)
    n1 = np.maximum(np.floor((long_m - 2 * gaps[:, 2] + gaps[:, 0]) / pitch_w), 0).astype(np.int64)
    n2 = np.maximum(np.floor((short_m - 2 * gaps[:, 2] + gaps[:, 1]) / pitch_d), 0).astype(np.int64)
    n = n1 * n2
    bi = np.repeat(np.arange(nb), n)
    k = np.arange(len(bi)) - np.repeat(np.cumsum(n) - n, n)
    i1, i2 = k % n1[bi], k // n1[bi]
    a = (i1 - (n1[bi] - 1) / 2) * pitch_w[bi]
    b = (i2 - (n2[bi] - 1) / 2) * pitch_d[bi]
    c, s = np.cos(theta[bi]), np.sin(theta[bi])
    shrink = rng.uniform(0.85, 1.0, len(bi))
    px, py = cx[bi] + a * c - b * s, cy[bi] + a * s + b * c  # footprint centres (= centroids)
    rect = rectangles_xy(px, py, w[bi] * shrink, d[bi] * shrink, theta[bi] + rng.normal(0, 0.01, len(bi)))
    shapely.prepare(inset)
    keep = shapely.contains(inset[bi], rect)
    rect, bi, px, py = rect[keep], bi[keep], px[keep], py[keep]
    if "persons" in blocks:  # sparsely lived blocks keep only as many homes as their persons need
        persons = blocks["persons"].to_numpy(dtype=float)[build]
        need = np.array([_MIN_PERSONS.get(u, 0.0) for u in use_b])
        slots = np.bincount(bi, minlength=nb)
        p_keep = np.where(need > 0, np.clip(persons / np.maximum(need * slots, 1e-9), 0.2, 1.0), 1.0)
        keep = rng.random(len(bi)) < p_keep[bi]
        rect, bi, px, py = rect[keep], bi[keep], px[keep], py[keep]
    mixed = rng.random(len(bi)) < gaps[bi, 3]
    use = np.where(mixed, "mixed", np.array([_USE_OF[u] for u in use_b])[bi] if len(bi) else np.empty(0, str))
    lng, lat = xy_to_lnglat(px, py)
    cell = latlng_to_cells(lat, lng, PARTITION_RES)
    pos = np.clip(np.searchsorted(cells, cell), 0, len(cells) - 1)
    found = cells[pos] == cell
    geoms_ll = shapely.transform(rect[found], lambda q: np.column_stack(xy_to_lnglat(q[:, 0], q[:, 1])))
    gdf = gpd.GeoDataFrame({"cell_idx": pos[found], "use": use[found],
                            "footprint_m2": shapely.area(rect[found]).astype(np.float32),
                            "lng": lng[found], "lat": lat[found]}, geometry=geoms_ll, crs=STORAGE_CRS)
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
    upf = np.where(big, np.clip(np.round(fp / 85), 2, 12), np.where(fp > 120, 2, 1))  # dwellings per floor
    floors = np.ceil(dw_per_b / upf)
    # small homes stand 3–7 floors at least (城中村 "handshake" houses), more when their dwellings need it
    floors = np.where(big, np.clip(floors, 6, 45), np.clip(np.maximum(floors, rng.integers(3, 8, n)), 2, 9))
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
