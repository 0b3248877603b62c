"""A small hand-built partition for the edit tests (imported by tests in this folder).

About 900 m × 900 m of H3 res-11 cells near (113.10°E, 23.00°N): west community C1 in three stripes south → north
(C1001, C1002, C1003), east community C2 in two (C2001 south, C2002 north); workload 1–7 per cell.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from shapely.geometry import box

from twin.cells import PARTITION_RES, cells_to_latlng, geometry_to_cells
from twin.crs import geometry_to_storage, lnglat_to_xy
from twin.partition.model import Partition, check_partition


def small_partition() -> Partition:
    """West community C1 in three stripes south→north (C1001, C1002, C1003); east community C2 in two (C2001, C2002)."""
    x0, y0 = lnglat_to_xy(np.array([113.10]), np.array([23.00]))
    sq = geometry_to_storage(box(x0[0], y0[0], x0[0] + 900, y0[0] + 900))
    cells = geometry_to_cells(sq, PARTITION_RES)
    lat, lng = cells_to_latlng(cells)
    x, y = lnglat_to_xy(lng, lat)
    west = x < x0[0] + 450
    band = np.minimum(((y - y0[0]) // 300).astype(int), 2)
    codes = np.where(west, np.array(["C1001", "C1002", "C1003"])[band], np.where(y < y0[0] + 450, "C2001", "C2002"))
    grids = pd.DataFrame({"grid_code": ["C1001", "C1002", "C1003", "C2001", "C2002"],
                          "grid_name": [f"C{c}第{s}网格" for c, s in ((1, 1), (1, 2), (1, 3), (2, 1), (2, 2))],
                          "community_code": ["C1", "C1", "C1", "C2", "C2"], "town_code": ["T"] * 5})
    weight = 1.0 + (np.arange(len(cells)) % 7)
    return Partition.from_arrays(cells, codes, grids, weight=weight)


def boundary_cell(p: Partition, src: str, dst: str) -> int:
    """A cell of ``src`` touching ``dst`` whose removal keeps ``src`` in one piece (row index)."""
    for i in np.flatnonzero(p.grid_code == src):
        nb = p.adjacency.indices[p.adjacency.indptr[i]:p.adjacency.indptr[i + 1]]
        if (p.grid_code[nb] == dst).any():
            codes = p.grid_code.copy()
            codes[i] = dst
            if not check_partition(p.with_assignment(codes), grids=[src, dst]):
                return int(i)
    raise AssertionError("no movable boundary cell")
