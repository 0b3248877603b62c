"""The role-independent core of an area query: which points an area covers and their sums (one pass of the
compiled kernels, :mod:`twin.query._kernels`), and a cache of the cores of areas that are exactly a unit
outline (district, town, community, grid). Private to :mod:`twin.query.summary`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from twin.model import COUNT_KEYS, Twin
from twin.query._index import (
    EDGE_EPS_DEG,
    Inside,
    PartitionIndex,
    PointIndex,
    decide_unsure,
    polygon_edges,
)
from twin.query._kernels import cover_and_sum, sum_covered
from twin.query.areas import ParsedArea, parse_area

_RESIDENTS_COL = COUNT_KEYS.index("residents")


@dataclass(frozen=True)
class Breakdown:
    """Touched grids ``gi`` (ascending, PartitionIndex order) with their COUNT_KEYS sums inside the area and
    their share of residents inside; their communities ``ci`` and towns ``ti`` with summed rows."""

    gi: np.ndarray
    grid_values: np.ndarray
    share: np.ndarray
    ci: np.ndarray
    community_values: np.ndarray
    ti: np.ndarray
    town_values: np.ndarray


@dataclass(frozen=True)
class Core:
    """The role-independent part of a summary: column sums, the touched ``t.cells`` rows (sorted), the touched
    grids and, when asked for, the breakdown by grid/community/town."""

    inside: Inside
    sums: np.ndarray
    cell_pos: np.ndarray
    gi: np.ndarray
    breakdown: Breakdown | None


def area_core(pidx: PointIndex, part: PartitionIndex, parsed: ParsedArea, *, with_grids: bool) -> Core:
    pts = pidx.points
    geom = parsed.geometry
    sum_args = (pidx.cum, pidx.feats, part.point_grid, pts.cell_pos, part.cell_grid, part.grid_totals_k,
                part.grid_community, len(part.community_codes), part.grid_town, len(part.town_codes),
                _RESIDENTS_COL, with_grids)
    starts, stops, edge, unsure, sums, cell_pos, gi, *rest = cover_and_sum(
        polygon_edges(geom), parsed.bounds, pidx.x0, pidx.y0, pidx.dx, pidx.dy, pidx.nx, pidx.ny, pts.bin_start,
        pts.x, pts.y, EDGE_EPS_DEG, *sum_args)
    if len(unsure):  # points within 1e-9° of the boundary (rare): shapely decides them, then sum again
        edge = decide_unsure(pidx, geom, edge, unsure)
        sums, cell_pos, gi, *rest = sum_covered(starts, stops, edge, *sum_args)
    inside = Inside(starts, stops, edge, len(pts.x))
    return Core(inside, sums, np.sort(cell_pos), gi, Breakdown(gi, *rest) if with_grids else None)



_MAX_CACHED = 256


class UnitCache:
    """Parse results and role-independent cores of areas that are exactly a unit outline (district, town,
    community, grid), found by bounds then WKB of the geometry. Only these are cached — never an arbitrary
    lasso — so repeated queries of a community or of the whole district skip parsing, clipping and point tests.
    """

    def __init__(self, wkbs: set[bytes], bounds: set[tuple[float, ...]]) -> None:
        self.wkbs = wkbs
        self.bounds = set(bounds)  # cheap prefilter: a geometry's bounds (≈ 1 µs) before its WKB
        self.parsed: dict[bytes, ParsedArea] = {}
        self.cores: dict[bytes, tuple[PointIndex, PartitionIndex, Core]] = {}
        self.core_keys: set[bytes] = set(wkbs)  # plus clipped geometries of units

    def _key(self, geom: BaseGeometry, bounds: tuple[float, ...], keys: set[bytes]) -> bytes | None:
        if bounds not in self.bounds:
            return None
        key = shapely.to_wkb(geom)
        return key if key in keys else None

    def parse(self, geom: BaseGeometry, bounds: tuple[float, ...], district: BaseGeometry) -> ParsedArea | None:
        key = self._key(geom, bounds, self.wkbs)
        if key is None:
            return None
        hit = self.parsed.get(key)
        if hit is None:
            hit = parse_area(geom, district=district)
            if len(self.parsed) >= _MAX_CACHED:
                self.parsed.pop(next(iter(self.parsed)))
            self.parsed[key] = hit
            self.core_keys.add(shapely.to_wkb(hit.geometry))
            self.bounds.add(hit.geometry.bounds)
        return hit

    def core(self, parsed: ParsedArea, pidx: PointIndex, part: PartitionIndex) -> Core | None:
        key = self._key(parsed.geometry, parsed.bounds, self.core_keys)
        if key is None:
            return None
        hit = self.cores.get(key)
        if hit is not None and hit[0] is pidx and hit[1] is part:
            return hit[2]
        core = area_core(pidx, part, parsed, with_grids=True)
        if len(self.cores) >= _MAX_CACHED:
            self.cores.pop(next(iter(self.cores)))
        self.cores[key] = (pidx, part, core)
        return core


def unit_cache(t: Twin) -> UnitCache:
    hit = t.cache.get("query.units")
    if hit is not None:  # checked on every query: keep it cheap
        f = hit[0]
        if f[0] is t.district and f[1] is t.towns and f[2] is t.communities and f[3] is t.grids:
            return hit[1]
    frames = (t.district, t.towns, t.communities, t.grids)
    geoms = [t.district] + [g for f in frames[1:] if "geometry" in f for g in np.asarray(f.geometry.values)]
    units = UnitCache(set(shapely.to_wkb(np.asarray(geoms, dtype=object)).tolist()),
                   {tuple(b) for b in shapely.bounds(np.asarray(geoms, dtype=object)).tolist()})
    t.cache["query.units"] = (frames, units)
    return units


def unit_keys(t: Twin) -> tuple[set[bytes], set[tuple[float, ...]]]:
    """The WKBs and bounds by which :func:`unit_cache` recognises ``t``'s unit outlines (to seed another process's
    copy of ``t``: :func:`seed_unit_cache`)."""
    units = unit_cache(t)
    return set(units.wkbs), set(units.bounds)


def seed_unit_cache(t: Twin, wkbs: set[bytes], bounds: set[tuple[float, ...]]) -> None:
    """Install an empty :class:`UnitCache` of ``t``'s unit outlines from :func:`unit_keys` of an equal twin (made
    elsewhere: ≈ 4 ms of WKB encoding saved)."""
    t.cache["query.units"] = ((t.district, t.towns, t.communities, t.grids), UnitCache(set(wkbs), set(bounds)))
