"""The one edit dispatch (twin.partition.edit_ops): each op equals the edits function it dispatches to, fields are
checked by name, and the result says which grids were touched, added and removed."""

from __future__ import annotations

import numpy as np
import pytest
from shapely.geometry import LineString, box
from small_partition import boundary_cell, small_partition  # tests/partition/small_partition.py

from twin.crs import geometry_to_storage, xy_to_lnglat
from twin.errors import NotFoundError, PartitionError, ValidationError
from twin.partition import edits
from twin.partition.edit_ops import EDIT_OPS, EditOp, EditResult, apply_edit
from twin.partition.model import Partition, check_partition

P = small_partition()


def _box(p: Partition, grid: str, *, dy0: float = 0.0, dy1: float = 0.0, pad: float = 5.0):
    """WGS84 box around a grid's cell centres (EPSG:4547 metres), shifted north/south by ``dy0``/``dy1``."""
    idx = np.flatnonzero(p.grid_code == grid)
    x0, y0 = p.xy[idx].min(axis=0)
    x1, y1 = p.xy[idx].max(axis=0)
    return geometry_to_storage(box(x0 - pad, y0 - pad + dy0, x1 + pad, y1 + pad + dy1))


def _south_strip(p: Partition, grid: str):
    idx = np.flatnonzero(p.grid_code == grid)
    strip = idx[p.xy[idx, 1] < p.xy[idx, 1].min() + 60]
    x0, y0 = p.xy[strip].min(axis=0) - 5
    x1, y1 = p.xy[strip].max(axis=0) + 5
    return geometry_to_storage(box(x0, y0, x1, y1))


def _vertical_line(p: Partition, grid: str) -> LineString:
    idx = np.flatnonzero(p.grid_code == grid)
    cx = p.xy[idx, 0].mean()
    ys = p.xy[idx, 1]
    lng, lat = xy_to_lnglat(np.array([cx, cx + 1.0]), np.array([ys.min() - 100, ys.max() + 100]))
    return LineString(zip(lng, lat))


def _cases() -> list[tuple[EditOp, Partition]]:
    """(op, what calling the edits function directly gives)."""
    i = boundary_cell(P, "C1001", "C1002")
    cell = int(P.cells[i])
    strip = _south_strip(P, "C1002")
    line = _vertical_line(P, "C2001")
    redraw = _box(P, "C1002", dy0=-100, dy1=-100)
    return [
        (EditOp("move_cells", cells=[cell], to_grid="C1002"), edits.move_cells(P, [cell], "C1002")),
        (EditOp("move_cells", cells=[format(cell, "x")], to_grid="C1002"), edits.move_cells(P, [cell], "C1002")),
        (EditOp("move_area", geometry=strip, to_grid="C1001"), edits.move_area(P, strip, "C1001")),
        (EditOp("split_grid", grid_code="C1002", k=3), edits.split_grid(P, "C1002", k=3)),
        (EditOp("split_grid", grid_code="C2001", geometry=line), edits.split_grid(P, "C2001", line=line)),
        (EditOp("merge_grids", grid_codes=["C1001", "C1002"], into="C1002"),
         edits.merge_grids(P, ["C1001", "C1002"], into="C1002")),
        (EditOp("redraw_grid", grid_code="C1002", geometry=redraw), edits.redraw_grid(P, "C1002", redraw)),
    ]


@pytest.mark.parametrize("case", range(7))
def test_each_op_equals_the_edits_function(case: int) -> None:
    op, direct = _cases()[case]
    res = apply_edit(P, op)
    assert isinstance(res, EditResult)
    assert res.partition.assignment_equals(direct)
    assert check_partition(res.partition) == []
    assert res.cells_moved == int((direct.grid_code != P.grid_code).sum()) > 0
    assert P.assignment_equals(small_partition())  # the input is never modified


def test_every_op_is_covered() -> None:
    assert {op.op for op, _ in _cases()} == set(EDIT_OPS)


def test_split_by_polygon_uses_its_outline() -> None:
    idx = np.flatnonzero(P.grid_code == "C2001")
    xs, ys = P.xy[idx, 0], P.xy[idx, 1]
    cx = xs.mean()
    poly = geometry_to_storage(box(cx, ys.min() - 100, xs.max() + 100, ys.max() + 100))  # covers the east half
    res = apply_edit(P, EditOp("split_grid", grid_code="C2001", geometry=poly))
    assert res.grids_added == ["C2003"]
    sides = {tuple(sorted(set(np.sign(xs[res.partition.grid_code[idx] == g] - cx).tolist())))
             for g in ("C2001", "C2003")}
    assert sides == {(-1.0,), (1.0,)}


