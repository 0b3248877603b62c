"""`validate` finds each kind of partition problem."""

import numpy as np

from twin.partition.validate import validate


def _codes(t):
    return t.cells["grid_code"].to_numpy().astype(str).copy()


def test_unassigned_cell(default_twin):
    c = _codes(default_twin)
    c[100] = ""
    rep = validate(default_twin, cell_grid=c)
    assert not rep.ok and any("belong to no grid" in p for p in rep.problems)


def test_unknown_grid_code(default_twin):
    c = _codes(default_twin)
    c[5] = "999999999999999"
    rep = validate(default_twin, cell_grid=c)
    assert any("missing from the grid table" in p for p in rep.problems)


def test_non_contiguous_grid(default_twin):
    t = default_twin
    c = _codes(t)
    g0 = t.grids["grid_code"].iloc[0]
    far = np.flatnonzero(c != g0)
    # a cell far away from grid g0 given to g0 makes g0 two pieces
    lat = t.cells["lat"].to_numpy()
    c[far[np.argmin(lat[far])]] = g0
    rep = validate(t, cell_grid=c)
    assert any("non-contiguous grids" in p and g0 in p for p in rep.problems)


def test_grid_left_empty(default_twin):
    t = default_twin
    c = _codes(t)
    g0, g1 = t.grids["grid_code"].iloc[:2]
    c[c == g0] = g1
    rep = validate(t, cell_grid=c)
    assert any("have no cells" in p for p in rep.problems)
