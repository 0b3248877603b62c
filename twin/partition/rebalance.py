"""Automatic re-partition: ``rebalance(t, n_grids=478)`` proposes grids of balanced workload, nested in the
communities, contiguous, fairly compact and close to the current grids.

Method (each community on its own, since grids never cross community borders):

1. **Allocation.** The district's ``n_grids`` are shared out over the communities by workload, at least one
   each, so that the grid workloads vary least when every grid gets its community ideal (:func:`allocate_grids`,
   Huntington–Hill priority). The community-level ideal is the community's workload divided by its grids.
2. **Split / merge.** A community that gains grids shares its new count over its current grids in proportion to
   their workload and splits the grids that get more than one (recursive bisection by workload,
   :func:`twin.partition.regions.bisect_labels`, then contiguity repair); the part with most of the old grid's residents
   keeps its code, new parts get the next free codes. A community that loses grids merges its lightest grid into
   its lightest neighbour until the count is right. Grids of other communities are untouched.
3. **Local search.** Boundary cells move to an adjacent grid of the same community when that lowers
   ``Σ_g [d_g² + 100 · max(0, |d_g| − tol)²] + β · cut_edges + γ · residents moved away from their grid / I``
   (``d_g = (L_g − I) / I``, L_g grid workload, I the community ideal, tol = 5 %). A cell moves only if the cells of its grid around it form one arc, so the
   grid stays one piece; no grid is emptied. Sweeps repeat until no move helps or the time budget runs out.

Balance comes first (squared deviations), compactness second (β, shorter shared boundaries), disruption third (γ,
residents keep their grid). All distances in EPSG:4547 metres.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from twin.errors import PartitionError, ValidationError
from twin.model import Twin
from twin.partition.model import Partition, grid_name_for, next_grid_codes, partition_from_twin, validate_partition
from twin.partition.regions import allocate_counts, bisect_labels, repair_contiguity
from twin.partition.workload import cell_counts, cell_workload

__all__ = ["DEFAULT_BETA", "DEFAULT_GAMMA", "DEFAULT_TOLERANCE", "RebalanceResult", "rebalance", "rebalance_partition", "allocate_grids", "community_deviation"]

DEFAULT_BETA = 0.002  # cost of one more cut edge (cell side shared by two grids), in squared-deviation units
DEFAULT_GAMMA = 0.2  # cost of moving one ideal grid's worth of residents away from their grid
DEFAULT_TOLERANCE = 0.05  # deviations beyond ±5 % of the community ideal are penalised 100 × harder
_HINGE = 100.0


@dataclass
class RebalanceResult:
    """A proposed partition and how it compares with the one it started from."""

    partition: Partition
    allocation: pd.DataFrame
    before: dict[str, float]
    after: dict[str, float]
    moved_share: float
    residents_moved: int
    seconds: float
    log: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Figures only (no partition), JSON-ready."""
        return {"grids": self.partition.n_grids, "before": self.before, "after": self.after,
                "moved_share": round(self.moved_share, 6), "residents_moved": self.residents_moved,
                "seconds": round(self.seconds, 2)}

    def to_text(self) -> str:
        """Before → after figures as plain text."""
        b, a = self.before, self.after
        return "\n".join([
            f"grids {b['grids']} → {a['grids']} in {self.seconds:.1f} s",
            f"CV of grid workload {b['cv']:.3f} → {a['cv']:.3f}",
            f"max |deviation| from the community ideal {100 * b['max_dev']:.1f} % → {100 * a['max_dev']:.1f} %  "
            f"(grids beyond 10 %: {b['over_10']} → {a['over_10']})",
            f"residents moved to another grid: {self.residents_moved} ({100 * self.moved_share:.2f} %)",
            *self.log,
        ])


def allocate_grids(community_workload: pd.Series, n_grids: int) -> pd.Series:
    """Grids per community (index = community code), at least 1 each, chosen to minimise the variance of grid
    workloads when every grid gets its community's ideal: greedily give the next grid to the community whose
    ``W² / (k (k + 1))`` is largest (Huntington–Hill priority; exact for this separable convex objective)."""
    weights = np.maximum(community_workload.to_numpy(float), 1e-9)
    if n_grids < len(weights):
        raise ValidationError(f"{n_grids} grids cannot cover {len(weights)} communities "
                              "(each needs at least one grid).")
    k = np.ones(len(weights), dtype=np.int64)
    heap = [(-(w * w) / 2.0, i) for i, w in enumerate(weights.tolist())]
    heapq.heapify(heap)
    for _ in range(int(n_grids) - len(weights)):
        _, i = heapq.heappop(heap)
        k[i] += 1
        heapq.heappush(heap, (-(weights[i] ** 2) / (k[i] * (k[i] + 1)), i))
    return pd.Series(k, index=community_workload.index, name="grids")


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


