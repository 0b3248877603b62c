"""Clear edges (twin.partition.edges): cells in different blocks ⇔ the edge lies on a street or water."""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.sparse as sp
import shapely

import twin
from twin.partition.edges import cell_blocks, clear_edges, clear_share, slot_clear
from twin.partition.model import partition_from_twin
from twin.partition.rebalance._search import ring_slots
from twin.partition.validate import _barriers


def _segment_crosses_barrier(t: twin.Twin, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Direct shapely check: does the segment joining the two cell centres cross a dividing street or water
    (EPSG:4547)? The rule `twin validate` uses."""
    tree, xy = _barriers(t)
    segs = shapely.linestrings(np.stack([xy[i], xy[j]], axis=1))
    hit = np.zeros(len(i), dtype=bool)
    hit[tree.query(segs, predicate="intersects")[0]] = True
    return hit


def test_cell_blocks_hold_the_cell_centres(small_twin: twin.Twin) -> None:
    b = cell_blocks(small_twin)
    assert b is not None and len(b) == len(small_twin.cells)
    assert cell_blocks(small_twin) is b  # cached
    # a sample of cells: the labelled block holds the centre (or is the nearest block to it)
    from twin.crs import lnglat_to_xy, to_metric

    rng = np.random.default_rng(0)
    sample = rng.choice(np.flatnonzero(b >= 0), 200, replace=False)
    x, y = lnglat_to_xy(small_twin.cells["lng"].to_numpy()[sample], small_twin.cells["lat"].to_numpy()[sample])
    blocks = to_metric(small_twin.blocks).geometry.to_numpy()
    d = shapely.distance(shapely.points(x, y), blocks[b[sample]])
    nearest = np.array([shapely.distance(shapely.Point(px, py), blocks).min() for px, py in zip(x, y)])
    assert np.allclose(d, nearest)
    assert (d == 0).mean() > 0.6  # most centres lie inside a block, the rest on a street (≈ 3 in 4 here)


def test_flags_agree_with_a_direct_shapely_check(small_twin: twin.Twin) -> None:
    p = partition_from_twin(small_twin)
    i, j, clear = clear_edges(p.adjacency, cell_blocks(small_twin))
    assert len(i) == p.adjacency.nnz // 2 and (i < j).all()
    crosses = _segment_crosses_barrier(small_twin, i, j)
    assert 0.2 < clear.mean() < 0.8  # blocks hold a few cells each: both kinds of edges are common
    # cells on both sides of a street (the segment between their centres crosses it) are in different blocks
    assert clear[crosses].mean() > 0.98
    # and cells in different blocks have a street or water between them
    assert crosses[clear].mean() > 0.95
    assert (crosses == clear).mean() > 0.97


def test_slot_flags_match_the_edge_flags(small_twin: twin.Twin) -> None:
    p = partition_from_twin(small_twin)
    b = cell_blocks(small_twin)
    slots = ring_slots(p.adjacency, p.xy)
    flags = slot_clear(slots, b)
    i, j, clear = clear_edges(p.adjacency, b)
    lookup = dict(zip(zip(i.tolist(), j.tolist()), clear.tolist()))
    rows, ks = np.nonzero(slots >= 0)
    for r, k in zip(rows[:3000].tolist(), ks[:3000].tolist()):
        n = int(slots[r, k])
        assert flags[r, k] == lookup[(min(r, n), max(r, n))]
    assert not flags[slots < 0].any()


def test_clear_share_hand_built() -> None:
    # a path of 4 cells 0-1-2-3; blocks {0,1} {2,3}: edge 1-2 is clear, 0-1 and 2-3 cut through a block
    adj = sp.csr_matrix(np.array([[0, 1, 0, 0], [1, 0, 1, 0], [0, 1, 0, 1], [0, 0, 1, 0]]))
    blocks = np.array([5, 5, 9, 9])
    assert clear_share(np.array(["a", "a", "b", "b"]), adj, blocks) == 1.0  # boundary on the street
    assert clear_share(np.array(["a", "b", "b", "b"]), adj, blocks) == 0.0  # through block 5
    assert clear_share(np.array(["a", "b", "c", "c"]), adj, blocks) == 0.5
    assert clear_share(np.array(["a"] * 4), adj, blocks) is None  # no boundary
    assert clear_share(np.array(["a", "b", "b", "b"]), adj, None) is None  # no blocks: feature off


def test_twin_without_blocks_has_every_edge_unflagged(small_twin: twin.Twin) -> None:
    old = dataclasses.replace(small_twin, blocks=None, cache={})
    assert cell_blocks(old) is None
    p = partition_from_twin(old)
    _, _, clear = clear_edges(p.adjacency, None)
    assert len(clear) and not clear.any()
    assert not slot_clear(ring_slots(p.adjacency, p.xy), None).any()
