"""A seeded SYNTHETIC incident history for a twin, and ingestion of real incidents from CSV/GeoJSON.

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

Ingestion: :func:`read_incident_file` reads a CSV (``category``, ``lng``, ``lat``, ``reported_at`` + optional
``channel``, ``severity``, ``reporter``, ``description``, ``answered_at_once``) or GeoJSON points with the same
properties; :func:`import_incidents` validates every row first (an :class:`twin.errors.IngestError` lists each bad
row by number and problem, and nothing is written), then reports them one by one (near-duplicates are linked).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from twin.crs import STORAGE_CRS, lnglat_to_xy, xy_to_lnglat
from twin.errors import IngestError, TwinError
from twin.incidents.catalogue import LEVEL_TIME_LIMIT_H, LEVELS
from twin.incidents.dispatch import DISTRICT_CODE, locate_points
from twin.incidents.lifecycle import CST, as_time, new_incident

__all__ = [
    "CHANNEL_SHARES",
    "synthesize_incidents",
    "seed_incidents",
    "read_incident_file",
    "import_incidents",
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


def synthesize_incidents(
    t: Any, catalogue: pd.DataFrame, *, n: int = 30_000, end: dt.datetime | str | None = None, months: int = 12,
    seed: int | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A synthetic incident history for twin ``t`` as ``(incidents, transitions)`` frames (nothing is stored).

    ``end`` (default: today 00:00 CST) is the "now" of the history. ``incidents`` has :class:`twin.incidents.lifecycle.Incident`
    columns (no ``id``); ``transitions`` has ``row`` (position in ``incidents``), ``action``, ``from_state``,
    ``to_state``, ``actor``, ``at``, ``reason``. Deterministic for a given ``seed`` (default: the twin's seed) and
    ``end``.
    """
    if n < 1 or months < 1:
        raise IngestError(f"need n ≥ 1 and months ≥ 1, got n={n}, months={months}.")
    end_t = pd.Timestamp(as_time(end)) if end is not None else pd.Timestamp(dt.datetime.now(CST).date(), tz=CST)
    start_t = end_t - pd.DateOffset(months=months)
    rng = np.random.default_rng((seed if seed is not None else t.seed) + 6_000)
    # when: days uniform over the span (weekends ×0.6), hours daytime-weighted
    span_days = int((end_t - start_t).days)
    day_w = np.array([0.6 if (start_t + pd.Timedelta(days=d)).dayofweek >= 5 else 1.0 for d in range(span_days)])
    day = rng.choice(span_days, size=n, p=day_w / day_w.sum())
    hour = rng.choice(24, size=n, p=_HOUR_W / _HOUR_W.sum())
    sec = rng.integers(0, 3600, size=n)
    reported = start_t + pd.to_timedelta(day * 86400 + hour * 3600 + sec, unit="s")
    reported = pd.DatetimeIndex(reported).sort_values().tz_convert(CST)
    # where: buildings ∝ people and businesses, jittered ~10 m (in metres, EPSG:4547)
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
    # what / how
    codes = catalogue.index.to_numpy()
    cat = rng.choice(len(codes), size=n, p=catalogue["share"].to_numpy(float))
    category = codes[cat]
    channel = rng.choice(list(CHANNEL_SHARES), size=n, p=list(CHANNEL_SHARES.values()))
    severity = rng.choice(4, size=n, p=_SEVERITY_P) + 1
    cat_level = np.array([LEVELS.index(v) for v in catalogue["level"]])[cat]
    level_i = np.maximum(cat_level, severity - 1)
    escalated = (rng.random(n) < _P_ESCALATE) & (level_i < 3)
    final_level = level_i + escalated
    cat_limit = catalogue["time_limit_h"].to_numpy(float)[cat]
    lvl_min = np.array([LEVEL_TIME_LIMIT_H[x] for x in LEVELS])
    limit_h = np.where(final_level > cat_level, np.maximum(cat_limit, lvl_min[final_level]), cat_limit)
    # who: a worker of the grid at grid level, otherwise the unit
    grid = loc["grid_code"].to_numpy().astype(str)
    wk = t.workers.groupby("grid_code")["worker_id"].apply(list).to_dict()
    pick = rng.random(n)
    grid_worker = np.array([(lambda ws: ws[int(p * len(ws))])(wk[g]) if g in wk else "" for g, p in zip(grid, pick,
                                                                                                         strict=True)])
    unit = np.stack([grid, loc["community_code"].to_numpy().astype(str), loc["town_code"].to_numpy().astype(str),
                     np.full(n, DISTRICT_CODE)])
    handler = unit[final_level, np.arange(n)]
    level_name = np.array(LEVELS)[final_level]
    assignee = np.where(final_level == 0, grid_worker, "")
    # when handled
    h = pd.to_timedelta
    dispatched = reported + h(rng.uniform(2, 30, n), unit="min")
    on_time = rng.random(n) < _P_ON_TIME
    frac = np.where(on_time, rng.beta(2.0, 4.0, n) * 0.97 + 0.02, 1.0 + rng.exponential(0.35, n))
    resolved = reported + h(frac * limit_h, unit="h")
    started = dispatched + (resolved - dispatched) * rng.uniform(0.05, 0.4, n)
    escalated_at = started + (resolved - started) * 0.3
    reopen = rng.random(n) < _P_REOPEN
    first_resolved = resolved - (resolved - started) * 0.5
    stuck = rng.random(n) < _P_STUCK
    followed_at = resolved + h(rng.uniform(12, 72, n), unit="h")
    wants_follow = rng.random(n) < _P_FOLLOW_UP
    sat = rng.choice(5, size=n, p=_SAT_P) + 1
    answered = rng.random(n) < _P_ANSWERED
    # state at `end`
    end_ts = pd.Timestamp(end_t).tz_convert(CST)
    is_resolved = ~stuck & np.asarray(resolved <= end_ts)
    is_followed = is_resolved & wants_follow & np.asarray(followed_at <= end_ts)
    is_started = np.asarray(started <= end_ts) | is_resolved
    is_dispatched = np.asarray(dispatched <= end_ts)
    state = np.select([is_followed, is_resolved, is_started, is_dispatched],
                      ["followed_up", "resolved", "in_progress", "dispatched"], "reported")
    reopen &= is_resolved
    esc_done = escalated & np.asarray(escalated_at <= end_ts)
    pre_level = np.where(esc_done, level_i, final_level)
    level_name = np.where(esc_done | ~escalated, level_name, np.array(LEVELS)[level_i])
    handler = np.where(esc_done | ~escalated, handler, unit[level_i, np.arange(n)])
    assignee = np.where(esc_done, np.where(final_level == 0, grid_worker, ""),
                        np.where(pre_level == 0, grid_worker, ""))
    deadline_h = np.where(esc_done | ~escalated, limit_h, cat_limit)
    na = pd.NaT

    def when(mask: np.ndarray, values: pd.DatetimeIndex) -> pd.Series:
        return pd.Series(values).where(mask, na)

    reporter = np.where(channel == "grid_worker", grid_worker,
                        np.where(channel == "hotline_12345", "12345", np.where(channel == "online", "online",
                                                                                 "sensor")))
    inc = pd.DataFrame({
        "category": category, "lng": lng, "lat": lat, "reported_at": pd.Series(reported),
        "channel": channel, "severity": severity, "reporter": reporter, "description": "synthetic",
        "attachments": "[]", "answered_at_once": answered, "state": state,
        "cell": loc["cell"].to_numpy().astype(np.uint64).astype(np.int64),
        "grid_code": grid, "community_code": loc["community_code"].to_numpy(), "town_code": loc["town_code"].to_numpy(),
        "level": np.where(is_dispatched, level_name, ""), "handler_code": np.where(is_dispatched, handler, ""),
        "assignee": np.where(is_dispatched, assignee, ""),
        "deadline": when(is_dispatched, reported + h(deadline_h, unit="h")),
        "dispatched_at": when(is_dispatched, dispatched), "started_at": when(is_started, started),
        "resolved_at": when(is_resolved, resolved), "followed_up_at": when(is_followed, followed_at),
        "satisfaction": pd.Series(sat, dtype="Int64").where(is_followed, pd.NA),
        "reopen_count": reopen.astype(int), "escalations": esc_done.astype(int), "linked_reports": 0,
        "synthetic": True,
    })
    last = inc[["reported_at", "dispatched_at", "started_at", "resolved_at", "followed_up_at"]].max(axis=1)
    inc["updated_at"] = last
    tr = _transitions(inc, is_dispatched, is_started, is_resolved, is_followed, esc_done, reopen,
                      dispatched, started, escalated_at, first_resolved, resolved, followed_at, grid_worker)
    return inc, tr


