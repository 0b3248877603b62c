"""The grid workload measure: a weighted sum of what a grid worker looks after.

``workload = Σ weight[k] × count[k]`` over residents, dwellings, businesses and key persons (disabled, low-income,
pregnant, 80+) — each key person counts again on top of being a resident because they need visits. Incidents can
be added by the incident module with their own weight. Weights are configurable; :data:`DEFAULT_WEIGHTS` is what
the default twin's 451 grids were balanced on.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = ["DEFAULT_WEIGHTS", "workload"]

DEFAULT_WEIGHTS: Mapping[str, float] = {
    "residents": 1.0,
    "dwellings": 0.5,
    "businesses": 2.0,
    "key_persons": 5.0,
    "incidents": 0.0,
}


def workload(counts: Mapping[str, np.ndarray], weights: Mapping[str, float] | None = None) -> np.ndarray:
    """Workload per unit from count arrays keyed like :data:`DEFAULT_WEIGHTS` (missing keys count 0)."""
    w = dict(DEFAULT_WEIGHTS)
    if weights:
        unknown = set(weights) - set(w)
        if unknown:
            raise ValueError(f"unknown workload weight(s) {sorted(unknown)}; known: {sorted(w)}")
        w.update(weights)
    out: np.ndarray | None = None
    for k, wk in w.items():
        if k in counts and wk:
            term = wk * np.asarray(counts[k], dtype=float)
            out = term if out is None else out + term
    if out is None:
        n = len(next(iter(counts.values()))) if counts else 0
        return np.zeros(n)
    return out
