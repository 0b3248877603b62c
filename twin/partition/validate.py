"""`twin validate`: check the partition and hierarchy of a twin and report every problem.

Unlike :func:`twin.partition.model.check_partition` (the rules of a :class:`~twin.partition.model.Partition`,
used by every edit), this checks a whole built twin: the NBS hierarchy, the grid polygons against the real
district boundary (areas in km², EPSG:4547) and the grid workers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp
import shapely

from twin.cells import cells_adjacency
from twin.crs import area_km2, lnglat_to_xy, to_metric
from twin.geography import nbs_communities, nbs_towns
from twin.model import Twin
from twin.partition.regions import label_components

__all__ = ["ValidationReport", "validate", "clear_boundary_share"]


@dataclass
class ValidationReport:
    """Problems found (empty = valid) and the figures checked."""

    problems: list[str] = field(default_factory=list)
    figures: dict[str, object] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    def to_text(self) -> str:
        """Figures and problems as plain text."""
        lines = ["Chancheng twin validation", "-" * 40]
        for k, v in self.figures.items():
            lines.append(f"{k:>34}: {v}")
        lines.append("-" * 40)
        lines += [f"PROBLEM: {p}" for p in self.problems] or ["OK: no problems found"]
        return "\n".join(lines)


def validate(twin: Twin, *, cell_grid: np.ndarray | None = None) -> ValidationReport:
    """Check the partition and hierarchy of ``twin`` and report every problem found.

    Checks: every cell in exactly one grid, every grid in one community of its NBS town, grids (and communities,
    towns) contiguous over edge-sharing H3 cells, the union of the grid polygons (WGS84) equals the district
    (difference and overlap in km², measured in EPSG:4547), every grid has a grid worker. Figures also give the
    grids' mean Polsby–Popper compactness and the "clear boundaries" share (:func:`clear_boundary_share`) of
    grids, communities and towns.

    Parameters
    ----------
    twin : Twin
        The loaded twin.
    cell_grid : np.ndarray, optional
        Grid code per ``twin.cells`` row, to check another partition than the twin's own.

    Returns
    -------
    ValidationReport
        ``problems`` (empty = valid) and the ``figures`` checked.
    """
    rep = ValidationReport()
    cells = twin.cells["cell"].to_numpy()
    codes = twin.cells["grid_code"].to_numpy().astype(str) if cell_grid is None else np.asarray(cell_grid, str)
    _check_cells(rep, cells, codes, set(twin.grids["grid_code"]))
    comm = nbs_communities().set_index("community_code")
    _check_nesting(rep, twin, comm)
    _check_contiguity(rep, twin, cells, codes, comm)
    _check_coverage(rep, twin)
    _fabric_figures(rep, twin, codes)
    _count_figures(rep, twin, n_cells=len(cells))
    return rep


_DIVIDING = ("expressway", "arterial", "collector", "local")  # street classes that make a clear boundary


def clear_boundary_share(twin: Twin, unit_of_cell: np.ndarray) -> float | None:
    """Share (0…1) of the boundary between units (e.g. grids) that runs along a street or water (界线清晰).

    The boundary is the set of edges between edge-sharing cells of different units (equal hexagon edges, so the
    share of edges is the share of length); an edge is *clear* when the segment joining the two cell centres
    crosses a street centre line (classes expressway … local) or water (EPSG:4547). ``None`` when the twin has
    no streets or water tables (built before the city fabric) or no boundary at all.
    """
    if twin.streets is None and twin.water is None:
        return None
    adj = twin.cache.get("adjacency")
    if adj is None:
        adj = twin.cache["adjacency"] = cells_adjacency(twin.cells["cell"].to_numpy())
    coo = sp.triu(adj, k=1).tocoo()
    labels = np.unique(np.asarray(unit_of_cell).astype(str), return_inverse=True)[1]
    cut = labels[coo.row] != labels[coo.col]
    if not cut.any():
        return None
    tree, xy = _barriers(twin)
    segs = shapely.linestrings(np.stack([xy[coo.row[cut]], xy[coo.col[cut]]], axis=1))
    hit = tree.query(segs, predicate="intersects")[0]
    return float(len(np.unique(hit)) / len(segs))


def _barriers(twin: Twin) -> tuple[shapely.STRtree, np.ndarray]:
    """An STRtree of the dividing streets and the water (EPSG:4547) and the cell centres (EPSG:4547), cached."""
    got = twin.cache.get("fabric_barriers")
    if got is None:
        parts = []
        if twin.streets is not None:
            parts.append(to_metric(twin.streets[twin.streets["class"].isin(_DIVIDING)]).geometry.to_numpy())
        if twin.water is not None:
            parts.append(to_metric(twin.water).geometry.to_numpy())
        x, y = lnglat_to_xy(twin.cells["lng"].to_numpy(), twin.cells["lat"].to_numpy())
        got = twin.cache["fabric_barriers"] = (shapely.STRtree(np.concatenate(parts)), np.column_stack([x, y]))
    return got


def _fabric_figures(rep: ValidationReport, twin: Twin, codes: np.ndarray) -> None:
    """Compactness (mean Polsby–Popper of the grid polygons, EPSG:4547) and the clear-boundary share per level."""
    g = to_metric(twin.grids.geometry)
    pp = 4 * np.pi * g.area.to_numpy() / np.maximum(g.length.to_numpy(), 1e-9) ** 2
    rep.figures["mean Polsby-Popper (grids)"] = round(float(pp.mean()), 3)
    grid_comm = dict(zip(twin.grids["grid_code"], twin.grids["community_code"]))
    comm = np.array([grid_comm.get(c, "?") for c in codes])
    town = np.array([str(c)[:9] for c in comm])
    shares = [clear_boundary_share(twin, u) for u in (codes, comm, town)]
    if all(s is None for s in shares[:1]):
        rep.figures["clear boundaries (street/water)"] = "n/a (no streets or water in this twin)"
        return
    text = " / ".join("-" if s is None else f"{100 * s:.1f} %" for s in shares)
    rep.figures["clear boundaries grids/comm./towns"] = text


def _check_cells(rep: ValidationReport, cells: np.ndarray, codes: np.ndarray, known: set[str]) -> None:
    """Cells unique, each assigned to a known grid; every grid has cells."""
    if len(np.unique(cells)) != len(cells):
        rep.problems.append(f"{len(cells) - len(np.unique(cells))} cells appear more than once")
    unassigned = np.flatnonzero((codes == "") | (codes == "None"))
    if len(unassigned):
        rep.problems.append(f"{len(unassigned)} cells belong to no grid (first: {int(cells[unassigned[0]]):x})")
    unknown = sorted(set(codes) - known - {"", "None"})
    if unknown:
        rep.problems.append(f"cells name {len(unknown)} grid codes missing from the grid table: {unknown[:5]}")
    empty = sorted(known - set(codes))
    if empty:
        rep.problems.append(f"{len(empty)} grids have no cells: {empty[:5]}")


def _check_nesting(rep: ValidationReport, twin: Twin, comm: pd.DataFrame) -> None:
    """Grid → community → town as in the NBS list."""
    grids = twin.grids
    towns = set(nbs_towns()["town_code"])
    bad_comm = grids.loc[~grids["community_code"].isin(comm.index), "grid_code"].tolist()
    if bad_comm:
        rep.problems.append(f"{len(bad_comm)} grids name a community not in the NBS list: {bad_comm[:5]}")
    ok_rows = grids[grids["community_code"].isin(comm.index)]
    wrong_town = ok_rows.loc[ok_rows["town_code"].to_numpy() != comm.loc[ok_rows["community_code"], "town_code"]
                             .to_numpy(), "grid_code"].tolist()
    if wrong_town:
        rep.problems.append(f"{len(wrong_town)} grids sit in a town other than their community's: {wrong_town[:5]}")
    if set(twin.communities["town_code"]) - towns:
        rep.problems.append("communities name towns not in the NBS list")


def _check_contiguity(rep: ValidationReport, twin: Twin, cells: np.ndarray, codes: np.ndarray,
                      comm: pd.DataFrame) -> None:
    """Grids, communities and towns each one piece of edge-sharing cells."""
    adj = twin.cache.get("adjacency")
    if adj is None:
        adj = twin.cache["adjacency"] = cells_adjacency(cells)
    code_to_i = {c: i for i, c in enumerate(sorted(set(codes)))}
    lab = np.array([code_to_i[c] for c in codes])
    grid_comm = dict(zip(twin.grids["grid_code"], twin.grids["community_code"]))
    comm_town = dict(zip(comm.index, comm["town_code"]))
    for level, labels_of in (
        ("grid", lab),
        ("community", _codes_to_int(np.array([grid_comm.get(c, "?") for c in codes]))),
        ("town", _codes_to_int(np.array([comm_town.get(grid_comm.get(c, "?"), "?") for c in codes]))),
    ):
        ncomp, _ = label_components(labels_of, adj)
        nunits = len(np.unique(labels_of))
        rep.figures[f"{level}s (units / connected pieces)"] = f"{nunits} / {ncomp}"
        if ncomp != nunits:
            rep.problems.append(f"{ncomp - nunits} extra disconnected pieces among {level}s (each must be one piece)")
    inv = {i: c for c, i in code_to_i.items()}
    ncomp, comp = label_components(lab, adj)
    if ncomp != len(code_to_i):
        pieces = np.bincount(lab[np.unique(comp, return_index=True)[1]], minlength=len(code_to_i))
        split = [inv[int(i)] for i in np.flatnonzero(pieces > 1)]
        rep.problems.append(f"non-contiguous grids: {split[:10]}")


def _check_coverage(rep: ValidationReport, twin: Twin) -> None:
    """Union of the grid polygons vs the district, and overlap between grids (km², EPSG:4547)."""
    grids = twin.grids
    union = shapely.union_all(grids.geometry.values)
    d_km2 = area_km2(twin.district)
    u_km2 = area_km2(union)
    diff_km2 = area_km2(shapely.symmetric_difference(union, twin.district))
    rep.figures["district area km²"] = round(d_km2, 3)
    rep.figures["union of grids km²"] = round(u_km2, 3)
    rep.figures["difference km² (%)"] = f"{diff_km2:.4f} ({100 * diff_km2 / d_km2:.3f} %)"
    if diff_km2 / d_km2 > 0.001:
        rep.problems.append(f"union of grids differs from the district by {diff_km2:.3f} km² (> 0.1 %)")
    overlap_km2 = sum(g.area_km2 for g in grids.itertuples()) - u_km2
    rep.figures["overlap between grids km²"] = round(max(overlap_km2, 0.0), 4)
    if overlap_km2 > 0.001 * d_km2:
        rep.problems.append(f"grids overlap by {overlap_km2:.3f} km²")


def _count_figures(rep: ValidationReport, twin: Twin, *, n_cells: int) -> None:
    """Counts of every level and record table; every grid needs a grid worker."""
    grids = twin.grids
    rep.figures["cells"] = n_cells
    rep.figures["towns"] = twin.towns["town_code"].nunique()
    rep.figures["communities"] = twin.communities["community_code"].nunique()
    rep.figures["grids"] = grids["grid_code"].nunique()
    for k in ("buildings", "dwellings", "residents", "businesses", "workers", "cameras"):
        rep.figures[k] = twin.manifest["counts"].get(k)
    if len(twin.workers):
        per_grid = twin.workers.groupby("grid_code").size().reindex(grids["grid_code"], fill_value=0)
        if (per_grid == 0).any():
            rep.problems.append(f"{int((per_grid == 0).sum())} grids have no grid worker")


def _codes_to_int(codes: np.ndarray) -> np.ndarray:
    _, inv = np.unique(codes, return_inverse=True)
    return inv
