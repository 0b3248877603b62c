"""Partition value and rules (twin.partition.model): small synthetic partitions plus the default twin."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from shapely.geometry import box

import twin
from twin.cells import PARTITION_RES, cells_to_latlng, geometry_to_cells
from twin.crs import geometry_to_storage, lnglat_to_xy
from twin.errors import NotFoundError, PartitionError
from twin.partition.model import (
    Partition,
    check_partition,
    next_grid_codes,
    partition_from_twin,
    reassign_workers,
    validate_partition,
)


def synthetic(size_m: float = 700.0) -> Partition:
    """A square of H3 cells: community C1 (west) with grids C1001 (south) / C1002 (north), C2 (east) with
    C2001 (south) / C2002 (north)."""
    x0, y0 = lnglat_to_xy(np.array([113.10]), np.array([23.00]))
    sq = geometry_to_storage(box(x0[0], y0[0], x0[0] + size_m, y0[0] + size_m))
    cells = geometry_to_cells(sq, PARTITION_RES)
    lat, lng = cells_to_latlng(cells)
    x, y = lnglat_to_xy(lng, lat)
    west = x < np.median(x)
    south = y < np.median(y)
    codes = np.where(west, np.where(south, "C1001", "C1002"), np.where(south, "C2001", "C2002"))
    grids = pd.DataFrame({"grid_code": ["C1001", "C1002", "C2001", "C2002"],
                          "grid_name": ["C1第1网格", "C1第2网格", "C2第1网格", "C2第2网格"],
                          "community_code": ["C1", "C1", "C2", "C2"], "town_code": ["T", "T", "T", "T"]})
    return Partition.from_arrays(cells, codes, grids, weight=np.ones(len(cells)))


@pytest.fixture(scope="module")
def sp() -> Partition:
    return synthetic()


def test_synthetic_partition_is_valid(sp: Partition) -> None:
    assert check_partition(sp) == []
    assert sp.n_grids == 4
    assert np.all(sp.cells[1:] > sp.cells[:-1])
    assert set(sp.grid_code) == {"C1001", "C1002", "C2001", "C2002"}


def test_unassigned_cells_are_reported(sp: Partition) -> None:
    codes = sp.grid_code.copy()
    codes[:3] = ""
    problems = check_partition(sp.with_assignment(codes))
    assert any("3 cells belong to no grid" in p for p in problems)


def test_grid_outside_its_community_is_reported(sp: Partition) -> None:
    codes = sp.grid_code.copy()
    # give grid C1001 a cell of community C2 that touches it
    c1 = np.flatnonzero(codes == "C1001")
    nb = sp.adjacency[c1].indices
    foreign = [j for j in nb if sp.community[j] == "C2"][0]
    codes[foreign] = "C1001"
    problems = check_partition(sp.with_assignment(codes))
    assert any("grid C1001 (community C1) holds 1 cell(s) of community C2" in p for p in problems), problems


def test_non_contiguous_grid_is_reported_with_piece_sizes(sp: Partition) -> None:
    codes = sp.grid_code.copy()
    far = np.flatnonzero(codes == "C2002")
    far = far[np.argmax(sp.xy[far, 0] + sp.xy[far, 1])]  # the north-east corner, far from C2001
    codes[far] = "C2001"
    problems = check_partition(sp.with_assignment(codes))
    msg = [p for p in problems if "grid C2001 is split into 2 pieces" in p]
    assert msg and msg[0].endswith("a grid must be one contiguous piece.")
    assert "+ 1 cells" in msg[0]
    with pytest.raises(PartitionError, match="C2001"):
        validate_partition(sp.with_assignment(codes))


def test_empty_and_unknown_grids_are_reported(sp: Partition) -> None:
    extra = pd.concat([sp.grids, pd.DataFrame([{"grid_code": "C1003", "grid_name": "x", "community_code": "C1",
                                                "town_code": "T"}])])
    assert any("have no cells: ['C1003']" in p for p in check_partition(sp.with_assignment(sp.grid_code, extra)))
    codes = sp.grid_code.copy()
    codes[codes == "C1002"] = "ZZZ"
    assert any("missing from the grid table: ['ZZZ']" in p for p in check_partition(sp.with_assignment(codes)))


def test_from_arrays_sorts_cells_and_checks_lengths(sp: Partition) -> None:
    order = np.arange(len(sp.cells))[::-1]
    q = Partition.from_arrays(sp.cells[order], sp.grid_code[order], sp.grids)
    assert np.array_equal(q.cells, sp.cells)
    assert np.array_equal(q.grid_code, sp.grid_code)
    with pytest.raises(twin.ValidationError, match="one per cell"):
        Partition.from_arrays(sp.cells, sp.grid_code[:-1], sp.grids)
    with pytest.raises(NotFoundError, match="unknown grid code 'nope'"):
        sp.cells_of("nope")


def test_next_grid_codes_continue_the_sequence(sp: Partition) -> None:
    assert next_grid_codes(sp.grids, "C1", 2) == ["C1003", "C1004"]
    assert next_grid_codes(sp.grids, "C9", 1) == ["C9001"]


@pytest.fixture(scope="module")
def t() -> twin.Twin:
    return twin.load()


def test_default_twin_partition_is_valid_and_matches_validate(t: twin.Twin) -> None:
    p = partition_from_twin(t)
    assert check_partition(p) == []
    assert p.n_grids == len(t.grids)
    assert np.array_equal(p.grid_code.astype(str), t.cells["grid_code"].to_numpy().astype(str))
    assert twin.validate(t, cell_grid=p.grid_code).ok
    # every grid's cells lie in its community
    comm_of = dict(zip(t.grids["grid_code"], t.grids["community_code"]))
    assert all(comm_of[g] == c for g, c in zip(p.grid_code[::97], p.community[::97]))


def test_reassign_workers_covers_every_grid(t: twin.Twin) -> None:
    p = partition_from_twin(t)
    g = "440604010001001"
    codes = p.grid_code.copy()
    nb_grid = "440604010001002"
    codes[codes == g] = nb_grid  # grid g disappears (merged)
    grids = p.grids[p.grids["grid_code"] != g]
    q = p.with_assignment(codes, grids)
    w = reassign_workers(t.workers, q)
    assert len(w) == len(t.workers)
    assert set(w["grid_code"]) == set(q.grids["grid_code"])
    kept = t.workers["grid_code"] != g
    assert (w.loc[kept, "grid_code"] == t.workers.loc[kept, "grid_code"]).all()
