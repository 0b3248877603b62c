"""A seeded SYNTHETIC incident history for a twin.

Synthetic history (labelled ``synthetic = 1`` in the store; replace it with real data when available):

* ``n`` incidents (default 30,000) reported over ``months`` (default 12) ending at ``end``; daytime-weighted
  hours, fewer on weekends. Locations: building points (WGS84) drawn ∝ residents + 2 × businesses + 1,
  jittered ≈ 10 m; categories by the catalogue ``share``; channels grid worker 45 %, 12345 hotline 30 %,
  online 15 %, camera/sensor 10 %; severity 1/2/3/4 with 85/10/4/1 %.
* Dispatch follows :func:`twin.incidents.dispatch.dispatch_level`; grid-level cases go to a worker of the grid;
  2 % are escalated one level while being handled.
* Calibrated loosely to the published figures (../shared/FACTS.md): ≈ 99 % closed, ≈ 92.7 % answered at once,
  ≈ 99.6 % satisfied (4–5 of 5) at follow-up; ≈ 93 % resolved within the time limit; 0.4 % reopened once.
  A case is open at ``end`` when its resolution falls after ``end`` or it is one of the 0.6 % "stuck" cases.

Ingestion of real incident files: :mod:`twin.incidents.ingest`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from twin.crs import lnglat_to_xy, xy_to_lnglat
from twin.errors import IngestError
from twin.incidents.catalogue import LEVEL_TIME_LIMIT_H, LEVELS
from twin.incidents.dispatch import DISTRICT_CODE, locate_points
from twin.incidents.ingest import read_incident_file as read_incident_file
from twin.incidents.lifecycle import CST, as_time
from twin.incidents.store import IncidentStore
from twin.model import Twin

__all__ = [
    "CHANNEL_SHARES",
    "synthesize_incidents",
    "seed_incidents",
]

CHANNEL_SHARES = {"grid_worker": 0.45, "hotline_12345": 0.30, "online": 0.15, "camera_sensor": 0.10}
_SEVERITY_P = np.array([0.85, 0.10, 0.04, 0.01])
_HOUR_W = np.array([1, 0.5, 0.3, 0.3, 0.3, 0.6, 2, 5, 9, 11, 11, 10, 7, 7, 10, 11, 10, 9, 8, 7, 6, 4, 3, 2], float)
_SAT_P = np.array([0.0003, 0.0007, 0.003, 0.096, 0.9])  # scores 1..5 → 99.6 % satisfied (≥ 4)
_P_ANSWERED = 0.927
_P_ON_TIME = 0.93
_P_STUCK = 0.006
_P_REOPEN = 0.004
_P_ESCALATE = 0.02
_P_FOLLOW_UP = 0.9


@dataclass(frozen=True)
class _Kinds:
    """What each synthetic incident is: category, channel, severity, levels (indices into LEVELS), time limit."""

    category: np.ndarray
    channel: np.ndarray
    severity: np.ndarray
    level_i: np.ndarray  # the dispatch level
    escalated: np.ndarray  # escalated one level while handled (at some point)
    final_level: np.ndarray
    cat_limit: np.ndarray  # hours at the category's level
    limit_h: np.ndarray  # hours at the final level


@dataclass(frozen=True)
class _Handling:
    """When each incident is handled (CST timestamps) and how it ends."""

    dispatched: pd.DatetimeIndex
    started: pd.DatetimeIndex
    escalated_at: pd.DatetimeIndex
    first_resolved: pd.DatetimeIndex  # the first resolution of a reopened case
    resolved: pd.DatetimeIndex
    followed_at: pd.DatetimeIndex
    reopen: np.ndarray
    stuck: np.ndarray
    wants_follow: np.ndarray
    satisfaction: np.ndarray
    answered: np.ndarray


@dataclass(frozen=True)
class _StateAtEnd:
    """How far each incident got by the history's end."""

    dispatched: np.ndarray
    started: np.ndarray
    resolved: np.ndarray
    followed: np.ndarray
    escalated: np.ndarray  # the escalation happened before the end
    reopened: np.ndarray
    state: np.ndarray