def _summary(p: Partition) -> dict[str, float]:
    d = community_deviation(p)
    w = d["workload"].to_numpy()
    return {"grids": int(p.n_grids), "cv": float(w.std() / w.mean()), "max_dev": float(d["deviation"].abs().max()),
            "over_10": int((d["deviation"].abs() > 0.10).sum()), "mean": float(w.mean())}


def rebalance(twin: Twin, n_grids: int = 478, *, partition: Partition | None = None,
              weights: Mapping[str, float] | None = None, residents: np.ndarray | None = None,
              beta: float = DEFAULT_BETA, gamma: float = DEFAULT_GAMMA, tolerance: float = DEFAULT_TOLERANCE,
              time_budget_s: float = 40.0, seed: int = 0) -> RebalanceResult:
    """Propose a partition of ``twin`` into exactly ``n_grids`` grids (see the module docstring for the method).

    Parameters
    ----------
    partition : Partition, optional
        The current partition to start from (default: the twin's own, :func:`twin.partition.model.partition_from_twin`).
    weights : mapping, optional
        Workload weights (:data:`twin.partition.workload.DEFAULT_WEIGHTS` keys), e.g. ``{"incidents": 2.0}``.
    residents : np.ndarray, optional
        Residents per cell for the disruption measure (default: the twin's residents).
    beta, gamma : float
        Weights of compactness (per cut cell edge) and disruption (per ideal grid's worth of residents moved).
    tolerance : float
        Deviation from the community ideal (fraction) beyond which imbalance is penalised 100 × harder.
    time_budget_s : float
        Wall-clock budget for the local search (seconds).

    Returns
    -------
    RebalanceResult
        ``partition`` (validated: every cell assigned, grids contiguous and nested), the allocation per community,
        ``before``/``after`` figures (CV, max deviation from the community ideal), the share of residents moved.
    """
    base = partition if partition is not None else partition_from_twin(twin, weights=dict(weights or {}))
    if partition is not None and weights:
        base = replace(base, weight=cell_workload(twin, weights=weights), meta={})
    res = cell_counts(twin)["residents"].to_numpy() if residents is None else np.asarray(residents, float)
    return rebalance_partition(base, n_grids, residents=res, beta=beta, gamma=gamma, tolerance=tolerance,
                               time_budget_s=time_budget_s, seed=seed)


