"""Grid edits (twin.partition.edits) on a small synthetic partition: every operation and every rejection."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shapely.geometry import LineString, MultiPoint, box
from small_partition import boundary_cell, small_partition  # tests/partition/small_partition.py

from twin.crs import geometry_to_storage, xy_to_lnglat
from twin.errors import NotFoundError, PartitionError, ValidationError
from twin.partition.edits import merge_grids, move_area, move_cells, redraw_grid, split_grid
from twin.partition.model import check_partition

P = small_partition()
_boundary_cell = boundary_cell


def _metric_poly_to_storage(x0, y0, x1, y1):
    return geometry_to_storage(box(x0, y0, x1, y1))


def test_synthetic_is_valid() -> None:
    assert check_partition(P) == []


def test_move_cells_to_adjacent_grid() -> None:
    i = _boundary_cell(P, "C1001", "C1002")
    q = move_cells(P, [P.cells[i]], "C1002")
    assert q.grid_code[i] == "C1002"
    assert int((q.grid_code != P.grid_code).sum()) == 1
    assert check_partition(q) == []
    assert P.grid_code[i] == "C1001"  # the input is not modified


def test_move_rejects_cell_of_another_community() -> None:
    c2 = np.flatnonzero(P.grid_code == "C2001")
    j = [k for k in c2 if (P.grid_code[P.adjacency.indices[P.adjacency.indptr[k]:P.adjacency.indptr[k + 1]]]
                           == "C1001").any()][0]
    with pytest.raises(PartitionError, match=r"1 cell\(s\) belong to community C2 but grid C1001 is in community C1"):
        move_cells(P, [P.cells[j]], "C1001")


def test_move_rejects_non_adjacent_cells() -> None:
    far = np.flatnonzero(P.grid_code == "C1003")[0]
    with pytest.raises(PartitionError, match="grid C1001 is split into 2 pieces"):
        move_cells(P, [P.cells[far]], "C1001")


def test_move_rejects_disconnecting_the_losing_grid() -> None:
    # take a full south-north column through C1002 into C1001: C1002's remainder falls apart
    idx = np.flatnonzero(P.grid_code == "C1002")
    xs = P.xy[idx, 0]
    mid = np.median(xs)
    col = idx[np.abs(xs - mid) < 30]
    with pytest.raises(PartitionError, match=r"grid C1002 is split into \d+ pieces"):
        move_cells(P, P.cells[col], "C1001")


def test_move_rejects_emptying_a_grid_unknown_cells_and_grids() -> None:
    with pytest.raises(PartitionError, match=r"grid\(s\) \['C1002'\] would be left with no cells"):
        move_cells(P, P.cells[P.grid_code == "C1002"], "C1001")
    with pytest.raises(PartitionError, match="not cells of the district"):
        move_cells(P, [np.uint64(12345)], "C1001")
    with pytest.raises(NotFoundError, match="unknown grid code 'C9'"):
        move_cells(P, [P.cells[0]], "C9")
    with pytest.raises(PartitionError, match="already in grid"):
        move_cells(P, [P.cells[P.grid_code == "C1001"][0]], "C1001")


def test_move_area_moves_cells_whose_centre_is_inside() -> None:
    idx = np.flatnonzero(P.grid_code == "C1002")
    ys = P.xy[idx, 1]
    strip = idx[ys < ys.min() + 60]  # the southern edge row(s) of C1002, touching C1001
    x0, y0 = P.xy[strip].min(axis=0) - 5
    x1, y1 = P.xy[strip].max(axis=0) + 5
    area = _metric_poly_to_storage(x0, y0, x1, y1)
    q = move_area(P, area, "C1001")
    changed = np.flatnonzero(q.grid_code != P.grid_code)
    assert set(changed) == set(strip)
    assert (q.grid_code[changed] == "C1001").all()
    with pytest.raises(PartitionError, match="no cell centre lies inside"):
        move_area(P, geometry_to_storage(box(0, 0, 1, 1).buffer(0).union(box(x0 - 5000, y0, x0 - 4999, y0 + 1))),
                  "C1001")
    with pytest.raises(ValidationError, match="Polygon"):
        move_area(P, LineString([(113.1, 23.0), (113.2, 23.1)]), "C1001")


def test_split_automatic_balanced() -> None:
    q = split_grid(P, "C1002", k=2)
    assert q.n_grids == P.n_grids + 1
    assert "C1004" in set(q.grids["grid_code"])
    assert q.grid_row("C1004")["grid_name"] == "C1第4网格"
    assert check_partition(q) == []
    w = [q.weight[q.grid_code == g].sum() for g in ("C1002", "C1004")]
    assert abs(w[0] - w[1]) / sum(w) < 0.15
    # cells outside the split grid are untouched
    other = P.grid_code != "C1002"
    assert np.array_equal(q.grid_code[other], P.grid_code[other])
    q3 = split_grid(P, "C1002", k=3)
    assert q3.n_grids == P.n_grids + 2
    with pytest.raises(PartitionError, match="k must be ≥ 2"):
        split_grid(P, "C1002", k=1)


def test_split_by_line() -> None:
    idx = np.flatnonzero(P.grid_code == "C2001")
    cx, cy = P.xy[idx].mean(axis=0)
    xs, ys = P.xy[idx, 0], P.xy[idx, 1]
    lng, lat = xy_to_lnglat(np.array([cx, cx + 1.0]), np.array([ys.min() - 100, ys.max() + 100]))
    q = split_grid(P, "C2001", line=LineString(zip(lng, lat)))
    assert q.n_grids == P.n_grids + 1
    new = np.flatnonzero(q.grid_code == "C2003")
    assert len(new) > 0
    # every cell of the new part is on one side of the line
    sides = np.sign(xs - cx)
    part = np.isin(idx, new)
    assert len(set(sides[part].tolist())) == 1 and len(set(sides[~part].tolist())) == 1
    # a line that misses the grid
    lng2, lat2 = xy_to_lnglat(np.array([xs.min() - 500, xs.min() - 499]), np.array([ys.min(), ys.max()]))
    with pytest.raises(PartitionError, match="the line does not cut grid C2001"):
        split_grid(P, "C2001", line=LineString(zip(lng2, lat2)))
    with pytest.raises(ValidationError, match="LineString"):
        split_grid(P, "C2001", line=MultiPoint([(113.1, 23.0), (113.2, 23.0)]))


def test_merge_adjacent_and_rejections() -> None:
    q = merge_grids(P, ["C1001", "C1002"])
    assert q.n_grids == P.n_grids - 1
    assert "C1002" not in set(q.grids["grid_code"])
    assert (q.grid_code[P.grid_code == "C1002"] == "C1001").all()
    q2 = merge_grids(P, ["C1001", "C1002"], into="C1002")
    assert (q2.grid_code[P.grid_code == "C1001"] == "C1002").all()
    with pytest.raises(PartitionError, match="different communities"):
        merge_grids(P, ["C1001", "C2001"])
    with pytest.raises(PartitionError, match="not all adjacent"):
        merge_grids(P, ["C1001", "C1003"])
    with pytest.raises(PartitionError, match="at least two"):
        merge_grids(P, ["C1001"])


def test_split_then_merge_restores_the_partition() -> None:
    q = merge_grids(split_grid(P, "C1003", k=2), ["C1003", "C1004"], into="C1003")
    assert q.assignment_equals(P)


def test_redraw_grid() -> None:
    idx = np.flatnonzero(P.grid_code == "C1002")
    x0, y0 = P.xy[idx].min(axis=0)
    x1, y1 = P.xy[idx].max(axis=0)
    # new C1002: its own box shifted 100 m south (takes a strip of C1001, gives its north strip to C1003)
    poly = _metric_poly_to_storage(x0 - 5, y0 - 105, x1 + 5, y1 - 95)
    q = redraw_grid(P, "C1002", poly)
    assert check_partition(q) == []
    got = q.grid_code == "C1002"
    assert (P.grid_code[got] == "C1001").any()
    assert (q.grid_code[(P.grid_code == "C1002") & ~got] == "C1003").all()
    assert q.n_grids == P.n_grids
    # reaching into community C2 is rejected unless clipped
    wide = _metric_poly_to_storage(x0 - 5, y0 - 5, x1 + 200, y1 + 5)
    with pytest.raises(PartitionError, match="cell\\(s\\) of community C2 but grid C1002 is in community C1"):
        redraw_grid(P, "C1002", wide)
    assert check_partition(redraw_grid(P, "C1002", wide, clip=True)) == []
    # swallowing a whole grid is rejected
    allc1 = _metric_poly_to_storage(x0 - 5, y0 - 400, x1 + 5, y1 + 5)
    with pytest.raises(PartitionError, match=r"takes every cell of grid\(s\) \['C1001'\]"):
        redraw_grid(P, "C1002", allc1)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(min_value=0, max_value=len(P.cells) - 1), st.sampled_from(list(P.grids["grid_code"])))
def test_any_move_is_valid_or_rejected(i: int, to: str) -> None:
    try:
        q = move_cells(P, [P.cells[i]], to)
    except PartitionError:
        return
    assert check_partition(q) == []
    assert q.grid_code[i] == to
    assert int((q.grid_code != P.grid_code).sum()) == 1
