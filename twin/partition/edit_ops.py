"""The one edit dispatch: an :class:`EditOp` (what the HTTP service, the app and the CLI receive) → the matching
:mod:`twin.partition.edits` operation → an :class:`EditResult` with the new partition and what it changed.

Drawn geometry is WGS84 (EPSG:4326, x = longitude, y = latitude). Callers parse and validate user geometry first
(:func:`twin.query.areas.parse_area` for areas); permission checks and commits stay with the caller, which can
check its rights on :attr:`EditResult.grids_touched` before committing.

>>> res = apply_edit(p, EditOp("split_grid", grid_code="440604010001002", k=2))   # doctest: +SKIP
>>> res.grids_added                                                              # doctest: +SKIP
['440604010001452']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from twin.cells import PARTITION_RES
from twin.errors import ValidationError
from twin.partition import edits
from twin.partition.model import Partition

__all__ = ["EDIT_OPS", "EditKind", "EditOp", "EditResult", "apply_edit"]

EditKind = Literal["move_cells", "move_area", "split_grid", "merge_grids", "redraw_grid"]
EDIT_OPS: tuple[str, ...] = ("move_cells", "move_area", "split_grid", "merge_grids", "redraw_grid")
_HEX = frozenset("0123456789abcdefABCDEF")


@dataclass(frozen=True)
class EditOp:
    """One boundary edit, as the adapters receive it.

    Attributes
    ----------
    op : {"move_cells", "move_area", "split_grid", "merge_grids", "redraw_grid"}
        The operation (:data:`EDIT_OPS`).
    grid_code : str, optional
        ``split_grid``, ``redraw_grid``: the grid edited.
    to_grid : str, optional
        ``move_cells``, ``move_area``: the grid receiving the cells.
    cells : sequence, optional
        ``move_cells``: H3 res-11 cells as ``uint64`` ints or hex strings (``"8b4117…"``).
    geometry : BaseGeometry, optional
        WGS84. ``move_area``: cells whose centre is inside move; ``split_grid``: a line drawn across the grid (a
        polygon's outline is used as the line); without it the split is automatic; ``redraw_grid``: the new
        outline.
    grid_codes : sequence of str, optional
        ``merge_grids``: the grids merged (at least two).
    into : str, optional
        ``merge_grids``: the code the merged grid keeps (default: the first of ``grid_codes``).
    k : int
        ``split_grid`` without ``geometry``: number of parts of near-equal workload (≥ 2).
    clip : bool
        ``redraw_grid``: keep only the polygon's part inside the grid's community instead of rejecting it.
    """

    op: EditKind
    grid_code: str | None = None
    to_grid: str | None = None
    cells: Sequence[int | str] | np.ndarray | None = None
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
    """The partition after an edit and what changed.

    Attributes
    ----------
    partition : Partition
        The new, validated partition (the input partition is never modified).
    cells_moved : int
        Cells whose grid changed.
    grids_touched : list of str
        Grids of the partition *before* the edit whose cells changed, or that were split or merged (sorted);
        the grids an editor needs rights on.
    grids_added, grids_removed : list of str
        Grid codes new in / gone from the grid table (sorted).
    """

    partition: Partition
    cells_moved: int
    grids_touched: list[str]
    grids_added: list[str]
    grids_removed: list[str]


def apply_edit(p: Partition, op: EditOp) -> EditResult:
    """Apply ``op`` to ``p`` with the matching :mod:`twin.partition.edits` function.

    Parameters
    ----------
    p : Partition
        The partition edited (never modified).
    op : EditOp
        The edit.

    Returns
    -------
    EditResult
        The new partition, equal to what the edits function returns, and what changed.

    Raises
    ------
    ValidationError
        Unknown op, a field the op needs is missing or of the wrong kind (the message names it).
    PartitionError
        The result would break a partition rule (:mod:`twin.partition.model`).
    NotFoundError
        An unknown grid code.
    """
    if op.op == "move_cells":
        p2 = edits.move_cells(p, _cells(op), _text(op, "to_grid"))
    elif op.op == "move_area":
        p2 = edits.move_area(p, _geometry(op), _text(op, "to_grid"))
    elif op.op == "split_grid":
        line = op.geometry
        if isinstance(line, (Polygon, MultiPolygon)):
            line = line.boundary
        p2 = edits.split_grid(p, _text(op, "grid_code"), k=_k(op), line=line)
    elif op.op == "merge_grids":
        p2 = edits.merge_grids(p, _codes(op), into=op.into)
    elif op.op == "redraw_grid":
        p2 = edits.redraw_grid(p, _text(op, "grid_code"), _geometry(op), clip=bool(op.clip))
    else:
        raise ValidationError(f"unknown edit {op.op!r}; use one of {list(EDIT_OPS)}.")
    return _result(p, p2, op)


def _text(op: EditOp, name: str) -> str:
    return str(op.need(name))


def _geometry(op: EditOp) -> BaseGeometry:
    g = op.need("geometry")
    if not isinstance(g, BaseGeometry):
        raise ValidationError(f"edit {op.op!r}: 'geometry' must be a shapely geometry in WGS84, got "
                              f"{type(g).__name__}; parse GeoJSON first (twin.query.areas.parse_area).")
    return g


def _codes(op: EditOp) -> list[str]:
    v = op.need("grid_codes")
    if isinstance(v, str) or not isinstance(v, Sequence | np.ndarray):
        raise ValidationError(f"edit {op.op!r}: 'grid_codes' must be a list of grid codes, got {v!r}.")
    return [str(c) for c in v]


def _k(op: EditOp) -> int:
    """``k`` as an int (an integral number or numeric string); the range is checked by the split itself."""
    try:
        k = int(op.k)
        integral = not isinstance(op.k, bool) and (isinstance(op.k, str) or k == op.k)
    except (TypeError, ValueError):
        integral = False
    if not integral:
        raise ValidationError(f"edit {op.op!r}: 'k' must be an integer ≥ 2, got {op.k!r}.")
    return k


def _cells(op: EditOp) -> np.ndarray:
    """``uint64`` cells from ints or hex strings; :class:`ValidationError` shows the first bad value.

    Each must be an H3 cell id of resolution :data:`twin.cells.PARTITION_RES` (checked on its bits: cell mode,
    resolution, base cell 0–121, unused digits 7): negative, oversized, signed or non-hex strings and other H3
    modes or resolutions are rejected here; valid ids outside the district are the partition's to reject.
    """
    v = op.need("cells")
    if isinstance(v, str) or not isinstance(v, Sequence | np.ndarray):
        raise ValidationError(f"edit {op.op!r}: 'cells' must be a list of H3 cells, got {v!r}.")
    out = np.empty(len(v), dtype=np.uint64)
    for i, c in enumerate(v):
        cell = _cell_id(c)
        if cell is None:
            shown = c if not isinstance(c, str) or len(c) <= 40 else c[:40] + "…"
            raise ValidationError(f"edit {op.op!r}: cell {shown!r} is not an H3 res-{PARTITION_RES} cell id (a "
                                  "uint64 or 15 hex digits like '8b4117...').")
        out[i] = cell
    return out


def _cell_id(c: object) -> int | None:
    """The id of an H3 res-11 cell given as an int or a hex string, or None."""
    if isinstance(c, str):
        s = c.strip()
        if not 1 <= len(s) <= 16 or not all(ch in _HEX for ch in s):
            return None
        n = int(s, 16)
    elif isinstance(c, int | np.integer) and not isinstance(c, bool | np.bool_):
        n = int(c)
    else:
        return None
    if not 0 <= n < 2**64 or n >> 59 != 1 or (n >> 52) & 0xF != PARTITION_RES or (n >> 45) & 0x7F > 121:
        return None  # reserved bit + mode (1 = cell), resolution, base cell
    unused = 15 - PARTITION_RES  # digits after the resolution are all 7 (binary 111)
    return n if n & ((1 << 3 * unused) - 1) == (1 << 3 * unused) - 1 else None


def _result(p: Partition, p2: Partition, op: EditOp) -> EditResult:
    lab, codes = p.labels()
    lab2, codes2 = p2.labels()
    if codes2 is codes or np.array_equal(codes2, codes):  # same grid table: compare integer labels, not strings
        moved = lab != lab2
        odd = np.flatnonzero(lab < 0)  # unassigned or not in the table: compare those codes themselves
        moved[odd] |= p.grid_code[odd] != p2.grid_code[odd]
    else:
        moved = p.grid_code != p2.grid_code
    old = set(codes.tolist())
    new = set(codes2.tolist())
    touched = (set(p.grid_code[moved].tolist()) | set(p2.grid_code[moved].tolist())) & old
    named = [op.grid_code] if op.op == "split_grid" else list(op.grid_codes or ()) if op.op == "merge_grids" else []
    touched |= {str(c) for c in named} & old
    return EditResult(partition=p2, cells_moved=int(moved.sum()), grids_touched=sorted(touched),
                      grids_added=sorted(new - old), grids_removed=sorted(old - new))