def rebalance_partition(p: Partition, n_grids: int, *, residents: np.ndarray | None = None,
                        beta: float = DEFAULT_BETA, gamma: float = DEFAULT_GAMMA,
                        tolerance: float = DEFAULT_TOLERANCE, time_budget_s: float = 40.0,
                        seed: int = 0) -> RebalanceResult:
    """:func:`rebalance` on a bare :class:`Partition` (workload = ``p.weight``; residents per cell optional)."""
    t0 = time.perf_counter()
    validate_partition(p, action="rebalance")
    n_grids = int(n_grids)
    if n_grids > len(p.cells):
        raise ValidationError(f"{n_grids} grids is more than the {len(p.cells)} cells.")
    res = np.ones(len(p.cells)) if residents is None else np.asarray(residents, float)
    w = p.weight
    comm_codes = np.asarray(sorted(set(p.community.tolist())), dtype=object)
    comm_w = pd.Series(w).groupby(p.community).sum().reindex(comm_codes)
    target = allocate_grids(comm_w, n_grids)
    current = p.grids.groupby("community_code").size().reindex(comm_codes, fill_value=0)
    lab, codes = p.labels()
    new_codes = p.grid_code.copy()
    rows = []
    deadline = t0 + time_budget_s
    log: list[str] = []
    order = np.argsort(p.community.astype(str), kind="stable")
    starts = np.searchsorted(p.community[order].astype(str), comm_codes.astype(str))
    ends = np.append(starts[1:], len(order))
    # communities with several grids get local search; spread the time budget over them by cell count
    for ci, c in enumerate(comm_codes):
        idx = np.sort(order[starts[ci]:ends[ci]])
        k = int(target[c])
        grid_rows = p.grids[p.grids["community_code"] == c]
        local_codes, local_lab = _community_start(p, idx, grid_rows, k, res, seed=seed + ci)
        if k > 1:
            remaining = max(deadline - time.perf_counter(), 0.0)
            cells_left = max(int(sum(ends[cj] - starts[cj] for cj in range(ci, len(comm_codes)))), 1)
            budget = remaining * len(idx) / cells_left
            orig = _orig_labels(p.grid_code[idx], local_codes)
            local_lab = _local_search(p, idx, local_lab, k, w[idx], res[idx], orig, beta=beta, gamma=gamma,
                                      tolerance=tolerance, deadline=time.perf_counter() + budget)
        new_codes[idx] = np.asarray(local_codes, dtype=object)[local_lab]
        town = str(grid_rows["town_code"].iloc[0]) if len(grid_rows) else ""
        named = dict(zip(grid_rows["grid_code"], grid_rows["grid_name"]))
        for code in local_codes:
            rows.append({"grid_code": code, "grid_name": named.get(code) or grid_name_for(p.grids, c, code),
                         "community_code": c, "town_code": town})
    grids = pd.DataFrame(rows)
    out = p.with_assignment(new_codes, grids)
    validate_partition(out, action="rebalance result")
    if out.n_grids != n_grids:
        raise PartitionError(f"rebalance produced {out.n_grids} grids instead of {n_grids}.")
    moved = out.grid_code != p.grid_code
    allocation = pd.DataFrame({"community_code": comm_codes, "workload": comm_w.to_numpy(),
                               "grids_before": current.to_numpy(), "grids_after": target.to_numpy()})
    seconds = time.perf_counter() - t0
    log.append(f"communities gaining grids {int((allocation.grids_after > allocation.grids_before).sum())}, "
               f"losing {int((allocation.grids_after < allocation.grids_before).sum())}")
    return RebalanceResult(partition=out, allocation=allocation, before=_summary(p), after=_summary(out),
                           moved_share=float(res[moved].sum() / max(res.sum(), 1e-9)),
                           residents_moved=int(res[moved].sum()), seconds=seconds, log=log)


def _orig_labels(orig_codes: np.ndarray, local_codes: list[str]) -> np.ndarray:
    pos = {c: i for i, c in enumerate(local_codes)}
    return np.array([pos.get(c, -1) for c in orig_codes.tolist()], dtype=np.int64)


def _community_start(p: Partition, idx: np.ndarray, grid_rows: pd.DataFrame, k: int, res: np.ndarray, *,
                     seed: int) -> tuple[list[str], np.ndarray]:
    """Split or merge a community's grids to reach ``k``. Returns (codes, local label per cell of ``idx``)."""
    comm = str(grid_rows["community_code"].iloc[0])
    codes = sorted(set(p.grid_code[idx].tolist()))
    pos = {c: i for i, c in enumerate(codes)}
    lab = np.array([pos[c] for c in p.grid_code[idx].tolist()], dtype=np.int64)
    w = p.weight[idx]
    sub_adj = p.adjacency[idx][:, idx]
    m = len(codes)
    if k > m:
        gw = np.bincount(lab, weights=w, minlength=m)
        parts = allocate_counts(np.maximum(gw, 1e-9), k, minimum=1)
        fresh = iter(next_grid_codes(p.grids, comm, k - m))
        for g in np.flatnonzero(parts > 1):
            sel = np.flatnonzero(lab == g)
            kk = min(int(parts[g]), len(sel))
            sub = bisect_labels(p.xy[idx[sel]], w[sel] + 0.05 * max(float(w.mean()), 1e-9), kk, seed=seed + int(g))
            sub = repair_contiguity(sub, sub_adj[sel][:, sel])
            uniq = np.unique(sub)
            keep = uniq[int(np.argmax([res[idx[sel]][sub == u].sum() for u in uniq]))]
            for u in uniq:
                if u == keep:
                    continue
                codes.append(next(fresh))
                lab[sel[sub == u]] = len(codes) - 1
        while len(codes) < k:  # a bisection that repair had to fold back: split the heaviest grid again
            gw = np.bincount(lab, weights=w, minlength=len(codes))
            heavy = int(np.argmax(gw))
            sel = np.flatnonzero(lab == heavy)
            sub = repair_contiguity(bisect_labels(p.xy[idx[sel]], w[sel] + 1e-3, 2, seed=seed + 999),
                                    sub_adj[sel][:, sel])
            if len(np.unique(sub)) < 2:
                raise PartitionError(f"community {comm}: cannot split grid {codes[heavy]} further.")
            codes.append(next_grid_codes(pd.DataFrame({"grid_code": codes, "community_code": comm}), comm, 1)[0])
            lab[sel[sub == sub.max()]] = len(codes) - 1
    elif k < m:
        while len(set(lab.tolist())) > k:
            alive = np.unique(lab)
            gw = np.bincount(lab, weights=w, minlength=len(codes))
            g = alive[int(np.argmin(gw[alive]))]
            sel = np.flatnonzero(lab == g)
            nb = sub_adj[sel].indices
            nb_labs = np.unique(lab[nb])
            nb_labs = nb_labs[nb_labs != g]
            if len(nb_labs) == 0:
                raise PartitionError(f"community {comm}: grid {codes[g]} has no neighbouring grid to merge with.")
            h = nb_labs[int(np.argmin(gw[nb_labs]))]
            # the merged grid keeps the code of the part with more residents
            keep, drop = (g, h) if res[idx[sel]].sum() >= res[idx[lab == h]].sum() else (h, g)
            lab[lab == drop] = keep
        alive = np.unique(lab)
        codes = [codes[a] for a in alive]
        lab = np.searchsorted(alive, lab)
    return codes, lab


