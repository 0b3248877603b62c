"""Synthetic businesses / legal entities (法人) in commercial, mixed, industrial and public buildings.

Assumptions (documented in the README): 290,000 entities; placement weight per building = floor area ×
(commercial 1/60 m², mixed 1/90 m² of ground floor, industrial 1/1,500 m², public 1/2,000 m²); kinds by
building use; credit colour shares :data:`CREDIT_SHARES` (green 82 %, yellow 14 %, red 4 %; red twice as
likely in industrial buildings). Inspections per month follow the colour (green 1, yellow 2, red 4).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from twin.synth.population import largest_remainder

__all__ = ["CREDIT_COLOURS", "CREDIT_SHARES", "BUSINESS_KINDS", "INDUSTRIES", "generate_businesses"]

CREDIT_COLOURS = ("green", "yellow", "red")
CREDIT_SHARES = np.array([0.82, 0.14, 0.04])
BUSINESS_KINDS = ("enterprise", "individual", "organisation")
INDUSTRIES = ("manufacturing", "wholesale_retail", "catering_hospitality", "services", "logistics", "public")
_PER_M2 = {"commercial": 1 / 60, "mixed": 1 / 90, "industrial": 1 / 1500, "public": 1 / 2000, "residential": 0.0}


def generate_businesses(buildings: pd.DataFrame, total: int, *, seed: int) -> pd.DataFrame:
    """``total`` businesses spread over ``buildings`` (needs ``use``, ``footprint_m2``, ``floors``).

    Returns a frame with ``business_id``, ``building_id``, ``kind``, ``industry``, ``credit``.
    """
    rng = np.random.default_rng(seed)
    use = buildings["use"].to_numpy().astype(str)
    fp = buildings["footprint_m2"].to_numpy(dtype=float)
    floors = buildings["floors"].to_numpy(dtype=float)
    rate = np.array([_PER_M2[u] for u in use])
    area = np.where(use == "mixed", fp * np.minimum(floors, 2), fp * floors)
    weight = rate * area
    per_b = largest_remainder(weight, total)
    b_id = np.repeat(buildings["building_id"].to_numpy(dtype=np.int32), per_b)
    b_use = np.repeat(use, per_b)
    n = len(b_id)
    r = rng.random(n)
    kind = np.select(
        [b_use == "public", b_use == "industrial", b_use == "mixed"],
        [np.full(n, 2), np.where(r < 0.9, 0, 1), np.where(r < 0.15, 0, 1)],
        np.where(r < 0.5, 0, 1),
    )
    r2 = rng.random(n)
    industry = np.select(
        [b_use == "public", b_use == "industrial"],
        [np.full(n, 5), np.where(r2 < 0.85, 0, 4)],
        np.select([r2 < 0.45, r2 < 0.7, r2 < 0.95], [1, 2, 3], 4),
    )
    red_boost = np.where(b_use == "industrial", 2.0, 1.0)
    r3 = rng.random(n)
    p_red = CREDIT_SHARES[2] * red_boost
    credit = np.where(r3 < p_red, 2, np.where(r3 < p_red + CREDIT_SHARES[1], 1, 0))
    return pd.DataFrame(
        {
            "business_id": np.arange(n, dtype=np.int32),
            "building_id": b_id,
            "kind": pd.Categorical.from_codes(kind, categories=list(BUSINESS_KINDS)),
            "industry": pd.Categorical.from_codes(industry, categories=list(INDUSTRIES)),
            "credit": pd.Categorical.from_codes(credit, categories=list(CREDIT_COLOURS)),
        }
    )
