"""Incidents (事件) and their closed-loop state machine.

Front-line report → back-office dispatch → time-limited handling → follow-up visit and evaluation::

    reported ──dispatch──▶ dispatched ──start──▶ in_progress ──resolve──▶ resolved ──follow_up──▶ followed_up
                            ▲   │  ▲                 │                      │
                            │   └──┴─reassign/escalate┘                      └──reopen──▶ reopened ──dispatch──┐
                            └──────────────────────────────────────────────────────────────────────────────┘

Every action is a :class:`Transition` stamped with a time and an actor (操作日志留痕); an action the current
state does not allow raises :class:`twin.errors.InvalidTransition`. Times are timezone-aware, normalised to
China Standard Time (UTC+08:00); a naive time is read as CST. Locations are WGS84 longitude/latitude (degrees).

This module is pure: functions take an :class:`Incident` and return a new one. Persistence is
:mod:`twin.incidents.store`; choosing the level and the worker is :mod:`twin.incidents.dispatch`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from twin.errors import InvalidTransition, ValidationError
from twin.incidents.catalogue import category_row, time_limit_h

__all__ = [
    "CST",
    "STATES",
    "OPEN_STATES",
    "CLOSED_STATES",
    "CHANNELS",
    "SEVERITIES",
    "ACTIONS",
    "Incident",
    "Transition",
    "as_time",
    "new_incident",
    "transition",
    "allowed_actions",
    "is_overdue",
    "overdue_mask",
    "incidents_to_frame",
]

CST = dt.timezone(dt.timedelta(hours=8), "CST")
STATES: tuple[str, ...] = ("reported", "dispatched", "in_progress", "resolved", "followed_up", "reopened")
OPEN_STATES: tuple[str, ...] = ("reported", "dispatched", "in_progress", "reopened")
CLOSED_STATES: tuple[str, ...] = ("resolved", "followed_up")
#: Where a report comes from: a grid worker's patrol app, the 12345 hotline, online channels, cameras/sensors.
CHANNELS: tuple[str, ...] = ("grid_worker", "hotline_12345", "online", "camera_sensor")
#: 1 trivial (stays in the grid), 2 small (community), 3 big (town), 4 hard (district–town consultation).
SEVERITIES: Mapping[int, str] = {1: "trivial", 2: "small", 3: "big", 4: "hard"}
#: action → (states it may start from, state it leads to)
ACTIONS: Mapping[str, tuple[tuple[str, ...], str]] = {
    "dispatch": (("reported", "reopened"), "dispatched"),
    "reassign": (("dispatched", "in_progress"), "dispatched"),
    "escalate": (("dispatched", "in_progress"), "dispatched"),
    "start": (("dispatched",), "in_progress"),
    "resolve": (("in_progress",), "resolved"),
    "follow_up": (("resolved",), "followed_up"),
    "reopen": (("resolved",), "reopened"),
}
_TO_ACTION = {"in_progress": "start", "resolved": "resolve", "followed_up": "follow_up", "reopened": "reopen"}


def as_time(value: dt.datetime | dt.date | str | pd.Timestamp, *, what: str = "time") -> dt.datetime:
    """A timezone-aware datetime in CST (UTC+08:00); naive values and ISO strings without offset are CST."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValidationError(f"{what} {value!r} is not an ISO date/time like 2026-11-03T09:30:00.") from None
    elif isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    elif isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    if not isinstance(value, dt.datetime):
        raise ValidationError(f"{what} must be a datetime or ISO string, got {type(value).__name__} {value!r}.")
    if value.tzinfo is None:
        return value.replace(tzinfo=CST)
    return value.astimezone(CST)