def synthesize_incidents(
    t: Twin, catalogue: pd.DataFrame, *, n: int = 30_000, end: dt.datetime | str | None = None, months: int = 12,
    seed: int | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A synthetic incident history for twin ``t`` as ``(incidents, transitions)`` frames (nothing is stored).

    Parameters
    ----------
    t : Twin
        Locations come from its buildings (WGS84 points), grids from its partition, workers from ``t.workers``.
    catalogue : pd.DataFrame
        :func:`twin.incidents.catalogue.load_catalogue`; categories are drawn by its ``share``.
    n, months : int
        Number of incidents and length of the history (calendar months ending at ``end``).
    end : datetime or str, optional
        The "now" of the history (default: today 00:00 CST).
    seed : int, optional
        Default: the twin's seed. The history is deterministic for a given ``seed`` and ``end``.

    Returns
    -------
    incidents : pd.DataFrame
        :class:`twin.incidents.lifecycle.Incident` columns (no ``id``), times tz-aware CST.
    transitions : pd.DataFrame
        ``row`` (position in ``incidents``), ``action``, ``from_state``, ``to_state``, ``actor``, ``at``, ``reason``.
    """
    if n < 1 or months < 1:
        raise IngestError(f"need n ≥ 1 and months ≥ 1, got n={n}, months={months}.")
    end_t = pd.Timestamp(as_time(end)) if end is not None else pd.Timestamp(dt.datetime.now(CST).date(), tz=CST)
    start_t = end_t - pd.DateOffset(months=months)
    rng = np.random.default_rng((seed if seed is not None else t.seed) + 6_000)
    # the draws keep this order (times, points, kinds, workers, handling) so a seed gives the same history
    reported = _report_times(rng, start_t, end_t, n)
    lng, lat, loc = _report_points(t, rng, n)
    kinds = _draw_kinds(rng, catalogue, n)
    grid = loc["grid_code"].to_numpy().astype(str)
    grid_worker = _grid_workers(t, grid, rng)
    handling = _draw_handling(rng, reported, kinds.limit_h, n)
    at_end = _state_at_end(kinds, handling, pd.Timestamp(end_t).tz_convert(CST))
    inc = _incident_frame(loc, lng, lat, reported, kinds, handling, at_end, grid_worker)
    tr = _transitions(inc, at_end, handling)
    return inc, tr


def _report_times(rng: np.random.Generator, start_t: pd.Timestamp, end_t: pd.Timestamp,
                  n: int) -> pd.DatetimeIndex:
    """Report times (CST, sorted): days uniform over the span (weekends × 0.6), hours daytime-weighted."""
    span_days = int((end_t - start_t).days)
    day_w = np.array([0.6 if (start_t + pd.Timedelta(days=d)).dayofweek >= 5 else 1.0 for d in range(span_days)])
    day = rng.choice(span_days, size=n, p=day_w / day_w.sum())
    hour = rng.choice(24, size=n, p=_HOUR_W / _HOUR_W.sum())
    sec = rng.integers(0, 3600, size=n)
    reported = start_t + pd.to_timedelta(day * 86400 + hour * 3600 + sec, unit="s")
    return pd.DatetimeIndex(reported).sort_values().tz_convert(CST)


def _report_points(t: Twin, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
    """WGS84 points at buildings drawn ∝ residents + 2 × businesses + 1, jittered ≈ 10 m (in EPSG:4547 metres),
    and where they fall (:func:`twin.incidents.dispatch.locate_points`)."""
    b = t.buildings
    w = b["residents"].to_numpy(float) + 2 * b["businesses"].to_numpy(float) + 1.0
    bi = rng.choice(len(b), size=n, p=w / w.sum())
    bx, by = lnglat_to_xy(b["lng"].to_numpy()[bi], b["lat"].to_numpy()[bi])
    lng, lat = xy_to_lnglat(bx + rng.normal(0, 10, n), by + rng.normal(0, 10, n))
    loc = locate_points(t, lng, lat)
    outside = (loc["grid_code"] == "").to_numpy()
    if outside.any():  # jitter left the district: fall back to the building point itself
        lng[outside], lat[outside] = b["lng"].to_numpy()[bi][outside], b["lat"].to_numpy()[bi][outside]
        loc.loc[outside] = locate_points(t, lng[outside], lat[outside]).to_numpy()
    return lng, lat, loc


def _draw_kinds(rng: np.random.Generator, catalogue: pd.DataFrame, n: int) -> _Kinds:
    """Category by catalogue share, channel, severity; dispatch level = max(category level, severity level)."""
    codes = catalogue.index.to_numpy()
    cat = rng.choice(len(codes), size=n, p=catalogue["share"].to_numpy(float))
    channel = rng.choice(list(CHANNEL_SHARES), size=n, p=list(CHANNEL_SHARES.values()))
    severity = rng.choice(4, size=n, p=_SEVERITY_P) + 1
    cat_level = np.array([LEVELS.index(v) for v in catalogue["level"]])[cat]
    level_i = np.maximum(cat_level, severity - 1)
    escalated = (rng.random(n) < _P_ESCALATE) & (level_i < 3)
    final_level = level_i + escalated
    cat_limit = catalogue["time_limit_h"].to_numpy(float)[cat]
    lvl_min = np.array([LEVEL_TIME_LIMIT_H[x] for x in LEVELS])
    limit_h = np.where(final_level > cat_level, np.maximum(cat_limit, lvl_min[final_level]), cat_limit)
    return _Kinds(codes[cat], channel, severity, level_i, escalated, final_level, cat_limit, limit_h)


def _grid_workers(t: Twin, grid: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A worker of each incident's grid (``""`` for a grid without workers)."""
    wk = t.workers.groupby("grid_code")["worker_id"].apply(list).to_dict()
    pick = rng.random(len(grid))
    return np.array([wk[g][int(p * len(wk[g]))] if g in wk else "" for g, p in zip(grid, pick, strict=True)])


def _draw_handling(rng: np.random.Generator, reported: pd.DatetimeIndex, limit_h: np.ndarray, n: int) -> _Handling:
    """Dispatch 2–30 min after the report; ≈ 93 % resolved within the time limit; reopen, stuck, follow-up."""
    h = pd.to_timedelta
    dispatched = reported + h(rng.uniform(2, 30, n), unit="min")
    on_time = rng.random(n) < _P_ON_TIME
    frac = np.where(on_time, rng.beta(2.0, 4.0, n) * 0.97 + 0.02, 1.0 + rng.exponential(0.35, n))
    resolved = reported + h(frac * limit_h, unit="h")
    started = dispatched + (resolved - dispatched) * rng.uniform(0.05, 0.4, n)
    reopen = rng.random(n) < _P_REOPEN
    stuck = rng.random(n) < _P_STUCK
    followed_at = resolved + h(rng.uniform(12, 72, n), unit="h")
    wants_follow = rng.random(n) < _P_FOLLOW_UP
    sat = rng.choice(5, size=n, p=_SAT_P) + 1
    answered = rng.random(n) < _P_ANSWERED
    return _Handling(dispatched=dispatched, started=started, escalated_at=started + (resolved - started) * 0.3,
                     first_resolved=resolved - (resolved - started) * 0.5, resolved=resolved,
                     followed_at=followed_at, reopen=reopen, stuck=stuck, wants_follow=wants_follow,
                     satisfaction=sat, answered=answered)


def _state_at_end(kinds: _Kinds, h: _Handling, end_ts: pd.Timestamp) -> _StateAtEnd:
    """A case is open at ``end`` when its resolution falls after it or it is one of the "stuck" cases."""
    is_resolved = ~h.stuck & np.asarray(h.resolved <= end_ts)
    is_followed = is_resolved & h.wants_follow & np.asarray(h.followed_at <= end_ts)
    is_started = np.asarray(h.started <= end_ts) | is_resolved
    is_dispatched = np.asarray(h.dispatched <= end_ts)
    state = np.select([is_followed, is_resolved, is_started, is_dispatched],
                      ["followed_up", "resolved", "in_progress", "dispatched"], "reported")
    return _StateAtEnd(dispatched=is_dispatched, started=is_started, resolved=is_resolved, followed=is_followed,
                       escalated=kinds.escalated & np.asarray(h.escalated_at <= end_ts),
                       reopened=h.reopen & is_resolved, state=state)


def _incident_frame(loc: pd.DataFrame, lng: np.ndarray, lat: np.ndarray, reported: pd.DatetimeIndex,
                    kinds: _Kinds, h: _Handling, at_end: _StateAtEnd, grid_worker: np.ndarray) -> pd.DataFrame:
    """The incidents frame: placement at the level in force at the end (before or after the escalation)."""
    n = len(loc)
    grid = loc["grid_code"].to_numpy().astype(str)
    unit = np.stack([grid, loc["community_code"].to_numpy().astype(str), loc["town_code"].to_numpy().astype(str),
                     np.full(n, DISTRICT_CODE)])
    esc_done, escalated, final_level = at_end.escalated, kinds.escalated, kinds.final_level
    level_now = np.where(esc_done | ~escalated, final_level, kinds.level_i)
    level_name = np.array(LEVELS)[level_now]
    handler = unit[level_now, np.arange(n)]
    pre_level = np.where(esc_done, kinds.level_i, final_level)
    assignee = np.where(esc_done, np.where(final_level == 0, grid_worker, ""),
                        np.where(pre_level == 0, grid_worker, ""))
    deadline_h = np.where(esc_done | ~escalated, kinds.limit_h, kinds.cat_limit)
    is_dispatched = at_end.dispatched

    def when(mask: np.ndarray, values: pd.DatetimeIndex) -> pd.Series:
        return pd.Series(values).where(mask, pd.NaT)

    channel = kinds.channel
    reporter = np.where(channel == "grid_worker", grid_worker,
                        np.where(channel == "hotline_12345", "12345", np.where(channel == "online", "online",
                                                                                 "sensor")))
    inc = pd.DataFrame({
        "category": kinds.category, "lng": lng, "lat": lat, "reported_at": pd.Series(reported),
        "channel": channel, "severity": kinds.severity, "reporter": reporter, "description": "synthetic",
        "attachments": "[]", "answered_at_once": h.answered, "state": at_end.state,
        "cell": loc["cell"].to_numpy().astype(np.uint64).astype(np.int64),
        "grid_code": grid, "community_code": loc["community_code"].to_numpy(), "town_code": loc["town_code"].to_numpy(),
        "level": np.where(is_dispatched, level_name, ""), "handler_code": np.where(is_dispatched, handler, ""),
        "assignee": np.where(is_dispatched, assignee, ""),
        "deadline": when(is_dispatched, reported + pd.to_timedelta(deadline_h, unit="h")),
        "dispatched_at": when(is_dispatched, h.dispatched), "started_at": when(at_end.started, h.started),
        "resolved_at": when(at_end.resolved, h.resolved), "followed_up_at": when(at_end.followed, h.followed_at),
        "satisfaction": pd.Series(h.satisfaction, dtype="Int64").where(at_end.followed, pd.NA),
        "reopen_count": at_end.reopened.astype(int), "escalations": esc_done.astype(int), "linked_reports": 0,
        "synthetic": True,
    })
    inc["updated_at"] = inc[["reported_at", "dispatched_at", "started_at", "resolved_at", "followed_up_at"]].max(axis=1)
    return inc


def _transitions(inc: pd.DataFrame, at_end: _StateAtEnd, h: _Handling) -> pd.DataFrame:
    """The audit trail of each synthetic incident, in time order per row."""
    rows = np.arange(len(inc))
    handler_actor = np.where(inc["assignee"] != "", inc["assignee"], "unit:" + inc["handler_code"].astype(str))
    parts = []

    def add(mask: np.ndarray, action: str, src: str, dst: str, actor: object, at: object, reason: str) -> None:
        m = np.asarray(mask, dtype=bool)
        actors = np.broadcast_to(np.asarray(actor, dtype=object), (len(inc),))[m]
        parts.append(pd.DataFrame({"row": rows[m], "action": action, "from_state": src, "to_state": dst,
                                   "actor": actors, "at": pd.Series(at)[m].to_numpy(), "reason": reason}))

    esc_done, reopen, resolved, first_resolved = at_end.escalated, at_end.reopened, h.resolved, h.first_resolved
    add(np.ones(len(inc), dtype=bool), "report", "", "reported", "channel:" + inc["channel"].astype(str),
        inc["reported_at"], "synthetic report")
    add(at_end.dispatched, "dispatch", "reported", "dispatched", "dispatcher:auto", h.dispatched, "four-level rule")
    add(at_end.started, "start", "dispatched", "in_progress", handler_actor, h.started, "")
    add(esc_done, "escalate", "in_progress", "dispatched", "dispatcher:auto", h.escalated_at,
        "needs a higher level (synthetic)")
    add(esc_done & at_end.started, "start", "dispatched", "in_progress", handler_actor,
        h.escalated_at + (resolved - h.escalated_at) * 0.05, "")
    gap = resolved - first_resolved
    add(reopen, "resolve", "in_progress", "resolved", handler_actor, first_resolved, "")
    add(reopen, "reopen", "resolved", "reopened", "followup:auto", first_resolved + gap * 0.1,
        "complainant not satisfied")
    add(reopen, "dispatch", "reopened", "dispatched", "dispatcher:auto", first_resolved + gap * 0.2,
        "re-dispatch after reopen")
    add(reopen, "start", "dispatched", "in_progress", handler_actor, first_resolved + gap * 0.3, "")
    add(at_end.resolved, "resolve", "in_progress", "resolved", handler_actor, resolved, "")
    add(at_end.followed, "follow_up", "resolved", "followed_up", "followup:" + inc["town_code"].astype(str),
        h.followed_at, "")
    tr = pd.concat(parts, ignore_index=True)
    order = {"report": 0, "dispatch": 1, "start": 2, "escalate": 3, "resolve": 4, "reopen": 5, "follow_up": 6}
    tr["_o"] = tr["action"].map(order)
    return tr.sort_values(["row", "at", "_o"], kind="stable").drop(columns="_o").reset_index(drop=True)


def seed_incidents(
    istore: IncidentStore, t: Twin, catalogue: pd.DataFrame, *, n: int = 30_000, end: dt.datetime | str | None = None,
    months: int = 12, seed: int | None = None, replace: bool = True,
) -> int:
    """Write a synthetic history into an :class:`twin.incidents.store.IncidentStore`; returns the number written.

    With ``replace`` the previous synthetic history is deleted first (real incidents are never touched).
    """
    inc, tr = synthesize_incidents(t, catalogue, n=n, end=end, months=months, seed=seed)
    if replace:
        istore.delete_synthetic()
    istore.add_many(inc, tr)
    return len(inc)
