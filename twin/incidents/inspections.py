"""Monthly inspection plans: the business credit colour sets how often a grid worker visits it.

Green (good credit, low risk) once a month, yellow twice, red four times (:data:`DEFAULT_FREQUENCY`,
configurable). Each business is inspected by a worker of the grid its building lies in (the partition in force);
a grid with several workers splits its businesses round-robin (most-visited first) so their loads differ by at
most one business. Each worker's visits are spread over the working days of the month (Monday–Friday minus
``holidays``) so that day loads differ by at most one visit, and the visits of one business are spaced about
``working days / frequency`` apart.

Method: visit ``k`` of the ``j``-th of ``n_f`` businesses with frequency ``f`` gets the position
``(k + (j + ½) / n_f) / f`` in [0, 1); a worker's visits sorted by position are dealt to days in equal runs
(visit of rank ``r`` of ``V`` → working day ``⌊r · D / V⌋``).
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from twin.errors import ValidationError
from twin.io import atomic_write
from twin.model import Twin

__all__ = ["DEFAULT_FREQUENCY", "PLAN_COLUMNS", "working_days", "inspection_plan", "plan_summary",
           "write_plan_csv"]

DEFAULT_FREQUENCY: Mapping[str, int] = {"green": 1, "yellow": 2, "red": 4}
PLAN_COLUMNS = ("date", "worker_id", "grid_code", "business_id", "building_id", "credit", "visit", "visits_in_month",
                "lng", "lat")


def _month(month: str | dt.date) -> tuple[int, int]:
    if isinstance(month, dt.date):
        return month.year, month.month
    try:
        d = dt.datetime.strptime(str(month).strip(), "%Y-%m")
    except ValueError:
        raise ValidationError(f"month {month!r} must look like 2026-11.") from None
    return d.year, d.month


def working_days(month: str | dt.date, *, holidays: Iterable[dt.date | str] = ()) -> list[dt.date]:
    """Monday–Friday dates of ``month`` (``"2026-11"``) without ``holidays``."""
    y, m = _month(month)
    off = {dt.date.fromisoformat(h) if isinstance(h, str) else h for h in holidays}
    days = [dt.date(y, m, d) for d in range(1, calendar.monthrange(y, m)[1] + 1)]
    return [d for d in days if d.weekday() < 5 and d not in off]


def inspection_plan(
    t: Twin, month: str | dt.date, *, frequency: Mapping[str, int] | None = None,
    holidays: Iterable[dt.date | str] = (), grid_codes: Iterable[str] | None = None,
) -> pd.DataFrame:
    """The month's inspection visits, one row per visit (columns :data:`PLAN_COLUMNS`).

    ``t`` is a :class:`twin.model.Twin` (``businesses``, ``buildings`` with ``grid_code``, ``workers``).
    ``frequency`` maps credit colour → visits per month (default :data:`DEFAULT_FREQUENCY`; 0 = not inspected).
    ``grid_codes`` restricts the plan to some grids. ``lng``/``lat`` are the business's building point (WGS84).
    Rows are sorted by date, worker, business.
    """
    freq = dict(DEFAULT_FREQUENCY if frequency is None else frequency)
    days = working_days(month, holidays=holidays)
    if not days:
        raise ValidationError(f"month {month!r} has no working days left after the holidays.")
    for colour, f in freq.items():
        if not isinstance(f, int | np.integer) or f < 0 or f > len(days):
            raise ValidationError(f"frequency for {colour!r} must be an integer 0–{len(days)} (working days in "
                                  f"{month}), got {f!r}.")
    biz = t.businesses[["business_id", "building_id", "credit"]].copy()
    biz["credit"] = biz["credit"].astype(str)
    unknown = sorted(set(biz["credit"].unique()) - set(freq))
    if unknown:
        raise ValidationError(f"no inspection frequency for credit colour(s) {unknown}; give one for each of "
                              f"{sorted(biz['credit'].unique())}.")
    b = t.buildings.set_index("building_id")
    biz["grid_code"] = biz["building_id"].map(b["grid_code"].astype(str)).astype(str)
    biz["lng"] = biz["building_id"].map(b["lng"])
    biz["lat"] = biz["building_id"].map(b["lat"])
    biz["f"] = biz["credit"].map(freq).astype(int)
    biz = biz[biz["f"] > 0]
    if grid_codes is not None:
        biz = biz[biz["grid_code"].isin({str(g) for g in grid_codes})]
    # businesses → workers of their grid, round-robin (most visits first) so loads are even
    workers = t.workers[["worker_id", "grid_code"]].astype(str).sort_values(["grid_code", "worker_id"])
    wlist = workers.groupby("grid_code")["worker_id"].apply(np.array)
    has_worker = biz["grid_code"].isin(wlist.index)
    if not has_worker.all():
        missing = sorted(biz.loc[~has_worker, "grid_code"].unique())[:5]
        raise ValidationError(f"grid(s) {missing} have businesses but no grid worker; every grid needs ≥ 1 worker.")
    biz = biz.sort_values(["grid_code", "f", "business_id"], ascending=[True, False, True], kind="stable")
    slot = biz.groupby("grid_code").cumcount().to_numpy()
    n_w = biz["grid_code"].map(wlist.map(len)).to_numpy()
    pick = slot % n_w
    biz["worker_id"] = [wlist[g][i] for g, i in zip(biz["grid_code"], pick, strict=True)]
    # visits and their positions in the month
    j = biz.groupby(["worker_id", "f"]).cumcount().to_numpy()
    n_f = biz.groupby(["worker_id", "f"])["business_id"].transform("size").to_numpy()
    reps = biz["f"].to_numpy()
    visits = biz.loc[biz.index.repeat(reps)].reset_index(drop=True)
    k = visits.groupby("business_id").cumcount().to_numpy()
    pos = (k + (np.repeat(j, reps) + 0.5) / np.repeat(n_f, reps)) / visits["f"].to_numpy()
    visits["pos"] = pos
    visits = visits.sort_values(["worker_id", "pos", "business_id"], kind="stable").reset_index(drop=True)
    rank = visits.groupby("worker_id").cumcount().to_numpy()
    total = visits.groupby("worker_id")["business_id"].transform("size").to_numpy()
    day_i = (rank * len(days)) // total
    visits["date"] = np.array(days, dtype="datetime64[D]")[day_i]
    visits["visit"] = visits.groupby("business_id").cumcount().to_numpy() + 1
    visits["visits_in_month"] = visits["f"]
    out = visits[list(PLAN_COLUMNS)].sort_values(["date", "worker_id", "business_id"], kind="stable")
    out["date"] = pd.to_datetime(out["date"]).dt.date
    return out.reset_index(drop=True)


def plan_summary(plan: pd.DataFrame) -> pd.DataFrame:
    """Per worker: businesses, visits, working days used, min/max visits per day."""
    per_day = plan.groupby(["worker_id", "date"]).size()
    g = plan.groupby("worker_id")
    return pd.DataFrame({
        "businesses": g["business_id"].nunique(),
        "visits": g.size(),
        "days": per_day.groupby(level=0).size(),
        "min_per_day": per_day.groupby(level=0).min(),
        "max_per_day": per_day.groupby(level=0).max(),
    })


def write_plan_csv(plan: pd.DataFrame, path: str | Path) -> Path:
    """Atomically write the plan as UTF-8 CSV (with BOM, so spreadsheet software shows Chinese text)."""
    return atomic_write(path, lambda p: plan.to_csv(p, index=False, encoding="utf-8-sig"))
