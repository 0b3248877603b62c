"""Workload, size and shape per grid, and the balance report of a partition.

Workload (:mod:`twin.partition.workload`): ``Σ weight[k] × count[k]`` per grid over residents, dwellings, businesses, key
persons (disabled | low-income | pregnant | aged 80+ on ``twin.as_of``) and incidents (0 by default; pass incident
records to count them). Counts are per H3 cell (a record's cell is its building's cell), so the workload of any
partition is a sum over its cells.

Balance is judged against the **community-level ideal**: grids never cross community borders, so a grid's fair
share is its community's workload divided by the number of grids of that community. The report also gives the
district-wide mean, coefficient of variation (CV = std / mean) and max/min of grid workloads, area in km² and
Polsby–Popper compactness ``4πA / P²`` (1 for a disc), both measured in EPSG:4547 on the grid polygons (the union
of the grid's cells clipped to the district), and for a twin with blocks the **clear boundaries** share: the share
of the grid boundary on street/water edges (界线清晰, :func:`twin.partition.edges.clear_share`).

The per-cell figures (:func:`~twin.partition.workload.cell_counts`, :func:`~twin.partition.workload.cell_workload`,
:data:`~twin.partition.workload.COUNT_COLUMNS`) live in :mod:`twin.partition.workload`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd

from twin.crs import to_metric
from twin.errors import PartitionError, ValidationError
from twin.model import Twin
from twin.partition.edges import blocks_for_cells, clear_share
from twin.partition.model import Partition, check_partition
from twin.partition.polygons import cell_codes, changed_units_polygons, units_to_polygons
from twin.partition.regions import label_components
from twin.partition.workload import COUNT_COLUMNS, cell_counts, cell_workload

__all__ = [
    "DEFAULT_THRESHOLD",
    "BalanceReport",
    "grid_stats",
    "grid_polygons",
    "balance_report",
    "balance_summary",
    "EditEffect",
    "edit_effect",
    "clear_boundaries",
]

DEFAULT_THRESHOLD = 0.10  # flag grids whose workload is more than 10 % off their community-level ideal


def grid_polygons(twin: Twin, p: Partition, *, grids: Iterable[str] | None = None) -> gpd.GeoDataFrame:
    """Grid polygons of partition ``p`` (WGS84) with ``grid_code``, ``n_cells``, ``area_km2`` and ``perimeter_km``
    (EPSG:4547), ``polsby_popper`` and the grid table's columns. Unassigned cells are left out; with ``grids``
    only those grid codes are built from their cells (fast for a few grids); without, grids ``p`` did not change keep
    the twin's outlines (:func:`twin.partition.polygons.changed_units_polygons`)."""
    ok = p.grid_code != ""
    if grids is None and {"n_cells", "area_km2"} <= set(twin.grids.columns) and len(p.cells) == len(twin.cells):
        # the whole partition: untouched grids keep the twin's outlines (e.g. along streets), as on the map
        polys = changed_units_polygons(twin.grids, cell_codes(twin), p.cells, p.grid_code, twin.district)
    else:
        if grids is not None:
            ok &= np.isin(p.grid_code, np.asarray(list(grids), dtype=object))
        polys = units_to_polygons(p.cells[ok], p.grid_code[ok], twin.district, name="grid_code")
    polys["perimeter_km"] = to_metric(polys.geometry).length.to_numpy() / 1e3
    per_m = polys["perimeter_km"].to_numpy() * 1e3
    polys["polsby_popper"] = np.where(per_m > 0, 4 * np.pi * polys["area_km2"].to_numpy() * 1e6 / per_m ** 2, 0.0)
    return polys.merge(p.grids, on="grid_code", how="left")