def _transitions(inc: pd.DataFrame, is_dispatched: np.ndarray, is_started: np.ndarray, is_resolved: np.ndarray,
                 is_followed: np.ndarray, esc_done: np.ndarray, reopen: np.ndarray, dispatched: Any, started: Any,
                 escalated_at: Any, first_resolved: Any, resolved: Any, followed_at: Any,
                 grid_worker: np.ndarray) -> pd.DataFrame:
    rows = np.arange(len(inc))
    handler_actor = np.where(inc["assignee"] != "", inc["assignee"], "unit:" + inc["handler_code"].astype(str))
    parts = []

    def add(mask: np.ndarray, action: str, src: str, dst: str, actor: Any, at: Any, reason: str) -> None:
        m = np.asarray(mask, dtype=bool)
        actors = np.broadcast_to(np.asarray(actor, dtype=object), (len(inc),))[m]
        parts.append(pd.DataFrame({"row": rows[m], "action": action, "from_state": src, "to_state": dst,
                                   "actor": actors, "at": pd.Series(at)[m].to_numpy(), "reason": reason}))

    everyone = np.ones(len(inc), dtype=bool)
    add(everyone, "report", "", "reported", "channel:" + inc["channel"].astype(str), inc["reported_at"],
        "synthetic report")
    add(is_dispatched, "dispatch", "reported", "dispatched", "dispatcher:auto", dispatched, "four-level rule")
    add(is_started, "start", "dispatched", "in_progress", handler_actor, started, "")
    add(esc_done, "escalate", "in_progress", "dispatched", "dispatcher:auto", escalated_at,
        "needs a higher level (synthetic)")
    add(esc_done & is_started, "start", "dispatched", "in_progress", handler_actor,
        escalated_at + (resolved - escalated_at) * 0.05, "")
    gap = resolved - first_resolved
    add(reopen, "resolve", "in_progress", "resolved", handler_actor, first_resolved, "")
    add(reopen, "reopen", "resolved", "reopened", "followup:auto", first_resolved + gap * 0.1,
        "complainant not satisfied")
    add(reopen, "dispatch", "reopened", "dispatched", "dispatcher:auto", first_resolved + gap * 0.2,
        "re-dispatch after reopen")
    add(reopen, "start", "dispatched", "in_progress", handler_actor, first_resolved + gap * 0.3, "")
    add(is_resolved, "resolve", "in_progress", "resolved", handler_actor, resolved, "")
    add(is_followed, "follow_up", "resolved", "followed_up", "followup:" + inc["town_code"].astype(str), followed_at,
        "")
    tr = pd.concat(parts, ignore_index=True)
    order = {"report": 0, "dispatch": 1, "start": 2, "escalate": 3, "resolve": 4, "reopen": 5, "follow_up": 6}
    tr["_o"] = tr["action"].map(order)
    return tr.sort_values(["row", "at", "_o"], kind="stable").drop(columns="_o").reset_index(drop=True)


