"""`twin validate`: check the partition and hierarchy of a twin and report."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import shapely

from twin.cells import cells_adjacency
from twin.crs import area_km2
from twin.geography import nbs_communities, nbs_towns
from twin.model import Twin
from twin.partition.regions import label_components

__all__ = ["ValidationReport", "validate"]


@dataclass
class ValidationReport:
    """Problems found (empty = valid) and the figures checked."""

    problems: list[str] = field(default_factory=list)
    figures: dict[str, object] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_text(self) -> str:
        lines = ["Chancheng twin validation", "-" * 40]
        for k, v in self.figures.items():
            lines.append(f"{k:>34}: {v}")
        lines.append("-" * 40)
        lines += [f"PROBLEM: {p}" for p in self.problems] or ["OK: no problems found"]
        return "\n".join(lines)


def validate(twin: Twin, *, cell_grid: np.ndarray | None = None) -> ValidationReport:
    """Check: every cell in exactly one grid, every grid in one community of its NBS town, grids (and
    communities, towns) contiguous, the union of grids equals the district (difference in km² and %).

    ``cell_grid`` (grid code per ``twin.cells`` row) checks another partition than the twin's own.
    """
    rep = ValidationReport()
    cells = twin.cells["cell"].to_numpy()
    codes = twin.cells["grid_code"].to_numpy().astype(str) if cell_grid is None else np.asarray(cell_grid, str)
    grids = twin.grids
    # cells: unique, each assigned to a known grid
    if len(np.unique(cells)) != len(cells):
        rep.problems.append(f"{len(cells) - len(np.unique(cells))} cells appear more than once")
    known = set(grids["grid_code"])
    unassigned = np.flatnonzero((codes == "") | (codes == "None"))
    if len(unassigned):
        rep.problems.append(f"{len(unassigned)} cells belong to no grid (first: {int(cells[unassigned[0]]):x})")
    unknown = sorted(set(codes) - known - {"", "None"})
    if unknown:
        rep.problems.append(f"cells name {len(unknown)} grid codes missing from the grid table: {unknown[:5]}")
    empty = sorted(known - set(codes))
    if empty:
        rep.problems.append(f"{len(empty)} grids have no cells: {empty[:5]}")
    # nesting: grid → community → town as in the NBS list
    comm = nbs_communities().set_index("community_code")
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
    # contiguity
    adj = twin.cache.get("adjacency")
    if adj is None:
        adj = twin.cache["adjacency"] = cells_adjacency(cells)
    code_to_i = {c: i for i, c in enumerate(sorted(set(codes)))}
    lab = np.array([code_to_i[c] for c in codes])
    grid_comm = dict(zip(grids["grid_code"], grids["community_code"]))
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
    # coverage: union of grids vs district
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
    rep.figures["cells"] = len(cells)
    rep.figures["towns"] = twin.towns["town_code"].nunique()
    rep.figures["communities"] = twin.communities["community_code"].nunique()
    rep.figures["grids"] = grids["grid_code"].nunique()
    for k in ("buildings", "dwellings", "residents", "businesses", "workers", "cameras"):
        rep.figures[k] = twin.manifest["counts"].get(k)
    if len(twin.workers):
        per_grid = twin.workers.groupby("grid_code").size().reindex(grids["grid_code"], fill_value=0)
        if (per_grid == 0).any():
            rep.problems.append(f"{int((per_grid == 0).sum())} grids have no grid worker")
    return rep


def _codes_to_int(codes: np.ndarray) -> np.ndarray:
    _, inv = np.unique(codes, return_inverse=True)
    return inv