def grid_stats(twin: Twin, p: Partition, *, weights: Mapping[str, float] | None = None,
               incidents: pd.DataFrame | None = None, polygons: bool = True) -> pd.DataFrame:
    """One row per grid of ``p``: the grid table, ``n_cells``, counts, ``workload``, community-level ``ideal``,
    ``deviation`` (workload / ideal − 1), and with ``polygons`` also ``area_km2`` and ``polsby_popper``."""
    counts = cell_counts(twin, incidents=incidents)
    work = cell_workload(twin, weights=weights, incidents=incidents)
    lab, codes = p.labels()
    ok = lab >= 0
    n = len(codes)
    out = p.grids.copy()
    out["n_cells"] = np.bincount(lab[ok], minlength=n)
    for k in COUNT_COLUMNS:
        out[k] = np.bincount(lab[ok], weights=counts[k].to_numpy()[ok], minlength=n)
    out["workload"] = np.bincount(lab[ok], weights=work[ok], minlength=n)
    comm_work = pd.Series(work).groupby(p.community).sum()
    n_in_comm = out.groupby("community_code")["grid_code"].transform("size")
    out["ideal"] = out["community_code"].map(comm_work).fillna(0.0).to_numpy() / n_in_comm.to_numpy()
    out["deviation"] = np.where(out["ideal"] > 0, out["workload"] / out["ideal"].where(out["ideal"] > 0, 1) - 1, 0.0)
    if polygons:
        polys = grid_polygons(twin, p)[["grid_code", "area_km2", "perimeter_km", "polsby_popper"]]
        out = out.merge(polys, on="grid_code", how="left")
    return out


@dataclass
class BalanceReport:
    """Per-grid table (plus an ``UNASSIGNED`` row when cells are unassigned) and district figures."""

    table: pd.DataFrame
    summary: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def to_text(self, *, top: int = 10) -> str:
        """District figures, the ``top`` grids furthest from their ideal, and the rule breaks, as plain text."""
        s = self.summary
        lines = [
            f"grids {s['grids']}  workload mean {s['mean']:.0f}  CV {s['cv']:.3f}  max/min {s['max_over_min']:.2f}",
            f"max |deviation| from community ideal {100 * s['max_abs_dev']:.1f} %  "
            f"flagged (> {100 * s['threshold']:.0f} %) {s['flagged']}  unassigned cells {s['unassigned_cells']}",
            f"contiguous {s['contiguous']}  nested {s['nested']}  mean Polsby-Popper {s['mean_polsby_popper']:.3f}"
            + ("" if s.get("clear_boundaries") is None else
               f"  clear boundaries (street/water) {100 * s['clear_boundaries']:.1f} %"),
        ]
        t = self.table[self.table["grid_code"] != "UNASSIGNED"]
        worst = t.reindex(t["deviation"].abs().sort_values(ascending=False).index).head(top)
        lines.append(f"{'grid':<16}{'workload':>10}{'ideal':>10}{'dev %':>8}{'km²':>7}{'PP':>6}  flag")
        for r in worst.itertuples():
            lines.append(f"{r.grid_code:<16}{r.workload:>10.0f}{r.ideal:>10.0f}{100 * r.deviation:>+8.1f}"
                         f"{getattr(r, 'area_km2', np.nan):>7.2f}{getattr(r, 'polsby_popper', np.nan):>6.2f}  "
                         f"{'*' if r.flagged else ''}")
        lines += [f"PROBLEM: {p}" for p in self.problems]
        return "\n".join(lines)


def balance_summary(workloads: np.ndarray, deviations: np.ndarray) -> dict[str, float]:
    """Mean, CV (population std / mean), max, min, max/min and max |deviation| of grid workloads."""
    w = np.asarray(workloads, dtype=float)
    d = np.asarray(deviations, dtype=float)
    mean = float(w.mean()) if len(w) else 0.0
    return {
        "mean": mean,
        "cv": float(w.std() / mean) if mean > 0 else 0.0,
        "max": float(w.max()) if len(w) else 0.0,
        "min": float(w.min()) if len(w) else 0.0,
        "max_over_min": float(w.max() / w.min()) if len(w) and w.min() > 0 else float("inf"),
        "max_abs_dev": float(np.abs(d).max()) if len(d) else 0.0,
    }


