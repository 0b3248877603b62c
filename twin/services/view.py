"""What the service engine reads: a *live view* of residents on any date, and the change events of a period.

:class:`LiveView` is the two-method protocol the live state (:mod:`twin.live.state`) implements. :class:`FrameView`
is a small in-memory implementation over plain frames (a base population plus presence and flag events), used by
the tests and, through :func:`snapshot_view`, for a frozen twin without a live store (no events: the snapshot
is the population on every date).

Dates are calendar days (``datetime.date``); an event effective on day ``d`` is in force on ``d`` itself (a
person who dies on ``d`` is not present on ``d``; one who moves in on ``d`` is).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from twin.errors import ValidationError
from twin.live.sheets import located_records
from twin.model import Twin

__all__ = [
    "LiveView",
    "FrameView",
    "snapshot_view",
    "located_persons",
    "PERSON_COLUMNS",
    "LOCATION_COLUMNS",
    "ARRIVALS",
    "DEPARTURES",
    "FLAGS_CHANGED",
    "EVENT_COLUMNS",
    "as_date",
]

PERSON_COLUMNS = ("person_id", "household_id", "dwelling_id", "building_id", "sex", "birth_date", "disabled",
                  "low_income", "pregnant")
LOCATION_COLUMNS = ("grid_code", "community_code", "town_code")
ARRIVALS = ("person.born", "person.moves_in")
DEPARTURES = ("person.dies", "person.moves_out")
FLAGS_CHANGED = "person.flag"
"""Event kinds as :mod:`twin.live.changes` names them (``PersonBorn.kind`` …)."""
EVENT_COLUMNS = ("seq", "kind", "person_id", "effective_date")


@runtime_checkable
class LiveView(Protocol):
    """Residents present on a date, and the change events of a period (implemented by :mod:`twin.live.state`)."""

    def persons_on(self, date: dt.date) -> pd.DataFrame:
        """Residents present in the district on ``date``: :data:`PERSON_COLUMNS` + :data:`LOCATION_COLUMNS`."""
        ...

    def events_between(self, start: dt.date, end: dt.date) -> pd.DataFrame:
        """Committed change events with ``start ≤ effective_date ≤ end``: at least :data:`EVENT_COLUMNS`."""
        ...


def as_date(value: Any, *, what: str = "date") -> dt.date:
    """A calendar day from a ``date``, ``datetime``, pandas/numpy timestamp or ISO string."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return pd.Timestamp(value).date()
    except (ValueError, TypeError):
        raise ValidationError(f"{what} {value!r} is not a date like 2026-12-01.") from None


def located_persons(t: Twin) -> pd.DataFrame:
    """``t.persons`` (:data:`PERSON_COLUMNS`) with each resident's grid, community and town
    (:func:`twin.live.sheets.located_records`)."""
    return located_records(t, "persons").loc[:, [*PERSON_COLUMNS, *LOCATION_COLUMNS]]


class FrameView:
    """An in-memory :class:`LiveView`: a base population plus presence and flag events.

    Parameters
    ----------
    persons
        Every person the view may ever show (:data:`PERSON_COLUMNS` + :data:`LOCATION_COLUMNS`), including those
        who arrive later through an event.
    events
        :data:`EVENT_COLUMNS` and, for ``person.flag``, a ``fields`` column holding ``{"flag": name, "value":
        bool}`` (as :meth:`twin.live.state.LiveTwin.events_between` gives it). Arrivals (``person.born``,
        ``person.moves_in``) add the person's row from ``persons``; departures (``person.dies``,
        ``person.moves_out``) remove it. Moves inside the district are not modelled here (the live state does).
    present
        Ids present before any event (default: everyone in ``persons`` who has no arrival event).
    """

    def __init__(self, persons: pd.DataFrame, events: pd.DataFrame | None = None, *,
                 present: np.ndarray | None = None) -> None:
        missing = [c for c in (*PERSON_COLUMNS, *LOCATION_COLUMNS) if c not in persons.columns]
        if missing:
            raise ValidationError(f"persons frame lacks columns {missing}.")
        self._persons = persons.set_index(persons["person_id"].to_numpy(), drop=False)
        ev = pd.DataFrame(columns=[*EVENT_COLUMNS, "fields"]) if events is None else events.copy()
        if len(ev):
            ev["effective_date"] = [as_date(d, what="effective_date") for d in ev["effective_date"]]
        self._events = ev.sort_values(["effective_date", "seq"], kind="stable").reset_index(drop=True)
        if present is None:
            arriving = set(self._events.loc[self._events["kind"].isin(ARRIVALS), "person_id"].tolist())
            present = np.array([p for p in self._persons.index if p not in arriving], dtype=np.int64)
        self._present = np.asarray(present, dtype=np.int64)

    def persons_on(self, date: dt.date) -> pd.DataFrame:
        day = as_date(date)
        if not len(self._events) or self._events["effective_date"].iloc[0] > day:
            base = self._persons.loc[self._present] if len(self._present) != len(self._persons) else self._persons
            return base.reset_index(drop=True)
        alive = dict.fromkeys(self._present.tolist(), True)
        flags: dict[int, dict[str, bool]] = {}
        for kind, pid, when, fields in self._events[["kind", "person_id", "effective_date", "fields"]].itertuples(
                index=False):
            if when > day:
                break
            pid = int(pid)
            if kind in ARRIVALS:
                alive[pid] = True
            elif kind in DEPARTURES:
                alive.pop(pid, None)
            elif kind == FLAGS_CHANGED and isinstance(fields, Mapping):
                flags.setdefault(pid, {})[str(fields["flag"])] = bool(fields["value"])
        out = self._persons.loc[list(alive)].copy()
        for col in {c for values in flags.values() for c in values}:
            new = pd.Series({pid: v[col] for pid, v in flags.items() if col in v and pid in alive}, dtype=bool)
            hit = out.index.isin(new.index)
            out.loc[hit, col] = new.reindex(out.index[hit]).to_numpy()
        return out.reset_index(drop=True)

    def events_between(self, start: dt.date, end: dt.date) -> pd.DataFrame:
        d = self._events["effective_date"]
        return self._events.loc[(d >= as_date(start)) & (d <= as_date(end))].reset_index(drop=True)


def snapshot_view(t: Twin) -> FrameView:
    """The frozen twin as a :class:`LiveView`: the built population on every date, no events."""
    return FrameView(located_persons(t))
