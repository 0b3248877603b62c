"""The rules themselves, pure and vectorised: who qualifies on a day range over which the population is constant.

:func:`qualifying` takes the residents present throughout ``[lo, hi]`` (the state does not change inside that
range: :mod:`twin.services.engine` cuts the period at every event date) and, for :class:`FlagRule`, the state of the
day before ``lo``; it returns one row per qualifying resident with the ``qualifying_date``.

Birthdays: the ``age``-th anniversary of the birth date; 29 February falls on 1 March in non-leap years
(:data:`twin.services.config.LEAP_DAY_RULE`).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from twin.services.config import AgeRule, FlagRule, Service

__all__ = ["anniversary", "qualifying", "RESULT_COLUMNS"]

RESULT_COLUMNS = ("service", "person_id", "qualifying_date", "detail")


def anniversary(birth_date: np.ndarray | pd.Series, age: int) -> np.ndarray:
    """The ``age``-th birthday (``datetime64[D]``) of each birth date; 29 Feb → 1 Mar in non-leap years.

    >>> anniversary(np.array(["1956-02-29", "1956-12-31"], dtype="datetime64[D]"), 70).astype(str).tolist()
    ['2026-03-01', '2026-12-31']
    """
    b = np.asarray(birth_date, dtype="datetime64[D]")
    month_start = b.astype("datetime64[M]")
    year = b.astype("datetime64[Y]").astype(np.int64) + 1970 + int(age)
    month = month_start.astype(np.int64) % 12  # 0 = January
    day = (b - month_start).astype(np.int64)  # 0-based
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    moved = (month == 1) & (day == 28) & ~leap
    month = np.where(moved, 2, month)
    day = np.where(moved, 0, day)
    months = (year - 1970) * 12 + month
    return months.astype("datetime64[M]").astype("datetime64[D]") + day.astype("timedelta64[D]")


def qualifying(rule: Service, state: pd.DataFrame, lo: dt.date, hi: dt.date, *,
               before: pd.DataFrame | None = None) -> pd.DataFrame:
    """Residents of ``state`` (present on every day of ``[lo, hi]``) who qualify for ``rule`` in that range.

    ``before``: the residents present on the day before ``lo`` (needed by :class:`FlagRule`: the flag must have
    been off then; a resident absent then moved in with it and is not a new certification). Returns the matching
    rows of ``state`` plus :data:`RESULT_COLUMNS`.
    """
    if isinstance(rule, AgeRule):
        q = anniversary(state["birth_date"].to_numpy(), rule.age)
        hit = (q >= np.datetime64(lo, "D")) & (q <= np.datetime64(hi, "D"))
        for flag in rule.requires:
            hit &= state[flag].to_numpy(dtype=bool)
        dates = q[hit]
    elif isinstance(rule, FlagRule):
        if before is None:
            raise ValueError(f"rule {rule.name!r} needs the state of the day before {lo}.")
        was = pd.Series(before[rule.flag].to_numpy(dtype=bool), index=before["person_id"].to_numpy())
        was_off = was.reindex(state["person_id"].to_numpy()).eq(False).to_numpy()  # absent before → NaN → False
        hit = state[rule.flag].to_numpy(dtype=bool) & was_off
        dates = np.full(int(hit.sum()), np.datetime64(lo, "D"))
    else:  # pragma: no cover - Service is a closed union
        raise TypeError(f"unknown rule type {type(rule).__name__}")
    if not hit.any():
        return state.iloc[:0].assign(service="", qualifying_date=np.array([], dtype="datetime64[s]"), detail="")
    out = state.loc[hit].copy()
    out.insert(0, "service", rule.name)
    out["qualifying_date"] = np.asarray(dates, dtype="datetime64[s]")
    out["detail"] = rule.detail
    return out
