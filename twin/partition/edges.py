"""The cell-adjacency edges of a twin, each flagged *clear* when it lies on a street or water edge (界线清晰).

A twin built on the city fabric has blocks (``blocks.parquet``): faces of the street and water network less the
streets. Each H3 cell belongs to the block holding its centre (EPSG:4547); a centre on a street (in no block) takes
the nearest block, and a centre in water is a unit of its own (a boundary through water is clear). An edge between
two edge-sharing cells is **clear** when the two cells are in different blocks — the boundary there runs along a
street or water — and **through a block** when both are in the same block.

Twins built before the fabric have no blocks: :func:`cell_blocks` returns ``None`` and every edge is unflagged
(the street preference of the re-partition is then off). Results are cached in ``twin.cache``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import shapely

from twin.crs import lnglat_to_xy, to_metric
from twin.model import Twin

__all__ = ["cell_blocks", "blocks_for_cells", "clear_edges", "clear_share", "slot_clear"]


def cell_blocks(twin: Twin) -> np.ndarray | None:
    """Block label per ``twin.cells`` row (``int64``): the position in ``twin.blocks`` of the block holding the
    cell's centre (EPSG:4547), the nearest block for a centre on a street, and a label of its own (< 0) for a centre
    in water. ``None`` when the twin has no blocks (built before the city fabric). Cached in ``twin.cache``."""
    if twin.blocks is None or len(twin.blocks) == 0:
        return None
    got = twin.cache.get("cell_blocks")
    if got is not None:
        return got
    x, y = lnglat_to_xy(twin.cells["lng"].to_numpy(), twin.cells["lat"].to_numpy())
    pts = shapely.points(x, y)
    blocks = to_metric(twin.blocks).geometry.to_numpy()
    tree = shapely.STRtree(blocks)
    label = np.full(len(pts), -1, dtype=np.int64)
    pi, bi = tree.query(pts, predicate="within")
    label[pi] = bi  # blocks are disjoint: at most one hit per centre
    outside = np.flatnonzero(label < 0)
    if len(outside):
        in_water = np.zeros(len(outside), dtype=bool)
        if twin.water is not None and len(twin.water):
            wi = shapely.STRtree(to_metric(twin.water).geometry.to_numpy()).query(pts[outside], predicate="within")[0]
            in_water[wi] = True
        wet = outside[in_water]
        label[wet] = -1 - np.arange(len(wet))  # each water cell its own unit
        dry = outside[~in_water]
        if len(dry):
            near_p, near_b = tree.query_nearest(pts[dry], all_matches=False)
            label[dry[near_p]] = near_b
    twin.cache["cell_blocks"] = label
    return label


def blocks_for_cells(twin: Twin, cells: np.ndarray) -> np.ndarray | None:
    """:func:`cell_blocks` for ``cells`` (e.g. a partition's, ``uint64`` H3), or None without blocks or when a cell
    is not one of the twin's."""
    blocks = cell_blocks(twin)
    if blocks is None:
        return None
    own = twin.cells["cell"].to_numpy()
    if len(own) == len(cells) and np.array_equal(own, cells):
        return blocks
    order = np.argsort(own, kind="stable")
    at = order[np.clip(np.searchsorted(own, cells, sorter=order), 0, len(own) - 1)]
    return blocks[at] if np.array_equal(own[at], cells) else None


def clear_edges(adjacency: sp.spmatrix, blocks: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every edge once (``i < j``) of the cell ``adjacency``, with its flag: ``(i, j, clear)``, ``clear`` True
    where the two cells are in different blocks (the edge lies on a street or water). Without ``blocks`` every
    edge is unflagged (all False)."""
    coo = sp.triu(adjacency, k=1).tocoo()
    i, j = coo.row.astype(np.int64), coo.col.astype(np.int64)
    if blocks is None:
        return i, j, np.zeros(len(i), dtype=bool)
    b = np.asarray(blocks)
    return i, j, b[i] != b[j]


def slot_clear(slots: np.ndarray, blocks: np.ndarray | None) -> np.ndarray:
    """Per cell and ring slot (as :func:`twin.partition.rebalance._search.ring_slots`: neighbour index or -1), True
    where the edge to that neighbour is clear (different blocks). All False without ``blocks``."""
    if blocks is None:
        return np.zeros(slots.shape, dtype=bool)
    b = np.asarray(blocks)
    nb = b[np.maximum(slots, 0)]
    return (slots >= 0) & (nb != b[:, None])


def clear_share(unit_of_cell: np.ndarray, adjacency: sp.spmatrix, blocks: np.ndarray | None) -> float | None:
    """Share (0…1) of the boundary between units (edges between edge-sharing cells of different units; equal
    hexagon edges, so a share of length) that is clear (on a street or water edge). ``None`` without blocks or
    without any boundary. The block-based counterpart of :func:`twin.partition.validate.clear_boundary_share`."""
    if blocks is None:
        return None
    i, j, clear = clear_edges(adjacency, blocks)
    lab = np.unique(np.asarray(unit_of_cell).astype(str), return_inverse=True)[1]
    cut = lab[i] != lab[j]
    if not cut.any():
        return None
    return float(clear[cut].mean())

