"""A partition of the district's H3 cells into grids, and the rules every partition must keep.

A :class:`Partition` is a value: the cells (``uint64`` H3 res 11, sorted), each cell's grid code (``""`` =
unassigned) and the grid table (``grid_code``, ``grid_name``, ``community_code``, ``town_code``). It also carries
what the rules and the editing operations need and what never changes between versions of one twin: each cell's
community (communities keep their cells), cell centres in EPSG:4547 metres, each cell's workload and the cell
adjacency. Operations in :mod:`twin.partition.edits` return new partitions; nothing is modified in place.

Rules (:func:`check_partition` lists every break, :func:`validate_partition` raises on the first report):

1. every cell is assigned to a grid of the grid table, every grid of the table has cells;
2. every grid is one contiguous piece of edge-sharing cells;
3. every grid lies inside one community: its cells all belong to the community the grid table names
   (nesting; the community's town is the grid's town).
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from twin.cells import cells_adjacency, cells_to_latlng
from twin.crs import lnglat_to_xy
from twin.errors import NotFoundError, PartitionError, ValidationError
from twin.model import Twin
from twin.partition.edges import cell_blocks
from twin.partition.regions import label_components
from twin.partition.workload import cell_workload

__all__ = [
    "GRID_COLUMNS",
    "Partition",
    "partition_from_twin",
    "check_partition",
    "validate_partition",
    "known_valid",
    "next_grid_codes",
    "grid_name_for",
    "reassign_workers",
    "neighbour_grids",
]

GRID_COLUMNS = ("grid_code", "grid_name", "community_code", "town_code")


@dataclass(frozen=True, eq=False)
class Partition:
    """Cells → grid codes plus the grid table.

    Attributes
    ----------
    cells : np.ndarray
        ``uint64`` H3 cells, sorted ascending (the rows of ``twin.cells``).
    grid_code : np.ndarray
        Grid code per cell (``object`` array of ``str``; ``""`` = unassigned).
    grids : pd.DataFrame
        One row per grid: :data:`GRID_COLUMNS`, sorted by ``grid_code``.
    community : np.ndarray
        Community code per cell (fixed: communities keep their cells).
    xy : np.ndarray
        Cell centres in EPSG:4547 metres, shape (n, 2).
    weight : np.ndarray
        Workload per cell (:func:`twin.partition.workload.cell_workload`); used by automatic splits and the re-partition.
    adjacency : scipy.sparse.csr_matrix
        Edge-sharing neighbours among ``cells``.
    blocks : np.ndarray or None
        Block label per cell (:func:`twin.partition.edges.cell_blocks`: cells in one block of the city fabric share
        it) or ``None`` for a twin without blocks; automatic splits keep blocks whole (boundaries along streets).
    """

    cells: np.ndarray
    grid_code: np.ndarray
    grids: pd.DataFrame
    community: np.ndarray
    xy: np.ndarray
    weight: np.ndarray
    adjacency: sp.csr_matrix
    meta: dict[str, Any] = field(default_factory=dict, repr=False)
    blocks: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def from_arrays(
        cls,
        cells: np.ndarray,
        grid_code: Sequence[str] | np.ndarray,
        grids: pd.DataFrame,
        *,
        community: np.ndarray | None = None,
        weight: np.ndarray | None = None,
        xy: np.ndarray | None = None,
        adjacency: sp.csr_matrix | None = None,
    ) -> Partition:
        """Build a partition from plain arrays (cells need not be sorted; they are sorted here).

        ``community`` defaults to each cell's grid's community; ``weight`` to 1 per cell; ``xy`` and
        ``adjacency`` are computed from the cells when not given.
        """
        cells = np.asarray(cells, dtype=np.uint64)
        codes = _as_codes(grid_code)
        if len(codes) != len(cells):
            raise ValidationError(f"grid_code has {len(codes)} entries for {len(cells)} cells; give one per cell.")
        if len(np.unique(cells)) != len(cells):
            raise PartitionError(f"{len(cells) - len(np.unique(cells))} cells appear more than once.")
        table = _grid_table(grids)
        order = np.argsort(cells, kind="stable")
        sorted_ok = bool(np.all(order == np.arange(len(cells))))
        if community is None:
            comm_of = dict(zip(table["grid_code"], table["community_code"]))
            community = np.array([comm_of.get(c, "") for c in codes], dtype=object)
        community = np.asarray(community, dtype=object)
        weight = np.ones(len(cells)) if weight is None else np.asarray(weight, dtype=float)
        if xy is None:
            lat, lng = cells_to_latlng(cells)
            xy = np.column_stack(lnglat_to_xy(lng, lat))
        if not sorted_ok:
            cells, codes, community, weight, xy = cells[order], codes[order], community[order], weight[order], xy[order]
            adjacency = None
        if adjacency is None:
            adjacency = cells_adjacency(cells)
        return cls(cells=cells, grid_code=codes, grids=table, community=community, xy=np.asarray(xy, float),
                   weight=weight, adjacency=adjacency)

    # -- views -----------------------------------------------------------------------------------------------
    @property
    def n_grids(self) -> int:
        """Number of grids in the grid table."""
        return len(self.grids)

    def with_assignment(self, grid_code: np.ndarray, grids: pd.DataFrame | None = None) -> Partition:
        """A new partition sharing the fixed arrays, with another assignment (and grid table); its ``grid_code``
        is a new read-only array (a partition is a value)."""
        arr = np.asarray(grid_code, dtype=object)
        changed = None
        if not self.grid_code.flags.writeable and arr.shape == self.grid_code.shape:
            # self's codes are clean (made by _as_codes and read-only): clean only the changed cells
            changed = np.flatnonzero(arr != self.grid_code)
            codes = self.grid_code.copy()
            codes[changed] = _as_codes(arr[changed])
        else:
            codes = _as_codes(arr)
        codes.flags.writeable = False
        out = replace(self, grid_code=codes, grids=self.grids if grids is None else _grid_table(grids), meta={})
        hit = _LABELS.get(self) if grids is None and changed is not None else None
        if hit is not None:  # same grid table: only the changed cells need a lookup
            lab = hit[0].copy()
            lab[changed] = _labels_of(codes[changed], hit[1])
            _LABELS[out] = (lab, hit[1])
        return out

    def with_labels(self, labels: np.ndarray, grids: pd.DataFrame | None = None) -> Partition:
        """A new partition sharing the fixed arrays whose cell ``i`` is in grid ``grids["grid_code"][labels[i]]``
        (``-1``: no grid; ``grids``: this partition's grid table when ``None``): a stored version, without a
        lookup per cell (its labels are known)."""
        if grids is None:
            table, lab = self.grids, np.asarray(labels, dtype=np.int64)
            codes_of = table["grid_code"].to_numpy().astype(object)
        else:
            table = _grid_table(grids)  # sorted by code: map the given order onto it
            codes_of = table["grid_code"].to_numpy().astype(object)
            order = pd.Index(codes_of).get_indexer(grids["grid_code"].astype(str).to_numpy(dtype=object))
            lab = np.where(labels >= 0, order[np.maximum(labels, 0)] if len(order) else -1, -1).astype(np.int64)
        codes = np.append(codes_of, "").astype(object)[np.where(lab >= 0, lab, len(codes_of))]  # one take: -1 → ""
        codes.flags.writeable = False
        out = replace(self, grid_code=codes, grids=table, meta={})
        _LABELS[out] = (lab, codes_of)
        return out

    def cells_of(self, grid_code: str) -> np.ndarray:
        """Row indices of the cells of one grid; :class:`NotFoundError` for an unknown code."""
        self.grid_row(grid_code)
        return np.flatnonzero(self.grid_code == grid_code)

    def grid_row(self, grid_code: str) -> pd.Series:
        """The grid table's row of ``grid_code``; :class:`NotFoundError` for an unknown code."""
        pos = np.flatnonzero(self.grids["grid_code"].to_numpy() == str(grid_code))
        if len(pos) == 0:
            examples = ", ".join(self.grids["grid_code"].head(3))
            raise NotFoundError(f"unknown grid code {grid_code!r}; codes look like {examples} ({len(self.grids)} grids).")
        return self.grids.iloc[int(pos[0])]

    def index_of_cells(self, cells: Iterable[int] | np.ndarray) -> np.ndarray:
        """Row index of each ``uint64`` cell; :class:`PartitionError` names cells outside the district."""
        arr = np.asarray(list(cells) if not isinstance(cells, np.ndarray) else cells, dtype=np.uint64)
        table = self.cells
        if len(table) and bool((table[1:] > table[:-1]).all()):  # sorted ids (a twin's cells): binary search
            pos = np.minimum(np.searchsorted(table, arr), len(table) - 1)
            pos = np.where(table[pos] == arr, pos, -1)
        else:
            pos = pd.Index(table).get_indexer(arr)
        bad = pos < 0
        if bad.any():
            raise PartitionError(f"{int(bad.sum())} of {len(arr)} cells are not cells of the district "
                                 f"(first: {int(arr[bad][0]):x}).")
        return pos

    def labels(self) -> tuple[np.ndarray, np.ndarray]:
        """Integer label per cell (index into ``grids``; -1 unassigned or unknown) and the grid codes (computed
        once for a partition whose ``grid_code`` is read-only, e.g. a validated one)."""
        hit = _LABELS.get(self)
        if hit is not None and not self.grid_code.flags.writeable:
            return hit
        codes = self.grids["grid_code"].to_numpy().astype(object)
        out = _labels_of(self.grid_code, codes), codes
        if not self.grid_code.flags.writeable:
            _LABELS[self] = out
        return out

    def assignment_equals(self, other: Partition) -> bool:
        """Same cells → same grid codes and the same grid table."""
        return (len(self.cells) == len(other.cells) and bool(np.array_equal(self.grid_code, other.grid_code))
                and self.grids.reset_index(drop=True).equals(other.grids.reset_index(drop=True)))


def _as_codes(grid_code: Sequence[str] | np.ndarray) -> np.ndarray:
    arr = np.asarray(grid_code, dtype=object)
    out = np.empty(len(arr), dtype=object)
    out[:] = [v if type(v) is str else "" if (v is None or (isinstance(v, float) and np.isnan(v))) else str(v)
              for v in arr.tolist()]
    out[out == "None"] = ""
    return out


def _grid_table(grids: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in ("grid_code", "community_code") if c not in grids.columns]
    if missing:
        raise ValidationError(f"grid table lacks column(s) {missing}; it needs {list(GRID_COLUMNS)}.")
    table = pd.DataFrame({c: (grids[c].astype(str).to_numpy() if c in grids.columns else "") for c in GRID_COLUMNS})
    if table["grid_name"].eq("").all():
        table["grid_name"] = table["grid_code"]
    dup = table["grid_code"][table["grid_code"].duplicated()].tolist()
    if dup:
        raise PartitionError(f"grid table lists grid code(s) more than once: {dup[:5]}.")
    return table.sort_values("grid_code", kind="stable").reset_index(drop=True)


def _labels_of(codes_per_cell: np.ndarray, grid_codes: np.ndarray) -> np.ndarray:
    """Index of each cell's code in ``grid_codes`` (unique), -1 for codes not in it (codes compared as ``str``)."""
    pos = {str(c): i for i, c in enumerate(np.asarray(grid_codes, dtype=object).tolist())}
    get = pos.get
    cells = np.asarray(codes_per_cell, dtype=object).tolist()
    return np.fromiter((get(c if type(c) is str else str(c), -1) for c in cells), dtype=np.int64, count=len(cells))


def partition_from_twin(twin: Twin, *, weights: dict[str, float] | None = None) -> Partition:
    """The twin's own partition (``twin.cells.grid_code`` and ``twin.grids``) as a :class:`Partition`.

    Cell workload uses :func:`twin.partition.workload.cell_workload` with ``weights``; the adjacency is cached in
    ``twin.cache["adjacency"]`` (shared with :func:`twin.partition.validate.validate`).
    """
    key = f"partition:{sorted((weights or {}).items())}"
    hit = twin.cache.get(key)
    if hit is not None:
        return hit
    cells = twin.cells["cell"].to_numpy()
    adj = twin.cache.get("adjacency")
    if adj is None:
        adj = twin.cache["adjacency"] = cells_adjacency(cells)
    xy = twin.cache.get("cell_xy")
    if xy is None:
        xy = twin.cache["cell_xy"] = np.column_stack(lnglat_to_xy(twin.cells["lng"].to_numpy(),
                                                                  twin.cells["lat"].to_numpy()))
    codes = _as_codes(twin.cells["grid_code"].to_numpy())
    table = _grid_table(twin.grids)
    comm_of = dict(zip(table["grid_code"], table["community_code"]))
    community = np.array([comm_of.get(c, "") for c in codes], dtype=object)
    p = Partition(cells=cells, grid_code=codes, grids=table, community=community, xy=xy,
                  weight=cell_workload(twin, weights=weights), adjacency=adj, blocks=cell_blocks(twin))
    twin.cache[key] = p
    return p


# -- rules ---------------------------------------------------------------------------------------------------
def check_partition(p: Partition, *, grids: Iterable[str] | None = None) -> list[str]:
    """Every rule the partition breaks, one sentence each, naming grid codes and cell counts (empty = valid).

    ``grids`` restricts the contiguity and nesting checks to those grid codes (used after a local edit);
    unassigned cells and unknown codes are always checked.
    """
    return _check(p, grids)[0]


def _check(p: Partition, grids: Iterable[str] | None) -> tuple[list[str], tuple[np.ndarray, np.ndarray]]:
    """:func:`check_partition` and the labels it computed (:meth:`Partition.labels`)."""
    problems: list[str] = []
    lab, table_codes = p.labels()
    neg = np.flatnonzero(lab < 0)  # no grid of the table: unassigned ("") or an unknown code (an int test, not
    neg_codes = p.grid_code[neg]   # a string comparison over every cell)
    unassigned = neg[neg_codes == ""]
    if len(unassigned):
        comms = sorted(set(p.community[unassigned].tolist()))
        problems.append(f"{len(unassigned)} cells belong to no grid (in communities {comms[:5]}; "
                        f"first cell {int(p.cells[unassigned[0]]):x}); every cell must be in a grid.")
    unknown = sorted(set(neg_codes[neg_codes != ""].tolist()))
    if unknown:
        problems.append(f"cells name {len(unknown)} grid code(s) missing from the grid table: {unknown[:5]}.")
    counts = np.bincount(lab[lab >= 0], minlength=len(table_codes))
    empty = table_codes[counts == 0].tolist()
    if empty:
        problems.append(f"{len(empty)} grid(s) have no cells: {empty[:5]}; remove them (merge) instead.")
    check = set(table_codes.tolist()) if grids is None else set(grids)
    in_scope = np.isin(np.arange(len(table_codes)), [i for i, c in enumerate(table_codes) if c in check])
    # nesting: a grid's cells all belong to its community
    grid_comm = p.grids["community_code"].to_numpy().astype(object)
    idx = np.flatnonzero((lab >= 0) & in_scope[np.maximum(lab, 0)])  # the cells of the grids checked
    wrong = idx[p.community[idx] != grid_comm[lab[idx]]]
    if len(wrong):
        for g in np.unique(lab[wrong])[:5]:
            sel = wrong[lab[wrong] == g]
            others = sorted(set(p.community[sel].tolist()))
            problems.append(f"grid {table_codes[g]} (community {grid_comm[g]}) holds {len(sel)} cell(s) of "
                            f"community {', '.join(others)}; a grid must stay inside its community.")
    # contiguity
    if len(idx):
        sub = p.adjacency[idx][:, idx]
        _, comp = label_components(lab[idx], sub)
        lab_idx = lab[idx]
        for g in np.unique(lab_idx):
            pieces = np.bincount(comp[lab_idx == g])
            pieces = np.sort(pieces[pieces > 0])[::-1]
            if len(pieces) > 1:
                sizes = " + ".join(str(int(s)) for s in pieces[:6])
                problems.append(f"grid {table_codes[g]} is split into {len(pieces)} pieces ({sizes} cells); "
                                "a grid must be one contiguous piece.")
    return problems, (lab, table_codes)


def validate_partition(p: Partition, *, grids: Iterable[str] | None = None, action: str = "",
                       parent: Partition | None = None) -> Partition:
    """Return ``p`` if it keeps every rule, else raise :class:`PartitionError` listing each break.

    A partition that passes the full check (``grids=None``), or the check of ``grids`` when it is ``parent``
    (itself :func:`known_valid`) with only the cells and grid-table rows of ``grids`` changed, is remembered as
    valid (:func:`known_valid`): committing it does not check it again. Its ``grid_code`` array is then made
    read-only (a partition is a value; edits return new ones).
    """
    problems, labels = _check(p, grids)
    if problems:
        prefix = f"{action} rejected: " if action else "invalid partition: "
        raise PartitionError(prefix + " ".join(problems))
    if grids is None or (parent is not None and known_valid(parent)):
        _mark_valid(p)
        _LABELS[p] = labels
    return p


_KNOWN_VALID: weakref.WeakSet[Partition] = weakref.WeakSet()
_LABELS: weakref.WeakKeyDictionary[Partition, tuple[np.ndarray, np.ndarray]] = weakref.WeakKeyDictionary()


def _mark_valid(p: Partition) -> None:
    p.grid_code.flags.writeable = False
    _KNOWN_VALID.add(p)


def mark_stored_valid(p: Partition) -> Partition:
    """Remember ``p``, the partition of a stored version, as valid without checking it again (every stored version
    was validated when it was committed: :func:`twin.partition.versions.commit`). Returns ``p``."""
    _mark_valid(p)
    return p


def known_valid(p: Partition) -> bool:
    """Whether ``p`` (this very object) passed :func:`validate_partition` in this process: the full check, or an
    edit's local check on top of a partition known valid (a stored version loaded from the store is known valid:
    every version was validated when it was committed)."""
    return p in _KNOWN_VALID and not p.grid_code.flags.writeable


# -- codes and names -----------------------------------------------------------------------------------------
def next_grid_codes(grids: pd.DataFrame, community_code: str, n: int) -> list[str]:
    """``n`` unused grid codes of a community: ``<community code><3-digit sequence>`` after the largest in use."""
    codes = grids.loc[grids["community_code"] == community_code, "grid_code"].astype(str)
    seqs = [int(c[len(community_code):]) for c in codes if c.startswith(community_code) and
            c[len(community_code):].isdigit()]
    start = max(seqs, default=0) + 1
    return [f"{community_code}{s:03d}" for s in range(start, start + n)]


def grid_name_for(grids: pd.DataFrame, community_code: str, code: str) -> str:
    """A name for a new grid in the style of the community's existing grids (``…第12网格``)."""
    names = grids.loc[grids["community_code"] == community_code, "grid_name"].astype(str)
    seq = code[len(community_code):].lstrip("0") or "0"
    for name in names:
        m = re.match(r"^(.*)第\d+网格$", name)
        if m:
            return f"{m.group(1)}第{seq}网格"
    return code


# -- workers follow the partition ----------------------------------------------------------------------------
def reassign_workers(workers: pd.DataFrame, p: Partition) -> pd.DataFrame:
    """Grid workers for partition ``p``: a worker keeps a grid that still exists; every grid without a worker
    gets the nearest spare worker of the same community (a worker of a removed grid, else one of a grid with
    several workers), then of any community; workers of removed grids left over join the grid they stand in
    (else their old community's grid nearest to them). Coordinates (WGS84) are unchanged.
    """
    out = workers.copy()
    if out.empty:
        return out
    codes = p.grids["grid_code"].to_numpy().astype(str)
    comm_of_grid = dict(zip(p.grids["grid_code"], p.grids["community_code"]))
    lab, _ = p.labels()
    # grid centre (EPSG:4547) = mean of its cell centres
    ok = lab >= 0
    cnt = np.bincount(lab[ok], minlength=len(codes)).astype(float)
    cx = np.bincount(lab[ok], weights=p.xy[ok, 0], minlength=len(codes)) / np.maximum(cnt, 1)
    cy = np.bincount(lab[ok], weights=p.xy[ok, 1], minlength=len(codes)) / np.maximum(cnt, 1)
    wx, wy = lnglat_to_xy(out["lng"].to_numpy(float), out["lat"].to_numpy(float))
    old = out["grid_code"].astype(str).to_numpy()
    old_comm = np.array([c[:12] if len(c) >= 12 else c for c in old], dtype=object)  # community code prefix
    current = np.array([c if c in comm_of_grid else "" for c in old], dtype=object)
    grid_pos = {c: i for i, c in enumerate(codes)}

    def _per_grid() -> np.ndarray:
        return np.bincount([grid_pos[c] for c in current if c], minlength=len(codes))

    per = _per_grid()
    for g in np.flatnonzero(per == 0):
        comm = comm_of_grid[codes[g]]
        free = current == ""
        spare = np.isin(current, codes[per > 1])
        choice = -1
        for pool in (free & (old_comm == comm), spare & _in_comm(current, comm_of_grid, comm), free, spare):
            cand = np.flatnonzero(pool)
            if len(cand):
                d = (wx[cand] - cx[g]) ** 2 + (wy[cand] - cy[g]) ** 2
                choice = int(cand[np.argmin(d)])
                break
        if choice < 0:
            break  # more grids than workers
        if current[choice]:
            per[grid_pos[current[choice]]] -= 1
        current[choice] = codes[g]
        per[g] += 1
    for i in np.flatnonzero(current == ""):
        same = np.array([comm_of_grid[c] == old_comm[i] for c in codes])
        cand = np.flatnonzero(same) if same.any() else np.arange(len(codes))
        d = (cx[cand] - wx[i]) ** 2 + (cy[cand] - wy[i]) ** 2
        current[i] = codes[cand[np.argmin(d)]]
    out["grid_code"] = current.astype(str)
    return out


def _in_comm(current: np.ndarray, comm_of_grid: dict[str, str], comm: str) -> np.ndarray:
    return np.array([bool(c) and comm_of_grid.get(c) == comm for c in current], dtype=bool)


def neighbour_grids(p: Partition, grid_code: str) -> list[str]:
    """Codes of the grids that share at least one H3 cell edge with ``grid_code`` in partition ``p``.

    This is the twin's one definition of neighbouring grids (the app's dossier, the editing panel and the
    contiguity rule all use it): two grids are neighbours when a cell of one is edge-adjacent to a cell of the
    other (``p.adjacency``), whatever their communities. Grids that only touch at a corner, or whose clipped
    polygons merely touch along the district boundary, are not neighbours. No geometry or CRS is involved.

    Parameters
    ----------
    p : Partition
        The partition (e.g. :func:`partition_from_twin` or a stored version).
    grid_code : str
        The grid whose neighbours are wanted.

    Returns
    -------
    list of str
        Neighbouring grid codes, sorted; the grid itself and unassigned cells are left out.

    Raises
    ------
    NotFoundError
        ``grid_code`` is not a grid of ``p``.

    Examples
    --------
    >>> neighbour_grids(partition_from_twin(t), "440604010001001")      # doctest: +SKIP
    ['440604010001002', '440604010001005']
    """
    idx = p.cells_of(grid_code)
    nb = np.unique(p.adjacency[idx].indices)
    return sorted(set(p.grid_code[nb].astype(str).tolist()) - {str(grid_code), ""})