def balance_report(twin: Twin, p: Partition, *, weights: Mapping[str, float] | None = None,
                   threshold: float = DEFAULT_THRESHOLD, incidents: pd.DataFrame | None = None,
                   polygons: bool = True) -> BalanceReport:
    """Balance of partition ``p`` on ``twin``'s data.

    Parameters
    ----------
    threshold : float
        Grids with ``|deviation| > threshold`` from their community-level ideal are flagged (0.10 = 10 %).
    polygons : bool
        Compute area (km², EPSG:4547) and Polsby–Popper from grid polygons (≈ 1 s for the district).

    Returns
    -------
    BalanceReport
        ``table``: one row per grid with counts, ``workload``, ``ideal``, ``deviation`` (fraction, signed),
        ``area_km2``, ``polsby_popper``, ``contiguous``, ``nested``, ``flagged``; unassigned cells form a row
        with ``grid_code == "UNASSIGNED"``. ``summary``: grids, mean, cv, max, min, max_over_min, max_abs_dev,
        flagged, threshold, unassigned_cells, contiguous, nested, mean_polsby_popper, clear_boundaries (share of
        the grid boundary on street/water edges; None for a twin without blocks).
    """
    if not 0 <= threshold < 10:
        raise ValidationError(f"threshold is a fraction of the ideal (0.10 = 10 %); got {threshold}.")
    table = grid_stats(twin, p, weights=weights, incidents=incidents, polygons=polygons)
    lab, codes = p.labels()
    # per-grid rule flags
    ok = lab >= 0
    grid_comm = p.grids["community_code"].to_numpy().astype(object)
    foreign = ok & (p.community != np.where(ok, grid_comm[np.maximum(lab, 0)], ""))
    table["nested"] = np.bincount(lab[foreign], minlength=len(codes)) == 0
    idx = np.flatnonzero(ok)
    _, comp = label_components(lab[idx], p.adjacency[idx][:, idx])
    pieces = np.zeros(len(codes), dtype=np.int64)
    for g, _c in set(zip(lab[idx].tolist(), comp.tolist())):
        pieces[g] += 1
    table["contiguous"] = pieces == 1
    table["flagged"] = table["deviation"].abs() > threshold
    summary: dict[str, Any] = {"grids": len(codes), **balance_summary(table["workload"].to_numpy(),
                                                                       table["deviation"].to_numpy())}
    unassigned = ~ok
    summary.update({
        "flagged": int(table["flagged"].sum()),
        "threshold": threshold,
        "unassigned_cells": int(unassigned.sum()),
        "contiguous": bool(table["contiguous"].all()),
        "nested": bool(table["nested"].all()),
        "mean_polsby_popper": float(table["polsby_popper"].mean()) if "polsby_popper" in table else float("nan"),
        "clear_boundaries": clear_boundaries(twin, p),
    })
    if unassigned.any():
        counts = cell_counts(twin, incidents=incidents)
        work = cell_workload(twin, weights=weights, incidents=incidents)
        row = {"grid_code": "UNASSIGNED", "grid_name": "unassigned cells", "community_code": "", "town_code": "",
               "n_cells": int(unassigned.sum()), "workload": float(work[unassigned].sum()), "ideal": np.nan,
               "deviation": np.nan, "contiguous": False, "nested": False, "flagged": True}
        row.update({k: float(counts[k].to_numpy()[unassigned].sum()) for k in COUNT_COLUMNS})
        table = pd.concat([table, pd.DataFrame([row])], ignore_index=True)
    return BalanceReport(table=table, summary=summary, problems=check_partition(p))


def clear_boundaries(twin: Twin, p: Partition) -> float | None:
    """Share (0…1) of the grid boundary of ``p`` on street/water edges (cells of different blocks on either side,
    :mod:`twin.partition.edges`); None for a twin without blocks or a partition without a boundary."""
    return clear_share(p.grid_code, p.adjacency, blocks_for_cells(twin, p.cells))


@dataclass
class EditEffect:
    """What an edit (partition ``before`` → ``after``) does to the grids it touches.

    ``grids``: one row per touched grid (cells changed hands, grid added or removed, or its community gained or
    lost a grid so its ideal moved): ``grid_code``, ``community_code``, ``status`` (``changed`` / ``added`` /
    ``removed`` / ``ideal changed``), ``n_cells``, ``workload``, ``ideal``
    and ``deviation`` (community-level, fraction) ``_before`` and ``_after`` (NaN where the grid does not exist),
    and ``area_km2`` / ``polsby_popper`` after the edit (EPSG:4547). ``communities``: per touched community the
    number of grids and the CV of their workloads before and after. ``summary``: district grids, CV and max
    |deviation| before and after, ``cells_moved``, and ``clear_boundaries_before`` / ``_after`` (share of the grid
    boundary on street/water edges, None for a twin without blocks). ``shapes``: WGS84 polygons of the touched
    grids after the edit whose cells changed (for a preview outline).
    """

    grids: pd.DataFrame
    communities: pd.DataFrame
    summary: dict[str, float | None]
    shapes: gpd.GeoDataFrame


def _grid_dev(p: Partition, work: np.ndarray) -> pd.DataFrame:
    lab, codes = p.labels()
    ok = lab >= 0
    out = p.grids[["grid_code", "community_code"]].copy()
    out["n_cells"] = np.bincount(lab[ok], minlength=len(codes))
    out["workload"] = np.bincount(lab[ok], weights=work[ok], minlength=len(codes))
    comm = out.groupby("community_code")["workload"]
    out["ideal"] = comm.transform("sum") / comm.transform("size")
    out["deviation"] = np.where(out["ideal"] > 0, out["workload"] / out["ideal"].where(out["ideal"] > 0, 1) - 1, 0.0)
    return out


