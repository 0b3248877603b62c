"""Paged ids of the records (persons, buildings, businesses) inside a drawn area, for roles that may see records.

Inside = the building's point is covered by the area (a point on the boundary counts), as in
:mod:`twin.query.summary`. Only records in grids inside the role's record scope are returned
(:func:`twin.access.policy.record_scope_mask`); page sizes are capped at :data:`MAX_PAGE_SIZE`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from twin.access.policy import MAX_PAGE_SIZE, check_page, record_scope_mask, sees_everything
from twin.access.roles import DISTRICT, Role
from twin.errors import PermissionDenied, ValidationError
from twin.model import Twin
from twin.query._index import KINDS, _ranges, partition_index, point_index, points_inside
from twin.query.areas import AreaLike, parse_area

__all__ = ["RecordPage", "RecordKind", "records_in_area", "RECORD_KINDS", "MAX_PAGE_SIZE"]

RECORD_KINDS = ("persons", "buildings", "businesses")
RecordKind = Literal["persons", "buildings", "businesses"]


@dataclass
class RecordPage:
    """One page of record ids inside an area (ascending ids)."""

    kind: str
    ids: list[int]
    page: int
    page_size: int
    total: int

    @property
    def pages(self) -> int:
        return (self.total + self.page_size - 1) // self.page_size

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "ids": self.ids, "page": self.page, "page_size": self.page_size,
                "total": self.total, "pages": self.pages}


def records_in_area(
    t: Twin,
    area: AreaLike,
    kind: RecordKind,
    *,
    role: Role = DISTRICT,
    page: int = 0,
    page_size: int = MAX_PAGE_SIZE,
    from_gcj02: bool = False,
) -> RecordPage:
    """Ids of the persons, buildings or businesses inside an area, one page at a time (ascending ids).

    Parameters
    ----------
    t
        A loaded twin.
    area
        WGS84 (lng, lat) area, anything :func:`twin.query.areas.parse_area` accepts.
    kind
        ``"persons"``, ``"buildings"`` or ``"businesses"``.
    role
        Who asks: only records in grids of its record scope are returned.
    page, page_size
        0-based page and its size (1 … :data:`MAX_PAGE_SIZE`).
    from_gcj02
        The area's coordinates are GCJ-02 (Amap); convert to WGS84 first.

    Raises
    ------
    PermissionDenied
        The role may not see individual records (``role.can_see_records`` is False).
    ValidationError
        Unknown ``kind``, bad ``page``/``page_size``, or a bad area.
    """
    if not role.can_see_records:
        raise PermissionDenied(f"role {role.name!r} may not see individual records; use summarize_area for "
                               f"aggregate counts.")
    if kind not in RECORD_KINDS:
        raise ValidationError(f"unknown record kind {kind!r}; use one of {', '.join(RECORD_KINDS)}.")
    check_page(page, page_size)
    parsed = parse_area(area, district=t.district, from_gcj02=from_gcj02)
    pidx = point_index(t)
    part = partition_index(t)
    inside = points_inside(pidx, parsed.geometry).indices()
    inside = inside[pidx.points.kind[inside] == KINDS.index("buildings")]
    if not sees_everything(role):
        pg = part.point_grid[inside]
        inside = inside[(pg >= 0) & record_scope_mask(role, t)[np.maximum(pg, 0)]]
    bpos = np.sort(pidx.points.rec[inside].astype(np.int64))
    if kind == "buildings":
        ids = t.buildings["building_id"].to_numpy()[bpos]
    else:
        order, offsets, id_col = _by_building(t, kind)
        rows = order[_ranges(offsets[bpos], offsets[bpos + 1])]
        ids = getattr(t, kind)[id_col].to_numpy()[rows]
    ids = np.sort(ids)
    chunk = ids[page * page_size:(page + 1) * page_size]
    return RecordPage(kind, [int(i) for i in chunk], int(page), int(page_size), len(ids))


def _by_building(t: Twin, kind: str) -> tuple[np.ndarray, np.ndarray, str]:
    """Rows of ``t.persons``/``t.businesses`` grouped by building position: (order, offsets, id column)."""
    frame = getattr(t, kind)
    key = f"query.by_building.{kind}"
    hit = t.cache.get(key)
    if hit is not None and hit[0] is frame and hit[1] is t.buildings:
        return hit[2]
    ids = t.buildings["building_id"].to_numpy()
    bpos = pd.Index(ids).get_indexer(frame["building_id"].to_numpy())
    if (bpos < 0).any():
        raise ValidationError(f"{kind} refer to unknown building ids, e.g. "
                              f"{frame['building_id'].to_numpy()[bpos < 0][:3].tolist()}; rebuild the twin.")
    order = np.argsort(bpos, kind="stable")
    offsets = np.concatenate([[0], np.cumsum(np.bincount(bpos, minlength=len(ids)))]).astype(np.int64)
    value = (order, offsets, "person_id" if kind == "persons" else "business_id")
    t.cache[key] = (frame, t.buildings, value)
    return value
