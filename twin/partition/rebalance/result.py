"""What a re-partition returns (:class:`RebalanceResult`), per-grid deviation from the community ideal, and the
latest benchmark baselines to show next to a result."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from twin.io import read_json
from twin.partition.model import Partition

__all__ = ["RebalanceResult", "community_deviation", "summarize_partition", "latest_baselines", "BASELINES_PATH"]

BASELINES_PATH = Path(__file__).resolve().parents[3] / "docs" / "rebalance_baselines.json"
"""Where ``benchmarks/rebalance.py`` writes its latest figures (in a source checkout)."""


@dataclass
class RebalanceResult:
    """A proposed partition and how it compares with the one it started from.

    Attributes
    ----------
    partition : Partition
        The proposal (validated: every cell in a grid, grids contiguous and nested, exactly the requested count).
    allocation : pd.DataFrame
        Per community: ``community_code``, ``town_code``, ``workload``, ``grids_before``, ``grids_after``,
        ``target`` (True where a per-community or per-town target fixed the count), ``locked`` (locked grids).
    grids : pd.DataFrame
        Per grid of the proposal: ``grid_code``, ``community_code``, ``locked``, ``n_cells``, one column per
        workload measure with a non-zero weight (the counts), ``workload``, ``ideal``, ``deviation``.
    before, after : dict
        ``grids``, ``cv``, ``max_dev``, ``over_10``, ``mean``, when polygons were measured ``polsby_popper``
        (mean, EPSG:4547), and for a twin with blocks ``clear_boundaries``: the share (0…1) of the grid boundary on
        street/water edges (界线清晰, :func:`twin.partition.edges.clear_share`).
    weights : dict
        The workload measures and their weights (every measure, 0 = not counted).
    """

    partition: Partition
    allocation: pd.DataFrame
    before: dict[str, float]
    after: dict[str, float]
    moved_share: float
    residents_moved: int
    seconds: float
    log: list[str] = field(default_factory=list)
    grids: pd.DataFrame | None = None
    weights: dict[str, float] = field(default_factory=dict)
    locked: list[str] = field(default_factory=list)
    targets: dict[str, int] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)

    def figures(self) -> dict[str, Any]:
        """The result's headline figures, keyed like the benchmark's baselines (``cv``, ``max_dev``,
        ``polsby_popper``, ``moved_share``, ``seconds``), ``clear_boundaries`` (share of the grid boundary on
        street/water edges; None for a twin without blocks) and its value before, plus the workload weights, locks
        and targets used."""
        b = self.before
        a = self.after
        return {"method": "twin.rebalance", "grids": int(a["grids"]), "cv": round(float(a["cv"]), 5),
                "max_dev": round(float(a["max_dev"]), 5), "over_10pct": int(a["over_10"]),
                "polsby_popper": round(float(a["polsby_popper"]), 4) if "polsby_popper" in a else None,
                "clear_boundaries": round(float(a["clear_boundaries"]), 4) if "clear_boundaries" in a else None,
                "clear_boundaries_before": (round(float(b["clear_boundaries"]), 4) if "clear_boundaries" in b
                                            else None),
                "moved_share": round(self.moved_share, 5), "residents_moved": self.residents_moved,
                "seconds": round(self.seconds, 2), "weights": dict(self.weights), "locked": len(self.locked),
                "targets": dict(self.targets)}

    def to_dict(self) -> dict[str, Any]:
        """Figures only (no partition), JSON-ready."""
        return {"grids": self.partition.n_grids, "before": self.before, "after": self.after,
                "moved_share": round(self.moved_share, 6), "residents_moved": self.residents_moved,
                "seconds": round(self.seconds, 2), "weights": dict(self.weights), "locked": list(self.locked),
                "targets": dict(self.targets), "params": dict(self.params)}

    def to_text(self) -> str:
        """Before → after figures as plain text."""
        b, a = self.before, self.after
        used = ", ".join(f"{k} × {v:g}" for k, v in self.weights.items() if v)
        lines = [
            f"grids {b['grids']} → {a['grids']} in {self.seconds:.1f} s; workload = {used or 'as given'}",
            f"CV of grid workload {b['cv']:.4f} → {a['cv']:.4f}",
            f"max |deviation| from the community ideal {100 * b['max_dev']:.2f} % → {100 * a['max_dev']:.2f} %  "
            f"(grids beyond 10 %: {b['over_10']} → {a['over_10']})",
        ]
        if "polsby_popper" in a and "polsby_popper" in b:
            lines.append(f"mean Polsby–Popper {b['polsby_popper']:.3f} → {a['polsby_popper']:.3f}")
        if "clear_boundaries" in a and "clear_boundaries" in b:
            lines.append(f"clear boundaries (on street/water edges) {100 * b['clear_boundaries']:.1f} % → "
                         f"{100 * a['clear_boundaries']:.1f} %")
        lines.append(f"residents moved to another grid: {self.residents_moved} ({100 * self.moved_share:.2f} %)")
        if self.locked:
            lines.append(f"locked grids kept as they were: {len(self.locked)}")
        if self.targets:
            lines.append(f"targets: {self.targets}")
        return "\n".join([*lines, *self.log])


def community_deviation(p: Partition, weight: np.ndarray | None = None) -> pd.DataFrame:
    """Per grid: ``workload``, community-level ``ideal`` and ``deviation`` (workload / ideal − 1)."""
    w = p.weight if weight is None else np.asarray(weight, float)
    lab, codes = p.labels()
    ok = lab >= 0
    out = p.grids[["grid_code", "community_code"]].copy()
    out["workload"] = np.bincount(lab[ok], weights=w[ok], minlength=len(codes))
    comm_w = out.groupby("community_code")["workload"].transform("sum")
    n = out.groupby("community_code")["grid_code"].transform("size")
    out["ideal"] = comm_w / n
    out["deviation"] = np.where(out["ideal"] > 0, out["workload"] / out["ideal"].where(out["ideal"] > 0, 1) - 1, 0)
    return out


def summarize_partition(p: Partition, weight: np.ndarray | None = None) -> dict[str, float]:
    """``grids``, ``cv`` (std / mean of grid workloads), ``max_dev`` (max |deviation| from the community ideal),
    ``over_10`` (grids beyond 10 %) and ``mean`` workload."""
    d = community_deviation(p, weight)
    w = d["workload"].to_numpy()
    return {"grids": int(p.n_grids), "cv": float(w.std() / w.mean()), "max_dev": float(d["deviation"].abs().max()),
            "over_10": int((d["deviation"].abs() > 0.10).sum()), "mean": float(w.mean())}


def latest_baselines(path: str | Path | None = None) -> dict[str, Any] | None:
    """The figures of the latest ``benchmarks/rebalance.py`` run (``docs/rebalance_baselines.json`` by default),
    or None when there is none: ``{"run_at", "load_average", "ours": {cv, max_dev, polsby_popper, moved_share,
    seconds, …}, "baseline": name of the best baseline, "baseline_cv", "baseline_max_dev", …, "checks", "dominates",
    "baselines": {name: {cv, max_dev, polsby_popper, moved_share, seconds, communities, ours_same: {...}}}}``
    (``ours_same``: twin.rebalance's figures on the communities that baseline covered)."""
    target = Path(path) if path is not None else BASELINES_PATH
    if not target.exists():
        return None
    return read_json(target)