def _ring_slots(p: Partition, idx: np.ndarray) -> np.ndarray:
    """For each cell of ``idx``: its neighbours inside ``idx`` in six angular slots around it (-1 = none), so
    that consecutive slots are neighbours of each other (the hexagonal ring)."""
    sub = p.adjacency[idx][:, idx].tocsr()
    xy = p.xy[idx]
    slots = np.full((len(idx), 6), -1, dtype=np.int64)
    for i in range(len(idx)):
        nb = sub.indices[sub.indptr[i]:sub.indptr[i + 1]]
        if len(nb) == 0:
            continue
        d = xy[nb] - xy[i]
        ang = np.degrees(np.arctan2(d[:, 1], d[:, 0]))
        s = np.round((ang - ang[0]) / 60.0).astype(np.int64) % 6
        slots[i, s] = nb
    return slots


def _local_search(p: Partition, idx: np.ndarray, lab: np.ndarray, k: int, w: np.ndarray, res: np.ndarray,
                  orig: np.ndarray, *, beta: float, gamma: float, tolerance: float, deadline: float) -> np.ndarray:
    slots = _ring_slots(p, idx).tolist()
    lab_l = lab.tolist()
    w_l = w.tolist()
    load = np.bincount(lab, weights=w, minlength=k).tolist()
    size = np.bincount(lab, minlength=k).tolist()
    ideal = sum(load) / k
    if ideal <= 0:
        return lab
    inv = 1.0 / ideal

    def cost(load_g: float) -> float:
        d = abs(load_g - ideal) * inv
        over = d - tolerance
        return d * d + (_HINGE * over * over if over > 0 else 0.0)

    move_cost = [gamma * r / ideal for r in res.tolist()]
    orig_l = orig.tolist()
    n = len(lab_l)
    for _sweep in range(200):
        moved = 0
        for i in range(n):
            a = lab_l[i]
            ring = slots[i]
            labs = [lab_l[j] if j >= 0 else -1 for j in ring]
            n_a = labs.count(a)
            if n_a == 6 or size[a] <= 1:
                continue
            cands = set(labs)
            cands.discard(a)
            cands.discard(-1)
            if not cands:
                continue
            # simple-point test: the grid's cells around i form one arc
            runs = sum(1 for s in range(6) if labs[s] == a and labs[s - 5] != a)
            if runs > 1:
                continue
            wi = w_l[i]
            la = load[a]
            fa = cost(la - wi) - cost(la)
            best = 0.0
            best_b = -1
            for b in cands:
                lb = load[b]
                delta = fa + cost(lb + wi) - cost(lb)
                delta += beta * (n_a - labs.count(b))
                if orig_l[i] == a:
                    delta += move_cost[i]
                elif orig_l[i] == b:
                    delta -= move_cost[i]
                if delta < best - 1e-12:
                    best, best_b = delta, b
            if best_b >= 0:
                lab_l[i] = best_b
                load[a] -= wi
                load[best_b] += wi
                size[a] -= 1
                size[best_b] += 1
                moved += 1
        if moved == 0 or time.perf_counter() > deadline:
            break
    return np.asarray(lab_l, dtype=np.int64)