@dataclass(frozen=True)
class Transition:
    """One audited step in an incident's life (who did what, when, why)."""

    incident_id: int | None
    action: str
    from_state: str
    to_state: str
    actor: str
    at: dt.datetime
    reason: str = ""
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Incident:
    """A reported problem at a WGS84 point, and where it is in the closed loop.

    ``level`` is the handling level (grid/community/town/district), ``handler_code`` the code of the unit at that
    level (grid, community or town code; the district code ``440604``), ``assignee`` the worker id when a grid
    worker handles it. ``deadline`` = report time + the time limit of the category at the handling level.
    ``answered_at_once`` marks a report settled on first contact (the "immediate answer" rate of the reports).
    """

    category: str
    lng: float
    lat: float
    reported_at: dt.datetime
    channel: str = "grid_worker"
    severity: int = 1
    reporter: str = ""
    description: str = ""
    attachments: tuple[Mapping[str, Any], ...] = ()
    answered_at_once: bool = False
    id: int | None = None
    state: str = "reported"
    cell: int = 0
    grid_code: str = ""
    community_code: str = ""
    town_code: str = ""
    level: str = ""
    handler_code: str = ""
    assignee: str = ""
    deadline: dt.datetime | None = None
    dispatched_at: dt.datetime | None = None
    started_at: dt.datetime | None = None
    resolved_at: dt.datetime | None = None
    followed_up_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    satisfaction: int | None = None
    reopen_count: int = 0
    escalations: int = 0
    linked_reports: int = 0
    synthetic: bool = False
    version: int = 0

    @property
    def is_open(self) -> bool:
        """True in an open state (:data:`OPEN_STATES`)."""
        return self.state in OPEN_STATES

    def overdue(self, now: dt.datetime | str) -> bool:
        """True when the deadline has passed: still open after it, or resolved after it."""
        return is_overdue(self, now)

    def handling_h(self) -> float | None:
        """Hours from report to resolution (``None`` while unresolved)."""
        if self.resolved_at is None:
            return None
        return (self.resolved_at - self.reported_at).total_seconds() / 3600.0


def new_incident(
    catalogue: pd.DataFrame,
    *,
    category: str,
    lng: float,
    lat: float,
    reported_at: dt.datetime | str,
    channel: str = "grid_worker",
    severity: int = 1,
    reporter: str = "",
    description: str = "",
    attachments: tuple[Mapping[str, Any], ...] | list[Mapping[str, Any]] = (),
    answered_at_once: bool = False,
    synthetic: bool = False,
) -> Incident:
    """Validate a report and return an :class:`Incident` in state ``reported`` (not yet located or stored).

    ``lng``/``lat`` are WGS84 degrees. :class:`ValidationError` names a bad field and its value; an unknown
    category raises :class:`twin.errors.NotFoundError`.
    """
    category_row(catalogue, category)
    if channel not in CHANNELS:
        raise ValidationError(f"unknown channel {channel!r}; use one of {list(CHANNELS)}.")
    try:
        sev = int(severity)
    except (TypeError, ValueError):
        raise ValidationError(f"severity {severity!r} must be an integer 1–4 ({dict(SEVERITIES)}).") from None
    if sev not in SEVERITIES or sev != severity and not isinstance(severity, str):
        raise ValidationError(f"severity {severity!r} must be an integer 1–4 ({dict(SEVERITIES)}).")
    x, y = _coord(lng, "lng"), _coord(lat, "lat")
    if not (-180 <= x <= 180 and -90 <= y <= 90):
        raise ValidationError(f"point ({x}, {y}) is not WGS84 longitude/latitude in degrees (metres given?).")
    atts = tuple(dict(a) for a in attachments)
    for a in atts:
        if "name" not in a:
            raise ValidationError(f"attachment metadata {a!r} needs at least a 'name'.")
    return Incident(
        category=category, lng=x, lat=y, reported_at=as_time(reported_at, what="reported_at"), channel=channel,
        severity=sev, reporter=str(reporter), description=str(description), attachments=atts,
        answered_at_once=bool(answered_at_once), synthetic=bool(synthetic),
    )


def _coord(v: Any, name: str) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ValidationError(f"{name} {v!r} is not a number.") from None
    if not math.isfinite(f):
        raise ValidationError(f"{name} {v!r} is not a finite number.")
    return f


def allowed_actions(state: str) -> list[str]:
    """Actions the state allows, in :data:`ACTIONS` order."""
    return [a for a, (src, _) in ACTIONS.items() if state in src]


