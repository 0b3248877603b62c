"""Incident statistics by grid/community/town/district and period — the figures the reports quote.

Definitions (per group of incidents *reported* in the group's period):

``n``                      incidents (linked near-duplicate reports are not new incidents)
``closed``                 resolved or followed up
``closure_rate``           closed / n
``on_time_rate``           closed with ``resolved_at <= deadline`` / closed
``median_handling_h``      median hours from report to resolution, over closed incidents
``followed_up``            incidents with a follow-up visit (satisfaction recorded)
``satisfaction_rate``      followed up with satisfaction ≥ ``satisfied_min`` (default 4 of 5) / followed up
``mean_satisfaction``      mean satisfaction score 1–5 over followed-up incidents
``immediate_answer_rate``  answered at once (settled on first contact) / n
``overdue_open``           still open and past the deadline at ``now`` (only when ``now`` is given)

Rates are fractions 0–1 (NaN when the denominator is 0). Periods are calendar periods in CST (UTC+08:00).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, TypeAlias

import numpy as np
import pandas as pd

from twin.cells import PARTITION_RES, latlng_to_cells
from twin.errors import ValidationError
from twin.incidents.lifecycle import CLOSED_STATES, OPEN_STATES, as_time
from twin.incidents.store import IncidentStore
from twin.model import Twin
from twin.store.sql import Store

__all__ = ["STAT_COLUMNS", "TimeLike", "PeriodLike", "incident_stats", "period_bounds", "incidents_per_grid", "incidents_per_cell"]

STAT_COLUMNS = ("n", "closed", "closure_rate", "on_time_rate", "median_handling_h", "followed_up",
                "satisfaction_rate", "mean_satisfaction", "immediate_answer_rate")
TimeLike: TypeAlias = dt.datetime | dt.date | str | pd.Timestamp
PeriodLike: TypeAlias = str | pd.Period | tuple[TimeLike | None, TimeLike | None] | list[TimeLike | None] | None
"""A reporting period: ``None`` (all time), ``"2026-11"``, ``"2026"``, ``"2026-11-03"``, a :class:`pandas.Period`
or a ``(start, end)`` pair of dates/ISO strings (CST)."""
_MIN_YEAR, _MAX_YEAR = 1900, 2200  # periods are calendar periods of incidents; far from datetime's years 1–9999
_BY = {"grid": "grid_code", "community": "community_code", "town": "town_code", "district": None}


def incident_stats(
    frame: pd.DataFrame, *, by: str = "district", period: str | None = None, now: dt.datetime | str | None = None,
    satisfied_min: int = 4,
) -> pd.DataFrame:
    """Statistics of an incident frame (:meth:`twin.incidents.store.IncidentStore.frame`) per unit and period.

    ``by`` is ``grid``, ``community``, ``town`` or ``district``; ``period`` a pandas period alias (``"M"`` months,
    ``"W"`` weeks, ``"D"`` days, ``"Y"`` years) or ``None`` for the whole frame. The index is the unit code
    (``440604`` for the district) and, with ``period``, the period. Columns: :data:`STAT_COLUMNS` (+
    ``overdue_open`` when ``now`` is given).
    """
    if by not in _BY:
        raise ValidationError(f"by={by!r}; use one of {list(_BY)}.")
    if not 1 <= satisfied_min <= 5:
        raise ValidationError(f"satisfied_min must be 1–5, got {satisfied_min}.")
    df = frame
    keys: list[Any] = []
    unit = np.full(len(df), "440604", dtype=object) if _BY[by] is None else df[_BY[by]].astype(str).to_numpy()
    keys.append(pd.Series(unit, index=df.index, name=_BY[by] or "district"))
    if period is not None:
        try:
            per = df["reported_at"].dt.tz_convert("Asia/Shanghai").dt.tz_localize(None).dt.to_period(period)
        except (ValueError, AttributeError) as e:
            raise ValidationError(f"period={period!r} is not a pandas period alias such as 'M', 'W', 'D' ({e}).") from e
        keys.append(per.rename("period"))
    closed = df["state"].isin(CLOSED_STATES)
    handling_h = (df["resolved_at"] - df["reported_at"]).dt.total_seconds() / 3600.0
    on_time = closed & (df["resolved_at"] <= df["deadline"]).fillna(False)
    followed = df["satisfaction"].notna()
    sat = df["satisfaction"].astype("float64")
    work = pd.DataFrame({
        "n": 1,
        "closed": closed.astype(int),
        "on_time": on_time.astype(int),
        "handling_h": handling_h.where(closed),
        "followed_up": followed.astype(int),
        "satisfied": (followed & (sat >= satisfied_min)).astype(int),
        "sat": sat.where(followed),
        "answered": df["answered_at_once"].astype(bool).astype(int),
    }, index=df.index)
    if now is not None:
        t_now = pd.Timestamp(as_time(now))
        work["overdue_open"] = (df["state"].isin(OPEN_STATES) & (df["deadline"] < t_now).fillna(False)).astype(int)
    g = work.groupby(keys, sort=True, observed=True)
    sums = g[["n", "closed", "on_time", "followed_up", "satisfied", "answered"]
             + (["overdue_open"] if now is not None else [])].sum()
    out = pd.DataFrame(index=sums.index)
    out["n"] = sums["n"]
    out["closed"] = sums["closed"]
    out["closure_rate"] = _ratio(sums["closed"], sums["n"])
    out["on_time_rate"] = _ratio(sums["on_time"], sums["closed"])
    out["median_handling_h"] = g["handling_h"].median()
    out["followed_up"] = sums["followed_up"]
    out["satisfaction_rate"] = _ratio(sums["satisfied"], sums["followed_up"])
    out["mean_satisfaction"] = g["sat"].mean()
    out["immediate_answer_rate"] = _ratio(sums["answered"], sums["n"])
    if now is not None:
        out["overdue_open"] = sums["overdue_open"]
    return out


def _ratio(a: pd.Series, b: pd.Series) -> pd.Series:
    return (a / b.where(b > 0)).astype(float)


def period_bounds(period: PeriodLike) -> tuple[dt.datetime | None, dt.datetime | None]:
    """``[start, end)`` in CST for ``None`` (all time), ``"2026-11"``, ``"2026"``, ``"2026-11-03"``, a
    :class:`pandas.Period`, or a ``(start, end)`` pair of dates/ISO strings."""
    if period is None:
        return None, None
    if isinstance(period, tuple | list):
        if len(period) != 2:
            raise ValidationError(f"period pair must be (start, end), got {period!r}.")
        a = None if period[0] is None else as_time(period[0], what="period start")
        b = None if period[1] is None else as_time(period[1], what="period end")
        if a is not None and b is not None and b <= a:
            raise ValidationError(f"period end {b.isoformat()} is not after its start {a.isoformat()}.")
        return a, b
    try:
        p = period if isinstance(period, pd.Period) else pd.Period(str(period).strip())
        if pd.isna(p):  # "", "NaN", "NaT" parse to NaT
            raise ValueError("no period")
        start, end = p.start_time.to_pydatetime(), p.end_time.to_pydatetime() + dt.timedelta(microseconds=1)
    except (ValueError, TypeError, OverflowError) as e:  # OverflowError: the end of year 9999
        raise ValidationError(f"period {period!r} is not like '2026-11', '2026' or ('2026-01-01', '2026-07-01').") \
            from e
    if not (_MIN_YEAR <= start.year and end.year <= _MAX_YEAR):
        raise ValidationError(f"period {period!r} is outside the years {_MIN_YEAR}–{_MAX_YEAR}.")
    return as_time(start), as_time(end)


def incidents_per_cell(store: Store | IncidentStore, period: PeriodLike = None) -> pd.Series:
    """Incidents reported in ``period`` per H3 res-11 cell (``uint64`` index), from the stored locations (WGS84)."""
    istore = _istore(store)
    since, until = period_bounds(period)
    df = istore.frame(since=since, until=until)
    cells = df["cell"].to_numpy(dtype=np.int64).astype(np.uint64)
    missing = cells == 0
    if missing.any():
        cells[missing] = latlng_to_cells(df["lat"].to_numpy()[missing], df["lng"].to_numpy()[missing], PARTITION_RES)
    return pd.Series(cells).value_counts().sort_index().rename("incidents")


def incidents_per_grid(store: Store | IncidentStore, t: Twin, period: PeriodLike = None) -> pd.Series:
    """Incidents reported in ``period`` per grid of ``t``'s partition (for the ``incidents`` workload weight).

    Counts are re-attributed through each incident's H3 cell, so an edited partition (a new ``t.cells``
    ``grid_code``) gets its own counts without re-dispatching anything. Index: every ``t.grids`` grid_code
    (0 where none); name ``incidents``. ``store`` is a :class:`twin.store.sql.Store` or an ``IncidentStore``.
    """
    per_cell = incidents_per_cell(store, period)
    grid = t.grid_of_cells(per_cell.index.to_numpy(dtype=np.uint64)).astype(str)
    counts = pd.Series(per_cell.to_numpy(), index=grid).groupby(level=0).sum()
    out = pd.Series(0, index=pd.Index(t.grids["grid_code"].astype(str), name="grid_code"), name="incidents")
    hit = counts.index.intersection(out.index)
    out.loc[hit] = counts.loc[hit].to_numpy()
    return out.astype(int)


def _istore(store: Store | IncidentStore) -> IncidentStore:
    return store if isinstance(store, IncidentStore) else IncidentStore(store)