def seed_incidents(
    istore: Any, t: Any, catalogue: pd.DataFrame, *, n: int = 30_000, end: dt.datetime | str | None = None,
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


# -- ingestion ----------------------------------------------------------------------------------------------
_REQUIRED = ("category", "reported_at")


def read_incident_file(path: str | Path) -> pd.DataFrame:
    """Rows of a CSV (``lng``/``lat`` columns, WGS84) or GeoJSON (Point geometries) incident file, as strings.

    GeoJSON in another CRS is reprojected to WGS84; rows keep their file order (``row`` = 1-based data row).
    """
    from twin.io import read_vector

    p = Path(path)
    if not p.exists():
        raise IngestError(f"{p}: file not found.")
    if p.suffix.lower() == ".csv":
        try:
            df = pd.read_csv(p, dtype=str, keep_default_na=False)
        except Exception as e:
            raise IngestError(f"{p}: cannot read as CSV ({type(e).__name__}: {e}).") from e
    else:
        gdf = read_vector(p)
        if gdf.crs is not None and gdf.crs != STORAGE_CRS:
            gdf = gdf.to_crs(STORAGE_CRS)
        kinds = gdf.geometry.geom_type.fillna("None")
        df = pd.DataFrame(gdf.drop(columns=gdf.geometry.name)).astype(object)
        df["lng"] = [g.x if k == "Point" else "" for g, k in zip(gdf.geometry, kinds, strict=True)]
        df["lat"] = [g.y if k == "Point" else "" for g, k in zip(gdf.geometry, kinds, strict=True)]
        df["_geom_type"] = kinds.to_numpy()
    missing = [c for c in (*_REQUIRED, "lng", "lat") if c not in df.columns]
    if missing:
        raise IngestError(f"{p}: missing column(s) {missing}; need category, lng, lat (or Point geometry), "
                          "reported_at; optional channel, severity, reporter, description, answered_at_once.")
    df.insert(0, "row", np.arange(1, len(df) + 1))
    return df


def import_incidents(
    istore: Any, t: Any, catalogue: pd.DataFrame, path: str | Path, *, actor: str, auto_dispatch: bool = False,
    max_errors: int = 20,
) -> dict[str, int]:
    """Validate then report every row of an incident file; returns ``{"rows", "new", "linked"}``.

    All rows are checked before anything is written: category known, channel valid, severity 1–4,
    coordinates numbers inside a grid, time parseable. The :class:`IngestError` names each bad row
    (``row 7: unknown incident category 'fire'``), up to ``max_errors`` of them.
    """
    from twin.incidents.store import report_incident

    df = read_incident_file(path)
    errors: list[str] = []
    fields: list[dict[str, Any]] = []
    for r in df.to_dict("records"):
        if r.get("_geom_type", "Point") != "Point":
            errors.append(f"row {r['row']}: geometry is {r['_geom_type']}, need a Point.")
            continue
        f = {
            "category": str(r["category"]).strip(), "lng": r["lng"], "lat": r["lat"],
            "reported_at": str(r["reported_at"]).strip(),
            "channel": str(r.get("channel") or "grid_worker").strip(),
            "severity": _int_or(r.get("severity"), 1),
            "reporter": str(r.get("reporter") or ""), "description": str(r.get("description") or ""),
            "answered_at_once": str(r.get("answered_at_once") or "").strip().lower() in ("1", "true", "yes", "y"),
        }
        try:
            new_incident(catalogue, **f)
        except TwinError as e:
            errors.append(f"row {r['row']}: {e}")
            continue
        fields.append(f | {"_row": r["row"]})
    if fields:
        lng = np.array([float(f["lng"]) for f in fields])
        lat = np.array([float(f["lat"]) for f in fields])
        loc = locate_points(t, lng, lat)
        for f, g in zip(fields, loc["grid_code"], strict=True):
            if not g:
                errors.append(f"row {f['_row']}: point ({f['lng']}, {f['lat']}) is outside every grid of the "
                              "district (WGS84 lng/lat expected; GCJ-02 must be converted).")
    if errors:
        errors.sort(key=lambda s: int(s.split(":")[0].split()[1]))
        more = f" … and {len(errors) - max_errors} more" if len(errors) > max_errors else ""
        raise IngestError(f"{path}: {len(errors)} bad row(s), nothing imported:\n  "
                          + "\n  ".join(errors[:max_errors]) + more)
    new = linked = 0
    for f in sorted(fields, key=lambda f: as_time(f["reported_at"])):
        f = {k: v for k, v in f.items() if k != "_row"}
        _, was_linked = report_incident(istore, t, catalogue, actor=actor, auto_dispatch=auto_dispatch, **f)
        linked += int(was_linked)
        new += int(not was_linked)
    return {"rows": len(df), "new": new, "linked": linked}


def _int_or(v: Any, default: int) -> Any:
    if v is None or (isinstance(v, str) and not v.strip()):
        return default
    try:
        f = float(v)
    except (TypeError, ValueError):
        return v  # new_incident names the bad value
    return int(f) if f.is_integer() else v