def _community_cv(dev: pd.DataFrame, comms: list[str]) -> pd.DataFrame:
    sub = dev[dev["community_code"].isin(comms)]
    g = sub.groupby("community_code")["workload"]
    cv = (g.std(ddof=0) / g.mean()).where(g.mean() > 0, 0.0)
    return pd.DataFrame({"grids": g.size(), "cv": cv}).reindex(comms)


def edit_effect(twin: Twin, before: Partition, after: Partition, *,
                weights: Mapping[str, float] | None = None) -> EditEffect:
    """Balance before → after for the grids an edit touches (see :class:`EditEffect`); workload per
    :func:`cell_workload`. Raises :class:`PartitionError` when the partitions are not on the same cells."""
    if len(before.cells) != len(after.cells) or not np.array_equal(before.cells, after.cells):
        raise PartitionError("edit_effect needs two partitions of the same cells (versions of one twin).")
    work = cell_workload(twin, weights=weights)
    moved = before.grid_code != after.grid_code
    codes_b, codes_a = set(before.grids["grid_code"]), set(after.grids["grid_code"])
    touched = sorted((set(before.grid_code[moved].tolist()) | set(after.grid_code[moved].tolist())
                      | (codes_b ^ codes_a)) - {""})
    db, da = _grid_dev(before, work), _grid_dev(after, work)
    # grids of a touched community whose cells stay but whose ideal moves (the community gained/lost a grid)
    comm_touched = set(db.loc[db["grid_code"].isin(touched), "community_code"]) | set(
        da.loc[da["grid_code"].isin(touched), "community_code"])
    both = db.merge(da, on="grid_code", suffixes=("_b", "_a"))
    shifted = both["community_code_a"].isin(comm_touched) & ~np.isclose(both["ideal_b"], both["ideal_a"])
    touched = sorted(set(touched) | set(both.loc[shifted, "grid_code"]))
    cols = ["n_cells", "workload", "ideal", "deviation"]
    table = pd.DataFrame({"grid_code": pd.Series(touched, dtype=object)})
    table = table.merge(db[["grid_code", "community_code", *cols]], on="grid_code", how="left")
    table = table.merge(da[["grid_code", "community_code", *cols]], on="grid_code", how="left",
                        suffixes=("_before", "_after"))
    table.insert(1, "community_code", table.pop("community_code_after").fillna(table.pop("community_code_before")))
    cells_changed = set(before.grid_code[moved].tolist()) | set(after.grid_code[moved].tolist())
    table.insert(2, "status", np.where(~table["grid_code"].isin(codes_b), "added",
                                       np.where(~table["grid_code"].isin(codes_a), "removed",
                                                np.where(table["grid_code"].isin(cells_changed), "changed",
                                                         "ideal changed"))))
    shapes = grid_polygons(twin, after, grids=[c for c in touched if c in codes_a and c in cells_changed])
    table = table.merge(shapes[["grid_code", "area_km2", "polsby_popper"]], on="grid_code", how="left")
    comms = sorted(set(table["community_code"].astype(str)))
    cb, ca = _community_cv(db, comms), _community_cv(da, comms)
    communities = pd.DataFrame({"community_code": comms, "grids_before": cb["grids"].fillna(0).astype(int).to_numpy(),
                                "grids_after": ca["grids"].fillna(0).astype(int).to_numpy(),
                                "cv_before": cb["cv"].to_numpy(), "cv_after": ca["cv"].to_numpy()})
    sb = balance_summary(db["workload"].to_numpy(), db["deviation"].to_numpy())
    sa = balance_summary(da["workload"].to_numpy(), da["deviation"].to_numpy())
    summary = {"grids_before": len(db), "grids_after": len(da), "cv_before": sb["cv"], "cv_after": sa["cv"],
               "max_abs_dev_before": sb["max_abs_dev"], "max_abs_dev_after": sa["max_abs_dev"],
               "cells_moved": int(moved.sum()), "clear_boundaries_before": clear_boundaries(twin, before),
               "clear_boundaries_after": clear_boundaries(twin, after)}
    return EditEffect(grids=table, communities=communities, summary=summary, shapes=shapes)
