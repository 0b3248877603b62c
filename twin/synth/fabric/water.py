"""Synthetic water (labelled synthetic), EPSG:4547 metres: the river channel along the population surface's empty
river line, fish ponds (鱼塘) filling farm blocks where the population surface is empty, lakes in parks."""

from __future__ import annotations

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from twin.crs import lnglat_to_xy
from twin.synth.population import _RIVER, _RIVER_HALF_WIDTH_M

__all__ = ["river_channel", "fish_ponds", "park_lakes", "RIVER_WIDTH_M"]

RIVER_WIDTH_M = 2 * _RIVER_HALF_WIDTH_M - 40.0  # inside the raster's empty river band: no one lives on the water
_POND_M = (70.0, 45.0)  # a fish pond's sides (m)
_DYKE_M = 9.0  # the embankment between ponds (m)


def _chaikin(xy: np.ndarray, rounds: int = 4) -> np.ndarray:
    """Corner-cutting smoothing of a polyline (keeps both ends)."""
    for _ in range(rounds):
        q = 0.75 * xy[:-1] + 0.25 * xy[1:]
        r = 0.25 * xy[:-1] + 0.75 * xy[1:]
        mid = np.empty((2 * len(q), 2))
        mid[0::2], mid[1::2] = q, r
        xy = np.vstack([xy[:1], mid, xy[-1:]])
    return xy


def river_channel(area_m: BaseGeometry) -> BaseGeometry:
    """The river (a smoothed channel :data:`RIVER_WIDTH_M` wide) clipped to ``area_m``; may be empty."""
    x, y = lnglat_to_xy(np.array([p[0] for p in _RIVER]), np.array([p[1] for p in _RIVER]))
    line = shapely.LineString(_chaikin(np.column_stack([x, y])))
    return shapely.intersection(line.buffer(RIVER_WIDTH_M / 2, cap_style="flat"), area_m)


def fish_ponds(blocks: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Rectangular ponds on a lattice aligned with each block (EPSG:4547 polygons); returns (ponds, block index).

    A pond is kept only when it lies wholly inside its block, so ponds never touch streets or each other.
    """
    rects = shapely.oriented_envelope(blocks)
    polys, owner = [], []
    for i, (blk, rect) in enumerate(zip(blocks, rects)):
        if rect.geom_type != "Polygon":
            continue
        xy = np.asarray(rect.exterior.coords)[:4]
        e1, e2 = xy[1] - xy[0], xy[3] - xy[0]
        l1, l2 = np.hypot(*e1), np.hypot(*e2)
        u1, u2 = e1 / l1, e2 / l2
        a, b = _POND_M[0] * rng.uniform(0.8, 1.3), _POND_M[1] * rng.uniform(0.8, 1.3)
        n1, n2 = int(l1 // (a + _DYKE_M)), int(l2 // (b + _DYKE_M))
        if n1 == 0 or n2 == 0:
            continue
        g1 = (np.arange(n1) + 0.5) * (a + _DYKE_M) + (l1 - n1 * (a + _DYKE_M)) / 2
        g2 = (np.arange(n2) + 0.5) * (b + _DYKE_M) + (l2 - n2 * (b + _DYKE_M)) / 2
        s1, s2 = np.meshgrid(g1, g2)
        corners = np.array([[-a, -b], [a, -b], [a, b], [-a, b], [-a, -b]]) / 2
        lx = s1.ravel()[:, None] + corners[None, :, 0]
        ly = s2.ravel()[:, None] + corners[None, :, 1]
        ring = np.stack([xy[0, 0] + lx * u1[0] + ly * u2[0], xy[0, 1] + lx * u1[1] + ly * u2[1]], axis=2)
        cand = shapely.polygons(ring)
        keep = shapely.contains(blk, cand) & (rng.random(len(cand)) < 0.9)
        polys.extend(cand[keep])
        owner.extend([i] * int(keep.sum()))
    return np.asarray(polys, dtype=object), np.asarray(owner, dtype=np.int64)


def park_lakes(parks: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """An irregular lake inside each park block larger than 4 ha (EPSG:4547); returns (lakes, park index)."""
    polys, owner = [], []
    for i, park in enumerate(parks):
        if park.area < 40_000:
            continue
        inner = park.buffer(-25.0)
        if inner.is_empty:
            continue
        c = inner.representative_point()
        r = np.sqrt(park.area) * rng.uniform(0.18, 0.28)
        ang = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        rad = r * (1 + 0.25 * np.sin(3 * ang + rng.uniform(0, 6)) + 0.1 * np.sin(5 * ang + rng.uniform(0, 6)))
        lake = shapely.intersection(shapely.Polygon(np.column_stack([c.x + rad * np.cos(ang),
                                                                     c.y + 0.7 * rad * np.sin(ang)])), inner)
        if not lake.is_empty and lake.area > 500:
            polys.append(lake)
            owner.append(i)
    return np.asarray(polys, dtype=object), np.asarray(owner, dtype=np.int64)
