"""The starting labels of the re-partition inside one community: split grids to gain, merge grids to lose."""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import pandas as pd

from twin.errors import PartitionError
from twin.partition.model import Partition, next_grid_codes
from twin.partition.regions import allocate_counts, bisect_labels, repair_contiguity

__all__ = ["community_start"]


def community_start(p: Partition, idx: np.ndarray, community_code: str, k: int, res: np.ndarray, *, seed: int,
                    locked: Collection[str] = ()) -> tuple[list[str], np.ndarray]:
    """Split or merge the grids of community ``community_code`` (cells ``idx`` of ``p``) to reach ``k`` grids.

    A community gaining grids shares its new count over its unlocked grids by workload and splits those that get
    more than one (recursive bisection, then contiguity repair); the part with most of the old grid's residents
    (``res`` per cell of ``p``) keeps the code, new parts get the next free codes. A community losing grids merges
    its lightest unlocked grid into its lightest unlocked neighbour, the part with more residents keeping its code.
    Locked grids never change. Returns (grid codes, label per cell of ``idx`` into those codes).
    """
    codes = sorted(set(p.grid_code[idx].tolist()))
    pos = {c: i for i, c in enumerate(codes)}
    lab = np.array([pos[c] for c in p.grid_code[idx].tolist()], dtype=np.int64)
    w = p.weight[idx]
    sub_adj = p.adjacency[idx][:, idx]
    m = len(codes)
    free = np.array([c not in locked for c in codes], dtype=bool)
    if k > m:
        if not free.any():
            raise PartitionError(f"community {community_code}: all its grids are locked, so it cannot gain grids; "
                                 "unlock one or give the community a target equal to its current count.")
        gw = np.bincount(lab, weights=w, minlength=m)
        parts = np.zeros(m, dtype=np.int64)
        parts[free] = allocate_counts(np.maximum(gw[free], 1e-9), k - int((~free).sum()), minimum=1)
        fresh = iter(next_grid_codes(p.grids, community_code, k - m))
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
        while len(codes) < k:  # a bisection that repair had to fold back: split the heaviest unlocked grid again
            gw = np.bincount(lab, weights=w, minlength=len(codes))
            gw[[i for i, c in enumerate(codes) if c in locked]] = -1
            heavy = int(np.argmax(gw))
            sel = np.flatnonzero(lab == heavy)
            sub = repair_contiguity(bisect_labels(p.xy[idx[sel]], w[sel] + 1e-3, 2, seed=seed + 999),
                                    sub_adj[sel][:, sel])
            if len(np.unique(sub)) < 2:
                raise PartitionError(f"community {community_code}: cannot split grid {codes[heavy]} further.")
            codes.append(next_grid_codes(pd.DataFrame({"grid_code": codes, "community_code": community_code}),
                                         community_code, 1)[0])
            lab[sel[sub == sub.max()]] = len(codes) - 1
    elif k < m:
        while len(set(lab.tolist())) > k:
            alive = np.array([a for a in np.unique(lab) if codes[a] not in locked], dtype=np.int64)
            gw = np.bincount(lab, weights=w, minlength=len(codes))
            merged = False
            for g in alive[np.argsort(gw[alive], kind="stable")]:
                sel = np.flatnonzero(lab == g)
                nb_labs = np.unique(lab[sub_adj[sel].indices])
                nb_labs = np.array([h for h in nb_labs if h != g and codes[h] not in locked], dtype=np.int64)
                if len(nb_labs) == 0:
                    continue
                h = nb_labs[int(np.argmin(gw[nb_labs]))]
                keep, drop = (g, h) if res[idx[sel]].sum() >= res[idx[lab == h]].sum() else (h, g)
                lab[lab == drop] = keep
                merged = True
                break
            if not merged:
                raise PartitionError(f"community {community_code}: no two adjacent unlocked grids left to merge "
                                     f"into {k} grid(s); unlock a grid or raise the community's target.")
        alive = np.unique(lab)
        codes = [codes[a] for a in alive]
        lab = np.searchsorted(alive, lab)
    return codes, lab
