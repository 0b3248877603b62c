"""Grid-boundary edits: move cells, split, merge, redraw. Each returns a new, validated :class:`Partition`.

Every operation checks the rules of :mod:`twin.partition.model` on the grids it touches before returning; a rejected
edit raises :class:`twin.errors.PartitionError` naming the rule, the grid codes and the cell counts. Drawn
geometry (areas, lines, polygons) is WGS84 (EPSG:4326, x = longitude, y = latitude); a cell belongs to a drawn
area when its centre falls inside it.

>>> p2 = move_cells(p, cells, "440604010001002")          # doctest: +SKIP
>>> p3 = split_grid(p2, "440604010001002", k=2)            # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import shapely
from shapely.geometry import LineString, MultiLineString, MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry
from shapely.ops import split as split_geometry

from twin.cells import cells_to_geometry
from twin.crs import geometry_to_metric
from twin.errors import PartitionError, ValidationError
from twin.partition.model import Partition, grid_name_for, next_grid_codes, validate_partition
from twin.partition.regions import bisect_labels, repair_contiguity

__all__ = ["cells_in_area", "move_cells", "move_area", "split_grid", "merge_grids", "redraw_grid", "hand_to_neighbours",
           "keep_blocks_whole"]


def _as_polygon(geom: BaseGeometry, what: str) -> BaseGeometry:
    if not isinstance(geom, (Polygon, MultiPolygon)):
        raise ValidationError(f"{what} must be a Polygon or MultiPolygon in WGS84; got {type(geom).__name__}.")
    if geom.is_empty:
        raise ValidationError(f"{what} is empty.")
    _check_lnglat(geom, what)
    return geom if geom.is_valid else shapely.make_valid(geom)


def _check_lnglat(geom: BaseGeometry, what: str) -> None:
    x0, y0, x1, y1 = geom.bounds
    if not (-180 <= x0 <= x1 <= 180 and -90 <= y0 <= y1 <= 90):
        raise ValidationError(f"{what} bounds {tuple(round(v, 2) for v in geom.bounds)} are not WGS84 degrees "
                              "(x = longitude, y = latitude); reproject it to EPSG:4326 first.")


def cells_in_area(p: Partition, area: BaseGeometry) -> np.ndarray:
    """Row indices of the cells whose centre lies inside ``area`` (WGS84 (Multi)Polygon)."""
    metric = geometry_to_metric(_as_polygon(area, "area"))
    return np.flatnonzero(shapely.contains_xy(metric, p.xy[:, 0], p.xy[:, 1]))


def _commit_local(p: Partition, codes: np.ndarray, grids: pd.DataFrame | None, touched: Iterable[str],
                  action: str) -> Partition:
    new = p.with_assignment(codes, grids)
    # only the touched grids' cells and rows changed: a valid p makes new valid when they pass
    return validate_partition(new, grids=set(touched), action=action, parent=p)


def move_cells(p: Partition, cells: Sequence[int] | np.ndarray, to_grid: str) -> Partition:
    """Move cells (``uint64`` H3 ids) to grid ``to_grid`` of the same community.

    Rejected (``PartitionError``) when a cell lies in another community, when the moved cells would not touch
    ``to_grid`` (the grid would become non-contiguous), when a losing grid would be split in pieces or left
    empty (use :func:`merge_grids` to remove a grid).
    """
    idx = p.index_of_cells(cells)
    return _move(p, idx, to_grid, action=f"moving {len(idx)} cell(s) to grid {to_grid}")


def move_area(p: Partition, area: BaseGeometry, to_grid: str) -> Partition:
    """Move the cells whose centre falls inside the drawn ``area`` (WGS84) to ``to_grid``."""
    idx = cells_in_area(p, area)
    if len(idx) == 0:
        raise PartitionError(f"moving a drawn area to grid {to_grid} rejected: no cell centre lies inside the "
                             "area; draw a larger area (cells are ≈ 2,150 m² hexagons).")
    return _move(p, idx, to_grid, action=f"moving {len(idx)} cell(s) of the drawn area to grid {to_grid}")


def _move(p: Partition, idx: np.ndarray, to_grid: str, *, action: str) -> Partition:
    row = p.grid_row(to_grid)
    idx = np.unique(idx)
    idx = idx[p.grid_code[idx] != to_grid]
    if len(idx) == 0:
        raise PartitionError(f"{action} rejected: the cells are already in grid {to_grid}.")
    comm = row["community_code"]
    foreign = p.community[idx] != comm
    if foreign.any():
        others = sorted(set(p.community[idx][foreign].tolist()))
        raise PartitionError(f"{action} rejected: {int(foreign.sum())} cell(s) belong to community "
                             f"{', '.join(others)} but grid {to_grid} is in community {comm}; a grid must stay "
                             "inside its community.")
    codes = p.grid_code.copy()
    losers = sorted(set(codes[idx].tolist()) - {""})
    codes[idx] = to_grid
    emptied = _emptied(p, idx, losers, codes)
    if emptied:
        raise PartitionError(f"{action} rejected: grid(s) {emptied} would be left with no cells; merge them "
                             "instead (merge_grids).")
    return _commit_local(p, codes, None, [to_grid, *losers], action)


def _emptied(p: Partition, idx: np.ndarray, losers: list[str], codes: np.ndarray) -> list[str]:
    """The grids of ``losers`` left with no cells once cells ``idx`` are taken from them (``codes``: the new codes):
    cell counts per grid from the integer labels (:meth:`Partition.labels`), not a string comparison over every cell
    per grid; a code missing from the grid table is looked up in ``codes``."""
    lab, table = p.labels()
    row = {c: i for i, c in enumerate(table.tolist())}
    taken = lab[idx]
    total = np.bincount(lab[lab >= 0], minlength=len(table))
    lost = np.bincount(taken[taken >= 0], minlength=len(table))
    return [g for g in losers if (total[row[g]] == lost[row[g]] if g in row else not (codes == g).any())]


def split_grid(p: Partition, grid_code: str, *, k: int = 2, line: BaseGeometry | None = None,
               new_codes: Sequence[str] | None = None, seed: int = 0) -> Partition:
    """Split a grid into parts: by a drawn ``line`` (WGS84 LineString drawn across the grid from edge to edge;
    the grid's outline is cut along the line and each cell goes to the piece holding its centre) or automatically into ``k`` parts of
    near-equal workload (recursive bisection of the cells, :func:`twin.partition.regions.bisect_labels`).

    The part with the most workload keeps ``grid_code``; the others get ``new_codes`` or the next free codes of
    the community (:func:`twin.partition.model.next_grid_codes`). Rejected when the line does not cut the grid in two,
    when a part would not be contiguous, or when ``k`` exceeds the grid's cells.
    """
    row = p.grid_row(grid_code)
    idx = p.cells_of(grid_code)
    action = f"splitting grid {grid_code}"
    if line is not None:
        lab = _line_labels(p, idx, line, grid_code, action)
    else:
        if int(k) < 2:
            raise PartitionError(f"{action} rejected: k must be ≥ 2, got {k}.")
        if int(k) > len(idx):
            raise PartitionError(f"{action} rejected: k = {k} parts but the grid has only {len(idx)} cells.")
        w = p.weight[idx]
        lab = bisect_labels(p.xy[idx], w + 0.05 * max(float(w.mean()), 1e-9), int(k), seed=seed)
        lab = repair_contiguity(lab, p.adjacency[idx][:, idx])
        lab = keep_blocks_whole(lab, p, idx)
    parts = np.unique(lab)
    n_new = len(parts) - 1
    if n_new < 1:
        raise PartitionError(f"{action} rejected: the split gives a single part of {len(idx)} cells.")
    # the part with most workload keeps the code
    part_w = np.array([p.weight[idx][lab == u].sum() for u in parts])
    keep = parts[int(np.argmax(part_w))]
    comm = str(row["community_code"])
    if new_codes is None:
        new_codes = next_grid_codes(p.grids, comm, n_new)
    new_codes = [str(c) for c in new_codes]
    if len(new_codes) != n_new:
        raise PartitionError(f"{action} rejected: {n_new} new part(s) need {n_new} new code(s), got {new_codes}.")
    clash = sorted(set(new_codes) & set(p.grids["grid_code"]))
    if clash:
        raise PartitionError(f"{action} rejected: grid code(s) {clash} already exist.")
    codes = p.grid_code.copy()
    for u, code in zip([u for u in parts if u != keep], new_codes):
        codes[idx[lab == u]] = code
    rows = [{"grid_code": c, "grid_name": grid_name_for(p.grids, comm, c), "community_code": comm,
             "town_code": row["town_code"]} for c in new_codes]
    grids = pd.concat([p.grids, pd.DataFrame(rows)], ignore_index=True)
    return _commit_local(p, codes, grids, [grid_code, *new_codes], action)


def _line_labels(p: Partition, idx: np.ndarray, line: BaseGeometry, grid_code: str, action: str) -> np.ndarray:
    if not isinstance(line, (LineString, MultiLineString)) or line.is_empty:
        raise ValidationError(f"the split line must be a non-empty LineString in WGS84; got {type(line).__name__}.")
    _check_lnglat(line, "the split line")
    mline = geometry_to_metric(line)
    pts = p.xy[idx]
    outline = geometry_to_metric(cells_to_geometry(p.cells[idx])).buffer(1.0)  # the grid, EPSG:4547
    pieces = shapely.get_parts(split_geometry(outline, mline)) if mline.intersects(outline) else np.array([outline])
    lab = np.full(len(idx), -1, dtype=np.int64)
    for i, piece in enumerate(pieces):
        inside = shapely.contains_xy(piece, pts[:, 0], pts[:, 1]) & (lab < 0)
        lab[inside] = i
    if (lab < 0).any():  # a centre exactly on the line: nearest piece
        for j in np.flatnonzero(lab < 0):
            pt = shapely.Point(pts[j])
            lab[j] = int(np.argmin([piece.distance(pt) for piece in pieces]))
    used = np.unique(lab)
    if len(used) < 2:
        raise PartitionError(f"{action} rejected: the line does not cut grid {grid_code} — all {len(idx)} cell "
                             "centres lie on one side; draw the line across the grid from edge to edge.")
    return np.searchsorted(used, lab)


def merge_grids(p: Partition, grid_codes: Sequence[str], *, into: str | None = None) -> Partition:
    """Merge adjacent grids of one community into ``into`` (default: the first code); the others are removed.

    Rejected when fewer than two grids are given, when they are in different communities, or when their union
    is not one contiguous piece (they are not adjacent).
    """
    codes_in = list(dict.fromkeys(str(c) for c in grid_codes))
    action = f"merging grids {codes_in}"
    if len(codes_in) < 2:
        raise PartitionError(f"{action} rejected: give at least two different grid codes.")
    rows = [p.grid_row(c) for c in codes_in]
    comms = sorted({str(r["community_code"]) for r in rows})
    if len(comms) > 1:
        by = {c: [str(r["grid_code"]) for r in rows if r["community_code"] == c] for c in comms}
        raise PartitionError(f"{action} rejected: the grids are in different communities {by}; a grid must stay "
                             "inside one community.")
    target = str(into) if into is not None else codes_in[0]
    if target not in codes_in:
        raise PartitionError(f"{action} rejected: into={target!r} is not one of the merged grids.")
    codes = p.grid_code.copy()
    sel = np.isin(codes, codes_in)
    codes[sel] = target
    gone = [c for c in codes_in if c != target]
    grids = p.grids[~p.grids["grid_code"].isin(gone)]
    try:
        return _commit_local(p, codes, grids, [target], action)
    except PartitionError as e:
        raise PartitionError(f"{action} rejected: the grids are not all adjacent ({e})") from e


def redraw_grid(p: Partition, grid_code: str, polygon: BaseGeometry, *, clip: bool = False) -> Partition:
    """Redraw a grid from a drawn ``polygon`` (WGS84): cells whose centre falls inside become the grid; the grid's
    cells outside the polygon go to the adjacent grid of the same community they share most edges with.

    Rejected when the polygon reaches into another community (unless ``clip=True``, which keeps only the
    grid's community), when it takes every cell of another grid (merge instead), when left-over cells have no
    neighbouring grid of the community, or when any touched grid ends in pieces.
    """
    row = p.grid_row(grid_code)
    comm = str(row["community_code"])
    action = f"redrawing grid {grid_code}"
    inside = cells_in_area(p, polygon)
    foreign = p.community[inside] != comm
    if foreign.any() and not clip:
        others = sorted(set(p.community[inside][foreign].tolist()))
        raise PartitionError(f"{action} rejected: the polygon covers {int(foreign.sum())} cell(s) of community "
                             f"{', '.join(others)} but grid {grid_code} is in community {comm}; redraw inside the "
                             "community or pass clip=True.")
    inside = inside[~foreign]
    if len(inside) == 0:
        raise PartitionError(f"{action} rejected: no cell centre of community {comm} lies inside the polygon.")
    codes = p.grid_code.copy()
    old = np.flatnonzero(codes == grid_code)
    losers = sorted(set(codes[inside].tolist()) - {grid_code, ""})
    codes[inside] = grid_code
    emptied = [g for g in losers if g not in set(codes.tolist())]
    if emptied:
        raise PartitionError(f"{action} rejected: the polygon takes every cell of grid(s) {emptied}; merge them "
                             "instead (merge_grids).")
    leftover = np.setdiff1d(old, inside)
    if len(leftover):
        codes, stuck = hand_to_neighbours(p, codes, leftover, grid_code)
        if len(stuck):
            raise PartitionError(f"{action} rejected: {len(stuck)} cell(s) of grid {grid_code} outside the polygon "
                                 f"touch no other grid of community {comm}; include them in the polygon.")
        losers += sorted(set(codes[leftover].tolist()))
    return _commit_local(p, codes, None, [grid_code, *losers], action)


def hand_to_neighbours(p: Partition, codes: np.ndarray, leftover: np.ndarray,
                        grid_code: str) -> tuple[np.ndarray, np.ndarray]:
    """Give each left-over cell to the neighbouring grid (same community, not ``grid_code``) it shares most edges
    with, growing inward from the edge until nothing changes. Returns (codes, cells that found no grid)."""
    codes = codes.copy()
    todo = set(leftover.tolist())
    codes[leftover] = ""
    adj = p.adjacency
    while todo:
        changed = []
        for i in sorted(todo):
            nb = adj.indices[adj.indptr[i]:adj.indptr[i + 1]]
            cand = [codes[j] for j in nb if codes[j] not in ("", grid_code) and p.community[j] == p.community[i]]
            if cand:
                vals, cnt = np.unique(np.asarray(cand, dtype=object).astype(str), return_counts=True)
                changed.append((i, vals[int(np.argmax(cnt))]))
        if not changed:
            break
        for i, c in changed:
            codes[i] = c
            todo.discard(i)
    stuck = np.array(sorted(todo), dtype=np.int64)
    codes[stuck] = grid_code
    return codes, stuck


def keep_blocks_whole(labels: np.ndarray, p: Partition, idx: np.ndarray) -> np.ndarray:
    """``labels`` of the cells ``idx`` with every block of the city fabric given wholly to the part holding most of
    its cells, so an automatic cut runs along streets and water (界线清晰); ``labels`` unchanged when the partition
    has no blocks or when that would empty a part or break one into pieces."""
    if p.blocks is None:
        return labels
    blocks = p.blocks[idx]
    votes = pd.DataFrame({"block": blocks, "label": labels}).value_counts().reset_index(name="n")
    majority = votes.sort_values("n", ascending=False, kind="stable").drop_duplicates("block").set_index("block")
    snapped = majority["label"].reindex(blocks).to_numpy().astype(labels.dtype)
    if set(np.unique(snapped)) != set(np.unique(labels)):
        return labels
    if not np.array_equal(repair_contiguity(snapped, p.adjacency[idx][:, idx]), snapped):
        return labels
    return snapped
