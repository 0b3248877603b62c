"""Draw an area, see what is inside: exact counts and per-grid/community/town breakdowns (:func:`summarize_area`).

"Inside" is exact point-in-polygon on WGS84 (lng, lat) treated as planar coordinates (what shapely and
geopandas do): a building — and every resident, dwelling and business in it — counts by its point
(``buildings.lng/lat``, the footprint centroid); cameras and grid workers count by their own point. A point
**on the boundary counts as inside** (shapely ``covers`` / ``intersects_xy``), everywhere in this package.

What a role sees (分权分域, 可用不可见) is decided by :func:`twin.access.policy.scope_area`, the engine the HTTP
service uses too: a role whose record scope is the whole district gets every count exactly (a fast path with
no suppression cost); any other role gets the grids of its record scope exactly and the rest of the area as
one aggregate of whole outside grids, each rounded to a multiple of k or suppressed (``docs/privacy.md``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

import numpy as np
import pandas as pd

from twin.access.policy import (
    DEFAULT_POLICY,
    AccessPolicy,
    AreaCounts,
    record_scope_mask,
    scope_area,
    sees_everything,
)
from twin.access.roles import DISTRICT, Role
from twin.errors import ValidationError
from twin.model import COUNT_KEYS, Twin
from twin.query._cells import ensure_cell_values
from twin.query._cover import Breakdown, Core, UnitCache, area_core, unit_cache
from twin.query._index import (
    CREDIT_COLOURS,
    PartitionIndex,
    PointIndex,
    group_sum,
    partition_cell_areas_km2,
    partition_index,
    point_index,
)
from twin.query._kernels import grid_sums_covered
from twin.query.areas import AreaLike, ParsedArea, area_geometry, parse_area
from twin.query.results import AreaSummary, _Table

__all__ = ["AreaSummary", "By", "summarize_area", "summarize_parsed", "COUNT_KEYS", "DENSITY_KEYS"]

DENSITY_KEYS = ("residents", "disabled", "low_income", "pregnant", "elderly_70", "elderly_80")
By = Literal["grid", "community", "town"] | None


def summarize_area(
    t: Twin,
    area: AreaLike,
    *,
    role: Role = DISTRICT,
    by: By = "grid",
    density: bool = False,
    from_gcj02: bool = False,
    policy: AccessPolicy = DEFAULT_POLICY,
) -> AreaSummary:
    """Counts of everything inside a drawn area, as ``role`` may see them.

    Parameters
    ----------
    t
        A loaded :class:`twin.Twin`.
    area
        WGS84 (lng, lat) area: a shapely Polygon/MultiPolygon, anything with ``__geo_interface__`` (geopandas),
        or GeoJSON (geometry, Feature, FeatureCollection; dict or str) — see
        :func:`twin.query.areas.parse_area`; clipped to the district.
    role
        Who asks; with ``policy`` decides what is exact and what is suppressed (:mod:`twin.access.policy`).
    by
        Finest breakdown to build: ``"grid"`` (grids, communities and towns), ``"community"`` (communities and
        towns), ``"town"``, or ``None`` (no breakdown; fastest).
    density
        Also return per-cell key-population counts and densities per km² (EPSG:4547 cell areas).
    from_gcj02
        The area's coordinates are GCJ-02 (Amap); convert to WGS84 first.
    policy
        Outside-scope policy and threshold (default: suppressed aggregates, k = 5), as the service's.

    Returns
    -------
    AreaSummary

    Raises
    ------
    ValidationError, CRSError, OutsideDistrictError
        Bad area (see :func:`twin.query.areas.parse_area`) or bad ``by``.
    PermissionDenied
        ``policy.outside == "deny"`` and the area reaches outside a scoped role's record scope.

    Examples
    --------
    >>> s = summarize_area(t, {"type": "Polygon", "coordinates": [[[113.10, 23.02], [113.12, 23.02],
    ...                         [113.12, 23.04], [113.10, 23.02]]]})          # doctest: +SKIP
    >>> s.totals["residents"], s.by_grid[["grid_code", "residents"]].head(2)   # doctest: +SKIP
    """
    _check_by(by)
    geom = area_geometry(area)
    units = None if from_gcj02 else unit_cache(t)
    entry = units.parse(geom, geom.bounds, t.district) if units is not None else None
    parsed = entry if entry is not None else parse_area(geom, district=t.district, from_gcj02=from_gcj02)
    return _summarize(t, parsed, role=role, by=by, density=density, units=units, policy=policy)


def summarize_parsed(t: Twin, parsed: ParsedArea, *, role: Role = DISTRICT, by: By = "grid",
                     density: bool = False, policy: AccessPolicy = DEFAULT_POLICY) -> AreaSummary:
    """:func:`summarize_area` for an already validated :class:`twin.query.areas.ParsedArea`."""
    _check_by(by)
    return _summarize(t, parsed, role=role, by=by, density=density, units=unit_cache(t), policy=policy)


def _check_by(by: object) -> None:
    if by not in ("grid", "community", "town", None):
        raise ValidationError(f"by must be 'grid', 'community', 'town' or None, got {by!r}.")


def _summarize(t: Twin, parsed: ParsedArea, *, role: Role, by: By, density: bool,  # noqa: PLR0913
               units: UnitCache | None, policy: AccessPolicy) -> AreaSummary:
    pidx = point_index(t)
    part = partition_index(t)
    core = units.core(parsed, pidx, part) if units is not None else None
    if core is None or (by is not None and core.breakdown is None):
        core = area_core(pidx, part, parsed, with_grids=by is not None)
    cells = pidx.cell_ids[core.cell_pos]
    if sees_everything(role):
        return _exact(t, parsed, pidx, part, core, cells, by=by, density=density, k=policy.k_for(role))
    counts = _area_counts(t, pidx, part, core, cells)
    scoped = scope_area(counts, role, t, policy)
    tables: dict[str, Mapping[str, Any]] = {}
    if by is not None and core.breakdown is not None:
        mask = record_scope_mask(role, t)
        tables = _tables(part, core.breakdown, by, rows=np.flatnonzero(scoped.inside_mask),
                         communities=_all_in(mask, part.grid_community, len(part.community_codes)),
                         towns=_all_in(mask, part.grid_town, len(part.town_codes)))
    seen = scoped.cells if scoped.cells is not None else cells[:0]
    dens = None
    if density:  # cells of the record scope only: per-cell counts outside it would split the outside aggregate
        dens = _density(t, pidx, core, cells)
        dens = dens.loc[np.isin(cells, seen)].reset_index(drop=True)
    return AreaSummary(parsed.area_km2, parsed.clipped, list(parsed.warnings), scoped.totals,
                       scoped.buildings_by_use, scoped.businesses_by_credit, seen, scoped.suppressed, _version(t),
                       dens, tables, scoped.outside, scoped.k)


def _exact(t: Twin, parsed: ParsedArea, pidx: PointIndex, part: PartitionIndex, core: Core,  # noqa: PLR0913
           cells: np.ndarray, *, by: By, density: bool, k: int) -> AreaSummary:
    """The summary of a role that sees everything: every count exact, nothing suppressed (the fast path)."""
    sums_list = core.sums.tolist()
    totals: dict[str, int | None] = dict(zip(COUNT_KEYS, sums_list[:len(COUNT_KEYS)]))  # COUNT_KEYS come first
    by_use: dict[str, int | None] = {u: sums_list[pidx.use_cols[i]] for i, u in enumerate(pidx.uses)}
    by_credit: dict[str, int | None] = {c: sums_list[pidx.credit_cols[i]] for i, c in enumerate(CREDIT_COLOURS)}
    tables = _tables(part, core.breakdown, by) if by is not None and core.breakdown is not None else {}
    dens = _density(t, pidx, core, cells) if density else None
    return AreaSummary(parsed.area_km2, parsed.clipped, list(parsed.warnings), totals, by_use, by_credit, cells,
                       [], _version(t), dens, tables, None, k,
                       _counts=_lazy(lambda: _area_counts(t, pidx, part, core, cells)))


def _lazy(make: Callable[[], AreaCounts]) -> Callable[[], AreaCounts]:
    hit: list[AreaCounts] = []

    def get() -> AreaCounts:
        if not hit:
            hit.append(make())
        return hit[0]

    return get


def _area_counts(t: Twin, pidx: PointIndex, part: PartitionIndex, core: Core, cells: np.ndarray) -> AreaCounts:
    """Exact per-grid sums of every index column (counts, uses, credit colours) of the touched grids."""
    ensure_cell_values(t)
    ins = core.inside
    per_grid = grid_sums_covered(ins.starts, ins.stops, ins.edge, pidx.cum, pidx.feats, part.point_grid,
                                 len(part.grid_codes))
    values = per_grid[core.gi]
    codes = _str_codes(t, part)
    g = part.cell_grid[core.cell_pos]
    cell_grids = np.where(g >= 0, codes[np.maximum(g, 0)], "")
    return AreaCounts(codes[core.gi], pidx.columns, values,
                      np.asarray(core.sums, dtype=np.int64) - values.sum(axis=0), cells, cell_grids,
                      cell_rows=core.cell_pos)


def _str_codes(t: Twin, part: PartitionIndex) -> np.ndarray:
    """``part.grid_codes`` as a numpy unicode array (made once per partition index: converting the touched cells'
    object codes on every summary cost more than the summary's kernels)."""
    hit = t.cache.get("query.grid_codes_str")
    if hit is not None and hit[0] is part:
        return hit[1]
    codes = np.asarray(part.grid_codes, dtype=str)
    t.cache["query.grid_codes_str"] = (part, codes)
    return codes


def _all_in(grid_mask: np.ndarray, parent: np.ndarray, n: int) -> np.ndarray:
    """Per parent unit (community/town): every one of its grids is in ``grid_mask``."""
    ok = parent >= 0
    return np.bincount(parent[ok], weights=(~grid_mask[ok]).astype(float), minlength=n) == 0


def _tables(part: PartitionIndex, bd: Breakdown, by: str, *, rows: np.ndarray | None = None,
            communities: np.ndarray | None = None, towns: np.ndarray | None = None) -> dict[str, Mapping[str, Any]]:
    """The breakdown columns down to ``by``; only grid ``rows`` (positions in ``bd.gi``) and the communities /
    towns flagged in ``communities`` / ``towns`` (all when ``None``)."""

    def pick(idx: np.ndarray, values: np.ndarray, keep: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        if keep is None:
            return idx, values
        sel = np.flatnonzero(keep[idx])
        return idx[sel], values[sel]

    tables: dict[str, Mapping[str, Any]] = {}
    if by == "grid":
        sel = slice(None) if rows is None else rows
        gi, values, share = bd.gi[sel], bd.grid_values[sel], bd.share[sel]
        head: dict[str, Any] = {"grid_code": part.grid_codes[gi], "grid_name": part.grid_names[gi],
                                "community_code": part.grid_community_code[gi], "town_code": part.grid_town_code[gi]}
        tab = _Table(head, values, np.zeros(values.shape, dtype=bool))
        tab.tail["share_of_grid_residents"] = (share, np.isnan(share))  # missing where the grid has no residents
        tables["by_grid"] = tab
    if by in ("grid", "community"):
        ci, values = pick(bd.ci, bd.community_values, communities)
        head = {"community_code": part.community_codes[ci], "community_name": part.community_names[ci],
                "town_code": part.community_town_code[ci]}
        tables["by_community"] = _Table(head, values, np.zeros(values.shape, dtype=bool))
    ti, values = pick(bd.ti, bd.town_values, towns)
    tables["by_town"] = _Table({"town_code": part.town_codes[ti], "town_name": part.town_names[ti]}, values,
                               np.zeros(values.shape, dtype=bool))
    return tables


def _density(t: Twin, pidx: PointIndex, core: Core, cells: np.ndarray) -> pd.DataFrame:
    """Per touched cell: the :data:`DENSITY_KEYS` counts inside the area, the cell's km² and densities."""
    inside = core.inside.indices()
    cell_pos = core.cell_pos
    cp = pidx.points.cell_pos[inside]
    ok = cp >= 0
    slot = pd.Index(cell_pos).get_indexer(cp[ok])
    cols = [pidx.col(k) for k in DENSITY_KEYS]
    counts = group_sum(slot, pidx.feats[inside[ok]][:, cols], len(cell_pos))
    areas = partition_cell_areas_km2(t)[cell_pos]
    out: dict[str, Any] = {"cell": cells, "area_km2": areas}
    for j, k in enumerate(DENSITY_KEYS):
        out[k] = pd.array(counts[:, j], dtype="Int64")
        out[f"{k}_per_km2"] = pd.array(counts[:, j] / np.where(areas > 0, areas, np.nan), dtype="Float64")
    return pd.DataFrame(out)


def _version(t: Twin) -> str | None:
    v = getattr(t, "partition_version", None)
    if v is None:
        v = t.manifest.get("partition_version")
    return None if v is None else str(v)

