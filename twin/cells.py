"""H3 indexing: the only module that calls :mod:`h3`.

Cells are H3 v4 indexes held as ``uint64`` numpy arrays (the ``h3.api.numpy_int`` API). h3 takes (lat, lng);
shapely and GeoJSON take (x=lng, y=lat): the conversions stay in this module.

The twin's canonical partition is at :data:`PARTITION_RES` = 11 (mean hexagon ≈ 2,150 m², edge ≈ 28 m; the
district is covered by ≈ 74,000 cells).
"""

from __future__ import annotations

import h3
import h3.api.numpy_int as h3n
import numpy as np
import scipy.sparse as sp
import shapely
from shapely.geometry import MultiPolygon, Polygon, shape
from shapely.geometry.base import BaseGeometry

from twin.errors import ValidationError

__all__ = [
    "PARTITION_RES",
    "geometry_to_cells",
    "latlng_to_cells",
    "cells_to_latlng",
    "cells_to_parent",
    "cells_to_children",
    "cells_to_geometry",
    "cell_boundaries",
    "cells_adjacency",
    "cell_edge_m",
]

PARTITION_RES = 11


def geometry_to_cells(geom: BaseGeometry, res: int, *, contain: str = "center") -> np.ndarray:
    """Cells covering a WGS84 (Multi)Polygon.

    ``contain`` follows h3 v4: ``"center"`` (cell centre inside), ``"overlap"`` (any overlap), ``"full"``.
    Returns sorted unique ``uint64`` cells.
    """
    if geom.is_empty:
        return np.empty(0, dtype=np.uint64)
    if not isinstance(geom, (Polygon, MultiPolygon)):
        raise ValidationError(f"geometry_to_cells needs a Polygon or MultiPolygon, got {geom.geom_type}.")
    h3shape = h3.geo_to_h3shape(geom)
    cells = h3n.h3shape_to_cells_experimental(h3shape, res, contain=contain)
    return np.unique(np.asarray(cells, dtype=np.uint64))


def latlng_to_cells(lat: np.ndarray, lng: np.ndarray, res: int) -> np.ndarray:
    """Vector of WGS84 points (lat, lng degrees) → ``uint64`` cells at ``res``."""
    lat_l = np.asarray(lat, dtype=float).tolist()
    lng_l = np.asarray(lng, dtype=float).tolist()
    f = h3n.latlng_to_cell
    return np.fromiter((f(a, b, res) for a, b in zip(lat_l, lng_l)), dtype=np.uint64, count=len(lat_l))


def cells_to_latlng(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cell centres as (lat, lng) arrays in degrees."""
    out = np.empty((len(cells), 2), dtype=float)
    f = h3n.cell_to_latlng
    for i, c in enumerate(np.asarray(cells, dtype=np.uint64).tolist()):
        out[i] = f(c)
    return out[:, 0], out[:, 1]


def cells_to_parent(cells: np.ndarray, res: int) -> np.ndarray:
    """Parent cell of each cell at coarser ``res``."""
    f = h3n.cell_to_parent
    arr = np.asarray(cells, dtype=np.uint64)
    return np.fromiter((f(c, res) for c in arr.tolist()), dtype=np.uint64, count=len(arr))


def cells_to_children(cells: np.ndarray, res: int) -> list[np.ndarray]:
    """Children of each cell at finer ``res`` (one array per input cell, in h3 order)."""
    f = h3n.cell_to_children
    return [np.asarray(f(c, res), dtype=np.uint64) for c in np.asarray(cells, dtype=np.uint64).tolist()]


def cell_boundaries(cells: np.ndarray) -> list[list[tuple[float, float]]]:
    """Boundary ring of each cell as [(lng, lat), …] (GeoJSON order, not closed)."""
    f = h3n.cell_to_boundary
    return [[(p[1], p[0]) for p in f(c)] for c in np.asarray(cells, dtype=np.uint64).tolist()]


def cells_to_geometry(cells: np.ndarray) -> BaseGeometry:
    """Union of a set of same-resolution cells as a shapely (Multi)Polygon in WGS84 (holes kept)."""
    arr = np.asarray(cells, dtype=np.uint64)
    if len(arr) == 0:
        return Polygon()
    h3shape = h3.cells_to_h3shape([h3.int_to_str(int(c)) for c in arr])
    return shapely.make_valid(shape(h3shape.__geo_interface__))


def cells_adjacency(cells: np.ndarray) -> sp.csr_matrix:
    """Symmetric adjacency (edge-sharing neighbours) among ``cells`` as a boolean CSR matrix.

    Row/column ``i`` is ``cells[i]``; cells outside the set are ignored.
    """
    arr = np.asarray(cells, dtype=np.uint64)
    order = np.argsort(arr)
    sorted_cells = arr[order]
    rows: list[int] = []
    cols: list[int] = []
    f = h3n.grid_ring
    for i, c in enumerate(arr.tolist()):
        ring = np.asarray(f(c, 1), dtype=np.uint64)
        pos = np.searchsorted(sorted_cells, ring)
        pos[pos >= len(sorted_cells)] = 0
        hit = sorted_cells[pos] == ring
        js = order[pos[hit]]
        rows.extend([i] * len(js))
        cols.extend(js.tolist())
    n = len(arr)
    data = np.ones(len(rows), dtype=bool)
    return sp.csr_matrix((data, (np.asarray(rows), np.asarray(cols))), shape=(n, n))


def cell_edge_m(res: int) -> float:
    """Mean hexagon edge length at ``res`` in metres."""
    return float(h3.average_hexagon_edge_length(res, unit="m"))
