"""The one edit dispatch: an :class:`EditOp` (what the HTTP service, the app and the CLI receive) → the matching
:mod:`twin.partition.edits` operation → an :class:`EditResult` with the new partition and what it changed.

Drawn geometry is WGS84 (EPSG:4326). Callers parse and validate user geometry first
(:func:`twin.query.areas.parse_area` for areas); permission checks and commits stay with the caller.

>>> res = apply_edit(p, EditOp("split_grid", grid_code="440604010001002", k=2))   # doctest: +SKIP
>>> res.grids_added                                                              # doctest: +SKIP
['440604010001452', '440604010001453']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from shapely.geometry.base import BaseGeometry

from twin.errors import ValidationError
from twin.partition import edits
from twin.partition.model import Partition

__all__ = ["EDIT_OPS", "EditOp", "EditResult", "apply_edit"]

EditKind = Literal["move_cells", "move_area", "split_grid", "merge_grids", "redraw_grid"]
EDIT_OPS: tuple[str, ...] = ("move_cells", "move_area", "split_grid", "merge_grids", "redraw_grid")


@dataclass(frozen=True)
class EditOp:
    """One boundary edit.

    ``move_cells``: ``cells`` (uint64 H3 res-11 ids) → ``to_grid``; ``move_area``: cells whose centre is in
    ``geometry`` → ``to_grid``; ``split_grid``: ``grid_code`` into ``k`` balanced parts, or along ``geometry`` (a
    line or a polygon's outline); ``merge_grids``: ``grid_codes`` (``into`` keeps that code); ``redraw_grid``:
    ``grid_code`` becomes ``geometry`` (``clip`` keeps it inside its community).
    """

    op: EditKind
    grid_code: str | None = None
    to_grid: str | None = None
    cells: Sequence[int] | None = None
    geometry: BaseGeometry | None = None
    grid_codes: Sequence[str] | None = None
    into: str | None = None
    k: int = 2
    clip: bool = False

    def need(self, name: str) -> object:
        """The field ``name``; :class:`ValidationError` naming the op and the field when it is missing."""
        v = getattr(self, name)
        if v is None:
            raise ValidationError(f"edit {self.op!r} needs {name!r}.")
        return v


@dataclass(frozen=True)
class EditResult:
    """The partition after an edit and what changed (codes of the partition before the edit)."""

    partition: Partition
    cells_moved: int
    grids_touched: list[str]
    grids_added: list[str]
    grids_removed: list[str]


def apply_edit(p: Partition, op: EditOp) -> EditResult:
    """Apply ``op`` to ``p`` (never modified); raises :class:`twin.errors.PartitionError` when the result breaks
    a partition rule and :class:`ValidationError` for an unknown op or a missing field."""
    if op.op == "move_cells":
        p2 = edits.move_cells(p, np.asarray(op.need("cells"), dtype=np.uint64), str(op.need("to_grid")))
    elif op.op == "move_area":
        p2 = edits.move_area(p, op.need("geometry"), str(op.need("to_grid")))  # type: ignore[arg-type]
    elif op.op == "split_grid":
        line = op.geometry
        if line is not None and line.geom_type in ("Polygon", "MultiPolygon"):
            line = line.boundary
        p2 = edits.split_grid(p, str(op.need("grid_code")), k=int(op.k), line=line)
    elif op.op == "merge_grids":
        p2 = edits.merge_grids(p, [str(c) for c in op.need("grid_codes")], into=op.into)  # type: ignore[attr-defined]
    elif op.op == "redraw_grid":
        p2 = edits.redraw_grid(p, str(op.need("grid_code")), op.need("geometry"), clip=bool(op.clip))  # type: ignore[arg-type]
    else:
        raise ValidationError(f"unknown edit {op.op!r}; use one of {list(EDIT_OPS)}.")
    return _result(p, p2, op)


def _result(p: Partition, p2: Partition, op: EditOp) -> EditResult:
    moved = p.grid_code != p2.grid_code
    old = set(p.grids["grid_code"].astype(str))
    new = set(p2.grids["grid_code"].astype(str))
    touched = (set(p.grid_code[moved].tolist()) | set(p2.grid_code[moved].tolist())) & old
    named = [op.grid_code] if op.op == "split_grid" else list(op.grid_codes or ()) if op.op == "merge_grids" else []
    touched |= {str(c) for c in named} & old
    return EditResult(partition=p2, cells_moved=int(moved.sum()), grids_touched=sorted(touched),
                      grids_added=sorted(new - old), grids_removed=sorted(old - new))
