"""Region building on the H3 cell graph: weighted Voronoi towns, recursive bisection, contiguity repair.

Pure functions over arrays: ``xy`` are EPSG:4547 metres (n × 2), ``labels`` are ints aligned with the cells,
``adjacency`` is the cells' symmetric CSR adjacency (:func:`twin.cells.cells_adjacency`).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from twin.errors import ValidationError

__all__ = ["power_assign", "bisect_labels", "repair_contiguity", "label_components", "allocate_counts"]


def power_assign(xy: np.ndarray, seeds: np.ndarray, shares: np.ndarray, *, iterations: int = 200) -> np.ndarray:
    """Assign points to seeds by a power (additively weighted) diagram whose cell shares match ``shares``.

    ``shares`` are target fractions of the points per seed (they sum to 1). Returns a label per point.
    """
    shares = np.asarray(shares, dtype=float) / np.sum(shares)
    d2 = ((xy[:, None, :] - seeds[None, :, :]) ** 2).sum(axis=2)
    w = np.zeros(len(seeds))
    scale = float(np.median(d2))
    n = len(xy)
    for it in range(iterations):
        labels = np.argmin(d2 - w[None, :], axis=1)
        got = np.bincount(labels, minlength=len(seeds)) / n
        err = shares - got
        if np.abs(err).max() < 0.002:
            break
        w += err * scale * (1.0 / (1 + it * 0.02))
    return np.argmin(d2 - w[None, :], axis=1)


def allocate_counts(weights: np.ndarray, total: int, *, minimum: int = 1) -> np.ndarray:
    """Split ``total`` items over groups in proportion to ``weights`` with at least ``minimum`` each
    (largest-remainder on what is left after the minimum)."""
    weights = np.asarray(weights, dtype=float)
    n = len(weights)
    if total < minimum * n:
        raise ValidationError(f"cannot give {n} groups at least {minimum} each out of {total}; lower the minimum "
                              "or raise the total.")
    rest = total - minimum * n
    # proportional share of the total, less the minimum already given, never negative
    ideal = weights / weights.sum() * total
    extra = np.maximum(ideal - minimum, 0)
    out = np.full(n, minimum, dtype=np.int64)
    if rest > 0 and extra.sum() > 0:
        scaled = extra / extra.sum() * rest
        base = np.floor(scaled).astype(np.int64)
        short = rest - int(base.sum())
        order = np.argsort(-(scaled - base), kind="stable")
        base[order[:short]] += 1
        out += base
    elif rest > 0:
        out[:rest] += 1
    return out


def bisect_labels(xy: np.ndarray, weight: np.ndarray, k: int, *, seed: int = 0, jitter_deg: float = 25.0) -> np.ndarray:
    """Split points into ``k`` parts of near-equal total ``weight`` by recursive bisection.

    Each cut is perpendicular to the part's principal axis (turned by up to ``jitter_deg`` at random, so that
    boundaries are not all parallel), at the weighted quantile that gives the two halves their share
    (⌊k/2⌋ and ⌈k/2⌉ parts). Returns labels 0…k-1.
    """
    rng = np.random.default_rng(seed)
    labels = np.zeros(len(xy), dtype=np.int64)
    w = np.asarray(weight, dtype=float) + 1e-9  # every point counts a little, so empty land is still cut

    def _split(idx: np.ndarray, k_here: int, first: int) -> None:
        if k_here <= 1 or len(idx) <= 1:
            labels[idx] = first
            return
        pts = xy[idx] - xy[idx].mean(axis=0)
        cov = np.cov(pts.T) if len(idx) > 2 else np.eye(2)
        vals, vecs = np.linalg.eigh(cov)
        axis = vecs[:, int(np.argmax(vals))]
        a = np.deg2rad(rng.uniform(-jitter_deg, jitter_deg))
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        proj = pts @ (rot @ axis)
        order = idx[np.argsort(proj, kind="stable")]
        k1 = k_here // 2
        cw = np.cumsum(w[order])
        cut = int(np.searchsorted(cw, cw[-1] * k1 / k_here))
        cut = min(max(cut, k1), len(order) - (k_here - k1))  # each side keeps ≥ 1 point per part
        _split(order[:cut], k1, first)
        _split(order[cut:], k_here - k1, first + k1)

    _split(np.arange(len(xy)), k, 0)
    return labels


def label_components(labels: np.ndarray, adjacency: sp.csr_matrix) -> tuple[int, np.ndarray]:
    """Connected components of the cell graph restricted to edges between equal labels."""
    coo = adjacency.tocoo()
    keep = labels[coo.row] == labels[coo.col]
    g = sp.csr_matrix((np.ones(keep.sum(), dtype=bool), (coo.row[keep], coo.col[keep])), shape=adjacency.shape)
    return connected_components(g, directed=False)


def repair_contiguity(
    labels: np.ndarray, adjacency: sp.csr_matrix, *, parent: np.ndarray | None = None, max_rounds: int = 10_000
) -> np.ndarray:
    """Make every label one connected piece: keep each label's largest component, hand the other pieces to the
    neighbouring label they share most edges with (only labels with the same ``parent[cell]`` when given).
    Pieces with no allowed neighbour are left as they are. Returns new labels.
    """
    labels = labels.copy()
    coo = adjacency.tocoo()
    for _ in range(max_rounds):
        ncomp, comp = label_components(labels, adjacency)
        comp_label = np.zeros(ncomp, dtype=np.int64)
        comp_label[comp] = labels
        comp_size = np.bincount(comp, minlength=ncomp)
        # largest component per label
        order = np.lexsort((-comp_size, comp_label))
        first = np.ones(len(order), dtype=bool)
        first[1:] = comp_label[order][1:] != comp_label[order][:-1]
        main = np.zeros(ncomp, dtype=bool)
        main[order[first]] = True
        orphans = np.flatnonzero(~main)
        if len(orphans) == 0:
            return labels
        changed = False
        # edges leaving orphan components
        # only into a label's main piece, so pieces never chase each other round and round
        cross = (comp[coo.row] != comp[coo.col]) & ~main[comp[coo.row]] & main[comp[coo.col]]
        if parent is not None:
            cross &= parent[coo.row] == parent[coo.col]
        src_comp = comp[coo.row[cross]]
        dst_label = labels[coo.col[cross]]
        if len(src_comp):
            key = src_comp.astype(np.int64) * (labels.max() + 1) + dst_label
            uniq, cnt = np.unique(key, return_counts=True)
            u_comp = uniq // (labels.max() + 1)
            u_lab = uniq % (labels.max() + 1)
            best = np.lexsort((-cnt, u_comp))
            firsts = np.ones(len(best), dtype=bool)
            firsts[1:] = u_comp[best][1:] != u_comp[best][:-1]
            comp_map = np.full(ncomp, -1, dtype=np.int64)
            comp_map[u_comp[best][firsts]] = u_lab[best][firsts]
            moved = comp_map[comp]
            m = moved >= 0
            if m.any():
                labels[m] = moved[m]
                changed = True
        if not changed:
            return labels
    return labels