def test_split_reports_added_and_touched_grids() -> None:
    res = apply_edit(P, EditOp("split_grid", grid_code="C1002", k=3))
    assert res.grids_added == ["C1004", "C1005"]
    assert res.grids_removed == []
    assert res.grids_touched == ["C1002"]
    assert res.partition.n_grids == P.n_grids + 2
    assert res.cells_moved == int(np.isin(res.partition.grid_code, ["C1004", "C1005"]).sum())


def test_merge_reports_removed_and_touched_grids() -> None:
    res = apply_edit(P, EditOp("merge_grids", grid_codes=["C1001", "C1002"]))
    assert res.grids_added == []
    assert res.grids_removed == ["C1002"]
    assert res.grids_touched == ["C1001", "C1002"]
    assert res.cells_moved == int((P.grid_code == "C1002").sum())


def test_move_and_redraw_report_the_grids_whose_cells_changed() -> None:
    i = boundary_cell(P, "C1001", "C1002")
    res = apply_edit(P, EditOp("move_cells", cells=[int(P.cells[i])], to_grid="C1002"))
    assert (res.cells_moved, res.grids_touched, res.grids_added, res.grids_removed) == (1, ["C1001", "C1002"], [], [])
    res = apply_edit(P, EditOp("redraw_grid", grid_code="C1002", geometry=_box(P, "C1002", dy0=-100, dy1=-100)))
    assert res.grids_touched == ["C1001", "C1002", "C1003"]


@pytest.mark.parametrize(("op", "fields", "missing"), [
    ("move_cells", {"to_grid": "C1002"}, "cells"),
    ("move_cells", {"cells": [int(P.cells[0])]}, "to_grid"),
    ("move_area", {"to_grid": "C1001"}, "geometry"),
    ("move_area", {"geometry": box(113.1, 23.0, 113.2, 23.1)}, "to_grid"),
    ("split_grid", {"k": 2}, "grid_code"),
    ("merge_grids", {"into": "C1001"}, "grid_codes"),
    ("redraw_grid", {"grid_code": "C1002"}, "geometry"),
    ("redraw_grid", {"geometry": box(113.1, 23.0, 113.2, 23.1)}, "grid_code"),
])
def test_a_missing_field_is_named(op: str, fields: dict, missing: str) -> None:
    with pytest.raises(ValidationError, match=f"edit '{op}' needs '{missing}'"):
        apply_edit(P, EditOp(op, **fields))  # type: ignore[arg-type]


def test_unknown_op() -> None:
    with pytest.raises(ValidationError, match="unknown edit 'paint_grid'; use one of"):
        apply_edit(P, EditOp("paint_grid", grid_code="C1001"))  # type: ignore[arg-type]


def test_fields_of_the_wrong_kind_are_validation_errors() -> None:
    with pytest.raises(ValidationError, match="cell 1 is not an H3 res-11 cell id"):  # a number, not a cell
        apply_edit(P, EditOp("move_cells", cells=[1], to_grid="C1002"))
    with pytest.raises(ValidationError, match="cell 'zz' is not an H3 res-11 cell id"):
        apply_edit(P, EditOp("move_cells", cells=["zz"], to_grid="C1002"))
    with pytest.raises(ValidationError, match="'cells' must be a list"):
        apply_edit(P, EditOp("move_cells", cells="8b4117", to_grid="C1002"))  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="'grid_codes' must be a list"):
        apply_edit(P, EditOp("merge_grids", grid_codes="C1001"))  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="'k' must be an integer"):
        apply_edit(P, EditOp("split_grid", grid_code="C1002", k=2.5))  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="'geometry' must be a shapely geometry"):
        apply_edit(P, EditOp("move_area", geometry={"type": "Polygon"}, to_grid="C1001"))  # type: ignore[arg-type]


def test_rule_breaks_and_unknown_grids_keep_their_error_class() -> None:
    with pytest.raises(PartitionError, match="k must be ≥ 2"):
        apply_edit(P, EditOp("split_grid", grid_code="C1002", k=1))
    with pytest.raises(PartitionError, match="different communities"):
        apply_edit(P, EditOp("merge_grids", grid_codes=["C1001", "C2001"]))
    with pytest.raises(NotFoundError, match="unknown grid code 'C9999'"):
        apply_edit(P, EditOp("split_grid", grid_code="C9999"))
