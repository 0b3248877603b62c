"""Hand-made residents and events for the service rules (a tiny in-memory LiveView, no twin needed).

Imported by the tests of this folder: ``from service_cases import person, event, view_of``."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from twin.services.view import FrameView

GRID = "440604012001001"


def person(pid: int, birth: str, *, disabled: bool = False, low_income: bool = False, grid: str = GRID,
           sex: str = "F") -> dict:
    return {"person_id": pid, "household_id": 1000 + pid, "dwelling_id": 2000 + pid, "building_id": 3000 + pid,
            "sex": sex, "birth_date": pd.Timestamp(birth), "disabled": disabled, "low_income": low_income,
            "pregnant": False, "grid_code": grid, "community_code": grid[:12], "town_code": grid[:9]}


KINDS = {"born": "person.born", "died": "person.dies", "moved_in": "person.moves_in",
         "moved_out": "person.moves_out", "flag": "person.flag"}


def event(seq: int, kind: str, pid: int, when: str, changes: dict | None = None) -> dict:
    """One event; ``kind`` born/died/moved_in/moved_out/flag (twin.live.changes names), ``changes`` {flag: value}."""
    fields = None
    if changes:
        ((flag, value),) = changes.items()
        fields = {"flag": flag, "value": value}
    return {"seq": seq, "kind": KINDS[kind], "person_id": pid, "effective_date": dt.date.fromisoformat(when),
            "fields": fields}


def view_of(persons: list[dict], events: list[dict] | None = None) -> FrameView:
    """A FrameView over hand-made rows (see :func:`person` / :func:`event`)."""
    ev = pd.DataFrame(events or [], columns=["seq", "kind", "person_id", "effective_date", "fields"])
    return FrameView(pd.DataFrame(persons), ev)
