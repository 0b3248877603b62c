"""Synthetic residents, households and dwellings (房屋), calibrated to published totals. Labelled synthetic.

Rates (assumptions, documented in the README "Synthetic data" section; replace with real figures when you have
them):

* Age pyramid :data:`AGE_BAND_WEIGHTS` (5-year bands, % of residents): shaped like a Pearl River Delta city in
  the 2020 census — a bulge of working-age in-migrants aged 25–44, 0–14 ≈ 15.7 %, 60+ ≈ 14.4 %, 70+ ≈ 6.0 %, 80+ ≈ 1.7 %.
* Sex: 52 % male (Guangdong's in-migration makes men the majority).
* Household sizes 1–6 with probabilities :data:`HOUSEHOLD_SIZE_P` (mean ≈ 2.56 persons).
* Disabled: 1.2 % under 60, 5 % aged 60–79, 12 % aged 80+ (≈ 2 % overall; China's certified disabled ≈ 2.7 %).
* Low-income (低保): 0.5 % of households (× 3 where a member is 70+ or disabled); every member is flagged.
* Pregnant: women only, by age 20–24 3 %, 25–29 6.5 %, 30–34 6 %, 35–39 3 %, 40–44 0.8 % (≈ 0.7 % of residents,
  in line with a crude birth rate near 10 ‰).
* 8 % of dwellings are vacant.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from twin.model import AS_OF, ages_on

__all__ = [
    "AGE_BAND_WEIGHTS",
    "HOUSEHOLD_SIZE_P",
    "AS_OF",
    "generate_residents",
    "persons_per_building",
    "ages_on",
]

AGE_BAND_WEIGHTS = np.array(
    [5.0, 5.2, 4.8, 4.0, 6.0, 8.8, 10.2, 9.0, 8.0, 7.8, 7.2, 5.8, 4.4, 3.6, 2.5, 1.6, 1.0, 0.45, 0.15, 0.04]
)
HOUSEHOLD_SIZE_P = np.array([0.27, 0.27, 0.22, 0.14, 0.07, 0.03])
_VACANCY = 0.08
_EPOCH = dt.date(1970, 1, 1)


def generate_residents(
    persons_per_building: np.ndarray, *, seed: int, as_of: dt.date = AS_OF
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Residents and dwellings for buildings holding ``persons_per_building[b]`` persons each.

    Returns ``(persons, dwellings, dwellings_per_building)``. Persons are ordered by building; every household
    lives in one dwelling of its building.
    """
    rng = np.random.default_rng(seed)
    ppb = np.asarray(persons_per_building, dtype=np.int64)
    total = int(ppb.sum())
    building = np.repeat(np.arange(len(ppb), dtype=np.int32), ppb)

    # households: a stream of sizes, cut again at every building boundary
    sizes = rng.choice(np.arange(1, 7), size=total // 2 + 16, p=HOUSEHOLD_SIZE_P)
    starts = np.zeros(total, dtype=bool)
    hh_starts = np.cumsum(sizes)
    starts[np.concatenate([[0], hh_starts[hh_starts < total]])] = True
    b_starts = np.concatenate([[0], np.cumsum(ppb)[:-1]])
    starts[b_starts[ppb > 0]] = True
    household = (np.cumsum(starts) - 1).astype(np.int32)
    n_hh = int(household[-1]) + 1 if total else 0

    # households per building and each household's rank within its building → dwelling
    hh_building = building[starts]
    hh_per_b = np.bincount(hh_building, minlength=len(ppb))
    first_hh_of_b = np.concatenate([[0], np.cumsum(hh_per_b)[:-1]])
    hh_rank = np.arange(n_hh) - first_hh_of_b[hh_building]
    dw_per_b = np.where(hh_per_b > 0, np.ceil(hh_per_b / (1 - _VACANCY)).astype(np.int64), 0)
    first_dw_of_b = np.concatenate([[0], np.cumsum(dw_per_b)[:-1]])
    hh_dwelling = (first_dw_of_b[hh_building] + hh_rank).astype(np.int32)

    # ages, sexes, birth dates
    band = rng.choice(len(AGE_BAND_WEIGHTS), size=total, p=AGE_BAND_WEIGHTS / AGE_BAND_WEIGHTS.sum())
    age = band * 5 + rng.integers(0, 5, total)
    male = rng.random(total) < 0.52
    day_offset = rng.integers(0, 365, total)
    as_of_d = np.datetime64(as_of, "D")
    birth = (as_of_d - (age * 365.2425).astype("timedelta64[D]") - day_offset.astype("timedelta64[D]"))
    age = ages_on(birth, as_of)  # exact age from the birth date

    disabled_p = np.where(age >= 80, 0.12, np.where(age >= 60, 0.05, 0.012))
    disabled = rng.random(total) < disabled_p
    preg_p = np.select(
        [(age >= 20) & (age < 25), (age >= 25) & (age < 30), (age >= 30) & (age < 35), (age >= 35) & (age < 40),
         (age >= 40) & (age < 45)],
        [0.03, 0.065, 0.06, 0.03, 0.008],
        0.0,
    )
    pregnant = (~male) & (rng.random(total) < preg_p)
    vulnerable_hh = np.zeros(n_hh, dtype=bool)
    vulnerable_hh[household[(age >= 70) | disabled]] = True
    low_income_hh = rng.random(n_hh) < np.where(vulnerable_hh, 0.015, 0.005)
    low_income = low_income_hh[household]

    persons = pd.DataFrame(
        {
            "person_id": np.arange(total, dtype=np.int32),
            "household_id": household,
            "dwelling_id": hh_dwelling[household],
            "building_id": building,
            "sex": pd.Categorical.from_codes(male.astype(np.int8), categories=["F", "M"]),
            "birth_date": birth,
            "disabled": disabled,
            "low_income": low_income,
            "pregnant": pregnant,
        }
    )

    n_dw = int(dw_per_b.sum())
    dw_building = np.repeat(np.arange(len(ppb), dtype=np.int32), dw_per_b)
    occupied = np.zeros(n_dw, dtype=bool)
    occupied[hh_dwelling] = True
    hh_of_dw = np.full(n_dw, -1, dtype=np.int32)
    hh_of_dw[hh_dwelling] = np.arange(n_hh, dtype=np.int32)
    dwellings = pd.DataFrame(
        {
            "dwelling_id": np.arange(n_dw, dtype=np.int32),
            "building_id": dw_building,
            "occupied": occupied,
            "household_id": hh_of_dw,
        }
    )
    return persons, dwellings, dw_per_b


def persons_per_building(buildings: pd.DataFrame, persons_cell: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Split each cell's persons over its residential/mixed buildings by footprint (needs ``use``,
    ``footprint_m2``, ``cell_idx``); persons of cells with no such building move to the nearest cell that has one
    (``xy``: cell centres in EPSG:4547 metres). Totals are preserved."""
    n_cells = len(persons_cell)
    use = buildings["use"].to_numpy().astype(str)
    homes = np.isin(use, ["residential", "mixed"])
    b_cell = buildings["cell_idx"].to_numpy()
    has_home = np.zeros(n_cells, dtype=bool)
    has_home[b_cell[homes]] = True
    pc = persons_cell.astype(np.int64).copy()
    stranded = np.flatnonzero((pc > 0) & ~has_home)
    if len(stranded):
        targets = np.flatnonzero(has_home)
        if len(targets) == 0:
            raise ValueError("no residential building in the district: cannot house any resident")
        _, nearest = cKDTree(xy[targets]).query(xy[stranded])
        np.add.at(pc, targets[nearest], pc[stranded])
        pc[stranded] = 0
    w = np.where(homes, buildings["footprint_m2"].to_numpy(dtype=float), 0.0)
    cell_w = np.bincount(b_cell, weights=w, minlength=n_cells)
    share = np.divide(w, cell_w[b_cell], out=np.zeros_like(w), where=cell_w[b_cell] > 0)
    scaled = share * pc[b_cell]
    base = np.floor(scaled).astype(np.int64)
    short = pc - np.bincount(b_cell, weights=base, minlength=n_cells).astype(np.int64)
    rem = np.where(homes, scaled - base, -1.0)
    order = np.lexsort((-rem, b_cell))
    rank = np.arange(len(order)) - np.searchsorted(b_cell[order], b_cell[order], side="left")
    plus = rank < short[b_cell[order]]
    base[order[plus]] += 1
    assert int(base.sum()) == int(persons_cell.sum()), "persons lost while splitting cells over buildings"
    return base