def transition(
    incident: Incident,
    action: str,
    *,
    actor: str,
    now: dt.datetime | str,
    reason: str = "",
    satisfaction: int | None = None,
    changes: Mapping[str, Any] | None = None,
    catalogue: pd.DataFrame | None = None,
) -> tuple[Incident, Transition]:
    """Apply ``action`` (or a target state name such as ``"resolved"``) and return the new incident and its record.

    Rules: ``follow_up`` needs a ``satisfaction`` 1–5; ``reopen``, ``reassign`` and ``escalate`` need a
    ``reason``; ``dispatch``/``reassign``/``escalate`` need ``changes`` giving ``level`` and ``handler_code``
    (see :mod:`twin.incidents.dispatch`, which builds them). ``catalogue`` recomputes the deadline when the level changes.
    ``now`` may not be earlier than the report. Raises :class:`InvalidTransition` for an action the state does not
    allow and :class:`ValidationError` for a missing reason/satisfaction or a bad actor/time.
    """
    act = _TO_ACTION.get(action, action)
    if act not in ACTIONS:
        raise InvalidTransition(f"unknown action {action!r}; use one of {list(ACTIONS)} (or a target state name).")
    sources, target = ACTIONS[act]
    if incident.state not in sources:
        allowed = allowed_actions(incident.state) or ["none (final state)"]
        raise InvalidTransition(
            f"incident {incident.id}: cannot {act} from state {incident.state!r} (needs {list(sources)}); "
            f"allowed now: {allowed}."
        )
    if not actor or not str(actor).strip():
        raise ValidationError("every incident action needs a named actor (操作日志留痕); got an empty actor.")
    at = as_time(now, what="now")
    last = incident.updated_at or incident.reported_at
    if at < incident.reported_at:
        raise ValidationError(f"incident {incident.id}: action time {at.isoformat()} is before the report "
                              f"({incident.reported_at.isoformat()}).")
    if at < last:
        raise ValidationError(f"incident {incident.id}: action time {at.isoformat()} is before its last change "
                              f"({last.isoformat()}); times must not go backwards.")
    upd: dict[str, Any] = dict(changes or {})
    unknown = set(upd) - {"level", "handler_code", "assignee", "cell", "grid_code", "community_code", "town_code"}
    if unknown:
        raise ValidationError(f"transition changes may only set placement fields, not {sorted(unknown)}.")
    if act in ("reopen", "reassign", "escalate") and not reason.strip():
        raise ValidationError(f"{act} needs a reason (it is audited).")
    if act in ("dispatch", "reassign", "escalate") and not (upd.get("level") or incident.level):
        raise ValidationError(f"{act} needs a handling level; use twin.incidents.dispatch to place the incident.")
    if act == "follow_up":
        if satisfaction is None or isinstance(satisfaction, bool) or int(satisfaction) != satisfaction \
                or not 1 <= int(satisfaction) <= 5:
            raise ValidationError(f"follow-up needs satisfaction as an integer 1–5, got {satisfaction!r}.")
        upd["satisfaction"] = int(satisfaction)
        upd["followed_up_at"] = at
    elif satisfaction is not None:
        raise ValidationError(f"satisfaction is recorded only at follow-up, not at {act}.")
    if act == "dispatch":
        upd["dispatched_at"] = at
    elif act == "start":
        upd["started_at"] = at
    elif act == "resolve":
        upd["resolved_at"] = at
    elif act == "reopen":
        upd.update(reopen_count=incident.reopen_count + 1, resolved_at=None, started_at=None)
    elif act == "escalate":
        upd["escalations"] = incident.escalations + 1
    level = upd.get("level", incident.level)
    if catalogue is not None and level and (level != incident.level or incident.deadline is None):
        upd["deadline"] = incident.reported_at + dt.timedelta(hours=time_limit_h(catalogue, incident.category, level))
    new = dataclasses.replace(incident, state=target, updated_at=at, **upd)
    detail = {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in upd.items()
              if k in ("level", "handler_code", "assignee", "satisfaction", "deadline")}
    rec = Transition(incident.id, act, incident.state, target, str(actor), at, reason, detail)
    return new, rec


def is_overdue(incident: Incident, now: dt.datetime | str) -> bool:
    """Open past its deadline, or resolved after it. No deadline (not yet dispatched) → not overdue."""
    if incident.deadline is None:
        return False
    if incident.resolved_at is not None:
        return incident.resolved_at > incident.deadline
    return incident.is_open and as_time(now) > incident.deadline


def overdue_mask(frame: pd.DataFrame, now: dt.datetime | str) -> np.ndarray:
    """Vector :func:`is_overdue` over a frame with ``state``, ``deadline``, ``resolved_at`` (datetime columns)."""
    if frame.empty:
        return np.zeros(0, dtype=bool)
    t_now = pd.Timestamp(as_time(now))
    deadline = pd.to_datetime(frame["deadline"])
    resolved = pd.to_datetime(frame["resolved_at"])
    open_ = frame["state"].isin(OPEN_STATES).to_numpy()
    late_open = open_ & (deadline < t_now).fillna(False).to_numpy()
    late_done = resolved.notna().to_numpy() & (resolved > deadline).fillna(False).to_numpy()
    return np.asarray(late_open | late_done, dtype=bool)


def incidents_to_frame(incidents: list[Incident]) -> pd.DataFrame:
    """A list of incidents as a flat frame (one row each, columns = :class:`Incident` fields)."""
    cols = [f.name for f in dataclasses.fields(Incident)]
    return pd.DataFrame([dataclasses.asdict(i) for i in incidents], columns=cols)
