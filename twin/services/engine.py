"""Evaluate the declared services over a live view for a month or a date range.

Exactness without a query per day: the population only changes on days that carry an event, so the period is cut
at every distinct ``effective_date`` of :meth:`LiveView.events_between`; on each piece ``[a, b]`` the residents are
``persons_on(a)`` and each rule finds who qualifies on a day of ``[a, b]`` (:func:`twin.services.rules.qualifying`).
A resident who died or moved out before their qualifying date is therefore not listed, and one who moved in before it
is. That is ``1 + distinct event days`` calls of ``persons_on`` (plus the day before the period when a
:class:`~twin.services.config.FlagRule` runs), at most 33 for a month; days with business changes only are not
cuts. (Measured in ``benchmarks/services.py`` against reading every day.)
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from dataclasses import dataclass, field

import pandas as pd

from twin.errors import ValidationError
from twin.services.config import FlagRule, Service, default_services
from twin.services.rules import RESULT_COLUMNS, qualifying
from twin.services.view import LOCATION_COLUMNS, LiveView, as_date

__all__ = ["Period", "ServiceRun", "run_services", "parse_period", "RUN_COLUMNS"]

RUN_COLUMNS = (*RESULT_COLUMNS, "household_id", "dwelling_id", "building_id", "sex", "birth_date", *LOCATION_COLUMNS)
"""Columns of :attr:`ServiceRun.rows`, in this order."""
_NO_PERSONS = ("business.",)
"""Event kinds (prefixes, :mod:`twin.live.changes`) that cannot change :meth:`LiveView.persons_on`."""
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_MAX_DAYS = 366


@dataclass(frozen=True)
class Period:
    """A closed range of calendar days ``[start, end]``."""

    start: dt.date
    end: dt.date

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValidationError(f"period ends ({self.end}) before it starts ({self.start}).")
        if (self.end - self.start).days + 1 > _MAX_DAYS:
            raise ValidationError(f"period {self} is longer than {_MAX_DAYS} days; run it a year at a time.")

    def __str__(self) -> str:
        if self.start.day == 1 and self.end == _month_end(self.start):
            return self.start.strftime("%Y-%m")
        return f"{self.start}..{self.end}"

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1


def _month_end(d: dt.date) -> dt.date:
    return d.replace(day=calendar.monthrange(d.year, d.month)[1])


def parse_period(value: str | Period | tuple[dt.date | str, dt.date | str]) -> Period:
    """``"2026-12"`` (a month), ``"2026-12-01..2026-12-15"`` or a ``(start, end)`` pair (inclusive)."""
    if isinstance(value, Period):
        return value
    if isinstance(value, tuple):
        return Period(as_date(value[0], what="period start"), as_date(value[1], what="period end"))
    text = str(value).strip()
    m = _MONTH.match(text)
    if m:
        year, month = int(m.group(1)), int(m.group(2))
        if not 1 <= month <= 12:
            raise ValidationError(f"month {text!r} has no month {month}; write it like 2026-12.")
        start = dt.date(year, month, 1)
        return Period(start, _month_end(start))
    if ".." in text:
        a, b = text.split("..", 1)
        return Period(as_date(a.strip(), what="period start"), as_date(b.strip(), what="period end"))
    raise ValidationError(f"period {text!r} is neither a month like 2026-12 nor a range like 2026-12-01..2026-12-31.")


@dataclass
class ServiceRun:
    """Who qualifies for which service in a period: one row per (service, person, qualifying date).

    ``rows`` has :data:`RUN_COLUMNS` (``qualifying_date`` as ``datetime64[s]``), sorted by service, community,
    grid, qualifying date and person. ``persons_on_calls``: how many states were read.
    """

    period: Period
    services: tuple[Service, ...]
    rows: pd.DataFrame
    persons_on_calls: int = 0
    segments: list[tuple[dt.date, dt.date]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Persons per service (every declared service, 0 when nobody qualifies)."""
        n = self.rows.groupby("service").size() if len(self.rows) else pd.Series(dtype="int64")
        return {s.name: int(n.get(s.name, 0)) for s in self.services}

    def for_service(self, name: str) -> pd.DataFrame:
        return self.rows.loc[self.rows["service"] == name].reset_index(drop=True)


def run_services(view: LiveView, period: str | Period | tuple[dt.date | str, dt.date | str], *,
                 services: tuple[Service, ...] | None = None) -> ServiceRun:
    """Evaluate ``services`` (default: :func:`twin.services.config.default_services`) over ``view`` for ``period``.

    >>> run = run_services(view, "2026-12")                     # doctest: +SKIP
    >>> run.counts()["elderly_70"]                              # doctest: +SKIP
    """
    p = parse_period(period)
    rules = default_services() if services is None else tuple(services)
    events = view.events_between(p.start, p.end)
    if len(events) and "kind" in events.columns:  # business changes never change who lives where
        events = events.loc[~events["kind"].astype(str).str.startswith(_NO_PERSONS)]
    change_days = sorted({as_date(d) for d in events["effective_date"]} - {p.start}) if len(events) else []
    bounds = [p.start, *[d for d in change_days if p.start < d <= p.end]]
    segments = [(a, (bounds[i + 1] - dt.timedelta(days=1)) if i + 1 < len(bounds) else p.end)
                for i, a in enumerate(bounds)]
    calls = 0
    before = None
    if any(isinstance(r, FlagRule) for r in rules):
        before = view.persons_on(p.start - dt.timedelta(days=1))
        calls += 1
    parts: list[pd.DataFrame] = []
    for lo, hi in segments:
        state = view.persons_on(lo)
        calls += 1
        for rule in rules:
            hit = qualifying(rule, state, lo, hi, before=before)
            if len(hit):
                parts.append(hit)
        before = state
    rows = _tidy(parts)
    return ServiceRun(p, rules, rows, calls, segments)


def _tidy(parts: list[pd.DataFrame]) -> pd.DataFrame:
    cols = list(RUN_COLUMNS)
    if not parts:
        empty = {c: pd.Series(dtype="datetime64[s]" if c in ("qualifying_date", "birth_date") else
                              ("int64" if c.endswith("_id") else "str")) for c in cols}
        return pd.DataFrame(empty)
    rows = pd.concat([p.loc[:, cols] for p in parts], ignore_index=True)
    for c in ("person_id", "household_id", "dwelling_id", "building_id"):
        rows[c] = rows[c].astype("int64")
    for c in ("service", "detail", "sex", *LOCATION_COLUMNS):
        rows[c] = rows[c].astype(str)
    rows["birth_date"] = rows["birth_date"].astype("datetime64[s]")
    keys = ["service", "community_code", "grid_code", "qualifying_date", "person_id"]
    return rows.sort_values(keys, kind="stable").reset_index(drop=True)
