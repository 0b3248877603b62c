"""How many grids each community gets: Huntington–Hill by workload, with per-community or per-town targets and
the minimum that locked grids impose."""

from __future__ import annotations

import heapq
from collections.abc import Mapping

import numpy as np
import pandas as pd

from twin.errors import ValidationError

__all__ = ["allocate_grids", "allocate_with_targets"]


def allocate_grids(community_workload: pd.Series, n_grids: int, *, minimum: pd.Series | None = None) -> pd.Series:
    """Grids per community (index = community code), at least ``minimum`` (default 1) each, chosen to minimise
    the variance of grid workloads when every grid gets its community's ideal: greedily give the next grid to the
    community whose ``W² / (k (k + 1))`` is largest (Huntington–Hill priority; exact for this separable convex
    objective)."""
    weights = np.maximum(community_workload.to_numpy(float), 1e-9)
    k = (np.ones(len(weights), dtype=np.int64) if minimum is None
         else np.maximum(minimum.reindex(community_workload.index).fillna(1).to_numpy(np.int64), 1))
    if n_grids < int(k.sum()):
        what = f"{len(weights)} communities (each needs at least one grid)" if (k == 1).all() else (
            f"{len(weights)} communities that need at least {int(k.sum())} grids (one each, more where grids are "
            "locked)")
        raise ValidationError(f"{n_grids} grids cannot cover {what}.")
    heap = [(-(w * w) / (kk * (kk + 1.0)), i) for i, (w, kk) in enumerate(zip(weights.tolist(), k.tolist()))]
    heapq.heapify(heap)
    for _ in range(int(n_grids) - int(k.sum())):
        _, i = heapq.heappop(heap)
        k[i] += 1
        heapq.heappush(heap, (-(weights[i] ** 2) / (k[i] * (k[i] + 1)), i))
    return pd.Series(k, index=community_workload.index, name="grids")


def allocate_with_targets(community_workload: pd.Series, town_of: pd.Series, n_grids: int, *,
                          targets: Mapping[str, int] | None = None, minimum: pd.Series | None = None) -> pd.Series:
    """:func:`allocate_grids` with fixed counts: ``targets`` maps community codes and/or town codes to a number of
    grids. A community target is kept as given; a town target is shared over the town's other communities by
    Huntington–Hill; the rest of ``n_grids`` goes to the communities of towns without a target. ``town_of`` maps
    community code → town code. Raises :class:`ValidationError` for unknown codes or counts that cannot add up."""
    comms = community_workload.index
    mins = (pd.Series(1, index=comms, dtype=np.int64) if minimum is None
            else minimum.reindex(comms).fillna(1).astype(np.int64).clip(lower=1))
    targets = {str(k): v for k, v in (targets or {}).items()}
    towns = set(town_of.reindex(comms).astype(str))
    unknown = sorted(set(targets) - set(map(str, comms)) - towns)
    if unknown:
        raise ValidationError(f"targets name unknown community or town code(s) {unknown[:5]}; use codes of the "
                              f"partition's communities (e.g. {comms[0]}) or towns (e.g. {sorted(towns)[0]}).")
    bad = {k: v for k, v in targets.items() if int(v) != v or v < 1}
    if bad:
        raise ValidationError(f"target counts must be whole numbers ≥ 1; got {bad}.")
    out = pd.Series(0, index=comms, dtype=np.int64, name="grids")
    fixed = pd.Series(False, index=comms)
    for c in comms:
        if str(c) in targets:
            k = int(targets[str(c)])
            if k < int(mins[c]):
                raise ValidationError(f"community {c}: target {k} grid(s) is below the {int(mins[c])} it needs "
                                      "(one per locked grid, plus one for its unlocked cells).")
            out[c], fixed[c] = k, True
    town = town_of.reindex(comms).astype(str)
    for t in sorted(towns & set(targets)):
        in_t = (town == t).to_numpy()
        free = in_t & ~fixed.to_numpy()
        rest = int(targets[t]) - int(out[in_t & fixed.to_numpy()].sum())
        if not free.any():
            if rest != 0:
                raise ValidationError(f"town {t}: target {targets[t]} grids but its communities' own targets add "
                                      f"up to {int(targets[t]) - rest}.")
            continue
        sub = allocate_grids(community_workload[free], rest, minimum=mins[free])
        out[sub.index], fixed[sub.index] = sub.to_numpy(), True
    rest = int(n_grids) - int(out[fixed].sum())
    free = ~fixed.to_numpy()
    if not free.any():
        if rest != 0:
            raise ValidationError(f"the targets add up to {int(out.sum())} grids but {n_grids} were asked for; "
                                  "ask for that many or leave a community or town without a target.")
        return out
    if fixed.any() and rest < int(mins[free].sum()):
        raise ValidationError(f"the targets take {int(out[fixed].sum())} of {n_grids} grids, leaving {rest} for "
                              f"{int(free.sum())} communities that need at least {int(mins[free].sum())}.")
    sub = allocate_grids(community_workload[free], rest, minimum=mins[free])
    out[sub.index] = sub.to_numpy()
    return out
