"""Small-count suppression (可用不可见): the two algorithms behind :mod:`twin.access.policy`.

* :func:`suppress_counts` — one vector of related counts (an outside-scope aggregate, a grid's dossier):
  primary suppression of counts 1 … k−1, then complementary suppression over the additive groups
  (:data:`ADDITIVE_GROUPS`, ``buildings = Σ use_*``) and nested pairs (:data:`NESTED_PAIRS`), so that no
  suppressed count, and no small sum or difference of suppressed counts, follows from the published ones.
* :func:`suppress_cells` — one count per map cell (overlays): cells open to the caller are exact, closed cells
  with 1 … k−1 are suppressed, and more closed cells are suppressed until the suppressed ones add up to 0 or
  ≥ k, so the closed cells' total (district total − open cells) does not reveal them.

Which counts are open and which ``k`` applies is decided by :mod:`twin.access.policy`; nothing else in the
package suppresses.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from twin.access.roles import DEFAULT_K
from twin.errors import ValidationError

__all__ = ["ADDITIVE_GROUPS", "NESTED_PAIRS", "Suppressed", "suppress_counts", "suppress_cells"]

ADDITIVE_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("residents", ("residents_male", "residents_female")),
    ("residents", ("age_0_14", "age_15_59", "age_60_plus")),
    ("businesses", ("credit_green", "credit_yellow", "credit_red")),
)
"""``total = sum(parts)`` relations used for complementary suppression (``use_*`` keys sum to ``buildings``)."""

NESTED_PAIRS: tuple[tuple[str, str], ...] = (
    ("age_60_plus", "elderly_70"),
    ("elderly_70", "elderly_80"),
    ("residents", "disabled"),
    ("residents", "low_income"),
    ("residents_female", "pregnant"),
)
"""``(big, small)`` with ``small ⊆ big``: ``big − small`` must not be a small count either."""


@dataclass
class Suppressed:
    """Counts after suppression: ``values`` (int or ``None`` = suppressed) and the ``suppressed`` keys."""

    values: dict[str, int | None]
    suppressed: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {"counts": self.values, "suppressed": self.suppressed}


def _groups(keys: Iterable[str]) -> list[tuple[str, tuple[str, ...]]]:
    keys = set(keys)
    groups = [(tot, parts) for tot, parts in ADDITIVE_GROUPS if tot in keys and all(p in keys for p in parts)]
    uses = tuple(sorted(k for k in keys if k.startswith("use_")))
    if "buildings" in keys and uses:
        groups.append(("buildings", uses))
    return groups


def suppress_counts(counts: Mapping[str, int], k: int = DEFAULT_K) -> Suppressed:
    """Suppress small counts (1 … k−1) and the counts that would reveal them by subtraction.

    Parameters
    ----------
    counts : non-negative integer counts keyed by name (``residents``, ``disabled``, ``use_residential`` …).
    k : smallest count that may be published.

    Returns
    -------
    Suppressed : the same keys; a suppressed value is ``None``. Guarantees, for every additive group
    (:data:`ADDITIVE_GROUPS`) and nested pair (:data:`NESTED_PAIRS`) present: no member is the only suppressed
    one, and no sum or difference of suppressed members derivable from published ones is in 1 … k−1.

    Raises
    ------
    ValidationError
        A negative count.
    """
    vals = {str(key): int(v) for key, v in counts.items()}
    bad = {key: v for key, v in vals.items() if v < 0}
    if bad:
        raise ValidationError(f"counts must be ≥ 0, got {bad}.")
    hidden = {key for key, v in vals.items() if 0 < v < k}
    groups = _groups(vals)
    pairs = [(a, b) for a, b in NESTED_PAIRS if a in vals and b in vals]

    def hide_smallest(candidates: Iterable[str]) -> bool:
        pool = [c for c in candidates if c not in hidden and vals[c] > 0]
        if not pool:
            return False
        hidden.add(min(pool, key=lambda c: (vals[c], c)))
        return True

    changed = True
    while changed:
        changed = False
        for tot, parts in groups:
            hid = [m for m in (tot, *parts) if m in hidden]
            if not hid:
                continue
            hidden_parts_sum = sum(vals[p] for p in parts if p in hidden)
            lone = len(hid) == 1 and vals[hid[0]] > 0
            small_sum = tot not in hidden and 0 < hidden_parts_sum < k
            if lone or small_sum:
                changed = hide_smallest(parts) or hide_smallest((tot,)) or changed
        for big, small in pairs:
            diff = vals[big] - vals[small]
            if big not in hidden and small not in hidden and 0 < diff < k:
                hidden.add(small)
                changed = True
    values: dict[str, int | None] = {key: (None if key in hidden else v) for key, v in vals.items()}
    return Suppressed(values, sorted(hidden))


def suppress_cells(counts: np.ndarray, open_cells: np.ndarray, k: int = DEFAULT_K) -> np.ndarray:
    """Which cells of a one-category map layer to suppress.

    Parameters
    ----------
    counts : (n,) non-negative int counts, one per cell.
    open_cells : (n,) bool, cells the caller may see exactly (wholly inside the record scope).
    k : smallest count that may be published.

    Returns
    -------
    numpy.ndarray
        (n,) bool, True = suppressed. Closed cells with 1 … k−1 are suppressed; while the suppressed cells add up
        to 1 … k−1 (so that the total of the closed cells, known from a published area total, would reveal
        them) the smallest published positive closed cell is suppressed too.
    """
    counts = np.asarray(counts)
    closed = ~np.asarray(open_cells, dtype=bool)
    hide = closed & (counts > 0) & (counts < k)
    hidden_sum = int(counts[hide].sum())
    if 0 < hidden_sum < k:
        pool = np.flatnonzero(closed & ~hide & (counts > 0))
        for i in pool[np.argsort(counts[pool], kind="stable")]:
            hide[i] = True
            hidden_sum += int(counts[i])
            if hidden_sum >= k:
                break
    return hide
