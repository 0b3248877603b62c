"""Exact counts per partition cell (every :class:`twin.query._index.PointIndex` column), registered with the
disclosure engine (:func:`twin.access.policy.register_cell_values`), which answers every out-of-scope figure
from them in whole fixed units. Cells and points do not move with partition versions, so one matrix serves all
versions of a twin."""

from __future__ import annotations

import numpy as np

from twin.access.policy import register_cell_values
from twin.model import Twin
from twin.query._index import group_sum, point_index

_KEY = "query.cell_values"


def ensure_cell_values(t: Twin) -> None:
    """Compute (once per point index) and register ``t``'s per-cell counts with the access policy."""
    pidx = point_index(t)
    hit = t.cache.get(_KEY)
    if hit is not None and hit[0] is pidx and "access.cell_values" in t.cache:
        return
    cp = pidx.points.cell_pos
    values = group_sum(np.where(cp >= 0, cp, -1), pidx.feats, len(t.cells))
    values.setflags(write=False)
    t.cache[_KEY] = (pidx, values)
    register_cell_values(t, pidx.columns, values)
