"""A synthetic street network with a hierarchy (labelled synthetic, deterministic by seed), in EPSG:4547 metres.

* **arterials** — two families of gently curving roads ≈ 1 km apart, turned a little off north (like Foshan's
  tilted grid), the second family not quite perpendicular to the first; one curving expressway across the district;
* **collectors** — half-way between the arterials (≈ 500 m mesh), a few segments left out;
* **local streets** — in each superblock (face of the arterial + collector mesh), parallel lanes along the
  superblock's minimum rotated rectangle, their spacing set by the population surface: dense in the old town and
  the village clusters (城中村 lanes ≈ 45–60 m apart), sparse in industrial and farm land (≈ 250 m).

Widths (m) follow :data:`twin.ingest.osm.STREET_WIDTH_M` (the OSM path uses the same classes), village lanes 5 m.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from twin.crs import METRIC_CRS
from twin.ingest.osm import STREET_WIDTH_M

__all__ = ["main_roads", "local_streets", "LANE_WIDTH_M", "street_frame"]

LANE_WIDTH_M = 5.0  # village lanes (城中村 alleys)
_ARTERIAL_SPACING_M = 1000.0
_STEP_M = 40.0  # vertex spacing along generated roads


def _family(bounds: tuple[float, float, float, float], angle: float, spacing: float, offset: float,
            rng: np.random.Generator, *, amp: tuple[float, float], jitter_m: float) -> list[BaseGeometry]:
    """Parallel curving lines at ``angle`` (rad from east) every ``spacing`` m across ``bounds``."""
    minx, miny, maxx, maxy = bounds
    cx, cy = (minx + maxx) / 2, (miny + maxy) / 2
    half = 0.5 * np.hypot(maxx - minx, maxy - miny) + spacing
    d = np.array([np.cos(angle), np.sin(angle)])
    nrm = np.array([-d[1], d[0]])
    t = np.arange(-half, half + _STEP_M, _STEP_M)
    lines = []
    for k in np.arange(-half + offset, half, spacing):
        off = k + rng.normal(0, jitter_m)
        a1, a2 = rng.uniform(*amp), rng.uniform(*amp) * 0.5
        l1, l2 = rng.uniform(2500, 6000), rng.uniform(900, 1800)
        p1, p2 = rng.uniform(0, 2 * np.pi, 2)
        bend = off + a1 * np.sin(2 * np.pi * t / l1 + p1) + a2 * np.sin(2 * np.pi * t / l2 + p2)
        xy = np.column_stack([cx + t * d[0] + bend * nrm[0], cy + t * d[1] + bend * nrm[1]])
        lines.append(shapely.LineString(xy))
    return lines


def street_frame(lines: list[BaseGeometry], cls: list[str], width: list[float]) -> gpd.GeoDataFrame:
    """Single LineStrings with ``class`` and ``width_m`` (EPSG:4547), empty pieces dropped."""
    gdf = gpd.GeoDataFrame({"class": cls, "width_m": np.asarray(width, dtype=np.float32)},
                           geometry=lines, crs=METRIC_CRS)
    gdf = gdf[~gdf.geometry.is_empty].explode(index_parts=False)
    return gdf[gdf.geom_type == "LineString"].reset_index(drop=True)


def main_roads(area_m: BaseGeometry, rng: np.random.Generator) -> gpd.GeoDataFrame:
    """Arterials (≈ 1 km apart), collectors (half-way) and one expressway, clipped to ``area_m`` (EPSG:4547)."""
    b = area_m.bounds
    base = np.deg2rad(rng.uniform(-16, -8))  # the grid is turned a little clockwise off east-west
    second = base + np.deg2rad(90 + rng.uniform(-10, 10))
    lines, cls = [], []
    for angle in (base, second):
        off = rng.uniform(0, _ARTERIAL_SPACING_M)
        for g in _family(b, angle, _ARTERIAL_SPACING_M, off, rng, amp=(40, 160), jitter_m=110):
            lines.append(g)
            cls.append("arterial")
        for g in _family(b, angle + rng.normal(0, 0.03), _ARTERIAL_SPACING_M, off + _ARTERIAL_SPACING_M / 2, rng,
                         amp=(20, 90), jitter_m=60):
            lines.append(g)
            cls.append("collector")
    diag = base + np.deg2rad(rng.uniform(35, 55))
    span = np.hypot(b[2] - b[0], b[3] - b[1])
    mid = _family(b, diag, 2 * span, 2.5 * span, rng, amp=(200, 400), jitter_m=300)
    lines.append(mid[0])  # one expressway across the middle
    cls.append("expressway")
    clipped = shapely.intersection(np.asarray(lines, dtype=object), area_m)
    out = street_frame(list(clipped), cls, [STREET_WIDTH_M[c] for c in cls])
    # leave out some collector pieces (between arterials) so the mesh is not perfectly regular
    piece_len = out.length.to_numpy()
    drop = (out["class"].to_numpy() == "collector") & (rng.random(len(out)) < 0.12) & (piece_len < 1500)
    return out[~drop].reset_index(drop=True)


def local_streets(superblocks: np.ndarray, spacing_m: np.ndarray, village: np.ndarray,
                  rng: np.random.Generator) -> gpd.GeoDataFrame:
    """Local streets inside each superblock polygon (EPSG:4547): lanes parallel to the long and short sides of
    its minimum rotated rectangle, ``spacing_m`` apart along the short side and 1.6 × apart along the long side
    (0 = none); ``village`` superblocks get narrow lanes, slightly skewed."""
    rects = shapely.oriented_envelope(superblocks)
    segs: list[np.ndarray] = []
    owners: list[int] = []
    for i, (rect, s) in enumerate(zip(rects, spacing_m)):
        if s <= 0 or rect.geom_type != "Polygon":
            continue
        xy = np.asarray(rect.exterior.coords)[:4]
        e1, e2 = xy[1] - xy[0], xy[3] - xy[0]
        if np.hypot(*e1) < np.hypot(*e2):
            e1, e2 = e2, e1
        origin = xy[0]
        len1, len2 = np.hypot(*e1), np.hypot(*e2)
        u1, u2 = e1 / len1, e2 / len2
        skew = rng.normal(0, 0.06 if village[i] else 0.015)
        # lanes along the long side, every s across the short side
        for off in np.arange(s * rng.uniform(0.4, 0.9), len2 - 0.3 * s, s * rng.uniform(0.9, 1.1)):
            p = origin + u2 * (off + rng.normal(0, 0.06 * s))
            q = p + e1 + u2 * skew * len1
            segs.append(np.array([p - u1 * 5, q + u1 * 5]))
            owners.append(i)
        s_long = 1.6 * s
        for off in np.arange(s_long * rng.uniform(0.4, 0.9), len1 - 0.3 * s_long, s_long * rng.uniform(0.9, 1.15)):
            p = origin + u1 * (off + rng.normal(0, 0.08 * s_long))
            q = p + e2 + u1 * skew * len2
            segs.append(np.array([p - u2 * 5, q + u2 * 5]))
            owners.append(i)
    if not segs:
        return street_frame([], [], [])
    lines = shapely.linestrings(np.stack(segs))
    clipped = shapely.intersection(lines, superblocks[np.asarray(owners)])
    is_village = village[np.asarray(owners)]
    cls = ["local"] * len(clipped)
    width = np.where(is_village, LANE_WIDTH_M, STREET_WIDTH_M["local"])
    return street_frame(list(clipped), cls, list(width))
